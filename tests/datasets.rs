//! Datasets declared in files, end to end (issue 14): the shipped `amazon_reviews` and `events`
//! specs through the real services — producer (`POST /datasets/{name}/upload`) → Kafka →
//! consumer (the dataset's topic into its versions table, inside the dirty-hours protocol) →
//! processor (the specs' rollups) → gateway (`GET /datasets/{name}/{endpoint}`). Each answer
//! is compared with what the files say once duplicates (inside a file and across files)
//! collapse and later versions win: first read raw (no processor yet), then from the rollups,
//! then mixed after a second file, then from the rollups again; every page followed by cursor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{clickhouse, http, serve, Settings};
use sluice_tests::{Pipeline, Setup};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "test-admin-token-datasets-0123456789";
const WITHIN: Duration = Duration::from_secs(90);

/// The pipeline serving the shipped datasets, with a key; the processor starts later.
struct Run {
    pipeline: Pipeline,
    key: String,
}

fn datasets_dir() -> String {
    workspace_root().join("datasets").display().to_string()
}

async fn start(label: &str) -> Run {
    let mut setup = Setup::new(label, ADMIN_TOKEN);
    let prefix = format!("{}.", setup.slice.topic);
    setup.producer.datasets_dir = Some(datasets_dir());
    setup.producer.dataset_topic_prefix = prefix.clone();
    setup.consumer.datasets_dir = Some(datasets_dir());
    setup.consumer.datasets = "amazon_reviews,events".to_owned();
    setup.consumer.dataset_topic_prefix = prefix;
    setup.gateway.datasets_dir = Some(datasets_dir());
    let pipeline = setup.spawn().await;
    let key = pipeline.gateway.unlimited_key(label, 1_000_000).await;
    Run {
        key: key.expect("a key"),
        pipeline,
    }
}

impl Run {
    /// Starts a processor keeping the game rounds' and both datasets' rollups; stops when
    /// the token is cancelled. Returns its URL.
    async fn processor(&self) -> (String, CancellationToken) {
        let config = Settings::processor()
            .clickhouse(&self.pipeline.slice.database)
            .redis()
            .set("IDLE_PAUSE_MS", 50)
            .set("FAILURE_PAUSE_MS", 200)
            .set("DATASETS_DIR", datasets_dir())
            .set("DATASETS", "amazon_reviews,events")
            .config();
        let processor = sluice_processor::Application::build(config).await;
        let processor = processor.expect("the processor starts");
        let stop = CancellationToken::new();
        let url = serve(processor.port(), processor.run_until_stopped(stop.clone()));
        (url, stop)
    }

    /// Uploads `csv` to `dataset`; the upload id.
    async fn upload(&self, dataset: &str, csv: &str, accepted: u64, rejected: u64) -> String {
        let path = format!("/datasets/{dataset}/upload");
        let upload = http::upload_to(
            &self.pipeline.producer_url,
            &path,
            csv.as_bytes().to_vec(),
            "text/csv",
            &[],
        )
        .await;
        assert_eq!(upload.status, 200, "{}", upload.body);
        assert_eq!(upload.body["dataset"], dataset, "{}", upload.body);
        assert_eq!(
            (&upload.body["accepted"], &upload.body["rejected"]),
            (&json!(accepted), &json!(rejected)),
            "{}",
            upload.body
        );
        upload.body["upload_id"].as_str().unwrap().to_owned()
    }

    /// Every row of `path` with `params`, two per page, following `next_cursor`; and the
    /// pages read.
    async fn all(&self, path: &str, params: &[(&str, &str)]) -> (Vec<Value>, usize) {
        self.pipeline.every_row(&self.key, path, params).await
    }

    /// Waits until every page of `path` with `params` answers `expected`.
    async fn answers(&self, path: &str, params: &[(&str, &str)], expected: &[Value], when: &str) {
        let started = Instant::now();
        loop {
            let (rows, _) = self.all(path, params).await;
            if rows == expected {
                return;
            }
            assert!(
                started.elapsed() < WITHIN,
                "{when}: {path} {params:?} answered\n{rows:#?}\nnot\n{expected:#?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Waits until the processor at `url` reports no dirty hour and no dirty day in any rollup.
async fn processed(url: &str, rollups: usize) {
    let started = Instant::now();
    loop {
        let text = reqwest::get(format!("{url}/metrics")).await.unwrap();
        let text = text.text().await.unwrap();
        let gauges: Vec<f64> = text
            .lines()
            .filter(|line| {
                line.starts_with(sluice_processor::DIRTY_HOURS)
                    || line.starts_with(sluice_processor::DIRTY_DAYS)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        if gauges.len() == rollups && gauges.iter().all(|g| *g == 0.0) {
            return;
        }
        assert!(started.elapsed() < WITHIN, "still dirty:\n{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// 2024-03-01T00:00:00Z, in milliseconds.
const DAY_ONE_MS: i64 = 1_709_251_200_000;
const HOUR_MS: i64 = 3_600_000;

/// A review row: rating, asin, user, moment (ms).
type Review = (&'static str, &'static str, &'static str, i64);

fn reviews_csv(rows: &[Review], extra: &str) -> String {
    let mut csv = "rating,title,text,asin,user_id,timestamp\n".to_owned();
    for (rating, asin, user, ms) in rows {
        csv.push_str(&format!(
            "{rating},\"A \"\"title\"\"\",\"Line one,\nline two\",{asin},{user},{ms}\n"
        ));
    }
    csv.push_str(extra);
    csv
}

/// What `daily_by_asin` answers for `files` (in upload order, rows in file order: the last
/// version of a review wins), days `from` on, asin `only`.
fn expected_daily(files: &[&[Review]], from_ms: i64, only: Option<&str>) -> Vec<Value> {
    let mut latest: BTreeMap<(&str, i64, &str), f64> = BTreeMap::new();
    for file in files {
        for (rating, asin, user, ms) in file.iter() {
            latest.insert((*asin, *ms, *user), rating.parse().unwrap());
        }
    }
    let mut groups: BTreeMap<(i64, &str), (u64, f64)> = BTreeMap::new();
    for ((asin, ms, _), rating) in latest {
        if ms < from_ms || only.is_some_and(|o| o != asin) {
            continue;
        }
        let group = groups.entry((ms - ms % (24 * HOUR_MS), asin)).or_default();
        *group = (group.0 + 1, group.1 + rating);
    }
    groups
        .into_iter()
        .map(|((day, asin), (reviews, sum))| {
            let day = chrono::DateTime::from_timestamp_millis(day).unwrap();
            json!({
                "day": day.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "asin": asin,
                "reviews": reviews,
                "avg_rating": sum / reviews as f64,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_reviews_are_counted_once_per_review_and_day_however_often_they_are_sent() {
    let run = start("reviews").await;
    let d2 = DAY_ONE_MS + 24 * HOUR_MS;
    let first: &[Review] = &[
        ("5.0", "B01", "u1", DAY_ONE_MS + HOUR_MS + 123),
        ("3.0", "B01", "u2", DAY_ONE_MS + 2 * HOUR_MS),
        ("4.0", "B02", "u1", d2 + 10),
        // The same review twice in one file.
        ("5.0", "B01", "u1", DAY_ONE_MS + HOUR_MS + 123),
        ("1.0", "B02", "u3", d2 + 5 * HOUR_MS),
    ];
    let second: &[Review] = &[
        // A later version of a review: its rating changed.
        ("4.0", "B01", "u2", DAY_ONE_MS + 2 * HOUR_MS),
        // Reviews of the first file again.
        ("4.0", "B02", "u1", d2 + 10),
        ("1.0", "B02", "u3", d2 + 5 * HOUR_MS),
        ("2.5", "B01", "u3", d2 + 1),
    ];
    let path = "/datasets/amazon_reviews/daily_by_asin";
    let bad_rating = "abc,t,x,B03,u9,1709251200000\n";
    let id = run
        .upload("amazon_reviews", &reviews_csv(first, bad_rating), 5, 1)
        .await;
    // Reconciled like the rounds: all five accepted rows land (the review sent twice is one
    // review, but two rows, each its own version), and the bad one is listed.
    let producer = &run.pipeline.producer_url;
    let landed = http::wait_until_landed(producer, &id, None, WITHIN).await;
    assert_eq!(
        (&landed["accepted"], &landed["landed"]),
        (&json!(5), &json!(5))
    );
    let started = Instant::now();
    loop {
        let rejects = reqwest::get(format!("{producer}/uploads/{id}/rejects")).await;
        let rejects: Value = rejects.unwrap().json().await.unwrap();
        let listed = rejects["rejects"].as_array().map_or(0, Vec::len);
        if listed == 1 {
            assert_eq!(rejects["rejects"][0]["column"], "rating", "{rejects}");
            break;
        }
        assert!(started.elapsed() < WITHIN, "{rejects}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let expected = expected_daily(&[first], 0, None);
    assert_eq!(expected.len(), 2, "{expected:?}");
    run.answers(path, &[], &expected, "read raw").await;

    let (processor, _stop) = run.processor().await;
    // Two rollups per dataset endpoint, two of game rounds.
    processed(&processor, 6).await;
    let database = &run.pipeline.slice.database;
    let daily_rows = format!("SELECT count() FROM {database}.amazon_reviews_daily_by_asin_daily");
    assert_eq!(
        clickhouse::query(&daily_rows).await,
        "2",
        "the days are published"
    );
    run.answers(path, &[], &expected, "from the rollups").await;

    run.upload("amazon_reviews", &reviews_csv(second, ""), 4, 0)
        .await;
    let expected = expected_daily(&[first, second], 0, None);
    assert_eq!(expected.len(), 3, "{expected:?}");
    run.answers(path, &[], &expected, "after the second file")
        .await;
    processed(&processor, 6).await;
    run.answers(path, &[], &expected, "from the rollups again")
        .await;
    let (rows, pages) = run.all(path, &[]).await;
    assert_eq!((rows.len(), pages), (3, 2), "two rows a page");

    // Filters: one product; a range from the second day on.
    let only = expected_daily(&[first, second], 0, Some("B02"));
    run.answers(path, &[("asin", "B02")], &only, "one product")
        .await;
    let later = expected_daily(&[first, second], d2, None);
    run.answers(
        path,
        &[("from", "2024-03-02")],
        &later,
        "from the second day",
    )
    .await;
}

/// An event row: id, type, moment, value.
type Event = (&'static str, &'static str, &'static str, &'static str);

fn events_csv(rows: &[Event]) -> String {
    let mut csv = "event_id,event_type,occurred_at,user_id,value\n".to_owned();
    for (id, kind, at, value) in rows {
        csv.push_str(&format!("{id},{kind},{at},user-{id},{value}\n"));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_counted_and_summed_per_type_by_hour_and_by_day_at_their_latest_version() {
    let run = start("events").await;
    let (processor, _stop) = run.processor().await;
    run.upload(
        "events",
        &events_csv(&[
            ("e1", "click", "2024-03-01 10:15:00", "1.5"),
            ("e2", "click", "2024-03-01 10:45:00", ""),
            ("e3", "view", "2024-03-01 11:05:00", "2"),
            ("e4", "click", "2024-03-02 09:00:00", "0.25"),
            ("e6", "scroll", "2024-03-01 12:00:00", ""),
        ]),
        5,
        0,
    )
    .await;
    let path = "/datasets/events/by_type";
    let bucket = |unit: &str, at: &str, kind: &str, events: u64, value: Value| json!({unit: at, "event_type": kind, "events": events, "value": value});
    let first_days = [
        bucket("day", "2024-03-01T00:00:00Z", "click", 2, json!("1.5000")),
        bucket("day", "2024-03-01T00:00:00Z", "scroll", 1, Value::Null),
        bucket("day", "2024-03-01T00:00:00Z", "view", 1, json!("2.0000")),
        bucket("day", "2024-03-02T00:00:00Z", "click", 1, json!("0.2500")),
    ];
    run.answers(
        path,
        &[("granularity", "day")],
        &first_days,
        "the first file",
    )
    .await;
    processed(&processor, 6).await;
    // e2 again, now a view worth 3; e4 moved to the day before (its published hour and day
    // must stop counting it); e5 new, without a value; e1 re-sent as it was.
    run.upload(
        "events",
        &events_csv(&[
            ("e2", "view", "2024-03-01 10:45:00", "3"),
            ("e4", "click", "2024-03-01 13:10:00", "0.25"),
            ("e5", "view", "2024-03-01 10:59:59", ""),
            ("e1", "click", "2024-03-01 10:15:00", "1.5"),
        ]),
        4,
        0,
    )
    .await;
    let hours = [
        bucket("hour", "2024-03-01T10:00:00Z", "click", 1, json!("1.5000")),
        bucket("hour", "2024-03-01T10:00:00Z", "view", 2, json!("3.0000")),
        bucket("hour", "2024-03-01T11:00:00Z", "view", 1, json!("2.0000")),
        bucket("hour", "2024-03-01T12:00:00Z", "scroll", 1, Value::Null),
        bucket("hour", "2024-03-01T13:00:00Z", "click", 1, json!("0.2500")),
    ];
    let days = [
        bucket("day", "2024-03-01T00:00:00Z", "click", 2, json!("1.7500")),
        bucket("day", "2024-03-01T00:00:00Z", "scroll", 1, Value::Null),
        bucket("day", "2024-03-01T00:00:00Z", "view", 3, json!("5.0000")),
    ];
    for (when, wait) in [("as they land", false), ("from the rollups", true)] {
        if wait {
            processed(&processor, 6).await;
        }
        run.answers(path, &[("granularity", "hour")], &hours, when)
            .await;
        run.answers(path, &[("granularity", "day")], &days, when)
            .await;
    }
    let views = [days[2].clone()];
    let filters = [("granularity", "day"), ("event_type", "view")];
    run.answers(path, &filters, &views, "one type").await;
    let window = [
        ("granularity", "hour"),
        ("from", "2024-03-01T10:30:00Z"),
        ("to", "2024-03-01T11:00:00Z"),
    ];
    let half_hour = [bucket(
        "hour",
        "2024-03-01T10:00:00Z",
        "view",
        2,
        json!("3.0000"),
    )];
    run.answers(path, &window, &half_hour, "half an hour").await;
}
