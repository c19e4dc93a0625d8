use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::AppState;

/// Liveness: the process serves HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: Kafka answers a metadata request for the topic.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.producer.is_ready(Duration::from_secs(2)).await {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "kafka": "unreachable"}))
    }
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
