//! Whole-pipeline benchmarks. Each prints its measurement beside a baseline measured in the same
//! run on the same data, so the ratio holds whatever the machine. Not a test: nothing here
//! asserts on time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use sluice_producer::ingest::{ingest, ingest_text_prehashed, DiscardSink, Limits, TextFormat};
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::csv::HeaderMap;
use sluice_schema::Money;
use sluice_testkit::generate::{self, Options};
use tokio::process::{Child, Command};
use tokio_util::io::ReaderStream;

/// The upload every benchmark record claims to come from: a real id's length, so records have
/// their real size.
const BENCH_UPLOAD_ID: &str = "5f0c8e2a-8d1e-4c3b-9a57-2b6f1d0e4c91";

/// The workspace root (xtask lives in `crates/xtask`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `KEY=VALUE` from `target/sluice/stack.env`, or the environment.
pub(crate) fn stack_value(name: &str) -> anyhow::Result<String> {
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
pub(crate) fn export(rows: u64) -> anyhow::Result<PathBuf> {
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
        max_line_bytes: 1 << 20,
        max_record_bytes: 256 << 10,
        max_unknown_columns_listed: 100,
        body_idle_timeout: Duration::from_secs(30),
    }
}

/// Peak resident memory of a process, from `/proc/<pid>/status` (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after its closing parenthesis;
    // utime and stime are the 14th and 15th fields, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS_PER_SECOND)
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A free port on loopback.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until the service at `url` answers `/health`.
pub(crate) async fn wait_for_health(
    http: &reqwest::Client,
    url: &str,
    what: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while http.get(format!("{url}/health")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A release `sluice-producer` (built already) with a topic, Redis prefix and transactional ids
/// of its own; killed when dropped.
pub(crate) struct BenchProducer {
    pub(crate) process: Child,
    url: String,
    http: reqwest::Client,
}

/// Starts a [`BenchProducer`] writing to `topic` and waits until it answers.
pub(crate) async fn start_producer(topic: &str) -> anyhow::Result<BenchProducer> {
    let port = free_port()?;
    let process = Command::new(release_binary("sluice-producer"))
        .env("SLUICE_PRODUCER_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "SLUICE_PRODUCER_KAFKA_BROKERS",
            stack_value("SLUICE_KAFKA_BROKERS")?,
        )
        .env(
            "SLUICE_PRODUCER_REDIS_URL",
            stack_value("SLUICE_REDIS_URL")?,
        )
        .env("SLUICE_PRODUCER_REDIS_KEY_PREFIX", format!("{topic}:"))
        .env("SLUICE_PRODUCER_TRANSACTIONAL_ID_PREFIX", topic)
        .env("SLUICE_PRODUCER_TOPIC", topic)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice-producer")?;
    let producer = BenchProducer {
        process,
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    wait_for_health(&producer.http, &producer.url, "sluice-producer").await?;
    Ok(producer)
}

impl BenchProducer {
    /// Streams `path` (`rows` rows, all good) as one multipart upload; the time from the first
    /// byte to the receipt, which comes once Kafka acknowledged every record.
    pub(crate) async fn upload(&self, path: &Path, rows: u64) -> anyhow::Result<Duration> {
        let bytes = std::fs::metadata(path)?.len();
        let started = Instant::now();
        let file = tokio::fs::File::open(path).await?;
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, 256 * 1024));
        let part = reqwest::multipart::Part::stream_with_length(body, bytes)
            .file_name("rounds.csv")
            .mime_str("text/csv")?;
        let response = self
            .http
            .post(format!("{}/csv_upload", self.url))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await?;
        let status = response.status();
        let receipt: serde_json::Value = response.json().await?;
        let elapsed = started.elapsed();
        if !status.is_success() || receipt["accepted"] != rows {
            bail!("upload answered {status}: {receipt}");
        }
        Ok(elapsed)
    }
}

/// One run of the producer's own pipeline (decode, CSV, `GameRound`, Avro, and SHA-256 of the
/// body unless `hash` is false) over `path` into a sink that discards, in this process.
struct ParseRun {
    wall: Duration,
    /// CPU time of this whole process during the run (every thread: parser, hasher, runtime).
    cpu: Duration,
}

impl ParseRun {
    fn per_core(&self, rows: u64) -> f64 {
        rows as f64 / self.cpu.as_secs_f64()
    }
}

/// The file as a stream of 256 KiB chunks read by a thread of its own, each copied once (by the
/// kernel): the input of the parse + encode baseline, standing in for a request body.
fn file_chunks(path: &Path) -> anyhow::Result<impl futures::Stream<Item = std::io::Result<Bytes>>> {
    use std::io::Read;
    const CHUNK: u64 = 256 * 1024;
    let mut file = std::fs::File::open(path)?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel(8);
    std::thread::spawn(move || loop {
        let mut chunk = Vec::with_capacity(CHUNK as usize);
        match file.by_ref().take(CHUNK).read_to_end(&mut chunk) {
            Ok(0) => return,
            read => {
                let failed = read.is_err();
                if sender
                    .blocking_send(read.map(|_| Bytes::from(chunk)))
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        }
    });
    Ok(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
}

async fn parse_and_encode(path: &Path, rows: u64, hash: bool) -> anyhow::Result<ParseRun> {
    let cpu = cpu_time::ProcessTime::now();
    let started = Instant::now();
    let body = Box::pin(file_chunks(path)?);
    let receipt = if hash {
        ingest(body, DiscardSink, limits()).await?
    } else {
        ingest_text_prehashed(TextFormat::Csv, body, DiscardSink, limits(), String::new()).await?
    };
    let run = ParseRun {
        wall: started.elapsed(),
        cpu: cpu.elapsed(),
    };
    if receipt.accepted != rows {
        bail!(
            "parse + encode accepted {} of {rows} rows",
            receipt.accepted
        );
    }
    Ok(run)
}

/// Parse + encode alone, `runs` times, with and without SHA-256 of the body: rows/s of wall
/// clock and rows per CPU-second (the per-core rate). Needs no services.
pub async fn parse(rows: u64, runs: u32) -> anyhow::Result<()> {
    let path = export(rows)?;
    let bytes = std::fs::metadata(&path)?.len();
    let mut table = vec![
        ("rows", format!("{rows}")),
        (
            "file",
            format!("{:.1} MiB, UTF-16 BE", bytes as f64 / 1048576.0),
        ),
    ];
    for run in 1..=runs {
        for (hash, label) in [
            (false, "parse + encode"),
            (true, "parse + encode + SHA-256"),
        ] {
            let result = parse_and_encode(&path, rows, hash).await?;
            table.push((
                label,
                format!(
                    "run {run}: {:.0} rows/s wall ({:.2} s), {:.0} rows per CPU-second ({:.2} CPU-s)",
                    rows as f64 / result.wall.as_secs_f64(),
                    result.wall.as_secs_f64(),
                    result.per_core(rows),
                    result.cpu.as_secs_f64()
                ),
            ));
        }
    }
    println_table(&table);
    Ok(())
}

/// Upload → every record acknowledged by Kafka, against parse + encode alone.
pub async fn producer(rows: u64) -> anyhow::Result<()> {
    let path = export(rows)?;
    let bytes = std::fs::metadata(&path)?.len();

    // Baseline: the producer's own pipeline (decode, CSV, GameRound, Avro) with a sink that
    // discards, in this process; then the same with the SHA-256 of the body, as uploads do.
    // Twice: the first run after heavy work on the machine (a build, servers starting) was
    // seen to take up to twice the CPU time; both are printed, the better one is the baseline.
    let first = parse_and_encode(&path, rows, false).await?;
    let second = parse_and_encode(&path, rows, false).await?;
    let runs = format!(
        "{:.2} and {:.2} CPU-s",
        first.cpu.as_secs_f64(),
        second.cpu.as_secs_f64()
    );
    let run = if second.cpu < first.cpu {
        second
    } else {
        first
    };
    let baseline = run.wall;
    let hashed = parse_and_encode(&path, rows, true).await?;

    // The service: the release binary, a fresh topic, one streamed multipart upload; then the
    // same with the release processor running beside it (issue 13: ingest within 10 % with the
    // processor running).
    build_release("sluice-producer").await?;
    build_release("sluice-processor").await?;
    let run_name = format!("bench_{}", std::process::id());
    let alone = measure_upload(&run_name, &path, rows).await?;
    let with_processor = {
        let _processor = crate::bench_freshness::spawn_processor(&format!("{run_name}_db"))?;
        measure_upload(&format!("{run_name}_processed"), &path, rows).await?
    };
    let upload = alone.elapsed;
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println_table(&[
        ("rows", format!("{rows}")),
        (
            "file",
            format!("{:.1} MiB, UTF-16 BE", bytes as f64 / 1048576.0),
        ),
        (
            "baseline: parse + encode",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(baseline),
                baseline.as_secs_f64()
            ),
        ),
        (
            "baseline per core (rows per CPU-second)",
            format!("{:.0} (better of two runs: {runs})", run.per_core(rows)),
        ),
        (
            "parse + encode + SHA-256 (thread beside)",
            format!(
                "{:.0} rows/s ({:.2} s), {:.0} rows per CPU-second",
                rate(hashed.wall),
                hashed.wall.as_secs_f64(),
                hashed.per_core(rows)
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
            "CPU during the upload: producer, broker",
            format!(
                "{}, {} (tansu from scripts/dev)",
                alone.producer_cpu, alone.broker_cpu
            ),
        ),
        (
            "producer peak RSS",
            alone
                .rss
                .map_or("unknown".into(), |m| format!("{m:.0} MiB")),
        ),
        (
            "upload with the processor running",
            format!(
                "{:.0} rows/s ({:.2} s), {:.2} of the upload alone",
                rate(with_processor.elapsed),
                with_processor.elapsed.as_secs_f64(),
                alone.elapsed.as_secs_f64() / with_processor.elapsed.as_secs_f64()
            ),
        ),
    ]);
    Ok(())
}

/// One upload to a fresh release producer, with what it cost.
struct UploadRun {
    elapsed: Duration,
    producer_cpu: String,
    broker_cpu: String,
    rss: Option<f64>,
}

/// Starts a release producer on `topic`, uploads `path` (`rows` rows) once, and stops it.
async fn measure_upload(topic: &str, path: &Path, rows: u64) -> anyhow::Result<UploadRun> {
    let mut service = start_producer(topic).await?;
    let producer_pid = service.process.id();
    let broker_pid = std::fs::read_to_string(workspace().join("target/sluice/tansu.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok());
    let before = (
        producer_pid.and_then(cpu_seconds),
        broker_pid.and_then(cpu_seconds),
    );
    let elapsed = service.upload(path, rows).await?;
    let used = |before: Option<f64>, pid: Option<u32>| match (pid.and_then(cpu_seconds), before) {
        (Some(after), Some(before)) => format!("{:.2} CPU-s", after - before),
        _ => "unknown".to_owned(),
    };
    let run = UploadRun {
        elapsed,
        producer_cpu: used(before.0, producer_pid),
        broker_cpu: used(before.1, broker_pid),
        rss: producer_pid.and_then(peak_rss_mib),
    };
    service.process.start_kill()?;
    Ok(run)
}

pub(crate) fn println_table(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        eprintln!("{key:<width$}  {value}");
    }
}

/// Pre-filled topic → ClickHouse through the consumer, against `clickhouse-client` loading the
/// same rows as CSV.
pub async fn consumer(rows: u64) -> anyhow::Result<()> {
    let brokers = stack_value("SLUICE_KAFKA_BROKERS")?;
    let clickhouse_url = stack_value("SLUICE_CLICKHOUSE_URL")?;
    let tcp_port = stack_value("SLUICE_CLICKHOUSE_TCP_PORT")?;
    let user = stack_value("SLUICE_CLICKHOUSE_USER").unwrap_or_else(|_| "default".into());
    let password = stack_value("SLUICE_CLICKHOUSE_PASSWORD").unwrap_or_default();
    let redis_url = stack_value("SLUICE_REDIS_URL")?;
    let run = format!("bench_{}", std::process::id());

    // The same rounds as Avro messages and as ClickHouse CSV.
    let mut options = Options::new(rows);
    options.encoding = generate::Encoding::Utf8;
    let export = generate::export(&options);
    let mut reader = csv_async::AsyncReaderBuilder::new().create_reader(&export.bytes[..]);
    let columns = HeaderMap::parse(reader.byte_headers().await?)?;
    let codec = GameRoundCodec::get();
    let mut messages: Vec<(String, Vec<u8>)> = Vec::with_capacity(rows as usize);
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut record = csv_async::ByteRecord::new();
    while reader.read_byte_record(&mut record).await? {
        let round = columns
            .parse_row(&record, 0)
            .map_err(|e| anyhow::anyhow!("generated row rejected: {e:?}"))?;
        let mut payload = Vec::new();
        codec.encode(&round, BENCH_UPLOAD_ID, &mut payload);
        let money = |m: Option<Money>| m.map_or_else(|| "\\N".to_owned(), |m| m.to_string());
        let when = chrono::DateTime::from_timestamp_millis(round.created_timestamp)
            .context("timestamp in range")?
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        csv.write_record([
            when,
            round.game_instance_id.to_string(),
            round.user_id.to_string(),
            round.game_id.to_string(),
            money(round.real_amount_bet),
            money(round.bonus_amount_bet),
            money(round.real_amount_win),
            money(round.bonus_amount_win),
            round.game_name.clone(),
            round.provider.clone(),
            BENCH_UPLOAD_ID.to_owned(),
        ])?;
        messages.push((round.user_id.into_string(), payload));
    }
    let csv = csv.into_inner()?;

    // Baseline: clickhouse-client inserting the CSV into its own database.
    let direct = format!("{run}_direct");
    let client = sluice_schema::migrations::client(&clickhouse_url, &direct, &user, &password);
    sluice_schema::migrations::apply(&client, &direct).await?;
    // The credentials go in a private client config, not on a command line `ps` shows.
    let client_config = workspace().join(format!("target/sluice/{run}-client.xml"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&client_config)?;
        std::io::Write::write_all(
            &mut file,
            format!("<config><user>{user}</user><password>{password}</password></config>\n")
                .as_bytes(),
        )?;
    }
    let started = Instant::now();
    let mut load = Command::new("clickhouse-client")
        .arg(format!("--config-file={}", client_config.display()))
        .args(["--host", "127.0.0.1", "--port", &tcp_port, "--query"])
        .arg(format!(
            "INSERT INTO {direct}.round_versions (created_timestamp, game_instance_id, user_id, game_id, \
             real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win, game_name, provider, \
             upload_id) FORMAT CSV"
        ))
        .stdin(Stdio::piped())
        .spawn()
        .context("starting clickhouse-client")?;
    let mut stdin = load.stdin.take().context("clickhouse-client stdin")?;
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &csv).await?;
    drop(stdin);
    let loaded = load.wait().await?.success();
    std::fs::remove_file(&client_config)?;
    if !loaded {
        bail!("clickhouse-client failed");
    }
    let baseline = started.elapsed();

    // The consumer: a pre-filled topic, the release binary, a fresh group.
    let topic = format!("{run}_rounds");
    sluice_schema::kafka::ensure_topic(&brokers, &topic, 8, 1).await?;
    produce_all(&brokers, &topic, &messages).await?;
    let fetch_only = drain(&brokers, &topic, rows).await?;
    build_release("sluice-consumer").await?;
    build_release("sluice-processor").await?;
    let endpoints = Endpoints {
        brokers: &brokers,
        clickhouse_url: &clickhouse_url,
        user: &user,
        password: &password,
        redis_url: &redis_url,
    };
    // The same topic read by a fresh group twice: alone, then with a processor recomputing
    // the hours the consumer marks (issue 13: ingest within 10 % with the processor running).
    let (total, steady) = consume(&endpoints, &topic, &format!("{run}_alone"), rows).await?;
    let with_processor = {
        let database = format!("{run}_processed");
        let _processor = crate::bench_freshness::spawn_processor(&database)?;
        consume(&endpoints, &topic, &database, rows).await?.1
    };
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let mut table = vec![
        ("rows", format!("{rows}")),
        (
            "baseline: clickhouse-client CSV insert",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(rows, baseline),
                baseline.as_secs_f64()
            ),
        ),
        (
            "baseline: fetch only (StreamConsumer, no ClickHouse)",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(rows, fetch_only),
                fetch_only.as_secs_f64()
            ),
        ),
        (
            "consumer, from process start",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(rows, total),
                total.as_secs_f64()
            ),
        ),
    ];
    if let Some((elapsed, n)) = steady {
        table.push((
            "consumer, first insert → all landed",
            format!(
                "{:.0} rows/s ({:.2} s)",
                rate(n, elapsed),
                elapsed.as_secs_f64()
            ),
        ));
        table.push((
            "ratio steady consumer / baseline",
            format!("{:.2}", rate(n, elapsed) / rate(rows, baseline)),
        ));
        if let Some((processed, m)) = with_processor {
            table.push((
                "consumer with the processor running, first insert → all landed",
                format!(
                    "{:.0} rows/s ({:.2} s), {:.2} of the consumer alone",
                    rate(m, processed),
                    processed.as_secs_f64(),
                    rate(m, processed) / rate(n, elapsed)
                ),
            ));
        }
    }
    println_table(&table);
    Ok(())
}

/// Where the release services of a consumer run connect.
struct Endpoints<'a> {
    brokers: &'a str,
    clickhouse_url: &'a str,
    user: &'a str,
    password: &'a str,
    redis_url: &'a str,
}

/// The release consumer reading `topic` from the start into `database` (a fresh group) until
/// `rows` rows landed: from its start, and from its first insert (with the rows then landed).
async fn consume(
    at: &Endpoints<'_>,
    topic: &str,
    database: &str,
    rows: u64,
) -> anyhow::Result<(Duration, Option<(Duration, u64)>)> {
    let started = Instant::now();
    let mut service = Command::new(release_binary("sluice-consumer"))
        .env("SLUICE_CONSUMER_LISTEN_ADDR", "127.0.0.1:0")
        .env("SLUICE_CONSUMER_KAFKA_BROKERS", at.brokers)
        .env("SLUICE_CONSUMER_CLICKHOUSE_URL", at.clickhouse_url)
        .env("SLUICE_CONSUMER_CLICKHOUSE_DATABASE", database)
        .env("SLUICE_CONSUMER_CLICKHOUSE_USER", at.user)
        .env("SLUICE_CONSUMER_CLICKHOUSE_PASSWORD", at.password)
        .env("SLUICE_CONSUMER_REDIS_URL", at.redis_url)
        .env("SLUICE_CONSUMER_TOPIC", topic)
        .env("SLUICE_CONSUMER_GROUP_ID", format!("{database}_group"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice-consumer")?;
    let http = reqwest::Client::new();
    let count_sql = format!("SELECT count() FROM {database}.round_versions");
    let mut first_rows_at = None;
    let mut first_rows = 0;
    loop {
        let answer = http
            .post(at.clickhouse_url)
            .basic_auth(at.user, Some(at.password))
            .body(count_sql.clone())
            .send()
            .await;
        let landed: u64 = match answer {
            Ok(response) if response.status().is_success() => {
                response.text().await?.trim().parse().unwrap_or(0)
            }
            _ => 0,
        };
        if landed > 0 && first_rows_at.is_none() {
            first_rows_at = Some(Instant::now());
            first_rows = landed;
        }
        if landed >= rows {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {landed} of {rows} rows landed after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    service.start_kill()?;
    Ok((
        total,
        first_rows_at.map(|t| (t.elapsed(), rows - first_rows)),
    ))
}

/// Time to read `rows` messages of `topic` with a plain consumer, from the first message on:
/// what the broker can deliver, without decoding or ClickHouse. Fetches like the consumer does
/// (read-committed, deep prefetch).
async fn drain(brokers: &str, topic: &str, rows: u64) -> anyhow::Result<Duration> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}_drain"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[topic])?;
    consumer.recv().await?;
    let started = Instant::now();
    for _ in 1..rows {
        consumer.recv().await?;
    }
    Ok(started.elapsed())
}

async fn produce_all(
    brokers: &str,
    topic: &str,
    messages: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "zstd")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .create()?;
    for chunk in messages.chunks(100_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for (key, payload) in chunk {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(e, _)| e)?;
        }
    }
    Ok(())
}

pub(crate) async fn build_release(package: &str) -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", package])
        .current_dir(workspace())
        .status()
        .await?;
    if !status.success() {
        bail!("building {package} failed");
    }
    Ok(())
}

pub(crate) fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| workspace().join("target"), PathBuf::from);
    target.join("release").join(name)
}
