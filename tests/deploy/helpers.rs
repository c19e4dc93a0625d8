//! The deployment files and the services' `Config`s as the checks read them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;
use sluice_schema::config::ServiceConfig;

/// What the checks need to know of one service's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen_port: u16,
    pub kafka_brokers: Option<String>,
    pub topic: Option<String>,
    pub topic_partitions: Option<i32>,
    pub redis_url: Option<String>,
    pub clickhouse_url: Option<String>,
}

impl Settings {
    /// A service listening on `listen_addr`, reading none of Kafka, Redis and ClickHouse.
    fn listening_on(listen_addr: &str) -> Settings {
        Settings {
            listen_port: port_of(listen_addr),
            kafka_brokers: None,
            topic: None,
            topic_partitions: None,
            redis_url: None,
            clickhouse_url: None,
        }
    }

    fn kafka(self, brokers: String, topic: String, partitions: i32) -> Settings {
        Settings {
            kafka_brokers: Some(brokers),
            topic: Some(topic),
            topic_partitions: Some(partitions),
            ..self
        }
    }

    fn redis(self, url: String) -> Settings {
        Settings {
            redis_url: Some(url),
            ..self
        }
    }

    fn clickhouse(self, url: String) -> Settings {
        Settings {
            clickhouse_url: Some(url),
            ..self
        }
    }
}

impl From<sluice_producer::Config> for Settings {
    fn from(c: sluice_producer::Config) -> Settings {
        Settings::listening_on(&c.listen_addr)
            .kafka(c.kafka_brokers, c.topic, c.topic_partitions)
            .redis(c.redis_url)
            .clickhouse(c.clickhouse.url)
    }
}

impl From<sluice_consumer::Config> for Settings {
    fn from(c: sluice_consumer::Config) -> Settings {
        Settings::listening_on(&c.listen_addr)
            .kafka(c.kafka_brokers, c.topic, c.topic_partitions)
            .clickhouse(c.clickhouse.url)
    }
}

impl From<sluice_watcher::Config> for Settings {
    fn from(c: sluice_watcher::Config) -> Settings {
        Settings::listening_on(&c.listen_addr)
            .kafka(c.kafka_brokers, c.topic, c.topic_partitions)
            .redis(c.redis_url)
    }
}

impl From<sluice_gateway::Config> for Settings {
    fn from(c: sluice_gateway::Config) -> Settings {
        Settings::listening_on(&c.listen_addr)
            .redis(c.redis_url)
            .clickhouse(c.clickhouse.url)
    }
}

impl From<sluice_processor::Config> for Settings {
    fn from(c: sluice_processor::Config) -> Settings {
        use secrecy::ExposeSecret;
        Settings::listening_on(&c.listen_addr)
            .redis(c.redis_url.expose_secret().to_owned())
            .clickhouse(c.clickhouse.url)
    }
}

/// One Sluice program: its compose/k8s name, its variables' prefix, its `Config`'s fields and
/// how its `Config` reads an environment.
pub struct Service {
    pub name: &'static str,
    pub prefix: &'static str,
    pub fields: Vec<String>,
    pub parse: fn(&'static str, &BTreeMap<String, String>) -> Result<Settings, String>,
}

impl Service {
    /// `C` read as the service reads it ([`ServiceConfig`]).
    pub fn of<C>(name: &'static str) -> Service
    where
        C: ServiceConfig + Into<Settings>,
    {
        fn parse<C: ServiceConfig + Into<Settings>>(
            _prefix: &'static str,
            env: &BTreeMap<String, String>,
        ) -> Result<Settings, String> {
            let variables: Vec<(String, String)> = env.clone().into_iter().collect();
            C::from_variables(&variables)
                .map(Into::into)
                .map_err(|e| e.to_string())
        }
        Service {
            name,
            prefix: C::PREFIX,
            fields: C::names(),
            parse: parse::<C>,
        }
    }

    pub fn settings(&self, env: &BTreeMap<String, String>) -> Settings {
        (self.parse)(self.prefix, env)
            .unwrap_or_else(|e| panic!("{}: the environment does not parse: {e}", self.name))
    }

    /// The defaults (plus what the service requires to start at all).
    pub fn defaults(&self) -> Settings {
        let required = BTreeMap::from([(
            "SLUICE_GATEWAY_ADMIN_TOKEN".to_owned(),
            "0123456789abcdef".to_owned(),
        )]);
        self.settings(&required)
    }

    /// The variable names this service reads, e.g. `SLUICE_GATEWAY_ADMIN_TOKEN`.
    pub fn variables(&self) -> BTreeSet<String> {
        self.fields
            .iter()
            .map(|f| format!("{}{}", self.prefix, f.to_uppercase()))
            .collect()
    }

    /// Problems with one variable name set for this service.
    pub fn check_variable(&self, variable: &str) -> Option<String> {
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
pub fn services() -> Vec<Service> {
    vec![
        Service::of::<sluice_producer::Config>("producer"),
        Service::of::<sluice_consumer::Config>("consumer"),
        Service::of::<sluice_gateway::Config>("gateway"),
        Service::of::<sluice_watcher::Config>("watcher"),
        Service::of::<sluice_processor::Config>("processor"),
    ]
}

/// Read by every service (`sluice_schema::telemetry`), not by a Config.
pub const GLOBAL_VARIABLES: &[&str] = &["SLUICE_LOG_FORMAT"];

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` has no port"))
}

/// `scheme://[user:password@]host:port/…` or `host:port` → (host, port).
pub fn host_port(url: &str) -> (String, u16) {
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

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn yaml(path: &str) -> Value {
    let mut value: Value =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().unwrap();
    value
}

pub fn yaml_documents(path: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(path))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

pub fn str_of(value: &Value) -> String {
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

pub struct Compose {
    services: serde_norway::Mapping,
}

impl Compose {
    pub fn load() -> Compose {
        let file = yaml("docker-compose.yml");
        Compose {
            services: file["services"].as_mapping().expect("services").clone(),
        }
    }

    pub fn service(&self, name: &str) -> &Value {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
    }

    /// The services that run `service`'s program (`sluice-<name>`): the one of its name, and
    /// for the watcher one more per dataset (`watcher-<dataset>`).
    pub fn running(&self, service: &Service) -> Vec<String> {
        let program = format!("sluice-{}", service.name);
        (self.services.iter())
            .filter(|(_, spec)| spec["command"][0].as_str() == Some(program.as_str()))
            .map(|(name, _)| str_of(name))
            .collect()
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.services.keys().map(str_of).collect()
    }

    pub fn environment(&self, name: &str) -> BTreeMap<String, String> {
        self.raw_environment(name)
            .into_iter()
            .map(|(k, v)| (k, interpolate(&v)))
            .collect()
    }

    /// The environment as written, `${…}` not interpolated.
    pub fn raw_environment(&self, name: &str) -> BTreeMap<String, String> {
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
    pub fn published_ports(&self, name: &str) -> Vec<(u16, u16)> {
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

/// Where the image holds the dataset specs (`deploy/Dockerfile`), which compose mounts there.
pub const SPECS: &str = "/etc/sluice/datasets";

/// The dataset the watcher deployed as `name` with environment `env` reads, as it reads its
/// configuration at start (the specs at [`SPECS`] being the repository's), after checking it
/// watches that dataset's folder of the inbox: `/data/inbox` for the rounds,
/// `/data/inbox/<dataset>` for another.
pub fn watched_dataset(name: &str, mut env: BTreeMap<String, String>) -> String {
    if let Some(dir) = env.get_mut("SLUICE_WATCHER_DATASETS_DIR") {
        assert_eq!(dir, SPECS, "{name}");
        *dir = root().join("datasets").display().to_string();
    }
    let variables: Vec<(String, String)> = env.into_iter().collect();
    let config = sluice_watcher::Config::from_variables(&variables).unwrap();
    let dataset = config.dataset().unwrap_or_else(|e| panic!("{name}: {e}"));
    let name_of = dataset.spec.name;
    let expected = match name_of.as_str() {
        sluice_schema::dataset::GAME_ROUNDS => "/data/inbox".to_owned(),
        other => format!("/data/inbox/{other}"),
    };
    assert_eq!(
        config.watch_dir.display().to_string(),
        expected,
        "{name}: its folder"
    );
    name_of
}

/// `watched` (each watcher's dataset, as [`watched_dataset`] tells) is every shipped dataset
/// once.
pub fn assert_one_watcher_per_shipped_dataset(deployment: &str, mut watched: Vec<String>) {
    let shipped = root().join("datasets").display().to_string();
    let catalog = sluice_schema::dataset::Catalog::of_dir(Some(&shipped)).unwrap();
    let mut datasets: Vec<String> = catalog.iter().map(|d| d.spec.name.clone()).collect();
    datasets.sort();
    watched.sort();
    assert_eq!(
        watched, datasets,
        "{deployment}: one watcher per shipped dataset"
    );
}
