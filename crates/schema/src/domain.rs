//! Value types of the game-round domain. Each has a private representation and a `parse`
//! constructor, so that holding one proves the input was valid.

use std::fmt;

use serde::{Deserialize, Serialize};

/// [`str::trim`], without looking at characters when the text starts and ends with a visible
/// ASCII character, as nearly every cell does: trimming runs several times per row.
#[inline]
pub(crate) fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// Number of decimal places kept for money. Amounts with more places are rejected, never rounded.
pub const MONEY_SCALE: u32 = 4;
const MONEY_FACTOR: i64 = 10_i64.pow(MONEY_SCALE);
/// The largest amount the store's `Decimal(18, 4)` holds, in 10^-4 units: 18 digits
/// (99 999 999 999 999.9999); the smallest is its negation.
pub const MONEY_MAX_SCALED: i64 = DECIMAL_MAX_SCALED;

/// An exact amount of money, held as an integer number of 10^-4 units, always within what the
/// store's `Decimal(18, 4)` holds (`±MONEY_MAX_SCALED`): a value outside is refused wherever it
/// comes from (a cell, a JSON number, an Avro record), never wrapped or clamped.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(into = "i64", try_from = "i64")]
pub struct Money(i64);

/// Why a money cell could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number")]
    NotANumber,
    #[error("more than {MONEY_SCALE} decimal places")]
    TooPrecise,
    #[error("out of range (at most 14 digits before the point: the store holds Decimal(18, 4))")]
    OutOfRange,
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// Parses a cell of a money column. Empty cells and `NaN` (any case) are `None`: the amount
    /// is unknown, which is different from zero.
    pub fn parse_cell(cell: &str) -> Result<Option<Money>, MoneyError> {
        let cell = trim(cell);
        if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
            return Ok(None);
        }
        Money::parse(cell).map(Some)
    }

    /// Parses a plain decimal such as `-12.5`, exactly (see [`parse_decimal`]).
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let units = parse_decimal(text, MONEY_SCALE).map_err(|e| match e {
            DecimalError::NotANumber => MoneyError::NotANumber,
            DecimalError::TooPrecise { .. } => MoneyError::TooPrecise,
            DecimalError::OutOfRange { .. } => MoneyError::OutOfRange,
        })?;
        Ok(Money(units))
    }

    /// Builds an amount from its scaled integer form (10^-4 units); panics outside the store's
    /// range (for constants and tests; use [`try_from_scaled`](Self::try_from_scaled) on data).
    pub const fn from_scaled(units: i64) -> Money {
        assert!(units >= -MONEY_MAX_SCALED && units <= MONEY_MAX_SCALED);
        Money(units)
    }

    /// Builds an amount from its scaled integer form (10^-4 units), if the store can hold it.
    pub const fn try_from_scaled(units: i64) -> Result<Money, MoneyError> {
        if units >= -MONEY_MAX_SCALED && units <= MONEY_MAX_SCALED {
            Ok(Money(units))
        } else {
            Err(MoneyError::OutOfRange)
        }
    }

    /// The scaled integer form (10^-4 units), as stored in Avro and ClickHouse `Decimal(18, 4)`.
    pub const fn scaled(self) -> i64 {
        self.0
    }
}

/// The largest scaled value a `Decimal(18, S)` holds, whatever `S`: 18 digits.
pub const DECIMAL_MAX_SCALED: i64 = 999_999_999_999_999_999;

/// Why a decimal cell could not be read at scale `scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal number")]
    NotANumber,
    #[error("more than {scale} decimal places")]
    TooPrecise { scale: u32 },
    #[error("out of range (at most {} digits before the point: the store holds Decimal(18, {scale}))", 18 - scale)]
    OutOfRange { scale: u32 },
}

/// `10^n` for every scale a decimal may have.
const POWERS_OF_TEN: [i64; 19] = {
    let mut powers = [1_i64; 19];
    let mut n = 1;
    while n < 19 {
        powers[n] = powers[n - 1] * 10;
        n += 1;
    }
    powers
};

/// Parses a plain decimal such as `-12.5` into an integer scaled by `10^scale` (at most 18),
/// exactly: more places than `scale` are refused, never rounded, and so is a value a
/// `Decimal(18, scale)` cannot hold. One pass over the bytes: this runs for every decimal cell.
pub fn parse_decimal(text: &str, scale: u32) -> Result<i64, DecimalError> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    let whole_length = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    let (whole, rest) = digits.split_at(whole_length);
    let fraction = match rest {
        [] => rest,
        [b'.', fraction @ ..] if fraction.iter().all(u8::is_ascii_digit) => fraction,
        _ => return Err(DecimalError::NotANumber),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(DecimalError::NotANumber);
    }
    let fraction = match fraction.iter().rposition(|b| *b != b'0') {
        Some(last) => &fraction[..=last],
        None => &[],
    };
    if fraction.len() > scale as usize {
        return Err(DecimalError::TooPrecise { scale });
    }
    let out_of_range = DecimalError::OutOfRange { scale };
    let mut units: i64 = 0;
    for b in whole {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(i64::from(b - b'0')))
            .ok_or(out_of_range)?;
    }
    // At most `scale` (≤ 18) digits: no overflow.
    let fraction_digits = fraction
        .iter()
        .fold(0_i64, |n, b| n * 10 + i64::from(b - b'0'));
    let factor = *POWERS_OF_TEN.get(scale as usize).ok_or(out_of_range)?;
    let units = units
        .checked_mul(factor)
        .and_then(|u| {
            u.checked_add(fraction_digits * POWERS_OF_TEN[scale as usize - fraction.len()])
        })
        .filter(|u| *u <= DECIMAL_MAX_SCALED)
        .ok_or(out_of_range)?;
    Ok(if negative { -units } else { units })
}

impl TryFrom<i64> for Money {
    type Error = MoneyError;

    fn try_from(units: i64) -> Result<Money, MoneyError> {
        Money::try_from_scaled(units)
    }
}

impl From<Money> for i64 {
    fn from(money: Money) -> i64 {
        money.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(i128::from(self.0)))
    }
}

/// Formats an integer of 10^-4 units as a plain decimal string without trailing zeros
/// (`12500` → `"1.25"`). Used for sums, which may exceed `i64`.
pub fn format_scaled(units: i128) -> String {
    let factor = i128::from(MONEY_FACTOR);
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let whole = abs / factor as u128;
    let fraction = abs % factor as u128;
    if fraction == 0 {
        format!("{sign}{whole}")
    } else {
        let digits = format!("{fraction:0width$}", width = MONEY_SCALE as usize);
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// The last second the store's `DateTime` columns hold, and every ClickHouse version computes
/// hours and days of correctly: 2105-12-31 23:59:59 UTC. `DateTime` itself is a `UInt32`
/// (to 2106-02-07 06:28:15), but ClickHouse 18.16's date tables end with 2105, so the last
/// five weeks of that range would be bucketed wrongly there.
pub const TIMESTAMP_MAX_SECONDS: u32 = 4_291_747_199;

/// A moment outside what the store holds: [1970-01-01 00:00:00, 2105-12-31 23:59:59] UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("out of range: the store holds 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC")]
pub struct TimestampOutOfRange;

/// The whole seconds since the epoch that a timestamp in milliseconds is stored as (the store
/// keeps seconds: the milliseconds are dropped, toward the past), if the store can hold them.
/// Every row source and the consumer use this one rule: nothing is ever clamped to 1970.
pub fn stored_seconds(millis: i64) -> Result<u32, TimestampOutOfRange> {
    u32::try_from(millis.div_euclid(1000))
        .ok()
        .filter(|seconds| *seconds <= TIMESTAMP_MAX_SECONDS)
        .ok_or(TimestampOutOfRange)
}

/// Refuses text the store should not hold: a NUL character (ClickHouse would keep it, and it
/// cuts names short in most clients and logs). Invalid UTF-8 and lone UTF-16 surrogates never
/// reach here: they are refused as "not valid text" where the bytes are read.
pub fn check_text(text: &str) -> Result<&str, TextError> {
    if memchr::memchr(0, text.as_bytes()).is_some() {
        Err(TextError::Nul)
    } else {
        Ok(text)
    }
}

/// Why a text value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("contains a NUL character")]
    Nul,
}

/// A player's id: exactly 32 hexadecimal characters, normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PlayerId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a player id is 32 hexadecimal characters")]
pub struct PlayerIdError;

impl PlayerId {
    pub fn parse(text: &str) -> Result<PlayerId, PlayerIdError> {
        let text = trim(text);
        if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(PlayerId(text.to_ascii_lowercase()))
        } else {
            Err(PlayerIdError)
        }
    }

    /// [`parse`](Self::parse) into this id's buffer; unchanged if `text` is not an id.
    pub fn assign(&mut self, text: &str) -> Result<(), PlayerIdError> {
        let text = trim(text);
        if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.0.clear();
            self.0.push_str(text);
            self.0.make_ascii_lowercase();
            Ok(())
        } else {
            Err(PlayerIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PlayerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PlayerId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_exact_decimals() {
        assert_eq!(Money::parse("2").unwrap().scaled(), 20_000);
        assert_eq!(Money::parse("0.05").unwrap().scaled(), 500);
        assert_eq!(Money::parse("-1.2345").unwrap().scaled(), -12_345);
        assert_eq!(Money::parse(".5").unwrap().scaled(), 5_000);
        assert_eq!(Money::parse("3.10000").unwrap().scaled(), 31_000);
    }

    #[test]
    fn money_accepts_every_shape_of_plain_decimal_and_nothing_else() {
        let accepted = [
            ("1.", 10_000),
            ("-.5", -5_000),
            ("+7", 70_000),
            ("007.0100", 70_100),
            ("-0", 0),
            ("1.23450000", 12_345),
            ("99999999999999.9999", MONEY_MAX_SCALED),
            ("-99999999999999.9999", -MONEY_MAX_SCALED),
        ];
        for (text, scaled) in accepted {
            assert_eq!(Money::parse(text), Ok(Money::from_scaled(scaled)), "{text}");
        }
        let refused = [
            ("1..2", MoneyError::NotANumber),
            ("1.2.3", MoneyError::NotANumber),
            ("--1", MoneyError::NotANumber),
            ("1,5", MoneyError::NotANumber),
            (" 1", MoneyError::NotANumber),
            ("1.5 ", MoneyError::NotANumber),
            ("١٢", MoneyError::NotANumber),
            ("-", MoneyError::NotANumber),
            ("1.00001x", MoneyError::NotANumber),
            ("99999999999999999999.00001", MoneyError::TooPrecise),
            ("922337203685477.5808", MoneyError::OutOfRange),
            ("922337203685477.5807", MoneyError::OutOfRange),
            ("100000000000000", MoneyError::OutOfRange),
            ("-100000000000000", MoneyError::OutOfRange),
        ];
        for (text, error) in refused {
            assert_eq!(Money::parse(text), Err(error), "{text}");
        }
    }

    #[test]
    fn money_from_any_source_stays_within_the_stores_decimal_18_4() {
        assert_eq!(
            Money::try_from_scaled(MONEY_MAX_SCALED + 1),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(
            Money::try_from_scaled(-MONEY_MAX_SCALED - 1),
            Err(MoneyError::OutOfRange)
        );
        // Deserialised values (an Avro record, JSON) are held to the same range.
        assert!(serde_json::from_str::<Money>("1000000000000000000").is_err());
        assert_eq!(
            serde_json::from_str::<Money>("999999999999999999").unwrap(),
            Money::from_scaled(MONEY_MAX_SCALED)
        );
        assert_eq!(
            serde_json::to_string(&Money::from_scaled(-5)).unwrap(),
            "-5"
        );
    }

    #[test]
    fn stored_seconds_cover_1970_to_2105_and_nothing_is_clamped() {
        assert_eq!(stored_seconds(0), Ok(0));
        assert_eq!(stored_seconds(1_571_732_442_999), Ok(1_571_732_442));
        assert_eq!(stored_seconds(4_291_747_199_999), Ok(TIMESTAMP_MAX_SECONDS));
        for outside in [
            -1,                  // 1969-12-31 23:59:59.999
            -62_135_596_800_000, // 0001-01-01
            4_291_747_200_000,   // 2106-01-01
            4_294_967_296_000,   // 2106-02-07 06:28:16, past UInt32
            7_258_118_400_000,   // 2200-01-01
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                stored_seconds(outside),
                Err(TimestampOutOfRange),
                "{outside}"
            );
        }
    }

    #[test]
    fn text_with_a_nul_character_is_refused() {
        assert_eq!(check_text("Play'n GO"), Ok("Play'n GO"));
        assert_eq!(check_text("Play\0n GO"), Err(TextError::Nul));
        assert_eq!(check_text("\0"), Err(TextError::Nul));
    }

    #[test]
    fn money_cells_that_are_empty_or_nan_are_unknown() {
        assert_eq!(Money::parse_cell(""), Ok(None));
        assert_eq!(Money::parse_cell("NaN"), Ok(None));
        assert_eq!(Money::parse_cell("nan"), Ok(None));
        assert_eq!(
            Money::parse_cell(" 1 "),
            Ok(Some(Money::from_scaled(10_000)))
        );
    }

    #[test]
    fn money_rejects_garbage_and_excess_precision() {
        assert_eq!(Money::parse("abc"), Err(MoneyError::NotANumber));
        assert_eq!(Money::parse("1e5"), Err(MoneyError::NotANumber));
        assert_eq!(Money::parse("-"), Err(MoneyError::NotANumber));
        assert_eq!(Money::parse("."), Err(MoneyError::NotANumber));
        assert_eq!(Money::parse("0.00001"), Err(MoneyError::TooPrecise));
        assert_eq!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::OutOfRange)
        );
    }

    #[test]
    fn money_displays_without_trailing_zeros() {
        assert_eq!(Money::from_scaled(12_500).to_string(), "1.25");
        assert_eq!(Money::from_scaled(-500).to_string(), "-0.05");
        assert_eq!(Money::from_scaled(20_000).to_string(), "2");
        assert_eq!(
            format_scaled(i128::from(i64::MAX) * 4),
            "3689348814741910.3228"
        );
    }

    #[test]
    fn player_ids_are_32_hex_characters_in_lower_case() {
        let id = PlayerId::parse("9ECE8C4020F8AED10676CD1C56A41889").unwrap();
        assert_eq!(id.as_str(), "9ece8c4020f8aed10676cd1c56a41889");
        assert!(PlayerId::parse("9ece8c40").is_err());
        assert!(PlayerId::parse("' OR 1=1 --                     ").is_err());
        assert!(PlayerId::parse("zzzz8c4020f8aed10676cd1c56a41889").is_err());
    }

    #[test]
    fn assigning_a_player_id_reuses_the_buffer_and_refuses_what_parse_refuses() {
        let mut id = PlayerId::parse("00000000000000000000000000000000").unwrap();
        id.assign(" 9ECE8C4020F8AED10676CD1C56A41889 ").unwrap();
        assert_eq!(id.as_str(), "9ece8c4020f8aed10676cd1c56a41889");
        assert!(id.assign("9ece8c40").is_err());
        assert_eq!(id.as_str(), "9ece8c4020f8aed10676cd1c56a41889");
    }
}
