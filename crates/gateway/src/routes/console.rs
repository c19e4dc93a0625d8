//! `GET /console`: the web console, one page (`console.html`, its script and styles inline)
//! compiled into the binary. Uploads go from the browser straight to the producer (allowed by
//! the producer's CORS origins, `SLUICE_PRODUCER_CORS_ALLOWED_ORIGINS`), never through the
//! gateway, so the gateway still talks to neither Kafka nor the producer; queries and the
//! key's usage come from this gateway, same origin. The upload token and the API key are typed
//! into the page and kept in the tab's `sessionStorage` only.

use actix_web::{web, HttpResponse};
use rand::Rng;

use super::state::AppState;

const PAGE: &str = include_str!("console.html");

/// The page, with its settings (the producer's URL, if configured) and a fresh script nonce.
/// The content security policy allows no script, style or image from elsewhere; requests
/// (`connect-src`) may go to any HTTP(S) origin, the producer's being typed into the page.
pub async fn console(state: web::Data<AppState>) -> HttpResponse {
    let producer_url = state
        .config
        .console_producer_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty());
    // `<` escaped, so no value can close the script element it is embedded in.
    let settings = serde_json::json!({ "producer_url": producer_url })
        .to_string()
        .replace('<', "\\u003c");
    let nonce = hex::encode(rand::rng().random::<[u8; 16]>());
    let page = PAGE
        .replacen("{{CONFIG}}", &settings, 1)
        .replacen("{{NONCE}}", &nonce, 1);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
                 img-src 'self' data:; connect-src 'self' http: https:; base-uri 'none'; \
                 form-action 'none'; frame-ancestors 'none'"
            ),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(page)
}
