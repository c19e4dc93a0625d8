//! The Kafka side of the producer. Each upload runs in its own Kafka transaction, so an upload
//! of up to `max_rows_per_transaction` records becomes visible to (read-committed) consumers at
//! once, or none of it: a failed, refused or duplicate upload leaves nothing behind. A longer
//! upload commits in steps of that many records (see [`DeliveryWindow::send`]). Within an
//! upload, a bounded window of unacknowledged deliveries gives backpressure.
//!
//! Deliveries are counted, not awaited one by one: each producer's context counts the
//! acknowledgements of the upload it currently serves (no future, channel or allocation per
//! record), and the window compares that count with what it sent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use sluice_schema::kafka::{DatasetTopics, MetadataProbe};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A producer whose context counts deliveries; shared with blocking calls (commit, abort).
pub type CountingProducer = Arc<ThreadedProducer<Deliveries>>;

/// Counts the acknowledgements of one window (one upload) at a time. Records carry their
/// window's number as the delivery opaque, and the count shares one atomic word with the
/// number of the window it belongs to, so a late acknowledgement of an earlier window is never
/// counted for the next.
#[derive(Default)]
pub struct Deliveries {
    /// `window << COUNT_BITS | acknowledged`.
    acks: AtomicU64,
    failed: AtomicBool,
    /// The first failed delivery, with its window.
    first_error: Mutex<Option<(u64, KafkaError)>>,
    /// Set when the producer lost its brokers: a broker that restarted may have lost the
    /// producer's transactional id, and the next transaction on it would fail only after the
    /// delivery timeout (`TransactionalIdNotFound`), so the pool replaces it first.
    brokers_lost: AtomicBool,
}

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const WINDOW_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

impl Deliveries {
    /// Starts counting a new window; returns its number.
    fn open_window(&self) -> usize {
        let window = ((self.acks.load(Ordering::Acquire) >> COUNT_BITS) + 1) & WINDOW_MASK;
        self.acks.store(window << COUNT_BITS, Ordering::Release);
        self.failed.store(false, Ordering::Release);
        window as usize
    }

    fn window(&self) -> u64 {
        self.acks.load(Ordering::Acquire) >> COUNT_BITS
    }

    fn acknowledged(&self) -> u64 {
        self.acks.load(Ordering::Acquire) & COUNT_MASK
    }

    /// The first failed delivery of the current window, if any.
    fn error(&self) -> Option<KafkaError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        match &*first {
            Some((window, error)) if *window == self.window() => Some(error.clone()),
            _ => None,
        }
    }
}

impl Deliveries {
    fn brokers_lost(&self) -> bool {
        self.brokers_lost.load(Ordering::Acquire)
    }
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            self.brokers_lost.store(true, Ordering::Release);
        }
        tracing::warn!(%error, reason, "Kafka client error.");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, window: usize) {
        let window = window as u64;
        // The error first, so a window that sees every record counted also sees the failure.
        if let Err((error, _)) = result {
            if self.window() == window {
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if !matches!(&*first, Some((w, _)) if *w == window) {
                    *first = Some((window, error.clone()));
                }
                self.failed.store(true, Ordering::Release);
            }
        }
        let _ = self
            .acks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |acks| {
                (acks >> COUNT_BITS == window).then_some(acks + 1)
            });
    }
}

fn create_producer(config: &ClientConfig) -> Result<CountingProducer, KafkaError> {
    Ok(Arc::new(config.create_with_context(Deliveries::default())?))
}

/// Where one dataset's uploads go: its records' topic and its rejects' topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub records: String,
    pub rejects: String,
}

impl Topics {
    /// The topics of a dataset other than `game_rounds` (whose are configured): `<prefix><name>`
    /// and `<prefix><name>.rejects`, `prefix` being the service's `…_DATASET_TOPIC_PREFIX`.
    pub fn of_dataset(prefix: &str, name: &str) -> Topics {
        let DatasetTopics {
            records, rejects, ..
        } = DatasetTopics::of(prefix, name);
        Topics { records, rejects }
    }
}

/// What a [`RoundProducer`] needs, built from each service's configuration: the producer's
/// (`Config::kafka`) or the watcher's.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Kafka bootstrap servers, comma separated.
    pub brokers: String,
    /// Topic the game rounds are written to.
    pub topic: String,
    /// Topic every rejected row is kept on, in the same transaction.
    pub rejects_topic: String,
    /// Compression of record batches.
    pub compression: Compression,
    /// How long Kafka may take to acknowledge a record (librdkafka `message.timeout.ms`); also
    /// the timeout of transactional calls.
    pub delivery_timeout_ms: u64,
    /// Whether each upload runs in a Kafka transaction of its own.
    pub transactional: bool,
    /// The `transactional.id`s are `<prefix>-<slot>`.
    pub transactional_id_prefix: String,
    /// Kafka `transaction.timeout.ms`.
    pub transaction_timeout_ms: u64,
    /// Records after which a long upload commits and goes on in a new transaction.
    pub max_rows_per_transaction: u64,
    /// Uploads at once, each on a producer (and transactional id) of its own.
    pub slots: usize,
}

impl ProducerSettings {
    /// Makes sure the rounds and the rejects topics exist, and those of `others` (other
    /// datasets), creating a missing one with `partitions` and `replication_factor`. Kafka being
    /// down at start-up is not fatal (`/ready` says so, and uploads fail until it is back): the
    /// failure is logged, the rest skipped.
    pub async fn ensure_topics(&self, others: &[Topics], partitions: i32, replication_factor: i32) {
        let others = others.iter().flat_map(|t| [&t.records, &t.rejects]);
        for topic in [&self.topic, &self.rejects_topic].into_iter().chain(others) {
            let created = sluice_schema::kafka::ensure_topic(
                &self.brokers,
                topic,
                partitions,
                replication_factor,
            )
            .await;
            if let Err(error) = created {
                tracing::warn!(%error, %topic, "Could not make sure the topic exists.");
                break;
            }
        }
    }
}

/// Produces uploads to the topic; shared by every request.
#[derive(Clone)]
pub struct RoundProducer {
    /// Asks the brokers whether they answer (readiness).
    probe: MetadataProbe,
    topic: String,
    rejects_topic: String,
    pool: Arc<ProducerPool>,
}

impl RoundProducer {
    pub fn new(settings: &ProducerSettings) -> Result<RoundProducer, KafkaError> {
        let base = base_config(settings);
        let probe = MetadataProbe::new(&base)?;
        let slots = settings.slots.max(1);
        let pool = Arc::new(ProducerPool {
            base,
            transactional: settings.transactional,
            id_prefix: settings.transactional_id_prefix.clone(),
            timeout: Duration::from_millis(settings.delivery_timeout_ms),
            slots: Mutex::new(vec![Slot::Empty; slots]),
            permits: Arc::new(Semaphore::new(slots)),
            transaction_timeout_ms: settings.transaction_timeout_ms,
            rows_per_transaction: settings.max_rows_per_transaction.max(1),
        });
        Ok(RoundProducer {
            probe,
            topic: settings.topic.clone(),
            rejects_topic: settings.rejects_topic.clone(),
            pool,
        })
    }

    /// Starts an upload: takes a producer of its own (waiting while `max_concurrent_uploads`
    /// uploads run) and, when transactional, begins its transaction.
    pub async fn begin_upload(&self) -> Result<UploadTransaction, KafkaError> {
        let permit = self.pool.permit().await?;
        self.begin(permit).await
    }

    /// [`begin_upload`](Self::begin_upload), waiting at most `wait` for a free slot: `None`
    /// if every slot stayed busy (a request then answers 503 at once rather than queue behind
    /// uploads that may take hours).
    pub async fn try_begin_upload(
        &self,
        wait: Duration,
    ) -> Result<Option<UploadTransaction>, KafkaError> {
        match tokio::time::timeout(wait, self.pool.permit()).await {
            Ok(permit) => self.begin(permit?).await.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// How many uploads may run at once.
    pub fn slots(&self) -> usize {
        self.pool
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    async fn begin(&self, permit: OwnedSemaphorePermit) -> Result<UploadTransaction, KafkaError> {
        let lease = self.pool.lease(permit).await?;
        let producer = lease.producer.clone().expect("a lease holds a producer");
        if self.pool.transactional {
            let begun = producer.clone();
            tokio::task::spawn_blocking(move || begun.begin_transaction())
                .await
                .map_err(|_| KafkaError::Canceled)??;
        }
        Ok(UploadTransaction {
            lease: Some(lease),
            producer,
            topic: self.topic.clone(),
            rejects_topic: self.rejects_topic.clone(),
        })
    }

    /// Initialises every transactional id of the pool now (`<prefix>-<slot>` for each slot),
    /// which fences a previous process with the same ids and aborts whatever transaction it
    /// left open. Without this a slot is initialised only when first used, and a transaction
    /// left open on a slot not used again would hold back read-committed consumers until the
    /// broker times it out. Call before the first upload.
    pub async fn init_all_transactions(&self) -> Result<(), KafkaError> {
        let pool = &self.pool;
        if !pool.transactional {
            return Ok(());
        }
        let slots = pool.slots.lock().unwrap_or_else(|e| e.into_inner()).len();
        let mut leases = Vec::with_capacity(slots);
        for _ in 0..slots {
            leases.push(pool.acquire().await?);
        }
        Ok(())
    }

    /// Whether the brokers answer a metadata request (for every topic: asking for one by name
    /// could make a broker auto-create it) within `timeout`.
    pub async fn is_ready(&self, timeout: Duration) -> bool {
        self.probe.answers(timeout).await
    }
}

/// The largest Kafka message the producer sends (librdkafka `message.max.bytes`).
pub const MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Room in a message, besides its value, for its key, headers and framing.
pub const MESSAGE_OVERHEAD_BYTES: usize = 1_024;

/// Settings shared by every producer: `acks=all`, idempotence, compression, batching for
/// throughput.
fn base_config(settings: &ProducerSettings) -> ClientConfig {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &settings.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", settings.compression.as_str())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        // librdkafka's default, below Kafka's own (1 048 588): every record is checked against
        // `max_record_bytes` first, which `Config::validate` keeps below this.
        .set("message.max.bytes", MESSAGE_MAX_BYTES.to_string())
        .set(
            "message.timeout.ms",
            settings.delivery_timeout_ms.to_string(),
        );
    base
}

/// Kafka record-batch compression codecs (librdkafka `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Lz4,
    Snappy,
    Gzip,
    None,
}

impl Compression {
    /// The librdkafka name.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Snappy => "snappy",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }
}

/// At most `max_concurrent_uploads` producers, one per running upload (each counts its own
/// upload's deliveries). When transactional, they have stable ids (`<prefix>-<slot>`): a
/// restarted producer reusing a slot fences, and so aborts, whatever transaction its
/// predecessor left open.
struct ProducerPool {
    base: ClientConfig,
    transactional: bool,
    id_prefix: String,
    timeout: Duration,
    transaction_timeout_ms: u64,
    /// Records after which a long upload commits what it sent and goes on in a new transaction.
    rows_per_transaction: u64,
    slots: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
}

/// A slot of the pool. A leased slot must never get a second producer: with the same
/// `transactional.id`, creating one would fence the upload running on it.
#[derive(Clone)]
enum Slot {
    /// No producer yet, or its producer was dropped after a failure.
    Empty,
    Ready(CountingProducer),
    Leased,
}

struct Lease {
    slot: usize,
    producer: Option<CountingProducer>,
    pool: Arc<ProducerPool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A producer comes back only from a finished transaction (see `UploadTransaction`).
        if let Some(producer) = self.producer.take() {
            let mut slots = self.pool.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots[self.slot] = Slot::Ready(producer);
        } else {
            let mut slots = self.pool.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots[self.slot] = Slot::Empty;
        }
    }
}

impl ProducerPool {
    async fn acquire(self: &Arc<Self>) -> Result<Lease, KafkaError> {
        let permit = self.permit().await?;
        self.lease(permit).await
    }

    /// Waits for a free slot.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, KafkaError> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| KafkaError::Canceled)
    }

    /// The producer of the free slot `permit` stands for.
    async fn lease(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Result<Lease, KafkaError> {
        let (slot, ready, stale) = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // A permit guarantees a slot that is not leased: ready, or empty.
            let slot = slots
                .iter()
                .position(|s| matches!(s, Slot::Ready(_)))
                .or_else(|| slots.iter().position(|s| matches!(s, Slot::Empty)))
                .expect("a slot that is not leased");
            match std::mem::replace(&mut slots[slot], Slot::Leased) {
                // A producer that lost its brokers since its last use starts afresh (a new
                // producer with the same id, initialised again: see `Deliveries`).
                Slot::Ready(producer) if producer.context().brokers_lost() => {
                    (slot, None, Some(producer))
                }
                Slot::Ready(producer) => (slot, Some(producer), None),
                _ => (slot, None, None),
            }
        };
        if let Some(stale) = stale {
            tracing::info!(slot, "Replacing a producer that lost its brokers.");
            // Dropping a producer waits for its threads: not on an async worker.
            tokio::task::spawn_blocking(move || drop(stale));
        }
        let producer = match ready {
            Some(producer) => producer,
            None => match self.create(slot).await {
                Ok(producer) => producer,
                Err(error) => {
                    let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots[slot] = Slot::Empty;
                    return Err(error);
                }
            },
        };
        Ok(Lease {
            slot,
            producer: Some(producer),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    async fn create(&self, slot: usize) -> Result<CountingProducer, KafkaError> {
        if !self.transactional {
            return create_producer(&self.base);
        }
        let mut config = self.base.clone();
        config
            .set("transactional.id", format!("{}-{slot}", self.id_prefix))
            .set(
                "transaction.timeout.ms",
                self.transaction_timeout_ms.to_string(),
            );
        let producer = create_producer(&config)?;
        let timeout = self.timeout;
        let initialised = producer.clone();
        tokio::task::spawn_blocking(move || initialised.init_transactions(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)??;
        Ok(producer)
    }
}

/// One upload's transaction. `commit` makes its records visible; `abort` (or dropping it, e.g.
/// when the client disconnects) discards them.
pub struct UploadTransaction {
    lease: Option<Lease>,
    producer: CountingProducer,
    topic: String,
    rejects_topic: String,
}

impl UploadTransaction {
    /// The same transaction, its records and rejects sent to `topics` (another dataset's).
    pub fn to(mut self, topics: Topics) -> UploadTransaction {
        self.topic = topics.records;
        self.rejects_topic = topics.rejects;
        self
    }

    /// A window of at most `max_in_flight` unacknowledged records. When transactional, every
    /// `max_rows_per_transaction` records it commits what was sent and begins the next
    /// transaction on the same producer (see [`DeliveryWindow::send`]).
    pub fn window(&self, max_in_flight: usize) -> DeliveryWindow<'_> {
        let window = self.producer.context().open_window();
        let rows_per_transaction = self
            .lease
            .as_ref()
            .filter(|lease| lease.pool.transactional)
            .map(|lease| (lease.pool.rows_per_transaction, lease.pool.timeout));
        DeliveryWindow {
            producer: &self.producer,
            window,
            topic: &self.topic,
            rejects_topic: &self.rejects_topic,
            sent: 0,
            max_in_flight: max_in_flight.max(1) as u64,
            rows_per_transaction,
            since_commit: 0,
        }
    }

    /// Makes every record of the upload visible, atomically.
    pub async fn commit(mut self) -> Result<(), KafkaError> {
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        if !lease.pool.transactional {
            // Every record was acknowledged already (`DeliveryWindow::finish`).
            return Ok(());
        }
        let timeout = lease.pool.timeout;
        let producer = self.producer.clone();
        let result = tokio::task::spawn_blocking(move || producer.commit_transaction(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)?;
        if result.is_err() {
            // Not reusable in an unknown state: the slot gets a fresh producer next time.
            lease.producer = None;
        }
        count_transaction(if result.is_ok() {
            "committed"
        } else {
            "commit_failed"
        });
        result
    }

    /// Discards every record of the upload.
    pub async fn abort(mut self) {
        if let Some(lease) = self.lease.take() {
            abort(lease).await;
        }
    }
}

impl Drop for UploadTransaction {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(abort(lease));
            }
        }
    }
}

async fn abort(mut lease: Lease) {
    if !lease.pool.transactional {
        // Nothing to take back: without transactions, what was sent stays sent.
        return;
    }
    let timeout = lease.pool.timeout;
    let Some(producer) = lease.producer.clone() else {
        return;
    };
    let result = tokio::task::spawn_blocking(move || producer.abort_transaction(timeout)).await;
    if matches!(result, Ok(Ok(()))) {
        count_transaction("aborted");
    } else {
        tracing::warn!("Aborting an upload's transaction failed; its slot gets a fresh producer.");
        count_transaction("abort_failed");
        lease.producer = None;
    }
}

/// How an upload's (last) transaction ended: `committed`, `commit_failed`, `aborted` or
/// `abort_failed`. Step commits of long uploads are counted apart
/// (`sluice_producer_intermediate_commits_total`).
fn count_transaction(outcome: &'static str) {
    metrics::counter!(crate::metric::TRANSACTIONS_TOTAL, "outcome" => outcome).increment(1);
}

/// Shows every outcome of [`count_transaction`] at 0 from the start, for dashboards.
pub fn register_transaction_outcomes() {
    sluice_schema::telemetry::prometheus();
    for outcome in ["committed", "commit_failed", "aborted", "abort_failed"] {
        metrics::counter!(crate::metric::TRANSACTIONS_TOTAL, "outcome" => outcome).increment(0);
    }
}

/// Records handed to Kafka by one upload. `send` waits while the window is full; `finish`
/// waits for every acknowledgement. The first failed delivery fails the whole window.
pub struct DeliveryWindow<'a> {
    producer: &'a CountingProducer,
    window: usize,
    topic: &'a str,
    rejects_topic: &'a str,
    sent: u64,
    max_in_flight: u64,
    /// Records per transaction and the timeout of transactional calls, when transactional.
    rows_per_transaction: Option<(u64, Duration)>,
    since_commit: u64,
}

/// How long a full window (or a full librdkafka queue) waits before looking again.
const WINDOW_FULL_WAIT: Duration = Duration::from_millis(1);

impl DeliveryWindow<'_> {
    /// Hands one record to Kafka (the payload is copied), waiting for room in the window.
    ///
    /// A transaction must not outlive the brokers' `transaction.max.timeout.ms`, and while it
    /// is open, read-committed consumers read nothing behind it on its partitions. So an upload
    /// longer than `max_rows_per_transaction` records commits at each such boundary, once
    /// every record so far is acknowledged, and goes on in a new transaction: an upload of
    /// up to that many records stays all or nothing, and a failed longer one leaves its
    /// committed part visible (which a retry makes whole; round identity de-duplicates).
    pub async fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), KafkaError> {
        self.send_to(self.topic, key, payload).await
    }

    /// Hands one rejected row to the rejects topic, in the same transaction.
    pub async fn send_reject(&mut self, upload_id: &str, reject: &[u8]) -> Result<(), KafkaError> {
        self.send_to(self.rejects_topic, upload_id.as_bytes(), reject)
            .await
    }

    async fn count_towards_commit(&mut self) -> Result<(), KafkaError> {
        self.since_commit += 1;
        if let Some((rows, timeout)) = self.rows_per_transaction {
            if self.since_commit >= rows {
                self.commit_and_continue(timeout).await?;
            }
        }
        Ok(())
    }

    /// Commits everything sent so far and begins the next transaction on the same producer.
    async fn commit_and_continue(&mut self, timeout: Duration) -> Result<(), KafkaError> {
        self.settle().await?;
        let producer = Arc::clone(self.producer);
        tokio::task::spawn_blocking(move || {
            producer.commit_transaction(timeout)?;
            producer.begin_transaction()
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        self.since_commit = 0;
        metrics::counter!(crate::metric::INTERMEDIATE_COMMITS_TOTAL).increment(1);
        Ok(())
    }

    /// Waits until Kafka acknowledged every record sent so far.
    async fn settle(&self) -> Result<(), KafkaError> {
        let deliveries = self.producer.context();
        while deliveries.acknowledged() < self.sent {
            if let Some(error) = deliveries.error() {
                return Err(error);
            }
            tokio::time::sleep(WINDOW_FULL_WAIT).await;
        }
        deliveries.error().map_or(Ok(()), Err)
    }

    async fn send_to(&mut self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), KafkaError> {
        let deliveries = self.producer.context();
        if let Some(error) = deliveries.error() {
            return Err(error);
        }
        while self.sent.saturating_sub(deliveries.acknowledged()) >= self.max_in_flight {
            tokio::time::sleep(WINDOW_FULL_WAIT).await;
            if let Some(error) = deliveries.error() {
                return Err(error);
            }
        }
        let mut record = BaseRecord::with_opaque_to(topic, self.window)
            .key(key)
            .payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return self.count_towards_commit().await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(WINDOW_FULL_WAIT).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits until Kafka acknowledged every record sent.
    pub async fn finish(self) -> Result<(), KafkaError> {
        self.settle().await
    }
}
