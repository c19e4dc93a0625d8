//! Running schemathesis (pinned, installed by `scripts/dev services`) against a service's
//! `/openapi.json`: it generates requests from the document (valid ones and broken ones) and
//! checks every answer against it — no 5xx, only documented statuses, content types, headers
//! and bodies, valid data accepted, invalid data refused, unknown methods refused with 405 and
//! `Allow`, missing credentials refused with 401. The run is bounded: a fixed seed, a few
//! examples per operation, and a deadline.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{unique, Stack};

/// What installs schemathesis.
const INSTALL: &str = "scripts/dev services";

/// One bounded run.
pub struct Run<'a> {
    /// The service's base URL; the document is `{url}/openapi.json`.
    pub url: &'a str,
    /// schemathesis's configuration (checks, their documented exceptions, credentials read
    /// from `env`).
    pub config: &'a Path,
    /// Variables the configuration reads (credentials).
    pub env: &'a [(&'a str, &'a str)],
    pub max_examples: u32,
    /// Kills the run if it takes longer.
    pub timeout: Duration,
}

impl Run<'_> {
    /// Runs schemathesis with every check; panics with its report when the server and the
    /// document disagree, or when schemathesis is missing.
    pub async fn passes(&self) {
        let program = Stack::get().schemathesis.clone().unwrap_or_else(|| {
            panic!("SLUICE_SCHEMATHESIS is not set: install schemathesis with `{INSTALL}`")
        });
        assert!(
            Path::new(&program).is_file(),
            "{program} is missing: install schemathesis with `{INSTALL}`"
        );
        // Its own working directory: schemathesis writes nothing into the repository.
        let dir = std::env::temp_dir().join(unique("schemathesis"));
        std::fs::create_dir_all(&dir).unwrap();
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&program);
        command
            .current_dir(&dir)
            .arg("--config-file")
            .arg(self.config)
            .arg("run")
            .arg(format!("{}/openapi.json", self.url))
            .envs(self.env.iter().copied())
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args([
                "--max-examples",
                &self.max_examples.to_string(),
                "--seed",
                "18",
            ])
            .args(["--generation-database", "none"])
            // One worker: with two, its threads parse Python source at once and CPython 3.11's
            // `ast` module sometimes fails with "AST constructor recursion depth mismatch" (a
            // SystemError inside schemathesis, reported as a Runtime Error on an operation;
            // seen 2 in 6 runs of the gateway's document on two busy cores).
            .args(["--workers", "1", "--request-timeout", "10"])
            .args(["--no-color", "--output-truncate", "false"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, command.output())
            .await
            .unwrap_or_else(|_| panic!("schemathesis ran longer than {:?}", self.timeout))
            .unwrap_or_else(|error| {
                panic!("{program} does not start ({error}); reinstall it with `{INSTALL}`")
            });
        let _ = std::fs::remove_dir_all(&dir);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "schemathesis found disagreements ({}, after {:?}):\n{report}",
            output.status,
            started.elapsed()
        );
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("{report}");
        }
    }
}
