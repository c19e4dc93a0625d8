//! The Sluice consumer: a Kafka consumer-group member that batches game rounds into ClickHouse
//! and stores offsets only after ClickHouse acknowledged the insert.
//!
//! # Layout
//! - [`config`]: the one typed `Config`, read from `SLUICE_CONSUMER_*` variables.
//! - [`kafka`]: group membership, rebalance notes and offset storing.
//! - [`batcher`]: the per-partition batch, its records converted into `RowBinary` rows by the
//!   `game_rounds` spec, and the offsets it will let us store.
//! - [`inserter`]: the one-insert-per-batch writes (rows, rejects, quarantine).
//! - [`marks`]: the hours each batch changes, marked dirty in Redis around its insert, so the
//!   rollups' readers take them from raw rows until they are recomputed (docs/PROCESSING.md).
//! - [`pipeline`]: the loop tying them together, with retries and graceful shutdown.
//! - [`datasets`]: the other datasets it serves (issue 14), each from its topic into its
//!   versions table, converted the same way.

pub mod batcher;
pub mod config;
pub mod datasets;
pub mod inserter;
pub mod kafka;
pub mod marks;
pub mod metric;
pub mod pipeline;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use sluice_schema::dataset::history::History;
use sluice_schema::dataset::rowbinary::Converter;
use sluice_schema::kafka::MetadataProbe;
use sluice_schema::telemetry::{answers_in_time, readiness, HealthServer, READY_TIMEOUT};
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// A consumer ready to run: migrations applied, group joined, listener bound.
pub struct Application {
    server: HealthServer,
    pipeline: pipeline::Pipeline,
    datasets: Vec<datasets::DatasetIngest>,
}

struct HealthState {
    running: Arc<AtomicBool>,
    clickhouse: clickhouse::Client,
    /// A client of the same brokers, to ask whether they answer.
    kafka: MetadataProbe,
    marks: Arc<marks::Marks>,
}

impl Application {
    /// Applies the ClickHouse migrations, makes sure the topic exists and joins the group.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let clickhouse = config.clickhouse.connect().await?;
        sluice_schema::kafka::ensure_topic(
            &config.kafka_brokers,
            &config.topic,
            config.topic_partitions,
            1,
        )
        .await?;
        for topic in [config.rejects_topic(), config.dead_letter_topic()] {
            sluice_schema::kafka::ensure_topic(
                &config.kafka_brokers,
                &topic,
                config.topic_partitions,
                1,
            )
            .await?;
        }
        let marks = Arc::new(marks::Marks::new(&config)?);
        let dead_letters = kafka::DeadLetters::new(&config)?;
        let datasets = start_datasets(&config, &clickhouse, &marks, &dead_letters).await?;
        let probe = MetadataProbe::of_brokers(&config.kafka_brokers)?;
        let notes = kafka::RebalanceNotes::new(config.topic_partitions);
        let consumer = kafka::subscribe(&config, notes.clone())?;
        let running = Arc::new(AtomicBool::new(false));
        let state = HealthState {
            running: Arc::clone(&running),
            clickhouse: clickhouse.clone(),
            kafka: probe.clone(),
            marks: Arc::clone(&marks),
        };
        sluice_schema::telemetry::register_counters(&[
            crate::metric::INSERT_FAILURES_TOTAL,
            crate::metric::POISON_MESSAGES_TOTAL,
            crate::metric::DEAD_LETTERS_TOTAL,
            crate::metric::REPLICA_WAITS,
        ]);
        let server = HealthServer::bind("consumer", &config.listen_addr, None, state, ready)?;
        Ok(Application {
            server,
            datasets,
            pipeline: pipeline::Pipeline {
                consumer,
                notes,
                clickhouse,
                marks,
                converter: Arc::new(Converter::reading(&History::game_rounds())),
                dead_letters,
                probe,
                topics: kafka::Topics::new(&config),
                config,
                running,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Consumes until `shutdown` fires; then flushes and commits what it holds and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let datasets = self
            .datasets
            .into_iter()
            .map(|ingest| ingest.run(shutdown.clone()));
        let datasets = futures::future::join_all(datasets);
        let pipeline = self.pipeline.run(shutdown);
        self.server
            .serve_while(async move {
                futures::join!(pipeline, datasets);
            })
            .await
    }
}

/// The ingest of every dataset served besides game rounds.
async fn start_datasets(
    config: &Config,
    clickhouse: &clickhouse::Client,
    marks: &marks::Marks,
    dead_letters: &kafka::DeadLetters,
) -> anyhow::Result<Vec<datasets::DatasetIngest>> {
    let served = config.served_datasets()?;
    let mut started = Vec::with_capacity(served.len());
    for dataset in &served {
        started.push(
            datasets::DatasetIngest::start(
                config,
                dataset,
                clickhouse.clone(),
                marks,
                dead_letters,
            )
            .await?,
        );
    }
    Ok(started)
}

/// Readiness: the loop runs (group joined, migrations applied), and ClickHouse, Kafka and Redis
/// answer within [`READY_TIMEOUT`].
async fn ready(state: web::Data<HealthState>) -> HttpResponse {
    let running = state.running.load(Ordering::SeqCst);
    let (clickhouse, kafka, redis) = futures::join!(
        answers_in_time(async { state.clickhouse.query("SELECT 1").execute().await.is_ok() }),
        answers_in_time(state.kafka.answers(READY_TIMEOUT)),
        answers_in_time(state.marks.redis_answers()),
    );
    readiness(
        running,
        &[
            ("clickhouse", clickhouse),
            ("kafka", kafka),
            ("redis", redis),
        ],
    )
}
