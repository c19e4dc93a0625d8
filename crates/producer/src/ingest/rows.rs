//! The stage after every row source: each record (encoded by the source through the dataset's
//! plan) sent, each reject sent to the rejects topic (the first ones kept for the receipt),
//! every row counted.

use std::sync::Arc;

use sluice_schema::csv::RowError;
use sluice_schema::dataset::plan::Record;
use sluice_schema::rejects::RejectRecord;

use super::{Limits, Progress, RecordSink, Tally, PROGRESS_EVERY_ROWS};
use crate::error::UploadError;

/// The format-agnostic half of ingest: every row of a source goes through [`push`](Self::push),
/// which sends a record to the sink or keeps a reject; [`finish`](Self::finish) waits until
/// the sink made everything durable.
pub struct Rows<'a, K: RecordSink> {
    sink: K,
    upload_id: &'a str,
    max_rejects_listed: usize,
    max_record_bytes: usize,
    tally: Tally,
    progress: Option<Arc<Progress>>,
}

impl<'a, K: RecordSink> Rows<'a, K> {
    pub fn new(sink: K, upload_id: &'a str, limits: &Limits) -> Rows<'a, K> {
        Rows {
            sink,
            upload_id,
            max_rejects_listed: limits.max_rejects_listed,
            max_record_bytes: limits.max_record_bytes,
            tally: Tally::new(limits.max_unknown_columns_listed),
            progress: None,
        }
    }

    /// The id of the upload every record and reject carries.
    pub fn upload_id(&self) -> &'a str {
        self.upload_id
    }

    /// Publishes the counts to `progress` as rows go by.
    pub fn with_progress(mut self, progress: Option<Arc<Progress>>) -> Rows<'a, K> {
        self.progress = progress;
        self
    }

    /// Publishes the counts every [`PROGRESS_EVERY_ROWS`] rows, once a row is counted whole.
    #[inline]
    fn counted(&self) {
        if self.tally.rows_read % PROGRESS_EVERY_ROWS == 0 {
            self.publish_progress();
        }
    }

    /// Publishes the counts now (at the end, or when the upload fails).
    pub fn publish_progress(&self) {
        if let Some(progress) = &self.progress {
            progress.publish(&self.tally);
        }
    }

    /// Takes one row: a record is sent, a reject sent to the rejects sink and kept for the
    /// receipt if there is room. Waits while the sink applies backpressure. A record too large
    /// is rejected as the row numbered by its place in the source (the element of a JSON
    /// array, the record of a Parquet file).
    #[inline]
    pub async fn push(&mut self, row: Result<Record, RowError>) -> Result<(), UploadError> {
        let number = self.tally.rows_read + 1;
        self.push_at(row, number).await
    }

    /// [`push`](Self::push) for a row found at `line`.
    #[inline]
    pub async fn push_at(
        &mut self,
        row: Result<Record, RowError>,
        line: u64,
    ) -> Result<(), UploadError> {
        match row {
            Ok(record) => self.accept(&record, line).await,
            Err(reject) => self.reject(reject).await,
        }
    }

    /// [`push`](Self::push) for a record found at `line`, borrowed: the hot path moves no
    /// record around. A record over `max_record_bytes` is rejected instead of sent: Kafka
    /// would refuse it (`MessageSizeTooLarge`) and fail the whole upload.
    #[inline]
    pub async fn accept(&mut self, record: &Record, line: u64) -> Result<(), UploadError> {
        if record.bytes().len() > self.max_record_bytes {
            let reason = format!(
                "record too large: {} bytes encoded, more than {} (SLUICE_PRODUCER_MAX_RECORD_BYTES)",
                record.bytes().len(),
                self.max_record_bytes
            );
            return self
                .reject(RowError {
                    line,
                    column: None,
                    reason,
                })
                .await;
        }
        self.tally.rows_read += 1;
        self.sink.send(record.key(), record.bytes()).await?;
        self.tally.accepted += 1;
        self.counted();
        Ok(())
    }

    /// [`push`](Self::push) for a rejected row.
    pub async fn reject(&mut self, reject: RowError) -> Result<(), UploadError> {
        self.tally.rows_read += 1;
        self.counted();
        let kept = RejectRecord {
            upload_id: self.upload_id.into(),
            line: reject.line,
            column: reject.column.map(Into::into),
            reason: reject.reason.as_str().into(),
        };
        self.sink.reject(self.upload_id, &kept.to_json()).await?;
        if self.tally.rejects.len() < self.max_rejects_listed {
            self.tally.rejects.push(reject);
        }
        Ok(())
    }

    /// Waits until every record sent is durable; returns the counts.
    pub async fn finish(self) -> Result<Tally, UploadError> {
        self.publish_progress();
        self.sink.finish().await?;
        Ok(self.tally)
    }
}
