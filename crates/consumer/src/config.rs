//! Consumer configuration, read once at start-up from `SLUICE_CONSUMER_*` environment variables.

use secrecy::SecretString;
use serde::Deserialize;
use sluice_schema::config::{ClickHouseSettings, ServiceConfig};
use sluice_schema::dataset::{Catalog, Dataset, SpecError};
use sluice_schema::kafka::DatasetTopics;

/// Every setting of the consumer. Each field is read from `SLUICE_CONSUMER_<FIELD>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Address of the HTTP server for `/health`, `/ready` and `/metrics`. Default `127.0.0.1:8082`.
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: String,
    /// Kafka bootstrap servers, comma separated. Default `127.0.0.1:9092`.
    #[serde(default = "defaults::kafka_brokers")]
    pub kafka_brokers: String,
    /// Topic to consume. Default `game_rounds`.
    #[serde(default = "defaults::topic")]
    pub topic: String,
    /// Partitions of the topic when the consumer has to create it. Default 8.
    #[serde(default = "defaults::topic_partitions")]
    pub topic_partitions: i32,
    /// Topic of the rows the producer rejected (JSON, keyed by upload id); they go to the
    /// `upload_rejects` table. Default: the topic's name followed by `.rejects`.
    #[serde(default)]
    pub rejects_topic: Option<String>,
    /// Topic undecodable messages are copied to, with the error in headers.
    /// Default: the topic's name followed by `.dlq`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Directory of dataset specs (`<name>.toml`, see `datasets/`). Default: none.
    #[serde(default)]
    pub datasets_dir: Option<String>,
    /// The datasets of `datasets_dir` this instance serves besides `game_rounds`, comma
    /// separated: each is read from its topic into its versions table (`<name>_versions`,
    /// created if missing). Default: none.
    #[serde(default)]
    pub datasets: String,
    /// Prefix of the served datasets' topics (`<prefix><name>`), as the producer's
    /// `SLUICE_PRODUCER_DATASET_TOPIC_PREFIX`. Default empty.
    #[serde(default)]
    pub dataset_topic_prefix: String,
    /// Consumer group; every instance of one group shares the partitions. Default `sluice-consumer`.
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// Kafka `session.timeout.ms`: how soon a dead instance's partitions move on. Default 10000.
    #[serde(default = "defaults::session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Kafka `max.poll.interval.ms`: longest pause between polls before the group evicts this
    /// instance. Default 300000.
    #[serde(default = "defaults::max_poll_interval_ms")]
    pub max_poll_interval_ms: u64,
    /// Messages per partition fetched ahead into the local queue (librdkafka
    /// `queued.min.messages`); the queue never exceeds 64 MiB. Default 1000000.
    #[serde(default = "defaults::prefetch_messages")]
    pub prefetch_messages: u64,
    /// How often librdkafka reports statistics, from which the per-partition lag gauge
    /// (`sluice_consumer_lag_messages`) is updated, in milliseconds; 0 turns them off.
    /// Default 5000.
    #[serde(default = "defaults::statistics_interval_ms")]
    pub statistics_interval_ms: u64,
    /// ClickHouse, read from `SLUICE_CONSUMER_CLICKHOUSE_*` (`URL`, `DATABASE`, `USER`,
    /// `PASSWORD`, `CLUSTER`: see `ClickHouseSettings`).
    #[serde(skip)]
    pub clickhouse: ClickHouseSettings,
    /// Redis holding the rollups' dirty hours (docs/PROCESSING.md): every batch marks the
    /// hours it touches there before its insert. The same Redis as the processor's and the
    /// gateway's. Default `redis://127.0.0.1:6379/`.
    #[serde(default = "defaults::redis_url")]
    pub redis_url: SecretString,
    /// How long a batch's marks hold its hours when its insert never reports back (a consumer
    /// killed mid-insert), in milliseconds; renewed at every attempt. Longer than an insert
    /// attempt can take. Default 600000.
    #[serde(default = "defaults::mark_lease_ms")]
    pub mark_lease_ms: u64,
    /// A batch is inserted when it holds this many rows. Default 50000.
    #[serde(default = "defaults::batch_max_rows")]
    pub batch_max_rows: usize,
    /// A batch is inserted when its Kafka payloads reach this many bytes. Default 16 MiB.
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// A non-empty batch is inserted at the latest this long after its first record. Default 1000.
    #[serde(default = "defaults::batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// First wait before retrying a failed insert; doubles up to `insert_retry_max_ms`. Default 200.
    #[serde(default = "defaults::insert_retry_initial_ms")]
    pub insert_retry_initial_ms: u64,
    /// Longest wait between insert retries. Default 10000.
    #[serde(default = "defaults::insert_retry_max_ms")]
    pub insert_retry_max_ms: u64,
}

impl Config {
    /// Reads the configuration from the environment, naming the bad variable on failure.
    pub fn from_env() -> Result<Config, envy::Error> {
        <Config as ServiceConfig>::from_env()
    }

    /// The rejects topic's name.
    pub fn rejects_topic(&self) -> String {
        sluice_schema::config::topic_or(&self.rejects_topic, || format!("{}.rejects", self.topic))
    }

    /// The datasets this instance serves besides `game_rounds`, from `datasets_dir`.
    pub fn served_datasets(&self) -> Result<Vec<Dataset>, SpecError> {
        let dir = self.datasets_dir.as_deref();
        Catalog::served(dir, &self.datasets, "SLUICE_CONSUMER_DATASETS")
    }

    /// The topic of the dataset `name`'s records.
    pub fn dataset_topic(&self, name: &str) -> String {
        DatasetTopics::of(&self.dataset_topic_prefix, name).records
    }

    /// The topic of the rows of dataset `name` the producer rejected.
    pub fn dataset_rejects_topic(&self, name: &str) -> String {
        DatasetTopics::of(&self.dataset_topic_prefix, name).rejects
    }

    /// The topic of the records of dataset `name` the consumer could not store.
    pub fn dataset_dead_letter_topic(&self, name: &str) -> String {
        DatasetTopics::of(&self.dataset_topic_prefix, name).dead_letters
    }

    /// The dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> String {
        sluice_schema::config::topic_or(&self.dead_letter_topic, || format!("{}.dlq", self.topic))
    }

    /// The defaults with the given endpoints: what tests and examples start from.
    pub fn with_endpoints(
        kafka_brokers: impl Into<String>,
        clickhouse_url: impl Into<String>,
        redis_url: impl Into<String>,
    ) -> Config {
        Config {
            listen_addr: defaults::listen_addr(),
            kafka_brokers: kafka_brokers.into(),
            topic: defaults::topic(),
            topic_partitions: defaults::topic_partitions(),
            rejects_topic: None,
            dead_letter_topic: None,
            datasets_dir: None,
            datasets: String::new(),
            dataset_topic_prefix: String::new(),
            group_id: defaults::group_id(),
            session_timeout_ms: defaults::session_timeout_ms(),
            max_poll_interval_ms: defaults::max_poll_interval_ms(),
            statistics_interval_ms: defaults::statistics_interval_ms(),
            prefetch_messages: defaults::prefetch_messages(),
            clickhouse: ClickHouseSettings::at(clickhouse_url),
            redis_url: SecretString::from(redis_url.into()),
            mark_lease_ms: defaults::mark_lease_ms(),
            batch_max_rows: defaults::batch_max_rows(),
            batch_max_bytes: defaults::batch_max_bytes(),
            batch_timeout_ms: defaults::batch_timeout_ms(),
            insert_retry_initial_ms: defaults::insert_retry_initial_ms(),
            insert_retry_max_ms: defaults::insert_retry_max_ms(),
        }
    }
}

sluice_schema::service_config!(Config, "SLUICE_CONSUMER_", clickhouse: clickhouse);

mod defaults {
    use secrecy::SecretString;

    pub fn listen_addr() -> String {
        "127.0.0.1:8082".into()
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
    pub fn group_id() -> String {
        "sluice-consumer".into()
    }
    pub fn session_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_poll_interval_ms() -> u64 {
        300_000
    }
    pub fn prefetch_messages() -> u64 {
        1_000_000
    }
    pub fn statistics_interval_ms() -> u64 {
        5_000
    }
    pub fn redis_url() -> SecretString {
        SecretString::from("redis://127.0.0.1:6379/")
    }
    pub fn mark_lease_ms() -> u64 {
        600_000
    }
    pub fn batch_max_rows() -> usize {
        50_000
    }
    pub fn batch_max_bytes() -> usize {
        16 << 20
    }
    pub fn batch_timeout_ms() -> u64 {
        1_000
    }
    pub fn insert_retry_initial_ms() -> u64 {
        200
    }
    pub fn insert_retry_max_ms() -> u64 {
        10_000
    }
}
