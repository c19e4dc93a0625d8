//! Every metric this service emits, named once: the code that registers a metric and the
//! code that updates it use these (the dashboard's queries are checked against them, `tests/deploy`).

pub const BYTES_TOTAL: &str = "sluice_producer_bytes_total";

pub const INTERMEDIATE_COMMITS_TOTAL: &str = "sluice_producer_intermediate_commits_total";

pub const ROWS_READ_TOTAL: &str = "sluice_producer_rows_read_total";

pub const ROWS_TOTAL: &str = "sluice_producer_rows_total";

pub const TRANSACTIONS_TOTAL: &str = "sluice_producer_transactions_total";

pub const UPLOADS_TOTAL: &str = "sluice_producer_uploads_total";

/// The `outcome` label of a rows counter (the producer's and the watcher's): accepted rows.
pub const ACCEPTED: &str = "accepted";

/// The `outcome` label of a rows counter: rejected rows.
pub const REJECTED: &str = "rejected";

/// Every `outcome` of a rows counter, for registering them at zero.
pub const ROW_OUTCOMES: [&str; 2] = [ACCEPTED, REJECTED];
