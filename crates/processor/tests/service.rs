//! The processor service against the real ClickHouse and Redis: two instances at once bring a
//! backfilled range into the hourly and daily rollups exactly, and report it.

use std::time::{Duration, Instant};

use clickhouse::Client;
use secrecy::SecretString;
use sluice_processor::{backfill, Application, Config};
use sluice_rollup::spec::{Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};
use sluice_testkit::names::unique;
use sluice_testkit::stack::Stack;
use tokio_util::sync::CancellationToken;

/// 2020-01-30 00:00:00 UTC: ten days later is another month.
const START: u32 = 1_580_342_400;
/// Past the last hour the rows fall in.
const LAST: u32 = START + 12 * 86_400;

fn config(database: &str) -> Config {
    let stack = Stack::get();
    Config {
        listen_addr: "127.0.0.1:0".into(),
        clickhouse: sluice_schema::config::ClickHouseSettings {
            url: stack.clickhouse_url.clone(),
            database: database.into(),
            user: stack.clickhouse_user.clone(),
            password: SecretString::from(stack.clickhouse_password.clone()),
            cluster: None,
        },
        redis_url: SecretString::from(stack.redis_url.clone()),
        max_hours_per_step: 7,
        rows_per_statement: 1_000,
        claim_hold_ms: 30_000,
        idle_pause_ms: 50,
        failure_pause_ms: 200,
        lag_interval_ms: 100,
        datasets_dir: None,
        datasets: String::new(),
    }
}

/// 3,000 rounds of 37 players over fifty hours, a thousand of them delivered twice; then 400
/// of them uploaded again, dated ten days later (in February), under later versions.
async fn write_rounds(client: &Client) {
    let columns = "created_timestamp, game_instance_id, user_id, game_id, real_amount_bet, \
                   bonus_amount_bet, real_amount_win, bonus_amount_win, game_name, provider, \
                   upload_id, version";
    let insert = |numbers: &str, shift: u32, version: &str| {
        format!(
            "INSERT INTO round_versions ({columns}) SELECT toDateTime({START} + number * 60 + \
             {shift}), number, lower(hex(MD5(toString(number % 37)))), number % 5, \
             toDecimal64(number % 100, 4), NULL, toDecimal64(number % 7, 4), \
             toDecimal64(0, 4), 'Play''n GO', 'x', 'u', {version} FROM {numbers}"
        )
    };
    for sql in [
        insert("numbers(3000)", 0, "1"),
        insert("numbers(1000)", 0, "1"),
        insert("numbers(2500, 400)", 10 * 86_400, "2 + number % 3"),
    ] {
        client.query(&sql).execute().await.unwrap();
    }
}

/// Every bucket of `rollup` in the range, per group, as one text: from the published rollup,
/// and from the raw rows' current versions (the latest version of each round).
async fn answers(client: &Client, rollup: &Rollup) -> (String, String) {
    let hours: Vec<u32> = client
        .query(&GAME_ROUNDS_HOURLY.buckets_with_rows(START, LAST))
        .fetch_all()
        .await
        .unwrap();
    let text = |sql: String| {
        format!(
            "SELECT toString(groupArray(tuple(toUInt32(bucket), user_id, game_id, \
             toString(real_amount_bet), toString(bonus_amount_bet), \
             toString(real_amount_win), rounds))) FROM (SELECT * FROM ({sql}) \
             ORDER BY bucket, user_id, game_id)"
        )
    };
    let published = rollup.published(START, LAST);
    // Written here independently of the rollup's own definition: each round's greatest version
    // (argMax), then summed per bucket, player and game.
    let raw = format!(
        "SELECT {bucket} AS bucket, user_id, g AS game_id, \
               sum(rb) AS real_amount_bet, sum(bb) AS bonus_amount_bet, \
               sum(rw) AS real_amount_win, count() AS rounds FROM (\
               SELECT user_id, argMax(created_timestamp, version) AS at, \
               argMax(game_id, version) AS g, argMax(real_amount_bet, version) AS rb, \
               argMax(bonus_amount_bet, version) AS bb, argMax(real_amount_win, version) AS rw \
               FROM round_versions GROUP BY user_id, game_instance_id) \
               GROUP BY bucket, user_id, game_id",
        bucket = rollup.period.start_of("at")
    );
    assert!(!hours.is_empty());
    let published: String = client.query(&text(published)).fetch_one().await.unwrap();
    let raw: String = client.query(&text(raw)).fetch_one().await.unwrap();
    (published, raw)
}

/// Waits until `/metrics` shows no dirty hour and no dirty day; returns the metrics text.
async fn caught_up(base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
        let metrics = metrics.text().await.unwrap();
        let done = [
            "sluice_processor_dirty_hours{rollup=\"game_rounds_hourly\"} 0",
            "sluice_processor_dirty_days{rollup=\"game_rounds_daily\"} 0",
        ]
        .iter()
        .all(|gauge| metrics.lines().any(|l| l == *gauge));
        if done || Instant::now() > deadline {
            assert!(done, "buckets left dirty:\n{metrics}");
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_processors_bring_a_backfilled_range_into_the_hourly_and_daily_rollups_exactly() {
    let database = unique("processor");
    let config = config(&database);
    let first = Application::build(config.clone()).await.unwrap();
    let second = Application::build(config.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", first.port());
    let client = Stack::get().clickhouse_client(&database);
    write_rounds(&client).await;

    let hours = backfill(&config, START, LAST).await.unwrap();
    assert_eq!(
        hours,
        50 + 8,
        "fifty hours, and the eight the moved rounds went to"
    );
    let shutdown = CancellationToken::new();
    let running = [first, second].map(|app| tokio::spawn(app.run_until_stopped(shutdown.clone())));

    let deadline = Instant::now() + Duration::from_secs(60);
    for rollup in [GAME_ROUNDS_HOURLY, GAME_ROUNDS_DAILY] {
        let (published, raw) = loop {
            let (published, raw) = answers(&client, &rollup).await;
            if published == raw || Instant::now() > deadline {
                break (published, raw);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            published, raw,
            "{} equals the raw rows' current versions",
            rollup.name
        );
        assert!(raw.len() > 1_000, "the answer is not empty: {raw}");
    }

    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = caught_up(&base).await;
    assert!(metrics.contains("sluice_processor_hours_processed_total"));
    assert!(metrics.contains("sluice_processor_days_processed_total"));
    shutdown.cancel();
    for handle in running {
        handle.await.unwrap().unwrap();
    }
}
