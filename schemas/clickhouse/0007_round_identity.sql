-- Which version of a round is current: the greatest `version` of its key (docs/PROCESSING.md).
-- Filled by `round_identity_view` from `round_versions`; looked up by key, so the granules are
-- small. Versions of one round collapse to the greatest after merges; readers take max(version).
CREATE TABLE IF NOT EXISTS round_identity
(
    user_id String,
    game_instance_id UInt64,
    version UInt64,
    created_timestamp DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (user_id, game_instance_id)
SETTINGS index_granularity = 1024
