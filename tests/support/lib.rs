//! What the workspace's tests share that needs the services themselves, so it cannot live in
//! `sluice-testkit` (the services' own tests depend on that crate): the pipeline, in-process.
//!
//! # Layout
//! - [`Setup`]: the configs of a producer, a consumer and a gateway over a test's own
//!   [`Slice`] of the stack, to adjust before they start.
//! - [`Pipeline`]: the three running on free ports of loopback, until it is dropped.

use sluice_testkit::gateway::Gateway;
use sluice_testkit::{serve, Slice};
use tokio_util::sync::CancellationToken;

/// A pipeline's configs before it starts.
pub struct Setup {
    pub slice: Slice,
    pub producer: sluice_producer::Config,
    pub consumer: sluice_consumer::Config,
    pub gateway: sluice_gateway::Config,
    /// Whether the producer lets pages the gateway serves (its console) call it (CORS).
    pub producer_allows_console: bool,
    /// The tracing filter when `TEST_LOG` is set.
    pub log_filter: &'static str,
    admin_token: String,
}

impl Setup {
    /// A pipeline over a new slice named after `label`. The consumer inserts batches of at
    /// most 1,000 rows at least every 200 ms, so that rows land soon.
    pub fn new(label: &str, admin_token: &str) -> Setup {
        let slice = Slice::new(label);
        let mut consumer: sluice_consumer::Config = slice.consumer().config();
        consumer.batch_max_rows = 1_000;
        consumer.batch_timeout_ms = 200;
        Setup {
            producer: slice.producer().config(),
            consumer,
            gateway: slice.gateway(admin_token).config(),
            slice,
            producer_allows_console: false,
            log_filter: "info",
            admin_token: admin_token.to_owned(),
        }
    }

    /// Starts the gateway, then the producer (so that it can be told the gateway's origin),
    /// then the consumer.
    pub async fn spawn(mut self) -> Pipeline {
        if std::env::var_os("TEST_LOG").is_some() {
            sluice_schema::telemetry::init_tracing(self.log_filter);
        }
        let gateway = sluice_gateway::Application::build(self.gateway).await;
        let gateway = gateway.expect("the gateway starts");
        let gateway_url = serve(gateway.port(), gateway.run_until_stopped());
        if self.producer_allows_console {
            self.producer.cors_allowed_origins = vec![gateway_url.clone()];
        }
        let producer = sluice_producer::Application::build(self.producer).await;
        let producer = producer.expect("the producer starts");
        let producer_url = serve(producer.port(), producer.run_until_stopped());
        let consumer = sluice_consumer::Application::build(self.consumer).await;
        let consumer = consumer.expect("the consumer starts");
        let shutdown = CancellationToken::new();
        serve(
            consumer.port(),
            consumer.run_until_stopped(shutdown.clone()),
        );
        Pipeline {
            producer_url,
            gateway: Gateway::new(gateway_url.clone(), self.admin_token),
            gateway_url,
            slice: self.slice,
            shutdown,
        }
    }
}

/// Producer, consumer and gateway, running in-process; dropping it stops the consumer (which
/// flushes and commits first).
pub struct Pipeline {
    pub producer_url: String,
    pub gateway_url: String,
    /// The topic, database and consumer group the pipeline owns.
    pub slice: Slice,
    /// The gateway, as its admin uses it.
    pub gateway: Gateway,
    shutdown: CancellationToken,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Pipeline {
    /// Every row the gateway's `path` answers `key` with `params`, two per page, following
    /// `next_cursor` (every page must be a 200); and the pages read.
    pub async fn every_row(
        &self,
        key: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> (Vec<serde_json::Value>, usize) {
        let client = reqwest::Client::new();
        let (mut rows, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
        loop {
            let mut query: Vec<(&str, &str)> = params.to_vec();
            query.push(("limit", "2"));
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor));
            }
            let response = (client.get(format!("{}{path}", self.gateway_url)))
                .query(&query)
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let page: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, 200, "{path} {query:?}: {page}");
            pages += 1;
            rows.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return (rows, pages),
            }
        }
    }

    /// `POST /admin/keys` on the gateway; the 201 answer (with the secret under `key`).
    pub async fn create_key(&self, name: &str, credits: u64) -> serde_json::Value {
        let body = serde_json::json!({"name": name, "credits": credits});
        self.gateway.create_key(&body).await.expect("a key")
    }
}
