//! The watcher against what a shared inbox can hold, with the real broker, Redis and ClickHouse:
//! symbolic links, names that would forge log lines or overflow a sidecar's name, a file that
//! fails on every try, a writer that pauses longer than the stable window (going on after the
//! move, or while the file is read), and names the watcher never takes.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sluice_testkit::generate::{self, Encoding};
use sluice_testkit::Stack;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Starts an in-process watcher; returns its URL and its shutdown.
async fn start(config: sluice_watcher::Config) -> (String, CancellationToken) {
    let watcher = sluice_watcher::Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", watcher.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(watcher.run_until_stopped(shutdown.clone()));
    (url, shutdown)
}

/// Creates `path` and writes the first half of `bytes` to it, up to the end of the line that
/// crosses the middle (whole lines); the writer, still open, and where it stopped.
fn write_first_half(path: &Path, bytes: &[u8]) -> (std::fs::File, usize) {
    let middle = bytes.len() / 2;
    let cut = middle + bytes[middle..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut writer = std::fs::File::create(path).unwrap();
    writer.write_all(&bytes[..cut]).unwrap();
    writer.flush().unwrap();
    (writer, cut)
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn symbolic_links_are_quarantined_and_their_targets_never_read() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("links");
    let outside = scratch_dir("outside");
    let consumer = spawn_consumer(&names).await;
    let (url, shutdown) = start(watcher_config(&dir, &names)).await;

    // A valid export outside the inbox, linked into it; a link to /etc/passwd; a real file.
    let stranger = generate::export(&options(1, 40, Encoding::Utf8, None));
    std::fs::write(outside.join("elsewhere.csv"), &stranger.bytes).unwrap();
    std::os::unix::fs::symlink(outside.join("elsewhere.csv"), dir.join("linked.csv")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.csv")).unwrap();
    let mut expected = BTreeMap::new();
    let real = generate::export(&options(2, 30, Encoding::Utf8, None));
    merge(&mut expected, &real.summary);
    drop_file(&dir, "real.csv", &real.bytes);

    wait_until_empty(&dir, Duration::from_secs(60)).await;
    let quarantine = dir.join("quarantine");
    for link in ["linked.csv", "passwd.csv"] {
        let moved = std::fs::symlink_metadata(quarantine.join(link)).unwrap();
        assert!(
            moved.file_type().is_symlink(),
            "{link}: the link itself moves"
        );
        let report = report(&quarantine.join(format!("{link}.error.json")));
        assert_eq!(report["kind"], "symlink", "{report}");
        assert_eq!(report["file"], link);
    }
    assert_eq!(
        file_names(&quarantine).len(),
        4,
        "two links, two reports, nothing copied"
    );
    // The targets are untouched, and only the real file's rounds landed.
    assert_eq!(
        std::fs::read(outside.join("elsewhere.csv")).unwrap(),
        stranger.bytes
    );
    assert!(Path::new("/etc/passwd").is_file());
    assert_exact(&names.database, &expected, Duration::from_secs(60)).await;
    assert_eq!(
        file_names(&dir.join("processed")),
        ["real.csv".to_owned()].into()
    );
    assert_eq!(
        metric(&url, "sluice_watcher_files_total{outcome=\"ingested\"}").await,
        Some(1.0)
    );
    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newline_in_a_file_name_cannot_forge_a_log_line() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("forge");
    let mut watcher = binary_command(&dir, &names, free_port())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sluice-watcher binary starts");
    let forged = "FORGED 2026-01-01T00:00:00Z ERROR sluice_watcher: the vault is open";
    let export = generate::export(&options(1, 20, Encoding::Utf8, None));
    // One that is committed, one that is quarantined (its name is in the reason too).
    drop_file(&dir, &format!("ok\n{forged}.csv"), &export.bytes);
    drop_file(&dir, &format!("bad\n{forged}.xlsx"), b"PK\x03\x04");

    let mut stdout = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(watcher.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let started = Instant::now();
    let seen = |lines: &Vec<String>, what: &str| lines.iter().any(|l| l.contains(what));
    while !(seen(&lines, "File committed.") && seen(&lines, "File quarantined.")) {
        let remaining = Duration::from_secs(60).saturating_sub(started.elapsed());
        let line = tokio::time::timeout(remaining, async {
            tokio::select! {
                Ok(Some(line)) = stdout.next_line() => line,
                Ok(Some(line)) = stderr.next_line() => line,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no commit and quarantine lines within 60 s: {lines:#?}"));
        lines.push(line);
    }
    watcher.start_kill().unwrap();
    watcher.wait().await.unwrap();

    assert!(
        !lines.iter().any(|l| l.starts_with("FORGED")),
        "a file name forged a log line: {lines:#?}"
    );
    let committed = lines
        .iter()
        .find(|l| l.contains("File committed."))
        .unwrap();
    assert!(
        committed.contains(&format!("ok\\n{forged}.csv")),
        "the name is logged escaped: {committed}"
    );
    let quarantined = lines
        .iter()
        .find(|l| l.contains("File quarantined."))
        .unwrap();
    assert!(
        quarantined.contains(&format!("bad\\n{forged}.xlsx")),
        "{quarantined}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_with_a_250_byte_name_is_quarantined_beside_a_bounded_report() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("long");
    let (url, shutdown) = start(watcher_config(&dir, &names)).await;

    // Two long names with the same first 240 bytes, both with a header nobody can read.
    let first = format!("{}-first.csv", "r".repeat(240));
    let second = format!("{}-other.csv", "r".repeat(240));
    assert_eq!(first.len(), 250);
    let header = "created_timestamp;user_id\n2019-10-22 08:00:00;x\n";
    // (`<name>.partial` would be too long: written as dot-files, then renamed.)
    for (n, name) in [&first, &second].into_iter().enumerate() {
        let temporary = dir.join(format!(".long-{n}"));
        std::fs::write(&temporary, header).unwrap();
        std::fs::rename(&temporary, dir.join(name)).unwrap();
    }

    wait_for_metric(
        &url,
        "sluice_watcher_files_total{outcome=\"quarantined\"}",
        2.0,
        Duration::from_secs(60),
    )
    .await;
    assert!(file_names(&dir).is_empty());
    let quarantine = dir.join("quarantine");
    let held = file_names(&quarantine);
    assert!(held.contains(&first) && held.contains(&second), "{held:?}");
    let reports: Vec<&String> = held.iter().filter(|n| n.ends_with(".error.json")).collect();
    assert_eq!(reports.len(), 2, "one report each: {held:?}");
    let mut files = Vec::new();
    for name in reports {
        assert!(name.len() <= 255, "{} bytes", name.len());
        let report = report(&quarantine.join(name));
        assert_eq!(report["kind"], "bad_header", "{report}");
        files.push(report["file"].as_str().unwrap().to_owned());
    }
    files.sort();
    assert_eq!(files, [first, second]);
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_that_fails_on_every_try_is_quarantined_after_the_last_attempt() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("stuck");
    let consumer = spawn_consumer(&names).await;
    // The default `max_attempts` (10) with the test's backoff (0.2 s doubling up to 2 s): ~13 s.
    let config = watcher_config(&dir, &names);
    let (url, shutdown) = start(config).await;

    // The content is claimed by an upload that never stored a receipt (its producer died
    // between claim and commit): every try ends "claimed elsewhere", while Kafka and Redis
    // answer.
    let stuck = generate::export(&options(1, 20, Encoding::Utf8, None));
    let receipts =
        sluice_producer::receipts::ReceiptStore::new(&Stack::get().redis_url, &names.redis_prefix)
            .unwrap();
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&stuck.bytes))
    };
    receipts.claim(&sha256, "a-lost-upload").await.unwrap();
    drop_file(&dir, "stuck.csv", &stuck.bytes);
    let mut expected = BTreeMap::new();
    let fine = generate::export(&options(2, 20, Encoding::Utf8, None));
    merge(&mut expected, &fine.summary);
    drop_file(&dir, "fine.csv", &fine.bytes);

    wait_until_empty(&dir, Duration::from_secs(90)).await;
    let report = report(&dir.join("quarantine/stuck.csv.error.json"));
    assert_eq!(report["kind"], "gave_up", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("10 failed tries") && error.contains("a-lost-upload"),
        "{error}"
    );
    assert!(
        metric(&url, "sluice_watcher_files_total{outcome=\"retry\"}")
            .await
            .is_some_and(|tries| tries >= 9.0),
        "quarantined only after its tries"
    );
    assert_exact(&names.database, &expected, Duration::from_secs(60)).await;
    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_pauses_past_the_stable_window_loses_no_rows() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("pause");
    let consumer = spawn_consumer(&names).await;
    let (url, shutdown) = start(watcher_config(&dir, &names)).await;

    let export = generate::export(&options(1, 400, Encoding::Utf8, Some(37)));
    let mut expected = BTreeMap::new();
    merge(&mut expected, &export.summary);
    // The first half (whole lines), written in place; then the writer pauses, holding the
    // file open, until the watcher has read the half and moved it to processed/.
    let (mut writer, cut) = write_first_half(&dir.join("slow-writer.csv"), &export.bytes);
    let processed = dir.join("processed/slow-writer.csv");
    wait_for_path(&processed, Duration::from_secs(60)).await;
    // The writer goes on, as writers do, through the descriptor it holds.
    writer.write_all(&export.bytes[cut..]).unwrap();
    drop(writer);

    // Every row lands once, and the whole file ends in processed/.
    assert_exact(&names.database, &expected, Duration::from_secs(90)).await;
    wait_until_empty(&dir, Duration::from_secs(30)).await;
    let started = Instant::now();
    while std::fs::read(&processed).ok().as_deref() != Some(&export.bytes[..]) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "processed/ never held the whole file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&url, "sluice_watcher_files_total{outcome=\"changed\"}").await,
        Some(1.0)
    );
    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_that_grows_while_it_is_read_is_read_again_whole() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("grows");
    let consumer = spawn_consumer(&names).await;
    let (url, shutdown) = start(watcher_config(&dir, &names)).await;

    let export = generate::export(&options(1, 100_000, Encoding::Utf8, Some(1_000)));
    let mut expected = BTreeMap::new();
    merge(&mut expected, &export.summary);
    let (mut writer, cut) = write_first_half(&dir.join("growing.csv"), &export.bytes);
    // The writer goes on as soon as the watcher took the half: while it is hashed or sent.
    wait_for_metric(
        &url,
        "sluice_watcher_files_in_flight",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    writer.write_all(&export.bytes[cut..]).unwrap();
    drop(writer);

    assert_exact(&names.database, &expected, Duration::from_secs(120)).await;
    wait_until_empty(&dir, Duration::from_secs(60)).await;
    assert_eq!(
        std::fs::read(dir.join("processed/growing.csv")).unwrap(),
        export.bytes
    );
    // The whole file has a receipt of its own, telling all its rows.
    let receipts =
        sluice_producer::receipts::ReceiptStore::new(&Stack::get().redis_url, &names.redis_prefix)
            .unwrap();
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&export.bytes))
    };
    let id = receipts
        .holder(&sha256)
        .await
        .unwrap()
        .expect("the whole file is claimed");
    let receipt = receipts.get(&id).await.unwrap().expect("a receipt");
    assert_eq!(receipt.accepted, export.summary.good_rows);
    assert_eq!(receipt.bytes, export.bytes.len() as u64);
    shutdown.cancel();
    consumer.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_never_taken_are_reported_once_each() {
    init_logs();
    let names = Names::new();
    let dir = scratch_dir("ignored");
    let mut config = watcher_config(&dir, &names);
    config.rescan_interval_ms = 200;
    let (url, shutdown) = start(config).await;

    let export = generate::export(&options(1, 20, Encoding::Utf8, None));
    std::fs::write(dir.join("..x.csv"), &export.bytes).unwrap();
    std::fs::write(
        dir.join(OsStr::from_bytes(b"r\xffsum\xe9.csv")),
        &export.bytes,
    )
    .unwrap();
    std::fs::create_dir(dir.join("2019-10")).unwrap();
    let line = |reason: &str| format!("sluice_watcher_ignored_files_total{{reason=\"{reason}\"}}");
    for reason in ["hidden", "not_utf8", "not_a_file"] {
        wait_for_metric(&url, &line(reason), 1.0, Duration::from_secs(30)).await;
    }
    // Several rescans later, still counted (and logged) once each.
    let rescans = "sluice_watcher_rescans_total";
    let before = metric(&url, rescans).await.unwrap();
    let started = Instant::now();
    while metric(&url, rescans).await.unwrap() < before + 3.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no rescans");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reason in ["hidden", "not_utf8", "not_a_file"] {
        assert_eq!(metric(&url, &line(reason)).await, Some(1.0), "{reason}");
    }
    // The watcher's own directories (processed/, quarantine/, .sluice-work) are not reported,
    // and nothing was read.
    assert_eq!(metric(&url, &line("temporary")).await, Some(0.0));
    assert_eq!(
        metric(&url, "sluice_watcher_files_total{outcome=\"ingested\"}").await,
        Some(0.0)
    );
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}
