//! What a file is: its compression and format, from its name and from its first bytes. The two
//! must agree; a file whose content contradicts its name is quarantined, never guessed at.

use encoding_rs::{Encoding, UTF_8};
use sluice_producer::ingest::TextFormat;

use crate::error::WatchError;
use crate::name::escaped;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text(TextFormat),
    Parquet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text(text) => text.name(),
            Format::Parquet => "parquet",
        }
    }
}

/// Format and compression as the name says: `rounds.csv`, `rounds.jsonl.gz`, `r.parquet.zst`.
pub fn from_name(name: &str) -> Result<(Format, Compression), WatchError> {
    let lower = name.to_ascii_lowercase();
    let (stem, compression) = if let Some(stem) = lower.strip_suffix(".gz") {
        (stem, Compression::Gzip)
    } else if let Some(stem) = lower.strip_suffix(".zst") {
        (stem, Compression::Zstd)
    } else {
        (lower.as_str(), Compression::None)
    };
    let extension = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    let format = match extension {
        "csv" | "txt" => Format::Text(TextFormat::Csv),
        "json" => Format::Text(TextFormat::Json),
        "jsonl" | "ndjson" => Format::Text(TextFormat::JsonLines),
        "parquet" | "pq" => Format::Parquet,
        _ => {
            return Err(WatchError::Unsupported(format!(
                "`{}`: expected .csv, .json, .jsonl, .ndjson or .parquet, optionally .gz or .zst",
                escaped(name)
            )))
        }
    };
    Ok((format, compression))
}

/// The compression the first bytes show.
pub fn compression_of(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1F, 0x8B]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Checks the name's compression against the file's first bytes.
pub fn check_compression(named: Compression, head: &[u8]) -> Result<(), WatchError> {
    let actual = compression_of(head);
    if actual == named {
        return Ok(());
    }
    let describe = |c: Compression| match c {
        Compression::None => "not compressed",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    Err(WatchError::Mismatch(format!(
        "named {} but the content is {}",
        describe(named),
        describe(actual)
    )))
}

/// Checks the name's format against the first bytes of the (decompressed) content.
pub fn check_format(named: Format, head: &[u8]) -> Result<(), WatchError> {
    let parquet = head.starts_with(b"PAR1");
    let first = first_character(head);
    let mismatch = |what: &str| Err(WatchError::Mismatch(what.to_owned()));
    match named {
        Format::Parquet if !parquet => mismatch("named Parquet but it does not start with PAR1"),
        Format::Parquet => Ok(()),
        _ if parquet => mismatch("the content is Parquet but the name is not .parquet"),
        Format::Text(TextFormat::Json) if first != Some('[') => {
            mismatch("named .json but the content is not a JSON array")
        }
        Format::Text(TextFormat::JsonLines) if first != Some('{') => {
            mismatch("named JSON Lines but the first line is not a JSON object")
        }
        Format::Text(TextFormat::Csv) if matches!(first, Some('[' | '{')) => {
            mismatch("named .csv but the content is JSON")
        }
        Format::Text(_) if head.contains(&0) && Encoding::for_bom(head).is_none() => {
            mismatch("the content is binary, not text")
        }
        Format::Text(_) => Ok(()),
    }
}

/// The first non-whitespace character of text in any encoding the upload path takes.
fn first_character(head: &[u8]) -> Option<char> {
    let (encoding, bom) = Encoding::for_bom(head).unwrap_or((UTF_8, 0));
    let (text, _) = encoding.decode_without_bom_handling(&head[bom..]);
    text.chars().find(|c| !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_format_and_compression() {
        assert_eq!(
            from_name("a.CSV").unwrap(),
            (Format::Text(TextFormat::Csv), Compression::None)
        );
        assert_eq!(
            from_name("a.jsonl.gz").unwrap(),
            (Format::Text(TextFormat::JsonLines), Compression::Gzip)
        );
        assert_eq!(
            from_name("a.parquet.zst").unwrap(),
            (Format::Parquet, Compression::Zstd)
        );
        assert!(matches!(
            from_name("a.xlsx"),
            Err(WatchError::Unsupported(_))
        ));
        assert!(matches!(from_name("gz"), Err(WatchError::Unsupported(_))));
        let message = from_name("a\nFORGED.xlsx").unwrap_err().to_string();
        assert!(message.contains("`a\\nFORGED.xlsx`"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn content_must_match_the_name() {
        let csv = Format::Text(TextFormat::Csv);
        let json = Format::Text(TextFormat::Json);
        let lines = Format::Text(TextFormat::JsonLines);
        assert!(check_format(csv, b"created_timestamp,user_id").is_ok());
        assert!(check_format(json, b" \n[{\"a\":1}]").is_ok());
        assert!(check_format(lines, b"{\"a\":1}\n").is_ok());
        assert!(check_format(json, b"{\"a\":1}\n").is_err());
        assert!(check_format(lines, b"created_timestamp").is_err());
        assert!(check_format(csv, b"[1]").is_err());
        assert!(check_format(csv, b"PAR1\0\0").is_err());
        assert!(check_format(Format::Parquet, b"a,b").is_err());
        // UTF-16 BE with BOM: `[`.
        assert!(check_format(json, &[0xFE, 0xFF, 0, b'[']).is_ok());
        assert!(check_format(csv, &[0xFF, 0xFE, b'a', 0]).is_ok());
        assert!(check_compression(Compression::Gzip, b"a,b").is_err());
        assert!(check_compression(Compression::None, &[0x1F, 0x8B, 8]).is_err());
        assert!(check_compression(Compression::Zstd, &[0x28, 0xB5, 0x2F, 0xFD]).is_ok());
    }
}
