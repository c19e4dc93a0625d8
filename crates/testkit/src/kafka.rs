//! Kafka helpers for assertions, independent of the code under test.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::stack::Stack;

/// Creates a topic on the test broker (topics are not auto-created).
pub async fn create_topic(name: &str, partitions: i32) {
    sluice_schema::kafka::ensure_topic(&Stack::get().kafka_brokers, name, partitions, 1)
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
}

/// Sum over `partitions` of the offsets `group` committed on `topic`: once a consumer group
/// has caught up, this equals the number of messages produced to the topic.
pub async fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &Stack::get().kafka_brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a Kafka client");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            })
            .sum()
    })
    .await
    .expect("the offset query task")
}

/// Produces `payloads` (keyed by `key`) to `topic` and waits for every acknowledgement.
pub async fn produce(topic: &str, key: &str, payloads: &[Vec<u8>]) {
    produce_at(&Stack::get().kafka_brokers, topic, key, payloads).await;
}

/// [`produce`] to the brokers at `brokers`.
pub async fn produce_at(brokers: &str, topic: &str, key: &str, payloads: &[Vec<u8>]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "10")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a Kafka producer");
    let mut deliveries = Vec::with_capacity(payloads.len());
    for payload in payloads {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => panic!("producing to {topic}: {error}"),
        }
    }
    for delivery in futures::future::join_all(deliveries).await {
        match delivery {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => panic!("producing to {topic}: {error}"),
            Err(_) => panic!("producing to {topic}: delivery canceled"),
        }
    }
}

/// A message as read back: its key and payload.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Header names and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads up to `count` messages from the start of every partition of `topic`, for at most
/// `timeout`, read-committed.
pub async fn consume(topic: &str, partitions: i32, count: usize, timeout: Duration) -> Vec<Record> {
    consume_at(
        &Stack::get().kafka_brokers,
        topic,
        partitions,
        count,
        timeout,
    )
    .await
}

/// [`consume`] from the brokers at `brokers`.
pub async fn consume_at(
    brokers: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", crate::unique("testkit_reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&list).expect("assigning partitions");
    let mut payloads = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while payloads.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => payloads.push(Record {
                key: message.key().unwrap_or_default().to_vec(),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Ok(Err(error)) => panic!("consuming {topic}: {error}"),
            Err(_) => break,
        }
    }
    payloads
}
