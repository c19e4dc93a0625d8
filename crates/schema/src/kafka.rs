//! Kafka helpers shared by the services.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

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
