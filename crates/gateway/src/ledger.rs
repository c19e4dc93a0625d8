//! The usage ledger: every credit movement of an API key (a grant at creation or top-up, a
//! query's charge, a failed or unsettled query's refund) becomes one row of the ClickHouse
//! table `usage_ledger` (`schemas/clickhouse/0003_usage_ledger.sql`), exactly once.
//!
//! Each movement and its event are written by one Redis script (`lua/outbox.lua`): the event
//! goes to the outbox stream `P ledger:outbox`, durable as soon as the balance moved. Requests
//! never wait for ClickHouse. A [`drainer`] in every gateway moves the outbox into ClickHouse
//! in batches (when `ledger_batch_rows` are waiting, or every `ledger_flush_interval_ms`):
//! read the oldest entries, insert them, then delete them from the stream. A batch inserted
//! twice (a drainer killed between insert and delete, two gateways draining at once) is
//! stored once: rows are keyed by `(key_id, event_id)` in a `ReplacingMergeTree` and read
//! with `FINAL`, the event id being the entry's stream id. While ClickHouse is down, events
//! wait in Redis (`sluice_gateway_ledger_outbox_events`); none is dropped.

use sluice_schema::migrations::Layout;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use deadpool_redis::Pool;
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use sluice_schema::backoff::Backoff;

use crate::credits::CreditStore;

/// Table the events land in (see `schemas/clickhouse/0003_usage_ledger.sql`).
pub const LEDGER_TABLE: &str = "usage_ledger";

const RETRY_BACKOFF_START: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which way credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// Credits given to the key: at creation (even 0) and by a top-up.
    Granted,
    /// Credits taken by an admitted query.
    Charged,
    /// A charge given back because the query failed or was never settled.
    Refunded,
}

impl Movement {
    /// The `status` column's value (and the outbox's `status` field).
    pub fn as_str(self) -> &'static str {
        match self {
            Movement::Granted => "granted",
            Movement::Charged => "charged",
            Movement::Refunded => "refunded",
        }
    }

    fn parse(text: &str) -> Option<Movement> {
        [Movement::Granted, Movement::Charged, Movement::Refunded]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// One credit movement, as read from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEvent {
    /// The outbox entry's id (`<ms>-<seq>`): unique, and the same however often it is read.
    pub event_id: String,
    pub key_id: String,
    pub movement: Movement,
    pub amount: u64,
    /// The route, e.g. `GET /aggregated_game_rounds`.
    pub endpoint: String,
    /// The status the request was answered with (0: never answered, a lease swept).
    pub http_status: u16,
    /// Time from the request's start to this event.
    pub latency_ms: u32,
    /// When it happened: seconds since the epoch, Redis time (the entry id's first part).
    pub at: u32,
}

/// An outbox entry that is not an event `lua/outbox.lua` writes.
#[derive(Debug, thiserror::Error)]
#[error("outbox entry {id} is malformed: {reason}")]
pub struct MalformedEntry {
    pub id: String,
    pub reason: &'static str,
}

impl LedgerEvent {
    /// Decodes one outbox entry: the protocol `lua/outbox.lua` writes, read in one place.
    pub fn from_entry(
        id: &str,
        fields: &HashMap<String, String>,
    ) -> Result<LedgerEvent, MalformedEntry> {
        let bad = |reason| MalformedEntry {
            id: id.to_owned(),
            reason,
        };
        let field = |name: &'static str| fields.get(name).ok_or_else(|| bad(name));
        let number = |name: &'static str| -> Result<u64, MalformedEntry> {
            field(name)?.parse().map_err(|_| bad(name))
        };
        let millis: u64 = id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .ok_or_else(|| bad("id"))?;
        Ok(LedgerEvent {
            event_id: id.to_owned(),
            key_id: field("key_id")?.clone(),
            movement: Movement::parse(field("status")?).ok_or_else(|| bad("status"))?,
            amount: number("amount")?,
            endpoint: field("endpoint")?.clone(),
            http_status: u16::try_from(number("http_status")?).map_err(|_| bad("http_status"))?,
            latency_ms: u32::try_from(number("latency_ms")?).unwrap_or(u32::MAX),
            at: u32::try_from(millis / 1000).map_err(|_| bad("id"))?,
        })
    }
}

/// One row of `usage_ledger` in RowBinary; `recorded_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
struct LedgerRow<'a> {
    event_id: &'a str,
    key_id: &'a str,
    status: &'static str,
    amount: u64,
    endpoint: &'a str,
    http_status: u16,
    latency_ms: u32,
    at: u32,
}

impl<'a> LedgerRow<'a> {
    fn from_event(event: &'a LedgerEvent) -> LedgerRow<'a> {
        LedgerRow {
            event_id: &event.event_id,
            key_id: &event.key_id,
            status: event.movement.as_str(),
            amount: event.amount,
            endpoint: &event.endpoint,
            http_status: event.http_status,
            latency_ms: event.latency_ms,
            at: event.at,
        }
    }
}

/// How the drainer batches.
#[derive(Debug, Clone, Copy)]
pub struct LedgerSettings {
    /// Events per insert, at most.
    pub batch_rows: usize,
    /// Longest wait between two looks at the outbox.
    pub flush_interval: Duration,
}

/// The ledger did not confirm a flush in time (ClickHouse slow or down).
#[derive(Debug, thiserror::Error)]
#[error("the usage ledger was not written within {0:?}")]
pub struct FlushTimedOut(pub Duration);

/// Moves the Redis outbox into ClickHouse. Cheap to clone; any number of gateways may drain
/// the same outbox at once (a batch stored twice is one set of rows).
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
    outbox: String,
    client: Client,
    database: String,
    layout: Layout,
    settings: LedgerSettings,
    table_ready: Arc<OnceCell<()>>,
}

impl Ledger {
    pub fn new(
        credits: &CreditStore,
        client: Client,
        database: String,
        layout: Layout,
        settings: LedgerSettings,
    ) -> Ledger {
        let (pool, prefix) = credits.pool();
        Ledger {
            pool: pool.clone(),
            outbox: format!("{prefix}ledger:outbox"),
            client,
            database,
            layout,
            settings,
            table_ready: Arc::new(OnceCell::new()),
        }
    }

    /// Drains the outbox until it is empty, or `timeout`: afterwards every movement made
    /// before the call is in ClickHouse (and the table exists, even with nothing to write).
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushTimedOut> {
        let drained = async {
            while let Err(error) = self.ensure_table().await {
                tracing::warn!(%error, "Ledger table not ready, retrying.");
                tokio::time::sleep(RETRY_BACKOFF_START).await;
            }
            loop {
                match self.drain_batch().await {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "Ledger flush failed, retrying.");
                        tokio::time::sleep(RETRY_BACKOFF_START).await;
                    }
                }
            }
        };
        tokio::time::timeout(timeout, drained)
            .await
            .map_err(|_| FlushTimedOut(timeout))
    }

    /// Moves one batch of the oldest events into ClickHouse, then out of the outbox; returns
    /// how many. Applies the migrations first if the table may not exist yet.
    #[instrument(skip_all)]
    async fn drain_batch(&self) -> Result<usize, DrainError> {
        let mut connection = self.pool.get().await.map_err(DrainError::pool)?;
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&self.outbox)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(self.settings.batch_rows)
            .query_async(&mut connection)
            .await
            .map_err(DrainError::redis)?;
        metrics::gauge!(crate::metric::LEDGER_OUTBOX_EVENTS).set(entries.len() as f64);
        if entries.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(entries.len());
        for (id, fields) in &entries {
            match LedgerEvent::from_entry(id, fields) {
                Ok(event) => events.push(event),
                // Written by something other than our scripts: kept out of the ledger, and
                // left to an operator (it would otherwise block the outbox forever).
                Err(error) => tracing::error!(%error, "Outbox entry skipped."),
            }
        }
        self.insert(&events).await?;
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        redis::cmd("XDEL")
            .arg(&self.outbox)
            .arg(&ids)
            .query_async::<u64>(&mut connection)
            .await
            .map_err(DrainError::redis)?;
        metrics::counter!(crate::metric::LEDGER_EVENTS_WRITTEN_TOTAL)
            .increment(events.len() as u64);
        Ok(entries.len())
    }

    /// Applies the migrations once per process (they are idempotent), so the table exists
    /// even when this gateway started before any consumer.
    async fn ensure_table(&self) -> Result<(), DrainError> {
        self.table_ready
            .get_or_try_init(|| async {
                sluice_schema::migrations::apply_on(&self.client, &self.database, &self.layout)
                    .await
                    .map_err(|e| DrainError::ClickHouse(Box::new(e)))
            })
            .await
            .map(|_| ())
    }

    async fn insert(&self, events: &[LedgerEvent]) -> Result<(), DrainError> {
        self.ensure_table().await?;
        let mut insert = self
            .client
            .insert::<LedgerRow<'_>>(LEDGER_TABLE)
            .await
            .map_err(DrainError::clickhouse)?;
        for event in events {
            insert
                .write(&LedgerRow::from_event(event))
                .await
                .map_err(DrainError::clickhouse)?;
        }
        insert.end().await.map_err(DrainError::clickhouse)
    }
}

/// Why a drain failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("Redis: {0}")]
    Redis(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DrainError {
    fn pool(error: deadpool_redis::PoolError) -> DrainError {
        DrainError::Redis(Box::new(error))
    }

    fn redis(error: redis::RedisError) -> DrainError {
        DrainError::Redis(Box::new(error))
    }

    fn clickhouse(error: clickhouse::error::Error) -> DrainError {
        DrainError::ClickHouse(Box::new(error))
    }
}

/// Drains the outbox every `flush_interval` (at once again while batches are full), retrying
/// with backoff while Redis or ClickHouse fail, until `shutdown`.
pub fn drainer(ledger: Ledger, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(RETRY_BACKOFF_START, RETRY_BACKOFF_MAX);
        loop {
            let wait = match ledger.drain_batch().await {
                Ok(drained) if drained >= ledger.settings.batch_rows => Duration::ZERO,
                Ok(_) => {
                    backoff.reset();
                    ledger.settings.flush_interval
                }
                Err(error) => {
                    metrics::counter!(crate::metric::LEDGER_INSERT_FAILURES_TOTAL).increment(1);
                    let wait = backoff.next_wait();
                    tracing::warn!(%error, ?wait, "Ledger drain failed, retrying.");
                    wait
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_outbox_entry_becomes_an_event_whose_id_and_time_come_from_the_stream() {
        let fields = entry(&[
            ("key_id", "3f2a9c0d1e8b7a65"),
            ("status", "refunded"),
            ("amount", "2"),
            ("endpoint", "GET /aggregated_game_rounds"),
            ("http_status", "504"),
            ("latency_ms", "3012"),
        ]);
        let event = LedgerEvent::from_entry("1767225600123-4", &fields).unwrap();
        assert_eq!(
            event,
            LedgerEvent {
                event_id: "1767225600123-4".into(),
                key_id: "3f2a9c0d1e8b7a65".into(),
                movement: Movement::Refunded,
                amount: 2,
                endpoint: "GET /aggregated_game_rounds".into(),
                http_status: 504,
                latency_ms: 3012,
                at: 1_767_225_600,
            }
        );
        let mut wrong = fields.clone();
        wrong.insert("status".into(), "stolen".into());
        assert_eq!(
            LedgerEvent::from_entry("1-0", &wrong).unwrap_err().reason,
            "status"
        );
        let mut missing = fields;
        missing.remove("amount");
        assert_eq!(
            LedgerEvent::from_entry("1-0", &missing).unwrap_err().reason,
            "amount"
        );
    }
}
