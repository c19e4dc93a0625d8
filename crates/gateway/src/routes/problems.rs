//! The problem-details answers the operations' documentation shares
//! (`components.responses` of `/openapi.json`), named in their `#[utoipa::path]` annotations.

use sluice_schema::problem_response;

use crate::error::{ADMIN_CHALLENGE, API_KEY_CHALLENGE};

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
