//! The upload pipeline: body bytes → (transcoding) → CSV records → `GameRound` → Avro → Kafka,
//! as one bounded stream. Memory stays flat: a few body chunks, one CSV record, and the window
//! of unacknowledged Kafka deliveries.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
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
use sluice_schema::csv::{HeaderMap, RowError};
use tokio_util::io::StreamReader;

use crate::decode::LineTooLong;
use crate::error::UploadError;
use crate::kafka::DeliveryWindow;

/// Body chunks buffered between the socket and the CSV parser.
const BODY_CHUNKS_BUFFERED: usize = 8;

/// What the producer tells the client once Kafka acknowledged every accepted record.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub upload_id: String,
    pub encoding: &'static str,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub sha256: String,
    pub unknown_columns: Vec<String>,
    /// The first rejected rows, in file order (at most `max_rejects_listed`).
    pub rejects: Vec<RowError>,
}

/// Limits of one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: u64,
    pub max_in_flight: usize,
    pub max_rejects_listed: usize,
    /// Longest physical line, in bytes of UTF-8.
    pub max_line_bytes: usize,
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

/// Streams one uploaded file into `sink` and returns its receipt once the sink has made every
/// record durable. `body` may be `!Send` (an actix multipart field): it is drained here and
/// handed to the parser over a bounded channel.
pub async fn ingest<S, E>(
    body: S,
    sink: impl RecordSink,
    limits: Limits,
) -> Result<Receipt, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let upload_id = uuid::Uuid::new_v4().to_string();
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(BODY_CHUNKS_BUFFERED);
    let encoding = Arc::new(OnceLock::new());
    let (body, parsed) = futures::join!(
        forward_body(body, sender, limits),
        parse_and_produce(receiver, Arc::clone(&encoding), sink, limits, &upload_id),
    );
    let body = body?;
    let parsed = parsed?;
    let receipt = Receipt {
        upload_id,
        encoding: encoding.get().map_or("UTF-8", |e: &&Encoding| e.name()),
        rows_read: parsed.rows_read,
        accepted: parsed.accepted,
        rejected: parsed.rows_read - parsed.accepted,
        bytes: body.bytes,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        sha256: hex::encode(body.sha256),
        unknown_columns: parsed.unknown_columns,
        rejects: parsed.rejects,
    };
    Ok(receipt)
}

struct BodySummary {
    bytes: u64,
    sha256: [u8; 32],
}

/// Drains the request body into the channel, counting and hashing it and enforcing the size
/// limit. Stops early, without error, when the parser has stopped listening.
async fn forward_body<S, E>(
    mut body: S,
    mut sender: mpsc::Sender<io::Result<Bytes>>,
    limits: Limits,
) -> Result<BodySummary, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut bytes = 0_u64;
    let mut hasher = Sha256::new();
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
                if bytes > limits.max_upload_bytes {
                    Some(UploadError::TooLarge {
                        limit: limits.max_upload_bytes,
                    })
                } else {
                    hasher.update(&chunk);
                    if sender.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                    None
                }
            }
            Err(error) => Some(UploadError::BadBody(error.to_string())),
        };
        if let Some(failure) = failure {
            // Stop the parser too; its error is secondary to this one.
            let _ = sender
                .send(Err(io::Error::other(failure.to_string())))
                .await;
            return Err(failure);
        }
    }
    Ok(BodySummary {
        bytes,
        sha256: hasher.finalize().into(),
    })
}

/// A rejected row as kept on the rejects topic (JSON, keyed by upload id).
#[derive(Serialize)]
struct RejectRecord<'a> {
    upload_id: &'a str,
    line: u64,
    column: Option<&'static str>,
    reason: &'a str,
}

struct Parsed {
    rows_read: u64,
    accepted: u64,
    unknown_columns: Vec<String>,
    rejects: Vec<RowError>,
}

async fn parse_and_produce(
    body: mpsc::Receiver<io::Result<Bytes>>,
    encoding: Arc<OnceLock<&'static Encoding>>,
    mut sink: impl RecordSink,
    limits: Limits,
    upload_id: &str,
) -> Result<Parsed, UploadError> {
    let text = crate::decode::to_utf8(body, move |detected| {
        let _ = encoding.set(detected);
    });
    let crlf = Arc::new(AtomicBool::new(false));
    let crlf_seen = Arc::clone(&crlf);
    let text = crate::decode::sniff_crlf(text, move |is_crlf| {
        crlf_seen.store(is_crlf, Ordering::Relaxed)
    });
    let text = crate::decode::limit_line_length(text, limits.max_line_bytes);
    let mut reader = AsyncReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .create_reader(StreamReader::new(Box::pin(text)));
    let header = reader.byte_headers().await.map_err(read_failure)?;
    let columns = HeaderMap::parse(header)?;

    let codec = GameRoundCodec::get();
    let mut record = ByteRecord::new();
    let mut message = Vec::with_capacity(256);
    let mut parsed = Parsed {
        rows_read: 0,
        accepted: 0,
        unknown_columns: columns.unknown_columns().to_vec(),
        rejects: Vec::new(),
    };
    loop {
        let outcome = match reader.read_byte_record(&mut record).await {
            Ok(false) => break,
            Ok(true) => {
                // See `decode::sniff_crlf`: the parser reports CRLF records one line too low.
                let line = record.position().map_or(0, |p| p.line())
                    + u64::from(crlf.load(Ordering::Relaxed));
                columns.parse_row(&record, line)
            }
            Err(error) if matches!(error.kind(), csv_async::ErrorKind::Io(_)) => {
                return Err(read_failure(error));
            }
            Err(error) => Err(RowError {
                line: error.position().map_or(0, |p| p.line())
                    + u64::from(crlf.load(Ordering::Relaxed)),
                column: None,
                reason: error.to_string(),
            }),
        };
        parsed.rows_read += 1;
        match outcome {
            Ok(round) => {
                message.clear();
                codec
                    .encode(&round, upload_id, &mut message)
                    .expect("every GameRound fits its own schema");
                sink.send(round.user_id.as_str(), &message).await?;
                parsed.accepted += 1;
            }
            Err(reject) => {
                let kept = RejectRecord {
                    upload_id,
                    line: reject.line,
                    column: reject.column,
                    reason: &reject.reason,
                };
                let json = serde_json::to_vec(&kept).expect("rejects serialise");
                sink.reject(upload_id, &json).await?;
                if parsed.rejects.len() < limits.max_rejects_listed {
                    parsed.rejects.push(reject);
                }
            }
        }
    }
    sink.finish().await?;
    Ok(parsed)
}

fn read_failure(error: csv_async::Error) -> UploadError {
    if let csv_async::ErrorKind::Io(io) = error.kind() {
        if let Some(long) = io.get_ref().and_then(|e| e.downcast_ref::<LineTooLong>()) {
            return UploadError::LineTooLong {
                line: long.line,
                limit: long.limit,
            };
        }
    }
    UploadError::BadBody(error.to_string())
}
