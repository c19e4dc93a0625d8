//! Producer configuration, read once at start-up from `SLUICE_PRODUCER_*` environment variables.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use sluice_schema::config::{ClickHouseSettings, ServiceConfig};
use sluice_schema::dataset::{Catalog, SpecError, GAME_ROUNDS};

use crate::decode::ExpansionLimits;
use crate::ingest::Limits;

pub use crate::kafka::Compression;
use crate::kafka::{ProducerSettings, Topics, MESSAGE_MAX_BYTES, MESSAGE_OVERHEAD_BYTES};

/// A setting that parses but cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{variable} {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

/// Every setting of the producer. Each field is read from `SLUICE_PRODUCER_<FIELD>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Address the HTTP server binds to. Default `127.0.0.1:8080`.
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: String,
    /// Kafka bootstrap servers, comma separated. Default `127.0.0.1:9092`.
    #[serde(default = "defaults::kafka_brokers")]
    pub kafka_brokers: String,
    /// Topic the game rounds are written to. Default `game_rounds`.
    #[serde(default = "defaults::topic")]
    pub topic: String,
    /// Topic every rejected row is kept on (JSON, keyed by upload id), in the upload's
    /// transaction. Default: the topic's name followed by `.rejects`.
    #[serde(default)]
    pub rejects_topic: Option<String>,
    /// Directory of dataset specs (`<name>.toml`, see `datasets/`) served at
    /// `POST /datasets/{name}/upload` besides the built-in `game_rounds`. Default: none
    /// (`game_rounds` only).
    #[serde(default)]
    pub datasets_dir: Option<String>,
    /// Prefix of the topics of datasets other than `game_rounds`: a dataset's records go to
    /// `<prefix><name>`, its rejects to `<prefix><name>.rejects`. Default empty.
    #[serde(default)]
    pub dataset_topic_prefix: String,
    /// Where a Parquet upload is stored while it is read (Parquet needs random access; the
    /// file is removed once read). Each takes up to `max_upload_bytes` there. Default: the
    /// system's temporary directory.
    #[serde(default)]
    pub scratch_dir: Option<String>,
    /// Partitions of the topic when the producer has to create it. Default 8.
    #[serde(default = "defaults::topic_partitions")]
    pub topic_partitions: i32,
    /// Replication factor of the topic when the producer has to create it. Default 1.
    #[serde(default = "defaults::topic_replication_factor")]
    pub topic_replication_factor: i32,
    /// Redis holding upload receipts, for idempotent re-uploads and `GET /uploads/{id}`.
    /// Default `redis://127.0.0.1:6379/`.
    #[serde(default = "defaults::redis_url")]
    pub redis_url: String,
    /// Prefix of every Redis key the producer writes. Default `sluice:`.
    #[serde(default = "defaults::redis_key_prefix")]
    pub redis_key_prefix: String,
    /// ClickHouse, read from `SLUICE_PRODUCER_CLICKHOUSE_*` (`URL`, `DATABASE`, `USER`,
    /// `PASSWORD`, `CLUSTER`: see `ClickHouseSettings`).
    #[serde(skip)]
    pub clickhouse: ClickHouseSettings,
    /// Run each upload in a Kafka transaction, so a failed or duplicate upload leaves nothing
    /// visible. Needs brokers with transactions and read-committed consumers. Default true.
    #[serde(default = "defaults::transactional")]
    pub transactional: bool,
    /// Prefix of the producers' `transactional.id`s (`<prefix>-<slot>`); must differ between
    /// producer instances and stay the same across restarts of one. Default
    /// `sluice-producer-<hostname>`.
    #[serde(default)]
    pub transactional_id_prefix: Option<String>,
    /// Kafka `transaction.timeout.ms`: the longest an upload may take (the broker's
    /// `transaction.max.timeout.ms` must allow it). Default 900000 (15 min).
    #[serde(default = "defaults::transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
    /// Records after which a long upload commits its transaction and goes on in a new one, so
    /// no transaction outlives the brokers' `transaction.max.timeout.ms` or holds back
    /// read-committed consumers for long. An upload of at most this many records (rows and
    /// rejects) is all or nothing; a failed longer one leaves its committed part visible, which
    /// a retry completes (rounds are de-duplicated by identity). Default 5000000 (about 10 s
    /// of upload at the measured rate).
    #[serde(default = "defaults::max_rows_per_transaction")]
    pub max_rows_per_transaction: u64,
    /// Uploads processed at once. Default 4.
    #[serde(default = "defaults::max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// Longest wait for a free upload slot, in milliseconds, when `max_concurrent_uploads`
    /// uploads run; then the upload is refused with 503 and `Retry-After`. Default 1000.
    #[serde(default = "defaults::upload_slot_wait_ms")]
    pub upload_slot_wait_ms: u64,
    /// Largest accepted upload body in bytes; larger uploads get 413. Default 64 GiB.
    #[serde(default = "defaults::max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// Longest physical line of an upload, in bytes (after decoding to UTF-8), and longest
    /// CSV header; a longer one stops the upload with 413 (and the line's number). Default
    /// 1 MiB.
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,
    /// Longest record, in bytes: a CSV record as read (line breaks in quoted cells included)
    /// and the Avro record sent to Kafka. A longer one is that row's reject (`record too
    /// large`), skipped without being buffered; the upload goes on. At most
    /// 998976 (librdkafka's `message.max.bytes`, 1000000, less room for key and framing).
    /// Default 262144 (256 KiB; a round is ~100 bytes).
    #[serde(default = "defaults::max_record_bytes")]
    pub max_record_bytes: usize,
    /// How many times its compressed size a gzip or zstd upload may expand to (checked once
    /// it has expanded past 16 MiB); more stops it with 413 at once. Default 100 (exports
    /// compress about 10×).
    #[serde(default = "defaults::max_decompression_ratio")]
    pub max_decompression_ratio: u64,
    /// Largest size a gzip or zstd upload may expand to, in bytes; more stops it with 413.
    /// Default 16 GiB.
    #[serde(default = "defaults::max_decompressed_bytes")]
    pub max_decompressed_bytes: u64,
    /// Longest wait for the next piece of an upload's request (any part of it) before giving
    /// up with 408, in milliseconds; also the period over which the minimum rate is measured.
    /// Default 30000.
    #[serde(default = "defaults::body_idle_timeout_ms")]
    pub body_idle_timeout_ms: u64,
    /// Slowest a client may send an upload's request, in bytes per second of waiting for it,
    /// measured over each `body_idle_timeout_ms` of waiting (time the producer spends not
    /// reading, behind Kafka, does not count); slower is cut with 408. 0: no minimum.
    /// Default 8192.
    #[serde(default = "defaults::min_body_rate_bytes_per_s")]
    pub min_body_rate_bytes_per_s: u64,
    /// Records handed to Kafka but not yet acknowledged, at most; reading the upload pauses
    /// at this bound (backpressure to the client). Default 100000.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// How many rejected rows the receipt lists (all are counted). Default 100.
    #[serde(default = "defaults::max_rejects_listed")]
    pub max_rejects_listed: usize,
    /// How many unused header columns the receipt lists (all are counted, in
    /// `unknown_columns_count`). Default 100.
    #[serde(default = "defaults::max_unknown_columns_listed")]
    pub max_unknown_columns_listed: usize,
    /// Compression of record batches: `zstd`, `lz4`, `snappy`, `gzip` or `none`. zstd moves
    /// the fewest bytes and, measured on the test broker, lets consumers fetch fastest
    /// (docs/PERFORMANCE.md). Default `zstd`.
    #[serde(default = "defaults::compression")]
    pub compression: Compression,
    /// How long Kafka may take to acknowledge a record before the upload fails with 503, in
    /// milliseconds (librdkafka `message.timeout.ms`). Default 30000.
    #[serde(default = "defaults::delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Bearer tokens that may upload and read receipts (`Authorization: Bearer <token>` on
    /// `POST /csv_upload` and `GET /uploads/…`), comma separated: two at once let a token be
    /// rotated without downtime. Unset or empty (the default): uploads are not authenticated,
    /// for a producer reachable only from trusted networks; start-up then logs a warning.
    #[serde(default)]
    pub upload_tokens: Option<SecretString>,
    /// Origins (`scheme://host[:port]`, comma separated) whose pages may call this API from a
    /// browser (CORS): the gateway's `/console`, e.g. `http://127.0.0.1:8081`. Requests from
    /// them may send `Authorization` and `Idempotency-Key`; no cookies are ever allowed.
    /// Empty (the default): no cross-origin access; same-origin pages (`/docs/`) always work.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
}

impl Config {
    /// Reads the configuration from the environment, naming the bad variable on failure.
    pub fn from_env() -> Result<Config, envy::Error> {
        <Config as ServiceConfig>::from_env()
    }

    /// Checks the values that parse but cannot work, naming the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let largest_record = MESSAGE_MAX_BYTES - MESSAGE_OVERHEAD_BYTES;
        if self.max_record_bytes == 0 || self.max_record_bytes > largest_record {
            return Err(ConfigError {
                variable: "SLUICE_PRODUCER_MAX_RECORD_BYTES",
                reason: format!(
                    "must be between 1 and {largest_record} (Kafka messages are at most \
                     {MESSAGE_MAX_BYTES} bytes)"
                ),
            });
        }
        if self.max_decompression_ratio == 0 {
            return Err(ConfigError {
                variable: "SLUICE_PRODUCER_MAX_DECOMPRESSION_RATIO",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.body_idle_timeout_ms == 0 {
            return Err(ConfigError {
                variable: "SLUICE_PRODUCER_BODY_IDLE_TIMEOUT_MS",
                reason: "must be at least 1".to_owned(),
            });
        }
        if let Some(bad) = self.cors_origins().find(|origin| !is_origin(origin)) {
            return Err(ConfigError {
                variable: "SLUICE_PRODUCER_CORS_ALLOWED_ORIGINS",
                reason: format!(
                    "`{bad}` is not an origin: write `http://host:port` or `https://host`, \
                     without a path"
                ),
            });
        }
        Ok(())
    }

    /// The configured CORS origins, without empty entries.
    pub fn cors_origins(&self) -> impl Iterator<Item = &str> {
        self.cors_allowed_origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
    }

    /// The rejects topic's name.
    pub fn rejects_topic(&self) -> String {
        sluice_schema::config::topic_or(&self.rejects_topic, || format!("{}.rejects", self.topic))
    }

    /// Where Parquet uploads are stored while read; `None` (unset or empty): the system's
    /// temporary directory.
    pub fn scratch_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.scratch_dir.as_deref().map(str::trim);
        dir.filter(|dir| !dir.is_empty()).map(Into::into)
    }

    /// The datasets served: `game_rounds`, and those of `datasets_dir`.
    pub fn datasets(&self) -> Result<Catalog, SpecError> {
        Catalog::of_dir(self.datasets_dir.as_deref())
    }

    /// The topics of `dataset`'s records and rejects: the configured ones for `game_rounds`,
    /// `<dataset_topic_prefix><name>` and its `.rejects` for the others.
    pub fn topics(&self, dataset: &str) -> Topics {
        if dataset == GAME_ROUNDS {
            return Topics {
                records: self.topic.clone(),
                rejects: self.rejects_topic(),
            };
        }
        Topics::of_dataset(&self.dataset_topic_prefix, dataset)
    }

    /// Whether a request presenting `token` (from `Authorization: Bearer …`) may upload and
    /// read receipts: it must equal one of `upload_tokens`, compared in constant time. Always
    /// true when no token is configured.
    pub fn admits_upload_token(&self, token: Option<&str>) -> bool {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        let configured: Vec<&str> = self.upload_tokens.as_ref().map_or(Vec::new(), |tokens| {
            tokens
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        });
        if configured.is_empty() {
            return true;
        }
        let Some(token) = token else {
            return false;
        };
        configured.iter().fold(false, |found, t| {
            found | bool::from(t.as_bytes().ct_eq(token.as_bytes()))
        })
    }

    /// Whether uploads need a token.
    pub fn authenticates_uploads(&self) -> bool {
        !self.admits_upload_token(None)
    }

    /// The limits of one upload.
    pub fn limits(&self) -> Limits {
        Limits {
            max_upload_bytes: self.max_upload_bytes,
            max_in_flight: self.max_in_flight,
            max_rejects_listed: self.max_rejects_listed,
            max_line_bytes: self.max_line_bytes,
            max_record_bytes: self.max_record_bytes,
            max_unknown_columns_listed: self.max_unknown_columns_listed,
            body_idle_timeout: Duration::from_millis(self.body_idle_timeout_ms),
        }
    }

    /// How far a compressed upload may expand.
    pub fn expansion_limits(&self) -> ExpansionLimits {
        ExpansionLimits {
            max_ratio: self.max_decompression_ratio,
            max_bytes: self.max_decompressed_bytes,
        }
    }

    /// The settings of this service's [`RoundProducer`](crate::kafka::RoundProducer).
    pub fn kafka(&self) -> ProducerSettings {
        ProducerSettings {
            brokers: self.kafka_brokers.clone(),
            topic: self.topic.clone(),
            rejects_topic: self.rejects_topic(),
            compression: self.compression,
            delivery_timeout_ms: self.delivery_timeout_ms,
            transactional: self.transactional,
            transactional_id_prefix: self.transactional_id_prefix(),
            transaction_timeout_ms: self.transaction_timeout_ms,
            max_rows_per_transaction: self.max_rows_per_transaction,
            slots: self.max_concurrent_uploads,
        }
    }

    /// The `transactional.id` prefix in use.
    pub fn transactional_id_prefix(&self) -> String {
        self.transactional_id_prefix.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            format!("sluice-producer-{host}")
        })
    }

    /// The defaults, with the given Kafka brokers and Redis: what tests and examples start from.
    pub fn with_endpoints(
        kafka_brokers: impl Into<String>,
        redis_url: impl Into<String>,
    ) -> Config {
        Config {
            listen_addr: defaults::listen_addr(),
            kafka_brokers: kafka_brokers.into(),
            redis_url: redis_url.into(),
            redis_key_prefix: defaults::redis_key_prefix(),
            clickhouse: ClickHouseSettings::default(),
            transactional: defaults::transactional(),
            transactional_id_prefix: None,
            transaction_timeout_ms: defaults::transaction_timeout_ms(),
            max_rows_per_transaction: defaults::max_rows_per_transaction(),
            max_concurrent_uploads: defaults::max_concurrent_uploads(),
            upload_slot_wait_ms: defaults::upload_slot_wait_ms(),
            topic: defaults::topic(),
            rejects_topic: None,
            datasets_dir: None,
            dataset_topic_prefix: String::new(),
            scratch_dir: None,
            topic_partitions: defaults::topic_partitions(),
            topic_replication_factor: defaults::topic_replication_factor(),
            max_upload_bytes: defaults::max_upload_bytes(),
            max_line_bytes: defaults::max_line_bytes(),
            max_record_bytes: defaults::max_record_bytes(),
            max_decompression_ratio: defaults::max_decompression_ratio(),
            max_decompressed_bytes: defaults::max_decompressed_bytes(),
            body_idle_timeout_ms: defaults::body_idle_timeout_ms(),
            min_body_rate_bytes_per_s: defaults::min_body_rate_bytes_per_s(),
            max_in_flight: defaults::max_in_flight(),
            max_rejects_listed: defaults::max_rejects_listed(),
            max_unknown_columns_listed: defaults::max_unknown_columns_listed(),
            delivery_timeout_ms: defaults::delivery_timeout_ms(),
            compression: defaults::compression(),
            upload_tokens: None,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Whether `text` is a serialised origin: `http` or `https`, a host, an optional port, no
/// path, query or trailing slash (the form browsers send in `Origin`).
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && port.is_none_or(|port| !port.is_empty() && port.parse::<u16>().is_ok())
}

sluice_schema::service_config!(Config, "SLUICE_PRODUCER_", clickhouse: clickhouse);

/// The default of every setting; the watcher's too, for the settings it shares with uploads
/// but does not expose (record size, listed unknown columns, compression).
pub mod defaults {
    pub fn listen_addr() -> String {
        "127.0.0.1:8080".into()
    }
    pub fn kafka_brokers() -> String {
        "127.0.0.1:9092".into()
    }
    pub fn redis_url() -> String {
        "redis://127.0.0.1:6379/".into()
    }
    pub fn redis_key_prefix() -> String {
        "sluice:".into()
    }
    pub fn transactional() -> bool {
        true
    }
    pub fn transaction_timeout_ms() -> u64 {
        900_000
    }
    pub fn max_rows_per_transaction() -> u64 {
        5_000_000
    }
    pub fn max_concurrent_uploads() -> usize {
        4
    }
    pub fn upload_slot_wait_ms() -> u64 {
        1_000
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
    pub fn max_upload_bytes() -> u64 {
        64 << 30
    }
    pub fn max_line_bytes() -> usize {
        1 << 20
    }
    pub fn max_record_bytes() -> usize {
        256 << 10
    }
    pub fn max_decompression_ratio() -> u64 {
        100
    }
    pub fn max_decompressed_bytes() -> u64 {
        16 << 30
    }
    pub fn body_idle_timeout_ms() -> u64 {
        30_000
    }
    pub fn min_body_rate_bytes_per_s() -> u64 {
        8 << 10
    }
    pub fn max_in_flight() -> usize {
        100_000
    }
    pub fn max_rejects_listed() -> usize {
        100
    }
    pub fn max_unknown_columns_listed() -> usize {
        100
    }
    pub fn compression() -> super::Compression {
        super::Compression::Zstd
    }
    pub fn delivery_timeout_ms() -> u64 {
        30_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tokens(tokens: Option<&str>) -> Config {
        let mut config = Config::with_endpoints("unused:9092", "redis://unused");
        config.upload_tokens = tokens.map(|t| SecretString::from(t.to_owned()));
        config
    }

    #[test]
    fn the_shipped_env_file_reads_as_the_defaults_its_empty_values_meaning_unset() {
        let file = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/producer.env"
        ))
        .unwrap();
        let variables: Vec<(String, String)> = file
            .lines()
            .filter(|line| !line.starts_with('#') && line.contains('='))
            .map(|line| {
                let (name, value) = line.split_once('=').unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let config = Config::from_variables(&variables).unwrap();
        assert_eq!(config.rejects_topic(), "game_rounds.rejects");
        let catalog = config.datasets().unwrap();
        assert_eq!(catalog.iter().count(), 1, "game_rounds only");
        let topics = config.topics("records");
        assert_eq!(
            (topics.records.as_str(), topics.rejects.as_str()),
            ("records", "records.rejects")
        );
    }

    #[test]
    fn a_record_limit_kafka_cannot_take_is_refused_naming_its_variable() {
        let mut config = Config::with_endpoints("unused:9092", "redis://unused");
        assert!(config.validate().is_ok());
        for refused in [0, MESSAGE_MAX_BYTES] {
            config.max_record_bytes = refused;
            let error = config.validate().unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("SLUICE_PRODUCER_MAX_RECORD_BYTES"),
                "{error}"
            );
        }
        config.max_record_bytes = MESSAGE_MAX_BYTES - MESSAGE_OVERHEAD_BYTES;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn cors_origins_are_origins_or_the_variable_is_named() {
        let mut config = Config::with_endpoints("unused:9092", "redis://unused");
        config.cors_allowed_origins = vec![
            "http://127.0.0.1:8081".into(),
            " https://console.example ".into(),
            "http://[::1]:8081".into(),
            String::new(),
        ];
        assert!(config.validate().is_ok());
        assert_eq!(config.cors_origins().count(), 3);
        for refused in [
            "127.0.0.1:8081",
            "http://host/",
            "http://host:port",
            "ftp://host",
            "http://",
            "*",
        ] {
            config.cors_allowed_origins = vec![refused.into()];
            let error = config.validate().unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("SLUICE_PRODUCER_CORS_ALLOWED_ORIGINS"),
                "{refused}: {error}"
            );
        }
    }

    #[test]
    fn without_tokens_every_request_is_admitted() {
        for tokens in [None, Some(""), Some(" , ")] {
            let config = with_tokens(tokens);
            assert!(!config.authenticates_uploads(), "{tokens:?}");
            assert!(config.admits_upload_token(None));
            assert!(config.admits_upload_token(Some("anything")));
        }
    }

    #[test]
    fn with_tokens_only_an_exact_one_is_admitted() {
        let config = with_tokens(Some(" first-token , second-token "));
        assert!(config.authenticates_uploads());
        assert!(config.admits_upload_token(Some("first-token")));
        assert!(config.admits_upload_token(Some("second-token")));
        for refused in [
            None,
            Some(""),
            Some("first"),
            Some("first-token2"),
            Some("FIRST-TOKEN"),
        ] {
            assert!(!config.admits_upload_token(refused), "{refused:?}");
        }
    }
}
