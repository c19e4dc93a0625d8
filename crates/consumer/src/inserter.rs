//! The ClickHouse side of the consumer: one `INSERT … FORMAT RowBinary` per batch.

use clickhouse::Client;
use serde::Serialize;
use sluice_schema::avro::Envelope;
use sluice_schema::domain::{check_text, stored_seconds};

use crate::batcher::{Poison, Reject};
use crate::kafka::Topics;

/// Table the rounds land in, every version of each (see
/// `schemas/clickhouse/0006_round_versions.sql` and docs/PROCESSING.md).
pub const ROUND_VERSIONS_TABLE: &str = "round_versions";

/// Table rejected rows of uploads land in (see `schemas/clickhouse/0005_upload_rejects.sql`).
pub const UPLOAD_REJECTS_TABLE: &str = "upload_rejects";

/// Table undecodable messages land in (see `schemas/clickhouse/0002_quarantine.sql`).
pub const QUARANTINE_TABLE: &str = "quarantine";

/// One row of `round_versions` in RowBinary: `DateTime` is seconds as `u32`, `Decimal(18, 4)` is
/// the scaled `i64`, `Nullable` is an `Option`. `inserted_at` is filled by the server. Columns
/// are named in the insert, so their order here does not matter.
///
/// Built from a decoded record by [`GameRoundRow::new`], which refuses what the table cannot hold (a
/// moment outside `DateTime`'s range, a negative id, a NUL in a name) instead of storing a
/// substitute: such a record is poison, kept in the quarantine with the reason.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct GameRoundRow {
    pub created_timestamp: u32,
    pub game_instance_id: u64,
    pub user_id: String,
    pub game_id: u64,
    pub real_amount_bet: Option<i64>,
    pub bonus_amount_bet: Option<i64>,
    pub real_amount_win: Option<i64>,
    pub bonus_amount_win: Option<i64>,
    pub game_name: String,
    pub provider: String,
    pub upload_id: String,
    /// Orders the round's versions: see `sluice_rollup::version_of`.
    pub version: u64,
}

impl GameRoundRow {
    /// The row of `envelope`'s round, as version `version`, or why the table cannot hold it.
    pub fn new(envelope: Envelope, version: u64) -> Result<GameRoundRow, String> {
        let round = envelope.round;
        let field = |column: &str, reason: &dyn std::fmt::Display| format!("{column}: {reason}");
        let id =
            |column: &str, value: i64| u64::try_from(value).map_err(|_| field(column, &"negative"));
        for (column, text) in [
            ("game_name", &round.game_name),
            ("provider", &round.provider),
        ] {
            check_text(text).map_err(|e| field(column, &e))?;
        }
        Ok(GameRoundRow {
            created_timestamp: stored_seconds(round.created_timestamp)
                .map_err(|e| field("created_timestamp", &e))?,
            game_instance_id: id("game_instance_id", round.game_instance_id)?,
            user_id: round.user_id.into_string(),
            game_id: id("game_id", round.game_id)?,
            real_amount_bet: round.real_amount_bet.map(|m| m.scaled()),
            bonus_amount_bet: round.bonus_amount_bet.map(|m| m.scaled()),
            real_amount_win: round.real_amount_win.map(|m| m.scaled()),
            bonus_amount_win: round.bonus_amount_win.map(|m| m.scaled()),
            game_name: round.game_name,
            provider: round.provider,
            upload_id: envelope.upload_id,
            version,
        })
    }
}

/// Inserts `rounds` as one block; returns once ClickHouse acknowledged the whole insert.
pub async fn insert_batch(
    client: &Client,
    rounds: impl Iterator<Item = &GameRoundRow>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<GameRoundRow>(ROUND_VERSIONS_TABLE).await?;
    for round in rounds {
        insert.write(round).await?;
    }
    insert.end().await
}

/// One row of `upload_rejects`; `received_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct RejectRow<'a> {
    pub upload_id: &'a str,
    pub line: u64,
    pub column_name: &'a str,
    pub reason: &'a str,
}

/// Inserts rejected rows as one block. Keyed by (upload, line), so a repeated batch stores
/// each once (after merges / with FINAL).
pub async fn insert_rejects<'a>(
    client: &Client,
    rejects: impl Iterator<Item = &'a Reject>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<RejectRow<'_>>(UPLOAD_REJECTS_TABLE).await?;
    for reject in rejects {
        insert
            .write(&RejectRow {
                upload_id: &reject.upload_id,
                line: reject.line,
                column_name: reject.column.as_deref().unwrap_or_default(),
                reason: &reject.reason,
            })
            .await?;
    }
    insert.end().await
}

/// One row of `quarantine`; `received_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct QuarantineRow<'a> {
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub error: &'a str,
    pub payload_hex: String,
}

/// Inserts undecodable messages into the quarantine table as one block.
pub async fn insert_quarantine<'a>(
    client: &Client,
    topics: &Topics,
    poison: impl Iterator<Item = &'a Poison>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<QuarantineRow<'_>>(QUARANTINE_TABLE).await?;
    for message in poison {
        insert
            .write(&QuarantineRow {
                source_topic: topics.name(message.source),
                source_partition: message.partition,
                source_offset: message.offset,
                error: &message.error,
                payload_hex: hex::encode(&message.payload),
            })
            .await?;
    }
    insert.end().await
}
