//! The ingest loop: consume → decode → batch → insert (with retries) → store offsets.
//! Order matters: offsets are stored only after ClickHouse acknowledged the insert.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use rand::Rng;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::Message;
use sluice_schema::avro::GameRoundCodec;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::batcher::Batch;
use crate::config::Config;
use crate::inserter::insert_batch;
use crate::kafka::{store_offsets, RebalanceNotes, RoundConsumer};

/// Everything the loop needs.
pub struct Pipeline {
    pub consumer: RoundConsumer,
    pub notes: RebalanceNotes,
    pub clickhouse: Client,
    pub config: Config,
    pub running: Arc<AtomicBool>,
}

impl Pipeline {
    /// Runs until `shutdown` fires, then flushes what it holds, commits and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let codec = GameRoundCodec::get();
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let mut batch = Batch::default();
        let mut deadline: Option<tokio::time::Instant> = None;
        self.running.store(true, Ordering::SeqCst);
        loop {
            let flush_timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = flush_timer => {
                    self.forget_revoked(&mut batch);
                    if !self.flush(&mut batch, &shutdown).await {
                        break;
                    }
                    deadline = None;
                }
                message = self.consumer.recv() => {
                    let message = match message {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(%error, "Kafka consumer error.");
                            continue;
                        }
                    };
                    let payload = message.payload().unwrap_or_default();
                    match codec.decode(payload) {
                        Ok(round) => batch.push(message.partition(), message.offset(), payload.len(), round),
                        Err(error) => {
                            tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "Skipping undecodable message.");
                            metrics::counter!("sluice_consumer_poison_messages_total").increment(1);
                            batch.skip(message.partition(), message.offset());
                        }
                    }
                    drop(message);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
                    if batch.is_full(self.config.batch_max_rows, self.config.batch_max_bytes) {
                        self.forget_revoked(&mut batch);
                        if !self.flush(&mut batch, &shutdown).await {
                            break;
                        }
                        deadline = None;
                    }
                }
            }
        }
        // Shutting down: insert what is held (once), store its offsets and commit them now.
        self.forget_revoked(&mut batch);
        if !batch.is_empty() {
            self.flush(&mut batch, &CancellationToken::new()).await;
        }
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "Nothing committed at shutdown.");
        }
        self.running.store(false, Ordering::SeqCst);
        tracing::info!("Consumer stopped.");
    }

    fn forget_revoked(&self, batch: &mut Batch) {
        let revoked = self.notes.take_revoked();
        if !revoked.is_empty() {
            let dropped = batch.forget_partitions(&revoked);
            tracing::info!(
                ?revoked,
                dropped,
                "Dropped buffered records of revoked partitions."
            );
        }
    }

    /// Inserts the batch, retrying with exponential backoff and jitter until it succeeds, then
    /// stores its offsets. Returns false when `shutdown` fired before the insert succeeded
    /// (nothing stored: the records are read again by whoever owns the partitions next).
    #[instrument(skip_all, fields(rows = batch.rows()))]
    async fn flush(&self, batch: &mut Batch, shutdown: &CancellationToken) -> bool {
        if batch.is_empty() {
            return true;
        }
        let rows = batch.rows();
        let mut backoff = Duration::from_millis(self.config.insert_retry_initial_ms);
        let max_backoff = Duration::from_millis(self.config.insert_retry_max_ms);
        let started = Instant::now();
        loop {
            let attempt = if rows == 0 {
                Ok(())
            } else {
                insert_batch(&self.clickhouse, batch.rounds()).await
            };
            match attempt {
                Ok(()) => break,
                Err(error) => {
                    metrics::counter!("sluice_consumer_insert_failures_total").increment(1);
                    let jitter = rand::rng().random_range(0.5..1.0);
                    let wait = backoff.mul_f64(jitter);
                    tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "Insert failed, retrying.");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        metrics::counter!("sluice_consumer_rows_inserted_total").increment(rows as u64);
        metrics::counter!("sluice_consumer_batches_total").increment(1);
        metrics::histogram!("sluice_consumer_insert_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = store_offsets(&self.consumer, &self.config.topic, batch.next_offsets())
        {
            // A partition was revoked meanwhile: its rows are in ClickHouse, and the new owner
            // re-inserts them; de-duplication by round identity keeps results exact.
            tracing::warn!(%error, "Could not store offsets.");
        }
        tracing::debug!(rows, skipped = batch.skipped(), "Batch inserted.");
        *batch = Batch::default();
        true
    }
}
