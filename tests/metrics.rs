//! `/metrics`, `/health` and `/ready` of all four services, against real Kafka, ClickHouse and
//! Redis: an upload with bad rows, a dropped file, a poison message, metered queries (one of
//! them failing and refunded) and a few HTTP errors, then every required metric family is read
//! back from the services' own `/metrics` with the values this traffic must have produced.
//! This binary has one test, so the process-wide recorder holds exactly this test's traffic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_testkit::gateway::Gateway;
use sluice_testkit::generate::{self, Options};
use sluice_testkit::{clickhouse, dashboard, http, kafka, serve, unique, Settings, Slice, Stack};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const PARTITIONS: i32 = 3;

/// One sample of the exposition format: `name{label="value",…} number`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                // Label values here never contain `",`; good enough for our own metrics.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// Sum of the samples of `name` whose labels include every `(key, value)` of `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.matching(name, with).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }

    /// Checks `name` is a Prometheus histogram (buckets, `+Inf` = count), not a summary, and
    /// returns (count, sum) over the samples matching `with`.
    fn histogram(&self, name: &str, with: &[(&str, &str)]) -> (f64, f64) {
        let buckets: Vec<&Sample> = self.matching_owned(&format!("{name}_bucket"), with);
        assert!(
            !buckets.is_empty(),
            "{name} has no buckets for {with:?} (a summary?)"
        );
        let count = self.sum(&format!("{name}_count"), with);
        let sum = self.sum(&format!("{name}_sum"), with);
        let infinite: f64 = buckets
            .iter()
            .filter(|b| b.labels.get("le").map(String::as_str) == Some("+Inf"))
            .map(|b| b.value)
            .sum();
        assert_eq!(infinite, count, "{name}: +Inf bucket and count disagree");
        assert!(
            buckets.len() > 2,
            "{name}: configured buckets expected, got {buckets:?}"
        );
        (count, sum)
    }

    fn matching_owned(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| {
                s.name == name
                    && with
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }
}

async fn scrape(base: &str) -> Scrape {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200, "{base}/metrics");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape(parse_exposition(&response.text().await.unwrap()))
}

async fn status(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// Polls `check` until it returns true, failing with `what` after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "{what}: not after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_reports_its_work_in_prometheus_format() {
    if std::env::var_os("TEST_LOG").is_some() {
        sluice_schema::telemetry::init_tracing("info");
    }
    let stack = Stack::get();
    let slice = Slice::new("metrics");
    let (topic, database) = (slice.topic.clone(), slice.database.clone());
    let prefix = format!("{}:", unique("metrics"));

    // The producer without ClickHouse: this test reads no reconciliation.
    let mut producer: sluice_producer::Config = Settings::producer().kafka().redis().config();
    producer.redis_key_prefix = prefix.clone();
    producer.transactional_id_prefix = Some(unique("metrics"));
    producer.topic = topic.clone();
    producer.topic_partitions = PARTITIONS;
    let producer = sluice_producer::Application::build(producer).await.unwrap();
    let producer_url = serve(producer.port(), producer.run_until_stopped());

    let mut consumer: sluice_consumer::Config = slice.consumer().config();
    consumer.topic_partitions = PARTITIONS;
    consumer.batch_max_rows = 200;
    consumer.batch_timeout_ms = 200;
    consumer.statistics_interval_ms = 200;
    let consumer = sluice_consumer::Application::build(consumer).await.unwrap();
    let shutdown = CancellationToken::new();
    let consumer_url = serve(
        consumer.port(),
        consumer.run_until_stopped(shutdown.clone()),
    );

    let gateway_config = |clickhouse_url: &str| {
        let mut gateway: sluice_gateway::Config = slice.gateway(ADMIN_TOKEN).config();
        gateway.clickhouse.url = clickhouse_url.to_owned();
        gateway.redis_key_prefix = prefix.clone();
        gateway
    };
    let gateway = sluice_gateway::Application::build(gateway_config(&stack.clickhouse_url))
        .await
        .unwrap();
    let gateway_url = serve(gateway.port(), gateway.run_until_stopped());
    // Same Redis keys, but a ClickHouse that is not there: its queries fail and are refunded.
    let broken = sluice_gateway::Application::build(gateway_config("http://127.0.0.1:9"))
        .await
        .unwrap();
    let broken_url = serve(broken.port(), broken.run_until_stopped());

    // The watcher, on a topic of its own (the consumer's counts below stay this test's upload).
    let inbox = std::env::temp_dir().join(unique("metrics_inbox"));
    let mut watcher =
        sluice_watcher::Config::with_endpoints(&inbox, &stack.kafka_brokers, &stack.redis_url);
    watcher.listen_addr = "127.0.0.1:0".into();
    watcher.topic = unique("metrics_watched");
    watcher.topic_partitions = PARTITIONS;
    watcher.redis_key_prefix = prefix.clone();
    watcher.transactional_id_prefix = unique("metrics_watcher");
    watcher.rescan_interval_ms = 200;
    let watcher = sluice_watcher::Application::build(watcher).await.unwrap();
    let watcher_url = serve(watcher.port(), watcher.run_until_stopped(shutdown.clone()));

    // The processor, over this test's database (the consumer created its tables).
    let processor = sluice_processor::Config {
        listen_addr: "127.0.0.1:0".into(),
        clickhouse: sluice_schema::config::ClickHouseSettings {
            url: stack.clickhouse_url.clone(),
            database: database.clone(),
            user: stack.clickhouse_user.clone(),
            password: stack.clickhouse_password.clone().into(),
            cluster: None,
        },
        redis_url: stack.redis_url.clone().into(),
        max_hours_per_step: 1,
        rows_per_statement: 2_000_000,
        claim_hold_ms: 30_000,
        idle_pause_ms: 50,
        failure_pause_ms: 200,
        lag_interval_ms: 100,
        datasets_dir: None,
        datasets: String::new(),
    };
    let processor_app = sluice_processor::Application::build(processor.clone())
        .await
        .unwrap();
    let processor_url = serve(
        processor_app.port(),
        processor_app.run_until_stopped(shutdown.clone()),
    );

    // Liveness and readiness everywhere.
    for base in [
        &producer_url,
        &consumer_url,
        &gateway_url,
        &watcher_url,
        &processor_url,
    ] {
        assert_eq!(
            status(&format!("{base}/health")).await,
            200,
            "{base}/health"
        );
        let ready = format!("{base}/ready");
        eventually(&ready, Duration::from_secs(30), || async {
            status(&ready).await == 200
        })
        .await;
    }
    assert_eq!(status(&format!("{broken_url}/ready")).await, 503);

    // Producer: one upload with bad rows.
    let mut options = Options::new(1_000);
    options.bad_row_every = Some(100);
    let export = generate::export(&options);
    let good = export.summary.good_rows;
    let upload = http::upload_csv(&producer_url, export.bytes.clone(), "text/csv").await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    let rejected = upload.body["rejected"].as_u64().unwrap();
    assert_eq!(rejected, 10);
    // Consumer: one message that is not Avro, for the quarantine and the dead-letter topic.
    kafka::produce(&topic, "poison", &[b"not avro at all".to_vec()]).await;

    let rounds_table = format!("{database}.game_rounds");
    let count_sql = format!("SELECT count() FROM {rounds_table}");
    eventually(
        "every good row in ClickHouse",
        Duration::from_secs(60),
        || async { clickhouse::query(&count_sql).await == good.to_string() },
    )
    .await;
    let quarantine_sql = format!("SELECT count() FROM {database}.quarantine FINAL");
    eventually(
        "the poison message quarantined",
        Duration::from_secs(60),
        || async { clickhouse::query(&quarantine_sql).await == "1" },
    )
    .await;

    // Gateway: a key with 3 credits; two answers, one failure (refunded), one more answer,
    // then 402; plus a request without a key and a path no route takes.
    let client = reqwest::Client::new();
    let created = Gateway::new(&gateway_url, ADMIN_TOKEN)
        .create_key(&serde_json::json!({"name": "metrics", "credits": 3}))
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let query = |base: &str| {
        client
            .get(format!("{base}/aggregated_game_rounds"))
            .header("X-API-Key", &key)
            .send()
    };
    let mut statuses = Vec::new();
    for base in [
        &gateway_url,
        &gateway_url,
        &broken_url,
        &gateway_url,
        &gateway_url,
    ] {
        statuses.push(query(base).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 503, 200, 402]);
    let no_key = client
        .get(format!("{gateway_url}/aggregated_game_rounds"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(status(&format!("{gateway_url}/no/such/route")).await, 404);

    // Lag: librdkafka reports it for every partition once the group committed.
    eventually(
        "lag reported for every partition",
        Duration::from_secs(30),
        || async {
            let scrape = scrape(&consumer_url).await;
            (0..PARTITIONS).all(|p| {
                scrape
                    .matching_owned(
                        "sluice_consumer_lag_messages",
                        &[("topic", &topic), ("partition", &p.to_string())],
                    )
                    .len()
                    == 1
            })
        },
    )
    .await;
    // Everything is consumed and committed: the lag settles at (nearly) zero. A transaction's
    // commit marker occupies one offset past the last record the consumer stores, so each
    // partition that saw an upload may stay at 1.
    eventually("lag settled", Duration::from_secs(30), || async {
        let scrape = scrape(&consumer_url).await;
        scrape
            .matching_owned("sluice_consumer_lag_messages", &[("topic", &topic)])
            .iter()
            .all(|s| (0.0..=1.0).contains(&s.value))
    })
    .await;

    // Watcher: one dropped file (written under a temporary name, then renamed into place).
    let mut dropped = Options::new(100);
    dropped.seed = 11;
    let dropped = generate::export(&dropped);
    std::fs::write(inbox.join("rounds.csv.tmp"), &dropped.bytes).unwrap();
    std::fs::rename(inbox.join("rounds.csv.tmp"), inbox.join("rounds.csv")).unwrap();
    eventually(
        "the dropped file ingested",
        Duration::from_secs(30),
        || async {
            scrape(&watcher_url)
                .await
                .sum("sluice_watcher_files_total", &[("outcome", "ingested")])
                == 1.0
        },
    )
    .await;

    let producer_scrape = scrape(&producer_url).await;
    let consumer_scrape = scrape(&consumer_url).await;
    let gateway_scrape = scrape(&gateway_url).await;
    let watcher_scrape = scrape(&watcher_url).await;

    // Processor: the hours the consumer marked for the upload, and two hours of rows written
    // directly and backfilled, are recomputed, one step each, until none is dirty.
    stack
        .clickhouse_client(&database)
        .query(
            "INSERT INTO round_versions (created_timestamp, game_instance_id, user_id, game_id, \
             version) VALUES (toDateTime(1571731200), 1, 'aa', 7, 1), \
             (toDateTime(1571734800), 2, 'aa', 7, 1)",
        )
        .execute()
        .await
        .unwrap();
    let hours = sluice_processor::backfill(&processor, 1_571_731_200, 1_571_734_800)
        .await
        .unwrap();
    assert_eq!(hours, 2);
    eventually("hours processed", Duration::from_secs(30), || async {
        let s = scrape(&processor_url).await;
        s.sum("sluice_processor_hours_processed_total", &[]) >= 2.0
            && s.sum("sluice_processor_dirty_hours", &[]) == 0.0
    })
    .await;
    let processor_scrape = scrape(&processor_url).await;
    assert_eq!(
        processor_scrape.sum("sluice_processor_step_failures_total", &[]),
        0.0
    );
    assert!(processor_scrape.has("sluice_processor_lag_seconds"));
    assert!(processor_scrape.has("sluice_processor_step_seconds_count"));

    let w = &watcher_scrape;
    assert_eq!(
        w.sum("sluice_watcher_rows_total", &[("outcome", "accepted")]),
        dropped.summary.good_rows as f64
    );
    assert_eq!(
        w.sum("sluice_watcher_bytes_total", &[]),
        dropped.bytes.len() as f64
    );
    assert_eq!(
        w.sum("sluice_watcher_files_total", &[("outcome", "quarantined")]),
        0.0
    );
    std::fs::remove_dir_all(&inbox).unwrap();

    // Histograms are histograms everywhere: nothing is rendered as a summary.
    for scrape in [&producer_scrape, &consumer_scrape, &gateway_scrape] {
        assert!(
            scrape.0.iter().all(|s| !s.labels.contains_key("quantile")),
            "a summary is exposed"
        );
    }

    // Producer.
    let p = &producer_scrape;
    assert_eq!(p.sum("sluice_producer_rows_read_total", &[]), 1_000.0);
    assert_eq!(
        p.sum("sluice_producer_rows_total", &[("outcome", "accepted")]),
        good as f64
    );
    assert_eq!(
        p.sum("sluice_producer_rows_total", &[("outcome", "rejected")]),
        rejected as f64
    );
    assert_eq!(
        p.sum("sluice_producer_bytes_total", &[]),
        export.bytes.len() as f64
    );
    assert_eq!(
        p.sum("sluice_producer_uploads_total", &[("outcome", "accepted")]),
        1.0
    );

    // Consumer.
    let c = &consumer_scrape;
    assert_eq!(
        c.sum("sluice_consumer_rows_inserted_total", &[]),
        good as f64
    );
    let batches = c.sum("sluice_consumer_batches_total", &[]);
    assert!(batches >= (good / 200) as f64, "{batches} batches");
    let (batch_count, batch_rows) = c.histogram("sluice_consumer_batch_rows", &[]);
    assert_eq!(batch_count, batches);
    assert_eq!(
        batch_rows, good as f64,
        "batch sizes add up to the rows inserted"
    );
    let (insert_count, insert_seconds) = c.histogram("sluice_consumer_insert_seconds", &[]);
    assert_eq!(insert_count, batches);
    assert!(insert_seconds > 0.0 && insert_seconds < 60.0 * batches);
    assert_eq!(c.sum("sluice_consumer_poison_messages_total", &[]), 1.0);
    assert_eq!(c.sum("sluice_consumer_dead_letters_total", &[]), 1.0);

    // Gateway: 4 admitted (3 answered, 1 failed), the failed one refunded; 402 costs nothing.
    let g = &gateway_scrape;
    assert_eq!(g.sum("sluice_gateway_credits_charged_total", &[]), 4.0);
    assert_eq!(g.sum("sluice_gateway_credits_refunded_total", &[]), 1.0);
    assert_eq!(
        g.sum("sluice_gateway_queries_total", &[("outcome", "ok")]),
        3.0
    );
    assert_eq!(
        g.sum("sluice_gateway_queries_total", &[("outcome", "failed")]),
        1.0
    );

    // HTTP, by matched route and status, on every service.
    let rounds = [("service", "gateway"), ("route", "/aggregated_game_rounds")];
    for (code, expected) in [("200", 3.0), ("503", 1.0), ("402", 1.0), ("401", 1.0)] {
        let with = [rounds[0], rounds[1], ("method", "GET"), ("status", code)];
        assert_eq!(
            g.sum("sluice_http_requests_total", &with),
            expected,
            "gateway {code}"
        );
        let (count, _) = g.histogram("sluice_http_request_duration_seconds", &with);
        assert_eq!(count, expected, "gateway {code} latency samples");
    }
    assert_eq!(
        g.sum(
            "sluice_http_requests_total",
            &[
                ("service", "gateway"),
                ("route", "unmatched"),
                ("status", "404")
            ]
        ),
        1.0,
        "unmatched paths are one series, not one per path"
    );
    assert!(
        g.0.iter()
            .all(|s| s.labels.get("route").map(String::as_str) != Some("/no/such/route")),
        "a raw path became a label"
    );
    assert_eq!(
        g.sum(
            "sluice_http_requests_total",
            &[
                ("service", "gateway"),
                ("route", "/admin/keys"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert_eq!(
        p.sum(
            "sluice_http_requests_total",
            &[
                ("service", "producer"),
                ("route", "/csv_upload"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        1.0
    );
    p.histogram(
        "sluice_http_request_duration_seconds",
        &[("service", "producer"), ("route", "/csv_upload")],
    );
    // Each service counted its own /health and /metrics (the registry is shared in this
    // process; the `service` label tells them apart).
    let all = scrape(&producer_url).await;
    for service in ["producer", "consumer", "gateway"] {
        for route in ["/health", "/metrics"] {
            let with = [("service", service), ("route", route), ("status", "200")];
            assert!(
                all.sum("sluice_http_requests_total", &with) >= 1.0,
                "{service}: {route} not counted"
            );
        }
    }

    // Every metric the Grafana dashboard queries is really exposed.
    let exposed = |name: &str| {
        [
            &producer_scrape,
            &consumer_scrape,
            &gateway_scrape,
            &watcher_scrape,
            &processor_scrape,
        ]
        .iter()
        .any(|s| s.has(name))
    };
    for query in dashboard::queries() {
        for name in dashboard::metric_names(&query.expr) {
            assert!(
                exposed(&name),
                "panel {:?}: `{name}` is not in any /metrics",
                query.panel
            );
        }
    }

    shutdown.cancel();
}
