//! `GET /openapi.json` (generated from the handlers' `#[utoipa::path]` annotations) and
//! `GET /docs`, a page that loads Swagger UI from a CDN when it is viewed: nothing is
//! downloaded at build time.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, rounds};
use crate::credits::{KeyInfo, RateLimit};
use crate::error::Problem;
use crate::query::Bucket;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice gateway",
        description = "Credit-metered, API-key-protected access to aggregated game rounds."
    ),
    paths(
        rounds::aggregated_game_rounds,
        admin::create_key,
        admin::list_keys,
        admin::get_key,
        admin::revoke_key,
        admin::rotate_key,
        admin::top_up,
        admin::set_rate_limit,
        admin::audit,
        admin::rebuild_key,
        admin::create_user,
    ),
    components(schemas(Problem, KeyInfo, RateLimit, Bucket)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "rounds", description = "Aggregated game rounds (X-API-Key)"),
        (name = "admin", description = "API keys, credits and rate limits (Bearer admin token)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// The OpenAPI 3.1 description of this API.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON.as_str())
}

const DOCS_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sluice gateway API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" crossorigin></script>
  <script>
    window.onload = () => {
      window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui" });
    };
  </script>
</body>
</html>
"##;

/// Swagger UI over `/openapi.json`, loaded from a CDN by the browser.
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DOCS_HTML)
}
