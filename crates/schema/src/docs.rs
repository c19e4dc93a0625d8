//! Swagger UI served from the binary at `/docs/`, over the service's own `/openapi.json`
//! ([`OpenApiJson`]), and what the services' documents built at start share: an operation per
//! dataset at its literal path, copied from the generic one ([`generic_operation`],
//! [`instance_responses`]).
//!
//! The assets come from `utoipa-swagger-ui`'s `vendored` feature: the Swagger UI release is a
//! crates.io package (`utoipa-swagger-ui-vendored`), unpacked at build time and embedded, so
//! neither the build nor the browser reaches anything but crates.io and this service. (The
//! crate's default build downloads the release from GitHub; copying `swagger-ui-dist` from npm
//! into the repository would add 1.5 MB of minified JavaScript to review in every upgrade.)

use std::sync::{Arc, LazyLock};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::Responses;
use utoipa_swagger_ui::Config;

use crate::problem::{Problem, PROBLEM_JSON};

/// A service's OpenAPI document, serialised (pretty JSON) once and served at
/// `GET /openapi.json`: built at start from what the service serves (its datasets) and kept in
/// its state.
pub struct OpenApiJson(web::Bytes);

impl OpenApiJson {
    /// `document`, serialised now.
    pub fn of(document: &utoipa::openapi::OpenApi) -> OpenApiJson {
        OpenApiJson(serialise(document))
    }

    /// The document as JSON.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("serialised from a `String`")
    }

    /// The `GET /openapi.json` answer.
    pub fn answer(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(self.0.clone())
    }
}

fn serialise(document: &utoipa::openapi::OpenApi) -> web::Bytes {
    let json = document
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    web::Bytes::from(json)
}

/// Swagger UI's settings: the document next to `/docs/` (relative, so a path prefix added by a
/// proxy still works), and no validator badge (Swagger UI's default loads one from the
/// internet).
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["../openapi.json"])
            .validator_url("none")
            .display_request_duration(true),
    )
});

/// Registers `GET /docs` (a redirect to `/docs/`) and `GET /docs/{file}`, one resource per
/// path, so another method is a 405 with `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/docs").route(web::get().to(redirect)))
        .service(web::resource("/docs/{file:.*}").route(web::get().to(file)));
}

/// `GET /docs`: the page lives at `/docs/`, so that its assets' relative links resolve.
async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}`: a Swagger UI file (`index.html` for `/docs/`), or 404.
async fn file(path: web::Path<String>) -> HttpResponse {
    let (status, detail) = match utoipa_swagger_ui::serve(path.as_str(), Arc::clone(&CONFIG)) {
        Ok(Some(file)) => {
            return HttpResponse::Ok()
                .content_type(file.content_type)
                .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
                .body(file.bytes.into_owned())
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "no such file in Swagger UI".to_owned(),
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Swagger UI could not be served: {error}"),
        ),
    };
    HttpResponse::build(status)
        .content_type(PROBLEM_JSON)
        .json(Problem::new(status, detail))
}

/// How a document's operations authenticate: each scheme by its name in
/// `components.securitySchemes`. Given to utoipa as a modifier (`modifiers(&SECURITY)`).
pub struct SecuritySchemes(pub &'static [(&'static str, Scheme)]);

/// One security scheme.
pub enum Scheme {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// An API key in the named header.
    Header(&'static str),
}

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, scheme) in self.0 {
            let scheme = match scheme {
                Scheme::Bearer => {
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build())
                }
                Scheme::Header(header) => {
                    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(*header)))
                }
            };
            components.add_security_scheme(*name, scheme);
        }
    }
}

/// The operation `method` at `path` of `document`, as its handler's annotation documents it:
/// a generic operation (its path has parameters, such as `/datasets/{name}/upload`), copied
/// for each of its literal instances that a service documents at start from its datasets
/// (`/datasets/records/upload`).
pub fn generic_operation(
    document: &utoipa::openapi::OpenApi,
    path: &str,
    method: HttpMethod,
) -> Operation {
    document
        .paths
        .get_path_operation(path, method)
        .unwrap_or_else(|| panic!("the generic operation `{path}` is documented"))
        .clone()
}

/// The answers of an instance of `generic` at a literal path: `generic`'s, but its 404 (the
/// path names what exists).
pub fn instance_responses(generic: &Operation) -> Responses {
    let mut responses = generic.responses.clone();
    responses.responses.remove("404");
    responses
}
