//! Reconciliation: what ClickHouse holds of an upload. The producer only reads here; the
//! consumer writes `round_versions` (each row with its `upload_id`) and `upload_rejects`.

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use sluice_schema::dataset::{Source, Spec};
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

    /// How many of an upload's accepted rows ClickHouse holds, in `spec`'s dataset, the upload
    /// being `ids`: its own id and those its content was sent again under
    /// (`ReceiptStore::aliases`). Each accepted row is one message, so one version of its
    /// record (identity and `version`): a message delivered twice (redelivery) counts once,
    /// and a record sent twice in one file counts twice, as the receipt accepted it twice.
    /// Every version is kept, so a record that a later, different upload sent again still
    /// counts as landed for this one; rows of the aliases may count beyond the upload's own. `None` when the dataset keeps no upload id (no column
    /// with `source = "upload"`).
    pub async fn landed(
        &self,
        spec: &Spec,
        ids: &[String],
    ) -> Option<Result<u64, clickhouse::error::Error>> {
        let upload = spec.columns.iter().find(|c| c.source == Source::Upload)?;
        let sql = format!(
            "SELECT uniqExact({identity}, version) FROM {table} WHERE has(?, {upload})",
            identity = spec.identity.join(", "),
            table = spec.versions_table(),
            upload = upload.name,
        );
        Some(self.client.query(&sql).bind(ids).fetch_one::<u64>().await)
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
