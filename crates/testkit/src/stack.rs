//! The endpoints of the real servers the tests use. They come from environment variables
//! (`SLUICE_KAFKA_BROKERS`, `SLUICE_CLICKHOUSE_URL`, `SLUICE_REDIS_URL`) or, failing that, from
//! `target/sluice/stack.env` written by `scripts/dev services`. A server that does not answer
//! fails the test at once, naming the command that starts it.

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The command that starts every server the tests need.
pub const START_COMMAND: &str = "scripts/dev services";

#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka_brokers: String,
    pub clickhouse_url: String,
    pub redis_url: String,
    /// `PYTHONPATH` holding fastavro, the independent Avro decoder (`SLUICE_PYTHONPATH`).
    pub python_path: Option<String>,
    /// The tansu binary, for tests that need a broker of their own (`SLUICE_TANSU_BIN`).
    pub tansu_bin: Option<String>,
    /// The schemathesis program, which checks an OpenAPI document against its server
    /// (`SLUICE_SCHEMATHESIS`).
    pub schemathesis: Option<String>,
}

impl Stack {
    /// The running stack; panics with instructions if a server is missing.
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(|| {
            let file = read_stack_env();
            let optional =
                |name: &str| std::env::var(name).ok().or_else(|| file.get(name).cloned());
            let value = |name: &str| -> String {
                optional(name).unwrap_or_else(|| {
                    panic!(
                        "{name} is not set and {} has no value for it: start the services \
                             with `{START_COMMAND}` (or run the suite with `scripts/dev test`)",
                        stack_env_path().display()
                    )
                })
            };
            let stack = Stack {
                kafka_brokers: value("SLUICE_KAFKA_BROKERS"),
                clickhouse_url: value("SLUICE_CLICKHOUSE_URL"),
                redis_url: value("SLUICE_REDIS_URL"),
                python_path: optional("SLUICE_PYTHONPATH"),
                tansu_bin: optional("SLUICE_TANSU_BIN"),
                schemathesis: optional("SLUICE_SCHEMATHESIS"),
            };
            let kafka = stack
                .kafka_brokers
                .split(',')
                .next()
                .unwrap_or_default()
                .to_owned();
            require_reachable("Kafka", &kafka);
            require_reachable("ClickHouse", host_port(&stack.clickhouse_url));
            require_reachable("Redis", host_port(&stack.redis_url));
            stack
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

fn read_stack_env() -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(stack_env_path()) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// `http://127.0.0.1:8123/` → `127.0.0.1:8123`.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn require_reachable(what: &str, address: &str) {
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "{what} at {address} is not reachable: start the services with `{START_COMMAND}`"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_strips_scheme_and_path() {
        assert_eq!(host_port("http://127.0.0.1:8123"), "127.0.0.1:8123");
        assert_eq!(host_port("redis://127.0.0.1:16379/"), "127.0.0.1:16379");
        assert_eq!(host_port("127.0.0.1:9092"), "127.0.0.1:9092");
    }
}
