//! The gateway's HTTP surface.

pub mod admin;
mod auth;
pub mod body;
mod console;
mod dataset_docs;
pub mod datasets;
pub mod docs;
mod health;
mod problems;
pub mod rounds;
mod state;
pub mod usage;

use actix_web::middleware::from_fn;
use actix_web::web;

pub use state::{AppState, MAX_JSON_BYTES};

/// One resource per path, holding all of its methods: a method the path does not have is a
/// 405 with `Allow` (actix-web's resource default, turned into problem details by
/// [`crate::error::problem_details`]), never a 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/aggregated_game_rounds")
            .route(web::get().to(rounds::aggregated_game_rounds)),
    )
    .service(web::resource("/datasets").route(web::get().to(datasets::list_datasets)))
    // Before the generic path, which would take it.
    .service(web::resource(rounds::ALIAS).route(web::get().to(rounds::aggregated_game_rounds)))
    .service(
        web::resource("/datasets/{name}/{endpoint}")
            .route(web::get().to(datasets::dataset_endpoint)),
    )
    .service(web::resource("/usage").route(web::get().to(usage::usage)))
    .service(
        web::scope("/admin")
            .wrap(from_fn(auth::admin_only))
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
            .wrap(from_fn(auth::admin_only))
            .route(web::post().to(admin::create_user)),
    )
    .service(web::resource("/health").route(web::get().to(health::health)))
    .service(web::resource("/ready").route(web::get().to(health::ready)))
    .service(web::resource("/metrics").route(web::get().to(health::metrics)))
    .service(web::resource("/openapi.json").route(web::get().to(docs::openapi_json)))
    .service(web::resource("/console").route(web::get().to(console::console)))
    .configure(sluice_schema::docs::configure);
}
