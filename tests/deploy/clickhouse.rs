//! `deploy/clickhouse-cluster`: the sharded layout against the migrations.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::read;

/// `name Type …` columns and the `ORDER BY` of each `CREATE TABLE` in some DDL.
fn tables(ddl: &str) -> BTreeMap<String, (BTreeSet<String>, String)> {
    let mut out = BTreeMap::new();
    let ddl: String = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in ddl.split("CREATE TABLE IF NOT EXISTS ").skip(1) {
        let name = statement.split_whitespace().next().unwrap();
        let name = name.rsplit('.').next().unwrap().to_owned();
        let Some(open) = statement.find("\n(") else {
            continue; // `AS other_table`: no columns of its own.
        };
        let close = statement[open..].find("\n)").unwrap() + open;
        let columns = statement[open + 2..close]
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|c| c.trim_end_matches(',').to_owned())
            .collect();
        let order = statement
            .split("ORDER BY ")
            .nth(1)
            .map(|o| {
                o.lines()
                    .next()
                    .unwrap()
                    .trim_end_matches(';')
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        out.insert(name, (columns, order));
    }
    out
}

#[test]
fn the_sharded_clickhouse_layout_mirrors_the_migrations() {
    let cluster_ddl = read("deploy/clickhouse-cluster/ddl/cluster.sql");
    let cluster = tables(&cluster_ddl);
    let mut expected: BTreeMap<String, (BTreeSet<String>, String)> = BTreeMap::new();
    for migration in sluice_schema::migrations::MIGRATIONS {
        expected.extend(tables(migration.sql));
        // `ALTER TABLE t ADD COLUMN c …` adds c to t.
        if let Some(rest) = migration.sql.split("ALTER TABLE ").nth(1) {
            let mut words = rest.split_whitespace();
            let table = words.next().unwrap().to_owned();
            if words.next() == Some("ADD") && words.next() == Some("COLUMN") {
                let column = words.next().unwrap().to_owned();
                expected.get_mut(&table).unwrap().0.insert(column);
            }
        }
    }
    assert!(
        expected.contains_key("game_rounds"),
        "the migration parser found no tables"
    );
    for (table, (columns, order)) in &expected {
        let local = format!("{table}_local");
        let (cluster_columns, cluster_order) = cluster
            .get(&local)
            .unwrap_or_else(|| panic!("the cluster DDL has no {local}"));
        assert_eq!(cluster_columns, columns, "{local}: columns");
        assert_eq!(cluster_order, order, "{local}: ORDER BY (the dedup key)");
        let replicated = format!("CREATE TABLE IF NOT EXISTS sluice.{local} ON CLUSTER sluice");
        let body = cluster_ddl.split(&replicated).nth(1).expect("local table");
        assert!(
            body.split(';')
                .next()
                .unwrap()
                .contains("ENGINE = ReplicatedReplacingMergeTree("),
            "{local}: not a ReplicatedReplacingMergeTree"
        );
        let distributed = format!(
            "CREATE TABLE IF NOT EXISTS sluice.{table} ON CLUSTER sluice AS sluice.{local}\nENGINE = Distributed(sluice, sluice, {local}, "
        );
        assert!(
            cluster_ddl.contains(&distributed),
            "{table}: no Distributed table over {local}"
        );
    }
    // A round's duplicates must share a shard for FINAL to collapse them.
    assert!(
        cluster_ddl.contains("Distributed(sluice, sluice, game_rounds_local, cityHash64(user_id))")
    );
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
}
