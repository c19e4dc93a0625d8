//! Every metric this service emits, named once: the code that registers a metric and the
//! code that updates it use these (the dashboard's queries are checked against them, `tests/deploy`).

pub const BATCHES_TOTAL: &str = "sluice_consumer_batches_total";

pub const BATCH_ROWS: &str = "sluice_consumer_batch_rows";

pub const DEAD_LETTERS_TOTAL: &str = "sluice_consumer_dead_letters_total";

pub const INSERT_FAILURES_TOTAL: &str = "sluice_consumer_insert_failures_total";

pub const INSERT_SECONDS: &str = "sluice_consumer_insert_seconds";

pub const PAUSED: &str = "sluice_consumer_paused";

pub const POISON_MESSAGES_TOTAL: &str = "sluice_consumer_poison_messages_total";

pub const ROWS_INSERTED_TOTAL: &str = "sluice_consumer_rows_inserted_total";

/// Counter of batch writes that waited because a replica the lookup of earlier versions
/// would read was still fetching rows its peer had acknowledged (a cluster only).
pub const REPLICA_WAITS: &str = "sluice_consumer_replica_waits_total";

/// Gauge of the messages between a partition's end and this group's committed offset.
pub const LAG: &str = "sluice_consumer_lag_messages";

/// Counter of re-subscriptions after a subscribed topic came back (`kafka::TopicPresence`).
pub const RESUBSCRIBED: &str = "sluice_consumer_resubscribed_total";

/// Gauge of each topic's partition count, as the brokers report it in every statistics round.
pub const TOPIC_PARTITIONS: &str = "sluice_consumer_topic_partitions";
