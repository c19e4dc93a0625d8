//! Sluice's services over the test stack, described once as what configures them in a
//! deployment: the environment variables each one reads (`SLUICE_<SERVICE>_*`). The same
//! [`Settings`] start a service's binary as a process ([`Settings::command`]) or become its
//! `Config` for running it in-process ([`Settings::config`], read as the service reads its
//! environment). This crate cannot name the services' types (their own tests depend on it), so
//! the caller gives the type and builds and runs the service; [`serve`] runs it on the test's
//! runtime.
//!
//! A [`Slice`] is one test's own part of the stack (a topic, a database, a consumer group and
//! Redis key prefixes nobody else uses), with the settings of the producer, consumer and
//! gateway over it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::future::Future;
use std::process::Stdio;

use sluice_schema::config::ServiceConfig;

use crate::names::unique;
use crate::stack::Stack;

/// One service's settings: `SLUICE_<SERVICE>_<NAME>` → value.
#[derive(Debug, Clone)]
pub struct Settings {
    prefix: &'static str,
    variables: BTreeMap<String, String>,
}

impl Settings {
    /// A service that reads `prefix`ed variables (`"SLUICE_PRODUCER_"`), listening on a free
    /// port of loopback.
    pub fn new(prefix: &'static str) -> Settings {
        Settings {
            prefix,
            variables: BTreeMap::new(),
        }
        .set("LISTEN_ADDR", "127.0.0.1:0")
    }

    pub fn producer() -> Settings {
        Settings::new("SLUICE_PRODUCER_")
    }

    pub fn consumer() -> Settings {
        Settings::new("SLUICE_CONSUMER_")
    }

    pub fn gateway() -> Settings {
        Settings::new("SLUICE_GATEWAY_")
    }

    pub fn processor() -> Settings {
        Settings::new("SLUICE_PROCESSOR_")
    }

    /// Sets `<prefix><name>` (e.g. `"TOPIC"`), replacing an earlier value.
    pub fn set(mut self, name: &str, value: impl ToString) -> Settings {
        let variable = format!("{}{name}", self.prefix);
        self.variables.insert(variable, value.to_string());
        self
    }

    /// The stack's Kafka.
    pub fn kafka(self) -> Settings {
        let stack = Stack::get();
        self.set("KAFKA_BROKERS", &stack.kafka_brokers)
    }

    /// The stack's Redis (credentials included).
    pub fn redis(self) -> Settings {
        let stack = Stack::get();
        self.set("REDIS_URL", &stack.redis_url)
    }

    /// Redis keys under a prefix of their own, `<label>_…:`.
    pub fn redis_key_prefix(self, label: &str) -> Settings {
        self.set("REDIS_KEY_PREFIX", format!("{}:", unique(label)))
    }

    /// `database` on the stack's ClickHouse, as the stack's user.
    pub fn clickhouse(self, database: &str) -> Settings {
        let stack = Stack::get();
        self.set("CLICKHOUSE_URL", &stack.clickhouse_url)
            .set("CLICKHOUSE_DATABASE", database)
            .set("CLICKHOUSE_USER", &stack.clickhouse_user)
            .set("CLICKHOUSE_PASSWORD", &stack.clickhouse_password)
    }

    /// The variables, in name order.
    pub fn variables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.variables.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The service's `Config`, read from these variables as the service reads its environment.
    ///
    /// # Panics
    /// When a variable is not a field of `C` (a misspelt setting would otherwise be ignored),
    /// or a value does not parse.
    pub fn config<C: ServiceConfig>(&self) -> C {
        assert_eq!(self.prefix, C::PREFIX, "{}", std::any::type_name::<C>());
        let names = C::names();
        for variable in self.variables.keys() {
            let name = variable[self.prefix.len()..].to_lowercase();
            assert!(
                names.contains(&name),
                "{variable} is not a setting of {} (settings: {names:?})",
                std::any::type_name::<C>()
            );
        }
        let variables: Vec<(String, String)> = self.variables.clone().into_iter().collect();
        C::from_variables(&variables)
            .unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<C>()))
    }

    /// `binary` with these variables in its environment, killed when dropped; its output goes
    /// to the test's only with `TEST_LOG` set.
    pub fn command(&self, binary: impl AsRef<OsStr>) -> tokio::process::Command {
        let output = || match std::env::var_os("TEST_LOG") {
            Some(_) => Stdio::inherit(),
            None => Stdio::null(),
        };
        let mut command = tokio::process::Command::new(binary);
        command
            .envs(&self.variables)
            .stdout(output())
            .stderr(output())
            .kill_on_drop(true);
        command
    }
}

/// One test's own part of the stack, named after `label`.
#[derive(Debug, Clone)]
pub struct Slice {
    label: String,
    /// `<label>_rounds_…`.
    pub topic: String,
    /// `<label>_…`.
    pub database: String,
    /// `<label>_group_…`.
    pub group: String,
}

impl Slice {
    pub fn new(label: &str) -> Slice {
        Slice {
            label: label.to_owned(),
            topic: unique(&format!("{label}_rounds")),
            database: unique(label),
            group: unique(&format!("{label}_group")),
        }
    }

    /// A producer onto the slice's topic, reconciling against its database, with its own
    /// Redis key and transactional-id prefixes.
    pub fn producer(&self) -> Settings {
        Settings::producer()
            .kafka()
            .redis()
            .redis_key_prefix(&self.label)
            .set("TRANSACTIONAL_ID_PREFIX", unique(&self.label))
            .set("TOPIC", &self.topic)
            .clickhouse(&self.database)
    }

    /// A consumer of the slice's topic, in its group, into its database.
    pub fn consumer(&self) -> Settings {
        Settings::consumer()
            .kafka()
            .set("TOPIC", &self.topic)
            .set("GROUP_ID", &self.group)
            .clickhouse(&self.database)
            .redis()
    }

    /// A gateway over the slice's database, with its own Redis key prefix.
    pub fn gateway(&self, admin_token: &str) -> Settings {
        Settings::gateway()
            .redis()
            .redis_key_prefix(&self.label)
            .clickhouse(&self.database)
            .set("ADMIN_TOKEN", admin_token)
    }
}

/// Runs an in-process service (its `run_until_stopped` future) on the test's runtime; the URL
/// of its `port`.
pub fn serve<F>(port: u16, run: F) -> String
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(run);
    format!("http://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Config {
        listen_addr: String,
        #[serde(default)]
        topic_partitions: i32,
    }

    sluice_schema::service_config!(Config, "SLUICE_TEST_");

    #[test]
    fn settings_read_as_the_service_reads_its_environment() {
        let settings = Settings::new("SLUICE_TEST_").set("TOPIC_PARTITIONS", 4);
        let config: Config = settings.config();
        assert_eq!(config.listen_addr, "127.0.0.1:0");
        assert_eq!(config.topic_partitions, 4);
        assert_eq!(
            settings.variables().collect::<Vec<_>>(),
            [
                ("SLUICE_TEST_LISTEN_ADDR", "127.0.0.1:0"),
                ("SLUICE_TEST_TOPIC_PARTITIONS", "4")
            ]
        );
    }

    #[test]
    #[should_panic(expected = "SLUICE_TEST_TOPIK is not a setting")]
    fn a_misspelt_setting_fails() {
        Settings::new("SLUICE_TEST_")
            .set("TOPIK", "rounds")
            .config::<Config>();
    }
}
