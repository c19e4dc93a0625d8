//! The gateway against a real Redis and a real ClickHouse: keys, exact credits, refunds,
//! hostile filters.

use std::collections::BTreeMap;

use sluice_gateway::{Application, Config};
use sluice_testkit::{clickhouse, unique, Stack};

const ADMIN_TOKEN: &str = "gateway-test-admin-token";

struct Gateway {
    url: String,
    http: reqwest::Client,
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a gateway over a fresh database holding three rounds of one player.
async fn spawn_gateway(configure: impl FnOnce(&mut Config)) -> Gateway {
    let stack = Stack::get();
    let database = unique("gateway_test");
    let client = sluice_schema::migrations::client(&stack.clickhouse_url, &database, "default", "");
    sluice_schema::migrations::apply(&client, &database)
        .await
        .unwrap();
    clickhouse::query(&format!(
        "INSERT INTO {database}.game_rounds (created_timestamp, game_instance_id, user_id, game_id, \
         real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win, game_name, provider) VALUES \
         ('2019-10-22 08:20:42', 1, '{PLAYER}', 7, 2.5, NULL, 0, 0, 'Gonzo''s Quest', 'NetEnt'), \
         ('2019-10-22 08:40:00', 2, '{PLAYER}', 7, 1, 0.5, 10, NULL, 'Gonzo''s Quest', 'NetEnt'), \
         ('2019-10-22 09:05:00', 3, '{PLAYER}', 8, 0.05, 0, 0, 0, 'Cash, Cash, Cash', 'Red Tiger')"
    ))
    .await;

    let mut config = Config::with_endpoints(&stack.redis_url, &stack.clickhouse_url, ADMIN_TOKEN);
    config.listen_addr = "127.0.0.1:0".into();
    config.clickhouse_database = database;
    config.redis_key_prefix = format!("{}:", unique("gateway_test"));
    configure(&mut config);
    let application = Application::build(config)
        .await
        .expect("the gateway starts");
    let url = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    Gateway {
        url,
        http: reqwest::Client::new(),
    }
}

const PLAYER: &str = "9ece8c4020f8aed10676cd1c56a41889";

impl Gateway {
    async fn create_key(&self, credits: u64) -> String {
        let response = self
            .http
            .post(format!("{}/admin/keys", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"name": "test", "credits": credits}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        body["key"].as_str().unwrap().to_owned()
    }

    async fn query(&self, key: &str, filters: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}/aggregated_game_rounds", self.url))
            .header("X-API-Key", key)
            .query(filters)
            .send()
            .await
            .unwrap()
    }

    /// Credits left, read through a successful query's header (which itself costs one).
    async fn credits_after_one_more_query(&self, key: &str) -> u64 {
        let response = self.query(key, &[]).await;
        assert_eq!(response.status(), 200);
        response.headers()["X-Credits-Remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

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
    let key = gateway.create_key(25).await;
    let requests = (0..200).map(|_| gateway.query(&key, &[("player_id", PLAYER)]));
    let statuses: Vec<u16> = futures::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 25);
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 175);
    assert_eq!(gateway.query(&key, &[]).await.status(), 402);
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
    };
    let broken_key = broken.create_key(3).await;
    for _ in 0..5 {
        let response = broken.query(&broken_key, &[]).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
    }
    let credits =
        sluice_gateway::credits::CreditStore::new(&config.redis_url, &config.redis_key_prefix)
            .unwrap()
            .credits(&sluice_gateway::credits::ApiKey::parse(&broken_key).unwrap())
            .await
            .unwrap();
    assert_eq!(credits, Some(3), "every failed answer was refunded");
    assert_eq!(healthy.credits_after_one_more_query(&key).await, 2);
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
