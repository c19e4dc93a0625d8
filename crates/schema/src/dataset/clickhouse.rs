//! A dataset's ClickHouse table of record versions, generated from its [`Spec`]: every column
//! of the spec, then `version` (a record's versions, ordered) and `inserted_at`; versions of one
//! record collapse only into themselves (the sorting key ends with `version`), the time
//! column's hour leads the sorting key and its month partitions the table.

use super::{Column, Kind, Spec};

/// `CREATE TABLE IF NOT EXISTS <versions table> (…)` for `spec`.
pub fn versions_table(spec: &Spec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| format!("    {} {}", c.name, column_type(c)))
        .chain([
            "    version UInt64".to_owned(),
            "    inserted_at DateTime('UTC') DEFAULT now()".to_owned(),
        ])
        .collect();
    let time = &spec.time;
    format!(
        "CREATE TABLE IF NOT EXISTS {table}\n(\n{columns}\n)\nENGINE = ReplacingMergeTree()\n\
         PARTITION BY toYYYYMM({time})\nORDER BY (toStartOfHour({time}), {identity}, version)",
        table = spec.versions_table(),
        columns = columns.join(",\n"),
        identity = spec.identity.join(", "),
    )
}

/// The ClickHouse type of `column`'s values.
pub fn column_type(column: &Column) -> String {
    let kind = match (column.kind, column.scale) {
        (Kind::String, _) => "String".to_owned(),
        (Kind::Int64, _) => "Int64".to_owned(),
        (Kind::Uint64, _) => "UInt64".to_owned(),
        (Kind::Float32, _) => "Float32".to_owned(),
        (Kind::Float64, _) => "Float64".to_owned(),
        (Kind::Decimal, scale) => format!("Decimal(18, {})", scale.unwrap_or(0)),
        (Kind::Timestamp, _) => "DateTime('UTC')".to_owned(),
    };
    if column.nullable {
        format!("Nullable({kind})")
    } else {
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::super::GAME_ROUNDS_TOML;
    use super::*;

    /// `sql` without comment lines, its white space folded.
    fn statement(sql: &str) -> String {
        let lines = sql.lines().filter(|l| !l.trim_start().starts_with("--"));
        lines
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_game_rounds_spec_generates_the_round_versions_table() {
        let spec = Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML).unwrap();
        let migration = crate::migrations::MIGRATIONS
            .iter()
            .find(|m| m.name == "round_versions")
            .unwrap();
        assert_eq!(statement(&versions_table(&spec)), statement(migration.sql));
    }
}
