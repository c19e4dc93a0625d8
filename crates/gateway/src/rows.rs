//! Listings of a dataset's rows (`kind = "rows"` endpoints, `GET /datasets/{name}/{endpoint}`):
//! the latest version of each record, filtered on the latest version's values, in the order
//! (time, identity), a page at a time behind a signed cursor.
//!
//! A query string becomes a [`RowsQuery`] first (unknown parameters, malformed values and
//! cursors are a 400 before anything is charged); [`fetch`] then reads one page. Every value
//! is bound, never spliced into the SQL; identifiers come from checked specs.

use chrono::{NaiveDate, NaiveTime};
use clickhouse::Client;
use serde_json::{Map, Value};
use sluice_rollup::datasets::identity_table_name;
use sluice_rollup::spec::Rows;
use sluice_schema::dataset::endpoint::{Endpoint, FROM, TO};
use sluice_schema::dataset::{Dataset, Kind, Spec};
use sluice_schema::migrations::Layout;

use crate::cursor::CursorSigner;
use crate::query::{parse_instant, BadQuery, Bound};
use crate::reads::Reads;

/// The prefix of the answer's columns in the statement: an alias named like its column would
/// stand for the column in `WHERE` and `ORDER BY` too.
const OUT: &str = "__out_";

/// Where a page starts: after the row with this time (Unix seconds) and identity (as text).
type Position = (u32, Vec<String>);

/// One request to a rows endpoint, parsed.
#[derive(Debug, Clone)]
pub struct RowsQuery {
    /// Column filters, each value as the column stores it.
    equals: Vec<(String, String)>,
    from: Option<u32>,
    to: Option<u32>,
    limit: u32,
    after: Option<Position>,
    /// The canonical filters a cursor is bound to.
    filters: String,
}

impl RowsQuery {
    /// Reads `params` against `endpoint` of `dataset`.
    pub fn parse(
        dataset: &Dataset,
        endpoint: &Endpoint,
        params: &[(String, String)],
        cursors: &CursorSigner,
    ) -> Result<RowsQuery, BadQuery> {
        let bad = |message: String| BadQuery(message);
        let mut query = RowsQuery {
            equals: Vec::new(),
            from: None,
            to: None,
            limit: endpoint.page_size,
            after: None,
            filters: format!("{}/{}", dataset.spec.name, endpoint.name),
        };
        let mut cursor = None;
        for (name, value) in params.iter().filter(|(_, value)| !value.is_empty()) {
            match name.as_str() {
                "limit" => query.limit = limit(value, endpoint.max_page_size)?,
                "cursor" => cursor = Some(value.as_str()),
                FROM if endpoint.filters.iter().any(|f| f == FROM) => {
                    query.from = Some(moment(FROM, value, Bound::Inclusive)?)
                }
                TO if endpoint.filters.iter().any(|f| f == TO) => {
                    query.to = Some(moment(TO, value, Bound::Exclusive)?)
                }
                column if endpoint.filters.iter().any(|f| f == column) => {
                    let stored = dataset.plan.filter_value(column, value);
                    let stored = stored.map_err(|reason| bad(format!("`{column}`: {reason}")))?;
                    query.equals.push((column.to_owned(), stored));
                }
                other => {
                    let known = endpoint.filters.join(", ");
                    return Err(bad(format!("unknown parameter `{other}` (this endpoint takes {known}, limit and cursor)")));
                }
            }
        }
        ordered(query.from, query.to)?;
        query.equals.sort();
        query.filters = format!(
            "{}|{:?}|{:?}|{:?}",
            query.filters, query.equals, query.from, query.to
        );
        if let Some(cursor) = cursor {
            let payload = cursors
                .open(&query.filters, cursor)
                .map_err(|e| bad(format!("`cursor`: {e}")))?;
            let position = serde_json::from_slice(&payload)
                .map_err(|_| bad("`cursor`: not issued here".to_owned()))?;
            query.after = Some(position);
        }
        Ok(query)
    }

    /// The cursor of the page after `row`'s position.
    pub fn cursor_after(&self, position: &Position, cursors: &CursorSigner) -> String {
        let payload = serde_json::to_vec(position).expect("a position serializes");
        cursors.seal(&self.filters, &payload)
    }
}

pub(crate) fn limit(value: &str, max: u32) -> Result<u32, BadQuery> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(BadQuery(format!(
            "`limit` must be an integer from 1 to {max}"
        ))),
    }
}

/// A `from` (`Bound::Inclusive`) or `to` (`Bound::Exclusive`) value, read as
/// `GET /aggregated_game_rounds` reads it (a date, or an RFC 3339 date and time where a space
/// may replace the `T`; within what the store holds), as Unix seconds.
pub(crate) fn moment(name: &str, value: &str, bound: Bound) -> Result<u32, BadQuery> {
    let instant = parse_instant(name, value, bound)?;
    Ok(
        u32::try_from(instant.timestamp())
            .expect("parse_instant keeps within what the store holds"),
    )
}

/// `from` not after `to`, as the rounds require.
pub(crate) fn ordered(from: Option<u32>, to: Option<u32>) -> Result<(), BadQuery> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => {
            Err(BadQuery("from: must not be after `to`".to_owned()))
        }
        _ => Ok(()),
    }
}

/// Seconds in the first window a page is read in; each next one is [`WIDENING`] times wider.
const FIRST_WINDOW: u64 = 3_600;
const WIDENING: u64 = 8;

/// One page: its rows as JSON objects, with the position of each, and whether more follow.
/// Read window by window of the time column from the page's start (its cursor, `from`, or
/// the first month the table holds), each window wider than the one before, until the page
/// is full or the range ends: a page costs what its rows' windows hold, not what the table
/// holds.
pub async fn fetch(
    reads: &Reads,
    parts: &Parts,
    spec: &Spec,
    query: &RowsQuery,
) -> Result<(Vec<(Map<String, Value>, Position)>, bool), clickhouse::error::Error> {
    let wanted = query.limit as usize + 1;
    let end = query.to.map_or(u64::from(u32::MAX) + 1, u64::from);
    let start = match (&query.after, query.from) {
        (Some((time, _)), _) => Some(*time),
        (None, Some(from)) => Some(from),
        (None, None) => {
            reads
                .run(async |client| parts.first_month(client, spec).await)
                .await?
        }
    };
    let Some(start) = start else {
        return Ok((Vec::new(), false));
    };
    let (mut start, mut width) = (u64::from(start), FIRST_WINDOW);
    let mut rows = Vec::new();
    while rows.len() < wanted && start < end {
        let window = (start, (start + width).min(end));
        let limit = wanted - rows.len();
        let read = async |client: &Client| read_window(client, spec, query, window, limit).await;
        rows.extend(reads.run(read).await?);
        (start, width) = (window.1, width.saturating_mul(WIDENING));
    }
    let has_more = rows.len() > query.limit as usize;
    rows.truncate(query.limit as usize);
    Ok((rows, has_more))
}

/// The current rows of `window` (seconds, end excluded) that meet the query, past its cursor,
/// in the order (time, identity), at most `limit`: the rows of the versions table that meet
/// it whose version is their record's greatest, looked up by key in the identity table for
/// the keys of the window's rows only.
async fn read_window(
    client: &Client,
    spec: &Spec,
    query: &RowsQuery,
    (first, end): (u64, u64),
    limit: usize,
) -> Result<Vec<(Map<String, Value>, Position)>, clickhouse::error::Error> {
    let (table, time) = (spec.versions_table(), spec.time.as_str());
    let (identity, identities) = (spec.identity.join(", "), identity_table_name(spec));
    let key: Vec<&str> = spec.identity.iter().map(String::as_str).collect();
    let rows = Rows {
        versions_table: &table,
        identity_table: &identities,
        key: &key,
        version_column: "version",
    };
    // `end` may be one past the last second a `DateTime` holds.
    let mut conditions = vec![format!(
        "{time} >= toDateTime({first}) AND {time} <= toDateTime({last})",
        last = end - 1
    )];
    conditions.extend(
        query
            .equals
            .iter()
            .map(|(column, _)| format!("{column} = ?")),
    );
    if query.after.is_some() {
        conditions.push(after(spec));
    }
    let current = rows.current_where(&conditions.join(" AND "));
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| {
            let utc = if c.kind == Kind::Timestamp {
                ", 'UTC'"
            } else {
                ""
            };
            format!("toString({name}{utc}) AS {OUT}{name}", name = c.name)
        })
        .collect();
    let sql = format!(
        "SELECT {columns}, toUInt32({time}) AS __time FROM {table} FINAL WHERE {current} \
         ORDER BY {time}, {identity} LIMIT {limit}",
        columns = columns.join(", "),
    );
    let mut statement = client.query(&sql);
    // The conditions appear twice: on the rows and on the keys looked up.
    for _ in 0..2 {
        for (_, value) in &query.equals {
            statement = statement.bind(value.as_str());
        }
        if let Some((time, values)) = &query.after {
            statement = bind_after(statement, spec, *time, values);
        }
    }
    let bytes = statement.fetch_bytes("JSONEachRow")?.collect().await?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| row(spec, line))
        .collect())
}

/// Where the parts of a dataset's versions table are listed: `system.parts` of the one server,
/// or on a cluster those of `<table>_local` on a replica of every shard
/// (`cluster('<cluster>', system, parts)`: the `Distributed` table has no parts of its own).
#[derive(Debug, Clone)]
pub struct Parts {
    sql: String,
    database: String,
    local: bool,
}

impl Parts {
    /// The parts of `database`'s tables in `layout`.
    pub fn of(layout: &Layout, database: &str) -> Parts {
        let (from, local) = match layout.cluster() {
            None => ("system.parts".to_owned(), false),
            Some(cluster) => (format!("cluster('{cluster}', system, parts)"), true),
        };
        Parts {
            sql: format!(
                "SELECT min(partition) FROM {from} WHERE database = ? AND table = ? AND active"
            ),
            database: database.to_owned(),
            local,
        }
    }

    /// The first second of the first month `spec`'s versions table holds rows of (its
    /// partitions are months of the time column: read from the table's parts, not its rows);
    /// `None` when it holds none.
    async fn first_month(
        &self,
        client: &Client,
        spec: &Spec,
    ) -> Result<Option<u32>, clickhouse::error::Error> {
        let table = match self.local {
            false => spec.versions_table(),
            true => format!("{}_local", spec.versions_table()),
        };
        let partition: String = (client.query(&self.sql))
            .bind(&self.database)
            .bind(table)
            .fetch_one()
            .await?;
        let month = |yyyymm: u32| NaiveDate::from_ymd_opt(yyyymm as i32 / 100, yyyymm % 100, 1);
        Ok(partition
            .parse::<u32>()
            .ok()
            .and_then(month)
            .and_then(|day| u32::try_from(day.and_time(NaiveTime::MIN).and_utc().timestamp()).ok()))
    }
}

/// `(time, identity…) > (?, ?…)`, spelled out (ClickHouse 18.16 compares no tuples).
fn after(spec: &Spec) -> String {
    let keys: Vec<&str> = std::iter::once(spec.time.as_str())
        .chain(spec.identity.iter().map(String::as_str))
        .collect();
    let mut terms = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let equal: Vec<String> = keys[..i]
            .iter()
            .map(|k| format!("{k} = {}", placeholder(spec, k)))
            .collect();
        let greater = format!("{key} > {}", placeholder(spec, key));
        terms.push(format!(
            "({})",
            equal
                .into_iter()
                .chain([greater])
                .collect::<Vec<_>>()
                .join(" AND ")
        ));
    }
    format!("({})", terms.join(" OR "))
}

fn placeholder(spec: &Spec, key: &str) -> &'static str {
    if key == spec.time {
        "toDateTime(?)"
    } else {
        "?"
    }
}

/// Binds the keyset's values in the order [`after`] names them.
fn bind_after(
    mut statement: clickhouse::query::Query,
    spec: &Spec,
    time: u32,
    values: &[String],
) -> clickhouse::query::Query {
    let keys = spec.identity.len() + 1;
    for i in 0..keys {
        for j in 0..=i {
            statement = match j {
                0 => statement.bind(time),
                _ => bind_value(statement, spec, &spec.identity[j - 1], &values[j - 1]),
            };
        }
    }
    statement
}

fn bind_value(
    statement: clickhouse::query::Query,
    spec: &Spec,
    column: &str,
    value: &str,
) -> clickhouse::query::Query {
    match spec.column(column).map(|c| c.kind) {
        Some(Kind::Uint64) => statement.bind(value.parse::<u64>().unwrap_or_default()),
        Some(Kind::Int64) => statement.bind(value.parse::<i64>().unwrap_or_default()),
        _ => statement.bind(value),
    }
}

/// One row of `JSONEachRow` (every column as text) as its answer, and its position.
fn row(spec: &Spec, line: &[u8]) -> (Map<String, Value>, Position) {
    let mut fields: Map<String, Value> = serde_json::from_slice(line).unwrap_or_default();
    let time = fields
        .remove("__time")
        .and_then(|t| t.as_u64())
        .unwrap_or_default() as u32;
    let mut answer = Map::new();
    for column in &spec.columns {
        let text = fields
            .remove(&format!("{OUT}{}", column.name))
            .unwrap_or(Value::Null);
        answer.insert(column.name.clone(), typed(column.kind, text));
    }
    let identity = spec
        .identity
        .iter()
        .map(|name| match &answer[name] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect();
    (answer, (time, identity))
}

/// A value read as text, as its answer: numbers for integers and floats, RFC 3339 for
/// timestamps, exact text for decimals and strings; null stays null.
pub(crate) fn typed(kind: Kind, text: Value) -> Value {
    let Value::String(text) = text else {
        return text;
    };
    match kind {
        Kind::Int64 | Kind::Uint64 => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        // A float stays a float in JSON, also when ClickHouse writes it without a point (`4`).
        Kind::Float32 | Kind::Float64 => match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Value::from(number),
            _ => Value::String(text),
        },
        Kind::Timestamp => Value::String(format!("{}Z", text.replacen(' ', "T", 1))),
        Kind::String | Kind::Decimal => Value::String(text),
    }
}
