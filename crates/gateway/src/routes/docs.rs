//! `GET /openapi.json`, generated from the handlers' `#[utoipa::path]` annotations. Swagger UI
//! over it, at `/docs/`, is served from the binary by [`sluice_schema::docs`].

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToResponse};

use super::{admin, rounds, usage};
use crate::answer::Bucket;
use crate::credits::{KeyInfo, RateLimit};
use crate::error::{Problem, ADMIN_CHALLENGE, API_KEY_CHALLENGE};
use crate::usage::{Usage, UsageBucket, UsageGranularity};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice gateway",
        description = "Credit-metered, API-key-protected access to aggregated game rounds.\n\n\
            Every error is RFC 9457 problem details (`application/problem+json`). A method a \
            path does not have is answered 405 with an `Allow` header listing those it has; an \
            unknown path 404. Admin operations check the bearer token before anything else: \
            without it, any admin path answers 401."
    ),
    paths(
        rounds::aggregated_game_rounds,
        usage::usage,
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
    components(
        schemas(Problem, KeyInfo, RateLimit, Bucket, Usage, UsageBucket, UsageGranularity),
        responses(BadApiKey, NotAdmin, BadBody, KeyNotFound, TooLarge, WrongMediaType, Unavailable),
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "rounds", description = "Aggregated game rounds and the key's own usage (X-API-Key)"),
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

/// A problem-details answer with `description` and, optionally, one header.
fn problem(description: &str, header: Option<(&str, &str)>) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if let Some((name, about)) = header {
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(about))
                .build(),
        );
    }
    response.build()
}

/// Declares a reusable problem-details answer (`components.responses`).
macro_rules! problem_response {
    ($name:ident, $description:expr $(, $header:expr)?) => {
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                let header: Option<(&str, &str)> = None;
                (
                    stringify!($name),
                    problem(&$description, header $(.or(Some($header)))?).into(),
                )
            }
        }
    };
}

problem_response!(
    BadApiKey,
    "Missing, unknown, revoked or expired API key",
    ("WWW-Authenticate", &format!("Always `{API_KEY_CHALLENGE}`"))
);
problem_response!(
    NotAdmin,
    "Missing or wrong admin token",
    ("WWW-Authenticate", &format!("Always `{ADMIN_CHALLENGE}`"))
);
problem_response!(
    BadBody,
    "Malformed JSON, or a value outside what the schema allows"
);
problem_response!(KeyNotFound, "No key has this id");
problem_response!(TooLarge, "The body is larger than 64 KiB");
problem_response!(WrongMediaType, "The body is not sent as `application/json`");
problem_response!(
    Unavailable,
    "Redis or ClickHouse unavailable, or the usage ledger could not be written in time",
    ("Retry-After", "Seconds to wait before trying again")
);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// `[^…]` of every character `str::trim` drops, as a JSON Schema (ECMA-262) class.
    fn not_white_space() -> String {
        let escape = |c: char| match c {
            '\t' => "\\t".to_owned(),
            '\r' => "\\r".to_owned(),
            ' ' => " ".to_owned(),
            c => format!("\\u{:04X}", u32::from(c)),
        };
        let mut ranges: Vec<(char, char)> = Vec::new();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            if !c.is_whitespace() {
                continue;
            }
            match ranges.last_mut() {
                Some((_, last)) if u32::from(*last) + 1 == u32::from(c) => *last = c,
                _ => ranges.push((c, c)),
            }
        }
        let class: String = ranges
            .into_iter()
            .map(|(first, last)| match (first, last) {
                (first, last) if first == last => escape(first),
                (first, last) => format!("{}-{}", escape(first), escape(last)),
            })
            .collect();
        format!("[^{class}]")
    }

    #[test]
    fn a_name_pattern_requires_a_character_that_trimming_keeps() {
        let document: serde_json::Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        let schemas = &document["components"]["schemas"];
        for name in [
            &schemas["CreateKey"]["properties"]["name"],
            &schemas["NewUser"]["properties"]["username"],
        ] {
            assert_eq!(name["pattern"], not_white_space());
            assert_eq!(
                (&name["minLength"], &name["maxLength"]),
                (&1.into(), &200.into())
            );
        }
    }

    #[test]
    fn integers_state_the_bounds_the_server_checks() {
        let document: serde_json::Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        let schemas = &document["components"]["schemas"];
        let bounds =
            |schema: &serde_json::Value| (schema["minimum"].as_u64(), schema["maximum"].as_u64());
        let limit = &schemas["RateLimitBody"]["properties"];
        assert_eq!(bounds(&limit["requests"]), (Some(1), Some(1_000_000)));
        assert_eq!(bounds(&limit["per_seconds"]), (Some(1), Some(86_400)));
        let max = crate::credits::MAX_CREDITS;
        assert_eq!(
            bounds(&schemas["TopUp"]["properties"]["add"]),
            (Some(1), Some(max))
        );
        assert_eq!(
            bounds(&schemas["CreateKey"]["properties"]["credits"]),
            (Some(0), Some(max))
        );
        assert_eq!(
            bounds(&schemas["NewUser"]["properties"]["credits"]),
            (Some(0), Some(max))
        );
        let grace = &schemas["Rotate"]["properties"]["grace_seconds"];
        assert_eq!(
            grace["maximum"].as_u64(),
            Some(u64::from(crate::credits::MAX_GRACE_SECONDS))
        );
    }
}
