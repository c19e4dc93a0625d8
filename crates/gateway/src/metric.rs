//! Every metric this service emits, named once: the code that registers a metric and the
//! code that updates it use these (the dashboard's queries are checked against them, `tests/deploy`).

pub const CREDITS_CHARGED_TOTAL: &str = "sluice_gateway_credits_charged_total";

pub const CREDITS_REFUNDED_TOTAL: &str = "sluice_gateway_credits_refunded_total";

pub const LEASES_EXPIRED_TOTAL: &str = "sluice_gateway_leases_expired_total";

pub const LEASES_SETTLED_LATE_TOTAL: &str = "sluice_gateway_leases_settled_late_total";

pub const LEDGER_EVENTS_WRITTEN_TOTAL: &str = "sluice_gateway_ledger_events_written_total";

pub const LEDGER_INSERT_FAILURES_TOTAL: &str = "sluice_gateway_ledger_insert_failures_total";

pub const LEDGER_OUTBOX_EVENTS: &str = "sluice_gateway_ledger_outbox_events";

pub const QUERIES_TOTAL: &str = "sluice_gateway_queries_total";

pub const QUERY_RETRIES_TOTAL: &str = "sluice_gateway_query_retries_total";

pub const READS_REPEATED_TOTAL: &str = "sluice_gateway_reads_repeated_total";
