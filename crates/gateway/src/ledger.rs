//! The usage ledger: every credit movement of an API key (a grant at creation or top-up, a
//! query's charge, a failed query's refund) becomes one row of the ClickHouse table
//! `usage_ledger` (`schemas/clickhouse/0003_usage_ledger.sql`).
//!
//! Requests never wait for ClickHouse: [`Ledger::record`] puts the event into a bounded
//! channel and returns at once; a background writer inserts batches of events (when
//! `ledger_batch_rows` are waiting or the oldest waited `ledger_flush_interval_ms`). A failed
//! insert is retried, with the same event ids, until it succeeds; meanwhile the channel fills
//! and further events are dropped and counted (`sluice_gateway_ledger_events_dropped_total`),
//! never blocking a request. On shutdown the writer gets a bounded time to flush.
//!
//! Guarantee: at most once. An event is lost if the channel is full, if the process dies
//! before its batch was inserted, or if the shutdown flush times out; a retried insert is
//! stored once (rows are keyed by `event_id` in a `ReplacingMergeTree`, read with `FINAL`).
//! Redis stays the source of truth for admission; [`crate::audit`] compares the two.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clickhouse::Client;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::instrument;

use crate::credits::KeyId;

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
    /// A charge given back because the query failed.
    Refunded,
}

impl Movement {
    /// The `status` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Movement::Granted => "granted",
            Movement::Charged => "charged",
            Movement::Refunded => "refunded",
        }
    }
}

/// One credit movement, as recorded.
#[derive(Debug, Clone)]
pub struct LedgerEvent {
    /// Unique per event; a retried insert carries the same id.
    pub event_id: uuid::Uuid,
    pub key_id: KeyId,
    pub movement: Movement,
    pub amount: u64,
    /// The route, e.g. `GET /aggregated_game_rounds`.
    pub endpoint: &'static str,
    /// The status the request was answered with.
    pub http_status: u16,
    /// Time from the request's start to this event.
    pub latency_ms: u32,
    /// When it happened (the gateway's clock).
    pub at: DateTime<Utc>,
}

impl LedgerEvent {
    /// An event of the request that started at `started`, happening now.
    pub fn new(
        key_id: KeyId,
        movement: Movement,
        amount: u64,
        endpoint: &'static str,
        http_status: u16,
        started: Instant,
    ) -> LedgerEvent {
        LedgerEvent {
            event_id: uuid::Uuid::new_v4(),
            key_id,
            movement,
            amount,
            endpoint,
            http_status,
            latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
            at: Utc::now(),
        }
    }
}

/// One row of `usage_ledger` in RowBinary; `recorded_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
struct LedgerRow<'a> {
    event_id: String,
    key_id: &'a str,
    status: &'static str,
    amount: u64,
    endpoint: &'static str,
    http_status: u16,
    latency_ms: u32,
    at: u32,
}

impl<'a> LedgerRow<'a> {
    fn from_event(event: &'a LedgerEvent) -> LedgerRow<'a> {
        LedgerRow {
            event_id: event.event_id.to_string(),
            key_id: event.key_id.as_str(),
            status: event.movement.as_str(),
            amount: event.amount,
            endpoint: event.endpoint,
            http_status: event.http_status,
            latency_ms: event.latency_ms,
            at: u32::try_from(event.at.timestamp()).unwrap_or(0),
        }
    }
}

/// How the background writer batches.
#[derive(Debug, Clone, Copy)]
pub struct LedgerSettings {
    /// Events that may wait in the channel.
    pub channel_capacity: usize,
    /// Events per insert, at most.
    pub batch_rows: usize,
    /// Longest wait of an event before its batch is inserted.
    pub flush_interval: Duration,
}

enum Command {
    Record(LedgerEvent),
    /// Insert everything received so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The ledger did not confirm a flush in time (ClickHouse slow or down).
#[derive(Debug, thiserror::Error)]
#[error("the usage ledger was not written within {0:?}")]
pub struct FlushTimedOut(pub Duration);

/// The handle requests record events through. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Command>,
    /// Events accepted into the channel and not yet inserted.
    pending: Arc<AtomicUsize>,
}

impl Ledger {
    /// Starts the background writer on the current Tokio runtime. `database` is created
    /// (with every migration) before the first insert, so a gateway may start before the
    /// consumer ever ran.
    pub fn start(
        client: Client,
        database: String,
        settings: LedgerSettings,
    ) -> (Ledger, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(settings.channel_capacity);
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            client,
            database,
            settings,
            pending: Arc::clone(&pending),
            table_ready: false,
        };
        let task = tokio::spawn(writer.run(receiver));
        (Ledger { sender, pending }, task)
    }

    /// Queues `event` for the writer without waiting. If the channel is full (the writer is
    /// behind, ClickHouse slow or down) the event is dropped and counted.
    pub fn record(&self, event: LedgerEvent) {
        match self.sender.try_send(Command::Record(event)) {
            Ok(()) => {
                self.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("sluice_gateway_ledger_events_dropped_total", "reason" => "channel_full")
                    .increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("sluice_gateway_ledger_events_dropped_total", "reason" => "closed")
                    .increment(1);
            }
        }
    }

    /// Waits until every event recorded before this call is in ClickHouse, or `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushTimedOut> {
        let (ack, done) = oneshot::channel();
        let flushed = async {
            self.sender.send(Command::Flush(ack)).await.ok()?;
            done.await.ok()
        };
        match tokio::time::timeout(timeout, flushed).await {
            Ok(Some(())) => Ok(()),
            _ => Err(FlushTimedOut(timeout)),
        }
    }

    /// Events accepted and not yet inserted.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

struct Writer {
    client: Client,
    database: String,
    settings: LedgerSettings,
    pending: Arc<AtomicUsize>,
    table_ready: bool,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut batch: Vec<LedgerEvent> = Vec::with_capacity(self.settings.batch_rows);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let command = match deadline {
                Some(at) => tokio::select! {
                    command = receiver.recv() => command,
                    () = tokio::time::sleep_until(at) => {
                        self.write(&mut batch).await;
                        deadline = None;
                        continue;
                    }
                },
                None => receiver.recv().await,
            };
            match command {
                Some(Command::Record(event)) => {
                    if batch.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + self.settings.flush_interval);
                    }
                    batch.push(event);
                    if batch.len() >= self.settings.batch_rows {
                        self.write(&mut batch).await;
                        deadline = None;
                    }
                }
                Some(Command::Flush(ack)) => {
                    self.write(&mut batch).await;
                    deadline = None;
                    let _ = ack.send(());
                }
                None => {
                    self.write(&mut batch).await;
                    return;
                }
            }
        }
    }

    /// Inserts `batch` (if any), retrying with backoff until ClickHouse acknowledges it.
    #[instrument(skip_all, fields(events = batch.len()))]
    async fn write(&mut self, batch: &mut Vec<LedgerEvent>) {
        if batch.is_empty() {
            // A flush with nothing to write still leaves a table to audit.
            if !self.table_ready {
                self.prepare_table().await;
            }
            return;
        }
        let mut backoff = RETRY_BACKOFF_START;
        let mut attempt = 1_u32;
        loop {
            match self.insert(batch).await {
                Ok(()) => break,
                Err(error) => {
                    metrics::counter!("sluice_gateway_ledger_insert_failures_total").increment(1);
                    tracing::warn!(%error, attempt, ?backoff, "Ledger insert failed, retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    attempt += 1;
                }
            }
        }
        metrics::counter!("sluice_gateway_ledger_events_written_total")
            .increment(batch.len() as u64);
        self.pending.fetch_sub(batch.len(), Ordering::Relaxed);
        batch.clear();
    }

    /// Applies the migrations (idempotent) so the table exists. A user without the right
    /// to create may still insert into a table created by someone else, so a failure is only
    /// logged; the next insert tries again until one succeeds.
    async fn prepare_table(&mut self) {
        match sluice_schema::migrations::apply(&self.client, &self.database).await {
            Ok(()) => self.table_ready = true,
            Err(error) => tracing::warn!(%error, "Ledger migrations failed; inserting anyway."),
        }
    }

    async fn insert(&mut self, batch: &[LedgerEvent]) -> Result<(), clickhouse::error::Error> {
        if !self.table_ready {
            self.prepare_table().await;
        }
        let mut insert = self.client.insert::<LedgerRow<'_>>(LEDGER_TABLE).await?;
        for event in batch {
            insert.write(&LedgerRow::from_event(event)).await?;
        }
        insert.end().await?;
        self.table_ready = true;
        Ok(())
    }
}
