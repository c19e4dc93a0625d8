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
        "SELECT count(), toString(sum(real_amount_bet)) FROM {database}.game_rounds"
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
    let table = format!("{database}.round_versions");
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
        clickhouse::query(&format!("SELECT count() FROM {database}.game_rounds")).await,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_table_cannot_hold_is_quarantined_with_its_reason_never_stored_as_1970() {
    // Records written by another producer (or an older one) that skipped the edge's checks.
    let (topic, group, database) = (unique("consumer_test"), unique("group"), unique("consumer"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let mut messages = encoded_rounds(1, 3);
    let codec = GameRoundCodec::get();
    let mut round = codec.decode(&messages[0]).unwrap().round;
    for (id, millis) in [
        (11, -1_000),
        (12, 4_294_967_296_000),
        (13, -62_135_596_800_000),
    ] {
        round.game_instance_id = id;
        round.created_timestamp = millis;
        let mut bytes = Vec::new();
        codec.encode(&round, "test-upload", &mut bytes);
        messages.push(bytes);
    }
    // A money amount past Decimal(18, 4), written as the Avro long it travels as: the record
    // with a bet of 10^-4, its one-byte value replaced by the varint of 10^18 units.
    round.game_instance_id = 14;
    round.created_timestamp = 1_571_732_442_000;
    round.real_amount_bet = None;
    let mut without = Vec::new();
    codec.encode(&round, "test-upload", &mut without);
    round.real_amount_bet = Some(sluice_schema::Money::from_scaled(1));
    let mut with = Vec::new();
    codec.encode(&round, "test-upload", &mut with);
    let branch = without
        .iter()
        .zip(&with)
        .position(|(a, b)| a != b)
        .expect("the bet's union branch");
    let mut patched = with[..=branch].to_vec();
    let mut zigzag = 2_000_000_000_000_000_000_u64;
    while zigzag >= 0x80 {
        patched.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    patched.push(zigzag as u8);
    patched.extend_from_slice(&with[branch + 2..]);
    messages.push(patched);
    kafka::produce(&topic, "player", &messages).await;

    let (shutdown, handle) = spawn_consumer(config(&topic, &group, &database)).await;
    wait_for_committed(&group, &topic, messages.len() as i64).await;
    assert_eq!(
        clickhouse::query(&format!(
            "SELECT count(), min(created_timestamp) FROM {database}.game_rounds"
        ))
        .await,
        "3\t2019-10-22 08:20:43",
        "only the storable rounds, none in 1970"
    );
    let errors = clickhouse::query(&format!(
        "SELECT error FROM {database}.quarantine FINAL ORDER BY source_offset"
    ))
    .await;
    let errors: Vec<&str> = errors.lines().collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    for error in &errors[..3] {
        assert!(
            error.starts_with("created_timestamp: out of range"),
            "{error}"
        );
    }
    assert!(
        errors[3].starts_with("real_amount_bet: out of range (at most 14 digits before the point: the store holds Decimal(18, 4))"),
        "{}",
        errors[3]
    );
    shutdown.cancel();
    handle.await.unwrap();
}
