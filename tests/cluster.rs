//! The whole pipeline on the sharded layout (issue 17): producer → Kafka → consumer → the
//! `Distributed` tables of `scripts/cluster` (2 shards × 2 replicas, ZooKeeper) → processor
//! (rollups) → gateway, beside the same pipeline on the single server. The same files go to
//! both; on the cluster a replica is stopped while rows arrive, then a whole shard; after
//! re-uploads and re-sent files every answer of the cluster's gateway equals the single
//! server's, read raw and read from the rollups. Datasets declared in files (issue 14) go the
//! same way, beside one server too. The binary's tests run one at a time (nextest's `cluster`
//! group): one stops and starts the cluster's servers, which no other test shares.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_rollup::datasets::EndpointRollups;
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::spec::{Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};
use sluice_schema::dataset::{Catalog, Spec};
use sluice_schema::migrations::{self, Layout, MigrationError};
use sluice_testkit::cluster::Cluster;
use sluice_testkit::gateway::Buckets;
use sluice_testkit::generate::{self, Encoding, Export, Options};
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{clickhouse, http, kafka, serve, Settings, Stack};
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

/// The repository's `datasets/`.
fn datasets_dir() -> String {
    workspace_root().join("datasets").display().to_string()
}

/// A spec of the repository's `datasets/`.
fn shipped(name: &str) -> Spec {
    let catalog = Catalog::read(&workspace_root().join("datasets")).unwrap();
    catalog.get(name).unwrap().spec.clone()
}

/// Starts a run; every service serves `datasets` (besides game rounds) from the repository's
/// `datasets/`, on topics of the run's own prefix.
async fn start(label: &str, cluster: Option<&Cluster>, datasets: &[&str]) -> Run {
    let mut setup = Setup::new(label, ADMIN_TOKEN);
    setup.producer.topic_partitions = PARTITIONS;
    let mut processor = Settings::processor()
        .clickhouse(&setup.slice.database)
        .redis()
        .set("IDLE_PAUSE_MS", 50)
        .set("FAILURE_PAUSE_MS", 200);
    if !datasets.is_empty() {
        let prefix = format!("{}.", setup.slice.topic);
        setup.producer.datasets_dir = Some(datasets_dir());
        setup.producer.dataset_topic_prefix = prefix.clone();
        setup.consumer.datasets_dir = Some(datasets_dir());
        setup.consumer.datasets = datasets.join(",");
        setup.consumer.dataset_topic_prefix = prefix;
        setup.gateway.datasets_dir = Some(datasets_dir());
        processor = processor
            .set("DATASETS_DIR", datasets_dir())
            .set("DATASETS", datasets.join(","));
    }
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
    if let (Some(cluster), true) = (cluster, datasets.contains(&"events")) {
        events_tables_without_value(cluster, &setup.slice.database).await;
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
        metric_at(&self.processor.url, name).await
    }

    /// Waits until no hour or day of the rounds' rollups is dirty: answers come from rollups.
    async fn processed(&self) {
        self.drained_of(vec![GAME_ROUNDS_HOURLY, GAME_ROUNDS_DAILY])
            .await;
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

const DAY: i64 = 86_400;

/// How often the consumers of this process waited for a replica before looking earlier
/// versions up (the counter is process-wide, read through the gateway's `/metrics`; only a
/// consumer on the cluster ever waits).
async fn consumer_replica_waits(run: &Run) -> f64 {
    let waits = metric_at(
        &run.pipeline.gateway_url,
        sluice_consumer::metric::REPLICA_WAITS,
    );
    waits.await.unwrap_or(0.0)
}

/// Metric `name` (its first series) on the `/metrics` of the service at `url`, if it reports it.
async fn metric_at(url: &str, name: &str) -> Option<f64> {
    let metrics = format!("{url}/metrics");
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|line| line.starts_with(name));
    line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// Once both replicas of shard 2 hold every part and both runs processed every hour, the
/// cluster answers `player`'s questions as the one server.
async fn assert_settled_alike(
    cluster: &Cluster,
    database: &str,
    (on_cluster, single): (&Run, &Run),
    player: &str,
    when: &str,
) {
    for replica in ["s2r1", "s2r2"] {
        sync_replicas(cluster, replica, database).await;
    }
    on_cluster.processed().await;
    single.processed().await;
    let answers = on_cluster.answers(player).await;
    answers.assert_same(&single.answers(player).await, when);
}

/// `rows` rounds of one player (the one of `seed`) numbered from `first`, created from
/// `first_timestamp` on: the same arguments at another time are new versions of the same
/// rounds, in other hours.
fn file_at(rows: u64, first: u64, seed: u64, first_timestamp: i64) -> Export {
    let mut options = Options::new(rows);
    options.first_instance_id = first;
    options.seed = seed;
    options.players = 1;
    options.first_timestamp = first_timestamp;
    generate::export(&options)
}

/// A seed whose [`file_at`] player's rounds are stored on shard 2 (rounds shard by
/// `cityHash64(user_id)` over two shards of equal weight).
async fn seed_of_a_player_on_shard_2(cluster: &Cluster) -> u64 {
    for seed in 100.. {
        let export = file_at(1, 5_000_000, seed, generate::FIRST_TIMESTAMP);
        let player = export.summary.totals.keys().next().unwrap().clone();
        let shard = format!("SELECT cityHash64('{player}') % 2");
        if clickhouse::query_at(cluster.url("s1r1"), &shard).await == "1" {
            return seed;
        }
    }
    unreachable!()
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
    let (mut on_cluster, single) = tokio::join!(
        start("cluster", Some(cluster), &[]),
        start("cluster_ref", None, &[])
    );
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
    let player = first.summary.totals.keys().next().unwrap().clone();
    let runs = (&on_cluster, &single);
    let when = "after the first replica returned behind its peer";
    assert_settled_alike(cluster, database, runs, &player, when).await;

    // One player's rounds, on shard 2, written while its first replica is down (the peer
    // takes them, and the processor publishes their hours from it), then moved to other hours
    // once that replica is back but behind, its peer down. The consumer must not look their
    // earlier versions up on that replica: it would miss them, their published hours (no other
    // player's rounds are there) would not be marked and would count them beside their new
    // hours. The batch waits for the peer instead.
    let seed = seed_of_a_player_on_shard_2(cluster).await;
    let moved = file_at(300, 5_000_000, seed, generate::FIRST_TIMESTAMP + 2 * DAY);
    let moved_again = file_at(300, 5_000_000, seed, generate::FIRST_TIMESTAMP + 4 * DAY);
    // The peer holds everything first (the processor reads it while the replica is down).
    sync_replicas(cluster, "s2r2", database).await;
    cluster.stop("s2r1");
    for run in [&on_cluster, &single] {
        let id = run.upload(&moved).await;
        run.landed(&id).await;
    }
    on_cluster.processed().await;
    cluster.stop("s2r2");
    cluster.start("s2r1");
    let waits = consumer_replica_waits(&on_cluster).await;
    let moved_on_cluster = on_cluster.upload(&moved_again).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        consumer_replica_waits(&on_cluster).await > waits,
        "the consumer saw the first replica behind and waited"
    );
    cluster.start("s2r2");
    on_cluster.landed(&moved_on_cluster).await;
    let id = single.upload(&moved_again).await;
    single.landed(&id).await;
    let runs = (&on_cluster, &single);
    let when = "after rounds moved while the replica read was behind";
    assert_settled_alike(cluster, database, runs, &player, when).await;

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
    let total: u64 = [&first, &second, &third, &moved]
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

/// The datasets [`datasets_answer_on_the_cluster_as_on_one_server`] serves.
const DATASETS: [&str; 3] = ["events", "records", "amazon_reviews"];

/// The events tables on the cluster as a spec without the column `value` made them, before
/// the consumer starts: it must add it to every server's `events_versions_local` and to the
/// `Distributed` table (the evolution of `datasets/README.md`).
async fn events_tables_without_value(cluster: &Cluster, database: &str) {
    let stack = Stack::get();
    let layout = Layout::Cluster(cluster.name.clone());
    let client = migrations::client(
        cluster.url("s1r1"),
        database,
        &stack.clickhouse_user,
        &stack.clickhouse_password,
    );
    let client = layout.configure(client);
    migrations::apply_on(&client, database, &layout)
        .await
        .unwrap();
    let spec = shipped("events");
    let cluster_name = &cluster.name;
    let create = || sluice_rollup::datasets::create_tables(&client, &spec, &layout, database);
    create().await.unwrap();
    for drop in [
        format!("ALTER TABLE {database}.events_versions_local ON CLUSTER {cluster_name} DROP COLUMN value"),
        // 18.16 alters no `Distributed` table `ON CLUSTER` (its shards are replicated): made
        // again below, over the local tables as they are now.
        format!("DROP TABLE {database}.events_versions ON CLUSTER {cluster_name}"),
    ] {
        clickhouse::query_at(cluster.url("s1r1"), &drop).await;
    }
    create().await.unwrap();
}

/// An event row: id, type, moment, value.
type Event = (&'static str, &'static str, &'static str, &'static str);

fn events_csv(rows: &[Event]) -> String {
    let mut csv = "event_id,event_type,occurred_at,user_id,value\n".to_owned();
    for (id, kind, at, value) in rows {
        csv.push_str(&format!("{id},{kind},{at},user-{id},{value}\n"));
    }
    csv
}

/// A record row: id, moment, country, category, amount.
type Record = (u64, &'static str, &'static str, &'static str, &'static str);

fn records_csv(rows: &[Record]) -> String {
    let mut csv = "id,created_at,country,category,amount\n".to_owned();
    for (id, at, country, category, amount) in rows {
        csv.push_str(&format!("{id},{at},{country},{category},{amount}\n"));
    }
    csv
}

/// A review row: rating, asin, user, moment (ms).
type Review = (&'static str, &'static str, &'static str, i64);

fn reviews_csv(rows: &[Review]) -> String {
    let mut csv = "rating,title,text,asin,user_id,timestamp\n".to_owned();
    for (rating, asin, user, ms) in rows {
        csv.push_str(&format!("{rating},t,\"a, b\",{asin},{user},{ms}\n"));
    }
    csv
}

/// 2024-03-01T00:00:00Z, in milliseconds.
const DAY_ONE_MS: i64 = 1_709_251_200_000;
const HOUR_MS: i64 = 3_600_000;

/// One file of each dataset, as CSV.
struct Files {
    events: String,
    records: String,
    reviews: String,
}

impl Run {
    /// Uploads `csv` to `dataset` and waits until its records landed.
    async fn upload_dataset(&self, dataset: &str, csv: &str) {
        let producer = &self.pipeline.producer_url;
        let path = format!("/datasets/{dataset}/upload");
        let bytes = csv.as_bytes().to_vec();
        let upload = http::upload_to(producer, &path, bytes, "text/csv", &[]).await;
        assert_eq!(upload.status, 200, "{}", upload.body);
        assert_eq!(upload.body["rejected"], 0, "{}", upload.body);
        let id = upload.body["upload_id"].as_str().unwrap();
        http::wait_until_landed(producer, id, None, LANDED_WITHIN).await;
    }

    async fn upload_files(&self, files: &Files) {
        self.upload_dataset("events", &files.events).await;
        self.upload_dataset("records", &files.records).await;
        self.upload_dataset("amazon_reviews", &files.reviews).await;
    }

    /// Every row `path` answers with `params`, two per page, following `next_cursor`.
    async fn all(&self, path: &str, params: &[(&str, &str)]) -> Vec<Value> {
        self.pipeline.every_row(&self.key, path, params).await.0
    }

    /// Every answer of the datasets the comparison looks at; records without their
    /// `upload_id` (each run's own).
    async fn dataset_answers(&self) -> Vec<(&'static str, Vec<Value>)> {
        let by_type = "/datasets/events/by_type";
        let (records_path, reviews) = (
            "/datasets/records/rows",
            "/datasets/amazon_reviews/daily_by_asin",
        );
        let without_upload = |mut rows: Vec<Value>| {
            for row in &mut rows {
                row.as_object_mut().unwrap().remove("upload_id");
            }
            rows
        };
        vec![
            (
                "event hours",
                self.all(by_type, &[("granularity", "hour")]).await,
            ),
            (
                "event days",
                self.all(by_type, &[("granularity", "day")]).await,
            ),
            ("records", without_upload(self.all(records_path, &[]).await)),
            (
                "records of USA",
                without_upload(self.all(records_path, &[("country", "USA")]).await),
            ),
            ("reviews", self.all(reviews, &[]).await),
        ]
    }

    /// Waits until no hour or day of the datasets' rollups is dirty in this run's database.
    async fn drained(&self) {
        let rollups = ["events", "amazon_reviews"]
            .iter()
            .flat_map(|name| EndpointRollups::all(&shipped(name)))
            .flat_map(|(_, rollups)| rollups.levels().collect::<Vec<_>>())
            .collect();
        self.drained_of(rollups).await;
    }

    /// Waits until no bucket of `rollups` is dirty in this run's database (asked of Redis:
    /// the processors' gauges of both runs share their series in one process).
    async fn drained_of(&self, rollups: Vec<Rollup>) {
        let database = &self.pipeline.slice.database;
        let dirty: Vec<DirtyHours> = (rollups.iter())
            .map(|rollup| DirtyHours::of(database, rollup))
            .collect();
        let mut redis = sluice_testkit::rounds::redis_connection().await;
        let started = Instant::now();
        loop {
            let mut left = 0;
            for hours in &dirty {
                left += hours.lag(&mut redis).await.unwrap().dirty_hours;
            }
            if left == 0 {
                return;
            }
            assert!(
                started.elapsed() < LANDED_WITHIN,
                "{database}: {left} buckets still dirty"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Fails naming the answers of the cluster (`got`) that differ from one server's.
fn assert_same_answers(
    got: &[(&'static str, Vec<Value>)],
    want: &[(&'static str, Vec<Value>)],
    when: &str,
) {
    for ((name, got), (_, want)) in got.iter().zip(want) {
        assert!(!want.is_empty(), "{when}: one server answers no {name}");
        assert_eq!(
            got, want,
            "{when}: the cluster (left) answers other {name} than one server"
        );
    }
}

/// `SELECT`s `columns` of every row of `table` (a `_local` one) on the first replica of each
/// shard: what the shards hold, as `columns` joined by tabs, with the shard they are on.
async fn on_shards(
    cluster: &Cluster,
    database: &str,
    table: &str,
    columns: &str,
) -> Vec<(usize, String)> {
    let mut rows = Vec::new();
    for (shard, node) in ["s1r1", "s2r1"].iter().enumerate() {
        let sql = format!("SELECT DISTINCT {columns} FROM {database}.{table}");
        let text = clickhouse::query_at(cluster.url(node), &sql).await;
        rows.extend(text.lines().map(|line| (shard, line.to_owned())));
    }
    rows
}

/// Fails unless no value of `columns` in `table` (a `_local` one) is on both shards.
async fn assert_on_one_shard(cluster: &Cluster, database: &str, table: &str, columns: &str) {
    let rows = on_shards(cluster, database, table, columns).await;
    assert!(!rows.is_empty(), "{table} holds rows");
    let first: BTreeSet<&String> = rows
        .iter()
        .filter(|(s, _)| *s == 0)
        .map(|(_, r)| r)
        .collect();
    let both: Vec<&String> = rows
        .iter()
        .filter(|(s, r)| *s == 1 && first.contains(r))
        .map(|(_, r)| r)
        .collect();
    assert!(
        both.is_empty(),
        "{table}: ({columns}) = {both:?} on both shards"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn datasets_answer_on_the_cluster_as_on_one_server() {
    let cluster = Cluster::get();
    let (mut on_cluster, mut single) = tokio::join!(
        start("cluster_datasets", Some(cluster), &DATASETS),
        start("cluster_datasets_ref", None, &DATASETS)
    );
    // Read raw first: no processor until the first files are compared.
    for run in [&on_cluster, &single] {
        run.processor.stop();
    }
    let database = on_cluster.pipeline.slice.database.clone();

    // The consumer added the column the cluster's versions table lacked, on every server.
    let has_value = format!(
        "SELECT count() FROM system.columns WHERE database = '{database}' \
         AND table IN ('events_versions', 'events_versions_local') AND name = 'value'"
    );
    for node in ["s1r1", "s1r2", "s2r1", "s2r2"] {
        let columns = clickhouse::query_at(cluster.url(node), &has_value).await;
        assert_eq!(columns, "2", "`value` added on {node}");
    }

    let d2 = DAY_ONE_MS + 24 * HOUR_MS;
    let first = Files {
        events: events_csv(&[
            ("e1", "click", "2024-03-01 10:15:00", "1.5"),
            ("e2", "click", "2024-03-01 10:45:00", ""),
            ("e3", "view", "2024-03-01 11:05:00", "2"),
            ("e4", "click", "2024-03-02 09:00:00", "0.25"),
            // The same event twice in one file.
            ("e1", "click", "2024-03-01 10:15:00", "1.5"),
            ("e6", "scroll", "2024-03-01 12:00:00", ""),
        ]),
        records: records_csv(&[
            (1, "2024-01-02 03:00:00", "usa", "Books", "12.5"),
            (2, "2024-01-02 03:00:00", "USA", "Toys", "1"),
            (3, "2024-01-02 02:00:00", "USA", "Toys", "2"),
            (3, "2024-01-02 02:00:00", "USA", "Toys", "2"),
            (4, "2024-02-10 04:00:00", "FRA", "Games", "0.01"),
            (6, "2024-01-03 00:00:00", "USA", "Games", "7"),
        ]),
        reviews: reviews_csv(&[
            ("5.0", "B01", "u1", DAY_ONE_MS + HOUR_MS + 123),
            ("3.0", "B01", "u2", DAY_ONE_MS + 2 * HOUR_MS),
            ("4.0", "B02", "u1", d2 + 10),
            ("5.0", "B01", "u1", DAY_ONE_MS + HOUR_MS + 123),
            ("1.0", "B02", "u3", d2 + 5 * HOUR_MS),
        ]),
    };
    // Later versions: e2 became a view worth 3, e4 moved a day back (its published hour and
    // day must stop counting it), e5 is new, e1 is re-sent; record 3 moved to GBR; a review's
    // rating changed.
    let second = Files {
        events: events_csv(&[
            ("e2", "view", "2024-03-01 10:45:00", "3"),
            ("e4", "click", "2024-03-01 13:10:00", "0.25"),
            ("e5", "view", "2024-03-01 10:59:59", ""),
            ("e1", "click", "2024-03-01 10:15:00", "1.5"),
        ]),
        records: records_csv(&[
            (3, "2024-01-02 02:00:00", "GBR", "Toys", "2"),
            (1, "2024-01-02 03:00:00", "USA", "Books", "12.5"),
            (5, "2024-03-05 00:00:00", "USA", "Books", "3.25"),
        ]),
        reviews: reviews_csv(&[
            ("4.0", "B01", "u2", DAY_ONE_MS + 2 * HOUR_MS),
            ("4.0", "B02", "u1", d2 + 10),
            ("2.5", "B01", "u3", d2 + 1),
        ]),
    };
    tokio::join!(on_cluster.upload_files(&first), single.upload_files(&first));

    // A retried insert: every stored version of the events inserted again, which collapses
    // only where its copies meet (one shard, under `FINAL`).
    let retried =
        format!("INSERT INTO {database}.events_versions SELECT * FROM {database}.events_versions");
    let sync = format!("{}?insert_distributed_sync=1", cluster.url("s1r1"));
    clickhouse::query_at(&sync, &retried).await;
    let single_database = &single.pipeline.slice.database;
    clickhouse::query(&retried.replace(&database, single_database)).await;

    let expected = single.dataset_answers().await;
    let days = |rows: &[(&str, &str, u64, Value)]| -> Vec<Value> {
        rows.iter()
            .map(|(day, kind, events, value)| {
                serde_json::json!({"day": day, "event_type": kind, "events": events, "value": value})
            })
            .collect()
    };
    let first_days = days(&[
        ("2024-03-01T00:00:00Z", "click", 2, "1.5000".into()),
        ("2024-03-01T00:00:00Z", "scroll", 1, Value::Null),
        ("2024-03-01T00:00:00Z", "view", 1, "2.0000".into()),
        ("2024-03-02T00:00:00Z", "click", 1, "0.2500".into()),
    ]);
    assert_eq!(expected[1].1, first_days, "one server, read raw");
    assert_eq!(expected[2].1.len(), 5, "five records: {:?}", expected[2].1);
    assert_same_answers(&on_cluster.dataset_answers().await, &expected, "read raw");

    for run in [&mut on_cluster, &mut single] {
        run.processor.restart().await;
    }
    tokio::join!(on_cluster.drained(), single.drained());
    let expected = single.dataset_answers().await;
    assert_eq!(expected[1].1, first_days, "one server, from the rollups");
    assert_same_answers(
        &on_cluster.dataset_answers().await,
        &expected,
        "from the rollups",
    );

    tokio::join!(
        on_cluster.upload_files(&second),
        single.upload_files(&second)
    );
    let expected = single.dataset_answers().await;
    assert_same_answers(
        &on_cluster.dataset_answers().await,
        &expected,
        "after later versions",
    );
    tokio::join!(on_cluster.drained(), single.drained());
    let expected = single.dataset_answers().await;
    let later_days = days(&[
        ("2024-03-01T00:00:00Z", "click", 2, "1.7500".into()),
        ("2024-03-01T00:00:00Z", "scroll", 1, Value::Null),
        ("2024-03-01T00:00:00Z", "view", 3, "5.0000".into()),
    ]);
    assert_eq!(
        expected[1].1, later_days,
        "one server, later versions from the rollups"
    );
    assert_eq!(
        expected[0].1.len(),
        5,
        "five hours of types: {:?}",
        expected[0].1
    );
    assert_same_answers(
        &on_cluster.dataset_answers().await,
        &expected,
        "later versions from the rollups",
    );

    // Every version of a record, its identity rows, and every version of a rollup's bucket
    // and group are on one shard.
    for (table, columns) in [
        ("events_versions_local", "event_id"),
        ("events_identity_local", "event_id"),
        ("records_versions_local", "id"),
        ("amazon_reviews_versions_local", "asin, timestamp, user_id"),
        ("events_by_type_hourly_local", "bucket, event_type"),
        ("events_by_type_daily_local", "bucket, event_type"),
        ("amazon_reviews_daily_by_asin_daily_local", "bucket, asin"),
    ] {
        assert_on_one_shard(cluster, &database, table, columns).await;
    }
}
