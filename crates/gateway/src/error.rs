//! Every failure the gateway answers with, mapped once to HTTP as RFC 9457 problem details.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("send your API key in the X-API-Key header")]
    MissingApiKey,
    #[error("the API key is not valid")]
    UnknownApiKey,
    #[error("the API key has no credits left")]
    OutOfCredits,
    #[error("the admin token is missing or wrong")]
    NotAdmin,
    #[error("{0}")]
    BadRequest(String),
    #[error("the credit store is unavailable")]
    RedisUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the analytics store is unavailable")]
    ClickHouseUnavailable(#[source] Box<clickhouse::error::Error>),
}

impl ApiError {
    fn title(&self) -> &'static str {
        match self {
            ApiError::MissingApiKey | ApiError::UnknownApiKey | ApiError::NotAdmin => {
                "Unauthorized"
            }
            ApiError::OutOfCredits => "Payment Required",
            ApiError::BadRequest(_) => "Bad Request",
            ApiError::RedisUnavailable(_) | ApiError::ClickHouseUnavailable(_) => {
                "Service Unavailable"
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingApiKey | ApiError::UnknownApiKey | ApiError::NotAdmin => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::OutOfCredits => StatusCode::PAYMENT_REQUIRED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::RedisUnavailable(_) | ApiError::ClickHouseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "Request failed.");
        }
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "5"));
        }
        response.body(
            serde_json::json!({
                "type": "about:blank",
                "title": self.title(),
                "status": status.as_u16(),
                "detail": self.to_string(),
            })
            .to_string(),
        )
    }
}
