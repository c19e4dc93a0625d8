//! Every failure the gateway answers with, mapped once to HTTP as RFC 9457 problem details;
//! [`problem_details`] gives the answers actix-web makes itself (unknown path, unsupported
//! method, unreadable body) the same shape. The domain modules have errors of their own and
//! know nothing of HTTP; each becomes an [`ApiError`] here, by its `From` impl.

use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::answer::FetchError;
use crate::audit::AuditError;
use crate::credits::{CreditError, RetryLater};
use crate::ledger::FlushTimedOut;
use crate::query::BadQuery;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("send your API key in the X-API-Key header")]
    MissingApiKey,
    /// Unknown, revoked, expired or past its rotation grace period: the client is not told which.
    #[error("the API key is not valid")]
    UnknownApiKey,
    #[error("the API key has no credits left")]
    OutOfCredits,
    /// `Retry-After` and `X-RateLimit-*` say when to come back.
    #[error("too many requests for this API key; retry after {} s", .0.retry_after_secs)]
    RateLimited(RetryLater),
    #[error("the admin token is missing or wrong")]
    NotAdmin,
    #[error("no API key has this id")]
    KeyNotFound,
    #[error("the API key is revoked")]
    KeyRevoked,
    #[error("{0}")]
    BadRequest(String),
    /// No such dataset or endpoint.
    #[error("{0}")]
    NotFound(String),
    /// A body sent as something other than `application/json`.
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// The request cannot be done in the resource's current state.
    #[error("{0}")]
    Conflict(String),
    #[error("the credit store is unavailable")]
    RedisUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the analytics store is unavailable")]
    ClickHouseUnavailable(#[source] Box<clickhouse::error::Error>),
    #[error("the analytics store did not answer within {after_ms} ms")]
    QueryTimedOut { after_ms: u64 },
    /// Every query slot stayed busy for `query_queue_wait_ms`; nothing was charged.
    #[error("too many queries are running; retry in a second")]
    Busy,
    #[error("the usage ledger is behind (the analytics store is slow or down)")]
    LedgerBehind(#[source] FlushTimedOut),
}

/// The problem-details body and the handler for actix-web's own refusals, shared with the
/// producer.
pub use sluice_schema::problem::{problem_details, Problem};

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingApiKey | ApiError::UnknownApiKey | ApiError::NotAdmin => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::OutOfCredits => StatusCode::PAYMENT_REQUIRED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::KeyNotFound | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::KeyRevoked | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RedisUnavailable(_)
            | ApiError::ClickHouseUnavailable(_)
            | ApiError::LedgerBehind(_)
            | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::QueryTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "Request failed.");
        }
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            ApiError::RedisUnavailable(_)
            | ApiError::ClickHouseUnavailable(_)
            | ApiError::QueryTimedOut { .. }
            | ApiError::LedgerBehind(_) => {
                response.insert_header(("Retry-After", "5"));
            }
            ApiError::Busy => {
                response.insert_header(("Retry-After", "1"));
            }
            ApiError::RateLimited(RetryLater {
                limit,
                reset_secs,
                retry_after_secs,
            }) => {
                response
                    .insert_header(("Retry-After", retry_after_secs.to_string()))
                    .insert_header(("X-RateLimit-Limit", limit.to_string()))
                    .insert_header(("X-RateLimit-Remaining", "0"))
                    .insert_header(("X-RateLimit-Reset", reset_secs.to_string()));
            }
            // RFC 9110 §11.6.1: a 401 names the way to authenticate.
            ApiError::MissingApiKey | ApiError::UnknownApiKey => {
                response.insert_header((header::WWW_AUTHENTICATE, API_KEY_CHALLENGE));
            }
            ApiError::NotAdmin => {
                response.insert_header((header::WWW_AUTHENTICATE, ADMIN_CHALLENGE));
            }
            _ => {}
        }
        response.json(Problem::new(status, self.to_string()))
    }
}

/// The `WWW-Authenticate` challenge of a 401 from `/aggregated_game_rounds`.
pub const API_KEY_CHALLENGE: &str = r#"ApiKey realm="sluice", header="X-API-Key""#;
/// The `WWW-Authenticate` challenge of a 401 from the admin API (RFC 6750).
pub const ADMIN_CHALLENGE: &str = r#"Bearer realm="sluice-admin""#;

impl ApiError {
    /// A JSON body that could not be read: 415 (not `application/json`), 413 (over the
    /// limit, `limit_bytes` where the error does not say), else 400.
    pub fn from_json(error: &JsonPayloadError, limit_bytes: usize) -> ApiError {
        match error {
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge {
                limit_bytes: *limit,
            },
            JsonPayloadError::Payload(PayloadError::Overflow) => {
                ApiError::PayloadTooLarge { limit_bytes }
            }
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl From<CreditError> for ApiError {
    fn from(error: CreditError) -> ApiError {
        match error {
            CreditError::UnknownKey => ApiError::UnknownApiKey,
            CreditError::OutOfCredits => ApiError::OutOfCredits,
            CreditError::RateLimited(retry) => ApiError::RateLimited(retry),
            CreditError::KeyNotFound => ApiError::KeyNotFound,
            CreditError::KeyRevoked => ApiError::KeyRevoked,
            CreditError::Invalid(message) => ApiError::BadRequest(message),
            CreditError::Conflict(message) => ApiError::Conflict(message),
            CreditError::Unavailable(error) => ApiError::RedisUnavailable(error),
        }
    }
}

impl From<BadQuery> for ApiError {
    fn from(BadQuery(message): BadQuery) -> ApiError {
        ApiError::BadRequest(message)
    }
}

/// An answer that could not be read (its charge is refunded).
impl From<FetchError> for ApiError {
    fn from(error: FetchError) -> ApiError {
        match error {
            FetchError::ClickHouse(error) => ApiError::ClickHouseUnavailable(Box::new(error)),
            redis => ApiError::RedisUnavailable(Box::new(redis)),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> ApiError {
        match error {
            AuditError::Credits(error) => error.into(),
            AuditError::ClickHouse(error) => ApiError::ClickHouseUnavailable(Box::new(error)),
            AuditError::NotRebuildable(message) => ApiError::Conflict(message),
        }
    }
}

impl From<FlushTimedOut> for ApiError {
    fn from(error: FlushTimedOut) -> ApiError {
        ApiError::LedgerBehind(error)
    }
}

/// A read of the analytics store that failed (`GET /usage`).
impl From<clickhouse::error::Error> for ApiError {
    fn from(error: clickhouse::error::Error) -> ApiError {
        ApiError::ClickHouseUnavailable(Box::new(error))
    }
}
