//! The consumer against a real Kafka-protocol broker and a real ClickHouse.

use std::time::Duration;

use sluice_schema::avro::GameRoundCodec;
use sluice_testkit::{clickhouse, kafka, unique};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_quarantined_and_the_partition_keeps_moving() {
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

    // Both poison messages are in quarantine, with their position and the reason…
    let quarantined = clickhouse::query(&format!(
        "SELECT source_topic = '{topic}', payload_hex, error != '' \
         FROM {database}.quarantine FINAL ORDER BY payload_hex"
    ))
    .await;
    let expected = [
        format!("1\t{}\t1", hex_of(GameRoundCodec::get().header())),
        format!("1\t{}\t1", hex_of(b"not avro at all")),
    ];
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(quarantined, expected.join("\n"));

    // …and on the dead-letter topic, unchanged, with the error in a header.
    let dead = kafka::consume(
        &format!("{topic}.dlq"),
        PARTITIONS,
        2,
        Duration::from_secs(20),
    )
    .await;
    let mut payloads: Vec<Vec<u8>> = dead.iter().map(|r| r.payload.clone()).collect();
    payloads.sort();
    let mut expected_payloads = vec![
        GameRoundCodec::get().header().to_vec(),
        b"not avro at all".to_vec(),
    ];
    expected_payloads.sort();
    assert_eq!(payloads, expected_payloads);
    assert!(dead.iter().all(|r| r
        .headers
        .iter()
        .any(|(k, v)| k == "sluice-error" && !v.is_empty())));
    shutdown.cancel();
    handle.await.unwrap();
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
