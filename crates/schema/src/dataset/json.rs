//! JSON rows through a [`Plan`]: one JSON object — an element of a JSON array, or a line of
//! JSON Lines — becomes a record or a [`RowError`] naming its record, field and reason.
//!
//! Keys are the dataset's column names, matched like a CSV header's (trimmed, in any case; a
//! name given twice is refused); other keys are ignored. Values are strings or numbers; a
//! number is read from its JSON text, never through a float, so `12.5` is exactly 12.5 and
//! `0.1` exactly 0.1. A `null` field is null: a reject unless the column is nullable. A
//! missing field is null too, except that a column appended since the dataset's first recorded
//! version ([`Plan::compile_since`]) reads as its default when it has one (a record written for
//! an earlier version).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::plan::{Cell, Plan, Record};
use crate::csv::RowError;

impl Plan {
    /// Encodes the JSON text of one record, found at `record` (the line of JSON Lines, or the
    /// 1-based element of a JSON array), into `out`.
    pub fn encode_json(
        &self,
        json: &str,
        record: u64,
        upload_id: &str,
        out: &mut Record,
    ) -> Result<(), RowError> {
        let whole = |reason: String| RowError {
            line: record,
            column: None,
            reason,
        };
        // serde would also read a map from an array; a record must be an object.
        if !json.trim_start().starts_with('{') {
            return Err(whole(format!("not an object of {} fields", self.dataset())));
        }
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let values = Object(self)
            .deserialize(&mut deserializer)
            .and_then(|values| deserializer.end().map(|()| values))
            .map_err(|error| {
                whole(if error.is_data() {
                    format!("not an object of {} fields: {error}", self.dataset())
                } else {
                    format!("not valid JSON: {error}")
                })
            })?;
        self.encode(record, upload_id, true, out, |column| {
            match values[column] {
                None => Ok(Some(Cell::Absent)),
                Some(raw) if raw.get() == "null" => Ok(None),
                Some(raw) => {
                    scalar_text(raw)
                        .map(|text| Some(Cell::Text(text)))
                        .map_err(|reason| RowError {
                            line: record,
                            column: Some(self.column_name(column)),
                            reason,
                        })
                }
            }
        })
    }
}

/// The fields of one object as their raw JSON text (borrowed from the input), by plan column;
/// `None`: not in the object.
struct Object<'p>(&'p Plan);

impl<'de> DeserializeSeed<'de> for Object<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object of {} fields", self.0.dataset())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let plan = self.0;
        let mut values = vec![None; plan.width()];
        let mut seen = vec![false; plan.width()];
        while let Some(key) = map.next_key_seed(Key(plan))? {
            match key {
                Some(column) if seen[column] => {
                    return Err(serde::de::Error::custom(format!(
                        "field `{}` appears more than once",
                        plan.column_name(column)
                    )));
                }
                Some(column) => {
                    seen[column] = true;
                    values[column] = Some(map.next_value::<&RawValue>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

/// A key, read as the plan column it names (`None`: not a column), without copying it.
struct Key<'p>(&'p Plan);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.file_column(key.trim()))
    }
}

/// A string's contents (unescaped) or a number's literal text, as written.
fn scalar_text(raw: &RawValue) -> Result<Cow<'_, str>, String> {
    let json = raw.get();
    match json.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<&str>(json) {
            Ok(text) => Ok(Cow::Borrowed(text)),
            // Escapes need an owned copy.
            Err(_) => serde_json::from_str::<String>(json)
                .map(Cow::Owned)
                .map_err(|e| e.to_string()),
        },
        Some(b'-' | b'0'..=b'9') => Ok(Cow::Borrowed(json)),
        _ => Err(format!(
            "expected a string or a number, found `{}`",
            json.chars().take(40).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::GameRoundCodec;
    use crate::domain::Money;
    use crate::round::GameRound;

    const GOOD: &str = r#"{"created_timestamp": "2019-10-22 08:20:42", "game_instance_id": 20000,
        "user_id": "9ECE8C4020F8AED10676CD1C56A41889", "game_id": "24002",
        "real_amount_bet": 0.1, "bonus_amount_bet": "2.5", "real_amount_win": null,
        "game_name": "Rich Wilde and the \"Tome\" of Madness", "provider": "Play'n GO",
        "extra": [1, 2]}"#;

    fn parse(json: &str, record: u64) -> Result<GameRound, RowError> {
        let mut out = Record::new();
        super::super::plan::game_rounds().encode_json(json, record, "u-1", &mut out)?;
        let envelope = GameRoundCodec::get().decode(out.bytes()).unwrap();
        assert_eq!(envelope.upload_id, "u-1");
        Ok(envelope.round)
    }

    #[test]
    fn objects_map_to_rounds_with_exact_money_from_number_text() {
        let round = parse(GOOD, 3).unwrap();
        assert_eq!(round.created_timestamp, 1_571_732_442_000);
        assert_eq!(round.game_instance_id, 20_000);
        assert_eq!(round.user_id.as_str(), "9ece8c4020f8aed10676cd1c56a41889");
        assert_eq!(round.game_id, 24_002);
        assert_eq!(round.real_amount_bet, Some(Money::from_scaled(1_000)));
        assert_eq!(round.bonus_amount_bet, Some(Money::from_scaled(25_000)));
        assert_eq!(round.real_amount_win, None);
        assert_eq!(round.bonus_amount_win, None);
        assert_eq!(round.game_name, "Rich Wilde and the \"Tome\" of Madness");
    }

    #[test]
    fn keys_are_matched_like_csv_header_names_in_any_case() {
        let json = GOOD
            .replace("\"created_timestamp\"", "\"Created_Timestamp\"")
            .replace("\"user_id\"", "\" USER_ID \"")
            .replace("\"provider\"", "\"Pro\\u0076ider\"");
        assert_eq!(parse(&json, 1).unwrap(), parse(GOOD, 1).unwrap());

        let twice = GOOD.replace("\"extra\"", "\"User_Id\"");
        let error = parse(&twice, 6).unwrap_err();
        assert_eq!((error.line, error.column), (6, None));
        assert!(
            error.reason.starts_with(
                "not an object of game_rounds fields: field `user_id` appears more than once"
            ),
            "{}",
            error.reason
        );
    }

    #[test]
    fn numbers_are_read_from_their_text_never_rounded() {
        // More digits than an f64 holds stay exact, or are refused.
        let json = GOOD.replace("0.1,", "92233720368547.7580,");
        let round = parse(&json, 1).unwrap();
        assert_eq!(
            round.real_amount_bet,
            Some(Money::from_scaled(922_337_203_685_477_580))
        );
        let error = parse(&GOOD.replace("0.1,", "0.00001,"), 1).unwrap_err();
        assert_eq!(error.column, Some("real_amount_bet"));
        assert_eq!(error.reason, "more than 4 decimal places");
        let error = parse(&GOOD.replace("0.1,", "1e3,"), 1).unwrap_err();
        assert_eq!(error.reason, "not a decimal number");
    }

    #[test]
    fn bad_records_name_their_record_field_and_reason() {
        let error = parse(&GOOD.replace("20000", "-4"), 7).unwrap_err();
        assert_eq!((error.line, error.column), (7, Some("game_instance_id")));
        let error = parse(
            &GOOD.replace(r#""user_id": "9ECE8C4020F8AED10676CD1C56A41889","#, ""),
            2,
        )
        .unwrap_err();
        assert_eq!(error.column, Some("user_id"));
        assert_eq!(error.reason, "missing or null");
        let error = parse(&GOOD.replace("\"24002\"", "true"), 2).unwrap_err();
        assert_eq!(error.column, Some("game_id"));
        assert!(
            error.reason.starts_with("expected a string or a number"),
            "{}",
            error.reason
        );
        let error = parse("[1, 2]", 4).unwrap_err();
        assert_eq!((error.line, error.column), (4, None));
        assert_eq!(error.reason, "not an object of game_rounds fields");
        let error = parse("{\"user_id\": ", 5).unwrap_err();
        assert!(
            error.reason.starts_with("not valid JSON"),
            "{}",
            error.reason
        );
        let error = parse(&format!("{GOOD} {{}}"), 5).unwrap_err();
        assert!(
            error
                .reason
                .starts_with("not valid JSON: trailing characters"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn an_object_of_an_earlier_version_reads_the_appended_columns_as_null_or_default() {
        use apache_avro::types::Value;
        let (spec, plan) = super::super::plan::evolved_records();
        let first = r#"{"id": 42, "created_at": "2024-01-02 03:04:05", "country": "usa",
            "category": "Books", "amount": 12.5"#;
        let encode = |json: String| {
            let mut out = Record::new();
            plan.encode_json(&json, 3, "u", &mut out)
                .map(|()| super::super::plan::decode(&spec, &out))
        };
        let values = encode(format!("{first}}}")).unwrap();
        assert_eq!(values[4], Value::Long(1250));
        assert_eq!(
            values[6..],
            [Value::Union(0, Box::new(Value::Null)), Value::Long(3)]
        );
        let values = encode(format!(r#"{first}, "note": "hi", "RANK": "7"}}"#)).unwrap();
        let note = Value::Union(1, Box::new(Value::String("hi".into())));
        assert_eq!(values[6..], [note, Value::Long(7)]);

        // Null is not absent: a column with a default is not nullable.
        let error = encode(format!(r#"{first}, "rank": null}}"#)).unwrap_err();
        assert_eq!(
            (error.line, error.column, error.reason.as_str()),
            (3, Some("rank"), "missing or null")
        );
        // A column of the first version is still required.
        let error = encode(format!(
            "{}}}",
            first.replace(r#""category": "Books","#, "")
        ));
        let error = error.unwrap_err();
        assert_eq!(
            (error.line, error.column, error.reason.as_str()),
            (3, Some("category"), "missing or null")
        );
    }

    #[test]
    fn values_the_store_cannot_hold_are_rejected_with_their_field() {
        let out_of_range =
            "out of range: the store holds 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC";
        let cases = [
            (
                r#""created_timestamp": "2019-10-22 08:20:42""#,
                r#""created_timestamp": "1969-12-31 23:59:59""#,
                "created_timestamp",
                out_of_range,
            ),
            (
                r#""created_timestamp": "2019-10-22 08:20:42""#,
                r#""created_timestamp": "2106-02-07T06:28:16Z""#,
                "created_timestamp",
                out_of_range,
            ),
            (
                r#""real_amount_bet": 0.1"#,
                r#""real_amount_bet": 100000000000000"#,
                "real_amount_bet",
                "out of range (at most 14 digits before the point: the store holds Decimal(18, 4))",
            ),
            (
                r#""provider": "Play'n GO""#,
                r#""provider": "Play\u0000n GO""#,
                "provider",
                "contains a NUL character",
            ),
        ];
        for (good, bad, column, reason) in cases {
            assert!(GOOD.contains(good), "{good}");
            let error = parse(&GOOD.replace(good, bad), 4).unwrap_err();
            assert_eq!(
                (error.line, error.column, error.reason.as_str()),
                (4, Some(column), reason),
                "{bad}"
            );
        }
        let surrogate = GOOD.replace(
            r#""provider": "Play'n GO""#,
            r#""provider": "Play\ud800n GO""#,
        );
        let error = parse(&surrogate, 4).unwrap_err();
        assert_eq!(error.column, Some("provider"), "{}", error.reason);
    }
}
