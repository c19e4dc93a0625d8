//! Shared by the consumer's integration tests.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_consumer::{Application, Config};
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::{GameRound, Money, PlayerId};
use sluice_testkit::{kafka, Stack};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 4;

pub fn config(topic: &str, group: &str, database: &str) -> Config {
    let stack = Stack::get();
    let mut config = Config::with_endpoints(
        &stack.kafka_brokers,
        &stack.clickhouse_url,
        &stack.redis_url,
    );
    config.clickhouse_user = stack.clickhouse_user.clone();
    config.clickhouse_password = stack.clickhouse_password.clone().into();
    config.listen_addr = "127.0.0.1:0".into();
    config.topic = topic.into();
    config.topic_partitions = PARTITIONS;
    config.group_id = group.into();
    config.clickhouse_database = database.into();
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
    let stack = Stack::get();
    let output = || {
        if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    Command::new(env!("CARGO_BIN_EXE_sluice-consumer"))
        .env("SLUICE_CONSUMER_LISTEN_ADDR", "127.0.0.1:0")
        .env("SLUICE_CONSUMER_KAFKA_BROKERS", &stack.kafka_brokers)
        .env("SLUICE_CONSUMER_CLICKHOUSE_URL", &stack.clickhouse_url)
        .env("SLUICE_CONSUMER_CLICKHOUSE_DATABASE", database)
        .env("SLUICE_CONSUMER_CLICKHOUSE_USER", &stack.clickhouse_user)
        .env(
            "SLUICE_CONSUMER_CLICKHOUSE_PASSWORD",
            &stack.clickhouse_password,
        )
        .env("SLUICE_CONSUMER_REDIS_URL", &stack.redis_url)
        // A killed instance's marks hold their hours this long.
        .env("SLUICE_CONSUMER_MARK_LEASE_MS", "3000")
        .env("SLUICE_CONSUMER_TOPIC", topic)
        .env("SLUICE_CONSUMER_TOPIC_PARTITIONS", PARTITIONS.to_string())
        .env("SLUICE_CONSUMER_GROUP_ID", group)
        .env("SLUICE_CONSUMER_SESSION_TIMEOUT_MS", "6000")
        .env("SLUICE_CONSUMER_MAX_POLL_INTERVAL_MS", "10000")
        .env("SLUICE_CONSUMER_BATCH_MAX_ROWS", "2000")
        .env("SLUICE_CONSUMER_BATCH_TIMEOUT_MS", "200")
        .envs(settings.iter().copied())
        .stdout(output())
        .stderr(output())
        .kill_on_drop(true)
        .spawn()
        .expect("the sluice-consumer binary starts")
}
