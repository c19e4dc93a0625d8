//! JSON mapping: one JSON object — an element of a JSON array, or a line of JSON Lines —
//! becomes a [`GameRound`] or a [`RowError`] naming its record, field and reason, with the
//! same value parsers as the CSV mapping.
//!
//! Keys are the CSV column names, matched like a CSV header's (trimmed, in any case; a name
//! given twice is refused); other keys are ignored. Values are strings or
//! numbers; a number is read from its JSON text, never through a float, so `12.5` is exactly
//! 12.5 and `0.1` exactly 0.1 (an exponent such as `1e3` is refused, like in a CSV cell). A
//! missing or `null` money field is an unknown amount; any other field missing is a reject.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::csv::{fields, RowError, COLUMNS};
use crate::round::GameRound;

/// The fields of one object as their raw JSON text (borrowed from the input), by column
/// (the index in [`COLUMNS`]).
struct Fields<'a>([Option<&'a RawValue>; COLUMNS.len()]);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;

        impl<'de> Visitor<'de> for Object {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of game-round fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = [None; COLUMNS.len()];
                let mut seen = [false; COLUMNS.len()];
                while let Some(column) = map.next_key_seed(Column)? {
                    match column {
                        Some(column) if seen[column] => {
                            return Err(serde::de::Error::custom(format!(
                                "field `{}` appears more than once",
                                COLUMNS[column]
                            )));
                        }
                        Some(column) => {
                            seen[column] = true;
                            // `null` is absent (an unknown amount, or a missing field).
                            fields[column] = map.next_value::<Option<&RawValue>>()?;
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(Object)
    }
}

/// A key, read as the column it names (`None`: not a game-round column), without copying it.
struct Column;

impl<'de> DeserializeSeed<'de> for Column {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Column {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        let key = key.trim();
        Ok(COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(key)))
    }
}

/// Maps the JSON text of one record, found at `record` (the line of JSON Lines, or the
/// 1-based element of a JSON array), to a round.
pub fn parse_record(json: &str, record: u64) -> Result<GameRound, RowError> {
    // serde would also read a struct from an array; a record must be an object.
    if !json.trim_start().starts_with('{') {
        return Err(RowError {
            line: record,
            column: None,
            reason: "not an object of game-round fields".to_owned(),
        });
    }
    let fields: Fields<'_> = serde_json::from_str(json).map_err(|error| RowError {
        line: record,
        column: None,
        reason: if error.is_data() {
            format!("not an object of game-round fields: {error}")
        } else {
            format!("not valid JSON: {error}")
        },
    })?;
    let fail = |column: usize, reason: String| RowError {
        line: record,
        column: Some(COLUMNS[column]),
        reason,
    };
    let required = |column: usize, value: Option<&'_ RawValue>| {
        value_text(record, column, value)?
            .map(Cow::into_owned)
            .ok_or_else(|| fail(column, "missing or null".to_owned()))
    };
    let money =
        |column: usize, value: Option<&'_ RawValue>| match value_text(record, column, value)? {
            Some(text) => fields::money(&text).map_err(|reason| fail(column, reason)),
            None => Ok(None),
        };
    let text = |column: usize, value: Option<&'_ RawValue>| {
        let text = required(column, value)?;
        fields::text(&text).map_err(|reason| fail(column, reason))?;
        Ok(text)
    };
    let integer = |column: usize, value: Option<&'_ RawValue>| {
        fields::integer(&required(column, value)?).map_err(|reason| fail(column, reason))
    };
    let Fields(values) = fields;
    Ok(GameRound {
        created_timestamp: fields::timestamp(&required(0, values[0])?)
            .map_err(|reason| fail(0, reason))?,
        game_instance_id: integer(1, values[1])?,
        user_id: fields::player(&required(2, values[2])?).map_err(|reason| fail(2, reason))?,
        game_id: integer(3, values[3])?,
        real_amount_bet: money(4, values[4])?,
        bonus_amount_bet: money(5, values[5])?,
        real_amount_win: money(6, values[6])?,
        bonus_amount_win: money(7, values[7])?,
        game_name: text(8, values[8])?,
        provider: text(9, values[9])?,
    })
}

/// The text of a present, non-null value.
fn value_text(
    record: u64,
    column: usize,
    value: Option<&RawValue>,
) -> Result<Option<Cow<'_, str>>, RowError> {
    value
        .map(|raw| {
            scalar_text(raw).map_err(|reason| RowError {
                line: record,
                column: Some(COLUMNS[column]),
                reason,
            })
        })
        .transpose()
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
    use crate::domain::Money;

    const GOOD: &str = r#"{"created_timestamp": "2019-10-22 08:20:42", "game_instance_id": 20000,
        "user_id": "9ECE8C4020F8AED10676CD1C56A41889", "game_id": "24002",
        "real_amount_bet": 0.1, "bonus_amount_bet": "2.5", "real_amount_win": null,
        "game_name": "Rich Wilde and the \"Tome\" of Madness", "provider": "Play'n GO",
        "extra": [1, 2]}"#;

    #[test]
    fn objects_map_to_rounds_with_exact_money_from_number_text() {
        let round = parse_record(GOOD, 3).unwrap();
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
        assert_eq!(
            parse_record(&json, 1).unwrap(),
            parse_record(GOOD, 1).unwrap()
        );

        let twice = GOOD.replace("\"extra\"", "\"User_Id\"");
        let error = parse_record(&twice, 6).unwrap_err();
        assert_eq!((error.line, error.column), (6, None));
        assert!(
            error
                .reason
                .contains("field `user_id` appears more than once"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn numbers_are_read_from_their_text_never_rounded() {
        // 0.1 + 0.2 style literals and more digits than an f64 holds stay exact or are refused.
        let json = GOOD.replace("0.1,", "92233720368547.7580,");
        let round = parse_record(&json, 1).unwrap();
        assert_eq!(
            round.real_amount_bet,
            Some(Money::from_scaled(922_337_203_685_477_580))
        );
        let error = parse_record(&GOOD.replace("0.1,", "0.00001,"), 1).unwrap_err();
        assert_eq!(error.column, Some("real_amount_bet"));
        assert_eq!(error.reason, "more than 4 decimal places");
        let error = parse_record(&GOOD.replace("0.1,", "1e3,"), 1).unwrap_err();
        assert_eq!(error.reason, "not a decimal number");
    }

    #[test]
    fn bad_records_name_their_record_field_and_reason() {
        let error = parse_record(&GOOD.replace("20000", "-4"), 7).unwrap_err();
        assert_eq!((error.line, error.column), (7, Some("game_instance_id")));
        let error = parse_record(
            &GOOD.replace(r#""user_id": "9ECE8C4020F8AED10676CD1C56A41889","#, ""),
            2,
        )
        .unwrap_err();
        assert_eq!(error.column, Some("user_id"));
        assert_eq!(error.reason, "missing or null");
        let error = parse_record(&GOOD.replace("\"24002\"", "true"), 2).unwrap_err();
        assert_eq!(error.column, Some("game_id"));
        assert!(
            error.reason.starts_with("expected a string or a number"),
            "{}",
            error.reason
        );
        let error = parse_record("[1, 2]", 4).unwrap_err();
        assert_eq!((error.line, error.column), (4, None));
        assert!(
            error.reason.starts_with("not an object"),
            "{}",
            error.reason
        );
        let error = parse_record("{\"user_id\": ", 5).unwrap_err();
        assert!(
            error.reason.starts_with("not valid JSON"),
            "{}",
            error.reason
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
            let error = parse_record(&GOOD.replace(good, bad), 4).unwrap_err();
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
        let error = parse_record(&surrogate, 4).unwrap_err();
        assert_eq!(error.column, Some("provider"), "{}", error.reason);
    }
}
