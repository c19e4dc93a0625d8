//! Reconciliation: what ClickHouse holds of an upload. The producer only reads here; the
//! consumer writes `round_versions` (each row with its `upload_id`) and `upload_rejects`.

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use sluice_schema::migrations::cluster::BadClusterName;

use crate::config::Config;

/// Rejected rows listed per page, at most.
pub const MAX_REJECTS_PAGE: u32 = 10_000;

/// Read access to the tables the consumer fills.
#[derive(Clone)]
pub struct Landing {
    client: Client,
}

/// One rejected row of an upload, as `GET /uploads/{id}/rejects` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct LandedReject {
    pub line: u64,
    /// The column at fault; empty for row-level problems (e.g. a wrong number of fields).
    #[serde(rename(serialize = "column"))]
    pub column_name: String,
    pub reason: String,
}

impl Landing {
    /// A reader of `config`'s ClickHouse; fails on a malformed cluster setting.
    pub fn new(config: &Config) -> Result<Landing, BadClusterName> {
        Ok(Landing {
            client: config.clickhouse.client()?,
        })
    }

    /// How many distinct rounds of an upload ClickHouse holds, the upload being `ids`: its own
    /// id and those its content was sent again under (`ReceiptStore::aliases`). A round
    /// delivered twice (redelivery) counts once. Every version of a round is kept, so a round
    /// that a later, different upload sent again still counts as landed for this one.
    pub async fn landed(&self, ids: &[String]) -> Result<u64, clickhouse::error::Error> {
        self.client
            .query(
                "SELECT uniqExact(user_id, game_instance_id) FROM round_versions \
                 WHERE has(?, upload_id)",
            )
            .bind(ids)
            .fetch_one::<u64>()
            .await
    }

    /// The upload's rejected rows after line `after_line`, in line order, at most `limit`.
    pub async fn rejects(
        &self,
        upload_id: &str,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<LandedReject>, clickhouse::error::Error> {
        self.client
            .query(
                "SELECT line, column_name, reason FROM upload_rejects FINAL \
                 WHERE upload_id = ? AND line > ? ORDER BY line LIMIT ?",
            )
            .bind(upload_id)
            .bind(after_line)
            .bind(limit.min(MAX_REJECTS_PAGE))
            .fetch_all::<LandedReject>()
            .await
    }
}
