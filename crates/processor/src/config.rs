//! Processor configuration, read once at start-up from `SLUICE_PROCESSOR_*` variables.

use secrecy::SecretString;
use serde::Deserialize;

/// Every setting of the processor. Each field is read from `SLUICE_PROCESSOR_<FIELD>`.
#[derive(Clone, Deserialize)]
pub struct Config {
    /// Address of the HTTP server for `/health`, `/ready` and `/metrics`. Default `127.0.0.1:8084`.
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: String,
    /// ClickHouse HTTP endpoint. Default `http://127.0.0.1:8123`.
    #[serde(default = "defaults::clickhouse_url")]
    pub clickhouse_url: String,
    /// ClickHouse database (the one the consumer writes). Default `sluice`.
    #[serde(default = "defaults::clickhouse_database")]
    pub clickhouse_database: String,
    /// ClickHouse user. Default `default`.
    #[serde(default = "defaults::clickhouse_user")]
    pub clickhouse_user: String,
    /// ClickHouse password. Default empty.
    #[serde(default = "defaults::secret")]
    pub clickhouse_password: SecretString,
    /// The ClickHouse cluster (a `remote_servers` name) the tables are sharded over; unset:
    /// one server. On a cluster the migrations create a replicated `<table>_local` on every
    /// server and a `Distributed` table over them, and every query carries the cluster's
    /// settings (docs/SCALING.md). Default unset.
    #[serde(default)]
    pub clickhouse_cluster: Option<String>,
    /// Redis holding the dirty hours (the gateway's Redis), password included.
    /// Default `redis://127.0.0.1:6379/`.
    #[serde(default = "defaults::redis_url")]
    pub redis_url: SecretString,
    /// Hours (and days) recomputed per step, at most. Default 168 (a week).
    #[serde(default = "defaults::max_hours_per_step")]
    pub max_hours_per_step: usize,
    /// Input rows one recomputation statement takes, about: a step whose hours hold more is
    /// recomputed in parts (by player hash), keeping each statement's memory bounded.
    /// Default 2000000.
    #[serde(default = "defaults::rows_per_statement")]
    pub rows_per_statement: u64,
    /// How long a step's claim keeps other processors off its hours, in milliseconds; longer
    /// than a step takes. Default 120000.
    #[serde(default = "defaults::claim_hold_ms")]
    pub claim_hold_ms: u64,
    /// Pause after a step that found nothing to do, in milliseconds. Default 250.
    #[serde(default = "defaults::idle_pause_ms")]
    pub idle_pause_ms: u64,
    /// Pause after a failed step (ClickHouse or Redis away), in milliseconds. Default 1000.
    #[serde(default = "defaults::failure_pause_ms")]
    pub failure_pause_ms: u64,
    /// How often the lag gauges are refreshed, in milliseconds. Default 2000.
    #[serde(default = "defaults::lag_interval_ms")]
    pub lag_interval_ms: u64,
}

impl std::fmt::Debug for Config {
    /// Every setting but the secrets (the Redis URL holds its password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("clickhouse_url", &self.clickhouse_url)
            .field("clickhouse_database", &self.clickhouse_database)
            .field("clickhouse_user", &self.clickhouse_user)
            .field("max_hours_per_step", &self.max_hours_per_step)
            .field("claim_hold_ms", &self.claim_hold_ms)
            .field("idle_pause_ms", &self.idle_pause_ms)
            .field("failure_pause_ms", &self.failure_pause_ms)
            .field("lag_interval_ms", &self.lag_interval_ms)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the configuration from the environment, naming the bad variable on failure.
    pub fn from_env() -> Result<Config, envy::Error> {
        envy::prefixed("SLUICE_PROCESSOR_").from_env()
    }
}

mod defaults {
    use secrecy::SecretString;

    pub fn listen_addr() -> String {
        "127.0.0.1:8084".into()
    }
    pub fn clickhouse_url() -> String {
        "http://127.0.0.1:8123".into()
    }
    pub fn clickhouse_database() -> String {
        "sluice".into()
    }
    pub fn clickhouse_user() -> String {
        "default".into()
    }
    pub fn secret() -> SecretString {
        SecretString::from(String::new())
    }
    pub fn redis_url() -> SecretString {
        SecretString::from("redis://127.0.0.1:6379/".to_owned())
    }
    pub fn max_hours_per_step() -> usize {
        168
    }
    pub fn rows_per_statement() -> u64 {
        sluice_rollup::process::ROWS_PER_STATEMENT
    }
    pub fn claim_hold_ms() -> u64 {
        120_000
    }
    pub fn idle_pause_ms() -> u64 {
        250
    }
    pub fn failure_pause_ms() -> u64 {
        1_000
    }
    pub fn lag_interval_ms() -> u64 {
        2_000
    }
}
