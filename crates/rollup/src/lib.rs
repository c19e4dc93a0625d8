//! The processing layer's shared parts (docs/PROCESSING.md): what a rollup is, as data, and the
//! protocol by which the consumer, the processor and the gateway agree on which hours of it are
//! up to date. The consumer marks the hours a batch touches, the processor recomputes dirty
//! hours into the rollup under a version and clears them, the gateway reads dirty hours from
//! raw rows and every other hour from the rollup — so an answer is never short or doubled.
//!
//! # Layout
//! - [`spec`]: a rollup defined as data (group-by columns, bucket, measures) and the SQL it
//!   implies: the current rows of a set of hours and their recomputation under a version.
//! - [`dirty`]: the dirty-hours protocol in Redis (`begin`/`end` by the consumer,
//!   `claim`/`clear` by the processor, `between` and `lag` for readers), one Lua script per step.
//! - [`process`]: one processing step (claim → recompute → publish → clear) and the backfill
//!   that marks existing hours dirty: the core of the processor service.

pub mod dirty;
pub mod process;
pub mod spec;

/// Seconds in the finest bucket (an hour): every mark and claim is per hour.
pub const HOUR_SECONDS: u32 = 3600;

/// The hour `seconds` (since the epoch, UTC) falls in, as its first second.
pub fn hour_of(seconds: u32) -> u32 {
    seconds - seconds % HOUR_SECONDS
}
