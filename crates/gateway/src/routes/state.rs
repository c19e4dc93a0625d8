//! What every handler shares.

use clickhouse::Client;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::credits::CreditStore;
use crate::cursor::CursorSigner;
use crate::ledger::Ledger;

/// Shared by every request.
pub struct AppState {
    pub credits: CreditStore,
    pub clickhouse: Client,
    /// ClickHouse for the metered reads (the rows endpoints; `rounds` holds them too).
    pub reads: crate::reads::Reads,
    /// Where the rows endpoints find a versions table's first month.
    pub parts: crate::rows::Parts,
    /// Where `GET /aggregated_game_rounds` reads its answers.
    pub rounds: crate::answer::Source,
    /// The rollup endpoints of the datasets, read through `rounds`' source.
    pub rollups: crate::rollups::Shapes,
    pub ledger: Ledger,
    pub cursors: CursorSigner,
    pub config: Config,
    /// The datasets `GET /datasets` lists.
    pub datasets: sluice_schema::dataset::Catalog,
    pub metrics: PrometheusHandle,
    /// `GET /openapi.json`: the document of this API serving `datasets`, built at start.
    pub openapi: sluice_schema::docs::OpenApiJson,
    /// Slots for metered queries running against ClickHouse (`max_concurrent_queries`).
    pub query_slots: tokio::sync::Semaphore,
}

/// The largest JSON body the admin API reads (its bodies are a few hundred bytes); larger is
/// a 413.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
