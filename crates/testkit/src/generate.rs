//! Deterministic game-round exports shaped like the real one: UTF-16 with a BOM and CRLF by
//! default, `NaN` and empty money cells, 32-hex player ids, names with apostrophes, quotes and
//! commas — plus, on request, bad rows at known lines. Alongside the bytes comes what a correct
//! pipeline must report: per-player exact totals of the good rows.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Text encoding of the generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    /// What the real export uses.
    Utf16Be,
}

impl Encoding {
    pub fn parse(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Some(Encoding::Utf8),
            "utf8bom" | "utf-8-bom" => Some(Encoding::Utf8Bom),
            "utf16le" | "utf-16le" => Some(Encoding::Utf16Le),
            "utf16be" | "utf-16be" | "utf16" | "utf-16" => Some(Encoding::Utf16Be),
            _ => None,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub rows: u64,
    pub seed: u64,
    pub encoding: Encoding,
    /// How many distinct players the rows are spread over.
    pub players: usize,
    /// `game_instance_id` of the first row; the others follow consecutively.
    pub first_instance_id: u64,
    /// Every n-th row is malformed (in one of several ways), if set.
    pub bad_row_every: Option<u64>,
    /// `created_timestamp` of the first row, in seconds; each next row is 7 s later. The same
    /// rows (seed, players, ids) at another time are new versions of the same rounds, moved.
    pub first_timestamp: i64,
}

impl Options {
    /// `rows` rows in the real export's shape (UTF-16 BE, BOM, CRLF), no bad rows.
    pub fn new(rows: u64) -> Options {
        Options {
            rows,
            seed: 7,
            encoding: Encoding::Utf16Be,
            players: 20,
            first_instance_id: 1_000_000,
            bad_row_every: None,
            first_timestamp: FIRST_TIMESTAMP,
        }
    }
}

/// Exact totals of one player's good rows, money in 10^-4 units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub real_amount_bet: i128,
    pub bonus_amount_bet: i128,
    pub real_amount_win: i128,
    pub bonus_amount_win: i128,
    pub rounds: u64,
}

impl Totals {
    pub fn ggr(&self) -> i128 {
        self.real_amount_bet + self.bonus_amount_bet - self.real_amount_win - self.bonus_amount_win
    }
}

/// What a correct pipeline must report for a generated file.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Data rows written (good and bad).
    pub rows: u64,
    /// Rows a correct producer accepts.
    pub good_rows: u64,
    /// Line numbers (header = line 1) of the bad rows.
    pub bad_lines: Vec<u64>,
    /// Per player id, totals of the good rows.
    pub totals: BTreeMap<String, Totals>,
}

/// A generated file held in memory.
#[derive(Debug, Clone)]
pub struct Export {
    pub bytes: Vec<u8>,
    pub summary: Summary,
}

/// Generates a whole file in memory (small and medium sizes).
pub fn export(options: &Options) -> Export {
    let mut bytes = Vec::new();
    let summary = write(options, &mut bytes).expect("writing to memory cannot fail");
    Export { bytes, summary }
}

const GAMES: [(u64, &str, &str); 8] = [
    (24_002, "Gonzo's Quest", "NetEnt"),
    (25_062, "Reactoonz", "Play'n GO"),
    (
        33_000,
        "Rich Wilde and the \"Tome\" of Madness",
        "Play'n GO",
    ),
    (32_000, "Cash, Cash, Cash", "Red Tiger"),
    (28_200, "Jammin' Jars", "Push Gaming"),
    (31_000, "Mental", "Nolimit City"),
    (29_001, "Lightning Roulette", "Evolution"),
    (27_500, "Sweet Bonanza", "Pragmatic Play"),
];

/// Amounts as written and as scaled integers.
const AMOUNTS: [(&str, i128); 12] = [
    ("0", 0),
    ("0.05", 500),
    ("0.1", 1_000),
    ("0.25", 2_500),
    ("0.5", 5_000),
    ("1", 10_000),
    ("2", 20_000),
    ("5", 50_000),
    ("10", 100_000),
    ("25", 250_000),
    ("100", 1_000_000),
    ("1.2345", 12_345),
];

/// 2019-10-22 08:00:00 UTC, where the real export starts.
pub const FIRST_TIMESTAMP: i64 = 1_571_731_200;

/// Streams a file of `options.rows` rows into `out`, in constant memory.
pub fn write(options: &Options, out: impl Write) -> io::Result<Summary> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let players: Vec<String> = (0..options.players.max(1))
        .map(|_| format!("{:032x}", rng.random::<u128>()))
        .collect();
    let terminator = match options.encoding {
        Encoding::Utf16Le | Encoding::Utf16Be => csv::Terminator::CRLF,
        Encoding::Utf8 | Encoding::Utf8Bom => csv::Terminator::Any(b'\n'),
    };
    let mut csv = csv::WriterBuilder::new()
        .terminator(terminator)
        .flexible(true)
        .from_writer(EncodedWriter::new(out, options.encoding)?);
    let mut summary = Summary::default();

    csv.write_record(sluice_schema::csv::COLUMNS)?;
    for index in 0..options.rows {
        let line = index + 2;
        let player = &players[rng.random_range(0..players.len())];
        let (game_id, game_name, provider) = GAMES[rng.random_range(0..GAMES.len())];
        let created =
            chrono::DateTime::from_timestamp(options.first_timestamp + (index as i64) * 7, 0)
                .expect("in range")
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
        let mut money = [""; 4];
        let mut scaled = [0_i128; 4];
        for (slot, value) in money.iter_mut().zip(scaled.iter_mut()) {
            let roll = rng.random_range(0..100);
            (*slot, *value) = match roll {
                0 => ("NaN", 0),
                1 => ("", 0),
                _ => AMOUNTS[rng.random_range(0..AMOUNTS.len())],
            };
        }
        let instance = (options.first_instance_id + index).to_string();
        let game = game_id.to_string();
        let mut record = vec![
            created.as_str(),
            instance.as_str(),
            player.as_str(),
            game.as_str(),
            money[0],
            money[1],
            money[2],
            money[3],
            game_name,
            provider,
        ];
        let bad = options
            .bad_row_every
            .is_some_and(|every| every > 0 && (index + 1) % every == 0);
        if bad {
            match (index / options.bad_row_every.unwrap_or(1)) % 4 {
                0 => record[4] = "12,5",
                1 => record[2] = "not-a-player",
                2 => record[0] = "22/10/2019 08:00",
                _ => record.truncate(6),
            }
            summary.bad_lines.push(line);
        } else {
            summary.good_rows += 1;
            let totals = summary.totals.entry(player.clone()).or_default();
            totals.real_amount_bet += scaled[0];
            totals.bonus_amount_bet += scaled[1];
            totals.real_amount_win += scaled[2];
            totals.bonus_amount_win += scaled[3];
            totals.rounds += 1;
        }
        summary.rows += 1;
        csv.write_record(&record)?;
    }
    csv.flush()?;
    Ok(summary)
}

/// Re-encodes the UTF-8 it is given, BOM first; a character split across writes is held back.
struct EncodedWriter<W: Write> {
    out: io::BufWriter<W>,
    encoding: Encoding,
    pending: Vec<u8>,
}

impl<W: Write> EncodedWriter<W> {
    fn new(out: W, encoding: Encoding) -> io::Result<Self> {
        let mut out = io::BufWriter::with_capacity(1 << 20, out);
        match encoding {
            Encoding::Utf8 => {}
            Encoding::Utf8Bom => out.write_all(&[0xEF, 0xBB, 0xBF])?,
            Encoding::Utf16Le => out.write_all(&[0xFF, 0xFE])?,
            Encoding::Utf16Be => out.write_all(&[0xFE, 0xFF])?,
        }
        Ok(EncodedWriter {
            out,
            encoding,
            pending: Vec::new(),
        })
    }

    fn write_text(&mut self, text: &str) -> io::Result<()> {
        match self.encoding {
            Encoding::Utf8 | Encoding::Utf8Bom => self.out.write_all(text.as_bytes()),
            Encoding::Utf16Le => text
                .encode_utf16()
                .try_for_each(|unit| self.out.write_all(&unit.to_le_bytes())),
            Encoding::Utf16Be => text
                .encode_utf16()
                .try_for_each(|unit| self.out.write_all(&unit.to_be_bytes())),
        }
    }
}

impl<W: Write> Write for EncodedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let pending = std::mem::take(&mut self.pending);
        let valid = match std::str::from_utf8(&pending) {
            Ok(_) => pending.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        };
        let text = std::str::from_utf8(&pending[..valid]).expect("checked above");
        self.write_text(text)?;
        self.pending = pending[valid..].to_vec();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_deterministic_and_shaped_like_the_real_one() {
        let first = export(&Options::new(500));
        let second = export(&Options::new(500));
        assert_eq!(first.bytes, second.bytes);
        assert_eq!(&first.bytes[..2], [0xFE, 0xFF]);
        let units: Vec<u16> = first.bytes[2..]
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let text = String::from_utf16(&units).unwrap();
        assert!(text.starts_with("created_timestamp,game_instance_id,"));
        assert!(text.contains("\r\n"));
        assert!(text.contains(",NaN,") || text.contains(",NaN\r\n"));
        assert!(text.contains(",,"));
        assert!(text.contains("\"Rich Wilde and the \"\"Tome\"\" of Madness\""));
        assert!(text.contains("\"Cash, Cash, Cash\""));
        assert!(text.contains("Play'n GO"));
        assert_eq!(text.lines().count(), 501);
        assert_eq!(first.summary.good_rows, 500);
        let rounds: u64 = first.summary.totals.values().map(|t| t.rounds).sum();
        assert_eq!(rounds, 500);
    }

    #[test]
    fn bad_rows_are_placed_on_known_lines_and_left_out_of_the_totals() {
        let mut options = Options::new(100);
        options.bad_row_every = Some(10);
        options.encoding = Encoding::Utf8;
        let export = export(&options);
        assert_eq!(
            export.summary.bad_lines,
            [11, 21, 31, 41, 51, 61, 71, 81, 91, 101]
        );
        assert_eq!(export.summary.good_rows, 90);
        let text = String::from_utf8(export.bytes).unwrap();
        let line_11 = text.lines().nth(10).unwrap();
        assert!(line_11.contains("\"12,5\""), "{line_11}");
    }
}
