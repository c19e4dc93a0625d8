//! The sharded ClickHouse layout of `scripts/cluster` (2 shards × 2 replicas on loopback, with
//! ZooKeeper), which `scripts/dev test` starts for the suite: where its servers are, and
//! stopping and starting one as a crash would. Read from the environment, then from
//! `target/sluice/cluster.env`; a test without the cluster fails, saying what to run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::stack::{host_port, read_once, require_reachable, workspace_root, Source, StackError};

/// The command that starts the cluster and writes `cluster.env`.
pub const CLUSTER_COMMAND: &str = "scripts/cluster up";

/// The servers, in `remote_servers` order: shard 1's replicas, then shard 2's.
pub const NODES: [&str; 4] = ["s1r1", "s1r2", "s2r1", "s2r2"];

/// The running cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its name in `remote_servers`: what `…_CLICKHOUSE_CLUSTER` is set to.
    pub name: String,
    /// Each server's HTTP endpoint, in [`NODES`] order.
    pub urls: Vec<String>,
}

impl Cluster {
    /// The running cluster.
    ///
    /// # Panics
    /// When it is not running: the message names the command that starts it.
    pub fn get() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        read_once(&CLUSTER, Cluster::read).unwrap_or_else(|error| panic!("{error}"))
    }

    fn read() -> Result<Cluster, StackError> {
        let source = Source::from_file(cluster_env_path(), CLUSTER_COMMAND);
        let name = source.value("SLUICE_CLUSTER_NAME")?;
        let urls = NODES
            .iter()
            .map(|node| source.value(&format!("SLUICE_CLUSTER_{}_URL", node.to_uppercase())))
            .collect::<Result<Vec<_>, _>>()?;
        for (node, url) in NODES.iter().zip(&urls) {
            require_reachable(
                &format!("ClickHouse {node}"),
                host_port(url),
                CLUSTER_COMMAND,
            )?;
        }
        Ok(Cluster { name, urls })
    }

    /// The HTTP endpoint of `node` (one of [`NODES`]).
    pub fn url(&self, node: &str) -> &str {
        let index = NODES.iter().position(|n| *n == node);
        &self.urls[index.unwrap_or_else(|| panic!("no node {node}"))]
    }

    /// Kills `node` (SIGKILL, as a crash would).
    pub fn stop(&self, node: &str) {
        run_script(&["stop", node]);
    }

    /// Starts `node` again on its data and waits until it answers and sees ZooKeeper.
    pub fn start(&self, node: &str) {
        run_script(&["start", node]);
    }
}

/// `target/sluice/cluster.env` at the workspace root.
pub fn cluster_env_path() -> PathBuf {
    workspace_root().join("target/sluice/cluster.env")
}

fn run_script(args: &[&str]) {
    let script = workspace_root().join("scripts/cluster");
    let status = Command::new(&script)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", script.display()));
    assert!(status.success(), "scripts/cluster {args:?}: {status}");
}
