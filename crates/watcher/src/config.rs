//! Watcher configuration, read once at start-up from `SLUICE_WATCHER_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sluice_producer::config::defaults as producer_defaults;
use sluice_producer::ingest::Limits;
use sluice_producer::kafka::{ProducerSettings, Topics};
use sluice_schema::config::ServiceConfig;
use sluice_schema::dataset::{Catalog, Dataset, SpecError, GAME_ROUNDS};

/// What happens to a file once its rows are committed (or it was a duplicate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterSuccess {
    /// Moved into the processed directory.
    Move,
    /// Left where it is (remembered, so it is not read again while the watcher runs; after a
    /// restart it is recognised as a duplicate by its SHA-256).
    Leave,
    /// Deleted.
    Delete,
}

/// Every setting of the watcher. Each field is read from `SLUICE_WATCHER_<FIELD>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Address the HTTP server (`/health`, `/ready`, `/metrics`) binds to. Default
    /// `127.0.0.1:8083`.
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: String,
    /// The directory watched for dropped files (not recursive). Default `inbox`.
    #[serde(default = "defaults::watch_dir")]
    pub watch_dir: PathBuf,
    /// The dataset every file of `watch_dir` holds rows of: `game_rounds` (built in) or one
    /// declared in `datasets_dir`. Its plan reads the rows, its topics take the records and
    /// rejects, receipts name it, and content is claimed within it as its uploads at the
    /// producer's `POST /datasets/{name}/upload` claim theirs. One watcher serves one folder
    /// and one dataset: run a watcher per dataset. An unknown name stops the start-up. Default
    /// `game_rounds`.
    #[serde(default = "defaults::dataset")]
    pub dataset: String,
    /// Directory of dataset specs (`<name>.toml`, see `datasets/`), where `dataset` is looked
    /// up unless it is `game_rounds`. Default: none (`game_rounds` only).
    #[serde(default)]
    pub datasets_dir: Option<String>,
    /// Where ingested files (and duplicates) are moved. Default `<watch_dir>/processed`.
    #[serde(default)]
    pub processed_dir: Option<PathBuf>,
    /// Where files that cannot be ingested are moved, each beside a `<name>.error.json`.
    /// Default `<watch_dir>/quarantine`.
    #[serde(default)]
    pub quarantine_dir: Option<PathBuf>,
    /// `move`, `leave` or `delete`: what happens to a file after success. Default `move`.
    #[serde(default = "defaults::after_success")]
    pub after_success: AfterSuccess,
    /// A file not renamed into place is read once its modification time is this old, in
    /// milliseconds. Default 5000.
    #[serde(default = "defaults::stable_ms")]
    pub stable_ms: u64,
    /// Full rescan of the directory, the fallback for missed events, in milliseconds. Default
    /// 30000.
    #[serde(default = "defaults::rescan_interval_ms")]
    pub rescan_interval_ms: u64,
    /// Files ingested at once (each in its own Kafka transaction). Default 4.
    #[serde(default = "defaults::max_concurrent_files")]
    pub max_concurrent_files: usize,
    /// This watcher's id: part of its `transactional.id`s and the owner of its file locks. Must
    /// differ between watchers and stay the same across restarts of one. Default: the host
    /// name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Kafka bootstrap servers, comma separated. Default `127.0.0.1:9092`.
    #[serde(default = "defaults::kafka_brokers")]
    pub kafka_brokers: String,
    /// Topic the game rounds are written to (with `dataset` `game_rounds`). Default
    /// `game_rounds`.
    #[serde(default = "defaults::topic")]
    pub topic: String,
    /// Topic every rejected row is kept on. Default: the topic's name followed by `.rejects`.
    #[serde(default)]
    pub rejects_topic: Option<String>,
    /// Prefix of the topics of a dataset other than `game_rounds` (whose are `topic` and
    /// `rejects_topic`): its records go to `<prefix><name>`, its rejects to
    /// `<prefix><name>.rejects`, as the producer's `SLUICE_PRODUCER_DATASET_TOPIC_PREFIX`.
    /// Default empty.
    #[serde(default)]
    pub dataset_topic_prefix: String,
    /// Partitions of the topics when the watcher has to create them. Default 8.
    #[serde(default = "defaults::topic_partitions")]
    pub topic_partitions: i32,
    /// Replication factor of the topics when the watcher has to create them. Default 1.
    #[serde(default = "defaults::topic_replication_factor")]
    pub topic_replication_factor: i32,
    /// Redis holding receipts, content claims and file locks, shared with the producer.
    /// Default `redis://127.0.0.1:6379/`.
    #[serde(default = "defaults::redis_url")]
    pub redis_url: String,
    /// Prefix of every Redis key; the producer's, so that receipts show at its
    /// `GET /uploads/{id}` and uploads and files share one content ledger. Default `sluice:`.
    #[serde(default = "defaults::redis_key_prefix")]
    pub redis_key_prefix: String,
    /// Prefix of the `transactional.id`s: `<prefix>-<instance id>-<slot>`. Default
    /// `sluice-watcher`.
    #[serde(default = "defaults::transactional_id_prefix")]
    pub transactional_id_prefix: String,
    /// Kafka `transaction.timeout.ms`: the longest one file may take. Default 900000.
    #[serde(default = "defaults::transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
    /// Records after which a long file commits its transaction and goes on in a new one (as
    /// uploads do). A file of at most this many records is all or nothing; a longer one that
    /// fails or is interrupted leaves its committed part visible, and reading it again
    /// completes it (rounds are de-duplicated by identity). Default 5000000.
    #[serde(default = "defaults::max_rows_per_transaction")]
    pub max_rows_per_transaction: u64,
    /// How long Kafka may take to acknowledge a record, in milliseconds. Default 30000.
    #[serde(default = "defaults::delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Records handed to Kafka but not yet acknowledged, per file, at most. Default 100000.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// How many rejected rows a receipt lists (all are counted). Default 100.
    #[serde(default = "defaults::max_rejects_listed")]
    pub max_rejects_listed: usize,
    /// Largest file, in bytes after decompression; a larger one is quarantined. Default 64 GiB.
    #[serde(default = "defaults::max_file_bytes")]
    pub max_file_bytes: u64,
    /// Longest line of a CSV or JSON Lines file, in bytes; a longer one quarantines the file.
    /// Default 1 MiB.
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,
    /// Lifetime of a file's processing lock in Redis, renewed while the file is read, in
    /// milliseconds. Default 30000.
    #[serde(default = "defaults::lock_ttl_ms")]
    pub lock_ttl_ms: u64,
    /// First wait before a file that failed for a transient reason (Kafka or Redis down) is
    /// tried again, in milliseconds; it doubles up to `retry_max_ms`. Default 1000.
    #[serde(default = "defaults::retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest wait between tries, in milliseconds. Default 60000.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// Tries of one file, failed in a row for a transient reason (the disk, Kafka or Redis
    /// failing, the file changing while read, its content claimed by an upload without a
    /// receipt), after which it is quarantined (kind `gave_up`, with the last error) — but only
    /// if Kafka and Redis answer then: while one is down, the file waits. At least 1. With the
    /// default backoff, 10 tries take about four minutes. Default 10.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
}

sluice_schema::service_config!(Config, "SLUICE_WATCHER_");

impl Config {
    /// Reads the configuration from the environment, naming the bad variable on failure.
    pub fn from_env() -> Result<Config, envy::Error> {
        <Config as ServiceConfig>::from_env()
    }

    /// The defaults, watching `watch_dir`, with the given Kafka brokers and Redis: what tests
    /// start from.
    pub fn with_endpoints(
        watch_dir: impl Into<PathBuf>,
        kafka_brokers: impl Into<String>,
        redis_url: impl Into<String>,
    ) -> Config {
        Config {
            listen_addr: defaults::listen_addr(),
            watch_dir: watch_dir.into(),
            dataset: defaults::dataset(),
            datasets_dir: None,
            processed_dir: None,
            quarantine_dir: None,
            after_success: defaults::after_success(),
            stable_ms: defaults::stable_ms(),
            rescan_interval_ms: defaults::rescan_interval_ms(),
            max_concurrent_files: defaults::max_concurrent_files(),
            instance_id: None,
            kafka_brokers: kafka_brokers.into(),
            topic: defaults::topic(),
            rejects_topic: None,
            dataset_topic_prefix: String::new(),
            topic_partitions: defaults::topic_partitions(),
            topic_replication_factor: defaults::topic_replication_factor(),
            redis_url: redis_url.into(),
            redis_key_prefix: defaults::redis_key_prefix(),
            transactional_id_prefix: defaults::transactional_id_prefix(),
            transaction_timeout_ms: defaults::transaction_timeout_ms(),
            max_rows_per_transaction: defaults::max_rows_per_transaction(),
            delivery_timeout_ms: defaults::delivery_timeout_ms(),
            max_in_flight: defaults::max_in_flight(),
            max_rejects_listed: defaults::max_rejects_listed(),
            max_file_bytes: defaults::max_file_bytes(),
            max_line_bytes: defaults::max_line_bytes(),
            lock_ttl_ms: defaults::lock_ttl_ms(),
            retry_initial_ms: defaults::retry_initial_ms(),
            retry_max_ms: defaults::retry_max_ms(),
            max_attempts: defaults::max_attempts(),
        }
    }

    pub fn processed_dir(&self) -> PathBuf {
        self.processed_dir
            .clone()
            .unwrap_or_else(|| self.watch_dir.join("processed"))
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.quarantine_dir
            .clone()
            .unwrap_or_else(|| self.watch_dir.join("quarantine"))
    }

    /// Scratch space for decompressing Parquet files (which need random access).
    pub fn work_dir(&self) -> PathBuf {
        self.watch_dir.join(".sluice-work")
    }

    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into())
        })
    }

    /// The rejects topic's name (of the game rounds).
    pub fn rejects_topic(&self) -> String {
        sluice_schema::config::topic_or(&self.rejects_topic, || format!("{}.rejects", self.topic))
    }

    /// The dataset `dataset` names, from `datasets_dir` (`game_rounds` is built in); an unknown
    /// one is an error naming `SLUICE_WATCHER_DATASET`, the datasets there are and the fix.
    pub fn dataset(&self) -> Result<Dataset, SpecError> {
        let catalog = Catalog::of_dir(self.datasets_dir.as_deref())?;
        if let Some(dataset) = catalog.get(&self.dataset) {
            return Ok(dataset.clone());
        }
        let known: Vec<&str> = catalog.iter().map(|d| d.spec.name.as_str()).collect();
        let (file, fix) = match self.datasets_dir.as_deref().filter(|d| !d.is_empty()) {
            Some(dir) => (
                dir.to_owned(),
                format!(
                    "name one of them, or declare it in `{dir}/{}.toml`",
                    self.dataset
                ),
            ),
            None => (
                "SLUICE_WATCHER_DATASETS_DIR unset".to_owned(),
                format!(
                    "set SLUICE_WATCHER_DATASETS_DIR to the directory holding `{}.toml`",
                    self.dataset
                ),
            ),
        };
        Err(SpecError::Invalid {
            file,
            field: "SLUICE_WATCHER_DATASET".into(),
            problem: format!(
                "there is no dataset `{}` (known: {})",
                self.dataset,
                known.join(", ")
            ),
            fix,
        })
    }

    /// The topics of `dataset`'s records and rejects: `topic` and `rejects_topic` for
    /// `game_rounds`, `<dataset_topic_prefix><name>` and its `.rejects` for another, as the
    /// producer names them.
    pub fn topics(&self) -> Topics {
        if self.dataset == GAME_ROUNDS {
            return Topics {
                records: self.topic.clone(),
                rejects: self.rejects_topic(),
            };
        }
        Topics::of_dataset(&self.dataset_topic_prefix, &self.dataset)
    }

    /// The settings of this watcher's producer: the dataset's topics ([`topics`](Self::topics)),
    /// its own transactional ids (`<prefix>-<instance id>-<slot>`), one transactional producer
    /// per concurrent file, the producer's default compression.
    pub fn kafka(&self) -> ProducerSettings {
        let topics = self.topics();
        ProducerSettings {
            brokers: self.kafka_brokers.clone(),
            topic: topics.records,
            rejects_topic: topics.rejects,
            compression: producer_defaults::compression(),
            delivery_timeout_ms: self.delivery_timeout_ms,
            transactional: true,
            transactional_id_prefix: format!(
                "{}-{}",
                self.transactional_id_prefix,
                self.instance_id()
            ),
            transaction_timeout_ms: self.transaction_timeout_ms,
            max_rows_per_transaction: self.max_rows_per_transaction,
            slots: self.max_concurrent_files.max(1),
        }
    }

    /// The limits of one file: the watcher's own, and the producer's defaults for the record
    /// size and the unknown columns listed.
    pub fn limits(&self) -> Limits {
        Limits {
            max_upload_bytes: self.max_file_bytes,
            max_in_flight: self.max_in_flight,
            max_rejects_listed: self.max_rejects_listed,
            max_line_bytes: self.max_line_bytes,
            max_record_bytes: producer_defaults::max_record_bytes(),
            max_unknown_columns_listed: producer_defaults::max_unknown_columns_listed(),
            // A local file never stalls like a client; a stuck disk still ends the file.
            body_idle_timeout: Duration::from_secs(300),
        }
    }
}

mod defaults {
    use super::AfterSuccess;
    use std::path::PathBuf;

    pub fn listen_addr() -> String {
        "127.0.0.1:8083".into()
    }
    pub fn watch_dir() -> PathBuf {
        PathBuf::from("inbox")
    }
    pub fn dataset() -> String {
        sluice_schema::dataset::GAME_ROUNDS.into()
    }
    pub fn after_success() -> AfterSuccess {
        AfterSuccess::Move
    }
    pub fn stable_ms() -> u64 {
        5_000
    }
    pub fn rescan_interval_ms() -> u64 {
        30_000
    }
    pub fn max_concurrent_files() -> usize {
        4
    }
    pub fn kafka_brokers() -> String {
        "127.0.0.1:9092".into()
    }
    pub fn topic() -> String {
        "game_rounds".into()
    }
    pub fn topic_partitions() -> i32 {
        8
    }
    pub fn topic_replication_factor() -> i32 {
        1
    }
    pub fn redis_url() -> String {
        "redis://127.0.0.1:6379/".into()
    }
    pub fn redis_key_prefix() -> String {
        "sluice:".into()
    }
    pub fn transactional_id_prefix() -> String {
        "sluice-watcher".into()
    }
    pub fn transaction_timeout_ms() -> u64 {
        900_000
    }
    pub fn max_rows_per_transaction() -> u64 {
        5_000_000
    }
    pub fn delivery_timeout_ms() -> u64 {
        30_000
    }
    pub fn max_in_flight() -> usize {
        100_000
    }
    pub fn max_rejects_listed() -> usize {
        100
    }
    pub fn max_file_bytes() -> u64 {
        64 << 30
    }
    pub fn max_line_bytes() -> usize {
        1 << 20
    }
    pub fn lock_ttl_ms() -> u64 {
        30_000
    }
    pub fn retry_initial_ms() -> u64 {
        1_000
    }
    pub fn retry_max_ms() -> u64 {
        60_000
    }
    pub fn max_attempts() -> u32 {
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datasets_dir() -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets").to_owned()
    }

    #[test]
    fn game_rounds_by_default_on_the_configured_topics() {
        let mut config = Config::with_endpoints("inbox", "unused:9092", "redis://unused");
        config.dataset_topic_prefix = "ignored.".into();
        assert_eq!(config.dataset().unwrap().spec.name, GAME_ROUNDS);
        let settings = config.kafka();
        assert_eq!(
            (settings.topic.as_str(), settings.rejects_topic.as_str()),
            ("game_rounds", "game_rounds.rejects")
        );
        config.topic = "rounds".into();
        config.rejects_topic = Some("rounds.bad".into());
        let topics = config.topics();
        assert_eq!(
            (topics.records.as_str(), topics.rejects.as_str()),
            ("rounds", "rounds.bad")
        );
    }

    #[test]
    fn another_dataset_is_read_from_the_directory_onto_its_own_topics() {
        let mut config = Config::with_endpoints("inbox", "unused:9092", "redis://unused");
        config.dataset = "records".into();
        config.datasets_dir = Some(datasets_dir());
        config.dataset_topic_prefix = "test.".into();
        assert_eq!(config.dataset().unwrap().plan.dataset(), "records");
        let settings = config.kafka();
        assert_eq!(
            (settings.topic.as_str(), settings.rejects_topic.as_str()),
            ("test.records", "test.records.rejects")
        );
    }

    #[test]
    fn an_unknown_dataset_is_an_error_naming_the_setting_and_the_fix() {
        let mut config = Config::with_endpoints("inbox", "unused:9092", "redis://unused");
        config.dataset = "records".into();
        let error = config.dataset().unwrap_err().to_string();
        assert!(error.contains("`SLUICE_WATCHER_DATASET`"), "{error}");
        assert!(
            error.contains("there is no dataset `records` (known: game_rounds)"),
            "{error}"
        );
        assert!(error.contains("set SLUICE_WATCHER_DATASETS_DIR"), "{error}");

        config.dataset = "nope".into();
        config.datasets_dir = Some(datasets_dir());
        let error = config.dataset().unwrap_err().to_string();
        assert!(error.contains("there is no dataset `nope`"), "{error}");
        assert!(error.contains("records"), "{error}");
        assert!(error.contains("nope.toml"), "{error}");
    }
}
