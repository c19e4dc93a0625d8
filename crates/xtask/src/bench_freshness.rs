//! `bench freshness` (issue 13): a steady ingest of `rate` rows a second for `seconds`, each
//! second's batch written as the consumer writes one (its hours marked before and after the
//! insert), while the release processor and gateway run. For every batch: how long from its
//! landing until the gateway's answer holds it (unprocessed hours are read from raw rows), and
//! until the hourly rollup holds it (a version above the batch's mark is published for its
//! hour). The batches are a live stream: rows of the current second, so one hour is hot. Not a
//! test: nothing asserts on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::spec::GAME_ROUNDS_HOURLY;
use sluice_testkit::{Settings, Stack};
use tokio::process::Child;

use crate::bench::{build_release, println_table};
use crate::bench_query::{release_command, start_gateway, ClickHouse};

/// 2025-06-01T00:00:00Z: the stream's first second.
const START: u64 = 1_748_736_000;
/// Rounds of each batch's own probe player, whose answer tells when the batch is visible.
const PROBE_ROUNDS: u64 = 10;
/// How long a probe waits for the rollup after the ingest ended.
const DRAIN: Duration = Duration::from_secs(600);

/// The release processor on `database` of the stack.
pub(crate) fn spawn_processor(database: &str) -> anyhow::Result<Child> {
    Stack::try_get()?;
    let settings = Settings::processor().clickhouse(database).redis();
    let mut command = release_command(&settings, "sluice-processor");
    command.spawn().context("starting sluice-processor")
}

/// The probe player of batch `tick`.
fn probe_player(tick: u64) -> String {
    format!("{:032x}", 0xf4e5_0000_0000u64 + tick)
}

/// Batch `tick`: `rate` rows at second `START + tick`, of which `PROBE_ROUNDS` are its probe
/// player's; the rest spread over ten thousand players and fifty games.
fn batch_sql(database: &str, tick: u64, rate: u64) -> String {
    let probe = probe_player(tick);
    format!(
        "INSERT INTO {database}.round_versions (created_timestamp, game_instance_id, user_id, \
         game_id, real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win, \
         game_name, provider, upload_id, version) \
         SELECT toDateTime({at}), {tick} * {rate} + number + 1, \
         if(number < {PROBE_ROUNDS}, '{probe}', lower(hex(MD5(toString(number % 10000))))), \
         number % 50, toDecimal64(number % 10000, 4) / 100, NULL, \
         toDecimal64(number % 19000, 4) / 100, NULL, 'Book of Dead', 'Play''n GO', 'bench', \
         {version} FROM system.numbers LIMIT {rate}",
        at = START + tick,
        version = tick + 1,
    )
}

/// What one batch showed: seconds until answered, until processed (None: not within DRAIN).
type Probe = (f64, Option<f64>);

/// Follows batch `tick` (landed at `landed`, marked `mark`) until the gateway answers it and
/// the rollup holds it.
async fn follow(
    clickhouse: Arc<ClickHouse>,
    (http, url, key): (reqwest::Client, String, String),
    database: String,
    tick: u64,
    (landed, mark): (Instant, u64),
) -> anyhow::Result<Probe> {
    let at = START + tick;
    let hour = at - at % 3_600;
    let rfc3339 = |s: u64| {
        chrono::DateTime::from_timestamp(s as i64, 0)
            .expect("a moment")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let params = [
        ("player_id", probe_player(tick)),
        ("from", rfc3339(hour)),
        ("to", rfc3339(hour + 3_600)),
    ];
    let answered = loop {
        let page: serde_json::Value = http
            .get(format!("{url}/aggregated_game_rounds"))
            .header("X-API-Key", &key)
            .query(&params)
            .send()
            .await?
            .json()
            .await?;
        let rounds: u64 = page["data"].as_array().map_or(0, |data| {
            data.iter().filter_map(|b| b["rounds"].as_u64()).sum()
        });
        if rounds == PROBE_ROUNDS {
            break landed.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let published = format!(
        "SELECT max(version) FROM {database}.rollup_versions \
         WHERE rollup = '{}' AND bucket = toDateTime({hour})",
        GAME_ROUNDS_HOURLY.name
    );
    while landed.elapsed() < DRAIN {
        let version: u64 = clickhouse.run(&published).await?.parse().unwrap_or(0);
        if version > mark {
            return Ok((answered, Some(landed.elapsed().as_secs_f64())));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok((answered, None))
}

/// Median, p99 and max of `values` (not empty), formatted in seconds.
fn spread(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.2} s, p99 {:.2} s, max {:.2} s",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

pub async fn freshness(rate: u64, seconds: u64) -> anyhow::Result<()> {
    let clickhouse = Arc::new(ClickHouse::of_stack()?);
    let database = format!("bench_{}_freshness", std::process::id());
    let client = Stack::get().clickhouse_client(&database);
    sluice_schema::migrations::apply(&client, &database).await?;
    build_release("sluice-gateway").await?;
    build_release("sluice-processor").await?;
    let http = reqwest::Client::new();
    let (_gateway, gateway, key) = start_gateway(&database).await?;
    let url = gateway.url;
    let _processor = spawn_processor(&database)?;
    let dirty = DirtyHours::new(&database);
    let mut redis = sluice_testkit::rounds::redis_connection().await;

    let started = Instant::now();
    let mut probes = Vec::new();
    for tick in 0..seconds {
        let due = started + Duration::from_secs(tick);
        tokio::time::sleep_until(due.into()).await;
        let at = (START + tick) as u32;
        let hours = [at - at % 3_600];
        let batch = format!("bench-{tick}");
        dirty
            .begin(&mut redis, &batch, &hours, Duration::from_secs(600))
            .await?;
        clickhouse.run(&batch_sql(&database, tick, rate)).await?;
        let mark = dirty.end(&mut redis, &batch, &hours).await?;
        let gateway = (http.clone(), url.clone(), key.clone());
        let landed = (Instant::now(), mark);
        let follow = follow(clickhouse.clone(), gateway, database.clone(), tick, landed);
        probes.push(tokio::spawn(follow));
    }
    // Batch n is due at second n: the ingest lasts `seconds` when every batch kept pace.
    let ingest = started.elapsed().max(Duration::from_secs(seconds));
    let (mut answered, mut processed, mut never) = (Vec::new(), Vec::new(), 0);
    for probe in probes {
        let (answer, rollup) = probe.await??;
        answered.push(answer);
        match rollup {
            Some(seconds) => processed.push(seconds),
            None => never += 1,
        }
    }
    let rows = rate * seconds;
    println_table(&[
        (
            "ingested",
            format!(
                "{rows} rows in {:.1} s: {:.0} rows/s (target {rate})",
                ingest.as_secs_f64(),
                rows as f64 / ingest.as_secs_f64()
            ),
        ),
        ("landed → in the gateway's answer", spread(answered)),
        ("landed → in the hourly rollup", spread(processed)),
        ("batches not in the rollup within 600 s", never.to_string()),
        ("database (dropped)", database.clone()),
    ]);
    clickhouse.run(&format!("DROP DATABASE {database}")).await?;
    Ok(())
}
