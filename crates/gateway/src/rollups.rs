//! A dataset's rollup endpoints (`kind = "rollup"`, `GET /datasets/{name}/{endpoint}`): the
//! endpoint's measures per bucket (its `bucket`, or the request's `granularity`) and group,
//! read like `GET /aggregated_game_rounds` from the rollups the processor keeps
//! (`sluice_rollup::datasets`) with the hours not processed yet summed from the current raw
//! rows ([`crate::answer`]), in the order (bucket, group-by columns), a page at a time behind a
//! signed cursor.
//!
//! A query string becomes a [`RollupQuery`] first (unknown parameters, malformed values and
//! cursors are a 400 before anything is charged). Every value is bound, never spliced into the
//! SQL; identifiers come from checked specs.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use sluice_rollup::datasets::{answer_expression, EndpointRollups};
use sluice_schema::dataset::endpoint::{Bucket, Endpoint, Function, FROM, GRANULARITY, TO};
use sluice_schema::dataset::{Catalog, Dataset, Kind, Spec};

use crate::answer::{self, FetchError, PageQuery, Shape, Value};
use crate::cursor::CursorSigner;
use crate::query::{BadQuery, Bound, Granularity, Order};
use crate::rows::{limit, moment, ordered, typed};

/// The shapes of every rollup endpoint of a catalog, built once at start (a rollup's names
/// live as long as the process), by `dataset/endpoint`.
#[derive(Debug, Clone, Default)]
pub struct Shapes {
    shapes: HashMap<String, Shape>,
}

impl Shapes {
    /// The rollup endpoints of `catalog`'s datasets, in ClickHouse database `database`.
    pub fn of(catalog: &Catalog, database: &str) -> Shapes {
        let mut shapes = HashMap::new();
        for dataset in catalog.iter() {
            let spec = &dataset.spec;
            for endpoint in &spec.endpoints {
                let Some(rollups) = EndpointRollups::of(spec, endpoint) else {
                    continue;
                };
                let columns = columns(endpoint);
                let shape = Shape::new(database, rollups.hourly, rollups.daily, columns);
                shapes.insert(format!("{}/{}", spec.name, endpoint.name), shape);
            }
        }
        Shapes { shapes }
    }

    /// The shape of `endpoint` of `dataset`.
    pub fn get(&self, dataset: &str, endpoint: &str) -> Option<&Shape> {
        self.shapes.get(&format!("{dataset}/{endpoint}"))
    }
}

/// The page's columns after `start`: every group-by value, then every measure, as text in one
/// array (a row of any endpoint is read as one type, [`CellsRow`]).
fn columns(endpoint: &Endpoint) -> String {
    let cells: Vec<String> = endpoint
        .group_by
        .iter()
        .cloned()
        .chain(
            endpoint
                .measures
                .iter()
                .filter_map(|m| answer_expression(endpoint, &m.name)),
        )
        .map(|expression| format!("toNullable(toString({expression}))"))
        .collect();
    format!("[{}] AS cells", cells.join(", "))
}

/// One bucket and group of a page: its start, then [`columns`]' cells.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub struct CellsRow {
    start: u32,
    cells: Vec<Option<String>>,
}

/// Where a page starts: after the bucket starting at this second and these group-by values.
type Position = (u32, Vec<String>);

/// One request to a rollup endpoint, parsed.
#[derive(Debug, Clone)]
pub struct RollupQuery {
    page: PageQuery,
    /// The canonical filters a cursor is bound to.
    filters: String,
}

impl RollupQuery {
    /// Reads `params` against `endpoint` of `dataset`.
    pub fn parse(
        dataset: &Dataset,
        endpoint: &Endpoint,
        params: &[(String, String)],
        cursors: &CursorSigner,
    ) -> Result<RollupQuery, BadQuery> {
        let spec = &dataset.spec;
        let takes = |name: &str| endpoint.filters.iter().any(|f| f == name);
        let mut page = PageQuery {
            from: None,
            to: None,
            granularity: match endpoint.bucket {
                Some(Bucket::Day) => Granularity::Day,
                _ => Granularity::Hour,
            },
            order: Order::Ascending,
            page_size: endpoint.page_size,
            equals: Vec::new(),
            after: None,
        };
        let mut cursor = None;
        for (name, value) in params.iter().filter(|(_, value)| !value.is_empty()) {
            match name.as_str() {
                "limit" => page.page_size = limit(value, endpoint.max_page_size)?,
                "cursor" => cursor = Some(value.as_str()),
                FROM if takes(FROM) => {
                    page.from = Some(i64::from(moment(FROM, value, Bound::Inclusive)?))
                }
                TO if takes(TO) => page.to = Some(i64::from(moment(TO, value, Bound::Exclusive)?)),
                GRANULARITY if takes(GRANULARITY) => page.granularity = granularity(value)?,
                column if takes(column) => {
                    let stored = dataset.plan.filter_value(column, value);
                    let stored = stored.map_err(|e| BadQuery(format!("`{column}`: {e}")))?;
                    page.equals
                        .push((column.to_owned(), bound(spec, column, &stored)));
                }
                other => {
                    let known = endpoint.filters.join(", ");
                    return Err(BadQuery(format!("unknown parameter `{other}` (this endpoint takes {known}, limit and cursor)")));
                }
            }
        }
        let seconds = |t: Option<i64>| t.map(|t| t as u32);
        ordered(seconds(page.from), seconds(page.to))?;
        page.equals.sort_by(|a, b| a.0.cmp(&b.0));
        let filters = format!(
            "{}/{}|{:?}|{:?}|{:?}|{:?}",
            spec.name, endpoint.name, page.equals, page.from, page.to, page.granularity
        );
        if let Some(cursor) = cursor {
            let (start, groups): Position = cursors
                .open(&filters, cursor)
                .ok()
                .and_then(|payload| serde_json::from_slice(&payload).ok())
                .ok_or_else(|| BadQuery("`cursor`: not issued for these filters".to_owned()))?;
            let groups = endpoint.group_by.iter().zip(&groups);
            let groups = groups.map(|(column, value)| bound(spec, column, value));
            page.after = Some((start, groups.collect()));
        }
        Ok(RollupQuery { page, filters })
    }

    /// The signed cursor of the page after `position`.
    fn cursor_after(&self, position: &Position, cursors: &CursorSigner) -> String {
        let payload = serde_json::to_vec(position).expect("a position serializes");
        cursors.seal(&self.filters, &payload)
    }
}

fn granularity(value: &str) -> Result<Granularity, BadQuery> {
    match value {
        "hour" => Ok(Granularity::Hour),
        "day" => Ok(Granularity::Day),
        _ => Err(BadQuery("`granularity` must be `hour` or `day`".to_owned())),
    }
}

/// A group-by column's stored value (as text), bound as the column holds it.
fn bound(spec: &Spec, column: &str, stored: &str) -> Value {
    match spec.column(column).map(|c| c.kind) {
        Some(Kind::Uint64) => Value::Number(stored.parse().unwrap_or_default()),
        Some(Kind::Int64) => Value::Signed(stored.parse().unwrap_or_default()),
        _ => Value::Text(stored.to_owned()),
    }
}

/// One page: its rows as JSON objects, the next page's cursor and whether more follow.
pub async fn fetch(
    source: &answer::Source,
    shape: &Shape,
    spec: &Spec,
    endpoint: &Endpoint,
    query: &RollupQuery,
    cursors: &CursorSigner,
) -> Result<(Vec<Map<String, Json>>, Option<String>), FetchError> {
    let (rows, has_more) = answer::fetch_page::<CellsRow>(source, shape, &query.page).await?;
    let next = match rows.last() {
        Some(last) if has_more => {
            let groups = last.cells[..endpoint.group_by.len()].iter();
            let position = (
                last.start,
                groups.map(|c| c.clone().unwrap_or_default()).collect(),
            );
            Some(query.cursor_after(&position, cursors))
        }
        _ => None,
    };
    let bucket = match query.page.granularity {
        Granularity::Hour => "hour",
        Granularity::Day => "day",
    };
    let rows = rows
        .into_iter()
        .map(|row| answer_row(spec, endpoint, bucket, row))
        .collect();
    Ok((rows, next))
}

/// A row as its answer: the bucket's start (RFC 3339), the group-by values and the measures,
/// typed as their columns (exact text for decimals; a mean of no values is null).
fn answer_row(spec: &Spec, endpoint: &Endpoint, bucket: &str, row: CellsRow) -> Map<String, Json> {
    let mut answer = Map::new();
    let start = DateTime::from_timestamp(i64::from(row.start), 0)
        .expect("every u32 of seconds is within chrono's range");
    let start = start.to_rfc3339_opts(SecondsFormat::Secs, true);
    answer.insert(bucket.to_owned(), Json::String(start));
    let kind = |column: &str| spec.column(column).map_or(Kind::String, |c| c.kind);
    let names = endpoint.group_by.iter().map(|g| (g.as_str(), kind(g)));
    let measures = endpoint.measures.iter().map(|m| {
        let column = m.column.as_deref().unwrap_or_default();
        let kind = match m.function {
            Function::Count => Kind::Uint64,
            Function::Avg => Kind::Float64,
            Function::Sum => kind(column),
        };
        (m.name.as_str(), kind)
    });
    for ((name, kind), cell) in names.chain(measures).zip(row.cells) {
        let value = cell.map_or(Json::Null, |text| typed(kind, Json::String(text)));
        answer.insert(name.to_owned(), value);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Dataset {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        Catalog::read(&dir).unwrap().get(name).unwrap().clone()
    }

    #[test]
    fn the_page_reads_groups_then_measures_as_text_cells() {
        let reviews = shipped("amazon_reviews");
        assert_eq!(
            columns(&reviews.spec.endpoints[0]),
            "[toNullable(toString(asin)), toNullable(toString(sum(reviews))), \
             toNullable(toString(if(sum(rating__n) = 0, NULL, toFloat64(sum(rating)) / sum(rating__n))))] AS cells"
        );
    }

    #[test]
    fn a_row_is_answered_with_its_bucket_and_typed_values() {
        let events = shipped("events");
        let row = CellsRow {
            start: 86_400,
            cells: vec![
                Some("click".into()),
                Some("3".into()),
                Some("1.5000".into()),
            ],
        };
        let answer = answer_row(&events.spec, &events.spec.endpoints[0], "day", row);
        assert_eq!(
            Json::Object(answer).to_string(),
            r#"{"day":"1970-01-02T00:00:00Z","event_type":"click","events":3,"value":"1.5000"}"#
        );
    }

    #[test]
    fn parameters_are_typed_and_bound_to_the_cursor() {
        let events = shipped("events");
        let endpoint = &events.spec.endpoints[0];
        let cursors = CursorSigner::new(b"secret");
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let query = RollupQuery::parse(
            &events,
            endpoint,
            &params(&[
                ("event_type", "click"),
                ("granularity", "day"),
                ("from", "2024-01-02"),
            ]),
            &cursors,
        )
        .unwrap();
        assert_eq!(query.page.granularity, Granularity::Day);
        assert_eq!(query.page.from, Some(1_704_153_600));
        assert_eq!(
            query.page.equals,
            [("event_type".to_owned(), Value::Text("click".to_owned()))]
        );
        let cursor = query.cursor_after(&(86_400, vec!["click".into()]), &cursors);
        let next = params(&[
            ("event_type", "click"),
            ("granularity", "day"),
            ("from", "2024-01-02"),
            ("cursor", &cursor),
        ]);
        let next = RollupQuery::parse(&events, endpoint, &next, &cursors).unwrap();
        assert_eq!(
            next.page.after,
            Some((86_400, vec![Value::Text("click".into())]))
        );
        let other = params(&[
            ("event_type", "view"),
            ("granularity", "day"),
            ("cursor", &cursor),
        ]);
        assert!(RollupQuery::parse(&events, endpoint, &other, &cursors).is_err());
        for bad in [
            ("granularity", "week"),
            ("user_id", "u"),
            ("limit", "0"),
            ("from", "2024-01-02 03:04"),
            ("to", "2106-01-02"),
        ] {
            let error = RollupQuery::parse(&events, endpoint, &params(&[bad]), &cursors);
            assert!(error.is_err(), "{bad:?}");
        }
    }
}
