-- The gateway's usage ledger: one row per credit movement of an API key (`granted` at
-- creation and top-up, `charged` per admitted query, `refunded` when its query failed), with
-- the endpoint, HTTP status and latency of the request. Written in batches by the gateway's
-- background writer; keyed by (key_id, event_id), so a retried insert stores each event once
-- (after merges / with FINAL). A key's ledger balance is granted - charged + refunded.
-- Valid on ClickHouse 18.16 (tests) and 24+ (users).
CREATE TABLE IF NOT EXISTS usage_ledger
(
    event_id String,
    key_id String,
    status String,
    amount UInt64,
    endpoint String,
    http_status UInt16,
    latency_ms UInt32,
    at DateTime('UTC'),
    recorded_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (key_id, event_id)
