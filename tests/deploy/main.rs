//! Keeps the deployment files honest without a Docker engine or a cluster: `docker-compose.yml`,
//! `deploy/prometheus`, `deploy/grafana`, `deploy/k8s`, `deploy/clickhouse-cluster` and
//! `config/*.env` are parsed and checked against the services' own `Config` types (field names
//! read from their `Deserialize` impls, values parsed as the services parse them), their
//! defaults, each other, and the metric names the code emits.
//!
//! A new service is one line in [`helpers::services`] (and a `From<Config> for Settings`).
//!
//! # Layout
//! - [`helpers`]: the services' `Config`s as the checks see them, and the files read as YAML.
//! - [`compose`]: `docker-compose.yml`, the image and `config/*.env`.
//! - [`monitoring`]: Prometheus and the Grafana dashboard.
//! - [`k8s`]: the Kubernetes manifests in `deploy/k8s`.
//! - [`clickhouse`]: the sharded ClickHouse layout.

mod clickhouse;
mod compose;
mod helpers;
mod k8s;
mod monitoring;
