//! The gateway's HTTP surface.

pub mod admin;
pub mod docs;
mod health;
pub mod rounds;

use actix_web::middleware::from_fn;
use actix_web::web;
use clickhouse::Client;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::credits::CreditStore;
use crate::cursor::CursorSigner;
use crate::ledger::Ledger;

/// Shared by every request.
pub struct AppState {
    pub credits: CreditStore,
    pub clickhouse: Client,
    pub ledger: Ledger,
    pub cursors: CursorSigner,
    pub config: Config,
    pub metrics: PrometheusHandle,
    /// Slots for metered queries running against ClickHouse (`max_concurrent_queries`).
    pub query_slots: tokio::sync::Semaphore,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/aggregated_game_rounds",
        web::get().to(rounds::aggregated_game_rounds),
    )
    .service(
        web::scope("/admin")
            .wrap(from_fn(admin::admin_only))
            .route("/keys", web::post().to(admin::create_key))
            .route("/keys", web::get().to(admin::list_keys))
            .route("/keys/{id}", web::get().to(admin::get_key))
            .route("/keys/{id}", web::delete().to(admin::revoke_key))
            .route("/keys/{id}/rotate", web::post().to(admin::rotate_key))
            .route("/keys/{id}/credits", web::post().to(admin::top_up))
            .route(
                "/keys/{id}/rate_limit",
                web::put().to(admin::set_rate_limit),
            )
            .route("/keys/{id}/rebuild", web::post().to(admin::rebuild_key))
            .route("/audit", web::get().to(admin::audit)),
    )
    .service(
        web::resource("/create_user")
            .wrap(from_fn(admin::admin_only))
            .route(web::post().to(admin::create_user)),
    )
    .route("/health", web::get().to(health::health))
    .route("/ready", web::get().to(health::ready))
    .route("/metrics", web::get().to(health::metrics))
    .route("/openapi.json", web::get().to(docs::openapi_json))
    .route("/docs", web::get().to(docs::docs));
}
