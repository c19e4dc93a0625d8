//! The producer's HTTP surface.

mod dataset_docs;
pub mod docs;
mod health;
mod upload;

use actix_web::web;
use metrics_exporter_prometheus::PrometheusHandle;

use sluice_schema::dataset::Catalog;

use crate::config::Config;
use crate::kafka::RoundProducer;
use crate::landing::Landing;
use crate::receipts::ReceiptStore;

/// Shared by every request.
pub struct AppState {
    pub producer: RoundProducer,
    /// The datasets uploads may go to.
    pub datasets: Catalog,
    pub receipts: ReceiptStore,
    pub landing: Landing,
    pub config: Config,
    pub metrics: PrometheusHandle,
    /// `GET /openapi.json`: the document of this API serving `datasets`, built at start.
    pub openapi: sluice_schema::docs::OpenApiJson,
}

/// One resource per path, holding all of its methods: a method the path does not have is a
/// 405 with `Allow` (actix-web's resource default, turned into problem details by
/// [`sluice_schema::problem::problem_details`]), never a 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/csv_upload").route(web::post().to(upload::csv_upload)))
        .service(
            web::resource("/datasets/{name}/upload").route(web::post().to(upload::dataset_upload)),
        )
        .service(web::resource("/uploads").route(web::get().to(upload::list_uploads)))
        .service(web::resource("/uploads/{id}").route(web::get().to(upload::get_upload)))
        .service(web::resource("/uploads/{id}/rejects").route(web::get().to(upload::get_rejects)))
        .service(web::resource("/health").route(web::get().to(health::health)))
        .service(web::resource("/ready").route(web::get().to(health::ready)))
        .service(web::resource("/metrics").route(web::get().to(health::metrics)))
        .service(web::resource("/openapi.json").route(web::get().to(docs::openapi_json)))
        .configure(sluice_schema::docs::configure);
}

/// The CORS policy of [`Config::cors_allowed_origins`], or `None` when no origin is allowed.
/// A request from another origin is served without CORS headers (the browser then hides the
/// answer), never refused here: same-origin pages send `Origin` too.
pub fn cors(config: &Config) -> Option<actix_cors::Cors> {
    let mut origins = config.cors_origins().peekable();
    origins.peek()?;
    let cors = origins.fold(actix_cors::Cors::default(), |cors, origin| {
        cors.allowed_origin(origin)
    });
    Some(
        cors.allowed_methods(["GET", "POST"])
            .allowed_headers([
                actix_web::http::header::AUTHORIZATION,
                actix_web::http::header::CONTENT_TYPE,
                actix_web::http::header::HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers(["idempotent-replayed", "retry-after"])
            .block_on_origin_mismatch(false)
            .max_age(600),
    )
}
