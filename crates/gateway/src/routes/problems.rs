//! The problem-details answers the operations' documentation shares
//! (`components.responses` of `/openapi.json`), named in their `#[utoipa::path]` annotations.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::ToResponse;

use crate::error::{ADMIN_CHALLENGE, API_KEY_CHALLENGE};

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
