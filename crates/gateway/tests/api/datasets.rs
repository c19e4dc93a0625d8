//! `GET /datasets`: the datasets of the gateway's directory, their columns and endpoints, as
//! their specs declare them.

use sluice_testkit::stack::workspace_root;

use crate::common::spawn_gateway;

#[tokio::test]
async fn the_datasets_are_listed_with_their_columns_and_endpoints_without_a_key() {
    let gateway = spawn_gateway(|config| {
        config.datasets_dir = Some(workspace_root().join("datasets").display().to_string());
    })
    .await;
    let response = gateway
        .http
        .get(format!("{}/datasets", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: serde_json::Value = response.json().await.unwrap();
    let names: Vec<&str> = list["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["game_rounds", "amazon_reviews", "events", "records"]
    );
    let records = &list["datasets"][3];
    assert_eq!(records["identity"], serde_json::json!(["id"]));
    assert_eq!(records["time"], "created_at");
    assert_eq!(
        records["columns"][4],
        serde_json::json!({"name": "amount", "type": "decimal", "scale": 2, "nullable": false, "doc": "Scaled by 10^2."})
    );
    assert_eq!(
        records["endpoints"][0],
        serde_json::json!({
            "path": "/datasets/records/rows",
            "name": "rows",
            "kind": "rows",
            "doc": "The records themselves (the latest version of each), by country and time.",
            "filters": ["country", "from", "to"],
            "page_size": 100,
            "max_page_size": 1000,
            "cost": 1,
        })
    );
    let daily = &list["datasets"][1]["endpoints"][0];
    assert_eq!(daily["bucket"], "day");
    assert_eq!(
        daily["measures"],
        serde_json::json!([
            {"name": "reviews", "fn": "count"},
            {"name": "avg_rating", "fn": "avg", "column": "rating"},
        ])
    );

    // Without a directory, only the built-in dataset.
    let bare = spawn_gateway(|_| {}).await;
    let list: serde_json::Value = bare
        .http
        .get(format!("{}/datasets", bare.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["datasets"].as_array().unwrap().len(), 1);
}
