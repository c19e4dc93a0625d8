//! The gateway against a real Redis and a real ClickHouse: keys, exact credits, refunds,
//! hostile filters, rate limits, key management, cursor pagination, the usage ledger and its
//! audit, and the OpenAPI document.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use sluice_gateway::{Application, Config};
use sluice_testkit::fault::FaultyLink;
use sluice_testkit::{clickhouse, unique, Stack};

#[tokio::test]
async fn hourly_and_daily_sums_are_exact_decimals() {
    let gateway = spawn_gateway(|_| {}).await;
    let key = gateway.create_key(10).await;
    let response = gateway
        .query(&key, &[("player_id", PLAYER), ("game_id", "7")])
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["data"],
        serde_json::json!([{
            "hour": "2019-10-22T08:00:00Z", "player_id": PLAYER, "game_id": 7,
            "real_amount_bet": "3.5", "bonus_amount_bet": "0.5",
            "real_amount_win": "10", "bonus_amount_win": "0",
            "rounds": 2, "ggr": "-6"
        }])
    );

    let days: serde_json::Value = gateway
        .query(
            &key,
            &[
                ("granularity", "day"),
                ("from", "2019-10-22"),
                ("to", "2019-10-23"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let rounds: BTreeMap<u64, u64> = days["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["game_id"].as_u64().unwrap(),
                b["rounds"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rounds, BTreeMap::from([(7, 2), (8, 1)]));
    assert_eq!(days["data"][0]["day"], "2019-10-22T00:00:00Z");

    // Half-open range: `to` excludes 09:05:00 when it is exactly 09:05:00.
    let before: serde_json::Value = gateway
        .query(
            &key,
            &[
                ("from", "2019-10-22T08:00:00Z"),
                ("to", "2019-10-22T09:05:00Z"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_never_spend_more_credits_than_the_key_holds() {
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "test", "credits": 100,
            "rate_limit": {"requests": 100000, "per_seconds": 1},
        }))
        .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let requests = (0..1000).map(|_| gateway.query(&key, &[("player_id", PLAYER)]));
    let statuses: Vec<u16> = futures::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 100);
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 900);
    assert_eq!(gateway.query(&key, &[]).await.status(), 402);

    // The balance is 0, and the ledger agrees: one grant of 100, one hundred charges.
    let info = gateway
        .admin(reqwest::Method::GET, &format!("/admin/keys/{id}"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(info["credits"], 0);
    let audit = gateway.audit().await;
    assert_eq!(audit["differences"], serde_json::json!([]), "{audit}");
    let ledger = gateway.ledger(&id).await;
    assert_eq!(ledger["granted"].1, 100);
    assert_eq!((ledger["charged"].0, ledger["charged"].1), (100, 100));
}

#[tokio::test]
async fn hostile_or_malformed_filters_are_400_and_cost_nothing() {
    let gateway = spawn_gateway(|_| {}).await;
    let key = gateway.create_key(2).await;
    for filters in [
        [("player_id", "' OR 1=1 --")],
        [("player_id", "9ece8c40'); DROP TABLE game_rounds; --")],
        [("player_id", "ÿçé😀")],
        [("game_id", "1 OR 1=1")],
        [("game_id", "184467440737095516160")],
        [("from", "2019-02-30")],
        [("to", "tomorrow")],
        [("granularity", "week")],
        [("limit", "100000000")],
    ] {
        let response = gateway.query(&key, &filters).await;
        assert_eq!(response.status(), 400, "{filters:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(gateway.credits_after_one_more_query(&key).await, 1);
}

#[tokio::test]
async fn missing_unknown_and_exhausted_keys_are_refused() {
    let gateway = spawn_gateway(|_| {}).await;
    let no_key = gateway
        .http
        .get(format!("{}/aggregated_game_rounds", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let unknown = format!("sk_sluice_{}", "ab".repeat(32));
    assert_eq!(gateway.query(&unknown, &[]).await.status(), 401);
    assert_eq!(gateway.query("not-a-key", &[]).await.status(), 401);
    let key = gateway.create_key(0).await;
    let response = gateway.query(&key, &[]).await;
    assert_eq!(response.status(), 402);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 402);
    assert_eq!(problem["title"], "Payment Required");
}

#[tokio::test]
async fn the_admin_api_requires_the_admin_token() {
    let gateway = spawn_gateway(|_| {}).await;
    for token in [
        None,
        Some("wrong-token-wrong-token"),
        Some("gateway-test-admin-toke"),
    ] {
        let mut request = gateway
            .http
            .post(format!("{}/admin/keys", gateway.url))
            .json(&serde_json::json!({"name": "x", "credits": 5}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{token:?}");
    }
    // Authenticated before anything of the request is read: a malformed body or path from an
    // unauthenticated caller is a 401 like any other, never a 400 naming what was expected.
    let probes = [
        (reqwest::Method::POST, "/admin/keys", "{\"nam"),
        (reqwest::Method::POST, "/admin/keys", "[]"),
        (
            reqwest::Method::POST,
            "/admin/keys/not-an-id/credits",
            "{\"add\": -1}",
        ),
        (
            reqwest::Method::POST,
            "/admin/keys/00000000000000ff/rotate",
            "null",
        ),
        (reqwest::Method::PUT, "/admin/keys/x/rate_limit", "{}"),
        (reqwest::Method::GET, "/admin/keys/not-an-id", ""),
        (reqwest::Method::GET, "/admin/audit", ""),
        (reqwest::Method::POST, "/create_user", "{\"username\": 5}"),
    ];
    for (method, path, body) in probes {
        let response = gateway
            .http
            .request(method.clone(), format!("{}{path}", gateway.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} {body}");
        let problem = response.text().await.unwrap();
        for field in [
            "name",
            "credits",
            "add",
            "username",
            "grace_seconds",
            "requests",
        ] {
            assert!(!problem.contains(field), "{method} {path} told {problem}");
        }
    }
    let legacy: serde_json::Value = gateway
        .http
        .post(format!("{}/create_user", gateway.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"username": "alice", "credits": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = legacy["api_key"].as_str().unwrap();
    assert_eq!(gateway.query(key, &[]).await.status(), 200);
    assert_eq!(gateway.query(key, &[]).await.status(), 402);
}

#[tokio::test]
async fn a_failed_query_is_503_and_its_credit_is_refunded() {
    let healthy = spawn_gateway(|_| {}).await;
    let key = healthy.create_key(3).await;
    // A second gateway whose ClickHouse is down.
    let stack = Stack::get();
    let mut config = Config::with_endpoints(
        &stack.redis_url,
        format!("http://127.0.0.1:{}", dead_port()),
        ADMIN_TOKEN,
    );
    config.listen_addr = "127.0.0.1:0".into();
    let broken_prefix = unique("gateway_refund");
    config.redis_key_prefix = format!("{broken_prefix}:");
    let application = Application::build(config.clone()).await.unwrap();
    let broken_url = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let broken = Gateway {
        url: broken_url,
        http: reqwest::Client::new(),
        redis_key_prefix: config.redis_key_prefix.clone(),
        database: config.clickhouse_database.clone(),
    };
    let broken_key = broken.create_key(3).await;
    for _ in 0..5 {
        let response = broken.query(&broken_key, &[]).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
    }
    let credits = sluice_gateway::credits::CreditStore::new(
        &config.redis_url,
        &config.redis_key_prefix,
        config.default_rate_limit(),
    )
    .unwrap()
    .credits(&sluice_gateway::credits::ApiKey::parse(&broken_key).unwrap())
    .await
    .unwrap();
    assert_eq!(credits, Some(3), "every failed answer was refunded");
    assert_eq!(healthy.credits_after_one_more_query(&key).await, 2);
}

#[tokio::test]
async fn a_query_that_outlives_its_timeout_is_504_and_refunded() {
    let address = silent_clickhouse().await;
    let mut redis_url = String::new();
    let mut prefix = String::new();
    let gateway = spawn_gateway(|config| {
        config.clickhouse_url = format!("http://{address}");
        config.query_timeout_ms = 300;
        redis_url = config.redis_url.clone();
        prefix = config.redis_key_prefix.clone();
    })
    .await;
    let key = gateway.create_key(2).await;
    let response = gateway.query(&key, &[]).await;
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["retry-after"], "5");
    let store = credit_store(&redis_url, &prefix);
    let credits = store
        .credits(&sluice_gateway::credits::ApiKey::parse(&key).unwrap())
        .await
        .unwrap();
    assert_eq!(credits, Some(2), "the timed-out answer was refunded");
}

#[tokio::test]
async fn a_refund_redis_missed_is_made_by_the_lease_sweep_once_redis_is_back_and_paid_once() {
    // Redis is reached through a link cut after the charge, before the refund: the query
    // times out against a silent ClickHouse, the refund fails, and the link heals later. The
    // lease of the charge then expires and the sweep refunds it, once.
    let address = silent_clickhouse().await;
    let redis_url = Stack::get().redis_url.clone();
    let link = FaultyLink::start(Stack::get().redis_address()).await;
    let mut prefix = String::new();
    let gateway = spawn_gateway(|config| {
        config.clickhouse_url = format!("http://{address}");
        config.query_timeout_ms = 1_500;
        config.charge_lease_ms = 6_500;
        config.lease_sweep_interval_ms = 100;
        config.redis_url = Stack::get().redis_url_at(&link.address());
        prefix = config.redis_key_prefix.clone();
    })
    .await;
    let key = gateway.create_key(5).await;
    let store = credit_store(&redis_url, &prefix);
    let secret = sluice_gateway::credits::ApiKey::parse(&key).unwrap();
    let credits = || async { store.credits(&secret).await.unwrap() };

    let query = tokio::spawn({
        let url = gateway.url.clone();
        let key = key.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{url}/aggregated_game_rounds"))
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let started = std::time::Instant::now();
    while credits().await != Some(4) {
        assert!(started.elapsed() < Duration::from_secs(5), "never charged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    link.cut();
    // A failed answer either way: the dirty hours were read from Redis after the cut (503), or
    // before it and the silent ClickHouse outlived the timeout (504). Both are refunded.
    let status = query.await.unwrap();
    assert!([503, 504].contains(&status), "{status}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(credits().await, Some(4), "no refund while Redis is cut off");
    link.heal();
    while credits().await != Some(5) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the refund never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lease is closed: later sweeps pay nothing more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(credits().await, Some(5));
}

#[tokio::test]
async fn a_lease_closes_once_however_often_it_is_settled_or_refunded() {
    use sluice_gateway::charge::Settlement;
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({"name": "refunded", "credits": 10}))
        .await;
    let store = credit_store(&Stack::get().redis_url, &gateway.redis_key_prefix);
    let secret = sluice_gateway::credits::ApiKey::parse(created["key"].as_str().unwrap()).unwrap();
    let lease = Duration::from_secs(60);
    let endpoint = "GET /aggregated_game_rounds";
    let first = store.admit(&secret, 3, endpoint, lease).await.unwrap();
    assert_eq!(first.credits_remaining, 7);
    assert_eq!(
        store.settle(&first.lease, 504, true).await.unwrap(),
        Settlement::Closed { balance: Some(10) }
    );
    assert_eq!(
        store.settle(&first.lease, 504, true).await.unwrap(),
        Settlement::ClosedBefore
    );
    assert_eq!(
        store.settle(&first.lease, 200, false).await.unwrap(),
        Settlement::ClosedBefore
    );
    assert_eq!(store.credits(&secret).await.unwrap(), Some(10));
    let second = store.admit(&secret, 3, endpoint, lease).await.unwrap();
    assert_eq!(
        store.settle(&second.lease, 200, false).await.unwrap(),
        Settlement::Closed { balance: Some(7) }
    );
    assert_eq!(
        store.settle(&second.lease, 503, true).await.unwrap(),
        Settlement::ClosedBefore,
        "an answered charge is never refunded afterwards"
    );
    assert_eq!(store.credits(&secret).await.unwrap(), Some(7));
    let report = gateway.audit().await;
    assert_eq!(report["differences"], serde_json::json!([]), "{report}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        gateway.ledger(id).await,
        BTreeMap::from([
            ("granted".to_owned(), (1, 10, "201".to_owned())),
            ("charged".to_owned(), (2, 6, "200,504".to_owned())),
            ("refunded".to_owned(), (1, 3, "504".to_owned())),
        ])
    );
}

#[tokio::test]
async fn redis_unreachable_is_503_never_a_free_answer() {
    let gateway = spawn_gateway(|config| {
        config.redis_url = format!("redis://127.0.0.1:{}/", dead_port());
    })
    .await;
    let key = format!("sk_sluice_{}", "cd".repeat(32));
    let response = gateway.query(&key, &[]).await;
    assert_eq!(response.status(), 503);
    let ready = reqwest::get(format!("{}/ready", gateway.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing"))
        .to_str()
        .unwrap()
}

fn header_number(response: &reqwest::Response, name: &str) -> u64 {
    header(response, name).parse().unwrap()
}

/// Every string anywhere in `value`.
fn strings(value: &serde_json::Value) -> Vec<&str> {
    match value {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings).collect(),
        serde_json::Value::Object(fields) => fields
            .iter()
            .flat_map(|(name, value)| std::iter::once(name.as_str()).chain(strings(value)))
            .collect(),
        _ => Vec::new(),
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn a_burst_above_the_rate_limit_is_429_with_a_correct_retry_after_and_costs_no_credits() {
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "bursty", "credits": 10,
            "rate_limit": {"requests": 2, "per_seconds": 2},
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    // GCRA: a burst of 2, then one request per second.
    let first = gateway.query(key, &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header_number(&first, "X-RateLimit-Limit"), 2);
    assert_eq!(header_number(&first, "X-RateLimit-Remaining"), 1);
    assert_eq!(header_number(&first, "X-Credits-Remaining"), 9);
    let second = gateway.query(key, &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header_number(&second, "X-RateLimit-Remaining"), 0);
    assert_eq!(header_number(&second, "X-RateLimit-Reset"), 2);

    let mut retry_after = 0;
    for _ in 0..5 {
        let limited = gateway.query(key, &[]).await;
        assert_eq!(limited.status(), 429);
        assert_eq!(header(&limited, "content-type"), "application/problem+json");
        assert_eq!(header_number(&limited, "X-RateLimit-Limit"), 2);
        assert_eq!(header_number(&limited, "X-RateLimit-Remaining"), 0);
        assert!((1..=2).contains(&header_number(&limited, "X-RateLimit-Reset")));
        retry_after = header_number(&limited, "Retry-After");
        // The next request is allowed one interval (1 s) after the burst, less the time spent.
        assert_eq!(retry_after, 1);
        let problem: serde_json::Value = limited.json().await.unwrap();
        assert_eq!(problem["status"], 429);
        assert_eq!(problem["title"], "Too Many Requests");
    }
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let after_waiting = gateway.query(key, &[]).await;
    assert_eq!(after_waiting.status(), 200);
    assert_eq!(header_number(&after_waiting, "X-Credits-Remaining"), 7);
    assert_eq!(
        gateway.key_info(id).await["credits"],
        7,
        "three answers charged, five 429s free"
    );
}

#[tokio::test]
async fn a_402_spends_no_rate_limit_budget_and_top_ups_restore_access() {
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "broke", "credits": 0,
            "rate_limit": {"requests": 1, "per_seconds": 60},
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(gateway.query(key, &[]).await.status(), 402);
    }

    let top_ups = (0..10).map(|_| {
        gateway
            .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/credits"))
            .json(&serde_json::json!({"add": 5}))
            .send()
    });
    let mut balances = Vec::new();
    for response in futures::future::join_all(top_ups).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["id"], id);
        balances.push(body["credits"].as_u64().unwrap());
    }
    balances.sort_unstable();
    assert_eq!(balances, (1..=10).map(|n| n * 5).collect::<Vec<u64>>());

    // The 402s left the one request per minute unspent.
    let paid = gateway.query(key, &[]).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(header_number(&paid, "X-Credits-Remaining"), 49);
    let limited = gateway.query(key, &[]).await;
    assert_eq!(limited.status(), 429);
    assert!((59..=60).contains(&header_number(&limited, "Retry-After")));
    assert_eq!(gateway.key_info(id).await["credits"], 49);

    for (path, body, status) in [
        (
            "/admin/keys/00000000000000ff/credits",
            serde_json::json!({"add": 1}),
            404,
        ),
        (
            &*format!("/admin/keys/{id}/credits"),
            serde_json::json!({"add": 0}),
            400,
        ),
        (
            &*format!("/admin/keys/{id}/credits"),
            serde_json::json!({"add": -1}),
            400,
        ),
    ] {
        let response = gateway
            .admin(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path} {body}");
    }
}

#[tokio::test]
async fn the_default_rate_limit_applies_until_a_key_gets_its_own() {
    let gateway = spawn_gateway(|config| {
        config.rate_limit_requests = 3;
        config.rate_limit_per_seconds = 60;
    })
    .await;
    let created = gateway
        .create_key_with(serde_json::json!({"name": "default", "credits": 100}))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["rate_limit"],
        serde_json::json!({"requests": 3, "per_seconds": 60})
    );
    assert_eq!(created["rate_limit_is_default"], true);
    for _ in 0..3 {
        assert_eq!(gateway.query(key, &[]).await.status(), 200);
    }
    assert_eq!(gateway.query(key, &[]).await.status(), 429);

    let response = gateway
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/keys/{id}/rate_limit"),
        )
        .json(&serde_json::json!({"requests": 100, "per_seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        info["rate_limit"],
        serde_json::json!({"requests": 100, "per_seconds": 1})
    );
    assert_eq!(info["rate_limit_is_default"], false);
    let answer = gateway.query(key, &[]).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(header_number(&answer, "X-RateLimit-Limit"), 100);
    assert_eq!(header_number(&answer, "X-RateLimit-Remaining"), 99);
    assert_eq!(header_number(&answer, "X-Credits-Remaining"), 96);

    for body in [
        serde_json::json!({"requests": 0, "per_seconds": 1}),
        serde_json::json!({"requests": 1, "per_seconds": 0}),
        serde_json::json!({"requests": 1}),
    ] {
        let response = gateway
            .admin(
                reqwest::Method::PUT,
                &format!("/admin/keys/{id}/rate_limit"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({"name": "leaked", "credits": 5}))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["revoked"], false);
    assert_eq!(gateway.query(key, &[]).await.status(), 200);

    let response = gateway
        .admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["revoked"], true);
    assert!(info["revoked_at"].is_string());

    let refused = gateway.query(key, &[]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(header(&refused, "content-type"), "application/problem+json");
    assert_eq!(gateway.key_info(id).await["revoked"], true);
    assert_eq!(gateway.key_info(id).await["credits"], 4);

    let again = gateway
        .admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "revoking is idempotent");
    let rotate = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        rotate.status(),
        409,
        "a revoked key cannot be revived by rotation"
    );
    for unknown in ["00000000000000ff", "not-an-id"] {
        let response = gateway
            .admin(reqwest::Method::DELETE, &format!("/admin/keys/{unknown}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{unknown}");
    }
}

#[tokio::test]
async fn a_rotated_key_keeps_its_old_secret_for_the_grace_period_on_one_balance() {
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({"name": "rotating", "credits": 10}))
        .await;
    let old = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    let response = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/rotate"))
        .json(&serde_json::json!({"grace_seconds": 1}))
        .send()
        .await
        .unwrap();
    let rotated_at = std::time::Instant::now();
    assert_eq!(response.status(), 200);
    let rotated: serde_json::Value = response.json().await.unwrap();
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("sk_sluice_"));
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id);
    assert!(rotated["previous_key_expires_at"].is_string());

    // Both secrets work during the grace period and draw from one balance.
    let mut remaining = Vec::new();
    for key in [old, new.as_str(), old, new.as_str()] {
        let response = gateway.query(key, &[]).await;
        assert_eq!(response.status(), 200);
        remaining.push(header_number(&response, "X-Credits-Remaining"));
    }
    assert_eq!(remaining, [9, 8, 7, 6]);

    tokio::time::sleep(
        std::time::Duration::from_millis(1_100).saturating_sub(rotated_at.elapsed()),
    )
    .await;
    assert_eq!(gateway.query(old, &[]).await.status(), 401);
    let response = gateway.query(&new, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_number(&response, "X-Credits-Remaining"), 5);

    // Without a body the configured grace period (an hour by default) applies.
    let response = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let newest: serde_json::Value = response.json().await.unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(newest["previous_key_expires_at"].as_str().unwrap())
            .unwrap();
    let grace = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((3590..=3600).contains(&grace), "{grace}");
    assert_eq!(gateway.query(&new, &[]).await.status(), 200);
    assert_eq!(
        gateway
            .query(newest["key"].as_str().unwrap(), &[])
            .await
            .status(),
        200
    );
    assert_eq!(gateway.query(old, &[]).await.status(), 401);
    assert_eq!(gateway.key_info(id).await["credits"], 3);
}

#[tokio::test]
async fn listing_and_getting_keys_never_reveal_a_secret() {
    let gateway = spawn_gateway(|_| {}).await;
    let plain = gateway
        .create_key_with(serde_json::json!({"name": "plain", "credits": 3}))
        .await;
    let expires_at = "2999-01-01T00:00:00Z";
    let custom = gateway
        .create_key_with(serde_json::json!({
            "name": "custom", "credits": 7, "expires_at": expires_at,
            "rate_limit": {"requests": 5, "per_seconds": 10},
        }))
        .await;
    let rotated = gateway
        .admin(
            reqwest::Method::POST,
            &format!("/admin/keys/{}/rotate", plain["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let secrets: Vec<String> = [&plain["key"], &custom["key"], &rotated["key"]]
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();

    let response = gateway
        .admin(reqwest::Method::GET, "/admin/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: serde_json::Value = response.json().await.unwrap();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["id"], plain["id"]);
    assert_eq!(keys[1]["id"], custom["id"]);

    let got = gateway.key_info(custom["id"].as_str().unwrap()).await;
    assert_eq!(got["name"], "custom");
    assert_eq!(got["credits"], 7);
    assert_eq!(got["revoked"], false);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(got["expires_at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(expires_at).unwrap()
    );
    assert_eq!(
        got["rate_limit"],
        serde_json::json!({"requests": 5, "per_seconds": 10})
    );
    assert!(got["created_at"].is_string());
    assert!(gateway.key_info(plain["id"].as_str().unwrap()).await["rotated_at"].is_string());

    for answer in [&list, &got] {
        for text in strings(answer) {
            assert!(!text.contains("sk_sluice_"), "{text}");
            for secret in &secrets {
                assert!(!text.contains(&sha256_hex(secret)), "{text}");
            }
        }
    }

    let unknown = gateway
        .admin(reqwest::Method::GET, "/admin/keys/00000000000000ff")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(header(&unknown, "content-type"), "application/problem+json");
    for path in [
        "/admin/keys",
        &format!("/admin/keys/{}", plain["id"].as_str().unwrap()),
    ] {
        let anonymous = gateway
            .http
            .get(format!("{}{path}", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let gateway = spawn_gateway(|_| {}).await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1_000);
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "short-lived", "credits": 5, "expires_at": expires_at.to_rfc3339(),
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(gateway.query(key, &[]).await.status(), 200);
    let left = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(50)).await;
    assert_eq!(gateway.query(key, &[]).await.status(), 401);

    let response = gateway
        .admin(reqwest::Method::POST, "/admin/keys")
        .json(&serde_json::json!({
            "name": "stillborn", "credits": 5, "expires_at": "2001-01-01T00:00:00Z",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "an expiry in the past is refused");
}

#[tokio::test]
async fn keys_created_before_key_management_keep_working() {
    let gateway = spawn_gateway(|_| {}).await;
    let prefix = gateway.redis_key_prefix.clone();
    let secret = format!("sk_sluice_{}", "5a".repeat(32));
    let hash = sha256_hex(&secret);
    let client = redis::Client::open(Stack::get().redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HSET")
        .arg(format!("{prefix}key:{hash}"))
        .arg(&[
            ("id", &hash[..16]),
            ("name", "old-timer"),
            ("credits", "4"),
            ("created_at", "2024-01-01T00:00:00+00:00"),
        ])
        .query_async::<()>(&mut connection)
        .await
        .unwrap();

    let response = gateway.query(&secret, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_number(&response, "X-Credits-Remaining"), 3);
    let info = gateway.key_info(&hash[..16]).await;
    assert_eq!(info["name"], "old-timer");
    assert_eq!(info["credits"], 3);
    let legacy_left: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}key:{hash}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!legacy_left, "the old record was moved, not copied");
}

#[tokio::test]
async fn the_openapi_document_lists_every_path_and_docs_are_html() {
    let gateway = spawn_gateway(|_| {}).await;
    let response = reqwest::get(format!("{}/openapi.json", gateway.url))
        .await
        .unwrap();
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
    let docs = reqwest::get(format!("{}/docs", gateway.url)).await.unwrap();
    assert_eq!(docs.status(), 200);
    assert_eq!(docs.url().path(), "/docs/");
    assert!(header(&docs, "content-type").starts_with("text/html"));
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
}

#[tokio::test]
async fn every_refusal_is_a_documented_problem_with_its_headers() {
    let gateway = spawn_gateway(|_| {}).await;
    let problem = |response: &reqwest::Response, status: u16| {
        assert_eq!(response.status(), status, "{}", response.url());
        assert_eq!(
            header(response, "content-type"),
            "application/problem+json",
            "{}",
            response.url()
        );
    };
    // A method a path does not have: 405 naming the ones it has (after the admin token).
    for (method, path, allow) in [
        ("TRACE", "/aggregated_game_rounds", "GET"),
        ("DELETE", "/admin/audit", "GET"),
        ("PATCH", "/admin/keys", "POST, GET"),
        ("PUT", "/create_user", "POST"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = gateway.admin(method, path).send().await.unwrap();
        problem(&response, 405);
        assert_eq!(header(&response, "allow"), allow, "{path}");
    }
    let unknown = gateway
        .http
        .get(format!("{}/nope", gateway.url))
        .send()
        .await
        .unwrap();
    problem(&unknown, 404);
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
    let no_key = gateway
        .http
        .get(format!("{}/aggregated_game_rounds", gateway.url))
        .send()
        .await
        .unwrap();
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
        .admin(reqwest::Method::POST, "/admin/keys")
        .json(&huge)
        .send()
        .await
        .unwrap();
    problem(&too_large, 413);

    // What the document allows is accepted: integers written with a zero fraction, a `null`
    // rotation body, a name with white space around it (dropped).
    let created = gateway
        .create_key_with(serde_json::json!({"name": "  spaced  ", "credits": 5.0}))
        .await;
    assert_eq!(
        (&created["name"], &created["credits"]),
        (&"spaced".into(), &5.into())
    );
    let id = created["id"].as_str().unwrap();
    let topped = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/credits"))
        .json(&serde_json::json!({"add": 1e1}))
        .send()
        .await
        .unwrap();
    assert_eq!(topped.status(), 200);
    let rotated = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/rotate"))
        .json(&serde_json::Value::Null)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let overflow = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/credits"))
        .json(&serde_json::json!({"add": sluice_gateway::credits::MAX_CREDITS}))
        .send()
        .await
        .unwrap();
    problem(&overflow, 409);
    for body in [
        serde_json::json!({"name": " ", "credits": 1}),
        serde_json::json!({"name": "a".repeat(201), "credits": 1}),
        serde_json::json!({"name": "a", "credits": 1.5}),
    ] {
        let refused = gateway
            .admin(reqwest::Method::POST, "/admin/keys")
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(&refused, 400);
    }
}

impl Gateway {
    /// `GET /aggregated_game_rounds` that must answer 200; returns the body.
    async fn page(&self, key: &str, filters: &[(&str, &str)]) -> serde_json::Value {
        let response = self.query(key, filters).await;
        assert_eq!(response.status(), 200, "{filters:?}");
        response.json().await.unwrap()
    }

    /// Follows `next_cursor` from the first page to the last; returns every bucket and the
    /// number of pages.
    async fn every_page(
        &self,
        key: &str,
        filters: &[(&str, &str)],
        page_size: &str,
    ) -> (Vec<serde_json::Value>, usize) {
        let mut buckets = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut params = filters.to_vec();
            params.push(("page_size", page_size));
            if let Some(cursor) = &cursor {
                params.push(("cursor", cursor));
            }
            let page = self.page(key, &params).await;
            pages += 1;
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= page_size.parse::<usize>().unwrap());
            buckets.extend(data.iter().cloned());
            assert_eq!(page["has_more"], page["next_cursor"].is_string());
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(data.len(), page_size.parse::<usize>().unwrap());
                    cursor = Some(next.to_owned());
                }
                None => return (buckets, pages),
            }
            assert!(pages < 1_000, "pagination does not end");
        }
    }
}

/// 400 rounds of three players in four games over about eleven hours, several per bucket.
async fn insert_many_rounds(database: &str) {
    sluice_testkit::rounds::insert(
        database,
        "SELECT toDateTime('2019-10-23 00:00:00', 'UTC') + number * 97, 1000 + number, \
         lower(hex(MD5(toString(number % 3)))), number % 4, toDecimal64(number % 7, 4) / 4, \
         NULL, toDecimal64(number % 5, 4), toDecimal64(number % 2, 4) / 100, 'g', 'p', 1 \
         FROM system.numbers LIMIT 400",
    )
    .await;
}

fn sort_key(bucket: &serde_json::Value) -> (String, String, u64) {
    let start = bucket["hour"].as_str().or(bucket["day"].as_str()).unwrap();
    (
        start.to_owned(),
        bucket["player_id"].as_str().unwrap().to_owned(),
        bucket["game_id"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn paging_with_a_small_page_size_returns_every_bucket_once_in_order_with_the_unpaged_sums() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "pager", "credits": 1000,
            "rate_limit": {"requests": 1000, "per_seconds": 1},
        }))
        .await;
    let key = created["key"].as_str().unwrap();

    let unpaged = gateway.page(key, &[("page_size", "10000")]).await;
    assert_eq!(unpaged["next_cursor"], serde_json::Value::Null);
    assert_eq!(unpaged["has_more"], false);
    let all = unpaged["data"].as_array().unwrap().clone();
    let rounds: u64 = all.iter().map(|b| b["rounds"].as_u64().unwrap()).sum();
    assert_eq!(rounds, 403, "the fixture's 3 rounds and the 400 inserted");
    assert!(all.len() > 100, "{} buckets", all.len());
    let keys: Vec<_> = all.iter().map(sort_key).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "strictly ordered");

    let (paged, pages) = gateway.every_page(key, &[], "7").await;
    assert_eq!(pages, all.len().div_ceil(7));
    assert_eq!(
        paged, all,
        "every bucket once, in order, with the same sums"
    );

    // Filters and daily buckets page the same way; a page size of one crosses every boundary.
    let filters = [
        ("granularity", "day"),
        ("from", "2019-10-22"),
        ("to", "2019-10-24"),
        ("game_id", "1"),
    ];
    let mut unpaged_filters = filters.to_vec();
    unpaged_filters.push(("limit", "10000"));
    let daily = gateway.page(key, &unpaged_filters).await["data"].clone();
    let (paged_daily, _) = gateway.every_page(key, &filters, "1").await;
    assert!(daily.as_array().unwrap().len() >= 3);
    assert_eq!(serde_json::Value::Array(paged_daily), daily);

    // The page size may change between pages; only the filters are bound to the cursor.
    let first = gateway.page(key, &[("page_size", "5")]).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = gateway
        .page(key, &[("page_size", "10000"), ("cursor", cursor)])
        .await;
    let mut joined = first["data"].as_array().unwrap().clone();
    joined.extend(rest["data"].as_array().unwrap().iter().cloned());
    assert_eq!(joined, all);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_tampered_cursor_or_one_reused_with_other_filters_is_400_and_costs_nothing() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "tamperer", "credits": 100,
            "rate_limit": {"requests": 1000, "per_seconds": 1},
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let filters = [("from", "2019-10-23"), ("granularity", "hour")];
    let mut first_page = filters.to_vec();
    first_page.push(("page_size", "2"));
    let first = gateway.page(key, &first_page).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(gateway.key_info(id).await["credits"], 99);

    let mut tampered = Vec::new();
    for index in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut chars: Vec<char> = cursor.chars().collect();
        chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
        tampered.push(chars.into_iter().collect::<String>());
    }
    tampered.push(cursor[..cursor.len() - 4].to_owned());
    tampered.push(format!("{cursor}AAAA"));
    tampered.push("not a cursor".to_owned());
    for bad in &tampered {
        let mut params = filters.to_vec();
        params.push(("cursor", bad));
        let response = gateway.query(key, &params).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }

    for other in [
        vec![("from", "2019-10-22"), ("granularity", "hour")],
        vec![("from", "2019-10-23"), ("granularity", "day")],
        vec![("granularity", "hour")],
        vec![("from", "2019-10-23"), ("player_id", PLAYER)],
        vec![("from", "2019-10-23"), ("game_id", "1")],
        vec![("from", "2019-10-23"), ("to", "2019-10-24")],
    ] {
        let mut params = other.clone();
        params.push(("cursor", &cursor));
        let response = gateway.query(key, &params).await;
        assert_eq!(response.status(), 400, "{other:?}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("other filters"),
            "{problem}"
        );
    }
    assert_eq!(
        gateway.key_info(id).await["credits"],
        99,
        "no refused cursor was charged"
    );

    // The genuine cursor with its own filters still works; a gateway with another secret
    // refuses it.
    let mut next = filters.to_vec();
    next.push(("cursor", &cursor));
    let second = gateway.page(key, &next).await;
    assert_ne!(second["data"][0], first["data"][0]);
    assert_eq!(gateway.key_info(id).await["credits"], 98);
    let stranger = spawn_gateway(|config| {
        config.cursor_secret = Some("another-cursor-secret-of-thirty-two-b".to_owned().into());
    })
    .await;
    let stranger_key = stranger.create_key(5).await;
    assert_eq!(stranger.query(&stranger_key, &next).await.status(), 400);
}

#[tokio::test]
async fn the_ledger_holds_every_grant_charge_and_refund_and_the_audit_finds_no_difference() {
    let stack = Stack::get();
    let link = FaultyLink::start(stack.clickhouse_address()).await;
    let link_url = format!("http://{}", link.address());
    let gateway = spawn_gateway(|config| {
        config.clickhouse_url = link_url;
        config.ledger_flush_interval_ms = 50;
    })
    .await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "ledgered", "credits": 20,
            "rate_limit": {"requests": 1000, "per_seconds": 1},
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let top_up = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/credits"))
        .json(&serde_json::json!({"add": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(top_up.status(), 200);
    const N: u64 = 6;
    for _ in 0..N {
        assert_eq!(
            gateway.query(key, &[("player_id", PLAYER)]).await.status(),
            200
        );
    }
    // ClickHouse unreachable for one query: 503, refunded.
    link.cut();
    let failed = gateway.query(key, &[]).await;
    assert_eq!(failed.status(), 503);
    link.heal();
    // A key that was never used has its grant in the ledger too.
    let idle = gateway
        .create_key_with(serde_json::json!({"name": "idle", "credits": 0}))
        .await;

    let report = gateway.audit().await;
    assert_eq!(report["differences"], serde_json::json!([]), "{report}");
    assert_eq!(report["checked"], 2);
    assert_eq!(gateway.key_info(id).await["credits"], 25 - N);
    let ledger = gateway.ledger(id).await;
    assert_eq!(
        ledger,
        BTreeMap::from([
            ("granted".to_owned(), (2, 25, "200,201".to_owned())),
            (
                "charged".to_owned(),
                (N + 1, N + 1, "200,200,200,200,200,200,503".to_owned())
            ),
            ("refunded".to_owned(), (1, 1, "503".to_owned())),
        ])
    );
    let idle_ledger = gateway.ledger(idle["id"].as_str().unwrap()).await;
    assert_eq!(
        idle_ledger,
        BTreeMap::from([("granted".to_owned(), (1, 0, "201".to_owned()))])
    );
    let details = clickhouse::query(&format!(
        "SELECT uniqExact(event_id), count(), countIf(endpoint = 'GET /aggregated_game_rounds'), \
         max(latency_ms) < 60000, min(at) > now() - 600 FROM {}.usage_ledger FINAL WHERE key_id = '{id}'",
        gateway.database
    ))
    .await;
    assert_eq!(details, format!("{0}\t{0}\t{1}\t1\t1", N + 4, N + 2));
}

#[tokio::test]
async fn the_audit_reports_a_balance_changed_in_redis_and_a_rebuild_restores_the_ledger_balance() {
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway
        .create_key_with(serde_json::json!({"name": "edited", "credits": 10}))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(gateway.query(key, &[]).await.status(), 200);
    }
    assert_eq!(gateway.audit().await["differences"], serde_json::json!([]));

    let client = redis::Client::open(Stack::get().redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let record = format!("{}keyid:{id}", gateway.redis_key_prefix);
    redis::cmd("HINCRBY")
        .arg(&record)
        .arg("credits")
        .arg(100)
        .query_async::<i64>(&mut connection)
        .await
        .unwrap();
    let report = gateway.audit().await;
    assert_eq!(
        report["differences"],
        serde_json::json!([{
            "id": id, "redis_credits": 107, "leased": 0, "ledger_credits": 7,
            "granted": 10, "charged": 3, "refunded": 0, "ledger_events": 4, "difference": 100,
            "missing_grant": false,
        }])
    );

    let response = gateway
        .admin(reqwest::Method::POST, &format!("/admin/keys/{id}/rebuild"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rebuilt: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        rebuilt,
        serde_json::json!({"id": id, "previous_credits": 107, "credits": 7})
    );
    assert_eq!(gateway.audit().await["differences"], serde_json::json!([]));
    assert_eq!(gateway.key_info(id).await["credits"], 7);
    assert_eq!(gateway.credits_after_one_more_query(key).await, 6);

    // A key with no ledger rows (older than the ledger) is reported, never rebuilt to 0.
    let secret = format!("sk_sluice_{}", "6b".repeat(32));
    let hash = sha256_hex(&secret);
    redis::cmd("HSET")
        .arg(format!("{}key:{hash}", gateway.redis_key_prefix))
        .arg(&[("id", &hash[..16]), ("name", "old-timer"), ("credits", "4")])
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    assert_eq!(gateway.query(&secret, &[]).await.status(), 200);
    let report = gateway.audit().await;
    let differences = report["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{report}");
    assert_eq!(differences[0]["id"], &hash[..16]);
    assert_eq!(differences[0]["ledger_events"], 1, "only its charge");
    assert_eq!(differences[0]["difference"], 4);
    let legacy_rebuild = gateway
        .admin(
            reqwest::Method::POST,
            &format!("/admin/keys/{}/rebuild", &hash[..16]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        legacy_rebuild.status(),
        409,
        "its ledger balance (one charge, no grant) is negative"
    );
    for (path, status) in [
        ("/admin/keys/00000000000000ff/rebuild", 404),
        ("/admin/keys/not-an-id/rebuild", 404),
    ] {
        let response = gateway
            .admin(reqwest::Method::POST, path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    let anonymous = gateway
        .http
        .get(format!("{}/admin/audit", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn while_clickhouse_is_down_ledger_events_wait_in_the_outbox_and_none_is_lost() {
    let stack = Stack::get();
    let link = FaultyLink::start(stack.clickhouse_address()).await;
    let link_url = format!("http://{}", link.address());
    let gateway = spawn_gateway(|config| {
        config.clickhouse_url = link_url;
        config.ledger_flush_interval_ms = 50;
        config.ledger_batch_rows = 2;
    })
    .await;
    link.cut();
    let created = gateway
        .create_key_with(serde_json::json!({"name": "outboxed", "credits": 10}))
        .await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(gateway.query(key, &[]).await.status(), 503);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        gateway.key_info(id).await["credits"],
        10,
        "every failed query was refunded"
    );
    let client = redis::Client::open(stack.redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let waiting: u64 = redis::cmd("XLEN")
        .arg(format!("{}ledger:outbox", gateway.redis_key_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        waiting, 11,
        "a grant, and a charge and a refund per failed query"
    );

    link.heal();
    let report = gateway.audit().await;
    assert_eq!(report["differences"], serde_json::json!([]), "{report}");
    assert_eq!(
        gateway.ledger(id).await,
        BTreeMap::from([
            ("granted".to_owned(), (1, 10, "201".to_owned())),
            (
                "charged".to_owned(),
                (5, 5, "503,503,503,503,503".to_owned())
            ),
            (
                "refunded".to_owned(),
                (5, 5, "503,503,503,503,503".to_owned())
            ),
        ])
    );
}

#[tokio::test]
async fn an_audit_before_any_ledger_write_creates_the_table_and_finds_no_difference() {
    let fresh = unique("gateway_fresh");
    let gateway = spawn_gateway(|config| config.clickhouse_database = fresh.clone()).await;
    let report = gateway.audit().await;
    assert_eq!(report, serde_json::json!({"checked": 0, "differences": []}));
    let tables = clickhouse::query(&format!("EXISTS TABLE {fresh}.usage_ledger")).await;
    assert_eq!(tables, "1");
}

#[tokio::test]
async fn sorting_newest_first_pages_through_the_same_buckets_in_reverse() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "sorter", "credits": 1000,
            "rate_limit": {"requests": 1000, "per_seconds": 1},
        }))
        .await;
    let key = created["key"].as_str().unwrap();

    let ascending = gateway.page(key, &[("page_size", "10000")]).await["data"]
        .as_array()
        .unwrap()
        .clone();
    let (descending, _) = gateway.every_page(key, &[("sort", "desc")], "6").await;
    let mut reversed = descending.clone();
    reversed.reverse();
    assert_eq!(reversed, ascending, "the same buckets, newest first");
    let keys: Vec<_> = descending.iter().map(sort_key).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "strictly descending");

    // A cursor is bound to its order too.
    let first = gateway.page(key, &[("page_size", "5")]).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let response = gateway
        .query(key, &[("sort", "desc"), ("cursor", cursor)])
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        gateway.query(key, &[("sort", "sideways")]).await.status(),
        400
    );
}

#[tokio::test]
async fn when_every_query_slot_stays_busy_a_query_is_503_at_once_and_costs_nothing() {
    let address = silent_clickhouse().await;
    let gateway = spawn_gateway(|config| {
        config.clickhouse_url = format!("http://{address}");
        config.query_timeout_ms = 4_000;
        config.charge_lease_ms = 9_000;
        config.max_concurrent_queries = 2;
        config.query_queue_wait_ms = 300;
        config.rate_limit_requests = 100;
    })
    .await;
    let key = gateway.create_key(10).await;
    // Two queries hold both slots, waiting on a ClickHouse that never answers.
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let url = gateway.url.clone();
            let key = key.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(format!("{url}/aggregated_game_rounds"))
                    .header("X-API-Key", key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let store = credit_store(&Stack::get().redis_url, &gateway.redis_key_prefix);
    let secret = sluice_gateway::credits::ApiKey::parse(&key).unwrap();
    let started = Instant::now();
    while store.credits(&secret).await.unwrap() != Some(8) {
        assert!(started.elapsed() < Duration::from_secs(3), "never charged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let refused = gateway.query(&key, &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        store.credits(&secret).await.unwrap(),
        Some(8),
        "the 503 cost nothing"
    );
    for holder in holders {
        assert_eq!(holder.await.unwrap(), 504);
    }
    assert_eq!(
        store.credits(&secret).await.unwrap(),
        Some(10),
        "timeouts refunded"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_server_dropped_while_idle_is_retried_on_a_fresh_one() {
    let stack = Stack::get();
    let link = FaultyLink::start(stack.clickhouse_address()).await;
    let link_url = format!("http://{}", link.address());
    let gateway = spawn_gateway(|config| config.clickhouse_url = link_url).await;
    let key = gateway.create_key(10).await;
    for round in 0..3 {
        assert_eq!(
            gateway.query(&key, &[]).await.status(),
            200,
            "round {round}"
        );
        // Every connection the gateway holds is now dead without its knowing.
        link.go_stale();
    }
    assert_eq!(gateway.credits_after_one_more_query(&key).await, 6);
}

#[tokio::test]
async fn ready_answers_within_a_second_naming_a_frozen_dependency() {
    let stack = Stack::get();
    let clickhouse = FaultyLink::start(stack.clickhouse_address()).await;
    let redis = FaultyLink::start(stack.redis_address()).await;
    let gateway = spawn_gateway(|config| {
        config.clickhouse_url = format!("http://{}", clickhouse.address());
        config.redis_url = stack.redis_url_at(&redis.address());
    })
    .await;
    let ready = || async {
        let asked = Instant::now();
        let response = reqwest::get(format!("{}/ready", gateway.url))
            .await
            .unwrap();
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
    let started = Instant::now();
    while ready().await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn answers_are_the_same_from_raw_rows_and_from_the_rollup_and_a_moved_round_counts_once() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    // Round 5000's later version moved it from September into October: it counts once, there.
    sluice_testkit::rounds::insert(
        &gateway.database,
        &format!(
            "VALUES ('2019-09-30 23:10:00', 5000, '{PLAYER}', 9, 100, NULL, 0, 0, 'g', 'p', 1), \
             ('2019-10-23 03:10:00', 5000, '{PLAYER}', 9, 7, NULL, 0, 0, 'g', 'p', 2)"
        ),
    )
    .await;
    let created = gateway
        .create_key_with(serde_json::json!({
            "name": "rollup", "credits": 100000,
            "rate_limit": {"requests": 100000, "per_seconds": 1},
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    let shapes: [&[(&str, &str)]; 7] = [
        &[],
        &[("player_id", PLAYER)],
        &[("game_id", "1")],
        &[
            ("from", "2019-10-23T02:30:00Z"),
            ("to", "2019-10-23T07:45:10Z"),
        ],
        &[("granularity", "day")],
        &[
            ("sort", "desc"),
            ("granularity", "day"),
            ("from", "2019-09-30"),
        ],
        &[
            ("sort", "desc"),
            ("from", "2019-10-23T03:10:00Z"),
            ("game_id", "9"),
        ],
    ];
    let mut before = Vec::new();
    for shape in shapes {
        before.push(gateway.every_page(key, shape, "9").await.0);
    }
    let rounds: u64 = before[0]
        .iter()
        .map(|b| b["rounds"].as_u64().unwrap())
        .sum();
    assert_eq!(rounds, 3 + 400 + 1, "every round once");
    let moved: Vec<_> = before[0].iter().filter(|b| b["game_id"] == 9).collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (
            moved[0]["hour"].as_str(),
            moved[0]["real_amount_bet"].as_str()
        ),
        (Some("2019-10-23T03:00:00Z"), Some("7"))
    );

    // The hours processed, their days not yet; then the days too.
    sluice_testkit::rounds::process_every_dirty_hour(&gateway.database).await;
    for (shape, before) in shapes.iter().zip(&before) {
        let (after, _) = gateway.every_page(key, shape, "9").await;
        assert_eq!(&after, before, "{shape:?}");
    }
    sluice_testkit::rounds::process_every_dirty_day(&gateway.database).await;
    for table in ["rollup_hourly", "rollup_daily"] {
        let sql = format!("SELECT count() FROM {}.{table}", gateway.database);
        assert_ne!(
            clickhouse::query(&sql).await,
            "0",
            "answered from {table} now"
        );
    }
    for (shape, before) in shapes.iter().zip(&before) {
        let (after, _) = gateway.every_page(key, shape, "9").await;
        assert_eq!(&after, before, "{shape:?}");
    }

    // A third version moves it to 05:00; as the consumer does, its old and new hours (only
    // those) are marked: they are read from raw rows, every other hour from the rollup.
    clickhouse::query(&format!(
        "INSERT INTO {}.round_versions ({}) VALUES \
         ('2019-10-23 05:10:00', 5000, '{PLAYER}', 9, 3, NULL, 0, 0, 'g', 'p', 3)",
        gateway.database,
        sluice_testkit::rounds::COLUMNS
    ))
    .await;
    let hour = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp() as u32
    };
    let mut redis = sluice_testkit::rounds::redis_connection().await;
    sluice_rollup::dirty::DirtyHours::new(&gateway.database)
        .end(
            &mut redis,
            "test",
            &[hour("2019-10-23T03:00:00Z"), hour("2019-10-23T05:00:00Z")],
        )
        .await
        .unwrap();
    let check = |buckets: &[serde_json::Value]| {
        let rounds: u64 = buckets.iter().map(|b| b["rounds"].as_u64().unwrap()).sum();
        assert_eq!(rounds, 404, "every round once");
        let moved: Vec<_> = buckets.iter().filter(|b| b["game_id"] == 9).collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(
            (
                moved[0]["hour"].as_str(),
                moved[0]["real_amount_bet"].as_str()
            ),
            (Some("2019-10-23T05:00:00Z"), Some("3"))
        );
    };
    // Per day: the round's day keeps it, with its new bet, whether the day's hours are dirty
    // (its daily rollup is stale), processed while the day is not, or all processed.
    let check_days = |buckets: &[serde_json::Value]| {
        let moved: Vec<_> = buckets.iter().filter(|b| b["game_id"] == 9).collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(
            (
                moved[0]["day"].as_str(),
                moved[0]["real_amount_bet"].as_str()
            ),
            (Some("2019-10-23T00:00:00Z"), Some("3"))
        );
    };
    let days = [("granularity", "day")];
    let (mixed, _) = gateway.every_page(key, &[], "9").await;
    check(&mixed);
    let (mixed_days, _) = gateway.every_page(key, &days, "9").await;
    check_days(&mixed_days);
    sluice_testkit::rounds::process_every_dirty_hour(&gateway.database).await;
    let (processed, _) = gateway.every_page(key, &[], "9").await;
    assert_eq!(processed, mixed);
    assert_eq!(gateway.every_page(key, &days, "9").await.0, mixed_days);
    sluice_testkit::rounds::process_every_dirty_day(&gateway.database).await;
    assert_eq!(gateway.every_page(key, &days, "9").await.0, mixed_days);
    // Nothing changed while a page was read: every page was right the first time (a page
    // that took a dirty hour or day from a rollup would have been read again).
    let repeated = gateway.counter("sluice_gateway_reads_repeated_total").await;
    assert_eq!(repeated, 0);
}
