//! A running gateway, used over HTTP as its admin and a key's holder use it. Whoever started it
//! (a test in-process, a bench as a process, `scripts/dev up`) gives its URL and admin token:
//! this crate sits below the services, whose tests depend on it, so it never starts one:
//! [`in_process`] runs one its caller builds.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_schema::domain::format_scaled;

use crate::services::{serve, Slice};

/// Buckets of an answer: (bucket start, player, game) → (rounds, real amount bet).
pub type Buckets = BTreeMap<(String, String, u64), (u64, String)>;

#[derive(Debug, Clone)]
pub struct Gateway {
    pub url: String,
    admin_token: String,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(url: impl Into<String>, admin_token: impl Into<String>) -> Gateway {
        Gateway {
            url: url.into(),
            admin_token: admin_token.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Waits until `/ready` answers 200 (its dependencies answer), for at most `timeout`.
    pub async fn wait_until_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let ready = self.http.get(format!("{}/ready", self.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("the gateway at {} is not ready after {timeout:?}", self.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /admin/keys` with `body` (`{"name": …, "credits": …}`); the 201 answer, which
    /// holds the secret under `key`.
    pub async fn create_key(&self, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .post(format!("{}/admin/keys", self.url))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        if status != 201 {
            bail!("POST /admin/keys answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// The secret of a new key with `credits` and a rate limit no run reaches (a million
    /// requests a second).
    pub async fn unlimited_key(&self, name: &str, credits: u64) -> anyhow::Result<String> {
        let created = self
            .create_key(&serde_json::json!({
                "name": name, "credits": credits,
                "rate_limit": {"requests": 1_000_000, "per_seconds": 1},
            }))
            .await?;
        let key = created["key"]
            .as_str()
            .context("the answer holds the secret")?;
        Ok(key.to_owned())
    }

    /// `GET /aggregated_game_rounds` with `key` and `query`: the answer's body.
    ///
    /// # Panics
    /// When the gateway does not answer JSON.
    pub async fn aggregated(&self, key: &str, query: &[(&str, &str)]) -> serde_json::Value {
        self.http
            .get(format!("{}/aggregated_game_rounds", self.url))
            .header("X-API-Key", key)
            .query(query)
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// Every bucket of `granularity` (`hour` or `day`), asked in one page.
    ///
    /// # Panics
    /// When the page is not the last one or not an answer.
    pub async fn buckets(&self, key: &str, granularity: &str) -> Buckets {
        let query = [("granularity", granularity), ("page_size", "10000")];
        let page = self.aggregated(key, &query).await;
        assert_eq!(page["has_more"], false, "{page}");
        let data = page["data"].as_array();
        let data = data.unwrap_or_else(|| panic!("{page}"));
        data.iter()
            .map(|b| {
                let start = b[granularity].as_str().unwrap().to_owned();
                let player = b["player_id"].as_str().unwrap().to_owned();
                let game = b["game_id"].as_u64().unwrap();
                let rounds = b["rounds"].as_u64().unwrap();
                let bet = b["real_amount_bet"].as_str().unwrap().to_owned();
                ((start, player, game), (rounds, bet))
            })
            .collect()
    }
}

/// A gateway in-process over `slice`, administered with `admin_token`, signing cursors with
/// `cursor_secret`. `start` is the caller's (this crate names no service's types): it builds
/// the application from its `Config` and returns its port and its `run_until_stopped()`, run
/// here on the test's runtime.
pub async fn in_process<C, F, Fut, R>(
    slice: &Slice,
    admin_token: &str,
    cursor_secret: &str,
    start: F,
) -> Gateway
where
    C: sluice_schema::config::ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = (u16, R)>,
    R: Future + Send + 'static,
    R::Output: Send + 'static,
{
    let settings = slice.gateway(admin_token);
    let settings = settings.set("CURSOR_SECRET", cursor_secret);
    let (port, run) = start(settings.config()).await;
    Gateway::new(serve(port, run), admin_token)
}

/// What [`Gateway::buckets`] must answer for rounds given as (second, player, game, real bet
/// in ten-thousandths), in buckets of `seconds` (3,600 or 86,400).
pub fn expected_buckets<I>(rounds: I, seconds: u32) -> Buckets
where
    I: IntoIterator<Item = (u32, String, u64, i64)>,
{
    let mut sums: BTreeMap<(String, String, u64), (u64, i64)> = BTreeMap::new();
    for (at, player, game, bet) in rounds {
        let start = i64::from(at - at % seconds);
        let start = chrono::DateTime::from_timestamp(start, 0).expect("a moment");
        let start = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let entry = sums.entry((start, player, game)).or_default();
        entry.0 += 1;
        entry.1 += bet;
    }
    sums.into_iter()
        .map(|(bucket, (rounds, bet))| (bucket, (rounds, format_scaled(i128::from(bet)))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_buckets_sum_each_bucket_player_and_game() {
        let player = |n: u8| format!("{n:032x}");
        let key = |start: &str, n: u8| (start.to_owned(), player(n), 7_u64);
        let rounds: [(u32, String, u64, i64); 4] = [
            (3_600, player(1), 7, 10_000),
            (7_199, player(1), 7, 2_500),
            (7_200, player(1), 7, 1),
            (3_600, player(2), 7, 0),
        ];
        let hours = expected_buckets(rounds.clone(), 3_600);
        assert_eq!(hours.len(), 3);
        let first = &hours[&key("1970-01-01T01:00:00Z", 1)];
        assert_eq!(first, &(2, "1.25".to_owned()));
        let days = expected_buckets(rounds, 86_400);
        let day = &days[&key("1970-01-01T00:00:00Z", 1)];
        assert_eq!(day, &(3, "1.2501".to_owned()));
    }
}
