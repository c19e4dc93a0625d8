//! What an ingest ends with: its counts ([`Tally`]), what the receipt says besides them
//! ([`Summary`]), and the [`Receipt`] the client is given.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sluice_schema::csv::RowError;
use sluice_schema::dataset::plan::Plan;
use sluice_schema::dataset::GAME_ROUNDS;

/// What the producer tells the client once Kafka acknowledged every accepted record.
// Stored in Redis as JSON and read back as this type (`ReceiptStore::get`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub upload_id: String,
    /// The file's text encoding as read: `UTF-8`, `UTF-16LE` or `UTF-16BE`.
    pub encoding: String,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub sha256: String,
    /// The first columns of the header that are not used, in order (at most
    /// `max_unknown_columns_listed`).
    pub unknown_columns: Vec<String>,
    /// How many columns of the header are not used.
    pub unknown_columns_count: u64,
    /// The first rejected rows, in file order (at most `max_rejects_listed`).
    pub rejects: Vec<RowReject>,
    /// The file this came from, for files the watcher picked up (absent for uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The dataset the rows went to; absent for `game_rounds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

impl Receipt {
    /// What identifies the upload's content for de-duplication: its SHA-256, within its
    /// dataset (the same file sent to two datasets is two uploads).
    pub fn content_key(&self) -> String {
        content_key(self.dataset.as_deref(), &self.sha256)
    }

    /// Counts its rows on the counter `rows` (by `outcome`) and its bytes on `bytes`.
    pub fn count(&self, rows: &'static str, bytes: &'static str) {
        use crate::metric::{ACCEPTED, REJECTED};
        metrics::counter!(rows, "outcome" => ACCEPTED).increment(self.accepted);
        metrics::counter!(rows, "outcome" => REJECTED).increment(self.rejected);
        metrics::counter!(bytes).increment(self.bytes);
    }
}

/// What identifies content for de-duplication: its SHA-256 (hex) within `dataset`, as a
/// receipt names it ([`dataset_of`]): `<dataset>/<sha256>`, the bare SHA-256 for `game_rounds`.
/// Uploads and the watcher's files of one dataset claim their content under this key.
pub fn content_key(dataset: Option<&str>, sha256: &str) -> String {
    match dataset {
        Some(dataset) => format!("{dataset}/{sha256}"),
        None => sha256.to_owned(),
    }
}

/// The dataset a receipt names for rows read by `plan`: its name, none for `game_rounds`.
pub fn dataset_of(plan: &Plan) -> Option<String> {
    Some(plan.dataset())
        .filter(|name| *name != GAME_ROUNDS)
        .map(str::to_owned)
}

/// One rejected row listed in a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowReject {
    /// 1-based, the header being line 1.
    pub line: u64,
    /// The column at fault; `null` for row-level problems.
    pub column: Option<String>,
    pub reason: String,
}

impl From<RowError> for RowReject {
    fn from(error: RowError) -> RowReject {
        RowReject {
            line: error.line,
            column: error.column.map(str::to_owned),
            reason: error.reason,
        }
    }
}

/// What a receipt says besides the counts.
pub struct Summary {
    pub upload_id: String,
    pub encoding: &'static str,
    pub bytes: u64,
    pub sha256: String,
    pub unknown_columns: Vec<String>,
    /// The dataset, when not `game_rounds`.
    pub dataset: Option<String>,
    /// When the ingest started, for `duration_ms`.
    pub started: Instant,
}

/// The counts of a finished ingest.
#[derive(Debug)]
pub struct Tally {
    pub rows_read: u64,
    pub accepted: u64,
    /// The first rejected rows, in order.
    pub rejects: Vec<RowError>,
    /// How many unused header columns the receipt lists.
    unknown_columns_listed: usize,
}

impl Tally {
    /// No row yet; the receipt will list at most `unknown_columns_listed` unused columns.
    pub(super) fn new(unknown_columns_listed: usize) -> Tally {
        Tally {
            rows_read: 0,
            accepted: 0,
            rejects: Vec::new(),
            unknown_columns_listed,
        }
    }

    pub fn into_receipt(self, summary: Summary) -> Receipt {
        let mut unknown_columns = summary.unknown_columns;
        let unknown_columns_count = unknown_columns.len() as u64;
        unknown_columns.truncate(self.unknown_columns_listed);
        Receipt {
            upload_id: summary.upload_id,
            encoding: summary.encoding.to_owned(),
            rows_read: self.rows_read,
            accepted: self.accepted,
            rejected: self.rows_read - self.accepted,
            bytes: summary.bytes,
            duration_ms: u64::try_from(summary.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sha256: summary.sha256,
            unknown_columns,
            unknown_columns_count,
            rejects: self.rejects.into_iter().map(RowReject::from).collect(),
            source: None,
            dataset: summary.dataset,
        }
    }
}
