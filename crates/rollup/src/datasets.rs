//! The rollups a dataset's spec declares (`kind = "rollup"` endpoints, issue 14), on the same
//! engine as the game rounds' (docs/PROCESSING.md): each endpoint gets an hourly rollup of the
//! dataset's current rows (marked dirty by the consumer, recomputed by the processor) and, when
//! it answers days, a daily rollup summed from the published hours. The tables they need — the
//! identity table the current rows are found by, and one table per rollup — are generated here
//! too, so the consumer, the processor and the gateway agree on them.
//!
//! A spec is read once at a service's start; its rollups are built then and live as long as
//! the process (their names are leaked into `&'static str`, the form the engine's statements
//! take for the built-in rollups).

use std::collections::BTreeSet;

use sluice_schema::dataset::clickhouse::column_type;
use sluice_schema::dataset::endpoint::{Bucket, Endpoint, EndpointKind, Function};
use sluice_schema::dataset::rowbinary::KeyValue;
use sluice_schema::dataset::{Column, Kind, Spec};
use sluice_schema::migrations::{self, Layout, Object};

use crate::spec::{tuple, Input, Measure, Period, Rollup, Source};

/// One rollup endpoint's rollups.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRollups {
    /// Its rollup of the dataset's current rows, per hour.
    pub hourly: Rollup,
    /// Its rollup of the published hours, per day: for endpoints that answer days.
    pub daily: Option<Rollup>,
}

impl EndpointRollups {
    /// The rollups `endpoint` of `spec` is answered from; `None` for an endpoint that is not a
    /// rollup.
    pub fn of(spec: &Spec, endpoint: &Endpoint) -> Option<EndpointRollups> {
        if endpoint.kind != EndpointKind::Rollup {
            return None;
        }
        let name = |period: &str| leak(format!("{}.{}.{period}", spec.name, endpoint.name));
        let table = |period: &str| leak(format!("{}_{}_{period}", spec.name, endpoint.name));
        let group_by: Vec<&'static str> = endpoint.group_by.iter().map(|g| leak_str(g)).collect();
        let group_by: &'static [&'static str] = Box::leak(group_by.into_boxed_slice());
        let measures: &'static [Measure] = Box::leak(measures(endpoint).into_boxed_slice());
        let hourly: &'static Rollup = Box::leak(Box::new(Rollup {
            name: name("hourly"),
            input: Input::Raw(source(spec)),
            period: Period::Hour,
            table: table("hourly"),
            versions_table: "rollup_versions",
            group_by,
            measures,
        }));
        let daily =
            matches!(endpoint.bucket, Some(Bucket::Day | Bucket::Granularity)).then(|| Rollup {
                name: name("daily"),
                input: Input::Finer(hourly),
                period: Period::Day,
                table: table("daily"),
                versions_table: "rollup_versions",
                group_by,
                measures,
            });
        Some(EndpointRollups {
            hourly: *hourly,
            daily,
        })
    }

    /// Every rollup of `spec`'s endpoints, finest first per endpoint, with the endpoint's name.
    pub fn all(spec: &Spec) -> Vec<(String, EndpointRollups)> {
        spec.endpoints
            .iter()
            .filter_map(|e| EndpointRollups::of(spec, e).map(|r| (e.name.clone(), r)))
            .collect()
    }

    /// Its rollups, the hourly one first.
    pub fn levels(&self) -> impl Iterator<Item = Rollup> {
        std::iter::once(self.hourly).chain(self.daily)
    }
}

/// The raw rows of `spec`'s dataset, as a rollup reads them.
pub fn source(spec: &Spec) -> Source {
    let key: Vec<&'static str> = spec.identity.iter().map(|k| leak_str(k)).collect();
    Source {
        versions_table: leak(spec.versions_table()),
        identity_table: leak(identity_table_name(spec)),
        key: Box::leak(key.into_boxed_slice()),
        time_column: leak_str(&spec.time),
        version_column: "version",
    }
}

/// The column a mean's divisor is kept in: how many rows had a value of `column`.
pub fn count_column(column: &str) -> String {
    format!("{column}__n")
}

/// The rollup's measures for `endpoint`'s: a count as itself, a sum as the sum of its column
/// (kept under the column's name), a mean as that sum and the count of the column's values.
/// Each stored once, however many of the endpoint's measures use it.
fn measures(endpoint: &Endpoint) -> Vec<Measure> {
    let mut stored = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |measure: Measure, stored: &mut Vec<Measure>| {
        if seen.insert(measure.name()) {
            stored.push(measure);
        }
    };
    for measure in &endpoint.measures {
        let column = measure.column.as_deref().map(leak_str);
        match (measure.function, column) {
            (Function::Count, _) => add(Measure::Count(leak_str(&measure.name)), &mut stored),
            (Function::Sum, Some(column)) => add(Measure::Sum(column), &mut stored),
            (Function::Avg, Some(column)) => {
                add(Measure::Sum(column), &mut stored);
                let into = leak(count_column(column));
                add(Measure::CountOf { column, into }, &mut stored);
            }
            (_, None) => unreachable!("a checked spec's sums and means name their column"),
        }
    }
    stored
}

/// SQL: the value of `endpoint`'s measure named `measure` for a group, from the rows of its
/// rollups (or the current inputs read beside them), summed over the group.
pub fn answer_expression(endpoint: &Endpoint, measure: &str) -> Option<String> {
    let measure = endpoint.measures.iter().find(|m| m.name == measure)?;
    let column = measure.column.as_deref().unwrap_or(&measure.name);
    Some(match measure.function {
        Function::Count => format!("sum({})", measure.name),
        Function::Sum => format!("sum({column})"),
        Function::Avg => format!(
            "if(sum({n}) = 0, NULL, toFloat64(sum({column})) / sum({n}))",
            n = count_column(column)
        ),
    })
}

/// SQL: the hours (`UInt32` first seconds) of every stored version of `records` records,
/// looked up by identity in the identity table: what a batch about to be inserted must mark
/// dirty besides its own hours (its records' earlier versions stop counting there). Takes a
/// `?` per identity column, record by record; bind them with [`bind_key`].
pub fn hours_of_keys(spec: &Spec, records: usize) -> String {
    let placeholders: Vec<String> = spec
        .identity
        .iter()
        .filter_map(|c| spec.column(c))
        .map(|c| match c.kind {
            Kind::String => "?".to_owned(),
            Kind::Int64 => "toInt64(?)".to_owned(),
            Kind::Uint64 => "toUInt64(?)".to_owned(),
            Kind::Float32 => "toFloat32(?)".to_owned(),
            Kind::Float64 => "toFloat64(?)".to_owned(),
            Kind::Decimal => format!("toDecimal64(?, {})", c.scale.unwrap_or(0)),
            Kind::Timestamp => "toDateTime(?)".to_owned(),
        })
        .collect();
    let placeholders: Vec<&str> = placeholders.iter().map(String::as_str).collect();
    let identity: Vec<&str> = spec.identity.iter().map(String::as_str).collect();
    let (one, key) = (tuple(&placeholders), tuple(&identity));
    format!(
        "SELECT DISTINCT toUInt32(toStartOfHour({time})) FROM {table} WHERE {key} IN ({list})",
        time = spec.time,
        table = identity_table_name(spec),
        list = vec![one; records.max(1)].join(", "),
    )
}

/// Binds one identity value to the next `?` of [`hours_of_keys`]; `scale` is its column's
/// (decimals are bound as their exact text).
pub fn bind_key(
    query: clickhouse::query::Query,
    value: &KeyValue,
    scale: u32,
) -> clickhouse::query::Query {
    match value {
        KeyValue::Null => query.bind(Option::<u8>::None),
        KeyValue::Text(text) => query.bind(text.as_str()),
        KeyValue::Int(n) => query.bind(*n),
        KeyValue::Uint(n) => query.bind(*n),
        KeyValue::Float32(x) => query.bind(f64::from(*x)),
        KeyValue::Float64(x) => query.bind(*x),
        KeyValue::Decimal(unscaled) => query.bind(decimal_text(*unscaled, scale)),
        KeyValue::Seconds(seconds) => query.bind(*seconds),
    }
}

/// `unscaled / 10^scale` as exact decimal text.
fn decimal_text(unscaled: i64, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// The table of `spec`'s record identities and their versions (`<name>_identity`).
pub fn identity_table_name(spec: &Spec) -> String {
    format!("{}_identity", spec.name)
}

/// The statements that create what `spec`'s readers need besides its versions table, in order
/// (each `IF NOT EXISTS`, so every service may run them at start): the identity table (how
/// rollups and listings of rows find a record's current version) and the view that fills it
/// from the versions table (which must exist first), then each rollup's table.
pub fn tables(spec: &Spec) -> Vec<String> {
    objects(spec)
        .into_iter()
        .skip(1)
        .map(|(_, sql)| sql)
        .collect()
}

/// Every table (and view) of `spec`'s dataset, in the order they are made, each as what it is
/// on a cluster ([`Object`]) and its statement on one server: the versions table, then
/// [`tables`]. On a cluster the versions and the identity table are sharded by a hash of the
/// identity, so every version of a record, each copy of one and its identity rows live on one
/// shard (where `FINAL` collapses them, and `max(version)` is the record's); a rollup table by
/// a hash of its sorting key (the bucket and the group-by columns that are not nullable), so a
/// bucket's group keeps every version of its row on one shard, where merges keep the greatest.
/// Names and keys are leaked (once at a service's start), the form [`Object`] takes.
pub fn objects(spec: &Spec) -> Vec<(Object, String)> {
    let by_identity = leak(by_identity(spec));
    let versions = leak(spec.versions_table());
    let identity = leak(identity_table_name(spec));
    let [identity_table, identity_view] = identity_tables(spec);
    let mut objects = vec![
        (
            Object::Table {
                name: versions,
                shard_by: by_identity,
            },
            sluice_schema::dataset::clickhouse::versions_table(spec),
        ),
        (
            Object::Table {
                name: identity,
                shard_by: by_identity,
            },
            identity_table,
        ),
        (
            Object::MaterializedView {
                name: leak(format!("{identity}_view")),
                target: identity,
                source: versions,
            },
            identity_view,
        ),
    ];
    for (_, rollups) in &EndpointRollups::all(spec) {
        for rollup in rollups.levels() {
            let shard_by = leak(format!(
                "cityHash64({})",
                sorting_key(spec, &rollup).join(", ")
            ));
            let table = Object::Table {
                name: rollup.table,
                shard_by,
            };
            objects.push((table, rollup_table(spec, &rollup)));
        }
    }
    objects
}

/// The sharding key of `spec`'s versions and identity tables on a cluster: a hash of the
/// identity.
pub fn by_identity(spec: &Spec) -> String {
    format!("cityHash64({})", spec.identity.join(", "))
}

/// Creates what `spec`'s dataset needs in `client`'s database (`database`, laid out as
/// `layout`: on a cluster each table a replicated `<table>_local` on every server and a
/// `Distributed` table over them, [`objects`]), if missing: its versions table and [`tables`].
/// An identity table found empty beside a versions table with rows (rows stored before
/// identity tables existed) is filled from it once its view is in place, so every stored
/// version is found by key; a row written twice there is one (`ReplacingMergeTree`, read by
/// `max(version)`).
pub async fn create_tables(
    client: &clickhouse::Client,
    spec: &Spec,
    layout: &Layout,
    database: &str,
) -> Result<(), clickhouse::error::Error> {
    let objects = objects(spec);
    for (object, sql) in &objects {
        migrations::make(client, database, layout, object, sql).await?;
    }
    let identity = identity_table_name(spec);
    let count = |table: String| async move {
        let sql = format!("SELECT count() FROM {table}");
        client.query(&sql).fetch_one::<u64>().await
    };
    if count(identity.clone()).await? == 0 && count(spec.versions_table()).await? > 0 {
        let fill = objects[2]
            .1
            .split_once(" AS SELECT ")
            .map(|(_, select)| format!("INSERT INTO {identity} SELECT {select}"))
            .expect("the identity view selects");
        client.query(&fill).execute().await?;
    }
    Ok(())
}

/// The identity table (key → version and time, ordered by key: the earlier versions of a
/// batch's records are found by it) and its materialized view.
fn identity_tables(spec: &Spec) -> [String; 2] {
    let table = identity_table_name(spec);
    let key: Vec<&Column> = spec
        .identity
        .iter()
        .filter_map(|c| spec.column(c))
        .collect();
    let time = spec
        .column(&spec.time)
        .expect("a checked spec has its time column");
    // The time column once, even when it is part of the identity.
    let stored: Vec<&Column> = match spec.identity.contains(&spec.time) {
        true => key.clone(),
        false => key.iter().copied().chain([time]).collect(),
    };
    let columns: Vec<String> = stored
        .iter()
        .map(|c| format!("{} {}", c.name, column_type(c)))
        .collect();
    let names: Vec<&str> = key.iter().map(|c| c.name.as_str()).collect();
    let selected: Vec<&str> = stored.iter().map(|c| c.name.as_str()).collect();
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {table} ({columns}, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY ({key}) \
             SETTINGS index_granularity = 1024",
            columns = columns.join(", "),
            key = names.join(", "),
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_view TO {table} AS \
             SELECT {selected}, version FROM {versions}",
            selected = selected.join(", "),
            versions = spec.versions_table(),
        ),
    ]
}

/// A rollup's table: `bucket`, the group-by columns, the measures, `version`; a group's
/// greatest version kept by merges (as `rollup_hourly`, migration 9).
fn rollup_table(spec: &Spec, rollup: &Rollup) -> String {
    let column = |name: &str| spec.column(name).expect("a checked spec has its columns");
    let groups = rollup
        .group_by
        .iter()
        .map(|g| format!("{g} {}", column_type(column(g))));
    let measures = rollup.measures.iter().map(|m| match m {
        Measure::Count(name) | Measure::CountOf { into: name, .. } => format!("{name} UInt64"),
        Measure::Sum(c) => format!("{c} {}", sum_type(column(c))),
    });
    let columns: Vec<String> = std::iter::once("bucket DateTime('UTC')".to_owned())
        .chain(groups)
        .chain(measures)
        .chain(["version UInt64".to_owned()])
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({columns}) ENGINE = ReplacingMergeTree(version) \
         PARTITION BY toYYYYMM(bucket) ORDER BY ({order})",
        table = rollup.table,
        columns = columns.join(", "),
        order = sorting_key(spec, rollup).join(", "),
    )
}

/// A rollup table's sorting key: `bucket` and the group-by columns, but the nullable ones (a
/// sorting key holds no Nullable column, ClickHouse's default; nor may a sharding key).
fn sorting_key(spec: &Spec, rollup: &Rollup) -> Vec<&'static str> {
    let nullable = |g: &str| spec.column(g).is_some_and(|c| c.nullable);
    std::iter::once("bucket")
        .chain(rollup.group_by.iter().copied().filter(|g| !nullable(g)))
        .collect()
}

/// The type ClickHouse gives `sum` of `column` (and a sum of such sums).
fn sum_type(column: &Column) -> String {
    let kind = match column.kind {
        Kind::Int64 => "Int64".to_owned(),
        Kind::Uint64 => "UInt64".to_owned(),
        Kind::Float32 | Kind::Float64 => "Float64".to_owned(),
        Kind::Decimal => format!("Decimal(38, {})", column.scale.unwrap_or(0)),
        Kind::String | Kind::Timestamp => unreachable!("a checked spec sums only numbers"),
    };
    match column.nullable {
        true => format!("Nullable({kind})"),
        false => kind,
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn leak_str(text: &str) -> &'static str {
    leak(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_schema::dataset::Catalog;

    fn shipped(name: &str) -> Spec {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        Catalog::read(&dir).unwrap().get(name).unwrap().spec.clone()
    }

    #[test]
    fn a_daily_endpoint_has_an_hourly_rollup_of_raw_rows_and_a_daily_one_of_its_hours() {
        let spec = shipped("amazon_reviews");
        let rollups = EndpointRollups::of(&spec, &spec.endpoints[0]).unwrap();
        assert_eq!(rollups.hourly.name, "amazon_reviews.daily_by_asin.hourly");
        assert_eq!(rollups.hourly.table, "amazon_reviews_daily_by_asin_hourly");
        assert_eq!(
            rollups.hourly.measures,
            [
                Measure::Count("reviews"),
                Measure::Sum("rating"),
                Measure::CountOf {
                    column: "rating",
                    into: "rating__n"
                }
            ]
        );
        let daily = rollups.daily.unwrap();
        assert!(matches!(daily.input, Input::Finer(r) if r.name == rollups.hourly.name));
        let Input::Raw(source) = rollups.hourly.input else {
            panic!("raw")
        };
        assert_eq!(source.key, ["asin", "timestamp", "user_id"]);
        assert_eq!(source.identity_table, "amazon_reviews_identity");
        let sql = rollups
            .hourly
            .recompute(&[3600], 5, crate::spec::Part::WHOLE);
        assert!(
            sql.contains("sum(rating) AS __rating, count(rating) AS __rating__n"),
            "{sql}"
        );
        assert!(
            sql.contains("FROM amazon_reviews_identity WHERE (asin, timestamp, user_id) IN"),
            "{sql}"
        );
    }

    #[test]
    fn the_tables_follow_the_columns_types_and_sums_widen() {
        let spec = shipped("events");
        let tables = tables(&spec);
        assert_eq!(tables.len(), 4, "{tables:#?}");
        assert!(tables[0].starts_with(
            "CREATE TABLE IF NOT EXISTS events_identity (event_id String, \
             occurred_at DateTime('UTC'), version UInt64)"
        ));
        assert!(tables[1].contains(
            "TO events_identity AS SELECT event_id, occurred_at, version FROM events_versions"
        ));
        let reviews = super::tables(&shipped("amazon_reviews"));
        assert!(
            reviews[0].contains(
                "(asin String, timestamp DateTime('UTC'), user_id String, version UInt64)"
            ),
            "{}",
            reviews[0]
        );
        assert!(
            tables[2].contains(
                "(bucket DateTime('UTC'), event_type String, events UInt64, \
                 value Nullable(Decimal(38, 4)), version UInt64)"
            ),
            "{}",
            tables[2]
        );
        assert!(tables[3].starts_with("CREATE TABLE IF NOT EXISTS events_by_type_daily"));
        assert_eq!(
            super::tables(&shipped("records")).len(),
            2,
            "no rollup, an identity"
        );
    }

    #[test]
    fn on_a_cluster_records_shard_by_identity_and_rollup_rows_by_bucket_and_group() {
        use sluice_schema::migrations::cluster::statements_of;
        let spec = shipped("amazon_reviews");
        let statements: Vec<String> = objects(&spec)
            .iter()
            .flat_map(|(object, sql)| statements_of(object, sql, "db", "c"))
            .collect();
        let distributed = |table: &str, key: &str| {
            format!(
                "CREATE TABLE IF NOT EXISTS db.{table} ON CLUSTER c AS db.{table}_local \
                 ENGINE = Distributed(c, db, {table}_local, {key})"
            )
        };
        let by_identity = "cityHash64(asin, timestamp, user_id)";
        assert!(statements[0].starts_with(
            "CREATE TABLE IF NOT EXISTS db.amazon_reviews_versions_local ON CLUSTER c\n("
        ));
        assert!(statements[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/amazon_reviews_versions', '{replica}')"
        ), "{}", statements[0]);
        assert_eq!(
            statements[1],
            distributed("amazon_reviews_versions", by_identity)
        );
        assert!(statements[2].contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/amazon_reviews_identity', '{replica}', version)"));
        assert_eq!(
            statements[3],
            distributed("amazon_reviews_identity", by_identity)
        );
        assert!(statements[4].contains(
            "ON CLUSTER c TO db.amazon_reviews_identity_local AS SELECT asin, timestamp, user_id, version FROM db.amazon_reviews_versions_local"
        ), "{}", statements[4]);
        for (at, table) in [
            (6, "amazon_reviews_daily_by_asin_hourly"),
            (8, "amazon_reviews_daily_by_asin_daily"),
        ] {
            assert_eq!(
                statements[at],
                distributed(table, "cityHash64(bucket, asin)")
            );
        }
        assert_eq!(statements.len(), 9);
        // A nullable group-by column is in neither the sorting nor the sharding key.
        let events = shipped("events");
        let (object, _) = &objects(&events)[3];
        assert!(matches!(
            object,
            Object::Table {
                shard_by: "cityHash64(bucket, event_type)",
                ..
            }
        ));
    }

    #[test]
    fn earlier_versions_are_looked_up_by_the_whole_identity() {
        let reviews = shipped("amazon_reviews");
        assert_eq!(
            hours_of_keys(&reviews, 2),
            "SELECT DISTINCT toUInt32(toStartOfHour(timestamp)) FROM amazon_reviews_identity \
             WHERE (asin, timestamp, user_id) IN ((?, toDateTime(?), ?), (?, toDateTime(?), ?))"
        );
        assert_eq!(
            hours_of_keys(&shipped("events"), 1),
            "SELECT DISTINCT toUInt32(toStartOfHour(occurred_at)) FROM events_identity \
             WHERE event_id IN (?)"
        );
        assert_eq!(decimal_text(-125, 2), "-1.25");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(42, 0), "42");
    }

    #[test]
    fn a_mean_divides_the_sum_by_the_count_of_values() {
        let spec = shipped("amazon_reviews");
        let endpoint = &spec.endpoints[0];
        assert_eq!(
            answer_expression(endpoint, "avg_rating").unwrap(),
            "if(sum(rating__n) = 0, NULL, toFloat64(sum(rating)) / sum(rating__n))"
        );
        assert_eq!(
            answer_expression(endpoint, "reviews").unwrap(),
            "sum(reviews)"
        );
        assert_eq!(answer_expression(endpoint, "nothing"), None);
    }
}
