//! A rollup defined as data: the raw table and how its rounds are identified and versioned, the
//! columns it groups by, the time bucket and the measures. Every statement the processing layer
//! runs against a rollup is generated here from its [`Rollup`], so a dataset that declares its
//! own rollup gets the same exact machinery (docs/PROCESSING.md).
//!
//! The SQL is text because ClickHouse binds only scalar values; what is spliced in is either
//! part of a `'static` definition or a number (hours, versions), never user input.

/// The raw rows a rollup is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Every version of every row, ordered by bucket first (`round_versions`).
    pub versions_table: &'static str,
    /// Key → version of every version, ordered by key (`round_identity`).
    pub identity_table: &'static str,
    /// The columns that identify a row across its versions.
    pub key: &'static [&'static str],
    /// The `DateTime` column buckets are taken from.
    pub time_column: &'static str,
    /// The column whose greatest value marks a key's current version.
    pub version_column: &'static str,
}

/// What a rollup sums for each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `sum(column)` into a column of the same name (NULLs skipped; all NULL → NULL).
    Sum(&'static str),
    /// `count()` of the group's current rows, into the named column.
    Count(&'static str),
}

impl Measure {
    /// The column the measure is stored in.
    pub fn name(&self) -> &'static str {
        match self {
            Measure::Sum(column) | Measure::Count(column) => column,
        }
    }

    fn aggregate(&self) -> String {
        match self {
            Measure::Sum(column) => format!("sum({column})"),
            Measure::Count(_) => "count()".to_owned(),
        }
    }
}

/// One rollup: per hour (the bucket column holds the hour's first second) and group.
#[derive(Debug, Clone, Copy)]
pub struct Rollup {
    /// Its name in `rollup_versions`.
    pub name: &'static str,
    pub source: Source,
    /// The rollup's rows: `bucket`, the group-by columns, the measures, `version`.
    pub table: &'static str,
    /// Which version of each bucket is published (`rollup_versions`).
    pub versions_table: &'static str,
    pub group_by: &'static [&'static str],
    pub measures: &'static [Measure],
}

/// Game rounds per hour, player and game (`schemas/clickhouse/0009_rollup_hourly.sql`).
pub const GAME_ROUNDS_HOURLY: Rollup = Rollup {
    name: "game_rounds_hourly",
    source: Source {
        versions_table: "round_versions",
        identity_table: "round_identity",
        key: &["user_id", "game_instance_id"],
        time_column: "created_timestamp",
        version_column: "version",
    },
    table: "rollup_hourly",
    versions_table: "rollup_versions",
    group_by: &["user_id", "game_id"],
    measures: &[
        Measure::Sum("real_amount_bet"),
        Measure::Sum("bonus_amount_bet"),
        Measure::Sum("real_amount_win"),
        Measure::Sum("bonus_amount_win"),
        Measure::Count("rounds"),
    ],
};

/// `(a, b, …)`, or the one name alone.
fn tuple(names: &[&str]) -> String {
    match names {
        [one] => (*one).to_owned(),
        names => format!("({})", names.join(", ")),
    }
}

/// Runs of at least this many consecutive hours are written as one range.
const RANGE_FROM: usize = 3;

/// The condition "`expr` (an hour's first second) is one of `hours`" (not empty): runs of
/// consecutive hours as ranges, the rest as one `IN` list — so a year of dirty hours is one
/// range, far below ClickHouse's limits on a statement's size.
fn among(expr: &str, hours: &[u32]) -> String {
    let mut hours = hours.to_vec();
    hours.sort_unstable();
    hours.dedup();
    let (mut ranges, mut singles) = (Vec::new(), Vec::new());
    let mut start = 0;
    for end in 1..=hours.len() {
        let run_continues =
            end < hours.len() && u64::from(hours[end]) == u64::from(hours[end - 1]) + 3600;
        if run_continues {
            continue;
        }
        let run = &hours[start..end];
        if run.len() >= RANGE_FROM {
            ranges.push(format!(
                "{expr} BETWEEN toDateTime({}) AND toDateTime({})",
                run[0],
                run[run.len() - 1]
            ));
        } else {
            singles.extend(run.iter().map(|h| format!("toDateTime({h})")));
        }
        start = end;
    }
    if !singles.is_empty() {
        ranges.push(format!("{expr} IN ({})", singles.join(", ")));
    }
    format!("({})", ranges.join(" OR "))
}

impl Rollup {
    fn bucket(&self) -> String {
        format!("toStartOfHour({})", self.source.time_column)
    }

    /// The condition a row of the versions table meets when it is its key's current version,
    /// falls in one of `hours` (not empty) and meets `filter` (SQL over the row's own columns;
    /// `1` for none): the one definition of "current" (docs/PROCESSING.md). The filter also
    /// narrows the keys whose versions are looked up — exact, since a key's current row meets
    /// it or the key does not count.
    pub fn current_rows(&self, hours: &[u32], filter: &str) -> String {
        let Source {
            versions_table,
            identity_table,
            key,
            version_column,
            ..
        } = self.source;
        let in_hours = among(&self.bucket(), hours);
        let (key_tuple, key) = (tuple(key), key.join(", "));
        let min = hours.iter().min().copied().unwrap_or(0);
        let max = hours.iter().max().copied().unwrap_or(0);
        // The range lets ClickHouse skip partitions; the list picks the hours.
        let range = format!(
            "{time} >= toDateTime({min}) AND {time} < toDateTime({end})",
            time = self.source.time_column,
            end = u64::from(max) + 3600,
        );
        format!(
            "{range} AND {in_hours} AND ({filter}) AND ({key}, {version_column}) IN (\
             SELECT {key}, max({version_column}) FROM {identity_table} \
             WHERE {key_tuple} IN (SELECT {key} FROM {versions_table} \
             WHERE {range} AND {in_hours} AND ({filter})) GROUP BY {key})"
        )
    }

    /// The aggregate of the current rows of `hours`, grouped by bucket and the group-by
    /// columns, with `version` as a constant last column: the rows of the rollup table. (Its
    /// alias is not `version`: an alias names the expression everywhere in a ClickHouse query,
    /// and would stand for the source's column in the filter.)
    pub fn aggregate(&self, hours: &[u32], version: u64) -> String {
        let group_by = self.group_by.join(", ");
        let measures: Vec<String> = self
            .measures
            .iter()
            .map(|m| format!("{} AS {}", m.aggregate(), m.name()))
            .collect();
        format!(
            "SELECT {bucket} AS bucket, {group_by}, {measures}, toUInt64({version}) AS rollup_version \
             FROM {table} FINAL WHERE {current} GROUP BY bucket, {group_by}",
            bucket = self.bucket(),
            measures = measures.join(", "),
            table = self.source.versions_table,
            current = self.current_rows(hours, "1"),
        )
    }

    /// Recomputes `hours` (not empty) into the rollup table under `version`, in one statement
    /// (one snapshot of the raw rows).
    pub fn recompute(&self, hours: &[u32], version: u64) -> String {
        format!(
            "INSERT INTO {table} (bucket, {columns}, version) {select}",
            table = self.table,
            columns = self.columns().join(", "),
            select = self.aggregate(hours, version),
        )
    }

    /// Publishes `version` of `hours` (not empty): written after [`Rollup::recompute`] landed.
    pub fn publish(&self, hours: &[u32], version: u64) -> String {
        let rows: Vec<String> = hours
            .iter()
            .map(|hour| format!("('{}', toDateTime({hour}), {version})", self.name))
            .collect();
        format!(
            "INSERT INTO {} (rollup, bucket, version) VALUES {}",
            self.versions_table,
            rows.join(", ")
        )
    }

    /// The greatest version published for this rollup (0 when none): the floor of
    /// [`crate::dirty::DirtyHours::claim`].
    pub fn greatest_published(&self) -> String {
        format!(
            "SELECT toUInt64(max(version)) FROM {} WHERE rollup = '{}'",
            self.versions_table, self.name
        )
    }

    /// The rollup's rows of the published version of each bucket from `first` to `last`
    /// (inclusive, first seconds of hours), in the rollup table's columns.
    pub fn published(&self, first: u32, last: u32) -> String {
        format!(
            "SELECT bucket, {columns} FROM {table} \
             WHERE bucket >= toDateTime({first}) AND bucket <= toDateTime({last}) \
             AND (bucket, version) IN (SELECT bucket, max(version) FROM {versions} \
             WHERE rollup = '{name}' AND bucket >= toDateTime({first}) \
             AND bucket <= toDateTime({last}) GROUP BY bucket)",
            columns = self.columns().join(", "),
            table = self.table,
            versions = self.versions_table,
            name = self.name,
        )
    }

    /// What a reader sums for the hours from `first` to `last` (inclusive, first seconds) but
    /// `except`: each hour's rows at its greatest published version, as `at` (the hour), the
    /// group-by columns and the measures. `filter` (SQL over the group-by columns; `1` for
    /// none) narrows them. The complement of [`Rollup::current_inputs`] of `except`.
    pub fn published_rows(&self, first: u32, last: u32, except: &[u32], filter: &str) -> String {
        let hours = match except {
            [] => format!("bucket >= toDateTime({first}) AND bucket <= toDateTime({last})"),
            except => format!(
                "bucket >= toDateTime({first}) AND bucket <= toDateTime({last}) AND NOT {}",
                among("bucket", except)
            ),
        };
        format!(
            "SELECT bucket AS at, {columns} FROM {table} WHERE {hours} AND ({filter}) \
             AND (bucket, version) IN (SELECT bucket, max(version) FROM {versions} \
             WHERE rollup = '{name}' AND {hours} GROUP BY bucket)",
            columns = self.columns().join(", "),
            table = self.table,
            versions = self.versions_table,
            name = self.name,
        )
    }

    /// What a reader sums for `hours` (not empty) that are not processed yet: their current
    /// rows, as `at` (the row's time), the group-by columns and each measure's input (the
    /// column of a sum, 1 for a count), so that summing them equals the rollup's measures.
    /// `filter` (SQL over the source's columns; `1` for none) narrows them; it appears twice
    /// in the statement (see [`Rollup::current_rows`]), so its parameters are bound twice.
    pub fn current_inputs(&self, hours: &[u32], filter: &str) -> String {
        let inputs: Vec<String> = self
            .measures
            .iter()
            .map(|m| match m {
                Measure::Sum(column) => (*column).to_owned(),
                Measure::Count(name) => format!("toUInt64(1) AS {name}"),
            })
            .collect();
        format!(
            "SELECT {time} AS at, {group_by}, {inputs} FROM {table} FINAL WHERE {current}",
            time = self.source.time_column,
            group_by = self.group_by.join(", "),
            inputs = inputs.join(", "),
            table = self.source.versions_table,
            current = self.current_rows(hours, filter),
        )
    }

    /// The first and last published hour (`UInt32` seconds) and how many hours are published
    /// (0: none, and the bounds mean nothing).
    pub fn published_bounds(&self) -> String {
        format!(
            "SELECT toUInt32(min(bucket)), toUInt32(max(bucket)), count() FROM {} \
             WHERE rollup = '{}'",
            self.versions_table, self.name
        )
    }

    /// The hours from `first` to `last` (inclusive, first seconds of hours) that hold raw rows
    /// of any version, as `UInt32` seconds: what a backfill marks dirty.
    pub fn hours_with_rows(&self, first: u32, last: u32) -> String {
        format!(
            "SELECT DISTINCT toUInt32({bucket}) FROM {table} \
             WHERE {time} >= toDateTime({first}) AND {time} < toDateTime({end}) ORDER BY 1",
            bucket = self.bucket(),
            table = self.source.versions_table,
            time = self.source.time_column,
            end = u64::from(last) + 3600,
        )
    }

    /// The hours of every stored version of the rounds in `ranges` ranges of keys, as
    /// `UInt32` seconds: what a batch about to be inserted must mark dirty besides its own
    /// hours, since its rounds' earlier versions stop counting there (docs/PROCESSING.md).
    /// A range is the key's columns but the last, equal, and the last between two values,
    /// inclusive; the statement takes `?` for each of them, range by range. Read through the
    /// identity table's primary key: clustered keys (a player's rounds) cost a few granules.
    pub fn hours_of_key_ranges(&self, ranges: usize) -> String {
        let Source {
            identity_table,
            key,
            time_column,
            ..
        } = self.source;
        let (last, prefix) = key.split_last().expect("a key has columns");
        let mut range: Vec<String> = prefix.iter().map(|c| format!("{c} = ?")).collect();
        range.push(format!("{last} >= ? AND {last} <= ?"));
        let range = format!("({})", range.join(" AND "));
        format!(
            "SELECT DISTINCT toUInt32(toStartOfHour({time_column})) FROM {identity_table} \
             WHERE {}",
            vec![range; ranges.max(1)].join(" OR ")
        )
    }

    /// The group-by columns, then the measures.
    pub fn columns(&self) -> Vec<&'static str> {
        let measures = self.measures.iter().map(Measure::name);
        self.group_by.iter().copied().chain(measures).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_key_column_is_not_a_tuple_and_several_are() {
        assert_eq!(tuple(&["a"]), "a");
        assert_eq!(tuple(&["a", "b"]), "(a, b)");
    }

    #[test]
    fn the_recomputation_names_every_column_of_the_definition_once() {
        let sql = GAME_ROUNDS_HOURLY.recompute(&[3600, 7200], 42);
        assert!(sql.starts_with(
            "INSERT INTO rollup_hourly (bucket, user_id, game_id, real_amount_bet, \
             bonus_amount_bet, real_amount_win, bonus_amount_win, rounds, version) SELECT"
        ));
        assert!(sql.contains("toUInt64(42) AS rollup_version"));
        assert!(sql.contains("IN (toDateTime(3600), toDateTime(7200))"));
        assert!(sql.contains("created_timestamp < toDateTime(10800)"));
    }

    #[test]
    fn runs_of_hours_become_ranges_and_the_rest_a_list() {
        let h = |n: u32| n * 3600;
        assert_eq!(
            among(
                "b",
                &[h(9), h(1), h(2), h(3), h(4), h(7), h(11), h(12), h(2)]
            ),
            "(b BETWEEN toDateTime(3600) AND toDateTime(14400) OR \
             b IN (toDateTime(25200), toDateTime(32400), toDateTime(39600), toDateTime(43200)))"
        );
        assert_eq!(among("b", &[h(5)]), "(b IN (toDateTime(18000)))");
        let year: Vec<u32> = (0..8_760).map(h).collect();
        assert_eq!(
            among("b", &year),
            "(b BETWEEN toDateTime(0) AND toDateTime(31532400))"
        );
    }

    #[test]
    fn key_ranges_are_looked_up_by_the_key_prefix_and_a_span_of_its_last_column() {
        assert_eq!(
            GAME_ROUNDS_HOURLY.hours_of_key_ranges(2),
            "SELECT DISTINCT toUInt32(toStartOfHour(created_timestamp)) FROM round_identity \
             WHERE (user_id = ? AND game_instance_id >= ? AND game_instance_id <= ?) \
             OR (user_id = ? AND game_instance_id >= ? AND game_instance_id <= ?)"
        );
    }
}
