//! A watcher serving a dataset declared in a file (`SLUICE_WATCHER_DATASET=records`,
//! `datasets/records.toml`) against the real broker, Redis and ClickHouse, with the consumer and
//! the producer in-process: its files (CSV, JSON Lines, Parquet) reach the dataset's topic and
//! from there `records_versions`, their receipts name the dataset, and their content is claimed
//! within it — the same bytes dropped again, or uploaded to the producer's
//! `POST /datasets/records/upload` before or after, are one upload; uploaded as another dataset,
//! they are an upload of their own, and held as game rounds, they are still read here. An
//! unknown dataset stops the start-up.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_producer::ingest::Receipt;
use sluice_producer::receipts::ReceiptStore;
use sluice_schema::dataset::Spec;
use sluice_testkit::records::{self, Format};
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{clickhouse, unique, Stack};
use tokio_util::sync::CancellationToken;

const INGESTED: &str = "sluice_watcher_files_total{outcome=\"ingested\"}";
const DUPLICATE: &str = "sluice_watcher_files_total{outcome=\"duplicate\"}";
const WAIT: Duration = Duration::from_secs(60);

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A directory of specs: `datasets/records.toml`, and the same columns as `records_copy`.
/// Returns the `records` spec and the directory.
fn specs() -> (Spec, String) {
    let text = std::fs::read_to_string(workspace_root().join("datasets/records.toml")).unwrap();
    let dir = scratch_dir("specs");
    std::fs::write(dir.join("records.toml"), &text).unwrap();
    let copy = text.replacen("name = \"records\"", "name = \"records_copy\"", 1);
    assert_ne!(copy, text, "records.toml names its dataset otherwise");
    std::fs::write(dir.join("records_copy.toml"), copy).unwrap();
    let spec = Spec::parse("records.toml", &text).unwrap();
    (spec, dir.display().to_string())
}

/// A producer in-process sharing the watcher's Redis prefix, rounds topic, specs and dataset
/// topic prefix; its URL.
async fn spawn_producer(names: &Names, specs: &str, prefix: &str) -> String {
    let stack = Stack::get();
    let mut config =
        sluice_producer::Config::with_endpoints(&stack.kafka_brokers, &stack.redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = names.redis_prefix.clone();
    config.transactional_id_prefix = Some(unique("producer"));
    config.topic = names.topic.clone();
    config.datasets_dir = Some(specs.to_owned());
    config.dataset_topic_prefix = prefix.to_owned();
    let producer = sluice_producer::Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", producer.port());
    tokio::spawn(producer.run_until_stopped());
    url
}

/// `bytes` uploaded as the file `name` to `path` of the producer at `url`: the status, whether
/// the answer is a replay (`Idempotent-Replayed: true`), and the answer.
async fn upload(url: &str, path: &str, name: &str, bytes: &[u8]) -> (u16, bool, serde_json::Value) {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec())
        .file_name(name.to_owned())
        .mime_str("text/csv")
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("Idempotent-Replayed")
        .is_some_and(|value| value == "true");
    (status, replayed, response.json().await.unwrap())
}

/// A CSV file (with its header) as Parquet, every column UTF-8 text.
fn parquet_of(csv_bytes: &[u8]) -> Vec<u8> {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let mut reader = csv::Reader::from_reader(csv_bytes);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let fields: Vec<String> = header
        .iter()
        .map(|column| format!("OPTIONAL BYTE_ARRAY {column} (UTF8);"))
        .collect();
    let schema = format!("message rows {{ {} }}", fields.join(" "));
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let properties = Arc::new(WriterProperties::builder().build());
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, properties).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut index = 0;
    while let Some(mut column) = group.next_column().unwrap() {
        let values: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(&r[index])).collect();
        let levels = vec![1_i16; rows.len()];
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, Some(&levels), None)
            .unwrap();
        column.close().unwrap();
        index += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_datasets_files_land_on_its_topic_named_by_their_receipts_and_claimed_within_it() {
    init_logs();
    let names = Names::new();
    let (spec, specs) = specs();
    let prefix = format!("{}.", unique("watch_datasets"));
    let consumer = spawn_consumer_with(&names, |consumer| {
        consumer.datasets_dir = Some(specs.clone());
        consumer.datasets = "records".into();
        consumer.dataset_topic_prefix = prefix.clone();
    })
    .await;
    let dir = scratch_dir("records_inbox");
    let mut config = watcher_config(&dir, &names);
    config.dataset = "records".into();
    config.datasets_dir = Some(specs.clone());
    config.dataset_topic_prefix = prefix.clone();
    let watcher = sluice_watcher::Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", watcher.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(watcher.run_until_stopped(shutdown.clone()));
    let producer = spawn_producer(&names, &specs, &prefix).await;
    let receipts = ReceiptStore::new(&Stack::get().redis_url, &names.redis_prefix).unwrap();

    // A file in each shape the dataset's plan reads (their ids overlap: the later files hold
    // later versions of the same records).
    let csv = records::file(&spec, 300, 1, Format::Csv);
    let jsonl = records::file(&spec, 200, 2, Format::JsonLines);
    let parquet = parquet_of(&records::file(&spec, 100, 3, Format::Csv));
    let files = [
        ("first.csv", &csv, 300),
        ("second.jsonl", &jsonl, 200),
        ("third.parquet", &parquet, 100),
    ];
    for (name, bytes, _) in &files {
        drop_file(&dir, name, bytes);
    }
    wait_for_metric(&url, INGESTED, 3.0, WAIT).await;

    // Each is claimed within the dataset (not as game rounds) by a receipt naming it.
    let mut landed = Vec::new();
    let mut ids = Vec::new();
    for (name, bytes, rows) in &files {
        let sha256 = sha256(bytes);
        assert_eq!(receipts.holder(&sha256).await.unwrap(), None, "{name}");
        let id = receipts
            .holder(&format!("records/{sha256}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: its content is not claimed within `records`"));
        let receipt = receipts.get(&id).await.unwrap().expect("a receipt");
        assert_eq!(
            (receipt.dataset.as_deref(), receipt.source.as_deref()),
            (Some("records"), Some(*name)),
            "{receipt:?}"
        );
        assert_eq!(
            (receipt.accepted, receipt.rejected, receipt.sha256.as_str()),
            (*rows, 0, sha256.as_str()),
            "{receipt:?}"
        );
        landed.push(format!("{id}\t{rows}"));
        ids.push(id);
    }
    let first_id = ids[0].clone();
    let answer: serde_json::Value = reqwest::get(format!("{producer}/uploads/{first_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (answer["dataset"].as_str(), answer["source"].as_str()),
        (Some("records"), Some("first.csv")),
        "{answer}"
    );

    // Their records went to the dataset's topic, which the consumer reads into its versions
    // table, every one under its file's upload; none went to the rounds.
    landed.sort();
    clickhouse::wait_for(
        &format!(
            "SELECT upload_id, count() FROM {}.records_versions FINAL GROUP BY upload_id \
             ORDER BY upload_id",
            names.database
        ),
        &landed.join("\n"),
        WAIT,
    )
    .await;
    let rounds = format!("SELECT count() FROM {}.round_versions", names.database);
    assert_eq!(clickhouse::query(&rounds).await, "0");

    // The first file's bytes again, under another name: a duplicate, not read.
    drop_file(&dir, "first-again.csv", &csv);
    wait_for_metric(&url, DUPLICATE, 1.0, WAIT).await;

    // The same bytes uploaded to the dataset: the file's upload, replayed.
    let (status, replayed, answer) =
        upload(&producer, "/datasets/records/upload", "first.csv", &csv).await;
    assert_eq!((status, replayed), (200, true), "{answer}");
    assert_eq!(answer["upload_id"].as_str(), Some(first_id.as_str()));

    // Uploaded first, then dropped: the file is a duplicate of the upload.
    let fourth = records::file(&spec, 50, 4, Format::Csv);
    let (status, replayed, answer) =
        upload(&producer, "/datasets/records/upload", "fourth.csv", &fourth).await;
    assert_eq!((status, replayed), (200, false), "{answer}");
    assert_eq!(answer["dataset"], "records", "{answer}");
    drop_file(&dir, "fourth.csv", &fourth);
    wait_for_metric(&url, DUPLICATE, 2.0, WAIT).await;
    let holder = receipts
        .holder(&format!("records/{}", sha256(&fourth)))
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), answer["upload_id"].as_str());

    // Another dataset's upload of the first file's bytes is an upload of its own.
    let (status, replayed, answer) = upload(
        &producer,
        "/datasets/records_copy/upload",
        "first.csv",
        &csv,
    )
    .await;
    assert_eq!((status, replayed), (200, false), "{answer}");
    assert_eq!(
        (answer["dataset"].as_str(), answer["accepted"].as_u64()),
        (Some("records_copy"), Some(300)),
        "{answer}"
    );
    assert_ne!(answer["upload_id"].as_str(), Some(first_id.as_str()));

    // Bytes held as game rounds (a claim and a receipt under the rounds' key, as an upload of
    // them to `/csv_upload` leaves): dropped here, they are read, not skipped.
    let fifth = records::file(&spec, 30, 5, Format::Csv);
    let rounds = Receipt {
        upload_id: unique("rounds_upload"),
        encoding: "UTF-8".into(),
        rows_read: 30,
        accepted: 30,
        rejected: 0,
        bytes: fifth.len() as u64,
        duration_ms: 1,
        sha256: sha256(&fifth),
        unknown_columns: Vec::new(),
        unknown_columns_count: 0,
        rejects: Vec::new(),
        source: None,
        dataset: None,
    };
    receipts
        .claim(&rounds.content_key(), &rounds.upload_id)
        .await
        .unwrap();
    receipts.save(&rounds, None).await.unwrap();
    drop_file(&dir, "fifth.csv", &fifth);
    wait_for_metric(&url, INGESTED, 4.0, WAIT).await;
    let holder = receipts
        .holder(&format!("records/{}", rounds.sha256))
        .await
        .unwrap()
        .expect("claimed within `records`");
    assert_ne!(holder, rounds.upload_id);

    wait_until_empty(&dir, WAIT).await;
    let processed: BTreeSet<String> = [
        "first.csv",
        "second.jsonl",
        "third.parquet",
        "first-again.csv",
        "fourth.csv",
        "fifth.csv",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(file_names(&dir.join("processed")), processed);
    assert_eq!(metric(&url, INGESTED).await, Some(4.0));
    assert_eq!(metric(&url, DUPLICATE).await, Some(2.0));

    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&specs).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dataset_stops_the_start_up_naming_the_setting() {
    init_logs();
    let names = Names::new();
    let (_, specs) = specs();
    let scratch = scratch_dir("unknown");
    let dir = scratch.join("inbox");

    // The binary, configured like a deployment, with a name that is not a spec of the directory.
    let output = binary_command(&dir, &names, free_port())
        .env("SLUICE_WATCHER_DATASET", "record")
        .env("SLUICE_WATCHER_DATASETS_DIR", &specs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("the watcher stops")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let said = format!(
        "{specs}: `SLUICE_WATCHER_DATASET`: there is no dataset `record` \
         (known: game_rounds, records, records_copy); name one of them, or declare it in \
         `{specs}/record.toml`"
    );
    assert!(stderr.contains(&said), "{stderr}");
    assert!(
        !dir.exists(),
        "the inbox was made before the dataset was looked up"
    );

    // In process: a dataset other than game_rounds with no directory to find it in.
    let mut config = watcher_config(&dir, &names);
    config.dataset = "records".into();
    let error = sluice_watcher::Application::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("set SLUICE_WATCHER_DATASETS_DIR to the directory holding `records.toml`"),
        "{error}"
    );
    assert!(!dir.exists());

    std::fs::remove_dir_all(&scratch).unwrap();
    std::fs::remove_dir_all(&specs).unwrap();
}
