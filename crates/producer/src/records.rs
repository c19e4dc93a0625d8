//! CSV records bounded in bytes while they stream in, before the CSV reader buffers them.
//!
//! A quoted cell may span lines, so the line limit alone does not bound a record: a 200 MB
//! quoted multi-line cell was buffered whole by the reader (~700 MiB of producer memory) and
//! then refused by Kafka. [`bound_records`] follows the CSV quoting the reader applies
//! (csv-core's: a `"` opens a quoted field only at the start of a field; inside one, `""` is a
//! quote and `"` closes it) and counts the bytes of the record in hand:
//!
//! - a data record over `max_record_bytes` is **cut**: its first `max_record_bytes` are
//!   passed on, closed off (a `"` if a quoted field is open), and the rest is dropped as it
//!   arrives, up to the record's real end, whose line break is passed on. Memory stays at most
//!   one record's limit. The cut is noted in [`CutRecords`], with the line breaks dropped (the
//!   reader did not count them); the row source rejects that record (`record too large`)
//!   instead of parsing it, numbers the rows after it accordingly, and the upload goes on.
//! - the header record (not sent to Kafka) may take up to `max_header_bytes`; a longer one
//!   stops the upload ([`HeaderTooLarge`]).
//! - a physical line over `max_line_bytes` stops the upload ([`LineTooLong`]), as before,
//!   except inside a record already being dropped (nothing of it is kept).
//!
//! Whole records are passed over in bulk: from a record's start, the lines before the next
//! `"` that are short enough for both limits take one `memrchr` per stretch, whatever its
//! number of lines, and a line holding quotes is a whole record if its quotes leave no field
//! open at its end. Only what is left (a record that spans lines or chunks, is near a limit, or
//! is the header) is followed quote by quote and line feed by line feed (`memchr2`). Lines are
//! counted once per chunk (SIMD), and within one only for an error. A chunk with nothing to cut
//! is passed on as it is. (callgrind, 300,000 rows of the bench export: 182 M instructions
//! with every quote and line feed followed, 143 M with records passed over in bulk.)

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::decode::LineTooLong;

/// The byte limits [`bound_records`] applies.
#[derive(Debug, Clone, Copy)]
pub struct RecordBounds {
    /// Longest physical line.
    pub max_line_bytes: usize,
    /// Longest header record (the first record that is not a blank line).
    pub max_header_bytes: usize,
    /// Longest data record, line breaks inside quoted cells included.
    pub max_record_bytes: usize,
}

/// A header record over its limit: the upload stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the header is longer than {limit} bytes")]
pub struct HeaderTooLarge {
    pub limit: usize,
}

/// Where [`bound_records`] cut records: the offset, in the stream it yields, of the first byte
/// after what was kept of each (the record's end for the reader comes after it), and how many
/// line feeds were dropped with its rest.
#[derive(Debug)]
pub struct CutRecords {
    /// The first offset still to be matched, `u64::MAX` when none: read once per row.
    next: AtomicU64,
    /// Every cut still to be matched, in order: (offset, line feeds dropped).
    pending: Mutex<VecDeque<(u64, u64)>>,
}

impl Default for CutRecords {
    fn default() -> CutRecords {
        CutRecords {
            next: AtomicU64::new(u64::MAX),
            pending: Mutex::new(VecDeque::new()),
        }
    }
}

impl CutRecords {
    fn cut(&self, offset: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push_back((offset, 0));
        if pending.len() == 1 {
            self.next.store(offset, Ordering::Release);
        }
    }

    /// The last cut record ended, after `lines` dropped line feeds.
    fn dropped(&self, lines: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = pending.back_mut() {
            last.1 = lines;
        }
    }

    /// Whether the record the reader just read, ending at byte `end` of the stream, is one
    /// that was cut: if so, the line feeds dropped from it (the reader's line numbers after it
    /// are that much too low), and the cut is forgotten (each matches one record).
    #[inline]
    pub fn take_if_cut(&self, end: u64) -> Option<u64> {
        if self.next.load(Ordering::Acquire) >= end {
            return None;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (_, lines) = pending.pop_front()?;
        let next = pending.front().map_or(u64::MAX, |(offset, _)| *offset);
        self.next.store(next, Ordering::Release);
        Some(lines)
    }
}

/// Applies `bounds` to a UTF-8 CSV stream (see the module's documentation). Cut records are
/// noted in `cuts`.
pub fn bound_records<S>(
    inner: S,
    bounds: RecordBounds,
    cuts: Arc<CutRecords>,
) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut scanner = Scanner::new(bounds, cuts);
    inner.map(move |chunk| scanner.scan(chunk?))
}

/// Where the scan is in CSV quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Not in a quoted field.
    Outside,
    /// In a quoted field.
    Inside,
    /// Just after a `"` in a quoted field: it closed the field, unless the next byte is `"`.
    AfterQuote,
}

impl Quoting {
    /// After a `"` that follows the byte `last`.
    #[inline]
    fn after_quote(self, last: u8) -> Quoting {
        match self {
            Quoting::Outside if matches!(last, b',' | b'\n' | b'\r') => Quoting::Inside,
            Quoting::Outside => Quoting::Outside,
            Quoting::Inside => Quoting::AfterQuote,
            Quoting::AfterQuote => Quoting::Inside,
        }
    }

    /// After bytes that are neither quotes nor line feeds: a quote just before closed its field.
    #[inline]
    fn after_ordinary(self) -> Quoting {
        match self {
            Quoting::AfterQuote => Quoting::Outside,
            other => other,
        }
    }
}

/// The line feeds in `bytes`.
fn lines_in(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Whether `line` (a line without its line feed, read from a record's start, whose first `"`
/// is at `first`) leaves a quoted field open at its end, so that the record goes on.
fn ends_in_quotes(line: &[u8], first: usize) -> bool {
    // The quotes of a line are close together (`""` inside a name): a word-at-a-time search
    // inlined here costs less than a call of the SIMD one per quote.
    let quotes = memchr::arch::all::memchr::One::new(b'"');
    let quoting = quotes
        .iter(&line[first..])
        .fold(Quoting::Outside, |quoting, k| {
            let last = (first + k).checked_sub(1).map_or(b'\n', |i| line[i]);
            // A byte before this quote other than the previous quote is an ordinary one.
            let quoting = if last == b'"' {
                quoting
            } else {
                quoting.after_ordinary()
            };
            quoting.after_quote(last)
        });
    quoting == Quoting::Inside
}

struct Scanner {
    bounds: RecordBounds,
    cuts: Arc<CutRecords>,
    /// The physical line the chunk in hand starts on (1-based). Lines within a chunk are
    /// counted only for an error, and once per chunk at its end.
    line: u64,
    /// Bytes of that line so far, without its `\n`.
    line_bytes: usize,
    /// Bytes of the record in hand so far, without its final `\n`.
    record_bytes: usize,
    quote: Quoting,
    /// The byte before the next one (a `"` after `,` or a line break opens a quoted field).
    last: u8,
    /// Still in the header record.
    header: bool,
    /// Dropping the rest of a cut record.
    dropping: bool,
    /// Line feeds dropped from it so far.
    dropped_lines: u64,
    /// Bytes yielded so far.
    yielded: u64,
}

impl Scanner {
    fn new(bounds: RecordBounds, cuts: Arc<CutRecords>) -> Scanner {
        Scanner {
            bounds,
            cuts,
            line: 1,
            line_bytes: 0,
            record_bytes: 0,
            quote: Quoting::Outside,
            last: b'\n',
            header: true,
            dropping: false,
            dropped_lines: 0,
            yielded: 0,
        }
    }

    fn scan(&mut self, chunk: Bytes) -> io::Result<Bytes> {
        let data: &[u8] = &chunk;
        // Built only once something is cut from this chunk; until then it passes as it is.
        let mut out: Option<Vec<u8>> = None;
        // Start of the bytes kept since the last cut (not yet copied into `out`).
        let mut kept_from = 0;
        let mut at = 0;
        // The first `"` at or after `at` once looked for (the chunk's end when there is none).
        let mut next_quote = None;
        while at < data.len() {
            if self.at_record_start() {
                let next = self.skip_whole_records(data, at, &mut next_quote);
                if next > at {
                    at = next;
                    continue;
                }
            }
            if self.dropping {
                let out = out.get_or_insert_with(|| data[..kept_from].to_vec());
                let hit = memchr::memchr2(b'"', b'\n', &data[at..]).map(|k| at + k);
                let end = hit.unwrap_or(data.len());
                self.ordinary(&data[at..end]);
                let Some(i) = hit else { break };
                at = i + 1;
                if data[i] == b'"' {
                    self.quote_mark();
                    continue;
                }
                self.line_bytes = 0;
                if self.quote == Quoting::Inside {
                    self.dropped_lines += 1;
                    self.last = b'\n';
                    continue;
                }
                // The record's end: passed on as it was (`\r\n` or `\n`), so the reader ends
                // the record and counts its lines as it would have.
                if self.last == b'\r' {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.last = b'\n';
                self.quote = Quoting::Outside;
                self.dropping = false;
                self.record_bytes = 0;
                self.cuts.dropped(std::mem::take(&mut self.dropped_lines));
                kept_from = at;
                continue;
            }
            let hit = memchr::memchr2(b'"', b'\n', &data[at..]).map(|k| at + k);
            let end = hit.unwrap_or(data.len());
            let ends_line = hit.is_some_and(|i| data[i] == b'\n');
            // Nothing in the run changes whether a quoted field is open at the hit.
            let ends_record = ends_line && self.quote != Quoting::Inside;
            // This run's bytes, and the hit unless it is the record's final line feed, belong
            // to the record; the hit unless it is a line feed, to the line.
            let run = end - at;
            let to_record = run + usize::from(hit.is_some() && !ends_record);
            let to_line = run + usize::from(hit.is_some() && !ends_line);
            let limit = if self.header {
                self.bounds.max_header_bytes
            } else {
                self.bounds.max_record_bytes
            };
            // The record first: a record cut short is one reject, whatever the line limit
            // would have said of its rest (and however the body is chunked).
            if self.record_bytes + to_record > limit {
                if self.header {
                    let error = self.line_too_long(self.line_bytes + to_line, &data[..at]);
                    return Err(error.unwrap_or_else(|| io::Error::other(HeaderTooLarge { limit })));
                }
                // Cut where the record reaches `limit` (at least one byte of it is kept, so the
                // reader sees a record, not a blank line).
                let keep = (limit - self.record_bytes).min(run);
                if let Some(error) = self.line_too_long(self.line_bytes + keep, &data[..at]) {
                    return Err(error);
                }
                self.ordinary(&data[at..at + keep]);
                at += keep;
                let out = out.get_or_insert_with(Vec::new);
                out.extend_from_slice(&data[kept_from..at]);
                self.cuts.cut(self.yielded + out.len() as u64);
                if self.quote == Quoting::Inside {
                    // Closes the quoted field; the next line break kept then ends the record.
                    out.push(b'"');
                }
                self.dropping = true;
                continue;
            }
            if let Some(error) = self.line_too_long(self.line_bytes + to_line, &data[..at]) {
                return Err(error);
            }
            self.line_bytes += to_line;
            self.record_bytes += to_record;
            self.ordinary(&data[at..end]);
            let Some(i) = hit else { break };
            at = i + 1;
            if data[i] == b'"' {
                self.quote_mark();
                continue;
            }
            self.line_bytes = 0;
            self.last = b'\n';
            if self.quote != Quoting::Inside {
                self.quote = Quoting::Outside;
                if self.record_bytes > 0 {
                    self.header = false;
                }
                self.record_bytes = 0;
            }
        }
        self.line += lines_in(data);
        let out = match out {
            None => chunk,
            Some(mut out) => {
                if !self.dropping {
                    out.extend_from_slice(&data[kept_from..]);
                }
                Bytes::from(out)
            }
        };
        self.yielded += out.len() as u64;
        Ok(out)
    }

    /// A line of `line_bytes` over the limit, after the chunk's bytes `before` it: the error
    /// that stops the stream.
    fn line_too_long(&self, line_bytes: usize, before: &[u8]) -> Option<io::Error> {
        (line_bytes > self.bounds.max_line_bytes).then(|| {
            io::Error::other(LineTooLong {
                line: self.line + lines_in(before),
                limit: self.bounds.max_line_bytes,
            })
        })
    }

    /// Bytes that are neither quotes nor line feeds: after a closing quote, they end it.
    #[inline]
    fn ordinary(&mut self, run: &[u8]) {
        if let Some(&last) = run.last() {
            self.quote = self.quote.after_ordinary();
            self.last = last;
        }
    }

    /// A `"`, once the bytes before it were taken.
    #[inline]
    fn quote_mark(&mut self) {
        self.quote = self.quote.after_quote(self.last);
        self.last = b'"';
    }

    /// At the start of a data record, nothing of it read yet and nothing being dropped: where
    /// [`skip_whole_records`](Self::skip_whole_records) may take over.
    #[inline]
    fn at_record_start(&self) -> bool {
        !self.header
            && !self.dropping
            && self.record_bytes == 0
            && self.line_bytes == 0
            && self.quote == Quoting::Outside
            && self.last == b'\n'
    }

    /// From a record's start at `at`: passes over the whole records that follow, each one line
    /// within both limits (nothing to cut, nothing to refuse), and returns where they end (`at`
    /// when the next record needs [`scan`](Self::scan)'s byte-by-byte rules). `next_quote`
    /// caches the first `"` at or after `at`, or the chunk's end.
    fn skip_whole_records(&self, data: &[u8], at: usize, next_quote: &mut Option<usize>) -> usize {
        let quote = match *next_quote {
            Some(quote) if quote >= at => quote,
            _ => memchr::memchr(b'"', &data[at..]).map_or(data.len(), |k| at + k),
        };
        *next_quote = Some(quote);
        // A line of at most `longest` bytes that is a whole record is within both limits.
        let longest = self.bounds.max_line_bytes.min(self.bounds.max_record_bytes);
        let reach = data.len().min(at.saturating_add(longest).saturating_add(1));
        let plain = &data[at..quote.min(reach)];
        if let Some(last) = memchr::memrchr(b'\n', plain) {
            // Lines without quotes, none longer than `longest`: one record each.
            return at + last + 1;
        }
        // The next line holds a quote (or is long, or goes on in the next chunk).
        if quote >= reach {
            return at;
        }
        match memchr::memchr(b'\n', &data[quote..reach]) {
            Some(k) if !ends_in_quotes(&data[at..quote + k], quote - at) => quote + k + 1,
            _ => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csv_async::{AsyncReaderBuilder, ByteRecord};
    use tokio_util::io::StreamReader;

    const BOUNDS: RecordBounds = RecordBounds {
        max_line_bytes: 1_000,
        max_header_bytes: 40,
        max_record_bytes: 30,
    };

    /// What the CSV reader makes of `input` behind [`bound_records`], fed in `chunk`-byte
    /// pieces: each record as text with its line, `None` for a record that was cut.
    async fn read(
        input: &[u8],
        chunk: usize,
        bounds: RecordBounds,
    ) -> io::Result<Vec<(u64, Option<String>)>> {
        let pieces: Vec<io::Result<Bytes>> = input
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let cuts = Arc::new(CutRecords::default());
        let bounded = bound_records(futures::stream::iter(pieces), bounds, Arc::clone(&cuts));
        let mut reader = AsyncReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .create_reader(StreamReader::new(Box::pin(bounded)));
        let mut record = ByteRecord::new();
        let mut records = Vec::new();
        let mut dropped_lines = 0;
        loop {
            match reader.read_byte_record(&mut record).await {
                Ok(false) => return Ok(records),
                Ok(true) => {
                    let line = record.position().unwrap().line() + dropped_lines;
                    let cut = cuts.take_if_cut(reader.position().byte());
                    dropped_lines += cut.unwrap_or(0);
                    let text = cut.is_none().then(|| {
                        let fields: Vec<String> = record
                            .iter()
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect();
                        fields.join("|")
                    });
                    records.push((line, text));
                }
                Err(error) => {
                    let csv_async::ErrorKind::Io(io) = error.into_kind() else {
                        panic!("not an I/O error");
                    };
                    return Err(io);
                }
            }
        }
    }

    #[tokio::test]
    async fn records_within_the_limits_pass_untouched_whatever_the_chunking() {
        let input = b"h1,h2\na,\"b \"\"quoted\"\"\"\n\"multi\nline\",x\nab\"c,\"d\"\r\nlast,1";
        let expected = vec![
            (1, Some("h1|h2".to_owned())),
            (2, Some("a|b \"quoted\"".to_owned())),
            (3, Some("multi\nline|x".to_owned())),
            (5, Some("ab\"c|d".to_owned())),
            // One too low after a CRLF record, as the reader has it (see `decode::sniff_crlf`).
            (5, Some("last|1".to_owned())),
        ];
        for chunk in [1, 2, 3, 7, 1024] {
            assert_eq!(
                read(input, chunk, BOUNDS).await.unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_record_over_the_limit_is_cut_and_the_next_ones_keep_their_lines() {
        let long_quoted = format!(
            "\"{}\n{}\n{}\"",
            "x".repeat(20),
            "y".repeat(20),
            "z".repeat(20)
        );
        let long_plain = "p".repeat(50);
        let input = format!(
            "header,two\nok,1\n2,{long_quoted}\nok,3\n{long_plain},4\nok,5\n\"a \"\"b\"\"\",{}\nok,6",
            "q".repeat(40)
        );
        let expected = vec![
            (1, Some("header|two".to_owned())),
            (2, Some("ok|1".to_owned())),
            (3, None),
            (6, Some("ok|3".to_owned())),
            (7, None),
            (8, Some("ok|5".to_owned())),
            (9, None),
            (10, Some("ok|6".to_owned())),
        ];
        for chunk in [1, 2, 5, 13, 4096] {
            assert_eq!(
                read(input.as_bytes(), chunk, BOUNDS).await.unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
        // The same with CRLF line ends: the reader's lines (one too low after a CRLF record,
        // see `decode::sniff_crlf`) are those of the file without the cut.
        let crlf = input.replace('\n', "\r\n");
        let uncut = RecordBounds {
            max_record_bytes: 1_000,
            ..BOUNDS
        };
        let lines = |records: Vec<(u64, Option<String>)>| -> Vec<u64> {
            records.into_iter().map(|(line, _)| line).collect()
        };
        let expected_lines = lines(read(crlf.as_bytes(), 4096, uncut).await.unwrap());
        for chunk in [1, 3, 4096] {
            let records = read(crlf.as_bytes(), chunk, BOUNDS).await.unwrap();
            assert_eq!(records.iter().filter(|(_, r)| r.is_none()).count(), 3);
            assert_eq!(lines(records), expected_lines, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn a_record_over_both_limits_is_cut_whatever_the_chunking() {
        // Its one line is over the line limit too, in a single chunk or in many.
        let input = format!("h\nok\n{}\nok\n", "l".repeat(3_000));
        for chunk in [1, 100, 4096] {
            let records = read(input.as_bytes(), chunk, BOUNDS).await.unwrap();
            assert_eq!(
                records,
                [
                    (1, Some("h".to_owned())),
                    (2, Some("ok".to_owned())),
                    (3, None),
                    (4, Some("ok".to_owned()))
                ],
                "chunk {chunk}"
            );
        }
    }

    /// A CSV text of `records` records mixing what the scanner tells apart: plain cells, quoted
    /// cells with `""` and line breaks inside, a `"` inside an unquoted cell, empty cells,
    /// blank lines, cells long enough for [`BOUNDS`]' record limit, `\n` and `\r\n` ends.
    fn mixed_csv(records: usize, mut seed: u64) -> Vec<u8> {
        let mut next = move |n: u64| {
            // xorshift64: the same text on every run.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let long = "l".repeat(25);
        let long_quoted = format!("\"{}\n{}\"", "q".repeat(12), "q".repeat(12));
        let mut text = b"h1,h2,h3\n".to_vec();
        for _ in 0..records {
            for field in 0..3 {
                if field > 0 {
                    text.push(b',');
                }
                let cell: &[u8] = match next(10) {
                    0 => b"\"a \"\"quoted\"\" cell\"",
                    1 => b"\"two\nlines\"",
                    2 => b"ab\"c",
                    3 => b"",
                    4 => b"\"\"",
                    5 => long.as_bytes(),
                    6 => long_quoted.as_bytes(),
                    _ => b"plain",
                };
                text.extend_from_slice(cell);
            }
            let end: &[u8] = match next(5) {
                0 => b"\r\n",
                1 => b"\n\n",
                _ => b"\n",
            };
            text.extend_from_slice(end);
        }
        text
    }

    #[tokio::test]
    async fn whole_records_passed_over_in_bulk_read_as_one_byte_at_a_time() {
        // Fed one byte at a time, every record is followed byte by byte; in larger chunks,
        // most are passed over whole. Records, cuts, line numbers and errors must agree.
        let generous = RecordBounds {
            max_line_bytes: 1_000,
            max_header_bytes: 1_000,
            max_record_bytes: 1_000,
        };
        let short_lines = RecordBounds {
            max_line_bytes: 60,
            ..generous
        };
        for seed in [1, 2, 3] {
            let input = mixed_csv(300, seed);
            for bounds in [BOUNDS, generous, short_lines] {
                let reference = read(&input, 1, bounds).await.map_err(|e| e.to_string());
                for chunk in [2, 3, 7, 64, 4096, input.len()] {
                    let records = read(&input, chunk, bounds).await.map_err(|e| e.to_string());
                    assert_eq!(records, reference, "seed {seed} {bounds:?} chunk {chunk}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_quoted_record_after_a_long_quote_free_run_keeps_its_line_breaks_and_lines() {
        let mut input = "h,v\n".to_owned();
        for i in 0..500 {
            input.push_str(&format!("ok,{i}\n"));
        }
        input.push_str("\"two\r\nlines\",\"a \"\"b\"\"\"\r\nab\"c,\"d\"\nlast,1\n");
        // Every chunking, the quotes on either side of a boundary somewhere.
        for chunk in [1, 5, 11, 4096, input.len()] {
            let records = read(input.as_bytes(), chunk, BOUNDS).await.unwrap();
            assert_eq!(records.len(), 504, "chunk {chunk}");
            assert_eq!(records[500], (501, Some("ok|499".to_owned())));
            assert_eq!(
                records[501..],
                [
                    (502, Some("two\r\nlines|a \"b\"".to_owned())),
                    // One too low after a CRLF record, as the reader has it.
                    (503, Some("ab\"c|d".to_owned())),
                    (505, Some("last|1".to_owned())),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_record_over_the_limit_among_quote_free_ones_is_still_cut() {
        let mut input = "h,v\n".to_owned();
        for i in 0..200 {
            input.push_str(&format!("ok,{i}\n"));
        }
        input.push_str(&format!("{},x\nok,again\n", "p".repeat(31)));
        for chunk in [7, input.len()] {
            let records = read(input.as_bytes(), chunk, BOUNDS).await.unwrap();
            assert_eq!(
                records[200..],
                [
                    (201, Some("ok|199".to_owned())),
                    (202, None),
                    (203, Some("ok|again".to_owned())),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_header_or_a_line_over_its_limit_stops_the_stream() {
        let header = format!("\"{}\n{}\",b\nok,1\n", "h".repeat(30), "h".repeat(30));
        for chunk in [1, 4096] {
            let error = read(header.as_bytes(), chunk, BOUNDS).await.unwrap_err();
            let inner = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<HeaderTooLarge>());
            assert_eq!(inner, Some(&HeaderTooLarge { limit: 40 }), "chunk {chunk}");
        }
        let bounds = RecordBounds {
            max_line_bytes: 10,
            max_header_bytes: 1_000,
            max_record_bytes: 1_000,
        };
        let input = b"a,b\n\"quoted\nshort\nand then far too long\",1\n";
        for chunk in [1, 4096] {
            let error = read(input, chunk, bounds).await.unwrap_err();
            let inner = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<LineTooLong>());
            assert_eq!(
                inner,
                Some(&LineTooLong { line: 4, limit: 10 }),
                "chunk {chunk}"
            );
        }
    }
}
