use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::AppState;

/// Liveness: the process serves HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: Kafka answers a metadata request for the topic, and Redis (receipts and
/// idempotency, without which uploads fail) answers a ping. ClickHouse is not required: only
/// reconciliation reads it.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (kafka, redis) = futures::join!(
        state.producer.is_ready(Duration::from_secs(2)),
        tokio::time::timeout(Duration::from_secs(2), state.receipts.is_ready()),
    );
    let redis = redis.unwrap_or(false);
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let body = serde_json::json!({
        "status": if kafka && redis { "ready" } else { "unavailable" },
        "kafka": word(kafka),
        "redis": word(redis),
    });
    if kafka && redis {
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
