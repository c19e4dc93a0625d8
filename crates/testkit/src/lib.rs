//! Dev-only helpers for Sluice's tests and tools. Tests talk to real servers started by
//! `scripts/dev services`; nothing here fakes them.
//!
//! # Layout
//! - [`stack`]: where the running Kafka, ClickHouse and Redis are (with their credentials), and
//!   the programs `scripts/dev up` runs over them, checked to be reachable.
//! - [`names`]: unique topic, group, database and key-prefix names per test.
//! - [`generate`]: deterministic game-round CSV exports shaped like the real one, with the
//!   exact totals a correct pipeline must report for them.
//! - [`records`]: deterministic files (CSV, JSON Lines) of any dataset, from its spec.
//! - [`services`]: the services' settings over the stack (the variables they read), to start
//!   their binaries or read their `Config` for running them in-process, and a test's own
//!   [`Slice`] of the stack.
//! - [`clickhouse`]: a plain HTTP query helper for assertions.
//! - [`cluster`]: the sharded ClickHouse layout of `scripts/cluster`: its servers, stopping and
//!   starting one.
//! - [`fault`]: a TCP relay that cuts and heals the link to a real server.
//! - [`http`]: uploading a CSV to the producer as a client would, and waiting until it landed.
//! - [`gateway`]: a running gateway over HTTP: keys, answers, and the answer rounds must give.
//! - [`kafka`]: topic creation and committed-offset totals for assertions.
//! - [`rounds`]: rounds written and processed as the consumer and the processor do.
//! - [`dashboard`]: the Grafana dashboard's queries and the metric names in them.
//! - [`schemathesis`]: a bounded schemathesis run against a service's OpenAPI document.
//!
//! This crate depends on no Sluice service (their tests depend on it): it never names their
//! types or starts them itself; its callers do, from the settings it gives.

pub mod clickhouse;
pub mod cluster;
pub mod dashboard;
pub mod fault;
pub mod gateway;
pub mod generate;
pub mod http;
pub mod kafka;
pub mod names;
pub mod records;
pub mod rounds;
pub mod schemathesis;
pub mod services;
pub mod stack;

pub use names::unique;
pub use services::{serve, Settings, Slice};
pub use stack::{Programs, Stack, StackError};
