//! What every answer shares: the OpenAPI document, problem details with their headers, and
//! readiness.

use crate::helpers::*;

#[tokio::test]
async fn the_openapi_document_lists_every_path_and_docs_are_html() {
    let gateway = spawn_gateway(|_| {}).await;
    let response = gateway.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    let document: serde_json::Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/aggregated_game_rounds", &["get"][..]),
        ("/usage", &["get"]),
        ("/admin/keys", &["get", "post"]),
        ("/admin/keys/{id}", &["get", "delete"]),
        ("/admin/keys/{id}/rotate", &["post"]),
        ("/admin/keys/{id}/credits", &["post"]),
        ("/admin/keys/{id}/rate_limit", &["put"]),
        ("/admin/keys/{id}/rebuild", &["post"]),
        ("/admin/audit", &["get"]),
        ("/create_user", &["post"]),
    ] {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
    }
    let rounds = &paths["/aggregated_game_rounds"]["get"];
    let parameters: Vec<&str> = rounds["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        parameters,
        [
            "player_id",
            "game_id",
            "from",
            "to",
            "granularity",
            "sort",
            "page_size",
            "limit",
            "cursor"
        ]
    );
    assert_eq!(rounds["parameters"][7]["deprecated"], true, "limit");
    let page = &document["components"]["schemas"]["RoundsPage"]["properties"];
    assert!(page["next_cursor"].is_object());
    assert!(rounds["responses"]["429"]["headers"]["Retry-After"].is_object());
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");

    // `/docs` redirects to Swagger UI at `/docs/` (tests/console.rs checks its files).
    let docs = gateway.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert_eq!(docs.url().path(), "/docs/");
    assert!(header(&docs, "content-type").starts_with("text/html"));
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
}

/// `response` answered `status` with problem details.
fn problem(response: &reqwest::Response, status: u16) {
    assert_eq!(response.status(), status, "{}", response.url());
    assert_eq!(
        header(response, "content-type"),
        "application/problem+json",
        "{}",
        response.url()
    );
}

#[tokio::test]
async fn every_refusal_is_a_documented_problem_with_its_headers() {
    let gateway = spawn_gateway(|_| {}).await;
    // A method a path does not have: 405 naming the ones it has (after the admin token).
    for (method, path, allow) in [
        ("TRACE", "/aggregated_game_rounds", "GET"),
        ("DELETE", "/admin/audit", "GET"),
        ("PATCH", "/admin/keys", "POST, GET"),
        ("PUT", "/create_user", "POST"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = gateway.call_admin(method, path).await;
        problem(&response, 405);
        assert_eq!(header(&response, "allow"), allow, "{path}");
    }
    problem(&gateway.get("/nope").await, 404);
    let anonymous = gateway
        .http
        .delete(format!("{}/admin/audit", gateway.url))
        .send()
        .await
        .unwrap();
    problem(&anonymous, 401);
    assert_eq!(
        header(&anonymous, "www-authenticate"),
        r#"Bearer realm="sluice-admin""#
    );
    let no_key = gateway.get("/aggregated_game_rounds").await;
    problem(&no_key, 401);
    assert!(header(&no_key, "www-authenticate").starts_with("ApiKey "));

    // Bodies: the wrong media type is 415, too large 413.
    let text = gateway
        .admin(reqwest::Method::POST, "/create_user")
        .header("content-type", "text/plain")
        .body(r#"{"username": "a", "credits": 1}"#)
        .send()
        .await
        .unwrap();
    problem(&text, 415);
    let huge = serde_json::json!({"name": "a", "credits": 1, "padding": "x".repeat(70_000)});
    let too_large = gateway
        .call_admin_with(reqwest::Method::POST, "/admin/keys", &huge)
        .await;
    problem(&too_large, 413);

    // What the document allows is accepted: integers written with a zero fraction, a `null`
    // rotation body, a name with white space around it (dropped).
    let Key { id, created, .. } = gateway
        .new_key(serde_json::json!({"name": "  spaced  ", "credits": 5.0}))
        .await;
    assert_eq!(
        (&created["name"], &created["credits"]),
        (&"spaced".into(), &5.into())
    );
    assert_eq!(gateway.top_up(&id, 1e1).await.status(), 200);
    let rotated = gateway
        .call_admin_with(
            reqwest::Method::POST,
            &format!("/admin/keys/{id}/rotate"),
            &serde_json::Value::Null,
        )
        .await;
    assert_eq!(rotated.status(), 200);
    let overflow = gateway
        .top_up(&id, sluice_gateway::credits::MAX_CREDITS)
        .await;
    problem(&overflow, 409);
    for body in [
        serde_json::json!({"name": " ", "credits": 1}),
        serde_json::json!({"name": "a".repeat(201), "credits": 1}),
        serde_json::json!({"name": "a", "credits": 1.5}),
    ] {
        let refused = gateway
            .call_admin_with(reqwest::Method::POST, "/admin/keys", &body)
            .await;
        problem(&refused, 400);
    }
}

#[tokio::test]
async fn ready_answers_within_a_second_naming_a_frozen_dependency() {
    let stack = Stack::get();
    let redis = FaultyLink::start(stack.redis_address()).await;
    let (gateway, clickhouse) = spawn_behind_clickhouse_link(|config| {
        config.redis_url = stack.redis_url_at(&redis.address())
    })
    .await;
    let ready = || async {
        let asked = Instant::now();
        let response = gateway.get("/ready").await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            asked.elapsed()
        );
        (status, body["unavailable"].clone())
    };
    assert_eq!(ready().await, (200, serde_json::json!([])));
    clickhouse.freeze();
    assert_eq!(ready().await, (503, serde_json::json!(["clickhouse"])));
    redis.freeze();
    assert_eq!(
        ready().await,
        (503, serde_json::json!(["redis", "clickhouse"]))
    );
    clickhouse.thaw();
    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    poll_until(
        deadline,
        Duration::from_millis(100),
        "never ready again",
        || async { ready().await.0 == 200 },
    )
    .await;
}
