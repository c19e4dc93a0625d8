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

use std::time::Duration;

use clickhouse::{Client, Row};
use serde::Deserialize;

use super::Layout;

/// The check of the replicas a cluster's reads go to; none on one server.
#[derive(Debug, Clone)]
pub struct ReadReplicas {
    cluster: String,
    database: String,
    /// The tables checked (`<table>_local`); empty: every replicated table of the database.
    tables: Vec<String>,
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

/// How often, and how far apart, [`ReadReplicas::caught_up_soon`] asks again about replicas
/// found behind (a replica pulls its own inserts' log entries within milliseconds).
const BEHIND_RETRIES: u32 = 4;
const BEHIND_PAUSE: Duration = Duration::from_millis(25);

/// A replica is behind on a table when it is read-only (no ZooKeeper session: it cannot know),
/// has not copied every entry of the table's log into its queue (`log_pointer` is the next
/// entry it will copy; an empty log reads 0 and 0), or has inserted parts left to fetch.
const BEHIND: &str = "is_readonly OR is_session_expired OR inserts_in_queue > 0 \
     OR (log_pointer <= log_max_index AND NOT (log_pointer = 0 AND log_max_index = 0))";

impl ReadReplicas {
    /// The check for `layout`'s reads of `database`; `None` on one server (nothing to lag).
    pub fn of(layout: &Layout, database: &str) -> Option<ReadReplicas> {
        Some(ReadReplicas {
            cluster: layout.cluster()?.to_owned(),
            database: database.to_owned(),
            tables: Vec::new(),
        })
    }

    /// The check of the replicas read for `tables` alone (their plain names): a read of those
    /// need not wait for a replica behind on others.
    pub fn of_tables(self, tables: &[&str]) -> ReadReplicas {
        ReadReplicas {
            tables: tables.iter().map(|t| format!("{t}_local")).collect(),
            ..self
        }
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

    /// [`ReadReplicas::caught_up`], asked again up to [`BEHIND_RETRIES`] times
    /// [`BEHIND_PAUSE`] apart while a replica is behind: a replica is behind for a moment after
    /// every insert it takes (its own log entry, not pulled yet), and asked again shortly it is
    /// not. One still fetching its peer's parts stays behind, and that is the error.
    pub async fn caught_up_soon(&self, client: &Client) -> Result<Vec<String>, ReplicaError> {
        let mut attempt = 0;
        loop {
            match self.caught_up(client).await {
                Err(ReplicaError::Behind { .. }) if attempt < BEHIND_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(BEHIND_PAUSE).await;
                }
                answer => return answer,
            }
        }
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

    /// Each picked replica's count of tables it is behind on, from the cluster's
    /// `system.replicas`: of the database, and of [`ReadReplicas::tables`] when there are some
    /// (bound, and only then: an empty array could not be compared with a name).
    fn sql(&self) -> String {
        let only = match self.tables.is_empty() {
            true => "",
            false => " AND has(?, table)",
        };
        format!(
            "SELECT replica_name AS replica, toUInt64(countIf({BEHIND})) AS behind \
             FROM cluster('{cluster}', system, replicas) WHERE database = ?{only} \
             GROUP BY replica ORDER BY replica",
            cluster = self.cluster
        )
    }

    async fn statuses(&self, client: &Client) -> Result<Vec<ReplicaStatus>, ReplicaError> {
        let mut statement = client.query(&self.sql()).bind(&self.database);
        if !self.tables.is_empty() {
            statement = statement.bind(&self.tables);
        }
        Ok(statement.fetch_all::<ReplicaStatus>().await?)
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
            .sql()
            .contains("FROM cluster('sluice', system, replicas)"));
        assert!(
            check.sql().contains("WHERE database = ?"),
            "bound, not written in"
        );
        assert_eq!(check.database, "db");
        assert!(check.tables.is_empty(), "every table");
        let identity = check.clone().of_tables(&["round_identity"]);
        assert_eq!(identity.tables, ["round_identity_local"]);
        assert!(
            identity.sql().contains("AND has(?, table) GROUP BY"),
            "{}",
            identity.sql()
        );
        assert!(!check.sql().contains("has("));
    }
}
