use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::AppState;

/// Liveness: the process serves HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// How long `/ready` waits for each dependency (concurrently): it answers within a second
/// even when one is frozen.
const READY_TIMEOUT: Duration = Duration::from_millis(800);

/// Readiness: Redis and ClickHouse both answer within [`READY_TIMEOUT`]; otherwise 503
/// naming the ones that did not.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (redis, clickhouse) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.credits.ping()),
        tokio::time::timeout(READY_TIMEOUT, state.clickhouse.query("SELECT 1").execute()),
    );
    let redis = matches!(redis, Ok(true));
    let clickhouse = matches!(clickhouse, Ok(Ok(())));
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
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
