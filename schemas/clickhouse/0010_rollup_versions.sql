-- Which version of each hour of a rollup is published: an hour's answer is its rows in the
-- rollup table at the greatest version here. Written after those rows, by the processor.
CREATE TABLE IF NOT EXISTS rollup_versions
(
    rollup String,
    bucket DateTime('UTC'),
    version UInt64,
    published_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
ORDER BY (rollup, bucket, version)
