//! A broker that restarts without its data (topics, offsets and groups gone; tansu's
//! `memory://` store, or a wiped single broker): the running consumer binary picks up the
//! re-created topics, rounds and rejects alike, within 30 s, without a restart of its own
//! (issue 12, item 22: it took ~5.5 minutes for the rejects topic).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_testkit::clickhouse::wait_for;
use sluice_testkit::fault::PrivateBroker;
use sluice_testkit::{kafka, unique};

async fn create_topics(brokers: &str, topics: &[&str]) {
    for topic in topics {
        sluice_schema::kafka::ensure_topic(brokers, topic, PARTITIONS, 1)
            .await
            .unwrap_or_else(|e| panic!("creating {topic}: {e}"));
    }
}

fn reject(upload_id: &str, line: u64) -> Vec<u8> {
    let reject = serde_json::json!({
        "upload_id": upload_id, "line": line, "column": "game_id", "reason": "not a number",
    });
    reject.to_string().into_bytes()
}

/// Waits until the consumer's `/ready` at `url` answers 200: its loop runs and Kafka,
/// ClickHouse and Redis answer.
async fn wait_until_ready(url: &str) {
    let started = Instant::now();
    loop {
        let status = reqwest::get(url).await.map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready after 60 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_without_its_data_the_consumer_reads_the_recreated_topics() {
    let (topic, group, database) = (unique("restart"), unique("group"), unique("restart"));
    let rejects_topic = format!("{topic}.rejects");
    let mut broker = PrivateBroker::start().await;
    let brokers = broker.brokers();
    create_topics(&brokers, &[&topic, &rejects_topic]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let settings = [
        ("SLUICE_CONSUMER_KAFKA_BROKERS", brokers.as_str()),
        ("SLUICE_CONSUMER_LISTEN_ADDR", listen.as_str()),
    ];
    let mut consumer = spawn_binary_with(&topic, &group, &database, &settings);
    wait_until_ready(&format!("http://{listen}/ready")).await;

    // The broker comes back empty. The rounds topic is created again at once (as the
    // producer does at start) and rounds arrive: they land within 30 s.
    broker.restart().await;
    create_topics(&brokers, &[&topic]).await;
    let restarted = Instant::now();
    kafka::produce_at(&brokers, &topic, "player", &encoded_rounds(1, 500)).await;
    let rounds = format!("SELECT uniqExact(game_instance_id) FROM {database}.round_versions");
    let within = |since: Instant| Duration::from_secs(30).saturating_sub(since.elapsed());
    wait_for(&rounds, "500", within(restarted)).await;

    // The rejects topic comes back only later, with the first reject (the consumer was told
    // it does not exist meanwhile): it is read within 30 s too (it took ~5.5 minutes).
    create_topics(&brokers, &[&rejects_topic]).await;
    let created = Instant::now();
    let rejects: Vec<Vec<u8>> = (1..=3).map(|line| reject("after", line)).collect();
    kafka::produce_at(&brokers, &rejects_topic, "player", &rejects).await;
    let rejects = format!("SELECT uniqExact(upload_id, line) FROM {database}.upload_rejects");
    wait_for(&rejects, "3", within(created)).await;
    assert!(
        consumer.try_wait().unwrap().is_none(),
        "the consumer exited"
    );
    consumer.start_kill().unwrap();
}
