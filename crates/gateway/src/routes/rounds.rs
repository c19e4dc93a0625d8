use actix_web::{web, HttpRequest, HttpResponse};
use chrono::SecondsFormat;
use tracing::instrument;

use super::AppState;
use crate::credits::ApiKey;
use crate::error::ApiError;
use crate::query::{self, Granularity, RawRoundsQuery, RoundsQuery};

/// `GET /aggregated_game_rounds`: validate → charge → query → (refund on failure) → answer.
/// A request that is malformed is never charged; an answer that failed is refunded.
#[instrument(skip_all)]
pub async fn aggregated_game_rounds(
    state: web::Data<AppState>,
    request: HttpRequest,
    raw: web::Query<RawRoundsQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = request
        .headers()
        .get("X-API-Key")
        .ok_or(ApiError::MissingApiKey)?;
    let key = ApiKey::parse(key.to_str().map_err(|_| ApiError::UnknownApiKey)?)?;
    let query = RoundsQuery::parse(
        raw.into_inner(),
        state.config.default_limit,
        state.config.max_limit,
    )?;
    let cost = state.config.query_cost;
    let remaining = state.credits.charge(&key, cost).await?;
    let (buckets, has_more) = match query::fetch(&state.clickhouse, &query).await {
        Ok(answer) => answer,
        Err(error) => {
            if let Err(refund_error) = state.credits.refund(&key, cost).await {
                tracing::error!(%refund_error, "Refund failed after a query failure.");
            }
            metrics::counter!("sluice_gateway_queries_total", "outcome" => "failed").increment(1);
            return Err(ApiError::ClickHouseUnavailable(Box::new(error)));
        }
    };
    metrics::counter!("sluice_gateway_queries_total", "outcome" => "ok").increment(1);
    metrics::counter!("sluice_gateway_credits_charged_total").increment(cost);
    Ok(HttpResponse::Ok()
        .insert_header(("X-Credits-Remaining", remaining.to_string()))
        .json(render(&query, &buckets, has_more)))
}

fn render(query: &RoundsQuery, buckets: &[query::Bucket], has_more: bool) -> serde_json::Value {
    let bucket_name = match query.granularity {
        Granularity::Hour => "hour",
        Granularity::Day => "day",
    };
    let data: Vec<serde_json::Value> = buckets
        .iter()
        .map(|bucket| {
            let mut value = serde_json::to_value(bucket).expect("buckets serialise");
            value[bucket_name] = bucket
                .start
                .to_rfc3339_opts(SecondsFormat::Secs, true)
                .into();
            value
        })
        .collect();
    serde_json::json!({ "data": data, "has_more": has_more })
}
