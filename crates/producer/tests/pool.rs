//! The pool of transactional producers against a real broker: every running upload has a
//! producer of its own id, so concurrent uploads never fence each other, before or after the
//! pool has created all its producers.

use std::time::Duration;

use sluice_producer::kafka::RoundProducer;
use sluice_producer::Config;
use sluice_testkit::{kafka, unique, Stack};

fn config(slots: usize) -> Config {
    let mut config = Config::with_endpoints(&Stack::get().kafka_brokers, &Stack::get().redis_url);
    config.transactional_id_prefix = Some(unique("pool"));
    config.topic = unique("pool_test");
    config.max_concurrent_uploads = slots;
    config
}

/// Begins `slots` transactions at once, sends one record in each and commits them all.
async fn concurrent_uploads(producer: &RoundProducer, slots: usize) {
    let mut transactions = Vec::new();
    for _ in 0..slots {
        transactions.push(
            tokio::time::timeout(Duration::from_secs(30), producer.begin_upload())
                .await
                .expect("a free slot")
                .expect("a transaction"),
        );
    }
    for (index, transaction) in transactions.iter().enumerate() {
        let mut window = transaction.window(10);
        window
            .send(format!("key-{index}").as_bytes(), b"payload")
            .await
            .expect("sent");
        window.finish().await.expect("acknowledged");
    }
    for transaction in transactions {
        transaction
            .commit()
            .await
            .expect("no transaction was fenced by another slot's producer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_each_get_a_producer_of_their_own() {
    let config = config(3);
    kafka::create_topic(&config.topic, 2).await;
    kafka::create_topic(&config.rejects_topic(), 2).await;
    let producer = RoundProducer::new(&config.kafka()).unwrap();
    // Slots created on demand while others are leased, then reused.
    concurrent_uploads(&producer, 3).await;
    concurrent_uploads(&producer, 3).await;
    let records = kafka::consume(&config.topic, 2, 7, Duration::from_secs(8)).await;
    assert_eq!(records.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialising_every_slot_up_front_gives_each_its_own_id() {
    let config = config(3);
    kafka::create_topic(&config.topic, 2).await;
    kafka::create_topic(&config.rejects_topic(), 2).await;
    let producer = RoundProducer::new(&config.kafka()).unwrap();
    producer.init_all_transactions().await.unwrap();
    concurrent_uploads(&producer, 3).await;
    let records = kafka::consume(&config.topic, 2, 4, Duration::from_secs(8)).await;
    assert_eq!(records.len(), 3);
}
