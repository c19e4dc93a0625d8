//! Unique names, so that tests running in parallel (or again) never share state.

use std::sync::atomic::{AtomicU32, Ordering};

/// `prefix_<pid>_<counter>_<random>`: valid as a Kafka topic, consumer group, ClickHouse
/// database and Redis key prefix.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random: u32 = rand::random();
    format!("{prefix}_{}_{counter}_{random:08x}", std::process::id())
}
