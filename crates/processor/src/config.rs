//! Processor configuration, read once at start-up from `SLUICE_PROCESSOR_*` variables.

use secrecy::SecretString;
use serde::Deserialize;
use sluice_schema::config::{ClickHouseSettings, ServiceConfig};
use sluice_schema::dataset::{Catalog, Dataset, SpecError};

/// Every setting of the processor. Each field is read from `SLUICE_PROCESSOR_<FIELD>`.
#[derive(Clone, Deserialize)]
pub struct Config {
    /// Address of the HTTP server for `/health`, `/ready` and `/metrics`. Default `127.0.0.1:8084`.
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: String,
    /// ClickHouse, read from `SLUICE_PROCESSOR_CLICKHOUSE_*` (`URL`, `DATABASE`, `USER`,
    /// `PASSWORD`, `CLUSTER`: see `ClickHouseSettings`).
    #[serde(skip)]
    pub clickhouse: ClickHouseSettings,
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
    /// Directory of dataset specs (`<name>.toml`, see `datasets/`). Default: none.
    #[serde(default)]
    pub datasets_dir: Option<String>,
    /// The datasets of `datasets_dir` whose rollups this instance keeps besides the game
    /// rounds', comma separated (as the consumer's `SLUICE_CONSUMER_DATASETS`; their tables
    /// are created if missing). Default: none.
    #[serde(default)]
    pub datasets: String,
}

impl std::fmt::Debug for Config {
    /// Every setting but the secrets (the Redis URL holds its password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("clickhouse", &self.clickhouse)
            .field("max_hours_per_step", &self.max_hours_per_step)
            .field("claim_hold_ms", &self.claim_hold_ms)
            .field("idle_pause_ms", &self.idle_pause_ms)
            .field("failure_pause_ms", &self.failure_pause_ms)
            .field("lag_interval_ms", &self.lag_interval_ms)
            .field("datasets_dir", &self.datasets_dir)
            .field("datasets", &self.datasets)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the configuration from the environment, naming the bad variable on failure.
    pub fn from_env() -> Result<Config, envy::Error> {
        <Config as ServiceConfig>::from_env()
    }

    /// The datasets whose rollups this instance keeps besides the game rounds'.
    pub fn served_datasets(&self) -> Result<Vec<Dataset>, SpecError> {
        let dir = self.datasets_dir.as_deref();
        Catalog::served(dir, &self.datasets, "SLUICE_PROCESSOR_DATASETS")
    }
}

sluice_schema::service_config!(Config, "SLUICE_PROCESSOR_", clickhouse: clickhouse);

mod defaults {
    use secrecy::SecretString;

    pub fn listen_addr() -> String {
        "127.0.0.1:8084".into()
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
