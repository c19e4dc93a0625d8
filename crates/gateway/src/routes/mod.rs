//! The gateway's HTTP surface.

pub mod admin;
pub mod body;
mod console;
pub mod docs;
mod health;
pub mod rounds;
pub mod usage;

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
    /// Where `GET /aggregated_game_rounds` reads its answers.
    pub rounds: crate::answer::Source,
    pub ledger: Ledger,
    pub cursors: CursorSigner,
    pub config: Config,
    pub metrics: PrometheusHandle,
    /// Slots for metered queries running against ClickHouse (`max_concurrent_queries`).
    pub query_slots: tokio::sync::Semaphore,
}

/// The largest JSON body the admin API reads (its bodies are a few hundred bytes); larger is
/// a 413.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// One resource per path, holding all of its methods: a method the path does not have is a
/// 405 with `Allow` (actix-web's resource default, turned into problem details by
/// [`crate::error::problem_details`]), never a 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/aggregated_game_rounds")
            .route(web::get().to(rounds::aggregated_game_rounds)),
    )
    .service(web::resource("/usage").route(web::get().to(usage::usage)))
    .service(
        web::scope("/admin")
            .wrap(from_fn(admin::admin_only))
            .service(
                web::resource("/keys")
                    .route(web::post().to(admin::create_key))
                    .route(web::get().to(admin::list_keys)),
            )
            .service(
                web::resource("/keys/{id}")
                    .route(web::get().to(admin::get_key))
                    .route(web::delete().to(admin::revoke_key)),
            )
            .service(web::resource("/keys/{id}/rotate").route(web::post().to(admin::rotate_key)))
            .service(web::resource("/keys/{id}/credits").route(web::post().to(admin::top_up)))
            .service(
                web::resource("/keys/{id}/rate_limit").route(web::put().to(admin::set_rate_limit)),
            )
            .service(web::resource("/keys/{id}/rebuild").route(web::post().to(admin::rebuild_key)))
            .service(web::resource("/audit").route(web::get().to(admin::audit))),
    )
    .service(
        web::resource("/create_user")
            .wrap(from_fn(admin::admin_only))
            .route(web::post().to(admin::create_user)),
    )
    .service(web::resource("/health").route(web::get().to(health::health)))
    .service(web::resource("/ready").route(web::get().to(health::ready)))
    .service(web::resource("/metrics").route(web::get().to(health::metrics)))
    .service(web::resource("/openapi.json").route(web::get().to(docs::openapi_json)))
    .service(web::resource("/console").route(web::get().to(console::console)))
    .configure(sluice_schema::docs::configure);
}
