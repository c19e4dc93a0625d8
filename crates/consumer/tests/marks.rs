//! The consumer's marks (docs/PROCESSING.md, "Dirty hours"): the hours a batch changes stay
//! dirty in Redis until a processor has recomputed them, including the hours its rounds moved
//! out of — against a real broker, ClickHouse and Redis.

use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::spec::GAME_ROUNDS_HOURLY;
use sluice_schema::avro::GameRoundCodec;
use sluice_testkit::{kafka, rounds, unique, Stack};

mod common;

use common::*;

/// 2019-01-10T10:00:00Z and 2019-02-11T11:00:00Z.
const JANUARY_HOUR: u32 = 1_547_114_400;
const FEBRUARY_HOUR: u32 = 1_549_882_800;

/// Recomputes every dirty hour; returns the published rounds per hour.
async fn process(database: &str) -> Vec<(u32, u64)> {
    rounds::process_every_dirty_hour(database).await;
    let client = Stack::get().clickhouse_client(database);
    let published = GAME_ROUNDS_HOURLY.published(JANUARY_HOUR, FEBRUARY_HOUR);
    client
        .query(&format!(
            "SELECT toUInt32(bucket) AS hour, sum(rounds) FROM ({published}) \
             GROUP BY hour ORDER BY hour"
        ))
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_marks_its_own_hours_and_the_hours_its_rounds_moved_out_of() {
    let (topic, group, database) = (unique("marks"), unique("group"), unique("marks"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let codec = GameRoundCodec::get();
    let mut round = codec.decode(&encoded_rounds(1, 1)[0]).unwrap().round;
    let mut message = |seconds: u32| {
        round.created_timestamp = i64::from(seconds + 1_200) * 1_000;
        let mut bytes = Vec::new();
        codec.encode(&round, "marks-upload", &mut bytes);
        bytes
    };
    let (january, february) = (message(JANUARY_HOUR), message(FEBRUARY_HOUR));
    let (shutdown, handle) = spawn_consumer(config(&topic, &group, &database)).await;
    let mut redis = rounds::redis_connection().await;
    let dirty = DirtyHours::new(&database);

    kafka::produce(&topic, "player", &[january]).await;
    wait_for_committed(&group, &topic, 1).await;
    assert_eq!(
        dirty.between(&mut redis, 0, u32::MAX).await.unwrap(),
        [JANUARY_HOUR]
    );
    assert_eq!(process(&database).await, [(JANUARY_HOUR, 1)]);
    assert!(dirty
        .between(&mut redis, 0, u32::MAX)
        .await
        .unwrap()
        .is_empty());

    // The same round again, corrected into February: January changes too.
    kafka::produce(&topic, "player", &[february]).await;
    wait_for_committed(&group, &topic, 2).await;
    assert_eq!(
        dirty.between(&mut redis, 0, u32::MAX).await.unwrap(),
        [JANUARY_HOUR, FEBRUARY_HOUR],
        "the hour the round left is dirty as well"
    );
    assert_eq!(process(&database).await, [(FEBRUARY_HOUR, 1)]);
    shutdown.cancel();
    handle.await.unwrap();
}
