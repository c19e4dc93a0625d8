//! `sluice upload FILE… [--dataset NAME]`: hash, stream (optionally zstd-compressed) with a
//! progress bar to game rounds' or a dataset's upload, print the receipt, then watch the rows
//! land.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use async_compression::tokio::bufread::ZstdEncoder;
use futures::TryStreamExt;
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use tokio_util::io::{ReaderStream, StreamReader};

use super::{byte_bar, segment, spinner};
use crate::args::{DatasetName, UploadArgs};
use crate::client::{Gateway, Producer};
use crate::error::{CliError, Outcome, Service};
use crate::output::upload_summary;
use crate::settings::Settings;

/// Read size while hashing and sending.
const CHUNK_BYTES: usize = 256 * 1024;
/// How often the running upload's counts are asked while its body streams (the producer
/// updates them every second).
const RUNNING_POLL: Duration = Duration::from_secs(1);
/// How often the reconciliation is asked while rows land.
const LANDING_POLL: Duration = Duration::from_millis(500);

/// The built-in dataset, uploaded through `POST /csv_upload`.
const GAME_ROUNDS: &str = "game_rounds";

/// Where the files go: game rounds, or a dataset the producer reads from its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    GameRounds,
    Dataset(String),
}

impl Target {
    /// `--dataset NAME` (`game_rounds` is the default's other name, as for the producer).
    pub fn new(dataset: Option<&DatasetName>) -> Target {
        match dataset.map(DatasetName::as_str) {
            None | Some(GAME_ROUNDS) => Target::GameRounds,
            Some(name) => Target::Dataset(name.to_owned()),
        }
    }

    /// The upload's path on the producer (a dataset's name is one path segment as it is).
    pub fn path(&self) -> String {
        match self {
            Target::GameRounds => "/csv_upload".to_owned(),
            Target::Dataset(name) => format!("/datasets/{name}/upload"),
        }
    }

    /// The key as the producer keeps it, and lists it in `GET /uploads`: a dataset's keys are
    /// scoped within it (`<dataset>/<key>`), game rounds' are as sent.
    pub fn scoped_key(&self, key: &str) -> String {
        match self {
            Target::GameRounds => key.to_owned(),
            Target::Dataset(name) => format!("{name}/{key}"),
        }
    }
}

/// How a file is compressed, from its first bytes (as the producer tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn sniff(first: &[u8]) -> Compression {
        if first.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The part's media type: a plain file's format is told by its name and content (CSV,
    /// JSON, JSON Lines, Parquet), so it is sent as bytes.
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/octet-stream",
            Compression::Gzip => "application/gzip",
            Compression::Zstd => "application/zstd",
        }
    }
}

pub async fn run(
    settings: &Settings,
    args: UploadArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if args.idempotency_key.is_some() && args.files.len() > 1 {
        return Err(CliError::Usage(
            "--idempotency-key names one upload: give it one file".into(),
        ));
    }
    let producer = Producer::new(settings);
    let target = Target::new(args.dataset.as_ref());
    let total = args.files.len();
    let mut outcome = Outcome::Done;
    let mut failures: Vec<CliError> = Vec::new();
    for path in &args.files {
        match upload_one(&producer, &target, path, &args, json, out).await {
            Ok(done) => outcome = outcome.max(done),
            Err(error @ CliError::Output(_)) => return Err(error),
            // The upload's only 404: every other file would get it too.
            Err(CliError::Refused {
                status: 404,
                service,
                detail,
                retry_after,
                ..
            }) if matches!(target, Target::Dataset(_)) => {
                return Err(CliError::Refused {
                    status: 404,
                    service,
                    detail,
                    retry_after,
                    hint: Some(unknown_dataset_hint(settings).await),
                })
            }
            Err(error) if total == 1 => return Err(error),
            Err(error) => {
                match &error {
                    CliError::File { .. } => eprintln!("error: {error}"),
                    _ => eprintln!("error: {}: {error}", path.display()),
                }
                if let Some(hint) = error.hint() {
                    eprintln!("  hint: {hint}");
                }
                failures.push(error);
            }
        }
        out.flush()?;
    }
    let failed = failures.len();
    match failures.into_iter().max_by_key(CliError::exit_code) {
        Some(worst) => Err(CliError::SomeFailed {
            failed,
            total,
            worst: Box::new(worst),
        }),
        None => Ok(outcome),
    }
}

async fn upload_one(
    producer: &Producer,
    target: &Target,
    path: &Path,
    args: &UploadArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload.csv".into());
    let file_error = |source| CliError::File {
        path: path.to_owned(),
        source,
    };
    let hashed = hash(path).await.map_err(file_error)?;
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| hashed.sha256.clone());
    let compression = Compression::sniff(&hashed.first_bytes);
    let compress = args.zstd && compression == Compression::None;
    if args.zstd && !compress {
        eprintln!("note: {name} is compressed already; it is sent as it is");
    }

    let file = tokio::fs::File::open(path).await.map_err(file_error)?;
    let bar = byte_bar(hashed.size, "upload");
    let counter = bar.clone();
    let raw = ReaderStream::with_capacity(file, CHUNK_BYTES)
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let part = if compress {
        let encoder = ZstdEncoder::new(StreamReader::new(raw));
        Part::stream(reqwest::Body::wrap_stream(ReaderStream::with_capacity(
            encoder,
            CHUNK_BYTES,
        )))
    } else {
        Part::stream_with_length(reqwest::Body::wrap_stream(raw), hashed.size)
    };
    let media_type = if compress {
        Compression::Zstd
    } else {
        compression
    }
    .media_type();
    let part = part
        .file_name(name.clone())
        .mime_str(media_type)
        .expect("a valid media type");
    let upload_path = target.path();
    let upload = producer.upload(&upload_path, Form::new().part("file", part), &key);
    tokio::pin!(upload);
    // While the body streams (the connection is driven by its own task), the producer's
    // counts of this upload (found by its key) go into the bar's message.
    let scoped_key = target.scoped_key(&key);
    let answer = loop {
        tokio::select! {
            answer = &mut upload => break answer,
            () = tokio::time::sleep(RUNNING_POLL) => {
                if let Some(counts) = running_counts(producer, &scoped_key).await {
                    bar.set_message(counts);
                }
            }
        }
    };
    bar.finish_and_clear();
    let answer = answer?;
    let replayed = answer.header("Idempotent-Replayed") == Some("true");
    let mut receipt = answer.json(Service::Producer)?;
    let Some(id) = receipt["upload_id"].as_str().map(str::to_owned) else {
        return Err(CliError::Unexpected {
            service: Service::Producer,
            detail: "a receipt without upload_id".into(),
        });
    };
    if args.wait > 0 && receipt["accepted"].as_u64().unwrap_or(0) > 0 {
        if let Some(landed) = wait_landed(producer, &id, Duration::from_secs(args.wait)).await {
            receipt = landed;
        }
        if receipt["reconciliation"]["status"] == "unknown" {
            eprintln!("note: {name}: whether its rows landed cannot be told; not waiting for them");
        }
    }
    let rejected = receipt["rejected"].as_u64().unwrap_or(0);
    if json {
        receipt["replayed"] = serde_json::Value::Bool(replayed);
        serde_json::to_writer(&mut *out, &receipt).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", upload_summary(Some(&name), &receipt, replayed))?;
    }
    Ok(if rejected > 0 {
        Outcome::RowsRejected
    } else {
        Outcome::Done
    })
}

/// What to do about a dataset the producer does not serve: the datasets the gateway knows (if
/// it answers), and where the producer's come from.
async fn unknown_dataset_hint(settings: &Settings) -> String {
    let gateway = Gateway::new(settings);
    let known = match gateway.datasets().await {
        Ok(list) => list["datasets"]
            .as_array()
            .map(|datasets| {
                let names: Vec<&str> = datasets.iter().filter_map(|d| d["name"].as_str()).collect();
                format!(" (it lists {})", names.join(", "))
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    format!(
        "name one the producer serves with --dataset: game_rounds (the default) or a NAME.toml \
         of its SLUICE_PRODUCER_DATASETS_DIR; `GET {}/datasets` on the gateway lists the \
         datasets{known}",
        gateway.url
    )
}

/// "N rows read, M rejected" of the running upload with this key (as the producer keeps it:
/// [`Target::scoped_key`]), if the producer lists it.
async fn running_counts(producer: &Producer, key: &str) -> Option<String> {
    let running = producer.get("/uploads", &[]).await.ok()?;
    let upload = running["in_progress"]
        .as_array()?
        .iter()
        .find(|u| u["idempotency_key"] == key)?;
    Some(format!(
        "{} rows read, {} rejected",
        upload["rows_read"], upload["rejected"]
    ))
}

/// A file's SHA-256, size and first bytes.
struct Hashed {
    sha256: String,
    size: u64,
    first_bytes: Vec<u8>,
}

/// Reads the file once (a progress bar on stderr for big ones).
async fn hash(path: &Path) -> std::io::Result<Hashed> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        let bar = byte_bar(size, "sha256");
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; CHUNK_BYTES];
        let mut first_bytes = Vec::new();
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            if first_bytes.len() < 4 {
                let take = (4 - first_bytes.len()).min(n);
                first_bytes.extend_from_slice(&buffer[..take]);
            }
            hasher.update(&buffer[..n]);
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        Ok(Hashed {
            sha256: hex::encode(hasher.finalize()),
            size,
            first_bytes,
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Polls `GET /uploads/{id}` until the reconciliation is no longer `landing` or `wait` has
/// passed; the last answer, if any (a failure to ask leaves the receipt as it was). `unknown`
/// is final: a dataset's rows are not counted (nor, while it is away, anything in
/// ClickHouse), so nothing would change by waiting.
async fn wait_landed(producer: &Producer, id: &str, wait: Duration) -> Option<serde_json::Value> {
    let spinner = spinner("waiting for the rows to land in ClickHouse");
    let deadline = Instant::now() + wait;
    let path = format!("/uploads/{}", segment(id));
    let mut last = None;
    loop {
        let Ok(status) = producer.get(&path, &[]).await else {
            break;
        };
        let reconciliation = &status["reconciliation"];
        let landing = reconciliation["status"] == "landing";
        if let Some(landed) = reconciliation["landed"].as_u64() {
            spinner.set_message(format!(
                "{landed} of {} rows landed in ClickHouse",
                reconciliation["accepted"]
            ));
        }
        last = Some(status);
        if !landing || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(LANDING_POLL).await;
    }
    spinner.finish_and_clear();
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_the_first_bytes_as_the_producer_does() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"crea"), Compression::None);
        assert_eq!(Compression::sniff(&[0xfe, 0xff]), Compression::None);
    }

    #[test]
    fn a_dataset_has_its_own_path_and_scopes_the_key_as_the_producer_does() {
        let name = |n: &str| n.parse::<DatasetName>().unwrap();
        let rounds = Target::new(None);
        assert_eq!(rounds.path(), "/csv_upload");
        assert_eq!(rounds.scoped_key("ab12"), "ab12");
        assert_eq!(Target::new(Some(&name("game_rounds"))), rounds);
        let records = Target::new(Some(&name("records")));
        assert_eq!(records.path(), "/datasets/records/upload");
        assert_eq!(records.scoped_key("ab12"), "records/ab12");
    }
}
