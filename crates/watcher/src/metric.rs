//! Every metric this service emits, named once: the code that registers a metric and the
//! code that updates it use these (the dashboard's queries are checked against them, `tests/deploy`).

pub const BYTES_TOTAL: &str = "sluice_watcher_bytes_total";

pub const FILES_IN_FLIGHT: &str = "sluice_watcher_files_in_flight";

pub const FILES_TOTAL: &str = "sluice_watcher_files_total";

pub const FILES_WAITING: &str = "sluice_watcher_files_waiting";

pub const IGNORED_FILES_TOTAL: &str = "sluice_watcher_ignored_files_total";

pub const RESCANS_TOTAL: &str = "sluice_watcher_rescans_total";

pub const ROWS_TOTAL: &str = "sluice_watcher_rows_total";
