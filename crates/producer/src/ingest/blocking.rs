//! Rows read on a blocking thread and handed to the async pipeline in batches: for row sources
//! whose parser is synchronous (serde_json walking a JSON array, Parquet). The thread fills
//! [`RowBatches`]; the pipeline pushes each batch into [`Rows`] as it comes
//! ([`BlockingRows::push_into`]). One hand-over per [`BATCH`] rows, at most [`QUEUED`]
//! batches waiting: the thread reads only as fast as the sink takes rows.

use sluice_schema::csv::RowError;
use sluice_schema::dataset::plan::Record;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use super::{RecordSink, Rows};
use crate::error::UploadError;

/// One row as a source reads it: its encoded record, or why it is rejected.
pub type Row = Result<Record, RowError>;

/// Rows handed over together.
pub const BATCH: usize = 1024;
/// Full batches waiting for the pipeline, at most.
pub const QUEUED: usize = 4;

/// The reading thread's end: rows gathered into batches, each full one handed over.
pub struct RowBatches {
    sender: mpsc::Sender<Vec<Row>>,
    batch: Vec<Row>,
}

impl RowBatches {
    /// Adds one row, handing the batch over once full (waiting while [`QUEUED`] batches wait).
    /// False once the pipeline stopped listening: the source should stop reading (the
    /// pipeline's own error is the one reported).
    pub fn push(&mut self, row: Row) -> bool {
        self.batch.push(row);
        if self.batch.len() < BATCH {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.sender.blocking_send(full).is_ok()
    }

    /// Hands the last, partial batch over: the source read to its end.
    pub fn finish(self) {
        if !self.batch.is_empty() {
            let _ = self.sender.blocking_send(self.batch);
        }
    }
}

/// A row source running on a blocking thread, and the pipeline's end of its batches.
pub struct BlockingRows<T> {
    receiver: mpsc::Receiver<Vec<Row>>,
    thread: JoinHandle<T>,
}

impl<T: Send + 'static> BlockingRows<T> {
    /// Runs `read` on a blocking thread; it hands its rows over through the [`RowBatches`] and
    /// calls [`RowBatches::finish`] when it read its source to the end.
    pub fn spawn(read: impl FnOnce(RowBatches) -> T + Send + 'static) -> BlockingRows<T> {
        let (sender, receiver) = mpsc::channel(QUEUED);
        let batches = RowBatches {
            sender,
            batch: Vec::with_capacity(BATCH),
        };
        BlockingRows {
            receiver,
            thread: tokio::task::spawn_blocking(move || read(batches)),
        }
    }

    /// Pushes every row the thread hands over into `rows`, in order, until the thread is done.
    /// Stops at the first failure of `rows`; the thread then stops at its next hand-over.
    pub async fn push_into(
        &mut self,
        rows: &mut Rows<'_, impl RecordSink>,
    ) -> Result<(), UploadError> {
        while let Some(batch) = self.receiver.recv().await {
            for row in batch {
                rows.push(row).await?;
            }
        }
        Ok(())
    }

    /// Stops listening and waits for the thread's result.
    pub async fn join(self) -> Result<T, JoinError> {
        drop(self.receiver);
        self.thread.await
    }
}
