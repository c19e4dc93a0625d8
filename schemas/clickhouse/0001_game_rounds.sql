-- Raw game rounds, one row per round. ReplacingMergeTree keyed by the round's identity
-- (user_id, game_instance_id): redelivered or re-uploaded rows collapse into one, and every
-- read uses FINAL so that results are exact before background merges have run.
-- Valid on ClickHouse 18.16 (tests) and 24+ (users).
CREATE TABLE IF NOT EXISTS game_rounds
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
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_timestamp)
ORDER BY (user_id, game_instance_id)
