//! Rounds written straight into ClickHouse the way the consumer writes them: each version into
//! `round_versions`, then its hours marked dirty in Redis (docs/PROCESSING.md), so readers take
//! them from raw rows until a processor recomputes them. For fixtures of readers' tests.

use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::process::Processor;
use sluice_rollup::spec::{Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};

use crate::clickhouse;
use crate::stack::Stack;

/// The columns `rows` gives, in order.
pub const COLUMNS: &str = "created_timestamp, game_instance_id, user_id, game_id, \
    real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win, game_name, provider, \
    version";

/// Inserts `rows` (`VALUES (…), …` or a `SELECT`, giving [`COLUMNS`]) into `database`, then
/// marks every hour holding rows there dirty, as the consumer's marks and an operator's
/// backfill do.
pub async fn insert(database: &str, rows: &str) {
    clickhouse::query(&format!(
        "INSERT INTO {database}.round_versions ({COLUMNS}) {rows}"
    ))
    .await;
    mark_every_hour(database).await;
}

/// Marks every hour of `database` that holds rows dirty.
pub async fn mark_every_hour(database: &str) {
    let stack = Stack::get();
    let client = stack.clickhouse_client(database);
    let mut redis = redis_connection().await;
    let dirty = DirtyHours::new(database);
    sluice_rollup::process::backfill(
        &client,
        &mut redis,
        &GAME_ROUNDS_HOURLY,
        &dirty,
        0,
        sluice_rollup::hour_of(sluice_schema::domain::TIMESTAMP_MAX_SECONDS),
    )
    .await
    .expect("the hours are marked");
}

/// Recomputes every dirty hour of `database` into the hourly rollup, as the processor service
/// does (marking their days for the daily rollup), until none is dirty.
pub async fn process_every_dirty_hour(database: &str) {
    let processor = processor(database, GAME_ROUNDS_HOURLY).await;
    let daily = DirtyHours::of(database, &GAME_ROUNDS_DAILY);
    drain(database, processor.feeding(GAME_ROUNDS_DAILY, daily)).await;
}

/// Sums every dirty day of `database` from its published hours into the daily rollup, until
/// none is dirty.
pub async fn process_every_dirty_day(database: &str) {
    drain(database, processor(database, GAME_ROUNDS_DAILY).await).await;
}

/// Every dirty hour, then every dirty day: what the processor service converges to.
pub async fn process_everything(database: &str) {
    process_every_dirty_hour(database).await;
    process_every_dirty_day(database).await;
}

async fn processor(database: &str, rollup: Rollup) -> Processor {
    let client = Stack::get().clickhouse_client(database);
    let dirty = DirtyHours::of(database, &rollup);
    let hold = std::time::Duration::from_secs(60);
    Processor::new(&client, rollup, dirty, 10_000, hold)
        .await
        .expect("the processor starts")
}

/// Steps of `processor` until one claims nothing; then nothing of its rollup may be dirty.
async fn drain(database: &str, mut processor: Processor) {
    let client = Stack::get().clickhouse_client(database);
    let mut redis = redis_connection().await;
    loop {
        let step = processor.step(&client, &mut redis).await.expect("a step");
        if step.hours.is_empty() {
            break;
        }
    }
    let left = processor.dirty().between(&mut redis, 0, u32::MAX).await;
    let left = left.expect("Redis");
    assert!(left.is_empty(), "buckets still dirty (leased?): {left:?}");
}

/// Waits until no hour and no day of `database` is dirty: the running processors caught up.
///
/// # Panics
/// After 60 s, naming the rollup still dirty.
pub async fn wait_until_processed(database: &str) {
    let mut redis = redis_connection().await;
    let started = std::time::Instant::now();
    for rollup in [GAME_ROUNDS_HOURLY, GAME_ROUNDS_DAILY] {
        let dirty = DirtyHours::of(database, &rollup);
        while !dirty
            .between(&mut redis, 0, u32::MAX)
            .await
            .expect("Redis")
            .is_empty()
        {
            let waited = started.elapsed();
            assert!(waited.as_secs() < 60, "{} stays dirty", rollup.name);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A connection to the stack's Redis.
pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(Stack::get().redis_url.as_str())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
}
