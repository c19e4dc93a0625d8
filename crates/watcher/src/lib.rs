//! The Sluice watcher: picks up the files of one dataset (game rounds by default, or one declared
//! in `datasets/<name>.toml`) dropped into a directory — CSV (UTF-8 ± BOM, UTF-16 LE/BE with
//! BOM), JSON arrays, JSON Lines and Parquet, optionally gzip- or zstd-compressed — and ingests
//! each exactly once through the producer's own pipeline: the dataset's plan and topics, one
//! Kafka transaction per file, the same SHA-256 content ledger (within the dataset) and
//! receipts in Redis (visible at the producer's `GET /uploads/{id}`).
//!
//! # Layout
//! - [`config`]: the one typed `Config`, read from `SLUICE_WATCHER_*` variables.
//! - [`error`]: `WatchError`, why a file failed, classified as quarantine or retry.
//! - [`name`]: file names as untrusted bytes: which are taken, escaped for logs, bounded
//!   sidecar names, the bounded memory of names reported as ignored.
//! - [`format`]: compression and format from a file's name and first bytes; they must agree.
//! - [`ledger`]: the watcher's Redis keys: per-file locks and claims not yet settled.
//! - [`file`]: one file, start to finish: lock, hash, dedup, ingest, claim, commit, dispose.
//! - [`watch`]: events plus rescans, the readiness rule, bounded parallelism and backoff: a
//!   `Scheduler` with one method per event.

pub mod config;
pub mod error;
pub mod file;
pub mod format;
pub mod ledger;
pub mod metric;
pub mod name;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use sluice_producer::kafka::RoundProducer;
use sluice_producer::receipts::ReceiptStore;
use sluice_schema::telemetry::{answers_in_time, HealthServer, READY_TIMEOUT};
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// A watcher ready to run: directories made, clients created, listener bound.
pub struct Application {
    server: HealthServer,
    context: Arc<file::Context>,
    running: Arc<AtomicBool>,
}

struct HealthState {
    running: Arc<AtomicBool>,
    context: Arc<file::Context>,
}

impl Application {
    /// Finds the dataset (an unknown one is an error naming `SLUICE_WATCHER_DATASET`, before
    /// anything is made), makes the directories, makes sure the dataset's topics exist (if
    /// Kafka answers), creates the producer and the Redis clients and binds the listener.
    pub async fn build(mut config: Config) -> anyhow::Result<Application> {
        let dataset = config.dataset()?;
        std::fs::create_dir_all(&config.watch_dir)?;
        config.watch_dir = config.watch_dir.canonicalize()?;
        for directory in [
            config.processed_dir(),
            config.quarantine_dir(),
            config.work_dir(),
        ] {
            std::fs::create_dir_all(directory)?;
        }
        let kafka = config.kafka();
        kafka
            .ensure_topics(
                &[],
                config.topic_partitions,
                config.topic_replication_factor,
            )
            .await;
        let instance = config.instance_id();
        let context = Arc::new(file::Context {
            producer: RoundProducer::new(&kafka)?,
            receipts: ReceiptStore::new(&config.redis_url, &config.redis_key_prefix)?,
            ledger: ledger::Ledger::new(
                &config.redis_url,
                &config.redis_key_prefix,
                &dataset.spec.name,
                &instance,
                Duration::from_millis(config.lock_ttl_ms.max(300)),
            )?,
            limits: config.limits(),
            dataset,
            instance,
            config,
        });
        sluice_schema::telemetry::register_counters(&[crate::metric::BYTES_TOTAL]);
        let running = Arc::new(AtomicBool::new(false));
        let state = HealthState {
            running: Arc::clone(&running),
            context: Arc::clone(&context),
        };
        let listen_addr = &context.config.listen_addr;
        let server = HealthServer::bind("watcher", listen_addr, Some(1), state, ready)?;
        Ok(Application {
            server,
            context,
            running,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Fences this instance's transactional ids (aborting what a previous run left open),
    /// gives back content claims that run left unsettled, then watches until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let (context, running) = (self.context, self.running);
        let work = async move {
            if recover(&context, &shutdown).await {
                running.store(true, Ordering::SeqCst);
                tracing::info!(
                    directory = %context.config.watch_dir.display(),
                    dataset = %context.dataset.spec.name,
                    topic = %context.config.topics().records,
                    instance = %context.instance,
                    "Watching."
                );
                watch::run(Arc::clone(&context), shutdown).await;
            }
            running.store(false, Ordering::SeqCst);
        };
        self.server.serve_while(work).await
    }
}

/// Start-up recovery, retried with backoff until it succeeds or `shutdown` fires.
async fn recover(context: &file::Context, shutdown: &CancellationToken) -> bool {
    let config = &context.config;
    let mut attempt = 0_u32;
    loop {
        match try_recover(context).await {
            Ok(()) => return true,
            Err(error) => {
                let delay = Duration::from_millis(
                    config
                        .retry_initial_ms
                        .saturating_mul(1 << attempt.min(16))
                        .min(config.retry_max_ms),
                );
                tracing::warn!(%error, delay_ms = delay.as_millis() as u64, "Start-up recovery failed; retrying.");
                attempt += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn try_recover(context: &file::Context) -> anyhow::Result<()> {
    context.producer.init_all_transactions().await?;
    for (upload_id, content) in context.ledger.pending().await? {
        if context.receipts.get(&upload_id).await?.is_none() {
            // Its transaction was just aborted by the fencing above: the content is free again.
            context.receipts.release(&content, &upload_id).await;
            tracing::info!(%upload_id, "Released the content claim of an interrupted file.");
        }
        context.ledger.remove_pending(&upload_id).await?;
    }
    Ok(())
}

/// Ready: watching, Kafka answers and Redis answers.
async fn ready(state: web::Data<HealthState>) -> HttpResponse {
    let running = state.running.load(Ordering::SeqCst);
    let (kafka, redis) = futures::join!(
        answers_in_time(state.context.producer.is_ready(READY_TIMEOUT)),
        answers_in_time(state.context.ledger.is_ready()),
    );
    let body = serde_json::json!({"watching": running, "kafka": kafka, "redis": redis});
    if running && kafka && redis {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
