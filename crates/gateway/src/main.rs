use sluice_gateway::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_schema::telemetry::init_tracing("info");
    let config = Config::from_env()?;
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "Gateway listening.");
    application.run_until_stopped().await?;
    Ok(())
}
