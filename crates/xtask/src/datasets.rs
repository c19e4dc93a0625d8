//! `cargo xtask datasets check`: every spec of `datasets/` against its recorded versions
//! (`datasets/history/<name>.v<N>.toml`, `sluice_schema::dataset::history`). A spec as recorded
//! passes; one that only appends nullable or defaulted columns is compatible, and passes once
//! recorded (`--record` writes the file); any other change is refused with the field and the
//! fix. Game rounds too: they are built in, with their recorded versions
//! (`sluice_schema::dataset::history::History::game_rounds`).

use std::io::Write;
use std::path::Path;

use sluice_schema::dataset::history::{Change, History};
use sluice_schema::dataset::{Catalog, Spec, GAME_ROUNDS};

/// What the check found of one dataset.
enum Outcome {
    /// As recorded in this file.
    Recorded(String),
    /// Recorded now, in this file.
    Written(String),
    /// Not recorded: why, and the file `--record` would write.
    Unrecorded(String, String),
    Refused(String),
}

/// Checks every spec of `dir` (recording the compatible ones when `record`); true when every
/// one passed. Each dataset's outcome is one line on standard output.
pub fn check(dir: &Path, record: bool) -> anyhow::Result<bool> {
    let catalog = Catalog::read(dir)?;
    let mut passed = true;
    let mut out = std::io::stdout().lock();
    for dataset in catalog.iter() {
        let name = &dataset.spec.name;
        let line = match outcome(dir, &dataset.spec, record)? {
            Outcome::Recorded(file) => format!("{name}: ok, as recorded in {file}."),
            Outcome::Written(file) => format!("{name}: recorded in {file}."),
            Outcome::Unrecorded(why, file) => {
                passed = false;
                format!("{name}: {why}; record it with `cargo xtask datasets check --record` (writes {file}), and commit that file.")
            }
            Outcome::Refused(error) => {
                passed = false;
                format!("{name}: refused: {error}")
            }
        };
        writeln!(out, "{line}")?;
    }
    Ok(passed)
}

/// The spec against its latest recorded version; recorded when compatible and `record`.
fn outcome(dir: &Path, spec: &Spec, record: bool) -> anyhow::Result<Outcome> {
    let read = match spec.name.as_str() {
        GAME_ROUNDS => Ok(History::game_rounds()),
        _ => History::read(dir, spec),
    };
    let history = match read {
        Ok(history) => history,
        Err(error) => return Ok(Outcome::Refused(error.to_string())),
    };
    let why = match history.latest() {
        None => "no version recorded".to_owned(),
        Some(latest) => match &latest.change {
            Change::Same => return Ok(Outcome::Recorded(latest.file.display().to_string())),
            Change::Appended(columns) => format!(
                "compatible with {} (appends `{}`), not recorded",
                latest.file.display(),
                columns.join("`, `")
            ),
        },
    };
    let file = history.next_file(dir);
    if !record {
        return Ok(Outcome::Unrecorded(why, file.display().to_string()));
    }
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(dir.join(format!("{}.toml", spec.name)), &file)?;
    Ok(Outcome::Written(file.display().to_string()))
}
