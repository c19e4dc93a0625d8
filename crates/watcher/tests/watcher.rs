//! The watcher against a real broker, Redis and ClickHouse (with the consumer in-process):
//! about 200 files in every supported shape, duplicates under other names, half-written files
//! and corrupt ones; then a watcher binary killed with SIGKILL in the middle of a file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sluice_testkit::generate::{self, Encoding, Totals};
use sluice_testkit::Stack;
use tokio::process::Child;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_dropped_files_are_ingested_exactly_once() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("inbox");
    let consumer = spawn_consumer(&names).await;
    let watcher = sluice_watcher::Application::build(watcher_config(&dir, &names))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", watcher.port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(watcher.run_until_stopped(shutdown.clone()));

    let mut expected: BTreeMap<String, Totals> = BTreeMap::new();
    // Every file with content of its own: (name, bytes).
    let mut unique: Vec<(String, Vec<u8>)> = Vec::new();
    let mut index = 0_u64;
    let mut next = |rows: u64, encoding: Encoding, bad: Option<u64>| {
        index += 1;
        (index, options(index, rows, encoding, bad))
    };

    // 76 CSV files in every encoding, a third with bad rows.
    let encodings = [
        Encoding::Utf8,
        Encoding::Utf8Bom,
        Encoding::Utf16Le,
        Encoding::Utf16Be,
    ];
    for n in 0..76 {
        let bad = (n % 3 == 0).then_some(7);
        let (i, options) = next(40, encodings[n % 4], bad);
        let export = generate::export(&options);
        merge(&mut expected, &export.summary);
        unique.push((format!("rounds-{i:03}.csv"), export.bytes));
    }
    // 40 JSON Lines (5 of them UTF-16 LE) and 30 JSON arrays.
    for n in 0..40 {
        let (i, options) = next(30, Encoding::Utf8, (n % 4 == 0).then_some(6));
        let (bytes, summary) = json_lines(&options);
        merge(&mut expected, &summary);
        let bytes = if n < 5 { utf16le(&bytes) } else { bytes };
        unique.push((format!("rounds-{i:03}.jsonl"), bytes));
    }
    for n in 0..30 {
        let (i, options) = next(30, Encoding::Utf8, (n % 4 == 1).then_some(5));
        let (bytes, summary) = json_array(&options);
        merge(&mut expected, &summary);
        unique.push((format!("rounds-{i:03}.json"), bytes));
    }
    // 6 Parquet files, two of them compressed.
    for n in 0..6 {
        let (i, options) = next(50, Encoding::Utf8, (n % 2 == 0).then_some(9));
        let (bytes, summary) = parquet(&options);
        merge(&mut expected, &summary);
        match n {
            0 => unique.push((format!("rounds-{i:03}.parquet.gz"), gzip(&bytes).await)),
            1 => unique.push((format!("rounds-{i:03}.parquet.zst"), zstd(&bytes).await)),
            _ => unique.push((format!("rounds-{i:03}.parquet"), bytes)),
        }
    }
    // 16 compressed text files.
    for n in 0..16 {
        let (i, options) = next(40, encodings[n % 4], (n % 2 == 0).then_some(8));
        let export = generate::export(&options);
        merge(&mut expected, &export.summary);
        let (jsonl, summary) = json_lines(&options);
        assert_eq!(summary.good_rows, export.summary.good_rows);
        match n % 4 {
            0 => unique.push((format!("rounds-{i:03}.csv.gz"), gzip(&export.bytes).await)),
            1 => unique.push((format!("rounds-{i:03}.csv.zst"), zstd(&export.bytes).await)),
            // The same rounds again as JSON Lines: overlapping files must not double-count.
            2 => {
                unique.push((format!("rounds-{i:03}.csv"), export.bytes));
                unique.push((format!("rounds-{i:03}-again.jsonl.gz"), gzip(&jsonl).await));
            }
            _ => unique.push((format!("rounds-{i:03}.jsonl.zst"), zstd(&jsonl).await)),
        }
    }
    let ingested_files = unique.len();

    // Files that cannot be ingested, and why.
    let (_, header_options) = next(10, Encoding::Utf8, None);
    let bad_header = String::from_utf8(generate::export(&header_options).bytes)
        .unwrap()
        .replacen("user_id", "player", 1);
    let (_, csv_options) = next(10, Encoding::Utf8, None);
    let plain_csv = generate::export(&csv_options).bytes;
    let (_, short_options) = next(20, Encoding::Utf8, None);
    let short_gzip = gzip(&generate::export(&short_options).bytes).await;
    let (_, array_options) = next(20, Encoding::Utf8, None);
    let (array, _) = json_array(&array_options);
    let corrupt: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad-header.csv", bad_header.into_bytes(), "bad_header"),
        ("empty.csv", Vec::new(), "bad_header"),
        ("csv-named.json", plain_csv.clone(), "format_mismatch"),
        ("not-gzip.csv.gz", plain_csv.clone(), "format_mismatch"),
        ("array-named.jsonl", array.clone(), "format_mismatch"),
        ("not-parquet.parquet", plain_csv, "format_mismatch"),
        (
            "binary.csv",
            b"\0\x01\x02binary\0\0".to_vec(),
            "format_mismatch",
        ),
        (
            "truncated.csv.gz",
            short_gzip[..short_gzip.len() / 2].to_vec(),
            "corrupt",
        ),
        (
            "broken.json",
            array[..array.len() * 2 / 3].to_vec(),
            "unreadable",
        ),
        (
            "fake.parquet",
            b"PAR1 not really parquet".to_vec(),
            "bad_parquet",
        ),
        ("report.xlsx", b"PK\x03\x04".to_vec(), "unsupported"),
    ];

    // Drop everything: most files renamed into place, some written in place in two halves
    // (complete only after a pause shorter than the stability window), duplicates of 20 files
    // under other names, and the corrupt ones.
    for (n, (name, bytes)) in unique.iter().enumerate() {
        if n % 25 == 3 {
            let half = bytes.len() / 2;
            let path = dir.join(name);
            std::fs::write(&path, &bytes[..half]).unwrap();
            let rest = bytes[half..].to_vec();
            // Its own thread, so the pause stays far below the stability window whatever the
            // runtime is doing.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                file.write_all(&rest).unwrap();
            });
        } else {
            drop_file(&dir, name, bytes);
        }
    }
    let mut duplicates = BTreeSet::new();
    for (name, bytes) in unique.iter().step_by(7).take(20) {
        let copy = format!("copy-of-{name}");
        drop_file(&dir, &copy, bytes);
        duplicates.insert(copy);
    }
    for (name, bytes, _) in &corrupt {
        drop_file(&dir, name, bytes);
    }
    let total = unique.len() + duplicates.len() + corrupt.len();
    assert!(total >= 200, "only {total} files");

    wait_until_empty(&dir, Duration::from_secs(240)).await;
    let receipts =
        sluice_producer::receipts::ReceiptStore::new(&Stack::get().redis_url, &names.redis_prefix)
            .unwrap();
    let rounds: u64 = expected.values().map(|t| t.rounds).sum();
    if let Err(short) = rounds_landed(&names.database, rounds, Duration::from_secs(120)).await {
        let files = files_short(&names.database, &receipts, &unique).await;
        panic!("{short}; files whose accepted rounds did not all land: {files:#?}");
    }
    assert_exact(&names.database, &expected, Duration::from_secs(120)).await;

    // Quarantine holds exactly the bad files, each with its reason.
    let quarantine = file_names(&dir.join("quarantine"));
    let mut expected_quarantine = BTreeSet::new();
    for (name, _, kind) in &corrupt {
        expected_quarantine.insert(name.to_string());
        expected_quarantine.insert(format!("{name}.error.json"));
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("quarantine").join(format!("{name}.error.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(report["kind"], *kind, "{name}: {report}");
        assert!(!report["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(quarantine, expected_quarantine);

    // Everything else was processed; duplicates were skipped, not ingested.
    let processed = file_names(&dir.join("processed"));
    let mut expected_processed: BTreeSet<String> =
        unique.iter().map(|(name, _)| name.clone()).collect();
    expected_processed.extend(duplicates.iter().cloned());
    assert_eq!(processed, expected_processed);
    assert_eq!(
        metric(&url, "sluice_watcher_files_total{outcome=\"ingested\"}").await,
        Some(ingested_files as f64)
    );
    assert_eq!(
        metric(&url, "sluice_watcher_files_total{outcome=\"duplicate\"}").await,
        Some(duplicates.len() as f64)
    );

    // Per-file receipts are stored like upload receipts: a CSV file's lists its bad lines.
    let (name, bytes) = &unique[0];
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let id = receipts.holder(&sha256).await.unwrap().expect("a claim");
    let receipt = receipts.get(&id).await.unwrap().expect("a receipt");
    let export = generate::export(&options(1, 40, Encoding::Utf8, Some(7)));
    // The original or its copy, whichever was read first.
    let source = receipt.source.as_deref().unwrap();
    assert!(
        source == name || source == format!("copy-of-{name}"),
        "{source}"
    );
    assert_eq!(receipt.accepted, export.summary.good_rows);
    let lines: Vec<u64> = receipt.rejects.iter().map(|r| r.line).collect();
    assert_eq!(lines, export.summary.bad_lines);

    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every file of `files` whose receipt's accepted rounds are not all in `round_versions`
/// (distinct rounds under its upload id): `(name, upload id, accepted, landed)`. Said when the
/// test fails, to tell a file lost whole (a transaction never visible) from rows lost inside.
async fn files_short(
    database: &str,
    receipts: &sluice_producer::receipts::ReceiptStore,
    files: &[(String, Vec<u8>)],
) -> Vec<(String, String, u64, u64)> {
    let landed = sluice_testkit::clickhouse::query(&format!(
        "SELECT upload_id, uniqExact(user_id, game_instance_id) FROM {database}.round_versions \
         GROUP BY upload_id"
    ))
    .await;
    let landed: BTreeMap<&str, u64> = landed
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(id, n)| (id, n.parse().unwrap_or(0)))
        .collect();
    let mut short = Vec::new();
    for (name, bytes) in files {
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(bytes))
        };
        let Ok(Some(id)) = receipts.holder(&sha256).await else {
            short.push((name.clone(), "no claim".into(), 0, 0));
            continue;
        };
        let accepted = match receipts.get(&id).await {
            Ok(Some(receipt)) => receipt.accepted,
            _ => 0,
        };
        let arrived = landed.get(id.as_str()).copied().unwrap_or(0);
        if arrived != accepted {
            short.push((name.clone(), id, accepted, arrived));
        }
    }
    short
}

/// The real watcher binary, its logs shown only with `TEST_LOG=1`.
fn spawn_binary(dir: &Path, names: &Names, port: u16) -> Child {
    let output = || {
        if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    binary_command(dir, names, port)
        // The killed watcher's open transaction must end for read-committed consumers to see
        // past it. Apache Kafka aborts it when the restarted watcher fences its transactional
        // id; tansu was seen not to, and then only the transaction timeout ends it (15 minutes
        // by default). 30 s is far longer than any transaction here takes.
        .env("SLUICE_WATCHER_TRANSACTION_TIMEOUT_MS", "30000")
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("the sluice-watcher binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_killed_mid_file_redoes_it_on_restart_exactly() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("crash");
    let consumer = spawn_consumer(&names).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut watcher = spawn_binary(&dir, &names, port);

    // A few small files first (so the killed producer has committed transactions behind it),
    // then one large file that is still being read when the process dies.
    let mut expected = BTreeMap::new();
    for i in 0..6 {
        let export = generate::export(&options(i, 200, Encoding::Utf16Be, Some(50)));
        merge(&mut expected, &export.summary);
        drop_file(&dir, &format!("small-{i}.csv"), &export.bytes);
    }
    let started = Instant::now();
    while metric(&url, "sluice_watcher_files_total{outcome=\"ingested\"}").await != Some(6.0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "small files not ingested"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let large = generate::export(&options(100, 300_000, Encoding::Utf8, Some(1_000)));
    merge(&mut expected, &large.summary);
    drop_file(&dir, "large.csv", &large.bytes);
    let started = Instant::now();
    while metric(&url, "sluice_watcher_files_in_flight").await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the large file was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    watcher.start_kill().unwrap();
    watcher.wait().await.unwrap();
    assert!(
        dir.join("large.csv").exists(),
        "the large file finished before the kill; make it larger"
    );

    let mut watcher = spawn_binary(&dir, &names, port);
    wait_until_empty(&dir, Duration::from_secs(180)).await;
    assert_exact(&names.database, &expected, Duration::from_secs(120)).await;
    assert_eq!(
        file_names(&dir.join("processed")).len(),
        7,
        "every file processed once"
    );
    watcher.start_kill().unwrap();
    watcher.wait().await.unwrap();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_that_fails_mid_stream_is_aborted_and_the_next_files_still_land() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("abort");
    let consumer = spawn_consumer(&names).await;
    let mut config = watcher_config(&dir, &names);
    // One transactional producer: every file after the failed one reuses its slot.
    config.max_concurrent_files = 1;
    let watcher = sluice_watcher::Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", watcher.port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(watcher.run_until_stopped(shutdown.clone()));

    let mut expected = BTreeMap::new();
    let first = generate::export(&options(1, 50, Encoding::Utf8, None));
    merge(&mut expected, &first.summary);
    drop_file(&dir, "first.csv", &first.bytes);
    let started = Instant::now();
    while metric(&url, "sluice_watcher_files_total{outcome=\"ingested\"}").await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "first file not ingested"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A JSON array broken after its first 1024 records, which were already sent in the file's
    // transaction; then the export done right (the same rounds), then another file.
    let (array, summary) = json_array(&options(2, 1_500, Encoding::Utf8, None));
    let text = String::from_utf8(array.clone()).unwrap();
    let cut = text.match_indices("},\n{").nth(1_300).unwrap().0;
    drop_file(
        &dir,
        "export.json",
        format!("{}}}, {{\"oops\"", &text[..cut]).as_bytes(),
    );
    while metric(&url, "sluice_watcher_files_total{outcome=\"quarantined\"}").await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "broken file not quarantined"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    merge(&mut expected, &summary);
    drop_file(&dir, "export-fixed.json", &array);
    let last = generate::export(&options(3, 50, Encoding::Utf16Le, Some(10)));
    merge(&mut expected, &last.summary);
    drop_file(&dir, "last.csv", &last.bytes);

    wait_until_empty(&dir, Duration::from_secs(60)).await;
    assert_exact(&names.database, &expected, Duration::from_secs(60)).await;
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("quarantine/export.json.error.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["kind"], "unreadable", "{report}");
    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}
