//! `sluice`, the command-line client of Sluice: uploads files (game rounds, or any dataset's
//! with `--dataset`) to the producer with a progress bar and an idempotency key, follows them
//! into ClickHouse, lists their rejects, queries the gateway page by page and manages API keys.
//! `main.rs` only parses the command line and runs [`run`]; everything here is callable from
//! tests.
//!
//! # Layout
//! - [`args`]: the command line (clap derive), including the exit codes `--help` lists.
//! - [`settings`]: flags over the environment over `~/.config/sluice/config.toml`, secrets
//!   kept as `SecretString`.
//! - [`client`]: the producer's and the gateway's HTTP calls, every error status turned into a
//!   [`CliError`] with the server's explanation and a hint.
//! - [`commands`]: one module per command (`upload`, `uploads`/`rejects`, `query`, `keys`).
//! - [`output`]: rows as a table, CSV or JSON Lines in the server's field order; receipt and
//!   key summaries.
//! - [`error`]: [`CliError`], and the one mapping of results to exit codes.

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod settings;

use std::io::Write;

pub use args::Cli;
pub use error::{report, CliError, Outcome};

use args::Command;
use settings::Settings;

/// Runs one command, writing its output to `out` (progress and notes go to stderr).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<Outcome, CliError> {
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "sluice", out);
        return Ok(Outcome::Done);
    }
    let settings = Settings::resolve(cli.settings)?;
    match cli.command {
        Command::Upload(args) => commands::upload::run(&settings, args, cli.json, out).await,
        Command::Uploads { id } => commands::uploads::uploads(&settings, id, cli.json, out).await,
        Command::Rejects(args) => commands::uploads::rejects(&settings, args, out).await,
        Command::Query(args) => commands::query::run(&settings, args, out).await,
        Command::Keys { command } => commands::keys::run(&settings, command, cli.json, out).await,
        Command::Completions { .. } => unreachable!("handled above"),
    }
}
