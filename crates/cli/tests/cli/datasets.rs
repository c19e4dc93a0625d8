//! `sluice upload --dataset NAME` and `sluice query datasets/<name>/<endpoint>`: a file of the
//! `records` dataset (`datasets/records.toml`) through the producer, the consumer and the
//! gateway, and a dataset the producer does not serve.

use std::time::{Duration, Instant};

use sluice_schema::dataset::Spec;
use sluice_testkit::records::{self, Format};
use sluice_testkit::stack::workspace_root;

use crate::helpers::{path_arg, spawn_pipeline};

/// `records`' columns, in its spec's order.
const RECORDS_COLUMNS: &str = "id,created_at,country,category,amount,upload_id";

fn records_file(rows: u64) -> Vec<u8> {
    let spec = Spec::read(&workspace_root().join("datasets/records.toml")).unwrap();
    records::file(&spec, rows, 7, Format::Csv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_datasets_file_gets_a_receipt_naming_it_a_rerun_is_replayed_and_its_rows_print_in_order()
{
    let pipeline = spawn_pipeline().await;
    let path = pipeline.file("records.csv", &records_file(200));

    // A dataset's upload is reconciled like the rounds': waited for until its records landed.
    let first = pipeline
        .sluice(&[
            "upload",
            path_arg(&path),
            "--dataset",
            "records",
            "--wait",
            "60",
        ])
        .run()
        .await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.starts_with("records.csv: upload ")
            && first
                .stdout
                .contains(" (dataset records): 200 rows read, 200 accepted, 0 rejected"),
        "{first:?}"
    );
    assert!(
        first
            .stdout
            .contains("landed: all 200 accepted rows are in ClickHouse"),
        "{first:?}"
    );

    // Again: the first receipt, from the file's SHA-256 (scoped within the dataset).
    let again = pipeline
        .sluice(&[
            "upload",
            path_arg(&path),
            "--dataset",
            "records",
            "--json",
            "--wait",
            "0",
        ])
        .run()
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    let receipt = again.json();
    assert_eq!(receipt["replayed"], true, "{receipt}");
    assert_eq!(receipt["dataset"], "records", "{receipt}");
    assert_eq!(receipt["accepted"], 200, "{receipt}");
    let id = receipt["upload_id"].as_str().unwrap().to_owned();
    assert!(first.stdout.contains(&id), "{first:?}");

    let status = pipeline.sluice(&["uploads", &id]).run().await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status
            .stdout
            .starts_with(&format!("upload {id} (dataset records): 200 rows read")),
        "{status:?}"
    );

    // The rows, once the consumer wrote them, in the spec's column order in every format.
    let (_, key) = pipeline.create_key(1_000).await;
    let query = |format: &'static str| {
        pipeline
            .sluice(&[
                "query",
                "datasets/records/rows",
                "limit=1000",
                "--format",
                format,
            ])
            .env("SLUICE_API_KEY", &key)
            .run()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let csv = loop {
        let csv = query("csv").await;
        assert_eq!(csv.code, 0, "{csv:?}");
        let rows = csv::Reader::from_reader(csv.stdout.as_bytes())
            .records()
            .count();
        if rows == 200 {
            break csv;
        }
        assert!(Instant::now() < deadline, "{rows} of 200 rows: {csv:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(csv.stdout.lines().next(), Some(RECORDS_COLUMNS));

    let jsonl = query("jsonl").await;
    assert_eq!(jsonl.code, 0, "{jsonl:?}");
    let lines: Vec<&str> = jsonl.stdout.lines().collect();
    assert_eq!(lines.len(), 200, "{jsonl:?}");
    for line in &lines {
        assert!(line.starts_with(r#"{"id":"#), "{line}");
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["upload_id"], id.as_str(), "{line}");
    }

    // A table: one line per row, though some text cells hold line breaks.
    let table = query("table").await;
    assert_eq!(table.code, 0, "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 201, "{table:?}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header.join(","), RECORDS_COLUMNS);
    assert!(table.stdout.contains("\\n"), "{table:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_dataset_is_a_client_error_that_says_where_datasets_come_from() {
    let pipeline = spawn_pipeline().await;
    let first = pipeline.file("a.csv", &records_file(5));
    let second = pipeline.file("b.csv", &records_file(6));

    let unknown = pipeline
        .sluice(&[
            "upload",
            path_arg(&first),
            path_arg(&second),
            "--dataset",
            "no_such_dataset",
        ])
        .run()
        .await;
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(unknown.stdout.is_empty(), "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("the producer answered 404: there is no dataset `no_such_dataset`"),
        "{unknown:?}"
    );
    // What to do: which datasets exist (the gateway's list) and where the producer's come from.
    assert!(
        unknown.stderr.contains("SLUICE_PRODUCER_DATASETS_DIR")
            && unknown
                .stderr
                .contains(&format!("`GET {}/datasets`", pipeline.gateway_url))
            && unknown
                .stderr
                .contains("(it lists game_rounds, amazon_reviews, events, records)"),
        "{unknown:?}"
    );
    // Said once: the second file would be refused the same way.
    assert_eq!(unknown.stderr.matches("error:").count(), 1, "{unknown:?}");

    // Not a name a dataset can have: the command line is wrong.
    let bad = pipeline
        .sluice(&["upload", path_arg(&first), "--dataset", "Records"])
        .run()
        .await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("not a dataset name"), "{bad:?}");
}
