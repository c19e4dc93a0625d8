//! What a browser gets from the gateway beside the API: Swagger UI at `/docs/` from the
//! binary, the web console at `/console`, and `GET /usage`, a key's own credits and usage
//! over time from the ledger. (The pages in a real browser: `tests/browser/` at the root.)

mod common;

use std::time::{Duration, Instant};

use common::*;

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response.headers()[name].to_str().unwrap()
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_under_docs() {
    let gateway = spawn_gateway(|_| {}).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let fetch = |path: &str| client.get(format!("{}{path}", gateway.url)).send();
    let redirect = fetch("/docs").await.unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(header(&redirect, "location"), "/docs/");

    let page = fetch("/docs/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://"),
        "no asset from elsewhere: {html}"
    );
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "{asset}");
        let response = fetch(&format!("/docs/{asset}")).await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let initializer = fetch("/docs/swagger-initializer.js").await.unwrap();
    let initializer = initializer.text().await.unwrap();
    assert!(initializer.contains("../openapi.json"), "{initializer}");
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );

    let missing = fetch("/docs/no-such-file.js").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "content-type"), "application/problem+json");
}

#[tokio::test]
async fn the_console_is_one_self_contained_page_with_its_settings() {
    let gateway = spawn_gateway(|config| {
        config.console_producer_url = Some("http://127.0.0.1:18080</script>".into());
    })
    .await;
    let response = reqwest::get(format!("{}/console", gateway.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/html"));
    let policy = header(&response, "content-security-policy").to_owned();
    let html = response.text().await.unwrap();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    // The setting is in the page, and cannot close the script element it sits in.
    assert!(html.contains(r#""producer_url":"http://127.0.0.1:18080\u003c/script>""#));
    for external in ["src=\"http", "href=\"http", "@import", "cdn"] {
        assert!(!html.contains(external), "{external}");
    }
    for id in [
        "upload-file",
        "upload-progress",
        "usage-chart",
        "ggr-chart",
        "q-next",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
}

#[tokio::test]
async fn usage_shows_a_key_its_own_credits_and_charges_per_bucket_for_free() {
    let gateway = spawn_gateway(|config| config.ledger_flush_interval_ms = 100).await;
    let key = gateway.create_key(10).await;
    for _ in 0..3 {
        assert_eq!(gateway.query(&key, &[]).await.status(), 200);
    }
    let usage = |query: &'static str| {
        let request = gateway
            .http
            .get(format!("{}/usage{query}", gateway.url))
            .header("X-API-Key", &key);
        async move { request.send().await.unwrap() }
    };
    // The ledger is drained every 100 ms: the three charges show within seconds.
    let started = Instant::now();
    let body = loop {
        let response = usage("?days=1&granularity=hour").await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        let charged: u64 = body["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["charged"].as_u64().unwrap())
            .sum();
        if charged == 3 {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["key"]["credits"], 7, "reading usage costs nothing");
    assert_eq!(body["granularity"], "hour");
    let bucket = &body["buckets"][0];
    assert_eq!(
        (&bucket["granted"], &bucket["queries"]),
        (&10.into(), &3.into())
    );
    assert_eq!(bucket["start"].as_u64().unwrap() % 3600, 0);
    let daily: serde_json::Value = usage("?granularity=day").await.json().await.unwrap();
    assert_eq!(daily["buckets"][0]["start"].as_u64().unwrap() % 86_400, 0);

    for refused in ["?days=0", "?days=91", "?granularity=week"] {
        let response = usage(refused).await;
        assert_eq!(response.status(), 400, "{refused}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }
    let anonymous = reqwest::get(format!("{}/usage", gateway.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let revoked = gateway.create_key(1).await;
    let usage_of = |key: &str| {
        let url = format!("{}/usage", gateway.url);
        gateway.http.get(url).header("X-API-Key", key).send()
    };
    let read = usage_of(&revoked).await.unwrap();
    let id = read.json::<serde_json::Value>().await.unwrap()["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(gateway.revoke(&id).await.status(), 200);
    let after = usage_of(&revoked).await.unwrap();
    assert_eq!(after.status(), 401, "a revoked key reads nothing");
}
