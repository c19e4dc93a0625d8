//! A running upload's counts, published by the pipeline for whoever reports them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Tally;

/// The counts of an upload while it runs, for whoever reports them (`GET /uploads/…`). The
/// parser publishes its counts every [`PROGRESS_EVERY_ROWS`] rows, so this costs the hot loop
/// a branch per row.
#[derive(Debug, Default)]
pub struct Progress {
    rows_read: AtomicU64,
    accepted: AtomicU64,
    bytes: AtomicU64,
}

/// Rows between two publications of an upload's counts.
pub const PROGRESS_EVERY_ROWS: u64 = 4096;

/// A reading of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub rows_read: u64,
    pub accepted: u64,
    pub bytes: u64,
}

impl Progress {
    /// Never shows more rows accepted than read: `accepted` is published after `rows_read`
    /// (release) and read before it (acquire), and both only grow.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let accepted = self.accepted.load(Ordering::Acquire);
        ProgressSnapshot {
            rows_read: self.rows_read.load(Ordering::Relaxed),
            accepted,
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn publish(&self, tally: &Tally) {
        self.rows_read.store(tally.rows_read, Ordering::Relaxed);
        self.accepted.store(tally.accepted, Ordering::Release);
    }

    /// The body's bytes received so far.
    pub(super) fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}
