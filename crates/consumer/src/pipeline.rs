//! The ingest loop: consume → decode → batch → insert (with retries) → store offsets.
//!
//! One batch is inserted while the next one fills, so fetching and inserting overlap; at most
//! one insert is in flight, and batches complete in order. A batch's offsets are stored only
//! after ClickHouse acknowledged its insert.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use sluice_schema::backoff::Backoff;
use sluice_schema::dataset::rowbinary::Converter;
use sluice_schema::kafka::MetadataProbe;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batch, RawBatch};
use crate::config::Config;
use crate::inserter::{insert_quarantine, insert_rejects, insert_rows};
use crate::kafka::{
    store_offsets, subscribe_topics, DeadLetters, RebalanceNotes, RoundConsumer, TopicPresence,
    Topics,
};
use crate::marks::{MarkError, Marks};

/// Everything the loop needs.
pub struct Pipeline {
    pub consumer: RoundConsumer,
    pub notes: RebalanceNotes,
    pub clickhouse: Client,
    pub marks: Arc<Marks>,
    /// Converts the rounds' records (every recorded version of `game_rounds`) into rows.
    pub converter: Arc<Converter>,
    pub dead_letters: DeadLetters,
    /// Asks the brokers which topics they hold (the consumer's own client is busy polling).
    pub probe: MetadataProbe,
    pub topics: Topics,
    pub config: Config,
    pub running: Arc<AtomicBool>,
}

/// The insert of one batch; yields the batch back once ClickHouse acknowledged it, or `None`
/// when shutdown came first (nothing stored: the records are read again later).
type InFlight = JoinHandle<Option<Batch>>;

/// Messages taken from the local queue per turn of the loop, at most.
const DRAIN_AT_ONCE: usize = 1_000;

/// How often the subscribed topics' presence is checked ([`TopicPresence`]): a topic is taken
/// up again only once a check saw it missing, so a topic gone and back between two checks is
/// missed (the broker-restart test failed 1 run in 3 to 4 with 10 s, old code and new alike:
/// its rounds landed, and the rejects topic came back, within one period). One metadata
/// request a second.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// How long the next batch waits for the insert in flight before fetching is paused.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Why a batch could not be written; every kind is retried.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("dead-letter topic: {0}")]
    DeadLetters(#[from] rdkafka::error::KafkaError),
    #[error("dirty hours: {0}")]
    Marks(#[from] MarkError),
    #[error("earlier versions: {0}")]
    Replicas(#[from] sluice_schema::migrations::ReplicaError),
}

/// How far a batch's rounds got, kept across the attempts of its write.
struct RoundsWrite {
    batch_id: String,
    /// The hours the rounds change, once looked up.
    hours: Option<Vec<u32>>,
    /// ClickHouse acknowledged the rounds' insert.
    inserted: bool,
    /// The marks are completed too.
    marked: bool,
}

/// The rounds into `round_versions`, inside the dirty-hours protocol: the hours they change
/// are leased before the insert (again at every attempt) and marked once it is acknowledged.
async fn write_rounds(
    client: &Client,
    marks: &Marks,
    converter: &Converter,
    batch: &Batch,
    progress: &mut RoundsWrite,
) -> Result<(), WriteError> {
    if batch.rows() == 0 || progress.marked {
        return Ok(());
    }
    let hours = match &progress.hours {
        Some(hours) => hours,
        None => progress
            .hours
            .insert(marks.hours(client, batch.keyed()).await?),
    };
    if !progress.inserted {
        marks.begin(&progress.batch_id, hours).await?;
        insert_rows(client, converter, batch.row_bytes()).await?;
        progress.inserted = true;
    }
    marks.end(&progress.batch_id, hours).await?;
    progress.marked = true;
    Ok(())
}

/// Rounds into `round_versions` (see [`write_rounds`]), rejected rows into `upload_rejects`,
/// poison into `quarantine` and the dead-letter topic. Each step is safe to repeat: rows are
/// de-duplicated by identity and version, a dead letter may be sent twice.
async fn write_batch(
    client: &Client,
    marks: &Marks,
    converter: &Converter,
    dead_letters: &DeadLetters,
    topics: &Topics,
    batch: &Batch,
    progress: &mut RoundsWrite,
) -> Result<(), WriteError> {
    write_rounds(client, marks, converter, batch, progress).await?;
    if batch.reject_count() > 0 {
        insert_rejects(client, batch.rejects()).await?;
    }
    if batch.poison_count() > 0 {
        insert_quarantine(client, batch.poison().map(|p| p.letter(topics))).await?;
        dead_letters
            .send(batch.poison().map(|p| p.letter(topics)))
            .await?;
    }
    Ok(())
}

impl Pipeline {
    /// Runs until `shutdown` fires, then inserts what it holds (one attempt), stores and
    /// commits those offsets, and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let mut batch = RawBatch::default();
        let mut in_flight: Option<InFlight> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut presence = TopicPresence::default();
        let mut presence_check = tokio::time::interval(PRESENCE_EVERY);
        presence_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.running.store(true, Ordering::SeqCst);
        loop {
            let flush_timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let insert_done = async {
                match in_flight.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = presence_check.tick() => self.resubscribe_if_a_topic_came_back(&mut presence).await,
                done = insert_done => {
                    in_flight = None;
                    match done {
                        Ok(Some(inserted)) => self.store(&inserted),
                        _ => break,
                    }
                }
                _ = flush_timer => {
                    deadline = None;
                    if !self.dispatch(&mut batch, &mut in_flight, &shutdown).await {
                        break;
                    }
                }
                message = self.consumer.recv() => {
                    self.accept(message, &mut batch);
                    // Take what is already fetched without going round the select (and its
                    // timers) once per message.
                    for _ in 0..DRAIN_AT_ONCE {
                        if batch.is_full(self.config.batch_max_rows, self.config.batch_max_bytes) {
                            break;
                        }
                        match self.consumer.recv().now_or_never() {
                            Some(message) => self.accept(message, &mut batch),
                            None => break,
                        }
                    }
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
                    if batch.is_full(self.config.batch_max_rows, self.config.batch_max_bytes) {
                        deadline = None;
                        if !self.dispatch(&mut batch, &mut in_flight, &shutdown).await {
                            break;
                        }
                    }
                }
            }
        }
        // Shutting down: finish the insert in flight, then try the rest once; store what landed.
        if let Some(handle) = in_flight.take() {
            if let Ok(Some(inserted)) = handle.await {
                self.store(&inserted);
            }
        }
        self.forget_revoked(&mut batch);
        if !batch.is_empty() {
            let stopped = CancellationToken::new();
            stopped.cancel();
            if let Some(inserted) = self.insert(std::mem::take(&mut batch), stopped).await {
                self.store(&inserted);
            }
        }
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "Nothing committed at shutdown.");
        }
        self.running.store(false, Ordering::SeqCst);
        tracing::info!("Consumer stopped.");
    }

    /// Subscribes again when a subscribed topic missing at the last check (or any, after all
    /// brokers were down) is back.
    async fn resubscribe_if_a_topic_came_back(&self, presence: &mut TopicPresence) {
        if self.notes.take_brokers_lost() {
            presence.forget();
        }
        let Some(held) = self.probe.topics(Duration::from_secs(2)).await else {
            return;
        };
        let now = self.topics.present_in(&held);
        if !presence.came_back(now) {
            return;
        }
        tracing::warn!(
            topics = ?self.topics,
            "A subscribed topic is back after it was missing; subscribing again."
        );
        match subscribe_topics(&self.consumer, &self.topics) {
            Ok(()) => metrics::counter!(crate::metric::RESUBSCRIBED).increment(1),
            Err(error) => tracing::error!(%error, "Subscribing again failed."),
        }
    }

    fn forget_revoked(&self, batch: &mut RawBatch) {
        let revoked: Vec<_> = self
            .notes
            .take_revoked()
            .into_iter()
            .filter_map(|(topic, partition)| Some((self.topics.source(&topic)?, partition)))
            .collect();
        if !revoked.is_empty() {
            let dropped = batch.forget_partitions(&revoked);
            tracing::info!(
                ?revoked,
                dropped,
                "Dropped buffered records of revoked partitions."
            );
        }
    }

    /// Copies one message into the batch; decoding waits for the insert task.
    fn accept(&self, message: KafkaResult<BorrowedMessage<'_>>, batch: &mut RawBatch) {
        match message {
            Ok(message) => {
                let Some(source) = self.topics.source(message.topic()) else {
                    tracing::warn!(topic = message.topic(), "Message from an unexpected topic.");
                    return;
                };
                batch.push(
                    source,
                    message.partition(),
                    message.offset(),
                    message.timestamp().to_millis(),
                    message.key().unwrap_or_default(),
                    message.payload().unwrap_or_default(),
                )
            }
            Err(error) => tracing::warn!(%error, "Kafka consumer error."),
        }
    }

    /// Waits for the previous insert (storing its offsets), then starts inserting `batch`.
    /// Returns false when shutdown interrupted the previous insert.
    async fn dispatch(
        &self,
        batch: &mut RawBatch,
        in_flight: &mut Option<InFlight>,
        shutdown: &CancellationToken,
    ) -> bool {
        if let Some(mut handle) = in_flight.take() {
            let outcome = match tokio::time::timeout(PAUSE_AFTER, &mut handle).await {
                Ok(outcome) => outcome,
                Err(_) => self.wait_paused(&mut handle, batch).await,
            };
            match outcome {
                Ok(Some(inserted)) => self.store(&inserted),
                _ => return false,
            }
        }
        self.forget_revoked(batch);
        if batch.is_empty() {
            return true;
        }
        let insert = self.insert(std::mem::take(batch), shutdown.clone());
        *in_flight = Some(tokio::spawn(insert));
        true
    }

    /// Decodes the batch, then inserts it, retrying with exponential backoff and jitter until it
    /// succeeds or `shutdown` fires. Owns its inputs so it can run beside the loop.
    fn insert(
        &self,
        raw: RawBatch,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = Option<Batch>> + Send + 'static {
        let client = self.clickhouse.clone();
        let marks = Arc::clone(&self.marks);
        let converter = Arc::clone(&self.converter);
        let dead_letters = self.dead_letters.clone();
        let topics = self.topics.clone();
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.insert_retry_initial_ms),
            Duration::from_millis(self.config.insert_retry_max_ms),
        );
        async move {
            // CPU-bound: off the async workers, so polling goes on beside it.
            let decoding = Arc::clone(&converter);
            let batch = match tokio::task::spawn_blocking(move || raw.decode(&decoding)).await {
                Ok(batch) => batch,
                Err(_) => return None,
            };
            let rows = batch.rows();
            let poison = batch.poison_count();
            if poison > 0 {
                tracing::warn!(poison, "Quarantining undecodable messages.");
                metrics::counter!(crate::metric::POISON_MESSAGES_TOTAL).increment(poison as u64);
            }
            let started = Instant::now();
            let mut progress = RoundsWrite {
                batch_id: marks.batch_id(),
                hours: None,
                inserted: false,
                marked: false,
            };
            loop {
                let attempt = write_batch(
                    &client,
                    &marks,
                    &converter,
                    &dead_letters,
                    &topics,
                    &batch,
                    &mut progress,
                )
                .await;
                match attempt {
                    Ok(()) => break,
                    Err(error) => {
                        metrics::counter!(crate::metric::INSERT_FAILURES_TOTAL).increment(1);
                        if shutdown.is_cancelled() {
                            tracing::warn!(%error, rows, "Insert failed during shutdown; the records will be read again.");
                            return None;
                        }
                        let wait = backoff.next_jittered();
                        tracing::warn!(%error, rows, wait_ms = wait.as_millis() as u64, "Insert failed, retrying.");
                        tokio::select! {
                            _ = shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            metrics::counter!(crate::metric::ROWS_INSERTED_TOTAL).increment(rows as u64);
            metrics::counter!(crate::metric::BATCHES_TOTAL).increment(1);
            metrics::histogram!(crate::metric::INSERT_SECONDS)
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!(crate::metric::BATCH_ROWS).record(rows as f64);
            if poison > 0 {
                // They reached the quarantine table and the dead-letter topic with this batch.
                metrics::counter!(crate::metric::DEAD_LETTERS_TOTAL).increment(poison as u64);
            }
            tracing::debug!(rows, quarantined = batch.poison_count(), "Batch inserted.");
            Some(batch)
        }
    }

    /// Waits for a slow (retrying) insert with fetching paused: the group still sees this
    /// instance poll, so it is not evicted however long ClickHouse is away, and memory stays
    /// bounded. What was fetched before the pause joins `batch`.
    async fn wait_paused(
        &self,
        handle: &mut InFlight,
        batch: &mut RawBatch,
    ) -> Result<Option<Batch>, tokio::task::JoinError> {
        let assignment = self.consumer.assignment().unwrap_or_default();
        if let Err(error) = self.consumer.pause(&assignment) {
            tracing::warn!(%error, "Could not pause fetching.");
        }
        tracing::info!("Fetching paused until the insert in flight succeeds.");
        metrics::gauge!(crate::metric::PAUSED).set(1.0);
        let outcome = loop {
            tokio::select! {
                outcome = &mut *handle => break outcome,
                message = self.consumer.recv() => self.accept(message, batch),
            }
        };
        // Partitions revoked meanwhile cannot be resumed; that is fine.
        let _ = self.consumer.resume(&assignment);
        metrics::gauge!(crate::metric::PAUSED).set(0.0);
        tracing::info!("Fetching resumed.");
        outcome
    }

    /// Stores the offsets of a batch ClickHouse acknowledged, for the next auto-commit.
    fn store(&self, inserted: &Batch) {
        if let Err(error) = store_offsets(&self.consumer, &self.topics, inserted.next_offsets()) {
            // A partition was revoked meanwhile: its rows are in ClickHouse, and the new owner
            // inserts them again; de-duplication by round identity keeps results exact.
            tracing::warn!(%error, "Could not store offsets.");
        }
    }
}
