//! The whole path, real at every step: a generated export (UTF-16, BOM, NaN and empty money,
//! quoted names, bad rows) is uploaded to the producer, flows through a real Kafka-protocol
//! broker into a real ClickHouse via the consumer, and is read back through the gateway with a
//! real Redis holding the credits.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_schema::domain::format_scaled;
use sluice_testkit::clickhouse::wait_for;
use sluice_testkit::generate::{self, Options};
use sluice_testkit::{clickhouse, http, kafka};
use sluice_tests::{Pipeline, Setup};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Producer (onto four partitions), consumer and gateway in-process on free ports, isolated by
/// unique names.
async fn spawn_pipeline() -> Pipeline {
    let mut setup = Setup::new("e2e", ADMIN_TOKEN);
    setup.producer.topic_partitions = 4;
    setup.log_filter = "info,sluice_consumer=debug";
    setup.spawn().await
}

/// `GET /uploads/{id}`'s reconciliation, polled until it says `landed` (or 60 s pass).
async fn reconciled(producer_url: &str, id: &str) -> serde_json::Value {
    http::wait_until_landed(producer_url, id, None, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_sent_again_leaves_its_first_upload_fully_landed() {
    let pipeline = spawn_pipeline().await;
    let export = generate::export(&Options::new(1_500));
    let first = http::upload_csv(&pipeline.producer_url, export.bytes.clone(), "text/csv").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.body["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(
        reconciled(&pipeline.producer_url, &id).await["landed"],
        1_500
    );

    // The same file again: the first receipt is replayed. Its records were produced under a
    // new upload id before the hash was known; a broker that shows aborted records (tansu),
    // or step commits of a file above SLUICE_PRODUCER_MAX_ROWS_PER_TRANSACTION, land them,
    // and each round's newer row then carries the new id.
    let again = http::upload_csv(&pipeline.producer_url, export.bytes, "text/csv").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["upload_id"], id.as_str());
    let table = format!("{}.game_rounds", pipeline.slice.database);
    let started = Instant::now();
    while clickhouse::query(&format!(
        "SELECT count() FROM {table} WHERE upload_id != '{id}'"
    ))
    .await
        != "1500"
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reconciliation = reconciled(&pipeline.producer_url, &id).await;
    assert_eq!(reconciliation["landed"], 1_500, "{reconciliation}");
    assert_eq!(reconciliation["pending"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_reconciles_its_landed_rows_and_lists_every_reject() {
    let pipeline = spawn_pipeline().await;
    let mut options = Options::new(2_000);
    options.bad_row_every = Some(100);
    let export = generate::export(&options);
    let expected = &export.summary;
    let upload = http::upload_csv(&pipeline.producer_url, export.bytes.clone(), "text/csv").await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    let id = upload.body["upload_id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    // Every accepted row lands, attributed to its upload.
    let reconciliation = reconciled(&pipeline.producer_url, &id).await;
    assert_eq!(reconciliation["accepted"], expected.good_rows);
    assert_eq!(reconciliation["landed"], expected.good_rows);
    assert_eq!(reconciliation["pending"], 0);
    let table = format!("{}.game_rounds", pipeline.slice.database);
    assert_eq!(
        clickhouse::query(&format!(
            "SELECT uniqExact(game_instance_id) FROM {table} WHERE upload_id = '{id}'"
        ))
        .await,
        expected.good_rows.to_string()
    );

    // Every reject is listed, in line order, page by page (the receipt lists only the first).
    let mut lines = Vec::new();
    let mut after_line = 0;
    let started = Instant::now();
    loop {
        let page: serde_json::Value = http
            .get(format!("{}/uploads/{id}/rejects", pipeline.producer_url))
            .query(&[
                ("after_line", after_line.to_string()),
                ("limit", "7".into()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["rejected"], expected.bad_lines.len(), "{page}");
        for reject in page["rejects"].as_array().unwrap() {
            assert!(!reject["reason"].as_str().unwrap().is_empty(), "{reject}");
            lines.push(reject["line"].as_u64().unwrap());
        }
        match page["next_after_line"].as_u64() {
            Some(next) => after_line = next,
            None if lines.len() == expected.bad_lines.len() => break,
            None => {
                // The consumer may not have stored them all yet: start again.
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "rejects listed: {lines:?}"
                );
                lines.clear();
                after_line = 0;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    assert_eq!(lines, expected.bad_lines);

    // Unknown uploads and bad pages are refused.
    let unknown = http
        .get(format!(
            "{}/uploads/no-such-upload/rejects",
            pipeline.producer_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad = http
        .get(format!(
            "{}/uploads/{id}/rejects?limit=0",
            pipeline.producer_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaded_rounds_reach_the_gateway_exactly_once_with_exact_sums() {
    let pipeline = spawn_pipeline().await;
    let mut options = Options::new(6_000);
    options.bad_row_every = Some(500);
    let export = generate::export(&options);
    let expected = &export.summary;
    assert_eq!(expected.good_rows, 5_988);

    // The receipt comes after Kafka acknowledged every accepted row.
    let upload = http::upload_csv(&pipeline.producer_url, export.bytes.clone(), "text/csv").await;
    let receipt = &upload.body;
    assert_eq!(upload.status, 200, "{receipt}");
    assert_eq!(receipt["rows_read"], 6_000);
    assert_eq!(receipt["accepted"], expected.good_rows);
    assert_eq!(receipt["rejected"], 12);
    assert_eq!(receipt["encoding"], "UTF-16BE");
    assert_eq!(receipt["bytes"], export.bytes.len());
    assert_eq!(
        receipt["sha256"],
        hex::encode(Sha256::digest(&export.bytes))
    );
    assert_eq!(upload.reject_lines(), expected.bad_lines);
    assert_eq!(receipt["rejects"][0]["column"], "real_amount_bet");
    assert_eq!(receipt["rejects"][1]["column"], "user_id");

    let table = format!("{}.game_rounds", pipeline.slice.database);
    let good = expected.good_rows.to_string();
    wait_for(
        &format!("SELECT count() FROM {table}"),
        &good,
        Duration::from_secs(60),
    )
    .await;

    // Uploading the same file again replays the first receipt and produces nothing: once the
    // consumer has committed past the aborted attempt, each round is still counted once.
    let again = http::upload_csv(&pipeline.producer_url, export.bytes.clone(), "text/csv").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["upload_id"], receipt["upload_id"]);
    let started = Instant::now();
    while kafka::committed_total(&pipeline.slice.group, &pipeline.slice.topic, 4).await
        <= expected.good_rows as i64
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the consumer did not move past the aborted duplicate"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        clickhouse::query(&format!("SELECT count() FROM {table}")).await,
        good
    );

    // A key with two credits: two answers, then 402.
    let http = reqwest::Client::new();
    let created = pipeline.create_key("e2e", 2).await;
    let key = created["key"]
        .as_str()
        .expect("the secret is returned once")
        .to_owned();

    let (player, totals) = expected
        .totals
        .iter()
        .max_by_key(|(_, t)| t.rounds)
        .unwrap();
    let response = http
        .get(format!("{}/aggregated_game_rounds", pipeline.gateway_url))
        .query(&[("player_id", player.as_str()), ("limit", "10000")])
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["X-Credits-Remaining"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["has_more"], false);
    let buckets = body["data"].as_array().unwrap();
    assert!(buckets.iter().all(|b| b["player_id"] == player.as_str()));
    let sum = |field: &str| -> String {
        let scaled: i128 = buckets
            .iter()
            .map(|b| parse_scaled(b[field].as_str().unwrap()))
            .sum();
        format_scaled(scaled)
    };
    let rounds: u64 = buckets.iter().map(|b| b["rounds"].as_u64().unwrap()).sum();
    assert_eq!(rounds, totals.rounds);
    assert_eq!(
        sum("real_amount_bet"),
        format_scaled(totals.real_amount_bet)
    );
    assert_eq!(
        sum("bonus_amount_bet"),
        format_scaled(totals.bonus_amount_bet)
    );
    assert_eq!(
        sum("real_amount_win"),
        format_scaled(totals.real_amount_win)
    );
    assert_eq!(
        sum("bonus_amount_win"),
        format_scaled(totals.bonus_amount_win)
    );
    assert_eq!(sum("ggr"), format_scaled(totals.ggr()));

    // All players together: every good row exactly once.
    let everything = pipeline
        .gateway
        .aggregated(&key, &[("granularity", "day"), ("limit", "10000")])
        .await;
    let all_rounds: u64 = everything["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["rounds"].as_u64().unwrap())
        .sum();
    assert_eq!(all_rounds, expected.good_rows);

    let out_of_credits = http
        .get(format!("{}/aggregated_game_rounds", pipeline.gateway_url))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(out_of_credits.status(), 402);
    let problem: serde_json::Value = out_of_credits.json().await.unwrap();
    assert_eq!(problem["status"], 402);

    let no_key = http
        .get(format!("{}/aggregated_game_rounds", pipeline.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let unknown_key = http
        .get(format!("{}/aggregated_game_rounds", pipeline.gateway_url))
        .header("X-API-Key", format!("sk_sluice_{}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_key.status(), 401);
}

/// `"12.5"` → 125000 (10^-4 units); the gateway's money strings are plain decimals.
fn parse_scaled(text: &str) -> i128 {
    i128::from(sluice_schema::Money::parse(text).unwrap().scaled())
}

/// A row of the export's columns, in the canonical order.
fn csv_row(timestamp: &str, id: u32, bet: &str, game: &str, provider: &str) -> String {
    format!("{timestamp},{id},9ece8c4020f8aed10676cd1c56a41889,7,{bet},0,1,0,{game},{provider}\r\n")
}

/// The rows of [`values_the_store_cannot_hold_are_row_rejects_and_never_land_as_substitutes`]
/// from `first_id` on: two good ones at the edges of the store's range, then one of each
/// value the store cannot hold. `bad_text` is a provider cell that is not valid text.
fn edge_rows(first_id: u32, bad_text: &str) -> String {
    let rows = [
        ("1970-01-01 00:00:01", "1", "Reactoonz", "Play'n GO"),
        ("2105-12-31 23:59:59", "2.5", "Reactoonz", "Play'n GO"),
        ("1969-12-31 23:59:59", "1", "Reactoonz", "Play'n GO"),
        ("0001-01-01 00:00:00", "1", "Reactoonz", "Play'n GO"),
        ("2200-01-01 00:00:00", "1", "Reactoonz", "Play'n GO"),
        ("2106-02-07 06:28:16", "1", "Reactoonz", "Play'n GO"),
        (
            "2019-10-22 08:20:42",
            "100000000000000",
            "Reactoonz",
            "Play'n GO",
        ),
        ("2019-10-22 08:20:42", "1", "React\0onz", "Play'n GO"),
        ("2019-10-22 08:20:42", "1", "Reactoonz", bad_text),
    ];
    let mut text = String::from(
        "created_timestamp,game_instance_id,user_id,game_id,real_amount_bet,bonus_amount_bet,\
         real_amount_win,bonus_amount_win,game_name,provider\r\n",
    );
    for (i, (timestamp, bet, game, provider)) in rows.into_iter().enumerate() {
        text.push_str(&csv_row(
            timestamp,
            first_id + i as u32,
            bet,
            game,
            provider,
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn values_the_store_cannot_hold_are_row_rejects_and_never_land_as_substitutes() {
    let pipeline = spawn_pipeline().await;
    // UTF-8 with an invalid byte, and UTF-16 with a lone surrogate: one rule for both.
    const MARK: &str = "\u{1}";
    let text = edge_rows(100, MARK);
    let (before, after) = text.split_once(MARK).unwrap();
    let utf8 = [before.as_bytes(), b"Play\xFFn GO", after.as_bytes()].concat();
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in edge_rows(200, MARK).encode_utf16() {
        let unit = if unit == 1 { 0xD800 } else { unit };
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let out_of_range =
        "out of range: the store holds 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC";
    let expected_rejects = serde_json::json!([
        {"line": 4, "column": "created_timestamp", "reason": out_of_range},
        {"line": 5, "column": "created_timestamp", "reason": out_of_range},
        {"line": 6, "column": "created_timestamp", "reason": out_of_range},
        {"line": 7, "column": "created_timestamp", "reason": out_of_range},
        {"line": 8, "column": "real_amount_bet",
         "reason": "out of range (at most 14 digits before the point: the store holds Decimal(18, 4))"},
        {"line": 9, "column": "game_name", "reason": "contains a NUL character"},
        {"line": 10, "column": "provider", "reason": "not valid text"},
    ]);
    let mut ids = Vec::new();
    for (encoding, bytes) in [("UTF-8", utf8), ("UTF-16LE", utf16)] {
        let upload = http::upload_csv(&pipeline.producer_url, bytes, "text/csv").await;
        assert_eq!(upload.status, 200, "{encoding}: {}", upload.body);
        assert_eq!(upload.body["encoding"], encoding);
        assert_eq!(upload.body["accepted"], 2, "{encoding}: {}", upload.body);
        assert_eq!(upload.body["rejects"], expected_rejects, "{encoding}");
        ids.push(upload.body["upload_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        reconciled(&pipeline.producer_url, id).await;
    }
    let table = format!("{}.game_rounds", pipeline.slice.database);
    assert_eq!(
        clickhouse::query(&format!(
            "SELECT count(), min(created_timestamp), max(created_timestamp), \
             countIf(position(game_name, '\\0') > 0 OR provider != 'Play''n GO'), \
             max(real_amount_bet) FROM {table}"
        ))
        .await,
        "4\t1970-01-01 00:00:01\t2105-12-31 23:59:59\t0\t2.5000",
        "only the good rows, as sent"
    );

    // The gateway's range is the store's: beyond it a 400 that costs nothing; at its edge,
    // the last hour and day of 2105 are served as they are.
    let http = reqwest::Client::new();
    let created = pipeline.create_key("edges", 10).await;
    let key = created["key"].as_str().unwrap();
    let query = |filters: Vec<(&'static str, &'static str)>| {
        http.get(format!("{}/aggregated_game_rounds", pipeline.gateway_url))
            .header("X-API-Key", key)
            .query(&filters)
            .send()
    };
    for (name, value) in [
        ("from", "2106-01-02"),
        ("to", "2106-01-01T00:00:01Z"),
        ("from", "1969-12-31"),
    ] {
        let refused = query(vec![(name, value)]).await.unwrap();
        assert_eq!(refused.status(), 400, "{name}={value}");
    }
    let edge = query(vec![("from", "2105-12-31"), ("to", "2106-01-01")])
        .await
        .unwrap();
    assert_eq!(edge.status(), 200);
    assert_eq!(
        edge.headers()["x-credits-remaining"],
        "9",
        "only answers cost"
    );
    let page: serde_json::Value = edge.json().await.unwrap();
    let hours: Vec<(&str, &str, u64)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["hour"].as_str().unwrap(),
                b["real_amount_bet"].as_str().unwrap(),
                b["rounds"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hours, [("2105-12-31T23:00:00Z", "5", 2)]);
    let days: serde_json::Value = query(vec![("granularity", "day")])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let starts: Vec<&str> = days["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["day"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["1970-01-01T00:00:00Z", "2105-12-31T00:00:00Z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_holding_a_round_twice_lands_whole() {
    // Each accepted row is one version of its round: the round counts once in the answers,
    // and the upload is landed once both rows are in (counting distinct rounds, it stayed
    // `landing` forever: 1 of 2).
    let pipeline = spawn_pipeline().await;
    let header = "created_timestamp,game_instance_id,user_id,game_id,real_amount_bet,\
                  bonus_amount_bet,real_amount_win,bonus_amount_win,game_name,provider\r\n";
    let row = csv_row("2019-10-22 08:00:00", 41, "2.5", "Gonzo's Quest", "NetEnt");
    let later = csv_row("2019-10-22 08:00:00", 41, "3.5", "Gonzo's Quest", "NetEnt");
    let file = format!("{header}{row}{later}");
    let upload = http::upload_csv(&pipeline.producer_url, file.into_bytes(), "text/csv").await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    assert_eq!(upload.body["accepted"], 2, "{}", upload.body);
    let id = upload.body["upload_id"].as_str().unwrap();
    let reconciliation = reconciled(&pipeline.producer_url, id).await;
    assert_eq!(
        (&reconciliation["landed"], &reconciliation["pending"]),
        (&serde_json::json!(2), &serde_json::json!(0))
    );
    let table = format!("{}.game_rounds", pipeline.slice.database);
    let bet = format!("SELECT toString(sum(real_amount_bet)), count() FROM {table}");
    assert_eq!(
        clickhouse::query(&bet).await,
        "3.5000\t1",
        "the later row wins"
    );
}
