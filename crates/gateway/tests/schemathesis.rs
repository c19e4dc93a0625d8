//! The OpenAPI document against the server: schemathesis generates requests from
//! `/openapi.json` (valid ones and broken ones) and checks every answer against the document —
//! no 5xx, only documented statuses, content types, headers and bodies, valid data accepted,
//! invalid data refused, unknown methods refused with 405 and `Allow`, missing credentials
//! refused with 401. The run is bounded (a fixed seed, a few examples per operation).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sluice_testkit::{unique, Stack};

/// What `scripts/dev services` installs schemathesis with.
const INSTALL: &str = "scripts/dev services";

/// Kills the run if it takes longer (it takes about a minute on two cores).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_agrees_with_the_server() {
    let program = Stack::get().schemathesis.clone().unwrap_or_else(|| {
        panic!("SLUICE_SCHEMATHESIS is not set: install schemathesis with `{INSTALL}`")
    });
    assert!(
        std::path::Path::new(&program).is_file(),
        "{program} is missing: install schemathesis with `{INSTALL}`"
    );
    let gateway = spawn_gateway(|_| {}).await;
    // A key that neither runs out of credits nor hits its rate limit during the run.
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "schemathesis", "credits": 10_000_000,
            "rate_limit": {"requests": 1_000_000, "per_seconds": 1},
        }))
        .await;
    let api_key = created["key"].as_str().unwrap();

    // The checks and their few documented exceptions; the credentials come from the
    // environment.
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    // Its own working directory: schemathesis writes nothing into the repository.
    let dir = std::env::temp_dir().join(unique("schemathesis"));
    std::fs::create_dir_all(&dir).unwrap();

    let started = Instant::now();
    let mut command = tokio::process::Command::new(&program);
    command
        .current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", gateway.url))
        .env("SLUICE_SCHEMATHESIS_API_KEY", api_key)
        .env("SLUICE_SCHEMATHESIS_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "50", "--seed", "18"])
        .args(["--generation-database", "none"])
        .args(["--workers", "2", "--request-timeout", "10"])
        .args(["--no-color", "--output-truncate", "false"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|error| {
            panic!("{program} does not start ({error}); reinstall it with `{INSTALL}`")
        });
    let _ = std::fs::remove_dir_all(&dir);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found disagreements ({}, after {:?}):\n{report}",
        output.status,
        started.elapsed()
    );
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("{report}");
    }
}
