//! The pipeline the browser looks at (producer, consumer and gateway in-process on free
//! ports), and the browser: Debian's chromium, headless, driven over WebDriver by chromedriver,
//! able to reach loopback only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use sluice_testkit::{unique, Stack};
use sluice_tests::{Pipeline, Setup};
use tokio::process::Child;

pub const ADMIN_TOKEN: &str = "browser-test-admin-token-0123456789";
pub const UPLOAD_TOKEN: &str = "browser-test-upload-token-0123456789";

/// What installs the browser.
const INSTALL: &str = "scripts/dev services";

/// Producer (upload token, CORS for the gateway's origin), consumer and gateway (its ledger
/// drained every 200 ms). The gateway starts first, so that the producer can allow its
/// origin; the console is then told the producer's URL in the page, as a user without
/// `SLUICE_GATEWAY_CONSOLE_PRODUCER_URL` does.
pub async fn spawn_pipeline() -> Pipeline {
    let mut setup = Setup::new("browser", ADMIN_TOKEN);
    setup.gateway.ledger_flush_interval_ms = 200;
    setup.producer.topic_partitions = 2;
    setup.producer.upload_tokens = Some(UPLOAD_TOKEN.to_owned().into());
    setup.producer_allows_console = true;
    setup.spawn().await
}

/// `POST /admin/keys`; the secret.
pub async fn create_key(pipeline: &Pipeline, credits: u64) -> String {
    let created = pipeline.create_key("browser", credits).await;
    created["key"].as_str().unwrap().to_owned()
}

/// A headless chromium session. Dropping it ends the session, so that chromedriver quits
/// chromium (killing chromedriver alone would leave the browser running), then kills
/// chromedriver — also when the test failed.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    driver_port: u16,
    session: String,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        end_session(self.driver_port, &self.session);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE /session/{id}` to chromedriver, synchronously (a drop cannot wait for a future);
/// chromedriver answers once chromium has quit.
fn end_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// The tool at `SLUICE_<variable>`, which must exist: a missing browser fails the test.
fn tool(path: Option<&String>, variable: &str) -> String {
    let path = path.unwrap_or_else(|| {
        panic!("{variable} is not set: install chromium and chromedriver with `{INSTALL}`")
    });
    assert!(
        std::path::Path::new(path).is_file(),
        "{path} ({variable}) is missing: install it with `{INSTALL}`"
    );
    path.clone()
}

/// Chromium's flags: headless, and no network but loopback. Every host name but `localhost`
/// fails to resolve, and every request that is not to loopback goes to a proxy that does not
/// exist (port 9 on loopback; chromium never proxies loopback itself), so an address written as
/// digits fails too. Background traffic (updates, sync, metrics) is off.
fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2800",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--metrics-recording-only",
        "--no-first-run",
        "--no-default-browser-check",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Starts chromedriver on a free port and opens a session.
pub async fn browser() -> Browser {
    let stack = Stack::get();
    let chromium = tool(stack.chromium.as_ref(), "SLUICE_CHROMIUM");
    let chromedriver = tool(stack.chromedriver.as_ref(), "SLUICE_CHROMEDRIVER");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let verbose = std::env::var_os("TEST_LOG").is_some();
    let driver = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(if verbose {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(if verbose {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("{chromedriver} does not start: {error}"));
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": chromium_args(&profile) }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(error) if started.elapsed() < Duration::from_secs(20) => {
                tracing_or_sleep(&error).await;
            }
            Err(error) => panic!("no WebDriver session from {chromedriver} in 20 s: {error}"),
        }
    };
    let session = client
        .session_id()
        .await
        .unwrap()
        .expect("chromedriver names its session");
    Browser {
        client,
        _driver: driver,
        driver_port: port,
        session,
        profile,
    }
}

async fn tracing_or_sleep(error: &fantoccini::error::NewSessionError) {
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("chromedriver not ready yet: {error}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

impl Browser {
    /// Waits up to `timeout` for `script` (a JavaScript expression's body, `return …`) to
    /// return `true`, failing with `what` and the last value.
    pub async fn wait_until(&self, what: &str, script: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            let value = self.client.execute(script, vec![]).await.unwrap();
            if value == serde_json::Value::Bool(true) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{what}: not true after {timeout:?} (`{script}` gave {value})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css}: {error}"))
            .text()
            .await
            .unwrap()
    }

    /// Types `text` into the input `css`, replacing what it holds.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css}: {error}"))
            .click()
            .await
            .unwrap();
    }

    /// Every resource the page loaded (documents, scripts, styles, images, requests), by URL:
    /// each must be on loopback.
    pub async fn assert_only_loopback_was_reached(&self) {
        let urls = self
            .client
            .execute(
                "return [location.href].concat(performance.getEntriesByType('resource') \
                 .map(e => e.name));",
                vec![],
            )
            .await
            .unwrap();
        for url in urls.as_array().unwrap() {
            let url = url.as_str().unwrap();
            assert!(
                url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
                "the page reached beyond loopback: {url}"
            );
        }
    }

    /// Saves a PNG of the window under `target/sluice/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sluice/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(&path, png).unwrap();
        path
    }
}
