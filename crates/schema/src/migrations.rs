//! ClickHouse DDL as numbered migration files (`schemas/clickhouse/NNNN_name.sql`). Every file
//! is idempotent (`IF NOT EXISTS`), so applying the whole list at every start-up is safe, also
//! from several consumers at once.

/// One migration: its number, name and SQL (a single statement, no trailing semicolon).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations, in the order they must be applied.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "game_rounds",
    sql: include_str!("../../../schemas/clickhouse/0001_game_rounds.sql"),
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_idempotent() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
            assert!(
                migration.sql.contains("IF NOT EXISTS"),
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
