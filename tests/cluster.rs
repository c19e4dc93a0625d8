//! The whole pipeline on the sharded layout (issue 17): producer → Kafka → consumer → the
//! `Distributed` tables of `scripts/cluster` (2 shards × 2 replicas, ZooKeeper) → processor
//! (rollups) → gateway, beside the same pipeline on the single server. The same files go to
//! both; on the cluster a replica is stopped while rows arrive, then a whole shard; after
//! re-uploads and re-sent files every answer of the cluster's gateway equals the single
//! server's, read raw and read from the rollups. One test: it stops and starts the cluster's
//! servers, which no other test shares.

use std::time::{Duration, Instant};

use sluice_schema::migrations::{self, Layout, MigrationError};
use sluice_testkit::cluster::Cluster;
use sluice_testkit::gateway::Buckets;
use sluice_testkit::generate::{self, Encoding, Export, Options};
use sluice_testkit::{clickhouse, http, kafka, serve, Settings};
use sluice_tests::{Pipeline, Setup};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "test-admin-token-cluster-0123456789";
const PARTITIONS: i32 = 4;
const LANDED_WITHIN: Duration = Duration::from_secs(120);

/// A pipeline and its processor; `cluster`: on the cluster (every service's ClickHouse is the
/// cluster's first server, with the cluster named), else on the single server.
struct Run {
    pipeline: Pipeline,
    processor: Processing,
    key: String,
}

/// A running processor: its URL, and the token that stops it.
struct Processing {
    config: sluice_processor::Config,
    url: String,
    stop: CancellationToken,
}

impl Processing {
    async fn start(config: sluice_processor::Config) -> Processing {
        let processor = sluice_processor::Application::build(config.clone())
            .await
            .expect("the processor starts");
        let stop = CancellationToken::new();
        let url = serve(processor.port(), processor.run_until_stopped(stop.clone()));
        Processing { config, url, stop }
    }

    /// Stops it; [`Processing::restart`] starts it again on the same settings.
    fn stop(&self) {
        self.stop.cancel();
    }

    async fn restart(&mut self) {
        *self = Processing::start(self.config.clone()).await;
    }
}

impl Drop for Processing {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(label: &str, cluster: Option<&Cluster>) -> Run {
    let mut setup = Setup::new(label, ADMIN_TOKEN);
    setup.producer.topic_partitions = PARTITIONS;
    let mut processor = Settings::processor()
        .clickhouse(&setup.slice.database)
        .redis()
        .set("IDLE_PAUSE_MS", 50)
        .set("FAILURE_PAUSE_MS", 200);
    if let Some(cluster) = cluster {
        let url = cluster.url("s1r1").to_owned();
        for (clickhouse_url, clickhouse_cluster) in [
            (
                &mut setup.producer.clickhouse.url,
                &mut setup.producer.clickhouse.cluster,
            ),
            (
                &mut setup.consumer.clickhouse.url,
                &mut setup.consumer.clickhouse.cluster,
            ),
            (
                &mut setup.gateway.clickhouse.url,
                &mut setup.gateway.clickhouse.cluster,
            ),
        ] {
            *clickhouse_url = url.clone();
            *clickhouse_cluster = Some(cluster.name.clone());
        }
        processor = processor
            .set("CLICKHOUSE_URL", &url)
            .set("CLICKHOUSE_CLUSTER", &cluster.name);
    }
    let pipeline = setup.spawn().await;
    let processor = Processing::start(processor.config()).await;
    let key = pipeline.gateway.unlimited_key(label, 1_000_000).await;
    Run {
        key: key.expect("a key"),
        pipeline,
        processor,
    }
}

impl Run {
    /// Uploads `export`; the upload id.
    async fn upload(&self, export: &Export) -> String {
        let upload = http::upload_csv(
            &self.pipeline.producer_url,
            export.bytes.clone(),
            "text/csv",
        )
        .await;
        assert_eq!(upload.status, 200, "{}", upload.body);
        upload.body["upload_id"].as_str().unwrap().to_owned()
    }

    async fn landed(&self, id: &str) {
        let producer = &self.pipeline.producer_url;
        http::wait_until_landed(producer, id, None, LANDED_WITHIN).await;
    }

    async fn committed(&self) -> i64 {
        let slice = &self.pipeline.slice;
        kafka::committed_total(&slice.group, &slice.topic, PARTITIONS).await
    }

    /// The consumer's committed offsets once they stop moving (auto-commit runs every 5 s).
    async fn settled_offsets(&self) -> i64 {
        let mut last = self.committed().await;
        loop {
            tokio::time::sleep(Duration::from_secs(6)).await;
            let now = self.committed().await;
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// The processor's metric `name` now (its first series), if it reports it.
    async fn metric(&self, name: &str) -> Option<f64> {
        let metrics = format!("{}/metrics", self.processor.url);
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|line| line.starts_with(name));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    }

    /// Waits until the processor has no dirty hour or day left: answers come from rollups.
    async fn processed(&self) {
        let started = Instant::now();
        loop {
            let (hours, days) = (
                self.metric(sluice_processor::DIRTY_HOURS).await,
                self.metric(sluice_processor::DIRTY_DAYS).await,
            );
            if hours == Some(0.0) && days == Some(0.0) {
                return;
            }
            assert!(
                started.elapsed() < LANDED_WITHIN,
                "still dirty: {hours:?} hours, {days:?} days"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every answer the comparison looks at.
    async fn answers(&self, player: &str) -> Answers {
        let gateway = &self.pipeline.gateway;
        let player = [
            ("granularity", "day"),
            ("player_id", player),
            ("page_size", "1000"),
        ];
        let game = [
            ("granularity", "hour"),
            ("game_id", "25062"),
            ("from", "2019-10-22T00:00:00Z"),
            ("to", "2019-10-23T00:00:00Z"),
            ("page_size", "1000"),
        ];
        Answers {
            hours: gateway.buckets(&self.key, "hour").await,
            days: gateway.buckets(&self.key, "day").await,
            player_days: gateway.aggregated(&self.key, &player).await["data"].take(),
            game_hours: gateway.aggregated(&self.key, &game).await["data"].take(),
        }
    }
}

/// All hours, all days, one player's days, one game's hours of one day.
#[derive(Debug)]
struct Answers {
    hours: Buckets,
    days: Buckets,
    /// `data` of each (cursors are signed by each gateway's own secret).
    player_days: serde_json::Value,
    game_hours: serde_json::Value,
}

impl Answers {
    /// Fails with the first few differences (the answers are long).
    fn assert_same(&self, expected: &Answers, when: &str) {
        let buckets = |got: &Buckets, want: &Buckets| -> Vec<String> {
            let keys = got.keys().chain(want.keys());
            let differ = keys.filter(|k| got.get(*k) != want.get(*k));
            differ
                .take(5)
                .map(|k| format!("{k:?}: {:?} vs {:?}", got.get(k), want.get(k)))
                .collect()
        };
        let rows = |got: &serde_json::Value, want: &serde_json::Value| -> Vec<String> {
            let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
            let first = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i));
            first
                .map(|i| vec![format!("row {i}: {:?} vs {:?}", got.get(i), want.get(i))])
                .unwrap_or_default()
        };
        let differences = [
            ("hours", buckets(&self.hours, &expected.hours)),
            ("days", buckets(&self.days, &expected.days)),
            ("player", rows(&self.player_days, &expected.player_days)),
            ("game", rows(&self.game_hours, &expected.game_hours)),
        ];
        let differences: Vec<_> = differences.iter().filter(|(_, d)| !d.is_empty()).collect();
        assert!(
            differences.is_empty(),
            "{when}: the cluster (left) answers otherwise than one server: {differences:?}"
        );
    }
}

/// Waits until `replica` has fetched every part its peers logged for each replicated table
/// of `database`.
async fn sync_replicas(cluster: &Cluster, replica: &str, database: &str) {
    let tables = clickhouse::query_at(
        cluster.url(replica),
        &format!(
            "SELECT name FROM system.tables WHERE database = '{database}' \
             AND engine LIKE 'Replicated%'"
        ),
    )
    .await;
    for table in tables.lines().filter(|t| !t.is_empty()) {
        let sync = format!("SYSTEM SYNC REPLICA {database}.{table}");
        clickhouse::query_at(cluster.url(replica), &sync).await;
    }
}

/// A file of `rows` rounds numbered from `first`.
fn file(rows: u64, first: u64, seed: u64, encoding: Encoding) -> Export {
    let mut options = Options::new(rows);
    options.first_instance_id = first;
    options.seed = seed;
    options.encoding = encoding;
    generate::export(&options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_answers_as_one_server_through_a_replica_and_a_shard_down() {
    let cluster = Cluster::get();
    let (mut on_cluster, single) =
        tokio::join!(start("cluster", Some(cluster)), start("cluster_ref", None));
    let first = file(3_000, 1_000_000, 7, Encoding::Utf16Be);
    let second = file(3_000, 2_000_000, 8, Encoding::Utf16Be);
    let third = file(3_000, 3_000_000, 9, Encoding::Utf16Be);
    // The second file's rounds again, as other bytes: new versions of the same rounds.
    let second_again = file(3_000, 2_000_000, 8, Encoding::Utf8);
    for run in [&on_cluster, &single] {
        let id = run.upload(&first).await;
        run.landed(&id).await;
    }

    // A replica down while rows arrive: ingestion goes on, and it catches up when back.
    cluster.stop("s2r2");
    for run in [&on_cluster, &single] {
        let id = run.upload(&second).await;
        run.landed(&id).await;
    }
    cluster.start("s2r2");
    let database = &on_cluster.pipeline.slice.database.clone();
    let local_rows = format!("SELECT count() FROM {database}.round_versions_local");
    sync_replicas(cluster, "s2r2", database).await;
    assert_eq!(
        clickhouse::query_at(cluster.url("s2r2"), &local_rows).await,
        clickhouse::query_at(cluster.url("s2r1"), &local_rows).await,
        "the replica caught up"
    );

    // A whole shard down: inserts fail, offsets stay, and everything lands once it is back.
    let offsets = on_cluster.settled_offsets().await;
    cluster.stop("s2r1");
    cluster.stop("s2r2");
    let third_on_cluster = on_cluster.upload(&third).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        on_cluster.committed().await,
        offsets,
        "no offset moves while a shard cannot take its rows"
    );
    // The shard comes back second replica first, which takes the rows (their hours stay dirty:
    // the processor is down meanwhile); then that replica fails and the first returns without
    // them, unable to fetch them until its peer is back. The first replica is what every
    // service reads: a processor started now must not publish those hours from it.
    on_cluster.processor.stop();
    cluster.start("s2r2");
    on_cluster.landed(&third_on_cluster).await;
    cluster.stop("s2r2");
    cluster.start("s2r1");
    on_cluster.processor.restart().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        on_cluster.metric(sluice_processor::REPLICA_WAITS).await > Some(0.0),
        "the processor saw the first replica behind and waited"
    );
    cluster.start("s2r2");
    let id = single.upload(&third).await;
    single.landed(&id).await;
    for replica in ["s2r1", "s2r2"] {
        sync_replicas(cluster, replica, database).await;
    }
    on_cluster.processed().await;
    single.processed().await;
    let player = first.summary.totals.keys().next().unwrap().clone();
    let answers = on_cluster.answers(&player).await;
    answers.assert_same(
        &single.answers(&player).await,
        "after the first replica returned behind its peer",
    );

    // Re-sent and re-uploaded files collapse; retried inserts (shard 1 took its part of every
    // batch the shard outage failed) too.
    for run in [&on_cluster, &single] {
        let replay = run.upload(&first).await;
        run.landed(&replay).await;
        let again = run.upload(&second_again).await;
        run.landed(&again).await;
    }

    // A returning replica is read while it catches up (docs/SCALING.md): wait for both.
    for replica in ["s2r1", "s2r2"] {
        sync_replicas(cluster, replica, database).await;
    }

    let expected = single.answers(&player).await;
    assert!(expected.hours.len() > 10, "{expected:?}");
    for answer in [&expected.player_days, &expected.game_hours] {
        assert!(!answer.as_array().unwrap().is_empty(), "{answer}");
    }
    let answers = on_cluster.answers(&player).await;
    answers.assert_same(&expected, "read raw or mixed");
    on_cluster.processed().await;
    single.processed().await;
    let expected = single.answers(&player).await;
    let answers = on_cluster.answers(&player).await;
    answers.assert_same(&expected, "read from the rollups");
    let total: u64 = [&first, &second, &third]
        .iter()
        .map(|f| f.summary.good_rows)
        .sum();
    let stored = clickhouse::query_at(
        cluster.url("s1r1"),
        &format!("SELECT count() FROM {database}.game_rounds"),
    )
    .await;
    assert_eq!(stored, total.to_string(), "every round once");
}

#[tokio::test]
async fn a_database_of_one_layout_is_refused_by_the_other() {
    let cluster = Cluster::get();
    let stack = sluice_testkit::Stack::get();
    let connect = |url: &str| {
        sluice_schema::migrations::client(
            url,
            "default",
            &stack.clickhouse_user,
            &stack.clickhouse_password,
        )
    };
    let layout = Layout::Cluster(cluster.name.clone());
    let on_cluster = layout.configure(connect(cluster.url("s1r1")));

    // A service without the cluster setting, pointed at a server of the cluster.
    let database = sluice_testkit::unique("layout_single");
    let refused = migrations::apply(&on_cluster.clone().with_database(&database), &database).await;
    assert!(
        matches!(refused, Err(MigrationError::ServerInCluster(_))),
        "{refused:?}"
    );

    // A server of the cluster holding a plain table (as the services' migrations of one server
    // made them before they knew the cluster), then a service that says it is a cluster.
    let database = sluice_testkit::unique("layout_mixed");
    let s1r1 = cluster.url("s1r1");
    clickhouse::query_at(s1r1, &format!("CREATE DATABASE {database}")).await;
    let plain = "(upload_id String, line UInt64) ENGINE = ReplacingMergeTree() ORDER BY line";
    clickhouse::query_at(
        s1r1,
        &format!("CREATE TABLE {database}.upload_rejects {plain}"),
    )
    .await;
    let client = on_cluster.clone().with_database(&database);
    let refused = migrations::apply_on(&client, &database, &layout).await;
    assert!(
        matches!(refused, Err(MigrationError::MixedLayout { ref table, .. }) if table == "upload_rejects"),
        "{refused:?}"
    );

    // The cluster's own database, applied again (as every start does): nothing to do, even
    // with a server down, where an `ON CLUSTER` statement would wait for it.
    let database = sluice_testkit::unique("layout_cluster");
    let client = on_cluster.with_database(&database);
    migrations::apply_on(&client, &database, &layout)
        .await
        .unwrap();
    cluster.stop("s2r2");
    let again = tokio::time::timeout(
        Duration::from_secs(20),
        migrations::apply_on(&client, &database, &layout),
    )
    .await;
    cluster.start("s2r2");
    again.expect("applied again at once").unwrap();
}
