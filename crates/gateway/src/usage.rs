//! A key's usage over time, for the key's own holder (`GET /usage`): its movements in the
//! usage ledger summed per hour or day. It reads what the drainer already moved into
//! ClickHouse, so the latest `ledger_flush_interval_ms` may be missing; it never drains the
//! outbox itself (only the admin audit does) and costs no credit.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::credits::KeyInfo;
use crate::ledger::LEDGER_TABLE;

/// The longest span `GET /usage` sums, in days.
pub const MAX_DAYS: u32 = 90;

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UsageGranularity {
    #[default]
    Hour,
    Day,
}

/// Query of `GET /usage`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// How many days back from now, 1 to 90. Default 7.
    #[serde(default = "default_days")]
    #[param(minimum = 1, maximum = 90)]
    pub days: u32,
    /// `hour` (the default) or `day` buckets.
    #[serde(default)]
    #[param(inline)]
    pub granularity: UsageGranularity,
}

fn default_days() -> u32 {
    7
}

/// One bucket of a key's usage: what moved, in credits, and how many queries were charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, clickhouse::Row)]
pub struct UsageBucket {
    /// The bucket's start, Unix seconds (UTC).
    pub start: u32,
    pub charged: u64,
    pub refunded: u64,
    pub granted: u64,
    /// Charged queries (each page is one).
    pub queries: u64,
}

/// `GET /usage`: the key and its usage, oldest bucket first; buckets without movements are
/// left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub key: KeyInfo,
    pub granularity: UsageGranularity,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    pub buckets: Vec<UsageBucket>,
}

/// The statement that sums one key's ledger rows with `at` in `[from, to)`, and its binds
/// in order: key id, `from` and `to` in Unix seconds.
pub fn statement(granularity: UsageGranularity) -> String {
    let start = match granularity {
        UsageGranularity::Hour => "toStartOfHour(at)",
        UsageGranularity::Day => "toStartOfDay(at)",
    };
    // Aliases differ from every column read (ClickHouse aliases are global in a query).
    format!(
        "SELECT toUInt32({start}) AS bucket_start, \
         sumIf(amount, status = 'charged') AS charged_credits, \
         sumIf(amount, status = 'refunded') AS refunded_credits, \
         sumIf(amount, status = 'granted') AS granted_credits, \
         countIf(status = 'charged') AS charged_queries \
         FROM {LEDGER_TABLE} FINAL \
         WHERE key_id = ? AND toUInt32(at) >= ? AND toUInt32(at) < ? \
         GROUP BY bucket_start ORDER BY bucket_start"
    )
}

/// The key's usage over the `query.days` days before `now`.
pub async fn usage(
    client: &Client,
    key: KeyInfo,
    query: &UsageQuery,
    now: DateTime<Utc>,
) -> Result<Usage, clickhouse::error::Error> {
    let to = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
    let from = to.saturating_sub(query.days.saturating_mul(86_400));
    let buckets = client
        .query(&statement(query.granularity))
        .bind(key.id.as_str())
        .bind(from)
        .bind(to)
        .fetch_all::<UsageBucket>()
        .await?;
    let instant = |secs: u32| {
        Utc.timestamp_opt(i64::from(secs), 0)
            .single()
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    Ok(Usage {
        key,
        granularity: query.granularity,
        from: instant(from),
        to: instant(to),
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_binds_key_and_span_and_buckets_by_the_granularity() {
        let hourly = statement(UsageGranularity::Hour);
        assert!(hourly.starts_with("SELECT toUInt32(toStartOfHour(at)) AS bucket_start,"));
        assert!(hourly.contains(
            "FROM usage_ledger FINAL WHERE key_id = ? AND toUInt32(at) >= ? AND toUInt32(at) < ?"
        ));
        assert_eq!(hourly.matches('?').count(), 3, "key, from, to");
        let daily = statement(UsageGranularity::Day);
        assert_eq!(daily, hourly.replace("toStartOfHour", "toStartOfDay"));
    }
}
