//! The Sluice gateway: sells access to the aggregated game rounds. Every request is
//! authenticated by API key, rate limited and charged in one atomic Redis script; sums come
//! from ClickHouse, a page at a time behind signed cursors; every credit movement is appended
//! to a usage ledger in ClickHouse that an audit compares with the Redis balances.
//!
//! # Layout
//! - [`config`]: the one typed `Config`, read from `SLUICE_GATEWAY_*` variables.
//! - [`error`]: `ApiError`, every failure, mapped once to HTTP problem details (the domain
//!   modules' errors become one by their `From` impls there; they know nothing of HTTP).
//! - [`credits`]: API keys (hashed), their records and charges, kept in Redis by the Lua
//!   scripts (`src/lua/`) that admit, charge, refund, rotate, revoke and top up, atomically.
//! - `scripts`: those scripts, loaded once, and each one's reply decoded in one place into a
//!   type (a status code means what its own script says).
//! - [`query`]: query-string parsing into typed filters, order, page size and cursor position.
//! - [`answer`]: reading a page: the rollup at its published versions, raw rows for the hours
//!   not processed yet, in a window that widens from the page's first bucket.
//! - [`cursor`]: opaque pagination cursors, HMAC-signed and bound to the filters.
//! - [`charge`]: an admitted request's charge held by a lease until its answer settles it,
//!   and the sweep that refunds charges a dead gateway never settled.
//! - [`ledger`]: the usage ledger's events, written to a Redis outbox by the same scripts as
//!   the movements, and the drainer that moves them into ClickHouse exactly once.
//! - [`audit`]: Redis balances against the ledger, and rebuilding a balance from it.
//! - [`usage`]: a key's usage over time from the ledger, for its holder (`GET /usage`).
//! - [`routes`]: the HTTP surface (`/aggregated_game_rounds`, `/datasets`, `/usage`, the `/admin/keys`
//!   API, the audit, health, metrics, `/openapi.json` — built at start, with an operation per
//!   endpoint of the datasets served —, Swagger UI at `/docs/` and the web console at
//!   `/console`).

pub mod answer;
pub mod audit;
pub mod charge;
pub mod config;
pub mod credits;
pub mod cursor;
pub mod error;
pub mod ledger;
pub mod metric;
pub mod query;
pub mod reads;
pub mod rollups;
pub mod routes;
pub mod rows;
mod scripts;
pub mod usage;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::ErrorHandlers;
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use sluice_schema::docs::OpenApiJson;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// How long the usage ledger may take to drain at shutdown (what it leaves waits in the Redis
/// outbox for the next drain, by any gateway).
const LEDGER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A built, bound, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
    ledger: ledger::Ledger,
    /// Stops the ledger drainer and the lease sweeper.
    background: CancellationToken,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate()?;
        let credits = credits::CreditStore::new(
            &config.redis_url,
            &config.redis_key_prefix,
            config.default_rate_limit(),
        )?;
        let layout = config.clickhouse.layout()?;
        let parts = rows::Parts::of(&layout, &config.clickhouse.database);
        let clickhouse = config.clickhouse.client()?;
        let cursors = cursor_signer(&config);
        let ledger = ledger::Ledger::new(
            &credits,
            clickhouse.clone(),
            config.clickhouse.database.clone(),
            layout,
            ledger::LedgerSettings {
                batch_rows: config.ledger_batch_rows,
                flush_interval: Duration::from_millis(config.ledger_flush_interval_ms),
            },
        );
        let background = CancellationToken::new();
        ledger::drainer(ledger.clone(), background.clone());
        charge::sweeper(
            credits.clone(),
            Duration::from_millis(config.lease_sweep_interval_ms),
            background.clone(),
        );
        sluice_schema::telemetry::register_counters(&[
            crate::metric::CREDITS_CHARGED_TOTAL,
            crate::metric::CREDITS_REFUNDED_TOTAL,
            crate::metric::LEASES_EXPIRED_TOTAL,
            crate::metric::LEASES_SETTLED_LATE_TOTAL,
            crate::metric::QUERY_RETRIES_TOTAL,
            crate::metric::READS_REPEATED_TOTAL,
        ]);
        let listener = TcpListener::bind(&config.listen_addr)?;
        let port = listener.local_addr()?.port();
        let reads = reads::Reads::new(clickhouse.clone(), config.clickhouse.unpooled_client()?);
        let rounds = answer::Source::new(
            reads.clone(),
            credits.pool().0.clone(),
            &config.clickhouse.database,
        );
        let datasets = config.datasets()?;
        let rollups = rollups::Shapes::of(&datasets, &config.clickhouse.database);
        let openapi = OpenApiJson::of(&routes::docs::openapi(&datasets));
        let state = routes::AppState {
            credits,
            clickhouse,
            reads,
            parts,
            rounds,
            rollups,
            ledger: ledger.clone(),
            cursors,
            query_slots: tokio::sync::Semaphore::new(config.max_concurrent_queries),
            datasets,
            config,
            metrics: sluice_schema::telemetry::prometheus(),
            openapi,
        };
        let server = http_server(web::Data::new(state), listener)?;
        Ok(Application {
            port,
            server,
            ledger,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then drains the usage ledger's outbox for a few
    /// seconds (whatever is left stays in Redis for the next drain: nothing is lost).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.background.cancel();
        match self.ledger.flush(LEDGER_SHUTDOWN_TIMEOUT).await {
            Ok(()) => tracing::info!("Usage ledger drained."),
            Err(error) => {
                tracing::warn!(%error, "Usage ledger not drained at shutdown; its events wait in Redis.");
            }
        }
        served
    }
}

/// The signer of pagination cursors: with the configured secret, else a random one (with a
/// warning: such cursors die with this gateway).
fn cursor_signer(config: &Config) -> cursor::CursorSigner {
    match &config.cursor_secret {
        Some(secret) => cursor::CursorSigner::new(secret.expose_secret().as_bytes()),
        None => {
            tracing::warn!(
                "SLUICE_GATEWAY_CURSOR_SECRET is not set: cursors are signed with a random \
                 secret and stop working when this gateway restarts (or on another instance)."
            );
            cursor::CursorSigner::random()
        }
    }
}

/// The HTTP server on `listener`: the routes, every refusal as problem details, and the size
/// limit of JSON bodies.
fn http_server(
    state: web::Data<routes::AppState>,
    listener: TcpListener,
) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(error::problem_details))
            .wrap(sluice_schema::telemetry::HttpMetrics::new("gateway"))
            .app_data(state.clone())
            .app_data(
                web::QueryConfig::default().error_handler(|error, _| {
                    error::ApiError::BadRequest(error.to_string()).into()
                }),
            )
            .app_data(
                web::JsonConfig::default()
                    .limit(routes::MAX_JSON_BYTES)
                    .error_handler(|error, _| {
                        error::ApiError::from_json(&error, routes::MAX_JSON_BYTES).into()
                    }),
            )
            .app_data(web::PayloadConfig::new(routes::MAX_JSON_BYTES))
            .configure(routes::configure)
    })
    .listen(listener)?
    .run())
}
