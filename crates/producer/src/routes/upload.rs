use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use tracing::instrument;

use super::AppState;
use crate::error::UploadError;
use crate::ingest::{ingest, Limits};

/// `POST /csv_upload`: multipart/form-data with the CSV in the field `file`.
#[instrument(skip_all)]
pub async fn csv_upload(
    state: web::Data<AppState>,
    mut payload: Multipart,
) -> Result<HttpResponse, UploadError> {
    let mut seen_a_field = false;
    while let Some(field) = payload.next().await {
        let field = match field {
            Ok(field) => field,
            Err(error) if !seen_a_field => {
                return Err(UploadError::NotMultipart(error.to_string()))
            }
            Err(error) => return Err(UploadError::BadBody(error.to_string())),
        };
        seen_a_field = true;
        if field.name() != Some("file") {
            continue;
        }
        if let Some(mime) = field.content_type() {
            if !is_csv_like(mime.essence_str()) {
                return Err(UploadError::NotCsv(mime.essence_str().to_owned()));
            }
        }
        let limits = Limits {
            max_upload_bytes: state.config.max_upload_bytes,
            max_in_flight: state.config.max_in_flight,
            max_rejects_listed: state.config.max_rejects_listed,
            max_line_bytes: state.config.max_line_bytes,
            body_idle_timeout: Duration::from_millis(state.config.body_idle_timeout_ms),
        };
        let window = state.producer.window(limits.max_in_flight);
        let result = ingest(field, window, limits).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(_) => "failed",
        };
        metrics::counter!("sluice_producer_uploads_total", "outcome" => outcome).increment(1);
        let receipt = result.inspect_err(|error| {
            tracing::warn!(%error, "Upload failed.");
        })?;
        metrics::counter!("sluice_producer_rows_total", "outcome" => "accepted")
            .increment(receipt.accepted);
        metrics::counter!("sluice_producer_rows_total", "outcome" => "rejected")
            .increment(receipt.rejected);
        metrics::counter!("sluice_producer_bytes_total").increment(receipt.bytes);
        tracing::info!(
            upload_id = %receipt.upload_id,
            rows_read = receipt.rows_read,
            accepted = receipt.accepted,
            rejected = receipt.rejected,
            bytes = receipt.bytes,
            duration_ms = receipt.duration_ms,
            "Upload acknowledged by Kafka."
        );
        return Ok(HttpResponse::Ok().json(receipt));
    }
    Err(UploadError::NoFileField)
}

/// Media types a CSV export may arrive with; browsers and curl differ.
fn is_csv_like(essence: &str) -> bool {
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/octet-stream" | "application/csv" | "application/vnd.ms-excel"
        )
}
