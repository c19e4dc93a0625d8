use anyhow::Context;
use sluice_producer::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_schema::telemetry::init_tracing("info");
    let config = Config::from_env().context("invalid SLUICE_PRODUCER_* configuration")?;
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "Producer listening.");
    application.run_until_stopped().await?;
    Ok(())
}
