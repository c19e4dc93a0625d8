//! The ingest pipeline, shared by uploads and the watcher: body bytes → (transcoding) → rows →
//! Avro records (through the dataset's [`Plan`]) → Kafka, as one bounded stream. Memory stays
//! flat: a few body chunks, one record, and the window of unacknowledged Kafka deliveries.
//!
//! A row source turns a body into encoded records or [`RowError`]s with the dataset's plan
//! (`sluice_schema::dataset::plan`): CSV, JSON Lines and JSON arrays ([`TextFormat`]) as the
//! body streams in, Parquet once it is stored ([`Format`], told by the body's first bytes and
//! checked against its name). Everything after that is one format-agnostic
//! [`Rows`]: send each record to the [`RecordSink`], send every reject to the rejects sink,
//! count, keep the first rejects for the [`Receipt`].
//!
//! [`Plan`]: sluice_schema::dataset::plan::Plan
//! [`RowError`]: sluice_schema::csv::RowError
//!
//! # Stages
//! One body is ingested by [`ingest_body`], as its [`IngestOptions`] say:
//! - `body`: the body as it arrives — idle timeout, size limit, byte count, SHA-256 (on a
//!   thread of its own, `hash`) — handed to the parser over a bounded channel;
//! - `text`: transcoding to UTF-8, then the format's row source: `csv` (header by name,
//!   records bounded while they stream in, numbered by line) or `json` (JSON Lines, JSON
//!   arrays); `parquet`: the body stored in a scratch file, then read; `blocking` runs a
//!   synchronous source (a JSON array, Parquet) on a blocking thread and hands its rows over in
//!   batches; `format`: which of them a body is;
//! - `rows`: each row encoded to Avro and sent, or rejected, and counted;
//! - `sink`: where records go ([`RecordSink`]): Kafka, or nowhere;
//! - `receipt`: what the client is told at the end; `progress`: the counts while it runs.

mod blocking;
mod body;
mod csv;
mod format;
mod hash;
mod json;
mod parquet;
mod progress;
mod receipt;
mod rows;
mod sink;
mod text;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use encoding_rs::Encoding;
use futures::channel::mpsc;
use sluice_schema::dataset::plan::{self, Plan};

use crate::error::UploadError;

pub use blocking::{BlockingRows, Row, RowBatches};
pub use body::{peek, Body};
pub use format::{Format, HEAD_BYTES};
pub use parquet::ingest_parquet_file;
pub use progress::{Progress, ProgressSnapshot, PROGRESS_EVERY_ROWS};
pub use receipt::{content_key, dataset_of, Receipt, RowReject, Summary, Tally};
pub use rows::Rows;
pub use sink::{DiscardSink, RecordSink};

/// Body chunks buffered between the socket and the parser (and batches waiting for the hashing
/// thread).
const BODY_CHUNKS_BUFFERED: usize = 8;

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

/// How one body is ingested ([`ingest_body`]).
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: Format,
    /// The dataset's plan: how rows become records.
    pub plan: Arc<Plan>,
    pub limits: Limits,
    /// The upload's id, on every record and reject (see [`new_upload_id`]).
    pub upload_id: String,
    /// The body's SHA-256 (hex), when the caller has it (the watcher hashes a file before
    /// reading it): the body is not hashed again, and the receipt carries this one.
    pub sha256: Option<String>,
    /// Where the counts are published while the upload runs (`GET /uploads/…`).
    pub progress: Option<Arc<Progress>>,
    /// Where a Parquet body is stored while it is read; `None`: the system's temporary
    /// directory.
    pub scratch_dir: Option<PathBuf>,
}

impl IngestOptions {
    /// A body in `format` of the dataset of `plan` within `limits`, under a fresh upload id,
    /// hashed here, its counts followed by no one.
    pub fn new(format: impl Into<Format>, plan: Arc<Plan>, limits: Limits) -> IngestOptions {
        IngestOptions {
            format: format.into(),
            scratch_dir: None,
            plan,
            limits,
            upload_id: new_upload_id(),
            sha256: None,
            progress: None,
        }
    }
}

/// Streams one body into `sink` and returns its receipt once the sink has made every record
/// durable. `body` is drained here and handed to the parser over a bounded channel.
pub async fn ingest_body(
    body: impl Body,
    sink: impl RecordSink,
    options: IngestOptions,
) -> Result<Receipt, UploadError> {
    let format = match options.format {
        Format::Text(text) => text,
        Format::Parquet => {
            let scratch = options
                .scratch_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            return parquet::ingest_parquet_body(body, sink, options, &scratch).await;
        }
    };
    let IngestOptions {
        plan,
        limits,
        upload_id,
        sha256,
        progress,
        ..
    } = options;
    let started = Instant::now();
    let dataset = receipt::dataset_of(&plan);
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(BODY_CHUNKS_BUFFERED);
    let encoding = Arc::new(OnceLock::new());
    let rows = Rows::new(sink, &upload_id, &limits).with_progress(progress.clone());
    // The first failure ends both: a parse error (say, a line over the limit) answers at once
    // rather than after the client sent the rest or went quiet for the idle timeout.
    let (body, (tally, unknown_columns)) = futures::future::try_join(
        body::forward_body(body, sender, limits, sha256.is_none(), progress),
        text::parse_and_produce(format, plan, receiver, Arc::clone(&encoding), rows, limits),
    )
    .await?;
    Ok(tally.into_receipt(Summary {
        upload_id,
        encoding: encoding.get().map_or("UTF-8", |e: &&Encoding| e.name()),
        bytes: body.bytes,
        sha256: sha256.or(body.sha256.map(hex::encode)).unwrap_or_default(),
        unknown_columns,
        dataset,
        started,
    }))
}

/// [`ingest_body`] of a game-round CSV body under a fresh upload id, hashed here.
pub async fn ingest(
    body: impl Body,
    sink: impl RecordSink,
    limits: Limits,
) -> Result<Receipt, UploadError> {
    let options = IngestOptions::new(TextFormat::Csv, plan::game_rounds(), limits);
    ingest_body(body, sink, options).await
}

/// [`ingest_body`] of a game-round body whose SHA-256 the caller already has. Kept for the
/// benchmark (`cargo xtask bench`); new callers set [`IngestOptions::sha256`].
pub async fn ingest_text_prehashed(
    format: TextFormat,
    body: impl Body,
    sink: impl RecordSink,
    limits: Limits,
    sha256: String,
) -> Result<Receipt, UploadError> {
    let options = IngestOptions {
        sha256: Some(sha256),
        ..IngestOptions::new(format, plan::game_rounds(), limits)
    };
    ingest_body(body, sink, options).await
}

/// A fresh upload id (a UUID v4).
pub fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
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
                (
                    reject.line,
                    reject.column.as_deref(),
                    reject.reason.as_str()
                ),
                (line, Some("provider"), "contains a NUL character")
            );
        }
    }
}
