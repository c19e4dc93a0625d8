//! A dataset's column plan: its [`Spec`] compiled once into what turns a row's cells into the
//! Avro record of [`super::avro::schema`] (single-object encoded), so that every row source —
//! CSV, JSON, Parquet — and every dataset share one mapping.
//!
//! Compiled means: each column is an [`Op`] chosen at start, cells are found by position (a
//! header is bound once, [`Plan::bind`]), and a record is written straight into a reused
//! buffer, field by field; no name is looked up, no JSON value built and nothing allocated per
//! row. Values are refused with the same reasons as the hand-written game-round mapping it
//! replaces (`crate::csv`), and a value the store cannot hold is a reject, never a substitute.
//!
//! A file may have been written for an earlier version of the spec ([`Plan::compile_since`]):
//! a column appended since the dataset's first recorded version, nullable or with a default,
//! may be absent from it (its header, its objects, its Parquet schema), and is then null or its
//! default in every record. Every column of the first version is required: a nullable one
//! too, so that a misspelt or forgotten header is refused rather than read as nulls (JSON, whose
//! objects have no header, has always read a missing nullable field as null).

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use chrono::{NaiveDate, NaiveDateTime};

use super::{Check, Column, Kind, Source, Spec};
use csv_async::ByteRecord;
use integer_encoding::VarInt;

use crate::csv::{fields, HeaderError, RowBytes, RowError};
use crate::domain::{parse_decimal, trim};

/// The one timestamp format read by the export's fast path (and its RFC 3339 relatives).
pub const EXPORT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// A timestamp `format` meaning integer milliseconds since the Unix epoch.
pub const EPOCH_MILLIS: &str = "epoch_ms";
/// A timestamp `format` meaning integer seconds since the Unix epoch.
pub const EPOCH_SECONDS: &str = "epoch_s";

/// What one column does with its cell.
#[derive(Debug, Clone)]
enum Op {
    /// Text as it is (a NUL is refused).
    Text,
    /// A code of a fixed length and alphabet, trimmed and written in one case.
    Code(Code),
    Int64,
    /// A non-negative integer (an Avro `long`, so at most `i64::MAX`).
    Uint64,
    Float32,
    Float64,
    /// An exact decimal, written as an integer scaled by `10^scale`.
    Decimal {
        scale: u32,
    },
    /// Milliseconds since the epoch, read in the column's format.
    Timestamp(TimeFormat),
    /// The upload the record arrived in; no cell.
    Upload,
}

#[derive(Debug, Clone, PartialEq)]
enum TimeFormat {
    /// [`EXPORT_FORMAT`], fractions, `T` and RFC 3339.
    Export,
    EpochMillis,
    EpochSeconds,
    /// Any other `chrono` format, UTC; a format without a time reads as midnight.
    Pattern(String),
}

#[derive(Debug, Clone)]
struct Planned {
    name: &'static str,
    op: Op,
    /// `Some` for a nullable column: the cells (trimmed, any case) that mean "no value".
    null_tokens: Option<Vec<String>>,
    /// `Some` for a column a file may lack (appended since the dataset's first recorded
    /// version, nullable or with a default): the datum written when it does (null or the
    /// default).
    absent: Option<Vec<u8>>,
}

/// The plan of `datasets/game_rounds.toml`, compiled once.
pub fn game_rounds() -> Arc<Plan> {
    static PLAN: OnceLock<Arc<Plan>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let spec = Spec::parse("datasets/game_rounds.toml", super::GAME_ROUNDS_TOML)
            .expect("the game_rounds spec is valid (tested)");
        Arc::new(Plan::compile(&spec))
    });
    Arc::clone(plan)
}

/// A spec compiled for encoding; see the module.
#[derive(Debug, Clone)]
pub struct Plan {
    dataset: &'static str,
    columns: Vec<Planned>,
    header: Vec<u8>,
    key: usize,
}

/// One cell of a row, as its source gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'c> {
    /// Text, read by the column's type (a CSV cell; a JSON string or number's text).
    Text(Cow<'c, str>),
    /// A moment in milliseconds since the epoch (a Parquet `TIMESTAMP`), for timestamp columns.
    Millis(i64),
    /// The file has no such field (its header, object or schema lacks the column): null or the
    /// default for a column appended since the first recorded version; for any other column
    /// the same as a missing value (`None`).
    Absent,
}

/// One encoded record: the single-object message, and where its Kafka key is in it.
#[derive(Debug, Default, Clone)]
pub struct Record {
    bytes: Vec<u8>,
    key: Range<usize>,
}

impl Record {
    pub fn new() -> Record {
        Record {
            bytes: Vec::with_capacity(256),
            key: 0..0,
        }
    }

    /// The message: header and datum.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The Kafka key: a string column's text, any other column's encoded value.
    pub fn key(&self) -> &[u8] {
        &self.bytes[self.key.clone()]
    }
}

/// The positions of a plan's columns in one file's header (or a file schema's fields).
#[derive(Debug, Clone)]
pub struct Bound {
    /// Per plan column: its index among the file's fields (`usize::MAX`: not from the file).
    positions: Vec<usize>,
    unknown: Vec<String>,
    width: usize,
}

impl Plan {
    /// Compiles `spec` (checked when it was parsed) for files holding every one of its columns:
    /// a dataset without recorded versions, or a version's own files.
    pub fn compile(spec: &Spec) -> Plan {
        Plan::compile_with(spec, |_| false)
    }

    /// Compiles `spec` for files written under any of its versions since `first`, its first
    /// recorded version (`history::first_recorded`): a column `first` lacks that is nullable
    /// or has a default may be absent from a file, and is then null or its default; every
    /// other column is required.
    pub fn compile_since(spec: &Spec, first: &Spec) -> Plan {
        Plan::compile_with(spec, |column| first.column(&column.name).is_none())
    }

    fn compile_with(spec: &Spec, appended: impl Fn(&Column) -> bool) -> Plan {
        let columns = (spec.columns.iter())
            .map(|column| {
                let mut planned = planned(column);
                if column.source == Source::File && appended(column) {
                    planned.absent = default_datum(column).ok().flatten();
                }
                planned
            })
            .collect();
        let schema = apache_avro::Schema::parse(&super::avro::schema(spec))
            .expect("a checked spec generates a valid Avro schema");
        let key = spec
            .columns
            .iter()
            .position(|c| c.name == spec.kafka_key)
            .expect("a checked spec's key is one of its columns");
        Plan {
            dataset: intern(&spec.name),
            columns,
            header: RabinFingerprintHeader::from_schema(&schema).build_header(),
            key,
        }
    }

    /// The dataset's name.
    pub fn dataset(&self) -> &'static str {
        self.dataset
    }

    /// The number of columns, file columns and others.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// The name of column `column`.
    pub fn column_name(&self, column: usize) -> &'static str {
        self.columns[column].name
    }

    /// A query's value for the column `name`, read as the column's cells are (trimmed, a
    /// code in its stored case, an integer checked), as text; for string and integer columns.
    pub fn filter_value(&self, name: &str, text: &str) -> Result<String, String> {
        let column = self
            .columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no column `{name}`"))?;
        let mut out = Vec::new();
        match column.op {
            Op::Text | Op::Code(_) => {
                let range = column
                    .op
                    .write(text, true, &mut out)?
                    .expect("strings say where");
                Ok(String::from_utf8(out[range].to_vec()).expect("written from text"))
            }
            Op::Int64 => integer(text).map(|v| v.to_string()),
            Op::Uint64 => fields::integer(text).map(|v| v.to_string()),
            _ => Err(format!("`{name}` cannot be filtered on")),
        }
    }

    /// Whether column `column` is a decimal.
    pub fn is_decimal(&self, column: usize) -> bool {
        matches!(self.columns[column].op, Op::Decimal { .. })
    }

    /// The single-object header every record starts with.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The columns read from files, in the spec's order.
    pub fn file_columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns
            .iter()
            .filter(|c| !matches!(c.op, Op::Upload))
            .map(|c| c.name)
    }

    /// Binds a header's `names` (or a file schema's fields, in order): names are trimmed,
    /// compared case-insensitively and may carry a leading byte-order mark; other names are
    /// ignored and reported; a column named twice, or missing and not appended since the first
    /// recorded version ([`compile_since`](Self::compile_since)), is refused.
    pub fn bind<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<Bound, HeaderError> {
        let mut positions = vec![usize::MAX; self.columns.len()];
        let mut unknown = Vec::new();
        let mut width = 0;
        for (index, name) in names.into_iter().enumerate() {
            width += 1;
            let name = name.trim_start_matches('\u{feff}').trim();
            match self.file_column(name) {
                Some(column) if positions[column] != usize::MAX => {
                    return Err(HeaderError::DuplicateColumn(name.to_ascii_lowercase()));
                }
                Some(column) => positions[column] = index,
                None => unknown.push(name.to_ascii_lowercase()),
            }
        }
        let missing: Vec<&'static str> = self
            .columns
            .iter()
            .zip(&positions)
            .filter(|(c, p)| !matches!(c.op, Op::Upload) && c.absent.is_none() && **p == usize::MAX)
            .map(|(c, _)| c.name)
            .collect();
        if !missing.is_empty() {
            return Err(HeaderError::MissingColumns(missing));
        }
        Ok(Bound {
            positions,
            unknown,
            width,
        })
    }

    /// Binds a CSV header row (see [`bind`](Self::bind)); its names must be text.
    pub fn bind_csv(&self, header: &ByteRecord) -> Result<Bound, HeaderError> {
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(HeaderError::Empty);
        }
        let names = header
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|_| HeaderError::NotText)?;
        self.bind(names)
    }

    /// The plan column a file's field `name` is, if any (compared in any case).
    pub(crate) fn file_column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| !matches!(c.op, Op::Upload) && c.name.eq_ignore_ascii_case(name))
    }

    /// Encodes one row found at `line` into `out`: `cell(i)` gives the value of plan column `i`
    /// (`None`: missing or null). `nul` says whether text cells may hold a NUL and must be
    /// searched. After an error `out` must not be sent.
    #[inline]
    pub fn encode<'c>(
        &self,
        line: u64,
        upload_id: &str,
        nul: bool,
        out: &mut Record,
        mut cell: impl FnMut(usize) -> Result<Option<Cell<'c>>, RowError>,
    ) -> Result<(), RowError> {
        out.bytes.clear();
        out.bytes.extend_from_slice(&self.header);
        for (index, column) in self.columns.iter().enumerate() {
            let start = out.bytes.len();
            let value = match column.op {
                Op::Upload => Some(Cell::Text(Cow::Borrowed(upload_id))),
                _ => cell(index)?,
            };
            let written = column.write(value, nul, &mut out.bytes);
            let value = written.map_err(|reason| RowError {
                line,
                column: Some(column.name),
                reason,
            })?;
            if index == self.key {
                out.key = match value {
                    Some(text) => text,
                    None => start..out.bytes.len(),
                };
            }
        }
        Ok(())
    }
}

impl Bound {
    /// Header names that are not columns of the dataset (ignored).
    pub fn unknown_columns(&self) -> &[String] {
        &self.unknown
    }

    /// The number of fields the header has.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Where plan column `column` is among the file's fields (`None`: not from the file, or
    /// absent from it).
    #[inline]
    pub fn position(&self, column: usize) -> Option<usize> {
        Some(self.positions[column]).filter(|p| *p != usize::MAX)
    }
}

/// CSV rows: a record's cells by the bound header.
impl Bound {
    /// Encodes the CSV `record` found at `line` with `plan` (the plan this was bound by).
    /// `bytes` says whether the row may hold a NUL character.
    #[inline]
    pub fn encode_csv(
        &self,
        plan: &Plan,
        record: &ByteRecord,
        line: u64,
        upload_id: &str,
        bytes: RowBytes,
        out: &mut Record,
    ) -> Result<(), RowError> {
        if record.len() != self.width {
            return Err(RowError {
                line,
                column: None,
                reason: format!(
                    "row has {} fields, the header has {}",
                    record.len(),
                    self.width
                ),
            });
        }
        // The whole row is checked as text at once (one pass instead of one per cell); a cell
        // is then valid text if it starts and ends on character boundaries. A row that is not
        // valid text is checked cell by cell, to name the column at fault.
        let row = std::str::from_utf8(record.as_slice()).ok();
        // One search of the whole row for a NUL (nearly never there) instead of one per text
        // cell, and none when the row's source found none.
        let nul = bytes == RowBytes::Unchecked && memchr::memchr(0, record.as_slice()).is_some();
        plan.encode(line, upload_id, nul, out, |column| {
            let index = self.positions[column];
            if index == usize::MAX {
                return Ok(Some(Cell::Absent));
            }
            let text = match row {
                Some(row) => record.range(index).and_then(|range| row.get(range)),
                None => std::str::from_utf8(&record[index]).ok(),
            };
            text.map(|t| Some(Cell::Text(Cow::Borrowed(t))))
                .ok_or_else(|| RowError {
                    line,
                    column: Some(plan.columns[column].name),
                    reason: "not valid text".to_owned(),
                })
        })
    }
}

impl Planned {
    /// Writes the field for `cell`; for a string, returns where its text is in `out`.
    #[inline]
    fn write(
        &self,
        cell: Option<Cell<'_>>,
        nul: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<Range<usize>>, String> {
        let cell = match cell {
            Some(Cell::Absent) => match &self.absent {
                Some(datum) => {
                    out.extend_from_slice(datum);
                    return Ok(None);
                }
                None => None,
            },
            cell => cell,
        };
        let cell = match (&self.null_tokens, cell) {
            (Some(_), None) => return Ok(write_null(out)),
            (Some(tokens), Some(Cell::Text(text))) if is_null(tokens, &text) => {
                return Ok(write_null(out));
            }
            (Some(_), Some(cell)) => {
                write_long(1, out);
                cell
            }
            (None, Some(cell)) => cell,
            (None, None) => return Err("missing or null".to_owned()),
        };
        match (cell, &self.op) {
            (Cell::Text(text), op) => op.write(&text, nul, out),
            (Cell::Millis(millis), Op::Timestamp(_)) => {
                write_long(fields::storable_millis(millis)?, out);
                Ok(None)
            }
            (Cell::Millis(_), _) => Err("a timestamp where another type is expected".to_owned()),
            (Cell::Absent, _) => unreachable!("an absent cell was resolved above"),
        }
    }
}

/// A nullable field's `null` branch.
#[inline]
fn write_null(out: &mut Vec<u8>) -> Option<Range<usize>> {
    write_long(0, out);
    None
}

/// Whether `text` is one of the `tokens` (trimmed, in any case).
#[inline]
fn is_null(tokens: &[String], text: &str) -> bool {
    let text = trim(text);
    tokens.iter().any(|t| t.eq_ignore_ascii_case(text))
}

impl Op {
    #[inline]
    fn write(
        &self,
        text: &str,
        nul: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<Range<usize>>, String> {
        match self {
            Op::Text | Op::Upload => {
                if nul {
                    fields::text(text)?;
                }
                return Ok(Some(write_string(text, out)));
            }
            Op::Code(code) => return code.write(text, out).map(Some),
            Op::Int64 => write_long(integer(text)?, out),
            Op::Uint64 => write_long(fields::integer(text)?, out),
            Op::Float32 => out.extend_from_slice(&float::<f32>(text)?.to_le_bytes()),
            Op::Float64 => out.extend_from_slice(&float::<f64>(text)?.to_le_bytes()),
            Op::Decimal { scale } => {
                let units = parse_decimal(trim(text), *scale).map_err(|e| e.to_string())?;
                write_long(units, out);
            }
            Op::Timestamp(format) => write_long(format.millis(text)?, out),
        }
        Ok(None)
    }
}

impl TimeFormat {
    fn of(format: Option<&str>) -> TimeFormat {
        match format {
            None | Some(EXPORT_FORMAT) => TimeFormat::Export,
            Some(EPOCH_MILLIS) => TimeFormat::EpochMillis,
            Some(EPOCH_SECONDS) => TimeFormat::EpochSeconds,
            Some(pattern) => TimeFormat::Pattern(pattern.to_owned()),
        }
    }

    #[inline]
    fn millis(&self, text: &str) -> Result<i64, String> {
        let millis = match self {
            TimeFormat::Export => return fields::timestamp(text),
            TimeFormat::EpochMillis => integer(text).ok(),
            TimeFormat::EpochSeconds => integer(text).ok().and_then(|s| s.checked_mul(1000)),
            TimeFormat::Pattern(pattern) => {
                let text = trim(text);
                NaiveDateTime::parse_from_str(text, pattern)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(text, pattern)
                            .map(|d| d.and_time(Default::default()))
                    })
                    .ok()
                    .map(|t| t.and_utc().timestamp_millis())
            }
        };
        let millis = millis.ok_or_else(|| {
            let expected = match self {
                TimeFormat::EpochMillis => "milliseconds since the epoch".to_owned(),
                TimeFormat::EpochSeconds => "seconds since the epoch".to_owned(),
                TimeFormat::Pattern(pattern) => format!("the format `{pattern}`"),
                TimeFormat::Export => unreachable!("returned above"),
            };
            format!("`{}` is not a timestamp in {expected}", short(text))
        })?;
        fields::storable_millis(millis)
    }
}

fn planned(column: &Column) -> Planned {
    let op = match (column.source, column.kind) {
        (Source::Upload, _) => Op::Upload,
        (Source::File, Kind::String) if column.check == Some(Check::Hex32) => Op::Code(Code::Hex32),
        (Source::File, Kind::String) if column.check == Some(Check::Alpha3) => {
            Op::Code(Code::Alpha3)
        }
        (Source::File, Kind::String) => Op::Text,
        (Source::File, Kind::Int64) => Op::Int64,
        (Source::File, Kind::Uint64) => Op::Uint64,
        (Source::File, Kind::Float32) => Op::Float32,
        (Source::File, Kind::Float64) => Op::Float64,
        (Source::File, Kind::Decimal) => Op::Decimal {
            scale: column.scale.unwrap_or(0),
        },
        (Source::File, Kind::Timestamp) => Op::Timestamp(TimeFormat::of(column.format.as_deref())),
    };
    Planned {
        name: intern(&column.name),
        op,
        null_tokens: column.nullable.then(|| column.null_tokens.clone()),
        absent: None,
    }
}

/// The Avro datum of the value a record written before `column` existed reads as (the
/// field's default): null for a nullable column, its `default` read like one of its cells,
/// nothing for a column with neither. An error says why the default is not a value of it.
pub fn default_datum(column: &Column) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    match &column.default {
        _ if column.nullable => write_null(&mut out),
        Some(default) => planned(column).op.write(default, true, &mut out)?,
        None => return Ok(None),
    };
    Ok(Some(out))
}

/// `name` as a `&'static str`, leaked once per distinct name: rejects name their column as a
/// `&'static str`, and a process compiles its few specs once.
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    match names.get(name) {
        Some(interned) => interned,
        None => {
            let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.insert(interned);
            interned
        }
    }
}

#[inline]
fn integer(text: &str) -> Result<i64, String> {
    let text = trim(text);
    text.parse::<i64>()
        .map_err(|_| format!("`{}` is not an integer", short(text)))
}

#[inline]
fn float<F: std::str::FromStr + Into<f64> + Copy>(text: &str) -> Result<F, String> {
    let text = trim(text);
    match text.parse::<F>() {
        Ok(value) if value.into().is_finite() => Ok(value),
        _ => Err(format!("`{}` is not a finite number", short(text))),
    }
}

/// A string check: a code of a fixed length and alphabet, stored in one case.
#[derive(Debug, Clone, Copy)]
enum Code {
    /// 32 hexadecimal characters, stored in lower case.
    Hex32,
    /// 3 letters, stored in upper case.
    Alpha3,
}

impl Code {
    /// `text`, trimmed, as an Avro `string` in the stored case; returns where its text is.
    #[inline]
    fn write(self, text: &str, out: &mut Vec<u8>) -> Result<Range<usize>, String> {
        let text = trim(text).as_bytes();
        let (length, valid, what) = match self {
            Code::Hex32 => (
                32,
                text.iter().all(u8::is_ascii_hexdigit),
                "32 hexadecimal characters",
            ),
            Code::Alpha3 => (3, text.iter().all(u8::is_ascii_alphabetic), "3 letters"),
        };
        if text.len() != length || !valid {
            return Err(format!("not {what}"));
        }
        write_long(length as i64, out);
        let start = out.len();
        out.extend_from_slice(text);
        match self {
            Code::Hex32 => out[start..].make_ascii_lowercase(),
            Code::Alpha3 => out[start..].make_ascii_uppercase(),
        }
        Ok(start..out.len())
    }
}

/// An Avro `string`; returns where its text is in `out`.
#[inline]
fn write_string(value: &str, out: &mut Vec<u8>) -> Range<usize> {
    write_long(value.len() as i64, out);
    let start = out.len();
    out.extend_from_slice(value.as_bytes());
    start..out.len()
}

fn short(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Whether `format` is a timestamp format a spec may declare: [`EPOCH_MILLIS`],
/// [`EPOCH_SECONDS`] or a `chrono` format without errors.
pub(super) fn valid_time_format(format: &str) -> bool {
    use chrono::format::{Item, StrftimeItems};
    matches!(format, EPOCH_MILLIS | EPOCH_SECONDS)
        || StrftimeItems::new(format).all(|item| !matches!(item, Item::Error))
}

/// `datasets/records.toml` — its first recorded version — with `note` (a nullable string)
/// and `rank` (a `uint64`, default 3) appended, compiled to read the files of either version.
#[cfg(test)]
pub(super) fn evolved_records() -> (Spec, Plan) {
    let first = include_str!("../../../../datasets/records.toml");
    let at = first
        .find("[[endpoints]]")
        .expect("records.toml has endpoints");
    let appended = "[[columns]]\nname = \"note\"\ntype = \"string\"\nnullable = true\n\n\
                    [[columns]]\nname = \"rank\"\ntype = \"uint64\"\ndefault = 3\n\n";
    let text = format!("{}{appended}{}", &first[..at], &first[at..]);
    let spec = Spec::parse("records.toml", &text).unwrap();
    let first = Spec::parse("history/records.v1.toml", first).unwrap();
    let plan = Plan::compile_since(&spec, &first);
    (spec, plan)
}

/// `record`'s fields, decoded by apache-avro under `spec`'s schema.
#[cfg(test)]
pub(super) fn decode(spec: &Spec, record: &Record) -> Vec<apache_avro::types::Value> {
    use apache_avro::types::Value;
    let schema = apache_avro::Schema::parse(&super::avro::schema(spec)).unwrap();
    let header = Plan::compile(spec).header().len();
    let mut datum = &record.bytes()[header..];
    let Value::Record(fields) = apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap()
    else {
        panic!("a record");
    };
    assert!(datum.is_empty(), "the whole datum is read");
    fields.into_iter().map(|(_, v)| v).collect()
}

/// An Avro `long`: a zigzag varint (integer-encoding's `i64` encoding).
#[inline]
pub(crate) fn write_long(value: i64, out: &mut Vec<u8>) {
    let mut buffer = [0_u8; 10];
    let length = value.encode_var(&mut buffer);
    out.extend_from_slice(&buffer[..length]);
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;

    use super::super::GAME_ROUNDS_TOML;
    use super::*;
    use crate::avro::GameRoundCodec;
    use crate::csv::{HeaderMap, COLUMNS};

    fn game_rounds() -> Plan {
        Plan::compile(&Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML).unwrap())
    }

    /// Cells for each column of [`COLUMNS`], good and bad.
    const CELLS: [&[&str]; 10] = [
        &[
            "2019-10-22 08:20:42",
            "2019-10-22T08:20:42.5",
            "1970-01-01T01:00:01+01:00",
            " 2020-02-29 23:59:59 ",
            "1969-12-31 23:59:59",
            "2019-02-30 08:20:42",
            "yesterday",
            "",
        ],
        &[
            "20000",
            "0",
            " 9223372036854775807",
            "-4",
            "1.5",
            "9223372036854775808",
            "",
        ],
        &[
            "9ece8c4020f8aed10676cd1c56a41889",
            "9ECE8C4020F8AED10676CD1C56A41889",
            " ef06d5cbf35386ff2203d186eeff7923 ",
            "not-hex",
            "",
            "9ece8c4020f8aed10676cd1c56a4188",
        ],
        &["24002", "1", "-1", "x"],
        &[
            "2",
            "",
            "NaN",
            "nan",
            " 12.5 ",
            "-0.0001",
            "99999999999999.9999",
            "100000000000000",
            "0.00001",
            "two",
            ".",
        ],
        &["0", "", "NAN", "1.25"],
        &["0", "", "3.5", "-100000000000000.5"],
        &["0", "", "7"],
        &[
            "Gonzo's Quest",
            "",
            " Play'n GO ",
            "Gonzo\0s Quest",
            "Ünïcödé",
        ],
        &["NetEnt", "Play'n GO", "\0"],
    ];

    /// A pseudo-random choice of `n` (a fixed linear congruential sequence).
    fn pick(seed: &mut u64, n: usize) -> usize {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) % n as u64) as usize
    }

    #[test]
    fn the_game_rounds_plan_writes_the_hand_written_records_and_rejects() {
        let plan = game_rounds();
        // Columns in another order, with one the dataset does not have.
        let order = [9, 2, 0, 7, 5, 1, 3, 4, 6, 8];
        let mut names: Vec<&str> = order.iter().map(|c| COLUMNS[*c]).collect();
        names.insert(4, "extra");
        let header = ByteRecord::from(names.clone());
        let hand = HeaderMap::parse(&header).unwrap();
        let bound = plan.bind_csv(&header).unwrap();
        assert_eq!(bound.unknown_columns(), ["extra"]);
        let codec = GameRoundCodec::get();
        let (mut seed, mut accepted, mut rejected) = (7_u64, 0, 0);
        let mut record = Record::new();
        for line in 2..20_000_u64 {
            // Mostly good cells (the first of each list), so that rows get through.
            let mut cells: Vec<&str> = order
                .iter()
                .map(|c| {
                    let choices = CELLS[*c];
                    if pick(&mut seed, 4) == 0 {
                        choices[pick(&mut seed, choices.len())]
                    } else {
                        choices[0]
                    }
                })
                .collect();
            cells.insert(4, "x");
            let row = ByteRecord::from(cells.clone());
            for bytes in [RowBytes::Unchecked, RowBytes::NulFree] {
                let theirs = hand.parse_row(&row, line);
                let ours = bound.encode_csv(&plan, &row, line, "u-1", bytes, &mut record);
                match (theirs, ours) {
                    (Ok(round), Ok(())) => {
                        let mut expected = Vec::new();
                        codec.encode(&round, "u-1", &mut expected);
                        assert_eq!(record.bytes(), expected, "{cells:?}");
                        assert_eq!(record.key(), round.user_id.as_str().as_bytes());
                        accepted += 1;
                    }
                    (Err(theirs), Err(ours)) => {
                        assert_eq!(
                            (theirs.line, theirs.column),
                            (ours.line, ours.column),
                            "{cells:?}"
                        );
                        if ours.column != Some("user_id") {
                            assert_eq!(theirs.reason, ours.reason, "{cells:?}");
                        }
                        rejected += 1;
                    }
                    // A NUL the source did not look for is not searched, like the hand-written
                    // mapping does with a round it reuses.
                    (Err(theirs), Ok(())) if bytes == RowBytes::NulFree => {
                        assert_eq!(theirs.reason, "contains a NUL character");
                    }
                    (theirs, ours) => panic!("{cells:?}: {theirs:?} against {ours:?}"),
                }
            }
        }
        assert!(
            accepted > 5_000 && rejected > 5_000,
            "{accepted} {rejected}"
        );
        let short = ByteRecord::from(vec!["1"; 3]);
        let error = bound.encode_csv(&plan, &short, 9, "u", RowBytes::Unchecked, &mut record);
        assert_eq!(
            error.unwrap_err().reason,
            "row has 3 fields, the header has 11"
        );
    }

    const OTHER: &str = r#"
name = "other"
identity = ["id"]
kafka_key = "id"
time = "at"
[avro]
name = "Other"
namespace = "test"
[[columns]]
name = "id"
type = "int64"
[[columns]]
name = "at"
type = "timestamp"
format = "epoch_ms"
[[columns]]
name = "day"
type = "timestamp"
format = "%d/%m/%Y"
nullable = true
null_tokens = ["-"]
[[columns]]
name = "rating"
type = "float32"
[[columns]]
name = "share"
type = "float64"
nullable = true
[[columns]]
name = "amount"
type = "decimal"
scale = 2
[[columns]]
name = "note"
type = "string"
nullable = true
null_tokens = ["", "n/a"]
"#;

    fn other() -> (Spec, Plan) {
        let spec = Spec::parse("other.toml", OTHER).unwrap();
        let plan = Plan::compile(&spec);
        (spec, plan)
    }

    /// Encodes `cells` (in the spec's order, `None` missing) and decodes the datum with
    /// apache-avro under the generated schema.
    fn round_trip(cells: &[Option<&str>]) -> Result<Vec<Value>, RowError> {
        let (spec, plan) = other();
        round_trip_of(&spec, &plan, cells)
    }

    fn round_trip_of(
        spec: &Spec,
        plan: &Plan,
        cells: &[Option<&str>],
    ) -> Result<Vec<Value>, RowError> {
        let mut record = Record::new();
        plan.encode(3, "u", true, &mut record, |c| {
            Ok(cells[c].map(|t| Cell::Text(Cow::Borrowed(t))))
        })?;
        Ok(decode(spec, &record))
    }

    #[test]
    fn every_type_is_written_as_its_avro_field() {
        let values = round_trip(&[
            Some("-42"),
            Some("1571732442123"),
            Some("22/10/2019"),
            Some(" 4.5"),
            Some("0.25"),
            Some("-12.5"),
            Some("multi\nline"),
        ])
        .unwrap();
        let union = |v: Value| Value::Union(1, Box::new(v));
        assert_eq!(
            values,
            [
                Value::Long(-42),
                Value::Long(1_571_732_442_123),
                union(Value::Long(1_571_702_400_000)),
                Value::Float(4.5),
                union(Value::Double(0.25)),
                Value::Long(-1250),
                union(Value::String("multi\nline".into())),
            ]
        );
        let values = round_trip(&[
            Some("1"),
            Some("0"),
            Some(" - "),
            Some("1"),
            None,
            Some("0"),
            Some("N/A"),
        ])
        .unwrap();
        let null = Value::Union(0, Box::new(Value::Null));
        assert_eq!([&values[2], &values[4], &values[6]], [&null, &null, &null]);
    }

    #[test]
    fn a_value_the_store_cannot_hold_is_a_reject_naming_its_column() {
        let good = [Some("1"), Some("0"), None, Some("1"), None, Some("0"), None];
        let cases: [(usize, Option<&str>, &str); 8] = [
            (0, Some("1.0"), "`1.0` is not an integer"),
            (0, None, "missing or null"),
            (
                1,
                Some("-1"),
                "out of range: the store holds 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC",
            ),
            (
                1,
                Some("yesterday"),
                "`yesterday` is not a timestamp in milliseconds since the epoch",
            ),
            (
                2,
                Some("2019-10-22"),
                "`2019-10-22` is not a timestamp in the format `%d/%m/%Y`",
            ),
            (3, Some("NaN"), "`NaN` is not a finite number"),
            (
                5,
                Some("10000000000000000"),
                "out of range (at most 16 digits before the point: the store holds Decimal(18, 2))",
            ),
            (5, Some("0.001"), "more than 2 decimal places"),
        ];
        let (spec, _) = other();
        for (column, cell, reason) in cases {
            let mut cells = good;
            cells[column] = cell;
            let error = round_trip(&cells).unwrap_err();
            let expected = (3, Some(spec.columns[column].name.as_str()), reason);
            assert_eq!((error.line, error.column, error.reason.as_str()), expected);
        }
    }

    #[test]
    fn a_header_missing_columns_names_them_all_and_a_column_twice_is_refused() {
        let (_, plan) = other();
        let error = plan.bind(["ID", "note", "at"]).unwrap_err();
        assert_eq!(
            error,
            HeaderError::MissingColumns(vec!["day", "rating", "share", "amount"])
        );
        let error = plan.bind(["\u{feff}id", " Id "]).unwrap_err();
        assert_eq!(error, HeaderError::DuplicateColumn("id".into()));
        let names = ["amount", "share", "rating", "day", "at", "note", "id"];
        let bound = plan.bind(names).unwrap();
        assert_eq!(bound.position(0), Some(6));
        assert_eq!(
            plan.file_columns().collect::<Vec<_>>(),
            ["id", "at", "day", "rating", "share", "amount", "note"]
        );
    }

    #[test]
    fn a_csv_file_of_an_earlier_version_reads_the_appended_columns_as_null_or_default() {
        let (spec, plan) = evolved_records();
        let first = ["id", "created_at", "country", "category", "amount"];
        let row = ["42", "2024-01-02 03:04:05", "usa", "Books", "12.5"];
        let encode = |names: &[&str], cells: &[&str]| {
            let bound = plan.bind_csv(&ByteRecord::from(names.to_vec())).unwrap();
            let mut record = Record::new();
            let row = ByteRecord::from(cells.to_vec());
            bound
                .encode_csv(&plan, &row, 2, "u", RowBytes::Unchecked, &mut record)
                .unwrap();
            decode(&spec, &record)
        };
        let values = encode(&first, &row);
        assert_eq!(
            values[..2],
            [Value::Long(42), Value::Long(1_704_164_645_000)]
        );
        assert_eq!(
            values[6..],
            [Value::Union(0, Box::new(Value::Null)), Value::Long(3)]
        );
        // One appended column there, the other not; then both, in another order.
        let values = encode(
            &[&first[..], &["rank"]].concat(),
            &[&row[..], &["7"]].concat(),
        );
        assert_eq!(
            values[6..],
            [Value::Union(0, Box::new(Value::Null)), Value::Long(7)]
        );
        let names = [&["Rank", "note"], &first[..]].concat();
        let values = encode(&names, &[&["8", "hi"], &row[..]].concat());
        let note = Value::Union(1, Box::new(Value::String("hi".into())));
        assert_eq!(values[6..], [note, Value::Long(8)]);

        // A column of the first version is still required; so is every column of a plan
        // compiled without its history.
        let error = plan
            .bind(["id", "created_at", "country", "amount"])
            .unwrap_err();
        assert_eq!(error, HeaderError::MissingColumns(vec!["category"]));
        let error = Plan::compile(&spec).bind(first).unwrap_err();
        assert_eq!(error, HeaderError::MissingColumns(vec!["note", "rank"]));
    }

    #[test]
    fn a_nullable_column_of_the_first_version_stays_required() {
        let (spec, _) = other();
        let plan = Plan::compile_since(&spec, &spec);
        let names = ["id", "at", "day", "rating", "share", "amount"];
        let error = plan.bind(names).unwrap_err();
        assert_eq!(error, HeaderError::MissingColumns(vec!["note"]));
    }

    fn shipped(name: &str) -> (Spec, Plan) {
        let path = format!("{}/../../datasets/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let spec = Spec::read(std::path::Path::new(&path)).unwrap();
        let plan = Plan::compile(&spec);
        (spec, plan)
    }

    #[test]
    fn the_shipped_specs_encode_their_rows() {
        let (spec, plan) = shipped("amazon_reviews");
        let cells = [
            Some("4.0"),
            Some("Great"),
            Some("line one\nline \"two\""),
            Some("B00X"),
            Some("A1"),
            Some("1546300800000"),
        ];
        let values = round_trip_of(&spec, &plan, &cells).unwrap();
        let text = |t: &str| Value::String(t.into());
        assert_eq!(
            values,
            [
                Value::Float(4.0),
                text("Great"),
                text("line one\nline \"two\""),
                text("B00X"),
                text("A1"),
                Value::Long(1_546_300_800_000),
                text("u")
            ]
        );

        let (spec, plan) = shipped("records");
        let cells = [
            Some("42"),
            Some("2024-01-02 03:04:05"),
            Some(" usa "),
            Some("Books"),
            Some("12.5"),
        ];
        let values = round_trip_of(&spec, &plan, &cells).unwrap();
        assert_eq!(
            values,
            [
                Value::Long(42),
                Value::Long(1_704_164_645_000),
                text("USA"),
                text("Books"),
                Value::Long(1250),
                text("u")
            ]
        );
        let mut cells = cells;
        cells[2] = Some("US");
        let error = round_trip_of(&spec, &plan, &cells).unwrap_err();
        assert_eq!(
            (error.column, error.reason.as_str()),
            (Some("country"), "not 3 letters")
        );

        let (spec, plan) = shipped("events");
        let cells = [
            Some("e-1"),
            Some("signup"),
            Some("2024-01-02 03:04:05"),
            Some("u-9"),
            Some(""),
        ];
        let values = round_trip_of(&spec, &plan, &cells).unwrap();
        assert_eq!(values[4], Value::Union(0, Box::new(Value::Null)));
    }
}
