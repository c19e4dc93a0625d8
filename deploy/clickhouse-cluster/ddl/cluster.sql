-- The tables of schemas/clickhouse/*.sql for the `sluice` cluster (config.d/cluster.xml):
-- each table is a ReplicatedReplacingMergeTree `<name>_local` on every server plus a
-- Distributed `<name>` over them, which is what the services read and write (their queries are
-- unchanged). Apply once, on any server: clickhouse-client --multiquery < ddl/cluster.sql
-- The services' own migrations then find every table present and change nothing.
-- Columns and sorting keys mirror schemas/clickhouse/ (checked by tests/deploy.rs).
--
-- Sharding: by cityHash64(user_id). A round's identity is (user_id, game_instance_id), so
-- every copy of a round (redelivery, re-upload) lands on the same shard, where
-- ReplacingMergeTree collapses it and FINAL, which works per shard, reads it once. Sharding by
-- anything not derived from user_id would put duplicates on different shards and count them
-- twice. The gateway's queries filter and group by player, so one player's buckets come
-- from one shard. usage_ledger shards by key_id, its dedup key's first column, for the same
-- reason; the other small tables by their own key.

CREATE DATABASE IF NOT EXISTS sluice ON CLUSTER sluice;

CREATE TABLE IF NOT EXISTS sluice.game_rounds_local ON CLUSTER sluice
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
    inserted_at DateTime('UTC') DEFAULT now(),
    upload_id String DEFAULT ''
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/game_rounds', '{replica}')
PARTITION BY toYYYYMM(created_timestamp)
ORDER BY (user_id, game_instance_id);

CREATE TABLE IF NOT EXISTS sluice.game_rounds ON CLUSTER sluice AS sluice.game_rounds_local
ENGINE = Distributed(sluice, sluice, game_rounds_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS sluice.quarantine_local ON CLUSTER sluice
(
    received_at DateTime('UTC') DEFAULT now(),
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    error String,
    payload_hex String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/quarantine', '{replica}')
ORDER BY (source_topic, source_partition, source_offset);

CREATE TABLE IF NOT EXISTS sluice.quarantine ON CLUSTER sluice AS sluice.quarantine_local
ENGINE = Distributed(sluice, sluice, quarantine_local, cityHash64(source_topic, source_partition, source_offset));

CREATE TABLE IF NOT EXISTS sluice.usage_ledger_local ON CLUSTER sluice
(
    event_id String,
    key_id String,
    status String,
    amount UInt64,
    endpoint String,
    http_status UInt16,
    latency_ms UInt32,
    at DateTime('UTC'),
    recorded_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/usage_ledger', '{replica}')
PARTITION BY toYYYYMM(at)
ORDER BY (key_id, event_id);

CREATE TABLE IF NOT EXISTS sluice.usage_ledger ON CLUSTER sluice AS sluice.usage_ledger_local
ENGINE = Distributed(sluice, sluice, usage_ledger_local, cityHash64(key_id));

CREATE TABLE IF NOT EXISTS sluice.upload_rejects_local ON CLUSTER sluice
(
    upload_id String,
    line UInt64,
    column_name String,
    reason String,
    received_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/upload_rejects', '{replica}')
ORDER BY (upload_id, line);

CREATE TABLE IF NOT EXISTS sluice.upload_rejects ON CLUSTER sluice AS sluice.upload_rejects_local
ENGINE = Distributed(sluice, sluice, upload_rejects_local, cityHash64(upload_id));

-- The processing layer (docs/PROCESSING.md). Every
-- version of a round and its identity row live on the shard of its player, so "the greatest
-- version of a key" is decided within one shard, and the view below runs shard-locally.
-- Reads of rollup_hourly against rollup_versions across shards need GLOBAL IN (issue 17).
CREATE TABLE IF NOT EXISTS sluice.round_versions_local ON CLUSTER sluice
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/round_versions', '{replica}')
PARTITION BY toYYYYMM(created_timestamp)
ORDER BY (toStartOfHour(created_timestamp), user_id, game_instance_id, version);

CREATE TABLE IF NOT EXISTS sluice.round_versions ON CLUSTER sluice AS sluice.round_versions_local
ENGINE = Distributed(sluice, sluice, round_versions_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS sluice.round_identity_local ON CLUSTER sluice
(
    user_id String,
    game_instance_id UInt64,
    version UInt64,
    created_timestamp DateTime('UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/round_identity', '{replica}', version)
ORDER BY (user_id, game_instance_id)
SETTINGS index_granularity = 1024;

CREATE TABLE IF NOT EXISTS sluice.round_identity ON CLUSTER sluice AS sluice.round_identity_local
ENGINE = Distributed(sluice, sluice, round_identity_local, cityHash64(user_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS sluice.round_identity_view ON CLUSTER sluice
TO sluice.round_identity_local AS
SELECT user_id, game_instance_id, version, created_timestamp FROM sluice.round_versions_local;

CREATE TABLE IF NOT EXISTS sluice.rollup_hourly_local ON CLUSTER sluice
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/rollup_hourly', '{replica}', version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, user_id, game_id);

CREATE TABLE IF NOT EXISTS sluice.rollup_hourly ON CLUSTER sluice AS sluice.rollup_hourly_local
ENGINE = Distributed(sluice, sluice, rollup_hourly_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS sluice.rollup_daily_local ON CLUSTER sluice
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/rollup_daily', '{replica}', version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, user_id, game_id);

CREATE TABLE IF NOT EXISTS sluice.rollup_daily ON CLUSTER sluice AS sluice.rollup_daily_local
ENGINE = Distributed(sluice, sluice, rollup_daily_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS sluice.rollup_versions_local ON CLUSTER sluice
(
    rollup String,
    bucket DateTime('UTC'),
    version UInt64,
    published_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sluice/rollup_versions', '{replica}', version)
ORDER BY (rollup, bucket);

CREATE TABLE IF NOT EXISTS sluice.rollup_versions ON CLUSTER sluice AS sluice.rollup_versions_local
ENGINE = Distributed(sluice, sluice, rollup_versions_local, cityHash64(bucket));
