//! `GET /datasets`: the datasets this gateway knows of, their columns and their endpoints, as
//! their specs declare them (`datasets/<name>.toml`, `SLUICE_GATEWAY_DATASETS_DIR`). Public,
//! like `/openapi.json`: it describes the API, not the data.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use sluice_schema::dataset::endpoint::Endpoint;
use sluice_schema::dataset::{Column, Dataset};
use utoipa::ToSchema;

use super::state::AppState;

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
    let datasets = state.datasets.iter().map(info).collect();
    HttpResponse::Ok().json(DatasetList { datasets })
}

fn info(dataset: &Dataset) -> DatasetInfo {
    let spec = &dataset.spec;
    DatasetInfo {
        name: spec.name.clone(),
        doc: spec.doc.clone(),
        identity: spec.identity.clone(),
        time: spec.time.clone(),
        columns: spec.columns.iter().map(column).collect(),
        endpoints: spec
            .endpoints
            .iter()
            .map(|endpoint| EndpointInfo {
                path: format!("/datasets/{}/{}", spec.name, endpoint.name),
                endpoint: endpoint.clone(),
            })
            .collect(),
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
