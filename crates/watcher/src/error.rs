//! Why a file was not ingested, and whether trying again can help.

use sluice_producer::error::UploadError;

/// Whether a failed file is tried again (the failure is outside the file) or quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// The file itself is the problem: quarantine it with the reason.
    NoRetry,
    /// A dependency failed (Kafka, Redis, the disk): leave the file and try again later.
    WithBackoff,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("unsupported file name: {0}")]
    Unsupported(String),
    #[error("the content does not match the name: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Ingest(#[from] UploadError),
    #[error("the file cannot be decompressed: {0}")]
    Corrupt(String),
    #[error("the file changed while it was read")]
    Changed,
    #[error("a symbolic link: only regular files in the watched directory are read, never a link's target")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error(
        "gave up after {attempts} failed tries while Kafka and Redis answered; the last: {last}"
    )]
    GaveUp { attempts: u32, last: String },
    #[error("reading the file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis did not answer: {0}")]
    Redis(String),
    #[error("the content is claimed by upload {0}, which has no receipt yet")]
    ClaimedElsewhere(String),
}

impl WatchError {
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            WatchError::Unsupported(_)
            | WatchError::Mismatch(_)
            | WatchError::Corrupt(_)
            | WatchError::Symlink
            | WatchError::NotRegular
            | WatchError::GaveUp { .. } => RetryHint::NoRetry,
            WatchError::Ingest(error) => match error {
                UploadError::Kafka(_)
                | UploadError::ReceiptsUnavailable(_)
                | UploadError::InProgress(_) => RetryHint::WithBackoff,
                _ => RetryHint::NoRetry,
            },
            WatchError::Changed
            | WatchError::Io(_)
            | WatchError::Redis(_)
            | WatchError::ClaimedElsewhere(_) => RetryHint::WithBackoff,
        }
    }

    /// A short machine-readable kind, for `<name>.error.json` and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WatchError::Unsupported(_) => "unsupported",
            WatchError::Mismatch(_) => "format_mismatch",
            WatchError::Ingest(UploadError::Header(_)) => "bad_header",
            WatchError::Ingest(UploadError::LineTooLong { .. }) => "line_too_long",
            WatchError::Ingest(UploadError::TooLarge { .. }) => "too_large",
            WatchError::Ingest(UploadError::Parquet(_)) => "bad_parquet",
            WatchError::Ingest(_) => "unreadable",
            WatchError::Corrupt(_) => "corrupt",
            WatchError::Changed => "changed",
            WatchError::Symlink => "symlink",
            WatchError::NotRegular => "not_a_file",
            WatchError::GaveUp { .. } => "gave_up",
            WatchError::Io(_) => "io",
            WatchError::Redis(_) => "redis",
            WatchError::ClaimedElsewhere(_) => "claimed_elsewhere",
        }
    }
}

impl From<redis::RedisError> for WatchError {
    fn from(error: redis::RedisError) -> Self {
        WatchError::Redis(error.to_string())
    }
}

impl From<deadpool_redis::PoolError> for WatchError {
    fn from(error: deadpool_redis::PoolError) -> Self {
        WatchError::Redis(error.to_string())
    }
}
