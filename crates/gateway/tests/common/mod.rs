//! Shared by the gateway's test files: a gateway started in-process over a fresh database and
//! key prefix, with helpers to call it as a client and an admin would.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use sluice_gateway::credits::{ApiKey, CreditStore};
use sluice_gateway::{Application, Config};
use sluice_testkit::{clickhouse, rounds, unique, Stack};

pub const ADMIN_TOKEN: &str = "gateway-test-admin-token";

pub struct Gateway {
    pub url: String,
    pub http: reqwest::Client,
    pub redis_key_prefix: String,
    pub database: String,
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a gateway over a fresh database holding three rounds of one player.
pub async fn spawn_gateway(configure: impl FnOnce(&mut Config)) -> Gateway {
    let stack = Stack::get();
    let database = unique("gateway_test");
    let client = stack.clickhouse_client(&database);
    sluice_schema::migrations::apply(&client, &database)
        .await
        .unwrap();
    rounds::insert(
        &database,
        &format!(
            "VALUES \
             ('2019-10-22 08:20:42', 1, '{PLAYER}', 7, 2.5, NULL, 0, 0, 'Gonzo''s Quest', 'NetEnt', 1), \
             ('2019-10-22 08:40:00', 2, '{PLAYER}', 7, 1, 0.5, 10, NULL, 'Gonzo''s Quest', 'NetEnt', 1), \
             ('2019-10-22 09:05:00', 3, '{PLAYER}', 8, 0.05, 0, 0, 0, 'Cash, Cash, Cash', 'Red Tiger', 1)"
        ),
    )
    .await;

    let mut config = Config::with_endpoints(&stack.redis_url, &stack.clickhouse_url, ADMIN_TOKEN);
    config.clickhouse.user = stack.clickhouse_user.clone();
    config.clickhouse.password = stack.clickhouse_password.clone().into();
    config.listen_addr = "127.0.0.1:0".into();
    config.clickhouse.database = database.clone();
    config.redis_key_prefix = format!("{}:", unique("gateway_test"));
    config.cursor_secret = Some("gateway-test-cursor-secret-of-32-bytes".to_owned().into());
    configure(&mut config);
    let redis_key_prefix = config.redis_key_prefix.clone();
    let application = Application::build(config)
        .await
        .expect("the gateway starts");
    let url = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    Gateway {
        url,
        http: reqwest::Client::new(),
        redis_key_prefix,
        database,
    }
}

pub const PLAYER: &str = "9ece8c4020f8aed10676cd1c56a41889";

/// A key created through the admin API.
pub struct Key {
    /// What a client sends as `X-API-Key`.
    pub secret: String,
    pub id: String,
    /// The whole 201 answer.
    pub created: serde_json::Value,
}

impl Gateway {
    pub async fn create_key(&self, credits: u64) -> String {
        let body = self
            .create_key_with(serde_json::json!({"name": "test", "credits": credits}))
            .await;
        body["key"].as_str().unwrap().to_owned()
    }

    /// `POST /admin/keys` with `body`; returns the 201 answer.
    pub async fn create_key_with(&self, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .admin(reqwest::Method::POST, "/admin/keys")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// `POST /admin/keys` with `body`, as a [`Key`].
    pub async fn new_key(&self, body: serde_json::Value) -> Key {
        let created = self.create_key_with(body).await;
        Key {
            secret: created["key"].as_str().unwrap().to_owned(),
            id: created["id"].as_str().unwrap().to_owned(),
            created,
        }
    }

    /// A key named `name` holding `credits`, under the default rate limit.
    pub async fn key(&self, name: &str, credits: u64) -> Key {
        self.new_key(serde_json::json!({"name": name, "credits": credits}))
            .await
    }

    /// A key named `name` holding `credits`, limited to `requests` per `per_seconds`.
    pub async fn key_limited(
        &self,
        name: &str,
        credits: u64,
        requests: u64,
        per_seconds: u64,
    ) -> Key {
        self.new_key(serde_json::json!({
            "name": name, "credits": credits,
            "rate_limit": {"requests": requests, "per_seconds": per_seconds},
        }))
        .await
    }

    /// A request to the admin API with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// A request to the admin API with the admin token and no body, sent.
    pub async fn call_admin(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.admin(method, path).send().await.unwrap()
    }

    /// A request to the admin API with the admin token and a JSON `body`, sent.
    pub async fn call_admin_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.admin(method, path).json(body).send().await.unwrap()
    }

    /// `POST /admin/keys/{id}/credits` adding `add` (any JSON value).
    pub async fn top_up(&self, id: &str, add: impl Into<serde_json::Value>) -> reqwest::Response {
        let path = format!("/admin/keys/{id}/credits");
        let body = serde_json::json!({ "add": add.into() });
        self.call_admin_with(reqwest::Method::POST, &path, &body)
            .await
    }

    /// `DELETE /admin/keys/{id}`.
    pub async fn revoke(&self, id: &str) -> reqwest::Response {
        self.call_admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"))
            .await
    }

    /// `GET /admin/keys/{id}`.
    pub async fn key_info(&self, id: &str) -> serde_json::Value {
        let response = self
            .call_admin(reqwest::Method::GET, &format!("/admin/keys/{id}"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET path` without any credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.url);
        self.http.get(url).send().await.unwrap()
    }

    /// Direct access to this gateway's credits in the stack's Redis.
    pub fn credit_store(&self) -> CreditStore {
        credit_store(&Stack::get().redis_url, &self.redis_key_prefix)
    }

    pub async fn query(&self, key: &str, filters: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}/aggregated_game_rounds", self.url))
            .header("X-API-Key", key)
            .query(filters)
            .send()
            .await
            .unwrap()
    }

    /// The value of counter `name` on this gateway's `/metrics` (0 when it is not there).
    pub async fn counter(&self, name: &str) -> u64 {
        let text = self.http.get(format!("{}/metrics", self.url)).send().await;
        let text = text.unwrap().text().await.unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|value| value.parse::<f64>().unwrap() as u64)
            .sum()
    }

    /// Credits left, read through a successful query's header (which itself costs one).
    pub async fn credits_after_one_more_query(&self, key: &str) -> u64 {
        let response = self.query(key, &[]).await;
        assert_eq!(response.status(), 200);
        response.headers()["X-Credits-Remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Direct access to the credits a gateway keeps in Redis at `redis_url` under `prefix`.
pub fn credit_store(redis_url: &str, prefix: &str) -> CreditStore {
    let unused = Config::with_endpoints("redis://unused", "http://unused", ADMIN_TOKEN);
    CreditStore::new(redis_url, prefix, unused.default_rate_limit()).unwrap()
}

/// A key's balance read straight from the stack's Redis, never through a gateway.
pub struct RedisBalance {
    store: CreditStore,
    secret: ApiKey,
}

impl RedisBalance {
    /// The balance of secret `key` of `gateway`'s keys.
    pub fn of(gateway: &Gateway, key: &str) -> RedisBalance {
        RedisBalance {
            store: gateway.credit_store(),
            secret: ApiKey::parse(key).unwrap(),
        }
    }

    /// Credits left; `None` if no key has the secret.
    pub async fn get(&self) -> Option<u64> {
        self.store.credits(&self.secret).await.unwrap()
    }
}

/// A ClickHouse that accepts connections and never answers; its address.
pub async fn silent_clickhouse() -> std::net::SocketAddr {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    address
}

impl Gateway {
    /// `GET /admin/audit`.
    pub async fn audit(&self) -> serde_json::Value {
        let response = self.call_admin(reqwest::Method::GET, "/admin/audit").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET /admin/audit`, which must find no difference; returns the report.
    pub async fn audit_finds_no_difference(&self) -> serde_json::Value {
        let report = self.audit().await;
        assert_eq!(report["differences"], serde_json::json!([]), "{report}");
        report
    }

    /// The key's ledger rows by status: (status, rows, amount, http statuses).
    pub async fn ledger(&self, id: &str) -> BTreeMap<String, (u64, u64, String)> {
        let rows = clickhouse::query(&format!(
            "SELECT status, count(), sum(amount), \
             arrayStringConcat(arrayMap(s -> toString(s), arraySort(groupArray(http_status))), ',') \
             FROM {}.usage_ledger FINAL WHERE key_id = '{id}' GROUP BY status",
            self.database
        ))
        .await;
        rows.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                (
                    fields[0].to_owned(),
                    (
                        fields[1].parse().unwrap(),
                        fields[2].parse().unwrap(),
                        fields[3].to_owned(),
                    ),
                )
            })
            .collect()
    }
}

/// A key's ledger rows as [`Gateway::ledger`] returns them, from
/// `(status, rows, amount, http statuses)`.
pub fn ledger_rows(rows: &[(&str, u64, u64, &str)]) -> BTreeMap<String, (u64, u64, String)> {
    rows.iter()
        .map(|(status, count, amount, statuses)| {
            (
                (*status).to_owned(),
                (*count, *amount, (*statuses).to_owned()),
            )
        })
        .collect()
}

/// `GET /aggregated_game_rounds` with `key`, sent from a task of its own.
pub fn spawn_query(
    url: &str,
    key: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let (url, key) = (url.to_owned(), key.to_owned());
    tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("{url}/aggregated_game_rounds"))
            .header("X-API-Key", key)
            .send()
            .await
    })
}

/// Polls `done` every `every` until it holds; fails naming `what` once `deadline` passed.
pub async fn poll_until<F, Fut>(deadline: Instant, every: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}
