//! `GET /openapi.json`, generated from the handlers' `#[utoipa::path]` annotations and, for each
//! endpoint of the datasets the gateway serves, from its spec ([`super::dataset_docs`]): built
//! once at start ([`openapi`]) and kept in the application's state. Swagger UI over it, at
//! `/docs/`, is served from the binary by [`sluice_schema::docs`].

use actix_web::{web, HttpResponse};
use sluice_schema::dataset::Catalog;
use sluice_schema::docs::{Scheme, SecuritySchemes};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::datasets::{self, ColumnInfo, DatasetInfo, DatasetList, DatasetPage, EndpointInfo};
use super::problems::{
    BadApiKey, BadBody, KeyNotFound, NotAdmin, TooLarge, Unavailable, WrongMediaType,
};
use super::{admin, rounds, usage, AppState};
use crate::answer::Bucket;
use crate::credits::{KeyInfo, RateLimit};
use crate::error::Problem;
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
        datasets::list_datasets,
        datasets::dataset_endpoint,
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
        schemas(Problem, KeyInfo, RateLimit, Bucket, Usage, UsageBucket, UsageGranularity,
            DatasetList, DatasetInfo, ColumnInfo, EndpointInfo, DatasetPage),
        responses(BadApiKey, NotAdmin, BadBody, KeyNotFound, TooLarge, WrongMediaType, Unavailable),
    ),
    modifiers(&SECURITY, &AdminOperations),
    tags(
        (name = "rounds", description = "Aggregated game rounds and the key's own usage (X-API-Key)"),
        (name = "admin", description = "API keys, credits and rate limits (Bearer admin token)"),
        (name = "datasets", description = "The datasets declared in files, their columns and endpoints"),
    )
)]
pub struct ApiDoc;

const SECURITY: SecuritySchemes = SecuritySchemes(&[
    ("api_key", Scheme::Header("X-API-Key")),
    ("admin_token", Scheme::Bearer),
]);

/// What every operation tagged `admin` has, declared once: the admin token, 401 without it
/// (checked before anything else of the request, `auth::admin_only`) and 503 when Redis or
/// ClickHouse is down.
struct AdminOperations;

impl Modify for AdminOperations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let operations = openapi.paths.paths.values_mut().flat_map(|item| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
        });
        for operation in operations {
            let tags = operation.tags.as_deref().unwrap_or_default();
            if !tags.iter().any(|tag| tag == "admin") {
                continue;
            }
            let token = SecurityRequirement::new("admin_token", Vec::<String>::new());
            operation.security = Some(vec![token]);
            for (status, response) in [("401", "NotAdmin"), ("503", "Unavailable")] {
                let response = RefOr::Ref(Ref::from_response_name(response));
                operation
                    .responses
                    .responses
                    .insert(status.to_owned(), response);
            }
        }
    }
}

/// The OpenAPI 3.1 description of this API serving `catalog`'s datasets: the annotated
/// operations, and one operation per dataset endpoint.
pub fn openapi(catalog: &Catalog) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    super::dataset_docs::add_operations(&mut document, catalog);
    document
}

/// The document built at start ([`openapi`]).
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    state.openapi.answer()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The document serving `catalog`, as `GET /openapi.json` answers it.
    pub(crate) fn document(catalog: &Catalog) -> serde_json::Value {
        let json = sluice_schema::docs::OpenApiJson::of(&openapi(catalog));
        serde_json::from_str(json.as_str()).unwrap()
    }

    /// `[^…]` of every character `str::trim` drops, as a JSON Schema (ECMA-262) class.
    pub(crate) fn not_white_space() -> String {
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
        let document = document(&Catalog::builtin());
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
        let document = document(&Catalog::builtin());
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
