use anyhow::Context;
use sluice_watcher::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_schema::telemetry::init_tracing("info");
    let config = Config::from_env().context("invalid SLUICE_WATCHER_* configuration")?;
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "Watcher started.");
    let shutdown = sluice_schema::telemetry::shutdown_on_signal()?;
    application.run_until_stopped(shutdown).await?;
    Ok(())
}
