//! The gateway's HTTP surface.

mod admin;
mod health;
mod rounds;

use actix_web::web;
use clickhouse::Client;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::credits::CreditStore;

/// Shared by every request.
pub struct AppState {
    pub credits: CreditStore,
    pub clickhouse: Client,
    pub config: Config,
    pub metrics: PrometheusHandle,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/aggregated_game_rounds",
        web::get().to(rounds::aggregated_game_rounds),
    )
    .route("/admin/keys", web::post().to(admin::create_key))
    .route("/create_user", web::post().to(admin::create_user))
    .route("/health", web::get().to(health::health))
    .route("/ready", web::get().to(health::ready))
    .route("/metrics", web::get().to(health::metrics));
}
