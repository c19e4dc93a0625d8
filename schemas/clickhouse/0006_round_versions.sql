-- Every version of every round, as the consumer inserted it (docs/PROCESSING.md). A round is
-- (user_id, game_instance_id); `version` orders its versions (the Kafka message's timestamp and
-- offset), so a redelivered message collapses into its row and versions never collapse into
-- each other. Ordered by hour first: reading an hour reads only that hour.
-- Valid on ClickHouse 18.16 (tests) and 24+ (users).
CREATE TABLE IF NOT EXISTS round_versions
(
    created_timestamp DateTime('UTC'),
    game_instance_id UInt64,
    user_id String,
    game_id UInt64,
    real_amount_bet Nullable(Decimal(18, 4)),
    bonus_amount_bet Nullable(Decimal(18, 4)),
    real_amount_win Nullable(Decimal(18, 4)),
    bonus_amount_win Nullable(Decimal(18, 4)),
    game_name String,
    provider String,
    upload_id String,
    version UInt64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_timestamp)
ORDER BY (toStartOfHour(created_timestamp), user_id, game_instance_id, version)
