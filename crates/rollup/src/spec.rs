//! A rollup defined as data: the raw table and how its rounds are identified and versioned, the
//! columns it groups by, the time bucket and the measures. Every statement the processing layer
//! runs against a rollup is generated here from its [`Rollup`], so a dataset that declares its
//! own rollup gets the same exact machinery (docs/PROCESSING.md).
//!
//! The SQL is text because ClickHouse binds only scalar values; what is spliced in is either
//! part of a `'static` definition or a number (hours, versions), never user input.

use crate::{DAY_SECONDS, HOUR_SECONDS};

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
    /// How many of the group's current rows have a value in `column` (not NULL), into `into`:
    /// the divisor of a mean.
    CountOf {
        column: &'static str,
        into: &'static str,
    },
}

impl Measure {
    /// The column the measure is stored in.
    pub fn name(&self) -> &'static str {
        match self {
            Measure::Sum(column) | Measure::Count(column) => column,
            Measure::CountOf { into, .. } => into,
        }
    }

    fn aggregate(&self) -> String {
        match self {
            Measure::Sum(column) => format!("sum({column})"),
            Measure::Count(_) => "count()".to_owned(),
            Measure::CountOf { column, .. } => format!("count({column})"),
        }
    }

    /// What one current row adds to the measure, named as the measure: summing these over a
    /// group equals [`Measure::aggregate`].
    fn input(&self) -> String {
        match self {
            Measure::Sum(column) => (*column).to_owned(),
            Measure::Count(name) => format!("toUInt64(1) AS {name}"),
            Measure::CountOf { column, into } => format!("toUInt64(isNotNull({column})) AS {into}"),
        }
    }
}

/// The length of a rollup's buckets; the bucket column holds each bucket's first second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    pub const fn seconds(self) -> u32 {
        match self {
            Period::Hour => HOUR_SECONDS,
            Period::Day => DAY_SECONDS,
        }
    }

    /// The first second of the bucket `seconds` falls in.
    pub const fn start(self, seconds: u32) -> u32 {
        seconds - seconds % self.seconds()
    }

    /// SQL: the bucket the `DateTime` expression `time` falls in.
    pub fn start_of(self, time: &str) -> String {
        match self {
            Period::Hour => format!("toStartOfHour({time})"),
            Period::Day => format!("toStartOfDay({time})"),
        }
    }
}

/// What a rollup is computed from.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    /// The raw rows, at their current versions: the consumer marks the hours it changes.
    Raw(Source),
    /// The published rows of a rollup with finer buckets and the same groups and measures:
    /// publishing its buckets marks this one's (see [`crate::process::Processor::feeding`]).
    Finer(&'static Rollup),
}

/// One rollup: per bucket of its period and group.
#[derive(Debug, Clone, Copy)]
pub struct Rollup {
    /// Its name in `rollup_versions`.
    pub name: &'static str,
    pub input: Input,
    pub period: Period,
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
    input: Input::Raw(Source {
        versions_table: "round_versions",
        identity_table: "round_identity",
        key: &["user_id", "game_instance_id"],
        time_column: "created_timestamp",
        version_column: "version",
    }),
    period: Period::Hour,
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

/// Game rounds per day, player and game, summed from [`GAME_ROUNDS_HOURLY`]'s published hours
/// (`schemas/clickhouse/0012_rollup_daily.sql`).
pub const GAME_ROUNDS_DAILY: Rollup = Rollup {
    name: "game_rounds_daily",
    input: Input::Finer(&GAME_ROUNDS_HOURLY),
    period: Period::Day,
    table: "rollup_daily",
    versions_table: "rollup_versions",
    group_by: GAME_ROUNDS_HOURLY.group_by,
    measures: GAME_ROUNDS_HOURLY.measures,
};

/// `(a, b, …)`, or the one name alone.
pub fn tuple(names: &[&str]) -> String {
    match names {
        [one] => (*one).to_owned(),
        names => format!("({})", names.join(", ")),
    }
}

/// One of `of` disjoint parts of a recomputation: the groups whose first group-by column
/// hashes to `index`. A bucket too large for one statement (the identity lookup holds every
/// key of it in memory) is recomputed in parts, each its own statement under the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u32,
    pub of: u32,
}

impl Part {
    /// The whole input, in one statement.
    pub const WHOLE: Part = Part { index: 0, of: 1 };

    /// The `of` parts, in order.
    pub fn all(of: u32) -> impl Iterator<Item = Part> {
        (0..of.max(1)).map(move |index| Part { index, of })
    }

    /// SQL: a row over `column` belongs to this part.
    fn filter(self, column: &str) -> String {
        match self.of {
            0 | 1 => "1".to_owned(),
            of => format!("cityHash64({column}) % {of} = {}", self.index),
        }
    }
}

/// Versioned rows and how their current versions are found: every version in
/// `versions_table`, key → version in `identity_table` (ordered by key).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub versions_table: &'a str,
    pub identity_table: &'a str,
    pub key: &'a [&'a str],
    pub version_column: &'a str,
}

impl Rows<'_> {
    /// The condition a row of the versions table meets when it meets `condition` (SQL over
    /// the row's own columns) and is its key's current version: the one definition of
    /// "current" (docs/PROCESSING.md). `condition` also narrows the keys whose versions are
    /// looked up — exact, since a key's current row meets it or the key does not count. It
    /// appears twice, so its parameters are bound twice.
    pub fn current_where(&self, condition: &str) -> String {
        let Rows {
            versions_table,
            identity_table,
            key,
            version_column,
        } = *self;
        let (key_tuple, key) = (tuple(key), key.join(", "));
        format!(
            "{condition} AND ({key}, {version_column}) IN (\
             SELECT {key}, max({version_column}) FROM {identity_table} \
             WHERE {key_tuple} IN (SELECT {key} FROM {versions_table} \
             WHERE {condition}) GROUP BY {key})"
        )
    }
}

/// Runs of at least this many consecutive buckets are written as one range.
const RANGE_FROM: usize = 3;

/// The condition "`expr` (a bucket's first second) is one of `buckets`" (not empty), buckets
/// of `period`: runs of consecutive buckets as ranges, the rest as one `IN` list — so a year of
/// dirty hours is one range, far below ClickHouse's limits on a statement's size.
fn among(expr: &str, buckets: &[u32], period: Period) -> String {
    let mut buckets = buckets.to_vec();
    buckets.sort_unstable();
    buckets.dedup();
    let step = u64::from(period.seconds());
    let (mut ranges, mut singles) = (Vec::new(), Vec::new());
    let mut start = 0;
    for end in 1..=buckets.len() {
        let run_continues =
            end < buckets.len() && u64::from(buckets[end]) == u64::from(buckets[end - 1]) + step;
        if run_continues {
            continue;
        }
        let run = &buckets[start..end];
        if run.len() >= RANGE_FROM {
            ranges.push(format!(
                "{expr} BETWEEN toDateTime({}) AND toDateTime({})",
                run[0],
                run[run.len() - 1]
            ));
        } else {
            singles.extend(run.iter().map(|b| format!("toDateTime({b})")));
        }
        start = end;
    }
    if !singles.is_empty() {
        ranges.push(format!("{expr} IN ({})", singles.join(", ")));
    }
    format!("({})", ranges.join(" OR "))
}

/// The condition "`time` lies in one of `buckets`" (not empty) of `period`: a range on the
/// column itself (ClickHouse skips partitions and granules by it), then the buckets.
fn within(time: &str, buckets: &[u32], period: Period) -> String {
    let first = buckets.iter().min().copied().unwrap_or(0);
    let last = buckets.iter().max().copied().unwrap_or(0);
    format!(
        "{time} >= toDateTime({first}) AND {time} < toDateTime({end}) AND {among}",
        end = u64::from(last) + u64::from(period.seconds()),
        among = among(&period.start_of(time), buckets, period),
    )
}

impl Rollup {
    /// The raw rows this rollup is computed from.
    ///
    /// # Panics
    /// When it is computed from another rollup: only the finest rollup reads raw rows, and
    /// which rollup that is is fixed where the rollups are defined.
    fn raw(&self) -> &Source {
        match &self.input {
            Input::Raw(source) => source,
            Input::Finer(_) => panic!("{} is computed from another rollup", self.name),
        }
    }

    /// The `DateTime` column of the raw rows (for a rollup of raw rows; see [`Rollup::raw`]).
    pub fn time_column(&self) -> &'static str {
        self.raw().time_column
    }

    /// The table of the raw rows' versions by key (for a rollup of raw rows; see
    /// [`Rollup::raw`]): what a lookup of earlier versions reads.
    pub fn identity_table(&self) -> &'static str {
        self.raw().identity_table
    }

    /// The condition a row of the versions table meets when it is its key's current version,
    /// falls in one of `hours` (not empty) and meets `filter` (SQL over the row's own columns;
    /// `1` for none): the one definition of "current" (docs/PROCESSING.md). The filter also
    /// narrows the keys whose versions are looked up — exact, since a key's current row meets
    /// it or the key does not count. For a rollup of raw rows.
    pub fn current_rows(&self, hours: &[u32], filter: &str) -> String {
        let Source {
            versions_table,
            identity_table,
            key,
            version_column,
            time_column,
        } = *self.raw();
        let in_hours = within(time_column, hours, self.period);
        let rows = Rows {
            versions_table,
            identity_table,
            key,
            version_column,
        };
        rows.current_where(&format!("{in_hours} AND ({filter})"))
    }

    /// The aggregate of `buckets` from this rollup's input — the current raw rows, or the
    /// finer rollup's published rows — grouped by bucket and the group-by columns, with
    /// `version` as a constant last column: the rows of the rollup table. (Its alias is not
    /// `version`: an alias names the expression everywhere in a ClickHouse query, and would
    /// stand for the source's column in the filter.)
    pub fn aggregate(&self, buckets: &[u32], version: u64, part: Part) -> String {
        let group_by = self.group_by.join(", ");
        let part = part.filter(self.group_by[0]);
        let (time, from, measures) = match &self.input {
            Input::Raw(source) => {
                let current = self.current_rows(buckets, &part);
                let from = format!("{} FINAL WHERE {current}", source.versions_table);
                let measures = self.measures.iter().map(|m| m.aggregate()).collect();
                (source.time_column, from, measures)
            }
            Input::Finer(finer) => {
                let rows = finer.published_where(&within("bucket", buckets, self.period), &part);
                // Sums of sums; a count's finer counts are summed too.
                let measures = self.measures.iter().map(|m| format!("sum({})", m.name()));
                ("at", format!("({rows})"), measures.collect::<Vec<_>>())
            }
        };
        // Aliased apart from every column, then renamed outside: an alias stands for its
        // expression everywhere in a ClickHouse query, so `sum(x) AS x` would turn a mean's
        // `count(x)` into `count(sum(x))`.
        let aliased: Vec<String> = measures
            .iter()
            .zip(self.measures)
            .map(|(aggregate, m)| format!("{aggregate} AS __{}", m.name()))
            .collect();
        let renamed: Vec<String> = (self.measures.iter())
            .map(|m| format!("__{name} AS {name}", name = m.name()))
            .collect();
        format!(
            "SELECT bucket, {group_by}, {renamed}, rollup_version FROM (\
             SELECT {bucket} AS bucket, {group_by}, {aliased}, toUInt64({version}) AS rollup_version \
             FROM {from} GROUP BY bucket, {group_by})",
            bucket = self.period.start_of(time),
            aliased = aliased.join(", "),
            renamed = renamed.join(", "),
        )
    }

    /// Recomputes `part` of `buckets` (not empty) into the rollup table under `version`, in
    /// one statement (one snapshot of the input, taken after `version` was drawn: every part
    /// holds every batch marked before it, which is what the protocol needs).
    pub fn recompute(&self, buckets: &[u32], version: u64, part: Part) -> String {
        format!(
            "INSERT INTO {table} (bucket, {columns}, version) {select}",
            table = self.table,
            columns = self.columns().join(", "),
            select = self.aggregate(buckets, version, part),
        )
    }

    /// How many input rows `buckets` (not empty) hold, counting every version: what decides
    /// into how many [`Part`]s they are recomputed. Read through the first key column of the
    /// raw rows (or of the finer rollup's rows).
    pub fn input_rows(&self, buckets: &[u32]) -> String {
        let (table, time) = match &self.input {
            Input::Raw(source) => (source.versions_table, source.time_column),
            Input::Finer(finer) => (finer.table, "bucket"),
        };
        format!(
            "SELECT count() FROM {table} WHERE {}",
            within(time, buckets, self.period)
        )
    }

    /// Publishes `version` of `buckets` (not empty): written after [`Rollup::recompute`] landed.
    pub fn publish(&self, buckets: &[u32], version: u64) -> String {
        let rows: Vec<String> = buckets
            .iter()
            .map(|bucket| format!("('{}', toDateTime({bucket}), {version})", self.name))
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
    /// (inclusive, first seconds of buckets), in the rollup table's columns.
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

    /// Each bucket's rows at its greatest published version, of the buckets that meet
    /// `buckets` (SQL over the `bucket` column), as `at` (the bucket), the group-by columns and
    /// the measures; `filter` (SQL over the table's columns) narrows them.
    fn published_where(&self, buckets: &str, filter: &str) -> String {
        format!(
            "SELECT bucket AS at, {columns} FROM {table} WHERE {buckets} AND ({filter}) \
             AND (bucket, version) IN (SELECT bucket, max(version) FROM {versions} \
             WHERE rollup = '{name}' AND {buckets} GROUP BY bucket)",
            columns = self.columns().join(", "),
            table = self.table,
            versions = self.versions_table,
            name = self.name,
        )
    }

    /// What a reader sums for the buckets from `first` to `last` (inclusive, first seconds)
    /// but `except`: each bucket's rows at its greatest published version, as `at` (the
    /// bucket), the group-by columns and the measures. `filter` (SQL over the table's columns;
    /// `1` for none) narrows them. The complement of [`Rollup::current_inputs`] of `except`.
    pub fn published_rows(&self, first: u32, last: u32, except: &[u32], filter: &str) -> String {
        let range = format!("bucket >= toDateTime({first}) AND bucket <= toDateTime({last})");
        let buckets = match except {
            [] => range,
            except => format!("{range} AND NOT {}", among("bucket", except, self.period)),
        };
        self.published_where(&buckets, filter)
    }

    /// What a reader sums for `buckets` (not empty) from this rollup: each one's rows at its
    /// published version; a bucket with none published has none.
    pub fn published_rows_of(&self, buckets: &[u32], filter: &str) -> String {
        self.published_where(&within("bucket", buckets, self.period), filter)
    }

    /// Those of `buckets` (not empty) with a published version, as `UInt32` seconds: the
    /// buckets a reader can take from this rollup by [`Rollup::published_rows_of`].
    pub fn published_among(&self, buckets: &[u32]) -> String {
        format!(
            "SELECT DISTINCT toUInt32(bucket) FROM {versions} WHERE rollup = '{name}' AND {among}",
            versions = self.versions_table,
            name = self.name,
            among = among("bucket", buckets, self.period),
        )
    }

    /// What a reader sums for `hours` (not empty) that are not processed yet: their current
    /// rows, as `at` (the row's time), the group-by columns and each measure's input (the
    /// column of a sum, 1 for a count), so that summing them equals the rollup's measures.
    /// `filter` (SQL over the source's columns; `1` for none) narrows them; it appears twice
    /// in the statement (see [`Rollup::current_rows`]), so its parameters are bound twice.
    /// For a rollup of raw rows.
    pub fn current_inputs(&self, hours: &[u32], filter: &str) -> String {
        let inputs: Vec<String> = self.measures.iter().map(Measure::input).collect();
        format!(
            "SELECT {time} AS at, {group_by}, {inputs} FROM {table} FINAL WHERE {current}",
            time = self.raw().time_column,
            group_by = self.group_by.join(", "),
            inputs = inputs.join(", "),
            table = self.raw().versions_table,
            current = self.current_rows(hours, filter),
        )
    }

    /// The first and last published bucket (`UInt32` seconds) and how many buckets are
    /// published (0: none, and the bounds mean nothing).
    pub fn published_bounds(&self) -> String {
        format!(
            "SELECT toUInt32(min(bucket)), toUInt32(max(bucket)), count() FROM {} \
             WHERE rollup = '{}'",
            self.versions_table, self.name
        )
    }

    /// The buckets from `first` to `last` (inclusive, first seconds of buckets) that hold
    /// input rows, as `UInt32` seconds: what a backfill marks dirty. Raw rows of any version,
    /// or the finer rollup's published buckets.
    pub fn buckets_with_rows(&self, first: u32, last: u32) -> String {
        let (time, table, which) = match &self.input {
            Input::Raw(source) => (source.time_column, source.versions_table, String::new()),
            Input::Finer(finer) => (
                "bucket",
                finer.versions_table,
                format!(" AND rollup = '{}'", finer.name),
            ),
        };
        format!(
            "SELECT DISTINCT toUInt32({bucket}) FROM {table} \
             WHERE {time} >= toDateTime({first}) AND {time} < toDateTime({end}){which} ORDER BY 1",
            bucket = self.period.start_of(time),
            end = u64::from(last) + u64::from(self.period.seconds()),
        )
    }

    /// The hours of every stored version of the rounds in `ranges` ranges of keys, as
    /// `UInt32` seconds: what a batch about to be inserted must mark dirty besides its own
    /// hours, since its rounds' earlier versions stop counting there (docs/PROCESSING.md).
    /// A range is the key's columns but the last, equal, and the last between two values,
    /// inclusive; the statement takes `?` for each of them, range by range. Read through the
    /// identity table's primary key: clustered keys (a player's rounds) cost a few granules.
    /// For a rollup of raw rows.
    pub fn hours_of_key_ranges(&self, ranges: usize) -> String {
        let Source {
            identity_table,
            key,
            time_column,
            ..
        } = *self.raw();
        let (last, prefix) = key.split_last().expect("a key has columns");
        let mut range: Vec<String> = prefix.iter().map(|c| format!("{c} = ?")).collect();
        range.push(format!("{last} >= ? AND {last} <= ?"));
        let range = format!("({})", range.join(" AND "));
        format!(
            "SELECT DISTINCT toUInt32({}) FROM {identity_table} WHERE {}",
            self.period.start_of(time_column),
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
        let sql = GAME_ROUNDS_HOURLY.recompute(&[3600, 7200], 42, Part::WHOLE);
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
                &[h(9), h(1), h(2), h(3), h(4), h(7), h(11), h(12), h(2)],
                Period::Hour
            ),
            "(b BETWEEN toDateTime(3600) AND toDateTime(14400) OR \
             b IN (toDateTime(25200), toDateTime(32400), toDateTime(39600), toDateTime(43200)))"
        );
        assert_eq!(
            among("b", &[h(5)], Period::Hour),
            "(b IN (toDateTime(18000)))"
        );
        let year: Vec<u32> = (0..8_760).map(h).collect();
        assert_eq!(
            among("b", &year, Period::Hour),
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

    #[test]
    fn a_part_of_a_recomputation_takes_the_groups_of_its_hash_on_both_sides_of_the_lookup() {
        let sql = GAME_ROUNDS_HOURLY.recompute(&[3600], 1, Part { index: 2, of: 3 });
        assert_eq!(
            sql.matches("(cityHash64(user_id) % 3 = 2)").count(),
            2,
            "{sql}"
        );
        let parts: Vec<Part> = Part::all(3).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(Part::all(0).count(), 1, "at least the whole");
        let whole = GAME_ROUNDS_HOURLY.recompute(&[3600], 1, Part::WHOLE);
        assert!(!whole.contains("cityHash64"));
    }

    #[test]
    fn days_in_a_row_are_one_range() {
        let d = |n: u32| n * DAY_SECONDS;
        assert_eq!(
            among("b", &[d(1), d(2), d(3), d(5)], Period::Day),
            "(b BETWEEN toDateTime(86400) AND toDateTime(259200) OR b IN (toDateTime(432000)))"
        );
    }

    #[test]
    fn the_daily_rollup_sums_the_published_hours_of_its_days() {
        let sql = GAME_ROUNDS_DAILY.recompute(&[86_400], 7, Part::WHOLE);
        assert!(sql.starts_with("INSERT INTO rollup_daily (bucket, user_id, game_id,"));
        assert!(sql.contains("SELECT toStartOfDay(at) AS bucket"), "{sql}");
        assert!(sql.contains("sum(rounds) AS __rounds"), "{sql}");
        assert!(sql.contains("FROM rollup_hourly WHERE bucket >= toDateTime(86400) AND bucket < toDateTime(172800)"), "{sql}");
        assert!(sql.contains("rollup = 'game_rounds_hourly'"), "{sql}");
        let backfill = GAME_ROUNDS_DAILY.buckets_with_rows(0, 86_400);
        assert!(backfill.contains("toUInt32(toStartOfDay(bucket)) FROM rollup_versions"));
        assert!(
            backfill.contains("AND rollup = 'game_rounds_hourly'"),
            "{backfill}"
        );
        assert_eq!(
            GAME_ROUNDS_DAILY.published_among(&[0]),
            "SELECT DISTINCT toUInt32(bucket) FROM rollup_versions \
             WHERE rollup = 'game_rounds_daily' AND (bucket IN (toDateTime(0)))"
        );
    }
}
