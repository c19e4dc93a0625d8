//! Redis balances against the usage ledger. A key's ledger balance is
//! `granted - charged + refunded` over its `usage_ledger` rows; its Redis balance plus the
//! charges its open leases hold (admitted, not yet settled: not yet in the ledger) must equal
//! it. The audit lists every key that differs, or whose ledger lacks the grant every key gets
//! at creation; a rebuild sets a key's Redis balance to its ledger balance less its open
//! leases. Both first drain the ledger's outbox, so every movement made before counts.
//!
//! Since each movement and its event are written by one Redis script and the outbox is
//! drained exactly once, a difference means something outside the gateway: a key used while
//! the audit runs (a movement between the drain and the reading), a balance edited in Redis
//! by hand, ledger rows deleted, or keys created before the ledger existed. Rebuild a key
//! only while it is idle; it refuses keys with no ledger rows at all.

use std::collections::{BTreeMap, HashMap};

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::credits::{CreditError, CreditStore, KeyId, KeyInfo};
use crate::ledger::LEDGER_TABLE;

/// Why an audit or a rebuild failed. Mapped to HTTP once, in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Credits(#[from] CreditError),
    #[error("the analytics store is unavailable")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// The key's ledger cannot be rebuilt from; the message says why.
    #[error("{0}")]
    NotRebuildable(String),
}

/// A key's movements in the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct LedgerTotals {
    pub granted: u64,
    pub charged: u64,
    pub refunded: u64,
    /// Rows (events) of the key.
    pub events: u64,
    /// `granted` rows of the key: at least its creation's.
    pub grants: u64,
}

impl LedgerTotals {
    /// What the key should hold: granted - charged + refunded.
    pub fn balance(&self) -> i64 {
        let balance =
            i128::from(self.granted) - i128::from(self.charged) + i128::from(self.refunded);
        i64::try_from(balance).unwrap_or(if balance < 0 { i64::MIN } else { i64::MAX })
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TotalsRow {
    key_id: String,
    granted: u64,
    charged: u64,
    refunded: u64,
    events: u64,
    grants: u64,
}

/// Every key's ledger totals (`only`: one key's).
pub async fn ledger_totals(
    client: &Client,
    only: Option<&KeyId>,
) -> Result<HashMap<String, LedgerTotals>, clickhouse::error::Error> {
    let filter = if only.is_some() {
        "WHERE key_id = ?"
    } else {
        ""
    };
    let sql = format!(
        "SELECT key_id, sumIf(amount, status = 'granted') AS granted, \
         sumIf(amount, status = 'charged') AS charged, \
         sumIf(amount, status = 'refunded') AS refunded, count() AS events, \
         countIf(status = 'granted') AS grants \
         FROM {LEDGER_TABLE} FINAL {filter} GROUP BY key_id"
    );
    let mut statement = client.query(&sql);
    if let Some(id) = only {
        statement = statement.bind(id.as_str());
    }
    let rows = statement.fetch_all::<TotalsRow>().await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.key_id,
                LedgerTotals {
                    granted: row.granted,
                    charged: row.charged,
                    refunded: row.refunded,
                    events: row.events,
                    grants: row.grants,
                },
            )
        })
        .collect())
}

/// One key whose Redis balance and ledger balance differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyAudit {
    #[schema(example = "3f2a9c0d1e8b7a65")]
    pub id: String,
    /// The balance in Redis; `null`: the ledger names a key Redis does not have.
    pub redis_credits: Option<u64>,
    /// Credits held by the key's requests not yet settled (in Redis, not yet in the ledger).
    pub leased: u64,
    /// `granted - charged + refunded`.
    pub ledger_credits: i64,
    pub granted: u64,
    pub charged: u64,
    pub refunded: u64,
    /// Ledger rows of the key (0: none, e.g. a key older than the ledger).
    pub ledger_events: u64,
    /// `redis_credits + leased - ledger_credits` (a missing Redis balance counts as 0).
    pub difference: i64,
    /// The ledger has no `granted` row for the key, which every key gets at creation.
    pub missing_grant: bool,
}

/// `GET /admin/audit` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditReport {
    /// Keys compared (in Redis or in the ledger).
    pub checked: usize,
    /// Keys whose balances differ, by id. Empty: every balance matches its ledger.
    pub differences: Vec<KeyAudit>,
}

/// Compares every key's Redis balance (with its open leases) with its ledger totals.
pub fn compare(keys: &[KeyInfo], ledger: &HashMap<String, LedgerTotals>) -> AuditReport {
    // Per id: (Redis balance, open leases) if Redis has the key, and its ledger totals.
    type Sides = (Option<(u64, u64)>, LedgerTotals);
    let mut all: BTreeMap<&str, Sides> = BTreeMap::new();
    for key in keys {
        all.entry(&key.id).or_default().0 = Some((key.credits, key.leased));
    }
    for (id, totals) in ledger {
        all.entry(id).or_default().1 = *totals;
    }
    let checked = all.len();
    let differences = all
        .into_iter()
        .filter_map(|(id, (redis, totals))| {
            let ledger_credits = totals.balance();
            let (credits, leased) = redis.unwrap_or_default();
            let difference = i64::try_from(
                i128::from(credits) + i128::from(leased) - i128::from(ledger_credits),
            )
            .unwrap_or(i64::MAX);
            let missing_grant = totals.grants == 0;
            (difference != 0 || redis.is_none() || missing_grant).then(|| KeyAudit {
                id: id.to_owned(),
                redis_credits: redis.map(|(credits, _)| credits),
                leased,
                ledger_credits,
                granted: totals.granted,
                charged: totals.charged,
                refunded: totals.refunded,
                ledger_events: totals.events,
                difference,
                missing_grant,
            })
        })
        .collect();
    AuditReport {
        checked,
        differences,
    }
}

/// Every key's Redis balance against the ledger.
pub async fn audit(credits: &CreditStore, clickhouse: &Client) -> Result<AuditReport, AuditError> {
    let keys = credits.keys().await?;
    let ledger = ledger_totals(clickhouse, None).await?;
    Ok(compare(&keys, &ledger))
}

/// `POST /admin/keys/{id}/rebuild` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rebuilt {
    pub id: String,
    /// The Redis balance before.
    pub previous_credits: u64,
    /// The Redis balance now: the ledger balance less the key's open leases.
    pub credits: u64,
}

/// Sets the key's Redis balance to its ledger balance less its open leases.
pub async fn rebuild(
    credits: &CreditStore,
    clickhouse: &Client,
    id: &KeyId,
) -> Result<Rebuilt, AuditError> {
    // 404 for an unknown key before anything else.
    credits.key(id).await?;
    let totals = ledger_totals(clickhouse, Some(id))
        .await?
        .remove(id.as_str())
        .unwrap_or_default();
    if totals.events == 0 {
        return Err(AuditError::NotRebuildable(
            "the key has no ledger rows (created before the ledger?); nothing to rebuild from"
                .into(),
        ));
    }
    let balance = u64::try_from(totals.balance()).map_err(|_| {
        AuditError::NotRebuildable(format!(
            "the ledger balance is negative ({}); fix the ledger first",
            totals.balance()
        ))
    })?;
    let (previous_credits, credits) = credits.set_credits(id, balance).await?;
    tracing::warn!(key_id = %id, previous_credits, credits, "Balance rebuilt from the ledger.");
    Ok(Rebuilt {
        id: id.to_string(),
        previous_credits,
        credits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, credits: u64, leased: u64) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            name: String::new(),
            credits,
            created_at: None,
            revoked: false,
            revoked_at: None,
            expires_at: None,
            rotated_at: None,
            rate_limit: crate::credits::RateLimit::new(1, 1).unwrap(),
            rate_limit_is_default: true,
            leased,
        }
    }

    #[test]
    fn keys_whose_balance_and_leases_differ_from_the_ledger_or_lack_a_grant_are_reported() {
        let totals = |granted, charged, refunded, events, grants| LedgerTotals {
            granted,
            charged,
            refunded,
            events,
            grants,
        };
        let ledger = HashMap::from([
            ("a".to_owned(), totals(10, 4, 1, 6, 1)),
            ("b".to_owned(), totals(10, 4, 1, 6, 1)),
            ("leasing".to_owned(), totals(10, 4, 1, 6, 1)),
            ("gone".to_owned(), totals(3, 0, 0, 1, 1)),
            ("ungranted".to_owned(), totals(0, 0, 0, 0, 0)),
            ("charged-only".to_owned(), totals(0, 2, 2, 2, 0)),
        ]);
        let report = compare(
            &[
                key("a", 7, 0),
                key("b", 9, 0),
                key("leasing", 5, 2),
                key("old", 5, 0),
                key("ungranted", 0, 0),
                key("charged-only", 0, 0),
            ],
            &ledger,
        );
        assert_eq!(report.checked, 7);
        let found: Vec<(&str, Option<u64>, i64, i64, bool)> = report
            .differences
            .iter()
            .map(|d| {
                (
                    d.id.as_str(),
                    d.redis_credits,
                    d.ledger_credits,
                    d.difference,
                    d.missing_grant,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("b", Some(9), 7, 2, false),
                ("charged-only", Some(0), 0, 0, true),
                ("gone", None, 3, -3, false),
                ("old", Some(5), 0, 5, true),
                ("ungranted", Some(0), 0, 0, true),
            ]
        );
    }
}
