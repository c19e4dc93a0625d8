//! ClickHouse unreachable mid-load: the consumer keeps retrying with fetching paused, commits
//! nothing it has not inserted, and resumes when ClickHouse is back — no loss, no duplicates in the results.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_testkit::fault::FaultyLink;
use sluice_testkit::{clickhouse, http, kafka, unique, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_unreachable_for_20_seconds_loses_and_doubles_nothing() {
    let (topic, group, database) = (unique("outage"), unique("group"), unique("outage"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let stack = Stack::get();
    let link = FaultyLink::start(stack.clickhouse_address()).await;

    let mut config = config(&topic, &group, &database);
    config.clickhouse.url = format!("http://{}", link.address());
    config.insert_retry_initial_ms = 100;
    config.insert_retry_max_ms = 1_000;
    let (shutdown, handle) = spawn_consumer(config).await;
    let table = format!("{database}.game_rounds");

    kafka::produce(&topic, "first", &encoded_rounds(1, 3_000)).await;
    wait_for_committed(&group, &topic, 3_000).await;

    // The link to ClickHouse goes down; records keep arriving.
    link.cut();
    kafka::produce(&topic, "second", &encoded_rounds(3_001, 3_000)).await;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(20) {
        let committed = kafka::committed_total(&group, &topic, PARTITIONS).await;
        assert_eq!(
            committed, 3_000,
            "offsets moved while ClickHouse was unreachable"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        clickhouse::query(&format!("SELECT count() FROM {table}")).await,
        "3000"
    );

    // Back up: everything lands, once.
    link.heal();
    kafka::produce(&topic, "third", &encoded_rounds(6_001, 3_000)).await;
    wait_for_committed(&group, &topic, 9_000).await;
    let answer = clickhouse::query(&format!(
        "SELECT count(), uniqExact(game_instance_id), toString(sum(real_amount_bet)) FROM {table}"
    ))
    .await;
    assert_eq!(answer, "9000\t9000\t9000.0000");
    shutdown.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_within_a_second_naming_a_frozen_clickhouse_or_kafka() {
    let (topic, group, database) = (unique("ready"), unique("group"), unique("ready"));
    let broker = sluice_testkit::fault::PrivateBroker::start().await;
    let stack = Stack::get();
    let clickhouse = FaultyLink::start(stack.clickhouse_address()).await;
    let mut config = config(&topic, &group, &database);
    config.kafka_brokers = broker.brokers();
    config.clickhouse.url = format!("http://{}", clickhouse.address());
    let application = sluice_consumer::Application::build(config)
        .await
        .expect("the consumer starts");
    let url = format!("http://127.0.0.1:{}/ready", application.port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let ready = || async {
        let (status, body) = http::answer_within(&url, Duration::from_millis(1_500)).await;
        (status, body["clickhouse"].clone(), body["kafka"].clone())
    };
    let started = Instant::now();
    while ready().await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ready: {:?}",
            ready().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    clickhouse.freeze();
    assert_eq!(ready().await, (503, false.into(), true.into()));
    clickhouse.thaw();
    broker.link.freeze();
    assert_eq!(ready().await, (503, true.into(), false.into()));
    broker.link.thaw();
    shutdown.cancel();
    let _ = handle.await;
}

/// A topic the broker holds with another partition count than configured (as one auto-created by
/// a broker that lost its data) shows in every statistics round, not only at start.
#[tokio::test]
async fn each_topics_partition_count_as_the_brokers_report_it_is_a_gauge() {
    let (topic, group, database) = (unique("parts"), unique("group"), unique("parts"));
    let stack = Stack::get();
    sluice_schema::kafka::ensure_topic(&stack.kafka_brokers, &topic, 3, 1)
        .await
        .unwrap();
    let mut config = config(&topic, &group, &database);
    config.statistics_interval_ms = 200;
    let rejects = config.rejects_topic();
    let application = sluice_consumer::Application::build(config)
        .await
        .expect("the consumer starts");
    let url = format!("http://127.0.0.1:{}/metrics", application.port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let wanted = [
        format!("sluice_consumer_topic_partitions{{topic=\"{topic}\"}} 3"),
        format!("sluice_consumer_topic_partitions{{topic=\"{rejects}\"}} {PARTITIONS}"),
    ];
    let started = Instant::now();
    loop {
        let metrics = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let found = wanted.iter().all(|w| metrics.lines().any(|l| l == w));
        if found {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{wanted:?} not in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let _ = handle.await;
}
