//! A dataset's ClickHouse table of record versions, generated from its [`Spec`]: every column
//! of the spec, then `version` (a record's versions, ordered) and `inserted_at`; versions of one
//! record collapse only into themselves (the sorting key ends with `version`), the time
//! column's hour leads the sorting key and its month partitions the table.
//!
//! A table made for an earlier version of the spec ([`super::history`]) is brought to it at the
//! consumer's start: [`missing_columns`] are the columns appended since, added by
//! [`add_column`]; a column of another type, or one the spec lacks, is refused.

use super::rowbinary::{stored_default, KeyValue};
use super::{Column, Kind, Spec};

/// The columns of every versions table after the spec's: name, type, and what follows it.
const BOOKKEEPING: [(&str, &str, &str); 2] = [
    ("version", "UInt64", ""),
    ("inserted_at", "DateTime('UTC')", " DEFAULT now()"),
];

/// `CREATE TABLE IF NOT EXISTS <versions table> (…)` for `spec`.
pub fn versions_table(spec: &Spec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| format!("    {} {}", c.name, column_type(c)))
        .chain((BOOKKEEPING.iter()).map(|(name, kind, rest)| format!("    {name} {kind}{rest}")))
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

/// Why a versions table cannot take `spec`'s rows: the table, the column, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ClickHouse table `{table}`: {problem}; {fix}")]
pub struct TableMismatch {
    pub table: String,
    pub problem: String,
    pub fix: String,
}

/// The columns of `spec` its versions table lacks, given the table's `columns` (name and type,
/// as `system.columns` gives them): each nullable or with a default, so rows already stored
/// read as null or as it. Refused: a column of another type than the spec's, one the spec
/// lacks, or one the spec cannot fill for the stored rows.
pub fn missing_columns<'s>(
    spec: &'s Spec,
    columns: &[(String, String)],
) -> Result<Vec<&'s Column>, TableMismatch> {
    let mismatch = |problem: String| TableMismatch {
        table: spec.versions_table(),
        problem,
        fix: super::history::new_dataset_fix(spec),
    };
    let expected: Vec<(&str, String)> = (spec.columns.iter())
        .map(|c| (c.name.as_str(), column_type(c)))
        .chain(
            BOOKKEEPING
                .iter()
                .map(|(name, kind, _)| (*name, (*kind).to_owned())),
        )
        .collect();
    for (name, table_type) in columns {
        match expected.iter().find(|(n, _)| *n == name.as_str()) {
            None => {
                return Err(mismatch(format!(
                    "`{name}` ({table_type}) is not a column of the spec"
                )))
            }
            Some((_, spec_type)) if !same_type(spec_type, table_type) => {
                let problem = format!("`{name}` is {table_type} there, {spec_type} in the spec");
                return Err(mismatch(problem));
            }
            Some(_) => {}
        }
    }
    let missing: Vec<&Column> = (spec.columns.iter())
        .filter(|c| !columns.iter().any(|(name, _)| *name == c.name))
        .collect();
    match missing.iter().find(|c| !c.nullable && c.default.is_none()) {
        Some(c) => Err(mismatch(format!(
            "lacks `{}`, which is neither nullable nor with a default in the spec",
            c.name
        ))),
        None => Ok(missing),
    }
}

/// Whether two ClickHouse type names are the same type (`Decimal(18, 2)` is `Decimal(18,2)`).
fn same_type(a: &str, b: &str) -> bool {
    let squeezed = |name: &str| name.split_whitespace().collect::<String>();
    squeezed(a) == squeezed(b)
}

/// `ALTER TABLE <versions table> ADD COLUMN …` of `column` (one [`missing_columns`] gave),
/// and the value bound to its `?`: its default (a nullable column has none, and reads null).
pub fn add_column(spec: &Spec, column: &Column) -> (String, Option<KeyValue>) {
    let default = stored_default(column);
    let clause = if default.is_some() { " DEFAULT ?" } else { "" };
    let statement = format!(
        "ALTER TABLE {} ADD COLUMN {} {}{clause}",
        spec.versions_table(),
        column.name,
        column_type(column)
    );
    (statement, default)
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

    const RECORDS: &str = include_str!("../../../../datasets/records.toml");

    /// `records` with a nullable `note` and a `rate` defaulting to 1.5 appended.
    fn evolved() -> Spec {
        let at = RECORDS.find("[[endpoints]]").unwrap();
        let appended = "[[columns]]\nname = \"note\"\ntype = \"string\"\nnullable = true\n\n\
                        [[columns]]\nname = \"rate\"\ntype = \"decimal\"\nscale = 2\ndefault = 1.5\n\n";
        let text = format!("{}{appended}{}", &RECORDS[..at], &RECORDS[at..]);
        Spec::parse("records.toml", &text).unwrap()
    }

    /// The columns of the table `spec` makes, as `system.columns` lists them.
    fn table_of(spec: &Spec) -> Vec<(String, String)> {
        let spec_columns = (spec.columns.iter()).map(|c| (c.name.clone(), column_type(c)));
        let bookkeeping =
            (BOOKKEEPING.iter()).map(|(n, kind, _)| (n.to_string(), kind.to_string()));
        // Without the space after commas: types are compared without white space.
        let squeezed = |(name, kind): (String, String)| (name, kind.replace(", ", ","));
        spec_columns.chain(bookkeeping).map(squeezed).collect()
    }

    #[test]
    fn a_table_of_an_earlier_version_lacks_the_appended_columns_which_are_added() {
        let earlier = Spec::parse("records.toml", RECORDS).unwrap();
        let spec = evolved();
        let missing: Vec<&str> = missing_columns(&spec, &table_of(&earlier))
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(missing, ["note", "rate"]);
        assert!(missing_columns(&spec, &table_of(&spec)).unwrap().is_empty());
        let statements: Vec<_> = ["note", "rate"]
            .iter()
            .map(|name| add_column(&spec, spec.column(name).unwrap()))
            .collect();
        assert_eq!(
            statements,
            [
                (
                    "ALTER TABLE records_versions ADD COLUMN note Nullable(String)".to_owned(),
                    None
                ),
                (
                    "ALTER TABLE records_versions ADD COLUMN rate Decimal(18, 2) DEFAULT ?"
                        .to_owned(),
                    Some(KeyValue::Decimal(150))
                ),
            ]
        );
    }

    #[test]
    fn a_table_whose_columns_differ_otherwise_is_refused_naming_the_column() {
        let spec = evolved();
        let mut retyped = table_of(&spec);
        retyped[4].1 = "Float64".into();
        let mut extra = table_of(&spec);
        extra.push(("score".into(), "Float32".into()));
        let earlier = Spec::parse("records.toml", RECORDS).unwrap();
        let mut lacking = table_of(&earlier);
        lacking.retain(|(name, _)| name != "category");
        let cases = [
            (
                retyped,
                "`amount` is Float64 there, Decimal(18, 2) in the spec",
            ),
            (extra, "`score` (Float32) is not a column of the spec"),
            (
                lacking,
                "lacks `category`, which is neither nullable nor with a default in the spec",
            ),
        ];
        for (columns, problem) in cases {
            let error = missing_columns(&spec, &columns).unwrap_err();
            assert_eq!(error.table, "records_versions");
            assert_eq!(error.problem, problem);
            assert!(
                error
                    .to_string()
                    .contains("; declare a new dataset `records_v2`"),
                "{error}"
            );
        }
    }
}
