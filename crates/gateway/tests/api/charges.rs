//! Credits: exact under concurrency, charged only for answers given (refunds of failed
//! queries, leases, the lease sweep), and nothing charged when Redis or a query slot is
//! missing.

use crate::helpers::*;

#[tokio::test]
async fn concurrent_requests_never_spend_more_credits_than_the_key_holds() {
    // Every request waits for a query slot however loaded the machine is: a request refused
    // for want of one (503, never charged; tested below) would stand for neither outcome.
    let gateway = spawn_gateway(|config| config.query_queue_wait_ms = 120_000).await;
    let Key {
        secret: key, id, ..
    } = gateway.key_limited("test", 100, 100000, 1).await;
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
        .call_admin(reqwest::Method::GET, &format!("/admin/keys/{id}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(info["credits"], 0);
    gateway.audit_finds_no_difference().await;
    let ledger = gateway.ledger(&id).await;
    assert_eq!(ledger["granted"].1, 100);
    assert_eq!((ledger["charged"].0, ledger["charged"].1), (100, 100));
}

#[tokio::test]
async fn a_failed_query_is_503_and_its_credit_is_refunded() {
    let healthy = spawn_gateway(|_| {}).await;
    let key = healthy.create_key(3).await;
    // A second gateway whose ClickHouse is down.
    let broken = spawn_gateway(|config| {
        config.clickhouse.url = format!("http://127.0.0.1:{}", dead_port());
    })
    .await;
    let broken_key = broken.create_key(3).await;
    for _ in 0..5 {
        let response = broken.query(&broken_key, &[]).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
    }
    let credits = RedisBalance::of(&broken, &broken_key).get().await;
    assert_eq!(credits, Some(3), "every failed answer was refunded");
    assert_eq!(healthy.credits_after_one_more_query(&key).await, 2);
}

#[tokio::test]
async fn a_query_that_outlives_its_timeout_is_504_and_refunded() {
    let address = silent_clickhouse().await;
    let gateway = spawn_gateway(|config| {
        config.clickhouse.url = format!("http://{address}");
        config.query_timeout_ms = 300;
    })
    .await;
    let key = gateway.create_key(2).await;
    let response = gateway.query(&key, &[]).await;
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["retry-after"], "5");
    let credits = RedisBalance::of(&gateway, &key).get().await;
    assert_eq!(credits, Some(2), "the timed-out answer was refunded");
}

#[tokio::test]
async fn a_refund_redis_missed_is_made_by_the_lease_sweep_once_redis_is_back_and_paid_once() {
    // Redis is reached through a link cut after the charge, before the refund: the query
    // times out against a silent ClickHouse, the refund fails, and the link heals later. The
    // lease of the charge then expires and the sweep refunds it, once.
    let address = silent_clickhouse().await;
    let link = FaultyLink::start(Stack::get().redis_address()).await;
    let gateway = spawn_gateway(|config| {
        config.clickhouse.url = format!("http://{address}");
        config.query_timeout_ms = 1_500;
        config.charge_lease_ms = 6_500;
        config.lease_sweep_interval_ms = 100;
        config.redis_url = Stack::get().redis_url_at(&link.address());
    })
    .await;
    let key = gateway.create_key(5).await;
    let balance = RedisBalance::of(&gateway, &key);
    let credits = || balance.get();

    let query = spawn_query(&gateway.url, &key);
    let started = std::time::Instant::now();
    let every = Duration::from_millis(20);
    let deadline = started + Duration::from_secs(5);
    poll_until(deadline, every, "never charged", || async {
        credits().await == Some(4)
    })
    .await;
    link.cut();
    // A failed answer either way: the dirty hours were read from Redis after the cut (503), or
    // before it and the silent ClickHouse outlived the timeout (504). Both are refunded.
    let status = query.await.unwrap().unwrap().status().as_u16();
    assert!([503, 504].contains(&status), "{status}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(credits().await, Some(4), "no refund while Redis is cut off");
    link.heal();
    let every = Duration::from_millis(50);
    let deadline = started + Duration::from_secs(20);
    poll_until(deadline, every, "the refund never landed", || async {
        credits().await == Some(5)
    })
    .await;
    // The lease is closed: later sweeps pay nothing more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(credits().await, Some(5));
}

#[tokio::test]
async fn a_lease_closes_once_however_often_it_is_settled_or_refunded() {
    use sluice_gateway::credits::{ApiKey, Settlement};
    let gateway = spawn_gateway(|_| {}).await;
    let created = gateway.key("refunded", 10).await;
    let store = gateway.credit_store();
    let secret = ApiKey::parse(&created.secret).unwrap();
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
    gateway.audit_finds_no_difference().await;
    assert_eq!(
        gateway.ledger(&created.id).await,
        ledger_rows(&[
            ("granted", 1, 10, "201"),
            ("charged", 2, 6, "200,504"),
            ("refunded", 1, 3, "504"),
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
    let ready = gateway.get("/ready").await;
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn when_every_query_slot_stays_busy_a_query_is_503_at_once_and_costs_nothing() {
    let address = silent_clickhouse().await;
    let gateway = spawn_gateway(|config| {
        config.clickhouse.url = format!("http://{address}");
        config.query_timeout_ms = 4_000;
        config.charge_lease_ms = 9_000;
        config.max_concurrent_queries = 2;
        config.query_queue_wait_ms = 300;
        config.rate_limit_requests = 100;
    })
    .await;
    let key = gateway.create_key(10).await;
    // Two queries hold both slots, waiting on a ClickHouse that never answers.
    let holders: Vec<_> = (0..2).map(|_| spawn_query(&gateway.url, &key)).collect();
    let balance = RedisBalance::of(&gateway, &key);
    let deadline = Instant::now() + Duration::from_secs(3);
    poll_until(
        deadline,
        Duration::from_millis(20),
        "never charged",
        || async { balance.get().await == Some(8) },
    )
    .await;
    let asked = Instant::now();
    let refused = gateway.query(&key, &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(balance.get().await, Some(8), "the 503 cost nothing");
    for holder in holders {
        assert_eq!(holder.await.unwrap().unwrap().status(), 504);
    }
    assert_eq!(balance.get().await, Some(10), "timeouts refunded");
}

#[tokio::test]
async fn a_pooled_connection_the_server_dropped_while_idle_is_retried_on_a_fresh_one() {
    let (gateway, link) = spawn_behind_clickhouse_link(|config| {
        config.rate_limit_requests = 1_000;
    })
    .await;
    let key = gateway.create_key(100).await;
    for round in 0..3 {
        // Pages read at once leave as many connections idle in the pool (more than one try
        // per dead connection could get through: the old three attempts failed here)...
        let pages = (0..PAGES_AT_ONCE).map(|_| gateway.query(&key, &[]));
        for page in futures::future::join_all(pages).await {
            assert_eq!(page.status(), 200, "round {round}");
        }
        // ...and every one of them is now dead without the gateway's knowing.
        link.go_stale();
    }
    let spent = 3 * PAGES_AT_ONCE as u64 + 1;
    assert_eq!(
        gateway.credits_after_one_more_query(&key).await,
        100 - spent
    );
    // Each of rounds 1 and 2 and the last page met dead connections (the test is no test
    // otherwise).
    let repeated = gateway
        .counter(sluice_gateway::metric::QUERY_RETRIES_TOTAL)
        .await;
    assert!(repeated >= 3, "{repeated} statements repeated");
}

/// Pages read at once in [`a_pooled_connection_the_server_dropped_while_idle_is_retried_on_a_fresh_one`].
const PAGES_AT_ONCE: usize = 6;
