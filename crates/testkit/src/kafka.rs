//! Kafka helpers for assertions, independent of the code under test.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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
