//! One file, start to finish, in one Kafka transaction:
//!
//! 1. take the file's lock (another watcher holding it → leave the file to it);
//! 2. hash it (SHA-256 of the bytes as stored) and check its name against its content;
//! 3. content already claimed with a receipt → a duplicate: skipped, logged, disposed of;
//! 4. stream its rows through the producer's pipeline into a transaction;
//! 5. claim the content (`SET NX`): taken meanwhile → abort, duplicate; ours → commit, store
//!    the receipt (visible at the producer's `GET /uploads/{id}`);
//! 6. move it to `processed/` (or leave or delete it).
//!
//! A failure of the file itself quarantines it with a `<name>.error.json`; a failure of Kafka,
//! Redis or the disk leaves it in place for a later try. A crash anywhere before the commit
//! leaves the transaction open; the restarted watcher fences its transactional ids (which
//! aborts it) and reads the file again from the start.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Instant, SystemTime};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use parquet::file::reader::{FileReader, SerializedFileReader};
use sha2::{Digest, Sha256};
use sluice_producer::error::UploadError;
use sluice_producer::ingest::{
    ingest_text_prehashed, new_upload_id, Limits, Receipt, RecordSink, Rows, Summary, Tally,
};
use sluice_producer::kafka::RoundProducer;
use sluice_producer::receipts::{Claim, ReceiptStore};
use sluice_schema::csv::RowError;
use sluice_schema::parquet::ParquetColumns;
use sluice_schema::GameRound;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::ReaderStream;

use crate::config::{AfterSuccess, Config};
use crate::error::{RetryHint, WatchError};
use crate::format::{self, Compression, Format};
use crate::ledger::Ledger;

/// Read size for files and decoders.
const CHUNK: usize = 256 * 1024;
/// Bytes looked at to tell a file's compression and format.
const HEAD: usize = 8 * 1024;

/// Everything a file's processing needs; shared by every task.
pub struct Context {
    pub config: Config,
    pub producer: RoundProducer,
    pub receipts: ReceiptStore,
    pub ledger: Ledger,
    pub limits: Limits,
    pub instance: String,
}

/// How a file ended.
#[derive(Debug)]
pub enum Outcome {
    Ingested(Box<Receipt>),
    Duplicate {
        first_upload_id: String,
    },
    Quarantined {
        kind: &'static str,
        reason: String,
    },
    /// Another watcher holds the file's lock.
    Busy,
    /// The file went away before it was read.
    Gone,
    /// A dependency failed: try again later.
    Retry(WatchError),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ingested(_) => "ingested",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Quarantined { .. } => "quarantined",
            Outcome::Busy => "busy",
            Outcome::Gone => "gone",
            Outcome::Retry(_) => "retry",
        }
    }
}

enum Done {
    Ingested(Box<Receipt>),
    Duplicate(String),
    /// Another task is reading the same content.
    Busy,
}

/// Processes the file at `path` (a direct child of the watched directory).
pub async fn process(context: &Context, path: &Path) -> Outcome {
    let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
        return Outcome::Gone;
    };
    match context.ledger.lock(&name).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Busy,
        Err(error) => return Outcome::Retry(error),
    }
    let token = format!("{:016x}", rand::random::<u64>());
    let content = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let renewal = {
        let ledger = context.ledger.clone();
        let name = name.clone();
        let (content, token) = (std::sync::Arc::clone(&content), token.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(ledger.lock_ttl() / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if !matches!(ledger.renew(&name).await, Ok(true)) {
                    tracing::warn!(file = %name, "Could not renew a file lock.");
                }
                if let Some(sha256) = content.get() {
                    if !matches!(ledger.renew_content(sha256, &token).await, Ok(true)) {
                        tracing::warn!(file = %name, "Could not renew a content lock.");
                    }
                }
            }
        })
    };
    let result = ingest_file(context, path, &name, &token, &content).await;
    renewal.abort();
    if let Some(sha256) = content.get() {
        context.ledger.unlock_content(sha256, &token).await;
    }
    let outcome = match result {
        Ok(Done::Busy) => Outcome::Busy,
        Ok(Done::Ingested(receipt)) => match dispose(context, path, &name).await {
            Ok(()) => Outcome::Ingested(receipt),
            Err(error) => Outcome::Retry(error.into()),
        },
        Ok(Done::Duplicate(first)) => match dispose(context, path, &name).await {
            Ok(()) => Outcome::Duplicate {
                first_upload_id: first,
            },
            Err(error) => Outcome::Retry(error.into()),
        },
        Err(WatchError::Io(error)) if error.kind() == io::ErrorKind::NotFound => Outcome::Gone,
        Err(error) => match error.retry_hint() {
            RetryHint::WithBackoff => Outcome::Retry(error),
            RetryHint::NoRetry => match quarantine(context, path, &name, &error).await {
                Ok(()) => Outcome::Quarantined {
                    kind: error.kind(),
                    reason: error.to_string(),
                },
                Err(io) => Outcome::Retry(io.into()),
            },
        },
    };
    context.ledger.unlock(&name).await;
    outcome
}

async fn ingest_file(
    context: &Context,
    path: &Path,
    name: &str,
    token: &str,
    content: &std::sync::OnceLock<String>,
) -> Result<Done, WatchError> {
    let started = Instant::now();
    let (format, compression) = format::from_name(name)?;
    let before = tokio::fs::metadata(path).await?;
    let (sha256, raw_head) = hash(path.to_owned()).await?;
    let after = tokio::fs::metadata(path).await?;
    if (before.len(), before.modified().ok()) != (after.len(), after.modified().ok()) {
        return Err(WatchError::Changed);
    }
    format::check_compression(compression, &raw_head)?;
    if !context.ledger.lock_content(&sha256, token).await? {
        return Ok(Done::Busy);
    }
    let _ = content.set(sha256.clone());
    if let Some(first) = context.receipts.holder(&sha256).await? {
        return match context.receipts.get(&first).await? {
            Some(_) => Ok(Done::Duplicate(first)),
            None => Err(WatchError::ClaimedElsewhere(first)),
        };
    }
    let head = content_head(path, compression).await?;
    format::check_format(format, &head)?;

    let transaction = context
        .producer
        .begin_upload()
        .await
        .map_err(UploadError::from)?;
    let window = transaction.window(context.limits.max_in_flight);
    let ingested = match format {
        Format::Text(text) => {
            let content = open(path, compression).await?;
            ingest_text_prehashed(
                text,
                ReaderStream::with_capacity(content, CHUNK),
                window,
                context.limits,
                sha256.clone(),
            )
            .await
            .map_err(WatchError::from)
        }
        Format::Parquet => ingest_parquet(context, path, compression, window, started).await,
    };
    let mut receipt = match ingested {
        Ok(receipt) => receipt,
        Err(error) => {
            transaction.abort().await;
            return Err(error);
        }
    };
    receipt.sha256 = sha256.clone();
    receipt.bytes = before.len();
    receipt.source = Some(name.to_owned());
    if let Err(error) = context
        .ledger
        .add_pending(&receipt.upload_id, &sha256)
        .await
    {
        transaction.abort().await;
        return Err(error);
    }
    let claim = context.receipts.claim(&sha256, &receipt.upload_id).await;
    let finish_pending = || async {
        if let Err(error) = context.ledger.remove_pending(&receipt.upload_id).await {
            tracing::warn!(%error, upload_id = %receipt.upload_id, "Could not clear a pending claim.");
        }
    };
    match claim {
        Ok(Claim::Ours) => {}
        Ok(Claim::Taken(first)) => {
            transaction.abort().await;
            finish_pending().await;
            return match context.receipts.get(&first).await? {
                Some(_) => Ok(Done::Duplicate(first)),
                None => Err(WatchError::ClaimedElsewhere(first)),
            };
        }
        Err(error) => {
            transaction.abort().await;
            finish_pending().await;
            return Err(error.into());
        }
    }
    if let Err(error) = transaction.commit().await {
        context.receipts.release(&sha256, &receipt.upload_id).await;
        finish_pending().await;
        return Err(UploadError::from(error).into());
    }
    if let Err(error) = context.receipts.save(&receipt, None).await {
        // The rows are committed; only the receipt is missing.
        tracing::error!(%error, upload_id = %receipt.upload_id, file = name, "Could not store a receipt.");
    }
    finish_pending().await;
    Ok(Done::Ingested(Box::new(receipt)))
}

/// SHA-256 of the file as stored, and its first bytes.
async fn hash(path: PathBuf) -> Result<(String, Vec<u8>), WatchError> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; CHUNK];
        let mut head = Vec::new();
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            if head.len() < HEAD {
                let take = read.min(HEAD - head.len());
                head.extend_from_slice(&buffer[..take]);
            }
            hasher.update(&buffer[..read]);
        }
        Ok((hex::encode(hasher.finalize()), head))
    })
    .await
    .map_err(|e| WatchError::Io(io::Error::other(e)))?
}

/// The file's content, decompressed.
async fn open(path: &Path, compression: Compression) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
    let file = tokio::fs::File::open(path).await?;
    Ok(match compression {
        Compression::None => Box::pin(file),
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(BufReader::with_capacity(CHUNK, file));
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
        Compression::Zstd => {
            let mut decoder = ZstdDecoder::new(BufReader::with_capacity(CHUNK, file));
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
    })
}

/// The first bytes of the decompressed content.
async fn content_head(path: &Path, compression: Compression) -> Result<Vec<u8>, WatchError> {
    let mut content = open(path, compression).await?;
    let mut head = vec![0; HEAD];
    let mut filled = 0;
    while filled < HEAD {
        match content.read(&mut head[filled..]).await {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(error.into()),
            Err(error) => return Err(WatchError::Corrupt(error.to_string())),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// Rows of a Parquet file, read on a blocking thread (Parquet needs random access, so a
/// compressed one is first decompressed into the work directory) and handed over in batches.
async fn ingest_parquet(
    context: &Context,
    path: &Path,
    compression: Compression,
    sink: impl RecordSink,
    started: Instant,
) -> Result<Receipt, WatchError> {
    const BATCH: usize = 1024;
    let upload_id = new_upload_id();
    let (local, scratch) = match compression {
        Compression::None => (path.to_owned(), None),
        _ => {
            let scratch = context
                .config
                .work_dir()
                .join(format!("{upload_id}.parquet"));
            let mut content = open(path, compression)
                .await?
                .take(context.limits.max_upload_bytes + 1);
            let mut out = tokio::fs::File::create(&scratch).await?;
            let copied = tokio::io::copy(&mut content, &mut out).await;
            let copied = match copied {
                Ok(copied) => copied,
                Err(error) => {
                    let _ = tokio::fs::remove_file(&scratch).await;
                    return Err(WatchError::Corrupt(error.to_string()));
                }
            };
            if copied > context.limits.max_upload_bytes {
                let _ = tokio::fs::remove_file(&scratch).await;
                return Err(UploadError::TooLarge {
                    limit: context.limits.max_upload_bytes,
                }
                .into());
            }
            (scratch.clone(), Some(scratch))
        }
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<Result<GameRound, RowError>>>(4);
    let reader = tokio::task::spawn_blocking(move || -> Result<Vec<String>, WatchError> {
        let parquet = |e: parquet::errors::ParquetError| WatchError::Parquet(e.to_string());
        let reader = SerializedFileReader::new(std::fs::File::open(&local)?).map_err(parquet)?;
        let columns = ParquetColumns::from_schema(reader.metadata().file_metadata().schema_descr())
            .map_err(UploadError::from)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut record = 0_u64;
        for row in reader.get_row_iter(None).map_err(parquet)? {
            let row = row.map_err(parquet)?;
            record += 1;
            batch.push(columns.parse_row(&row, record));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if sender.blocking_send(full).is_err() {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = sender.blocking_send(batch);
        }
        Ok(columns.unknown_columns().to_vec())
    });
    let mut rows = Rows::new(sink, &upload_id, &context.limits);
    let mut pushed = Ok(());
    while let Some(batch) = receiver.recv().await {
        for row in batch {
            if let Err(error) = rows.push(row).await {
                pushed = Err(error);
                break;
            }
        }
        if pushed.is_err() {
            break;
        }
    }
    drop(receiver);
    let read = reader.await.map_err(|e| WatchError::Parquet(e.to_string()));
    if let Some(scratch) = scratch {
        let _ = tokio::fs::remove_file(scratch).await;
    }
    pushed?;
    let unknown_columns = read??;
    let tally: Tally = rows.finish().await?;
    Ok(tally.into_receipt(Summary {
        upload_id: upload_id.clone(),
        encoding: "binary",
        bytes: 0,
        sha256: String::new(),
        unknown_columns,
        started,
    }))
}

/// After success (or for a duplicate): move, delete or leave the file.
async fn dispose(context: &Context, path: &Path, name: &str) -> io::Result<()> {
    match context.config.after_success {
        AfterSuccess::Move => {
            tokio::fs::rename(path, context.config.processed_dir().join(name)).await
        }
        AfterSuccess::Delete => tokio::fs::remove_file(path).await,
        AfterSuccess::Leave => Ok(()),
    }
}

/// Writes `<name>.error.json` into the quarantine directory, then moves the file beside it.
async fn quarantine(
    context: &Context,
    path: &Path,
    name: &str,
    error: &WatchError,
) -> io::Result<()> {
    let directory = context.config.quarantine_dir();
    let report = serde_json::json!({
        "file": name,
        "kind": error.kind(),
        "error": error.to_string(),
        "watcher": context.instance,
        "quarantined_at": chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).to_rfc3339(),
    });
    let report = serde_json::to_vec_pretty(&report).expect("a JSON value serialises");
    tokio::fs::write(directory.join(format!("{name}.error.json")), report).await?;
    tokio::fs::rename(path, directory.join(name)).await
}
