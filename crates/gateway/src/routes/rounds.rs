use std::time::Duration;

use actix_web::{web, HttpResponse, ResponseError};
use chrono::SecondsFormat;
use serde::Serialize;
use tokio::sync::SemaphorePermit;
use tracing::instrument;
use utoipa::ToSchema;

use super::auth::ClientKey;
use super::problems::BadApiKey;
use super::state::AppState;
use crate::answer::{self, Bucket};
use crate::charge;
use crate::credits::{Admission, ApiKey, CreditError};
use crate::error::{ApiError, Problem};
use crate::query::{Granularity, RawRoundsQuery, RoundsQuery};

const ENDPOINT: &str = "GET /aggregated_game_rounds";

/// `game_rounds`' endpoint among the datasets' (`GET /datasets` lists it): the same handler,
/// credits, ledger line and cursors as `GET /aggregated_game_rounds`.
pub const ALIAS: &str = "/datasets/game_rounds/aggregated";

/// `GET /aggregated_game_rounds` answer: one page of buckets, in the order
/// `(start, player_id, game_id)`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoundsPage {
    pub data: Vec<BucketAnswer>,
    /// Send it as `cursor` (with the same filters) for the next page; `null`: this is the last.
    #[schema(example = "AbQ3…")]
    pub next_cursor: Option<String>,
    /// Whether more buckets follow (`next_cursor` is not null).
    pub has_more: bool,
}

/// One bucket; its start is named `hour` or `day` after the granularity.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketAnswer {
    /// Start of the hour (granularity `hour`), RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "2019-10-22T08:00:00Z", format = DateTime)]
    pub hour: Option<String>,
    /// Start of the day (granularity `day`), RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub day: Option<String>,
    #[serde(flatten)]
    pub bucket: Bucket,
}

/// Hourly or daily sums of bets, wins and GGR, a page at a time. Each page costs
/// `SLUICE_GATEWAY_QUERY_COST` credits (default 1); a malformed filter or cursor costs
/// nothing, a failed query is refunded.
///
/// Every answer to an admitted request carries `X-Credits-Remaining` and the
/// `X-RateLimit-*` headers; a 429 carries `Retry-After`.
#[utoipa::path(
    get, path = "/aggregated_game_rounds", tag = "rounds",
    params(RawRoundsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The buckets", body = RoundsPage,
            headers(
                ("X-Credits-Remaining" = u64, description = "Credits left after this request"),
                ("X-RateLimit-Limit" = u32, description = "Requests allowed per window"),
                ("X-RateLimit-Remaining" = u64, description = "Requests that may be sent right now"),
                ("X-RateLimit-Reset" = u64, description = "Seconds until the budget is full again"),
            )),
        (status = 400, description = "Malformed filter or page size; a cursor altered or sent with other filters (not charged)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = BadApiKey),
        (status = 402, description = "Not enough credits", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (not charged)", body = Problem, content_type = "application/problem+json",
            headers(
                ("Retry-After" = u64, description = "Seconds to wait before the next request is allowed"),
                ("X-RateLimit-Limit" = u32, description = "Requests allowed per window"),
                ("X-RateLimit-Remaining" = u64, description = "Always 0"),
                ("X-RateLimit-Reset" = u64, description = "Seconds until the budget is full again"),
            )),
        (status = 503, description = "Redis or ClickHouse unavailable (refunded), or every query slot stayed busy for `SLUICE_GATEWAY_QUERY_QUEUE_WAIT_MS` (not charged)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 504, description = "ClickHouse did not answer in time (refunded)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
#[instrument(skip_all)]
pub async fn aggregated_game_rounds(
    state: web::Data<AppState>,
    raw: web::Query<RawRoundsQuery>,
    ClientKey(key): ClientKey,
) -> Result<HttpResponse, ApiError> {
    let config = &state.config;
    let query = RoundsQuery::parse(
        raw.into_inner(),
        config.default_limit,
        config.max_limit,
        &state.cursors,
    )?;
    // A slot first: a request refused for want of one (503) is never charged.
    let _slot = query_slot(&state).await?;
    let admission = admit(&state, &key, state.config.query_cost, ENDPOINT).await?;
    let read = answer::fetch(&state.rounds, &query);
    let (buckets, has_more) = read_or_refund(&state, &admission, read).await?;
    Ok(metered(&admission).json(render(&state, &query, buckets, has_more)))
}

/// A 200 for an admitted request, with its meter: `X-Credits-Remaining` and `X-RateLimit-*`.
pub(super) fn metered(admission: &Admission) -> actix_web::HttpResponseBuilder {
    let rate = admission.rate;
    let mut response = HttpResponse::Ok();
    response
        .insert_header((
            "X-Credits-Remaining",
            admission.credits_remaining.to_string(),
        ))
        .insert_header(("X-RateLimit-Limit", rate.limit.to_string()))
        .insert_header(("X-RateLimit-Remaining", rate.remaining.to_string()))
        .insert_header(("X-RateLimit-Reset", rate.reset_secs.to_string()));
    response
}

/// One of the `max_concurrent_queries` slots, waited for `query_queue_wait_ms` at most;
/// else 503 (`Busy`).
pub(super) async fn query_slot(state: &AppState) -> Result<SemaphorePermit<'_>, ApiError> {
    let queue_wait = Duration::from_millis(state.config.query_queue_wait_ms);
    match tokio::time::timeout(queue_wait, state.query_slots.acquire()).await {
        Ok(Ok(slot)) => Ok(slot),
        _ => {
            metrics::counter!(crate::metric::QUERIES_TOTAL, "outcome" => "busy").increment(1);
            Err(ApiError::Busy)
        }
    }
}

/// The key admitted and charged `cost` for `endpoint` under a lease (key, credits and rate
/// limit checked in one script).
pub(super) async fn admit(
    state: &AppState,
    key: &ApiKey,
    cost: u64,
    endpoint: &'static str,
) -> Result<Admission, ApiError> {
    let lease = Duration::from_millis(state.config.charge_lease_ms);
    let admission = state.credits.admit(key, cost, endpoint, lease).await;
    if let Err(CreditError::RateLimited(_)) = &admission {
        metrics::counter!(crate::metric::QUERIES_TOTAL, "outcome" => "rate_limited").increment(1);
    }
    let admission = admission?;
    metrics::counter!(crate::metric::CREDITS_CHARGED_TOTAL).increment(cost);
    Ok(admission)
}

/// The page `read` reads, within `query_timeout_ms`: its charge then stands; if it cannot be
/// read in time, the charge is refunded and the error answered.
pub(super) async fn read_or_refund<T, E>(
    state: &AppState,
    admission: &Admission,
    read: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    let timeout = Duration::from_millis(state.config.query_timeout_ms);
    let read = tokio::time::timeout(timeout, read).await;
    let error = match read {
        Ok(Ok(page)) => {
            charge::answered(&state.credits, &admission.lease, 200).await;
            metrics::counter!(crate::metric::QUERIES_TOTAL, "outcome" => "ok").increment(1);
            return Ok(page);
        }
        Ok(Err(error)) => ApiError::from(error),
        Err(_) => ApiError::QueryTimedOut {
            after_ms: state.config.query_timeout_ms,
        },
    };
    let status = error.status_code().as_u16();
    charge::refund(&state.credits, &admission.lease, status).await;
    metrics::counter!(crate::metric::QUERIES_TOTAL, "outcome" => "failed").increment(1);
    Err(error)
}

fn render(
    state: &AppState,
    query: &RoundsQuery,
    buckets: Vec<Bucket>,
    has_more: bool,
) -> RoundsPage {
    let next_cursor = match buckets.last() {
        Some(last) if has_more => Some(state.cursors.encode(&query.filters(), &last.position())),
        _ => None,
    };
    let data = buckets
        .into_iter()
        .map(|bucket| {
            let start = Some(bucket.start.to_rfc3339_opts(SecondsFormat::Secs, true));
            let (hour, day) = match query.granularity {
                Granularity::Hour => (start, None),
                Granularity::Day => (None, start),
            };
            BucketAnswer { hour, day, bucket }
        })
        .collect();
    RoundsPage {
        data,
        next_cursor,
        has_more,
    }
}
