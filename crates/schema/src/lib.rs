//! The one record every Sluice service agrees on: a game round.
//!
//! Raw CSV becomes a [`GameRound`] at the edge (parse, don't validate), travels through Kafka as
//! Avro single-object encoded bytes, and lands in ClickHouse through the migrations kept here.
//!
//! # Layout
//! - [`backoff`]: the exponential waits of every retry loop.
//! - [`config`]: how every service reads its settings (`ServiceConfig`), and the ClickHouse
//!   settings they share (`ClickHouseSettings`, feature `clickhouse`).
//! - [`domain`]: value types with private fields and `parse` constructors ([`Money`], [`PlayerId`]).
//! - [`round`]: the [`GameRound`] record itself, the unit that flows through the system.
//! - [`dataset`]: datasets declared in `datasets/<name>.toml` (issue 14's first step: the spec,
//!   checked, and the Avro schema it generates).
//! - [`csv`]: header mapping by name and row parsing with line/column/reason errors.
//! - [`json`]: JSON objects (array elements, JSON Lines) mapped with the same value parsers.
//! - `parquet` (feature `parquet`): Parquet rows mapped by column name, the same way.
//! - [`avro`]: the Avro schema from `schemas/` and the single-object codec on the serde path.
//! - [`migrations`]: numbered ClickHouse DDL files from `schemas/clickhouse/`.
//! - [`rejects`]: the rejects topic's JSON record, written by the producer, read by the consumer.
//! - `kafka` (feature `kafka`): topic creation shared by the producer and the consumer.
//! - `docs` (feature `docs`): Swagger UI at `/docs/`, embedded at build time.
//! - `problem` (feature `docs`): RFC 9457 problem details, for handlers and actix-web's own
//!   refusals.
//! - `telemetry` (feature `telemetry`): tracing and Prometheus set-up shared by the services.

pub mod avro;
pub mod backoff;
pub mod config;
pub mod csv;
pub mod dataset;
#[cfg(feature = "docs")]
pub mod docs;
pub mod domain;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod migrations;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "docs")]
pub mod problem;
pub mod rejects;
pub mod round;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use domain::{Money, PlayerId};
pub use round::GameRound;
