//! The `sluice` binary against real services: the producer, consumer and gateway run
//! in-process over the stack `scripts/dev services` starts (Kafka, ClickHouse, Redis), each
//! test with its own topic, database and key prefixes, and the built binary is run as a user
//! would, with its settings in the environment.

mod datasets;
mod errors;
mod helpers;
mod keys;
mod query;
mod upload;
