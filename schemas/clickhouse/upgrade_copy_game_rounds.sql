-- The rows of the `game_rounds` table of releases before round_versions, copied once into
-- round_versions. A row's version is its insert time in seconds: below every version a Kafka
-- message gives (milliseconds, shifted), and the later insert of a round wins, as that table's
-- merges would have decided.
INSERT INTO round_versions
    (created_timestamp, game_instance_id, user_id, game_id,
     real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win,
     game_name, provider, upload_id, version, inserted_at)
SELECT created_timestamp, game_instance_id, user_id, game_id,
    real_amount_bet, bonus_amount_bet, real_amount_win, bonus_amount_win,
    game_name, provider, upload_id, toUInt64(toUnixTimestamp(inserted_at)), inserted_at
FROM game_rounds_legacy FINAL
