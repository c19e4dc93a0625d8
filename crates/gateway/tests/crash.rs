//! The gateway binary killed with SIGKILL: mid-burst (charges admitted, answers never sent)
//! and right after credit movements (ledger events not yet in ClickHouse). Another gateway
//! then finds every charge without an answer refunded once its lease expired, and every
//! movement in the ledger: balance = granted - answered, and the audit agrees.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sluice_testkit::Stack;
use tokio::process::{Child, Command};

/// The real gateway binary on `port`, configured like a deployment, over `clickhouse_url`.
fn spawn_binary(port: u16, clickhouse_url: &str, database: &str, prefix: &str) -> Child {
    let stack = Stack::get();
    let output = || {
        if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .env("SLUICE_GATEWAY_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SLUICE_GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_GATEWAY_REDIS_URL", &stack.redis_url)
        .env("SLUICE_GATEWAY_REDIS_KEY_PREFIX", prefix)
        .env("SLUICE_GATEWAY_CLICKHOUSE_URL", clickhouse_url)
        .env("SLUICE_GATEWAY_CLICKHOUSE_DATABASE", database)
        .env("SLUICE_GATEWAY_CLICKHOUSE_USER", &stack.clickhouse_user)
        .env(
            "SLUICE_GATEWAY_CLICKHOUSE_PASSWORD",
            &stack.clickhouse_password,
        )
        // Requests of a burst stay in flight for 3 s; their charges are leased for 8 s.
        .env("SLUICE_GATEWAY_QUERY_TIMEOUT_MS", "3000")
        .env("SLUICE_GATEWAY_CHARGE_LEASE_MS", "8000")
        // The binary never drains the ledger after its first look: only the survivor does.
        .env("SLUICE_GATEWAY_LEDGER_FLUSH_INTERVAL_MS", "600000")
        .stdout(output())
        .stderr(output())
        .kill_on_drop(true)
        .spawn()
        .expect("the gateway binary starts")
}

async fn wait_until_ready(url: &str) {
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(format!("{url}/health")).await {
            if response.status() == 200 {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{url} never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway binary as a [`Gateway`] handle, sharing `survivor`'s database and keys.
async fn binary_beside(survivor: &Gateway, clickhouse_url: &str) -> (Child, Gateway) {
    let port = dead_port();
    let child = spawn_binary(
        port,
        clickhouse_url,
        &survivor.database,
        &survivor.redis_key_prefix,
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_until_ready(&url).await;
    let handle = Gateway {
        url,
        http: reqwest::Client::new(),
        redis_key_prefix: survivor.redis_key_prefix.clone(),
        database: survivor.database.clone(),
    };
    (child, handle)
}

#[tokio::test]
async fn a_gateway_killed_mid_burst_keeps_no_charge_without_an_answer() {
    // The victim leases each charge for 8 s; the survivor sweeps every 200 ms.
    let survivor = spawn_gateway(|config| config.lease_sweep_interval_ms = 200).await;
    let Key {
        secret: key, id, ..
    } = survivor.key_limited("burst", 100, 1000, 1).await;
    const ANSWERED: u64 = 3;
    for _ in 0..ANSWERED {
        assert_eq!(survivor.query(&key, &[]).await.status(), 200);
    }

    // A gateway whose ClickHouse never answers: every request of the burst is admitted and
    // charged, then waits for an answer that never comes.
    let silent = silent_clickhouse().await;
    let (mut victim, victim_handle) = binary_beside(&survivor, &format!("http://{silent}")).await;
    const BURST: u64 = 30;
    let burst: Vec<_> = (0..BURST)
        .map(|_| spawn_query(&victim_handle.url, &key))
        .collect();
    let started = Instant::now();
    let charged = 100 - ANSWERED - BURST;
    let every = Duration::from_millis(20);
    let deadline = started + Duration::from_secs(10);
    poll_until(deadline, every, "the burst was never charged", || async {
        survivor.key_info(&id).await["credits"] == charged
    })
    .await;
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();
    for request in burst {
        assert!(
            request.await.unwrap().is_err(),
            "no answer came from a killed gateway"
        );
    }

    // Once the leases expire, the survivor's sweep gives every unanswered charge back.
    while survivor.key_info(&id).await["credits"] != 100 - ANSWERED {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "charges without an answer were kept: {}",
            survivor.key_info(&id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    survivor.audit_finds_no_difference().await;
    let unanswered = vec!["0"; BURST as usize].join(",");
    let ledger = survivor.ledger(&id).await;
    assert_eq!(ledger["granted"], (1, 100, "201".to_owned()));
    assert_eq!(ledger["charged"].0, ANSWERED + BURST);
    assert_eq!(
        ledger["charged"].2,
        format!("{unanswered},200,200,200"),
        "answered with 200, the burst never (0)"
    );
    assert_eq!(ledger["refunded"], (BURST, BURST, unanswered));
    // Later sweeps find nothing more to refund.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(survivor.key_info(&id).await["credits"], 100 - ANSWERED);
}

#[tokio::test]
async fn movements_made_just_before_a_kill_reach_the_ledger_exactly_once() {
    let survivor = spawn_gateway(|config| {
        config.ledger_flush_interval_ms = 100_000;
    })
    .await;
    let (mut victim, victim_handle) = binary_beside(&survivor, &Stack::get().clickhouse_url).await;
    let empty = victim_handle
        .create_key_with(serde_json::json!({"name": "empty", "credits": 0}))
        .await;
    let funded = victim_handle
        .create_key_with(serde_json::json!({"name": "funded", "credits": 7}))
        .await;
    let funded_id = funded["id"].as_str().unwrap();
    assert_eq!(victim_handle.top_up(funded_id, 5).await.status(), 200);
    let funded_key = funded["key"].as_str().unwrap();
    assert_eq!(victim_handle.query(funded_key, &[]).await.status(), 200);
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();

    // The survivor drains what the victim left in the outbox; the audit agrees with Redis.
    let report = survivor.audit_finds_no_difference().await;
    assert_eq!(report["checked"], 2);
    assert_eq!(
        survivor.ledger(empty["id"].as_str().unwrap()).await,
        ledger_rows(&[("granted", 1, 0, "201")])
    );
    assert_eq!(
        survivor.ledger(funded_id).await,
        ledger_rows(&[("granted", 2, 12, "200,201"), ("charged", 1, 1, "200")])
    );
    // Drained twice (a second audit, another drainer): still once.
    survivor.audit().await;
    assert_eq!(
        survivor.ledger(funded_id).await["granted"],
        (2, 12, "200,201".to_owned())
    );

    // A key whose grant is missing from the ledger (written into Redis by hand, not by the
    // gateway) is flagged, even with a balance of 0.
    let mut connection = sluice_testkit::rounds::redis_connection().await;
    let forged = "00000000000000aa";
    redis::pipe()
        .hset_multiple(
            format!("{}keyid:{forged}", survivor.redis_key_prefix),
            &[("id", forged), ("name", "forged"), ("credits", "0")],
        )
        .sadd(format!("{}keys", survivor.redis_key_prefix), forged)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let report = survivor.audit().await;
    let differences = report["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{report}");
    assert_eq!(differences[0]["id"], forged);
    assert_eq!(differences[0]["missing_grant"], true);
    assert_eq!(differences[0]["difference"], 0);
}
