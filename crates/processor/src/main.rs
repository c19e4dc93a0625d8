use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use sluice_processor::{Application, Config};

/// Keeps the rollups exact; settings from `SLUICE_PROCESSOR_*` variables.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Marks the hours of a range that hold rows for recomputation (after a restore, or for
    /// rows written before the processing layer), and exits; running processors do the work.
    /// Safe to run again.
    Backfill {
        /// First moment: a date (`2019-10-22`, midnight UTC) or RFC 3339.
        #[arg(long, value_parser = instant)]
        from: u32,
        /// Last moment, included: the same forms.
        #[arg(long, value_parser = instant)]
        to: u32,
    },
}

/// A date or an RFC 3339 moment, as seconds the store can hold.
fn instant(text: &str) -> Result<u32, String> {
    let moment = match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => date.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
        Err(_) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("not a date or RFC 3339 moment: {e}"))?
            .with_timezone(&Utc),
    };
    u32::try_from(moment.timestamp()).map_err(|_| "outside 1970..2106".to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_schema::telemetry::init_tracing("info");
    let cli = Cli::parse();
    let config = Config::from_env().context("invalid SLUICE_PROCESSOR_* configuration")?;
    if let Some(Command::Backfill { from, to }) = cli.command {
        let hours = sluice_processor::backfill(&config, from, to).await?;
        tracing::info!(hours, "Hours marked for recomputation.");
        return Ok(());
    }
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "Processor started.");
    let shutdown = sluice_schema::telemetry::shutdown_on_signal()?;
    application.run_until_stopped(shutdown).await?;
    Ok(())
}
