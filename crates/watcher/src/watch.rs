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
use sluice_schema::backoff::Backoff;
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

/// A file moved to `processed/`, to be looked at again once `stable_ms` passed.
struct Recheck {
    due: Instant,
    inbox: PathBuf,
    moved: PathBuf,
    read: Snapshot,
}

/// Runs until `shutdown`; in-flight files are then abandoned (their transactions abort) and
/// are read again by the next start.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let config = &context.config;
    let (_watcher, mut events) = file_system_events(&config.watch_dir);
    register_metrics();
    let mut rescan =
        tokio::time::interval(Duration::from_millis(config.rescan_interval_ms.max(100)));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scheduler = Scheduler::new(Arc::clone(&context));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = rescan.tick() => scheduler.rescan().await,
            Some(event) = events.recv() => scheduler.event(event),
            Some(joined) = scheduler.tasks.join_next(), if !scheduler.tasks.is_empty() => {
                if let Ok((path, outcome)) = joined {
                    scheduler.finished(path, outcome);
                }
            }
            _ = tick.tick() => scheduler.tick(),
        }
    }
    scheduler.tasks.shutdown().await;
}

/// File-system events of `directory`, or none (then rescans find every file).
fn file_system_events(
    directory: &Path,
) -> (
    Option<notify::RecommendedWatcher>,
    mpsc::UnboundedReceiver<notify::Event>,
) {
    let (events, received) = mpsc::unbounded_channel::<notify::Event>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = events.send(event);
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(directory, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => (Some(watcher), received),
        Err(error) => {
            tracing::warn!(%error, "No file-system events; relying on rescans.");
            (None, received)
        }
    }
}

/// Shows every label of the watcher's counters at 0 from the start.
fn register_metrics() {
    for outcome in Outcome::LABELS {
        metrics::counter!(crate::metric::FILES_TOTAL, "outcome" => outcome).increment(0);
    }
    for reason in Ignored::ALL {
        metrics::counter!(crate::metric::IGNORED_FILES_TOTAL, "reason" => reason.label())
            .increment(0);
    }
    metrics::counter!(crate::metric::RESCANS_TOTAL).increment(0);
    for outcome in sluice_producer::metric::ROW_OUTCOMES {
        metrics::counter!(crate::metric::ROWS_TOTAL, "outcome" => outcome).increment(0);
    }
}

/// The watch loop's state, one method per event: a rescan, a file-system event, a file's task
/// ending, a tick.
struct Scheduler {
    context: Arc<Context>,
    stable: Duration,
    permits: Arc<Semaphore>,
    /// Files waiting to be read: until complete, or their backoff passed.
    candidates: HashMap<PathBuf, Candidate>,
    in_flight: HashSet<PathBuf>,
    /// Tries of each file so far, for the backoff.
    attempts: HashMap<PathBuf, u32>,
    /// Tries of each file that failed in a row, for `max_attempts`.
    failures: HashMap<PathBuf, u32>,
    /// Files left in place (`after_success=leave`), as read.
    left: HashMap<PathBuf, Snapshot>,
    /// Files moved to `processed/`, by when to look again.
    rechecks: VecDeque<Recheck>,
    reported: Reported,
    own_directories: [PathBuf; 3],
    tasks: JoinSet<(PathBuf, Outcome)>,
}

impl Scheduler {
    fn new(context: Arc<Context>) -> Scheduler {
        let config = &context.config;
        Scheduler {
            stable: Duration::from_millis(config.stable_ms),
            permits: Arc::new(Semaphore::new(config.max_concurrent_files.max(1))),
            candidates: HashMap::new(),
            in_flight: HashSet::new(),
            attempts: HashMap::new(),
            failures: HashMap::new(),
            left: HashMap::new(),
            rechecks: VecDeque::new(),
            reported: Reported::new(REPORTED_NAMES),
            own_directories: [
                config.processed_dir(),
                config.quarantine_dir(),
                config.work_dir(),
            ],
            tasks: JoinSet::new(),
            context,
        }
    }

    /// A full look at the directory: every candidate noted, every ignored entry reported once.
    async fn rescan(&mut self) {
        let listing = list(&self.context.config.watch_dir, self.stable).await;
        metrics::counter!(crate::metric::RESCANS_TOTAL).increment(1);
        for path in listing.candidates {
            self.candidates.entry(path).or_default();
        }
        for (path, why) in listing.ignored {
            if self.own_directories.contains(&path) {
                continue;
            }
            let Some(file_name) = path.file_name() else {
                continue;
            };
            if self.reported.first_time(file_name) {
                metrics::counter!(crate::metric::IGNORED_FILES_TOTAL, "reason" => why.label())
                    .increment(1);
                tracing::info!(
                    file = %escaped(file_name),
                    reason = why.label(),
                    "Not reading this entry: {}.",
                    why.explain()
                );
            }
        }
        self.reported.retain(&listing.names);
    }

    /// A file-system event: the files it names in the directory become candidates.
    fn event(&mut self, event: notify::Event) {
        let renamed = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        // For `Both`, the paths are (from, to): only the last is where the file is now.
        let paths = match event.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                event.paths.last().cloned().into_iter().collect()
            }
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                Vec::new()
            }
            _ => event.paths,
        };
        let directory = self.context.config.watch_dir.as_path();
        for path in paths {
            if path.parent() == Some(directory) && is_candidate_name(&path) {
                self.candidates.entry(path).or_default().renamed_in |= renamed;
            }
        }
    }

    /// A file's task ended: logged and counted, then tried again later, looked at again later,
    /// or done with.
    fn finished(&mut self, path: PathBuf, outcome: Outcome) {
        self.in_flight.remove(&path);
        record(&path, &outcome);
        match outcome {
            Outcome::Retry(_) | Outcome::Busy => {
                if matches!(outcome, Outcome::Retry(_)) {
                    *self.failures.entry(path.clone()).or_insert(0) += 1;
                }
                let config = &self.context.config;
                let attempt = self.attempts.entry(path.clone()).or_insert(0);
                let delay = Backoff::nth(
                    Duration::from_millis(config.retry_initial_ms),
                    Duration::from_millis(config.retry_max_ms),
                    *attempt,
                );
                *attempt += 1;
                let not_before = Some(Instant::now() + delay);
                let candidate = Candidate {
                    renamed_in: false,
                    not_before,
                };
                self.candidates.insert(path, candidate);
            }
            Outcome::Ingested { disposed, .. } | Outcome::Duplicate { disposed, .. } => {
                self.forget(&path);
                self.disposed(path, disposed);
            }
            Outcome::Changed => {
                // Back in the inbox (or still there): read again once stable.
                self.forget(&path);
                self.candidates.insert(path, Candidate::default());
            }
            Outcome::Quarantined { .. } | Outcome::Gone => self.forget(&path),
        }
        metrics::gauge!(crate::metric::FILES_IN_FLIGHT).set(self.in_flight.len() as f64);
    }

    /// Remembers where a file went after success, for the later look at it.
    fn disposed(&mut self, inbox: PathBuf, disposed: Disposed) {
        match disposed {
            Disposed::Moved { to, read } => self.rechecks.push_back(Recheck {
                due: Instant::now() + self.stable,
                inbox,
                moved: to,
                read,
            }),
            Disposed::Left { read } => {
                self.left.insert(inbox, read);
            }
            Disposed::Deleted => {}
        }
    }

    /// Forgets a file's tries.
    fn forget(&mut self, path: &Path) {
        self.attempts.remove(path);
        self.failures.remove(path);
    }

    /// Every `TICK`: the rechecks due, then every candidate that is ready gets a task.
    fn tick(&mut self) {
        let now = Instant::now();
        while self.rechecks.front().is_some_and(|r| r.due <= now) {
            let Some(due) = self.rechecks.pop_front() else {
                break;
            };
            recheck(&due.inbox, &due.moved, &due.read);
        }
        for path in self.take_ready(now) {
            self.start(path);
        }
        metrics::gauge!(crate::metric::FILES_IN_FLIGHT).set(self.in_flight.len() as f64);
        metrics::gauge!(crate::metric::FILES_WAITING).set(self.candidates.len() as f64);
    }

    /// The candidates ready now, taken out of the waiting set; vanished ones are forgotten.
    fn take_ready(&mut self, now: Instant) -> Vec<PathBuf> {
        let (mut ready, mut vanished) = (Vec::new(), Vec::new());
        let (in_flight, left, stable) = (&self.in_flight, &self.left, self.stable);
        self.candidates.retain(|path, candidate| {
            if in_flight.contains(path) || candidate.not_before.is_some_and(|t| t > now) {
                return true;
            }
            match look(path, candidate, left, stable) {
                Look::Waiting => true,
                Look::Ready => {
                    ready.push(path.clone());
                    false
                }
                Look::Vanished => {
                    vanished.push(path.clone());
                    false
                }
                Look::Unchanged => false,
            }
        });
        for path in vanished {
            self.forget(&path);
        }
        ready
    }

    /// Starts the file's task (it waits for one of `max_concurrent_files` permits).
    fn start(&mut self, path: PathBuf) {
        self.in_flight.insert(path.clone());
        let context = Arc::clone(&self.context);
        let permits = Arc::clone(&self.permits);
        let failed = self.failures.get(&path).copied().unwrap_or(0);
        self.tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = file::process(&context, &path, failed).await;
            (path, outcome)
        });
    }
}

/// What a waiting candidate is now.
enum Look {
    /// Still being written: wait.
    Waiting,
    /// Complete (renamed into place, or `stable` quiet), or a symbolic link (handed to the file
    /// task at once, which quarantines the link itself, never following it).
    Ready,
    /// Gone, or no longer a file.
    Vanished,
    /// Left in place after success and unchanged since.
    Unchanged,
}

fn look(
    path: &Path,
    candidate: &Candidate,
    left: &HashMap<PathBuf, Snapshot>,
    stable: Duration,
) -> Look {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Look::Vanished;
    };
    if meta.file_type().is_symlink() {
        return Look::Ready;
    }
    if !meta.is_file() {
        return Look::Vanished;
    }
    if left.get(path) == Some(&Snapshot::of(&meta)) {
        return Look::Unchanged;
    }
    let settled = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age >= stable);
    if candidate.renamed_in || settled {
        Look::Ready
    } else {
        Look::Waiting
    }
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
            metrics::counter!(crate::metric::FILES_TOTAL, "outcome" => "changed").increment(1);
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

/// Logs and counts one file's outcome.
fn record(path: &Path, outcome: &Outcome) {
    let file = escaped(path.file_name().unwrap_or(path.as_os_str()));
    metrics::counter!(crate::metric::FILES_TOTAL, "outcome" => outcome.label()).increment(1);
    match outcome {
        Outcome::Ingested { receipt, .. } => {
            receipt.count(crate::metric::ROWS_TOTAL, crate::metric::BYTES_TOTAL);
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
