//! Shared by the producer's integration tests: a producer in-process over the stack, the
//! export's header, and a multipart form whose file is streamed.
#![allow(dead_code)]

use sluice_producer::{Application, Config};
use sluice_testkit::{unique, Stack};

/// The export's header, every column in the order of the real export.
pub const HEADER: &str = "created_timestamp,game_instance_id,user_id,game_id,real_amount_bet,\
                          bonus_amount_bet,real_amount_win,bonus_amount_win,game_name,provider\n";

/// A producer running in-process.
pub struct Producer {
    pub url: String,
    /// Its topic, of its own.
    pub topic: String,
}

/// A producer in-process over the stack, with a Redis key prefix, transactional ids and a
/// two-partition topic of its own; `configure` runs last.
pub async fn spawn_producer(configure: impl FnOnce(&mut Config)) -> Producer {
    if std::env::var_os("TEST_LOG").is_some() {
        sluice_schema::telemetry::init_tracing("warn,sluice_producer=debug,rdkafka=info");
    }
    let mut config = Config::with_endpoints(&Stack::get().kafka_brokers, &Stack::get().redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("producer"));
    config.transactional_id_prefix = Some(unique("producer"));
    config.topic = unique("producer_test");
    config.topic_partitions = 2;
    configure(&mut config);
    let topic = config.topic.clone();
    let application = Application::build(config)
        .await
        .expect("the producer starts");
    let url = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    Producer { url, topic }
}

/// A multipart form whose `file` part (`file_name`, `text/csv`) is streamed from `body`, as
/// the test produces it.
pub fn streamed_file<S>(file_name: &str, body: S) -> reqwest::multipart::Form
where
    S: futures::TryStream + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    bytes::Bytes: From<S::Ok>,
{
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body))
        .file_name(file_name.to_owned())
        .mime_str("text/csv")
        .unwrap();
    reqwest::multipart::Form::new().part("file", part)
}
