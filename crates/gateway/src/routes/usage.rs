//! `GET /usage`: a key's own credits and usage over time, for its holder (`X-API-Key`), free.

use actix_web::{web, HttpResponse};
use tracing::instrument;

use super::auth::ClientKey;
use super::problems::{BadApiKey, Unavailable};
use super::state::AppState;
use crate::error::{ApiError, Problem};
use crate::usage::{self, Usage, UsageQuery, MAX_DAYS};

/// The key's record (credits left, rate limit, expiry) and its usage-ledger movements summed
/// per hour or day, oldest first, over the last `days` days. Costs no credit and is not rate
/// limited. The ledger is filled from an outbox every `SLUICE_GATEWAY_LEDGER_FLUSH_INTERVAL_MS`,
/// so the latest movements may be missing; `key.credits` is always current.
#[utoipa::path(
    get, path = "/usage", tag = "rounds",
    params(UsageQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The key and its usage", body = Usage),
        (status = 400, description = "`days` or `granularity` outside what the schema allows",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = BadApiKey),
        (status = 503, response = Unavailable),
    )
)]
#[instrument(skip_all)]
pub async fn usage(
    state: web::Data<AppState>,
    query: web::Query<UsageQuery>,
    ClientKey(key): ClientKey,
) -> Result<HttpResponse, ApiError> {
    if !(1..=MAX_DAYS).contains(&query.days) {
        return Err(ApiError::BadRequest(format!(
            "`days` must be between 1 and {MAX_DAYS}"
        )));
    }
    let info = state.credits.key_by_secret(&key).await?;
    let answer = usage::usage(&state.clickhouse, info, &query, chrono::Utc::now()).await?;
    Ok(HttpResponse::Ok().json(answer))
}
