//! Keys and the admin API: the admin token, refused keys, revocation, rotation, listing,
//! expiry and keys from before key management.

use crate::helpers::*;

#[tokio::test]
async fn missing_unknown_and_exhausted_keys_are_refused() {
    let gateway = spawn_gateway(|_| {}).await;
    let no_key = gateway.get("/aggregated_game_rounds").await;
    assert_eq!(no_key.status(), 401);
    let unknown = format!("sk_sluice_{}", "ab".repeat(32));
    assert_eq!(gateway.query(&unknown, &[]).await.status(), 401);
    assert_eq!(gateway.query("not-a-key", &[]).await.status(), 401);
    let key = gateway.create_key(0).await;
    let response = gateway.query(&key, &[]).await;
    let problem = answer(response, 402).await;
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
    // Authenticated before anything of the request is read: a malformed body or path from an
    // unauthenticated caller is a 401 like any other, never a 400 naming what was expected.
    let probes = [
        (reqwest::Method::POST, "/admin/keys", "{\"nam"),
        (reqwest::Method::POST, "/admin/keys", "[]"),
        (
            reqwest::Method::POST,
            "/admin/keys/not-an-id/credits",
            "{\"add\": -1}",
        ),
        (
            reqwest::Method::POST,
            "/admin/keys/00000000000000ff/rotate",
            "null",
        ),
        (reqwest::Method::PUT, "/admin/keys/x/rate_limit", "{}"),
        (reqwest::Method::GET, "/admin/keys/not-an-id", ""),
        (reqwest::Method::GET, "/admin/audit", ""),
        (reqwest::Method::POST, "/create_user", "{\"username\": 5}"),
    ];
    for (method, path, body) in probes {
        let response = gateway
            .http
            .request(method.clone(), format!("{}{path}", gateway.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} {body}");
        let problem = response.text().await.unwrap();
        for field in [
            "name",
            "credits",
            "add",
            "username",
            "grace_seconds",
            "requests",
        ] {
            assert!(!problem.contains(field), "{method} {path} told {problem}");
        }
    }
    let legacy = gateway
        .call_admin_with(
            reqwest::Method::POST,
            "/create_user",
            &serde_json::json!({"username": "alice", "credits": 1}),
        )
        .await;
    let legacy: serde_json::Value = legacy.json().await.unwrap();
    let key = legacy["api_key"].as_str().unwrap();
    assert_eq!(gateway.query(key, &[]).await.status(), 200);
    assert_eq!(gateway.query(key, &[]).await.status(), 402);
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let gateway = spawn_gateway(|_| {}).await;
    let Key {
        secret,
        id,
        created,
    } = gateway.key("leaked", 5).await;
    let (key, id) = (secret.as_str(), id.as_str());
    assert_eq!(created["revoked"], false);
    assert_eq!(gateway.query(key, &[]).await.status(), 200);

    let info = answer(gateway.revoke(id).await, 200).await;
    assert_eq!(info["revoked"], true);
    assert!(info["revoked_at"].is_string());

    let refused = gateway.query(key, &[]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(header(&refused, "content-type"), "application/problem+json");
    assert_eq!(gateway.key_info(id).await["revoked"], true);
    assert_eq!(gateway.key_info(id).await["credits"], 4);

    let again = gateway.revoke(id).await;
    assert_eq!(again.status(), 200, "revoking is idempotent");
    let rotate = gateway
        .call_admin(reqwest::Method::POST, &format!("/admin/keys/{id}/rotate"))
        .await;
    assert_eq!(
        rotate.status(),
        409,
        "a revoked key cannot be revived by rotation"
    );
    for unknown in ["00000000000000ff", "not-an-id"] {
        let response = gateway.revoke(unknown).await;
        assert_eq!(response.status(), 404, "{unknown}");
    }
}

#[tokio::test]
async fn a_rotated_key_keeps_its_old_secret_for_the_grace_period_on_one_balance() {
    let gateway = spawn_gateway(|_| {}).await;
    let Key { secret, id, .. } = gateway.key("rotating", 10).await;
    let (old, id) = (secret.as_str(), id.as_str());
    let rotate = format!("/admin/keys/{id}/rotate");

    let response = gateway
        .call_admin_with(
            reqwest::Method::POST,
            &rotate,
            &serde_json::json!({"grace_seconds": 1}),
        )
        .await;
    let rotated_at = std::time::Instant::now();
    let rotated = answer(response, 200).await;
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("sk_sluice_"));
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id);
    assert!(rotated["previous_key_expires_at"].is_string());

    // Both secrets work during the grace period and draw from one balance.
    let mut remaining = Vec::new();
    for key in [old, new.as_str(), old, new.as_str()] {
        let response = gateway.query(key, &[]).await;
        assert_eq!(response.status(), 200);
        remaining.push(header_number(&response, "X-Credits-Remaining"));
    }
    assert_eq!(remaining, [9, 8, 7, 6]);

    tokio::time::sleep(
        std::time::Duration::from_millis(1_100).saturating_sub(rotated_at.elapsed()),
    )
    .await;
    assert_eq!(gateway.query(old, &[]).await.status(), 401);
    let response = gateway.query(&new, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_number(&response, "X-Credits-Remaining"), 5);

    // Without a body the configured grace period (an hour by default) applies.
    let response = gateway.call_admin(reqwest::Method::POST, &rotate).await;
    let newest = answer(response, 200).await;
    let expires =
        chrono::DateTime::parse_from_rfc3339(newest["previous_key_expires_at"].as_str().unwrap())
            .unwrap();
    let grace = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((3590..=3600).contains(&grace), "{grace}");
    assert_eq!(gateway.query(&new, &[]).await.status(), 200);
    assert_eq!(
        gateway
            .query(newest["key"].as_str().unwrap(), &[])
            .await
            .status(),
        200
    );
    assert_eq!(gateway.query(old, &[]).await.status(), 401);
    assert_eq!(gateway.key_info(id).await["credits"], 3);
}

#[tokio::test]
async fn listing_and_getting_keys_never_reveal_a_secret() {
    let gateway = spawn_gateway(|_| {}).await;
    let plain = gateway.key("plain", 3).await;
    let expires_at = "2999-01-01T00:00:00Z";
    let custom = gateway
        .new_key(serde_json::json!({
            "name": "custom", "credits": 7, "expires_at": expires_at,
            "rate_limit": {"requests": 5, "per_seconds": 10},
        }))
        .await;
    let rotated = gateway
        .call_admin(
            reqwest::Method::POST,
            &format!("/admin/keys/{}/rotate", plain.id),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let secrets = [
        plain.secret.clone(),
        custom.secret.clone(),
        rotated["key"].as_str().unwrap().to_owned(),
    ];

    let response = gateway
        .call_admin(reqwest::Method::GET, "/admin/keys")
        .await;
    let list = answer(response, 200).await;
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["id"], plain.id);
    assert_eq!(keys[1]["id"], custom.id);

    let got = gateway.key_info(&custom.id).await;
    assert_eq!(got["name"], "custom");
    assert_eq!(got["credits"], 7);
    assert_eq!(got["revoked"], false);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(got["expires_at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(expires_at).unwrap()
    );
    assert_eq!(
        got["rate_limit"],
        serde_json::json!({"requests": 5, "per_seconds": 10})
    );
    assert!(got["created_at"].is_string());
    assert!(gateway.key_info(&plain.id).await["rotated_at"].is_string());

    for answer in [&list, &got] {
        for text in strings(answer) {
            assert!(!text.contains("sk_sluice_"), "{text}");
            for secret in &secrets {
                assert!(!text.contains(&sha256_hex(secret)), "{text}");
            }
        }
    }

    let unknown = gateway
        .call_admin(reqwest::Method::GET, "/admin/keys/00000000000000ff")
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(header(&unknown, "content-type"), "application/problem+json");
    for path in ["/admin/keys", &format!("/admin/keys/{}", plain.id)] {
        let anonymous = gateway.get(path).await;
        assert_eq!(anonymous.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let gateway = spawn_gateway(|_| {}).await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1_000);
    let key = gateway
        .new_key(serde_json::json!({
            "name": "short-lived", "credits": 5, "expires_at": expires_at.to_rfc3339(),
        }))
        .await
        .secret;
    assert_eq!(gateway.query(&key, &[]).await.status(), 200);
    let left = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(50)).await;
    assert_eq!(gateway.query(&key, &[]).await.status(), 401);

    let response = gateway
        .call_admin_with(
            reqwest::Method::POST,
            "/admin/keys",
            &serde_json::json!({
                "name": "stillborn", "credits": 5, "expires_at": "2001-01-01T00:00:00Z",
            }),
        )
        .await;
    assert_eq!(response.status(), 400, "an expiry in the past is refused");
}

#[tokio::test]
async fn keys_created_before_key_management_keep_working() {
    let gateway = spawn_gateway(|_| {}).await;
    let prefix = gateway.redis_key_prefix.clone();
    let secret = format!("sk_sluice_{}", "5a".repeat(32));
    let hash = sha256_hex(&secret);
    legacy_key(
        &gateway,
        &hash,
        &[
            ("id", &hash[..16]),
            ("name", "old-timer"),
            ("credits", "4"),
            ("created_at", "2024-01-01T00:00:00+00:00"),
        ],
    )
    .await;

    let response = gateway.query(&secret, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_number(&response, "X-Credits-Remaining"), 3);
    let info = gateway.key_info(&hash[..16]).await;
    assert_eq!(info["name"], "old-timer");
    assert_eq!(info["credits"], 3);
    let mut connection = sluice_testkit::rounds::redis_connection().await;
    let legacy_left: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}key:{hash}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!legacy_left, "the old record was moved, not copied");
}
