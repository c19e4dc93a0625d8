//! A dataset's records, from their Avro single-object encoding (as [`super::plan`] writes them)
//! to rows of its versions table ([`super::clickhouse::versions_table`]) in ClickHouse's
//! `RowBinary`: every column in the spec's order, then `version`.
//!
//! Read field by field like the plan writes them, and checked as the table will hold them: a
//! moment outside `DateTime`'s range, a negative `UInt64`, a decimal beyond `Decimal(18, S)`,
//! text that is not UTF-8 or holds a NUL, a checked column's text not in the form the plan
//! stores (`hex32` lower case, `alpha3` upper case) is refused with its column, never stored as
//! something else.
//!
//! A record of an earlier version of the spec ([`super::history`]), recognised by its header,
//! is read as Avro's schema resolution reads it: its fields, then the columns appended since,
//! each null or its default.

use integer_encoding::VarInt;

use super::history::History;
use super::plan::{default_datum, Plan};
use super::{Check, Column, Kind, Spec};
use crate::domain::{check_text, stored_seconds, DecimalError, DECIMAL_MAX_SCALED};

/// A spec compiled for conversion; see the module.
#[derive(Debug, Clone)]
pub struct Converter {
    /// The versions whose records it reads: the spec's first, then earlier ones.
    readers: Vec<Reader>,
    table: String,
    columns: Vec<Column>,
    /// The identity's columns (indices, in the identity's order) and the time column's.
    identity: Vec<usize>,
    time: usize,
}

/// The records of one version of the spec.
#[derive(Debug, Clone)]
struct Reader {
    header: Vec<u8>,
    /// How many of the spec's columns its records hold (the first ones).
    fields: usize,
    /// The Avro datum of the columns they lack: each one's default (or null).
    defaults: Vec<u8>,
}

/// A converted record's place in the rollups: its time and its identity, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed {
    /// The time column, in seconds since the epoch.
    pub seconds: u32,
    /// The identity's values, in the identity's order.
    pub key: Vec<KeyValue>,
}

/// One stored value of an identity column.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    Null,
    Text(String),
    Int(i64),
    Uint(u64),
    Float32(f32),
    Float64(f64),
    /// The unscaled value: `Decimal(18, S)`'s integer.
    Decimal(i64),
    Seconds(u32),
}

impl Converter {
    /// Compiles `spec` (checked when it was parsed); it reads records of `spec` alone.
    pub fn compile(spec: &Spec) -> Converter {
        let reader = Reader {
            header: Plan::compile(spec).header().to_vec(),
            fields: spec.columns.len(),
            defaults: Vec::new(),
        };
        let index = |name: &str| {
            let index = spec.columns.iter().position(|c| c.name == name);
            index.expect("a checked spec declares its identity and time columns")
        };
        Converter {
            readers: vec![reader],
            table: spec.versions_table(),
            columns: spec.columns.clone(),
            identity: spec.identity.iter().map(|c| index(c)).collect(),
            time: index(&spec.time),
        }
    }

    /// Compiles `history`'s spec, which reads the records of every version recorded in it too.
    pub fn reading(history: &History) -> Converter {
        let spec = history.spec();
        let mut converter = Converter::compile(spec);
        for earlier in history.earlier() {
            let fields = earlier.columns.len();
            let defaults = spec.columns[fields..].iter().flat_map(|column| {
                let datum = default_datum(column).expect("a checked spec's default is a value");
                datum.expect(
                    "a column appended since a recorded version is nullable or has a default",
                )
            });
            converter.readers.push(Reader {
                header: Plan::compile(earlier).header().to_vec(),
                fields,
                defaults: defaults.collect(),
            });
        }
        converter
    }

    /// `INSERT INTO <table> (<columns>, version) FORMAT RowBinary` for rows of this converter.
    pub fn insert_statement(&self) -> String {
        let names: Vec<&str> = self
            .columns
            .iter()
            .map(|column| column.name.as_str())
            .collect();
        format!(
            "INSERT INTO {} ({}, version) FORMAT RowBinary",
            self.table,
            names.join(", ")
        )
    }

    /// Appends the row of `message` as version `version` to `out`, or says why the table
    /// cannot hold it (`out` is then as it was).
    pub fn append(&self, message: &[u8], version: u64, out: &mut Vec<u8>) -> Result<(), String> {
        self.append_at(message, version, out, &mut Vec::new())
    }

    /// [`Converter::append`], and the row's time and identity as stored.
    pub fn append_keyed(
        &self,
        message: &[u8],
        version: u64,
        out: &mut Vec<u8>,
    ) -> Result<Keyed, String> {
        let mut starts = Vec::with_capacity(self.columns.len() + 1);
        self.append_at(message, version, out, &mut starts)?;
        let value = |i: usize| {
            let column = &self.columns[i];
            stored_value(column.kind, column.nullable, &out[starts[i]..starts[i + 1]])
        };
        let seconds = match value(self.time) {
            KeyValue::Seconds(seconds) => seconds,
            _ => 0,
        };
        Ok(Keyed {
            seconds,
            key: self.identity.iter().map(|i| value(*i)).collect(),
        })
    }

    /// Appends the row, noting in `starts` where each column's bytes begin (and where the
    /// last ends).
    fn append_at(
        &self,
        message: &[u8],
        version: u64,
        out: &mut Vec<u8>,
        starts: &mut Vec<usize>,
    ) -> Result<(), String> {
        let Some((reader, mut datum)) = (self.readers.iter())
            .find_map(|r| Some((r, message.strip_prefix(r.header.as_slice())?)))
        else {
            return Err("not a record of this dataset's schema (unknown header)".to_owned());
        };
        let mut defaults = reader.defaults.as_slice();
        let start = out.len();
        let converted = self
            .columns
            .iter()
            .enumerate()
            .try_for_each(|(index, column)| {
                let from = if index < reader.fields {
                    &mut datum
                } else {
                    &mut defaults
                };
                starts.push(out.len());
                convert(from, column, out).map_err(|reason| format!("{}: {reason}", column.name))
            });
        starts.push(out.len());
        let result = converted.and_then(|()| match datum.is_empty() {
            true => Ok(()),
            false => Err(format!("{} bytes after the record", datum.len())),
        });
        match result {
            Ok(()) => {
                out.extend_from_slice(&version.to_le_bytes());
                Ok(())
            }
            Err(reason) => {
                out.truncate(start);
                Err(reason)
            }
        }
    }
}

/// The value `column`'s `default` is stored as; none for a column without one.
pub fn stored_default(column: &Column) -> Option<KeyValue> {
    if column.nullable || column.default.is_none() {
        return None;
    }
    let datum = default_datum(column).expect("a checked spec's default is a value")?;
    let mut stored = Vec::new();
    convert(&mut datum.as_slice(), column, &mut stored)
        .expect("a checked default is a value the table holds");
    Some(stored_value(column.kind, false, &stored))
}

/// One field of `column`: a nullable one's union branch (`0` null, `1` the value) becomes
/// RowBinary's null byte.
fn convert(datum: &mut &[u8], column: &Column, out: &mut Vec<u8>) -> Result<(), String> {
    if column.nullable {
        match long(datum)? {
            0 => {
                out.push(1);
                return Ok(());
            }
            1 => out.push(0),
            other => return Err(format!("union branch {other}")),
        }
    }
    match column.kind {
        Kind::String => {
            let length = usize::try_from(long(datum)?).map_err(|_| "a negative length")?;
            let bytes = take(datum, length)?;
            let text = std::str::from_utf8(bytes).map_err(|_| "not valid text".to_owned())?;
            check_text(text).map_err(|e| e.to_string())?;
            if let Some(check) = column.check {
                stored_form(check, bytes)?;
            }
            let mut buffer = [0_u8; 10];
            let written = (length as u64).encode_var(&mut buffer);
            out.extend_from_slice(&buffer[..written]);
            out.extend_from_slice(bytes);
        }
        Kind::Int64 => out.extend_from_slice(&long(datum)?.to_le_bytes()),
        Kind::Uint64 => {
            let value = u64::try_from(long(datum)?).map_err(|_| "negative")?;
            out.extend_from_slice(&value.to_le_bytes());
        }
        Kind::Float32 => out.extend_from_slice(take(datum, 4)?),
        Kind::Float64 => out.extend_from_slice(take(datum, 8)?),
        Kind::Decimal => {
            let value = long(datum)?;
            if value.unsigned_abs() > DECIMAL_MAX_SCALED.unsigned_abs() {
                let scale = column.scale.unwrap_or(0);
                return Err(DecimalError::OutOfRange { scale }.to_string());
            }
            out.extend_from_slice(&value.to_le_bytes());
        }
        Kind::Timestamp => {
            let seconds = stored_seconds(long(datum)?).map_err(|e| e.to_string())?;
            out.extend_from_slice(&seconds.to_le_bytes());
        }
    }
    Ok(())
}

/// Whether `text` is in the form the plan stores a `check`ed column's values in.
fn stored_form(check: Check, text: &[u8]) -> Result<(), String> {
    let (valid, what) = match check {
        Check::Hex32 => (
            text.len() == 32 && text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "32 lower-case hexadecimal characters",
        ),
        Check::Alpha3 => (
            text.len() == 3 && text.iter().all(u8::is_ascii_uppercase),
            "3 upper-case letters",
        ),
    };
    match valid {
        true => Ok(()),
        false => Err(format!("not {what}")),
    }
}

/// A value as [`convert`] wrote it in RowBinary.
fn stored_value(kind: Kind, nullable: bool, bytes: &[u8]) -> KeyValue {
    let bytes = match (nullable, bytes.split_first()) {
        (true, Some((1, _))) => return KeyValue::Null,
        (true, Some((_, rest))) => rest,
        _ => bytes,
    };
    let eight = || <[u8; 8]>::try_from(&bytes[..8]).expect("8 bytes written");
    let four = || <[u8; 4]>::try_from(&bytes[..4]).expect("4 bytes written");
    match kind {
        Kind::String => {
            let (length, read) = u64::decode_var(bytes).expect("a length written");
            let text = &bytes[read..read + length as usize];
            KeyValue::Text(String::from_utf8_lossy(text).into_owned())
        }
        Kind::Int64 => KeyValue::Int(i64::from_le_bytes(eight())),
        Kind::Uint64 => KeyValue::Uint(u64::from_le_bytes(eight())),
        Kind::Float32 => KeyValue::Float32(f32::from_le_bytes(four())),
        Kind::Float64 => KeyValue::Float64(f64::from_le_bytes(eight())),
        Kind::Decimal => KeyValue::Decimal(i64::from_le_bytes(eight())),
        Kind::Timestamp => KeyValue::Seconds(u32::from_le_bytes(four())),
    }
}

/// An Avro `long` (zigzag varint) from the front of `datum`.
fn long(datum: &mut &[u8]) -> Result<i64, String> {
    let (value, length) = i64::decode_var(datum).ok_or("the record ends early")?;
    *datum = &datum[length..];
    Ok(value)
}

/// The next `length` bytes of `datum`.
fn take<'a>(datum: &mut &'a [u8], length: usize) -> Result<&'a [u8], String> {
    if datum.len() < length {
        return Err("the record ends early".to_owned());
    }
    let (bytes, rest) = datum.split_at(length);
    *datum = rest;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::super::plan::{write_long, Cell, Plan, Record};
    use super::*;

    const SPEC: &str = r#"
name = "things"
identity = ["id"]
kafka_key = "id"
time = "at"
[avro]
name = "Thing"
namespace = "test"
[[columns]]
name = "id"
type = "uint64"
[[columns]]
name = "at"
type = "timestamp"
format = "epoch_ms"
[[columns]]
name = "name"
type = "string"
[[columns]]
name = "amount"
type = "decimal"
scale = 2
nullable = true
null_tokens = [""]
[[columns]]
name = "score"
type = "float64"
"#;

    fn encoded(cells: [&str; 5]) -> Vec<u8> {
        encoded_as(&Spec::parse("things.toml", SPEC).unwrap(), &cells)
    }

    /// The message of `cells` under `spec`.
    fn encoded_as(spec: &Spec, cells: &[&str]) -> Vec<u8> {
        let mut record = Record::new();
        Plan::compile(spec)
            .encode(1, "u", true, &mut record, |c| {
                Ok(Some(Cell::Text(Cow::Borrowed(cells[c]))))
            })
            .unwrap();
        record.bytes().to_vec()
    }

    #[test]
    fn a_record_becomes_its_rowbinary_row_with_its_version() {
        let spec = Spec::parse("things.toml", SPEC).unwrap();
        let converter = Converter::compile(&spec);
        assert_eq!(
            converter.insert_statement(),
            "INSERT INTO things_versions (id, at, name, amount, score, version) FORMAT RowBinary"
        );
        let mut out = vec![0xAA];
        converter
            .append(&encoded(["7", "1500", "Ünï", "", "0.5"]), 9, &mut out)
            .unwrap();
        converter
            .append(&encoded(["8", "2000", "", "-1.25", "1"]), 10, &mut out)
            .unwrap();
        let mut expected = vec![0xAA];
        for (id, seconds, name, amount, score, version) in [
            (7_u64, 1_u32, "Ünï", None, 0.5_f64, 9_u64),
            (8, 2, "", Some(-125_i64), 1.0, 10),
        ] {
            expected.extend(id.to_le_bytes());
            expected.extend(seconds.to_le_bytes());
            expected.push(name.len() as u8);
            expected.extend(name.as_bytes());
            match amount {
                None => expected.push(1),
                Some(amount) => {
                    expected.push(0);
                    expected.extend(amount.to_le_bytes());
                }
            }
            expected.extend(score.to_le_bytes());
            expected.extend(version.to_le_bytes());
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn a_converted_record_tells_its_time_and_identity_as_stored() {
        let spec = Spec::parse("things.toml", SPEC).unwrap();
        let mut spec = spec;
        spec.identity = vec!["name".to_owned(), "id".to_owned(), "amount".to_owned()];
        let converter = Converter::compile(&spec);
        let mut out = Vec::new();
        let keyed = converter
            .append_keyed(
                &encoded(["7", "3600500", "Ünï", "-1.25", "0.5"]),
                9,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            keyed,
            Keyed {
                seconds: 3600,
                key: vec![
                    KeyValue::Text("Ünï".to_owned()),
                    KeyValue::Uint(7),
                    KeyValue::Decimal(-125)
                ]
            }
        );
        let mut again = Vec::new();
        converter
            .append(
                &encoded(["7", "3600500", "Ünï", "-1.25", "0.5"]),
                9,
                &mut again,
            )
            .unwrap();
        assert_eq!(out, again, "the same row either way");
        let keyed = converter
            .append_keyed(&encoded(["7", "3600500", "", "", "0.5"]), 9, &mut out)
            .unwrap();
        assert_eq!(keyed.key[2], KeyValue::Null);
    }

    #[test]
    fn a_record_the_table_cannot_hold_is_refused_and_nothing_appended() {
        let spec = Spec::parse("things.toml", SPEC).unwrap();
        let converter = Converter::compile(&spec);
        let good = encoded(["7", "1500", "x", "", "0.5"]);
        let mut out = vec![1, 2, 3];
        let mut other_header = good.clone();
        other_header[2] ^= 1;
        let mut nul = good.clone();
        let at = nul.iter().position(|b| *b == b'x').unwrap();
        nul[at] = 0;
        let cases = [
            (
                other_header,
                "not a record of this dataset's schema (unknown header)",
            ),
            (
                good[..good.len() - 3].to_vec(),
                "score: the record ends early",
            ),
            ([good.as_slice(), &[0]].concat(), "1 bytes after the record"),
            (nul, "name: contains a NUL character"),
        ];
        for (message, reason) in cases {
            assert_eq!(
                converter.append(&message, 1, &mut out),
                Err(reason.to_owned())
            );
            assert_eq!(out, [1, 2, 3]);
        }
    }

    #[test]
    fn a_checked_text_not_in_its_stored_form_or_a_decimal_beyond_its_scale_is_refused() {
        let checked = SPEC
            .replace(
                "name = \"name\"\ntype = \"string\"\n",
                "name = \"name\"\ntype = \"string\"\ncheck = \"alpha3\"\n",
            )
            .replace(
                "[[columns]]\nname = \"score\"",
                "[[columns]]\nname = \"code\"\ntype = \"string\"\ncheck = \"hex32\"\n\
                 [[columns]]\nname = \"score\"",
            );
        let spec = Spec::parse("things.toml", &checked).unwrap();
        let converter = Converter::compile(&spec);
        // A message as a writer other than the plan could put on the topic: id 7, at 1.5 s,
        // `name`, `amount` (union branch 1, then the unscaled value), `code`, score 0.5.
        let message = |name: &str, amount: i64, code: &str| {
            let mut out = Plan::compile(&spec).header().to_vec();
            let text = |text: &str, out: &mut Vec<u8>| {
                write_long(text.len() as i64, out);
                out.extend(text.as_bytes());
            };
            write_long(7, &mut out);
            write_long(1500, &mut out);
            text(name, &mut out);
            write_long(1, &mut out);
            write_long(amount, &mut out);
            text(code, &mut out);
            out.extend(0.5_f64.to_le_bytes());
            out
        };
        let hex = "0123456789abcdef0123456789abcdef";
        let mut out = Vec::new();
        converter
            .append(&message("USA", 1, hex), 1, &mut out)
            .unwrap();
        let length = out.len();
        let cases = [
            (message("usa", 1, hex), "name: not 3 upper-case letters"),
            (message("US", 1, hex), "name: not 3 upper-case letters"),
            (
                message("USA", 1, &hex.to_uppercase()),
                "code: not 32 lower-case hexadecimal characters",
            ),
            (
                message("USA", 1, &hex.replace('0', "g")),
                "code: not 32 lower-case hexadecimal characters",
            ),
            (
                message("USA", DECIMAL_MAX_SCALED + 1, hex),
                "amount: out of range (at most 16 digits before the point: the store holds \
                 Decimal(18, 2))",
            ),
        ];
        for (message, reason) in cases {
            assert_eq!(
                converter.append(&message, 1, &mut out),
                Err(reason.to_owned())
            );
            assert_eq!(out.len(), length, "nothing appended");
        }
        let mut at_the_edge = Vec::new();
        converter
            .append(
                &message("USA", -DECIMAL_MAX_SCALED, hex),
                1,
                &mut at_the_edge,
            )
            .unwrap();
    }

    #[test]
    fn a_record_of_a_recorded_version_reads_with_the_columns_appended_since() {
        let text = format!(
            "{SPEC}[[columns]]\nname = \"note\"\ntype = \"string\"\nnullable = true\n\
             [[columns]]\nname = \"rank\"\ntype = \"uint64\"\ndefault = 3\n"
        );
        let spec = Spec::parse("things.toml", &text).unwrap();
        let dir = std::env::temp_dir().join(format!("sluice-rowbinary-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("history")).unwrap();
        std::fs::write(dir.join("history/things.v1.toml"), SPEC).unwrap();
        let history = History::read(&dir, &spec).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let converter = Converter::reading(&history);
        assert_eq!(
            converter.insert_statement(),
            "INSERT INTO things_versions (id, at, name, amount, score, note, rank, version) \
             FORMAT RowBinary"
        );
        let old = encoded(["7", "1500", "x", "", "0.5"]);
        let new = encoded_as(&spec, &["7", "1500", "x", "", "0.5", "hi", "5"]);
        let mut out = Vec::new();
        converter.append(&old, 9, &mut out).unwrap();
        converter.append(&new, 10, &mut out).unwrap();
        let mut expected = Vec::new();
        for (note, rank, version) in [(None, 3_u64, 9_u64), (Some("hi"), 5, 10)] {
            expected.extend(7_u64.to_le_bytes());
            expected.extend(1_u32.to_le_bytes());
            expected.extend([1, b'x', 1]);
            expected.extend(0.5_f64.to_le_bytes());
            match note {
                None => expected.push(1),
                Some(note) => {
                    expected.extend([[0, note.len() as u8].as_slice(), note.as_bytes()].concat())
                }
            }
            expected.extend(rank.to_le_bytes());
            expected.extend(version.to_le_bytes());
        }
        assert_eq!(out, expected);
        let keyed = converter.append_keyed(&old, 9, &mut out).unwrap();
        assert_eq!(
            (keyed.seconds, &keyed.key[..]),
            (1, &[KeyValue::Uint(7)][..])
        );
        let mut cut = old.clone();
        cut.push(0);
        assert_eq!(
            converter.append(&cut, 9, &mut out),
            Err("1 bytes after the record".into())
        );
        // Without the history, the earlier version's records are not this dataset's.
        assert_eq!(
            Converter::compile(&spec).append(&old, 9, &mut out),
            Err("not a record of this dataset's schema (unknown header)".to_owned())
        );
        assert_eq!(
            stored_default(spec.column("rank").unwrap()),
            Some(KeyValue::Uint(3))
        );
        assert_eq!(stored_default(spec.column("note").unwrap()), None);
    }
}
