//! The producer's HTTP surface.

mod health;
mod upload;

use actix_web::web;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::kafka::RoundProducer;
use crate::landing::Landing;
use crate::receipts::ReceiptStore;

/// Shared by every request.
pub struct AppState {
    pub producer: RoundProducer,
    pub receipts: ReceiptStore,
    pub landing: Landing,
    pub config: Config,
    pub metrics: PrometheusHandle,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/csv_upload", web::post().to(upload::csv_upload))
        .route("/uploads", web::get().to(upload::list_uploads))
        .route("/uploads/{id}", web::get().to(upload::get_upload))
        .route("/uploads/{id}/rejects", web::get().to(upload::get_rejects))
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics));
}
