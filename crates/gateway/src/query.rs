//! `GET /aggregated_game_rounds`: raw query-string values become a [`RoundsQuery`] (or a 400),
//! and the query reads exact sums from the hourly rollup, and from current raw rows for the
//! hours not processed yet ([`fetch`], docs/PROCESSING.md), one page at a time in the order
//! `(bucket start, player_id, game_id)`. A page after the first starts after the position its
//! cursor names (keyset pagination: `(start, user_id, game_id) > (…)`, no `OFFSET`). Every
//! user value is bound by the `clickhouse` crate, never spliced into the SQL text.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::spec::GAME_ROUNDS_HOURLY;
use sluice_rollup::{hour_of, HOUR_SECONDS};
use sluice_schema::domain::{format_scaled, TIMESTAMP_MAX_SECONDS};
use sluice_schema::PlayerId;
use utoipa::{IntoParams, ToSchema};

use crate::cursor::{CursorSigner, Position};
use crate::error::ApiError;

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
    ) -> Result<RoundsQuery, ApiError> {
        let bad = |message: String| ApiError::BadRequest(message);
        let player_id = raw
            .player_id
            .filter(|p| !p.is_empty())
            .map(|p| match p.bytes().all(|b| b.is_ascii_hexdigit()) {
                true => PlayerId::parse(&p).map_err(|e| bad(format!("player_id: {e}"))),
                false => Err(bad("player_id: must be 32 hexadecimal characters".into())),
            })
            .transpose()?;
        let game_id = raw
            .game_id
            .filter(|g| !g.is_empty())
            .map(|g| {
                decimal::<u64>(&g).ok_or_else(|| {
                    bad(
                        "game_id: must be a non-negative integer, at most 18446744073709551615"
                            .into(),
                    )
                })
            })
            .transpose()?;
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
        let size = |name: &str, text: Option<String>| match text.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => match decimal::<u32>(text) {
                Some(size) if (1..=max_limit).contains(&size) => Ok(Some(size)),
                _ => Err(bad(format!("{name}: must be between 1 and {max_limit}"))),
            },
        };
        let page_size = match (size("page_size", raw.page_size)?, size("limit", raw.limit)?) {
            (Some(page_size), Some(limit)) if page_size != limit => {
                return Err(bad(
                    "limit: a deprecated alias of page_size; send one of them".into(),
                ))
            }
            (Some(size), _) | (None, Some(size)) => size,
            (None, None) => default_limit,
        };
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
            query.after = Some(cursors.decode(&query.filters(), &cursor)?);
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

/// Whether a range's end is included; an exclusive end may be one second past the last moment
/// the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
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
fn parse_instant(name: &str, text: &str, bound: Bound) -> Result<DateTime<Utc>, ApiError> {
    let instant = instant_of(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{name}: must be a date (YYYY-MM-DD) or an RFC 3339 date and time \
             (YYYY-MM-DDTHH:MM:SS, optional fraction and offset)"
        ))
    })?;
    let last = i64::from(TIMESTAMP_MAX_SECONDS) + i64::from(bound == Bound::Exclusive);
    let last = DateTime::from_timestamp(last, 0).expect("within chrono's range");
    if !(DateTime::UNIX_EPOCH..=last).contains(&instant) {
        return Err(ApiError::BadRequest(format!(
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

/// One bucket of the answer. Money is an exact decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the hour or day, RFC 3339 UTC. Named `hour` or `day` after the granularity.
    #[serde(skip)]
    pub start: DateTime<Utc>,
    /// `start` as the store has it (seconds since the epoch), the cursor's position.
    #[serde(skip)]
    pub start_seconds: u32,
    pub player_id: String,
    pub game_id: u64,
    #[schema(example = "12.5")]
    pub real_amount_bet: String,
    pub bonus_amount_bet: String,
    pub real_amount_win: String,
    pub bonus_amount_win: String,
    pub rounds: u64,
    /// Gross gaming revenue: bets minus wins, real and bonus together.
    #[schema(example = "9.5")]
    pub ggr: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct BucketRow {
    start: u32,
    user_id: String,
    game_id: u64,
    real_amount_bet: Option<i128>,
    bonus_amount_bet: Option<i128>,
    real_amount_win: Option<i128>,
    bonus_amount_win: Option<i128>,
    rounds: u64,
}

impl Bucket {
    /// This bucket's sort key: where the page after it starts.
    pub fn position(&self) -> Position {
        Position {
            start: self.start_seconds,
            player_id: self.player_id.clone(),
            game_id: self.game_id,
        }
    }
}

impl From<BucketRow> for Bucket {
    fn from(row: BucketRow) -> Bucket {
        let [rb, bb, rw, bw] = [
            row.real_amount_bet,
            row.bonus_amount_bet,
            row.real_amount_win,
            row.bonus_amount_win,
        ]
        .map(|v| v.unwrap_or(0));
        Bucket {
            start: DateTime::from_timestamp(i64::from(row.start), 0)
                .expect("every u32 of seconds is within chrono's range"),
            start_seconds: row.start,
            player_id: row.user_id,
            game_id: row.game_id,
            real_amount_bet: format_scaled(rb),
            bonus_amount_bet: format_scaled(bb),
            real_amount_win: format_scaled(rw),
            bonus_amount_win: format_scaled(bw),
            rounds: row.rounds,
            ggr: format_scaled(rb + bb - rw - bw),
        }
    }
}

/// Why an answer could not be read; the charge is refunded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
}

/// Where answers are read from: the rollup and its raw rows in ClickHouse, and which hours
/// are not processed yet in Redis (docs/PROCESSING.md).
#[derive(Clone)]
pub struct Source {
    pub clickhouse: Client,
    pub redis: deadpool_redis::Pool,
    pub dirty: DirtyHours,
}

/// [`fetch`], once more if the first attempt failed on the network: a pooled connection the
/// server closed while it was idle (past its keep-alive) fails the first request sent on it,
/// and the retry takes a fresh one. A read is safe to repeat.
pub async fn fetch_retrying(
    source: &Source,
    query: &RoundsQuery,
) -> Result<(Vec<Bucket>, bool), FetchError> {
    match fetch(source, query).await {
        Err(FetchError::ClickHouse(clickhouse::error::Error::Network(error))) => {
            tracing::info!(%error, "ClickHouse connection failed; retrying the query once.");
            metrics::counter!("sluice_gateway_query_retries_total").increment(1);
            fetch(source, query).await
        }
        answer => answer,
    }
}

/// The hours a page can hold buckets of (first seconds, inclusive) and those of them only
/// partly inside the asked range (read from raw rows: the rollup holds whole hours).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    first: u32,
    last: u32,
    partial: Vec<u32>,
}

impl Span {
    /// The span of `query`, narrowed to what lies past its cursor; `None` when empty.
    fn of(query: &RoundsQuery) -> Option<Span> {
        let from = query.from.map_or(0, |t| t.timestamp());
        let to = query
            .to
            .map_or(i64::from(TIMESTAMP_MAX_SECONDS) + 1, |t| t.timestamp());
        if to <= from {
            return None;
        }
        let hour = |seconds: i64| hour_of(u32::try_from(seconds).unwrap_or(u32::MAX));
        let (mut first, mut last) = (hour(from), hour(to - 1));
        let mut partial = Vec::new();
        if from % i64::from(HOUR_SECONDS) != 0 {
            partial.push(first);
        }
        if to % i64::from(HOUR_SECONDS) != 0 && partial.last() != Some(&last) {
            partial.push(last);
        }
        if let Some(after) = &query.after {
            let bucket_hours = match query.granularity {
                Granularity::Hour => 1,
                Granularity::Day => 24,
            };
            match query.order {
                Order::Ascending => first = first.max(after.start),
                Order::Descending => {
                    let end = after
                        .start
                        .saturating_add((bucket_hours - 1) * HOUR_SECONDS);
                    last = last.min(end);
                }
            }
        }
        partial.retain(|h| (first..=last).contains(h));
        (first <= last).then_some(Span {
            first,
            last,
            partial,
        })
    }
}

/// A statement's text and its values, bound in order.
#[derive(Default)]
struct Statement {
    conditions: Vec<&'static str>,
    values: Vec<Value>,
}

enum Value {
    Text(String),
    Number(u64),
    Seconds(i64),
}

impl Statement {
    fn condition(&mut self, sql: &'static str, values: impl IntoIterator<Item = Value>) {
        self.conditions.push(sql);
        self.values.extend(values);
    }

    fn filter(&self) -> String {
        match self.conditions.is_empty() {
            true => "1".to_owned(),
            false => self.conditions.join(" AND "),
        }
    }
}

/// The player and game filters, over the rollup's group-by columns.
fn group_filter(query: &RoundsQuery) -> Statement {
    let mut statement = Statement::default();
    if let Some(player_id) = &query.player_id {
        statement.condition("user_id = ?", [Value::Text(player_id.as_str().to_owned())]);
    }
    if let Some(game_id) = query.game_id {
        statement.condition("game_id = ?", [Value::Number(game_id)]);
    }
    statement
}

/// Reads one page: every hour of the range from the rollup at its published version, except
/// the hours not processed yet (dirty in Redis) and those only partly inside the range, which
/// are summed from their current raw rows — one statement, so no hour is counted twice or
/// not at all. Returns at most `page_size` buckets and whether more exist.
pub async fn fetch(
    source: &Source,
    query: &RoundsQuery,
) -> Result<(Vec<Bucket>, bool), FetchError> {
    let Some(span) = Span::of(query) else {
        return Ok((Vec::new(), false));
    };
    let mut raw_hours = {
        let mut redis = source.redis.get().await?;
        source
            .dirty
            .between(&mut redis, span.first, span.last)
            .await?
    };
    raw_hours.extend(&span.partial);
    raw_hours.sort_unstable();
    raw_hours.dedup();
    let rollup = &GAME_ROUNDS_HOURLY;
    let published = group_filter(query);
    let mut sql = rollup.published_rows(span.first, span.last, &raw_hours, &published.filter());
    let mut values = published.values;
    if !raw_hours.is_empty() {
        let mut raw = group_filter(query);
        // Instants are bound as seconds: `toDateTime` of a number is exact on every
        // ClickHouse version, where text beyond 2105 is read as garbage by 18.16.
        if let Some(from) = query.from {
            raw.condition(
                "created_timestamp >= toDateTime(?)",
                [Value::Seconds(from.timestamp())],
            );
        }
        if let Some(to) = query.to {
            raw.condition(
                "created_timestamp < toDateTime(?)",
                [Value::Seconds(to.timestamp())],
            );
        }
        sql = format!(
            "{sql} UNION ALL {}",
            rollup.current_inputs(&raw_hours, &raw.filter())
        );
        values.extend(raw.values);
    }
    let bucket = match query.granularity {
        Granularity::Hour => "toUInt32(toStartOfHour(at))",
        Granularity::Day => "toUInt32(toStartOfDay(at))",
    };
    let (keyset, order_by) = match query.order {
        Order::Ascending => (">", "start, user_id, game_id"),
        Order::Descending => ("<", "start DESC, user_id DESC, game_id DESC"),
    };
    let keyset = match &query.after {
        Some(after) => {
            values.extend([
                Value::Number(u64::from(after.start)),
                Value::Text(after.player_id.clone()),
                Value::Number(after.game_id),
            ]);
            format!("WHERE ({bucket}, user_id, game_id) {keyset} (?, ?, ?)")
        }
        None => String::new(),
    };
    // Sums of Nullable(Decimal) skip NULLs and come back as Nullable(Decimal(38, 4)).
    let sql = format!(
        "SELECT {bucket} AS start, user_id, game_id, \
         sum(real_amount_bet) AS real_amount_bet, sum(bonus_amount_bet) AS bonus_amount_bet, \
         sum(real_amount_win) AS real_amount_win, sum(bonus_amount_win) AS bonus_amount_win, \
         sum(rounds) AS rounds \
         FROM ({sql}) {keyset} \
         GROUP BY start, user_id, game_id ORDER BY {order_by} LIMIT ?"
    );
    let mut statement = source.clickhouse.query(&sql);
    for value in values {
        statement = match value {
            Value::Text(text) => statement.bind(text),
            Value::Number(number) => statement.bind(number),
            Value::Seconds(seconds) => statement.bind(seconds),
        };
    }
    statement = statement.bind(u64::from(query.page_size) + 1);
    let mut rows = statement.fetch_all::<BucketRow>().await?;
    let has_more = rows.len() > query.page_size as usize;
    rows.truncate(query.page_size as usize);
    Ok((rows.into_iter().map(Bucket::from).collect(), has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CursorSigner {
        CursorSigner::new(b"query-tests-secret-of-thirty-two-bytes")
    }

    #[allow(deprecated)]
    fn parse(pairs: &[(&str, &str)]) -> Result<RoundsQuery, ApiError> {
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
            assert!(
                matches!(parse(&pairs), Err(ApiError::BadRequest(_))),
                "{other:?}"
            );
        }
        assert!(matches!(
            parse(&[("cursor", cursor.as_str())]),
            Err(ApiError::BadRequest(_))
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
            assert!(
                matches!(parse(&pairs), Err(ApiError::BadRequest(_))),
                "{pairs:?}"
            );
        }
        assert!(matches!(
            parse(&[("from", "2020-01-02"), ("to", "2020-01-01")]),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse(&[("page_size", "5"), ("limit", "6")]),
            Err(ApiError::BadRequest(_))
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

    #[test]
    fn buckets_carry_exact_sums_and_ggr() {
        let bucket = Bucket::from(BucketRow {
            start: 3600,
            user_id: "p".into(),
            game_id: 1,
            real_amount_bet: Some(25_000),
            bonus_amount_bet: None,
            real_amount_win: Some(1),
            bonus_amount_win: Some(10_000),
            rounds: 3,
        });
        assert_eq!(bucket.real_amount_bet, "2.5");
        assert_eq!(bucket.bonus_amount_bet, "0");
        assert_eq!(bucket.ggr, "1.4999");
        assert_eq!(bucket.start.to_rfc3339(), "1970-01-01T01:00:00+00:00");
    }
}
