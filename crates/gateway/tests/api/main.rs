//! The gateway against a real Redis and a real ClickHouse: keys, exact credits, refunds,
//! hostile filters, rate limits, key management, cursor pagination, the usage ledger and its
//! audit, and the OpenAPI document. One module per area; what they share is in `helpers`
//! (and `tests/common`, shared with the other test files).

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod admin;
mod charges;
mod datasets;
mod errors;
mod ledger;
mod queries;
mod rate_limits;
mod rollup;
