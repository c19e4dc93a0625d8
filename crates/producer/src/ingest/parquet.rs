//! The Parquet row source. Parquet needs random access (its footer describes the rest), so a
//! body is first stored whole in a scratch file (`store`, counted, hashed and bounded like any
//! body), then read on a blocking thread with the dataset's plan (`read`) and its rows handed
//! to the pipeline in batches ([`BlockingRows`]). The watcher reads its files the same way.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_schema::dataset::plan::{Plan, Record};
use tokio::io::AsyncWriteExt;

use super::blocking::{BlockingRows, RowBatches};
use super::body::{forward_body, BodySummary};
use super::{new_upload_id, BODY_CHUNKS_BUFFERED};
use super::{receipt, Body, IngestOptions, Receipt, RecordSink, Rows, Summary, Tally};
use crate::error::UploadError;

/// Stores `body` in a scratch file under `scratch_dir`, then ingests it as Parquet; the
/// scratch file is removed either way.
pub(super) async fn ingest_parquet_body(
    body: impl Body,
    sink: impl RecordSink,
    options: IngestOptions,
    scratch_dir: &Path,
) -> Result<Receipt, UploadError> {
    let started = Instant::now();
    let scratch = scratch_dir.join(format!("sluice-upload-{}.parquet", new_upload_id()));
    let stored = store(body, &options, &scratch).await;
    let read = match stored {
        Ok(summary) => match std::fs::File::open(&scratch) {
            Ok(file) => ingest_stored(file, sink, options, started, summary).await,
            Err(error) => Err(UploadError::Parquet(error.to_string())),
        },
        Err(error) => Err(error),
    };
    let _ = tokio::fs::remove_file(&scratch).await;
    read
}

/// Copies the body into `scratch`, through the same limits, counting and hashing as a text
/// body.
async fn store(
    body: impl Body,
    options: &IngestOptions,
    scratch: &PathBuf,
) -> Result<BodySummary, UploadError> {
    let (sender, mut receiver) = mpsc::channel::<io::Result<Bytes>>(BODY_CHUNKS_BUFFERED);
    let limits = options.limits;
    let progress = options.progress.clone();
    let hash = options.sha256.is_none();
    let write = async {
        let mut file = tokio::fs::File::create(scratch).await?;
        while let Some(chunk) = receiver.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await
    };
    let (summary, written) =
        futures::future::join(forward_body(body, sender, limits, hash, progress), write).await;
    let summary = summary?;
    written.map_err(|error| UploadError::BadBody(format!("storing the Parquet file: {error}")))?;
    Ok(summary)
}

/// Ingests the Parquet file `file` into `sink` (the watcher's files; the receipt's size and
/// hash are the caller's to set, or `options.sha256`).
pub async fn ingest_parquet_file(
    file: std::fs::File,
    sink: impl RecordSink,
    options: IngestOptions,
    started: Instant,
) -> Result<Receipt, UploadError> {
    let body = BodySummary {
        bytes: 0,
        sha256: None,
    };
    ingest_stored(file, sink, options, started, body).await
}

/// Ingests the stored file `file` into `sink`; `body` is what was read of it (size, hash).
async fn ingest_stored(
    file: std::fs::File,
    sink: impl RecordSink,
    options: IngestOptions,
    started: Instant,
    body: BodySummary,
) -> Result<Receipt, UploadError> {
    let IngestOptions {
        plan,
        limits,
        upload_id,
        sha256,
        progress,
        ..
    } = options;
    let dataset = receipt::dataset_of(&plan);
    let id = upload_id.clone();
    let mut reader = BlockingRows::spawn(move |batches| read(file, &plan, &id, batches));
    let mut rows = Rows::new(sink, &upload_id, &limits).with_progress(progress);
    let pushed = reader.push_into(&mut rows).await;
    let read = reader.join().await;
    pushed?;
    let unknown_columns = read.map_err(|e| UploadError::Parquet(e.to_string()))??;
    let tally: Tally = rows.finish().await?;
    Ok(tally.into_receipt(Summary {
        upload_id,
        encoding: "binary",
        bytes: body.bytes,
        sha256: sha256.or(body.sha256.map(hex::encode)).unwrap_or_default(),
        unknown_columns,
        dataset,
        started,
    }))
}

/// On the blocking thread: every row, numbered from 1, into `batches`. Returns the file's
/// unknown columns.
fn read(
    file: std::fs::File,
    plan: &Arc<Plan>,
    upload_id: &str,
    mut batches: RowBatches,
) -> Result<Vec<String>, UploadError> {
    let parquet = |e: parquet::errors::ParquetError| UploadError::Parquet(e.to_string());
    let reader = SerializedFileReader::new(file).map_err(parquet)?;
    let columns = plan.bind_parquet(reader.metadata().file_metadata().schema_descr())?;
    let mut record = 0_u64;
    for row in reader.get_row_iter(None).map_err(parquet)? {
        let row = row.map_err(parquet)?;
        record += 1;
        let mut encoded = Record::new();
        let encoding = columns.encode_parquet(plan, &row, record, upload_id, &mut encoded);
        if !batches.push(encoding.map(|()| encoded)) {
            return Ok(columns.unknown_columns().to_vec());
        }
    }
    batches.finish();
    Ok(columns.unknown_columns().to_vec())
}
