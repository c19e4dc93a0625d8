//! The processing layer's shared parts (docs/PROCESSING.md): what a rollup is, as data, and the
//! protocol by which the consumer, the processor and the gateway agree on which hours of it are
//! up to date. The consumer marks the hours a batch touches, the processor recomputes dirty
//! hours into the rollup under a version and clears them, the gateway reads dirty hours from
//! raw rows and every other hour from the rollup — so an answer is never short or doubled.
//!
//! # Layout
//! - [`spec`]: a rollup defined as data (group-by columns, bucket, measures) and the SQL it
//!   implies: the current rows of a set of hours and their recomputation under a version.
//! - [`datasets`]: the rollups a dataset's spec declares, and the tables they need.
//! - [`dirty`]: the dirty-hours protocol in Redis (`begin`/`end` by the consumer,
//!   `claim`/`clear` by the processor, `between` and `lag` for readers), one Lua script per step.
//! - [`process`]: one processing step (claim → recompute → publish → clear) and the backfill
//!   that marks existing hours dirty: the core of the processor service.

pub mod datasets;
pub mod dirty;
pub mod process;
pub mod spec;

/// Seconds in the finest bucket (an hour): every mark and claim is per hour.
pub const HOUR_SECONDS: u32 = 3600;

/// Seconds in a day bucket (UTC days: ClickHouse runs in UTC).
pub const DAY_SECONDS: u32 = 24 * HOUR_SECONDS;

/// The hour `seconds` (since the epoch, UTC) falls in, as its first second.
pub fn hour_of(seconds: u32) -> u32 {
    seconds - seconds % HOUR_SECONDS
}

/// Bits of a version that hold the message's offset.
const OFFSET_BITS: u32 = 22;

/// The version of a row that came in the Kafka message with timestamp `timestamp_ms` at
/// `offset` (docs/PROCESSING.md): the timestamp in the high bits, the offset's low 22 bits
/// below it. Every version of a round goes through one partition (messages are keyed by
/// player), so a later message has a greater version; a redelivered one the same. A message
/// without a timestamp (or before 1970) counts as timestamp 0: it loses to every timed one.
pub fn version_of(timestamp_ms: Option<i64>, offset: i64) -> u64 {
    let timestamp = timestamp_ms
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(0);
    let offset = u64::try_from(offset).unwrap_or(0) & ((1 << OFFSET_BITS) - 1);
    (timestamp << OFFSET_BITS) | offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_message_of_a_partition_has_a_greater_version() {
        let t = 1_764_000_000_000;
        assert!(version_of(Some(t), 7) < version_of(Some(t), 8));
        assert!(version_of(Some(t), 4_194_303) < version_of(Some(t + 1), 4_194_304));
        assert_eq!(version_of(Some(t), 9), version_of(Some(t), 9));
        assert!(version_of(None, 5) < version_of(Some(1), 0));
    }
}
