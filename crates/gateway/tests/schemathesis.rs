//! The OpenAPI document against the server: schemathesis generates requests from
//! `/openapi.json` (valid ones and broken ones) and checks every answer against the document —
//! no 5xx, only documented statuses, content types, headers and bodies, valid data accepted,
//! invalid data refused, unknown methods refused with 405 and `Allow`, missing credentials
//! refused with 401. The run is bounded (a fixed seed, a few examples per operation).

mod common;

use std::time::Duration;

use common::*;
use sluice_schema::dataset::Catalog;
use sluice_schema::migrations::Layout;
use sluice_testkit::schemathesis::Run;
use sluice_testkit::stack::workspace_root;

/// Rows of the shipped datasets: one record each, and a nullable value left null.
const ROWS: &[(&str, &str)] = &[
    (
        "records",
        "(id, created_at, country, category, amount, upload_id, version) VALUES \
         (1, '2024-01-02 03:00:00', 'USA', 'Books', 12.5, 'u', 1)",
    ),
    (
        "events",
        "(event_id, event_type, occurred_at, user_id, value, upload_id, version) VALUES \
         ('e1', 'click', '2024-01-02 03:00:00', 'u1', 1.5, 'u', 1), \
         ('e2', 'view', '2024-01-02 04:00:00', 'u1', NULL, 'u', 1)",
    ),
    (
        "amazon_reviews",
        "(rating, title, text, asin, user_id, timestamp, upload_id, version) VALUES \
         (4.5, 'Fine', 'A fine book.', 'B000', 'u1', '2024-01-02 03:00:00', 'u', 1)",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_agrees_with_the_server() {
    let datasets = workspace_root().join("datasets");
    let gateway = spawn_gateway(|config| {
        config.datasets_dir = Some(datasets.display().to_string());
    })
    .await;
    // The tables a consumer would create for every dataset with endpoints, with a few rows.
    let client = sluice_testkit::Stack::get().clickhouse_client(&gateway.database);
    for dataset in Catalog::read(&datasets).unwrap().iter() {
        let spec = &dataset.spec;
        if spec.endpoints.is_empty() {
            continue;
        }
        sluice_rollup::datasets::create_tables(&client, spec, &Layout::Single, &gateway.database)
            .await
            .unwrap();
        let (_, rows) = ROWS
            .iter()
            .find(|(name, _)| *name == spec.name)
            .unwrap_or_else(|| panic!("rows of `{}` for the run", spec.name));
        let table = format!("{}.{}", gateway.database, spec.versions_table());
        sluice_testkit::clickhouse::query(&format!("INSERT INTO {table} {rows}")).await;
    }
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
