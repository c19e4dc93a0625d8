//! `docker-compose.yml`, the image that runs it, and `config/*.env`.

use std::collections::BTreeSet;

use sluice_schema::dataset::GAME_ROUNDS;

use crate::helpers::{
    assert_one_watcher_per_shipped_dataset, host_port, read, root, services, str_of,
    watched_dataset, Compose, GLOBAL_VARIABLES, SPECS,
};

#[test]
fn compose_environment_is_what_each_config_reads() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for service in services() {
        let running = compose.running(&service);
        assert!(
            running.iter().any(|name| name == service.name),
            "{}: runs another program than sluice-{0}",
            service.name
        );
        for name in running {
            let env = compose.environment(&name);
            assert!(!env.is_empty(), "{name}: no environment");
            for variable in env.keys() {
                problems.extend(service.check_variable(variable));
            }
            // Values parse as the service parses them (types, required fields).
            (service.parse)(service.prefix, &env).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
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
        for name in compose.running(&service) {
            let name = name.as_str();
            let settings = service.settings(&compose.environment(name));
            // The listen port is the default one: documentation, probes and scrapers agree.
            assert_eq!(
                settings.listen_port, defaults.listen_port,
                "{}: listens on another port than its default",
                name
            );
            for (_, container) in compose.published_ports(name) {
                assert_eq!(
                    container, settings.listen_port,
                    "{}: publishes a port it does not listen on",
                    name
                );
            }
            let health = compose.service(name)["healthcheck"]["test"]
                .as_sequence()
                .map(|t| t.iter().map(str_of).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            assert!(
                health.contains(&format!("localhost:{}/health", settings.listen_port)),
                "{}: healthcheck `{health}` is not its /health",
                name
            );
            if let Some(url) = &settings.kafka_brokers {
                let (host, port) = host_port(url);
                assert!(names.contains(&host), "{}: no Kafka at `{host}`", name);
                let advertised = &compose.environment("kafka")["KAFKA_ADVERTISED_LISTENERS"];
                assert!(
                    advertised.contains(&format!("{host}:{port}")),
                    "{}: Kafka advertises {advertised}, not {url}",
                    name
                );
                brokers.insert(url.clone());
            }
            if let Some(url) = &settings.clickhouse_url {
                let (host, port) = host_port(url);
                assert_eq!(host, "clickhouse", "{}: ClickHouse URL {url}", name);
                let (_, default_port) = host_port(defaults.clickhouse_url.as_ref().unwrap());
                assert_eq!(port, default_port, "{}: ClickHouse HTTP port", name);
            }
            if let Some(url) = &settings.redis_url {
                let (host, port) = host_port(url);
                assert_eq!(host, "redis", "{}: Redis URL {url}", name);
                let (_, default_port) = host_port(defaults.redis_url.as_ref().unwrap());
                assert_eq!(port, default_port, "{}: Redis port", name);
            }
            if let Some(topic) = &settings.topic {
                assert_eq!(Some(topic), defaults.topic.as_ref(), "{}: topic", name);
                topics.insert(topic.clone());
            }
            partitions.extend(settings.topic_partitions);
            for dependency in compose.service(name)["depends_on"]
                .as_mapping()
                .map(|m| m.keys().map(str_of).collect::<Vec<_>>())
                .unwrap_or_default()
            {
                assert!(
                    names.contains(&dependency),
                    "{}: depends on {dependency}",
                    name
                );
            }
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

#[test]
fn every_shipped_dataset_has_a_watcher_of_its_own_folder() {
    let compose = Compose::load();
    let watcher = services()
        .into_iter()
        .find(|s| s.name == "watcher")
        .unwrap();
    let mut watched = Vec::new();
    for name in compose.running(&watcher) {
        let dataset = watched_dataset(&name, compose.environment(&name));
        let mounts: Vec<String> = (compose.service(&name)["volumes"].as_sequence())
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        assert!(mounts.contains(&"./inbox:/data/inbox".to_owned()), "{name}");
        if dataset != GAME_ROUNDS {
            assert!(mounts.contains(&format!("./datasets:{SPECS}:ro")), "{name}");
        }
        watched.push(dataset);
    }
    assert_one_watcher_per_shipped_dataset("compose", watched);
}
