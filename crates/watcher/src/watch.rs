//! Finding files: file-system events (notify) for speed, a periodic rescan so nothing is
//! missed (across restarts, on file systems without events, when events overflow), and a
//! readiness rule — a file renamed into place is complete; any other is read once its
//! modification time is `stable_ms` old. Ready files are processed by at most
//! `max_concurrent_files` tasks; transient failures are tried again with exponential backoff
//! (the file task quarantines a file after `max_attempts` failed tries). A file moved to
//! `processed/` is looked at once more `stable_ms` later, and put back if it grew meanwhile.
//!
//! Only regular files and symbolic links (which the file task quarantines, never following
//! them) are candidates. Every other entry, and every name never taken (dot-files and
//! temporary names once `stable_ms` quiet, names that are not UTF-8), is logged once per name
//! and counted in `sluice_watcher_ignored_files_total{reason}`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::file::{self, Context, Disposed, Outcome, Snapshot};
use crate::name::{self, escaped, Ignored, Reported};

/// Ignored names remembered, so that each is reported once (see [`Reported`]).
const REPORTED_NAMES: usize = 10_000;

/// How often waiting files are looked at again.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Candidate {
    /// Seen arriving by a rename: complete now.
    renamed_in: bool,
    /// Not before this instant (backoff after a transient failure).
    not_before: Option<Instant>,
}

/// Runs until `shutdown`; in-flight files are then abandoned (their transactions abort) and
/// are read again by the next start.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let config = &context.config;
    let directory = config.watch_dir.clone();
    let (events, mut received) = mpsc::unbounded_channel::<notify::Event>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = events.send(event);
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(&directory, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    let _watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, "No file-system events; relying on rescans.");
            None
        }
    };

    for outcome in Outcome::LABELS {
        metrics::counter!("sluice_watcher_files_total", "outcome" => outcome).increment(0);
    }
    for reason in Ignored::ALL {
        metrics::counter!("sluice_watcher_ignored_files_total", "reason" => reason.label())
            .increment(0);
    }
    metrics::counter!("sluice_watcher_rescans_total").increment(0);
    for outcome in ["accepted", "rejected"] {
        metrics::counter!("sluice_watcher_rows_total", "outcome" => outcome).increment(0);
    }
    let stable = Duration::from_millis(config.stable_ms);
    let permits = Arc::new(Semaphore::new(config.max_concurrent_files.max(1)));
    let mut candidates: HashMap<PathBuf, Candidate> = HashMap::new();
    let mut in_flight: HashSet<PathBuf> = HashSet::new();
    let mut attempts: HashMap<PathBuf, u32> = HashMap::new();
    let mut failures: HashMap<PathBuf, u32> = HashMap::new();
    let mut left: HashMap<PathBuf, Snapshot> = HashMap::new();
    // Files moved to `processed/`: (when to look again, inbox path, where it went, as read).
    let mut rechecks: VecDeque<(Instant, PathBuf, PathBuf, Snapshot)> = VecDeque::new();
    let mut reported = Reported::new(REPORTED_NAMES);
    let own_directories = [
        config.processed_dir(),
        config.quarantine_dir(),
        config.work_dir(),
    ];
    let mut tasks: JoinSet<(PathBuf, Outcome)> = JoinSet::new();
    let mut rescan =
        tokio::time::interval(Duration::from_millis(config.rescan_interval_ms.max(100)));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = rescan.tick() => {
                let listing = list(&config.watch_dir, stable).await;
                metrics::counter!("sluice_watcher_rescans_total").increment(1);
                for path in listing.candidates {
                    candidates.entry(path).or_default();
                }
                for (path, why) in listing.ignored {
                    if own_directories.contains(&path) {
                        continue;
                    }
                    let Some(file_name) = path.file_name() else { continue };
                    if reported.first_time(file_name) {
                        metrics::counter!("sluice_watcher_ignored_files_total", "reason" => why.label()).increment(1);
                        tracing::info!(
                            file = %escaped(file_name),
                            reason = why.label(),
                            "Not reading this entry: {}.",
                            why.explain()
                        );
                    }
                }
                reported.retain(&listing.names);
            }
            Some(event) = received.recv() => {
                let renamed = matches!(
                    event.kind,
                    EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                );
                // For `Both`, the paths are (from, to): only the last is where the file is now.
                let paths = match event.kind {
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.last().cloned().into_iter().collect(),
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Vec::new(),
                    _ => event.paths,
                };
                for path in paths {
                    if path.parent() == Some(config.watch_dir.as_path()) && is_candidate_name(&path) {
                        candidates.entry(path).or_default().renamed_in |= renamed;
                    }
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((path, outcome)) = joined else { continue };
                in_flight.remove(&path);
                record(&path, &outcome);
                match outcome {
                    Outcome::Retry(_) | Outcome::Busy => {
                        if matches!(outcome, Outcome::Retry(_)) {
                            *failures.entry(path.clone()).or_insert(0) += 1;
                        }
                        let attempt = attempts.entry(path.clone()).or_insert(0);
                        let delay = backoff(config.retry_initial_ms, config.retry_max_ms, *attempt);
                        *attempt += 1;
                        candidates.insert(path, Candidate { renamed_in: false, not_before: Some(Instant::now() + delay) });
                    }
                    Outcome::Ingested { disposed, .. } | Outcome::Duplicate { disposed, .. } => {
                        attempts.remove(&path);
                        failures.remove(&path);
                        match disposed {
                            Disposed::Moved { to, read } => {
                                rechecks.push_back((Instant::now() + stable, path, to, read));
                            }
                            Disposed::Left { read } => {
                                left.insert(path, read);
                            }
                            Disposed::Deleted => {}
                        }
                    }
                    Outcome::Changed => {
                        // Back in the inbox (or still there): read again once stable.
                        attempts.remove(&path);
                        failures.remove(&path);
                        candidates.insert(path, Candidate::default());
                    }
                    Outcome::Quarantined { .. } | Outcome::Gone => {
                        attempts.remove(&path);
                        failures.remove(&path);
                    }
                }
                metrics::gauge!("sluice_watcher_files_in_flight").set(in_flight.len() as f64);
            }
            _ = tick.tick() => {
                let now = Instant::now();
                while rechecks.front().is_some_and(|(due, ..)| *due <= now) {
                    let Some((_, inbox, moved, read)) = rechecks.pop_front() else { break };
                    recheck(&inbox, &moved, &read);
                }
                let (mut ready, mut vanished) = (Vec::new(), Vec::new());
                candidates.retain(|path, candidate| {
                    if in_flight.contains(path) || candidate.not_before.is_some_and(|t| t > now) {
                        return true;
                    }
                    // Never followed: a link is handed to the file task at once, which
                    // quarantines the link itself.
                    let Ok(meta) = std::fs::symlink_metadata(path) else {
                        vanished.push(path.clone());
                        return false;
                    };
                    if meta.file_type().is_symlink() {
                        ready.push(path.clone());
                        return false;
                    }
                    if !meta.is_file() {
                        vanished.push(path.clone());
                        return false;
                    }
                    let modified = meta.modified().ok();
                    if left.get(path) == Some(&Snapshot::of(&meta)) {
                        return false;
                    }
                    let settled = modified
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .is_some_and(|age| age >= stable);
                    if candidate.renamed_in || settled {
                        ready.push(path.clone());
                        return false;
                    }
                    true
                });
                for path in vanished {
                    attempts.remove(&path);
                    failures.remove(&path);
                }
                for path in ready {
                    in_flight.insert(path.clone());
                    let context = Arc::clone(&context);
                    let permits = Arc::clone(&permits);
                    let failed = failures.get(&path).copied().unwrap_or(0);
                    tasks.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let outcome = file::process(&context, &path, failed).await;
                        (path, outcome)
                    });
                }
                metrics::gauge!("sluice_watcher_files_in_flight").set(in_flight.len() as f64);
                metrics::gauge!("sluice_watcher_files_waiting").set(candidates.len() as f64);
            }
        }
    }
    tasks.shutdown().await;
}

/// One full look at the watched directory.
#[derive(Default)]
struct Listing {
    /// Regular files and symbolic links with names that are taken.
    candidates: Vec<PathBuf>,
    /// Entries never read, and why (temporary names and dot-files only once `stable` quiet:
    /// until then they are files being written, as expected).
    ignored: Vec<(PathBuf, Ignored)>,
    /// Every name in the directory.
    names: HashSet<OsString>,
}

/// Every entry directly in `directory`, sorted into candidates and ignored entries. File types
/// come from the directory entry (`lstat`): a symbolic link is never followed.
async fn list(directory: &Path, stable: Duration) -> Listing {
    let directory = directory.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            tracing::warn!(directory = %directory.display(), "Cannot list the watched directory.");
            return Listing::default();
        };
        let mut listing = Listing::default();
        for entry in entries.filter_map(Result::ok) {
            let (path, file_name) = (entry.path(), entry.file_name());
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            listing.names.insert(file_name.clone());
            match name::ignored(&file_name) {
                Some(why @ (Ignored::Temporary | Ignored::Hidden)) => {
                    let quiet = entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .is_some_and(|age| age >= stable);
                    if quiet {
                        listing.ignored.push((path, why));
                    }
                }
                Some(why) => listing.ignored.push((path, why)),
                None if kind.is_file() || kind.is_symlink() => listing.candidates.push(path),
                None => listing.ignored.push((path, Ignored::NotAFile)),
            }
        }
        listing
    })
    .await
    .unwrap_or_default()
}

fn is_candidate_name(path: &Path) -> bool {
    path.file_name().is_some_and(|n| name::ignored(n).is_none())
}

/// The second look at a file moved to `processed/` (see [`file::recheck`]), logged and counted.
fn recheck(inbox: &Path, moved: &Path, read: &Snapshot) {
    let file = escaped(inbox.file_name().unwrap_or_default());
    match file::recheck(moved, inbox, read) {
        Ok(false) => {}
        Ok(true) => {
            metrics::counter!("sluice_watcher_files_total", "outcome" => "changed").increment(1);
            tracing::warn!(
                %file,
                "File changed after it was moved to processed; put back to be read again."
            );
        }
        Err(error) => tracing::error!(
            %error,
            %file,
            "File changed after it was moved to processed, and could not be put back."
        ),
    }
}

/// `initial · 2^attempt`, at most `max`.
fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let factor = 1_u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX);
    Duration::from_millis(initial_ms.saturating_mul(factor).min(max_ms))
}

/// Logs and counts one file's outcome.
fn record(path: &Path, outcome: &Outcome) {
    let file = escaped(path.file_name().unwrap_or(path.as_os_str()));
    metrics::counter!("sluice_watcher_files_total", "outcome" => outcome.label()).increment(1);
    match outcome {
        Outcome::Ingested { receipt, .. } => {
            metrics::counter!("sluice_watcher_rows_total", "outcome" => "accepted")
                .increment(receipt.accepted);
            metrics::counter!("sluice_watcher_rows_total", "outcome" => "rejected")
                .increment(receipt.rejected);
            metrics::counter!("sluice_watcher_bytes_total").increment(receipt.bytes);
            tracing::info!(
                %file,
                upload_id = %receipt.upload_id,
                rows_read = receipt.rows_read,
                accepted = receipt.accepted,
                rejected = receipt.rejected,
                duration_ms = receipt.duration_ms,
                "File committed."
            );
        }
        Outcome::Duplicate {
            first_upload_id, ..
        } => {
            tracing::info!(%file, %first_upload_id, "Duplicate content skipped.");
        }
        Outcome::Changed => {
            tracing::warn!(%file, "File changed after it was read; it will be read again once stable.");
        }
        Outcome::Quarantined { kind, reason } => {
            tracing::warn!(%file, kind, reason = %escaped(reason), "File quarantined.");
        }
        Outcome::Retry(error) => {
            let error = error.to_string();
            tracing::warn!(%file, error = %escaped(&error), "File failed; trying again later.");
        }
        Outcome::Busy => tracing::debug!(%file, "Another watcher holds the file."),
        Outcome::Gone => tracing::debug!(%file, "File went away."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert_eq!(backoff(1000, 60_000, 0), Duration::from_secs(1));
        assert_eq!(backoff(1000, 60_000, 3), Duration::from_secs(8));
        assert_eq!(backoff(1000, 60_000, 10), Duration::from_secs(60));
        assert_eq!(backoff(1000, 60_000, 100), Duration::from_secs(60));
    }
}
