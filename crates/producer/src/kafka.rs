//! The Kafka side of the producer: one shared `FutureProducer` and a bounded window of
//! unacknowledged deliveries per upload.

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::config::Config;

/// The process-wide Kafka producer, tuned for throughput with `acks=all` and idempotence.
#[derive(Clone)]
pub struct RoundProducer {
    producer: FutureProducer,
    topic: String,
}

impl RoundProducer {
    pub fn new(config: &Config) -> Result<RoundProducer, KafkaError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
            .create()?;
        Ok(RoundProducer {
            producer,
            topic: config.topic.clone(),
        })
    }

    /// Starts a window of at most `max_in_flight` unacknowledged records.
    pub fn window(&self, max_in_flight: usize) -> DeliveryWindow<'_> {
        DeliveryWindow {
            producer: self,
            in_flight: FuturesUnordered::new(),
            max_in_flight: max_in_flight.max(1),
            acknowledged: 0,
        }
    }

    /// Whether the brokers answer a metadata request for the topic within `timeout`.
    pub async fn is_ready(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
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

/// Records handed to Kafka by one upload. `send` waits while the window is full; `finish`
/// waits for every acknowledgement. The first failed delivery fails the whole window.
pub struct DeliveryWindow<'a> {
    producer: &'a RoundProducer,
    in_flight: FuturesUnordered<DeliveryFuture>,
    max_in_flight: usize,
    acknowledged: u64,
}

impl DeliveryWindow<'_> {
    /// Hands one record to Kafka (the payload is copied), waiting for room in the window.
    pub async fn send(&mut self, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_one().await?;
        }
        let mut record = FutureRecord::to(&self.producer.topic)
            .key(key)
            .payload(payload);
        loop {
            match self.producer.producer.send_result(record) {
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

    /// Waits until Kafka acknowledged every record sent; returns how many were acknowledged.
    pub async fn finish(mut self) -> Result<u64, KafkaError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(self.acknowledged)
    }

    async fn settle_one(&mut self) -> Result<(), KafkaError> {
        match self.in_flight.next().await {
            Some(Ok(Ok(_))) => {
                self.acknowledged += 1;
                Ok(())
            }
            Some(Ok(Err((error, _)))) => Err(error),
            Some(Err(_canceled)) => Err(KafkaError::Canceled),
            None => Ok(()),
        }
    }
}
