//! The OpenAPI document against the server: schemathesis generates requests from
//! `/openapi.json` (valid ones and broken ones) and checks every answer against the document —
//! no 5xx, only documented statuses, content types, headers and bodies, valid data accepted,
//! invalid data refused, unknown methods refused with 405 and `Allow`, missing credentials
//! refused with 401. The run is bounded (a fixed seed, a few examples per operation).

mod common;

use std::time::Duration;

use common::*;
use sluice_testkit::schemathesis::Run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_agrees_with_the_server() {
    let gateway = spawn_gateway(|_| {}).await;
    // A key that neither runs out of credits nor hits its rate limit during the run.
    let key = gateway
        .key_limited("schemathesis", 10_000_000, 1_000_000, 1)
        .await;
    let api_key = key.secret.as_str();
    // The checks and their few documented exceptions; the credentials come from the
    // environment.
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    Run {
        url: &gateway.url,
        config: &config,
        env: &[
            ("SLUICE_SCHEMATHESIS_API_KEY", api_key),
            ("SLUICE_SCHEMATHESIS_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
        max_examples: 50,
        // It takes about a minute on two cores.
        timeout: Duration::from_secs(240),
    }
    .passes()
    .await;
}
