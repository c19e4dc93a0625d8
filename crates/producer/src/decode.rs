//! Text encoding of uploads: the byte-order mark decides. UTF-16 LE/BE (the real export) is
//! transcoded to UTF-8 chunk by chunk; UTF-8, with or without a BOM, passes through untouched.
//!
//! Transcoding uses `encoding_rs::mem`, whose UTF-16 → UTF-8 conversion has a fast path for
//! runs of ASCII (nearly all of an export) that its byte-stream `Decoder` lacks. What a chunk
//! boundary splits, an odd byte or the first half of a surrogate pair, waits for the next chunk;
//! malformed input (a lone surrogate, an odd last byte) becomes a byte that is not UTF-8
//! ([`MALFORMED`]) exactly where the `Decoder` would put U+FFFD (tested), so its row is refused
//! like invalid UTF-8 in a UTF-8 upload.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use encoding_rs::{Encoding, UTF_16BE, UTF_8};
use futures::{Stream, StreamExt};

/// Turns a byte stream in any supported encoding into a UTF-8 byte stream, in constant memory.
/// Returns the detected encoding's name through `on_detect` once the BOM has been seen.
pub fn to_utf8<S>(
    inner: S,
    on_detect: impl FnMut(&'static Encoding),
) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    enum State {
        Sniffing(Vec<u8>),
        PassThrough,
        Decoding(Utf16),
        Done,
    }

    futures::stream::unfold(
        (inner, State::Sniffing(Vec::new()), on_detect),
        |(mut inner, mut state, mut detect)| async move {
            loop {
                match state {
                    State::Done => return None,
                    State::PassThrough => {
                        let chunk = inner.next().await?;
                        return Some((chunk, (inner, State::PassThrough, detect)));
                    }
                    State::Sniffing(mut head) => {
                        let chunk = match inner.next().await {
                            Some(Ok(chunk)) => Some(chunk),
                            Some(Err(error)) => {
                                return Some((Err(error), (inner, State::Done, detect)))
                            }
                            None => None,
                        };
                        let finished = chunk.is_none();
                        if let Some(chunk) = chunk {
                            head.extend_from_slice(&chunk);
                        }
                        if head.len() < 3 && !finished {
                            state = State::Sniffing(head);
                            continue;
                        }
                        let (encoding, bom_length) = Encoding::for_bom(&head).unwrap_or((UTF_8, 0));
                        detect(encoding);
                        let rest = Bytes::from(head).slice(bom_length..);
                        if encoding == UTF_8 {
                            let next = if finished {
                                State::Done
                            } else {
                                State::PassThrough
                            };
                            return Some((Ok(rest), (inner, next, detect)));
                        }
                        let mut decoder = Utf16::new(encoding == UTF_16BE);
                        let out = decoder.transcode(&rest, finished);
                        let next = if finished {
                            State::Done
                        } else {
                            State::Decoding(decoder)
                        };
                        return Some((Ok(out), (inner, next, detect)));
                    }
                    State::Decoding(mut decoder) => match inner.next().await {
                        Some(Ok(chunk)) => {
                            let out = decoder.transcode(&chunk, false);
                            return Some((Ok(out), (inner, State::Decoding(decoder), detect)));
                        }
                        Some(Err(error)) => {
                            return Some((Err(error), (inner, State::Done, detect)))
                        }
                        None => {
                            let out = decoder.transcode(&[], true);
                            return Some((Ok(out), (inner, State::Done, detect)));
                        }
                    },
                }
            }
        },
    )
}

/// A body compressed with gzip or zstd, recognised by its magic bytes (`1f 8b`, `28 b5 2f fd`)
/// whatever the part's name or type says, is decompressed on the fly; any other body passes
/// through. Everything after (limits, hashing, the receipt's `bytes` and `sha256`) sees the
/// decompressed content, so a file uploaded compressed and uncompressed is the same upload,
/// and `SLUICE_PRODUCER_MAX_UPLOAD_BYTES` bounds it like any body. What a compressed body
/// expands to is bounded besides by `limits` (a decompression bomb fails with
/// [`TooMuchExpansion`] as soon as it crosses them, not after its CPU was spent). The first
/// piece is awaited inside the stream, so the body's idle timeout covers it.
pub fn decompress<S, E>(body: S, limits: ExpansionLimits) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + 'static,
    E: std::fmt::Display,
{
    // Fused: a body that ended (shorter than a magic number) is never polled again; an actix
    // multipart field panics if it is.
    let body = body
        .map(|piece| piece.map_err(|e| io::Error::other(e.to_string())))
        .fuse();
    futures::stream::once(sniff_compression(body, limits)).flatten()
}

/// How far a compressed body may expand.
#[derive(Debug, Clone, Copy)]
pub struct ExpansionLimits {
    /// Decompressed bytes per compressed byte read, at most (once past
    /// [`EXPANSION_RATIO_GRACE_BYTES`]).
    pub max_ratio: u64,
    /// Decompressed bytes, at most.
    pub max_bytes: u64,
}

/// Output a compressed body may always reach, whatever its ratio: a small file of very
/// repetitive rows is not a bomb.
pub const EXPANSION_RATIO_GRACE_BYTES: u64 = 16 << 20;

/// A compressed body that expands past its [`ExpansionLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooMuchExpansion {
    #[error(
        "the compressed upload expands to more than {limit} bytes \
         (SLUICE_PRODUCER_MAX_DECOMPRESSED_BYTES)"
    )]
    Bytes { limit: u64 },
    #[error(
        "the compressed upload expands more than {ratio} times its size \
         (SLUICE_PRODUCER_MAX_DECOMPRESSION_RATIO)"
    )]
    Ratio { ratio: u64 },
}

impl ExpansionLimits {
    /// Whether `decompressed` bytes out of `compressed` bytes read are within the limits.
    fn check(&self, compressed: u64, decompressed: u64) -> Result<(), TooMuchExpansion> {
        if decompressed > self.max_bytes {
            return Err(TooMuchExpansion::Bytes {
                limit: self.max_bytes,
            });
        }
        if decompressed > EXPANSION_RATIO_GRACE_BYTES
            && decompressed > compressed.saturating_mul(self.max_ratio)
        {
            return Err(TooMuchExpansion::Ratio {
                ratio: self.max_ratio,
            });
        }
        Ok(())
    }
}

/// The decompressor's output, failing with [`TooMuchExpansion`] at the first piece past
/// `limits`; `compressed` counts the bytes the decompressor has read.
fn bounded_expansion<S>(
    decompressed: S,
    compressed: Arc<AtomicU64>,
    limits: ExpansionLimits,
) -> BodyStream
where
    S: Stream<Item = io::Result<Bytes>> + 'static,
{
    let mut out = 0_u64;
    let checked = decompressed.map(move |piece| {
        let piece = piece?;
        out += piece.len() as u64;
        limits
            .check(compressed.load(Ordering::Relaxed), out)
            .map_err(io::Error::other)?;
        Ok(piece)
    });
    // Nothing after the first failure.
    Box::pin(checked.scan(false, |failed, piece| {
        let item = (!*failed).then(|| {
            *failed = piece.is_err();
            piece
        });
        futures::future::ready(item)
    }))
}

/// A decompressor's output pieces.
const DECOMPRESSED_PIECE: usize = 256 * 1024;

type BodyStream = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>>>>;

#[cfg(test)]
mod expansion_tests {
    use super::*;

    #[test]
    fn the_ratio_counts_only_past_the_grace_and_the_size_always() {
        let limits = ExpansionLimits {
            max_ratio: 100,
            max_bytes: 4 << 30,
        };
        let grace = EXPANSION_RATIO_GRACE_BYTES;
        assert_eq!(limits.check(1, grace), Ok(()));
        assert_eq!(
            limits.check(1, grace + 1),
            Err(TooMuchExpansion::Ratio { ratio: 100 })
        );
        assert_eq!(limits.check(grace, 100 * grace), Ok(()));
        assert_eq!(
            limits.check(grace, 100 * grace + 1),
            Err(TooMuchExpansion::Ratio { ratio: 100 })
        );
        assert_eq!(
            limits.check(1 << 30, (4 << 30) + 1),
            Err(TooMuchExpansion::Bytes { limit: 4 << 30 })
        );
    }

    #[tokio::test]
    async fn a_compressed_body_past_its_size_limit_fails_with_the_reason() {
        use async_compression::tokio::bufread::GzipEncoder;
        use tokio::io::AsyncReadExt;
        let text = b"a,b\n1,2\n".repeat(200_000);
        let mut gzip = Vec::new();
        GzipEncoder::new(&text[..])
            .read_to_end(&mut gzip)
            .await
            .unwrap();
        let body = |limits| {
            let pieces: Vec<Result<Bytes, io::Error>> = gzip
                .chunks(1000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            decompress(futures::stream::iter(pieces), limits)
        };
        let generous = ExpansionLimits {
            max_ratio: 1_000,
            max_bytes: 1 << 30,
        };
        let whole: Vec<io::Result<Bytes>> = body(generous).collect().await;
        let whole: Vec<Bytes> = whole.into_iter().map(Result::unwrap).collect();
        assert_eq!(whole.concat(), text);

        let small = ExpansionLimits {
            max_ratio: 1_000,
            max_bytes: 1 << 20,
        };
        let pieces: Vec<io::Result<Bytes>> = body(small).collect().await;
        let error = pieces.last().unwrap().as_ref().unwrap_err();
        let inner = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<TooMuchExpansion>());
        assert_eq!(inner, Some(&TooMuchExpansion::Bytes { limit: 1 << 20 }));
        let delivered: usize = pieces.iter().flatten().map(Bytes::len).sum();
        assert!(delivered <= 1 << 20, "{delivered} bytes before the error");
    }
}

async fn sniff_compression<S>(mut body: S, limits: ExpansionLimits) -> BodyStream
where
    S: Stream<Item = io::Result<Bytes>> + Unpin + 'static,
{
    use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
    use futures::stream;
    use tokio_util::io::{ReaderStream, StreamReader};

    let mut head = Vec::new();
    let mut seen = 0;
    while seen < 4 {
        match body.next().await {
            Some(Ok(piece)) => {
                seen += piece.len();
                head.push(piece);
            }
            Some(Err(error)) => {
                let pieces = stream::iter(head.into_iter().map(Ok));
                return Box::pin(pieces.chain(stream::once(async { Err(error) })));
            }
            None => break,
        }
    }
    let magic: Vec<u8> = head
        .iter()
        .flat_map(|p| p.iter().copied())
        .take(4)
        .collect();
    let whole = stream::iter(head.into_iter().map(Ok)).chain(body);
    let gzip = match magic.as_slice() {
        [0x1f, 0x8b, ..] => true,
        [0x28, 0xb5, 0x2f, 0xfd] => false,
        _ => return Box::pin(whole),
    };
    let compressed = Arc::new(AtomicU64::new(0));
    let counted = {
        let compressed = Arc::clone(&compressed);
        StreamReader::new(whole.inspect(move |piece| {
            if let Ok(piece) = piece {
                compressed.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
        }))
    };
    let decompressed: BodyStream = if gzip {
        let mut decoder = GzipDecoder::new(counted);
        decoder.multiple_members(true);
        Box::pin(ReaderStream::with_capacity(decoder, DECOMPRESSED_PIECE))
    } else {
        let mut decoder = ZstdDecoder::new(counted);
        decoder.multiple_members(true);
        Box::pin(ReaderStream::with_capacity(decoder, DECOMPRESSED_PIECE))
    };
    bounded_expansion(decompressed, compressed, limits)
}

/// Watches a UTF-8 stream for its first line break and reports whether it is `\r\n`.
///
/// The CSV parser (rust-csv, BurntSushi/rust-csv#395) reports a record's line one too low when
/// the previous record ended in `\r\n`; knowing the file's line ending lets us correct it.
pub fn sniff_crlf<S>(
    inner: S,
    on_detect: impl FnOnce(bool),
) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut on_detect = Some(on_detect);
    let mut previous_last_byte = None;
    inner.inspect(move |chunk| {
        let (Some(_), Ok(chunk)) = (&on_detect, chunk) else {
            return;
        };
        if let Some(index) = chunk.iter().position(|b| *b == b'\n') {
            let before = if index == 0 {
                previous_last_byte
            } else {
                Some(chunk[index - 1])
            };
            if let Some(detect) = on_detect.take() {
                detect(before == Some(b'\r'));
            }
        }
        previous_last_byte = chunk.last().copied().or(previous_last_byte);
    })
}

/// Watches a UTF-8 stream for a NUL character and reports the first one before the chunk
/// holding it is passed on: until then, no row read from the stream holds one, and the rows
/// need not be searched (see [`RowBytes`](sluice_schema::csv::RowBytes)). One SIMD search per
/// chunk, none after the first NUL.
pub fn sniff_nul<S>(inner: S, on_found: impl FnOnce()) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut on_found = Some(on_found);
    inner.inspect(move |chunk| {
        let Ok(chunk) = chunk else { return };
        if on_found.is_some() && memchr::memchr(0, chunk).is_some() {
            if let Some(found) = on_found.take() {
                found();
            }
        }
    })
}

/// A physical line longer than the limit: the upload stops here rather than buffer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is longer than {limit} bytes")]
pub struct LineTooLong {
    pub line: u64,
    pub limit: usize,
}

/// Fails the stream with [`LineTooLong`] as soon as a line grows past `max_line_bytes`, so the
/// CSV parser never buffers an unbounded record.
pub fn limit_line_length<S>(
    inner: S,
    max_line_bytes: usize,
) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut line = 1_u64;
    // Bytes of the current line seen so far, without its `\n`.
    let mut current = 0_usize;
    inner.map(move |chunk| {
        let chunk = chunk?;
        let too_long = |line| {
            io::Error::other(LineTooLong {
                line,
                limit: max_line_bytes,
            })
        };
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &chunk) {
            if current + (end - start) > max_line_bytes {
                return Err(too_long(line));
            }
            line += 1;
            current = 0;
            start = end + 1;
        }
        current += chunk.len() - start;
        if current > max_line_bytes {
            return Err(too_long(line));
        }
        Ok(chunk)
    })
}

/// A UTF-16 stream (either byte order, BOM already removed) being turned into UTF-8.
struct Utf16 {
    big_endian: bool,
    /// The first byte of a code unit the last chunk split.
    odd_byte: Option<u8>,
    /// A high surrogate that ended the last chunk: its low half may start the next one.
    high_surrogate: Option<u16>,
    /// The code units of the chunk in hand (reused).
    units: Vec<u16>,
    /// Conversion output, three bytes per unit at worst (reused; zeroed only when it grows).
    utf8: Vec<u8>,
}

impl Utf16 {
    fn new(big_endian: bool) -> Utf16 {
        Utf16 {
            big_endian,
            odd_byte: None,
            high_surrogate: None,
            units: Vec::new(),
            utf8: Vec::new(),
        }
    }

    fn unit(big_endian: bool, pair: [u8; 2]) -> u16 {
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    }

    /// Converts one chunk (and what the previous one left), keeping back what this one split.
    /// `last` flushes: a dangling byte or surrogate becomes [`MALFORMED`].
    fn transcode(&mut self, chunk: &[u8], last: bool) -> Bytes {
        self.units.clear();
        self.units.extend(self.high_surrogate.take());
        let mut rest = chunk;
        if let (Some(first), Some((second, after))) = (self.odd_byte, rest.split_first()) {
            self.units
                .push(Utf16::unit(self.big_endian, [first, *second]));
            self.odd_byte = None;
            rest = after;
        }
        let pairs = rest.chunks_exact(2);
        if let [odd] = pairs.remainder() {
            self.odd_byte = Some(*odd);
        }
        // Sized first, then filled by a plain loop over pairs, which the compiler vectorises
        // (a byte shuffle); `extend` with a mapped iterator goes unit by unit.
        let start = self.units.len();
        self.units.resize(start + pairs.len(), 0);
        let big_endian = self.big_endian;
        for (unit, pair) in self.units[start..].iter_mut().zip(pairs) {
            *unit = Utf16::unit(big_endian, [pair[0], pair[1]]);
        }
        let ends_high = self
            .units
            .last()
            .is_some_and(|unit| (0xD800..0xDC00).contains(unit));
        if ends_high && !last {
            self.high_surrogate = self.units.pop();
        } else if ends_high && self.odd_byte.is_some() {
            // A high surrogate and half of the next unit end the stream: one malformed
            // sequence, one marker (added below), as the Decoder has one U+FFFD.
            self.units.pop();
        }
        let needed = self.units.len() * 3;
        if self.utf8.len() < needed {
            self.utf8.resize(needed, 0);
        }
        let mut written = encoding_rs::mem::convert_utf16_to_utf8(&self.units, &mut self.utf8);
        // A lone surrogate comes out as U+FFFD: only a chunk holding one (nearly never) is
        // converted again, marking what is malformed. Searching the output is ~free (SIMD).
        if holds_replacement(&self.utf8[..written]) {
            written = convert_marking_malformed(&self.units, &mut self.utf8);
        }
        let mut out = Vec::with_capacity(written + 1);
        out.extend_from_slice(&self.utf8[..written]);
        if last && self.odd_byte.take().is_some() {
            out.push(MALFORMED);
        }
        Bytes::from(out)
    }
}

/// Whether `utf8` holds U+FFFD (`EF BF BD`). Its first byte only starts U+F000–U+FFFF, rare in
/// any text: one `memchr` for it, each hit compared, costs half of a `memmem` search for the
/// three bytes (callgrind: ~7 M against ~21 M instructions over the 300,000-row bench export).
fn holds_replacement(utf8: &[u8]) -> bool {
    const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
    memchr::memchr_iter(REPLACEMENT[0], utf8).any(|i| utf8[i..].starts_with(REPLACEMENT))
}

/// What a malformed sequence of UTF-16 (a lone surrogate, an odd last byte) becomes: a byte
/// that is never valid UTF-8, where the `Decoder` would put U+FFFD. The row holding it is then
/// refused as "not valid text" naming its column, exactly like invalid UTF-8 in a UTF-8 upload:
/// one rule for both encodings, and nothing is silently replaced.
pub const MALFORMED: u8 = 0xFF;

/// `convert_utf16_to_utf8` (into `utf8`, sized three bytes per unit), with [`MALFORMED`] for
/// each lone surrogate instead of U+FFFD. Well-formed input (nearly always) takes one check and
/// one conversion.
fn convert_marking_malformed(units: &[u16], utf8: &mut [u8]) -> usize {
    use encoding_rs::mem::{convert_utf16_to_utf8, utf16_valid_up_to};
    let mut read = 0;
    let mut written = 0;
    loop {
        let valid = utf16_valid_up_to(&units[read..]);
        written += convert_utf16_to_utf8(&units[read..read + valid], &mut utf8[written..]);
        read += valid;
        if read == units.len() {
            return written;
        }
        // A lone surrogate: one unit, one marker.
        utf8[written] = MALFORMED;
        written += 1;
        read += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode_in_chunks(input: &[u8], chunk_size: usize) -> (String, &'static str) {
        let chunks: Vec<io::Result<Bytes>> = input
            .chunks(chunk_size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut name = "";
        let out: Vec<Bytes> = to_utf8(futures::stream::iter(chunks), |e| name = e.name())
            .map(|r| r.unwrap())
            .collect()
            .await;
        (String::from_utf8(out.concat()).unwrap(), name)
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut bytes = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for unit in text.encode_utf16() {
            let pair = if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            };
            bytes.extend_from_slice(&pair);
        }
        bytes
    }

    const TEXT: &str = "a,b\r\nPlay'n GO,\"Cash, Cash\" €😀\r\n";

    async fn decode_bytes_in_chunks(input: &[u8], chunk_size: usize) -> Vec<u8> {
        let chunks: Vec<io::Result<Bytes>> = input
            .chunks(chunk_size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let out: Vec<Bytes> = to_utf8(futures::stream::iter(chunks), |_| {})
            .map(|r| r.unwrap())
            .collect()
            .await;
        out.concat()
    }

    #[tokio::test]
    async fn malformed_utf16_is_marked_invalid_where_the_decoder_would_substitute_whatever_the_chunking(
    ) {
        // Lone and reversed surrogates, a surrogate at the very end, an odd trailing byte: the
        // chunked transcoder must agree with the byte-stream Decoder reading the whole input,
        // except that each U+FFFD it would make up is a byte that is not UTF-8 (so the row is
        // refused, not silently changed).
        let units: [&[u16]; 6] = [
            &[0x61, 0xD83D, 0xDE00, 0x62],
            &[0x61, 0xD83D, 0x62, 0xDE00, 0x63],
            &[0xDE00, 0xD83D],
            &[0x61, 0xD83D],
            &[0xD83D, 0xD83D, 0xDE00],
            &[0x20AC, 0x0, 0xFFFF],
        ];
        for sample in units {
            for big_endian in [true, false] {
                for odd_tail in [false, true] {
                    let mut input = Vec::new();
                    for unit in sample {
                        let pair = if big_endian {
                            unit.to_be_bytes()
                        } else {
                            unit.to_le_bytes()
                        };
                        input.extend_from_slice(&pair);
                    }
                    if odd_tail {
                        input.push(0x41);
                    }
                    let encoding = if big_endian {
                        UTF_16BE
                    } else {
                        encoding_rs::UTF_16LE
                    };
                    let (expected, _) = encoding.decode_without_bom_handling(&input);
                    let mut with_bom = if big_endian {
                        vec![0xFE, 0xFF]
                    } else {
                        vec![0xFF, 0xFE]
                    };
                    with_bom.extend_from_slice(&input);
                    let malformed = expected.contains('\u{FFFD}') && !sample.contains(&0xFFFD);
                    for chunk_size in [1, 2, 3, 5, 64] {
                        let bytes = decode_bytes_in_chunks(&with_bom, chunk_size).await;
                        let context = format!(
                            "{sample:x?} big endian {big_endian} odd {odd_tail} chunk {chunk_size}"
                        );
                        assert_eq!(std::str::from_utf8(&bytes).is_err(), malformed, "{context}");
                        let marked = bytes.iter().filter(|b| **b == MALFORMED).count();
                        assert_eq!(marked, expected.matches('\u{FFFD}').count(), "{context}");
                        assert_eq!(String::from_utf8_lossy(&bytes), expected, "{context}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn a_real_replacement_character_in_utf16_stays_valid_text() {
        let text = "a,b\r\nPlay\u{FFFD}n GO,x\r\n";
        for big_endian in [true, false] {
            for chunk_size in [1, 3, 1024] {
                let (decoded, _) = decode_in_chunks(&utf16(text, big_endian), chunk_size).await;
                assert_eq!(decoded, text, "chunk size {chunk_size}");
            }
        }
    }

    #[tokio::test]
    async fn utf16_with_either_bom_becomes_utf8_whatever_the_chunking() {
        for big_endian in [true, false] {
            let input = utf16(TEXT, big_endian);
            for chunk_size in [1, 2, 3, 5, 7, 1024] {
                let (text, name) = decode_in_chunks(&input, chunk_size).await;
                assert_eq!(text, TEXT, "chunk size {chunk_size}");
                assert_eq!(name, if big_endian { "UTF-16BE" } else { "UTF-16LE" });
            }
        }
    }

    async fn crlf_seen_in_chunks(input: &'static [u8], chunk_size: usize) -> Option<bool> {
        let chunks: Vec<io::Result<Bytes>> = input
            .chunks(chunk_size)
            .map(|c| Ok(Bytes::from_static(c)))
            .collect();
        let mut seen = None;
        sniff_crlf(futures::stream::iter(chunks), |crlf| seen = Some(crlf))
            .for_each(|_| async {})
            .await;
        seen
    }

    #[tokio::test]
    async fn line_endings_are_sniffed_from_the_first_break_whatever_the_chunking() {
        for chunk_size in [1, 2, 3, 64] {
            assert_eq!(
                crlf_seen_in_chunks(b"a,b\r\n1,2\n", chunk_size).await,
                Some(true)
            );
            assert_eq!(
                crlf_seen_in_chunks(b"a,b\n1,2\r\n", chunk_size).await,
                Some(false)
            );
            assert_eq!(crlf_seen_in_chunks(b"a,b", chunk_size).await, None);
        }
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_fails_the_stream_with_its_number() {
        let input = b"short\nalso short\n0123456789ABC\nnever read\n";
        for chunk_size in [1, 4, 64] {
            let chunks: Vec<io::Result<Bytes>> = input
                .chunks(chunk_size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let results: Vec<io::Result<Bytes>> =
                limit_line_length(futures::stream::iter(chunks), 10)
                    .collect()
                    .await;
            let error = results.into_iter().find_map(|r| r.err()).expect("an error");
            let long = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<LineTooLong>());
            assert_eq!(
                long,
                Some(&LineTooLong { line: 3, limit: 10 }),
                "chunk size {chunk_size}"
            );
        }
        let fine: Vec<io::Result<Bytes>> = limit_line_length(
            futures::stream::iter([Ok(Bytes::from_static(b"0123456789\n0123456789"))]),
            10,
        )
        .collect()
        .await;
        assert!(fine.iter().all(|r| r.is_ok()));
    }

    #[tokio::test]
    async fn utf8_passes_through_and_loses_its_bom() {
        let mut input = vec![0xEF, 0xBB, 0xBF];
        input.extend_from_slice(TEXT.as_bytes());
        for chunk_size in [1, 2, 4, 1024] {
            assert_eq!(
                decode_in_chunks(&input, chunk_size).await,
                (TEXT.into(), "UTF-8")
            );
            assert_eq!(
                decode_in_chunks(TEXT.as_bytes(), chunk_size).await,
                (TEXT.into(), "UTF-8")
            );
        }
        assert_eq!(decode_in_chunks(b"a", 1).await, ("a".into(), "UTF-8"));
        assert_eq!(decode_in_chunks(b"", 1).await, ("".into(), "UTF-8"));
    }
}
