//! ClickHouse DDL as numbered migration files (`schemas/clickhouse/NNNN_name.sql`). Every file
//! is idempotent (`IF NOT EXISTS`, or an `ADD COLUMN` whose "already exists" error counts as
//! applied), so applying the whole list at every start-up is safe, also from several consumers
//! at once.

/// One migration: its number, name and SQL (a single statement, no trailing semicolon).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations, in the order they must be applied.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "game_rounds",
        sql: include_str!("../../../schemas/clickhouse/0001_game_rounds.sql"),
    },
    Migration {
        version: 2,
        name: "quarantine",
        sql: include_str!("../../../schemas/clickhouse/0002_quarantine.sql"),
    },
    Migration {
        version: 3,
        name: "usage_ledger",
        sql: include_str!("../../../schemas/clickhouse/0003_usage_ledger.sql"),
    },
    Migration {
        version: 4,
        name: "upload_id",
        sql: include_str!("../../../schemas/clickhouse/0004_upload_id.sql"),
    },
    Migration {
        version: 5,
        name: "upload_rejects",
        sql: include_str!("../../../schemas/clickhouse/0005_upload_rejects.sql"),
    },
    Migration {
        version: 6,
        name: "round_versions",
        sql: include_str!("../../../schemas/clickhouse/0006_round_versions.sql"),
    },
    Migration {
        version: 7,
        name: "round_identity",
        sql: include_str!("../../../schemas/clickhouse/0007_round_identity.sql"),
    },
    Migration {
        version: 8,
        name: "round_identity_view",
        sql: include_str!("../../../schemas/clickhouse/0008_round_identity_view.sql"),
    },
    Migration {
        version: 9,
        name: "rollup_hourly",
        sql: include_str!("../../../schemas/clickhouse/0009_rollup_hourly.sql"),
    },
    Migration {
        version: 10,
        name: "rollup_versions",
        sql: include_str!("../../../schemas/clickhouse/0010_rollup_versions.sql"),
    },
    // 11 is [`GAME_ROUNDS_VIEW`], created after these.
    Migration {
        version: 12,
        name: "rollup_daily",
        sql: include_str!("../../../schemas/clickhouse/0012_rollup_daily.sql"),
    },
];

/// The view `game_rounds` became (every round once, at its current version), created after
/// [`MIGRATIONS`] once the table of that name is retired (see [`apply`]).
pub const GAME_ROUNDS_VIEW: Migration = Migration {
    version: 11,
    name: "game_rounds_view",
    sql: include_str!("../../../schemas/clickhouse/0011_game_rounds_view.sql"),
};

/// The migrations of the table `game_rounds` was before it became a view: applied only to a
/// database that still has that table, to bring it to the shape the copy expects.
const OF_THE_RETIRED_TABLE: [u32; 2] = [1, 4];

/// Copies the retired table's rows into `round_versions` (see the file).
#[cfg(feature = "clickhouse")]
const COPY_RETIRED_ROWS: &str =
    include_str!("../../../schemas/clickhouse/upgrade_copy_game_rounds.sql");

/// Connects to ClickHouse and names the database every unqualified table lives in.
#[cfg(feature = "clickhouse")]
pub fn client(url: &str, database: &str, user: &str, password: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_user(user)
        .with_password(password)
        // Row-type validation needs `RowBinaryWithNamesAndTypes`, which ClickHouse 18.16 lacks.
        .with_validation(false)
}

/// Why the migrations could not be applied.
#[cfg(feature = "clickhouse")]
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("`{0}` is not a valid database name (letters, digits and `_` only)")]
    BadDatabaseName(String),
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

/// Creates the database if needed and applies every migration, in order. Idempotent.
#[cfg(feature = "clickhouse")]
pub async fn apply(client: &clickhouse::Client, database: &str) -> Result<(), MigrationError> {
    if database.is_empty()
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(MigrationError::BadDatabaseName(database.to_owned()));
    }
    let create_database = Migration {
        version: 0,
        name: "database",
        sql: "CREATE DATABASE IF NOT EXISTS ",
    };
    // The database must exist before a client that names it can run anything.
    client
        .clone()
        .with_database("default")
        .query(&format!("{}{database}", create_database.sql))
        .execute()
        .await
        .map_err(|source| MigrationError::Failed {
            version: create_database.version,
            name: create_database.name,
            source,
        })?;
    let failed = |version, name| {
        move |source| MigrationError::Failed {
            version,
            name,
            source,
        }
    };
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

/// Applies one migration; "already applied" counts as done.
#[cfg(feature = "clickhouse")]
async fn run(client: &clickhouse::Client, migration: &Migration) -> Result<(), MigrationError> {
    match client.query(migration.sql).execute().await {
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
