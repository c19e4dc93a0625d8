//! Crashes and scale-out, against a real broker and a real ClickHouse: the consumer binary is
//! killed with SIGKILL mid-load and restarted; two consumers share a topic. In every case the
//! results hold each round exactly once, with exact sums.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::{GameRound, Money, PlayerId};
use sluice_testkit::{clickhouse, kafka, unique, Stack};

const PLAYERS: [&str; 3] = [
    "9ece8c4020f8aed10676cd1c56a41889",
    "078d079e6146dec4dbf2135a8e513e2e",
    "ef06d5cbf35386ff2203d186eeff7923",
];

/// Rounds `1..=count` spread over three players; bets vary so sums catch any loss or double.
fn load(count: i64) -> (Vec<(usize, Vec<u8>)>, [i64; 3]) {
    let mut sums = [0_i64; 3];
    let messages = (1..=count)
        .map(|id| {
            let player = (id % 3) as usize;
            let bet = (id % 97) * 500;
            sums[player] += bet;
            let round = GameRound {
                created_timestamp: 1_571_732_442_000 + id * 1000,
                game_instance_id: id,
                user_id: PlayerId::parse(PLAYERS[player]).unwrap(),
                game_id: 24_000 + id % 5,
                real_amount_bet: Some(Money::from_scaled(bet)),
                bonus_amount_bet: None,
                real_amount_win: Some(Money::ZERO),
                bonus_amount_win: None,
                game_name: "Jammin' Jars".into(),
                provider: "Push Gaming".into(),
            };
            let mut bytes = Vec::new();
            GameRoundCodec::get().encode(&round, "test-upload", &mut bytes);
            (player, bytes)
        })
        .collect();
    (messages, sums)
}

async fn produce_load(topic: &str, messages: &[(usize, Vec<u8>)]) {
    for (player, key) in PLAYERS.iter().enumerate() {
        let payloads: Vec<Vec<u8>> = messages
            .iter()
            .filter(|(p, _)| *p == player)
            .map(|(_, bytes)| bytes.clone())
            .collect();
        kafka::produce(topic, key, &payloads).await;
    }
}

async fn assert_exact(database: &str, count: i64, sums: [i64; 3]) {
    let table = format!("{database}.game_rounds");
    let answer = clickhouse::query(&format!(
        "SELECT count(), uniqExact(game_instance_id) FROM {table}"
    ))
    .await;
    assert_eq!(answer, format!("{count}\t{count}"));
    for (player, sum) in PLAYERS.iter().zip(sums) {
        let answer = clickhouse::query(&format!(
            "SELECT toString(sum(real_amount_bet)) FROM {table} WHERE user_id = '{player}'"
        ))
        .await;
        // ClickHouse prints Decimal(38, 4) with four decimals; parse it back exactly.
        assert_eq!(Money::parse(&answer).unwrap().scaled(), sum, "{player}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_consumer_three_times_mid_load_loses_and_doubles_nothing() {
    let (topic, group, database) = (unique("crash"), unique("group"), unique("crash"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let count = 150_000;
    let (messages, sums) = load(count);
    produce_load(&topic, &messages).await;

    let stack = Stack::get();
    let client = stack.clickhouse_client(&database);
    sluice_schema::migrations::apply(&client, &database)
        .await
        .unwrap();
    let mut consumer = spawn_binary(&topic, &group, &database);
    let table = format!("{database}.round_versions");
    let mut stored = 0;
    for crash in 1..=3 {
        // Pull the plug right after a new insert landed: most likely before its offsets were
        // committed, so the next instance reads those records again.
        let started = Instant::now();
        loop {
            let rows: i64 = clickhouse::query(&format!("SELECT count() FROM {table}"))
                .await
                .parse()
                .unwrap_or(0);
            if rows > stored {
                stored = rows;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no progress before crash {crash}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        consumer.start_kill().unwrap();
        consumer.wait().await.unwrap();
        let committed = kafka::committed_total(&group, &topic, PARTITIONS).await;
        assert!(
            committed < count,
            "the load finished before crash {crash}; make it larger"
        );
        consumer = spawn_binary(&topic, &group, &database);
    }
    wait_for_committed(&group, &topic, count).await;
    assert_exact(&database, count, sums).await;
    consumer.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_the_partitions_and_together_are_exact() {
    let (topic, group, database) = (unique("scale"), unique("group"), unique("scale"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let count = 40_000;
    let (messages, sums) = load(count);

    let mut first = spawn_binary(&topic, &group, &database);
    let mut second = spawn_binary(&topic, &group, &database);
    produce_load(&topic, &messages).await;
    wait_for_committed(&group, &topic, count).await;
    assert_exact(&database, count, sums).await;
    first.start_kill().unwrap();
    second.start_kill().unwrap();
}
