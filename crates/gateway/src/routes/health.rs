use actix_web::{web, HttpResponse};
use sluice_schema::telemetry::answers_in_time;

use super::state::AppState;

/// Liveness: the process serves HTTP.
pub use sluice_schema::telemetry::health;

/// Readiness: Redis and ClickHouse both answer within `READY_TIMEOUT` (concurrently, so the
/// answer comes within a second even when one is frozen); otherwise 503 naming the ones that
/// did not.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (redis, clickhouse) = tokio::join!(
        answers_in_time(state.credits.ping()),
        answers_in_time(async { state.clickhouse.query("SELECT 1").execute().await.is_ok() }),
    );
    let unavailable: Vec<&str> = [("redis", redis), ("clickhouse", clickhouse)]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| name)
        .collect();
    let body = serde_json::json!({
        "redis": redis,
        "clickhouse": clickhouse,
        "unavailable": unavailable,
    });
    if unavailable.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    sluice_schema::telemetry::exposition(&state.metrics)
}
