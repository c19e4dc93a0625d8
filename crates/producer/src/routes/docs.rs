//! `GET /openapi.json`, generated from the handlers' `#[utoipa::path]` annotations, the
//! schemas of the answers that are built as JSON values (receipts read back from Redis, the
//! state of a running upload) and, for each dataset the producer serves, from its spec
//! ([`super::dataset_docs`]): built once at start ([`openapi`]) and kept in the application's
//! state. Swagger UI over it, at `/docs/`, is served from the binary by [`sluice_schema::docs`].

use actix_web::{web, HttpResponse};
use serde::Serialize;
use sluice_schema::dataset::Catalog;
use sluice_schema::docs::{Scheme, SecuritySchemes};
use sluice_schema::problem::Problem;
use sluice_schema::problem_response;
use utoipa::{OpenApi, ToSchema};

use super::{upload, AppState};
use crate::error::UPLOAD_CHALLENGE;
use crate::ingest::{Receipt, RowReject};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice producer",
        description = "Uploads of game-round exports and of files of the datasets declared in \
            `datasets/<name>.toml` (CSV, plain or gzip/zstd) into Kafka, one transaction per \
            upload, and what became of them. Each dataset this producer serves has its upload \
            operation, its file's columns described from its spec.\n\n\
            Every error is RFC 9457 problem details (`application/problem+json`). A method a \
            path does not have is answered 405 with an `Allow` header; an unknown path 404. \
            When the producer is configured with upload tokens \
            (`SLUICE_PRODUCER_UPLOAD_TOKENS`), every operation here needs one as a bearer \
            token, checked before anything else; without tokens they are open."
    ),
    paths(
        upload::csv_upload,
        upload::dataset_upload,
        upload::list_uploads,
        upload::get_upload,
        upload::get_rejects,
    ),
    components(
        schemas(Problem, Receipt, RowReject, UploadForm, UploadReceipt, Reconciliation,
            UploadState, UploadFailure, UploadLookup, InProgress, RejectsPage, LandedRejectRow),
        responses(NoToken, Unavailable, UnknownUpload, BadQuery),
    ),
    modifiers(&SECURITY),
    tags((name = "uploads", description = "Uploads and their receipts (Bearer upload token)")),
)]
pub struct ApiDoc;

const SECURITY: SecuritySchemes = SecuritySchemes(&[("upload_token", Scheme::Bearer)]);

/// `POST /csv_upload`'s body: `multipart/form-data` with the export in the field `file`
/// (other fields are read and ignored).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The export: CSV in UTF-8 (± BOM) or UTF-16 LE/BE with BOM, plain or compressed with
    /// gzip or zstd (recognised by its first bytes). Its part's media type, if sent, is a
    /// `text/*` type, `application/octet-stream`, `application/csv`,
    /// `application/vnd.ms-excel`, `application/gzip`, `application/x-gzip` or
    /// `application/zstd` (415 otherwise).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// `GET /uploads/{id}` of a committed upload: its receipt and how much of it landed.
#[derive(Serialize, ToSchema)]
pub struct UploadReceipt {
    #[serde(flatten)]
    pub receipt: Receipt,
    pub reconciliation: Reconciliation,
}

/// How many of an upload's accepted rows ClickHouse holds now.
#[derive(Serialize, ToSchema)]
pub struct Reconciliation {
    pub accepted: u64,
    /// Its distinct rounds in ClickHouse (re-sends of the same content included); `null`
    /// when ClickHouse cannot be asked.
    pub landed: Option<u64>,
    /// `accepted − landed`; absent when ClickHouse cannot be asked.
    #[schema(required = false)]
    pub pending: u64,
    pub status: ReconciliationStatus,
    /// Why the status is `unknown`; absent otherwise.
    #[schema(required = false)]
    pub error: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReconciliationStatus {
    Landed,
    Landing,
    Unknown,
}

/// An upload without a receipt: running, or failed in the last day.
#[derive(Serialize, ToSchema)]
pub struct UploadState {
    pub upload_id: String,
    pub status: UploadStatus,
    #[schema(format = DateTime)]
    pub started_at: String,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
    pub idempotency_key: Option<String>,
    /// How it failed; absent while it runs.
    #[schema(required = false)]
    pub error: UploadFailure,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    InProgress,
    Failed,
}

/// The answer a failed upload got.
#[derive(Serialize, ToSchema)]
pub struct UploadFailure {
    pub status: u16,
    pub detail: String,
}

/// `GET /uploads/{id}`: a receipt with its reconciliation, or the state of an upload that has
/// none.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UploadLookup {
    Receipt(UploadReceipt),
    State(UploadState),
}

/// `GET /uploads`.
#[derive(Serialize, ToSchema)]
pub struct InProgress {
    /// Oldest first; counts updated every second.
    pub in_progress: Vec<UploadState>,
}

/// `GET /uploads/{id}/rejects`: one page of an upload's rejected rows.
#[derive(Serialize, ToSchema)]
pub struct RejectsPage {
    pub upload_id: String,
    /// How many rows the upload rejected in all.
    pub rejected: u64,
    pub rejects: Vec<LandedRejectRow>,
    /// The next page's `after_line`; `null` on the last page.
    pub next_after_line: Option<u64>,
}

/// One rejected row as the consumer stored it.
#[derive(Serialize, ToSchema)]
pub struct LandedRejectRow {
    pub line: u64,
    /// The column at fault; empty for row-level problems.
    pub column: String,
    pub reason: String,
}

problem_response!(
    NoToken,
    "Missing or wrong upload token",
    ("WWW-Authenticate", &format!("Always `{UPLOAD_CHALLENGE}`"))
);
problem_response!(
    Unavailable,
    "Kafka, Redis or ClickHouse did not answer, or every upload slot stayed busy",
    ("Retry-After", "Seconds to wait before trying again")
);
problem_response!(
    UnknownUpload,
    "No upload has this id (running, committed, or failed in the last day)"
);
problem_response!(BadQuery, "A query parameter outside what the schema allows");

/// The OpenAPI 3.1 description of this API serving `catalog`'s datasets: the annotated
/// operations, and one upload operation per dataset.
pub fn openapi(catalog: &Catalog) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    super::dataset_docs::add_operations(&mut document, catalog);
    document
}

/// The document built at start ([`openapi`]).
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    state.openapi.answer()
}
