//! Output: rows as a table, CSV or JSON Lines (columns in the order the server sent them),
//! and the human summaries of receipts and keys.

use std::fmt::Write as _;
use std::io::Write;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line, as the server sent it (fields in the columns' order).
    Jsonl,
}

/// A JSON object with its fields in the order they arrived (serde_json's `Map` sorts them).
#[derive(Debug, Clone, PartialEq)]
pub struct Record(pub Vec<(String, Value)>);

impl Record {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Record;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, Value>()? {
                    fields.push(field);
                }
                Ok(Record(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl From<&Value> for Record {
    /// From an already parsed object, its fields in their order.
    fn from(value: &Value) -> Record {
        Record(
            value
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        )
    }
}

/// A cell's text: strings as they are, `null` empty, anything else as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A cell's text on one line of a table: line breaks, tabs and other control characters
/// escaped (`\n`), so a multi-line text cell cannot break the columns.
fn table_cell(value: &Value) -> String {
    let text = cell(value);
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Writes rows as they come, page by page: CSV and JSON Lines at once, a table at
/// [`Rows::finish`] (its column widths need every row). Columns are the given ones (e.g. a
/// dataset's, in its spec's order), else the first row's, plus any a later row adds; a JSON
/// line has its fields in that order too.
pub struct Rows {
    format: Format,
    columns: Vec<String>,
    header_written: bool,
    held: Vec<Record>,
    pub count: u64,
}

impl Rows {
    pub fn new(format: Format) -> Rows {
        Rows::with_columns(format, Vec::new())
    }

    /// With these columns first (so an empty answer still has a header).
    pub fn with_columns(format: Format, columns: Vec<String>) -> Rows {
        Rows {
            format,
            columns,
            header_written: false,
            held: Vec::new(),
            count: 0,
        }
    }

    pub fn push(&mut self, out: &mut dyn Write, records: Vec<Record>) -> std::io::Result<()> {
        self.count += records.len() as u64;
        for record in &records {
            for name in record.names() {
                if !self.header_written && !self.columns.iter().any(|c| c == name) {
                    self.columns.push(name.to_owned());
                }
            }
        }
        match self.format {
            Format::Table => self.held.extend(records),
            Format::Jsonl => {
                for record in &records {
                    serde_json::to_writer(&mut *out, &self.ordered(record))?;
                    out.write_all(b"\n")?;
                }
            }
            Format::Csv if self.columns.is_empty() => {}
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(&mut *out);
                if !self.header_written {
                    csv.write_record(&self.columns)?;
                    self.header_written = true;
                }
                for record in &records {
                    csv.write_record(
                        self.columns
                            .iter()
                            .map(|c| record.get(c).map(cell).unwrap_or_default()),
                    )?;
                }
                csv.flush()?;
            }
        }
        Ok(())
    }

    /// `record`'s fields in the columns' order (any other after them, as they came).
    fn ordered(&self, record: &Record) -> Record {
        let mut fields: Vec<(String, Value)> = self
            .columns
            .iter()
            .filter_map(|c| record.get(c).map(|v| (c.clone(), v.clone())))
            .collect();
        fields.extend(
            record
                .0
                .iter()
                .filter(|(name, _)| !self.columns.contains(name))
                .cloned(),
        );
        Record(fields)
    }

    pub fn finish(mut self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Table => {
                let rows = std::mem::take(&mut self.held);
                write_table(out, &self.columns, &rows)
            }
            Format::Csv if !self.header_written && !self.columns.is_empty() => {
                let mut csv = csv::Writer::from_writer(&mut *out);
                csv.write_record(&self.columns)?;
                csv.flush()
            }
            _ => Ok(()),
        }
    }
}

/// Aligned columns; numbers (and decimal strings) right-aligned.
pub fn write_table(
    out: &mut dyn Write,
    columns: &[String],
    rows: &[Record],
) -> std::io::Result<()> {
    if columns.is_empty() {
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(c).map(table_cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| {
            rows.iter().all(|r| match r.get(&columns[i]) {
                Some(Value::Number(_)) | None | Some(Value::Null) => true,
                Some(Value::String(s)) => !s.is_empty() && s.parse::<f64>().is_ok() && s.len() < 24,
                _ => false,
            }) && !rows.is_empty()
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |texts: &[String]| {
        let mut line = String::new();
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(text.chars().count());
            if numeric[i] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(text);
            } else {
                line.push_str(text);
                if i + 1 < texts.len() {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        line.truncate(line.trim_end().len());
        line
    };
    writeln!(out, "{}", line(columns))?;
    for row in &cells {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// Bytes for people: `1.2 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 5 s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// The human summary of an upload's receipt (as `POST /csv_upload` or `GET /uploads/{id}`
/// answer it), or of its state while it runs or after it failed.
pub fn upload_summary(name: Option<&str>, body: &Value, replayed: bool) -> String {
    let mut text = String::new();
    let name = name.map(|n| format!("{n}: ")).unwrap_or_default();
    let n = |field: &str| body[field].as_u64().unwrap_or(0);
    let id = body["upload_id"].as_str().unwrap_or("?");
    let dataset = body["dataset"]
        .as_str()
        .map(|d| format!(" (dataset {d})"))
        .unwrap_or_default();
    if let Some(status @ ("in_progress" | "failed")) = body["status"].as_str() {
        let _ = writeln!(
            text,
            "{name}upload {id} {}: {} rows read, {} accepted, {} rejected, {}{}",
            status.replace('_', " "),
            n("rows_read"),
            n("accepted"),
            n("rejected"),
            bytes(n("bytes")),
            if status == "failed" { "" } else { " so far" },
        );
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            let _ = writeln!(
                text,
                "  error: {} {}",
                cell(&error["status"]),
                cell(&error["detail"])
            );
        }
        return text;
    }
    let _ = writeln!(
        text,
        "{name}upload {id}{dataset}: {} rows read, {} accepted, {} rejected ({}, {} in {})",
        n("rows_read"),
        n("accepted"),
        n("rejected"),
        body["encoding"].as_str().unwrap_or("?"),
        bytes(n("bytes")),
        duration(n("duration_ms")),
    );
    if replayed {
        let _ = writeln!(
            text,
            "  already uploaded: this is the first upload's receipt; nothing was sent again"
        );
    }
    if let Some(source) = body["source"].as_str() {
        let _ = writeln!(text, "  source: {source} (the watcher)");
    }
    let reconciliation = &body["reconciliation"];
    match reconciliation["status"].as_str() {
        Some("landed") => {
            let _ = writeln!(
                text,
                "  landed: all {} accepted rows are in ClickHouse",
                cell(&reconciliation["accepted"])
            );
        }
        Some("landing") => {
            let _ = writeln!(
                text,
                "  landing: {} of {} accepted rows are in ClickHouse so far",
                cell(&reconciliation["landed"]),
                cell(&reconciliation["accepted"])
            );
        }
        Some("unknown") => {
            let _ = writeln!(
                text,
                "  landed: unknown ({})",
                reconciliation["error"]
                    .as_str()
                    .unwrap_or("ClickHouse could not be asked")
            );
        }
        _ => {}
    }
    if let Some(rejects) = body["rejects"].as_array().filter(|r| !r.is_empty()) {
        let _ = writeln!(
            text,
            "  rejects (first {} of {}):",
            rejects.len(),
            n("rejected")
        );
        for reject in rejects.iter().take(10) {
            let _ = writeln!(
                text,
                "    line {}, {}: {}",
                cell(&reject["line"]),
                cell(&reject["column"]),
                cell(&reject["reason"])
            );
        }
        let _ = writeln!(text, "  every reject: sluice rejects {id}");
    }
    if let Some(unknown) = body["unknown_columns"].as_array().filter(|u| !u.is_empty()) {
        let names: Vec<String> = unknown.iter().map(cell).collect();
        let _ = writeln!(
            text,
            "  unused columns ({}): {}",
            n("unknown_columns_count").max(names.len() as u64),
            names.join(", ")
        );
    }
    text
}

/// Columns of `sluice keys list`.
pub const KEY_COLUMNS: [&str; 8] = [
    "id",
    "name",
    "credits",
    "revoked",
    "expires_at",
    "rate_limit",
    "created_at",
    "rotated_at",
];

/// A KeyInfo as a table row (the rate limit as `10/1s`, `(default)` when it is the
/// gateway's).
pub fn key_row(key: &Value) -> Record {
    let rate = &key["rate_limit"];
    let mut rate_text = format!(
        "{}/{}s",
        cell(&rate["requests"]),
        cell(&rate["per_seconds"])
    );
    if key["rate_limit_is_default"] == Value::Bool(true) {
        rate_text.push_str(" (default)");
    }
    Record(
        KEY_COLUMNS
            .iter()
            .map(|&c| {
                let value = match c {
                    "rate_limit" => Value::String(rate_text.clone()),
                    _ => key[c].clone(),
                };
                (c.to_owned(), value)
            })
            .collect(),
    )
}

/// One key, a field per line.
pub fn key_summary(key: &Value) -> String {
    let mut text = String::new();
    for (name, value) in key_row(key).0 {
        let _ = writeln!(text, "{name:<11} {}", cell(&value));
    }
    if let Some(revoked_at) = key["revoked_at"].as_str() {
        let _ = writeln!(text, "{:<11} {revoked_at}", "revoked_at");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(json: &str) -> Vec<Record> {
        serde_json::from_str(json).unwrap()
    }

    const PAGE: &str = r#"[{"hour":"2019-10-22T08:00:00Z","player_id":"ab","game_id":7,"ggr":"9.5","rounds":4},
                           {"hour":"2019-10-22T09:00:00Z","player_id":"cd, \"x\"","game_id":24002,"ggr":"-1","rounds":1}]"#;

    fn render(format: Format, pages: &[&str]) -> String {
        let mut out = Vec::new();
        let mut rows = Rows::new(format);
        for page in pages {
            rows.push(&mut out, records(page)).unwrap();
        }
        rows.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_keep_the_servers_field_order() {
        let text = render(Format::Jsonl, &[PAGE]);
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"hour":"2019-10-22T08:00:00Z","player_id":"ab","game_id":7,"ggr":"9.5","rounds":4}"#
        );
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn csv_has_one_header_across_pages_and_quotes_cells() {
        let text = render(Format::Csv, &[PAGE, PAGE]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "hour,player_id,game_id,ggr,rounds");
        assert_eq!(lines[2], r#"2019-10-22T09:00:00Z,"cd, ""x""",24002,-1,1"#);
        assert_eq!(lines.len(), 5);
        assert_eq!(render(Format::Csv, &["[]"]), "");
    }

    #[test]
    fn tables_align_columns_and_right_align_numbers() {
        let text = render(Format::Table, &[PAGE]);
        assert_eq!(
            text,
            "hour                  player_id  game_id  ggr  rounds\n\
             2019-10-22T08:00:00Z  ab               7  9.5       4\n\
             2019-10-22T09:00:00Z  cd, \"x\"      24002   -1       1\n"
        );
    }

    /// A page of a dataset's rows with fields sorted by name (as gateways sent them before
    /// objects kept their order), a text cell with a line break, a null.
    const ROWS_PAGE: &str = r#"[{"amount":"12.50","category":"a week\n\"five stars\"","country":"USA","created_at":"2024-01-01T00:00:01Z","id":1,"upload_id":"u1"},
                               {"amount":"0.01","category":"ok","country":null,"created_at":"2024-01-01T00:00:02Z","id":22,"upload_id":"u1"}]"#;
    const RECORDS_COLUMNS: [&str; 6] = [
        "id",
        "created_at",
        "country",
        "category",
        "amount",
        "upload_id",
    ];

    fn render_rows(format: Format, pages: &[&str]) -> String {
        let mut out = Vec::new();
        let columns = RECORDS_COLUMNS.iter().map(|&c| c.to_owned()).collect();
        let mut rows = Rows::with_columns(format, columns);
        for page in pages {
            rows.push(&mut out, records(page)).unwrap();
        }
        rows.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_datasets_rows_come_in_its_columns_order_in_every_format() {
        // The line break of a text cell is escaped, so each row stays one line.
        let table = render_rows(Format::Table, &[ROWS_PAGE]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "id  created_at            country  category              amount  upload_id",
                r#" 1  2024-01-01T00:00:01Z  USA      a week\n"five stars"   12.50  u1"#,
                "22  2024-01-01T00:00:02Z           ok                      0.01  u1",
            ]
        );
        let csv = render_rows(Format::Csv, &[ROWS_PAGE]);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("id,created_at,country,category,amount,upload_id")
        );
        assert_eq!(lines.next(), Some("1,2024-01-01T00:00:01Z,USA,\"a week"));
        let jsonl = render_rows(Format::Jsonl, &[ROWS_PAGE]);
        assert_eq!(
            jsonl.lines().nth(1),
            Some(
                r#"{"id":22,"created_at":"2024-01-01T00:00:02Z","country":null,"category":"ok","amount":"0.01","upload_id":"u1"}"#
            )
        );
        // An empty answer still has its header.
        assert_eq!(
            render_rows(Format::Csv, &["[]"]),
            "id,created_at,country,category,amount,upload_id\n"
        );
        assert_eq!(
            render_rows(Format::Table, &["[]"]),
            "id  created_at  country  category  amount  upload_id\n"
        );
    }

    #[test]
    fn a_receipt_summary_names_counts_rejects_and_landing() {
        let receipt = serde_json::json!({
            "upload_id": "u1", "encoding": "UTF-8", "rows_read": 3, "accepted": 2, "rejected": 1,
            "bytes": 2500, "duration_ms": 1200, "sha256": "ab", "unknown_columns": [],
            "rejects": [{"line": 3, "column": "user_id", "reason": "not 32 hex digits"}],
            "reconciliation": {"accepted": 2, "landed": 1, "pending": 1, "status": "landing"}
        });
        let text = upload_summary(Some("a.csv"), &receipt, false);
        assert!(
            text.starts_with(
                "a.csv: upload u1: 3 rows read, 2 accepted, 1 rejected (UTF-8, 2.5 kB in 1.2 s)"
            ),
            "{text}"
        );
        assert!(
            text.contains("line 3, user_id: not 32 hex digits"),
            "{text}"
        );
        assert!(text.contains("1 of 2 accepted rows"), "{text}");
        assert!(text.contains("sluice rejects u1"), "{text}");
        assert!(upload_summary(None, &receipt, true).contains("already uploaded"));
        let dataset = serde_json::json!({
            "upload_id": "u2", "encoding": "UTF-8", "rows_read": 3, "accepted": 3, "rejected": 0,
            "bytes": 90, "duration_ms": 8, "dataset": "records",
            "reconciliation": {"accepted": 3, "landed": null, "status": "unknown",
                "error": "the rows of dataset `records` are not counted in ClickHouse yet"}
        });
        let text = upload_summary(Some("r.csv"), &dataset, false);
        assert!(
            text.starts_with("r.csv: upload u2 (dataset records): 3 rows read, 3 accepted"),
            "{text}"
        );
        assert!(
            text.contains("landed: unknown (the rows of dataset `records` are not counted"),
            "{text}"
        );
        assert_eq!(duration(28), "28 ms");
        assert_eq!(duration(245_000), "4 min 5 s");
    }
}
