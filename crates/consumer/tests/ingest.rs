//! The consumer against a real Kafka-protocol broker and a real ClickHouse.

use std::time::{Duration, Instant};

use sluice_consumer::{Application, Config};
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::{GameRound, Money, PlayerId};
use sluice_testkit::{clickhouse, kafka, unique, Stack};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 2;

fn config(topic: &str, group: &str, database: &str) -> Config {
    let stack = Stack::get();
    let mut config = Config::with_endpoints(&stack.kafka_brokers, &stack.clickhouse_url);
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
async fn spawn_consumer(config: Config) -> (CancellationToken, tokio::task::JoinHandle<()>) {
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

fn encoded_rounds(first_id: i64, count: i64) -> Vec<Vec<u8>> {
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
            GameRoundCodec::get().encode(&round, &mut bytes).unwrap();
            bytes
        })
        .collect()
}

async fn wait_for_committed(group: &str, topic: &str, expected: i64) {
    let started = Instant::now();
    loop {
        let committed = kafka::committed_total(group, topic, PARTITIONS).await;
        if committed == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "committed {committed} of {expected} after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_skipped_and_the_partition_keeps_moving() {
    let (topic, group, database) = (unique("consumer_test"), unique("group"), unique("consumer"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let mut messages = encoded_rounds(1, 10);
    messages.insert(3, b"not avro at all".to_vec());
    messages.insert(7, GameRoundCodec::get().header().to_vec());
    messages.extend(encoded_rounds(11, 10));
    kafka::produce(&topic, "player", &messages).await;

    let (shutdown, handle) = spawn_consumer(config(&topic, &group, &database)).await;
    wait_for_committed(&group, &topic, messages.len() as i64).await;
    let answer = clickhouse::query(&format!(
        "SELECT count(), toString(sum(real_amount_bet)) FROM {database}.game_rounds FINAL"
    ))
    .await;
    assert_eq!(answer, "20\t20.0000");
    shutdown.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_where_it_stopped_without_loss_or_duplicates() {
    let (topic, group, database) = (unique("consumer_test"), unique("group"), unique("consumer"));
    kafka::create_topic(&topic, PARTITIONS).await;
    kafka::produce(&topic, "a", &encoded_rounds(1, 250)).await;

    let (shutdown, handle) = spawn_consumer(config(&topic, &group, &database)).await;
    let table = format!("{database}.game_rounds");
    // Background merges would collapse duplicates and hide a redelivery from `count()`.
    clickhouse::query(&format!("SYSTEM STOP MERGES {table}")).await;
    wait_for_committed(&group, &topic, 250).await;
    shutdown.cancel();
    handle.await.unwrap();

    // Produced while no consumer runs, including a redelivery of rounds 200..=250.
    kafka::produce(&topic, "b", &encoded_rounds(200, 301)).await;
    let (shutdown, handle) = spawn_consumer(config(&topic, &group, &database)).await;
    wait_for_committed(&group, &topic, 250 + 301).await;
    assert_eq!(
        clickhouse::query(&format!("SELECT count() FROM {table} FINAL")).await,
        "500"
    );
    assert_eq!(
        clickhouse::query(&format!("SELECT count() FROM {table}")).await,
        "551",
        "every message was inserted exactly once: the restart re-read nothing"
    );
    shutdown.cancel();
    handle.await.unwrap();
}
