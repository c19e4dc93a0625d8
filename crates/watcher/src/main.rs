use anyhow::Context;
use sluice_watcher::{Application, Config};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_schema::telemetry::init_tracing("info");
    let config = Config::from_env().context("invalid SLUICE_WATCHER_* configuration")?;
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "Watcher started.");
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("Shutdown requested.");
        trigger.cancel();
    });
    application.run_until_stopped(shutdown).await?;
    Ok(())
}
