//! The ClickHouse side of the consumer: one `INSERT … FORMAT RowBinary` per batch.

use clickhouse::Client;
use serde::Serialize;
use sluice_schema::GameRound;

use crate::batcher::Poison;

/// Table the rounds land in (see `schemas/clickhouse/0001_game_rounds.sql`).
pub const GAME_ROUNDS_TABLE: &str = "game_rounds";

/// Table undecodable messages land in (see `schemas/clickhouse/0002_quarantine.sql`).
pub const QUARANTINE_TABLE: &str = "quarantine";

/// One row of `game_rounds` in RowBinary: `DateTime` is seconds as `u32`, `Decimal(18, 4)` is
/// the scaled `i64`, `Nullable` is an `Option`. `inserted_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct GameRoundRow<'a> {
    pub created_timestamp: u32,
    pub game_instance_id: u64,
    pub user_id: &'a str,
    pub game_id: u64,
    pub real_amount_bet: Option<i64>,
    pub bonus_amount_bet: Option<i64>,
    pub real_amount_win: Option<i64>,
    pub bonus_amount_win: Option<i64>,
    pub game_name: &'a str,
    pub provider: &'a str,
}

impl<'a> GameRoundRow<'a> {
    pub fn from_round(round: &'a GameRound) -> GameRoundRow<'a> {
        let seconds = round.created_timestamp.div_euclid(1000);
        GameRoundRow {
            created_timestamp: u32::try_from(seconds).unwrap_or(0),
            game_instance_id: round.game_instance_id.unsigned_abs(),
            user_id: round.user_id.as_str(),
            game_id: round.game_id.unsigned_abs(),
            real_amount_bet: round.real_amount_bet.map(|m| m.scaled()),
            bonus_amount_bet: round.bonus_amount_bet.map(|m| m.scaled()),
            real_amount_win: round.real_amount_win.map(|m| m.scaled()),
            bonus_amount_win: round.bonus_amount_win.map(|m| m.scaled()),
            game_name: &round.game_name,
            provider: &round.provider,
        }
    }
}

/// Inserts `rounds` as one block; returns once ClickHouse acknowledged the whole insert.
pub async fn insert_batch(
    client: &Client,
    rounds: impl Iterator<Item = &GameRound>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<GameRoundRow<'_>>(GAME_ROUNDS_TABLE).await?;
    for round in rounds {
        insert.write(&GameRoundRow::from_round(round)).await?;
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
    topic: &str,
    poison: impl Iterator<Item = &'a Poison>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<QuarantineRow<'_>>(QUARANTINE_TABLE).await?;
    for message in poison {
        insert
            .write(&QuarantineRow {
                source_topic: topic,
                source_partition: message.partition,
                source_offset: message.offset,
                error: &message.error,
                payload_hex: hex::encode(&message.payload),
            })
            .await?;
    }
    insert.end().await
}
