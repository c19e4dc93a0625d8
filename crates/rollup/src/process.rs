//! The processor's work, one step at a time: claim dirty hours under a new version, recompute
//! them from one snapshot of the raw rows, publish that version, clear what it covers
//! (docs/PROCESSING.md). A step that fails part-way is never retried under its version: the
//! hours' claim runs out and a later step takes them under a new one, so a half-written version
//! is never the greatest published one.

use std::time::Duration;

use clickhouse::Client;
use redis::aio::ConnectionLike;
use sluice_schema::migrations::{ReadReplicas, ReplicaError};

use crate::dirty::DirtyHours;
use crate::spec::{Part, Rollup};

/// Why a step or a backfill stopped; both are safe to run again.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// On a cluster: a replica the recomputation would read lacks rows its peer acknowledged.
    #[error("{0}")]
    Replicas(#[from] ReplicaError),
}

impl ProcessError {
    /// A replica read is still fetching from its peer: the hours wait, nothing failed.
    pub fn is_replica_behind(&self) -> bool {
        matches!(self, ProcessError::Replicas(ReplicaError::Behind { .. }))
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The version the hours were recomputed under (drawn even when no hour was claimed).
    pub version: u64,
    /// The hours recomputed and published.
    pub hours: Vec<u32>,
    /// How many of them left the dirty set (the others were marked again meanwhile).
    pub cleared: u64,
}

/// Processes one rollup.
#[derive(Debug, Clone)]
pub struct Processor {
    rollup: Rollup,
    dirty: DirtyHours,
    /// The rollup computed from this one's published buckets, and its dirty buckets.
    coarser: Option<(Rollup, DirtyHours)>,
    /// Hours recomputed per step, at most.
    max_hours: usize,
    /// How long a claim keeps other processors off its hours: longer than a step takes.
    hold: Duration,
    /// The greatest version known to be published: versions drawn stay above it.
    floor: u64,
    /// Input rows one statement recomputes, at most (about: parts split by hash).
    rows_per_statement: u64,
    /// On a cluster, the check that the replicas read hold every acknowledged row.
    replicas: Option<ReadReplicas>,
}

/// Input rows one recomputation statement takes by default: an hour's identity lookup holds
/// its keys in memory, and at about 12 M rows it passed a 3.7 GiB query limit (measured on
/// ClickHouse 18.16 here, `bench freshness`); two million stay far below it.
pub const ROWS_PER_STATEMENT: u64 = 2_000_000;

impl Processor {
    /// A processor of `rollup` in `client`'s database, whose dirty hours are `dirty`.
    pub async fn new(
        client: &Client,
        rollup: Rollup,
        dirty: DirtyHours,
        max_hours: usize,
        hold: Duration,
    ) -> Result<Processor, ProcessError> {
        let floor = client
            .query(&rollup.greatest_published())
            .fetch_one()
            .await?;
        Ok(Processor {
            rollup,
            dirty,
            coarser: None,
            max_hours,
            hold,
            floor,
            rows_per_statement: ROWS_PER_STATEMENT,
            replicas: None,
        })
    }

    /// Recomputes at most about `rows` input rows per statement (at least one): buckets
    /// holding more are recomputed in parts (see [`Part`]).
    pub fn in_statements_of(mut self, rows: u64) -> Processor {
        self.rows_per_statement = rows.max(1);
        self
    }

    /// Reads a cluster's replicas: each step recomputes only once `replicas` says the
    /// replicas it reads hold every row acknowledged before its version was drawn, and
    /// publishes only when they are still the ones read afterwards. A replica still fetching
    /// from its peer (back from an outage, or its peer holding rows it took meanwhile) would
    /// otherwise make a published bucket miss rows until it is dirty again.
    pub fn reading(mut self, replicas: Option<ReadReplicas>) -> Processor {
        self.replicas = replicas;
        self
    }

    /// The dirty buckets of the rollup it processes.
    pub fn dirty(&self) -> &DirtyHours {
        &self.dirty
    }

    /// This rollup's publications change `coarser`'s input: each step marks the buckets of
    /// `coarser` its buckets fall in, in `dirty` (`coarser`'s), around the publication — as a
    /// consumer marks hours around an insert — so `coarser` follows exactly.
    pub fn feeding(mut self, coarser: Rollup, dirty: DirtyHours) -> Processor {
        self.coarser = Some((coarser, dirty));
        self
    }

    /// One step: claim, recompute, publish (marking the coarser rollup's buckets around it),
    /// clear. An empty step (nothing claimable) costs one script call.
    pub async fn step(
        &mut self,
        client: &Client,
        redis: &mut impl ConnectionLike,
    ) -> Result<Step, ProcessError> {
        let claim = self
            .dirty
            .claim(redis, self.max_hours, self.hold, self.floor)
            .await?;
        let mut step = Step {
            version: claim.version,
            hours: claim.hours,
            cleared: 0,
        };
        if step.hours.is_empty() {
            return Ok(step);
        }
        let read = self.replicas_caught_up(client, redis, &step).await?;
        self.recompute(client, &step).await?;
        if let (Some(replicas), Some(read)) = (&self.replicas, read) {
            // Given back at once, as before the recomputation: held, the hours would wait
            // for the claim to run out.
            if let Err(error) = replicas.still(client, read).await {
                self.dirty.unclaim(redis, step.version, &step.hours).await?;
                return Err(error.into());
            }
        }
        self.publish(client, redis, &step).await?;
        self.floor = self.floor.max(step.version);
        step.cleared = self.dirty.clear(redis, step.version, &step.hours).await?;
        Ok(step)
    }
}

impl Processor {
    /// The replicas the recomputation will read (none on one server), once they hold every
    /// row acknowledged before `step`'s version was drawn; else its claim is given back.
    async fn replicas_caught_up(
        &self,
        client: &Client,
        redis: &mut impl ConnectionLike,
        step: &Step,
    ) -> Result<Option<Vec<String>>, ProcessError> {
        let Some(replicas) = &self.replicas else {
            return Ok(None);
        };
        // Behind for a moment after every insert (the previous step's publication, say) is
        // asked again; one still fetching its peer's parts gives the claim back.
        match replicas.caught_up_soon(client).await {
            Ok(read) => Ok(Some(read)),
            Err(behind) => {
                self.dirty.unclaim(redis, step.version, &step.hours).await?;
                Err(behind.into())
            }
        }
    }

    /// Recomputes `step`'s buckets under its version, in as many parts as their input rows
    /// need; each part's snapshot is taken after the version was drawn.
    async fn recompute(&self, client: &Client, step: &Step) -> Result<(), ProcessError> {
        let rows: u64 = (client.query(&self.rollup.input_rows(&step.hours)))
            .fetch_one()
            .await?;
        let parts = rows
            .div_ceil(self.rows_per_statement)
            .clamp(1, u64::from(u32::MAX));
        for part in Part::all(parts as u32) {
            let sql = self.rollup.recompute(&step.hours, step.version, part);
            client.query(&sql).execute().await?;
        }
        Ok(())
    }

    /// Publishes `step`'s buckets; the coarser rollup's buckets they fall in are dirty before
    /// and marked after (a lease that runs out if this processor dies in between leaves them
    /// dirty, and a later claim recomputes them).
    async fn publish(
        &self,
        client: &Client,
        redis: &mut impl ConnectionLike,
        step: &Step,
    ) -> Result<(), ProcessError> {
        let publish = self.rollup.publish(&step.hours, step.version);
        let Some((coarser, dirty)) = &self.coarser else {
            return Ok(client.query(&publish).execute().await?);
        };
        let mut buckets: Vec<u32> = step
            .hours
            .iter()
            .map(|b| coarser.period.start(*b))
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        let batch = format!("{}:{}", self.rollup.name, step.version);
        dirty.begin(redis, &batch, &buckets, self.hold).await?;
        client.query(&publish).execute().await?;
        dirty.end(redis, &batch, &buckets).await?;
        Ok(())
    }
}

/// Why [`catch_up`] marked every hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing was ever published: a new deployment, or one upgraded from before the rollups,
    /// whose rows no consumer marked.
    NothingPublished,
    /// Redis's sequence is behind the published versions: Redis lost its data, and with it
    /// the hours that were dirty.
    RedisLostItsData,
}

/// At a processor's start: when nothing is published yet, or Redis lost its data, marks every
/// hour that holds rows dirty (a full [`backfill`]), so no hour is left out of the rollup.
/// Returns why, and how many hours, when it did.
pub async fn catch_up(
    client: &Client,
    redis: &mut impl ConnectionLike,
    rollup: &Rollup,
    dirty: &DirtyHours,
) -> Result<Option<(CatchUp, usize)>, ProcessError> {
    let published: u64 = client
        .query(&rollup.greatest_published())
        .fetch_one()
        .await?;
    let reason = if published == 0 {
        CatchUp::NothingPublished
    } else if dirty.sequence(redis).await? < published {
        CatchUp::RedisLostItsData
    } else {
        return Ok(None);
    };
    let last = rollup.period.start(u32::MAX - rollup.period.seconds());
    let hours = backfill(client, redis, rollup, dirty, 0, last).await?;
    Ok(Some((reason, hours)))
}

/// Marks every bucket from `first` to `last` (inclusive, first seconds) that holds input rows
/// dirty, so the processors recompute it: after a restore, or for rows written before the
/// processing layer. Idempotent and resumable (marking twice is marking once). Returns how
/// many buckets.
pub async fn backfill(
    client: &Client,
    redis: &mut impl ConnectionLike,
    rollup: &Rollup,
    dirty: &DirtyHours,
    first: u32,
    last: u32,
) -> Result<usize, ProcessError> {
    let hours: Vec<u32> = client
        .query(&rollup.buckets_with_rows(first, last))
        .fetch_all()
        .await?;
    for chunk in hours.chunks(1_000) {
        dirty.end(redis, "backfill", chunk).await?;
    }
    Ok(hours.len())
}
