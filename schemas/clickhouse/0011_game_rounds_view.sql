-- `game_rounds`: every round once, at its current version (docs/PROCESSING.md): the rows of
-- `round_versions` whose version is the greatest of their key in `round_identity`. A view for
-- people and tests asking "what is stored"; it reads both tables whole, so the services read
-- hours through the rollup's own statements instead. Created by the upgrade in
-- `crates/schema/src/migrations.rs` once the table that had this name is retired.
CREATE VIEW IF NOT EXISTS game_rounds AS
SELECT
    created_timestamp, game_instance_id, user_id, game_id,
    real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win,
    game_name, provider, upload_id, version, inserted_at
FROM round_versions FINAL
WHERE (user_id, game_instance_id, version) IN (
    SELECT user_id, game_instance_id, max(version) FROM round_identity
    GROUP BY user_id, game_instance_id)
