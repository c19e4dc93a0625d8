//! One file, start to finish, in one Kafka transaction:
//!
//! 1. take the file's lock (another watcher holding it → leave the file to it);
//! 2. hash it (SHA-256 of the bytes as stored) and check its name against its content;
//! 3. content already claimed with a receipt (within the dataset, as uploads of the dataset
//!    claim it: [`content_key`]) → a duplicate: skipped, logged, disposed of;
//! 4. stream its rows through the producer's pipeline, read by the dataset's plan, into a
//!    transaction on the dataset's topics;
//! 5. claim the content (`SET NX`): taken meanwhile → abort, duplicate (recorded as a re-send
//!    of the first upload, as for an upload); ours → commit, store the receipt (visible at the
//!    producer's `GET /uploads/{id}`) — the producer's own [`finish_upload`];
//! 6. move it to `processed/` (or leave or delete it).
//!
//! The file is opened once, without following a symbolic link (a link is quarantined, its
//! target never opened), and every read goes through that one descriptor, limited to the
//! length it had when opened. What it was then — inode, length, modification time, a
//! [`Snapshot`] — is compared with what it is after hashing, after the rows were sent (before
//! the claim and commit: changed → aborted, read again once stable) and after the move (through
//! the moved name: changed → put back into the inbox, read again). The watch loop looks once
//! more `stable_ms` after the move ([`recheck`]).
//!
//! A failure of the file itself quarantines it with a report beside it ([`sidecar_name`]); a
//! failure of Kafka, Redis or the disk leaves it in place for a later try, until
//! `max_attempts` tries failed while Kafka and Redis answered: then it is quarantined too
//! (`gave_up`). A crash anywhere before the commit leaves the transaction open; the restarted
//! watcher fences its transactional ids (which aborts it) and reads the file again from the
//! start.
//!
//! [`sidecar_name`]: crate::name::sidecar_name
//! [`content_key`]: sluice_producer::ingest::content_key

use std::io::{self, Seek as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use sha2::{Digest, Sha256};
use sluice_producer::error::UploadError;
use sluice_producer::finish::{finish_upload, Finished};
use sluice_producer::ingest::{
    content_key, dataset_of, ingest_body, ingest_parquet_file, IngestOptions, Limits, Receipt,
    RecordSink,
};
use sluice_producer::kafka::{RoundProducer, UploadTransaction};
use sluice_producer::receipts::ReceiptStore;
use sluice_schema::dataset::Dataset;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt as _, BufReader};
use tokio_util::io::ReaderStream;
use tracing::Instrument as _;

use crate::config::{AfterSuccess, Config};
use crate::error::{RetryHint, WatchError};
use crate::format::{self, Compression, Format};
use crate::ledger::Ledger;
use crate::name::{escaped, sidecar_name};

/// Read size for files and decoders.
const CHUNK: usize = 256 * 1024;
/// Bytes looked at to tell a file's compression and format.
const HEAD: usize = 8 * 1024;

/// Everything a file's processing needs; shared by every task.
pub struct Context {
    pub config: Config,
    /// The dataset every file holds rows of (`SLUICE_WATCHER_DATASET`); the producer's
    /// transactions go to its topics.
    pub dataset: Dataset,
    pub producer: RoundProducer,
    pub receipts: ReceiptStore,
    pub ledger: Ledger,
    pub limits: Limits,
    pub instance: String,
}

impl Context {
    /// What content with this SHA-256 is claimed under: the key an upload of the same bytes to
    /// the dataset claims (the same key as the file's receipt's `content_key`).
    fn content_key(&self, sha256: &str) -> String {
        content_key(dataset_of(&self.dataset.plan).as_deref(), sha256)
    }
}

/// What a file was when it was opened: which inode, how long, last modified when. A file
/// whose snapshot is the same again is the same, unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
}

impl Snapshot {
    pub fn of(metadata: &std::fs::Metadata) -> Snapshot {
        Snapshot {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same file (device and inode), whatever its content now.
    pub fn same_file(&self, other: &Snapshot) -> bool {
        (self.device, self.inode) == (other.device, other.inode)
    }
}

/// Where a file went after its rows were committed (or it was found a duplicate), with what it
/// was when read, for the watch loop's later look.
#[derive(Debug)]
pub enum Disposed {
    Moved { to: PathBuf, read: Snapshot },
    Left { read: Snapshot },
    Deleted,
}

/// How a file ended.
#[derive(Debug)]
pub enum Outcome {
    Ingested {
        receipt: Box<Receipt>,
        disposed: Disposed,
    },
    Duplicate {
        first_upload_id: String,
        disposed: Disposed,
    },
    /// Committed (or a duplicate), but the file changed after it was read: it is in the inbox
    /// again and is read again once stable (its rows so far are de-duplicated by identity).
    Changed,
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
            Outcome::Ingested { .. } => "ingested",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Changed => "changed",
            Outcome::Quarantined { .. } => "quarantined",
            Outcome::Busy => "busy",
            Outcome::Gone => "gone",
            Outcome::Retry(_) => "retry",
        }
    }

    /// Every label, for pre-registering the metric.
    pub const LABELS: [&'static str; 7] = [
        "ingested",
        "duplicate",
        "changed",
        "quarantined",
        "busy",
        "gone",
        "retry",
    ];
}

/// The file, open, and what it was when opened.
struct Opened {
    file: std::fs::File,
    read: Snapshot,
}

enum Done {
    Ingested(Box<Receipt>, Opened),
    Duplicate(String, Opened),
    /// Another task is reading the same content.
    Busy,
}

/// Processes the file at `path` (a direct child of the watched directory); `failures` is how
/// many tries of it failed so far, in a row.
pub async fn process(context: &Context, path: &Path, failures: u32) -> Outcome {
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
    let renewal = renew_locks(context, &name, &token, &content);
    let result = ingest_file(context, path, &name, &token, &content).await;
    renewal.abort();
    if let Some(key) = content.get() {
        context.ledger.unlock_content(key, &token).await;
    }
    let result = match result {
        Ok(done) => settle(context, path, &name, done, &token).await,
        Err(error) => Err(error),
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(WatchError::Io(error)) if error.kind() == io::ErrorKind::NotFound => Outcome::Gone,
        Err(error) => match error.retry_hint() {
            RetryHint::WithBackoff => give_up_or_retry(context, path, &name, failures, error).await,
            RetryHint::NoRetry => quarantined(context, path, &name, error).await,
        },
    };
    context.ledger.unlock(&name).await;
    outcome
}

/// Renews the file's lock, and its content's once known, every third of their lifetime, until
/// aborted.
fn renew_locks(
    context: &Context,
    name: &str,
    token: &str,
    content: &std::sync::Arc<std::sync::OnceLock<String>>,
) -> tokio::task::JoinHandle<()> {
    let ledger = context.ledger.clone();
    let (name, token) = (name.to_owned(), token.to_owned());
    let content = std::sync::Arc::clone(content);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ledger.lock_ttl() / 3);
        every.tick().await;
        loop {
            every.tick().await;
            if !matches!(ledger.renew(&name).await, Ok(true)) {
                tracing::warn!(file = %escaped(&name), "Could not renew a file lock.");
            }
            if let Some(key) = content.get() {
                if !matches!(ledger.renew_content(key, &token).await, Ok(true)) {
                    tracing::warn!(file = %escaped(&name), "Could not renew a content lock.");
                }
            }
        }
    })
}

/// A file ingested or found a duplicate is disposed of ([`dispose`]); one that changed
/// meanwhile is [`Outcome::Changed`].
async fn settle(
    context: &Context,
    path: &Path,
    name: &str,
    done: Done,
    token: &str,
) -> Result<Outcome, WatchError> {
    let opened = match &done {
        Done::Busy => return Ok(Outcome::Busy),
        Done::Ingested(_, opened) | Done::Duplicate(_, opened) => opened,
    };
    let Some(disposed) = dispose(context, path, name, opened, token).await? else {
        return Ok(Outcome::Changed);
    };
    Ok(match done {
        Done::Ingested(receipt, _) => Outcome::Ingested { receipt, disposed },
        Done::Duplicate(first_upload_id, _) => Outcome::Duplicate {
            first_upload_id,
            disposed,
        },
        Done::Busy => Outcome::Busy,
    })
}

/// A transient failure: tried again later, unless this was try number `max_attempts` and Kafka
/// and Redis answer now (so the failure is the file's, not an outage's): then quarantined.
async fn give_up_or_retry(
    context: &Context,
    path: &Path,
    name: &str,
    failures: u32,
    error: WatchError,
) -> Outcome {
    let attempts = failures.saturating_add(1);
    if attempts < context.config.max_attempts.max(1) {
        return Outcome::Retry(error);
    }
    let kafka = context.producer.is_ready(Duration::from_secs(2)).await;
    if !(kafka && context.ledger.is_ready().await) {
        return Outcome::Retry(error);
    }
    let gave_up = WatchError::GaveUp {
        attempts,
        last: error.to_string(),
    };
    quarantined(context, path, name, gave_up).await
}

async fn quarantined(context: &Context, path: &Path, name: &str, error: WatchError) -> Outcome {
    match quarantine(context, path, name, &error).await {
        Ok(()) => Outcome::Quarantined {
            kind: error.kind(),
            reason: error.to_string(),
        },
        Err(io) => Outcome::Retry(io.into()),
    }
}

/// Opens `path` for reading without following a symbolic link (`O_NOFOLLOW`: a link put in its
/// place since it was listed fails with `ELOOP`) and without waiting for a FIFO's writer
/// (`O_NONBLOCK`, no effect on a regular file); only a regular file is accepted.
fn open_regular(path: &Path) -> Result<Opened, WatchError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => WatchError::Symlink,
            _ => WatchError::Io(error),
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(WatchError::NotRegular);
    }
    Ok(Opened {
        file,
        read: Snapshot::of(&metadata),
    })
}

/// Whether the open file is still as it was when opened.
fn unchanged(opened: &Opened) -> io::Result<bool> {
    Ok(Snapshot::of(&opened.file.metadata()?) == opened.read)
}

async fn ingest_file(
    context: &Context,
    path: &Path,
    name: &str,
    token: &str,
    content: &std::sync::OnceLock<String>,
) -> Result<Done, WatchError> {
    let started = Instant::now();
    let (opened, sha256, format, compression) = open_and_hash(path, name).await?;
    let key = context.content_key(&sha256);
    if !context.ledger.lock_content(&key, token).await? {
        return Ok(Done::Busy);
    }
    let _ = content.set(key.clone());
    if let Some(first) = context.receipts.holder(&key).await? {
        let has_receipt = context.receipts.get(&first).await?.is_some();
        return duplicate_of(first, has_receipt, opened);
    }
    let head = content_head(&opened, compression).await?;
    format::check_format(format, &head)?;

    let transaction = context
        .producer
        .begin_upload()
        .await
        .map_err(UploadError::from)?;
    let window = transaction.window(context.limits.max_in_flight);
    let ingested = match format {
        Format::Text(text) => {
            let content = ReaderStream::with_capacity(open(&opened, compression)?, CHUNK);
            let options = IngestOptions {
                sha256: Some(sha256.clone()),
                ..IngestOptions::new(text, Arc::clone(&context.dataset.plan), context.limits)
            };
            ingest_body(content, window, options)
                .await
                .map_err(WatchError::from)
        }
        Format::Parquet => ingest_parquet(context, &opened, compression, window, started).await,
    };
    // Rows sent from a file that changed meanwhile are not committed: read it again once stable.
    let ingested = ingested.and_then(|receipt| match unchanged(&opened) {
        Ok(true) => Ok(receipt),
        Ok(false) => Err(WatchError::Changed),
        Err(error) => Err(error.into()),
    });
    let mut receipt = match ingested {
        Ok(receipt) => receipt,
        Err(error) => {
            transaction.abort().await;
            return Err(error);
        }
    };
    receipt.sha256 = sha256;
    receipt.bytes = opened.read.len();
    receipt.source = Some(name.to_owned());
    debug_assert_eq!(receipt.content_key(), key, "claimed as it was looked up");
    commit(context, transaction, receipt, name, opened).await
}

/// Opens the file at `path` (never through a symbolic link), hashes it, and checks its name
/// against what it holds: its format and compression by name, its compression by its first
/// bytes. A file that changed while hashed is [`WatchError::Changed`].
async fn open_and_hash(
    path: &Path,
    name: &str,
) -> Result<(Opened, String, Format, Compression), WatchError> {
    if tokio::fs::symlink_metadata(path)
        .await?
        .file_type()
        .is_symlink()
    {
        return Err(WatchError::Symlink);
    }
    let (format, compression) = format::from_name(name)?;
    let opened = open_regular(path)?;
    let (sha256, raw_head, hashed) = hash(&opened.file).await?;
    if hashed != opened.read.len() || !unchanged(&opened)? {
        return Err(WatchError::Changed);
    }
    format::check_compression(compression, &raw_head)?;
    Ok((opened, sha256, format, compression))
}

/// The file's rows are all acknowledged: claim, commit (or abort a duplicate), store the
/// receipt ([`finish_upload`]), with the claim noted as pending meanwhile (see `ledger`).
async fn commit(
    context: &Context,
    transaction: UploadTransaction,
    receipt: Receipt,
    name: &str,
    opened: Opened,
) -> Result<Done, WatchError> {
    if let Err(error) = context
        .ledger
        .add_pending(&receipt.upload_id, &receipt.content_key())
        .await
    {
        transaction.abort().await;
        return Err(error);
    }
    let finished = finish_upload(&context.receipts, transaction, &receipt, None)
        .instrument(tracing::info_span!("file", file = %escaped(name)))
        .await;
    if let Err(error) = context.ledger.remove_pending(&receipt.upload_id).await {
        tracing::warn!(%error, upload_id = %receipt.upload_id, "Could not clear a pending claim.");
    }
    match finished? {
        Finished::Committed => Ok(Done::Ingested(Box::new(receipt), opened)),
        Finished::Duplicate {
            first_upload_id,
            first_receipt,
        } => duplicate_of(first_upload_id, first_receipt.is_some(), opened),
    }
}

/// A file whose content upload `first` claimed: a duplicate once that upload has its receipt;
/// until then it may still fail, so the file is tried again later.
fn duplicate_of(first: String, has_receipt: bool, opened: Opened) -> Result<Done, WatchError> {
    if has_receipt {
        Ok(Done::Duplicate(first, opened))
    } else {
        Err(WatchError::ClaimedElsewhere(first))
    }
}

/// SHA-256 of the open file from its start to its end as stored, its first bytes, and how
/// many bytes that was.
async fn hash(file: &std::fs::File) -> Result<(String, Vec<u8>, u64), WatchError> {
    let mut file = file.try_clone()?;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        file.seek(io::SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; CHUNK];
        let mut head = Vec::new();
        let mut total = 0_u64;
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
            total += read as u64;
        }
        Ok((hex::encode(hasher.finalize()), head, total))
    })
    .await
    .map_err(|e| WatchError::Io(io::Error::other(e)))?
}

/// The open file's bytes from its start, as many as it had when opened (never reopened by
/// name: the name may be another file by now).
fn raw(opened: &Opened) -> io::Result<tokio::io::Take<tokio::fs::File>> {
    let mut file = opened.file.try_clone()?;
    file.seek(io::SeekFrom::Start(0))?;
    Ok(tokio::fs::File::from_std(file).take(opened.read.len()))
}

/// The file's content, decompressed.
fn open(opened: &Opened, compression: Compression) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
    let file = raw(opened)?;
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
async fn content_head(opened: &Opened, compression: Compression) -> Result<Vec<u8>, WatchError> {
    let mut content = open(opened, compression)?;
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

/// Rows of a Parquet file, read by the producer's Parquet source (Parquet needs random access,
/// so a compressed one is first decompressed into the work directory).
async fn ingest_parquet(
    context: &Context,
    opened: &Opened,
    compression: Compression,
    sink: impl RecordSink,
    started: Instant,
) -> Result<Receipt, WatchError> {
    let options = IngestOptions::new(
        Format::Parquet,
        Arc::clone(&context.dataset.plan),
        context.limits,
    );
    let (file, scratch) = match compression {
        Compression::None => (opened.file.try_clone()?, None),
        _ => {
            let scratch =
                (context.config.work_dir()).join(format!("{}.parquet", options.upload_id));
            decompress_into(context, opened, compression, &scratch).await?;
            (std::fs::File::open(&scratch)?, Some(scratch))
        }
    };
    let read = ingest_parquet_file(file, sink, options, started).await;
    if let Some(scratch) = scratch {
        let _ = tokio::fs::remove_file(scratch).await;
    }
    Ok(read?)
}

/// Decompresses the open file into `scratch`, at most `max_upload_bytes` of it; the scratch
/// file is removed when that fails.
async fn decompress_into(
    context: &Context,
    opened: &Opened,
    compression: Compression,
    scratch: &Path,
) -> Result<(), WatchError> {
    let limit = context.limits.max_upload_bytes;
    let mut content = open(opened, compression)?.take(limit + 1);
    let mut out = tokio::fs::File::create(scratch).await?;
    let copied = match tokio::io::copy(&mut content, &mut out).await {
        Ok(copied) => copied,
        Err(error) => {
            let _ = tokio::fs::remove_file(scratch).await;
            return Err(WatchError::Corrupt(error.to_string()));
        }
    };
    if copied > limit {
        let _ = tokio::fs::remove_file(scratch).await;
        return Err(UploadError::TooLarge { limit }.into());
    }
    Ok(())
}

/// After success (or for a duplicate): move, delete or leave the file. The file is checked
/// after the move, under its new name, so a write up to that instant is seen: if the name now
/// holds a file other than the one read, or the one read but changed, it is put back into the
/// inbox to be read again (`None`). A file to delete is first moved into the work directory
/// and checked there the same way.
async fn dispose(
    context: &Context,
    path: &Path,
    name: &str,
    opened: &Opened,
    token: &str,
) -> io::Result<Option<Disposed>> {
    let config = &context.config;
    let to = match config.after_success {
        AfterSuccess::Leave => {
            let now = Snapshot::of(&tokio::fs::symlink_metadata(path).await?);
            return Ok((now == opened.read).then_some(Disposed::Left { read: opened.read }));
        }
        AfterSuccess::Move => config.processed_dir().join(name),
        AfterSuccess::Delete => config.work_dir().join(format!("{token}.deleting")),
    };
    tokio::fs::rename(path, &to).await?;
    let moved = Snapshot::of(&tokio::fs::symlink_metadata(&to).await?);
    if moved != opened.read {
        put_back(&to, path).map_err(|error| {
            tracing::error!(
                %error,
                file = %escaped(name),
                "A file changed after it was read, and could not be put back into the inbox."
            );
            error
        })?;
        return Ok(None);
    }
    match config.after_success {
        AfterSuccess::Delete => {
            tokio::fs::remove_file(&to).await?;
            Ok(Some(Disposed::Deleted))
        }
        _ => Ok(Some(Disposed::Moved {
            to,
            read: opened.read,
        })),
    }
}

/// Moves a file back into the inbox, never over a file that arrived there meanwhile (a hard
/// link fails if the name is taken).
fn put_back(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

/// The watch loop's last look at a file moved to `moved` (from `inbox`) `stable_ms` earlier:
/// if it is still the file read there but changed since (its writer paused longer than the
/// stable window, then went on), it is put back into the inbox to be read again. True if it
/// was put back. A file gone or replaced there is none of the watcher's business any more.
pub fn recheck(moved: &Path, inbox: &Path, read: &Snapshot) -> io::Result<bool> {
    let now = match std::fs::symlink_metadata(moved) {
        Ok(metadata) => Snapshot::of(&metadata),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if !now.same_file(read) || now == *read {
        return Ok(false);
    }
    put_back(moved, inbox)?;
    Ok(true)
}

/// Writes the report into the quarantine directory (its name at most 255 bytes, see
/// [`sidecar_name`]; never through a symbolic link), then moves the file beside it (a link is
/// moved itself, its target never touched).
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
    let mut sidecar = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(directory.join(sidecar_name(name)))
        .await?;
    sidecar.write_all(&report).await?;
    sidecar.flush().await?;
    tokio::fs::rename(path, directory.join(name)).await
}
