//! `GET /datasets`: the datasets of the gateway's directory, their columns and endpoints, as
//! their specs declare them.

use sluice_schema::migrations::Layout;
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

    // The served document has each endpoint's own operation, built from the same catalog.
    let document: serde_json::Value = gateway
        .http
        .get(format!("{}/openapi.json", gateway.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operations: Vec<&String> = (document["paths"].as_object().unwrap().keys())
        .filter(|path| path.starts_with("/datasets/"))
        .collect();
    assert_eq!(
        operations,
        [
            "/datasets/amazon_reviews/daily_by_asin",
            "/datasets/events/by_type",
            "/datasets/game_rounds/aggregated",
            "/datasets/records/rows",
            "/datasets/{name}/{endpoint}",
        ]
    );

    // Without a directory, only the built-in dataset (and the generic operation).
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
    let document: serde_json::Value = bare
        .http
        .get(format!("{}/openapi.json", bare.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["paths"]["/datasets/records/rows"].is_null());
}

/// `GET /datasets/records/rows` with `params` and `key`.
async fn rows(
    gateway: &crate::common::Gateway,
    key: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    gateway
        .http
        .get(format!("{}/datasets/records/rows", gateway.url))
        .header("X-API-Key", key)
        .query(params)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_of_a_dataset_are_the_latest_versions_a_page_at_a_time_for_their_cost() {
    let gateway = spawn_gateway(|config| {
        config.datasets_dir = Some(workspace_root().join("datasets").display().to_string());
    })
    .await;
    let spec = sluice_schema::dataset::Spec::read(&workspace_root().join("datasets/records.toml"))
        .unwrap();
    let db = &gateway.database;
    let client = sluice_testkit::Stack::get().clickhouse_client(db);
    sluice_rollup::datasets::create_tables(&client, &spec, &Layout::Single, db)
        .await
        .unwrap();
    // Record 3 moved to GBR in its later version; record 5 is outside the time range.
    sluice_testkit::clickhouse::query(&format!(
        "INSERT INTO {db}.records_versions (id, created_at, country, category, amount, upload_id, version) VALUES \
         (1, '2024-01-02 03:00:00', 'USA', 'Books', 12.5, 'u', 1), \
         (2, '2024-01-02 03:00:00', 'USA', 'Toys', 1, 'u', 1), \
         (3, '2024-01-02 02:00:00', 'USA', 'Toys', 2, 'u', 1), \
         (3, '2024-01-02 02:00:00', 'GBR', 'Toys', 2, 'u', 2), \
         (4, '2024-01-02 04:00:00', 'USA', 'Games', 0.01, 'u', 1), \
         (5, '2024-02-01 00:00:00', 'USA', 'Games', 3, 'u', 1)"
    ))
    .await;
    let key = gateway.create_key(10).await;
    let filters = [
        ("country", "usa"),
        ("from", "2024-01-01"),
        ("to", "2024-01-03"),
    ];
    let first = rows(
        &gateway,
        &key,
        &[filters[0], filters[1], filters[2], ("limit", "2")],
    )
    .await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["X-Credits-Remaining"], "9");
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(
        first["data"],
        serde_json::json!([
            {"id": 1, "created_at": "2024-01-02T03:00:00Z", "country": "USA", "category": "Books", "amount": "12.50", "upload_id": "u"},
            {"id": 2, "created_at": "2024-01-02T03:00:00Z", "country": "USA", "category": "Toys", "amount": "1.00", "upload_id": "u"},
        ])
    );
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = rows(
        &gateway,
        &key,
        &[
            filters[0],
            filters[1],
            filters[2],
            ("limit", "2"),
            ("cursor", cursor),
        ],
    )
    .await;
    let second: serde_json::Value = second.json().await.unwrap();
    let ids: Vec<u64> = second["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (ids, &second["has_more"], &second["next_cursor"]),
        (vec![4], &serde_json::json!(false), &serde_json::Value::Null)
    );

    // Refused before any charge: an unknown parameter, a value of the wrong form, a cursor
    // with other filters; a rollup endpoint's unknown granularity.
    let refusals = [
        (vec![("player", "x")], 400),
        (vec![("country", "US")], 400),
        (vec![("country", "GBR"), ("cursor", cursor)], 400),
    ];
    for (params, status) in refusals {
        assert_eq!(
            rows(&gateway, &key, &params).await.status(),
            status,
            "{params:?}"
        );
    }
    let rollup = gateway
        .http
        .get(format!(
            "{}/datasets/events/by_type?granularity=week",
            gateway.url
        ))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(rollup.status(), 400);
    // Without a range: from the first month the table holds, every record once, in order.
    let unknown = rows(&gateway, &key, &[]).await;
    assert_eq!(
        unknown.headers()["X-Credits-Remaining"],
        "7",
        "two pages and this one charged, nothing else"
    );
    let all: serde_json::Value = unknown.json().await.unwrap();
    let ids: Vec<u64> = (all["data"].as_array().unwrap().iter())
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 1, 2, 4, 5], "{all}");
}

/// `GET /datasets/game_rounds/aggregated` is `GET /aggregated_game_rounds`: the same pages,
/// cursors that carry over between the two paths, the same cost; `GET /datasets` lists it.
#[tokio::test]
async fn game_rounds_aggregated_is_the_rounds_endpoint_under_the_datasets_path() {
    let gateway = spawn_gateway(|_| {}).await;
    crate::helpers::insert_many_rounds(&gateway.database).await;
    let key = gateway.create_key(10).await;
    let alias = |filters: Vec<(&str, String)>| {
        let request = gateway
            .http
            .get(format!("{}/datasets/game_rounds/aggregated", gateway.url));
        request.header("X-API-Key", &key).query(&filters).send()
    };
    let filters = [("granularity", "hour"), ("page_size", "7")];
    let direct = gateway.query(&key, &filters).await;
    assert_eq!(direct.headers()["X-Credits-Remaining"], "9");
    let direct = crate::helpers::answer(direct, 200).await;
    let owned = |extra: Option<&str>| {
        let mut filters: Vec<(&str, String)> =
            filters.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(cursor) = extra {
            filters.push(("cursor", cursor.to_owned()));
        }
        filters
    };
    let aliased = alias(owned(None)).await.unwrap();
    assert_eq!(
        aliased.headers()["X-Credits-Remaining"],
        "8",
        "the same cost"
    );
    let aliased = crate::helpers::answer(aliased, 200).await;
    assert_eq!(aliased["data"], direct["data"]);
    assert_eq!(aliased["data"].as_array().unwrap().len(), 7);

    // A cursor of either path pages the other.
    let cursor = direct["next_cursor"].as_str().unwrap();
    let second = alias(owned(Some(cursor))).await.unwrap();
    let second = crate::helpers::answer(second, 200).await;
    let again = gateway
        .query(&key, &[filters[0], filters[1], ("cursor", cursor)])
        .await;
    assert_eq!(
        crate::helpers::answer(again, 200).await["data"],
        second["data"]
    );
    let cursor = second["next_cursor"].as_str().unwrap();
    let third = gateway
        .query(&key, &[filters[0], filters[1], ("cursor", cursor)])
        .await;
    assert_eq!(
        crate::helpers::answer(third, 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    let list: serde_json::Value = gateway.get("/datasets").await.json().await.unwrap();
    let endpoint = &list["datasets"][0]["endpoints"][0];
    assert_eq!(list["datasets"][0]["name"], "game_rounds");
    assert_eq!(endpoint["path"], "/datasets/game_rounds/aggregated");
    assert_eq!(endpoint["same_as"], "/aggregated_game_rounds");
    assert_eq!(endpoint["kind"], "rollup");
    assert_eq!(endpoint["bucket"], "granularity");
}
