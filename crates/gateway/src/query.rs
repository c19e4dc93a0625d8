//! `GET /aggregated_game_rounds`: raw query-string values become a [`RoundsQuery`] (or a 400),
//! and the query reads exact sums from `game_rounds FINAL`. Every user value is bound by the
//! `clickhouse` crate, never spliced into the SQL text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use sluice_schema::domain::format_scaled;
use sluice_schema::PlayerId;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// The query string as sent. Every filter is optional; a malformed one is a 400 (not charged).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawRoundsQuery {
    /// Player: 32 hex characters.
    #[param(example = "9ece8c4020f8aed10676cd1c56a41889")]
    pub player_id: Option<String>,
    /// Game: a non-negative integer.
    #[param(example = "24002")]
    pub game_id: Option<String>,
    /// Start of the range, inclusive: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or a date.
    #[param(example = "2019-10-22")]
    pub from: Option<String>,
    /// End of the range, exclusive: same forms as `from`.
    #[param(example = "2019-10-23")]
    pub to: Option<String>,
    /// `hour` (default) or `day`.
    #[param(example = "hour")]
    pub granularity: Option<String>,
    /// Buckets per answer, 1 to `SLUICE_GATEWAY_MAX_LIMIT` (default 10000); default
    /// `SLUICE_GATEWAY_DEFAULT_LIMIT` (1000).
    pub limit: Option<String>,
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
    pub limit: u32,
}

impl RoundsQuery {
    pub fn parse(
        raw: RawRoundsQuery,
        default_limit: u32,
        max_limit: u32,
    ) -> Result<RoundsQuery, ApiError> {
        let bad = |message: String| ApiError::BadRequest(message);
        let player_id = raw
            .player_id
            .filter(|p| !p.is_empty())
            .map(|p| PlayerId::parse(&p).map_err(|e| bad(format!("player_id: {e}"))))
            .transpose()?;
        let game_id = raw
            .game_id
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.trim()
                    .parse::<u64>()
                    .map_err(|_| bad("game_id: must be a non-negative integer".into()))
            })
            .transpose()?;
        let from = raw
            .from
            .filter(|t| !t.is_empty())
            .map(|t| parse_instant("from", &t))
            .transpose()?;
        let to = raw
            .to
            .filter(|t| !t.is_empty())
            .map(|t| parse_instant("to", &t))
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
        let limit = match raw.limit.as_deref() {
            None | Some("") => default_limit,
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=max_limit).contains(&limit) => limit,
                _ => return Err(bad(format!("limit: must be between 1 and {max_limit}"))),
            },
        };
        Ok(RoundsQuery {
            player_id,
            game_id,
            from,
            to,
            granularity,
            limit,
        })
    }
}

/// RFC 3339 (`2019-10-22T08:00:00Z`), `2019-10-22 08:00:00` (UTC) or a date (its midnight, UTC).
fn parse_instant(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").map(|t| t.and_utc()))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_time(Default::default()).and_utc())
        });
    let instant = parsed.map_err(|_| {
        ApiError::BadRequest(format!(
            "{name}: must be an RFC 3339 timestamp or a YYYY-MM-DD date"
        ))
    })?;
    if !(0..=i64::from(u32::MAX)).contains(&instant.timestamp()) {
        return Err(ApiError::BadRequest(format!(
            "{name}: out of the supported range"
        )));
    }
    Ok(instant)
}

/// One bucket of the answer. Money is an exact decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the hour or day, RFC 3339 UTC. Named `hour` or `day` after the granularity.
    #[serde(skip)]
    pub start: DateTime<Utc>,
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
            start: DateTime::from_timestamp(i64::from(row.start), 0).unwrap_or_default(),
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

/// Runs the query; returns at most `limit` buckets and whether more exist.
pub async fn fetch(
    client: &Client,
    query: &RoundsQuery,
) -> Result<(Vec<Bucket>, bool), clickhouse::error::Error> {
    let bucket = match query.granularity {
        Granularity::Hour => "toStartOfHour(created_timestamp)",
        Granularity::Day => "toStartOfDay(created_timestamp)",
    };
    let mut conditions = Vec::new();
    if query.player_id.is_some() {
        conditions.push("user_id = ?");
    }
    if query.game_id.is_some() {
        conditions.push("game_id = ?");
    }
    if query.from.is_some() {
        conditions.push("created_timestamp >= toDateTime(?, 'UTC')");
    }
    if query.to.is_some() {
        conditions.push("created_timestamp < toDateTime(?, 'UTC')");
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // Sums of Nullable(Decimal(18, 4)) skip NULLs and come back as Nullable(Decimal(38, 4)).
    let sql = format!(
        "SELECT toUInt32({bucket}) AS start, user_id, game_id, \
         sum(real_amount_bet) AS real_amount_bet, sum(bonus_amount_bet) AS bonus_amount_bet, \
         sum(real_amount_win) AS real_amount_win, sum(bonus_amount_win) AS bonus_amount_win, \
         count() AS rounds \
         FROM game_rounds FINAL {filter} \
         GROUP BY start, user_id, game_id \
         ORDER BY start, user_id, game_id \
         LIMIT ?"
    );
    let mut statement = client.query(&sql);
    if let Some(player_id) = &query.player_id {
        statement = statement.bind(player_id.as_str());
    }
    if let Some(game_id) = query.game_id {
        statement = statement.bind(game_id);
    }
    for instant in [query.from, query.to].into_iter().flatten() {
        statement = statement.bind(instant.format("%Y-%m-%d %H:%M:%S").to_string());
    }
    statement = statement.bind(u64::from(query.limit) + 1);
    let mut rows = statement.fetch_all::<BucketRow>().await?;
    let has_more = rows.len() > query.limit as usize;
    rows.truncate(query.limit as usize);
    Ok((rows.into_iter().map(Bucket::from).collect(), has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                _ => unreachable!(),
            }
        }
        RoundsQuery::parse(raw, 100, 1000)
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
        assert_eq!(query.limit, 5);
        assert_eq!(parse(&[]).unwrap().limit, 100);
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
