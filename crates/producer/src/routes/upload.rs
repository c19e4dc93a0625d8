use std::sync::Arc;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use tracing::instrument;

use super::docs::{
    BadQuery, InProgress, NoToken, RejectsPage as RejectsPageBody, Unavailable, UnknownUpload,
    UploadForm, UploadLookup,
};
use super::AppState;
use crate::error::UploadError;
use crate::finish::{finish_upload, Finished};
use crate::ingest::{
    self, ingest_body, new_upload_id, Format, IngestOptions, Progress, Receipt, TextFormat,
    HEAD_BYTES,
};
use crate::kafka::UploadTransaction;
use crate::pace::{PaceLimits, Paced};
use crate::tracking::Tracker;
use sluice_schema::dataset::plan::Plan;
use sluice_schema::dataset::GAME_ROUNDS;
use sluice_schema::problem::Problem;

/// Refuses (401) a request without one of the configured upload tokens; admits every request
/// when none is configured.
fn authorize(request: &HttpRequest, state: &AppState) -> Result<(), UploadError> {
    let token = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if state.config.admits_upload_token(token) {
        Ok(())
    } else {
        Err(UploadError::Unauthorized)
    }
}

/// Uploads an export (`multipart/form-data`, the file in the field `file`).
///
/// The upload runs in one Kafka transaction. Once every record is acknowledged, its SHA-256 is
/// claimed: an earlier upload of the same content (or with the same `Idempotency-Key`) wins,
/// this one is aborted — nothing of it becomes visible — and the first receipt is returned
/// with `Idempotent-Replayed: true`.
///
/// The whole request, every part before `file` included, is held to the client pace
/// ([`crate::pace`]): a client that goes silent or sends too slowly gets 408.
#[utoipa::path(
    post,
    path = "/csv_upload",
    tag = "uploads",
    security(("upload_token" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,200}$",
            description = "1 to 200 visible ASCII characters. A key seen before is answered \
                with the first receipt before the body is read; the file's SHA-256 makes \
                re-sends of a big file free."),
    ),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Every accepted row is committed to Kafka (rejected rows \
            are listed, the first ones, and counted). A re-upload of the same content or \
            `Idempotency-Key` replays the first receipt.", body = Receipt,
            headers(("Idempotent-Replayed" = String,
                description = "`true` when this is the first upload's receipt, replayed"))),
        (status = 400, description = "Not multipart/form-data, no `file` field, a body that \
            cannot be read (corrupt compression), or a bad `Idempotency-Key`",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = NoToken),
        (status = 408, description = "The client stopped sending, or sent too slowly",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An identical upload is still in progress",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 413, description = "Too large, a line or the header over the limit, or a \
            compressed file expanding too far", body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = "The `file` part's media type is no format uploads take, \
            or its name or media type names a format its content is not (a `.json` holding CSV)",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The header cannot be used (a required column missing)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[instrument(skip_all)]
pub async fn csv_upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, UploadError> {
    upload_to(&state, &request, payload, GAME_ROUNDS).await
}

/// Uploads a file of the dataset `name` (`multipart/form-data`, the file in the field `file`).
///
/// The same contract as `POST /csv_upload` — one Kafka transaction, receipts, idempotency by
/// content and `Idempotency-Key` (both within the dataset) — with the rows read by the
/// dataset's spec (`datasets/<name>.toml`) and sent to its topic. The file is CSV, a JSON
/// array, JSON Lines or Parquet, told by its first bytes (decompressed); a name or media type
/// naming another format is refused. `game_rounds` is `POST /csv_upload`, which reads the same
/// formats. Each dataset served here also has an operation of its own,
/// `POST /datasets/<dataset>/upload`, describing its file's columns.
#[utoipa::path(
    post,
    path = "/datasets/{name}/upload",
    tag = "uploads",
    security(("upload_token" = [])),
    params(
        ("name" = String, Path, description = "The dataset, as `GET /datasets` of the gateway \
            lists them"),
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,200}$",
            description = "1 to 200 visible ASCII characters, within the dataset."),
    ),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Every accepted row is committed to Kafka (rejected rows \
            are listed, the first ones, and counted); the receipt names the dataset. A \
            re-upload of the same content or `Idempotency-Key` replays the first receipt.",
            body = Receipt,
            headers(("Idempotent-Replayed" = String,
                description = "`true` when this is the first upload's receipt, replayed"))),
        (status = 400, description = "Not multipart/form-data, no `file` field, a body that \
            cannot be read (corrupt compression), or a bad `Idempotency-Key`",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = NoToken),
        (status = 404, description = "No dataset of that name", body = Problem,
            content_type = "application/problem+json"),
        (status = 408, description = "The client stopped sending, or sent too slowly",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An identical upload is still in progress",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 413, description = "Too large, a line or the header over the limit, or a \
            compressed file expanding too far", body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = "The `file` part's media type is no format uploads take, \
            or its name or media type names a format its content is not (a `.json` holding CSV)",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The header cannot be used (a column of the dataset \
            missing)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[instrument(skip_all, fields(dataset = %name))]
pub async fn dataset_upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, UploadError> {
    upload_to(&state, &request, payload, &name).await
}

/// An upload of a file of `dataset`.
async fn upload_to(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
    dataset: &str,
) -> Result<HttpResponse, UploadError> {
    authorize(request, state)?;
    let dataset = state
        .datasets
        .get(dataset)
        .ok_or_else(|| UploadError::UnknownDataset(dataset.to_owned()))?;
    let name = dataset.spec.name.as_str();
    // A key is the client's for one dataset: another dataset's upload with it is not a replay.
    let idempotency_key = idempotency_key(request)?.map(|key| match name {
        GAME_ROUNDS => key.to_owned(),
        _ => format!("{name}/{key}"),
    });
    let idempotency_key = idempotency_key.as_deref();
    if let Some(key) = idempotency_key {
        if let Some(receipt) = state.receipts.by_idempotency_key(key).await? {
            return Ok(replay(receipt));
        }
    }
    let (payload, verdict) = Paced::new(
        payload,
        PaceLimits {
            idle: Duration::from_millis(state.config.body_idle_timeout_ms),
            min_bytes_per_s: state.config.min_body_rate_bytes_per_s,
        },
    );
    // A body cut for its pace surfaces as some error of the stream; the verdict says why.
    let too_slow = |error: UploadError| verdict.get().map_or(error, UploadError::from);
    let mut payload = Multipart::new(request.headers(), payload);
    let mut seen_a_field = false;
    while let Some(field) = payload.next().await {
        let field = match field {
            Ok(field) => field,
            Err(error) if !seen_a_field => {
                return Err(too_slow(UploadError::NotMultipart(error.to_string())))
            }
            Err(error) => return Err(too_slow(UploadError::BadBody(error.to_string()))),
        };
        seen_a_field = true;
        if field.name() != Some("file") {
            continue;
        }
        let named = named_format(&field)?;
        // A slot first: a request refused for want of one never started (nothing tracked).
        let transaction = begin(state).await?.to(state.config.topics(name));
        let upload = Upload {
            plan: Arc::clone(&dataset.plan),
            idempotency_key,
            named,
        };
        return answer(tracked(state, transaction, field, upload, too_slow).await);
    }
    Err(UploadError::NoFileField)
}

enum Outcome {
    Accepted(Receipt),
    Replayed(Receipt),
}

/// A transaction on a free slot of the producer pool, waiting at most `upload_slot_wait_ms`
/// for one (503 when none is free by then).
async fn begin(state: &AppState) -> Result<UploadTransaction, UploadError> {
    let slot_wait = Duration::from_millis(state.config.upload_slot_wait_ms);
    let failure = match state.producer.try_begin_upload(slot_wait).await {
        Ok(Some(transaction)) => return Ok(transaction),
        Ok(None) => UploadError::Busy {
            slots: state.producer.slots(),
        },
        Err(error) => {
            tracing::warn!(%error, "Upload failed: no Kafka transaction.");
            error.into()
        }
    };
    metrics::counter!(crate::metric::UPLOADS_TOTAL, "outcome" => "failed").increment(1);
    Err(failure)
}

/// What one upload request asks for: its dataset's plan, its idempotency key, if any, and
/// the format its file part is named in, if it is.
struct Upload<'a> {
    plan: Arc<Plan>,
    idempotency_key: Option<&'a str>,
    named: Option<Format>,
}

/// Runs the upload of `field` in `transaction`, its counts reported while it runs and its end
/// recorded ([`Tracker`]); `too_slow` says when a failure was the client's pace.
async fn tracked(
    state: &AppState,
    transaction: UploadTransaction,
    field: actix_multipart::Field,
    upload: Upload<'_>,
    too_slow: impl Fn(UploadError) -> UploadError,
) -> Result<Outcome, UploadError> {
    let idempotency_key = upload.idempotency_key;
    let upload_id = new_upload_id();
    let progress = Arc::new(Progress::default());
    let tracker = Tracker::start(
        state.receipts.clone(),
        &upload_id,
        idempotency_key,
        Arc::clone(&progress),
    );
    let body = Box::pin(crate::decode::decompress(
        field,
        state.config.expansion_limits(),
    ));
    let (head, body) = ingest::peek(body, HEAD_BYTES).await;
    let result = match format_of(upload.named, &head) {
        Ok(format) => {
            let options = IngestOptions {
                format,
                plan: upload.plan,
                limits: state.config.limits(),
                upload_id,
                sha256: None,
                progress: Some(progress),
                scratch_dir: state.config.scratch_dir(),
            };
            ingest_and_finish(state, transaction, body, options, idempotency_key)
                .await
                .map_err(too_slow)
        }
        Err(mismatch) => {
            transaction.abort().await;
            Err(mismatch)
        }
    };
    tracker.end(result.as_ref().err()).await;
    result
}

/// The answer to an upload that ran, counted and (if it failed) logged.
fn answer(result: Result<Outcome, UploadError>) -> Result<HttpResponse, UploadError> {
    let outcome = match &result {
        Ok(Outcome::Accepted(_)) => "accepted",
        Ok(Outcome::Replayed(_)) => "replayed",
        Err(_) => "failed",
    };
    metrics::counter!(crate::metric::UPLOADS_TOTAL, "outcome" => outcome).increment(1);
    match result {
        Ok(Outcome::Accepted(receipt)) => Ok(HttpResponse::Ok().json(receipt)),
        Ok(Outcome::Replayed(receipt)) => Ok(replay(receipt)),
        Err(error) => {
            tracing::warn!(%error, "Upload failed.");
            Err(error)
        }
    }
}

/// Streams the file in a transaction, then commits it or, for a duplicate, aborts it
/// ([`finish_upload`]).
async fn ingest_and_finish(
    state: &AppState,
    transaction: UploadTransaction,
    body: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Unpin,
    options: IngestOptions,
    idempotency_key: Option<&str>,
) -> Result<Outcome, UploadError> {
    let window = transaction.window(options.limits.max_in_flight);
    let receipt = match ingest_body(body, window, options).await {
        Ok(receipt) => receipt,
        Err(error) => {
            transaction.abort().await;
            return Err(error);
        }
    };
    match finish_upload(&state.receipts, transaction, &receipt, idempotency_key).await? {
        Finished::Committed => {}
        Finished::Duplicate {
            first_upload_id,
            first_receipt,
        } => {
            tracing::info!(upload_id = %receipt.upload_id, %first_upload_id, "Duplicate upload discarded.");
            return first_receipt
                .map(|receipt| Outcome::Replayed(*receipt))
                .ok_or(UploadError::InProgress(first_upload_id));
        }
    }
    metrics::counter!(crate::metric::ROWS_READ_TOTAL).increment(receipt.rows_read);
    receipt.count(crate::metric::ROWS_TOTAL, crate::metric::BYTES_TOTAL);
    tracing::info!(
        upload_id = %receipt.upload_id,
        rows_read = receipt.rows_read,
        accepted = receipt.accepted,
        rejected = receipt.rejected,
        bytes = receipt.bytes,
        duration_ms = receipt.duration_ms,
        "Upload committed."
    );
    Ok(Outcome::Accepted(receipt))
}

/// The uploads running now.
///
/// Oldest first, each with its counts so far, updated every second (find yours by its
/// `Idempotency-Key`).
#[utoipa::path(
    get,
    path = "/uploads",
    tag = "uploads",
    security(("upload_token" = [])),
    responses(
        (status = 200, description = "The uploads running now, oldest first", body = InProgress),
        (status = 401, response = NoToken),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_uploads(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, UploadError> {
    authorize(&request, &state)?;
    let running = state.receipts.in_progress().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "in_progress": running })))
}

/// An upload's receipt and how much of it landed, or its state while it has none.
///
/// A committed upload's receipt comes with its reconciliation: how many of its accepted rows
/// ClickHouse holds now (`landed`). When ClickHouse cannot be asked, the receipt is still
/// returned, with the reconciliation's `status` `unknown` and the `error`.
#[utoipa::path(
    get,
    path = "/uploads/{id}",
    tag = "uploads",
    security(("upload_token" = [])),
    params(("id" = String, Path, description = "The receipt's `upload_id`")),
    responses(
        (status = 200, description = "The receipt with its reconciliation, or, for an upload \
            without a receipt, its state (running, or failed in the last day)",
            body = UploadLookup),
        (status = 401, response = NoToken),
        (status = 404, response = UnknownUpload),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, UploadError> {
    authorize(&request, &state)?;
    let Some(receipt) = state.receipts.get(&id).await? else {
        // No receipt: running, or failed within the last day (`tracking`), or unknown.
        return match state.receipts.progress(&id).await? {
            Some(state) => Ok(HttpResponse::Ok().json(state)),
            None => Err(UploadError::UnknownUpload(id.clone())),
        };
    };
    let accepted = receipt.accepted;
    let name = receipt.dataset.as_deref().unwrap_or(GAME_ROUNDS);
    let dataset = state.datasets.get(name);
    let mut ids = state.receipts.aliases(&id).await?;
    ids.push(id.to_string());
    let landed = match dataset {
        Some(dataset) => state.landing.landed(&dataset.spec, &ids).await,
        None => None,
    };
    let reconciliation = match landed {
        None => serde_json::json!({
            "accepted": accepted,
            "landed": null,
            "status": "unknown",
            "error": format!("dataset `{name}` keeps no upload id (or is not served here): its rows cannot be counted"),
        }),
        // Rows landed under an alias too (a re-send's, or a failed attempt's) may count beyond
        // `accepted`: every accepted record is then in, and `landed` says so as `accepted`.
        Some(Ok(landed)) => serde_json::json!({
            "accepted": accepted,
            "landed": landed.min(accepted),
            "pending": accepted.saturating_sub(landed),
            "status": if landed >= accepted { "landed" } else { "landing" },
        }),
        Some(Err(error)) => {
            tracing::warn!(%error, upload_id = %id, "Could not reconcile an upload.");
            serde_json::json!({
                "accepted": accepted,
                "landed": null,
                "status": "unknown",
                "error": format!("ClickHouse is unavailable: {error}"),
            })
        }
    };
    Ok(HttpResponse::Ok().json(Reconciled {
        receipt,
        reconciliation,
    }))
}

/// `GET /uploads/{id}`'s answer for a committed upload: its receipt and its reconciliation.
#[derive(serde::Serialize)]
struct Reconciled {
    #[serde(flatten)]
    receipt: Receipt,
    reconciliation: serde_json::Value,
}

/// Query of `GET /uploads/{id}/rejects`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RejectsPage {
    /// Lists rejects after this line (the previous page's `next_after_line`). Default 0.
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    after_line: u64,
    /// Rejects per page, 1 to 10000. Default 1000.
    #[serde(default = "default_page")]
    #[param(minimum = 1, maximum = 10_000)]
    limit: u32,
}

fn default_page() -> u32 {
    1_000
}

/// Every rejected row of a committed upload, a page at a time.
///
/// In line order, as the consumer stored them in ClickHouse (the receipt lists only the first
/// ones); the next page starts after `next_after_line`.
#[utoipa::path(
    get,
    path = "/uploads/{id}/rejects",
    tag = "uploads",
    security(("upload_token" = [])),
    params(("id" = String, Path, description = "The receipt's `upload_id`"), RejectsPage),
    responses(
        (status = 200, description = "One page of rejected rows, in line order",
            body = RejectsPageBody),
        (status = 400, response = BadQuery),
        (status = 401, response = NoToken),
        (status = 404, response = UnknownUpload),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_rejects(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
    page: web::Query<RejectsPage>,
) -> Result<HttpResponse, UploadError> {
    authorize(&request, &state)?;
    // An OpenAPI `int64`: lines past it cannot exist, and the document says so.
    if i64::try_from(page.after_line).is_err() {
        return Err(UploadError::BadQuery(format!(
            "`after_line` must be at most {}",
            i64::MAX
        )));
    }
    if !(1..=crate::landing::MAX_REJECTS_PAGE).contains(&page.limit) {
        return Err(UploadError::BadQuery(format!(
            "`limit` must be between 1 and {}",
            crate::landing::MAX_REJECTS_PAGE
        )));
    }
    let receipt = state
        .receipts
        .get(&id)
        .await?
        .ok_or_else(|| UploadError::UnknownUpload(id.clone()))?;
    let rejects = state
        .landing
        .rejects(&id, page.after_line, page.limit)
        .await
        .map_err(|e| UploadError::ClickHouseUnavailable(e.to_string()))?;
    let next_after_line = match rejects.last() {
        Some(last) if rejects.len() == page.limit as usize => Some(last.line),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "upload_id": id.as_str(),
        "rejected": receipt.rejected,
        "rejects": rejects,
        "next_after_line": next_after_line,
    })))
}

fn replay(receipt: Receipt) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Idempotent-Replayed", "true"))
        .json(receipt)
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<&str>, UploadError> {
    let Some(value) = request.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| UploadError::BadIdempotencyKey)?;
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UploadError::BadIdempotencyKey);
    }
    Ok(Some(key))
}

/// The format the `file` part is named in: its media type when that names one, else its file
/// name's extension; `None` when neither does (its content decides). A media type that is no
/// format uploads take is refused.
fn named_format(field: &actix_multipart::Field) -> Result<Option<Format>, UploadError> {
    let by_type = match field.content_type() {
        Some(mime) => media_format(mime.essence_str())?,
        None => None,
    };
    let file_name = || field.content_disposition()?.get_filename();
    Ok(by_type.or_else(|| file_name().and_then(Format::of_file_name)))
}

/// The format a media type names; `None` for the generic ones (`text/plain`, bytes, a
/// compression) browsers and curl send for any file. Anything else is refused.
fn media_format(essence: &str) -> Result<Option<Format>, UploadError> {
    Ok(match essence {
        "text/csv" | "application/csv" | "application/vnd.ms-excel" => {
            Some(Format::Text(TextFormat::Csv))
        }
        "application/json" => Some(Format::Text(TextFormat::Json)),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Some(Format::Text(TextFormat::JsonLines)),
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
            Some(Format::Parquet)
        }
        generic if generic.starts_with("text/") => None,
        "application/octet-stream"
        | "application/gzip"
        | "application/x-gzip"
        | "application/zstd" => None,
        other => return Err(UploadError::NotCsv(other.to_owned())),
    })
}

/// The format of a body whose decompressed content starts with `head`: as named, unless the
/// content contradicts the name; as the content shows when unnamed.
fn format_of(named: Option<Format>, head: &[u8]) -> Result<Format, UploadError> {
    match named {
        None => Ok(Format::of_content(head)),
        Some(format) => match format.contradicted_by(head) {
            None => Ok(format),
            Some(why) => Err(UploadError::FormatMismatch(why.to_owned())),
        },
    }
}
