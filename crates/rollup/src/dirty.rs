//! The dirty-hours protocol (docs/PROCESSING.md, "Dirty hours"): which hours of the rollups may
//! differ from their raw rows, kept in Redis under `rollup:{database}:`. Each step is one Lua
//! script, so it is atomic; the scripts are in `lua/`, with a shared prelude.
//!
//! - consumer: [`DirtyHours::begin`] before an insert (its hours, and the hours earlier versions
//!   of its rounds are in), [`DirtyHours::end`] once ClickHouse acknowledged it;
//! - processor: [`DirtyHours::claim`] (a version and hours to recompute), then, once that
//!   version of the hours is published, [`DirtyHours::clear`] — or [`DirtyHours::unclaim`]
//!   when it cannot recompute them yet;
//! - readers: [`DirtyHours::snapshot`] before and after a read (the hours to read from raw
//!   rows, and whether the answer still holds), [`DirtyHours::between`] and
//!   [`DirtyHours::lag`].
//!
//! Invariant: an hour leaves the dirty set only when no batch holds a lease on it, every
//! batch acknowledged on it was acknowledged before the clearing version was drawn — so the
//! published recomputation, begun after that draw, holds its rows — and the clearing version
//! is the hour's latest claim, so no version above a clean hour's published one is written.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};

use crate::spec::{Input, Rollup, GAME_ROUNDS_HOURLY};

/// The Redis keys of one database's dirty hours, in the order every script takes them.
#[derive(Debug, Clone)]
pub struct DirtyHours {
    keys: [String; 9],
}

/// What [`DirtyHours::claim`] handed a processor: the version to recompute under and the hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub version: u64,
    pub hours: Vec<u32>,
}

/// How far behind the processing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Hours in the dirty set.
    pub dirty_hours: u64,
    /// How long the longest-dirty hour has been dirty (zero when none is).
    pub behind: Duration,
}

/// The dirty hours of a range at one moment, and how many clears had emptied hours by then:
/// a reader compares the snapshots before and after its read (see [`Snapshot::still_holds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub clears: u64,
    /// Sorted.
    pub hours: Vec<u32>,
}

impl Snapshot {
    /// Whether an answer that took every hour of `first..=last` but `raw` (sorted) from the
    /// rollup, between `self` and `later`, is exact: no such hour became dirty (a batch that
    /// began meanwhile may already be visible in the raw rows) and no hour was cleared (one
    /// may have been dirtied, written and recomputed meanwhile).
    pub fn still_holds(&self, later: &Snapshot, first: u32, last: u32, raw: &[u32]) -> bool {
        self.clears == later.clears
            && later
                .hours
                .iter()
                .filter(|h| (first..=last).contains(*h))
                .all(|h| raw.binary_search(h).is_ok())
    }
}

impl Snapshot {
    /// Whether buckets `taken` (sorted) from the rollup between `self` and `later` stayed
    /// clean: none of them is dirty `later`, and nothing was cleared meanwhile.
    pub fn still_clean(&self, later: &Snapshot, taken: &[u32]) -> bool {
        self.clears == later.clears && later.hours.iter().all(|b| taken.binary_search(b).is_err())
    }
}

struct Scripts {
    begin: Script,
    end: Script,
    claim: Script,
    clear: Script,
    unclaim: Script,
    lag: Script,
    snapshot: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let with_prelude =
            |body: &str| Script::new(&format!("{}{body}", include_str!("lua/prelude.lua")));
        Scripts {
            begin: with_prelude(include_str!("lua/begin.lua")),
            end: with_prelude(include_str!("lua/end.lua")),
            claim: with_prelude(include_str!("lua/claim.lua")),
            clear: with_prelude(include_str!("lua/clear.lua")),
            unclaim: with_prelude(include_str!("lua/unclaim.lua")),
            lag: with_prelude(include_str!("lua/lag.lua")),
            snapshot: with_prelude(include_str!("lua/snapshot.lua")),
        }
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DirtyHours {
    /// The dirty hours of the rollups of raw rows in ClickHouse database `database`: every
    /// service of one deployment names the same database, so they agree without further
    /// configuration. Keys under `rollup:{database}:`.
    pub fn new(database: &str) -> DirtyHours {
        DirtyHours::under(&format!("rollup:{database}:"))
    }

    /// The dirty buckets of `rollup` in database `database`: for the game rounds' hourly
    /// rollup, the raw rows' hours ([`DirtyHours::new`], the layout from before datasets);
    /// for any other, its own, under `rollup:{database}:{name}:` (each rollup of a dataset's
    /// raw rows has its own set, which the consumer marks, so one processor's clear never
    /// clears another rollup's hour).
    pub fn of(database: &str, rollup: &Rollup) -> DirtyHours {
        match rollup.input {
            Input::Raw(_) if rollup.name == GAME_ROUNDS_HOURLY.name => DirtyHours::new(database),
            _ => DirtyHours::under(&format!("rollup:{database}:{}:", rollup.name)),
        }
    }

    fn under(prefix: &str) -> DirtyHours {
        let key = |name: &str| format!("{prefix}{name}");
        DirtyHours {
            keys: [
                "seq",
                "dirty",
                "marks",
                "pending",
                "pending_count",
                "claims",
                "since",
                "claimed_by",
                "clears",
            ]
            .map(key),
        }
    }

    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation
    }

    /// Before batch `batch` is inserted: `hours` are dirty, and leased to it for `lease`
    /// (longer than an insert can take: a lease that ran out no longer holds its hours).
    pub async fn begin(
        &self,
        connection: &mut impl ConnectionLike,
        batch: &str,
        hours: &[u32],
        lease: Duration,
    ) -> RedisResult<()> {
        if hours.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut invocation = self.invocation(&scripts().begin);
        invocation
            .arg(now)
            .arg(now + lease.as_millis() as u64)
            .arg(batch);
        for hour in hours {
            invocation.arg(*hour);
        }
        invocation.invoke_async::<u64>(connection).await.map(drop)
    }

    /// Batch `batch`'s insert was acknowledged: `hours` get a mark later than every version
    /// drawn so far, and its leases end. Returns the mark.
    pub async fn end(
        &self,
        connection: &mut impl ConnectionLike,
        batch: &str,
        hours: &[u32],
    ) -> RedisResult<u64> {
        let mut invocation = self.invocation(&scripts().end);
        invocation.arg(now_ms()).arg(batch);
        for hour in hours {
            invocation.arg(*hour);
        }
        invocation.invoke_async(connection).await
    }

    /// A new version and up to `max_hours` dirty hours nobody leases or claims, claimed for
    /// `hold`. `floor` is the greatest version already published: the version drawn is above it
    /// even if Redis lost its counter. The hours must be recomputed from one snapshot taken
    /// after this call, under this version, never retried under it.
    pub async fn claim(
        &self,
        connection: &mut impl ConnectionLike,
        max_hours: usize,
        hold: Duration,
        floor: u64,
    ) -> RedisResult<Claim> {
        let now = now_ms();
        let mut invocation = self.invocation(&scripts().claim);
        invocation
            .arg(now)
            .arg(now + hold.as_millis() as u64)
            .arg(max_hours)
            .arg(floor);
        let reply: Vec<u64> = invocation.invoke_async(connection).await?;
        let (version, hours) = reply.split_first().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "claim: empty reply"))
        })?;
        Ok(Claim {
            version: *version,
            hours: hours.iter().map(|h| *h as u32).collect(),
        })
    }

    /// `version` of `hours` is published: each hour leaves the dirty set unless it was leased
    /// or marked after `version` was drawn. Returns how many left.
    pub async fn clear(
        &self,
        connection: &mut impl ConnectionLike,
        version: u64,
        hours: &[u32],
    ) -> RedisResult<u64> {
        let mut invocation = self.invocation(&scripts().clear);
        invocation.arg(version);
        for hour in hours {
            invocation.arg(*hour);
        }
        invocation.invoke_async(connection).await
    }

    /// The claim of `version` on `hours` is given back unused: they stay dirty and the next
    /// claim may take them at once. Returns how many were given back.
    pub async fn unclaim(
        &self,
        connection: &mut impl ConnectionLike,
        version: u64,
        hours: &[u32],
    ) -> RedisResult<u64> {
        let mut invocation = self.invocation(&scripts().unclaim);
        invocation.arg(version);
        for hour in hours {
            invocation.arg(*hour);
        }
        invocation.invoke_async(connection).await
    }

    /// The dirty hours from `first` to `last` (both hours' first seconds, inclusive), in order:
    /// what a reader reads from raw rows.
    pub async fn between(
        &self,
        connection: &mut impl ConnectionLike,
        first: u32,
        last: u32,
    ) -> RedisResult<Vec<u32>> {
        redis::cmd("ZRANGEBYSCORE")
            .arg(&self.keys[1])
            .arg(first)
            .arg(last)
            .query_async(connection)
            .await
    }

    /// The last number drawn from the sequence (0 when Redis holds none: new, or lost).
    pub async fn sequence(&self, connection: &mut impl ConnectionLike) -> RedisResult<u64> {
        let value: Option<u64> = redis::cmd("GET")
            .arg(&self.keys[0])
            .query_async(connection)
            .await?;
        Ok(value.unwrap_or(0))
    }

    /// The dirty hours from `first` to `last` (inclusive) and the clears so far, at one moment.
    pub async fn snapshot(
        &self,
        connection: &mut impl ConnectionLike,
        first: u32,
        last: u32,
    ) -> RedisResult<Snapshot> {
        let mut invocation = self.invocation(&scripts().snapshot);
        invocation.arg(first).arg(last);
        let reply: Vec<u64> = invocation.invoke_async(connection).await?;
        let (clears, hours) = reply.split_first().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "snapshot: empty"))
        })?;
        let mut hours: Vec<u32> = hours.iter().map(|h| *h as u32).collect();
        hours.sort_unstable();
        Ok(Snapshot {
            clears: *clears,
            hours,
        })
    }

    /// How many hours are dirty and for how long the oldest has been.
    pub async fn lag(&self, connection: &mut impl ConnectionLike) -> RedisResult<Lag> {
        let (dirty_hours, since): (u64, u64) = self
            .invocation(&scripts().lag)
            .invoke_async(connection)
            .await?;
        let behind = match since {
            0 => Duration::ZERO,
            since => Duration::from_millis(now_ms().saturating_sub(since)),
        };
        Ok(Lag {
            dirty_hours,
            behind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_holds_unless_an_hour_it_took_from_the_rollup_turned_dirty_or_hours_were_cleared() {
        let before = Snapshot {
            clears: 4,
            hours: vec![3600, 7200],
        };
        let same = before.clone();
        assert!(before.still_holds(&same, 0, 36_000, &[3600, 7200]));
        let dirtied = Snapshot {
            clears: 4,
            hours: vec![3600, 7200, 10_800],
        };
        assert!(!before.still_holds(&dirtied, 0, 36_000, &[3600, 7200]));
        assert!(
            before.still_holds(&dirtied, 0, 36_000, &[3600, 7200, 10_800]),
            "read raw"
        );
        assert!(
            before.still_holds(&dirtied, 0, 7200, &[3600, 7200]),
            "outside the window"
        );
        let cleared = Snapshot {
            clears: 5,
            hours: vec![],
        };
        assert!(!before.still_holds(&cleared, 0, 36_000, &[3600, 7200]));
    }
}
