//! What the modules of `tests/api` share, beside `tests/common`.

pub use crate::common::*;

pub use std::collections::BTreeMap;
pub use std::time::{Duration, Instant};

pub use sluice_gateway::Config;
pub use sluice_testkit::fault::FaultyLink;
pub use sluice_testkit::{clickhouse, unique, Stack};

/// A gateway that reaches ClickHouse through a link the test can cut, freeze or make stale,
/// and the link.
pub async fn spawn_behind_clickhouse_link(
    configure: impl FnOnce(&mut Config),
) -> (Gateway, FaultyLink) {
    let link = FaultyLink::start(Stack::get().clickhouse_address()).await;
    let link_url = format!("http://{}", link.address());
    let gateway = spawn_gateway(|config| {
        config.clickhouse.url = link_url;
        configure(config);
    })
    .await;
    (gateway, link)
}

/// Header `name` of `response`, which must be there.
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing"))
        .to_str()
        .unwrap()
}

/// Header `name` of `response` as a number.
pub fn header_number(response: &reqwest::Response, name: &str) -> u64 {
    header(response, name).parse().unwrap()
}

/// The JSON body of `response`, which must have answered `status`.
pub async fn answer(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status, "{}", response.url());
    response.json().await.unwrap()
}

/// Every string anywhere in `value`.
pub fn strings(value: &serde_json::Value) -> Vec<&str> {
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

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Writes a key the way the gateway did before key management: `P key:{hash}` holding
/// `fields`, `hash` being the SHA-256 of its secret.
pub async fn legacy_key(gateway: &Gateway, hash: &str, fields: &[(&str, &str)]) {
    let mut connection = sluice_testkit::rounds::redis_connection().await;
    redis::cmd("HSET")
        .arg(format!("{}key:{hash}", gateway.redis_key_prefix))
        .arg(fields)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
}

impl Gateway {
    /// `GET /aggregated_game_rounds` that must answer 200; returns the body.
    pub async fn page(&self, key: &str, filters: &[(&str, &str)]) -> serde_json::Value {
        let response = self.query(key, filters).await;
        assert_eq!(response.status(), 200, "{filters:?}");
        response.json().await.unwrap()
    }

    /// Follows `next_cursor` from the first page to the last; returns every bucket and the
    /// number of pages.
    pub async fn every_page(
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
pub async fn insert_many_rounds(database: &str) {
    sluice_testkit::rounds::insert(
        database,
        "SELECT toDateTime('2019-10-23 00:00:00', 'UTC') + number * 97, 1000 + number, \
         lower(hex(MD5(toString(number % 3)))), number % 4, toDecimal64(number % 7, 4) / 4, \
         NULL, toDecimal64(number % 5, 4), toDecimal64(number % 2, 4) / 100, 'g', 'p', 1 \
         FROM system.numbers LIMIT 400",
    )
    .await;
}

/// A bucket's place in the order: `(start, player, game)`.
pub fn sort_key(bucket: &serde_json::Value) -> (String, String, u64) {
    let start = bucket["hour"].as_str().or(bucket["day"].as_str()).unwrap();
    (
        start.to_owned(),
        bucket["player_id"].as_str().unwrap().to_owned(),
        bucket["game_id"].as_u64().unwrap(),
    )
}
