//! The broker goes away in the middle of an upload: the client gets a clear 503, no receipt,
//! and nothing of the upload becomes visible on the topic.

use std::time::Duration;

use sluice_producer::{Application, Config};
use sluice_testkit::fault::PrivateBroker;
use sluice_testkit::generate::{self, Options};
use sluice_testkit::{http, kafka, unique, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_lost_mid_upload_fails_it_with_503_and_claims_nothing() {
    let broker = PrivateBroker::start().await;
    let mut config = Config::with_endpoints(broker.brokers(), &Stack::get().redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("outage"));
    config.transactional_id_prefix = Some(unique("outage"));
    config.topic = unique("outage");
    config.topic_partitions = 2;
    config.delivery_timeout_ms = 3_000;
    // A small window, so the upload cannot finish from buffers alone once the link is cut.
    config.max_in_flight = 1_000;
    let topic = config.topic.clone();
    let producer = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", producer.port());
    tokio::spawn(producer.run_until_stopped());

    let export = generate::export(&Options::new(300_000));
    let upload = tokio::spawn({
        let url = url.clone();
        async move { http::upload_csv(&url, export.bytes, "text/csv").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.link.cut();
    let upload = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("the producer answers")
        .unwrap();
    assert_eq!(upload.status, 503, "{}", upload.body);
    assert_eq!(upload.headers["retry-after"], "5");
    assert!(
        upload.body.get("upload_id").is_none(),
        "no receipt: {}",
        upload.body
    );

    broker.link.heal();
    let visible = kafka::consume_at(&broker.brokers(), &topic, 2, 1, Duration::from_secs(5)).await;
    assert!(
        visible.is_empty(),
        "{} records of a failed upload are visible",
        visible.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_next_upload_on_a_pooled_producer_succeeds() {
    let mut broker = PrivateBroker::start().await;
    let mut config = Config::with_endpoints(broker.brokers(), &Stack::get().redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("restart"));
    config.transactional_id_prefix = Some(unique("restart"));
    config.topic = unique("restart");
    config.topic_partitions = 2;
    config.max_concurrent_uploads = 1;
    let topic = config.topic.clone();
    let producer = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", producer.port());
    tokio::spawn(producer.run_until_stopped());

    let mut options = Options::new(1_000);
    options.first_instance_id = 1;
    let first = http::upload_csv(&url, generate::export(&options).bytes, "text/csv").await;
    assert_eq!(first.status, 200, "{}", first.body);

    // The broker comes back empty; an operator (or the services' start-up) recreates the topics.
    broker.restart().await;
    for name in [topic.clone(), format!("{topic}.rejects")] {
        sluice_schema::kafka::ensure_topic(&broker.brokers(), &name, 2, 1)
            .await
            .unwrap();
    }
    options.first_instance_id = 10_001;
    let started = std::time::Instant::now();
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        http::upload_csv(&url, generate::export(&options).bytes, "text/csv"),
    )
    .await
    .expect("the producer answers");
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let visible =
        kafka::consume_at(&broker.brokers(), &topic, 2, 1_000, Duration::from_secs(20)).await;
    assert_eq!(visible.len(), 1_000);
}
