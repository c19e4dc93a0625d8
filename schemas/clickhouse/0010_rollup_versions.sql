-- Which version of each hour of a rollup is published: an hour's answer is its rows in the
-- rollup table at the greatest version here. Written after those rows, by the processor.
-- Merges keep each hour's greatest version, so the table stays one row per hour; readers take
-- max(version) and are exact before merges too.
CREATE TABLE IF NOT EXISTS rollup_versions
(
    rollup String,
    bucket DateTime('UTC'),
    version UInt64,
    published_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (rollup, bucket)
