//! `sluice upload`, `uploads` and `rejects`.

use sha2::{Digest, Sha256};
use sluice_testkit::generate::{self, Options};

use crate::helpers::{path_arg, spawn_pipeline, UPLOAD_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_prints_its_receipt_and_a_rerun_is_answered_from_the_files_sha256() {
    let pipeline = spawn_pipeline().await;
    let export = generate::export(&Options::new(500));
    let path = pipeline.file("rounds.csv", &export.bytes);

    let first = pipeline
        .sluice(&["upload", path_arg(&path), "--wait", "60"])
        .run()
        .await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.starts_with("rounds.csv: upload ")
            && first
                .stdout
                .contains("500 rows read, 500 accepted, 0 rejected (UTF-16BE"),
        "{first:?}"
    );
    assert!(
        first
            .stdout
            .contains("landed: all 500 accepted rows are in ClickHouse"),
        "{first:?}"
    );

    let again = pipeline
        .sluice(&["upload", path_arg(&path), "--json", "--wait", "0"])
        .run()
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    let receipt = again.json();
    assert_eq!(receipt["replayed"], true, "{receipt}");
    assert_eq!(receipt["accepted"], 500);
    let id = receipt["upload_id"].as_str().unwrap().to_owned();
    assert!(first.stdout.contains(&id), "{first:?}");

    // The key the CLI sent is the file's SHA-256: other bytes under that key get the same
    // receipt, answered before their body is read.
    let sha256 = hex::encode(Sha256::digest(&export.bytes));
    let other = reqwest::multipart::Part::bytes(b"not,even,a,header\n".to_vec())
        .file_name("other.csv")
        .mime_str("text/csv")
        .unwrap();
    let replay = reqwest::Client::new()
        .post(format!("{}/csv_upload", pipeline.producer_url))
        .bearer_auth(UPLOAD_TOKEN)
        .header("Idempotency-Key", &sha256)
        .multipart(reqwest::multipart::Form::new().part("file", other))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["upload_id"], id.as_str());

    // `uploads ID` shows the receipt with its reconciliation.
    let status = pipeline.sluice(&["uploads", &id]).run().await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status
            .stdout
            .starts_with(&format!("upload {id}: 500 rows read"))
            && status.stdout.contains("landed: all 500"),
        "{status:?}"
    );
    let running = pipeline.sluice(&["uploads"]).run().await;
    assert_eq!(running.code, 0, "{running:?}");
    assert_eq!(running.stdout, "No upload is running.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zstd_upload_is_the_same_upload_as_the_plain_file() {
    let pipeline = spawn_pipeline().await;
    let mut options = Options::new(300);
    options.encoding = generate::Encoding::Utf8;
    let export = generate::export(&options);
    let path = pipeline.file("rounds.csv", &export.bytes);

    let compressed = pipeline
        .sluice(&["upload", path_arg(&path), "--zstd", "--json", "--wait", "0"])
        .run()
        .await;
    assert_eq!(compressed.code, 0, "{compressed:?}");
    let receipt = compressed.json();
    assert_eq!(receipt["replayed"], false);
    assert_eq!(receipt["accepted"], 300, "{receipt}");
    // The receipt describes the file inside the zstd frame.
    assert_eq!(receipt["bytes"], export.bytes.len());
    assert_eq!(
        receipt["sha256"],
        hex::encode(Sha256::digest(&export.bytes))
    );

    // Plain, under another key: the producer recognises the content.
    let plain = pipeline
        .sluice(&[
            "upload",
            path_arg(&path),
            "--idempotency-key",
            "another-key",
            "--json",
            "--wait",
            "0",
        ])
        .run()
        .await;
    assert_eq!(plain.code, 0, "{plain:?}");
    assert_eq!(plain.json()["replayed"], true);
    assert_eq!(plain.json()["upload_id"], receipt["upload_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_with_bad_rows_exits_3_and_rejects_lists_every_one() {
    let pipeline = spawn_pipeline().await;
    let mut options = Options::new(400);
    options.bad_row_every = Some(50);
    let export = generate::export(&options);
    let expected = &export.summary;
    let path = pipeline.file("with_bad_rows.csv", &export.bytes);

    let upload = pipeline
        .sluice(&["upload", path_arg(&path), "--json"])
        .run()
        .await;
    assert_eq!(upload.code, 3, "{upload:?}");
    let receipt = upload.json();
    assert_eq!(receipt["rejected"], expected.bad_lines.len(), "{receipt}");
    let id = receipt["upload_id"].as_str().unwrap();

    let out = pipeline.dir.join("rejects.csv");
    let rejects = pipeline
        .sluice(&["rejects", id, "--out", path_arg(&out), "--wait", "60"])
        .run()
        .await;
    assert_eq!(rejects.code, 0, "{rejects:?}");
    assert!(
        rejects
            .stderr
            .contains(&format!("{} rejects written to", expected.bad_lines.len())),
        "{rejects:?}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("line,column,reason"));
    let listed: Vec<u64> = lines
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed, expected.bad_lines);

    let jsonl = pipeline
        .sluice(&["rejects", id, "--format", "jsonl"])
        .run()
        .await;
    assert_eq!(jsonl.code, 0, "{jsonl:?}");
    let first: serde_json::Value =
        serde_json::from_str(jsonl.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["line"], expected.bad_lines[0]);
    assert!(!first["reason"].as_str().unwrap().is_empty());
    assert_eq!(jsonl.stdout.lines().count(), expected.bad_lines.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_file_under_a_known_key_is_answered_before_it_is_sent() {
    let pipeline = spawn_pipeline().await;
    let mut options = Options::new(50);
    options.encoding = generate::Encoding::Utf8;
    let small = pipeline.file("small.csv", &generate::export(&options).bytes);
    let first = pipeline
        .sluice(&[
            "upload",
            path_arg(&small),
            "--idempotency-key",
            "batch-7",
            "--json",
        ])
        .run()
        .await;
    assert_eq!(first.code, 0, "{first:?}");

    // 64 MiB the producer never reads: its answer comes from the key alone, while the body is
    // still being sent.
    let big = pipeline.file("big.csv", &vec![b'x'; 64 << 20]);
    let again = pipeline
        .sluice(&[
            "upload",
            path_arg(&big),
            "--idempotency-key",
            "batch-7",
            "--json",
        ])
        .run()
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["replayed"], true);
    assert_eq!(again.json()["upload_id"], first.json()["upload_id"]);
}
