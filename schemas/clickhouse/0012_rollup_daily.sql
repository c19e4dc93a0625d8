-- The daily rollup of game rounds per (player, game): the sums of rollup_hourly's published
-- rows of the day's hours, written by the processor with the version it recomputed the day
-- under; a day's rollup is its rows at its greatest version in rollup_versions (rollup
-- 'game_rounds_daily'). Publishing an hour marks its day dirty in Redis, so a day is
-- recomputed after each change of its hours; readers take a day from here only when it and
-- every hour of it are clean (docs/PROCESSING.md). Columns follow
-- `sluice_rollup::spec::GAME_ROUNDS_DAILY`; versions and merges as in rollup_hourly.
CREATE TABLE IF NOT EXISTS rollup_daily
(
    bucket DateTime('UTC'),
    user_id String,
    game_id UInt64,
    real_amount_bet Nullable(Decimal(38, 4)),
    bonus_amount_bet Nullable(Decimal(38, 4)),
    real_amount_win Nullable(Decimal(38, 4)),
    bonus_amount_win Nullable(Decimal(38, 4)),
    rounds UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, user_id, game_id)
