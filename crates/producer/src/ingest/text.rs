//! The second stage: the body transcoded to UTF-8 (see `decode::to_utf8`) and read by its
//! format's row source into [`Rows`].

use std::io;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use encoding_rs::Encoding;
use futures::channel::mpsc;
use sluice_schema::dataset::plan::Plan;

use super::csv::csv_rows;
use super::json::{json_array_rows, json_lines_rows};
use super::{Limits, RecordSink, Rows, Tally, TextFormat};
use crate::error::UploadError;

/// Transcodes the body (noting its encoding in `encoding`) and runs the format's row source
/// into `rows`. Returns the counts and the unknown columns (CSV only).
pub(super) async fn parse_and_produce(
    format: TextFormat,
    plan: Arc<Plan>,
    body: mpsc::Receiver<io::Result<Bytes>>,
    encoding: Arc<OnceLock<&'static Encoding>>,
    mut rows: Rows<'_, impl RecordSink>,
    limits: Limits,
) -> Result<(Tally, Vec<String>), UploadError> {
    let text = crate::decode::to_utf8(body, move |detected| {
        let _ = encoding.set(detected);
    });
    let read = match format {
        TextFormat::Csv => csv_rows(text, &plan, &mut rows, limits).await,
        TextFormat::JsonLines => {
            let text = crate::decode::limit_line_length(text, limits.max_line_bytes);
            json_lines_rows(text, &plan, &mut rows)
                .await
                .map(|()| Vec::new())
        }
        TextFormat::Json => json_array_rows(text, plan, &mut rows)
            .await
            .map(|()| Vec::new()),
    };
    // The counts at the failure too, for the upload's failed state.
    rows.publish_progress();
    let unknown_columns = read?;
    Ok((rows.finish().await?, unknown_columns))
}
