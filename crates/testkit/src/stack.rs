//! The endpoints of the real servers the tests use. They come from environment variables
//! (`SLUICE_KAFKA_BROKERS`, `SLUICE_CLICKHOUSE_URL`, `SLUICE_CLICKHOUSE_USER`,
//! `SLUICE_CLICKHOUSE_PASSWORD`, `SLUICE_REDIS_URL` with its password) or, failing that, from
//! `target/sluice/stack.env` written by `scripts/dev services`. A server that does not answer
//! is a [`StackError`] naming the commands that start it and export its settings; tests fail
//! with it ([`Stack::get`]), tools return it ([`Stack::try_get`]). Nothing is ever skipped.
//!
//! [`Programs`] are the four Sluice programs `scripts/dev up` runs on top (and `scripts/dev
//! test` starts), with the tokens it gave them.

use std::collections::HashMap;
use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The command that starts every server the tests need.
pub const START_COMMAND: &str = "scripts/dev services";

/// The command that starts the servers and the four programs.
pub const UP_COMMAND: &str = "scripts/dev up";

/// What puts the settings those commands wrote into this shell's environment, for tests run
/// from another checkout or with other settings than `target/sluice/stack.env` of this one.
pub const EXPORT_COMMAND: &str = "set -a; . target/sluice/stack.env; set +a";

/// Why the stack (or the programs on it) cannot be used. Its message names what to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// A setting is neither in the environment nor in `stack.env`.
    Unset {
        variable: String,
        file: PathBuf,
        /// The command that writes it.
        command: &'static str,
    },
    /// A server or program does not accept connections at the address its setting gives.
    Unreachable {
        what: String,
        address: String,
        /// The command that starts it.
        command: &'static str,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command = match self {
            StackError::Unset {
                variable,
                file,
                command,
            } => {
                let file = file.display();
                write!(f, "{variable} is not set and {file} has no value for it")?;
                command
            }
            StackError::Unreachable {
                what,
                address,
                command,
            } => {
                write!(f, "{what} at {address} is not reachable")?;
                command
            }
        };
        write!(
            f,
            ": run `{command}`, then `{EXPORT_COMMAND}` (or run the suite with \
             `scripts/dev test`, which does both)"
        )
    }
}

impl std::error::Error for StackError {}

#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka_brokers: String,
    pub clickhouse_url: String,
    /// ClickHouse user (`SLUICE_CLICKHOUSE_USER`; `default` if unset).
    pub clickhouse_user: String,
    /// Its password (`SLUICE_CLICKHOUSE_PASSWORD`; empty if unset).
    pub clickhouse_password: String,
    /// `redis://:<password>@host:port/`.
    pub redis_url: String,
    /// `PYTHONPATH` holding fastavro, the independent Avro decoder (`SLUICE_PYTHONPATH`).
    pub python_path: Option<String>,
    /// The tansu binary, for tests that need a broker of their own (`SLUICE_TANSU_BIN`).
    pub tansu_bin: Option<String>,
    /// The schemathesis program, which checks an OpenAPI document against its server
    /// (`SLUICE_SCHEMATHESIS`).
    pub schemathesis: Option<String>,
    /// Debian's chromium, for the browser tests (`SLUICE_CHROMIUM`).
    pub chromium: Option<String>,
    /// Its WebDriver server, chromedriver (`SLUICE_CHROMEDRIVER`).
    pub chromedriver: Option<String>,
}

impl Stack {
    /// The running stack.
    ///
    /// # Panics
    /// With the [`StackError`] of [`Stack::try_get`]: a test without its servers fails, saying
    /// what to run.
    pub fn get() -> &'static Stack {
        Stack::try_get().unwrap_or_else(|error| panic!("{error}"))
    }

    /// The running stack, or what is missing and the commands that provide it.
    pub fn try_get() -> Result<&'static Stack, StackError> {
        static STACK: OnceLock<Stack> = OnceLock::new();
        read_once(&STACK, Stack::read)
    }

    fn read() -> Result<Stack, StackError> {
        let source = Source::new(START_COMMAND);
        let optional = |n| source.optional(n);
        let stack = Stack {
            kafka_brokers: source.value("SLUICE_KAFKA_BROKERS")?,
            clickhouse_url: source.value("SLUICE_CLICKHOUSE_URL")?,
            clickhouse_user: optional("SLUICE_CLICKHOUSE_USER").unwrap_or_else(|| "default".into()),
            clickhouse_password: optional("SLUICE_CLICKHOUSE_PASSWORD").unwrap_or_default(),
            redis_url: source.value("SLUICE_REDIS_URL")?,
            python_path: optional("SLUICE_PYTHONPATH"),
            tansu_bin: optional("SLUICE_TANSU_BIN"),
            schemathesis: optional("SLUICE_SCHEMATHESIS"),
            chromium: optional("SLUICE_CHROMIUM"),
            chromedriver: optional("SLUICE_CHROMEDRIVER"),
        };
        let kafka = stack.kafka_brokers.split(',').next().unwrap_or_default();
        require_reachable("Kafka", kafka, START_COMMAND)?;
        require_reachable(
            "ClickHouse",
            host_port(&stack.clickhouse_url),
            START_COMMAND,
        )?;
        require_reachable("Redis", host_port(&stack.redis_url), START_COMMAND)?;
        Ok(stack)
    }

    /// ClickHouse's `host:port` (e.g. for a [`crate::fault::FaultyLink`]).
    pub fn clickhouse_address(&self) -> &str {
        host_port(&self.clickhouse_url)
    }

    /// Redis's `host:port`, without the credentials (e.g. for a [`crate::fault::FaultyLink`]).
    pub fn redis_address(&self) -> &str {
        host_port(&self.redis_url)
    }

    /// The Redis URL, credentials included, for reaching Redis at `address` instead (a link).
    pub fn redis_url_at(&self, address: &str) -> String {
        self.redis_url.replacen(self.redis_address(), address, 1)
    }

    /// A ClickHouse client for `database`, with the stack's credentials.
    pub fn clickhouse_client(&self, database: &str) -> clickhouse::Client {
        sluice_schema::migrations::client(
            &self.clickhouse_url,
            database,
            &self.clickhouse_user,
            &self.clickhouse_password,
        )
    }
}

/// The Sluice programs `scripts/dev up` runs over the [`Stack`], as its `stack.env` names them.
#[derive(Debug, Clone)]
pub struct Programs {
    pub producer_url: String,
    pub consumer_url: String,
    pub gateway_url: String,
    pub watcher_url: String,
    /// The producer's upload token (`SLUICE_UPLOAD_TOKEN`).
    pub upload_token: String,
    /// The gateway's admin token (`SLUICE_ADMIN_TOKEN`).
    pub admin_token: String,
}

impl Programs {
    /// The running programs.
    ///
    /// # Panics
    /// With the [`StackError`] of [`Programs::try_get`].
    pub fn get() -> &'static Programs {
        Programs::try_get().unwrap_or_else(|error| panic!("{error}"))
    }

    /// The running programs, or what is missing and the commands that provide it.
    pub fn try_get() -> Result<&'static Programs, StackError> {
        static PROGRAMS: OnceLock<Programs> = OnceLock::new();
        Stack::try_get()?;
        read_once(&PROGRAMS, Programs::read)
    }

    fn read() -> Result<Programs, StackError> {
        let source = Source::new(UP_COMMAND);
        let programs = Programs {
            producer_url: source.value("SLUICE_PRODUCER_URL")?,
            consumer_url: source.value("SLUICE_CONSUMER_URL")?,
            gateway_url: source.value("SLUICE_GATEWAY_URL")?,
            watcher_url: source.value("SLUICE_WATCHER_URL")?,
            upload_token: source.value("SLUICE_UPLOAD_TOKEN")?,
            admin_token: source.value("SLUICE_ADMIN_TOKEN")?,
        };
        for (what, url) in [
            ("sluice-producer", &programs.producer_url),
            ("sluice-consumer", &programs.consumer_url),
            ("sluice-gateway", &programs.gateway_url),
            ("sluice-watcher", &programs.watcher_url),
        ] {
            require_reachable(what, host_port(url), UP_COMMAND)?;
        }
        Ok(programs)
    }
}

/// What `cell` holds, read into it the first time `read` succeeds (a failed read is tried
/// again by the next caller).
pub(crate) fn read_once<T>(
    cell: &'static OnceLock<T>,
    read: fn() -> Result<T, StackError>,
) -> Result<&'static T, StackError> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = read()?;
    Ok(cell.get_or_init(|| value))
}

/// Where settings come from: the environment first, then `stack.env`.
pub(crate) struct Source {
    file: HashMap<String, String>,
    path: PathBuf,
    /// The command that would have written a missing value.
    command: &'static str,
}

impl Source {
    fn new(command: &'static str) -> Source {
        Source::from_file(stack_env_path(), command)
    }

    /// Values from the environment, then from the `NAME=value` lines of `path`.
    pub(crate) fn from_file(path: PathBuf, command: &'static str) -> Source {
        Source {
            file: read_env_file(&path),
            path,
            command,
        }
    }

    pub(crate) fn optional(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.file.get(name).cloned())
    }

    pub(crate) fn value(&self, name: &str) -> Result<String, StackError> {
        self.optional(name).ok_or_else(|| StackError::Unset {
            variable: name.to_owned(),
            file: self.path.clone(),
            command: self.command,
        })
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/sluice/stack.env` at the workspace root.
pub fn stack_env_path() -> PathBuf {
    workspace_root().join("target/sluice/stack.env")
}

fn read_env_file(path: &std::path::Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// `http://127.0.0.1:8123/` → `127.0.0.1:8123`; credentials (`redis://:pw@…`) are dropped.
pub(crate) fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

pub(crate) fn require_reachable(
    what: &str,
    address: &str,
    command: &'static str,
) -> Result<(), StackError> {
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return Ok(());
    }
    Err(StackError::Unreachable {
        what: what.to_owned(),
        address: address.to_owned(),
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_strips_scheme_and_path() {
        assert_eq!(host_port("http://127.0.0.1:8123"), "127.0.0.1:8123");
        assert_eq!(host_port("redis://127.0.0.1:16379/"), "127.0.0.1:16379");
        assert_eq!(host_port("127.0.0.1:9092"), "127.0.0.1:9092");
        assert_eq!(
            host_port("redis://:p@ss@127.0.0.1:16379/"),
            "127.0.0.1:16379"
        );
    }

    #[test]
    fn a_missing_stack_names_the_commands_that_start_and_export_it() {
        let unset = StackError::Unset {
            variable: "SLUICE_KAFKA_BROKERS".into(),
            file: PathBuf::from("target/sluice/stack.env"),
            command: START_COMMAND,
        };
        let unreachable = StackError::Unreachable {
            what: "sluice-gateway".into(),
            address: "127.0.0.1:8083".into(),
            command: UP_COMMAND,
        };
        for (error, start) in [(unset, START_COMMAND), (unreachable, UP_COMMAND)] {
            let message = error.to_string();
            for command in [start, EXPORT_COMMAND] {
                assert!(message.contains(&format!("`{command}`")), "{message}");
            }
        }
    }
}
