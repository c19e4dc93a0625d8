//! Every failure the gateway answers with, mapped once to HTTP as RFC 9457 problem details.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("send your API key in the X-API-Key header")]
    MissingApiKey,
    /// Unknown, revoked, expired or past its rotation grace period: the client is not told which.
    #[error("the API key is not valid")]
    UnknownApiKey,
    #[error("the API key has no credits left")]
    OutOfCredits,
    #[error("too many requests for this API key; retry after {retry_after_secs} s")]
    RateLimited {
        /// Requests allowed per window (`X-RateLimit-Limit`).
        limit: u32,
        /// Seconds until the window is fully replenished (`X-RateLimit-Reset`).
        reset_secs: u64,
        /// Seconds until the next request is allowed (`Retry-After`), at least 1.
        retry_after_secs: u64,
    },
    #[error("the admin token is missing or wrong")]
    NotAdmin,
    #[error("no API key has this id")]
    KeyNotFound,
    #[error("the API key is revoked")]
    KeyRevoked,
    #[error("{0}")]
    BadRequest(String),
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
    LedgerBehind(#[source] crate::ledger::FlushTimedOut),
}

/// An RFC 9457 problem details body (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what happened.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The status's reason phrase.
    #[schema(example = "Payment Required")]
    pub title: String,
    #[schema(example = 402)]
    pub status: u16,
    /// What went wrong, for a human.
    #[schema(example = "the API key has no credits left")]
    pub detail: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingApiKey | ApiError::UnknownApiKey | ApiError::NotAdmin => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::OutOfCredits => StatusCode::PAYMENT_REQUIRED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::KeyNotFound => StatusCode::NOT_FOUND,
            ApiError::KeyRevoked | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
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
            ApiError::RateLimited {
                limit,
                reset_secs,
                retry_after_secs,
            } => {
                response
                    .insert_header(("Retry-After", retry_after_secs.to_string()))
                    .insert_header(("X-RateLimit-Limit", limit.to_string()))
                    .insert_header(("X-RateLimit-Remaining", "0"))
                    .insert_header(("X-RateLimit-Reset", reset_secs.to_string()));
            }
            _ => {}
        }
        response.json(Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
        })
    }
}
