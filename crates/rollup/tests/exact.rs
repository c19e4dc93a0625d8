//! The processing layer's parts against the real ClickHouse and Redis: the dirty-hours protocol
//! and the rollup recomputation keep every hour exact (docs/PROCESSING.md).

use std::time::Duration;

use clickhouse::Client;
use serde::Deserialize;
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::process::{backfill, Processor};
use sluice_rollup::spec::{Part, Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};
use sluice_testkit::names::unique;
use sluice_testkit::stack::Stack;

/// 2020-01-31 23:00:00 UTC and the hour after it (another month).
const JANUARY: u32 = 1_580_511_600;
const FEBRUARY: u32 = JANUARY + 3600;
const LEASE: Duration = Duration::from_secs(60);

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(Stack::get().redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn database() -> (Client, String) {
    let name = unique("rollup");
    let client = Stack::get().clickhouse_client(&name);
    sluice_schema::migrations::apply(&client, &name)
        .await
        .unwrap();
    (client, name)
}

#[derive(Debug, PartialEq, Eq, clickhouse::Row, Deserialize)]
struct HourRow {
    hour: u32,
    user_id: String,
    game_id: u64,
    real_amount_bet: Option<i128>,
    rounds: u64,
}

/// The rows `statement` (a rollup's reading or a recomputation) gives, as [`HourRow`]s in order.
async fn rows_of(client: &Client, statement: impl std::fmt::Display) -> Vec<HourRow> {
    let sql = format!(
        "SELECT toUInt32(bucket) AS hour, user_id, game_id, real_amount_bet, rounds FROM \
         ({statement}) ORDER BY hour, user_id, game_id"
    );
    client.query(&sql).fetch_all().await.unwrap()
}

/// What the rollup answers for the two hours.
async fn published(client: &Client) -> Vec<HourRow> {
    rows_of(client, GAME_ROUNDS_HOURLY.published(JANUARY, FEBRUARY)).await
}

/// The same question asked of the raw rows' current versions.
async fn from_raw(client: &Client) -> Vec<HourRow> {
    let statement = GAME_ROUNDS_HOURLY.aggregate(&[JANUARY, FEBRUARY], 0, Part::WHOLE);
    rows_of(client, statement).await
}

/// Inserts versions of rounds: (seconds, user, game_instance_id, bet, version).
async fn insert(client: &Client, rows: &[(u32, &str, u64, &str, u64)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(at, user, id, bet, version)| {
            format!(
                "(toDateTime({at}), {id}, '{user}', 7, {bet}, 0, 0, 0, 'Gonzo''s Quest', \
                 'NetEnt', 'u1', {version})"
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO round_versions (created_timestamp, game_instance_id, user_id, game_id, \
         real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win, game_name, \
         provider, upload_id, version) VALUES {}",
        values.join(", ")
    );
    client.query(&sql).execute().await.unwrap();
}

/// One processing step, as the processor service runs it; returns the hours it recomputed.
async fn process(
    client: &Client,
    dirty: &DirtyHours,
    redis: &mut redis::aio::MultiplexedConnection,
) -> Vec<u32> {
    let mut processor = Processor::new(client, GAME_ROUNDS_HOURLY, dirty.clone(), 100, LEASE)
        .await
        .unwrap();
    processor.step(client, redis).await.unwrap().hours
}

/// A row of the answer; `bet` in ten-thousandths (the stored scale).
fn row(hour: u32, user_id: &str, bet: i128, rounds: u64) -> HourRow {
    HourRow {
        hour,
        user_id: user_id.to_owned(),
        game_id: 7,
        real_amount_bet: Some(bet),
        rounds,
    }
}

#[tokio::test]
async fn a_redelivered_round_counts_once_and_a_round_moved_to_another_month_counts_only_there() {
    let (client, name) = database().await;
    let dirty = DirtyHours::new(&name);
    let mut redis = redis().await;

    // A batch, one of its messages delivered twice.
    dirty
        .begin(&mut redis, "b1", &[JANUARY], LEASE)
        .await
        .unwrap();
    let first = (JANUARY + 1800, "aa", 1, "1.5", 10);
    insert(&client, &[first, first, (JANUARY + 2400, "aa", 2, "2", 11)]).await;
    insert(&client, &[(JANUARY + 3000, "bb", 3, "5", 12)]).await;
    dirty.end(&mut redis, "b1", &[JANUARY]).await.unwrap();
    assert_eq!(process(&client, &dirty, &mut redis).await, vec![JANUARY]);
    let expected = vec![row(JANUARY, "aa", 35_000, 2), row(JANUARY, "bb", 50_000, 1)];
    assert_eq!(published(&client).await, expected);

    // A re-upload moves round 1 into February: its old hour is dirty before the new version
    // is visible, and both hours are served from raw rows until they are processed again.
    dirty
        .begin(&mut redis, "b2", &[FEBRUARY, JANUARY], LEASE)
        .await
        .unwrap();
    insert(&client, &[(FEBRUARY + 1800, "aa", 1, "3", 20)]).await;
    assert_eq!(
        dirty.between(&mut redis, JANUARY, FEBRUARY).await.unwrap(),
        vec![JANUARY, FEBRUARY]
    );
    assert!(
        process(&client, &dirty, &mut redis).await.is_empty(),
        "hours leased by a batch still inserting are not claimed"
    );
    dirty
        .end(&mut redis, "b2", &[FEBRUARY, JANUARY])
        .await
        .unwrap();
    let mut processed = process(&client, &dirty, &mut redis).await;
    processed.sort_unstable();
    assert_eq!(processed, vec![JANUARY, FEBRUARY]);

    let expected = vec![
        row(JANUARY, "aa", 20_000, 1),
        row(JANUARY, "bb", 50_000, 1),
        row(FEBRUARY, "aa", 30_000, 1),
    ];
    assert_eq!(published(&client).await, expected);
    assert_eq!(from_raw(&client).await, expected);
    assert!(dirty
        .between(&mut redis, JANUARY, FEBRUARY)
        .await
        .unwrap()
        .is_empty());
}

/// The first seconds of the days of JANUARY and FEBRUARY (2020-01-31, 2020-02-01).
const JANUARY_DAY: u32 = JANUARY - 23 * 3600;
const FEBRUARY_DAY: u32 = FEBRUARY;

/// `rollup`'s published rows of JANUARY_DAY to FEBRUARY (hours or days).
async fn published_of(client: &Client, rollup: &Rollup) -> Vec<HourRow> {
    rows_of(client, rollup.published(JANUARY_DAY, FEBRUARY)).await
}

/// The published hours summed per day, as the daily rollup must hold them.
async fn hours_per_day(client: &Client) -> Vec<HourRow> {
    let sql = format!(
        "SELECT toUInt32(toStartOfDay(bucket)) AS hour, user_id, game_id, \
         sum(real_amount_bet) AS real_amount_bet, sum(rounds) AS rounds FROM ({}) \
         GROUP BY hour, user_id, game_id ORDER BY hour, user_id, game_id",
        GAME_ROUNDS_HOURLY.published(JANUARY_DAY, FEBRUARY)
    );
    client.query(&sql).fetch_all().await.unwrap()
}

/// Steps of `processor` until one claims nothing; the buckets they recomputed, sorted.
async fn drain(
    processor: &mut Processor,
    client: &Client,
    redis: &mut redis::aio::MultiplexedConnection,
) -> Vec<u32> {
    let mut buckets = Vec::new();
    loop {
        let step = processor.step(client, redis).await.unwrap();
        if step.hours.is_empty() {
            buckets.sort_unstable();
            return buckets;
        }
        buckets.extend(step.hours);
    }
}

#[tokio::test]
async fn the_daily_rollup_sums_the_published_hours_and_follows_a_round_moved_to_another_day() {
    use sluice_rollup::process::{catch_up, CatchUp};
    let (client, name) = database().await;
    let (hours, days) = (
        DirtyHours::of(&name, &GAME_ROUNDS_HOURLY),
        DirtyHours::of(&name, &GAME_ROUNDS_DAILY),
    );
    let mut redis = redis().await;
    let daily = Processor::new(&client, GAME_ROUNDS_DAILY, days.clone(), 100, LEASE);
    let mut daily = daily.await.unwrap();

    // Hours published before the daily rollup existed (an upgrade): the days are marked at
    // the processor's start, and summed.
    hours
        .begin(&mut redis, "b1", &[JANUARY], LEASE)
        .await
        .unwrap();
    insert(&client, &[(JANUARY + 1800, "aa", 1, "1.5", 10)]).await;
    insert(
        &client,
        &[
            (JANUARY + 2400, "aa", 2, "2", 11),
            (JANUARY, "bb", 3, "5", 12),
        ],
    )
    .await;
    hours.end(&mut redis, "b1", &[JANUARY]).await.unwrap();
    assert_eq!(process(&client, &hours, &mut redis).await, vec![JANUARY]);
    assert!(days
        .between(&mut redis, 0, u32::MAX)
        .await
        .unwrap()
        .is_empty());
    let caught_up = catch_up(&client, &mut redis, &GAME_ROUNDS_DAILY, &days)
        .await
        .unwrap();
    assert_eq!(caught_up, Some((CatchUp::NothingPublished, 1)));
    assert_eq!(
        drain(&mut daily, &client, &mut redis).await,
        vec![JANUARY_DAY]
    );
    let expected = vec![
        row(JANUARY_DAY, "aa", 35_000, 2),
        row(JANUARY_DAY, "bb", 50_000, 1),
    ];
    assert_eq!(published_of(&client, &GAME_ROUNDS_DAILY).await, expected);

    // Round 1 moves into the next day. Publishing its hours marks both days, around the
    // publication; until the days are summed again they are dirty.
    let hourly = Processor::new(&client, GAME_ROUNDS_HOURLY, hours.clone(), 100, LEASE);
    let mut hourly = hourly
        .await
        .unwrap()
        .feeding(GAME_ROUNDS_DAILY, days.clone());
    hours
        .begin(&mut redis, "b2", &[FEBRUARY, JANUARY], LEASE)
        .await
        .unwrap();
    insert(&client, &[(FEBRUARY + 1800, "aa", 1, "3", 20)]).await;
    hours
        .end(&mut redis, "b2", &[FEBRUARY, JANUARY])
        .await
        .unwrap();
    assert!(days
        .between(&mut redis, 0, u32::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        drain(&mut hourly, &client, &mut redis).await,
        vec![JANUARY, FEBRUARY]
    );
    assert_eq!(
        days.between(&mut redis, 0, u32::MAX).await.unwrap(),
        vec![JANUARY_DAY, FEBRUARY_DAY]
    );
    assert_eq!(
        published_of(&client, &GAME_ROUNDS_DAILY).await,
        expected,
        "not yet"
    );
    assert_eq!(
        drain(&mut daily, &client, &mut redis).await,
        vec![JANUARY_DAY, FEBRUARY_DAY]
    );
    let expected = vec![
        row(JANUARY_DAY, "aa", 20_000, 1),
        row(JANUARY_DAY, "bb", 50_000, 1),
        row(FEBRUARY_DAY, "aa", 30_000, 1),
    ];
    assert_eq!(published_of(&client, &GAME_ROUNDS_DAILY).await, expected);
    assert_eq!(hours_per_day(&client).await, expected);
    assert!(days
        .between(&mut redis, 0, u32::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        catch_up(&client, &mut redis, &GAME_ROUNDS_DAILY, &days)
            .await
            .unwrap(),
        None,
        "published, and Redis kept its sequence"
    );
}

#[tokio::test]
async fn hours_recomputed_in_parts_of_a_few_rows_equal_their_raw_rows() {
    let (client, name) = database().await;
    let dirty = DirtyHours::new(&name);
    let mut redis = redis().await;
    let players = ["aa", "bb", "cc", "dd", "ee", "ff", "a1", "b2", "c3"];
    let mut rows = Vec::new();
    for (n, player) in players.iter().enumerate() {
        let n = n as u64;
        rows.push((JANUARY + 60 * n as u32, *player, n, "1.25", 1));
        rows.push((FEBRUARY + 60 * n as u32, *player, 100 + n, "2", 1));
    }
    // Round 0 moved to February by a later version: counted once, there, in every part.
    rows.push((FEBRUARY + 7, "aa", 0, "4", 2));
    dirty
        .begin(&mut redis, "b", &[JANUARY, FEBRUARY], LEASE)
        .await
        .unwrap();
    insert(&client, &rows).await;
    dirty
        .end(&mut redis, "b", &[JANUARY, FEBRUARY])
        .await
        .unwrap();
    let processor = Processor::new(&client, GAME_ROUNDS_HOURLY, dirty.clone(), 100, LEASE);
    // 19 rows in parts of 3 rows: 7 statements under one version.
    let mut processor = processor.await.unwrap().in_statements_of(3);
    assert_eq!(
        drain(&mut processor, &client, &mut redis).await,
        vec![JANUARY, FEBRUARY]
    );
    let expected = from_raw(&client).await;
    assert_eq!(expected.len(), 17, "8 players in January, 9 in February");
    assert_eq!(published(&client).await, expected);
}

#[tokio::test]
async fn an_hour_marked_after_its_version_was_drawn_stays_dirty() {
    let dirty = DirtyHours::new(&unique("rollup"));
    let mut redis = redis().await;
    dirty
        .begin(&mut redis, "b1", &[JANUARY], LEASE)
        .await
        .unwrap();
    dirty.end(&mut redis, "b1", &[JANUARY]).await.unwrap();
    let claim = dirty.claim(&mut redis, 10, LEASE, 0).await.unwrap();
    assert_eq!(claim.hours, vec![JANUARY]);

    // A batch lands on the hour while the processor recomputes it from an older snapshot.
    dirty
        .begin(&mut redis, "b2", &[JANUARY], LEASE)
        .await
        .unwrap();
    let mark = dirty.end(&mut redis, "b2", &[JANUARY]).await.unwrap();
    assert!(mark > claim.version);
    assert_eq!(
        dirty
            .clear(&mut redis, claim.version, &[JANUARY])
            .await
            .unwrap(),
        0
    );
    assert_eq!(dirty.lag(&mut redis).await.unwrap().dirty_hours, 1);

    let again = dirty.claim(&mut redis, 10, LEASE, 0).await.unwrap();
    assert_eq!(again.hours, vec![JANUARY]);
    assert_eq!(
        dirty
            .clear(&mut redis, again.version, &[JANUARY])
            .await
            .unwrap(),
        1
    );
    assert_eq!(dirty.lag(&mut redis).await.unwrap().dirty_hours, 0);
}

#[tokio::test]
async fn claimed_hours_go_to_one_processor_newest_first_until_the_claim_runs_out() {
    let dirty = DirtyHours::new(&unique("rollup"));
    let mut redis = redis().await;
    dirty
        .end(&mut redis, "b1", &[JANUARY, FEBRUARY])
        .await
        .unwrap();
    let short = Duration::from_millis(200);
    assert_eq!(
        dirty.claim(&mut redis, 1, short, 0).await.unwrap().hours,
        vec![FEBRUARY]
    );
    assert_eq!(
        dirty.claim(&mut redis, 1, short, 0).await.unwrap().hours,
        vec![JANUARY]
    );
    assert!(dirty
        .claim(&mut redis, 5, short, 0)
        .await
        .unwrap()
        .hours
        .is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        dirty.claim(&mut redis, 5, short, 0).await.unwrap().hours,
        vec![FEBRUARY, JANUARY],
        "a processor that stalled past its claim loses it"
    );
}

#[tokio::test]
async fn a_claim_given_back_leaves_its_hours_dirty_and_claimable_at_once() {
    let dirty = DirtyHours::new(&unique("rollup"));
    let mut redis = redis().await;
    dirty
        .end(&mut redis, "b1", &[JANUARY, FEBRUARY])
        .await
        .unwrap();
    let given_back = dirty.claim(&mut redis, 5, LEASE, 0).await.unwrap();
    let other = dirty.claim(&mut redis, 5, LEASE, 0).await.unwrap();
    assert!(other.hours.is_empty(), "claimed for {LEASE:?}");

    let stale_version = other.version;
    assert_eq!(
        dirty
            .unclaim(&mut redis, stale_version, &given_back.hours)
            .await
            .unwrap(),
        0,
        "only the claimant gives its hours back"
    );
    assert_eq!(
        dirty
            .unclaim(&mut redis, given_back.version, &given_back.hours)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        dirty.between(&mut redis, 0, u32::MAX).await.unwrap(),
        [JANUARY, FEBRUARY],
        "still dirty"
    );
    let again = dirty.claim(&mut redis, 5, LEASE, 0).await.unwrap();
    assert_eq!(again.hours, [FEBRUARY, JANUARY]);
}

#[tokio::test]
async fn a_lease_that_ran_out_no_longer_holds_its_hour() {
    let dirty = DirtyHours::new(&unique("rollup"));
    let mut redis = redis().await;
    let lease = Duration::from_millis(50);
    dirty
        .begin(&mut redis, "gone", &[JANUARY], lease)
        .await
        .unwrap();
    assert!(dirty
        .claim(&mut redis, 5, LEASE, 0)
        .await
        .unwrap()
        .hours
        .is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        dirty.claim(&mut redis, 5, LEASE, 0).await.unwrap().hours,
        vec![JANUARY]
    );
}

#[tokio::test]
async fn versions_stay_above_every_published_one_when_redis_lost_the_counter() {
    let dirty = DirtyHours::new(&unique("rollup"));
    let mut redis = redis().await;
    let claim = dirty.claim(&mut redis, 5, LEASE, 1_000).await.unwrap();
    assert_eq!(claim.version, 1_001);
    let mark = dirty.end(&mut redis, "b1", &[JANUARY]).await.unwrap();
    assert!(mark > claim.version, "marks come from the same counter");
}

#[tokio::test]
async fn a_backfill_brings_rows_written_without_marks_into_the_rollup_exactly() {
    let (client, name) = database().await;
    let dirty = DirtyHours::new(&name);
    let mut redis = redis().await;
    insert(&client, &[(JANUARY + 60, "aa", 1, "1.5", 10)]).await;
    insert(&client, &[(FEBRUARY + 60, "aa", 2, "2", 11)]).await;
    insert(&client, &[(FEBRUARY + 120, "aa", 1, "4", 12)]).await;
    assert!(published(&client).await.is_empty());

    let marked = backfill(
        &client,
        &mut redis,
        &GAME_ROUNDS_HOURLY,
        &dirty,
        JANUARY,
        FEBRUARY,
    )
    .await
    .unwrap();
    assert_eq!(marked, 2);
    // Run twice: the second backfill marks the same hours again, and they are recomputed
    // to the same answer.
    for _ in 0..2 {
        backfill(
            &client,
            &mut redis,
            &GAME_ROUNDS_HOURLY,
            &dirty,
            JANUARY,
            FEBRUARY,
        )
        .await
        .unwrap();
        let mut processed = process(&client, &dirty, &mut redis).await;
        processed.sort_unstable();
        assert_eq!(processed, vec![JANUARY, FEBRUARY]);
        // January's only round moved to February: the hour is published empty.
        let expected = vec![row(FEBRUARY, "aa", 60_000, 2)];
        assert_eq!(published(&client).await, expected);
        assert_eq!(from_raw(&client).await, expected);
    }
}

#[tokio::test]
async fn a_processor_marks_every_hour_when_nothing_is_published_or_redis_lost_its_data() {
    use sluice_rollup::process::{catch_up, CatchUp};
    let (client, name) = database().await;
    let dirty = DirtyHours::new(&name);
    let mut redis = redis().await;
    // Rows of a deployment upgraded from before the rollups: nobody marked them.
    insert(&client, &[(JANUARY + 60, "aa", 1, "1.5", 10)]).await;
    let caught_up = catch_up(&client, &mut redis, &GAME_ROUNDS_HOURLY, &dirty).await;
    assert_eq!(caught_up.unwrap(), Some((CatchUp::NothingPublished, 1)));
    assert_eq!(process(&client, &dirty, &mut redis).await, [JANUARY]);
    let caught_up = catch_up(&client, &mut redis, &GAME_ROUNDS_HOURLY, &dirty).await;
    assert_eq!(caught_up.unwrap(), None, "published, and Redis agrees");

    // Redis loses everything, the February row's mark with it.
    insert(&client, &[(FEBRUARY + 60, "aa", 2, "2", 11)]).await;
    for key in ["seq", "dirty", "marks", "since"] {
        let _: () = redis::cmd("DEL")
            .arg(format!("rollup:{name}:{key}"))
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let caught_up = catch_up(&client, &mut redis, &GAME_ROUNDS_HOURLY, &dirty).await;
    assert_eq!(caught_up.unwrap(), Some((CatchUp::RedisLostItsData, 2)));
    process(&client, &dirty, &mut redis).await;
    assert_eq!(published(&client).await, from_raw(&client).await);
    assert_eq!(published(&client).await.len(), 2);
}

#[tokio::test]
async fn a_processor_that_outlived_its_claim_does_not_clear_an_hour_a_newer_claim_holds() {
    let dirty = DirtyHours::new(&unique("rollup"));
    let mut redis = redis().await;
    dirty.end(&mut redis, "b1", &[JANUARY]).await.unwrap();
    let short = Duration::from_millis(50);
    let stale = dirty.claim(&mut redis, 5, short, 0).await.unwrap();
    assert_eq!(stale.hours, [JANUARY]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer = dirty.claim(&mut redis, 5, LEASE, 0).await.unwrap();
    assert_eq!(newer.hours, [JANUARY], "the first claim ran out");

    assert_eq!(
        dirty
            .clear(&mut redis, stale.version, &stale.hours)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        dirty.between(&mut redis, 0, u32::MAX).await.unwrap(),
        [JANUARY]
    );
    let third = dirty.claim(&mut redis, 5, LEASE, 0).await.unwrap();
    assert!(
        third.hours.is_empty(),
        "the newer claim still holds the hour"
    );
    assert_eq!(
        dirty
            .clear(&mut redis, newer.version, &newer.hours)
            .await
            .unwrap(),
        1
    );
    assert!(dirty
        .between(&mut redis, 0, u32::MAX)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn applying_the_migrations_to_a_database_with_rows_reads_none_of_them() {
    // Every service applies them at start: on 100 M rows a statement that reads the tables
    // (a view's IN subquery is run when ClickHouse 18.16 analyses a CREATE) fails or stalls.
    let (client, name) = database().await;
    client
        .query(&format!(
            "INSERT INTO round_versions (created_timestamp, game_instance_id, user_id, game_id, \
             version) SELECT toDateTime({JANUARY} + number % 7200), number, \
             lower(hex(MD5(toString(number)))), 7, 1 FROM system.numbers LIMIT 300000"
        ))
        .execute()
        .await
        .unwrap();
    // The catalogue's own rows (system.tables of this database) stay below the row limit; a
    // set of the 300,000 keys (what analysing an IN subquery builds) does not fit in 20 MB.
    let strict = client
        .clone()
        .with_setting("max_rows_to_read", "100")
        .with_setting("max_memory_usage", "20000000");
    sluice_schema::migrations::apply(&strict, &name)
        .await
        .unwrap();
    client
        .query("DROP TABLE game_rounds")
        .execute()
        .await
        .unwrap();
    sluice_schema::migrations::apply(&strict, &name)
        .await
        .unwrap();
    let rounds: u64 = client
        .query("SELECT count() FROM game_rounds")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rounds, 300_000, "the view counts every round once");
}

#[tokio::test]
async fn an_old_game_rounds_table_is_copied_into_round_versions_and_becomes_the_view() {
    let name = unique("rollup");
    let client = Stack::get().clickhouse_client(&name);
    client
        .clone()
        .with_database("default")
        .query(&format!("CREATE DATABASE {name}"))
        .execute()
        .await
        .unwrap();
    // The table of earlier releases (migrations 1 and 4), with a round stored in two months.
    for migration in &sluice_schema::migrations::MIGRATIONS[..4] {
        client.query(migration.sql).execute().await.unwrap();
    }
    client
        .query(
            "INSERT INTO game_rounds (created_timestamp, game_instance_id, user_id, game_id, \
             real_amount_bet, inserted_at) VALUES \
             (toDateTime(1580511660), 1, 'aa', 7, 1.5, toDateTime(1600000000)), \
             (toDateTime(1580515260), 1, 'aa', 7, 4, toDateTime(1600000100)), \
             (toDateTime(1580515300), 2, 'aa', 7, 2, toDateTime(1600000000))",
        )
        .execute()
        .await
        .unwrap();
    for _ in 0..2 {
        sluice_schema::migrations::apply(&client, &name)
            .await
            .unwrap();
    }
    let current: Vec<(u64, String)> = client
        .query(
            "SELECT game_instance_id, toString(assumeNotNull(real_amount_bet)) FROM game_rounds \
             ORDER BY 1",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        current,
        [(1, "4.0000".to_owned()), (2, "2.0000".to_owned())],
        "the later insert of round 1 wins, across months"
    );
    let kept: u64 = client
        .query("SELECT count() FROM game_rounds_before_versions")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kept, 3, "the old table is kept for the operator");
}
