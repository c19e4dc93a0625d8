use actix_web::{web, HttpResponse};
use sluice_schema::telemetry::{answers_in_time, READY_TIMEOUT};

use super::AppState;

/// Liveness: the process serves HTTP.
pub use sluice_schema::telemetry::health;

/// Readiness: Kafka answers a metadata request for the topic, and Redis (receipts and
/// idempotency, without which uploads fail) answers a ping. ClickHouse is not required: only
/// reconciliation reads it.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (kafka, redis) = futures::join!(
        answers_in_time(state.producer.is_ready(READY_TIMEOUT)),
        answers_in_time(state.receipts.is_ready()),
    );
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
    sluice_schema::telemetry::exposition(&state.metrics)
}
