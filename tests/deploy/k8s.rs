//! `deploy/k8s`: workloads, their configuration and secrets.

use std::collections::BTreeMap;

use serde_norway::Value;

use sluice_rollup::datasets::EndpointRollups;
use sluice_schema::dataset::Catalog;

use crate::helpers::{
    assert_one_watcher_per_shipped_dataset, read, root, services, str_of, watched_dataset, yaml,
    yaml_documents, Compose, SPECS,
};

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

/// The workload (Deployment or StatefulSet) `name` in `deploy/k8s/`.
fn k8s_workload<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    find(objects, "Deployment", name)
        .or_else(|| find(objects, "StatefulSet", name))
        .unwrap_or_else(|| panic!("deploy/k8s has no workload {name}"))
}

/// The container of workload `name` in `deploy/k8s/`.
fn k8s_container<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    &k8s_workload(objects, name)["spec"]["template"]["spec"]["containers"][0]
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

/// The workloads (Deployments and StatefulSets) in `deploy/k8s/` whose container runs
/// `program`: `sluice-<name>`, and for the watcher one more per dataset.
fn k8s_running(objects: &[Value], program: &str) -> Vec<String> {
    (objects.iter())
        .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .filter(|o| {
            o["spec"]["template"]["spec"]["containers"][0]["command"][0].as_str() == Some(program)
        })
        .map(|o| str_of(&o["metadata"]["name"]))
        .collect()
}

/// The environment of workload `name`'s `container` as the pod sees it: its ConfigMaps in
/// order (a later one's key wins), then `env` (secrets as their placeholders).
fn pod_environment(objects: &[Value], name: &str, container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        let map_name = source["configMapRef"]["name"]
            .as_str()
            .expect("configMapRef");
        let map = find(objects, "ConfigMap", map_name)
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
            let secret = find(objects, "Secret", &secret_name)
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
    env
}

#[test]
fn k8s_workloads_read_only_their_config_and_probe_their_listen_port() {
    let objects = k8s_objects();
    let mut problems = Vec::new();
    for service in services() {
        let program = format!("sluice-{}", service.name);
        let running = k8s_running(&objects, &program);
        assert!(
            running.contains(&program),
            "deploy/k8s has no workload {program}"
        );
        for name in running {
            let workload = k8s_workload(&objects, &name);
            let container = k8s_container(&objects, &name);
            let env = pod_environment(&objects, &name, container);
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

/// The settings of `service` (e.g. `consumer`) as compose and as k8s give them.
fn deployed_settings(
    objects: &[Value],
    service: &str,
) -> [(&'static str, BTreeMap<String, String>); 2] {
    let config_map = find(objects, "ConfigMap", &format!("sluice-{service}"))
        .unwrap_or_else(|| panic!("deploy/k8s has no ConfigMap sluice-{service}"));
    let k8s = config_map["data"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| (str_of(k), str_of(v)))
        .collect();
    [
        ("compose", Compose::load().environment(service)),
        ("k8s", k8s),
    ]
}

#[test]
fn every_deployment_serves_the_shipped_datasets_from_the_specs_in_the_image() {
    const DIR: &str = SPECS;
    assert!(
        read("deploy/Dockerfile").contains(&format!("COPY --from=build /src/datasets {DIR}")),
        "the image holds the specs"
    );
    let objects = k8s_objects();
    let compose = Compose::load();
    let shipped = root().join("datasets").display().to_string();
    for service in ["producer", "consumer", "gateway", "processor"] {
        let prefix = format!("SLUICE_{}_", service.to_uppercase());
        for (deployment, env) in deployed_settings(&objects, service) {
            let dir = env.get(&format!("{prefix}DATASETS_DIR"));
            assert_eq!(
                dir.map(String::as_str),
                Some(DIR),
                "{deployment}: {service}"
            );
        }
        let mounts: Vec<String> = (compose.service(service)["volumes"].as_sequence())
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        assert!(
            mounts.contains(&format!("./datasets:{DIR}:ro")),
            "compose: {service} reads ./datasets"
        );
    }
    for (deployment, env) in deployed_settings(&objects, "consumer") {
        let written = &env["SLUICE_CONSUMER_DATASETS"];
        // As the consumer reads its setting at start.
        let served = Catalog::served(Some(&shipped), written, "SLUICE_CONSUMER_DATASETS");
        let served = served.unwrap_or_else(|e| panic!("{deployment}: {e}"));
        let processor = deployed_settings(&objects, "processor");
        let (_, processor) = processor.iter().find(|(d, _)| *d == deployment).unwrap();
        let kept = &processor["SLUICE_PROCESSOR_DATASETS"];
        let kept = Catalog::served(Some(&shipped), kept, "SLUICE_PROCESSOR_DATASETS").unwrap();
        let with_rollups: Vec<&str> = (served.iter())
            .filter(|d| !EndpointRollups::all(&d.spec).is_empty())
            .map(|d| d.spec.name.as_str())
            .collect();
        let kept: Vec<&str> = kept.iter().map(|d| d.spec.name.as_str()).collect();
        assert_eq!(
            kept, with_rollups,
            "{deployment}: the processor keeps the rollups of exactly the datasets written that declare some"
        );
    }
}

#[test]
fn every_shipped_dataset_has_a_watcher_of_its_own_folder_on_k8s() {
    let objects = k8s_objects();
    let watched = k8s_running(&objects, "sluice-watcher")
        .iter()
        .map(|name| {
            let container = k8s_container(&objects, name);
            let mounts = serde_norway::to_string(&container["volumeMounts"]).unwrap();
            assert!(
                mounts.contains("mountPath: /data/inbox"),
                "{name}: {mounts}"
            );
            watched_dataset(name, pod_environment(&objects, name, container))
        })
        .collect();
    assert_one_watcher_per_shipped_dataset("k8s", watched);
}
