//! Whole-pipeline benchmarks. Each prints its measurement beside a baseline measured in the same
//! run on the same data, so the ratio holds whatever the machine. Not a test: nothing here
//! asserts on time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_producer::ingest::{ingest, DiscardSink, Limits};
use sluice_testkit::generate::{self, Options};
use tokio::process::Command;
use tokio_util::io::ReaderStream;

/// The workspace root (xtask lives in `crates/xtask`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `KEY=VALUE` from `target/sluice/stack.env`, or the environment.
fn stack_value(name: &str) -> anyhow::Result<String> {
    if let Ok(value) = std::env::var(name) {
        return Ok(value);
    }
    let path = workspace().join("target/sluice/stack.env");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} missing: start the services with `scripts/dev services`",
            path.display()
        )
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .map(str::to_owned)
        .with_context(|| format!("{name} not in {}", path.display()))
}

/// The generated export of `rows` rows (UTF-16 BE like the real one), cached by size.
fn export(rows: u64) -> anyhow::Result<PathBuf> {
    let dir = workspace().join("target/sluice/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("rounds_{rows}.csv"));
    if !path.exists() {
        eprintln!("Generating {rows} rows into {} …", path.display());
        let partial = path.with_extension("partial");
        generate::write(&Options::new(rows), std::fs::File::create(&partial)?)?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(path)
}

fn limits() -> Limits {
    Limits {
        max_upload_bytes: u64::MAX,
        max_in_flight: 100_000,
        max_rejects_listed: 100,
    }
}

/// Peak resident memory of a process, from `/proc/<pid>/status` (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Upload → every record acknowledged by Kafka, against parse + encode alone.
pub async fn producer(rows: u64) -> anyhow::Result<()> {
    let brokers = stack_value("SLUICE_KAFKA_BROKERS")?;
    let path = export(rows)?;
    let bytes = std::fs::metadata(&path)?.len();

    // Baseline: the producer's own pipeline (decode, CSV, GameRound, Avro, SHA-256) with a sink
    // that discards, in this process.
    let started = Instant::now();
    let file = tokio::fs::File::open(&path).await?;
    let receipt = ingest(
        ReaderStream::with_capacity(file, 256 * 1024),
        DiscardSink,
        limits(),
    )
    .await?;
    let baseline = started.elapsed();
    if receipt.accepted != rows {
        bail!("baseline accepted {} of {rows} rows", receipt.accepted);
    }

    // The service: the release binary, a fresh topic, one streamed multipart upload.
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "sluice-producer"])
        .current_dir(workspace())
        .status()
        .await?;
    if !status.success() {
        bail!("building sluice-producer failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| workspace().join("target"), PathBuf::from);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let topic = format!("bench_{}", std::process::id());
    let mut service = Command::new(target.join("release/sluice-producer"))
        .env("SLUICE_PRODUCER_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SLUICE_PRODUCER_KAFKA_BROKERS", &brokers)
        .env("SLUICE_PRODUCER_TOPIC", &topic)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice-producer")?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let wait_started = Instant::now();
    while http.get(format!("{url}/health")).send().await.is_err() {
        if wait_started.elapsed() > Duration::from_secs(30) {
            bail!("sluice-producer did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    let file = tokio::fs::File::open(&path).await?;
    let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, 256 * 1024));
    let part = reqwest::multipart::Part::stream_with_length(body, bytes)
        .file_name("rounds.csv")
        .mime_str("text/csv")?;
    let response = http
        .post(format!("{url}/csv_upload"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await?;
    let status = response.status();
    let receipt: serde_json::Value = response.json().await?;
    let upload = started.elapsed();
    if !status.is_success() || receipt["accepted"] != rows {
        bail!("upload answered {status}: {receipt}");
    }
    let rss = service.id().and_then(peak_rss_mib);
    service.start_kill()?;

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println_table(&[
        ("rows", format!("{rows}")),
        (
            "file",
            format!("{:.1} MiB, UTF-16 BE", bytes as f64 / 1048576.0),
        ),
        (
            "baseline: parse + encode, 1 task",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(baseline),
                baseline.as_secs_f64()
            ),
        ),
        (
            "upload → all acked by Kafka",
            format!("{:.0} rows/s ({:.2} s)", rate(upload), upload.as_secs_f64()),
        ),
        (
            "ratio upload / baseline",
            format!("{:.2}", baseline.as_secs_f64() / upload.as_secs_f64()),
        ),
        (
            "producer peak RSS",
            rss.map_or("unknown".into(), |m| format!("{m:.0} MiB")),
        ),
    ]);
    Ok(())
}

fn println_table(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        eprintln!("{key:<width$}  {value}");
    }
}
