//! The ingest pipeline, shared by uploads and the watcher: body bytes → (transcoding) → rows →
//! `GameRound` → Avro → Kafka, as one bounded stream. Memory stays flat: a few body chunks, one
//! record, and the window of unacknowledged Kafka deliveries.
//!
//! A row source turns text into `Result<GameRound, RowError>`s: CSV (uploads), JSON Lines and
//! JSON arrays here ([`TextFormat`]), Parquet in the watcher. Everything after that is one
//! format-agnostic [`Rows`]: encode each round to the [`RecordSink`], send every reject to the
//! rejects sink, count, keep the first rejects for the [`Receipt`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use csv_async::{AsyncReaderBuilder, ByteRecord};
use encoding_rs::Encoding;
use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::csv::{HeaderMap, RowBytes, RowError};
use sluice_schema::GameRound;
use tokio::io::AsyncBufReadExt;
use tokio_util::io::StreamReader;

use crate::decode::{LineTooLong, TooMuchExpansion};
use crate::error::UploadError;
use crate::kafka::DeliveryWindow;
use crate::records::{CutRecords, HeaderTooLarge, RecordBounds};

mod blocking;

pub use blocking::{BlockingRows, Row, RowBatches};

/// The CSV reader's own buffer: larger than csv-async's 8 KiB default, so the parser is fed
/// (and polls the body stream) less often per row.
const CSV_BUFFER_BYTES: usize = 64 * 1024;

/// Body chunks buffered between the socket and the CSV parser.
const BODY_CHUNKS_BUFFERED: usize = 8;

/// What the producer tells the client once Kafka acknowledged every accepted record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub upload_id: String,
    /// The file's text encoding as read: `UTF-8`, `UTF-16LE` or `UTF-16BE`.
    #[schema(value_type = String)]
    pub encoding: &'static str,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub sha256: String,
    /// The first columns of the header that are not used, in order (at most
    /// `max_unknown_columns_listed`).
    pub unknown_columns: Vec<String>,
    /// How many columns of the header are not used.
    pub unknown_columns_count: u64,
    /// The first rejected rows, in file order (at most `max_rejects_listed`).
    #[schema(value_type = Vec<crate::routes::docs::RowReject>)]
    pub rejects: Vec<RowError>,
    /// The file this came from, for files the watcher picked up (absent for uploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Limits of one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: u64,
    pub max_in_flight: usize,
    pub max_rejects_listed: usize,
    /// Longest physical line, in bytes of UTF-8; also the longest CSV header record.
    pub max_line_bytes: usize,
    /// Longest record, in bytes: a CSV record as read (quoted line breaks included) and each
    /// encoded Avro record. A longer one is rejected (`record too large`), never buffered whole.
    pub max_record_bytes: usize,
    /// How many unused header columns the receipt lists (all are counted).
    pub max_unknown_columns_listed: usize,
    /// Longest wait for the next piece of the body.
    pub body_idle_timeout: Duration,
}

/// Where encoded records go: Kafka in the service, nowhere in the benchmark's baseline.
#[allow(async_fn_in_trait)]
pub trait RecordSink {
    /// Takes one record; may wait (backpressure).
    async fn send(&mut self, key: &str, payload: &[u8]) -> Result<(), UploadError>;
    /// Keeps one rejected row (JSON), keyed by its upload.
    async fn reject(&mut self, upload_id: &str, reject: &[u8]) -> Result<(), UploadError>;
    /// Waits until every record sent is durable.
    async fn finish(self) -> Result<(), UploadError>;
}

impl RecordSink for DeliveryWindow<'_> {
    async fn send(&mut self, key: &str, payload: &[u8]) -> Result<(), UploadError> {
        Ok(DeliveryWindow::send(self, key, payload).await?)
    }

    async fn reject(&mut self, upload_id: &str, reject: &[u8]) -> Result<(), UploadError> {
        Ok(DeliveryWindow::send_reject(self, upload_id, reject).await?)
    }

    async fn finish(self) -> Result<(), UploadError> {
        Ok(DeliveryWindow::finish(self).await?)
    }
}

/// Discards records: the pipeline without Kafka, for measuring parse + encode alone.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl RecordSink for DiscardSink {
    async fn send(&mut self, _key: &str, _payload: &[u8]) -> Result<(), UploadError> {
        Ok(())
    }

    async fn reject(&mut self, _upload_id: &str, _reject: &[u8]) -> Result<(), UploadError> {
        Ok(())
    }

    async fn finish(self) -> Result<(), UploadError> {
        Ok(())
    }
}

/// A text format a body can be in; every one is transcoded from the encodings uploads take
/// (UTF-8 with or without BOM, UTF-16 LE/BE with BOM) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// A header row naming the columns, then one round per record.
    Csv,
    /// One JSON array of objects, each a round; rows are numbered by element (1-based).
    Json,
    /// One JSON object per line; blank lines are skipped; rows are numbered by line.
    JsonLines,
}

impl TextFormat {
    pub fn name(self) -> &'static str {
        match self {
            TextFormat::Csv => "csv",
            TextFormat::Json => "json",
            TextFormat::JsonLines => "jsonl",
        }
    }
}

/// Streams one uploaded CSV file into `sink` and returns its receipt once the sink has made
/// every record durable. `body` may be `!Send` (an actix multipart field): it is drained here
/// and handed to the parser over a bounded channel.
pub async fn ingest<S, E>(
    body: S,
    sink: impl RecordSink,
    limits: Limits,
) -> Result<Receipt, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    ingest_text(TextFormat::Csv, body, sink, limits).await
}

/// [`ingest`] for a body in any [`TextFormat`].
pub async fn ingest_text<S, E>(
    format: TextFormat,
    body: S,
    sink: impl RecordSink,
    limits: Limits,
) -> Result<Receipt, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    ingest_body(format, body, sink, limits, None, new_upload_id(), None).await
}

/// [`ingest`] for an upload whose id the caller chose (see [`new_upload_id`]) and whose
/// counts it follows while it runs through `progress`.
pub async fn ingest_tracked<S, E>(
    body: S,
    sink: impl RecordSink,
    limits: Limits,
    upload_id: String,
    progress: Arc<Progress>,
) -> Result<Receipt, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    ingest_body(
        TextFormat::Csv,
        body,
        sink,
        limits,
        None,
        upload_id,
        Some(progress),
    )
    .await
}

/// [`ingest_text`] for a body whose SHA-256 the caller already has (the watcher hashes a file
/// before reading it): the body is not hashed again, and the receipt carries `sha256`.
pub async fn ingest_text_prehashed<S, E>(
    format: TextFormat,
    body: S,
    sink: impl RecordSink,
    limits: Limits,
    sha256: String,
) -> Result<Receipt, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    ingest_body(
        format,
        body,
        sink,
        limits,
        Some(sha256),
        new_upload_id(),
        None,
    )
    .await
}

async fn ingest_body<S, E>(
    format: TextFormat,
    body: S,
    sink: impl RecordSink,
    limits: Limits,
    sha256: Option<String>,
    upload_id: String,
    progress: Option<Arc<Progress>>,
) -> Result<Receipt, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    let started = Instant::now();
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(BODY_CHUNKS_BUFFERED);
    let encoding = Arc::new(OnceLock::new());
    let hash = sha256.is_none();
    // The first failure ends both: a parse error (say, a line over the limit) answers at once
    // rather than after the client sent the rest or went quiet for the idle timeout.
    let (body, (tally, unknown_columns)) = futures::future::try_join(
        forward_body(body, sender, limits, hash, progress.clone()),
        parse_and_produce(
            format,
            receiver,
            Arc::clone(&encoding),
            sink,
            limits,
            &upload_id,
            progress,
        ),
    )
    .await?;
    Ok(tally.into_receipt(Summary {
        upload_id,
        encoding: encoding.get().map_or("UTF-8", |e: &&Encoding| e.name()),
        bytes: body.bytes,
        sha256: sha256.or(body.sha256.map(hex::encode)).unwrap_or_default(),
        unknown_columns,
        started,
    }))
}

/// A fresh upload id (a UUID v4).
pub fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The counts of an upload while it runs, for whoever reports them (`GET /uploads/…`). The
/// parser publishes its counts every [`PROGRESS_EVERY_ROWS`] rows, so this costs the hot loop
/// a branch per row.
#[derive(Debug, Default)]
pub struct Progress {
    rows_read: AtomicU64,
    accepted: AtomicU64,
    bytes: AtomicU64,
}

/// Rows between two publications of an upload's counts.
pub const PROGRESS_EVERY_ROWS: u64 = 4096;

/// A reading of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub rows_read: u64,
    pub accepted: u64,
    pub bytes: u64,
}

impl Progress {
    /// Never shows more rows accepted than read: `accepted` is published after `rows_read`
    /// (release) and read before it (acquire), and both only grow.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let accepted = self.accepted.load(Ordering::Acquire);
        ProgressSnapshot {
            rows_read: self.rows_read.load(Ordering::Relaxed),
            accepted,
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, tally: &Tally) {
        self.rows_read.store(tally.rows_read, Ordering::Relaxed);
        self.accepted.store(tally.accepted, Ordering::Release);
    }
}

/// What a receipt says besides the counts.
pub struct Summary {
    pub upload_id: String,
    pub encoding: &'static str,
    pub bytes: u64,
    pub sha256: String,
    pub unknown_columns: Vec<String>,
    /// When the ingest started, for `duration_ms`.
    pub started: Instant,
}

/// The counts of a finished ingest.
#[derive(Debug)]
pub struct Tally {
    pub rows_read: u64,
    pub accepted: u64,
    /// The first rejected rows, in order.
    pub rejects: Vec<RowError>,
    /// How many unused header columns the receipt lists.
    unknown_columns_listed: usize,
}

impl Tally {
    pub fn into_receipt(self, summary: Summary) -> Receipt {
        let mut unknown_columns = summary.unknown_columns;
        let unknown_columns_count = unknown_columns.len() as u64;
        unknown_columns.truncate(self.unknown_columns_listed);
        Receipt {
            upload_id: summary.upload_id,
            encoding: summary.encoding,
            rows_read: self.rows_read,
            accepted: self.accepted,
            rejected: self.rows_read - self.accepted,
            bytes: summary.bytes,
            duration_ms: u64::try_from(summary.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sha256: summary.sha256,
            unknown_columns,
            unknown_columns_count,
            rejects: self.rejects,
            source: None,
        }
    }
}

/// The format-agnostic half of ingest: every row of a source goes through [`push`](Self::push),
/// which encodes a round to the sink or keeps a reject; [`finish`](Self::finish) waits until
/// the sink made everything durable.
pub struct Rows<'a, K: RecordSink> {
    sink: K,
    upload_id: &'a str,
    codec: &'static GameRoundCodec,
    message: Vec<u8>,
    max_rejects_listed: usize,
    max_record_bytes: usize,
    tally: Tally,
    progress: Option<Arc<Progress>>,
}

impl<'a, K: RecordSink> Rows<'a, K> {
    pub fn new(sink: K, upload_id: &'a str, limits: &Limits) -> Rows<'a, K> {
        Rows {
            sink,
            upload_id,
            codec: GameRoundCodec::get(),
            message: Vec::with_capacity(256),
            max_rejects_listed: limits.max_rejects_listed,
            max_record_bytes: limits.max_record_bytes,
            tally: Tally {
                rows_read: 0,
                accepted: 0,
                rejects: Vec::new(),
                unknown_columns_listed: limits.max_unknown_columns_listed,
            },
            progress: None,
        }
    }

    /// Publishes the counts to `progress` as rows go by.
    pub fn with_progress(mut self, progress: Option<Arc<Progress>>) -> Rows<'a, K> {
        self.progress = progress;
        self
    }

    /// Publishes the counts every [`PROGRESS_EVERY_ROWS`] rows, once a row is counted whole.
    #[inline]
    fn counted(&self) {
        if self.tally.rows_read % PROGRESS_EVERY_ROWS == 0 {
            self.publish_progress();
        }
    }

    /// Publishes the counts now (at the end, or when the upload fails).
    pub fn publish_progress(&self) {
        if let Some(progress) = &self.progress {
            progress.publish(&self.tally);
        }
    }

    /// Takes one row: a round is encoded and sent, a reject sent to the rejects sink and kept
    /// for the receipt if there is room. Waits while the sink applies backpressure. A round
    /// whose record is too large is rejected as the row numbered by its place in the source
    /// (the element of a JSON array, the record of a Parquet file).
    #[inline]
    pub async fn push(&mut self, row: Result<GameRound, RowError>) -> Result<(), UploadError> {
        let number = self.tally.rows_read + 1;
        self.push_at(row, number).await
    }

    /// [`push`](Self::push) for a row found at `line`.
    #[inline]
    pub async fn push_at(
        &mut self,
        row: Result<GameRound, RowError>,
        line: u64,
    ) -> Result<(), UploadError> {
        match row {
            Ok(round) => self.accept(&round, line).await,
            Err(reject) => self.reject(reject).await,
        }
    }

    /// [`push`](Self::push) for a round found at `line`, borrowed: the hot path moves no round
    /// around. An encoded record over `max_record_bytes` is rejected instead of sent: Kafka
    /// would refuse it (`MessageSizeTooLarge`) and fail the whole upload.
    #[inline]
    pub async fn accept(&mut self, round: &GameRound, line: u64) -> Result<(), UploadError> {
        self.message.clear();
        self.codec.encode(round, self.upload_id, &mut self.message);
        if self.message.len() > self.max_record_bytes {
            let reason = format!(
                "record too large: {} bytes encoded, more than {} (SLUICE_PRODUCER_MAX_RECORD_BYTES)",
                self.message.len(),
                self.max_record_bytes
            );
            return self
                .reject(RowError {
                    line,
                    column: None,
                    reason,
                })
                .await;
        }
        self.tally.rows_read += 1;
        self.sink
            .send(round.user_id.as_str(), &self.message)
            .await?;
        self.tally.accepted += 1;
        self.counted();
        Ok(())
    }

    /// [`push`](Self::push) for a rejected row.
    pub async fn reject(&mut self, reject: RowError) -> Result<(), UploadError> {
        self.tally.rows_read += 1;
        self.counted();
        let kept = RejectRecord {
            upload_id: self.upload_id,
            line: reject.line,
            column: reject.column,
            reason: &reject.reason,
        };
        let json = serde_json::to_vec(&kept).expect("rejects serialise");
        self.sink.reject(self.upload_id, &json).await?;
        if self.tally.rejects.len() < self.max_rejects_listed {
            self.tally.rejects.push(reject);
        }
        Ok(())
    }

    /// Waits until every record sent is durable; returns the counts.
    pub async fn finish(self) -> Result<Tally, UploadError> {
        self.publish_progress();
        self.sink.finish().await?;
        Ok(self.tally)
    }
}

struct BodySummary {
    bytes: u64,
    /// Unless the caller hashed the body itself.
    sha256: Option<[u8; 32]>,
}

/// Drains the request body into the channel, counting and hashing it and enforcing the size
/// limit. Stops early, without error, when the parser has stopped listening.
async fn forward_body<S, E>(
    mut body: S,
    mut sender: mpsc::Sender<io::Result<Bytes>>,
    limits: Limits,
    hash: bool,
    progress: Option<Arc<Progress>>,
) -> Result<BodySummary, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    let mut bytes = 0_u64;
    let mut hasher = hash.then(BackgroundSha256::start);
    loop {
        let chunk = match tokio::time::timeout(limits.body_idle_timeout, body.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                let failure = UploadError::ClientTooSlow {
                    idle_ms: limits.body_idle_timeout.as_millis() as u64,
                };
                let _ = sender
                    .send(Err(io::Error::other(failure.to_string())))
                    .await;
                return Err(failure);
            }
        };
        let failure = match chunk {
            Ok(chunk) => {
                bytes += chunk.len() as u64;
                if let Some(progress) = &progress {
                    progress.bytes.store(bytes, Ordering::Relaxed);
                }
                if bytes > limits.max_upload_bytes {
                    Some(UploadError::TooLarge {
                        limit: limits.max_upload_bytes,
                    })
                } else {
                    if let Some(hasher) = hasher.as_mut() {
                        hasher.update(chunk.clone()).await;
                    }
                    if sender.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                    None
                }
            }
            Err(error) => Some(body_failure(error)),
        };
        if let Some(failure) = failure {
            // Stop the parser too; its error is secondary to this one.
            let _ = sender
                .send(Err(io::Error::other(failure.to_string())))
                .await;
            return Err(failure);
        }
    }
    let sha256 = match hasher {
        Some(hasher) => Some(hasher.finish().await?),
        None => None,
    };
    Ok(BodySummary { bytes, sha256 })
}

/// Bytes of body gathered before they are handed to the hashing thread (fewer, larger
/// handoffs: one wake-up per MiB, not per network read).
const HASH_BATCH_BYTES: usize = 1 << 20;

/// SHA-256 of a body computed on a blocking thread of its own, beside the parser: the chunks
/// are shared (`Bytes`), not copied, and at most [`BODY_CHUNKS_BUFFERED`] batches wait for it.
struct BackgroundSha256 {
    batches: tokio::sync::mpsc::Sender<Vec<Bytes>>,
    gathered: Vec<Bytes>,
    gathered_bytes: usize,
    digest: tokio::task::JoinHandle<[u8; 32]>,
}

impl BackgroundSha256 {
    fn start() -> BackgroundSha256 {
        let (batches, mut received) =
            tokio::sync::mpsc::channel::<Vec<Bytes>>(BODY_CHUNKS_BUFFERED);
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(batch) = received.blocking_recv() {
                for chunk in batch {
                    hasher.update(&chunk);
                }
            }
            hasher.finalize().into()
        });
        BackgroundSha256 {
            batches,
            gathered: Vec::new(),
            gathered_bytes: 0,
            digest,
        }
    }

    async fn update(&mut self, chunk: Bytes) {
        self.gathered_bytes += chunk.len();
        self.gathered.push(chunk);
        if self.gathered_bytes >= HASH_BATCH_BYTES {
            self.hand_over().await;
        }
    }

    async fn hand_over(&mut self) {
        self.gathered_bytes = 0;
        let batch = std::mem::take(&mut self.gathered);
        // The thread only stops when the sender is dropped.
        let _ = self.batches.send(batch).await;
    }

    async fn finish(mut self) -> Result<[u8; 32], UploadError> {
        self.hand_over().await;
        drop(self.batches);
        self.digest
            .await
            .map_err(|e| UploadError::BadBody(format!("hashing the body failed: {e}")))
    }
}

/// A rejected row as kept on the rejects topic (JSON, keyed by upload id).
#[derive(Serialize)]
struct RejectRecord<'a> {
    upload_id: &'a str,
    line: u64,
    column: Option<&'static str>,
    reason: &'a str,
}

/// Transcodes the body to UTF-8 and runs the format's row source into [`Rows`]. Returns the
/// counts and the unknown columns (CSV only).
async fn parse_and_produce(
    format: TextFormat,
    body: mpsc::Receiver<io::Result<Bytes>>,
    encoding: Arc<OnceLock<&'static Encoding>>,
    sink: impl RecordSink,
    limits: Limits,
    upload_id: &str,
    progress: Option<Arc<Progress>>,
) -> Result<(Tally, Vec<String>), UploadError> {
    let text = crate::decode::to_utf8(body, move |detected| {
        let _ = encoding.set(detected);
    });
    let mut rows = Rows::new(sink, upload_id, &limits).with_progress(progress);
    let read = match format {
        TextFormat::Csv => csv_rows(text, &mut rows, limits).await,
        TextFormat::JsonLines => {
            let text = crate::decode::limit_line_length(text, limits.max_line_bytes);
            json_lines_rows(text, &mut rows).await.map(|()| Vec::new())
        }
        TextFormat::Json => json_array_rows(text, &mut rows).await.map(|()| Vec::new()),
    };
    // The counts at the failure too, for the upload's failed state.
    rows.publish_progress();
    let unknown_columns = read?;
    Ok((rows.finish().await?, unknown_columns))
}

/// The CSV row source: header by name, then one row per record, numbered by line.
async fn csv_rows<S>(
    text: S,
    rows: &mut Rows<'_, impl RecordSink>,
    limits: Limits,
) -> Result<Vec<String>, UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Send,
{
    let crlf = Arc::new(AtomicBool::new(false));
    let crlf_seen = Arc::clone(&crlf);
    let text = crate::decode::sniff_crlf(text, move |is_crlf| {
        crlf_seen.store(is_crlf, Ordering::Relaxed)
    });
    // Rows are searched for a NUL only once the stream held one (nearly never).
    let nul = Arc::new(AtomicBool::new(false));
    let nul_seen = Arc::clone(&nul);
    let text = crate::decode::sniff_nul(text, move || nul_seen.store(true, Ordering::Relaxed));
    let cuts = Arc::new(CutRecords::default());
    let bounds = RecordBounds {
        max_line_bytes: limits.max_line_bytes,
        max_header_bytes: limits.max_line_bytes,
        max_record_bytes: limits.max_record_bytes,
    };
    let text = crate::records::bound_records(text, bounds, Arc::clone(&cuts));
    let mut reader = AsyncReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(CSV_BUFFER_BYTES)
        .create_reader(StreamReader::new(Box::pin(text)));
    let header = reader.byte_headers().await.map_err(read_failure)?;
    let columns = HeaderMap::parse(header)?;

    let mut record = ByteRecord::new();
    // One round's buffers, reused row after row: the hot loop allocates nothing per row.
    let mut scratch: Option<GameRound> = None;
    // Line feeds of cut records the parser never saw (see `records`).
    let mut dropped_lines = 0;
    loop {
        let reject = match reader.read_byte_record(&mut record).await {
            Ok(false) => break,
            Ok(true) => {
                // See `decode::sniff_crlf`: the parser reports CRLF records one line too low.
                let line = record.position().map_or(0, |p| p.line())
                    + u64::from(crlf.load(Ordering::Relaxed))
                    + dropped_lines;
                // A record cut short for its size is rejected, never parsed.
                let cut = cuts.take_if_cut(reader.position().byte());
                let parsed = if let Some(lines) = cut {
                    dropped_lines += lines;
                    Err(RowError {
                        line,
                        column: None,
                        reason: format!(
                            "record too large: more than {} bytes \
                             (SLUICE_PRODUCER_MAX_RECORD_BYTES)",
                            limits.max_record_bytes
                        ),
                    })
                } else {
                    match scratch.as_mut() {
                        Some(round) => {
                            let bytes = if nul.load(Ordering::Relaxed) {
                                RowBytes::Unchecked
                            } else {
                                RowBytes::NulFree
                            };
                            columns.parse_row_into(&record, line, round, bytes)
                        }
                        None => columns
                            .parse_row(&record, line)
                            .map(|round| scratch = Some(round)),
                    }
                };
                match (parsed, &scratch) {
                    (Ok(()), Some(round)) => {
                        rows.accept(round, line).await?;
                        continue;
                    }
                    (Ok(()), None) => unreachable!("a parsed row is kept"),
                    (Err(reject), _) => reject,
                }
            }
            Err(error) if matches!(error.kind(), csv_async::ErrorKind::Io(_)) => {
                return Err(read_failure(error));
            }
            Err(error) => RowError {
                line: error.position().map_or(0, |p| p.line())
                    + u64::from(crlf.load(Ordering::Relaxed))
                    + dropped_lines,
                column: None,
                reason: error.to_string(),
            },
        };
        rows.reject(reject).await?;
    }
    Ok(columns.unknown_columns().to_vec())
}

/// The JSON Lines row source: one object per line, blank lines skipped.
async fn json_lines_rows<S>(
    text: S,
    rows: &mut Rows<'_, impl RecordSink>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut reader = StreamReader::new(Box::pin(text));
    let mut buffer = Vec::with_capacity(1024);
    let mut line = 0_u64;
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .await
            .map_err(io_failure)?;
        if read == 0 {
            return Ok(());
        }
        line += 1;
        let text = buffer.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let row = match std::str::from_utf8(text) {
            Ok(text) => sluice_schema::json::parse_record(text, line),
            Err(_) => Err(RowError {
                line,
                column: None,
                reason: "not valid text".to_owned(),
            }),
        };
        rows.push_at(row, line).await?;
    }
}

/// The JSON array row source: serde walks the array element by element on a blocking thread
/// (the body is never held whole) and hands the parsed elements over in batches.
async fn json_array_rows<S>(
    text: S,
    rows: &mut Rows<'_, impl RecordSink>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let reader = tokio_util::io::SyncIoBridge::new(StreamReader::new(Box::pin(text)));
    let mut walker = BlockingRows::spawn(move |batches| walk_json_array(reader, batches));
    walker.push_into(rows).await?;
    match walker.join().await {
        Ok(result) => result,
        Err(_) => Err(UploadError::BadBody("the JSON reader stopped".to_owned())),
    }
}

fn walk_json_array(reader: impl io::Read, batches: RowBatches) -> Result<(), UploadError> {
    use serde::de::{Deserializer as _, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    struct Elements(RowBatches);

    impl<'de> Visitor<'de> for Elements {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of game-round objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            let mut record = 0_u64;
            while let Some(element) = seq.next_element::<Box<RawValue>>()? {
                record += 1;
                if !self
                    .0
                    .push(sluice_schema::json::parse_record(element.get(), record))
                {
                    // The pipeline stopped; its error is the one reported.
                    return Ok(());
                }
            }
            self.0.finish();
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_reader(io::BufReader::new(reader));
    let walked = deserializer
        .deserialize_seq(Elements(batches))
        .and_then(|()| deserializer.end());
    walked.map_err(|error| match error.io_error_kind() {
        Some(_) => UploadError::BadBody(error.to_string()),
        None => UploadError::BadBody(format!("not a JSON array of objects: {error}")),
    })
}

fn io_failure(error: io::Error) -> UploadError {
    if let Some(long) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<LineTooLong>())
    {
        return UploadError::LineTooLong {
            line: long.line,
            limit: long.limit,
        };
    }
    UploadError::BadBody(error.to_string())
}

fn read_failure(error: csv_async::Error) -> UploadError {
    if let csv_async::ErrorKind::Io(io) = error.kind() {
        let inner = io.get_ref();
        if let Some(long) = inner.and_then(|e| e.downcast_ref::<LineTooLong>()) {
            return UploadError::LineTooLong {
                line: long.line,
                limit: long.limit,
            };
        }
        if let Some(large) = inner.and_then(|e| e.downcast_ref::<HeaderTooLarge>()) {
            return UploadError::HeaderTooLarge { limit: large.limit };
        }
    }
    UploadError::BadBody(error.to_string())
}

/// A failure of the body stream: a compressed body that expands too far is 413, anything else
/// an unreadable body.
fn body_failure<E: std::fmt::Display + 'static>(error: E) -> UploadError {
    let expansion = (&error as &dyn std::any::Any)
        .downcast_ref::<io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<TooMuchExpansion>());
    match expansion {
        Some(expansion) => UploadError::TooMuchExpansion(*expansion),
        None => UploadError::BadBody(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_over_the_limit_as_read_or_as_encoded_is_rejected_and_the_rest_accepted() {
        let header = "created_timestamp,game_instance_id,user_id,game_id,real_amount_bet,\
                      bonus_amount_bet,real_amount_win,bonus_amount_win,game_name,provider\n";
        let row = |id: u32, name: &str| {
            format!(
                "2019-10-22 08:20:42,{id},9ece8c4020f8aed10676cd1c56a41889,24002,2,0,0,0,\
                 {name},Nolimit City\n"
            )
        };
        // A short row is ~90 bytes as read and ~130 encoded (the upload id, the header).
        let body = format!(
            "{header}{}{}{}",
            row(1, "M"),
            row(2, &"x".repeat(200)),
            row(3, "M")
        );
        let limits = |max_record_bytes| Limits {
            max_upload_bytes: u64::MAX,
            max_in_flight: 10,
            max_rejects_listed: 10,
            max_line_bytes: 1 << 20,
            max_record_bytes,
            max_unknown_columns_listed: 10,
            body_idle_timeout: Duration::from_secs(5),
        };
        let stream = || futures::stream::iter([Ok::<_, io::Error>(Bytes::from(body.clone()))]);
        let receipt = ingest(stream(), DiscardSink, limits(200)).await.unwrap();
        assert_eq!((receipt.accepted, receipt.rejected), (2, 1));
        assert_eq!(receipt.rejects[0].line, 3);
        assert!(
            receipt.rejects[0]
                .reason
                .starts_with("record too large: more than 200 bytes"),
            "{}",
            receipt.rejects[0].reason
        );

        let receipt = ingest(stream(), DiscardSink, limits(100)).await.unwrap();
        assert_eq!((receipt.accepted, receipt.rejected), (0, 3));
        let reasons: Vec<&str> = receipt.rejects.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons[0].contains("bytes encoded, more than 100"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("record too large: more than 100 bytes"),
            "{reasons:?}"
        );
        assert_eq!(
            receipt.rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }

    #[tokio::test]
    async fn a_nul_in_a_name_is_refused_after_chunks_without_one_in_either_encoding() {
        let mut options = sluice_testkit::generate::Options::new(2_000);
        options.encoding = sluice_testkit::generate::Encoding::Utf8;
        let text = String::from_utf8(sluice_testkit::generate::export(&options).bytes).unwrap();
        // The last row's provider, far past the first chunks.
        let at = text.rfind(",NetEnt").unwrap() + ",Net".len();
        let text = format!("{}\0{}", &text[..at], &text[at..]);
        let line = text[..at].matches('\n').count() as u64 + 1;
        let utf16: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let limits = Limits {
            max_upload_bytes: u64::MAX,
            max_in_flight: 100,
            max_rejects_listed: 10,
            max_line_bytes: 1 << 20,
            max_record_bytes: 1 << 16,
            max_unknown_columns_listed: 10,
            body_idle_timeout: Duration::from_secs(5),
        };
        for body in [text.into_bytes(), utf16] {
            let pieces: Vec<io::Result<Bytes>> = body
                .chunks(4096)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let receipt = ingest(futures::stream::iter(pieces), DiscardSink, limits)
                .await
                .unwrap();
            assert_eq!((receipt.accepted, receipt.rejected), (1_999, 1));
            let reject = &receipt.rejects[0];
            assert_eq!(
                (reject.line, reject.column, reject.reason.as_str()),
                (line, Some("provider"), "contains a NUL character")
            );
        }
    }
}
