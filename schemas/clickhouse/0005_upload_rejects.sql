-- Every row an upload (or dropped file) rejected, from the `<topic>.rejects` topic, listed by
-- `GET /uploads/{id}/rejects`. Keyed by (upload_id, line): a redelivered reject collapses into
-- one after merges, and reads use FINAL.
CREATE TABLE IF NOT EXISTS upload_rejects
(
    upload_id String,
    line UInt64,
    column_name String,
    reason String,
    received_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
ORDER BY (upload_id, line)
