-- Every insert into round_versions also lands its keys in round_identity. A view that fires
-- twice for one block (a retried insert) writes the same key and version: harmless.
CREATE MATERIALIZED VIEW IF NOT EXISTS round_identity_view TO round_identity AS
SELECT user_id, game_instance_id, version, created_timestamp FROM round_versions
