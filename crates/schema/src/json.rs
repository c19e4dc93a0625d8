//! JSON mapping: one JSON object — an element of a JSON array, or a line of JSON Lines —
//! becomes a [`GameRound`] or a [`RowError`] naming its record, field and reason, with the
//! same value parsers as the CSV mapping.
//!
//! Keys are the CSV column names (exact case); other keys are ignored. Values are strings or
//! numbers; a number is read from its JSON text, never through a float, so `12.5` is exactly
//! 12.5 and `0.1` exactly 0.1 (an exponent such as `1e3` is refused, like in a CSV cell). A
//! missing or `null` money field is an unknown amount; any other field missing is a reject.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::csv::{fields, RowError, COLUMNS};
use crate::round::GameRound;

/// The fields of one object as their raw JSON text (borrowed from the input).
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    created_timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    game_instance_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    game_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    real_amount_bet: Option<&'a RawValue>,
    #[serde(borrow, default)]
    bonus_amount_bet: Option<&'a RawValue>,
    #[serde(borrow, default)]
    real_amount_win: Option<&'a RawValue>,
    #[serde(borrow, default)]
    bonus_amount_win: Option<&'a RawValue>,
    #[serde(borrow, default)]
    game_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    provider: Option<&'a RawValue>,
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
    let integer = |column: usize, value: Option<&'_ RawValue>| {
        fields::integer(&required(column, value)?).map_err(|reason| fail(column, reason))
    };
    Ok(GameRound {
        created_timestamp: fields::timestamp(&required(0, fields.created_timestamp)?)
            .map_err(|reason| fail(0, reason))?,
        game_instance_id: integer(1, fields.game_instance_id)?,
        user_id: fields::player(&required(2, fields.user_id)?).map_err(|reason| fail(2, reason))?,
        game_id: integer(3, fields.game_id)?,
        real_amount_bet: money(4, fields.real_amount_bet)?,
        bonus_amount_bet: money(5, fields.bonus_amount_bet)?,
        real_amount_win: money(6, fields.real_amount_win)?,
        bonus_amount_win: money(7, fields.bonus_amount_win)?,
        game_name: required(8, fields.game_name)?,
        provider: required(9, fields.provider)?,
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
}
