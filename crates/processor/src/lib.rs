//! The Sluice processor: keeps the rollups exact (docs/PROCESSING.md). It loops over
//! [`Processor::step`] — claim dirty hours under a new version, recompute them from one snapshot
//! of the raw rows, publish, clear — then does the same for the days the published hours fall
//! in (the daily rollup sums the hourly one), and reports how far behind it is. Any number of
//! instances may run: claims keep them off each other's buckets, and the greatest version wins.
//!
//! # Layout
//! - [`config`]: the one typed `Config`, read from `SLUICE_PROCESSOR_*` variables.
//! - `lib.rs`: [`Application`] (the loop, the lag gauges, `/health`, `/ready`, `/metrics`) and
//!   [`backfill`], which the binary's `backfill` command runs.

pub mod config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use deadpool_redis::{Pool, Runtime};
use secrecy::ExposeSecret;
use sluice_rollup::datasets::EndpointRollups;
use sluice_rollup::dirty::DirtyHours;
use sluice_rollup::process::{CatchUp, ProcessError, Processor};
use sluice_rollup::spec::{Period, Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};
use sluice_schema::migrations::ReadReplicas;
use sluice_schema::telemetry::{answers_in_time, readiness, HealthServer};
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Hours waiting to be processed (gauge).
pub const DIRTY_HOURS: &str = "sluice_processor_dirty_hours";
/// How long the longest-waiting hour has been dirty, in seconds (gauge).
pub const LAG_SECONDS: &str = "sluice_processor_lag_seconds";
/// Hours recomputed and published (counter).
pub const HOURS_PROCESSED: &str = "sluice_processor_hours_processed_total";
/// Days waiting to be summed from their published hours (gauge). Answers never wait for
/// them: a dirty day is read from its hours.
pub const DIRTY_DAYS: &str = "sluice_processor_dirty_days";
/// Days summed from their hours and published (counter).
pub const DAYS_PROCESSED: &str = "sluice_processor_days_processed_total";
/// Steps that failed; their hours are taken again under a new version (counter).
pub const STEP_FAILURES: &str = "sluice_processor_step_failures_total";
/// Steps that gave their hours back because a replica they would read was still fetching
/// rows its peer had acknowledged (counter; a cluster only).
pub const REPLICA_WAITS: &str = "sluice_processor_replica_waits_total";
/// Duration of the steps that recomputed at least one hour (histogram, seconds).
pub const STEP_SECONDS: &str = "sluice_processor_step_seconds";

/// A processor ready to run: migrations applied, listener bound.
pub struct Application {
    server: HealthServer,
    worker: Worker,
}

struct Worker {
    clickhouse: clickhouse::Client,
    redis: Pool,
    /// The game rounds' rollups, then each served dataset's rollup endpoints'.
    chains: Vec<Chain>,
    /// On a cluster, what each step checks before it reads and publishes.
    replicas: Option<ReadReplicas>,
    config: Config,
    running: Arc<AtomicBool>,
}

/// One rollup the worker keeps: its definition, its dirty buckets, and the counter of the
/// buckets it published.
#[derive(Clone)]
struct Level {
    rollup: Rollup,
    dirty: DirtyHours,
    processed: &'static str,
}

impl Level {
    fn of(database: &str, rollup: Rollup) -> Level {
        Level {
            rollup,
            dirty: DirtyHours::of(database, &rollup),
            processed: match rollup.period {
                Period::Hour => HOURS_PROCESSED,
                Period::Day => DAYS_PROCESSED,
            },
        }
    }
}

/// The rollups of one endpoint, finest first: an hourly rollup of raw rows and, when it
/// answers days, the daily rollup its publications feed.
#[derive(Clone)]
struct Chain {
    levels: Vec<Level>,
}

impl Chain {
    fn of(database: &str, rollups: impl IntoIterator<Item = Rollup>) -> Chain {
        let levels = rollups.into_iter().map(|r| Level::of(database, r));
        Chain {
            levels: levels.collect(),
        }
    }
}

/// The chains of `config`: the game rounds' and every served dataset's rollup endpoints',
/// whose tables are created if missing.
async fn chains(config: &Config, clickhouse: &clickhouse::Client) -> anyhow::Result<Vec<Chain>> {
    let database = &config.clickhouse.database;
    let mut chains = vec![Chain::of(database, [GAME_ROUNDS_HOURLY, GAME_ROUNDS_DAILY])];
    let served = config.served_datasets()?;
    let layout = config.clickhouse.layout()?;
    for dataset in &served {
        sluice_rollup::datasets::create_tables(clickhouse, &dataset.spec, &layout, database)
            .await?;
        for (_, rollups) in EndpointRollups::all(&dataset.spec) {
            chains.push(Chain::of(database, rollups.levels()));
        }
    }
    Ok(chains)
}

struct HealthState {
    running: Arc<AtomicBool>,
    clickhouse: clickhouse::Client,
    redis: Pool,
}

/// ClickHouse, with the tables, and the Redis pool of `config`.
async fn connect(config: &Config) -> anyhow::Result<(clickhouse::Client, Pool)> {
    let clickhouse = config.clickhouse.connect().await?;
    let redis = deadpool_redis::Config::from_url(config.redis_url.expose_secret())
        .create_pool(Some(Runtime::Tokio1))?;
    Ok((clickhouse, redis))
}

impl Application {
    /// Applies the ClickHouse migrations and binds the HTTP listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let (clickhouse, redis) = connect(&config).await?;
        let running = Arc::new(AtomicBool::new(false));
        sluice_schema::telemetry::register_counters(&[
            HOURS_PROCESSED,
            DAYS_PROCESSED,
            STEP_FAILURES,
            REPLICA_WAITS,
        ]);
        let state = HealthState {
            running: Arc::clone(&running),
            clickhouse: clickhouse.clone(),
            redis: redis.clone(),
        };
        let server = HealthServer::bind("processor", &config.listen_addr, None, state, ready)?;
        let chains = chains(&config, &clickhouse).await?;
        let replicas = ReadReplicas::of(&config.clickhouse.layout()?, &config.clickhouse.database);
        Ok(Application {
            server,
            worker: Worker {
                clickhouse,
                redis,
                chains,
                replicas,
                config,
                running,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Processes until `shutdown` fires (a step in progress is finished first).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let worker = self.worker;
        let levels = worker.chains.iter().flat_map(|c| c.levels.clone());
        let lag = tokio::spawn(report_lag(
            worker.redis.clone(),
            levels.collect(),
            Duration::from_millis(worker.config.lag_interval_ms),
            shutdown.clone(),
        ));
        self.server
            .serve_while(async {
                worker.run(shutdown).await;
                let _ = lag.await;
            })
            .await
    }
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let mut processors = None;
        self.running.store(true, Ordering::SeqCst);
        while !shutdown.is_cancelled() {
            let wait = match self.step(&mut processors).await {
                Ok(0) => self.config.idle_pause_ms,
                Ok(_) => 0,
                Err(StepError::Process(behind)) if behind.is_replica_behind() => {
                    tracing::info!(error = %behind, "Hours wait for a replica to catch up.");
                    metrics::counter!(REPLICA_WAITS).increment(1);
                    self.config.idle_pause_ms
                }
                Err(error) => {
                    tracing::warn!(%error, "Processing step failed; its hours go to a later one.");
                    metrics::counter!(STEP_FAILURES).increment(1);
                    // The floor is read again: Redis may have lost its counter meanwhile.
                    processors = None;
                    self.config.failure_pause_ms
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
        self.running.store(false, Ordering::SeqCst);
        tracing::info!("Processor stopped.");
    }

    /// Before the first step (and after a failed one): every bucket with input rows is marked
    /// when nothing of a rollup is published yet or Redis lost its data (see
    /// `process::catch_up`).
    async fn catch_up(&self, level: &Level) -> Result<(), StepError> {
        let mut redis = self.redis.get().await?;
        let caught_up = sluice_rollup::process::catch_up(
            &self.clickhouse,
            &mut redis,
            &level.rollup,
            &level.dirty,
        )
        .await?;
        let rollup = level.rollup.name;
        match caught_up {
            Some((CatchUp::NothingPublished, buckets)) => tracing::info!(
                rollup,
                buckets,
                "Nothing published yet: every bucket with rows is marked."
            ),
            Some((CatchUp::RedisLostItsData, buckets)) => tracing::error!(
                rollup,
                buckets,
                "Redis lost the dirty buckets (its sequence is behind the published versions): \
                 every bucket with rows is marked; answers may be stale until they are recomputed."
            ),
            None => {}
        }
        Ok(())
    }

    /// The processors of every chain's levels, caught up; in a chain, each feeds the next.
    async fn processors(&self) -> Result<Vec<Vec<Processor>>, StepError> {
        let hold = Duration::from_millis(self.config.claim_hold_ms);
        let max = self.config.max_hours_per_step;
        let mut chains = Vec::with_capacity(self.chains.len());
        for chain in &self.chains {
            let mut processors: Vec<Processor> = Vec::with_capacity(chain.levels.len());
            for level in &chain.levels {
                self.catch_up(level).await?;
                let dirty = level.dirty.clone();
                let processor = Processor::new(&self.clickhouse, level.rollup, dirty, max, hold);
                let processor = processor
                    .await?
                    .in_statements_of(self.config.rows_per_statement)
                    .reading(self.replicas.clone());
                if let Some(finer) = processors.pop() {
                    processors.push(finer.feeding(level.rollup, level.dirty.clone()));
                }
                processors.push(processor);
            }
            chains.push(processors);
        }
        Ok(chains)
    }

    /// One step of each level of each chain; returns how many buckets they recomputed.
    async fn step(&self, processors: &mut Option<Vec<Vec<Processor>>>) -> Result<usize, StepError> {
        if processors.is_none() {
            *processors = Some(self.processors().await?);
        }
        let processors = processors.as_mut().expect("set above");
        let mut redis = self.redis.get().await?;
        let mut recomputed = 0;
        let levels = self.chains.iter().flat_map(|c| &c.levels);
        for (processor, level) in processors.iter_mut().flatten().zip(levels) {
            let started = Instant::now();
            let step = processor.step(&self.clickhouse, &mut redis).await?;
            if step.hours.is_empty() {
                continue;
            }
            recomputed += step.hours.len();
            let rollup = level.rollup.name;
            metrics::counter!(level.processed, "rollup" => rollup)
                .increment(step.hours.len() as u64);
            metrics::histogram!(STEP_SECONDS, "rollup" => rollup)
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(
                rollup,
                version = step.version,
                buckets = step.hours.len(),
                cleared = step.cleared,
                "Buckets recomputed and published."
            );
        }
        Ok(recomputed)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("Redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
}

/// Refreshes the lag gauges of every level (labelled by rollup) every `every` until
/// `shutdown`: dirty hours and their lag for the hourly rollups, dirty days for the daily ones.
async fn report_lag(redis: Pool, levels: Vec<Level>, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Ok(mut connection) = redis.get().await {
            for level in &levels {
                let Ok(lag) = level.dirty.lag(&mut connection).await else {
                    continue;
                };
                let rollup = level.rollup.name;
                match level.rollup.period {
                    Period::Hour => {
                        metrics::gauge!(DIRTY_HOURS, "rollup" => rollup)
                            .set(lag.dirty_hours as f64);
                        metrics::gauge!(LAG_SECONDS, "rollup" => rollup)
                            .set(lag.behind.as_secs_f64());
                    }
                    Period::Day => {
                        metrics::gauge!(DIRTY_DAYS, "rollup" => rollup).set(lag.dirty_hours as f64)
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Marks every hour from `first` to `last` (inclusive, any second of them) that holds rows
/// dirty in each hourly rollup kept (the game rounds' and the served datasets'), for the
/// running processors to recompute. Idempotent and resumable. Returns the hours marked, summed
/// over the rollups.
pub async fn backfill(config: &Config, first: u32, last: u32) -> anyhow::Result<usize> {
    let (clickhouse, redis) = connect(config).await?;
    let mut connection = redis.get().await?;
    let (first, last) = (sluice_rollup::hour_of(first), sluice_rollup::hour_of(last));
    let mut hours = 0;
    for chain in chains(config, &clickhouse).await? {
        let Level { rollup, dirty, .. } = &chain.levels[0];
        hours += sluice_rollup::process::backfill(
            &clickhouse,
            &mut connection,
            rollup,
            dirty,
            first,
            last,
        )
        .await?;
    }
    Ok(hours)
}

/// Whether Redis answers a PING.
async fn redis_answers(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(mut connection) => redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// Readiness: the loop runs, and ClickHouse and Redis answer within the ready timeout.
async fn ready(state: web::Data<HealthState>) -> HttpResponse {
    let running = state.running.load(Ordering::SeqCst);
    let (clickhouse, redis) = futures::join!(
        answers_in_time(async { state.clickhouse.query("SELECT 1").execute().await.is_ok() }),
        answers_in_time(redis_answers(&state.redis)),
    );
    readiness(running, &[("clickhouse", clickhouse), ("redis", redis)])
}
