//! The JSON row sources: JSON Lines (one object per line) and JSON arrays (walked element by
//! element on a blocking thread).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use sluice_schema::csv::RowError;
use sluice_schema::dataset::plan::{Plan, Record};
use tokio::io::AsyncBufReadExt;
use tokio_util::io::StreamReader;

use super::{BlockingRows, RecordSink, RowBatches, Rows};
use crate::decode::LineTooLong;
use crate::error::UploadError;

/// The JSON Lines row source: one object per line, blank lines skipped.
pub(super) async fn json_lines_rows<S>(
    text: S,
    plan: &Plan,
    rows: &mut Rows<'_, impl RecordSink>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut reader = StreamReader::new(Box::pin(text));
    let mut buffer = Vec::with_capacity(1024);
    let mut record = Record::new();
    let mut line = 0_u64;
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .await
            .map_err(io_failure)?;
        if read == 0 {
            return Ok(());
        }
        line += 1;
        let text = buffer.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let encoded = match std::str::from_utf8(text) {
            Ok(text) => plan.encode_json(text, line, rows.upload_id(), &mut record),
            Err(_) => Err(RowError {
                line,
                column: None,
                reason: "not valid text".to_owned(),
            }),
        };
        match encoded {
            Ok(()) => rows.accept(&record, line).await?,
            Err(reject) => rows.reject(reject).await?,
        }
    }
}

/// The JSON array row source: serde walks the array element by element on a blocking thread
/// (the body is never held whole) and hands the parsed elements over in batches.
pub(super) async fn json_array_rows<S>(
    text: S,
    plan: Arc<Plan>,
    rows: &mut Rows<'_, impl RecordSink>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let reader = tokio_util::io::SyncIoBridge::new(StreamReader::new(Box::pin(text)));
    let upload_id = rows.upload_id().to_owned();
    let mut walker =
        BlockingRows::spawn(move |batches| walk_json_array(reader, &plan, &upload_id, batches));
    walker.push_into(rows).await?;
    match walker.join().await {
        Ok(result) => result,
        Err(_) => Err(UploadError::BadBody("the JSON reader stopped".to_owned())),
    }
}

fn walk_json_array(
    reader: impl io::Read,
    plan: &Plan,
    upload_id: &str,
    batches: RowBatches,
) -> Result<(), UploadError> {
    use serde::de::{Deserializer as _, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    struct Elements<'p> {
        plan: &'p Plan,
        upload_id: &'p str,
        batches: RowBatches,
    }

    impl<'de> Visitor<'de> for Elements<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a JSON array of {} objects", self.plan.dataset())
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            let mut record = 0_u64;
            while let Some(element) = seq.next_element::<Box<RawValue>>()? {
                record += 1;
                let mut encoded = Record::new();
                let row = self
                    .plan
                    .encode_json(element.get(), record, self.upload_id, &mut encoded)
                    .map(|()| encoded);
                if !self.batches.push(row) {
                    // The pipeline stopped; its error is the one reported.
                    return Ok(());
                }
            }
            self.batches.finish();
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_reader(io::BufReader::new(reader));
    let walked = deserializer
        .deserialize_seq(Elements {
            plan,
            upload_id,
            batches,
        })
        .and_then(|()| deserializer.end());
    walked.map_err(|error| match error.io_error_kind() {
        Some(_) => UploadError::BadBody(error.to_string()),
        None => UploadError::BadBody(format!("not a JSON array of objects: {error}")),
    })
}

fn io_failure(error: io::Error) -> UploadError {
    if let Some(long) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<LineTooLong>())
    {
        return UploadError::LineTooLong {
            line: long.line,
            limit: long.limit,
        };
    }
    UploadError::BadBody(error.to_string())
}
