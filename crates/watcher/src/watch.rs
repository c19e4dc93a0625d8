//! Finding files: file-system events (notify) for speed, a periodic rescan so nothing is
//! missed (across restarts, on file systems without events, when events overflow), and a
//! readiness rule — a file renamed into place is complete; any other is read once its
//! modification time is `stable_ms` old. Ready files are processed by at most
//! `max_concurrent_files` tasks; transient failures are tried again with exponential backoff.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::file::{self, Context, Outcome};
use crate::format;

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

    for outcome in ["ingested", "duplicate", "quarantined", "retry"] {
        metrics::counter!("sluice_watcher_files_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["accepted", "rejected"] {
        metrics::counter!("sluice_watcher_rows_total", "outcome" => outcome).increment(0);
    }
    let stable = Duration::from_millis(config.stable_ms);
    let permits = Arc::new(Semaphore::new(config.max_concurrent_files.max(1)));
    let mut candidates: HashMap<PathBuf, Candidate> = HashMap::new();
    let mut in_flight: HashSet<PathBuf> = HashSet::new();
    let mut attempts: HashMap<PathBuf, u32> = HashMap::new();
    let mut left: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
    let mut tasks: JoinSet<(PathBuf, Outcome)> = JoinSet::new();
    let mut rescan =
        tokio::time::interval(Duration::from_millis(config.rescan_interval_ms.max(100)));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = rescan.tick() => {
                for path in list(&config.watch_dir).await {
                    candidates.entry(path).or_default();
                }
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
                    if path.parent() == Some(config.watch_dir.as_path()) && is_candidate(&path) {
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
                        let attempt = attempts.entry(path.clone()).or_insert(0);
                        let delay = backoff(config.retry_initial_ms, config.retry_max_ms, *attempt);
                        *attempt += 1;
                        candidates.insert(path, Candidate { renamed_in: false, not_before: Some(Instant::now() + delay) });
                    }
                    Outcome::Ingested(_) | Outcome::Duplicate { .. } => {
                        attempts.remove(&path);
                        if config.after_success == crate::config::AfterSuccess::Leave {
                            if let Ok(meta) = std::fs::metadata(&path) {
                                left.insert(path, (meta.len(), meta.modified().ok()));
                            }
                        }
                    }
                    Outcome::Quarantined { .. } | Outcome::Gone => {
                        attempts.remove(&path);
                    }
                }
                metrics::gauge!("sluice_watcher_files_in_flight").set(in_flight.len() as f64);
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let mut ready = Vec::new();
                candidates.retain(|path, candidate| {
                    if in_flight.contains(path) || candidate.not_before.is_some_and(|t| t > now) {
                        return true;
                    }
                    let Ok(meta) = std::fs::metadata(path) else { return false };
                    if !meta.is_file() {
                        return false;
                    }
                    let modified = meta.modified().ok();
                    if left.get(path) == Some(&(meta.len(), modified)) {
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
                for path in ready {
                    in_flight.insert(path.clone());
                    let context = Arc::clone(&context);
                    let permits = Arc::clone(&permits);
                    tasks.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let outcome = file::process(&context, &path).await;
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

/// Every candidate file directly in `directory`.
async fn list(directory: &Path) -> Vec<PathBuf> {
    let directory = directory.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            tracing::warn!(directory = %directory.display(), "Cannot list the watched directory.");
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| is_candidate(p))
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn is_candidate(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(format::is_candidate_name)
}

/// `initial · 2^attempt`, at most `max`.
fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let factor = 1_u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX);
    Duration::from_millis(initial_ms.saturating_mul(factor).min(max_ms))
}

/// Logs and counts one file's outcome.
fn record(path: &Path, outcome: &Outcome) {
    let file = path.display();
    metrics::counter!("sluice_watcher_files_total", "outcome" => outcome.label()).increment(1);
    match outcome {
        Outcome::Ingested(receipt) => {
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
        Outcome::Duplicate { first_upload_id } => {
            tracing::info!(%file, %first_upload_id, "Duplicate content skipped.");
        }
        Outcome::Quarantined { kind, reason } => {
            tracing::warn!(%file, kind, %reason, "File quarantined.");
        }
        Outcome::Retry(error) => {
            tracing::warn!(%file, %error, "File failed; trying again later.");
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
