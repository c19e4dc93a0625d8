//! What a file is: its compression and format, from its name and from its first bytes. The two
//! must agree; a file whose content contradicts its name is quarantined, never guessed at
//! (the formats and their contradictions are the producer's, `sluice_producer::ingest::Format`).

pub use sluice_producer::ingest::Format;
#[cfg(test)]
use sluice_producer::ingest::TextFormat;

use crate::error::WatchError;
use crate::name::escaped;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
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
    let format = Format::of_extension(extension).ok_or_else(|| {
        WatchError::Unsupported(format!(
            "`{}`: expected .csv, .json, .jsonl, .ndjson or .parquet, optionally .gz or .zst",
            escaped(name)
        ))
    })?;
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
    match named.contradicted_by(head) {
        Some(why) => Err(WatchError::Mismatch(why.to_owned())),
        None => Ok(()),
    }
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
        let json = Format::Text(TextFormat::Json);
        assert!(check_format(json, b" \n[{\"a\":1}]").is_ok());
        assert!(matches!(
            check_format(json, b"{\"a\":1}\n"),
            Err(WatchError::Mismatch(_))
        ));
        assert!(check_compression(Compression::Gzip, b"a,b").is_err());
        assert!(check_compression(Compression::None, &[0x1F, 0x8B, 8]).is_err());
        assert!(check_compression(Compression::Zstd, &[0x28, 0xB5, 0x2F, 0xFD]).is_ok());
    }
}
