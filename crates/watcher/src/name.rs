//! File names as the watcher meets them: bytes chosen by whoever drops a file. Which names are
//! taken, how a name is written into logs and messages (escaped, so a newline in a name cannot
//! forge a log line), how a sidecar's name stays within the file system's 255 bytes, and the
//! bounded memory of names already reported as ignored.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};

/// Longest file name ext4, XFS and btrfs take, in bytes.
pub const NAME_MAX: usize = 255;

/// Suffix of the report written beside a quarantined file.
const SIDECAR_SUFFIX: &str = ".error.json";

/// A file name for logs and messages: printable characters as they are; control characters,
/// invisible format characters (bidi overrides, line separators) and backslashes escaped the
/// way Rust's `escape_debug` does (`\n`, `\u{202e}`, `\\`); bytes that are not UTF-8 as `\xFF`.
/// The result is always one line, and tells `a\nb` (escaped) from `a\\nb` (a real backslash).
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a OsStr);

/// [`Escaped`] for anything that is a name (`&str`, `&OsStr`, `&Path`).
pub fn escaped<N: AsRef<OsStr> + ?Sized>(name: &N) -> Escaped<'_> {
    Escaped(name.as_ref())
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' | '\'' => f.write_char(c)?,
                    _ => write!(f, "{}", c.escape_debug())?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02X}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Why a directory entry is never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// A dot-file (`.x.csv`, `..x.csv`): the convention for a file still being written.
    Hidden,
    /// `*.tmp`, `*.partial`, `*.part`, `*.crdownload`, `*~`: a file still being written.
    Temporary,
    /// The name is not UTF-8.
    NotUtf8,
    /// A directory, FIFO, socket or device.
    NotAFile,
}

impl Ignored {
    /// Every reason, for pre-registering the metric.
    pub const ALL: [Ignored; 4] = [
        Ignored::Hidden,
        Ignored::Temporary,
        Ignored::NotUtf8,
        Ignored::NotAFile,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Ignored::Hidden => "hidden",
            Ignored::Temporary => "temporary",
            Ignored::NotUtf8 => "not_utf8",
            Ignored::NotAFile => "not_a_file",
        }
    }

    /// What an operator should know, for the log line.
    pub fn explain(self) -> &'static str {
        match self {
            Ignored::Hidden => "a dot-file is taken for a file still being written; rename it",
            Ignored::Temporary => "a temporary name; rename the file when it is complete",
            Ignored::NotUtf8 => "the name is not UTF-8; rename the file",
            Ignored::NotAFile => "not a regular file",
        }
    }
}

/// Why a name is never taken, or `None` if it is a candidate. Temporary names and dot-files are
/// files still being written, left alone until they are renamed; a name that is not UTF-8
/// cannot be a Redis key, a receipt's `source` or a JSON report's `file`.
pub fn ignored(name: &OsStr) -> Option<Ignored> {
    let Some(name) = name.to_str() else {
        return Some(Ignored::NotUtf8);
    };
    let lower = name.to_ascii_lowercase();
    if name.starts_with('.') {
        Some(Ignored::Hidden)
    } else if name.ends_with('~')
        || [".tmp", ".partial", ".part", ".crdownload"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
    {
        Some(Ignored::Temporary)
    } else {
        None
    }
}

/// `<name>.error.json`, or — when that would be longer than [`NAME_MAX`] bytes — the name cut
/// on a character boundary, `~`, and the first 16 hex digits of the whole name's SHA-256, then
/// `.error.json`: at most 255 bytes, and two long names with the same beginning still get
/// two reports. (The report's `file` field holds the whole name.)
pub fn sidecar_name(name: &str) -> String {
    if name.len() + SIDECAR_SUFFIX.len() <= NAME_MAX {
        return format!("{name}{SIDECAR_SUFFIX}");
    }
    let digest = hex::encode(&Sha256::digest(name.as_bytes())[..8]);
    let mut cut = NAME_MAX - SIDECAR_SUFFIX.len() - 1 - digest.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{digest}{SIDECAR_SUFFIX}", &name[..cut])
}

/// Names already reported as ignored, so each is logged and counted once while it stays in
/// the directory. Names gone from the directory are forgotten at each rescan, and at most
/// `capacity` are remembered: when full, the memory starts afresh (a name may then be reported
/// a second time, never without bound).
pub struct Reported {
    names: HashSet<OsString>,
    capacity: usize,
}

impl Reported {
    pub fn new(capacity: usize) -> Reported {
        Reported {
            names: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time `name` is seen (since it was last forgotten).
    pub fn first_time(&mut self, name: &OsStr) -> bool {
        if self.names.contains(name) {
            return false;
        }
        if self.names.len() >= self.capacity {
            self.names.clear();
        }
        self.names.insert(name.to_owned());
        true
    }

    /// Forgets every name not in `present` (the names of the last full listing).
    pub fn retain(&mut self, present: &HashSet<OsString>) {
        self.names.retain(|name| present.contains(name));
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn escaped_names_stay_on_one_line() {
        let forged = OsStr::new("a.csv\n2026-01-01T00:00:00Z  INFO forged");
        assert_eq!(
            escaped(forged).to_string(),
            "a.csv\\n2026-01-01T00:00:00Z  INFO forged"
        );
        assert_eq!(escaped("tab\there\r").to_string(), "tab\\there\\r");
        assert_eq!(escaped("back\\slash").to_string(), "back\\\\slash");
        assert_eq!(escaped("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(
            escaped("rtl\u{202e}vsc.csv").to_string(),
            "rtl\\u{202e}vsc.csv"
        );
        assert_eq!(escaped("line\u{2028}sep").to_string(), "line\\u{2028}sep");
        assert_eq!(
            escaped("Play'n \"GO\" é.csv").to_string(),
            "Play'n \"GO\" é.csv"
        );
        let bytes = OsStr::from_bytes(b"bad\xff\xfe.csv");
        assert_eq!(escaped(bytes).to_string(), "bad\\xFF\\xFE.csv");
        assert_eq!(format!("{:?}", escaped("a\nb")), "\"a\\nb\"");
    }

    #[test]
    fn names_never_taken() {
        for (name, why) in [
            (".a.csv", Ignored::Hidden),
            ("..x.csv", Ignored::Hidden),
            ("a.csv.tmp", Ignored::Temporary),
            ("a.csv.partial", Ignored::Temporary),
            ("a.csv.PART", Ignored::Temporary),
            ("a.csv.crdownload", Ignored::Temporary),
            ("a.csv~", Ignored::Temporary),
        ] {
            assert_eq!(ignored(OsStr::new(name)), Some(why), "{name}");
        }
        assert_eq!(
            ignored(OsStr::from_bytes(b"r\xff.csv")),
            Some(Ignored::NotUtf8)
        );
        assert_eq!(ignored(OsStr::new("a.csv")), None);
        assert_eq!(ignored(OsStr::new("a\nb.csv")), None);
    }

    #[test]
    fn short_sidecar_names_are_the_name_and_a_suffix() {
        assert_eq!(sidecar_name("a.csv"), "a.csv.error.json");
        let longest = "x".repeat(NAME_MAX - SIDECAR_SUFFIX.len());
        assert_eq!(sidecar_name(&longest), format!("{longest}.error.json"));
    }

    #[test]
    fn long_sidecar_names_are_cut_and_stay_unique() {
        let long = format!("{}.csv", "r".repeat(246));
        let sidecar = sidecar_name(&long);
        assert_eq!(sidecar.len(), NAME_MAX);
        assert!(sidecar.starts_with(&"r".repeat(200)));
        assert!(sidecar.ends_with(".error.json"));
        let other = format!("{}.csv", "r".repeat(247));
        assert_ne!(sidecar_name(&other), sidecar);
        assert_eq!(
            sidecar_name(&long),
            sidecar,
            "the same name, the same sidecar"
        );
        // One byte over the plain form's limit is already cut.
        let just_over = "y".repeat(NAME_MAX - SIDECAR_SUFFIX.len() + 1);
        assert!(sidecar_name(&just_over).len() <= NAME_MAX);
        assert!(sidecar_name(&just_over).contains('~'));
    }

    #[test]
    fn long_sidecar_names_are_cut_on_a_character_boundary() {
        // 2-, 3- and 4-byte characters: every cut position lands inside one of them somewhere.
        for filler in ["é", "€", "🎰"] {
            for extra in 0..4 {
                let name = format!(
                    "{}{}.csv",
                    "a".repeat(extra),
                    filler.repeat(300 / filler.len())
                );
                let sidecar = sidecar_name(&name);
                assert!(sidecar.len() <= NAME_MAX, "{} bytes", sidecar.len());
                assert!(sidecar.len() > NAME_MAX - 4);
                assert!(sidecar.ends_with(".error.json"));
            }
        }
    }

    #[test]
    fn reported_names_are_bounded() {
        let mut reported = Reported::new(3);
        assert!(reported.first_time(OsStr::new("a")));
        assert!(!reported.first_time(OsStr::new("a")));
        assert!(reported.first_time(OsStr::new("b")));
        assert!(reported.first_time(OsStr::new("c")));
        assert_eq!(reported.len(), 3);
        // Full: starts afresh rather than growing.
        assert!(reported.first_time(OsStr::new("d")));
        assert_eq!(reported.len(), 1);
        // Names gone from the directory are forgotten.
        let present: HashSet<OsString> = [OsString::from("e")].into();
        reported.retain(&present);
        assert!(reported.is_empty());
    }
}
