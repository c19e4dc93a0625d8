//! The processor binary killed with SIGKILL, twice, while rounds keep arriving and moving between
//! hours and days (issue 13): a checker asking the gateway for hours and days never sees an
//! answer with more rounds than were produced or fewer than it saw before, and once everything
//! is processed the answer equals the last version of every round, per hour and per day.
//!
//! Rows are written the way the consumer writes them (docs/PROCESSING.md): a batch's hours, and
//! the hours its rounds' earlier versions are in, are marked before the insert and after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use sluice_rollup::dirty::DirtyHours;
use sluice_testkit::gateway::{self, expected_buckets, Buckets, Gateway};
use sluice_testkit::rounds::{redis_connection, COLUMNS};
use sluice_testkit::{Settings, Slice, Stack};
use tokio::process::Child;

const ADMIN_TOKEN: &str = "processor-crash-test-admin-token";
const WAVES: u64 = 8;
const NEW_PER_WAVE: u64 = 500;
const PLAYERS: u64 = 9;
/// 2019-10-28T00:00:00Z.
const START: u32 = 1_572_220_800;
const LEASE: Duration = Duration::from_secs(3);

/// A round's last content: (player, second, game, bet in ten-thousandths).
type Rounds = HashMap<u64, (u64, u32, u64, i64)>;

fn player_id(player: u64) -> String {
    format!("{:032x}", 0xdef0_0000 + player)
}

fn spawn_processor(database: &str) -> Child {
    Settings::processor()
        .clickhouse(database)
        .redis()
        // Small steps, so a kill lands mid-step; a killed claim holds its hours this long.
        .set("MAX_HOURS_PER_STEP", 4)
        .set("CLAIM_HOLD_MS", 3000)
        .set("IDLE_PAUSE_MS", 20)
        .command(env!("CARGO_BIN_EXE_sluice-processor"))
        .spawn()
        .expect("the sluice-processor binary starts")
}

/// Wave `wave`: new rounds, and new versions of every fifth earlier round with another bet,
/// moved by hours (every third of them by more than a day).
fn wave(wave: u64, last: &Rounds) -> Rounds {
    let mut versions: Rounds = (0..NEW_PER_WAVE)
        .map(|n| {
            let id = wave * NEW_PER_WAVE + n + 1;
            let at = START + (id * 7_919 % (3 * 86_400)) as u32;
            (id, (n % PLAYERS, at, n % 3, (id % 89 * 100) as i64))
        })
        .collect();
    for (id, (player, at, game, bet)) in last.iter().filter(|(id, _)| *id % 5 == wave % 5) {
        let shift = if id % 3 == 0 { 30 * 3_600 } else { 3_600 };
        versions.insert(*id, (*player, at + shift, *game, bet + 1));
    }
    versions
}

/// Writes `versions` as one consumer batch would: marks (begin), insert, marks (end).
async fn write(client: &Client, dirty: &DirtyHours, batch: u64, versions: &Rounds, last: &Rounds) {
    let hour = |at: u32| at - at % 3_600;
    let mut hours: Vec<u32> = versions.values().map(|v| hour(v.1)).collect();
    hours.extend(
        versions
            .keys()
            .filter_map(|id| last.get(id))
            .map(|v| hour(v.1)),
    );
    hours.sort_unstable();
    hours.dedup();
    let mut redis = redis_connection().await;
    let name = batch.to_string();
    dirty.begin(&mut redis, &name, &hours, LEASE).await.unwrap();
    let rows: Vec<String> = versions
        .iter()
        .map(|(id, (player, at, game, bet))| {
            format!(
                "(toDateTime({at}), {id}, '{}', {game}, {}, NULL, 0, NULL, 'Book of Dead', \
                 'Play''n GO', {batch})",
                player_id(*player),
                sluice_schema::domain::format_scaled(i128::from(*bet)),
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO round_versions ({COLUMNS}) VALUES {}",
        rows.join(", ")
    );
    client.query(&sql).execute().await.unwrap();
    dirty.end(&mut redis, &name, &hours).await.unwrap();
}

async fn spawn_gateway(slice: &Slice) -> Gateway {
    gateway::in_process(
        slice,
        ADMIN_TOKEN,
        "processor-crash-test-cursor-secret-32",
        |config| async {
            let application = sluice_gateway::Application::build(config).await.unwrap();
            (application.port(), application.run_until_stopped())
        },
    )
    .await
}

/// What the answer must be: the last version of every round, summed per bucket of `seconds`.
fn expected(last: &Rounds, seconds: u32) -> Buckets {
    let rounds = last.values();
    let rounds = rounds.map(|(player, at, game, bet)| (*at, player_id(*player), *game, *bet));
    expected_buckets(rounds, seconds)
}

/// Asks for hours and days until `stop`: never more rounds than produced, never fewer than the
/// last answer of the same granularity. Returns how many answers it checked.
fn spawn_checker(
    gateway: Gateway,
    key: String,
    produced: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = [0, 0];
        while !stop.load(Ordering::SeqCst) {
            for (n, granularity) in ["hour", "day"].into_iter().enumerate() {
                let answer = gateway.buckets(&key, granularity).await;
                // Rounds are counted as produced before they are written.
                let ceiling = produced.load(Ordering::SeqCst);
                let counted: u64 = answer.values().map(|v| v.0).sum();
                assert!(
                    counted <= ceiling,
                    "{granularity}: {counted} rounds of {ceiling}"
                );
                assert!(
                    counted >= last[n],
                    "{granularity}: {counted} after {}",
                    last[n]
                );
                last[n] = counted;
                checks.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

/// Waits until the checker has read both granularities at least once more than `seen`: each
/// wave is checked while the processors work on it, however loaded the machine is.
async fn checked_since(checks: &AtomicU64, seen: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while checks.load(Ordering::SeqCst) < seen + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checker made no check for two minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_stay_exact_while_processors_are_killed_mid_work_and_rounds_keep_moving() {
    let slice = Slice::new("crash");
    let database = slice.database.clone();
    let client = Stack::get().clickhouse_client(&database);
    sluice_schema::migrations::apply(&client, &database)
        .await
        .unwrap();
    let dirty = DirtyHours::new(&database);
    let gateway = spawn_gateway(&slice).await;
    let key = gateway.unlimited_key("checker", 1_000_000).await.unwrap();
    let mut processors = [spawn_processor(&database), spawn_processor(&database)];
    let (produced, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let checks = Arc::new(AtomicU64::new(0));
    let checker = spawn_checker(
        gateway.clone(),
        key.clone(),
        produced.clone(),
        stop.clone(),
        checks.clone(),
    );

    let mut last = Rounds::new();
    for n in 0..WAVES {
        let versions = wave(n, &last);
        let distinct = last.len() + versions.keys().filter(|id| !last.contains_key(id)).count();
        produced.store(distinct as u64, Ordering::SeqCst);
        let seen = checks.load(Ordering::SeqCst);
        write(&client, &dirty, n + 1, &versions, &last).await;
        last.extend(versions);
        if n % 3 == 1 {
            // SIGKILL while the hours just written are being processed.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let victim = &mut processors[n as usize % 2];
            victim.start_kill().unwrap();
            victim.wait().await.unwrap();
            *victim = spawn_processor(&database);
        }
        checked_since(&checks, seen).await;
    }

    sluice_testkit::rounds::wait_until_processed(&database).await;
    assert_eq!(gateway.buckets(&key, "hour").await, expected(&last, 3_600));
    assert_eq!(gateway.buckets(&key, "day").await, expected(&last, 86_400));
    stop.store(true, Ordering::SeqCst);
    checker.await.unwrap();
}
