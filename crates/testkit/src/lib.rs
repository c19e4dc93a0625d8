//! Dev-only helpers for Sluice's tests and tools. Tests talk to real servers started by
//! `scripts/dev services`; nothing here fakes them.
//!
//! # Layout
//! - [`stack`]: where the running Kafka, ClickHouse and Redis are (with their credentials), and
//!   the programs `scripts/dev up` runs over them, checked to be reachable.
//! - [`names`]: unique topic, group, database and key-prefix names per test.
//! - [`generate`]: deterministic game-round CSV exports shaped like the real one, with the
//!   exact totals a correct pipeline must report for them.
//! - [`clickhouse`]: a plain HTTP query helper for assertions.
//! - [`fault`]: a TCP relay that cuts and heals the link to a real server.
//! - [`http`]: uploading a CSV to the producer as a client would.
//! - [`kafka`]: topic creation and committed-offset totals for assertions.
//! - [`schemathesis`]: a bounded schemathesis run against a service's OpenAPI document.

pub mod clickhouse;
pub mod fault;
pub mod generate;
pub mod http;
pub mod kafka;
pub mod names;
pub mod rounds;
pub mod schemathesis;
pub mod stack;

pub use names::unique;
pub use stack::{Programs, Stack, StackError};
