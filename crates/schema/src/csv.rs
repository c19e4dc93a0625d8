//! What every row source shares — the value parsers ([`fields`]), [`RowError`] and
//! [`HeaderError`] — and the hand-written game-round CSV mapping ([`HeaderMap`]: columns by
//! header name, each row a [`GameRound`] or a [`RowError`]).
//!
//! Rows are encoded through their dataset's plan (`crate::dataset::plan`) everywhere; the
//! hand-written mapping stays, behind feature `reference` (no service enables it), as the
//! plan's reference (a test holds the plan to its records and rejects over thousands of varied
//! rows) and as the baseline of `cargo xtask bench plan`.

use chrono::{DateTime, NaiveDateTime};
#[cfg(any(test, feature = "reference"))]
use csv_async::ByteRecord;
use serde::Serialize;

#[cfg(any(test, feature = "reference"))]
use crate::domain::{Money, PlayerId};
#[cfg(any(test, feature = "reference"))]
use crate::round::GameRound;

/// The columns a game-round export must have, in the canonical order.
#[cfg(any(test, feature = "reference"))]
pub const COLUMNS: [&str; 10] = [
    "created_timestamp",
    "game_instance_id",
    "user_id",
    "game_id",
    "real_amount_bet",
    "bonus_amount_bet",
    "real_amount_win",
    "bonus_amount_win",
    "game_name",
    "provider",
];

/// Why a header row cannot be used; nothing of the upload is produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing required column(s): {}", .0.join(", "))]
    MissingColumns(Vec<&'static str>),
    #[error("column `{0}` appears more than once")]
    DuplicateColumn(String),
    #[error("the header is not valid text")]
    NotText,
    #[error("the file is empty")]
    Empty,
}

/// A rejected row: where it is and why. Lines are 1-based, counting the header as line 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub column: Option<&'static str>,
    pub reason: String,
}

/// What is known of a row's bytes before [`HeaderMap::parse_row_into`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowBytes {
    /// Nothing: the row is searched for a NUL character.
    Unchecked,
    /// Free of NUL characters: the stream the row was read from held none up to the row's end
    /// (its source looked, once per chunk), so the row is not searched again.
    NulFree,
}

/// Positions of the required columns in a file, found from its header.
#[cfg(any(test, feature = "reference"))]
#[derive(Debug, Clone)]
pub struct HeaderMap {
    positions: [usize; COLUMNS.len()],
    unknown: Vec<String>,
    width: usize,
}

#[cfg(any(test, feature = "reference"))]
impl HeaderMap {
    /// Reads a header row. Names are trimmed, compared case-insensitively and may carry a
    /// leading byte-order mark; columns beyond the required ones are ignored and reported.
    pub fn parse(header: &ByteRecord) -> Result<HeaderMap, HeaderError> {
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(HeaderError::Empty);
        }
        let names = header
            .iter()
            .map(|raw| std::str::from_utf8(raw).map(|name| name.trim_start_matches('\u{feff}')))
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|_| HeaderError::NotText)?;
        let (positions, unknown) = column_positions(names)?;
        Ok(HeaderMap {
            positions,
            unknown,
            width: header.len(),
        })
    }

    /// Header names that are not game-round columns (ignored).
    pub fn unknown_columns(&self) -> &[String] {
        &self.unknown
    }

    /// Parses one data row found at `line`.
    pub fn parse_row(&self, record: &ByteRecord, line: u64) -> Result<GameRound, RowError> {
        let mut round = GameRound {
            created_timestamp: 0,
            game_instance_id: 0,
            user_id: PlayerId::parse("00000000000000000000000000000000").expect("a valid id"),
            game_id: 0,
            real_amount_bet: None,
            bonus_amount_bet: None,
            real_amount_win: None,
            bonus_amount_win: None,
            game_name: String::new(),
            provider: String::new(),
        };
        self.parse_row_into(record, line, &mut round, RowBytes::Unchecked)?;
        Ok(round)
    }

    /// [`parse_row`](Self::parse_row) into a round parsed before, reusing its buffers: the hot
    /// loop of an upload allocates nothing per row. After an error, `round` holds a mix of
    /// this row and the one before and must not be used. `bytes` says whether the row may
    /// hold a NUL character.
    pub fn parse_row_into(
        &self,
        record: &ByteRecord,
        line: u64,
        round: &mut GameRound,
        bytes: RowBytes,
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
        let cell = |column: usize| -> Result<&str, RowError> {
            let index = self.positions[column];
            let text = match row {
                Some(row) => record.range(index).and_then(|range| row.get(range)),
                None => std::str::from_utf8(&record[index]).ok(),
            };
            text.ok_or_else(|| RowError {
                line,
                column: Some(COLUMNS[column]),
                reason: "not valid text".to_owned(),
            })
        };
        let fail = |column: usize, reason: String| RowError {
            line,
            column: Some(COLUMNS[column]),
            reason,
        };
        let money = |column: usize| -> Result<Option<Money>, RowError> {
            fields::money(cell(column)?).map_err(|reason| fail(column, reason))
        };
        let integer = |column: usize| -> Result<i64, RowError> {
            fields::integer(cell(column)?).map_err(|reason| fail(column, reason))
        };
        round.created_timestamp = fields::timestamp(cell(0)?).map_err(|reason| fail(0, reason))?;
        round.game_instance_id = integer(1)?;
        round
            .user_id
            .assign(cell(2)?)
            .map_err(|e| fail(2, e.to_string()))?;
        round.game_id = integer(3)?;
        round.real_amount_bet = money(4)?;
        round.bonus_amount_bet = money(5)?;
        round.real_amount_win = money(6)?;
        round.bonus_amount_win = money(7)?;
        let (game_name, provider) = (cell(8)?, cell(9)?);
        // One search of the whole row for a NUL (nearly never there) instead of one per name,
        // and none when the row's source found none.
        if bytes == RowBytes::Unchecked && memchr::memchr(0, record.as_slice()).is_some() {
            fields::text(game_name).map_err(|reason| fail(8, reason))?;
            fields::text(provider).map_err(|reason| fail(9, reason))?;
        }
        round.game_name.clear();
        round.game_name.push_str(game_name);
        round.provider.clear();
        round.provider.push_str(provider);
        Ok(())
    }
}

/// Where each required column is among `names` (a header's, or a file schema's fields, in
/// order), and the names that are not game-round columns. Names are trimmed and compared
/// case-insensitively; a column named twice or missing is refused.
#[cfg(any(test, feature = "reference"))]
fn column_positions<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<([usize; COLUMNS.len()], Vec<String>), HeaderError> {
    let mut positions = [usize::MAX; COLUMNS.len()];
    let mut unknown = Vec::new();
    for (index, name) in names.into_iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(column) if positions[column] != usize::MAX => {
                return Err(HeaderError::DuplicateColumn(name));
            }
            Some(column) => positions[column] = index,
            None => unknown.push(name),
        }
    }
    let missing: Vec<&'static str> = COLUMNS
        .iter()
        .zip(positions)
        .filter(|(_, p)| *p == usize::MAX)
        .map(|(c, _)| *c)
        .collect();
    if !missing.is_empty() {
        return Err(HeaderError::MissingColumns(missing));
    }
    Ok((positions, unknown))
}

/// The parsers of single values, shared by every row source (CSV cells, JSON values, Parquet
/// fields given as text): each returns the value or the reason it was refused.
pub(crate) mod fields {
    use super::{parse_timestamp, truncate};
    #[cfg(any(test, feature = "reference"))]
    use crate::domain::Money;
    use crate::domain::{check_text, stored_seconds, trim};

    /// A money cell (the hand-written mapping's; the plan reads decimals by their scale).
    #[cfg(any(test, feature = "reference"))]
    #[inline]
    pub(crate) fn money(text: &str) -> Result<Option<Money>, String> {
        Money::parse_cell(text).map_err(|e| e.to_string())
    }

    #[inline]
    pub(crate) fn integer(text: &str) -> Result<i64, String> {
        let text = trim(text);
        match text.parse::<i64>() {
            Ok(value) if value >= 0 => Ok(value),
            _ => Err(format!(
                "`{}` is not a non-negative integer",
                truncate(text)
            )),
        }
    }

    /// A timestamp in milliseconds since the epoch, if it is one and the store can hold it.
    #[inline]
    pub(crate) fn timestamp(text: &str) -> Result<i64, String> {
        let millis = parse_timestamp(text).ok_or_else(|| {
            format!(
                "`{}` is not a timestamp like 2019-10-22 08:20:42",
                truncate(text)
            )
        })?;
        storable_millis(millis)
    }

    /// `millis` if the store can hold that moment (see [`stored_seconds`]).
    #[inline]
    pub(crate) fn storable_millis(millis: i64) -> Result<i64, String> {
        stored_seconds(millis)
            .map(|_| millis)
            .map_err(|e| e.to_string())
    }

    /// Free text (a name), as the store will hold it.
    #[inline]
    pub(crate) fn text(text: &str) -> Result<&str, String> {
        check_text(text).map_err(|e| e.to_string())
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) or RFC 3339 into milliseconds since the epoch.
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = crate::domain::trim(text);
    if let Some(millis) = parse_export_timestamp(text.as_bytes()) {
        return Some(millis);
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(naive.and_utc().timestamp_millis());
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(naive.and_utc().timestamp_millis());
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The export's own `YYYY-MM-DD HH:MM:SS` without going through a format string: this runs
/// once per row, and chrono's `parse_from_str` re-reads its format every call.
fn parse_export_timestamp(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b' ' | b'T')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        bytes[from..to].iter().try_fold(0_u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(0, 4)?).ok()?,
        number(5, 7)?,
        number(8, 10)?,
    )?;
    let moment = date.and_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)?;
    Some(moment.and_utc().timestamp_millis())
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    /// A valid row in the canonical column order.
    const GOOD_ROW: [&str; 10] = [
        "2019-10-22 08:20:42",
        "20000",
        "9ece8c4020f8aed10676cd1c56a41889",
        "24002",
        "2",
        "0",
        "0",
        "0",
        "Gonzo's Quest",
        "NetEnt",
    ];

    fn header() -> HeaderMap {
        HeaderMap::parse(&record(&COLUMNS)).unwrap()
    }

    #[test]
    fn header_is_matched_by_name_in_any_order_and_case() {
        let map = HeaderMap::parse(&record(&[
            "\u{feff}Provider",
            "GAME_NAME",
            "extra",
            "bonus_amount_win",
            "real_amount_win",
            "bonus_amount_bet",
            "real_amount_bet",
            "game_id",
            " user_id ",
            "game_instance_id",
            "created_timestamp",
        ]))
        .unwrap();
        assert_eq!(map.unknown_columns(), ["extra"]);
        let round = map
            .parse_row(
                &record(&[
                    "Play'n GO",
                    "Reactoonz",
                    "x",
                    "",
                    "NaN",
                    "0",
                    "25",
                    "25062",
                    "ef06d5cbf35386ff2203d186eeff7923",
                    "20002",
                    "2019-10-22 08:20:44",
                ]),
                2,
            )
            .unwrap();
        assert_eq!(round.provider, "Play'n GO");
        assert_eq!(round.game_name, "Reactoonz");
        assert_eq!(round.real_amount_bet, Some(Money::from_scaled(250_000)));
        assert_eq!(round.real_amount_win, None);
        assert_eq!(round.bonus_amount_win, None);
        assert_eq!(round.game_instance_id, 20002);
        assert_eq!(round.created_timestamp, 1_571_732_444_000);
    }

    #[test]
    fn header_missing_columns_are_all_named() {
        let error = HeaderMap::parse(&record(&["created_timestamp", "user_id"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing required column(s): game_instance_id, game_id, real_amount_bet, \
             bonus_amount_bet, real_amount_win, bonus_amount_win, game_name, provider"
        );
    }

    #[test]
    fn header_with_a_duplicate_column_is_refused() {
        let mut names = COLUMNS.to_vec();
        names.push("User_Id");
        assert_eq!(
            HeaderMap::parse(&record(&names)).unwrap_err(),
            HeaderError::DuplicateColumn("user_id".into())
        );
    }

    #[test]
    fn bad_rows_name_their_line_column_and_reason() {
        let map = header();
        let good = GOOD_ROW;
        assert!(map.parse_row(&record(&good), 2).is_ok());

        let mut bad = good;
        bad[4] = "two";
        let error = map.parse_row(&record(&bad), 7).unwrap_err();
        assert_eq!(error.line, 7);
        assert_eq!(error.column, Some("real_amount_bet"));
        assert_eq!(error.reason, "not a decimal number");

        let mut bad = good;
        bad[0] = "yesterday";
        let error = map.parse_row(&record(&bad), 3).unwrap_err();
        assert_eq!(error.column, Some("created_timestamp"));

        let mut bad = good;
        bad[2] = "not-hex";
        assert_eq!(
            map.parse_row(&record(&bad), 3).unwrap_err().column,
            Some("user_id")
        );

        let mut bad = good;
        bad[1] = "-4";
        assert_eq!(
            map.parse_row(&record(&bad), 3).unwrap_err().column,
            Some("game_instance_id")
        );

        let error = map.parse_row(&record(&good[..5]), 9).unwrap_err();
        assert_eq!(error.column, None);
        assert_eq!(error.reason, "row has 5 fields, the header has 10");
    }

    #[test]
    fn values_the_store_cannot_hold_are_rejected_with_their_column_never_substituted() {
        let map = header();
        let good = GOOD_ROW;
        let out_of_range =
            "out of range: the store holds 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC";
        let cases: [(usize, &str, &str); 9] = [
            (0, "1969-12-31 23:59:59", out_of_range),
            (0, "0001-01-01 00:00:00", out_of_range),
            (0, "2200-01-01 00:00:00", out_of_range),
            (0, "2106-02-07 06:28:16", out_of_range),
            (0, "2106-01-01T00:00:00Z", out_of_range),
            (
                4,
                "100000000000000",
                "out of range (at most 14 digits before the point: the store holds Decimal(18, 4))",
            ),
            (
                7,
                "-100000000000000.5",
                "out of range (at most 14 digits before the point: the store holds Decimal(18, 4))",
            ),
            (8, "Gonzo\0s Quest", "contains a NUL character"),
            (9, "\0", "contains a NUL character"),
        ];
        for (column, value, reason) in cases {
            let mut bad = good;
            bad[column] = value;
            let error = map.parse_row(&record(&bad), 5).unwrap_err();
            assert_eq!(
                (error.line, error.column, error.reason.as_str()),
                (5, Some(COLUMNS[column]), reason),
                "{value:?}"
            );
        }
        let mut edge = good;
        edge[0] = "2105-12-31 23:59:59";
        edge[4] = "99999999999999.9999";
        edge[0] = "1970-01-01 00:00:00";
        assert!(map.parse_row(&record(&edge), 5).is_ok());
        edge[0] = "2105-12-31 23:59:59";
        assert!(map.parse_row(&record(&edge), 5).is_ok());
    }

    #[test]
    fn timestamps_accept_the_export_format_and_rfc3339() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5"), Some(1500));
        assert_eq!(parse_timestamp("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(parse_timestamp("1970-01-01"), None);
        assert_eq!(
            parse_timestamp("2019-10-22 08:20:42"),
            Some(1_571_732_442_000)
        );
        assert_eq!(
            parse_timestamp("2019-10-22T08:20:42"),
            Some(1_571_732_442_000)
        );
        assert_eq!(parse_timestamp("2019-02-30 08:20:42"), None);
        assert_eq!(parse_timestamp("2019-10-22 25:20:42"), None);
        assert_eq!(parse_timestamp("2019-1a-22 08:20:42"), None);
    }
}
