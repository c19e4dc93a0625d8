//! The producer's OpenAPI document against the server, as the gateway's is checked: every
//! operation with valid and broken requests (multipart uploads with generated files
//! included), every answer checked against the document. The producer serves the
//! repository's datasets (`datasets/`), so each one's own upload operation is checked too. One
//! real upload (with rejected rows) is made first and its id given to the operations that take
//! one, so receipts, reconciliation (ClickHouse migrated, nothing landed: `landing`) and
//! rejects are checked too. Bounded to about a minute.

use std::time::Duration;

use sluice_producer::{Application, Config};
use sluice_testkit::generate::{self, Options};
use sluice_testkit::schemathesis::Run;
use sluice_testkit::{unique, Stack};

const UPLOAD_TOKEN: &str = "schemathesis-upload-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_agrees_with_the_server() {
    let stack = Stack::get();
    let mut config = Config::with_endpoints(&stack.kafka_brokers, &stack.redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("schemathesis"));
    config.transactional_id_prefix = Some(unique("schemathesis"));
    config.topic = unique("schemathesis_rounds");
    config.topic_partitions = 1;
    let datasets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    config.datasets_dir = Some(datasets.display().to_string());
    config.dataset_topic_prefix = format!("{}.", unique("schemathesis"));
    config.clickhouse.url = stack.clickhouse_url.clone();
    config.clickhouse.user = stack.clickhouse_user.clone();
    config.clickhouse.password = stack.clickhouse_password.clone().into();
    config.clickhouse.database = unique("schemathesis");
    let client = sluice_schema::migrations::client(
        &config.clickhouse.url,
        &config.clickhouse.database,
        &config.clickhouse.user,
        &stack.clickhouse_password,
    );
    sluice_schema::migrations::apply(&client, &config.clickhouse.database)
        .await
        .expect("migrations apply");
    config.upload_tokens = Some(UPLOAD_TOKEN.to_owned().into());
    let producer = Application::build(config)
        .await
        .expect("the producer starts");
    let url = format!("http://127.0.0.1:{}", producer.port());
    tokio::spawn(producer.run_until_stopped());
    let upload_id = upload_with_rejects(&url).await;

    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    Run {
        url: &url,
        config: &config,
        env: &[
            ("SLUICE_SCHEMATHESIS_UPLOAD_TOKEN", UPLOAD_TOKEN),
            ("SLUICE_SCHEMATHESIS_UPLOAD_ID", &upload_id),
        ],
        max_examples: 50,
        timeout: Duration::from_secs(180),
    }
    .passes()
    .await;
}

/// A committed upload of a generated export with rejected rows; its id.
async fn upload_with_rejects(url: &str) -> String {
    let mut options = Options::new(50);
    options.bad_row_every = Some(10);
    let export = generate::export(&options);
    let part = reqwest::multipart::Part::bytes(export.bytes)
        .file_name("rounds.csv")
        .mime_str("text/csv")
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{url}/csv_upload"))
        .bearer_auth(UPLOAD_TOKEN)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: serde_json::Value = response.json().await.unwrap();
    assert_eq!(receipt["rejected"], 5, "{receipt}");
    receipt["upload_id"].as_str().unwrap().to_owned()
}
