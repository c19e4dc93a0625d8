-- Messages the consumer could not decode (poison), kept for inspection and replay. Keyed by
-- their Kafka position, so a retried batch stores each one once (after merges / with FINAL).
-- The same messages also go to the dead-letter topic with the error in headers.
CREATE TABLE IF NOT EXISTS quarantine
(
    received_at DateTime('UTC') DEFAULT now(),
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    error String,
    payload_hex String
)
ENGINE = ReplacingMergeTree()
ORDER BY (source_topic, source_partition, source_offset)
