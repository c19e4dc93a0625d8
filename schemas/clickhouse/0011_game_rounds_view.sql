-- `game_rounds`: every round once, at its current version (docs/PROCESSING.md): the rows of
-- `round_versions` whose version is the greatest of their key in `round_identity`. A view for
-- people and tests asking "what is stored"; it reads both tables whole, so the services read
-- hours through the rollup's own statements instead. A JOIN, not `IN (subquery)`: ClickHouse
-- 18.16 runs an IN subquery over key columns already when it analyses the statement, so
-- creating the view would read both tables (at 100 M rows: past the memory limit). Created by
-- the upgrade in `crates/schema/src/migrations.rs` once the table that had this name is retired.
CREATE VIEW IF NOT EXISTS game_rounds AS
SELECT
    created_timestamp, game_instance_id, user_id, game_id,
    real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win,
    game_name, provider, upload_id, version, inserted_at
FROM round_versions FINAL
ANY INNER JOIN (
    SELECT user_id, game_instance_id, max(version) AS version FROM round_identity
    GROUP BY user_id, game_instance_id)
USING (user_id, game_instance_id, version)
