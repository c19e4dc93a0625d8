-- The hourly rollup of game rounds per (player, game): the four money sums and the round count
-- of the hour's current rows, written by the processor with the version it recomputed the hour
-- under. An hour's rollup is its rows at its greatest version in rollup_versions (older
-- versions' rows are never read, so a recomputation needs no tombstones). Merges keep a group's
-- greatest version, so older versions' rows go away and the table stays one row per group:
-- safe, since a version above an hour's published one exists only while the hour is dirty,
-- when readers take it from raw rows (docs/PROCESSING.md). Columns follow
-- `sluice_rollup::spec::GAME_ROUNDS_HOURLY`.
CREATE TABLE IF NOT EXISTS rollup_hourly
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
