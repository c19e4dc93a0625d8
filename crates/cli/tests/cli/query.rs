//! `sluice query`.

use sluice_testkit::gateway::Gateway;
use sluice_testkit::generate::{self, Options};

use crate::helpers::{path_arg, spawn_pipeline, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_all_follows_every_cursor_and_matches_the_rows_of_one_big_page() {
    let pipeline = spawn_pipeline().await;
    let export = generate::export(&Options::new(1_000));
    let path = pipeline.file("rounds.csv", &export.bytes);
    let upload = pipeline
        .sluice(&["upload", path_arg(&path), "--wait", "60"])
        .run()
        .await;
    assert!(upload.stdout.contains("landed: all 1000"), "{upload:?}");
    let (_, key) = pipeline.create_key(1_000).await;

    // What one page of everything says.
    let whole = Gateway::new(&pipeline.gateway_url, ADMIN_TOKEN)
        .aggregated(&key, &[("page_size", "10000")])
        .await;
    assert_eq!(whole["has_more"], false);
    let expected = whole["data"].as_array().unwrap();
    let page_size = 25;
    let pages = expected.len().div_ceil(page_size);
    assert!(pages >= 4, "{} buckets make too few pages", expected.len());

    let all = pipeline
        .sluice(&[
            "query",
            "aggregated_game_rounds",
            &format!("page_size={page_size}"),
            "--all",
            "--format",
            "jsonl",
        ])
        .env("SLUICE_API_KEY", &key)
        .run()
        .await;
    assert_eq!(all.code, 0, "{all:?}");
    let rows: Vec<serde_json::Value> = all
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&rows, expected);
    // One credit per page, after the one page above.
    let left = 1_000 - 1 - pages;
    assert!(
        all.stderr.contains(&format!(
            "{} rows in {pages} pages; {left} credits left",
            expected.len()
        )),
        "{all:?}"
    );

    // Without --all: one page, and a note on how to go on.
    let one = pipeline
        .sluice(&[
            "query",
            "aggregated_game_rounds",
            "page_size=5",
            "--format",
            "csv",
        ])
        .env("SLUICE_API_KEY", &key)
        .run()
        .await;
    assert_eq!(one.code, 0, "{one:?}");
    let lines: Vec<&str> = one.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{one:?}");
    assert!(lines[0].starts_with("hour,player_id,game_id,"), "{one:?}");
    assert!(
        one.stderr.contains("More rows follow: add --all"),
        "{one:?}"
    );
}
