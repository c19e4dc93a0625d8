//! Keeps the deployment files honest without a Docker engine or a cluster: `docker-compose.yml`,
//! `deploy/prometheus`, `deploy/grafana`, `deploy/k8s`, `deploy/clickhouse-cluster` and
//! `config/*.env` are parsed and checked against the services' own `Config` types (field names
//! read from their `Deserialize` impls, values parsed as the services parse them), their
//! defaults, each other, and the metric names the code emits.
//!
//! A new service is one line in [`services`] (and a `From<Config> for Settings`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_norway::Value;

/// What the checks need to know of one service's configuration.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    listen_port: u16,
    kafka_brokers: Option<String>,
    topic: Option<String>,
    topic_partitions: Option<i32>,
    redis_url: Option<String>,
    clickhouse_url: Option<String>,
}

impl From<sluice_producer::Config> for Settings {
    fn from(c: sluice_producer::Config) -> Settings {
        Settings {
            listen_port: port_of(&c.listen_addr),
            kafka_brokers: Some(c.kafka_brokers),
            topic: Some(c.topic),
            topic_partitions: Some(c.topic_partitions),
            redis_url: Some(c.redis_url),
            clickhouse_url: Some(c.clickhouse_url),
        }
    }
}

impl From<sluice_consumer::Config> for Settings {
    fn from(c: sluice_consumer::Config) -> Settings {
        Settings {
            listen_port: port_of(&c.listen_addr),
            kafka_brokers: Some(c.kafka_brokers),
            topic: Some(c.topic),
            topic_partitions: Some(c.topic_partitions),
            redis_url: None,
            clickhouse_url: Some(c.clickhouse_url),
        }
    }
}

impl From<sluice_watcher::Config> for Settings {
    fn from(c: sluice_watcher::Config) -> Settings {
        Settings {
            listen_port: port_of(&c.listen_addr),
            kafka_brokers: Some(c.kafka_brokers),
            topic: Some(c.topic),
            topic_partitions: Some(c.topic_partitions),
            redis_url: Some(c.redis_url),
            clickhouse_url: None,
        }
    }
}

impl From<sluice_gateway::Config> for Settings {
    fn from(c: sluice_gateway::Config) -> Settings {
        Settings {
            listen_port: port_of(&c.listen_addr),
            kafka_brokers: None,
            topic: None,
            topic_partitions: None,
            redis_url: Some(c.redis_url),
            clickhouse_url: Some(c.clickhouse_url),
        }
    }
}

/// One Sluice program: its compose/k8s name, its variables' prefix, its `Config`'s fields and
/// how its `Config` reads an environment.
impl From<sluice_processor::Config> for Settings {
    fn from(c: sluice_processor::Config) -> Settings {
        use secrecy::ExposeSecret;
        Settings {
            listen_port: port_of(&c.listen_addr),
            kafka_brokers: None,
            topic: None,
            topic_partitions: None,
            redis_url: Some(c.redis_url.expose_secret().to_owned()),
            clickhouse_url: Some(c.clickhouse_url),
        }
    }
}

struct Service {
    name: &'static str,
    prefix: &'static str,
    fields: &'static [&'static str],
    parse: fn(&'static str, &BTreeMap<String, String>) -> Result<Settings, String>,
}

impl Service {
    fn of<C>(name: &'static str, prefix: &'static str) -> Service
    where
        C: DeserializeOwned + Into<Settings>,
    {
        fn parse<C: DeserializeOwned + Into<Settings>>(
            prefix: &'static str,
            env: &BTreeMap<String, String>,
        ) -> Result<Settings, String> {
            envy::prefixed(prefix)
                .from_iter::<_, C>(env.clone())
                .map(Into::into)
                .map_err(|e| e.to_string())
        }
        Service {
            name,
            prefix,
            fields: serde_aux::serde_introspection::serde_introspect::<C>(),
            parse: parse::<C>,
        }
    }

    fn settings(&self, env: &BTreeMap<String, String>) -> Settings {
        (self.parse)(self.prefix, env)
            .unwrap_or_else(|e| panic!("{}: the environment does not parse: {e}", self.name))
    }

    /// The defaults (plus what the service requires to start at all).
    fn defaults(&self) -> Settings {
        let required = BTreeMap::from([(
            "SLUICE_GATEWAY_ADMIN_TOKEN".to_owned(),
            "0123456789abcdef".to_owned(),
        )]);
        self.settings(&required)
    }

    /// The variable names this service reads, e.g. `SLUICE_GATEWAY_ADMIN_TOKEN`.
    fn variables(&self) -> BTreeSet<String> {
        self.fields
            .iter()
            .map(|f| format!("{}{}", self.prefix, f.to_uppercase()))
            .collect()
    }

    /// Problems with one variable name set for this service.
    fn check_variable(&self, variable: &str) -> Option<String> {
        if GLOBAL_VARIABLES.contains(&variable) || !variable.starts_with("SLUICE_") {
            return None;
        }
        if self.variables().contains(variable) {
            None
        } else {
            Some(format!(
                "{}: `{variable}` is not a field of its Config (fields: {:?})",
                self.name, self.fields
            ))
        }
    }
}

/// Every program that reads `SLUICE_<NAME>_*` variables. Adding one is one line here.
fn services() -> Vec<Service> {
    vec![
        Service::of::<sluice_producer::Config>("producer", "SLUICE_PRODUCER_"),
        Service::of::<sluice_consumer::Config>("consumer", "SLUICE_CONSUMER_"),
        Service::of::<sluice_gateway::Config>("gateway", "SLUICE_GATEWAY_"),
        Service::of::<sluice_watcher::Config>("watcher", "SLUICE_WATCHER_"),
        Service::of::<sluice_processor::Config>("processor", "SLUICE_PROCESSOR_"),
    ]
}

/// Read by every service (`sluice_schema::telemetry`), not by a Config.
const GLOBAL_VARIABLES: &[&str] = &["SLUICE_LOG_FORMAT"];

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` has no port"))
}

/// `scheme://[user:password@]host:port/…` or `host:port` → (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").last().unwrap();
    let authority = rest.split('/').next().unwrap();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("`{url}` names no port"));
    (host.to_owned(), port.parse().unwrap())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    let mut value: Value =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().unwrap();
    value
}

fn yaml_documents(path: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(path))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn str_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Compose interpolation as Docker does it with VAR unset: `${VAR:-default}` is the default;
/// `${VAR:?message}` (required: compose refuses to start) stands for a value set by the user,
/// here `set-by-VAR`.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let inner = &rest[start + 2..end];
        if let Some((variable, _)) = inner.split_once(":?") {
            out.push_str(&format!("set-by-{variable}"));
        } else {
            out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

struct Compose {
    services: serde_norway::Mapping,
}

impl Compose {
    fn load() -> Compose {
        let file = yaml("docker-compose.yml");
        Compose {
            services: file["services"].as_mapping().expect("services").clone(),
        }
    }

    fn service(&self, name: &str) -> &Value {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
    }

    fn names(&self) -> BTreeSet<String> {
        self.services.keys().map(str_of).collect()
    }

    fn environment(&self, name: &str) -> BTreeMap<String, String> {
        self.raw_environment(name)
            .into_iter()
            .map(|(k, v)| (k, interpolate(&v)))
            .collect()
    }

    /// The environment as written, `${…}` not interpolated.
    fn raw_environment(&self, name: &str) -> BTreeMap<String, String> {
        match &self.service(name)["environment"] {
            Value::Mapping(map) => map.iter().map(|(k, v)| (str_of(k), str_of(v))).collect(),
            Value::Sequence(list) => list
                .iter()
                .map(|item| {
                    let item = str_of(item);
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
            Value::Null => BTreeMap::new(),
            other => panic!("{name}: odd environment {other:?}"),
        }
    }

    /// Container ports published on the host (`"host:container"`).
    fn published_ports(&self, name: &str) -> Vec<(u16, u16)> {
        self.service(name)["ports"]
            .as_sequence()
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        let p = str_of(p);
                        let (host, container) = p.rsplit_once(':').expect("host:container");
                        (host.parse().unwrap(), container.parse().unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn compose_environment_is_what_each_config_reads() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for service in services() {
        let env = compose.environment(service.name);
        assert!(!env.is_empty(), "{}: no environment", service.name);
        for variable in env.keys() {
            problems.extend(service.check_variable(variable));
        }
        // Values parse as the service parses them (types, required fields).
        (service.parse)(service.prefix, &env).unwrap_or_else(|e| panic!("{}: {e}", service.name));
        let command = compose.service(service.name)["command"]
            .as_sequence()
            .map(|c| str_of(&c[0]));
        assert_eq!(
            command.as_deref(),
            Some(format!("sluice-{}", service.name).as_str()),
            "{}: runs the wrong program",
            service.name
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_image_builds_every_program_compose_runs() {
    let dockerfile = read("deploy/Dockerfile");
    for service in services() {
        let binary = format!("sluice-{}", service.name);
        assert!(
            dockerfile.contains(&format!("-p {binary}")),
            "deploy/Dockerfile does not build {binary}"
        );
        assert!(
            dockerfile.contains(&format!("/target/release/{binary}")),
            "deploy/Dockerfile does not copy {binary}"
        );
    }
}

#[test]
fn compose_ports_topics_and_urls_agree_with_the_defaults_and_each_other() {
    let compose = Compose::load();
    let names = compose.names();
    let mut brokers = BTreeSet::new();
    let mut topics = BTreeSet::new();
    let mut partitions = BTreeSet::new();
    for service in services() {
        let defaults = service.defaults();
        let settings = service.settings(&compose.environment(service.name));
        // The listen port is the default one: documentation, probes and scrapers agree.
        assert_eq!(
            settings.listen_port, defaults.listen_port,
            "{}: listens on another port than its default",
            service.name
        );
        for (_, container) in compose.published_ports(service.name) {
            assert_eq!(
                container, settings.listen_port,
                "{}: publishes a port it does not listen on",
                service.name
            );
        }
        let health = compose.service(service.name)["healthcheck"]["test"]
            .as_sequence()
            .map(|t| t.iter().map(str_of).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        assert!(
            health.contains(&format!("localhost:{}/health", settings.listen_port)),
            "{}: healthcheck `{health}` is not its /health",
            service.name
        );
        if let Some(url) = &settings.kafka_brokers {
            let (host, port) = host_port(url);
            assert!(
                names.contains(&host),
                "{}: no Kafka at `{host}`",
                service.name
            );
            let advertised = &compose.environment("kafka")["KAFKA_ADVERTISED_LISTENERS"];
            assert!(
                advertised.contains(&format!("{host}:{port}")),
                "{}: Kafka advertises {advertised}, not {url}",
                service.name
            );
            brokers.insert(url.clone());
        }
        if let Some(url) = &settings.clickhouse_url {
            let (host, port) = host_port(url);
            assert_eq!(host, "clickhouse", "{}: ClickHouse URL {url}", service.name);
            let (_, default_port) = host_port(defaults.clickhouse_url.as_ref().unwrap());
            assert_eq!(port, default_port, "{}: ClickHouse HTTP port", service.name);
        }
        if let Some(url) = &settings.redis_url {
            let (host, port) = host_port(url);
            assert_eq!(host, "redis", "{}: Redis URL {url}", service.name);
            let (_, default_port) = host_port(defaults.redis_url.as_ref().unwrap());
            assert_eq!(port, default_port, "{}: Redis port", service.name);
        }
        if let Some(topic) = &settings.topic {
            assert_eq!(
                Some(topic),
                defaults.topic.as_ref(),
                "{}: topic",
                service.name
            );
            topics.insert(topic.clone());
        }
        partitions.extend(settings.topic_partitions);
        for dependency in compose.service(service.name)["depends_on"]
            .as_mapping()
            .map(|m| m.keys().map(str_of).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(
                names.contains(&dependency),
                "{}: depends on {dependency}",
                service.name
            );
        }
    }
    assert_eq!(brokers.len(), 1, "services disagree on Kafka: {brokers:?}");
    assert_eq!(
        topics.len(),
        1,
        "producer and consumer disagree on the topic: {topics:?}"
    );
    assert_eq!(
        partitions.len(),
        1,
        "services create the topic with different partitions: {partitions:?}"
    );
    let partitions = partitions.into_iter().next().unwrap();
    assert!(
        partitions >= 3,
        "`--scale consumer=3` needs at least 3 partitions, the topic gets {partitions}"
    );
}

#[test]
fn consumers_can_be_scaled() {
    let compose = Compose::load();
    let consumer = compose.service("consumer");
    assert!(
        consumer["container_name"].is_null(),
        "a fixed container_name stops --scale"
    );
    assert!(
        compose.published_ports("consumer").is_empty(),
        "a fixed host port stops --scale"
    );
    let group = &compose.environment("consumer")["SLUICE_CONSUMER_GROUP_ID"];
    assert!(
        !group.contains("${"),
        "every replica must join one group, not {group}"
    );
}

#[test]
fn every_file_compose_mounts_exists() {
    let compose = Compose::load();
    for name in compose.names() {
        for volume in compose.service(&name)["volumes"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
        {
            let volume = str_of(&volume);
            if let Some(path) = volume.strip_prefix("./") {
                let path = path.split(':').next().unwrap();
                assert!(
                    root().join(path).exists(),
                    "{name}: mounts missing ./{path}"
                );
            }
        }
    }
}

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
        assert_eq!(
            targets,
            vec![format!("{}:{port}", service.name)],
            "{}: Prometheus targets",
            service.name
        );
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
    let mut names = BTreeSet::new();
    for piece in expr.split("sluice_").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = format!("sluice_{name}");
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        names.insert(base);
    }
    names
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/sluice.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
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

/// Variables named in an env file, commented-out examples included.
fn env_file_variables(path: &str) -> Vec<String> {
    read(path)
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn config_env_files_document_exactly_the_config_fields() {
    let mut problems = Vec::new();
    for service in services() {
        let path = format!("config/{}.env", service.name);
        let documented = env_file_variables(&path);
        for variable in &documented {
            if variable == "RUST_LOG" {
                continue;
            }
            problems.extend(
                service
                    .check_variable(variable)
                    .map(|p| format!("{path}: {p}")),
            );
            if variable.starts_with("SLUICE_")
                && !variable.starts_with(service.prefix)
                && !GLOBAL_VARIABLES.contains(&variable.as_str())
            {
                problems.push(format!("{path}: `{variable}` belongs to another service"));
            }
        }
        for variable in service.variables() {
            if !documented.contains(&variable) {
                problems.push(format!("{path}: `{variable}` is not documented"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every k8s object in `deploy/k8s/`, by kind and name.
fn k8s_objects() -> Vec<Value> {
    let kustomization = yaml("deploy/k8s/kustomization.yaml");
    kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .flat_map(|file| yaml_documents(&format!("deploy/k8s/{}", str_of(file))))
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
}

/// Kubernetes' dependent variables: `$(NAME)` in an `env` value is NAME's value when NAME was
/// defined before it (`$$` escapes a `$`).
fn expand_k8s(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find(')').expect("unclosed $(") + start;
        let name = &rest[start + 2..end];
        match env.get(name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[start..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The container of workload `sluice-<name>` in `deploy/k8s/`.
fn k8s_container<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    let workload = find(objects, "Deployment", name)
        .or_else(|| find(objects, "StatefulSet", name))
        .unwrap_or_else(|| panic!("deploy/k8s has no workload {name}"));
    &workload["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn compose_gives_every_service_the_store_passwords_and_none_a_default() {
    let compose = Compose::load();
    let required = |value: &str, variable: &str| value.contains(&format!("${{{variable}:?"));
    let mut problems = Vec::new();
    for service in services() {
        let env = compose.raw_environment(service.name);
        let variables = service.variables();
        let password = format!("{}CLICKHOUSE_PASSWORD", service.prefix);
        // Every service that reads ClickHouse (its URL is set) logs in with the password.
        if env.contains_key(&format!("{}CLICKHOUSE_URL", service.prefix)) {
            let value = env.get(&password).map(String::as_str).unwrap_or("");
            if !required(value, "SLUICE_CLICKHOUSE_PASSWORD") {
                problems.push(format!(
                    "{}: {password} is `{value}`, not the required ${{SLUICE_CLICKHOUSE_PASSWORD:?…}}",
                    service.name
                ));
            }
            let user = format!("{}CLICKHOUSE_USER", service.prefix);
            if env.get(&user).map(String::as_str) != Some("sluice") {
                problems.push(format!("{}: {user} is not `sluice`", service.name));
            }
        }
        let redis = format!("{}REDIS_URL", service.prefix);
        if variables.contains(&redis) {
            let value = env.get(&redis).map(String::as_str).unwrap_or("");
            let user_info = value.rsplit_once('@').map_or("", |(u, _)| u);
            if !required(user_info, "SLUICE_REDIS_PASSWORD") {
                problems.push(format!(
                    "{}: {redis} `{value}` carries no required ${{SLUICE_REDIS_PASSWORD:?…}}",
                    service.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // The servers take exactly those passwords, and have no user without one.
    let clickhouse = compose.raw_environment("clickhouse");
    assert!(required(
        &clickhouse["SLUICE_CLICKHOUSE_PASSWORD"],
        "SLUICE_CLICKHOUSE_PASSWORD"
    ));
    let users = read("deploy/clickhouse/users.d/sluice.xml");
    assert!(users.contains(r#"<default remove="remove"/>"#), "{users}");
    assert!(
        users.contains(r#"<sluice>"#)
            && users.contains(r#"<password from_env="SLUICE_CLICKHOUSE_PASSWORD"/>"#),
        "{users}"
    );
    let redis = compose.raw_environment("redis");
    assert!(required(&redis["REDIS_PASSWORD"], "SLUICE_REDIS_PASSWORD"));
    let command = serde_norway::to_string(&compose.service("redis")["command"]).unwrap();
    assert!(command.contains("requirepass"), "{command}");
    let health = serde_norway::to_string(&compose.service("redis")["healthcheck"]).unwrap();
    assert!(health.contains("REDISCLI_AUTH"), "{health}");
}

#[test]
fn k8s_passwords_come_from_the_secret_and_no_config_map_holds_one() {
    let objects = k8s_objects();
    let mut problems = Vec::new();
    for object in objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("ConfigMap"))
    {
        for (key, value) in object["data"].as_mapping().unwrap() {
            let (key, value) = (str_of(key), str_of(value));
            if ["PASSWORD", "TOKEN", "SECRET"]
                .iter()
                .any(|s| key.contains(s))
                || value
                    .split_once("://")
                    .is_some_and(|(_, r)| r.split('/').next().unwrap_or("").contains('@'))
            {
                problems.push(format!("ConfigMap {key} holds a secret"));
            }
        }
    }
    for service in services() {
        let name = format!("sluice-{}", service.name);
        let container = k8s_container(&objects, &name);
        let env: BTreeMap<String, &Value> = container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|var| (str_of(&var["name"]), var))
            .collect();
        let from_secret = |variable: &str| {
            env.get(variable).is_some_and(|var| {
                var["valueFrom"]["secretKeyRef"]["name"].as_str() == Some("sluice-secrets")
            })
        };
        let password = format!("{}CLICKHOUSE_PASSWORD", service.prefix);
        if service.variables().contains(&password) && !from_secret(&password) {
            problems.push(format!("{name}: {password} is not from the Secret"));
        }
        let redis = format!("{}REDIS_URL", service.prefix);
        if service.variables().contains(&redis) {
            let url = env
                .get(&redis)
                .map(|v| str_of(&v["value"]))
                .unwrap_or_default();
            if !(from_secret("REDIS_PASSWORD") && url.contains(":$(REDIS_PASSWORD)@")) {
                problems.push(format!(
                    "{name}: {redis} `{url}` is not built from REDIS_PASSWORD in the Secret"
                ));
            }
            let position = |v: &str| {
                container["env"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .position(|var| str_of(&var["name"]) == v)
            };
            assert!(
                position("REDIS_PASSWORD") < position(&redis),
                "{name}: $(REDIS_PASSWORD) expands only after REDIS_PASSWORD is defined"
            );
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn k8s_workloads_read_only_their_config_and_probe_their_listen_port() {
    let objects = k8s_objects();
    let mut problems = Vec::new();
    for service in services() {
        let name = format!("sluice-{}", service.name);
        let workload = find(&objects, "Deployment", &name)
            .or_else(|| find(&objects, "StatefulSet", &name))
            .unwrap_or_else(|| panic!("deploy/k8s has no workload {name}"));
        let container = &workload["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["command"][0].as_str(),
            Some(name.as_str()),
            "{name}: runs the wrong program"
        );
        // The environment as the pod sees it: ConfigMaps, then env (secrets as placeholders).
        let mut env = BTreeMap::new();
        for source in container["envFrom"].as_sequence().into_iter().flatten() {
            let map_name = source["configMapRef"]["name"]
                .as_str()
                .expect("configMapRef");
            let map = find(&objects, "ConfigMap", map_name)
                .unwrap_or_else(|| panic!("{name}: no ConfigMap {map_name}"));
            for (k, v) in map["data"].as_mapping().unwrap() {
                env.insert(str_of(k), str_of(v));
            }
        }
        for var in container["env"].as_sequence().into_iter().flatten() {
            let key = str_of(&var["name"]);
            let value = if let Some(secret) = var["valueFrom"]["secretKeyRef"].as_mapping() {
                let secret_name = str_of(&secret["name"]);
                let secret_key = str_of(&secret["key"]);
                let secret = find(&objects, "Secret", &secret_name)
                    .unwrap_or_else(|| panic!("{name}: no Secret {secret_name}"));
                str_of(
                    secret["stringData"]
                        .get(&secret_key)
                        .unwrap_or_else(|| panic!("{name}: Secret has no key {secret_key}")),
                )
            } else {
                expand_k8s(&str_of(&var["value"]), &env)
            };
            env.insert(key, value);
        }
        for variable in env.keys() {
            problems.extend(service.check_variable(variable));
        }
        let settings = service.settings(&env);
        let ports: Vec<u16> = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_u64().unwrap() as u16)
            .collect();
        assert_eq!(ports, vec![settings.listen_port], "{name}: containerPort");
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/health")
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/ready")
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            let port = &container[probe]["httpGet"]["port"];
            assert!(
                port.as_str() == container["ports"][0]["name"].as_str()
                    || port.as_u64() == Some(settings.listen_port.into()),
                "{name}: {probe} probes another port"
            );
        }
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !container["resources"][bound][resource].is_null(),
                    "{name}: no {bound}.{resource}"
                );
            }
        }
        let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some(settings.listen_port.to_string().as_str()),
            "{name}: scrape port"
        );
        let service_object =
            find(&objects, "Service", &name).unwrap_or_else(|| panic!("no Service {name}"));
        assert_eq!(
            service_object["spec"]["ports"][0]["port"].as_u64(),
            Some(settings.listen_port.into())
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Consumers scale with an HPA, never beyond the topic's partitions.
    let hpa = find(&objects, "HorizontalPodAutoscaler", "sluice-consumer").expect("consumer HPA");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("sluice-consumer")
    );
    let consumer_config = find(&objects, "ConfigMap", "sluice-consumer").unwrap();
    let partitions: u64 = str_of(&consumer_config["data"]["SLUICE_CONSUMER_TOPIC_PARTITIONS"])
        .parse()
        .unwrap();
    let producer_config = find(&objects, "ConfigMap", "sluice-producer").unwrap();
    assert_eq!(
        str_of(&producer_config["data"]["SLUICE_PRODUCER_TOPIC_PARTITIONS"]),
        partitions.to_string(),
        "producer and consumer create the topic with different partitions"
    );
    assert!(hpa["spec"]["maxReplicas"].as_u64().unwrap() <= partitions);
}

/// `name Type …` columns and the `ORDER BY` of each `CREATE TABLE` in some DDL.
fn tables(ddl: &str) -> BTreeMap<String, (BTreeSet<String>, String)> {
    let mut out = BTreeMap::new();
    let ddl: String = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in ddl.split("CREATE TABLE IF NOT EXISTS ").skip(1) {
        let name = statement.split_whitespace().next().unwrap();
        let name = name.rsplit('.').next().unwrap().to_owned();
        let Some(open) = statement.find("\n(") else {
            continue; // `AS other_table`: no columns of its own.
        };
        let close = statement[open..].find("\n)").unwrap() + open;
        let columns = statement[open + 2..close]
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|c| c.trim_end_matches(',').to_owned())
            .collect();
        let order = statement
            .split("ORDER BY ")
            .nth(1)
            .map(|o| {
                o.lines()
                    .next()
                    .unwrap()
                    .trim_end_matches(';')
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        out.insert(name, (columns, order));
    }
    out
}

#[test]
fn the_sharded_clickhouse_layout_mirrors_the_migrations() {
    let cluster_ddl = read("deploy/clickhouse-cluster/ddl/cluster.sql");
    let cluster = tables(&cluster_ddl);
    let mut expected: BTreeMap<String, (BTreeSet<String>, String)> = BTreeMap::new();
    for migration in sluice_schema::migrations::MIGRATIONS {
        expected.extend(tables(migration.sql));
        // `ALTER TABLE t ADD COLUMN c …` adds c to t.
        if let Some(rest) = migration.sql.split("ALTER TABLE ").nth(1) {
            let mut words = rest.split_whitespace();
            let table = words.next().unwrap().to_owned();
            if words.next() == Some("ADD") && words.next() == Some("COLUMN") {
                let column = words.next().unwrap().to_owned();
                expected.get_mut(&table).unwrap().0.insert(column);
            }
        }
    }
    assert!(
        expected.contains_key("game_rounds"),
        "the migration parser found no tables"
    );
    for (table, (columns, order)) in &expected {
        let local = format!("{table}_local");
        let (cluster_columns, cluster_order) = cluster
            .get(&local)
            .unwrap_or_else(|| panic!("the cluster DDL has no {local}"));
        assert_eq!(cluster_columns, columns, "{local}: columns");
        assert_eq!(cluster_order, order, "{local}: ORDER BY (the dedup key)");
        let replicated = format!("CREATE TABLE IF NOT EXISTS sluice.{local} ON CLUSTER sluice");
        let body = cluster_ddl.split(&replicated).nth(1).expect("local table");
        assert!(
            body.split(';')
                .next()
                .unwrap()
                .contains("ENGINE = ReplicatedReplacingMergeTree("),
            "{local}: not a ReplicatedReplacingMergeTree"
        );
        let distributed = format!(
            "CREATE TABLE IF NOT EXISTS sluice.{table} ON CLUSTER sluice AS sluice.{local}\nENGINE = Distributed(sluice, sluice, {local}, "
        );
        assert!(
            cluster_ddl.contains(&distributed),
            "{table}: no Distributed table over {local}"
        );
    }
    // A round's duplicates must share a shard for FINAL to collapse them.
    assert!(
        cluster_ddl.contains("Distributed(sluice, sluice, game_rounds_local, cityHash64(user_id))")
    );
    let config = read("deploy/clickhouse-cluster/config.d/cluster.xml");
    assert_eq!(config.matches("<shard>").count(), 2, "2 shards");
    assert_eq!(
        config.matches("<replica><host>").count(),
        4,
        "2 replicas each"
    );
    assert_eq!(config.matches("<internal_replication>true").count(), 2);
    let keeper = read("deploy/clickhouse-cluster/keeper/keeper.xml");
    assert_eq!(
        keeper.matches("<server><id>").count(),
        3,
        "a 3-node Keeper quorum"
    );
}
