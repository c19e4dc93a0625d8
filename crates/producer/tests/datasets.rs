//! Uploads of a dataset declared in a file (`datasets/records.toml`) through
//! `POST /datasets/{name}/upload`: rows read by the spec, records on the dataset's own topic
//! in the spec's Avro schema, rejects naming the spec's column, receipts and idempotency within
//! the dataset; `game_rounds` through the same route is `POST /csv_upload`; the document's
//! upload operation of each dataset served, its example accepted.

mod common;

use std::time::Duration;

use apache_avro::types::Value;
use common::{spawn_producer, HEADER};
use sluice_schema::dataset::plan::Plan;
use sluice_schema::dataset::Spec;
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{http, kafka, unique};

const RECORDS: &str = "id,created_at,country,category,amount\n\
                       1,2024-01-02 03:04:05,usa,Books,12.5\n\
                       2,2024-01-02 03:04:06, GBR ,Toys,0.01\n\
                       3,2024-01-02 03:04:07,US,Toys,1\n";

fn records_spec() -> Spec {
    Spec::read(&workspace_root().join("datasets/records.toml")).unwrap()
}

/// The fields of a record on the topic, decoded with the spec's schema after checking its
/// single-object header.
fn decode(spec: &Spec, message: &[u8]) -> Vec<Value> {
    let plan = Plan::compile(spec);
    let (header, mut datum) = message.split_at(plan.header().len());
    assert_eq!(header, plan.header(), "the spec's schema fingerprint");
    let schema = apache_avro::Schema::parse(&sluice_schema::dataset::avro::schema(spec)).unwrap();
    match apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap() {
        Value::Record(fields) => fields.into_iter().map(|(_, value)| value).collect(),
        other => panic!("not a record: {other:?}"),
    }
}

/// A producer serving the datasets of `dir`, their topics under a fresh prefix (returned).
async fn serving(dir: std::path::PathBuf, label: &str) -> (common::Producer, String) {
    let prefix = format!("{}.", unique(label));
    let producer = spawn_producer(|config| {
        config.datasets_dir = Some(dir.display().to_string());
        config.dataset_topic_prefix = prefix.clone();
    })
    .await;
    (producer, prefix)
}

#[tokio::test]
async fn a_records_file_is_read_by_its_spec_and_sent_to_the_datasets_own_topic() {
    let (producer, prefix) = serving(workspace_root().join("datasets"), "datasets").await;
    let path = "/datasets/records/upload";
    let upload = http::upload_to(&producer.url, path, RECORDS.into(), "text/csv", &[]).await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    let receipt = &upload.body;
    assert_eq!(receipt["dataset"], "records");
    assert_eq!(
        (receipt["accepted"].as_u64(), receipt["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        receipt["rejects"][0],
        serde_json::json!({"line": 4, "column": "country", "reason": "not 3 letters"})
    );

    let topic = format!("{prefix}records");
    let messages = kafka::consume(&topic, 2, 3, Duration::from_secs(8)).await;
    assert_eq!(messages.len(), 2, "the two accepted rows, and nothing else");
    let spec = records_spec();
    let mut rows: Vec<Vec<Value>> = messages.iter().map(|m| decode(&spec, &m.payload)).collect();
    rows.sort_by_key(|fields| format!("{:?}", fields[0]));
    let upload_id = Value::String(receipt["upload_id"].as_str().unwrap().to_owned());
    let text = |t: &str| Value::String(t.to_owned());
    assert_eq!(
        rows,
        [
            vec![
                Value::Long(1),
                Value::Long(1_704_164_645_000),
                text("USA"),
                text("Books"),
                Value::Long(1250),
                upload_id.clone()
            ],
            vec![
                Value::Long(2),
                Value::Long(1_704_164_646_000),
                text("GBR"),
                text("Toys"),
                Value::Long(1),
                upload_id
            ],
        ]
    );
    let rejects = kafka::consume(&format!("{topic}.rejects"), 2, 2, Duration::from_secs(5)).await;
    assert_eq!(rejects.len(), 1);

    // The same content again is the same upload; to game_rounds it is another upload, whose
    // header lacks the game-round columns.
    let again = http::upload_to(&producer.url, path, RECORDS.into(), "text/csv", &[]).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["upload_id"], receipt["upload_id"]);
    let rounds = http::upload_csv(&producer.url, RECORDS.into(), "text/csv").await;
    assert_eq!(rounds.status, 422, "{}", rounds.body);
    assert!(rounds.body["detail"]
        .as_str()
        .unwrap()
        .contains("game_instance_id"));
}

#[tokio::test]
async fn game_rounds_through_the_dataset_route_is_a_csv_upload_and_an_unknown_dataset_is_404() {
    let producer = spawn_producer(|_| {}).await;
    let csv = format!(
        "{HEADER}2019-10-22 08:20:42,20000,9ece8c4020f8aed10676cd1c56a41889,24002,2.5,NaN,,0,\
         Reactoonz,Play'n GO\n"
    );
    let path = "/datasets/game_rounds/upload";
    let upload = http::upload_to(&producer.url, path, csv.clone().into(), "text/csv", &[]).await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    assert_eq!(
        upload.body.get("dataset"),
        None,
        "a game-round receipt is unchanged"
    );
    let messages = kafka::consume(&producer.topic, 2, 2, Duration::from_secs(6)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].key, b"9ece8c4020f8aed10676cd1c56a41889");
    let replay = http::upload_csv(&producer.url, csv.into(), "text/csv").await;
    assert_eq!(replay.body["upload_id"], upload.body["upload_id"]);

    // Without a datasets directory, only game_rounds is served.
    let unknown = http::upload_to(
        &producer.url,
        "/datasets/records/upload",
        RECORDS.into(),
        "text/csv",
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["detail"], "there is no dataset `records`");
}

/// `tests/fixtures/evolved_datasets/`: `records` recorded as `datasets/records.toml` (v1), then
/// evolved by `note` (nullable) and `rank` (default 3) appended (v2).
fn evolved_dir() -> std::path::PathBuf {
    workspace_root().join("crates/producer/tests/fixtures/evolved_datasets")
}

#[tokio::test]
async fn a_file_of_the_previous_version_is_read_by_the_evolved_spec() {
    let (producer, prefix) = serving(evolved_dir(), "evolved").await;
    let path = "/datasets/records/upload";
    // RECORDS is a file of v1: no `note`, no `rank`.
    let upload = http::upload_to(&producer.url, path, RECORDS.into(), "text/csv", &[]).await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    let receipt = &upload.body;
    assert_eq!(
        (receipt["accepted"].as_u64(), receipt["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{receipt}"
    );

    let topic = format!("{prefix}records");
    let messages = kafka::consume(&topic, 2, 2, Duration::from_secs(8)).await;
    assert_eq!(messages.len(), 2);
    let spec = Spec::read(&evolved_dir().join("records.toml")).unwrap();
    assert_eq!(spec.columns.len(), 8);
    for message in &messages {
        let fields = decode(&spec, &message.payload);
        assert_eq!(
            fields[6..],
            [Value::Union(0, Box::new(Value::Null)), Value::Long(3)],
            "{fields:?}"
        );
    }

    // A column of the first version is still required: the file is refused, naming it.
    let without = "id,created_at,country,amount,note\n1,2024-01-02 03:04:05,USA,1,x\n";
    let refused = http::upload_to(&producer.url, path, without.into(), "text/csv", &[]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("missing required column(s): category"),
        "{detail}"
    );
}

/// `/openapi.json` is built at start from the datasets served: an upload operation per
/// dataset, whose example file is a valid upload of it.
#[tokio::test]
async fn the_document_has_an_upload_per_dataset_served_and_its_example_is_accepted() {
    let (producer, _) = serving(workspace_root().join("datasets"), "datasets").await;
    let document: serde_json::Value = reqwest::get(format!("{}/openapi.json", producer.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = document["paths"].as_object().unwrap();
    let uploads: Vec<&str> = (paths.keys().map(String::as_str))
        .filter(|path| path.starts_with("/datasets/"))
        .collect();
    assert_eq!(
        uploads,
        [
            "/datasets/amazon_reviews/upload",
            "/datasets/events/upload",
            "/datasets/game_rounds/upload",
            "/datasets/records/upload",
            "/datasets/{name}/upload",
        ]
    );
    for path in &uploads[..4] {
        let operation = &paths[*path]["post"];
        let example = &operation["requestBody"]["content"]["multipart/form-data"]["example"];
        let file = example["file"].as_str().unwrap().to_owned();
        let upload = http::upload_to(&producer.url, path, file.into(), "text/csv", &[]).await;
        assert_eq!(upload.status, 200, "{path}: {}", upload.body);
        assert_eq!(
            (
                upload.body["accepted"].as_u64(),
                upload.body["rejected"].as_u64()
            ),
            (Some(1), Some(0)),
            "{path}: {}",
            upload.body
        );
    }
}

/// `bytes` compressed with gzip.
async fn gzip(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncWriteExt as _;
    let mut encoder = async_compression::tokio::write::GzipEncoder::new(Vec::new());
    encoder.write_all(bytes).await.unwrap();
    encoder.shutdown().await.unwrap();
    encoder.into_inner()
}

/// JSON Lines as one JSON array of the same objects.
fn json_array(lines: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(lines).unwrap();
    let objects: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    format!("[\n{}\n]", objects.join(",\n")).into_bytes()
}

/// The same records as CSV, a JSON array, JSON Lines (also gzipped) and Parquet, each told by
/// its content whatever its name says or when it says nothing, give the same records on the
/// topic; a file whose content contradicts its name or type is refused before any row is sent.
#[tokio::test]
async fn every_format_is_read_by_its_content_into_the_same_records() {
    use sluice_testkit::records::{file, Format};
    let (producer, prefix) = serving(workspace_root().join("datasets"), "formats").await;
    let spec = Spec::read(&workspace_root().join("datasets/events.toml")).unwrap();
    let rows = 300;
    let csv = file(&spec, rows, 5, Format::Csv);
    let lines = file(&spec, rows, 5, Format::JsonLines);
    let parquet = file(&spec, rows, 5, Format::Parquet);
    let octets = "application/octet-stream";
    let files = [
        (Some("events.csv"), "text/csv", csv),
        (Some("events.json"), "application/json", json_array(&lines)),
        (None, "application/x-ndjson", lines.clone()),
        (Some("events.jsonl.gz"), octets, gzip(&lines).await),
        (None, octets, parquet.clone()),
        (
            Some("events.parquet"),
            "application/vnd.apache.parquet",
            parquet,
        ),
    ];
    let path = "/datasets/events/upload";
    let mut ids = Vec::new();
    for (name, mime, bytes) in files {
        let upload = http::File { name, mime, bytes };
        let upload = http::upload_file(&producer.url, path, upload, &[]).await;
        let receipt = &upload.body;
        assert_eq!(upload.status, 200, "{name:?} {mime}: {receipt}");
        assert_eq!(
            (receipt["accepted"].as_u64(), receipt["rejected"].as_u64()),
            (Some(rows), Some(0)),
            "{name:?} {mime}: {receipt}"
        );
        ids.push(receipt["upload_id"].as_str().unwrap().to_owned());
    }

    let topic = format!("{prefix}events");
    let expected = 6 * rows as usize;
    let messages = kafka::consume(&topic, 2, expected, Duration::from_secs(15)).await;
    assert_eq!(messages.len(), expected);
    // Each upload's records, without their upload id (the last field), in identity order.
    let mut by_upload: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for message in &messages {
        let mut fields = decode(&spec, &message.payload);
        let Some(Value::String(upload_id)) = fields.pop() else {
            panic!("the upload id last: {fields:?}")
        };
        by_upload
            .entry(upload_id)
            .or_default()
            .push(format!("{fields:?}"));
    }
    let mut uploads: Vec<Vec<String>> = ids.iter().map(|id| by_upload[id].clone()).collect();
    for records in &mut uploads {
        records.sort();
    }
    assert_eq!(uploads[0].len(), rows as usize);
    for (i, records) in uploads.iter().enumerate().skip(1) {
        assert_eq!(records, &uploads[0], "upload {i} differs from the CSV's");
    }

    // Named one thing, holding another: refused, nothing sent.
    let contradicted = [
        (Some("events.json"), octets, lines.clone()),
        (Some("events.csv"), octets, lines.clone()),
        (None, "application/json", lines),
        (None, "image/png", vec![0x89, b'P', b'N', b'G']),
    ];
    for (name, mime, bytes) in contradicted {
        let upload = http::File { name, mime, bytes };
        let refused = http::upload_file(&producer.url, path, upload, &[]).await;
        assert_eq!(refused.status, 415, "{name:?} {mime}: {}", refused.body);
    }
    let after = kafka::consume(&topic, 2, expected + 1, Duration::from_secs(3)).await;
    assert_eq!(after.len(), expected, "nothing of the refused files");
}
