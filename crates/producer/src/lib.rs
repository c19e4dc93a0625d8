//! The Sluice producer: `POST /csv_upload` streams a CSV export, row by row, as Avro records to
//! Kafka, and answers with a receipt only after Kafka acknowledged every accepted record.
//!
//! # Layout
//! - [`config`]: the one typed `Config`, read from `SLUICE_PRODUCER_*` variables.
//! - [`error`]: `UploadError`, the failures of an upload, mapped once to HTTP statuses.
//! - [`decode`]: byte-order-mark sniffing and streaming transcoding of UTF-16 to UTF-8;
//!   gzip/zstd bodies decompressed, within expansion limits.
//! - [`records`]: CSV records bounded in bytes as they stream in (a too-large one is cut and
//!   rejected, never buffered).
//! - [`pace`]: the client's pace — idle timeout and minimum rate of a request body.
//! - [`kafka`]: the Kafka producer and the bounded in-flight window of deliveries.
//! - [`ingest`]: the upload pipeline, one module per stage — body bytes → text → rows (CSV,
//!   JSON Lines, JSON arrays; Parquet from a scratch file) → Avro records by the dataset's plan
//!   → Kafka — run as its `IngestOptions` say.
//! - [`receipts`]: receipts in Redis, for idempotent re-uploads and `GET /uploads/{id}`.
//! - [`finish`]: an acknowledged upload's end — claim its content, commit or abort, store the
//!   receipt (shared with the watcher).
//! - [`landing`]: reconciliation — how many of an upload's rows ClickHouse holds, and its
//!   rejected rows (read only; the consumer writes them).
//! - [`tracking`]: a running upload's counts in Redis, and how it ended if it failed.
//! - [`routes`]: the HTTP surface (`/csv_upload`, `/datasets/{name}/upload`, `/uploads…`,
//!   `/health`, `/ready`, `/metrics`, `/openapi.json` — built at start, with an upload operation
//!   per dataset served — and Swagger UI at `/docs/`).

pub mod config;
pub mod decode;
pub mod error;
pub mod finish;
pub mod ingest;
pub mod kafka;
pub mod landing;
pub mod metric;
pub mod pace;
pub mod receipts;
pub mod records;
pub mod routes;
pub mod tracking;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{Condition, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use sluice_schema::docs::OpenApiJson;
use sluice_schema::problem::problem_details;

pub use config::Config;

/// A built, bound, not yet running producer service.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Creates the Kafka producer, makes sure the topic exists (if Kafka answers) and binds the
    /// listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate()?;
        let datasets = config.datasets()?;
        let settings = config.kafka();
        let others: Vec<_> = datasets
            .iter()
            .filter(|d| d.spec.name != sluice_schema::dataset::GAME_ROUNDS)
            .map(|d| config.topics(&d.spec.name))
            .collect();
        // Kafka being down at start-up is not fatal: `/ready` says so and uploads get 503.
        settings
            .ensure_topics(
                &others,
                config.topic_partitions,
                config.topic_replication_factor,
            )
            .await;
        if !config.authenticates_uploads() {
            tracing::warn!(
                "SLUICE_PRODUCER_UPLOAD_TOKENS is not set: anyone who reaches this port can upload \
                 and read receipts."
            );
        }
        sluice_schema::telemetry::register_counters(&[crate::metric::INTERMEDIATE_COMMITS_TOTAL]);
        kafka::register_transaction_outcomes();
        let producer = kafka::RoundProducer::new(&settings)?;
        let receipts = receipts::ReceiptStore::new(&config.redis_url, &config.redis_key_prefix)?;
        let listener = TcpListener::bind(&config.listen_addr)?;
        let port = listener.local_addr()?.port();
        let openapi = OpenApiJson::of(&routes::docs::openapi(&datasets));
        let state = web::Data::new(routes::AppState {
            producer,
            datasets,
            receipts,
            landing: landing::Landing::new(&config)?,
            config: config.clone(),
            metrics: sluice_schema::telemetry::prometheus(),
            openapi,
        });
        let cors_config = config.clone();
        let server = HttpServer::new(move || {
            let cors = routes::cors(&cors_config);
            App::new()
                .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
                .wrap(ErrorHandlers::new().default_handler(problem_details))
                .wrap(sluice_schema::telemetry::HttpMetrics::new("producer"))
                .app_data(state.clone())
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    error::UploadError::BadQuery(error.to_string()).into()
                }))
                .configure(routes::configure)
        })
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    /// The port the service listens on (useful with port 0 in tests).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process receives SIGINT or SIGTERM; in-flight uploads finish first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
