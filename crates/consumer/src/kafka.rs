//! The Kafka side of the consumer: a group member that stores offsets by hand (only after the
//! insert) and lets librdkafka auto-commit what was stored.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::batcher::Poison;

use crate::config::Config;

/// Notes which partitions a rebalance took away, for the ingest loop to drop their records.
#[derive(Default, Clone)]
pub struct RebalanceNotes {
    revoked: Arc<Mutex<Vec<i32>>>,
}

impl RebalanceNotes {
    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for RebalanceNotes {}

impl ConsumerContext for RebalanceNotes {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let revoked: Vec<i32> = partitions
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(?revoked, "Partitions revoked.");
            self.revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(revoked);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned: Vec<i32> = partitions
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(?assigned, "Partitions assigned.");
        }
    }
}

pub type RoundConsumer = StreamConsumer<RebalanceNotes>;

/// Joins the consumer group and subscribes to the topic.
pub fn subscribe(config: &Config, notes: RebalanceNotes) -> KafkaResult<RoundConsumer> {
    let consumer: RoundConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        // Uploads are transactions: only committed ones are read, aborted ones never.
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "65536")
        .create_with_context(notes)?;
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

/// Stores `next_offsets` (partition → next offset to read) for the next auto-commit.
pub fn store_offsets(
    consumer: &RoundConsumer,
    topic: &str,
    next_offsets: impl Iterator<Item = (i32, i64)>,
) -> KafkaResult<()> {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in next_offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.store_offsets(&list)
}

/// The dead-letter topic: undecodable messages, unchanged, with why and where in headers
/// (`sluice-error`, `sluice-source-topic`, `sluice-source-partition`, `sluice-source-offset`).
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(config: &Config) -> KafkaResult<DeadLetters> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: config.dead_letter_topic(),
        })
    }

    /// Sends every message and waits until Kafka acknowledged them all.
    pub async fn send_all<'a>(
        &self,
        source_topic: &str,
        poison: impl Iterator<Item = &'a Poison>,
    ) -> Result<(), KafkaError> {
        for message in poison {
            let (partition, offset) = (message.partition.to_string(), message.offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "sluice-error",
                    value: Some(message.error.as_bytes()),
                })
                .insert(Header {
                    key: "sluice-source-topic",
                    value: Some(source_topic.as_bytes()),
                })
                .insert(Header {
                    key: "sluice-source-partition",
                    value: Some(partition.as_bytes()),
                })
                .insert(Header {
                    key: "sluice-source-offset",
                    value: Some(offset.as_bytes()),
                });
            let record = FutureRecord::to(&self.topic)
                .key(&message.key)
                .payload(&message.payload)
                .headers(headers);
            self.producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}
