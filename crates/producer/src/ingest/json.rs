//! The JSON row sources: JSON Lines (one object per line) and JSON arrays (walked element by
//! element on a blocking thread).

use std::io;

use bytes::Bytes;
use futures::Stream;
use sluice_schema::csv::RowError;
use tokio::io::AsyncBufReadExt;
use tokio_util::io::StreamReader;

use super::{BlockingRows, RecordSink, RowBatches, Rows};
use crate::decode::LineTooLong;
use crate::error::UploadError;

/// The JSON Lines row source: one object per line, blank lines skipped.
pub(super) async fn json_lines_rows<S>(
    text: S,
    rows: &mut Rows<'_, impl RecordSink>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut reader = StreamReader::new(Box::pin(text));
    let mut buffer = Vec::with_capacity(1024);
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
        let row = match std::str::from_utf8(text) {
            Ok(text) => sluice_schema::json::parse_record(text, line),
            Err(_) => Err(RowError {
                line,
                column: None,
                reason: "not valid text".to_owned(),
            }),
        };
        rows.push_at(row, line).await?;
    }
}

/// The JSON array row source: serde walks the array element by element on a blocking thread
/// (the body is never held whole) and hands the parsed elements over in batches.
pub(super) async fn json_array_rows<S>(
    text: S,
    rows: &mut Rows<'_, impl RecordSink>,
) -> Result<(), UploadError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let reader = tokio_util::io::SyncIoBridge::new(StreamReader::new(Box::pin(text)));
    let mut walker = BlockingRows::spawn(move |batches| walk_json_array(reader, batches));
    walker.push_into(rows).await?;
    match walker.join().await {
        Ok(result) => result,
        Err(_) => Err(UploadError::BadBody("the JSON reader stopped".to_owned())),
    }
}

fn walk_json_array(reader: impl io::Read, batches: RowBatches) -> Result<(), UploadError> {
    use serde::de::{Deserializer as _, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    struct Elements(RowBatches);

    impl<'de> Visitor<'de> for Elements {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of game-round objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            let mut record = 0_u64;
            while let Some(element) = seq.next_element::<Box<RawValue>>()? {
                record += 1;
                if !self
                    .0
                    .push(sluice_schema::json::parse_record(element.get(), record))
                {
                    // The pipeline stopped; its error is the one reported.
                    return Ok(());
                }
            }
            self.0.finish();
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_reader(io::BufReader::new(reader));
    let walked = deserializer
        .deserialize_seq(Elements(batches))
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
