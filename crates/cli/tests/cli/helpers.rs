//! One pipeline per test, and a runner for the `sluice` binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_testkit::stack::workspace_root;
use sluice_testkit::{serve, unique, Slice};
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "cli-test-admin-token-0123456789";
pub const UPLOAD_TOKEN: &str = "cli-test-upload-token-0123456789";

/// Producer (with an upload token), consumer and gateway, started in-process on free ports.
pub struct Pipeline {
    pub producer_url: String,
    pub gateway_url: String,
    /// A directory of this test's own for files (and as `$HOME`, so no user config is read).
    pub dir: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The repository's `datasets/`: every service of a pipeline knows its specs.
pub fn datasets_dir() -> String {
    workspace_root().join("datasets").display().to_string()
}

/// Producer (upload token, two partitions), consumer and gateway over a slice of the stack of
/// their own, each knowing the datasets of [`datasets_dir`]: the producer takes uploads of
/// them (onto topics of the slice's own prefix), the consumer writes `records`, the gateway
/// serves it. (The workspace tests' `sluice_tests::Setup` starts the same three; this package
/// does not depend on it.)
pub async fn spawn_pipeline() -> Pipeline {
    if std::env::var_os("TEST_LOG").is_some() {
        sluice_schema::telemetry::init_tracing("info");
    }
    let slice = Slice::new("cli");
    let dataset_topic_prefix = format!("{}.", slice.topic);
    let mut producer: sluice_producer::Config = slice.producer().config();
    producer.topic_partitions = 2;
    producer.upload_tokens = Some(UPLOAD_TOKEN.to_owned().into());
    producer.datasets_dir = Some(datasets_dir());
    producer.dataset_topic_prefix = dataset_topic_prefix.clone();
    let producer = sluice_producer::Application::build(producer).await.unwrap();
    let producer_url = serve(producer.port(), producer.run_until_stopped());

    let mut consumer: sluice_consumer::Config = slice.consumer().config();
    consumer.batch_max_rows = 1_000;
    consumer.batch_timeout_ms = 200;
    consumer.datasets_dir = Some(datasets_dir());
    consumer.datasets = "records".into();
    consumer.dataset_topic_prefix = dataset_topic_prefix;
    let consumer = sluice_consumer::Application::build(consumer).await.unwrap();
    let shutdown = CancellationToken::new();
    serve(
        consumer.port(),
        consumer.run_until_stopped(shutdown.clone()),
    );

    let mut gateway: sluice_gateway::Config = slice.gateway(ADMIN_TOKEN).config();
    gateway.datasets_dir = Some(datasets_dir());
    let gateway = sluice_gateway::Application::build(gateway).await.unwrap();
    let gateway_url = serve(gateway.port(), gateway.run_until_stopped());

    let dir = std::env::temp_dir().join(unique("sluice_cli_test"));
    std::fs::create_dir_all(&dir).unwrap();
    Pipeline {
        producer_url,
        gateway_url,
        dir,
        shutdown,
    }
}

/// What a run of `sluice` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON (one document).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// A `sluice` command line with the pipeline's settings in its environment (and nothing of
/// the caller's: no `SLUICE_*` variable, no config file).
pub struct Sluice {
    command: tokio::process::Command,
}

impl Pipeline {
    pub fn sluice(&self, args: &[&str]) -> Sluice {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.args(args);
        for variable in [
            "SLUICE_PRODUCER_URL",
            "SLUICE_GATEWAY_URL",
            "SLUICE_UPLOAD_TOKEN",
            "SLUICE_ADMIN_TOKEN",
            "SLUICE_API_KEY",
            "SLUICE_CONFIG",
        ] {
            command.env_remove(variable);
        }
        command
            .env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("SLUICE_PRODUCER_URL", &self.producer_url)
            .env("SLUICE_GATEWAY_URL", &self.gateway_url)
            .env("SLUICE_UPLOAD_TOKEN", UPLOAD_TOKEN)
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN);
        Sluice { command }
    }

    /// Writes `bytes` into the test's directory.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `sluice keys create NAME --credits N --json`: (id, secret).
    pub async fn create_key(&self, credits: u64) -> (String, String) {
        let created = self
            .sluice(&[
                "keys",
                "create",
                "cli-test",
                "--credits",
                &credits.to_string(),
                "--json",
            ])
            .run()
            .await;
        assert_eq!(created.code, 0, "{created:?}");
        let body = created.json();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }
}

impl Sluice {
    pub fn env(mut self, name: &str, value: &str) -> Sluice {
        self.command.env(name, value);
        self
    }

    pub fn env_remove(mut self, name: &str) -> Sluice {
        self.command.env_remove(name);
        self
    }

    pub async fn run(mut self) -> Run {
        let output = tokio::time::timeout(Duration::from_secs(120), self.command.output())
            .await
            .expect("sluice finishes within 120 s")
            .expect("sluice runs");
        Run {
            code: output.status.code().expect("sluice exits, not killed"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 on stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 on stderr"),
        }
    }
}

pub fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
