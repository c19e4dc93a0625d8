//! The Kafka side of the consumer: a group member that stores offsets by hand (only after the
//! insert) and lets librdkafka auto-commit what was stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};

use crate::batcher::Source;
use crate::config::Config;

/// The names of the topics the consumer reads.
#[derive(Debug, Clone)]
pub struct Topics {
    pub rounds: String,
    pub rejects: String,
}

impl Topics {
    pub fn new(config: &Config) -> Topics {
        Topics {
            rounds: config.topic.clone(),
            rejects: config.rejects_topic(),
        }
    }

    pub fn name(&self, source: Source) -> &str {
        match source {
            Source::Rounds => &self.rounds,
            Source::Rejects => &self.rejects,
        }
    }

    pub fn source(&self, topic: &str) -> Option<Source> {
        if topic == self.rounds {
            Some(Source::Rounds)
        } else if topic == self.rejects {
            Some(Source::Rejects)
        } else {
            None
        }
    }

    /// Whether the rounds and the rejects topic are among the topics `held`
    /// ([`MetadataProbe::topics`](sluice_schema::kafka::MetadataProbe::topics)).
    pub fn present_in(&self, held: &HashSet<String>) -> [bool; 2] {
        [held.contains(&self.rounds), held.contains(&self.rejects)]
    }
}

/// Notes which partitions a rebalance took away, for the ingest loop to drop their records, and
/// checks every topic's partition count in each statistics report against the configured one.
#[derive(Default, Clone)]
pub struct RebalanceNotes {
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// The configured partition count of every topic read (0: not checked).
    expected_partitions: i32,
    /// The count last seen per topic, so a change is logged once.
    seen_partitions: Arc<Mutex<HashMap<String, usize>>>,
    /// Every broker connection was down since the last [`take_brokers_lost`](Self::take_brokers_lost).
    brokers_lost: Arc<std::sync::atomic::AtomicBool>,
}

impl RebalanceNotes {
    /// Notes that check each topic against `expected_partitions` (the configured count).
    pub fn new(expected_partitions: i32) -> RebalanceNotes {
        RebalanceNotes {
            expected_partitions,
            ..RebalanceNotes::default()
        }
    }

    /// A topic's partition count as the brokers report it: a gauge, and an error in the log
    /// whenever it changes to another count than configured (a broker that lost its data
    /// auto-creates topics with its own default, and keys then land elsewhere).
    fn check_partitions(&self, topic: &str, found: usize) {
        metrics::gauge!(crate::metric::TOPIC_PARTITIONS, "topic" => topic.to_owned())
            .set(found as f64);
        let mut seen = self
            .seen_partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.insert(topic.to_owned(), found) == Some(found) || self.expected_partitions <= 0 {
            return;
        }
        let expected = self.expected_partitions as usize;
        if found != expected {
            tracing::error!(
                topic,
                expected,
                found,
                "Topic has another partition count than configured: recreate it, or set the \
                 configured count to match."
            );
        }
    }

    /// Whether every broker connection went down since the last call (a broker that comes back
    /// may have lost its topics: see [`TopicPresence`]).
    pub fn take_brokers_lost(&self) -> bool {
        self.brokers_lost
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Partitions (topic, partition) revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for RebalanceNotes {
    /// librdkafka's global errors, logged as its default does; "all brokers down" is noted.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_lost
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        tracing::error!("librdkafka: {error}: {reason}");
    }

    /// Every `statistics.interval.ms`, librdkafka's statistics: the lag of each partition this
    /// instance is assigned (`desired`; -1, not known yet, is skipped), and each topic's
    /// partition count (from metadata, refreshed every 10 s: also after a broker came back).
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            let partitions = stats.partitions.keys().filter(|p| **p >= 0).count();
            if partitions > 0 {
                self.check_partitions(topic, partitions);
            }
            for (partition, stats) in &stats.partitions {
                if *partition < 0 || !stats.desired || stats.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(crate::metric::LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(stats.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for RebalanceNotes {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let revoked: Vec<(String, i32)> = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(?revoked, "Partitions revoked.");
            // Their new owner reports their lag from now on; summed over instances it counts once.
            for (topic, partition) in &revoked {
                metrics::gauge!(crate::metric::LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(0.0);
            }
            self.revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(revoked);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned: Vec<(String, i32)> = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(?assigned, "Partitions assigned.");
        }
    }
}

pub type RoundConsumer = StreamConsumer<RebalanceNotes>;

/// Whether each subscribed topic (rounds, rejects) existed when last asked, to notice one that
/// comes back: a broker that restarted without its data, a topic deleted and created again.
/// librdkafka's group does not always take such a topic up again (seen on tansu: a recreated
/// topic stayed unassigned for minutes, though metadata showed it), so the consumer subscribes
/// again, which makes the group rebalance and assign its partitions.
#[derive(Debug)]
pub struct TopicPresence {
    last: [bool; 2],
}

impl Default for TopicPresence {
    /// Both topics present: the consumer creates them before it subscribes.
    fn default() -> TopicPresence {
        TopicPresence { last: [true; 2] }
    }
}

impl TopicPresence {
    /// Counts every topic as missing (after all brokers were down: each may come back new).
    pub fn forget(&mut self) {
        self.last = [false; 2];
    }

    /// Records `now` and tells whether a topic missing last time is there again.
    pub fn came_back(&mut self, now: [bool; 2]) -> bool {
        let back = self.last.iter().zip(now).any(|(was, is)| !was && is);
        self.last = now;
        back
    }
}

/// Subscribes `consumer` to the rounds and rejects topics (again: the group rebalances).
pub fn subscribe_topics(consumer: &RoundConsumer, topics: &Topics) -> KafkaResult<()> {
    consumer.subscribe(&[&topics.rounds, &topics.rejects])
}

/// A member of consumer group `group`: read-committed (uploads are transactions: only
/// committed ones are read, aborted ones never), from the earliest offset of a new group,
/// offsets auto-committed once the ingest stores them (after their insert).
pub fn group_member(config: &Config, group: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", config.session_timeout_ms.to_string());
    client
}

/// Joins the consumer group and subscribes to the rounds and rejects topics.
pub fn subscribe(config: &Config, notes: RebalanceNotes) -> KafkaResult<RoundConsumer> {
    let consumer: RoundConsumer = group_member(config, &config.group_id)
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .set("fetch.max.bytes", "52428800")
        // Keep fetching ahead until the local queue holds this many messages per partition
        // (librdkafka's default, 100 000, stalls a fast consumer on every refill: measured on
        // tansu, 1 M messages drain 3–7× faster with a deep queue). Memory stays bounded by
        // `queued.max.messages.kbytes`, and fetching pauses while an insert retries.
        .set("queued.min.messages", config.prefetch_messages.to_string())
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.wait.max.ms", "100")
        // A subscribed topic that comes back (a broker that lost its data, a topic recreated)
        // is seen within this time, not librdkafka's default five minutes.
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set(
            "statistics.interval.ms",
            config.statistics_interval_ms.to_string(),
        )
        .create_with_context(notes)?;
    subscribe_topics(&consumer, &Topics::new(config))?;
    Ok(consumer)
}

/// Stores `next_offsets` ((topic, partition) → next offset to read) for the next auto-commit.
pub fn store_offsets(
    consumer: &RoundConsumer,
    topics: &Topics,
    next_offsets: impl Iterator<Item = (Source, i32, i64)>,
) -> KafkaResult<()> {
    let mut list = TopicPartitionList::new();
    for (source, partition, offset) in next_offsets {
        list.add_partition_offset(topics.name(source), partition, Offset::Offset(offset))?;
    }
    consumer.store_offsets(&list)
}

/// A dead-letter topic (the rounds', or a dataset's): messages that could not be stored,
/// unchanged, with why and where in headers
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

    /// The same producer, sending to `topic`.
    pub fn to(&self, topic: String) -> DeadLetters {
        DeadLetters {
            producer: self.producer.clone(),
            topic,
        }
    }

    /// Sends every letter, unchanged, with where it came from and why in its headers, and
    /// waits until Kafka acknowledged them all.
    pub async fn send<'a>(
        &self,
        letters: impl Iterator<Item = DeadLetter<'a>>,
    ) -> Result<(), KafkaError> {
        for letter in letters {
            let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
            let mut headers = OwnedHeaders::new();
            for (key, value) in [
                ("sluice-error", letter.error),
                ("sluice-source-topic", letter.source_topic),
                ("sluice-source-partition", &partition),
                ("sluice-source-offset", &offset),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let record = FutureRecord::to(&self.topic)
                .key(letter.key)
                .payload(letter.payload)
                .headers(headers);
            self.producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}

/// A message for a dead-letter topic: the consumed message as it was, and why it was not
/// stored.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub source_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub error: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::TopicPresence;

    #[test]
    fn a_topic_counts_as_back_only_after_it_was_seen_missing() {
        let mut presence = TopicPresence::default();
        assert!(!presence.came_back([true, true]));
        assert!(!presence.came_back([true, false]));
        assert!(!presence.came_back([false, false]));
        assert!(presence.came_back([true, false]));
        assert!(presence.came_back([true, true]));
        assert!(!presence.came_back([true, true]));
        presence.forget();
        assert!(presence.came_back([true, true]));
    }
}
