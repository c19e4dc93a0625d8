//! ClickHouse for the metered reads, which a connection the server closed unseen must not fail.

use clickhouse::error::Error;
use clickhouse::Client;

/// The clients metered reads go through: a pooled one, and for a statement repeated after a
/// pooled connection failed, one that opens a connection per statement.
#[derive(Clone)]
pub struct Reads {
    pooled: Client,
    fresh: Client,
}

impl Reads {
    /// `pooled` for every statement first; `fresh` must keep no connection idle
    /// (`ClickHouseSettings::unpooled_client`).
    pub fn new(pooled: Client, fresh: Client) -> Reads {
        Reads { pooled, fresh }
    }

    /// `statement` on a pooled connection and, when that fails on the network, once more on a
    /// connection opened for it. A pooled connection the server closed while it sat idle
    /// (past its keep-alive) fails the first request sent on it, and the pool may hold several
    /// such; the repeat cannot meet one, so it fails only when the server cannot be reached.
    /// Reads are safe to repeat.
    pub async fn run<T>(
        &self,
        statement: impl AsyncFn(&Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match statement(&self.pooled).await {
            Err(Error::Network(error)) => {
                tracing::info!(%error, "ClickHouse connection failed; repeating on a new one.");
                metrics::counter!(crate::metric::QUERY_RETRIES_TOTAL).increment(1);
                statement(&self.fresh).await
            }
            answer => answer,
        }
    }
}
