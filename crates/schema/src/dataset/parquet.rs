//! Parquet rows through a [`Plan`]: columns are found by name in the file's schema (like a CSV
//! header's, [`Plan::bind`]; a column appended since the first recorded version may be absent,
//! and is then null or its default), and each row becomes a record or a [`RowError`] naming its
//! row number (1-based), column and reason.
//!
//! Text, integer and `DECIMAL` values are read exactly (a decimal from its unscaled integer
//! and scale); timestamps may be text or `TIMESTAMP` (milli- or microseconds). A decimal column
//! stored as a floating-point number is refused per row: a float cannot say which decimal it
//! meant.

use std::borrow::Cow;

use parquet::data_type::Decimal;
use parquet::record::{Field, Row};
use parquet::schema::types::SchemaDescriptor;

use super::plan::{Bound, Cell, Plan, Record};
use crate::csv::{HeaderError, RowError};

impl Plan {
    /// Binds a Parquet file's top-level fields; extra fields are ignored and reported.
    pub fn bind_parquet(&self, schema: &SchemaDescriptor) -> Result<Bound, HeaderError> {
        let fields = schema.root_schema().get_fields();
        self.bind(fields.iter().map(|field| field.name()))
    }
}

impl Bound {
    /// Encodes row number `record` (1-based) of a file bound by `plan`.
    pub fn encode_parquet(
        &self,
        plan: &Plan,
        row: &Row,
        record: u64,
        upload_id: &str,
        out: &mut Record,
    ) -> Result<(), RowError> {
        let values: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
        plan.encode(record, upload_id, true, out, |column| {
            let fail = |reason: String| RowError {
                line: record,
                column: Some(plan.column_name(column)),
                reason,
            };
            let Some(position) = self.position(column) else {
                return Ok(Some(Cell::Absent));
            };
            match values.get(position) {
                None => Err(fail("missing from the row".to_owned())),
                Some(Field::TimestampMillis(millis)) => Ok(Some(Cell::Millis(*millis))),
                Some(Field::TimestampMicros(micros)) => {
                    Ok(Some(Cell::Millis(micros.div_euclid(1000))))
                }
                Some(Field::Float(_) | Field::Double(_)) if plan.is_decimal(column) => Err(fail(
                    "a floating-point amount is not exact; store DECIMAL or text".to_owned(),
                )),
                Some(field) => field_text(field).map(|t| t.map(Cell::Text)).map_err(fail),
            }
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
        // The shortest text that reads back as the same number.
        Field::Float(x) => Cow::Owned(x.to_string()),
        Field::Double(x) => Cow::Owned(x.to_string()),
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
    use super::super::plan;
    use super::*;
    use crate::avro::GameRoundCodec;
    use crate::csv::COLUMNS;
    use crate::domain::Money;

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

    /// A row's reject: its column and reason.
    type Reject = (Option<&'static str>, String);

    /// The created timestamp and the real bet of `row`, or its reject.
    fn parse(row: &Row) -> Result<(i64, Option<Money>), Reject> {
        let plan = plan::game_rounds();
        let bound = plan.bind(COLUMNS).unwrap();
        let mut out = Record::new();
        match bound.encode_parquet(&plan, row, 3, "u-1", &mut out) {
            Ok(()) => {
                let round = GameRoundCodec::get().decode(out.bytes()).unwrap().round;
                Ok((round.created_timestamp, round.real_amount_bet))
            }
            Err(error) => {
                assert_eq!(error.line, 3);
                Err((error.column, error.reason))
            }
        }
    }

    #[test]
    fn timestamps_and_decimals_are_read_exactly() {
        let millis = 1_571_732_442_000;
        let good = || Field::TimestampMillis(millis);
        let bet = || Field::Str("2.5".into());
        let cases = [
            (row(good(), bet(), "NetEnt"), (millis, Some(25_000))),
            (
                row(
                    Field::TimestampMicros(millis * 1000 + 123_456),
                    bet(),
                    "NetEnt",
                ),
                (millis + 123, Some(25_000)),
            ),
            (
                row(
                    Field::Str("2019-10-22 08:20:42".into()),
                    Field::Null,
                    "NetEnt",
                ),
                (millis, None),
            ),
            (
                row(
                    good(),
                    Field::Decimal(Decimal::from_i32(12_345, 9, 4)),
                    "NetEnt",
                ),
                (millis, Some(12_345)),
            ),
        ];
        for (row, (at, bet)) in cases {
            assert_eq!(parse(&row), Ok((at, bet.map(Money::from_scaled))));
        }
    }

    #[test]
    fn a_file_of_an_earlier_version_reads_the_appended_columns_as_null_or_default() {
        use apache_avro::types::Value;
        use parquet::schema::parser::parse_message_type;
        let (spec, plan) = plan::evolved_records();
        let schema = |fields: &str| {
            let message = parse_message_type(&format!("message records {{ {fields} }}")).unwrap();
            SchemaDescriptor::new(std::sync::Arc::new(message))
        };
        let first = "required int64 id; required binary created_at (UTF8); \
                     required binary country (UTF8); required binary category (UTF8); \
                     required binary amount (UTF8);";
        let bound = plan.bind_parquet(&schema(first)).unwrap();
        let row = Row::new(vec![
            ("id".to_owned(), Field::Long(42)),
            (
                "created_at".to_owned(),
                Field::TimestampMillis(1_704_164_645_000),
            ),
            ("country".to_owned(), Field::Str("usa".into())),
            ("category".to_owned(), Field::Str("Books".into())),
            ("amount".to_owned(), Field::Str("12.5".into())),
        ]);
        let mut out = Record::new();
        bound.encode_parquet(&plan, &row, 1, "u", &mut out).unwrap();
        let values = plan::decode(&spec, &out);
        assert_eq!(
            values[..2],
            [Value::Long(42), Value::Long(1_704_164_645_000)]
        );
        assert_eq!(
            values[6..],
            [Value::Union(0, Box::new(Value::Null)), Value::Long(3)]
        );

        // A column of the first version is still required.
        let without = first.replace("required binary category (UTF8);", "");
        let error = plan.bind_parquet(&schema(&without)).unwrap_err();
        assert_eq!(error, HeaderError::MissingColumns(vec!["category"]));
    }

    #[test]
    fn values_the_store_cannot_hold_are_rejected_with_their_column() {
        let good = || Field::TimestampMillis(1_571_732_442_000);
        let bet = || Field::Str("2.5".into());
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
                    good(),
                    Field::Decimal(Decimal::from_i64(i64::MAX, 18, 4)),
                    "NetEnt",
                ),
                "real_amount_bet",
                "out of range (at most 14 digits before the point: the store holds Decimal(18, 4))",
            ),
            (
                row(good(), Field::Double(2.5), "NetEnt"),
                "real_amount_bet",
                "a floating-point amount is not exact; store DECIMAL or text",
            ),
            (
                row(good(), bet(), "Net\0Ent"),
                "provider",
                "contains a NUL character",
            ),
            (
                row(good(), Field::Bool(true), "NetEnt"),
                "real_amount_bet",
                "unsupported Parquet value `true`",
            ),
        ];
        for (row, column, reason) in cases {
            assert_eq!(parse(&row), Err((Some(column), reason.to_owned())));
        }
    }
}
