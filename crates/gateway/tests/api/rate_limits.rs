//! Rate limits: GCRA bursts, 429 with its headers, and the budget never spent by a 402.

use crate::helpers::*;

#[tokio::test]
async fn a_burst_above_the_rate_limit_is_429_with_a_correct_retry_after_and_costs_no_credits() {
    let gateway = spawn_gateway(|_| {}).await;
    let Key { secret, id, .. } = gateway.key_limited("bursty", 10, 2, 2).await;
    let key = secret.as_str();

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
        gateway.key_info(&id).await["credits"],
        7,
        "three answers charged, five 429s free"
    );
}

#[tokio::test]
async fn a_402_spends_no_rate_limit_budget_and_top_ups_restore_access() {
    let gateway = spawn_gateway(|_| {}).await;
    let Key { secret, id, .. } = gateway.key_limited("broke", 0, 1, 60).await;
    let (key, id) = (secret.as_str(), id.as_str());
    for _ in 0..3 {
        assert_eq!(gateway.query(key, &[]).await.status(), 402);
    }

    let top_ups = (0..10).map(|_| gateway.top_up(id, 5));
    let mut balances = Vec::new();
    for response in futures::future::join_all(top_ups).await {
        let body = answer(response, 200).await;
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

    for (target, add, status) in [("00000000000000ff", 1, 404), (id, 0, 400), (id, -1, 400)] {
        let response = gateway.top_up(target, add).await;
        assert_eq!(response.status(), status, "{target} {add}");
    }
}

#[tokio::test]
async fn the_default_rate_limit_applies_until_a_key_gets_its_own() {
    let gateway = spawn_gateway(|config| {
        config.rate_limit_requests = 3;
        config.rate_limit_per_seconds = 60;
    })
    .await;
    let Key {
        secret,
        id,
        created,
    } = gateway.key("default", 100).await;
    let key = secret.as_str();
    assert_eq!(
        created["rate_limit"],
        serde_json::json!({"requests": 3, "per_seconds": 60})
    );
    assert_eq!(created["rate_limit_is_default"], true);
    for _ in 0..3 {
        assert_eq!(gateway.query(key, &[]).await.status(), 200);
    }
    assert_eq!(gateway.query(key, &[]).await.status(), 429);

    let path = format!("/admin/keys/{id}/rate_limit");
    let own = serde_json::json!({"requests": 100, "per_seconds": 1});
    let response = gateway
        .call_admin_with(reqwest::Method::PUT, &path, &own)
        .await;
    let info = answer(response, 200).await;
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
            .call_admin_with(reqwest::Method::PUT, &path, &body)
            .await;
        assert_eq!(response.status(), 400, "{body}");
    }
}
