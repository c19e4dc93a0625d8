-- The upload (or dropped file) each round arrived in, from the Avro record's `upload_id`: what
-- `GET /uploads/{id}` counts to reconcile accepted rows against rows in ClickHouse. Rows
-- written before this column existed read as ''.
-- ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`: the migration runner treats "column
-- already exists" (code 44) as applied, so this stays idempotent.
ALTER TABLE game_rounds ADD COLUMN upload_id String DEFAULT ''
