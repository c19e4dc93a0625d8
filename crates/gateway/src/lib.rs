//! The Sluice gateway: sells access to the aggregated game rounds. Every request is
//! authenticated by API key, rate limited and charged in one atomic Redis script; sums come
//! from ClickHouse.
//!
//! # Layout
//! - [`config`]: the one typed `Config`, read from `SLUICE_GATEWAY_*` variables.
//! - [`error`]: `ApiError`, every failure, mapped once to HTTP problem details.
//! - [`credits`]: API keys (hashed), their records and the Lua scripts (`src/lua/`) that
//!   admit, charge, refund, rotate, revoke and top up, atomically, in Redis.
//! - [`query`]: query-string parsing into typed filters and the ClickHouse aggregation.
//! - [`routes`]: the HTTP surface (`/aggregated_game_rounds`, the `/admin/keys` API, health,
//!   metrics, `/openapi.json` and `/docs`).

pub mod config;
pub mod credits;
pub mod error;
pub mod query;
pub mod routes;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;

pub use config::Config;

/// A built, bound, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate()?;
        let credits = credits::CreditStore::new(
            &config.redis_url,
            &config.redis_key_prefix,
            config.default_rate_limit(),
        )?;
        let clickhouse = sluice_schema::migrations::client(
            &config.clickhouse_url,
            &config.clickhouse_database,
            &config.clickhouse_user,
            config.clickhouse_password.expose_secret(),
        );
        let listener = TcpListener::bind(&config.listen_addr)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(routes::AppState {
            credits,
            clickhouse,
            config,
            metrics: sluice_schema::telemetry::prometheus(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    error::ApiError::BadRequest(error.to_string()).into()
                }))
                .app_data(web::JsonConfig::default().error_handler(|error, _| {
                    error::ApiError::BadRequest(error.to_string()).into()
                }))
                .configure(routes::configure)
        })
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
