//! The stack `scripts/dev up` runs, as the README's reader gets it: the four programs as the
//! script builds, configures and starts them, found (with their tokens) in
//! `target/sluice/stack.env`. The README's "Try it" flow runs against it, so a setting the
//! script forgets fails here rather than for the first reader. Also: the script's secrets stay
//! out of every log and in private files, and its ClickHouse and Redis refuse clients without
//! the password.
//!
//! `scripts/dev test` starts the stack (debug binaries, the ones the suite builds anyway) before
//! the tests and stops it after; without it these tests fail, naming the command.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use sluice_schema::domain::format_scaled;
use sluice_testkit::gateway::Gateway;
use sluice_testkit::generate::{self, Encoding, Options, Totals};
use sluice_testkit::stack::{stack_env_path, workspace_root};
use sluice_testkit::{http, unique, Programs, Stack};

/// What the README does, step by step: upload with the upload token, watch reconciliation
/// reach `landed`, list the rejects, create a key with the admin token, and read every
/// player's sums back through the gateway, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_flow_lands_lists_rejects_and_sums_exactly() {
    let programs = Programs::get();
    let client = reqwest::Client::new();

    // Players of their own (the seed picks them), so earlier runs' rows in the stack's
    // database do not add to the sums.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let options = Options {
        seed,
        encoding: Encoding::Utf16Be,
        players: 3,
        bad_row_every: Some(100),
        ..Options::new(2_000)
    };
    let export = generate::export(&options);
    let expected = &export.summary;
    assert_eq!(expected.bad_lines.len(), 20);

    // The producer is not open: the token `scripts/dev up` made is needed.
    let anonymous =
        http::upload_csv(&programs.producer_url, export.bytes.clone(), "text/csv").await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let bearer = format!("Bearer {}", programs.upload_token);
    let upload = http::upload_csv_with_headers(
        &programs.producer_url,
        export.bytes.clone(),
        "text/csv",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    assert_eq!(upload.body["accepted"], expected.good_rows);
    assert_eq!(upload.body["rejected"], expected.bad_lines.len());
    let id = upload.body["upload_id"].as_str().unwrap().to_owned();

    // Reconciliation: the producer asks the stack's ClickHouse what landed.
    let reconciliation = http::wait_until_landed(
        &programs.producer_url,
        &id,
        Some(&bearer),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        reconciliation["landed"], expected.good_rows,
        "{reconciliation}"
    );
    assert_eq!(reconciliation["pending"], 0);

    // Every reject is listed, in line order (the consumer may still be storing them).
    let started = Instant::now();
    loop {
        let response = client
            .get(format!("{}/uploads/{id}/rejects", programs.producer_url))
            .query(&[("after_line", "0"), ("limit", "1000")])
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: serde_json::Value = response.json().await.unwrap();
        let lines: Vec<u64> = page["rejects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect();
        if lines == expected.bad_lines {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rejects listed: {page}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A key, made with the admin token.
    let credits = 50;
    let created = Gateway::new(&programs.gateway_url, &programs.admin_token)
        .create_key(&serde_json::json!({"name": unique("readme"), "credits": credits}))
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    // Each player's hourly sums, page by page, add up to the export's exact totals.
    let mut spent = 0;
    for (player, totals) in &expected.totals {
        let mut buckets = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("player_id", player.clone()),
                ("from", "2019-10-22".to_owned()),
                ("to", "2019-10-23".to_owned()),
                ("page_size", "10".to_owned()),
            ];
            query.extend(cursor.clone().map(|c| ("cursor", c)));
            let response = client
                .get(format!("{}/aggregated_game_rounds", programs.gateway_url))
                .query(&query)
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                continue;
            }
            assert_eq!(response.status(), StatusCode::OK);
            spent += 1;
            assert_eq!(
                response.headers()["x-credits-remaining"],
                (credits - spent).to_string().as_str()
            );
            let page: serde_json::Value = response.json().await.unwrap();
            buckets.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(spent < credits, "paging does not end");
        }
        assert!(buckets.iter().all(|b| b["player_id"] == player.as_str()));
        assert_eq!(sums(&buckets), expected_sums(totals), "player {player}");
    }
    assert!(
        spent > expected.totals.len(),
        "no player needed a second page"
    );

    assert_no_secret_in_logs();
}

/// Nothing the script generated (tokens, cursor secret, passwords) is in any log it or the
/// programs write, and every file holding one is readable by its owner only.
/// A dataset declared in a file, through the stack as `scripts/dev up` runs it: a `records`
/// file uploaded at `POST /datasets/records/upload`, read by its spec (a bad country is a
/// reject), carried on its own topic, written by the consumer into `records_versions`, and
/// listed by the gateway at `GET /datasets/records/rows` for its cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_file_goes_through_the_whole_stack_by_its_spec() {
    let programs = Programs::get();
    let client = reqwest::Client::new();
    // Ids and a second of their own, so earlier runs' records do not answer.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let base = nanos % 1_000_000_000 * 10;
    let at =
        chrono::DateTime::from_timestamp(1_893_456_000 + (nanos / 1000 % 100_000_000) as i64, 0)
            .unwrap();
    let when = at.format("%Y-%m-%d %H:%M:%S").to_string();
    let csv = format!(
        "id,created_at,country,category,amount\n{a},{when},usa,Books,12.5\n{b},{when},GBR,Toys,0.01\n{c},{when},US,Toys,1\n",
        a = base + 1,
        b = base + 2,
        c = base + 3,
    );
    let bearer = format!("Bearer {}", programs.upload_token);
    let upload = http::upload_to(
        &programs.producer_url,
        "/datasets/records/upload",
        csv.into_bytes(),
        "text/csv",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    assert_eq!(
        (
            upload.body["accepted"].as_u64(),
            upload.body["rejected"].as_u64()
        ),
        (Some(2), Some(1))
    );

    let created = Gateway::new(&programs.gateway_url, &programs.admin_token)
        .create_key(&serde_json::json!({"name": unique("datasets"), "credits": 1000}))
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let from = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let to = (at + chrono::Duration::seconds(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let started = Instant::now();
    let page = loop {
        let response = client
            .get(format!("{}/datasets/records/rows", programs.gateway_url))
            .query(&[("from", from.as_str()), ("to", to.as_str())])
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: serde_json::Value = response.json().await.unwrap();
        if page["data"].as_array().unwrap().len() == 2 {
            break page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after 60 s: {page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rows: Vec<(u64, &str, &str)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["country"].as_str().unwrap(),
                r["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [(base + 1, "USA", "12.50"), (base + 2, "GBR", "0.01")]
    );
}

#[test]
fn no_secret_is_logged_and_files_holding_secrets_are_private() {
    Programs::get();
    let secrets = secrets();
    assert!(
        secrets.contains_key("SLUICE_UPLOAD_TOKEN") && secrets.contains_key("SLUICE_ADMIN_TOKEN"),
        "stack.env names no tokens: {:?}",
        secrets.keys()
    );
    let mode = mode_of(&stack_env_path());
    assert_eq!(mode & 0o077, 0, "stack.env has mode {mode:o}, not 600");
    let mut exposed = Vec::new();
    for file in files_under(&state_dir(), &["clickhouse/data", "clickhouse/tmp"]) {
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let mode = mode_of(&file);
        for name in secrets.keys().filter(|n| text.contains(&secrets[*n])) {
            if mode & 0o077 != 0 {
                exposed.push(format!("{} (mode {mode:o}) holds {name}", file.display()));
            }
        }
    }
    assert!(exposed.is_empty(), "{exposed:#?}");
    assert_no_secret_in_logs();

    // The script still says what it set, secrets masked (not dropped).
    let log = std::fs::read_to_string(state_dir().join("logs/producer.log")).unwrap();
    let started = log
        .lines()
        .rev()
        .find(|l| l.contains(" starting: "))
        .expect("the script logs how it starts the producer");
    for masked in [
        "SLUICE_PRODUCER_UPLOAD_TOKENS=***",
        "SLUICE_PRODUCER_CLICKHOUSE_PASSWORD=***",
        "SLUICE_PRODUCER_REDIS_URL=redis://:***@",
    ] {
        assert!(started.contains(masked), "no `{masked}` in: {started}");
    }
}

/// The stack's ClickHouse and Redis take no client without the password `scripts/dev` made
/// (which `stack.env` holds for the tests).
#[tokio::test]
async fn clickhouse_and_redis_refuse_clients_without_the_password() {
    let stack = Stack::get();
    let client = reqwest::Client::new();
    let select = |user: Option<(&str, &str)>| {
        let mut request = client.post(&stack.clickhouse_url).body("SELECT 1");
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    for refused in [
        None,
        Some(("default", "")),
        Some((stack.clickhouse_user.as_str(), "")),
    ] {
        let response = select(refused).await.unwrap();
        assert!(
            !response.status().is_success(),
            "ClickHouse answers {refused:?}: {}",
            response.text().await.unwrap()
        );
    }
    let admitted = select(Some((&stack.clickhouse_user, &stack.clickhouse_password)))
        .await
        .unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(admitted.text().await.unwrap().trim(), "1");

    let (address, password) = redis_address_and_password(&stack.redis_url);
    assert!(
        redis_says(&address, "PING\r\n").starts_with("-NOAUTH"),
        "Redis answers a client without the password"
    );
    let password = password.expect("SLUICE_REDIS_URL carries no password");
    let authenticated = redis_says(
        &address,
        &format!(
            "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\nPING\r\n",
            password.len()
        ),
    );
    assert!(authenticated.starts_with("+OK\r\n+PONG"), "{authenticated}");
}

/// Sums of the gateway's buckets, as exact decimal strings.
fn sums(buckets: &[serde_json::Value]) -> BTreeMap<&'static str, String> {
    let money = |field: &str| -> String {
        format_scaled(
            buckets
                .iter()
                .map(|b| {
                    i128::from(
                        sluice_schema::Money::parse(b[field].as_str().unwrap())
                            .unwrap()
                            .scaled(),
                    )
                })
                .sum(),
        )
    };
    let rounds: u64 = buckets.iter().map(|b| b["rounds"].as_u64().unwrap()).sum();
    BTreeMap::from([
        ("real_amount_bet", money("real_amount_bet")),
        ("bonus_amount_bet", money("bonus_amount_bet")),
        ("real_amount_win", money("real_amount_win")),
        ("bonus_amount_win", money("bonus_amount_win")),
        ("ggr", money("ggr")),
        ("rounds", rounds.to_string()),
    ])
}

fn expected_sums(totals: &Totals) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("real_amount_bet", format_scaled(totals.real_amount_bet)),
        ("bonus_amount_bet", format_scaled(totals.bonus_amount_bet)),
        ("real_amount_win", format_scaled(totals.real_amount_win)),
        ("bonus_amount_win", format_scaled(totals.bonus_amount_win)),
        ("ggr", format_scaled(totals.ggr())),
        ("rounds", totals.rounds.to_string()),
    ])
}

fn state_dir() -> PathBuf {
    workspace_root().join("target/sluice")
}

/// Every secret `scripts/dev` hands out, by the `stack.env` variable (or state file) holding it.
fn secrets() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(stack_env_path())
        .unwrap_or_else(|e| panic!("{}: {e}", stack_env_path().display()));
    let mut secrets = BTreeMap::new();
    for (name, value) in text.lines().filter_map(|l| l.split_once('=')) {
        let value = value.trim().trim_matches('"');
        if ["TOKEN", "SECRET", "PASSWORD"]
            .iter()
            .any(|s| name.contains(s))
        {
            secrets.insert(name.to_owned(), value.to_owned());
        }
        if name == "SLUICE_REDIS_URL" {
            if let (_, Some(password)) = redis_address_and_password(value) {
                secrets.insert(format!("{name} (password)"), password);
            }
        }
    }
    for file in [
        "admin_token",
        "upload_token",
        "cursor_secret",
        "clickhouse_password",
        "redis_password",
    ] {
        if let Ok(value) = std::fs::read_to_string(state_dir().join(file)) {
            secrets.insert(file.to_owned(), value.trim().to_owned());
        }
    }
    // Shorter values would match by accident (and the script makes none).
    secrets.retain(|_, v| v.len() >= 12);
    secrets
}

/// No log under `target/sluice/logs` (the script's and the programs') nor ClickHouse's own
/// names a secret; the failure says where, never the secret.
fn assert_no_secret_in_logs() {
    let secrets = secrets();
    let mut found = Vec::new();
    let mut logs = files_under(&state_dir().join("logs"), &[]);
    logs.extend(files_under(&state_dir().join("clickhouse/log"), &[]));
    assert!(!logs.is_empty(), "no logs under {}", state_dir().display());
    for log in logs {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        for (number, line) in text.lines().enumerate() {
            for (name, value) in &secrets {
                if line.contains(value.as_str()) {
                    found.push(format!("{}:{}: {name}", log.display(), number + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "secrets in logs: {found:#?}");
}

fn files_under(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skip.iter().any(|s| path.ends_with(s)) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path, skip)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `redis://:pw@127.0.0.1:6379/` → (`127.0.0.1:6379`, `Some("pw")`).
fn redis_address_and_password(url: &str) -> (String, Option<String>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let password = user_info.split_once(':').map_or(user_info, |(_, p)| p);
            (host.to_owned(), Some(password.to_owned()))
        }
        None => (authority.to_owned(), None),
    }
}

/// Sends raw RESP to Redis and returns what it answered within a second.
fn redis_says(address: &str, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0; 512];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if answer.ends_with(b"\r\n") && answer.iter().filter(|b| **b == b'\n').count() >= 2 {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
