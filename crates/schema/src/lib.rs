//! What every Sluice service agrees on: the datasets (game rounds first) and how their records travel.
//!
//! Raw rows become Avro records at the edge through their dataset's plan (parse, don't
//! validate), travel through Kafka as Avro single-object encoded bytes, and land in ClickHouse
//! through the migrations kept here; the consumer converts them to ClickHouse rows by the same
//! spec (`dataset::rowbinary`).
//!
//! # Layout
//! - [`backoff`]: the exponential waits of every retry loop.
//! - [`config`]: how every service reads its settings (`ServiceConfig`), and the ClickHouse
//!   settings they share (`ClickHouseSettings`, feature `clickhouse`).
//! - [`domain`]: value types with private fields and `parse` constructors ([`Money`], [`PlayerId`]).
//! - [`dataset`]: datasets declared in `datasets/<name>.toml`: the spec, checked; the Avro
//!   schema and versions table it generates; its column plan, which every row source (CSV,
//!   JSON, Parquet with feature `parquet`) encodes records with.
//! - [`csv`]: the value parsers every row source shares (`csv::fields`), row and header
//!   errors.
//! - Feature `reference`: the hand-written game-round mappings the plan replaced — `round`
//!   (the `GameRound` struct), `avro` (its single-object codec, reading every schema of
//!   `schemas/`) and the CSV `csv::HeaderMap`. No service enables it: tests use them as an
//!   independent oracle of the plan and the converter, and `cargo xtask bench` as baselines.
//! - [`migrations`]: numbered ClickHouse DDL files from `schemas/clickhouse/`.
//! - [`rejects`]: the rejects topic's JSON record, written by the producer, read by the consumer.
//! - `kafka` (feature `kafka`): topic creation shared by the producer and the consumer.
//! - `docs` (feature `docs`): Swagger UI at `/docs/`, embedded at build time; the OpenAPI
//!   document served, and the operations documents add per dataset (`generic_operation`).
//! - `problem` (feature `docs`): RFC 9457 problem details, for handlers and actix-web's own
//!   refusals.
//! - `telemetry` (feature `telemetry`): tracing and Prometheus set-up shared by the services.

#[cfg(any(test, feature = "reference"))]
pub mod avro;
pub mod backoff;
pub mod config;
pub mod csv;
pub mod dataset;
#[cfg(feature = "docs")]
pub mod docs;
pub mod domain;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod migrations;
#[cfg(feature = "docs")]
pub mod problem;
pub mod rejects;
#[cfg(any(test, feature = "reference"))]
pub mod round;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use domain::{Money, PlayerId};
#[cfg(any(test, feature = "reference"))]
pub use round::GameRound;
