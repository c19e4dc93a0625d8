//! ClickHouse DDL as numbered migration files (`schemas/clickhouse/NNNN_name.sql`). Every file
//! is idempotent (`IF NOT EXISTS`, or an `ADD COLUMN` whose "already exists" error counts as
//! applied), so applying the whole list at every start-up is safe, also from several consumers
//! at once.
//!
//! On a cluster ([`Layout::Cluster`], a service's `…_CLICKHOUSE_CLUSTER` setting) the same
//! files are applied `ON CLUSTER` in their sharded form ([`cluster`]): a replicated
//! `<table>_local` on every server and a `Distributed` `<table>` over them. Each layout refuses
//! a database holding the other's tables, so no server keeps a plain table inside a cluster.

pub mod cluster;
#[cfg(feature = "clickhouse")]
pub mod replicas;

pub use cluster::Layout;
#[cfg(feature = "clickhouse")]
pub use replicas::{ReadReplicas, ReplicaError};

/// One migration: its number, name and SQL (a single statement, no trailing semicolon), and
/// what it creates or changes (how it is applied on a cluster).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
    pub object: Object,
}

/// What a migration creates or changes; its SQL has the shape named here.
#[derive(Debug, Clone, Copy)]
pub enum Object {
    /// `CREATE TABLE IF NOT EXISTS <name> (…) ENGINE = …MergeTree(…) …`. On a cluster a row
    /// lives on the shard `shard_by` picks: every copy of one identity must pick the same.
    Table {
        name: &'static str,
        shard_by: &'static str,
    },
    /// `ALTER TABLE <table> ADD COLUMN <column> …`. On a cluster the column is added to every
    /// `<table>_local`, and the `Distributed` table (sharded by `shard_by`, as the table was
    /// made) is made again over them: 18.16 refuses an `ALTER … ON CLUSTER` of a table that is
    /// not replicated on a cluster whose shards are (`internal_replication`).
    AddColumn {
        table: &'static str,
        column: &'static str,
        shard_by: &'static str,
    },
    /// `CREATE MATERIALIZED VIEW IF NOT EXISTS <name> TO <target> AS SELECT … FROM <source>`:
    /// on a cluster, from each server's own `<source>_local` into its own `<target>_local`.
    MaterializedView {
        name: &'static str,
        target: &'static str,
        source: &'static str,
    },
    /// `CREATE VIEW IF NOT EXISTS <name> AS SELECT …` reading `reads` (`FROM <table>`); its
    /// `join` (a subquery over a table) is made `GLOBAL` on a cluster.
    View {
        name: &'static str,
        reads: &'static [&'static str],
        join: Option<&'static str>,
    },
}

/// The sharding key of the tables keyed by player: a round's every copy and version, its
/// identity row and its rollup rows live on one shard, where `FINAL` collapses them.
const BY_PLAYER: &str = "cityHash64(user_id)";

/// All migrations, in the order they must be applied.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "game_rounds",
        sql: include_str!("../../../../schemas/clickhouse/0001_game_rounds.sql"),
        object: Object::Table {
            name: "game_rounds",
            shard_by: BY_PLAYER,
        },
    },
    Migration {
        version: 2,
        name: "quarantine",
        sql: include_str!("../../../../schemas/clickhouse/0002_quarantine.sql"),
        object: Object::Table {
            name: "quarantine",
            shard_by: "cityHash64(source_topic, source_partition, source_offset)",
        },
    },
    Migration {
        version: 3,
        name: "usage_ledger",
        sql: include_str!("../../../../schemas/clickhouse/0003_usage_ledger.sql"),
        object: Object::Table {
            name: "usage_ledger",
            shard_by: "cityHash64(key_id)",
        },
    },
    Migration {
        version: 4,
        name: "upload_id",
        sql: include_str!("../../../../schemas/clickhouse/0004_upload_id.sql"),
        object: Object::AddColumn {
            table: "game_rounds",
            column: "upload_id",
            shard_by: BY_PLAYER,
        },
    },
    Migration {
        version: 5,
        name: "upload_rejects",
        sql: include_str!("../../../../schemas/clickhouse/0005_upload_rejects.sql"),
        object: Object::Table {
            name: "upload_rejects",
            shard_by: "cityHash64(upload_id)",
        },
    },
    Migration {
        version: 6,
        name: "round_versions",
        sql: include_str!("../../../../schemas/clickhouse/0006_round_versions.sql"),
        object: Object::Table {
            name: "round_versions",
            shard_by: BY_PLAYER,
        },
    },
    Migration {
        version: 7,
        name: "round_identity",
        sql: include_str!("../../../../schemas/clickhouse/0007_round_identity.sql"),
        object: Object::Table {
            name: "round_identity",
            shard_by: BY_PLAYER,
        },
    },
    Migration {
        version: 8,
        name: "round_identity_view",
        sql: include_str!("../../../../schemas/clickhouse/0008_round_identity_view.sql"),
        object: Object::MaterializedView {
            name: "round_identity_view",
            target: "round_identity",
            source: "round_versions",
        },
    },
    Migration {
        version: 9,
        name: "rollup_hourly",
        sql: include_str!("../../../../schemas/clickhouse/0009_rollup_hourly.sql"),
        object: Object::Table {
            name: "rollup_hourly",
            shard_by: BY_PLAYER,
        },
    },
    Migration {
        version: 10,
        name: "rollup_versions",
        sql: include_str!("../../../../schemas/clickhouse/0010_rollup_versions.sql"),
        object: Object::Table {
            name: "rollup_versions",
            shard_by: "cityHash64(bucket)",
        },
    },
    // 11 is [`GAME_ROUNDS_VIEW`], created after these.
    Migration {
        version: 12,
        name: "rollup_daily",
        sql: include_str!("../../../../schemas/clickhouse/0012_rollup_daily.sql"),
        object: Object::Table {
            name: "rollup_daily",
            shard_by: BY_PLAYER,
        },
    },
];

/// The view `game_rounds` became (every round once, at its current version), created after
/// [`MIGRATIONS`] once the table of that name is retired (see [`apply`]).
pub const GAME_ROUNDS_VIEW: Migration = Migration {
    version: 11,
    name: "game_rounds_view",
    sql: include_str!("../../../../schemas/clickhouse/0011_game_rounds_view.sql"),
    object: Object::View {
        name: "game_rounds",
        reads: &["round_versions", "round_identity"],
        join: Some("ANY INNER JOIN"),
    },
};

/// The migrations of the table `game_rounds` was before it became a view: applied only to a
/// database that still has that table, to bring it to the shape the copy expects.
const OF_THE_RETIRED_TABLE: [u32; 2] = [1, 4];

/// The migrations a cluster applies, in order: all but those of the table `game_rounds` was
/// (a cluster never had it), the view last.
pub fn of_a_cluster() -> impl Iterator<Item = &'static Migration> {
    MIGRATIONS
        .iter()
        .chain([&GAME_ROUNDS_VIEW])
        .filter(|m| !OF_THE_RETIRED_TABLE.contains(&m.version))
}

/// Copies the retired table's rows into `round_versions` (see the file).
#[cfg(feature = "clickhouse")]
const COPY_RETIRED_ROWS: &str =
    include_str!("../../../../schemas/clickhouse/upgrade_copy_game_rounds.sql");

/// Connects to ClickHouse and names the database every unqualified table lives in.
#[cfg(feature = "clickhouse")]
pub fn client(url: &str, database: &str, user: &str, password: &str) -> clickhouse::Client {
    client_over(clickhouse::Client::default(), url, database, user, password)
}

/// [`client`] built on `base` (its HTTP connections).
#[cfg(feature = "clickhouse")]
pub fn client_over(
    base: clickhouse::Client,
    url: &str,
    database: &str,
    user: &str,
    password: &str,
) -> clickhouse::Client {
    base.with_url(url)
        .with_database(database)
        .with_user(user)
        .with_password(password)
        // Row-type validation needs `RowBinaryWithNamesAndTypes`, which ClickHouse 18.16 lacks.
        .with_validation(false)
}

/// A client that keeps no connection idle: each statement opens its own (loopback TCP, well
/// under a millisecond). The pooled default reuses connections idle up to 2 s, and one the
/// server (or a proxy) closed meanwhile fails the next statement sent on it; the statement
/// repeated here cannot meet another.
#[cfg(feature = "clickhouse")]
pub fn unpooled() -> clickhouse::Client {
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    let http = Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new());
    clickhouse::Client::with_http_client(http)
}

/// Why the migrations could not be applied.
#[cfg(feature = "clickhouse")]
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("`{0}` is not a valid database name (letters, digits and `_` only)")]
    BadDatabaseName(String),
    #[error(transparent)]
    BadCluster(#[from] cluster::BadClusterName),
    #[error(
        "table `{database}.{table}` is {engine}, which the {layout:?} layout does not use: \
         the database was made for the other layout (set the service's CLICKHOUSE_CLUSTER \
         setting to the cluster's name, or unset it, as the database was made; docs/SCALING.md)"
    )]
    MixedLayout {
        database: String,
        table: String,
        engine: String,
        layout: Layout,
    },
    #[error(
        "the ClickHouse server belongs to a cluster (its `shard` macro is `{0}`): set the \
         service's CLICKHOUSE_CLUSTER setting to the cluster's name (docs/SCALING.md)"
    )]
    ServerInCluster(String),
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: u32,
        name: &'static str,
        source: clickhouse::error::Error,
    },
}

/// ClickHouse's error code for "table already exists".
#[cfg(feature = "clickhouse")]
const TABLE_ALREADY_EXISTS: u32 = 57;

/// ClickHouse's error code for "table does not exist".
#[cfg(feature = "clickhouse")]
const UNKNOWN_TABLE: u32 = 60;

/// ClickHouse's error code for, among others, "cannot add column: it already exists".
#[cfg(feature = "clickhouse")]
const ILLEGAL_COLUMN: u32 = 44;

/// Whether `error` means the migration's goal is already reached.
#[cfg(feature = "clickhouse")]
fn already_applied(migration: &Migration, error: &clickhouse::error::Error) -> bool {
    match server_error_code(&error.to_string()) {
        Some(TABLE_ALREADY_EXISTS) => true,
        Some(ILLEGAL_COLUMN) => is_add_column(migration.sql),
        // Another instance retired the table between our check and this step.
        Some(UNKNOWN_TABLE) => OF_THE_RETIRED_TABLE.contains(&migration.version),
        _ => false,
    }
}

/// An `ALTER TABLE … ADD COLUMN` migration (ClickHouse 18.16 lacks `ADD COLUMN IF NOT EXISTS`).
#[cfg(any(feature = "clickhouse", test))]
fn is_add_column(sql: &str) -> bool {
    let statement: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ");
    let statement = statement.to_ascii_uppercase();
    statement.trim_start().starts_with("ALTER TABLE") && statement.contains(" ADD COLUMN ")
}

/// The numeric code in a ClickHouse error text (`Code: 57, e.displayText() = …`).
#[cfg(any(feature = "clickhouse", test))]
fn server_error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Creates the database if needed and applies every migration, in order, on one server.
/// Idempotent. See [`apply_on`].
#[cfg(feature = "clickhouse")]
pub async fn apply(client: &clickhouse::Client, database: &str) -> Result<(), MigrationError> {
    apply_on(client, database, &Layout::Single).await
}

/// Creates the database if needed and applies every migration, in order, in `layout`.
/// Idempotent. Refuses a database laid out for the other layout, and (single) a server that
/// belongs to a cluster (it has a `shard` macro).
#[cfg(feature = "clickhouse")]
pub async fn apply_on(
    client: &clickhouse::Client,
    database: &str,
    layout: &Layout,
) -> Result<(), MigrationError> {
    if !cluster::is_identifier(database) {
        return Err(MigrationError::BadDatabaseName(database.to_owned()));
    }
    // The database must exist before a client that names it can run anything.
    let system = client.clone().with_database("default");
    let create_database = match layout.cluster() {
        None => Some(format!("CREATE DATABASE IF NOT EXISTS {database}")),
        // An `ON CLUSTER` statement waits for every server: not when this one has it already.
        Some(cluster) => {
            let exists = "SELECT count() FROM system.databases WHERE name = ?";
            let query = system.query(exists).bind(database);
            let exists: u64 = query.fetch_one().await.map_err(failed(0, "database"))?;
            (exists == 0).then(|| cluster::create_database(database, cluster))
        }
    };
    if let Some(create_database) = create_database {
        let created = system.query(&create_database).execute().await;
        created.map_err(failed(0, "database"))?;
    }
    check_layout(client, database, layout).await?;
    match layout.cluster() {
        None => apply_single(client).await,
        Some(cluster) => apply_cluster(client, database, cluster).await,
    }
}

/// `MigrationError::Failed` of one migration.
#[cfg(feature = "clickhouse")]
fn failed(
    version: u32,
    name: &'static str,
) -> impl FnOnce(clickhouse::error::Error) -> MigrationError {
    move |source| MigrationError::Failed {
        version,
        name,
        source,
    }
}

/// The tables the migrations create, with their engine where one exists.
#[cfg(feature = "clickhouse")]
async fn engines(client: &clickhouse::Client) -> Result<Vec<(String, String)>, MigrationError> {
    let tables: Vec<&str> = MIGRATIONS
        .iter()
        .chain([&GAME_ROUNDS_VIEW])
        .filter_map(|m| match m.object {
            Object::Table { name, .. } | Object::View { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    client
        .query("SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND has(?, name)")
        .bind(tables)
        .fetch_all()
        .await
        .map_err(failed(0, "layout"))
}

/// Refuses what would mix the layouts: tables of the other layout in the database, or (one
/// server) a server with a `shard` macro, which belongs to a cluster.
#[cfg(feature = "clickhouse")]
async fn check_layout(
    client: &clickhouse::Client,
    database: &str,
    layout: &Layout,
) -> Result<(), MigrationError> {
    let mixed = |table: String, engine: String| MigrationError::MixedLayout {
        database: database.to_owned(),
        table,
        engine,
        layout: layout.clone(),
    };
    for (table, engine) in engines(client).await? {
        let fits = match (layout, table.as_str()) {
            (Layout::Single, _) => engine != "Distributed",
            (Layout::Cluster(_), "game_rounds") => engine == "View",
            (Layout::Cluster(_), _) => engine == "Distributed",
        };
        if !fits {
            return Err(mixed(table, engine));
        }
    }
    if *layout == Layout::Single {
        let shard: Option<String> = client
            .query("SELECT substitution FROM system.macros WHERE macro = 'shard'")
            .fetch_optional()
            .await
            .map_err(failed(0, "layout"))?;
        if let Some(shard) = shard {
            return Err(MigrationError::ServerInCluster(shard));
        }
    }
    Ok(())
}

/// The single-server migrations, with the upgrade of a database whose `game_rounds` is still
/// the table it was before `round_versions`.
#[cfg(feature = "clickhouse")]
async fn apply_single(client: &clickhouse::Client) -> Result<(), MigrationError> {
    let engine = engine_of(client, "game_rounds")
        .await
        .map_err(failed(1, "game_rounds"))?;
    let old_table = engine
        .as_deref()
        .is_some_and(|engine| engine.ends_with("MergeTree"));
    for migration in MIGRATIONS {
        if !old_table && OF_THE_RETIRED_TABLE.contains(&migration.version) {
            continue;
        }
        run(client, migration).await?;
    }
    // The view is created only after the old table is retired, so a view means both are done
    // (and a CREATE, even `IF NOT EXISTS`, would analyse the view's statement).
    if engine.as_deref() == Some("View") {
        return Ok(());
    }
    let view = failed(GAME_ROUNDS_VIEW.version, GAME_ROUNDS_VIEW.name);
    retire_game_rounds_table(client, old_table)
        .await
        .map_err(view)?;
    run(client, &GAME_ROUNDS_VIEW).await
}

/// The migrations `ON CLUSTER`, each only if what it makes is not there yet on this server
/// (so that a service starts while a server is down, once the tables exist: an `ON CLUSTER`
/// statement waits for every server). A cluster never had the table `game_rounds` was.
#[cfg(feature = "clickhouse")]
async fn apply_cluster(
    client: &clickhouse::Client,
    database: &str,
    cluster: &str,
) -> Result<(), MigrationError> {
    for migration in of_a_cluster() {
        let done = applied_here(client, &migration.object)
            .await
            .map_err(failed(migration.version, migration.name))?;
        if done {
            continue;
        }
        for statement in cluster::statements(migration, database, cluster) {
            run_as(client, migration, &statement).await?;
        }
    }
    Ok(())
}

/// Makes `object` in `layout` from `sql`, its idempotent statement on one server (of the shape
/// `object` names): DDL generated at start rather than numbered (a dataset's tables,
/// `sluice_rollup::datasets`). One server runs `sql`; a cluster runs its sharded form `ON
/// CLUSTER` ([`cluster::statements_of`]), as the migrations are applied: only when what it
/// makes is missing on the server `client` talks to (an `ON CLUSTER` statement waits for every
/// server), "already exists" counting as made.
#[cfg(feature = "clickhouse")]
pub async fn make(
    client: &clickhouse::Client,
    database: &str,
    layout: &Layout,
    object: &Object,
    sql: &str,
) -> Result<(), clickhouse::error::Error> {
    let Some(cluster) = layout.cluster() else {
        return client.query(sql).execute().await;
    };
    if applied_here(client, object).await? {
        return Ok(());
    }
    for statement in cluster::statements_of(object, sql, database, cluster) {
        match client.query(&statement).execute().await {
            Err(error) if server_error_code(&error.to_string()) == Some(TABLE_ALREADY_EXISTS) => {}
            result => result?,
        }
    }
    Ok(())
}

/// Whether what `object` makes exists on the server `client` talks to, in its database.
#[cfg(feature = "clickhouse")]
async fn applied_here(
    client: &clickhouse::Client,
    object: &Object,
) -> Result<bool, clickhouse::error::Error> {
    Ok(match *object {
        Object::Table { name, .. } => {
            engine_of(client, name).await?.is_some()
                && engine_of(client, &format!("{name}_local")).await?.is_some()
        }
        Object::MaterializedView { name, .. } | Object::View { name, .. } => {
            engine_of(client, name).await?.is_some()
        }
        Object::AddColumn { table, column, .. } => {
            let count: u64 = client
                .query(
                    "SELECT count() FROM system.columns WHERE database = currentDatabase() \
                     AND has([?, ?], table) AND name = ?",
                )
                .bind(table)
                .bind(format!("{table}_local"))
                .bind(column)
                .fetch_one()
                .await?;
            count == 2
        }
    })
}

/// Applies one migration; "already applied" counts as done.
#[cfg(feature = "clickhouse")]
async fn run(client: &clickhouse::Client, migration: &Migration) -> Result<(), MigrationError> {
    run_as(client, migration, migration.sql).await
}

/// Applies `sql`, a form of `migration`; "already applied" counts as done.
#[cfg(feature = "clickhouse")]
async fn run_as(
    client: &clickhouse::Client,
    migration: &Migration,
    sql: &str,
) -> Result<(), MigrationError> {
    match client.query(sql).execute().await {
        Ok(()) => {}
        // Applied before, or another instance created it between our check and our create
        // (`IF NOT EXISTS` is not atomic on every server version): the goal is reached.
        Err(error) if already_applied(migration, &error) => {}
        Err(source) => {
            return Err(MigrationError::Failed {
                version: migration.version,
                name: migration.name,
                source,
            })
        }
    }
    tracing::debug!(
        version = migration.version,
        name = migration.name,
        "Migration applied."
    );
    Ok(())
}

/// The engine of table `name` in the client's database, if it exists.
#[cfg(feature = "clickhouse")]
async fn engine_of(
    client: &clickhouse::Client,
    name: &str,
) -> Result<Option<String>, clickhouse::error::Error> {
    client
        .query("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(name)
        .fetch_optional()
        .await
}

/// `result`, where "the table is gone" or "the new name is taken" — another instance did the
/// same step first — counts as done.
#[cfg(feature = "clickhouse")]
fn done_by_anyone(
    result: Result<(), clickhouse::error::Error>,
) -> Result<(), clickhouse::error::Error> {
    match result {
        Err(error)
            if matches!(
                server_error_code(&error.to_string()),
                Some(UNKNOWN_TABLE | TABLE_ALREADY_EXISTS)
            ) =>
        {
            Ok(())
        }
        result => result,
    }
}

/// Upgrades a database of a release before `round_versions`: its `game_rounds` table is renamed
/// `game_rounds_legacy`, its rows are copied into `round_versions`, and it is renamed
/// `game_rounds_before_versions` (kept for the operator to drop); then [`GAME_ROUNDS_VIEW`]
/// takes the name. `old_table`: `game_rounds` is still that table. Each step is safe to repeat
/// and to race: a copy repeated writes the same keys and versions, which collapse.
#[cfg(feature = "clickhouse")]
async fn retire_game_rounds_table(
    client: &clickhouse::Client,
    old_table: bool,
) -> Result<(), clickhouse::error::Error> {
    if old_table {
        let rename = "RENAME TABLE game_rounds TO game_rounds_legacy";
        done_by_anyone(client.query(rename).execute().await)?;
    }
    if engine_of(client, "game_rounds_legacy").await?.is_some() {
        tracing::info!("Copying the rows of the retired game_rounds table into round_versions.");
        done_by_anyone(client.query(COPY_RETIRED_ROWS).execute().await)?;
        let rename = "RENAME TABLE game_rounds_legacy TO game_rounds_before_versions";
        done_by_anyone(client.query(rename).execute().await)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_codes_are_read_from_the_error_text() {
        let text =
            "bad response: Code: 57, e.displayText() = DB::Exception: Table x already exists";
        assert_eq!(server_error_code(text), Some(57));
        assert_eq!(server_error_code("Code: 81. DB::Exception"), Some(81));
        assert_eq!(server_error_code("connection refused"), None);
    }

    #[test]
    fn only_add_column_statements_count_as_add_column() {
        assert!(is_add_column(
            "-- a comment\nALTER TABLE t ADD COLUMN c String DEFAULT ''"
        ));
        assert!(!is_add_column(
            "-- ALTER TABLE t ADD COLUMN c\nCREATE TABLE IF NOT EXISTS t (c String) ENGINE = Log"
        ));
        assert!(!is_add_column("ALTER TABLE t DROP COLUMN c"));
    }

    #[test]
    fn migrations_are_numbered_in_order_and_idempotent() {
        let mut numbers: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "in order");
        numbers.push(GAME_ROUNDS_VIEW.version);
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
        for migration in MIGRATIONS {
            assert!(
                migration.sql.contains("IF NOT EXISTS") || is_add_column(migration.sql),
                "{}",
                migration.name
            );
            assert!(
                !migration.sql.trim_end().ends_with(';'),
                "{}",
                migration.name
            );
        }
    }
}
