//! The usage ledger and its audit: every movement recorded once, through a ClickHouse outage,
//! and a rebuild from it.

use crate::helpers::*;

#[tokio::test]
async fn the_ledger_holds_every_grant_charge_and_refund_and_the_audit_finds_no_difference() {
    let (gateway, link) =
        spawn_behind_clickhouse_link(|config| config.ledger_flush_interval_ms = 50).await;
    let Key { secret, id, .. } = gateway.key_limited("ledgered", 20, 1000, 1).await;
    let (key, id) = (secret.as_str(), id.as_str());
    assert_eq!(gateway.top_up(id, 5).await.status(), 200);
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
    let idle = gateway.key("idle", 0).await;

    let report = gateway.audit_finds_no_difference().await;
    assert_eq!(report["checked"], 2);
    assert_eq!(gateway.key_info(id).await["credits"], 25 - N);
    let charged = "200,200,200,200,200,200,503";
    assert_eq!(
        gateway.ledger(id).await,
        ledger_rows(&[
            ("granted", 2, 25, "200,201"),
            ("charged", N + 1, N + 1, charged),
            ("refunded", 1, 1, "503"),
        ])
    );
    assert_eq!(
        gateway.ledger(&idle.id).await,
        ledger_rows(&[("granted", 1, 0, "201")])
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
    let Key { secret, id, .. } = gateway.key("edited", 10).await;
    let (key, id) = (secret.as_str(), id.as_str());
    for _ in 0..3 {
        assert_eq!(gateway.query(key, &[]).await.status(), 200);
    }
    assert_eq!(gateway.audit().await["differences"], serde_json::json!([]));

    let mut connection = sluice_testkit::rounds::redis_connection().await;
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

    let rebuild = |id: &str| format!("/admin/keys/{id}/rebuild");
    let response = gateway
        .call_admin(reqwest::Method::POST, &rebuild(id))
        .await;
    let rebuilt = answer(response, 200).await;
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
    let fields = [("id", &hash[..16]), ("name", "old-timer"), ("credits", "4")];
    legacy_key(&gateway, &hash, &fields).await;
    assert_eq!(gateway.query(&secret, &[]).await.status(), 200);
    let report = gateway.audit().await;
    let differences = report["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{report}");
    assert_eq!(differences[0]["id"], &hash[..16]);
    assert_eq!(differences[0]["ledger_events"], 1, "only its charge");
    assert_eq!(differences[0]["difference"], 4);
    let legacy_rebuild = gateway
        .call_admin(reqwest::Method::POST, &rebuild(&hash[..16]))
        .await;
    assert_eq!(
        legacy_rebuild.status(),
        409,
        "its ledger balance (one charge, no grant) is negative"
    );
    for (path, status) in [
        ("/admin/keys/00000000000000ff/rebuild", 404),
        ("/admin/keys/not-an-id/rebuild", 404),
    ] {
        let response = gateway.call_admin(reqwest::Method::POST, path).await;
        assert_eq!(response.status(), status, "{path}");
    }
    let anonymous = gateway.get("/admin/audit").await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn while_clickhouse_is_down_ledger_events_wait_in_the_outbox_and_none_is_lost() {
    let (gateway, link) = spawn_behind_clickhouse_link(|config| {
        config.ledger_flush_interval_ms = 50;
        config.ledger_batch_rows = 2;
    })
    .await;
    link.cut();
    let Key {
        secret: key, id, ..
    } = gateway.key("outboxed", 10).await;
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(gateway.query(&key, &[]).await.status(), 503);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        gateway.key_info(&id).await["credits"],
        10,
        "every failed query was refunded"
    );
    let mut connection = sluice_testkit::rounds::redis_connection().await;
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
    gateway.audit_finds_no_difference().await;
    let failed = "503,503,503,503,503";
    assert_eq!(
        gateway.ledger(&id).await,
        ledger_rows(&[
            ("granted", 1, 10, "201"),
            ("charged", 5, 5, failed),
            ("refunded", 5, 5, failed),
        ])
    );
}

#[tokio::test]
async fn an_audit_before_any_ledger_write_creates_the_table_and_finds_no_difference() {
    let fresh = unique("gateway_fresh");
    let gateway = spawn_gateway(|config| config.clickhouse.database = fresh.clone()).await;
    let report = gateway.audit().await;
    assert_eq!(report, serde_json::json!({"checked": 0, "differences": []}));
    let tables = clickhouse::query(&format!("EXISTS TABLE {fresh}.usage_ledger")).await;
    assert_eq!(tables, "1");
}
