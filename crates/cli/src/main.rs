use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use sluice_cli::{report, run, Cli, CliError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = runtime
        .block_on(run(cli, &mut out))
        .and_then(|outcome| out.flush().map(|()| outcome).map_err(CliError::from));
    ExitCode::from(report(&result))
}
