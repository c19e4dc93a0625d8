//! Listings of a dataset's rows (`kind = "rows"` endpoints, `GET /datasets/{name}/{endpoint}`):
//! the latest version of each record, filtered on the latest version's values, in the order
//! (time, identity), a page at a time behind a signed cursor.
//!
//! A query string becomes a [`RowsQuery`] first (unknown parameters, malformed values and
//! cursors are a 400 before anything is charged); [`fetch`] then reads one page. Every value
//! is bound, never spliced into the SQL; identifiers come from checked specs.

use clickhouse::Client;
use serde_json::{Map, Value};
use sluice_schema::dataset::endpoint::{Endpoint, FROM, TO};
use sluice_schema::dataset::{Dataset, Kind, Spec};

use crate::cursor::CursorSigner;
use crate::query::{parse_instant, BadQuery, Bound};

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

/// One page: its rows as JSON objects, with the position of each, and whether more follow.
pub async fn fetch(
    client: &Client,
    spec: &Spec,
    query: &RowsQuery,
) -> Result<(Vec<(Map<String, Value>, Position)>, bool), clickhouse::error::Error> {
    let table = spec.versions_table();
    let identity = spec.identity.join(", ");
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
    let mut conditions = vec![format!(
        "({identity}, version) IN (SELECT {identity}, max(version) FROM {table} GROUP BY {identity})"
    )];
    conditions.extend(
        query
            .equals
            .iter()
            .map(|(column, _)| format!("{column} = ?")),
    );
    if query.from.is_some() {
        conditions.push(format!("{} >= toDateTime(?)", spec.time));
    }
    if query.to.is_some() {
        conditions.push(format!("{} < toDateTime(?)", spec.time));
    }
    if query.after.is_some() {
        conditions.push(after(spec));
    }
    let sql = format!(
        "SELECT {columns}, toUInt32({time}) AS __time FROM {table} FINAL WHERE {conditions} \
         ORDER BY {time}, {identity} LIMIT ?",
        columns = columns.join(", "),
        time = spec.time,
        conditions = conditions.join(" AND "),
    );
    let mut statement = client.query(&sql);
    for (_, value) in &query.equals {
        statement = statement.bind(value.as_str());
    }
    for moment in [query.from, query.to].into_iter().flatten() {
        statement = statement.bind(moment);
    }
    if let Some((time, values)) = &query.after {
        statement = bind_after(statement, spec, *time, values);
    }
    let statement = statement.bind(query.limit + 1);
    let bytes = statement.fetch_bytes("JSONEachRow")?.collect().await?;
    let mut rows: Vec<_> = bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| row(spec, line))
        .collect();
    let has_more = rows.len() > query.limit as usize;
    rows.truncate(query.limit as usize);
    Ok((rows, has_more))
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
