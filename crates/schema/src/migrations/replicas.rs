//! Whether the replicas a service reads hold every insert acknowledged so far
//! (docs/SCALING.md, "A replica behind its peer").
//!
//! On a cluster every service reads and writes the first live replica of each shard
//! (`load_balancing = in_order`). That replica can lack parts another one acknowledged: it was
//! down or starting when they were written to its peer, and is still fetching them — or cannot,
//! its peer being down in turn. A read whose result is kept, not just answered (the processor's
//! recomputation of a bucket, published and then trusted until the bucket is dirty again),
//! must see every row acknowledged before it began. [`ReadReplicas::caught_up`] asks
//! `cluster(…, system, replicas)` — which picks a replica of each shard exactly as a read of a
//! `Distributed` table does — whether each picked replica has copied the whole replication log
//! of every replicated table of the database into its queue and fetched every part inserted
//! through it.

use clickhouse::{Client, Row};
use serde::Deserialize;

use super::Layout;

/// The check of the replicas a cluster's reads go to; none on one server.
#[derive(Debug, Clone)]
pub struct ReadReplicas {
    sql: String,
    database: String,
}

/// Why the replicas read are not known to hold every acknowledged row.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica {replica} has not fetched every acknowledged part yet ({tables} table(s) behind its peers)")]
    Behind { replica: String, tables: u64 },
    #[error("the replicas read changed while reading: {before:?}, then {after:?}")]
    Changed {
        before: Vec<String>,
        after: Vec<String>,
    },
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

#[derive(Debug, Row, Deserialize)]
struct ReplicaStatus {
    replica: String,
    /// Replicated tables of the database this replica may be missing parts of.
    behind: u64,
}

/// A replica is behind on a table when it is read-only (no ZooKeeper session: it cannot know),
/// has not copied every entry of the table's log into its queue (`log_pointer` is the next
/// entry it will copy; an empty log reads 0 and 0), or has inserted parts left to fetch.
const BEHIND: &str = "is_readonly OR is_session_expired OR inserts_in_queue > 0 \
     OR (log_pointer <= log_max_index AND NOT (log_pointer = 0 AND log_max_index = 0))";

impl ReadReplicas {
    /// The check for `layout`'s reads of `database`; `None` on one server (nothing to lag).
    pub fn of(layout: &Layout, database: &str) -> Option<ReadReplicas> {
        let cluster = layout.cluster()?;
        let sql = format!(
            "SELECT replica_name AS replica, toUInt64(countIf({BEHIND})) AS behind \
             FROM cluster('{cluster}', system, replicas) WHERE database = ? \
             GROUP BY replica ORDER BY replica"
        );
        Some(ReadReplicas {
            sql,
            database: database.to_owned(),
        })
    }

    /// The replicas read now (one a shard, sorted by name), once each holds every part
    /// acknowledged before this call; [`ReplicaError::Behind`] names one that does not. A
    /// read begun after this returns sees every row acknowledged before it, as long as a
    /// second call after the read finds the same replicas read ([`ReadReplicas::still`]).
    /// `client` must carry the layout's query settings ([`Layout::configure`]).
    pub async fn caught_up(&self, client: &Client) -> Result<Vec<String>, ReplicaError> {
        let statuses = self.statuses(client).await?;
        if let Some(lagging) = statuses.iter().find(|s| s.behind > 0) {
            return Err(ReplicaError::Behind {
                replica: lagging.replica.clone(),
                tables: lagging.behind,
            });
        }
        Ok(statuses.into_iter().map(|s| s.replica).collect())
    }

    /// Checks after a read that began after [`ReadReplicas::caught_up`] returned `before`
    /// that the read went to those same replicas. Whether they are behind now does not
    /// matter (the read's own writes put them behind for a moment): what they held when the
    /// read began was checked before it.
    pub async fn still(&self, client: &Client, before: Vec<String>) -> Result<(), ReplicaError> {
        let after: Vec<String> = (self.statuses(client).await?.into_iter())
            .map(|s| s.replica)
            .collect();
        if after == before {
            Ok(())
        } else {
            Err(ReplicaError::Changed { before, after })
        }
    }

    async fn statuses(&self, client: &Client) -> Result<Vec<ReplicaStatus>, ReplicaError> {
        Ok(client
            .query(&self.sql)
            .bind(&self.database)
            .fetch_all::<ReplicaStatus>()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_has_no_replicas_to_check() {
        assert!(ReadReplicas::of(&Layout::Single, "sluice").is_none());
    }

    #[test]
    fn a_cluster_checks_the_replicas_its_reads_pick() {
        let check = ReadReplicas::of(&Layout::Cluster("sluice".into()), "db").unwrap();
        assert!(check
            .sql
            .contains("FROM cluster('sluice', system, replicas)"));
        assert!(
            check.sql.contains("WHERE database = ?"),
            "bound, not written in"
        );
        assert_eq!(check.database, "db");
    }
}
