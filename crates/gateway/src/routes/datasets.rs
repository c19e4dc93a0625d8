//! `GET /datasets`: the datasets this gateway knows of, their columns and their endpoints, as
//! their specs declare them (`datasets/<name>.toml`, `SLUICE_GATEWAY_DATASETS_DIR`). Public,
//! like `/openapi.json`: it describes the API, not the data.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use sluice_schema::dataset::endpoint::{Bucket, Endpoint, EndpointKind, Function, Measure};
use sluice_schema::dataset::plan::intern;
use sluice_schema::dataset::{Column, Dataset, GAME_ROUNDS};
use utoipa::ToSchema;

use super::auth::ClientKey;
use super::problems::BadApiKey;
use super::rounds::{self, admit, metered, query_slot, read_or_refund};
use super::state::AppState;
use crate::error::{ApiError, Problem};
use crate::rollups::{self, RollupQuery};
use crate::rows::{self, RowsQuery};

/// Every dataset.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetInfo>,
}

/// One dataset.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// The columns whose values identify a record: the latest version of one wins.
    pub identity: Vec<String>,
    /// The timestamp column answers are bucketed and filtered by (`from`, `to`).
    pub time: String,
    pub columns: Vec<ColumnInfo>,
    pub endpoints: Vec<EndpointInfo>,
}

/// One column.
#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// `string`, `int64`, `uint64`, `float32`, `float64`, `decimal` or `timestamp`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Decimals: digits after the point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    pub nullable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

/// One endpoint: its path, and the spec's declaration of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointInfo {
    /// Where it is served: `/datasets/{dataset}/{endpoint}`.
    pub path: String,
    /// Another path that answers exactly the same (parameters, answer, credits, ledger line,
    /// cursors): `game_rounds`' `aggregated` is `/aggregated_game_rounds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub endpoint: Endpoint,
}

/// The datasets, their columns and their endpoints.
#[utoipa::path(
    get, path = "/datasets", tag = "datasets",
    responses((status = 200, description = "Every dataset this gateway knows of", body = DatasetList)),
)]
pub async fn list_datasets(state: web::Data<AppState>) -> HttpResponse {
    let datasets = state.datasets.iter().map(|d| info(d, &state)).collect();
    HttpResponse::Ok().json(DatasetList { datasets })
}

fn info(dataset: &Dataset, state: &AppState) -> DatasetInfo {
    let spec = &dataset.spec;
    let mut endpoints: Vec<EndpointInfo> = (spec.endpoints.iter())
        .map(|endpoint| EndpointInfo {
            path: format!("/datasets/{}/{}", spec.name, endpoint.name),
            same_as: None,
            endpoint: endpoint.clone(),
        })
        .collect();
    if spec.name == GAME_ROUNDS {
        endpoints.push(rounds_endpoint(state));
    }
    DatasetInfo {
        name: spec.name.clone(),
        doc: spec.doc.clone(),
        identity: spec.identity.clone(),
        time: spec.time.clone(),
        columns: spec.columns.iter().map(column).collect(),
        endpoints,
    }
}

/// `GET /aggregated_game_rounds` as `game_rounds`' endpoint: its own rollups (not the spec's),
/// its own filter names (`player_id`, `game_id`) and its computed `ggr`, so its declaration
/// here says what it sums and where it is documented.
fn rounds_endpoint(state: &AppState) -> EndpointInfo {
    let sum = |column: &str| Measure {
        name: column.to_owned(),
        function: Function::Sum,
        column: Some(column.to_owned()),
    };
    let mut measures: Vec<Measure> = ["real_amount_bet", "bonus_amount_bet"]
        .into_iter()
        .chain(["real_amount_win", "bonus_amount_win"])
        .map(sum)
        .collect();
    measures.push(Measure {
        name: "rounds".to_owned(),
        function: Function::Count,
        column: None,
    });
    let config = &state.config;
    EndpointInfo {
        path: rounds::ALIAS.to_owned(),
        same_as: Some("/aggregated_game_rounds".to_owned()),
        endpoint: Endpoint {
            name: "aggregated".to_owned(),
            kind: EndpointKind::Rollup,
            doc: Some(
                "Exact totals per player (`player_id`, the column `user_id`) and game per hour \
                 or day, with `ggr` (bets minus wins); filtered by `player_id`, `game_id`, \
                 `from`, `to`, `granularity`; paged by `page_size` and `cursor` \
                 (`GET /aggregated_game_rounds` in the OpenAPI document)."
                    .to_owned(),
            ),
            bucket: Some(Bucket::Granularity),
            group_by: vec!["user_id".to_owned(), "game_id".to_owned()],
            measures,
            filters: ["player_id", "game_id", "from", "to", "granularity"]
                .map(str::to_owned)
                .to_vec(),
            page_size: config.default_limit,
            max_page_size: config.max_limit,
            cost: config.query_cost,
        },
    }
}

fn column(column: &Column) -> ColumnInfo {
    ColumnInfo {
        name: column.name.clone(),
        kind: column.kind.name().to_owned(),
        scale: column.scale,
        nullable: column.nullable,
        doc: column.doc.clone(),
    }
}

/// A page of a dataset's endpoint: `data` (its rows), `next_cursor` and `has_more`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetPage {
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Send it as `cursor` (with the same filters) for the next page; `null`: this is the last.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// One page of a dataset's endpoint, as `GET /datasets` describes it: its `filters` as query
/// parameters (any other is a 400), `limit` and `cursor`. Each endpoint of the gateway's
/// datasets is also documented at its own path, typed from its spec (`dataset_docs.rs`). A listing of rows (`kind = "rows"`)
/// answers the latest version of each record in the order (time, identity); a rollup
/// (`kind = "rollup"`) answers its measures per bucket (`hour` or `day`, its `bucket` or the
/// request's `granularity`) and group, in the order (bucket, group), exact like
/// `GET /aggregated_game_rounds`. Each page costs the endpoint's `cost`, charged like
/// `GET /aggregated_game_rounds` (a malformed request costs nothing, a failed query is
/// refunded).
#[utoipa::path(
    get, path = "/datasets/{name}/{endpoint}", tag = "datasets",
    params(
        ("name" = String, Path, description = "The dataset"),
        ("endpoint" = String, Path, description = "The endpoint, as `GET /datasets` lists it"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of rows", body = DatasetPage,
            headers(
                ("X-Credits-Remaining" = u64, description = "Credits left after this request"),
                ("X-RateLimit-Limit" = u32, description = "Requests allowed per window"),
                ("X-RateLimit-Remaining" = u64, description = "Requests that may be sent right now"),
                ("X-RateLimit-Reset" = u64, description = "Seconds until the budget is full again"),
            )),
        (status = 400, description = "An unknown parameter, a malformed value or cursor (not charged)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = BadApiKey),
        (status = 402, description = "Not enough credits", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dataset or endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (not charged)", body = Problem, content_type = "application/problem+json",
            headers(
                ("Retry-After" = u64, description = "Seconds to wait before the next request is allowed"),
                ("X-RateLimit-Limit" = u32, description = "Requests allowed per window"),
                ("X-RateLimit-Remaining" = u64, description = "Always 0"),
                ("X-RateLimit-Reset" = u64, description = "Seconds until the budget is full again"),
            )),
        (status = 503, description = "Redis or ClickHouse unavailable, or the dataset's tables not created yet (refunded); or every query slot stayed busy for `SLUICE_GATEWAY_QUERY_QUEUE_WAIT_MS` (not charged)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 504, description = "ClickHouse did not answer in time (refunded)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn dataset_endpoint(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    params: web::Query<Vec<(String, String)>>,
    ClientKey(key): ClientKey,
) -> Result<HttpResponse, ApiError> {
    let (name, endpoint_name) = path.into_inner();
    let dataset = state
        .datasets
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("there is no dataset `{name}`")))?;
    let endpoint = dataset
        .spec
        .endpoints
        .iter()
        .find(|e| e.name == endpoint_name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "dataset `{name}` has no endpoint `{endpoint_name}`"
            ))
        })?;
    let label = intern(&format!("GET /datasets/{name}/{endpoint_name}"));
    let (data, next_cursor, admission) = match endpoint.kind {
        EndpointKind::Rows => {
            let query = RowsQuery::parse(dataset, endpoint, &params, &state.cursors)?;
            let _slot = query_slot(&state).await?;
            let admission = admit(&state, &key, endpoint.cost, label).await?;
            let read = rows::fetch(&state.reads, &state.parts, &dataset.spec, &query);
            let (rows, has_more) = read_or_refund(&state, &admission, read).await?;
            let next_cursor = match rows.last() {
                Some((_, position)) if has_more => {
                    Some(query.cursor_after(position, &state.cursors))
                }
                _ => None,
            };
            let data = rows.into_iter().map(|(row, _)| row).collect();
            (data, next_cursor, admission)
        }
        EndpointKind::Rollup => {
            let shape = (state.rollups.get(&name, &endpoint_name))
                .expect("every rollup endpoint of the catalog has its shape");
            let query = RollupQuery::parse(dataset, endpoint, &params, &state.cursors)?;
            let _slot = query_slot(&state).await?;
            let admission = admit(&state, &key, endpoint.cost, label).await?;
            let spec = &dataset.spec;
            let read = rollups::fetch(&state.rounds, shape, spec, endpoint, &query, &state.cursors);
            let (data, next_cursor) = read_or_refund(&state, &admission, read).await?;
            (data, next_cursor, admission)
        }
    };
    Ok(metered(&admission).json(DatasetPage {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}
