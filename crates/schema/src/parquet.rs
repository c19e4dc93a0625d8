//! Parquet mapping: columns are found by name (case-insensitive, like a CSV header) in the
//! file's schema, and each row becomes a [`GameRound`] or a [`RowError`] naming its row number
//! (1-based), column and reason, with the same value parsers as the CSV mapping.
//!
//! Text, integer and `DECIMAL` values are read exactly (a decimal from its unscaled integer
//! and scale); timestamps may be text or `TIMESTAMP` (milli- or microseconds). Money stored as
//! a floating-point number is refused per row: a float cannot say which decimal it meant.

use std::borrow::Cow;

use parquet::data_type::Decimal;
use parquet::record::{Field, Row};
use parquet::schema::types::SchemaDescriptor;

use crate::csv::{column_positions, fields, HeaderError, RowError, COLUMNS};
use crate::round::GameRound;

/// Positions of the required columns among a file's top-level fields.
#[derive(Debug, Clone)]
pub struct ParquetColumns {
    positions: [usize; COLUMNS.len()],
    unknown: Vec<String>,
}

impl ParquetColumns {
    /// Finds the required columns in a file's schema; extra columns are ignored and reported.
    pub fn from_schema(schema: &SchemaDescriptor) -> Result<ParquetColumns, HeaderError> {
        let fields = schema.root_schema().get_fields();
        let (positions, unknown) = column_positions(fields.iter().map(|field| field.name()))?;
        Ok(ParquetColumns { positions, unknown })
    }

    /// Column names that are not game-round columns (ignored).
    pub fn unknown_columns(&self) -> &[String] {
        &self.unknown
    }

    /// Parses row number `record` (1-based).
    pub fn parse_row(&self, row: &Row, record: u64) -> Result<GameRound, RowError> {
        let values: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
        let fail = |column: usize, reason: String| RowError {
            line: record,
            column: Some(COLUMNS[column]),
            reason,
        };
        let text = |column: usize| -> Result<Option<Cow<'_, str>>, RowError> {
            match values.get(self.positions[column]) {
                Some(field) => field_text(field).map_err(|reason| fail(column, reason)),
                None => Err(fail(column, "missing from the row".to_owned())),
            }
        };
        let required = |column: usize| -> Result<Cow<'_, str>, RowError> {
            text(column)?.ok_or_else(|| fail(column, "missing or null".to_owned()))
        };
        let money = |column: usize| -> Result<_, RowError> {
            if let Some(Field::Float(_) | Field::Double(_)) = values.get(self.positions[column]) {
                return Err(fail(
                    column,
                    "a floating-point amount is not exact; store DECIMAL or text".to_owned(),
                ));
            }
            match text(column)? {
                Some(text) => fields::money(&text).map_err(|reason| fail(column, reason)),
                None => Ok(None),
            }
        };
        let integer = |column: usize| -> Result<i64, RowError> {
            fields::integer(&required(column)?).map_err(|reason| fail(column, reason))
        };
        let created_timestamp = match values.get(self.positions[0]) {
            Some(Field::TimestampMillis(millis)) => fields::storable_millis(*millis),
            Some(Field::TimestampMicros(micros)) => {
                fields::storable_millis(micros.div_euclid(1000))
            }
            _ => fields::timestamp(&required(0)?),
        }
        .map_err(|reason| fail(0, reason))?;
        let text = |column: usize| -> Result<String, RowError> {
            let text = required(column)?;
            fields::text(&text).map_err(|reason| fail(column, reason))?;
            Ok(text.into_owned())
        };
        Ok(GameRound {
            created_timestamp,
            game_instance_id: integer(1)?,
            user_id: fields::player(&required(2)?).map_err(|reason| fail(2, reason))?,
            game_id: integer(3)?,
            real_amount_bet: money(4)?,
            bonus_amount_bet: money(5)?,
            real_amount_win: money(6)?,
            bonus_amount_win: money(7)?,
            game_name: text(8)?,
            provider: text(9)?,
        })
    }
}

/// A scalar field as the text a CSV cell would hold; `None` for null.
fn field_text(field: &Field) -> Result<Option<Cow<'_, str>>, String> {
    Ok(Some(match field {
        Field::Null => return Ok(None),
        Field::Str(text) => Cow::Borrowed(text.as_str()),
        Field::Bytes(bytes) => Cow::Borrowed(
            std::str::from_utf8(bytes.data()).map_err(|_| "not valid text".to_owned())?,
        ),
        Field::Byte(n) => Cow::Owned(n.to_string()),
        Field::Short(n) => Cow::Owned(n.to_string()),
        Field::Int(n) => Cow::Owned(n.to_string()),
        Field::Long(n) => Cow::Owned(n.to_string()),
        Field::UByte(n) => Cow::Owned(n.to_string()),
        Field::UShort(n) => Cow::Owned(n.to_string()),
        Field::UInt(n) => Cow::Owned(n.to_string()),
        Field::ULong(n) => Cow::Owned(n.to_string()),
        Field::Decimal(decimal) => Cow::Owned(decimal_text(decimal)?),
        other => return Err(format!("unsupported Parquet value `{other}`")),
    }))
}

/// A `DECIMAL` as exact text: its unscaled big-endian two's-complement integer and its scale.
fn decimal_text(decimal: &Decimal) -> Result<String, String> {
    let bytes = decimal.data();
    if bytes.is_empty() || bytes.len() > 16 {
        return Err("decimal out of range".to_owned());
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(wide);
    let scale =
        usize::try_from(decimal.scale()).map_err(|_| "negative decimal scale".to_owned())?;
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    Ok(if scale == 0 {
        format!("{sign}{digits}")
    } else {
        let digits = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        format!("{sign}{whole}.{fraction}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_text() {
        let cases = [
            (Decimal::from_i32(12_345, 9, 4), "1.2345"),
            (Decimal::from_i32(-5, 9, 2), "-0.05"),
            (Decimal::from_i64(250, 18, 0), "250"),
            (Decimal::from_bytes(vec![0xFF, 0x38].into(), 5, 1), "-20.0"),
        ];
        for (decimal, text) in cases {
            assert_eq!(decimal_text(&decimal).unwrap(), text);
        }
    }

    fn row(timestamp: Field, bet: Field, provider: &str) -> Row {
        let values = [
            timestamp,
            Field::Long(20_000),
            Field::Str("9ece8c4020f8aed10676cd1c56a41889".into()),
            Field::Int(24_002),
            bet,
            Field::Null,
            Field::Str("0".into()),
            Field::Null,
            Field::Str("Reactoonz".into()),
            Field::Str(provider.into()),
        ];
        Row::new(
            COLUMNS
                .iter()
                .map(|c| (*c).to_owned())
                .zip(values)
                .collect(),
        )
    }

    #[test]
    fn values_the_store_cannot_hold_are_rejected_with_their_column() {
        let columns = ParquetColumns {
            positions: std::array::from_fn(|i| i),
            unknown: Vec::new(),
        };
        let good = Field::TimestampMillis(1_571_732_442_000);
        let bet = || Field::Str("2.5".into());
        assert!(columns
            .parse_row(&row(good.clone(), bet(), "NetEnt"), 1)
            .is_ok());
        let out_of_range =
            "out of range: the store holds 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC";
        let cases = [
            (
                row(Field::TimestampMillis(-1), bet(), "NetEnt"),
                "created_timestamp",
                out_of_range,
            ),
            (
                row(
                    Field::TimestampMicros(4_291_747_200_000_000),
                    bet(),
                    "NetEnt",
                ),
                "created_timestamp",
                out_of_range,
            ),
            (
                row(Field::Str("2200-01-01 00:00:00".into()), bet(), "NetEnt"),
                "created_timestamp",
                out_of_range,
            ),
            (
                row(
                    good.clone(),
                    Field::Decimal(Decimal::from_i64(i64::MAX, 18, 4)),
                    "NetEnt",
                ),
                "real_amount_bet",
                "out of range (at most 14 digits before the point: the store holds Decimal(18, 4))",
            ),
            (
                row(good.clone(), bet(), "Net\0Ent"),
                "provider",
                "contains a NUL character",
            ),
        ];
        for (row, column, reason) in cases {
            let error = columns.parse_row(&row, 3).unwrap_err();
            assert_eq!(
                (error.line, error.column, error.reason.as_str()),
                (3, Some(column), reason)
            );
        }
    }
}
