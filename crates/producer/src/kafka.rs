//! The Kafka side of the producer. Each upload runs in its own Kafka transaction, so all of it
//! becomes visible to (read-committed) consumers at once, or none of it: a failed, refused or
//! duplicate upload leaves nothing behind. Within an upload, a bounded window of unacknowledged
//! deliveries gives backpressure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;

/// Produces uploads to the topic; shared by every request.
#[derive(Clone)]
pub struct RoundProducer {
    /// For metadata (readiness) and, when transactions are off, for every upload.
    plain: FutureProducer,
    topic: String,
    rejects_topic: String,
    transactions: Option<Arc<TransactionPool>>,
}

impl RoundProducer {
    pub fn new(config: &Config) -> Result<RoundProducer, KafkaError> {
        let base = base_config(config);
        let plain = base.create()?;
        let transactions = config.transactional.then(|| {
            Arc::new(TransactionPool {
                base,
                id_prefix: config.transactional_id_prefix(),
                timeout: Duration::from_millis(config.delivery_timeout_ms),
                slots: Mutex::new(vec![None; config.max_concurrent_uploads.max(1)]),
                permits: Arc::new(Semaphore::new(config.max_concurrent_uploads.max(1))),
                transaction_timeout_ms: config.transaction_timeout_ms,
            })
        });
        Ok(RoundProducer {
            plain,
            topic: config.topic.clone(),
            rejects_topic: config.rejects_topic(),
            transactions,
        })
    }

    /// Starts an upload: takes a transactional producer (waiting while `max_concurrent_uploads`
    /// uploads run) and begins its transaction.
    pub async fn begin_upload(&self) -> Result<UploadTransaction, KafkaError> {
        let Some(pool) = &self.transactions else {
            return Ok(UploadTransaction {
                lease: None,
                producer: self.plain.clone(),
                topic: self.topic.clone(),
                rejects_topic: self.rejects_topic.clone(),
            });
        };
        let lease = pool.acquire().await?;
        let producer = lease.producer.clone().expect("a lease holds a producer");
        let begun = producer.clone();
        tokio::task::spawn_blocking(move || begun.begin_transaction())
            .await
            .map_err(|_| KafkaError::Canceled)??;
        Ok(UploadTransaction {
            lease: Some(lease),
            producer,
            topic: self.topic.clone(),
            rejects_topic: self.rejects_topic.clone(),
        })
    }

    /// Whether the brokers answer a metadata request for the topic within `timeout`.
    pub async fn is_ready(&self, timeout: Duration) -> bool {
        let producer = self.plain.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok_and(|m| m.topics().iter().any(|t| t.error().is_none()))
        })
        .await
        .unwrap_or(false)
    }
}

/// Settings shared by every producer: `acks=all`, idempotence, lz4, batching for throughput.
fn base_config(config: &Config) -> ClientConfig {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &config.kafka_brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
    base
}

/// At most `max_concurrent_uploads` transactional producers with stable ids
/// (`<prefix>-<slot>`): a restarted producer reusing a slot fences, and so aborts, whatever
/// transaction its predecessor left open.
struct TransactionPool {
    base: ClientConfig,
    id_prefix: String,
    timeout: Duration,
    transaction_timeout_ms: u64,
    slots: Mutex<Vec<Option<FutureProducer>>>,
    permits: Arc<Semaphore>,
}

struct Lease {
    slot: usize,
    producer: Option<FutureProducer>,
    pool: Arc<TransactionPool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A producer comes back only from a finished transaction (see `UploadTransaction`).
        if let Some(producer) = self.producer.take() {
            let mut slots = self.pool.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots[self.slot] = Some(producer);
        }
    }
}

impl TransactionPool {
    async fn acquire(self: &Arc<Self>) -> Result<Lease, KafkaError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| KafkaError::Canceled)?;
        let (slot, ready) = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.iter().position(Option::is_some) {
                Some(slot) => (slot, slots[slot].take()),
                None => {
                    // A permit guarantees a free slot: one that never had, or lost, a producer.
                    let slot = slots.iter().position(Option::is_none).expect("a free slot");
                    (slot, None)
                }
            }
        };
        let producer = match ready {
            Some(producer) => producer,
            None => self.create(slot).await?,
        };
        Ok(Lease {
            slot,
            producer: Some(producer),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    async fn create(&self, slot: usize) -> Result<FutureProducer, KafkaError> {
        let mut config = self.base.clone();
        config
            .set("transactional.id", format!("{}-{slot}", self.id_prefix))
            .set(
                "transaction.timeout.ms",
                self.transaction_timeout_ms.to_string(),
            );
        let producer: FutureProducer = config.create()?;
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
    producer: FutureProducer,
    topic: String,
    rejects_topic: String,
}

impl UploadTransaction {
    /// A window of at most `max_in_flight` unacknowledged records.
    pub fn window(&self, max_in_flight: usize) -> DeliveryWindow<'_> {
        DeliveryWindow {
            producer: &self.producer,
            topic: &self.topic,
            rejects_topic: &self.rejects_topic,
            in_flight: FuturesUnordered::new(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Makes every record of the upload visible, atomically.
    pub async fn commit(mut self) -> Result<(), KafkaError> {
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        let timeout = lease.pool.timeout;
        let producer = self.producer.clone();
        let result = tokio::task::spawn_blocking(move || producer.commit_transaction(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)?;
        if result.is_err() {
            // Not reusable in an unknown state: the slot gets a fresh producer next time.
            lease.producer = None;
        }
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
    let timeout = lease.pool.timeout;
    let Some(producer) = lease.producer.clone() else {
        return;
    };
    let result = tokio::task::spawn_blocking(move || producer.abort_transaction(timeout)).await;
    if !matches!(result, Ok(Ok(()))) {
        tracing::warn!("Aborting an upload's transaction failed; its slot gets a fresh producer.");
        lease.producer = None;
    }
}

/// Records handed to Kafka by one upload. `send` waits while the window is full; `finish`
/// waits for every acknowledgement. The first failed delivery fails the whole window.
pub struct DeliveryWindow<'a> {
    producer: &'a FutureProducer,
    topic: &'a str,
    rejects_topic: &'a str,
    in_flight: FuturesUnordered<DeliveryFuture>,
    max_in_flight: usize,
}

impl DeliveryWindow<'_> {
    /// Hands one record to Kafka (the payload is copied), waiting for room in the window.
    pub async fn send(&mut self, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        self.send_to(self.topic, key, payload).await
    }

    /// Hands one rejected row to the rejects topic, in the same transaction.
    pub async fn send_reject(&mut self, upload_id: &str, reject: &[u8]) -> Result<(), KafkaError> {
        self.send_to(self.rejects_topic, upload_id, reject).await
    }

    async fn send_to(&mut self, topic: &str, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_one().await?;
        }
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    if self.in_flight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        self.settle_one().await?;
                    }
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits until Kafka acknowledged every record sent.
    pub async fn finish(mut self) -> Result<(), KafkaError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), KafkaError> {
        match self.in_flight.next().await {
            Some(Ok(Ok(_))) | None => Ok(()),
            Some(Ok(Err((error, _)))) => Err(error),
            Some(Err(_canceled)) => Err(KafkaError::Canceled),
        }
    }
}
