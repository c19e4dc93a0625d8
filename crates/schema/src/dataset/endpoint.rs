//! A dataset's endpoints, as its spec declares them (`[[endpoints]]`): what the gateway serves
//! at `GET /datasets/{name}/{endpoint}`. An endpoint is a **rollup** (measures per time bucket
//! and group) or a listing of **rows** (the latest version of each record), with typed
//! filters, page sizes and a cost in credits.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{identifier, problem, Kind, Spec};

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its name: the last segment of its path.
    pub name: String,
    pub kind: EndpointKind,
    /// What it answers, for people (its OpenAPI description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// Rollups: the time bucket of each answer row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Bucket>,
    /// Rollups: the columns each answer row is for, besides its bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Rollups: what each answer row holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<Measure>,
    /// The query parameters it takes: a column's name (equal to), `from` and `to` (the time
    /// column's range, `from` included, `to` excluded) and, for a rollup whose bucket is
    /// `granularity`, `granularity` (`hour` or `day`). Any other parameter is a 400.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Answer rows per page when the request names no `limit`. Default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The largest `limit` accepted. Default 1000.
    #[serde(default = "default_max_page_size")]
    pub max_page_size: u32,
    /// Credits a page costs. Default 1.
    #[serde(default = "default_cost")]
    pub cost: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Rollup,
    Rows,
}

/// A rollup's time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
    /// Hour or day, as the request's `granularity` says.
    Granularity,
}

/// One measure of a rollup.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// Its name in the answer.
    pub name: String,
    #[serde(rename = "fn")]
    pub function: Function,
    /// The column it is of (not for `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// Records in the bucket and group.
    Count,
    /// The sum of a numeric column (exact for integers and decimals).
    Sum,
    /// The mean of a numeric column.
    Avg,
}

/// The filters every endpoint may take that are not columns.
pub const FROM: &str = "from";
pub const TO: &str = "to";
pub const GRANULARITY: &str = "granularity";

fn default_page_size() -> u32 {
    100
}

fn default_max_page_size() -> u32 {
    1000
}

fn default_cost() -> u64 {
    1
}

type Problem = (String, String, String);

impl Endpoint {
    /// The first problem of endpoint number `index` of `spec`, as (field, problem, fix).
    pub(super) fn check(&self, spec: &Spec, index: usize) -> Result<(), Problem> {
        let field = format!("endpoints[{index}]");
        identifier(&format!("{field}.name"), &self.name)?;
        match self.kind {
            EndpointKind::Rows => self.check_rows(&field)?,
            EndpointKind::Rollup => self.check_rollup(spec, &field)?,
        }
        self.check_filters(spec, &field)?;
        if self.page_size == 0 || self.page_size > self.max_page_size {
            let fix = "give 1 ≤ page_size ≤ max_page_size";
            return Err(problem(&field, "a page size out of its bounds", fix));
        }
        Ok(())
    }

    fn check_rows(&self, field: &str) -> Result<(), Problem> {
        if self.bucket.is_some() || !self.group_by.is_empty() || !self.measures.is_empty() {
            let fix = "remove `bucket`, `group_by` and `measures`, or make it a rollup";
            return Err(problem(field, "a listing of rows with rollup fields", fix));
        }
        Ok(())
    }

    fn check_rollup(&self, spec: &Spec, field: &str) -> Result<(), Problem> {
        if self.bucket.is_none() {
            let fix = "add `bucket = \"hour\"`, `\"day\"` or `\"granularity\"`";
            return Err(problem(field, "a rollup without a bucket", fix));
        }
        if self.measures.is_empty() {
            let fix = "add `measures = [{ name = \"records\", fn = \"count\" }]`";
            return Err(problem(field, "a rollup without measures", fix));
        }
        for name in &self.group_by {
            let Some(column) = spec.column(name) else {
                let fix = "group by columns of the dataset";
                return Err(problem(
                    field,
                    &format!("no column `{name}` to group by"),
                    fix,
                ));
            };
            // Groups are a page's sort key (keyset cursors compare them exactly).
            if column.nullable || !matches!(column.kind, Kind::String | Kind::Int64 | Kind::Uint64)
            {
                let fix = "group by a string or integer column that is not nullable";
                return Err(problem(
                    field,
                    &format!("`{name}` cannot be grouped by"),
                    fix,
                ));
            }
            if name.ends_with("__n") {
                let fix = "rename the column: names ending in `__n` hold a mean's count";
                return Err(problem(
                    field,
                    &format!("`{name}` cannot be grouped by"),
                    fix,
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, measure) in self.measures.iter().enumerate() {
            let field = format!("{field}.measures[{i}]");
            identifier(&format!("{field}.name"), &measure.name)?;
            if !names.insert(measure.name.as_str()) || self.group_by.contains(&measure.name) {
                let fix = "give each measure a name of its own";
                return Err(problem(&field, &format!("`{}` twice", measure.name), fix));
            }
            measure.check(spec, &field)?;
        }
        Ok(())
    }

    fn check_filters(&self, spec: &Spec, field: &str) -> Result<(), Problem> {
        let mut seen = HashSet::new();
        for name in &self.filters {
            if !seen.insert(name.as_str()) {
                return Err(problem(
                    field,
                    &format!("filter `{name}` twice"),
                    "name it once",
                ));
            }
            let granularity = self.bucket == Some(Bucket::Granularity);
            match name.as_str() {
                FROM | TO => {}
                GRANULARITY if granularity => {}
                GRANULARITY => {
                    let fix = "set `bucket = \"granularity\"`, or remove the filter";
                    return Err(problem(field, "`granularity` without a chosen bucket", fix));
                }
                column if spec.column(column).is_none() => {
                    let fix = "filter on columns of the dataset, `from`, `to` or `granularity`";
                    return Err(problem(
                        field,
                        &format!("no column `{column}` to filter"),
                        fix,
                    ));
                }
                column
                    if !spec.column(column).is_some_and(|c| {
                        matches!(c.kind, Kind::String | Kind::Int64 | Kind::Uint64)
                    }) =>
                {
                    let fix = "filter on a string or integer column";
                    return Err(problem(
                        field,
                        &format!("`{column}` cannot be filtered on"),
                        fix,
                    ));
                }
                column
                    if self.kind == EndpointKind::Rollup
                        && !self.group_by.iter().any(|g| g == column) =>
                {
                    let fix = "add the column to `group_by`: a rollup filters on its groups";
                    return Err(problem(
                        field,
                        &format!("`{column}` is not grouped by"),
                        fix,
                    ));
                }
                _ => {}
            }
        }
        if self.bucket == Some(Bucket::Granularity) && !seen.contains(GRANULARITY) {
            let fix = "add `granularity` to `filters`";
            return Err(problem(field, "a chosen bucket no filter chooses", fix));
        }
        Ok(())
    }
}

impl Measure {
    fn check(&self, spec: &Spec, field: &str) -> Result<(), Problem> {
        match (self.function, &self.column) {
            (Function::Count, None) => Ok(()),
            (Function::Count, Some(_)) => Err(problem(
                field,
                "`count` of a column",
                "remove `column`: count counts records",
            )),
            (_, None) => Err(problem(
                field,
                "a measure without its column",
                "add `column = \"…\"`",
            )),
            (_, Some(name)) => match spec.column(name).map(|c| c.kind) {
                Some(
                    Kind::Int64 | Kind::Uint64 | Kind::Float32 | Kind::Float64 | Kind::Decimal,
                ) => Ok(()),
                Some(_) => {
                    let fix = "sum or average a numeric column";
                    Err(problem(field, &format!("`{name}` is not a number"), fix))
                }
                None => Err(problem(
                    field,
                    &format!("no column `{name}`"),
                    "name a column of the dataset",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Catalog;
    use super::*;

    fn shipped(name: &str) -> Spec {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        Catalog::read(&dir).unwrap().get(name).unwrap().spec.clone()
    }

    /// `endpoint` (TOML) checked as the only endpoint of the `events` spec.
    fn check(endpoint: &str) -> Result<(), String> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/events.toml");
        let text = std::fs::read_to_string(dir).unwrap();
        let text = match text.find("[[endpoints]]") {
            Some(at) => &text[..at],
            None => &text,
        };
        Spec::parse("events.toml", &format!("{text}\n[[endpoints]]\n{endpoint}"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_endpoints_are_the_issues() {
        let reviews = shipped("amazon_reviews");
        let daily = &reviews.endpoints[0];
        assert_eq!(
            (daily.name.as_str(), daily.kind, daily.bucket),
            ("daily_by_asin", EndpointKind::Rollup, Some(Bucket::Day))
        );
        assert_eq!(daily.filters, ["asin", "from", "to"]);
        let rows = &shipped("records").endpoints[0];
        assert_eq!(
            (rows.name.as_str(), rows.kind, rows.page_size, rows.cost),
            ("rows", EndpointKind::Rows, 100, 1)
        );
        let by_type = &shipped("events").endpoints[0];
        assert_eq!(by_type.bucket, Some(Bucket::Granularity));
        assert_eq!(by_type.measures[1].function, Function::Sum);
    }

    #[test]
    fn a_mistaken_endpoint_names_its_field_and_the_fix() {
        let cases = [
            (
                "name = \"x\"\nkind = \"rollup\"\nbucket = \"day\"\nmeasures = [{ name = \"n\", fn = \"sum\", column = \"event_type\" }]",
                "`endpoints[0].measures[0]`: `event_type` is not a number; sum or average a numeric column",
            ),
            (
                "name = \"x\"\nkind = \"rollup\"\nbucket = \"day\"\nmeasures = [{ name = \"n\", fn = \"count\" }]\nfilters = [\"user_id\"]",
                "`endpoints[0]`: `user_id` is not grouped by; add the column to `group_by`: a rollup filters on its groups",
            ),
            (
                "name = \"x\"\nkind = \"rows\"\nfilters = [\"granularity\"]",
                "`endpoints[0]`: `granularity` without a chosen bucket; set `bucket = \"granularity\"`, or remove the filter",
            ),
            (
                "name = \"x\"\nkind = \"rollup\"\nbucket = \"granularity\"\nmeasures = [{ name = \"n\", fn = \"count\" }]",
                "`endpoints[0]`: a chosen bucket no filter chooses; add `granularity` to `filters`",
            ),
            (
                "name = \"x\"\nkind = \"rows\"\nfilters = [\"country\"]",
                "`endpoints[0]`: no column `country` to filter; filter on columns of the dataset, `from`, `to` or `granularity`",
            ),
            (
                "name = \"x\"\nkind = \"rollup\"\nbucket = \"day\"\ngroup_by = [\"value\"]\nmeasures = [{ name = \"n\", fn = \"count\" }]",
                "`endpoints[0]`: `value` cannot be grouped by; group by a string or integer column that is not nullable",
            ),
            (
                "name = \"x\"\nkind = \"rows\"\npage_size = 5000",
                "`endpoints[0]`: a page size out of its bounds; give 1 ≤ page_size ≤ max_page_size",
            ),
        ];
        for (endpoint, expected) in cases {
            let error = check(endpoint).unwrap_err();
            assert_eq!(error, format!("events.toml: {expected}"), "{endpoint}");
        }
        assert_eq!(
            check("name = \"x\"\nkind = \"rows\"\nfilters = [\"user_id\", \"from\"]"),
            Ok(())
        );
    }
}
