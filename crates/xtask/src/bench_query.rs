//! `bench query` (issue 13): the six questions of the issue asked through the release gateway
//! over `rows` rounds shaped like play sessions, first with every hour unprocessed (the gateway
//! sums raw rows), then with every hour and day processed (the rollups), beside the floor — the
//! same question asked directly of the rollup table of its granularity (hourly or daily) — in
//! one run. Not a test: nothing asserts on time.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::process::{backfill, Processor};
use sluice_rollup::spec::{Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};
use sluice_testkit::gateway::Gateway;
use sluice_testkit::{Settings, Stack};
use tokio::process::{Child, Command};

use crate::bench::{build_release, println_table, release_binary};

/// 2025-01-01T00:00:00Z: the generated year starts here.
const YEAR_START: u64 = 1_735_689_600;
/// Rounds per play session (one player, one game), ten seconds apart.
const SESSION_ROUNDS: u64 = 300;
const PLAYERS: u64 = 100_000;
const GAMES: u64 = 500;
const ADMIN_TOKEN: &str = "bench-query-admin-token-of-some-length";

/// One question: its name, its query string, and the same question of the rollup table.
struct Question {
    name: &'static str,
    params: Vec<(&'static str, String)>,
    floor: String,
}

/// ClickHouse over HTTP as the stack's user.
pub(crate) struct ClickHouse {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
}

impl ClickHouse {
    /// The stack's ClickHouse (from the environment or `stack.env`).
    pub(crate) fn of_stack() -> anyhow::Result<ClickHouse> {
        let stack = Stack::try_get()?;
        Ok(ClickHouse {
            http: reqwest::Client::new(),
            url: stack.clickhouse_url.clone(),
            user: stack.clickhouse_user.clone(),
            password: stack.clickhouse_password.clone(),
        })
    }

    pub(crate) async fn run(&self, sql: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .body(sql.to_owned())
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("ClickHouse answered {status} to {sql}: {body}");
        }
        Ok(body.trim().to_owned())
    }
}

/// Rounds of play sessions: each session is one player playing one game, `SESSION_ROUNDS`
/// rounds ten seconds apart, starting somewhere in the year; money with two decimals.
fn generate_sql(database: &str, rows: u64) -> String {
    let span = 365 * 86_400 - SESSION_ROUNDS * 10;
    format!(
        "INSERT INTO {database}.round_versions (created_timestamp, game_instance_id, user_id, \
         game_id, real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win, \
         game_name, provider, upload_id, version) \
         SELECT toDateTime({YEAR_START} + cityHash64(intDiv(number, {SESSION_ROUNDS}), 1) % {span} \
         + (number % {SESSION_ROUNDS}) * 10), number + 1, \
         lower(hex(MD5(toString(cityHash64(intDiv(number, {SESSION_ROUNDS}), 2) % {PLAYERS})))), \
         cityHash64(intDiv(number, {SESSION_ROUNDS}), 3) % {GAMES}, \
         toDecimal64(cityHash64(number, 4) % 10000, 4) / 100, \
         if(number % 10 = 0, toDecimal64(cityHash64(number, 5) % 1000, 4) / 100, NULL), \
         toDecimal64(cityHash64(number, 6) % 19000, 4) / 100, toDecimal64(0, 4), \
         'Book of Dead', 'Play''n GO', 'bench', 1 \
         FROM system.numbers LIMIT {rows}"
    )
}

/// The six questions of the issue, about a player and a game that have rounds on the day that
/// starts at `day` (seconds), and the hour at noon that day.
fn questions(database: &str, player: &str, game: u64, day: u32) -> Vec<Question> {
    let floor = |bucket: &str, filter: &str| {
        let table = match bucket {
            "toStartOfDay" => "rollup_daily",
            _ => "rollup_hourly",
        };
        format!(
            "SELECT toUInt32({bucket}(bucket)) AS start, user_id, game_id, sum(real_amount_bet), \
             sum(bonus_amount_bet), sum(real_amount_win), sum(bonus_amount_win), sum(rounds) \
             FROM {database}.{table} WHERE {filter} GROUP BY start, user_id, game_id \
             ORDER BY start, user_id, game_id LIMIT 1001 FORMAT Null"
        )
    };
    let rfc3339 = |seconds: u32| {
        chrono::DateTime::from_timestamp(i64::from(seconds), 0)
            .expect("a moment")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (noon, to) = (day + 12 * 3600, day + 86_400);
    let day_range = format!("bucket >= toDateTime({day}) AND bucket < toDateTime({to})");
    let (day, to, hour, hour_to) = (
        rfc3339(day),
        rfc3339(to),
        rfc3339(noon),
        rfc3339(noon + 3600),
    );
    let (day, to, hour) = (day.as_str(), to.as_str(), hour.as_str());
    let owned = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    vec![
        Question {
            name: "player, one day",
            params: owned(&[("player_id", player), ("from", day), ("to", to)]),
            floor: floor(
                "toStartOfHour",
                &format!("user_id = '{player}' AND {day_range}"),
            ),
        },
        Question {
            name: "player, whole year, daily",
            params: owned(&[
                ("player_id", player),
                ("from", "2025-01-01"),
                ("to", "2026-01-01"),
                ("granularity", "day"),
            ]),
            floor: floor("toStartOfDay", &format!("user_id = '{player}'")),
        },
        Question {
            name: "game, one day",
            params: owned(&[("game_id", &game.to_string()), ("from", day), ("to", to)]),
            floor: floor(
                "toStartOfHour",
                &format!("game_id = {game} AND {day_range}"),
            ),
        },
        Question {
            name: "game, one month, daily",
            params: owned(&[
                ("game_id", &game.to_string()),
                ("from", "2025-03-01"),
                ("to", "2025-04-01"),
                ("granularity", "day"),
            ]),
            floor: floor(
                "toStartOfDay",
                &format!(
                    "game_id = {game} AND bucket >= toDateTime(1740787200) \
                     AND bucket < toDateTime(1743465600)"
                ),
            ),
        },
        Question {
            name: "everything, one hour",
            params: owned(&[("from", hour), ("to", &hour_to)]),
            floor: floor("toStartOfHour", &format!("bucket = toDateTime({noon})")),
        },
        Question {
            name: "everything, first page",
            params: Vec::new(),
            floor: floor("toStartOfHour", "1"),
        },
    ]
}

/// Latencies of `samples` runs of `ask` after one warm-up: (median, p99) in ms.
async fn time<F, Fut>(samples: usize, ask: F) -> anyhow::Result<(f64, f64)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    ask().await?;
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        ask().await?;
        took.push(started.elapsed().as_secs_f64() * 1_000.0);
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// The release build of the service `name` with `settings`, logging warnings only (on stdout,
/// discarded); what it panics with reaches the terminal.
pub(crate) fn release_command(settings: &Settings, name: &str) -> Command {
    let mut command = settings.command(release_binary(name));
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

fn spawn_gateway(database: &str, port: u16) -> anyhow::Result<Child> {
    Stack::try_get()?;
    let settings = Settings::gateway()
        .set("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .redis()
        .set("REDIS_KEY_PREFIX", format!("{database}:"))
        .clickhouse(database)
        .set("ADMIN_TOKEN", ADMIN_TOKEN)
        .set("CURSOR_SECRET", "bench-query-cursor-secret-of-32-bytes")
        .set("QUERY_TIMEOUT_MS", 600_000)
        .set("CHARGE_LEASE_MS", 1_200_000);
    let mut command = release_command(&settings, "sluice-gateway");
    command.spawn().context("starting sluice-gateway")
}

/// The gateway's URL once it is ready, and a key with credits for the whole run.
pub(crate) async fn start_gateway(database: &str) -> anyhow::Result<(Child, Gateway, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = spawn_gateway(database, port)?;
    let gateway = Gateway::new(format!("http://127.0.0.1:{port}"), ADMIN_TOKEN);
    gateway.wait_until_ready(Duration::from_secs(30)).await?;
    let key = gateway.unlimited_key("bench", 1_000_000_000).await?;
    Ok((child, gateway, key))
}

/// Asks one question of the gateway; the answer must be a 200 with data.
async fn ask(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    params: &[(&str, String)],
) -> anyhow::Result<()> {
    let response = http
        .get(format!("{url}/aggregated_game_rounds"))
        .header("X-API-Key", key)
        .query(params)
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if status != 200 || body["data"].as_array().is_none_or(|d| d.is_empty()) {
        bail!("{params:?}: {status} {body}");
    }
    Ok(())
}

/// Recomputes every dirty hour of `database` into the hourly rollup (marking their days),
/// then every dirty day into the daily one; returns how long each took.
async fn process_everything(database: &str) -> anyhow::Result<[Duration; 2]> {
    let stack = sluice_testkit::Stack::get();
    let client = stack.clickhouse_client(database);
    let mut redis = sluice_testkit::rounds::redis_connection().await;
    let hold = Duration::from_secs(3_600);
    let processor = |rollup: Rollup| {
        let dirty = DirtyHours::of(database, &rollup);
        Processor::new(&client, rollup, dirty, 168, hold)
    };
    let days = DirtyHours::of(database, &GAME_ROUNDS_DAILY);
    let hourly = processor(GAME_ROUNDS_HOURLY).await?;
    let mut took = [Duration::ZERO; 2];
    for (n, mut processor) in [
        hourly.feeding(GAME_ROUNDS_DAILY, days),
        processor(GAME_ROUNDS_DAILY).await?,
    ]
    .into_iter()
    .enumerate()
    {
        let started = Instant::now();
        while !processor.step(&client, &mut redis).await?.hours.is_empty() {}
        took[n] = started.elapsed();
    }
    Ok(took)
}

pub async fn query(rows: u64, samples: usize, raw_samples: usize) -> anyhow::Result<()> {
    let clickhouse = ClickHouse::of_stack()?;
    let database = format!("bench_{}_query", std::process::id());
    let client = sluice_testkit::Stack::get().clickhouse_client(&database);
    sluice_schema::migrations::apply(&client, &database).await?;
    build_release("sluice-gateway").await?;

    let started = Instant::now();
    clickhouse.run(&generate_sql(&database, rows)).await?;
    let generated = started.elapsed();
    let mut redis = sluice_testkit::rounds::redis_connection().await;
    let dirty = DirtyHours::new(&database);
    let last = sluice_rollup::hour_of(u32::MAX - sluice_rollup::HOUR_SECONDS);
    let hours = backfill(&client, &mut redis, &GAME_ROUNDS_HOURLY, &dirty, 0, last).await?;
    let player = clickhouse
        .run(&format!(
            "SELECT user_id FROM {database}.round_versions WHERE game_instance_id = 1"
        ))
        .await?;
    let game: u64 = clickhouse
        .run(&format!(
            "SELECT game_id FROM {database}.round_versions WHERE game_instance_id = 1"
        ))
        .await?
        .parse()?;
    let day: u32 = clickhouse
        .run(&format!(
            "SELECT intDiv(toUInt32(created_timestamp), 86400) * 86400 \
             FROM {database}.round_versions WHERE game_instance_id = 1"
        ))
        .await?
        .parse()?;
    let questions = questions(&database, &player, game, day);

    let http = reqwest::Client::new();
    let (_gateway, gateway, key) = start_gateway(&database).await?;
    let url = gateway.url;
    // Some raw answers fail at scale (ClickHouse's memory limit): shown as failed.
    let mut raw = Vec::new();
    for question in &questions {
        raw.push(time(raw_samples, || ask(&http, &url, &key, &question.params)).await);
    }
    let [hourly, daily] = process_everything(&database).await?;
    let mut counts = Vec::new();
    for table in ["rollup_hourly", "rollup_daily"] {
        let table = format!("{database}.{table}");
        clickhouse
            .run(&format!("OPTIMIZE TABLE {table} FINAL"))
            .await?;
        counts.push(
            clickhouse
                .run(&format!("SELECT count() FROM {table}"))
                .await?,
        );
    }
    let mut table = vec![
        (
            "rows",
            format!(
                "{rows} ({hours} hours; rollup rows: {} hourly, {} daily)",
                counts[0], counts[1]
            ),
        ),
        (
            "generated in ClickHouse",
            format!("{:.1} s", generated.as_secs_f64()),
        ),
        (
            "processed: every hour, then every day",
            format!(
                "{:.1} s, {:.1} s",
                hourly.as_secs_f64(),
                daily.as_secs_f64()
            ),
        ),
    ];
    eprintln!("| question | raw (all hours dirty) median / p99 | rollup median / p99 | floor median / p99 | rollup ≤ 2× floor + 20 ms |");
    eprintln!("| --- | --- | --- | --- | --- |");
    for (question, raw) in questions.iter().zip(raw) {
        let rollup = time(samples, || ask(&http, &url, &key, &question.params)).await?;
        let floor = time(samples, || async {
            clickhouse.run(&question.floor).await.map(drop)
        })
        .await?;
        let met = rollup.0 <= 2.0 * floor.0 + 20.0;
        let raw = match raw {
            Ok((median, p99)) => format!("{median:.0} / {p99:.0} ms"),
            Err(error) => {
                let error = error.to_string();
                format!("failed: {}", error.chars().take(60).collect::<String>())
            }
        };
        let met = if met { "yes" } else { "no" };
        eprintln!(
            "| {} | {raw} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {met} |",
            question.name, rollup.0, rollup.1, floor.0, floor.1,
        );
    }
    // SLUICE_BENCH_KEEP=1 keeps the database, to look into its statements afterwards.
    let keep = std::env::var_os("SLUICE_BENCH_KEEP").is_some();
    let fate = if keep { "kept" } else { "dropped" };
    table.push(("database", format!("{database} ({fate})")));
    println_table(&table);
    if !keep {
        clickhouse.run(&format!("DROP DATABASE {database}")).await?;
    }
    Ok(())
}
