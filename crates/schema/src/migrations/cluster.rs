//! The sharded layout (docs/SCALING.md): the same migrations, applied `ON CLUSTER`. Every table
//! of a migration becomes a `ReplicatedReplacingMergeTree` named `<table>_local` on every
//! server plus a `Distributed` table of the migration's name over them, sharded by the
//! table's [`Object::Table::shard_by`]; the services keep reading and writing the plain names.
//!
//! Pure SQL rewriting, checked against every migration by the unit tests below (a migration
//! whose text does not have the expected shape fails them, not a start-up).

use super::{Migration, Object};

/// Where Sluice's tables live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Layout {
    /// One ClickHouse server (or one behind a proxy): plain `ReplacingMergeTree` tables.
    #[default]
    Single,
    /// The named cluster of `remote_servers` (shards of replicas): `<table>_local` on every
    /// server and a `Distributed` `<table>` over them.
    Cluster(String),
}

/// A cluster name that is not a plain identifier.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a valid ClickHouse cluster name (letters, digits and `_` only)")]
pub struct BadClusterName(pub String);

/// The settings every query of a service sends on a cluster, whatever the user's profile says:
/// - `insert_distributed_sync`: an insert into a `Distributed` table is acknowledged only once
///   every shard it writes to holds its rows (not when queued on the server that took it), so
///   the consumer stores Kafka offsets only for rows the shards hold. The name 18.16 knows;
///   ClickHouse 23.3+ calls it `distributed_foreground_insert` and keeps this one as an alias.
/// - `load_balancing = in_order` and `prefer_localhost_replica = 0`: reads and writes of every
///   service go to the first live replica of each shard, so a service reads what another just
///   wrote, without waiting for replication (docs/SCALING.md: what a replica outage costs).
/// - `distributed_product_mode = global`: an `IN`/`JOIN` subquery over a `Distributed` table
///   is run once over the whole cluster (`GLOBAL`), so it is complete whatever the shard of
///   its rows (the rollups' versions are sharded by bucket, their rows by player).
pub const QUERY_SETTINGS: [(&str, &str); 4] = [
    ("insert_distributed_sync", "1"),
    ("load_balancing", "in_order"),
    ("prefer_localhost_replica", "0"),
    ("distributed_product_mode", "global"),
];

impl Layout {
    /// The layout a service's `…_CLICKHOUSE_CLUSTER` setting names: unset or empty is one server.
    pub fn from_setting(cluster: Option<&str>) -> Result<Layout, BadClusterName> {
        match cluster.map(str::trim) {
            None | Some("") => Ok(Layout::Single),
            Some(name) if is_identifier(name) => Ok(Layout::Cluster(name.to_owned())),
            Some(name) => Err(BadClusterName(name.to_owned())),
        }
    }

    /// The cluster's name, if any.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Layout::Single => None,
            Layout::Cluster(name) => Some(name),
        }
    }

    /// `client` with the [`QUERY_SETTINGS`] of this layout on every query.
    #[cfg(feature = "clickhouse")]
    pub fn configure(&self, client: clickhouse::Client) -> clickhouse::Client {
        match self {
            Layout::Single => client,
            Layout::Cluster(_) => QUERY_SETTINGS.iter().fold(client, |client, (name, value)| {
                client.with_setting(*name, *value)
            }),
        }
    }
}

/// Letters, digits and `_`, not empty: safe to write into a statement unquoted.
pub(super) fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `CREATE DATABASE` on every server of `cluster`.
pub fn create_database(database: &str, cluster: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}")
}

/// The statements that apply `migration` to `database` on every server of `cluster`, in order.
///
/// # Panics
/// When the migration's text does not have the shape its [`Object`] says (caught by the unit
/// test that renders every migration).
pub fn statements(migration: &Migration, database: &str, cluster: &str) -> Vec<String> {
    statements_of(&migration.object, migration.sql, database, cluster)
}

/// The statements that make `object` in `database` on every server of `cluster`, in order,
/// from `sql`, its statement on one server (of the shape the [`Object`] says): what
/// [`statements`] does for a migration, for DDL generated at start too (a dataset's tables,
/// `sluice_rollup::datasets`).
///
/// # Panics
/// When `sql` does not have the shape `object` says.
pub fn statements_of(object: &Object, sql: &str, database: &str, cluster: &str) -> Vec<String> {
    match *object {
        Object::Table { name, shard_by } => {
            let head = format!("CREATE TABLE IF NOT EXISTS {name}");
            let local = replace_once(
                sql,
                &head,
                &format!("CREATE TABLE IF NOT EXISTS {database}.{name}_local ON CLUSTER {cluster}"),
            );
            let local = replicated_engine(&local, &format!("{database}/{name}"));
            vec![local, distributed(name, shard_by, database, cluster)]
        }
        Object::AddColumn {
            table, shard_by, ..
        } => {
            let head = format!("ALTER TABLE {table} ");
            let on = format!("ALTER TABLE {database}.{table}_local ON CLUSTER {cluster} ");
            vec![
                replace_once(sql, &head, &on),
                format!("DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {cluster}"),
                distributed(table, shard_by, database, cluster),
            ]
        }
        Object::MaterializedView {
            name,
            target,
            source,
        } => {
            let head = format!("CREATE MATERIALIZED VIEW IF NOT EXISTS {name} TO {target} ");
            let on = format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} \
                 TO {database}.{target}_local "
            );
            let sql = replace_once(sql, &head, &on);
            vec![replace_table(
                &sql,
                source,
                &format!("{database}.{source}_local"),
            )]
        }
        Object::View { name, reads, join } => {
            let head = format!("CREATE VIEW IF NOT EXISTS {name} ");
            let on = format!("CREATE VIEW IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} ");
            let mut sql = replace_once(sql, &head, &on);
            for table in reads {
                sql = replace_table(&sql, table, &format!("{database}.{table}"));
            }
            if let Some(join) = join {
                // Each server analyses the view without the services' query settings.
                sql = replace_once(&sql, join, &format!("GLOBAL {join}"));
            }
            vec![sql]
        }
    }
}

/// The `Distributed` table `name` over every server's `<name>_local`, with its columns.
fn distributed(name: &str, shard_by: &str, database: &str, cluster: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} \
         AS {database}.{name}_local \
         ENGINE = Distributed({cluster}, {database}, {name}_local, {shard_by})"
    )
}

/// `ENGINE = XMergeTree(args)` → `ENGINE = ReplicatedXMergeTree('<path>', '{replica}', args)`,
/// the path under `/clickhouse/tables/{shard}/`.
fn replicated_engine(sql: &str, path: &str) -> String {
    let at = sql
        .find("ENGINE = ")
        .expect("a table migration names its engine")
        + 9;
    let open = at + sql[at..].find('(').expect("the engine has arguments");
    let engine = &sql[at..open];
    assert!(
        engine.ends_with("MergeTree") && !engine.starts_with("Replicated"),
        "unexpected engine {engine}"
    );
    let args = sql[open + 1..].starts_with(')');
    let separator = if args { "" } else { ", " };
    format!(
        "{}Replicated{engine}('/clickhouse/tables/{{shard}}/{path}', '{{replica}}'{separator}{}",
        &sql[..at],
        &sql[open + 1..]
    )
}

/// `sql` with its one `from` replaced by `to`.
fn replace_once(sql: &str, from: &str, to: &str) -> String {
    assert_eq!(sql.matches(from).count(), 1, "`{from}` once in: {sql}");
    sql.replacen(from, to, 1)
}

/// `sql` with every `FROM <table>` (a whole name) reading `with` instead.
fn replace_table(sql: &str, table: &str, with: &str) -> String {
    let needle = format!("FROM {table}");
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    let mut found = false;
    while let Some(at) = rest.find(&needle) {
        let end = at + needle.len();
        let whole = !rest[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { "FROM " } else { &needle });
        if whole {
            out.push_str(with);
            found = true;
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    assert!(found, "`{needle}` in: {sql}");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{GAME_ROUNDS_VIEW, MIGRATIONS};
    use super::*;

    fn rendered(name: &str) -> Vec<String> {
        let migration = MIGRATIONS
            .iter()
            .chain([&GAME_ROUNDS_VIEW])
            .find(|m| m.name == name)
            .unwrap();
        statements(migration, "db", "c")
    }

    #[test]
    fn every_migration_has_a_cluster_form_naming_the_database_and_cluster() {
        for migration in MIGRATIONS.iter().chain([&GAME_ROUNDS_VIEW]) {
            for statement in statements(migration, "db", "c") {
                let on_cluster = [" ON CLUSTER c ", " ON CLUSTER c\n"];
                assert!(
                    on_cluster.iter().any(|on| statement.contains(on))
                        || statement.ends_with(" ON CLUSTER c"),
                    "{statement}"
                );
                assert!(statement.contains("db."), "{statement}");
            }
        }
    }

    #[test]
    fn a_table_becomes_a_replicated_local_table_and_a_distributed_one() {
        let [local, distributed] = &rendered("round_identity")[..] else {
            panic!("two statements")
        };
        assert!(
            local.contains("CREATE TABLE IF NOT EXISTS db.round_identity_local ON CLUSTER c\n(")
        );
        assert!(local.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/round_identity', '{replica}', version)"
        ));
        assert!(local.contains("SETTINGS index_granularity = 1024"));
        assert_eq!(
            distributed,
            "CREATE TABLE IF NOT EXISTS db.round_identity ON CLUSTER c AS db.round_identity_local \
             ENGINE = Distributed(c, db, round_identity_local, cityHash64(user_id))"
        );
        let local = &rendered("quarantine")[0];
        assert!(local.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/quarantine', '{replica}')"
        ));
    }

    #[test]
    fn an_added_column_is_added_to_the_local_tables_and_the_distributed_one_made_again() {
        let statements = rendered("upload_id");
        assert_eq!(statements.len(), 3);
        assert!(statements[0]
            .contains("ALTER TABLE db.game_rounds_local ON CLUSTER c ADD COLUMN upload_id"));
        assert_eq!(
            statements[1],
            "DROP TABLE IF EXISTS db.game_rounds ON CLUSTER c"
        );
        assert_eq!(
            statements[2],
            "CREATE TABLE IF NOT EXISTS db.game_rounds ON CLUSTER c AS db.game_rounds_local \
             ENGINE = Distributed(c, db, game_rounds_local, cityHash64(user_id))"
        );
    }

    #[test]
    fn a_materialised_view_joins_each_servers_own_tables() {
        let [view] = &rendered("round_identity_view")[..] else {
            panic!("one statement")
        };
        assert!(
            view.contains("ON CLUSTER c TO db.round_identity_local "),
            "{view}"
        );
        assert!(
            view.trim_end().ends_with("FROM db.round_versions_local"),
            "{view}"
        );
    }

    #[test]
    fn a_view_reads_the_distributed_tables_with_a_global_join() {
        let [view] = &rendered("game_rounds_view")[..] else {
            panic!("one statement")
        };
        assert!(view.contains("FROM db.round_versions FINAL"), "{view}");
        assert!(view.contains("FROM db.round_identity\n"), "{view}");
        assert!(view.contains("GLOBAL ANY INNER JOIN"), "{view}");
    }

    #[test]
    fn a_table_name_is_replaced_only_where_it_is_the_whole_name() {
        let sql = "SELECT a FROM t_local JOIN (SELECT b FROM t) USING a FROM t";
        assert_eq!(
            replace_table(sql, "t", "db.t"),
            "SELECT a FROM t_local JOIN (SELECT b FROM db.t) USING a FROM db.t"
        );
    }

    #[test]
    fn the_cluster_setting_names_the_layout() {
        assert_eq!(Layout::from_setting(None).unwrap(), Layout::Single);
        assert_eq!(Layout::from_setting(Some(" ")).unwrap(), Layout::Single);
        assert_eq!(
            Layout::from_setting(Some("sluice")).unwrap(),
            Layout::Cluster("sluice".into())
        );
        assert!(Layout::from_setting(Some("a;DROP")).is_err());
    }
}
