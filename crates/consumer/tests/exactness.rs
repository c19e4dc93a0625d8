//! Issue 13's exactness under load, against a real broker, ClickHouse and Redis: rounds arrive
//! in waves with duplicates and re-uploads that correct a round's bet and move it to another
//! hour or month; the consumer binary is killed with SIGKILL twice; two processor services
//! recompute hours and days at once. Meanwhile a checker asks the gateway again and again: the rounds it counts never
//! exceed those produced and never go down (never doubled, never short). Once the load has
//! landed and been processed, the answer equals the last version of every round.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::{GameRound, Money, PlayerId};
use sluice_testkit::gateway::{self, expected_buckets, Buckets, Gateway};
use sluice_testkit::{kafka, rounds, Slice, Stack};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "exactness-test-admin-token";
const PLAYERS: u64 = 12;
const WAVES: u64 = 6;
const NEW_PER_WAVE: u64 = 600;
/// 2019-10-28T00:00:00Z: rounds fall in the days around the end of October.
const START_MS: i64 = 1_572_220_800_000;

/// A round's content; the last one produced for a round is what the answer must hold.
#[derive(Debug, Clone, Copy)]
struct Version {
    player: u64,
    id: i64,
    at_ms: i64,
    game: u64,
    bet: i64,
}

impl Version {
    fn encode(&self) -> Vec<u8> {
        let round = GameRound {
            created_timestamp: self.at_ms,
            game_instance_id: self.id,
            user_id: PlayerId::parse(&player_id(self.player)).unwrap(),
            game_id: self.game as i64,
            real_amount_bet: Some(Money::from_scaled(self.bet)),
            bonus_amount_bet: None,
            real_amount_win: Some(Money::ZERO),
            bonus_amount_win: None,
            game_name: "Reactoonz".into(),
            provider: "Play'n GO".into(),
        };
        let mut bytes = Vec::new();
        GameRoundCodec::get().encode(&round, "exactness", &mut bytes);
        bytes
    }
}

fn player_id(player: u64) -> String {
    format!("{:032x}", 0xabc0_0000 + player)
}

/// Wave `wave`: new rounds, re-sent duplicates of earlier messages, and re-uploads of earlier
/// rounds with another bet, moved hours (every third one by more than a week, across the
/// month's end).
fn wave(wave: u64, sent: &[Version]) -> Vec<Version> {
    let mut versions: Vec<Version> = (0..NEW_PER_WAVE)
        .map(|n| {
            let id = (wave * NEW_PER_WAVE + n + 1) as i64;
            Version {
                player: n % PLAYERS,
                id,
                at_ms: START_MS + (id * 7_919 % (4 * 86_400)) * 1_000,
                game: n % 3,
                bet: id % 89 * 100,
            }
        })
        .collect();
    for (n, earlier) in sent
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 7 == wave as usize % 7)
    {
        versions.push(*earlier);
        let shift = if n % 3 == 0 {
            9 * 86_400
        } else {
            3_600 * (n as i64 % 5 + 1)
        };
        versions.push(Version {
            at_ms: earlier.at_ms + shift * 1_000,
            bet: earlier.bet + 1,
            ..*earlier
        });
    }
    versions
}

/// Produces `versions`, each player's under its key, in order.
async fn produce(topic: &str, versions: &[Version]) {
    for player in 0..PLAYERS {
        let payloads: Vec<Vec<u8>> = versions
            .iter()
            .filter(|v| v.player == player)
            .map(Version::encode)
            .collect();
        kafka::produce(topic, &player_id(player), &payloads).await;
    }
}

async fn spawn_gateway(slice: &Slice) -> Gateway {
    gateway::in_process(
        slice,
        ADMIN_TOKEN,
        "exactness-test-cursor-secret-32-bytes",
        |config| async {
            let application = sluice_gateway::Application::build(config).await.unwrap();
            (application.port(), application.run_until_stopped())
        },
    )
    .await
}

/// What the answer must be: the last version of every round, summed per day, player and game.
fn expected(last: &HashMap<(u64, i64), Version>) -> Buckets {
    let rounds = last.values().map(|version| {
        let at = (version.at_ms / 1_000) as u32;
        (at, player_id(version.player), version.game, version.bet)
    });
    expected_buckets(rounds, 86_400)
}

/// A processor service (hourly and daily rollups, as deployed) running until `stop` fires.
async fn spawn_processor(database: &str, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let stack = Stack::get();
    let config = sluice_processor::Config {
        listen_addr: "127.0.0.1:0".into(),
        clickhouse: sluice_schema::config::ClickHouseSettings {
            url: stack.clickhouse_url.clone(),
            database: database.into(),
            user: stack.clickhouse_user.clone(),
            password: stack.clickhouse_password.clone().into(),
            cluster: None,
        },
        redis_url: stack.redis_url.clone().into(),
        max_hours_per_step: 24,
        rows_per_statement: 500,
        claim_hold_ms: 5_000,
        idle_pause_ms: 50,
        failure_pause_ms: 200,
        lag_interval_ms: 1_000,
        datasets_dir: None,
        datasets: String::new(),
    };
    let application = sluice_processor::Application::build(config).await.unwrap();
    tokio::spawn(async move { application.run_until_stopped(stop).await.unwrap() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_stay_exact_with_duplicates_re_uploads_a_killed_consumer_and_two_processors() {
    let slice = Slice::new("exact");
    let (topic, group) = (slice.topic.clone(), slice.group.clone());
    let database = slice.database.clone();
    kafka::create_topic(&topic, PARTITIONS).await;
    let client = Stack::get().clickhouse_client(&database);
    sluice_schema::migrations::apply(&client, &database)
        .await
        .unwrap();
    let gateway = spawn_gateway(&slice).await;
    let key = gateway.unlimited_key("checker", 1_000_000).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_processors = CancellationToken::new();
    let processors = [
        spawn_processor(&database, stop_processors.clone()).await,
        spawn_processor(&database, stop_processors.clone()).await,
    ];
    // Distinct rounds produced so far: an answer never counts more, and never fewer than before.
    let produced = Arc::new(AtomicU64::new(0));
    let checker = tokio::spawn({
        let (gateway, key) = (gateway.clone(), key.clone());
        let (produced, stop) = (Arc::clone(&produced), Arc::clone(&stop));
        async move {
            let (mut checks, mut last) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let ceiling = produced.load(Ordering::SeqCst);
                let answer = gateway.buckets(&key, "day").await;
                let counted: u64 = answer.values().map(|v| v.0).sum();
                assert!(counted <= ceiling, "doubled: {counted} rounds of {ceiling}");
                assert!(counted >= last, "short: {counted} rounds after {last}");
                (checks, last) = (checks + 1, counted);
            }
            checks
        }
    });

    let mut consumer = spawn_binary(&topic, &group, &database);
    let (mut sent, mut messages) = (Vec::new(), 0);
    let mut last = HashMap::new();
    for n in 0..WAVES {
        let versions = wave(n, &sent);
        for version in &versions {
            last.insert((version.player, version.id), *version);
        }
        produced.store(last.len() as u64, Ordering::SeqCst);
        produce(&topic, &versions).await;
        messages += versions.len() as i64;
        sent.extend(versions);
        if n % 2 == 1 && n + 1 < WAVES {
            // SIGKILL, most likely mid-batch: leases without marks, offsets not committed.
            tokio::time::sleep(Duration::from_millis(300)).await;
            consumer.start_kill().unwrap();
            consumer.wait().await.unwrap();
            consumer = spawn_binary(&topic, &group, &database);
        }
    }
    wait_for_committed(&group, &topic, messages).await;

    // Then the killed instances' leases run out and the processors catch up, days too.
    rounds::wait_until_processed(&database).await;
    assert_eq!(gateway.buckets(&key, "day").await, expected(&last));
    stop.store(true, Ordering::SeqCst);
    let checks = checker.await.unwrap();
    assert!(checks >= 20, "the checker asked only {checks} times");
    stop_processors.cancel();
    for processor in processors {
        processor.await.unwrap();
    }
    consumer.start_kill().unwrap();
}
