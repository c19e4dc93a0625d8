//! `cargo xtask bench watcher`: the watcher's throughput beside the upload path's, measured in
//! the same run against the same broker and Redis: files per hour for many small files, and
//! rows per second for one large file (the producer benchmark's export) against uploading it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_testkit::generate::{self, Options};
use tokio::process::{Child, Command};

use crate::bench::{
    build_release, export, free_port, println_table, release_binary, stack_value, start_producer,
    wait_for_health,
};

/// A free loopback port.
/// The watcher's counter of files with `outcome`, from its `/metrics`.
async fn files_done(http: &reqwest::Client, url: &str, outcome: &str) -> u64 {
    let Ok(response) = http.get(format!("{url}/metrics")).send().await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    let prefix = format!("sluice_watcher_files_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The release watcher on `inbox`, with its own topic, Redis prefix and transactional ids.
fn spawn_watcher(run: &str, inbox: &Path, port: u16) -> anyhow::Result<Child> {
    Command::new(release_binary("sluice-watcher"))
        .env("SLUICE_WATCHER_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SLUICE_WATCHER_WATCH_DIR", inbox)
        .env(
            "SLUICE_WATCHER_KAFKA_BROKERS",
            stack_value("SLUICE_KAFKA_BROKERS")?,
        )
        .env("SLUICE_WATCHER_REDIS_URL", stack_value("SLUICE_REDIS_URL")?)
        .env("SLUICE_WATCHER_REDIS_KEY_PREFIX", format!("{run}:"))
        .env("SLUICE_WATCHER_TOPIC", run)
        .env("SLUICE_WATCHER_INSTANCE_ID", run)
        .env("SLUICE_WATCHER_TRANSACTIONAL_ID_PREFIX", run)
        .env("SLUICE_WATCHER_RESCAN_INTERVAL_MS", "2000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice-watcher")
}

/// Waits until the watcher counted `files` ingested files, or fails after `timeout`.
async fn wait_ingested(
    http: &reqwest::Client,
    url: &str,
    files: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let done = files_done(http, url, "ingested").await;
        if done >= files {
            return Ok(started.elapsed());
        }
        let quarantined = files_done(http, url, "quarantined").await;
        if quarantined > 0 {
            bail!("{quarantined} file(s) quarantined; see the watcher's quarantine directory");
        }
        if started.elapsed() > timeout {
            bail!("only {done} of {files} files ingested after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads `path` (`rows` rows) to a fresh release producer; the time to the receipt.
async fn upload(run: &str, path: &Path, rows: u64) -> anyhow::Result<Duration> {
    let mut producer = start_producer(&format!("{run}_upload")).await?;
    let elapsed = producer.upload(path, rows).await?;
    producer.process.start_kill()?;
    Ok(elapsed)
}

/// A fresh directory under `target/sluice/bench`.
fn bench_dir(run: &str, name: &str) -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/sluice/bench")
        .join(format!("{run}_{name}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub async fn watcher(files: u64, rows_per_file: u64, large_rows: u64) -> anyhow::Result<()> {
    let run = format!("bench_watch_{}", std::process::id());
    build_release("sluice-producer").await?;
    build_release("sluice-watcher").await?;
    let http = reqwest::Client::new();

    // One large file: the upload path, then the watcher, on the same export.
    let large = export(large_rows)?;
    let uploaded = upload(&run, &large, large_rows).await?;
    let inbox = bench_dir(&run, "large")?;
    let port = free_port()?;
    let mut service = spawn_watcher(&format!("{run}_large"), &inbox, port)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_for_health(&http, &url, "sluice-watcher").await?;
    // A hard link is renamed into place at once, like a finished export.
    std::fs::hard_link(&large, inbox.join("large.csv.partial"))?;
    let started = Instant::now();
    std::fs::rename(inbox.join("large.csv.partial"), inbox.join("large.csv"))?;
    wait_ingested(&http, &url, 1, Duration::from_secs(1800)).await?;
    let watched = started.elapsed();
    service.start_kill()?;
    service.wait().await?;
    std::fs::remove_dir_all(&inbox)?;

    // Many small files, each with rounds of its own, renamed into the inbox at once.
    let inbox = bench_dir(&run, "small")?;
    let staging = bench_dir(&run, "staging")?;
    let mut names = Vec::with_capacity(files as usize);
    for index in 0..files {
        let mut options = Options::new(rows_per_file);
        options.seed = index;
        options.encoding = generate::Encoding::Utf8;
        options.first_instance_id = 1_000_000 + index * rows_per_file;
        let name = format!("small-{index:06}.csv");
        std::fs::write(staging.join(&name), generate::export(&options).bytes)?;
        names.push(name);
    }
    let port = free_port()?;
    let mut service = spawn_watcher(&format!("{run}_small"), &inbox, port)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_for_health(&http, &url, "sluice-watcher").await?;
    let started = Instant::now();
    for name in &names {
        std::fs::rename(staging.join(name), inbox.join(name))?;
    }
    wait_ingested(&http, &url, files, Duration::from_secs(3600)).await?;
    let small = started.elapsed();
    service.start_kill()?;
    service.wait().await?;
    std::fs::remove_dir_all(&inbox)?;
    std::fs::remove_dir_all(&staging)?;

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let files_per_hour = rate(files, small) * 3600.0;
    let upload_files_equivalent = rate(large_rows, uploaded) / rows_per_file as f64 * 3600.0;
    println_table(&[
        (
            "small files",
            format!("{files} × {rows_per_file} rows (UTF-8 CSV)"),
        ),
        (
            "watcher, small files",
            format!(
                "{files_per_hour:.0} files/hour ({:.1} files/s, {:.2} s)",
                rate(files, small),
                small.as_secs_f64()
            ),
        ),
        (
            "ratio to the target (10000/hour)",
            format!("{:.1}", files_per_hour / 10_000.0),
        ),
        (
            "upload rate as files of that size",
            format!("{upload_files_equivalent:.0} files/hour (rows only, no per-file cost)"),
        ),
        ("large file", format!("{large_rows} rows, UTF-16 BE")),
        (
            "upload → receipt",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(large_rows, uploaded),
                uploaded.as_secs_f64()
            ),
        ),
        (
            "watcher: renamed in → committed",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(large_rows, watched),
                watched.as_secs_f64()
            ),
        ),
        (
            "ratio watcher / upload (target ≥ 0.8)",
            format!("{:.2}", uploaded.as_secs_f64() / watched.as_secs_f64()),
        ),
    ]);
    Ok(())
}
