//! The consumer's side of the dirty-hours protocol (docs/PROCESSING.md, "Dirty hours"): before a
//! batch's rounds are inserted, the hours they fall in and the hours their earlier versions are
//! in are marked dirty and leased to the batch ([`Marks::begin`]); once ClickHouse acknowledged
//! the insert, the marks are completed ([`Marks::end`]). Until a processor has recomputed those
//! hours, readers take them from raw rows — so a round that moved to another hour is never
//! counted in both, nor in neither.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clickhouse::Client;
use deadpool_redis::{Pool, Runtime};
use rand::Rng;
use secrecy::ExposeSecret;
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::hour_of;
use sluice_rollup::spec::GAME_ROUNDS_HOURLY;
use sluice_schema::dataset::rowbinary::{KeyValue, Keyed};
use sluice_schema::migrations::{ReadReplicas, ReplicaError};

use crate::config::Config;

/// Key ranges per lookup of earlier versions: keeps each statement far below ClickHouse's
/// `max_query_size` (256 KiB) and `max_ast_elements` (50,000).
const RANGES_PER_LOOKUP: usize = 1_000;

/// Why marking failed; the batch's write is retried.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("Redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Marks the hours of this consumer's batches in the dirty sets of the rollups of their rows,
/// under batch ids unique to this process.
pub struct Marks {
    redis: Pool,
    dirty: Vec<DirtyHours>,
    lease: Duration,
    instance: String,
    batches: AtomicU64,
    /// On a cluster, the check that the replicas a lookup reads hold every acknowledged row.
    replicas: Option<ReadReplicas>,
}

impl Marks {
    /// The marks of the database `config` names, in the Redis it names.
    pub fn new(config: &Config) -> anyhow::Result<Marks> {
        let redis = deadpool_redis::Config::from_url(config.redis_url.expose_secret())
            .create_pool(Some(Runtime::Tokio1))?;
        Ok(Marks {
            redis,
            dirty: vec![DirtyHours::new(&config.clickhouse.database)],
            lease: Duration::from_millis(config.mark_lease_ms),
            instance: format!("{:016x}", rand::rng().random::<u64>()),
            batches: AtomicU64::new(0),
            replicas: ReadReplicas::of(&config.clickhouse.layout()?, &config.clickhouse.database)
                .map(|check| check.of_tables(&[GAME_ROUNDS_HOURLY.identity_table()])),
        })
    }

    /// The marks of other rollups' dirty sets (a dataset's), through the same Redis, their
    /// batch ids told apart by `label`.
    /// Its lookups of earlier versions read `identity_table`.
    pub fn of(&self, label: &str, dirty: Vec<DirtyHours>, identity_table: &str) -> Marks {
        Marks {
            redis: self.redis.clone(),
            dirty,
            lease: self.lease,
            instance: format!("{}-{label}", self.instance),
            batches: AtomicU64::new(0),
            replicas: (self.replicas.clone()).map(|check| check.of_tables(&[identity_table])),
        }
    }

    /// A new batch's id: unique across instances and restarts, the name of its leases.
    pub fn batch_id(&self) -> String {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.instance)
    }

    /// Whether Redis answers.
    pub async fn redis_answers(&self) -> bool {
        match self.redis.get().await {
            Ok(mut connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The hours `rounds` fall in and the hours of every stored version of the same rounds,
    /// sorted: what their insert changes. Earlier versions are looked up per player, by the
    /// span of that player's round ids in the batch (never as a list of literal keys).
    pub async fn hours(&self, client: &Client, rounds: &[Keyed]) -> Result<Vec<u32>, ReplicaError> {
        let mut hours: BTreeSet<u32> = rounds.iter().map(|r| hour_of(r.seconds)).collect();
        let spans: Vec<_> = player_spans(rounds).into_iter().collect();
        let read = self.lookup_begins(client).await?;
        for chunk in spans.chunks(RANGES_PER_LOOKUP) {
            let mut lookup = client.query(&GAME_ROUNDS_HOURLY.hours_of_key_ranges(chunk.len()));
            for (user_id, (low, high)) in chunk {
                lookup = lookup.bind(*user_id).bind(*low).bind(*high);
            }
            hours.extend(lookup.fetch_all::<u32>().await?);
        }
        self.lookup_ends(client, read).await?;
        Ok(hours.into_iter().collect())
    }

    /// Before a lookup of stored versions: on a cluster, the replicas it will read, once they
    /// hold every row acknowledged so far; otherwise the batch waits ([`ReplicaError`], its
    /// write is retried). A replica that came back behind its peer would hide an earlier
    /// version written through that peer, and the hour it is in would not be marked.
    pub async fn lookup_begins(
        &self,
        client: &Client,
    ) -> Result<Option<Vec<String>>, ReplicaError> {
        let Some(replicas) = &self.replicas else {
            return Ok(None);
        };
        replicas
            .caught_up_soon(client)
            .await
            .map(Some)
            .inspect_err(waited)
    }

    /// After the lookup [`Marks::lookup_begins`] began: it read those same replicas.
    pub async fn lookup_ends(
        &self,
        client: &Client,
        read: Option<Vec<String>>,
    ) -> Result<(), ReplicaError> {
        match (&self.replicas, read) {
            (Some(replicas), Some(read)) => replicas.still(client, read).await.inspect_err(waited),
            _ => Ok(()),
        }
    }

    /// Before the insert (every attempt): `hours` are dirty and leased to `batch`.
    pub async fn begin(&self, batch: &str, hours: &[u32]) -> Result<(), MarkError> {
        let mut connection = self.redis.get().await?;
        for dirty in &self.dirty {
            dirty
                .begin(&mut connection, batch, hours, self.lease)
                .await?;
        }
        Ok(())
    }

    /// After ClickHouse acknowledged the insert: `hours` are marked later than every version
    /// drawn so far, and `batch`'s leases end.
    pub async fn end(&self, batch: &str, hours: &[u32]) -> Result<(), MarkError> {
        let mut connection = self.redis.get().await?;
        for dirty in &self.dirty {
            dirty.end(&mut connection, batch, hours).await?;
        }
        Ok(())
    }
}

/// Counts a batch write that waits for the replicas a lookup reads.
fn waited(error: &ReplicaError) {
    tracing::info!(%error, "Earlier versions wait for a replica to catch up.");
    metrics::counter!(crate::metric::REPLICA_WAITS).increment(1);
}

/// Each player's lowest and highest round id among `rounds` (keyed by the game_rounds identity,
/// user id then round id).
fn player_spans(rounds: &[Keyed]) -> BTreeMap<&str, (u64, u64)> {
    let mut spans: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for round in rounds {
        let [KeyValue::Text(user_id), KeyValue::Uint(id)] = round.key.as_slice() else {
            unreachable!("the game_rounds identity is (user_id String, game_instance_id UInt64)");
        };
        spans
            .entry(user_id.as_str())
            .and_modify(|(low, high)| (*low, *high) = ((*low).min(*id), (*high).max(*id)))
            .or_insert((*id, *id));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_player_spans_from_their_lowest_to_their_highest_round_id() {
        let round = |user: &str, id: u64| Keyed {
            seconds: 0,
            key: vec![KeyValue::Text(user.into()), KeyValue::Uint(id)],
        };
        let rounds = [round("b", 7), round("a", 3), round("b", 2), round("b", 9)];
        assert_eq!(
            player_spans(&rounds).into_iter().collect::<Vec<_>>(),
            [("a", (3, 3)), ("b", (2, 9))]
        );
    }
}
