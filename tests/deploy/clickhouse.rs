//! `deploy/clickhouse-cluster`: the sharded layout's servers and users. Its tables are not
//! shipped as DDL: the services generate them from the migrations (`sluice_schema::migrations::
//! cluster`, run against the real cluster by `tests/cluster.rs`).

use sluice_schema::migrations::{cluster, of_a_cluster, Object};

use crate::helpers::read;

#[test]
fn every_table_of_the_sharded_layout_is_replicated_and_rounds_shard_by_player() {
    for migration in of_a_cluster() {
        let Object::Table { name, shard_by } = migration.object else {
            continue;
        };
        let statements = cluster::statements(migration, "sluice", "sluice");
        assert!(
            statements[0].contains("ENGINE = ReplicatedReplacingMergeTree("),
            "{name}: {}",
            statements[0]
        );
        assert!(statements[1].ends_with(&format!("{name}_local, {shard_by})")));
        // A round's copies and versions, its identity and its rollup rows must share a shard
        // for FINAL (per shard) to collapse them and for a player's answer to be one shard's.
        let of_rounds = [
            "round_versions",
            "round_identity",
            "rollup_hourly",
            "rollup_daily",
        ];
        if of_rounds.contains(&name) {
            assert_eq!(shard_by, "cityHash64(user_id)", "{name}");
        }
    }
}

#[test]
fn the_cluster_has_two_shards_of_two_replicas_and_its_users_no_quorum() {
    let config = read("deploy/clickhouse-cluster/config.d/cluster.xml");
    assert_eq!(config.matches("<shard>").count(), 2, "2 shards");
    assert_eq!(
        config.matches("<replica><host>").count(),
        4,
        "2 replicas each"
    );
    assert_eq!(config.matches("<internal_replication>true").count(), 2);
    let keeper = read("deploy/clickhouse-cluster/keeper/keeper.xml");
    assert_eq!(
        keeper.matches("<server><id>").count(),
        3,
        "a 3-node Keeper quorum"
    );
    // 18.16 knows neither `distributed_foreground_insert` (a profile naming it fails every
    // query) nor a quorum that survives one of two replicas down.
    let users = read("deploy/clickhouse-cluster/users.d/sluice.xml");
    assert!(
        !users.contains("<distributed_foreground_insert>"),
        "{users}"
    );
    assert!(!users.contains("<insert_quorum>"), "{users}");
    assert!(users.contains("<insert_distributed_sync>1<"), "{users}");
}
