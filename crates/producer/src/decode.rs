//! Text encoding of uploads: the byte-order mark decides. UTF-16 LE/BE (the real export) is
//! transcoded to UTF-8 chunk by chunk; UTF-8, with or without a BOM, passes through untouched.

use std::io;

use bytes::Bytes;
use encoding_rs::{Decoder, Encoding, UTF_8};
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
        Decoding(Decoder),
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
                        let mut decoder = encoding.new_decoder_without_bom_handling();
                        let out = transcode(&mut decoder, &rest, finished);
                        let next = if finished {
                            State::Done
                        } else {
                            State::Decoding(decoder)
                        };
                        return Some((Ok(out), (inner, next, detect)));
                    }
                    State::Decoding(mut decoder) => match inner.next().await {
                        Some(Ok(chunk)) => {
                            let out = transcode(&mut decoder, &chunk, false);
                            return Some((Ok(out), (inner, State::Decoding(decoder), detect)));
                        }
                        Some(Err(error)) => {
                            return Some((Err(error), (inner, State::Done, detect)))
                        }
                        None => {
                            let out = transcode(&mut decoder, &[], true);
                            return Some((Ok(out), (inner, State::Done, detect)));
                        }
                    },
                }
            }
        },
    )
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

/// Decodes one chunk; a code unit split across chunks is carried over by the decoder. Malformed
/// sequences become U+FFFD, which then fails validation of the row that holds it.
fn transcode(decoder: &mut Decoder, chunk: &[u8], last: bool) -> Bytes {
    let capacity = decoder
        .max_utf8_buffer_length(chunk.len())
        .expect("chunk sizes are far below usize::MAX");
    // Written into spare capacity: no zero-filling of a buffer about to be overwritten.
    let mut out = String::with_capacity(capacity);
    let _ = decoder.decode_to_string(chunk, &mut out, last);
    Bytes::from(out.into_bytes())
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
