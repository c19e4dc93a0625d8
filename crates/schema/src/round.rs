//! The game round: the record that flows from an upload through Kafka into ClickHouse.

use serde::{Deserialize, Serialize};

use crate::domain::{Money, PlayerId};

/// One game round, already validated. Field order and types follow `schemas/game_round.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameRound {
    /// When the round was played: milliseconds since the Unix epoch, UTC.
    pub created_timestamp: i64,
    /// The round's identity; re-deliveries and re-uploads of a round share it.
    pub game_instance_id: i64,
    pub user_id: PlayerId,
    pub game_id: i64,
    pub real_amount_bet: Option<Money>,
    pub bonus_amount_bet: Option<Money>,
    pub real_amount_win: Option<Money>,
    pub bonus_amount_win: Option<Money>,
    pub game_name: String,
    pub provider: String,
}
