//! Kafka helpers shared by the services: the names of a dataset's topics ([`DatasetTopics`]),
//! topic creation, and [`MetadataProbe`], which asks the brokers whether they answer and which
//! topics they hold.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// The topics of a dataset other than `game_rounds` (whose are configured): its records on
/// `<prefix><name>`, the rows its producers rejected on `<prefix><name>.rejects`, `prefix`
/// being each service's `…_DATASET_TOPIC_PREFIX`. Every service names them here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetTopics {
    pub records: String,
    pub rejects: String,
    /// The records the consumer could not store, unchanged (`<records>.dlq`, as the rounds').
    pub dead_letters: String,
}

impl DatasetTopics {
    pub fn of(prefix: &str, name: &str) -> DatasetTopics {
        let records = format!("{prefix}{name}");
        DatasetTopics {
            rejects: format!("{records}.rejects"),
            dead_letters: format!("{records}.dlq"),
            records,
        }
    }
}

/// Creates `topic` with `partitions` partitions unless it exists already. Safe to call from
/// several processes at once: "already exists" counts as success. An existing topic with
/// another partition count (e.g. auto-created by a broker that lost its data) is logged as an
/// error: keys then spread over other partitions than the deployment was sized for.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for result in admin.create_topics(&[new_topic], &options).await? {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                check_partitions(brokers, topic, partitions).await;
            }
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Logs an error if `topic` does not have `expected` partitions (best effort: a metadata
/// request that fails is only a warning).
async fn check_partitions(brokers: &str, topic: &str, expected: i32) {
    let config = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .clone();
    let name = topic.to_owned();
    let found = tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = config.create()?;
        rdkafka::consumer::Consumer::fetch_metadata(&client, Some(&name), Duration::from_secs(5))
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name)
                    .map(|t| t.partitions().len())
            })
    })
    .await;
    match found {
        Ok(Ok(Some(found))) if found == expected as usize => {}
        Ok(Ok(Some(found))) => tracing::error!(
            topic,
            expected,
            found,
            "Topic has another partition count than configured: recreate it, or set the \
             configured count to match."
        ),
        _ => tracing::warn!(topic, "Could not check the topic's partition count."),
    }
}

/// A client of the brokers that asks them for cluster metadata: whether they answer, and which
/// topics they hold. It always asks for every topic's metadata, never for one by name: a broker
/// may auto-create a topic it is asked about, with its own partition count. Each request
/// blocks, so it runs on tokio's blocking threads. Its client is its own (a producer that never
/// sends, whose thread serves librdkafka's events), so a service's busy client is never asked.
#[derive(Clone)]
pub struct MetadataProbe {
    client: Arc<ThreadedProducer<DefaultProducerContext>>,
}

impl MetadataProbe {
    /// A probe of the brokers `config` names (its `bootstrap.servers` and any security
    /// settings).
    pub fn new(config: &ClientConfig) -> Result<MetadataProbe, KafkaError> {
        Ok(MetadataProbe {
            client: Arc::new(config.create()?),
        })
    }

    /// A probe of `brokers` (comma separated).
    pub fn of_brokers(brokers: &str) -> Result<MetadataProbe, KafkaError> {
        MetadataProbe::new(ClientConfig::new().set("bootstrap.servers", brokers))
    }

    /// Whether a broker answers a metadata request within `timeout`.
    pub async fn answers(&self, timeout: Duration) -> bool {
        self.metadata(timeout, |_| ()).await.is_some()
    }

    /// The topics the brokers hold (without error, with at least one partition); `None` when no
    /// broker answered within `timeout`.
    pub async fn topics(&self, timeout: Duration) -> Option<HashSet<String>> {
        self.metadata(timeout, |metadata| {
            metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.name().to_owned())
                .collect()
        })
        .await
    }

    /// Every topic's metadata, read by `read` on the blocking thread that fetched it.
    async fn metadata<T: Send + 'static>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&Metadata) -> T + Send + 'static,
    ) -> Option<T> {
        let client = Arc::clone(&self.client);
        tokio::task::spawn_blocking(move || {
            let metadata = client.client().fetch_metadata(None, timeout).ok()?;
            Some(read(&metadata))
        })
        .await
        .ok()
        .flatten()
    }
}
