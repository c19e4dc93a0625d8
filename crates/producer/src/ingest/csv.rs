//! The CSV row source: the header by name, then one row per record, numbered by line. Records
//! are bounded while they stream in (`records`): a record cut for its size is rejected, never
//! parsed.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use csv_async::{AsyncReaderBuilder, ByteRecord, Position};
use futures::Stream;
use sluice_schema::csv::{RowBytes, RowError};
use sluice_schema::dataset::plan::{Bound, Plan, Record};
use tokio_util::io::StreamReader;

use super::{Limits, RecordSink, Rows};
use crate::decode::LineTooLong;
use crate::error::UploadError;
use crate::records::{CutRecords, HeaderTooLarge, RecordBounds};

/// The CSV reader's own buffer: larger than csv-async's 8 KiB default, so the parser is fed
/// (and polls the body stream) less often per row.
const CSV_BUFFER_BYTES: usize = 64 * 1024;

/// Reads every record of `text` into `rows`; returns the header's unknown columns.
pub(super) async fn csv_rows<S>(
    text: S,
    plan: &Plan,
    rows: &mut Rows<'_, impl RecordSink>,
    limits: Limits,
) -> Result<Vec<String>, UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Send,
{
    let (text, marks) = marked(text, limits);
    let mut reader = AsyncReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(CSV_BUFFER_BYTES)
        .create_reader(StreamReader::new(Box::pin(text)));
    let header = reader.byte_headers().await.map_err(read_failure)?;
    let mut parser = RecordParser {
        columns: plan.bind_csv(header)?,
        plan,
        upload_id: rows.upload_id(),
        marks,
        scratch: Record::new(),
        dropped_lines: 0,
        max_record_bytes: limits.max_record_bytes,
    };
    let mut record = ByteRecord::new();
    loop {
        let reject = match reader.read_byte_record(&mut record).await {
            Ok(false) => break,
            Ok(true) => match parser.parse(&record, reader.position().byte()) {
                Ok((record, line)) => {
                    rows.accept(record, line).await?;
                    continue;
                }
                Err(reject) => reject,
            },
            Err(error) if matches!(error.kind(), csv_async::ErrorKind::Io(_)) => {
                return Err(read_failure(error));
            }
            Err(error) => RowError {
                line: parser.line(error.position()),
                column: None,
                reason: error.to_string(),
            },
        };
        rows.reject(reject).await?;
    }
    Ok(parser.columns.unknown_columns().to_vec())
}

/// What the text told the parser on its way: its line ends, whether it held a NUL, which
/// records were cut for their size.
struct Marks {
    /// The line ends are CRLF (see `decode::sniff_crlf`).
    crlf: Arc<AtomicBool>,
    /// The text held a NUL somewhere (see `decode::sniff_nul`).
    nul: Arc<AtomicBool>,
    cuts: Arc<CutRecords>,
}

/// `text` looked at for its line ends and NULs, and its lines and records bounded
/// (`records::bound_records`).
fn marked<S>(text: S, limits: Limits) -> (impl Stream<Item = io::Result<Bytes>>, Marks)
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
    (text, Marks { crlf, nul, cuts })
}

/// CSV records into encoded records, by the header's columns.
struct RecordParser<'a> {
    columns: Bound,
    plan: &'a Plan,
    upload_id: &'a str,
    marks: Marks,
    /// One record's buffer, reused row after row: the hot loop allocates nothing per row.
    scratch: Record,
    /// Line feeds of cut records the parser never saw (see `records`).
    dropped_lines: u64,
    max_record_bytes: usize,
}

impl RecordParser<'_> {
    /// The line of the file a record (or a parse error) at the parser's `position` is on.
    #[inline]
    fn line(&self, position: Option<&Position>) -> u64 {
        // See `decode::sniff_crlf`: the parser reports CRLF records one line too low.
        position.map_or(0, |p| p.line())
            + u64::from(self.marks.crlf.load(Ordering::Relaxed))
            + self.dropped_lines
    }

    /// The encoded record of one CSV record ending at byte `end`, with its line, or its reject.
    #[inline]
    fn parse(&mut self, record: &ByteRecord, end: u64) -> Result<(&Record, u64), RowError> {
        let line = self.line(record.position());
        // A record cut short for its size is rejected, never parsed.
        if let Some(lines) = self.marks.cuts.take_if_cut(end) {
            self.dropped_lines += lines;
            return Err(RowError {
                line,
                column: None,
                reason: format!(
                    "record too large: more than {} bytes (SLUICE_PRODUCER_MAX_RECORD_BYTES)",
                    self.max_record_bytes
                ),
            });
        }
        let bytes = if self.marks.nul.load(Ordering::Relaxed) {
            RowBytes::Unchecked
        } else {
            RowBytes::NulFree
        };
        let (plan, upload_id) = (self.plan, self.upload_id);
        self.columns
            .encode_csv(plan, record, line, upload_id, bytes, &mut self.scratch)?;
        Ok((&self.scratch, line))
    }
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
