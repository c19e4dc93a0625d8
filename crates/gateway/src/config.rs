//! Gateway configuration, read once at start-up from `SLUICE_GATEWAY_*` environment variables.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sluice_schema::config::{ClickHouseSettings, ServiceConfig};
use sluice_schema::dataset::{Catalog, SpecError};

use crate::credits::{RateLimit, MAX_GRACE_SECONDS};

/// Every setting of the gateway. Each field is read from `SLUICE_GATEWAY_<FIELD>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Address the HTTP server binds to. Default `127.0.0.1:8081`.
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: String,
    /// Token for the admin API (`Authorization: Bearer …`), at least 16 characters. Required.
    pub admin_token: SecretString,
    /// Redis holding API keys and credits. Default `redis://127.0.0.1:6379/`.
    #[serde(default = "defaults::redis_url")]
    pub redis_url: String,
    /// Prefix of every Redis key the gateway writes. Default `sluice:`.
    #[serde(default = "defaults::redis_key_prefix")]
    pub redis_key_prefix: String,
    /// ClickHouse, read from `SLUICE_GATEWAY_CLICKHOUSE_*` (`URL`, `DATABASE`, `USER`,
    /// `PASSWORD`, `CLUSTER`: see `ClickHouseSettings`).
    #[serde(skip)]
    pub clickhouse: ClickHouseSettings,
    /// Directory of dataset specs (`<name>.toml`, see `datasets/`) listed by `GET /datasets`
    /// besides the built-in `game_rounds`. Default: none.
    #[serde(default)]
    pub datasets_dir: Option<String>,
    /// Credits charged for one `GET /aggregated_game_rounds`. Default 1.
    #[serde(default = "defaults::query_cost")]
    pub query_cost: u64,
    /// Longest wait for ClickHouse's answer to a query; then 504, and the charge is refunded.
    /// Default 30000.
    #[serde(default = "defaults::query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Metered queries this gateway runs against ClickHouse at once; more wait (see
    /// `query_queue_wait_ms`). Keep the sum over every gateway below ClickHouse's
    /// `max_concurrent_queries` (100 by default), which refuses the excess. Default 64.
    #[serde(default = "defaults::max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// Longest wait of a query for one of the `max_concurrent_queries` slots; then 503 with
    /// `Retry-After`, before anything is charged. Default 2000.
    #[serde(default = "defaults::query_queue_wait_ms")]
    pub query_queue_wait_ms: u64,
    /// Buckets per page when the request names no `page_size` (or `limit`). Default 1000.
    #[serde(default = "defaults::default_limit")]
    pub default_limit: u32,
    /// Largest `page_size` (or `limit`) a request may ask for. Default 10000.
    #[serde(default = "defaults::max_limit")]
    pub max_limit: u32,
    /// Requests a key may make per `rate_limit_per_seconds` unless the key has its own limit.
    /// Bursts up to this many are allowed. Default 10.
    #[serde(default = "defaults::rate_limit_requests")]
    pub rate_limit_requests: u32,
    /// Window of the default rate limit, in seconds. Default 1.
    #[serde(default = "defaults::rate_limit_per_seconds")]
    pub rate_limit_per_seconds: u32,
    /// How long the old secret keeps working after `POST /admin/keys/{id}/rotate` when the
    /// request names no `grace_seconds`. Default 3600.
    #[serde(default = "defaults::rotation_grace_seconds")]
    pub rotation_grace_seconds: u32,
    /// Key of the HMAC-SHA256 that signs pagination cursors, at least 32 characters. Every
    /// gateway behind one load balancer needs the same one. Unset: a random one per process
    /// (with a warning), so cursors stop working when the gateway restarts.
    #[serde(default)]
    pub cursor_secret: Option<SecretString>,
    /// Ledger events per ClickHouse insert, at most. Default 1000.
    #[serde(default = "defaults::ledger_batch_rows")]
    pub ledger_batch_rows: usize,
    /// Longest time between two drains of the ledger's Redis outbox into ClickHouse.
    /// Default 1000.
    #[serde(default = "defaults::ledger_flush_interval_ms")]
    pub ledger_flush_interval_ms: u64,
    /// How long an admitted request's charge may stay unsettled before any gateway refunds it
    /// (its gateway died or lost Redis). Must exceed `query_timeout_ms` by at least 5 s, the
    /// time to write an answer: an answer settled after its lease is given free. Default 60000.
    #[serde(default = "defaults::charge_lease_ms")]
    pub charge_lease_ms: u64,
    /// How often each gateway refunds expired leases (and once at start). Default 5000.
    #[serde(default = "defaults::lease_sweep_interval_ms")]
    pub lease_sweep_interval_ms: u64,
    /// The producer's URL as a browser reaches it, for the web console at `/console`: the page
    /// uploads straight to it (the producer must list this gateway's origin in
    /// `SLUICE_PRODUCER_CORS_ALLOWED_ORIGINS`). Unset (the default): the page asks for it.
    #[serde(default)]
    pub console_producer_url: Option<String>,
}

/// Time allowed, beyond the query timeout, to settle and write an answer: the least margin
/// between `query_timeout_ms` and `charge_lease_ms`.
pub const MIN_ANSWER_WRITE_MS: u64 = 5_000;

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("SLUICE_GATEWAY_{variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: &'static str,
}

impl Config {
    /// The datasets known: `game_rounds`, and those of `datasets_dir`.
    pub fn datasets(&self) -> Result<Catalog, SpecError> {
        Catalog::of_dir(self.datasets_dir.as_deref())
    }

    /// Reads the configuration from the environment, naming the bad variable on failure.
    pub fn from_env() -> anyhow::Result<Config> {
        let config: Config = <Config as ServiceConfig>::from_env()?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults with the given endpoints and admin token: what tests start from.
    pub fn with_endpoints(
        redis_url: impl Into<String>,
        clickhouse_url: impl Into<String>,
        admin_token: impl Into<String>,
    ) -> Config {
        Config {
            listen_addr: defaults::listen_addr(),
            admin_token: SecretString::from(admin_token.into()),
            redis_url: redis_url.into(),
            redis_key_prefix: defaults::redis_key_prefix(),
            clickhouse: ClickHouseSettings::at(clickhouse_url),
            datasets_dir: None,
            query_cost: defaults::query_cost(),
            query_timeout_ms: defaults::query_timeout_ms(),
            max_concurrent_queries: defaults::max_concurrent_queries(),
            query_queue_wait_ms: defaults::query_queue_wait_ms(),
            default_limit: defaults::default_limit(),
            max_limit: defaults::max_limit(),
            rate_limit_requests: defaults::rate_limit_requests(),
            rate_limit_per_seconds: defaults::rate_limit_per_seconds(),
            rotation_grace_seconds: defaults::rotation_grace_seconds(),
            cursor_secret: None,
            ledger_batch_rows: defaults::ledger_batch_rows(),
            ledger_flush_interval_ms: defaults::ledger_flush_interval_ms(),
            console_producer_url: None,
            charge_lease_ms: defaults::charge_lease_ms(),
            lease_sweep_interval_ms: defaults::lease_sweep_interval_ms(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.admin_token.expose_secret().len() < 16 {
            return Err(ConfigError {
                variable: "ADMIN_TOKEN",
                reason: "must be at least 16 characters",
            });
        }
        if self.default_limit == 0 || self.default_limit > self.max_limit {
            return Err(ConfigError {
                variable: "DEFAULT_LIMIT",
                reason: "must be between 1 and SLUICE_GATEWAY_MAX_LIMIT",
            });
        }
        if RateLimit::new(self.rate_limit_requests, self.rate_limit_per_seconds).is_err() {
            return Err(ConfigError {
                variable: "RATE_LIMIT_REQUESTS",
                reason:
                    "RATE_LIMIT_REQUESTS must be 1 to 1000000 and RATE_LIMIT_PER_SECONDS 1 to 86400",
            });
        }
        if self.rotation_grace_seconds > MAX_GRACE_SECONDS {
            return Err(ConfigError {
                variable: "ROTATION_GRACE_SECONDS",
                reason: "must be at most 2592000 (30 days)",
            });
        }
        if let Some(secret) = &self.cursor_secret {
            if secret.expose_secret().len() < 32 {
                return Err(ConfigError {
                    variable: "CURSOR_SECRET",
                    reason: "must be at least 32 characters",
                });
            }
        }
        if self.max_concurrent_queries == 0 {
            return Err(ConfigError {
                variable: "MAX_CONCURRENT_QUERIES",
                reason: "must be at least 1",
            });
        }
        if self.ledger_batch_rows == 0 {
            return Err(ConfigError {
                variable: "LEDGER_BATCH_ROWS",
                reason: "must be at least 1",
            });
        }
        if self.ledger_flush_interval_ms == 0 {
            return Err(ConfigError {
                variable: "LEDGER_FLUSH_INTERVAL_MS",
                reason: "must be at least 1",
            });
        }
        if self.charge_lease_ms < self.query_timeout_ms.saturating_add(MIN_ANSWER_WRITE_MS) {
            return Err(ConfigError {
                variable: "CHARGE_LEASE_MS",
                reason: "must exceed SLUICE_GATEWAY_QUERY_TIMEOUT_MS by at least 5000",
            });
        }
        if self.lease_sweep_interval_ms == 0 {
            return Err(ConfigError {
                variable: "LEASE_SWEEP_INTERVAL_MS",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }

    /// The rate limit of keys that have none of their own.
    pub fn default_rate_limit(&self) -> RateLimit {
        RateLimit::new(self.rate_limit_requests, self.rate_limit_per_seconds)
            .expect("validated at start-up")
    }
}

sluice_schema::service_config!(Config, "SLUICE_GATEWAY_", clickhouse: clickhouse);

mod defaults {

    pub fn listen_addr() -> String {
        "127.0.0.1:8081".into()
    }
    pub fn redis_url() -> String {
        "redis://127.0.0.1:6379/".into()
    }
    pub fn redis_key_prefix() -> String {
        "sluice:".into()
    }
    pub fn query_timeout_ms() -> u64 {
        30_000
    }
    pub fn max_concurrent_queries() -> usize {
        64
    }
    pub fn query_queue_wait_ms() -> u64 {
        2_000
    }
    pub fn query_cost() -> u64 {
        1
    }
    pub fn default_limit() -> u32 {
        1_000
    }
    pub fn max_limit() -> u32 {
        10_000
    }
    pub fn rate_limit_requests() -> u32 {
        10
    }
    pub fn rate_limit_per_seconds() -> u32 {
        1
    }
    pub fn rotation_grace_seconds() -> u32 {
        3_600
    }
    pub fn ledger_batch_rows() -> usize {
        1_000
    }
    pub fn ledger_flush_interval_ms() -> u64 {
        1_000
    }
    pub fn charge_lease_ms() -> u64 {
        60_000
    }
    pub fn lease_sweep_interval_ms() -> u64 {
        5_000
    }
}
