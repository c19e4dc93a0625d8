//! `GET /aggregated_game_rounds`: raw query-string values become a [`RoundsQuery`] (or a 400):
//! typed filters, the order, the page size and the position a cursor names. Reading the page
//! is `answer.rs`'s.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use sluice_schema::domain::TIMESTAMP_MAX_SECONDS;
use sluice_schema::PlayerId;
use utoipa::IntoParams;

use crate::cursor::{CursorSigner, Position};

/// A query string that cannot be read (a 400, before anything is charged); the message names
/// the parameter and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// The query string as sent. Every parameter is optional, and an empty one is as if it were
/// not sent. Each is read exactly as its `pattern` in the OpenAPI document says (no white
/// space around values); a malformed one is a 400 (not charged).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawRoundsQuery {
    /// Player: 32 hexadecimal characters, either case.
    #[param(
        example = "9ece8c4020f8aed10676cd1c56a41889",
        pattern = "^([0-9A-Fa-f]{32})?$"
    )]
    pub player_id: Option<String>,
    /// Game: a non-negative integer in decimal digits, at most 18446744073709551615.
    #[param(example = "24002", pattern = "^([0-9]{1,20})?$")]
    pub game_id: Option<String>,
    /// Start of the range, inclusive: a date (`2019-10-22`, its midnight UTC) or a date and
    /// time, RFC 3339 (`2019-10-22T08:00:00Z`, `2019-10-22T10:00:00.5+02:00`; percent-encode
    /// the `+`), where a space may stand for the `T` and a missing offset means UTC
    /// (`2019-10-22 08:00:00`). It must be a real date and time (seconds 00 to 59) from
    /// 1970-01-01T00:00:00Z to 2105-12-31T23:59:59Z, what the store holds. A fraction of a
    /// second moves it to the next whole second (rows have whole seconds).
    #[param(
        example = "2019-10-22",
        pattern = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?)?$"
    )]
    pub from: Option<String>,
    /// End of the range, exclusive: the forms of `from`, from 1970-01-01T00:00:00Z to
    /// 2106-01-01T00:00:00Z, and not before `from`.
    #[param(
        example = "2019-10-23",
        pattern = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?)?$"
    )]
    pub to: Option<String>,
    /// `hour` (default) or `day`.
    #[param(example = "hour", schema_with = granularity_schema)]
    pub granularity: Option<String>,
    /// `asc` (default: oldest bucket first) or `desc` (newest first); ties ordered by player
    /// and game in the same direction.
    #[param(example = "asc", schema_with = sort_schema)]
    pub sort: Option<String>,
    /// Buckets per page in decimal digits, 1 to `SLUICE_GATEWAY_MAX_LIMIT` (default 10000);
    /// default `SLUICE_GATEWAY_DEFAULT_LIMIT` (1000).
    #[param(example = "100", pattern = "^([0-9]{1,10})?$")]
    pub page_size: Option<String>,
    /// Deprecated alias of `page_size` (if both are sent they must be equal).
    #[deprecated(note = "send `page_size`")]
    #[param(pattern = "^([0-9]{1,10})?$")]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page, to get the page after it. Only valid with the
    /// same `player_id`, `game_id`, `from`, `to`, `granularity` and `sort` (the page size may
    /// change); an altered cursor or one sent with other filters is a 400 (not charged).
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

/// One of `values`, or empty (the default).
fn choice(values: [&str; 2]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(values.into_iter().chain([""])))
        .build()
}

fn granularity_schema() -> utoipa::openapi::Object {
    choice(["hour", "day"])
}

fn sort_schema() -> utoipa::openapi::Object {
    choice(["asc", "desc"])
}

/// Order of the buckets: by (start, player, game), ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// Size of the time buckets sums are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

/// A validated query: filters are typed, the time range is half-open `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundsQuery {
    pub player_id: Option<PlayerId>,
    pub game_id: Option<u64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub granularity: Granularity,
    pub order: Order,
    pub page_size: u32,
    /// The page starts after this bucket (from a verified cursor); `None`: the first page.
    pub after: Option<Position>,
}

impl RoundsQuery {
    /// Types every filter and checks the cursor, if any, against them.
    #[allow(deprecated)] // `limit` is still accepted.
    pub fn parse(
        raw: RawRoundsQuery,
        default_limit: u32,
        max_limit: u32,
        cursors: &CursorSigner,
    ) -> Result<RoundsQuery, BadQuery> {
        let bad = BadQuery;
        let player_id = player_id(raw.player_id)?;
        let game_id = game_id(raw.game_id)?;
        let from = raw
            .from
            .filter(|t| !t.is_empty())
            .map(|t| parse_instant("from", &t, Bound::Inclusive))
            .transpose()?;
        let to = raw
            .to
            .filter(|t| !t.is_empty())
            .map(|t| parse_instant("to", &t, Bound::Exclusive))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(bad("from: must not be after `to`".into()));
            }
        }
        let granularity = match raw.granularity.as_deref() {
            None | Some("") | Some("hour") => Granularity::Hour,
            Some("day") => Granularity::Day,
            Some(_) => return Err(bad("granularity: must be `hour` or `day`".into())),
        };
        let order = match raw.sort.as_deref() {
            None | Some("") | Some("asc") => Order::Ascending,
            Some("desc") => Order::Descending,
            Some(_) => return Err(bad("sort: must be `asc` or `desc`".into())),
        };
        let page_size = page_size(raw.page_size, raw.limit, default_limit, max_limit)?;
        let mut query = RoundsQuery {
            player_id,
            game_id,
            from,
            to,
            granularity,
            order,
            page_size,
            after: None,
        };
        if let Some(cursor) = raw.cursor.filter(|c| !c.is_empty()) {
            let after = cursors.decode(&query.filters(), &cursor);
            query.after = Some(after.map_err(|error| bad(error.to_string()))?);
        }
        Ok(query)
    }

    /// The filters in one canonical text, what a cursor is bound to (not the page size).
    pub fn filters(&self) -> String {
        let instant =
            |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.timestamp().to_string());
        format!(
            "player_id={}|game_id={}|from={}|to={}|granularity={}|sort={}",
            self.player_id.as_ref().map_or("-", |p| p.as_str()),
            self.game_id.map_or("-".to_owned(), |g| g.to_string()),
            instant(self.from),
            instant(self.to),
            match self.granularity {
                Granularity::Hour => "hour",
                Granularity::Day => "day",
            },
            match self.order {
                Order::Ascending => "asc",
                Order::Descending => "desc",
            },
        )
    }
}

/// The `player_id` parameter: 32 hexadecimal characters, or none.
fn player_id(text: Option<String>) -> Result<Option<PlayerId>, BadQuery> {
    text.filter(|p| !p.is_empty())
        .map(|p| match p.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => PlayerId::parse(&p).map_err(|e| BadQuery(format!("player_id: {e}"))),
            false => Err(BadQuery(
                "player_id: must be 32 hexadecimal characters".into(),
            )),
        })
        .transpose()
}

/// The `game_id` parameter: a `u64` in decimal digits, or none.
fn game_id(text: Option<String>) -> Result<Option<u64>, BadQuery> {
    text.filter(|g| !g.is_empty())
        .map(|g| {
            decimal::<u64>(&g).ok_or_else(|| {
                BadQuery(
                    "game_id: must be a non-negative integer, at most 18446744073709551615".into(),
                )
            })
        })
        .transpose()
}

/// The page size from `page_size` or its deprecated alias `limit` (equal if both are sent),
/// 1 to `max_limit`; `default_limit` when neither is.
fn page_size(
    page_size: Option<String>,
    limit: Option<String>,
    default_limit: u32,
    max_limit: u32,
) -> Result<u32, BadQuery> {
    let size = |name: &str, text: Option<String>| match text.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => match decimal::<u32>(text) {
            Some(size) if (1..=max_limit).contains(&size) => Ok(Some(size)),
            _ => Err(BadQuery(format!(
                "{name}: must be between 1 and {max_limit}"
            ))),
        },
    };
    match (size("page_size", page_size)?, size("limit", limit)?) {
        (Some(page_size), Some(limit)) if page_size != limit => Err(BadQuery(
            "limit: a deprecated alias of page_size; send one of them".into(),
        )),
        (Some(size), _) | (None, Some(size)) => Ok(size),
        (None, None) => Ok(default_limit),
    }
}

/// Whether a range's end is included; an exclusive end may be one second past the last moment
/// the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Inclusive,
    Exclusive,
}

/// Digits only (no sign, no white space), as the document's patterns say, within `T`.
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A `from` or `to` value (see [`RawRoundsQuery::from`]) within what the store holds (see
/// `sluice_schema::domain::stored_seconds`): a moment no row can have is a 400, not an empty
/// or wrong page that costs a credit. A fraction of a second rounds up: rows have whole
/// seconds, and `t >= 08:00:00.5` (or `t < 08:00:00.5`) is `t >= 08:00:01` (`t < 08:00:01`).
pub(crate) fn parse_instant(
    name: &str,
    text: &str,
    bound: Bound,
) -> Result<DateTime<Utc>, BadQuery> {
    let instant = instant_of(text).ok_or_else(|| {
        BadQuery(format!(
            "{name}: must be a date (YYYY-MM-DD) or an RFC 3339 date and time \
             (YYYY-MM-DDTHH:MM:SS, optional fraction and offset)"
        ))
    })?;
    let last = i64::from(TIMESTAMP_MAX_SECONDS) + i64::from(bound == Bound::Exclusive);
    let last = DateTime::from_timestamp(last, 0).expect("within chrono's range");
    if !(DateTime::UNIX_EPOCH..=last).contains(&instant) {
        return Err(BadQuery(format!(
            "{name}: must be within 1970-01-01T00:00:00Z and {} (what the store holds)",
            last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(match instant.timestamp_subsec_nanos() {
        0 => instant,
        _ => DateTime::from_timestamp(instant.timestamp() + 1, 0).expect("within the range"),
    })
}

/// The grammar of the `from`/`to` pattern, read strictly:
/// `YYYY-MM-DD[(T|t| )HH:MM:SS[.F{1,9}][Z|z|(+|-)HH:MM]]`, a real calendar date and time.
fn instant_of(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let number = |at: usize, len: usize| -> Option<u32> {
        b.get(at..at + len)?.iter().try_fold(0_u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let byte_is = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(byte_is(4, b"-") && byte_is(7, b"-")) {
        return None;
    }
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5, 2)?, number(8, 2)?)?;
    if b.len() == 10 {
        return Some(date.and_time(NaiveTime::MIN).and_utc());
    }
    if !(byte_is(10, b"Tt ") && byte_is(13, b":") && byte_is(16, b":")) {
        return None;
    }
    let time = NaiveTime::from_hms_opt(number(11, 2)?, number(14, 2)?, number(17, 2)?)?;
    let mut at = 19;
    let mut nanos = 0;
    if byte_is(at, b".") {
        let digits = b[at + 1..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = number(at + 1, digits)? * 10_u32.pow(9 - digits as u32);
        at += 1 + digits;
    }
    let offset_seconds = match b.get(at..)? {
        [] => 0,
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(at + 1, 2)?, number(at + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let local = date.and_time(time).and_utc();
    let utc = local - chrono::TimeDelta::seconds(offset_seconds);
    utc.checked_add_signed(chrono::TimeDelta::nanoseconds(i64::from(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CursorSigner {
        CursorSigner::new(b"query-tests-secret-of-thirty-two-bytes")
    }

    #[allow(deprecated)]
    fn parse(pairs: &[(&str, &str)]) -> Result<RoundsQuery, BadQuery> {
        let mut raw = RawRoundsQuery::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "player_id" => raw.player_id = value,
                "game_id" => raw.game_id = value,
                "from" => raw.from = value,
                "to" => raw.to = value,
                "granularity" => raw.granularity = value,
                "limit" => raw.limit = value,
                "page_size" => raw.page_size = value,
                "cursor" => raw.cursor = value,
                _ => unreachable!(),
            }
        }
        RoundsQuery::parse(raw, 100, 1000, &signer())
    }

    #[test]
    fn filters_become_typed_values() {
        let query = parse(&[
            ("player_id", "9ECE8C4020F8AED10676CD1C56A41889"),
            ("game_id", "24002"),
            ("from", "2019-10-22"),
            ("to", "2019-10-22T10:00:00+02:00"),
            ("granularity", "day"),
            ("limit", "5"),
        ])
        .unwrap();
        assert_eq!(
            query.player_id.unwrap().as_str(),
            "9ece8c4020f8aed10676cd1c56a41889"
        );
        assert_eq!(query.game_id, Some(24002));
        assert_eq!(
            query.from.unwrap().to_rfc3339(),
            "2019-10-22T00:00:00+00:00"
        );
        assert_eq!(query.to.unwrap().to_rfc3339(), "2019-10-22T08:00:00+00:00");
        assert_eq!(query.granularity, Granularity::Day);
        assert_eq!(query.page_size, 5);
        assert_eq!(parse(&[]).unwrap().page_size, 100);
        assert_eq!(parse(&[("page_size", "7")]).unwrap().page_size, 7);
        assert_eq!(
            parse(&[("page_size", "7"), ("limit", "7")])
                .unwrap()
                .page_size,
            7
        );
    }

    #[test]
    fn a_cursor_is_accepted_only_with_the_filters_it_was_issued_for() {
        let filters = [
            ("player_id", "9ece8c4020f8aed10676cd1c56a41889"),
            ("from", "2019-10-22"),
        ];
        let first = parse(&filters).unwrap();
        let position = Position {
            start: 1_571_731_200,
            player_id: "9ece8c4020f8aed10676cd1c56a41889".into(),
            game_id: 7,
        };
        let cursor = signer().encode(&first.filters(), &position);
        let mut next = filters.to_vec();
        next.push(("cursor", &cursor));
        next.push(("page_size", "3"));
        assert_eq!(parse(&next).unwrap().after, Some(position));
        for other in [
            ("granularity", "day"),
            ("game_id", "7"),
            ("to", "2020-01-01"),
        ] {
            let mut pairs = next.clone();
            pairs.push(other);
            assert!(matches!(parse(&pairs), Err(BadQuery(_))), "{other:?}");
        }
        assert!(matches!(
            parse(&[("cursor", cursor.as_str())]),
            Err(BadQuery(_))
        ));
    }

    #[test]
    fn hostile_or_malformed_values_are_bad_requests() {
        for pairs in [
            [("player_id", "' OR 1=1 --")],
            [("game_id", "1; DROP TABLE game_rounds")],
            [("game_id", "99999999999999999999999")],
            [("game_id", "-1")],
            [("from", "yesterday")],
            [("to", "2019-13-45")],
            [("from", "9999-01-01")],
            [("granularity", "minute")],
            [("limit", "0")],
            [("limit", "1001")],
            [("page_size", "0")],
            [("page_size", "ten")],
            [("cursor", "not-a-cursor")],
        ] {
            assert!(matches!(parse(&pairs), Err(BadQuery(_))), "{pairs:?}");
        }
        assert!(matches!(
            parse(&[("from", "2020-01-02"), ("to", "2020-01-01")]),
            Err(BadQuery(_))
        ));
        assert!(matches!(
            parse(&[("page_size", "5"), ("limit", "6")]),
            Err(BadQuery(_))
        ));
    }

    #[test]
    fn instants_take_exactly_the_documented_forms() {
        let instant = |text: &str| {
            parse(&[("to", text)])
                .map(|q| q.to.unwrap().to_rfc3339())
                .map_err(|e| e.to_string())
        };
        for (text, utc) in [
            ("2019-10-22", "2019-10-22T00:00:00+00:00"),
            ("2019-10-22T08:00:00Z", "2019-10-22T08:00:00+00:00"),
            ("2019-10-22t08:00:00z", "2019-10-22T08:00:00+00:00"),
            ("2019-10-22 08:00:00", "2019-10-22T08:00:00+00:00"),
            ("2019-10-22T08:00:00", "2019-10-22T08:00:00+00:00"),
            ("2019-10-22T10:00:00+02:00", "2019-10-22T08:00:00+00:00"),
            ("2019-10-22T07:30:00-00:30", "2019-10-22T08:00:00+00:00"),
            // Rows have whole seconds: a fraction moves the bound to the next one.
            (
                "2019-10-22T07:59:59.000000001Z",
                "2019-10-22T08:00:00+00:00",
            ),
            ("2019-10-22T08:00:00.000Z", "2019-10-22T08:00:00+00:00"),
            ("2020-02-29", "2020-02-29T00:00:00+00:00"),
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
            ("2106-01-01T00:00:00Z", "2106-01-01T00:00:00+00:00"),
        ] {
            assert_eq!(instant(text), Ok(utc.to_owned()), "{text}");
        }
        for text in [
            "2019-1-2",
            " 2019-10-22",
            "2019-10-22 ",
            "+2019-10-22",
            "20191-10-22",
            "2019-02-30",
            "2019-02-29",
            "2019-10-22T24:00:00Z",
            "2019-10-22T23:59:60Z",
            "2019-10-22T08:00Z",
            "2019-10-22T08:00:00.Z",
            "2019-10-22T08:00:00.1234567890Z",
            "2019-10-22T08:00:00+2:00",
            "2019-10-22T08:00:00+24:00",
            "2019-10-22T08:00:00+0200",
            "2019-10-22T08:00:00ZZ",
            "2019-10-22X08:00:00Z",
            "\u{663}019-10-22",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2106-01-01T00:00:00.5Z",
        ] {
            assert!(instant(text).is_err(), "{text}");
        }
        assert!(parse(&[("from", "2105-12-31T23:59:59Z")]).is_ok());
        assert!(parse(&[("from", "2105-12-31T23:59:59.5Z")]).is_err());
    }

    #[test]
    fn numbers_and_ids_are_bare_digits_and_hex() {
        for pairs in [
            [("game_id", " 7")],
            [("game_id", "+7")],
            [("game_id", "7.0")],
            [("page_size", " 5")],
            [("page_size", "+5")],
            [("player_id", " 9ece8c4020f8aed10676cd1c56a41889")],
        ] {
            assert!(parse(&pairs).is_err(), "{pairs:?}");
        }
        assert_eq!(parse(&[("game_id", "007")]).unwrap().game_id, Some(7));
        assert_eq!(
            parse(&[("game_id", "18446744073709551615")])
                .unwrap()
                .game_id,
            Some(u64::MAX)
        );
        assert!(parse(&[("game_id", ""), ("player_id", ""), ("from", "")]).is_ok());
    }
}
