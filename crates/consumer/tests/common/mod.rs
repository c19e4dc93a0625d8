//! Shared by the consumer's integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use sluice_consumer::{Application, Config};
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::{GameRound, Money, PlayerId};
use sluice_testkit::{kafka, Settings, Stack};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 4;

pub fn config(topic: &str, group: &str, database: &str) -> Config {
    let mut config: Config = Settings::consumer()
        .kafka()
        .clickhouse(database)
        .redis()
        .config();
    config.topic = topic.into();
    config.topic_partitions = PARTITIONS;
    config.group_id = group.into();
    config.batch_max_rows = 100;
    config.batch_timeout_ms = 100;
    config
}

/// Starts a consumer; cancel the token to stop it (it flushes and commits first).
pub async fn spawn_consumer(config: Config) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let application = Application::build(config)
        .await
        .expect("the consumer starts");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        application.run_until_stopped(token).await.unwrap();
    });
    (shutdown, handle)
}

pub fn encoded_rounds(first_id: i64, count: i64) -> Vec<Vec<u8>> {
    (first_id..first_id + count)
        .map(|id| {
            let round = GameRound {
                created_timestamp: 1_571_732_442_000 + id * 1000,
                game_instance_id: id,
                user_id: PlayerId::parse("9ece8c4020f8aed10676cd1c56a41889").unwrap(),
                game_id: 24_002,
                real_amount_bet: Some(Money::from_scaled(10_000)),
                bonus_amount_bet: None,
                real_amount_win: Some(Money::from_scaled(2_500)),
                bonus_amount_win: Some(Money::ZERO),
                game_name: "Gonzo's Quest".into(),
                provider: "NetEnt".into(),
            };
            let mut bytes = Vec::new();
            GameRoundCodec::get().encode(&round, "test-upload", &mut bytes);
            bytes
        })
        .collect()
}

pub async fn wait_for_committed(group: &str, topic: &str, expected: i64) {
    let started = Instant::now();
    loop {
        let committed = kafka::committed_total(group, topic, PARTITIONS).await;
        if committed == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "committed {committed} of {expected} after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The real consumer binary, configured like a deployment would be.
pub fn spawn_binary(topic: &str, group: &str, database: &str) -> Child {
    let brokers = &Stack::get().kafka_brokers;
    spawn_binary_with(
        topic,
        group,
        database,
        &[("SLUICE_CONSUMER_KAFKA_BROKERS", brokers)],
    )
}

/// [`spawn_binary`] with more (or other) settings: `(variable, value)`.
pub fn spawn_binary_with(
    topic: &str,
    group: &str,
    database: &str,
    settings: &[(&str, &str)],
) -> Child {
    Settings::consumer()
        .kafka()
        .clickhouse(database)
        .redis()
        // A killed instance's marks hold their hours this long.
        .set("MARK_LEASE_MS", 3000)
        .set("TOPIC", topic)
        .set("TOPIC_PARTITIONS", PARTITIONS)
        .set("GROUP_ID", group)
        .set("SESSION_TIMEOUT_MS", 6000)
        .set("MAX_POLL_INTERVAL_MS", 10000)
        .set("BATCH_MAX_ROWS", 2000)
        .set("BATCH_TIMEOUT_MS", 200)
        .command(env!("CARGO_BIN_EXE_sluice-consumer"))
        .envs(settings.iter().copied())
        .spawn()
        .expect("the sluice-consumer binary starts")
}
