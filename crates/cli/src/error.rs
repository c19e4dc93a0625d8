//! Every way a command can fail, and the one place that turns a command's result into the
//! process's exit code (documented in `sluice --help` and the README).

use std::fmt;
use std::path::PathBuf;

/// Exit codes a script can branch on.
pub mod exit {
    /// Everything worked (every row of an upload accepted).
    pub const OK: u8 = 0;
    /// A problem on this side: a file that cannot be read, unusable settings, an answer the
    /// CLI did not expect.
    pub const FAILED: u8 = 1;
    /// The command line itself is wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// The upload was committed, but some of its rows were rejected.
    pub const ROWS_REJECTED: u8 = 3;
    /// The server refused the request (4xx: bad credentials, bad filter, unknown id or
    /// dataset, no credits…): sending it again unchanged will fail again.
    pub const CLIENT_ERROR: u8 = 4;
    /// Worth retrying as is: the server failed or was busy (5xx, 408, 429, or an answer with
    /// `Retry-After`), or could not be reached.
    pub const RETRYABLE: u8 = 5;
}

/// The text `sluice --help` ends with.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  local failure (unreadable file, bad settings, unexpected answer)
  2  bad command line
  3  upload committed, but some rows were rejected (see `sluice rejects ID`)
  4  refused by the server (4xx: credentials, filters, unknown id or dataset, no credits): fix, then retry
  5  retryable: server error or busy (5xx, 408, 429), or server unreachable
With several files, `sluice upload` goes on past a failed one and exits with the highest
code of the failed ones (5, then 4, then 1); 3 if none failed but some rows were rejected.";

/// What a command achieved, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Done,
    /// An upload was committed with rejected rows.
    RowsRejected,
}

/// The program the CLI talked to, named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Producer,
    /// The gateway's metered endpoints (`X-API-Key`).
    Gateway,
    /// The gateway's admin API (admin token).
    Admin,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Producer => "producer",
            Service::Gateway => "gateway",
            Service::Admin => "gateway's admin API",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error("the {service} answered {status}: {detail}")]
    Refused {
        service: Service,
        status: u16,
        /// The server's own explanation (`detail` of its JSON error).
        detail: String,
        /// What to do about it, when the CLI knows.
        hint: Option<String>,
        /// Whether the server said to try again (`Retry-After`).
        retry_after: Option<u64>,
    },
    /// No answer at all (refused connection, timeout, broken transfer).
    #[error("could not reach the {service} at {url}: {reason}")]
    Unreachable {
        service: Service,
        url: String,
        reason: String,
        hint: String,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Usage(String),
    #[error("the {service} answered something unexpected: {detail}")]
    Unexpected { service: Service, detail: String },
    /// Only part of what was asked exists yet (e.g. rejects the consumer is still storing).
    #[error("{0}")]
    Incomplete(String),
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
    /// Several files were uploaded and some failed (each was reported as it failed).
    #[error("{failed} of {total} files failed")]
    SomeFailed {
        failed: usize,
        total: usize,
        /// The failure with the highest exit code.
        worst: Box<CliError>,
    },
}

impl CliError {
    /// The exit code of this failure (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused {
                status,
                retry_after,
                ..
            } => {
                if *status >= 500 || *status == 408 || *status == 429 || retry_after.is_some() {
                    exit::RETRYABLE
                } else {
                    exit::CLIENT_ERROR
                }
            }
            CliError::Unreachable { .. } | CliError::Incomplete(_) => exit::RETRYABLE,
            CliError::Usage(_) => exit::USAGE,
            CliError::File { .. }
            | CliError::Settings(_)
            | CliError::Unexpected { .. }
            | CliError::Output(_) => exit::FAILED,
            CliError::SomeFailed { worst, .. } => worst.exit_code(),
        }
    }

    /// What to do about it, if the CLI knows.
    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Refused { hint, .. } => hint.as_deref(),
            CliError::Unreachable { hint, .. } => Some(hint),
            _ => None,
        }
    }
}

/// The exit code of a command's result.
pub fn exit_code(result: &Result<Outcome, CliError>) -> u8 {
    match result {
        Ok(Outcome::Done) => exit::OK,
        Ok(Outcome::RowsRejected) => exit::ROWS_REJECTED,
        Err(error) => error.exit_code(),
    }
}

/// Reports a failure on stderr (message, then what to do) and returns the exit code. Writing
/// into a closed pipe (`sluice query … | head`) is not a failure.
pub fn report(result: &Result<Outcome, CliError>) -> u8 {
    if let Err(error) = result {
        if let CliError::Output(io) = error {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return exit::OK;
            }
        }
        eprintln!("error: {error}");
        if let Some(hint) = error.hint() {
            eprintln!("  hint: {hint}");
        }
    }
    exit_code(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, retry_after: Option<u64>) -> CliError {
        CliError::Refused {
            service: Service::Gateway,
            status,
            detail: String::new(),
            hint: None,
            retry_after,
        }
    }

    #[test]
    fn client_errors_and_retryable_errors_have_distinct_codes() {
        for status in [400, 401, 402, 404, 413, 415, 422] {
            assert_eq!(
                refused(status, None).exit_code(),
                exit::CLIENT_ERROR,
                "{status}"
            );
        }
        for status in [408, 429, 500, 503, 504] {
            assert_eq!(
                refused(status, None).exit_code(),
                exit::RETRYABLE,
                "{status}"
            );
        }
        // The producer's 409 "identical upload still in progress" says when to come back.
        assert_eq!(refused(409, Some(5)).exit_code(), exit::RETRYABLE);
        assert_eq!(refused(409, None).exit_code(), exit::CLIENT_ERROR);
    }

    #[test]
    fn rejected_rows_are_not_a_failure_but_have_their_own_code() {
        assert_eq!(exit_code(&Ok(Outcome::Done)), 0);
        assert_eq!(exit_code(&Ok(Outcome::RowsRejected)), 3);
        let some = CliError::SomeFailed {
            failed: 1,
            total: 2,
            worst: Box::new(refused(503, None)),
        };
        assert_eq!(some.exit_code(), exit::RETRYABLE);
    }
}
