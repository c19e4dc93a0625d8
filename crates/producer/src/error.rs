//! Failures of an upload, mapped once to HTTP statuses and RFC 9457 problem details
//! (`application/problem+json`, [`sluice_schema::problem::Problem`]).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use rdkafka::error::KafkaError;
use sluice_schema::csv::HeaderError;
use sluice_schema::problem::{Problem, PROBLEM_JSON};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the request is not multipart/form-data: {0}")]
    NotMultipart(String),
    #[error("the multipart body has no `file` field")]
    NoFileField,
    #[error("the upload could not be read: {0}")]
    BadBody(String),
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{} (raise SLUICE_PRODUCER_MAX_LINE_BYTES if it is genuine)", crate::decode::LineTooLong { line: *line, limit: *limit })]
    LineTooLong { line: u64, limit: usize },
    #[error("the header is longer than {limit} bytes (raise SLUICE_PRODUCER_MAX_LINE_BYTES if it is genuine)")]
    HeaderTooLarge { limit: usize },
    #[error(transparent)]
    TooMuchExpansion(#[from] crate::decode::TooMuchExpansion),
    #[error("the client sent nothing for {idle_ms} ms")]
    ClientTooSlow { idle_ms: u64 },
    #[error(
        "the client sent {bytes} bytes in {waited_ms} ms, slower than the minimum of \
         {min_bytes_per_s} bytes/s"
    )]
    ClientBelowMinRate {
        bytes: u64,
        waited_ms: u64,
        min_bytes_per_s: u64,
    },
    #[error("every upload slot ({slots}) is busy; retry later")]
    Busy { slots: usize },
    #[error("the file is `{0}`, not CSV, JSON, JSON Lines or Parquet")]
    NotCsv(String),
    #[error("the header cannot be used: {0}")]
    Header(#[from] HeaderError),
    #[error("not a usable Parquet file: {0}")]
    Parquet(String),
    #[error("the file's content does not match its name or type: {0}")]
    FormatMismatch(String),
    #[error("Kafka did not acknowledge the records: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the receipt store is unavailable: {0}")]
    ReceiptsUnavailable(String),
    #[error("ClickHouse is unavailable: {0}")]
    ClickHouseUnavailable(String),
    #[error("no upload has the id `{0}` (running, committed, or failed in the last day)")]
    UnknownUpload(String),
    #[error("there is no dataset `{0}`")]
    UnknownDataset(String),
    #[error("an upload of the same content ({0}) is still in progress; retry when it is done")]
    InProgress(String),
    #[error("the Idempotency-Key header must be 1 to 200 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("this needs `Authorization: Bearer <upload token>` with a valid token")]
    Unauthorized,
}

impl ResponseError for UploadError {
    fn status_code(&self) -> StatusCode {
        match self {
            UploadError::NotMultipart(_)
            | UploadError::NoFileField
            | UploadError::BadBody(_)
            | UploadError::BadIdempotencyKey
            | UploadError::BadQuery(_) => StatusCode::BAD_REQUEST,
            UploadError::Unauthorized => StatusCode::UNAUTHORIZED,
            UploadError::InProgress(_) => StatusCode::CONFLICT,
            UploadError::UnknownUpload(_) | UploadError::UnknownDataset(_) => StatusCode::NOT_FOUND,
            UploadError::TooLarge { .. }
            | UploadError::LineTooLong { .. }
            | UploadError::HeaderTooLarge { .. }
            | UploadError::TooMuchExpansion(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::ClientTooSlow { .. } | UploadError::ClientBelowMinRate { .. } => {
                StatusCode::REQUEST_TIMEOUT
            }
            UploadError::NotCsv(_) | UploadError::FormatMismatch(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            UploadError::Header(_) | UploadError::Parquet(_) => StatusCode::UNPROCESSABLE_ENTITY,
            UploadError::Kafka(_)
            | UploadError::ReceiptsUnavailable(_)
            | UploadError::ClickHouseUnavailable(_)
            | UploadError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(
            self,
            UploadError::Kafka(_)
                | UploadError::ReceiptsUnavailable(_)
                | UploadError::ClickHouseUnavailable(_)
                | UploadError::InProgress(_)
                | UploadError::Busy { .. }
        ) {
            response.insert_header(("Retry-After", "5"));
        }
        if matches!(self, UploadError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", UPLOAD_CHALLENGE));
        }
        response
            .content_type(PROBLEM_JSON)
            .json(Problem::new(self.status_code(), self.to_string()))
    }
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750).
pub const UPLOAD_CHALLENGE: &str = r#"Bearer realm="sluice-producer""#;
