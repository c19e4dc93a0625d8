//! Cross-origin access for the gateway's web console: only the configured origins get CORS
//! headers (the browser hides answers from any other), and same-origin pages are never
//! refused for sending `Origin`.

use sluice_producer::{Application, Config};
use sluice_testkit::{unique, Stack};

const CONSOLE: &str = "http://127.0.0.1:18081";

async fn spawn_producer(origins: Vec<String>) -> String {
    let mut config = Config::with_endpoints(&Stack::get().kafka_brokers, &Stack::get().redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("cors"));
    config.transactional_id_prefix = Some(unique("cors"));
    config.topic = unique("cors_rounds");
    config.topic_partitions = 1;
    config.upload_tokens = Some("cors-upload-token-0123456789".to_owned().into());
    config.cors_allowed_origins = origins;
    let application = Application::build(config)
        .await
        .expect("the producer starts");
    let url = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    url
}

async fn preflight(url: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{url}/csv_upload"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_the_configured_origins_may_call_from_a_browser() {
    let url = spawn_producer(vec![CONSOLE.into()]).await;
    let allowed = preflight(&url, CONSOLE).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], CONSOLE);
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "idempotency-key"] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }
    assert!(!headers.contains_key("access-control-allow-credentials"));

    // An error answer carries the header too, so the console can show why.
    let refused = reqwest::Client::new()
        .get(format!("{url}/uploads"))
        .header("Origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["access-control-allow-origin"], CONSOLE);

    let other = preflight(&url, "http://127.0.0.1:9999").await;
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    // A page of the producer itself (its `/docs/`) sends its own origin, and is served.
    let own = reqwest::Client::new()
        .get(format!("{url}/uploads"))
        .header("Origin", &url)
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.status(),
        401,
        "refused for the token, not for the origin"
    );
}

#[tokio::test]
async fn without_origins_no_cors_header_is_ever_sent() {
    let url = spawn_producer(Vec::new()).await;
    let answer = preflight(&url, CONSOLE).await;
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
}
