//! What a body holds — CSV, a JSON array, JSON Lines or Parquet — told by its first bytes
//! (decompressed), and checked against what its sender named it (a file name's extension, a
//! part's media type). A body whose content contradicts its name is refused, never guessed at.

use encoding_rs::{Encoding, UTF_8};

use super::TextFormat;

/// A body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text(TextFormat),
    /// Read from a file (Parquet needs random access): the body is stored first.
    Parquet,
}

impl From<TextFormat> for Format {
    fn from(text: TextFormat) -> Format {
        Format::Text(text)
    }
}

/// First bytes of a decompressed body that tell its format (a BOM and some blank lines fit).
pub const HEAD_BYTES: usize = 64;

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text(text) => text.name(),
            Format::Parquet => "parquet",
        }
    }

    /// The format a file extension names (without the dot, any case; `.gz`/`.zst` stripped
    /// by the caller): csv, txt, json, jsonl, ndjson, parquet, pq.
    pub fn of_extension(extension: &str) -> Option<Format> {
        match extension.to_ascii_lowercase().as_str() {
            "csv" | "txt" => Some(Format::Text(TextFormat::Csv)),
            "json" => Some(Format::Text(TextFormat::Json)),
            "jsonl" | "ndjson" => Some(Format::Text(TextFormat::JsonLines)),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// The format a file name names (`rounds.jsonl.gz` is JSON Lines), if its extension does.
    pub fn of_file_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        let stem = (lower.strip_suffix(".gz"))
            .or_else(|| lower.strip_suffix(".zst"))
            .unwrap_or(&lower);
        Format::of_extension(stem.rsplit_once('.')?.1)
    }

    /// The format the first bytes of a decompressed body show: `PAR1` is Parquet; text whose
    /// first non-blank character is `[` a JSON array, `{` JSON Lines; any other text CSV.
    pub fn of_content(head: &[u8]) -> Format {
        if head.starts_with(b"PAR1") {
            return Format::Parquet;
        }
        match first_character(head) {
            Some('[') => Format::Text(TextFormat::Json),
            Some('{') => Format::Text(TextFormat::JsonLines),
            _ => Format::Text(TextFormat::Csv),
        }
    }

    /// Why a body starting with `head` cannot be in this format, if it cannot.
    pub fn contradicted_by(self, head: &[u8]) -> Option<&'static str> {
        let parquet = head.starts_with(b"PAR1");
        let first = first_character(head);
        match self {
            Format::Parquet if !parquet => Some("named Parquet but it does not start with PAR1"),
            Format::Parquet => None,
            _ if parquet => Some("the content is Parquet but the name is not .parquet"),
            Format::Text(TextFormat::Json) if first != Some('[') => {
                Some("named .json but the content is not a JSON array")
            }
            Format::Text(TextFormat::JsonLines) if first != Some('{') => {
                Some("named JSON Lines but the first line is not a JSON object")
            }
            Format::Text(TextFormat::Csv) if matches!(first, Some('[' | '{')) => {
                Some("named .csv but the content is JSON")
            }
            Format::Text(_) if head.contains(&0) && Encoding::for_bom(head).is_none() => {
                Some("the content is binary, not text")
            }
            Format::Text(_) => None,
        }
    }
}

/// The first non-whitespace character of text in any encoding uploads take.
fn first_character(head: &[u8]) -> Option<char> {
    let (encoding, bom) = Encoding::for_bom(head).unwrap_or((UTF_8, 0));
    let (text, _) = encoding.decode_without_bom_handling(&head[bom..]);
    text.chars().find(|c| !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: Format = Format::Text(TextFormat::Csv);
    const JSON: Format = Format::Text(TextFormat::Json);
    const LINES: Format = Format::Text(TextFormat::JsonLines);

    #[test]
    fn the_first_bytes_tell_the_format() {
        assert_eq!(Format::of_content(b"created_timestamp,user_id"), CSV);
        assert_eq!(Format::of_content(b" \n[{\"a\":1}]"), JSON);
        assert_eq!(Format::of_content(b"{\"a\":1}\n"), LINES);
        assert_eq!(Format::of_content(b"PAR1\x15\x04"), Format::Parquet);
        assert_eq!(
            Format::of_content(&[0xFE, 0xFF, 0, b'[']),
            JSON,
            "UTF-16 BE"
        );
        assert_eq!(Format::of_content(b""), CSV, "empty: the CSV path says why");
    }

    #[test]
    fn names_give_the_format_whatever_the_compression() {
        assert_eq!(Format::of_file_name("a.CSV"), Some(CSV));
        assert_eq!(Format::of_file_name("a.jsonl.gz"), Some(LINES));
        assert_eq!(Format::of_file_name("a.ndjson.zst"), Some(LINES));
        assert_eq!(Format::of_file_name("r.parquet.zst"), Some(Format::Parquet));
        assert_eq!(Format::of_file_name("a.xlsx"), None);
        assert_eq!(Format::of_file_name("gz"), None);
    }

    #[test]
    fn content_must_match_the_name() {
        assert!(CSV.contradicted_by(b"created_timestamp,user_id").is_none());
        assert!(JSON.contradicted_by(b" \n[{\"a\":1}]").is_none());
        assert!(LINES.contradicted_by(b"{\"a\":1}\n").is_none());
        assert!(JSON.contradicted_by(b"{\"a\":1}\n").is_some());
        assert!(LINES.contradicted_by(b"created_timestamp").is_some());
        assert!(CSV.contradicted_by(b"[1]").is_some());
        assert!(CSV.contradicted_by(b"PAR1\0\0").is_some());
        assert!(Format::Parquet.contradicted_by(b"a,b").is_some());
        assert!(CSV.contradicted_by(b"a\0b").is_some(), "binary");
        assert!(JSON.contradicted_by(&[0xFE, 0xFF, 0, b'[']).is_none());
        assert!(CSV.contradicted_by(&[0xFF, 0xFE, b'a', 0]).is_none());
    }
}
