//! Datasets other than game rounds (issue 14). Each dataset the consumer serves
//! (`SLUICE_CONSUMER_DATASETS`) is read from its own topic by a Kafka consumer of its own
//! (group `<group_id>.<name>`, read-committed), each record converted by its spec
//! ([`Converter`]) and the batch inserted into the dataset's versions table in one `RowBinary`
//! insert, retried until ClickHouse acknowledges it; only then are the batch's offsets stored
//! for the next auto-commit.
//!
//! The producer's rejects of the dataset's rows (`<topic>.rejects`, JSON) are read by the same
//! consumer into `upload_rejects`, where `GET /uploads/{id}/rejects` lists them.
//!
//! Effectively once: a record redelivered after a crash comes back with the same Kafka
//! timestamp and offset, so the same `version`, and the versions table (a `ReplacingMergeTree`
//! whose key ends with `version`) keeps one row of it; a record's later version (a re-upload)
//! has a greater one. A record the table cannot hold is never dropped and never stored as
//! something else (below).
//!
//! Rollups (docs/PROCESSING.md): when the spec declares rollup endpoints, each batch is written
//! inside the dirty-hours protocol of every rollup of the dataset's rows
//! (`sluice_rollup::datasets`), as the rounds are: the hours of its rows and of their records'
//! earlier versions (looked up by identity) are leased before the insert and marked once it is
//! acknowledged.
//!
//! Evolution (`sluice_schema::dataset::history`): the converter also reads the records of every
//! version of the spec recorded in `<datasets dir>/history/`, the columns appended since filled
//! with null or their default; at start the versions table gets the columns the spec appended
//! since it was made, and a table whose columns differ otherwise is refused, naming the column.
//!
//! What the table cannot hold goes, in the same round as its batch, into the `quarantine` table
//! and unchanged onto the dataset's dead-letter topic (`<topic>.dlq`), as the rounds' does.
//!
//! Game rounds keep their own pipeline (`pipeline`: overlapping fetch and insert, pausing,
//! resubscribing) with the same converter, insert and dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use clickhouse::Client;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_rollup::datasets::{
    bind_key, by_identity, hours_of_keys, identity_table_name, EndpointRollups,
};
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::{hour_of, version_of};
use sluice_schema::backoff::Backoff;
use sluice_schema::dataset::clickhouse::{add_column, missing_columns};
use sluice_schema::dataset::history::History;
use sluice_schema::dataset::rowbinary::{Converter, Keyed};
use sluice_schema::dataset::{directory, Dataset, Spec};
use sluice_schema::migrations::cluster::statements_of;
use sluice_schema::migrations::{Layout, Object, ReplicaError};
use sluice_schema::rejects::RejectRecord;
use tokio_util::sync::CancellationToken;

use crate::batcher::Reject;
use crate::config::Config;
use crate::inserter::{insert_quarantine, insert_rejects, insert_rows};
use crate::kafka::{DeadLetter, DeadLetters};
use crate::marks::{MarkError, Marks};

/// Records per lookup of earlier versions: far below ClickHouse's `max_query_size` (256 KiB)
/// and `max_ast_elements` (50,000) for identities of a few columns.
const KEYS_PER_LOOKUP: usize = 1_000;

/// One served dataset's ingest: its consumer, converter and ClickHouse client.
pub struct DatasetIngest {
    name: String,
    topic: String,
    rejects_topic: String,
    consumer: StreamConsumer,
    converter: Converter,
    clickhouse: Client,
    max_rows: usize,
    timeout: Duration,
    /// The marks of its rollups' dirty hours, when it has rollups.
    marks: Option<Marks>,
    /// Its dead-letter topic (`<topic>.dlq`).
    dead_letters: DeadLetters,
    spec: Spec,
}

/// A batch as converted: the rows (with each one's time and identity, when the dataset has
/// rollups), the messages the table cannot hold, and where each partition resumes.
#[derive(Default)]
struct Batch {
    rows: bytes::Bytes,
    count: usize,
    keyed: Vec<Keyed>,
    rejects: Vec<Reject>,
    poison: Vec<Unstored>,
    /// By topic and partition.
    next_offsets: BTreeMap<(String, i32), i64>,
}

/// A message the table cannot hold (or a reject that does not decode): where it came from,
/// why, and the message.
struct Unstored {
    topic: String,
    partition: i32,
    offset: i64,
    error: String,
    key: Vec<u8>,
    payload: Vec<u8>,
}

impl Unstored {
    fn letter(&self) -> DeadLetter<'_> {
        DeadLetter {
            source_topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            error: &self.error,
            key: &self.key,
            payload: &self.payload,
        }
    }
}

/// How far a batch's write got, kept across its attempts.
struct Progress {
    batch_id: String,
    /// The hours its rows change, once looked up.
    hours: Option<Vec<u32>>,
    inserted: bool,
}

/// Why an attempt to write a batch failed; every kind is retried.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("dirty hours: {0}")]
    Marks(#[from] MarkError),
    #[error("earlier versions: {0}")]
    Replicas(#[from] ReplicaError),
    #[error("dead-letter topic: {0}")]
    DeadLetters(#[from] rdkafka::error::KafkaError),
}

impl DatasetIngest {
    /// Creates the dataset's tables if missing and joins its consumer group; its batches are
    /// marked through `marks`' Redis when it has rollups, what it cannot store sent through
    /// `dead_letters`' producer.
    pub async fn start(
        config: &Config,
        dataset: &Dataset,
        clickhouse: Client,
        marks: &Marks,
        dead_letters: &DeadLetters,
    ) -> anyhow::Result<DatasetIngest> {
        let name = dataset.spec.name.clone();
        let history = History::read(directory(config.datasets_dir.as_deref()), &dataset.spec)?;
        let (layout, database) = (config.clickhouse.layout()?, &config.clickhouse.database);
        sluice_rollup::datasets::create_tables(&clickhouse, &dataset.spec, &layout, database)
            .await?;
        add_appended_columns(&clickhouse, &dataset.spec, &layout, database).await?;
        let dirty: Vec<DirtyHours> = EndpointRollups::all(&dataset.spec)
            .iter()
            .map(|(_, rollups)| DirtyHours::of(&config.clickhouse.database, &rollups.hourly))
            .collect();
        let marks = (!dirty.is_empty())
            .then(|| marks.of(&name, dirty, &identity_table_name(&dataset.spec)));
        let topic = config.dataset_topic(&name);
        let rejects_topic = config.dataset_rejects_topic(&name);
        let dead_letter_topic = config.dataset_dead_letter_topic(&name);
        for topic in [&topic, &rejects_topic, &dead_letter_topic] {
            let partitions = config.topic_partitions;
            sluice_schema::kafka::ensure_topic(&config.kafka_brokers, topic, partitions, 1).await?;
        }
        let consumer = subscribe(config, &name, &[&topic, &rejects_topic])?;
        Ok(DatasetIngest {
            converter: Converter::reading(&history),
            name,
            topic,
            rejects_topic,
            consumer,
            clickhouse,
            max_rows: config.batch_max_rows,
            timeout: Duration::from_millis(config.batch_timeout_ms),
            marks,
            dead_letters: dead_letters.to(dead_letter_topic),
            spec: dataset.spec.clone(),
        })
    }

    /// Consumes until `shutdown` fires, writing each batch before the next; the batch being
    /// filled when it fires is written first.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(dataset = %self.name, topic = %self.topic, "Dataset ingest running.");
        loop {
            let batch = self.fill(&shutdown).await;
            if !batch.next_offsets.is_empty() && !self.write(&batch, &shutdown).await {
                return;
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Reads messages until `max_rows`, the batch timeout after the first, or shutdown.
    async fn fill(&self, shutdown: &CancellationToken) -> Batch {
        let (mut batch, mut rows) = (Batch::default(), Vec::new());
        let mut deadline = None;
        while batch.count < self.max_rows {
            let next = async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, self.consumer.recv()).await.ok(),
                    None => Some(self.consumer.recv().await),
                }
            };
            let message = tokio::select! {
                message = next => message,
                () = shutdown.cancelled() => None,
            };
            let Some(message) = message else { break };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, dataset = %self.name, "Could not consume; retrying.");
                    continue;
                }
            };
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.timeout);
            let (partition, offset) = (message.partition(), message.offset());
            let topic = message.topic().to_owned();
            let payload = message.payload().unwrap_or_default();
            batch
                .next_offsets
                .insert((topic.clone(), partition), offset + 1);
            let outcome = if topic == self.rejects_topic {
                RejectRecord::from_json(payload)
                    .map(|reject| batch.rejects.push(reject))
                    .map_err(|e| format!("not a reject record: {e}"))
            } else {
                let version = version_of(message.timestamp().to_millis(), offset);
                match self.marks {
                    Some(_) => (self.converter.append_keyed(payload, version, &mut rows))
                        .map(|keyed| batch.keyed.push(keyed)),
                    None => self.converter.append(payload, version, &mut rows),
                }
                .map(|()| batch.count += 1)
            };
            if let Err(error) = outcome {
                batch.poison.push(Unstored {
                    topic,
                    partition,
                    offset,
                    error,
                    key: message.key().unwrap_or_default().to_vec(),
                    payload: payload.to_vec(),
                });
            }
        }
        batch.rows = rows.into();
        batch
    }

    /// Inserts the batch's rows and poison, retrying until ClickHouse takes them, then stores
    /// its offsets. False when shutdown came first (nothing stored: the batch is read again).
    async fn write(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut progress = Progress {
            batch_id: self.marks.as_ref().map(Marks::batch_id).unwrap_or_default(),
            hours: None,
            inserted: false,
        };
        loop {
            match self.write_once(batch, &mut progress).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, dataset = %self.name, "Insert failed; retrying.");
                    metrics::counter!(crate::metric::INSERT_FAILURES_TOTAL).increment(1);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_wait()) => {}
                () = shutdown.cancelled() => return false,
            }
        }
        if !batch.poison.is_empty() {
            tracing::warn!(dataset = %self.name, count = batch.poison.len(), "Records the table cannot hold were quarantined and sent to the dead-letter topic.");
            let count = batch.poison.len() as u64;
            metrics::counter!(crate::metric::POISON_MESSAGES_TOTAL).increment(count);
            metrics::counter!(crate::metric::DEAD_LETTERS_TOTAL).increment(count);
        }
        if let Err(error) = self.store_offsets(batch) {
            // Not stored: the batch is read again and lands as the same rows.
            tracing::warn!(%error, dataset = %self.name, "Could not store offsets.");
        }
        true
    }

    /// One attempt: the rows inside the dirty-hours protocol (when there are rollups), then
    /// the rejects, the poison into the quarantine and onto the dead-letter topic (each safe
    /// to repeat: `upload_rejects` keeps a row once, a dead letter may be sent twice).
    async fn write_once(&self, batch: &Batch, progress: &mut Progress) -> Result<(), WriteError> {
        self.write_rows(batch, progress).await?;
        if !batch.rejects.is_empty() {
            insert_rejects(&self.clickhouse, batch.rejects.iter()).await?;
        }
        if !batch.poison.is_empty() {
            let letters = || batch.poison.iter().map(Unstored::letter);
            insert_quarantine(&self.clickhouse, letters()).await?;
            self.dead_letters.send(letters()).await?;
        }
        Ok(())
    }

    async fn write_rows(&self, batch: &Batch, progress: &mut Progress) -> Result<(), WriteError> {
        let Some(marks) = &self.marks else {
            return Ok(self.insert(batch).await?);
        };
        let hours = match &progress.hours {
            Some(hours) => hours,
            None => progress
                .hours
                .insert(self.hours(marks, &batch.keyed).await?),
        };
        if !progress.inserted {
            marks.begin(&progress.batch_id, hours).await?;
            self.insert(batch).await?;
            progress.inserted = true;
        }
        marks.end(&progress.batch_id, hours).await?;
        Ok(())
    }

    /// The hours `keyed` rows fall in and those of every stored version of their records,
    /// sorted: what their insert changes.
    async fn hours(&self, marks: &Marks, keyed: &[Keyed]) -> Result<Vec<u32>, ReplicaError> {
        let mut hours: std::collections::BTreeSet<u32> =
            keyed.iter().map(|k| hour_of(k.seconds)).collect();
        let scales: Vec<u32> = (self.spec.identity.iter())
            .map(|c| self.spec.column(c).and_then(|c| c.scale).unwrap_or(0))
            .collect();
        let read = marks.lookup_begins(&self.clickhouse).await?;
        for chunk in keyed.chunks(KEYS_PER_LOOKUP) {
            let mut lookup = self
                .clickhouse
                .query(&hours_of_keys(&self.spec, chunk.len()));
            for record in chunk {
                for (value, scale) in record.key.iter().zip(&scales) {
                    lookup = bind_key(lookup, value, *scale);
                }
            }
            hours.extend(lookup.fetch_all::<u32>().await?);
        }
        marks.lookup_ends(&self.clickhouse, read).await?;
        Ok(hours.into_iter().collect())
    }

    async fn insert(&self, batch: &Batch) -> Result<(), clickhouse::error::Error> {
        insert_rows(&self.clickhouse, &self.converter, &batch.rows).await
    }

    fn store_offsets(&self, batch: &Batch) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next_offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        self.consumer.store_offsets(&list)
    }
}

/// Adds to `spec`'s versions table the columns the spec appended since the table was made
/// (nullable, or with their default, which the rows already stored take); refuses a table with
/// a column of another type or one the spec lacks. On a cluster each column is added `ON
/// CLUSTER` to every server's `<table>_local`, then the `Distributed` table is made again over
/// them (`migrations::cluster::statements_of`), each where this server lacks it: other
/// services' queries of the table fail for that moment (inserts and the processor's steps are
/// retried; a gateway answers 503).
async fn add_appended_columns(
    clickhouse: &Client,
    spec: &Spec,
    layout: &Layout,
    database: &str,
) -> anyhow::Result<()> {
    let table = spec.versions_table();
    let columns = table_columns(clickhouse, &table).await?;
    for column in missing_columns(spec, &columns)? {
        let (statement, default) = add_column(spec, column);
        // Each table that must have the column, and what adds it there.
        let steps = match layout.cluster() {
            None => vec![(table.clone(), vec![statement])],
            Some(cluster) => {
                let object = Object::AddColumn {
                    table: leak(&table),
                    column: leak(&column.name),
                    shard_by: leak(&by_identity(spec)),
                };
                let mut local = statements_of(&object, &statement, database, cluster);
                let distributed = local.split_off(1);
                vec![
                    (format!("{table}_local"), local),
                    (table.clone(), distributed),
                ]
            }
        };
        let has = |columns: &[(String, String)]| columns.iter().any(|(n, _)| *n == column.name);
        for (target, statements) in steps {
            if has(&table_columns(clickhouse, &target).await?) {
                continue;
            }
            for statement in statements {
                let mut query = clickhouse.query(&statement);
                if let (Some(value), true) = (&default, statement.contains(" ADD COLUMN ")) {
                    query = bind_key(query, value, column.scale.unwrap_or(0));
                }
                let Err(error) = query.execute().await else {
                    continue;
                };
                // Another consumer may have added it meanwhile (18.16 has no `ADD COLUMN IF
                // NOT EXISTS`): the table's columns decide.
                if has(&table_columns(clickhouse, &target).await?) {
                    break;
                }
                return Err(error.into());
            }
            let (dataset, column) = (&spec.name, &column.name);
            tracing::info!(%dataset, %column, %target, "Column added.");
        }
        missing_columns(spec, &table_columns(clickhouse, &table).await?)?;
    }
    Ok(())
}

/// `text`, leaked: what [`Object`] names take (once per column added, at start).
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The columns of `table`: name and type, as ClickHouse describes them.
async fn table_columns(
    clickhouse: &Client,
    table: &str,
) -> Result<Vec<(String, String)>, clickhouse::error::Error> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct TableColumn {
        name: String,
        kind: String,
    }
    let sql = "SELECT name, type FROM system.columns \
               WHERE database = currentDatabase() AND table = ?";
    let columns = (clickhouse.query(sql).bind(table))
        .fetch_all::<TableColumn>()
        .await?;
    Ok(columns.into_iter().map(|c| (c.name, c.kind)).collect())
}

/// A read-committed consumer of `topics` in the dataset's own group; offsets are stored by
/// [`DatasetIngest::write`] and auto-committed.
fn subscribe(config: &Config, name: &str, topics: &[&str]) -> KafkaResult<StreamConsumer> {
    let group = format!("{}.{name}", config.group_id);
    let consumer: StreamConsumer = crate::kafka::group_member(config, &group).create()?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}
