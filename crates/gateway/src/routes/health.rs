use actix_web::{web, HttpResponse};

use super::AppState;

/// Liveness: the process serves HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: Redis and ClickHouse both answer.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let redis = state.credits.ping().await;
    let clickhouse = state.clickhouse.query("SELECT 1").execute().await.is_ok();
    let body = serde_json::json!({"redis": redis, "clickhouse": clickhouse});
    if redis && clickhouse {
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
