//! What an upload is doing before it has a receipt: a reporter publishes its counts to Redis
//! every second while it runs (`GET /uploads` lists it, `GET /uploads/{id}` shows it), and its
//! end records whether it failed (kept a day) or clears the way for the receipt.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use sluice_schema::backoff::Backoff;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::UploadError;
use crate::ingest::Progress;
use crate::receipts::ReceiptStore;

/// Time between two reports of a running upload.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The longest the end of an upload waits for Redis.
const END_WAIT: Duration = Duration::from_secs(2);

/// Follows one upload from its start to its end.
pub struct Tracker {
    reporter: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    view: View,
}

/// Everything a report says, and where it goes.
#[derive(Clone)]
struct View {
    receipts: ReceiptStore,
    upload_id: String,
    started_ms: i64,
    started_at: String,
    idempotency_key: Option<String>,
    progress: Arc<Progress>,
}

impl View {
    fn state(&self, status: &str, failure: Option<&UploadError>) -> serde_json::Value {
        let counts = self.progress.snapshot();
        let mut state = serde_json::json!({
            "upload_id": self.upload_id,
            "status": status,
            "started_at": self.started_at,
            "rows_read": counts.rows_read,
            "accepted": counts.accepted,
            "rejected": counts.rows_read.saturating_sub(counts.accepted),
            "bytes": counts.bytes,
            "idempotency_key": self.idempotency_key,
        });
        if let Some(failure) = failure {
            let status = actix_web::ResponseError::status_code(failure).as_u16();
            state["error"] = serde_json::json!({ "status": status, "detail": failure.to_string() });
        }
        state
    }

    async fn report(&self) {
        let state = self.state("in_progress", None);
        if let Err(error) = self
            .receipts
            .report_progress(&self.upload_id, self.started_ms, &state)
            .await
        {
            tracing::debug!(%error, upload_id = %self.upload_id, "Could not report progress.");
        }
    }
}

impl Tracker {
    /// Starts reporting upload `upload_id`, whose counts `progress` follows, at once and then
    /// every second.
    pub fn start(
        receipts: ReceiptStore,
        upload_id: &str,
        idempotency_key: Option<&str>,
        progress: Arc<Progress>,
    ) -> Tracker {
        let now = Utc::now();
        let view = View {
            receipts,
            upload_id: upload_id.to_owned(),
            started_ms: now.timestamp_millis(),
            started_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            idempotency_key: idempotency_key.map(str::to_owned),
            progress,
        };
        let (stop, mut stopped) = watch::channel(false);
        let reporting = view.clone();
        // A report is never cut off half-way: the reporter stops between two, so nothing it
        // writes can land after the upload's end.
        let reporter = tokio::spawn(async move {
            loop {
                reporting.report().await;
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(REPORT_EVERY) => {}
                }
            }
        });
        Tracker {
            reporter: Some(reporter),
            stop,
            view,
        }
    }

    /// The upload is over: `failure` if it failed (its state is kept a day), none if it has
    /// a receipt or was a replay of one.
    /// Never holds the answer up for long: a report or an end Redis does not take within
    /// [`END_WAIT`] is given up (the state then expires with its TTL).
    pub async fn end(mut self, failure: Option<&UploadError>) {
        self.stop.send_replace(true);
        if let Some(mut reporter) = self.reporter.take() {
            if tokio::time::timeout(END_WAIT, &mut reporter).await.is_err() {
                reporter.abort();
            }
        }
        let failed = failure.map(|failure| self.view.state("failed", Some(failure)));
        let ended = tokio::time::timeout(
            END_WAIT,
            self.view
                .receipts
                .end_progress(&self.view.upload_id, failed.as_ref()),
        )
        .await;
        if !matches!(ended, Ok(Ok(()))) {
            tracing::warn!(upload_id = %self.view.upload_id, "Could not record the end of an upload; retrying in the background.");
            tokio::spawn(retry_end(
                self.view.receipts.clone(),
                self.view.upload_id.clone(),
                failed,
            ));
        }
    }
}

/// First wait before writing an upload's end again; it doubles up to [`LONGEST_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(500);
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(30);
/// How long an upload's end is tried again: as long as a failed state is kept.
const RETRY_END_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Writes the end Redis did not take (its failed state, or the removal of its running one)
/// once Redis is back, so `GET /uploads/{id}` says what happened for the day it promises.
/// Lost only if this producer stops first.
async fn retry_end(receipts: ReceiptStore, upload_id: String, failed: Option<serde_json::Value>) {
    let give_up_at = tokio::time::Instant::now() + RETRY_END_FOR;
    let mut backoff = Backoff::new(FIRST_RETRY_WAIT, LONGEST_RETRY_WAIT);
    while tokio::time::Instant::now() < give_up_at {
        tokio::time::sleep(backoff.next_wait()).await;
        let ended =
            tokio::time::timeout(END_WAIT, receipts.end_progress(&upload_id, failed.as_ref()))
                .await;
        if matches!(ended, Ok(Ok(()))) {
            tracing::info!(%upload_id, "End of an upload recorded on retry.");
            return;
        }
    }
    tracing::error!(%upload_id, "End of an upload never recorded: Redis was away for a day.");
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // Dropped without `end` (the request was cancelled): stop reporting; the state
        // expires within `PROGRESS_TTL_SECONDS`.
        self.stop.send_replace(true);
    }
}
