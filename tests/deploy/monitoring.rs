//! Prometheus and Grafana: every service scraped, every dashboard query a metric the code emits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;
use sluice_testkit::dashboard;

use crate::helpers::{host_port, read, root, services, str_of, yaml, Compose};

#[test]
fn prometheus_scrapes_every_service_on_its_metrics_port() {
    let compose = Compose::load();
    let config = yaml("deploy/prometheus/prometheus.yml");
    let jobs: BTreeMap<String, &Value> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|job| (str_of(&job["job_name"]), job))
        .collect();
    for service in services() {
        let port = service
            .settings(&compose.environment(service.name))
            .listen_port;
        let job = jobs
            .get(service.name)
            .unwrap_or_else(|| panic!("Prometheus does not scrape {}", service.name));
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        assert_eq!(path, "/metrics", "{}", service.name);
        let mut targets = Vec::new();
        for sd in job["static_configs"].as_sequence().into_iter().flatten() {
            for target in sd["targets"].as_sequence().into_iter().flatten() {
                targets.push(str_of(target));
            }
        }
        for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            assert_eq!(sd["type"].as_str(), Some("A"), "{}", service.name);
            for name in sd["names"].as_sequence().into_iter().flatten() {
                targets.push(format!("{}:{}", str_of(name), str_of(&sd["port"])));
            }
        }
        // Every compose service running the program: the watcher's one per dataset too.
        let mut running: Vec<String> = (compose.running(&service).iter())
            .map(|name| format!("{name}:{port}"))
            .collect();
        targets.sort();
        running.sort();
        assert_eq!(targets, running, "{}: Prometheus targets", service.name);
    }
    // Scaled consumers are found by DNS, every replica, not through one static address.
    assert!(
        jobs["consumer"]["dns_sd_configs"].is_sequence()
            && jobs["consumer"]["static_configs"].is_null(),
        "consumers must be discovered with dns_sd_configs"
    );
    let mounts = compose.service("prometheus")["volumes"].clone();
    assert!(
        serde_norway::to_string(&mounts)
            .unwrap()
            .contains("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml"),
        "compose does not mount deploy/prometheus/prometheus.yml"
    );
}

/// `"sluice_…"` string literals in the services' sources: the metric names they emit.
fn emitted_metric_names() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for crate_dir in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = crate_dir.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut files);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split("\"sluice_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if piece[name.len()..].starts_with('"') {
                names.insert(format!("sluice_{name}"));
            }
        }
    }
    names
}

/// Metric names in a PromQL expression (`sluice_…`), without histogram series suffixes.
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    dashboard::metric_names(expr)
        .into_iter()
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .map_or_else(|| name.clone(), str::to_owned)
        })
        .collect()
}

fn dashboard_exprs() -> Vec<String> {
    dashboard::queries().into_iter().map(|q| q.expr).collect()
}

/// The metric names the Grafana dashboard queries (`tests/metrics.rs` also checks them against
/// a live scrape).
fn dashboard_metric_names() -> BTreeSet<String> {
    dashboard_exprs()
        .iter()
        .flat_map(|e| metric_names_in(e))
        .collect()
}

#[test]
fn the_dashboard_queries_only_metrics_the_code_emits() {
    let emitted = emitted_metric_names();
    // The scan itself works: it finds names we know are emitted.
    for known in [
        "sluice_http_requests_total",
        "sluice_consumer_insert_seconds",
        "sluice_producer_rows_total",
    ] {
        assert!(emitted.contains(known), "the source scan misses {known}");
    }
    let queried = dashboard_metric_names();
    let missing: Vec<_> = queried.difference(&emitted).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nothing emits: {missing:?}"
    );
    // Every required area has a panel.
    let exprs = dashboard_exprs().join("\n");
    for needed in [
        "sluice_producer_rows_total",
        "sluice_consumer_rows_inserted_total",
        "sluice_consumer_lag_messages",
        "sluice_consumer_insert_seconds_bucket",
        "outcome=\"rejected\"",
        "sluice_gateway_credits_charged_total",
        "sluice_gateway_credits_refunded_total",
        "status=~\"5..\"",
    ] {
        assert!(exprs.contains(needed), "no panel queries {needed}");
    }
}

#[test]
fn grafana_is_provisioned_with_the_prometheus_of_compose() {
    let compose = Compose::load();
    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    let (host, port) = host_port(source["url"].as_str().unwrap());
    assert_eq!(host, "prometheus");
    assert!(compose.names().contains(&host));
    assert_eq!(port, 9090);
    let uid = source["uid"].as_str().unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/sluice.json")).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
    }
    let providers = yaml("deploy/grafana/provisioning/dashboards/sluice.yml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let mounts = serde_norway::to_string(&compose.service("grafana")["volumes"]).unwrap();
    assert!(
        mounts.contains(&format!("./deploy/grafana/dashboards:{path}")),
        "Grafana looks for dashboards in {path}, compose mounts them elsewhere: {mounts}"
    );
    assert!(mounts.contains("./deploy/grafana/provisioning:/etc/grafana/provisioning"));
}
