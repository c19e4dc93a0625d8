//! RFC 9457 problem details (`application/problem+json`), the shape of every error answer of
//! the gateway and the producer, [`problem_details`], which gives the answers actix-web
//! makes itself (unknown path, unsupported method, an extractor's refusal) the same shape, and
//! [`problem_response!`](crate::problem_response), which declares such an answer for the
//! OpenAPI documents (`components.responses`).

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, Response, ResponseBuilder, Type};
use utoipa::ToSchema;

#[doc(hidden)]
pub use utoipa as __utoipa;

/// An RFC 9457 problem details body (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what happened.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The status's reason phrase.
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong, for a human.
    #[schema(example = "the header cannot be used: missing column `user_id`")]
    pub detail: String,
}

/// The media type of a [`Problem`].
pub const PROBLEM_JSON: &str = "application/problem+json";

impl Problem {
    pub fn new(status: StatusCode, detail: String) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
        }
    }
}

/// For `ErrorHandlers`: an error answer actix-web made itself (404 for an unknown path, 405
/// with `Allow` for a method a path does not have, an extractor's refusal) becomes problem
/// details like every other; its headers are kept. Answers that already have a body type
/// (problem details, `/ready`'s JSON) pass unchanged.
pub fn problem_details<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let typed = response
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/"));
    if typed {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let detail = match (response.response().error(), status) {
        (_, StatusCode::NOT_FOUND) => "no such resource".to_owned(),
        (_, StatusCode::METHOD_NOT_ALLOWED) => {
            "this resource does not support the method; the Allow header lists those it does"
                .to_owned()
        }
        (Some(error), _) => error.to_string(),
        (None, _) => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let body = serde_json::to_string(&Problem::new(status, detail)).expect("a problem serialises");
    let (request, mut answer) = response.into_parts();
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let answer = answer.set_body(BoxBody::new(body));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, answer).map_body(|_, body| EitherBody::right(body)),
    ))
}

/// A problem-details answer for an OpenAPI document: `description`, a [`Problem`] body and,
/// optionally, one header (its name and what it holds).
pub fn openapi_response(description: &str, header: Option<(&str, &str)>) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
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

/// Declares a reusable problem-details answer (`components.responses`), named after the type
/// it declares, for `#[utoipa::path(responses(...))]` and `components(responses(...))`:
/// `problem_response!(NotFound, "No such thing");` or, with a header,
/// `problem_response!(Busy, "Try later", ("Retry-After", "Seconds to wait"));`.
#[macro_export]
macro_rules! problem_response {
    ($name:ident, $description:expr $(, $header:expr)?) => {
        pub struct $name;

        impl<'s> $crate::problem::__utoipa::ToResponse<'s> for $name {
            fn response() -> (
                &'s str,
                $crate::problem::__utoipa::openapi::RefOr<$crate::problem::__utoipa::openapi::Response>,
            ) {
                let header: Option<(&str, &str)> = None;
                (
                    stringify!($name),
                    $crate::problem::openapi_response(&$description, header $(.or(Some($header)))?)
                        .into(),
                )
            }
        }
    };
}
