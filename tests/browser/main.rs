//! Real-browser tests: Debian's chromium, headless, over WebDriver (chromedriver), with no
//! network but loopback. They open Swagger UI at `/docs/` on the gateway and the producer and
//! the web console at `/console`, upload a file through the console, follow it until it landed
//! in ClickHouse, page through a query and plot it, and save a screenshot of each page under
//! `target/sluice/screenshots/`. Without chromium (`scripts/dev services` installs it) they
//! fail, naming the command.

mod helpers;

use std::time::Duration;

use fantoccini::Locator;
use helpers::*;
use sluice_testkit::generate::{self, Options};

/// How many operations an OpenAPI document describes.
async fn operations(url: &str) -> usize {
    let document: serde_json::Value = reqwest::get(format!("{url}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|methods| methods.as_object().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_renders_every_operation_of_both_services_offline() {
    let pipeline = spawn_pipeline().await;
    let browser = browser().await;
    for (name, url, title) in [
        ("gateway-docs", &pipeline.gateway_url, "Sluice gateway"),
        ("producer-docs", &pipeline.producer_url, "Sluice producer"),
    ] {
        let expected = operations(url).await;
        // `/docs` redirects to `/docs/`, whose assets are relative to it.
        browser.client.goto(&format!("{url}/docs")).await.unwrap();
        browser
            .wait_until(
                &format!("{name}: {expected} operations rendered"),
                &format!("return document.querySelectorAll('.opblock').length === {expected};"),
                Duration::from_secs(30),
            )
            .await;
        assert!(browser.text(".info .title").await.contains(title), "{name}");
        assert!(browser
            .client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/docs/"));
        browser.assert_only_loopback_was_reached().await;
        let shot = browser.screenshot(name).await;
        eprintln!("{name}: {}", shot.display());
    }
}

/// A decimal string with at most 4 fraction digits, in 10^-4 units.
fn scaled(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = int.starts_with('-');
    let units = int.trim_start_matches('-').parse::<i128>().unwrap() * 10_000
        + format!("{frac:0<4}").parse::<i128>().unwrap();
    if negative {
        -units
    } else {
        units
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_uploads_a_file_follows_it_to_clickhouse_and_explores_it() {
    let pipeline = spawn_pipeline().await;
    let key = create_key(&pipeline, 1_000).await;
    let export = generate::export(&Options {
        players: 2,
        bad_row_every: Some(40),
        ..Options::new(160)
    });
    let dir = std::env::temp_dir().join(sluice_testkit::unique("console"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rounds.csv");
    std::fs::write(&file, &export.bytes).unwrap();

    let browser = browser().await;
    let page = format!("{}/console", pipeline.gateway_url);
    browser.client.goto(&page).await.unwrap();
    browser.fill("#producer-url", &pipeline.producer_url).await;
    browser.fill("#upload-token", UPLOAD_TOKEN).await;
    browser.fill("#api-key", &key).await;
    let input = browser.client.find(Locator::Css("#upload-file")).await;
    input
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    browser.click("#upload-start").await;

    browser
        .wait_until(
            "the upload is reconciled as landed",
            "const s = document.querySelector('#reconciliation dd[data-field=status]'); \
             return s !== null && s.textContent === 'landed';",
            Duration::from_secs(90),
        )
        .await;
    let summary = &export.summary;
    let accepted = browser.text("#receipt dd[data-field=accepted]").await;
    assert_eq!(accepted, summary.good_rows.to_string());
    let progress = browser.client.execute(
        "const p = document.getElementById('upload-progress'); return p.value === p.max && p.max > 1;",
        vec![],
    );
    assert_eq!(progress.await.unwrap(), true, "the progress bar is full");
    browser
        .wait_until(
            "every rejected row is listed",
            &format!(
                "return document.querySelectorAll('#rejects tbody tr').length === {};",
                summary.bad_lines.len()
            ),
            Duration::from_secs(30),
        )
        .await;

    let pages = explore(&browser, summary).await;
    usage_shows_the_queries(&browser, pages).await;
    browser.assert_only_loopback_was_reached().await;
    let shot = browser.screenshot("console").await;
    eprintln!("console: {}", shot.display());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Queries one player's hours a bucket per page, following `next_cursor` to the end; the GGR
/// column adds up to the player's generated total, and the chart has a bar per hour. Returns
/// how many pages were read.
async fn explore(browser: &Browser, summary: &generate::Summary) -> usize {
    let (player, totals) = summary.totals.iter().next().unwrap();
    browser.fill("#q-player", player).await;
    browser.fill("#q-from", "2019-10-01").await;
    browser.fill("#q-to", "2019-12-01").await;
    browser.fill("#q-page-size", "2").await;
    browser.click("#q-run").await;
    let mut pages = 1;
    loop {
        browser
            .wait_until(
                "a page is shown",
                &format!(
                    "return document.getElementById('q-status').textContent.includes('in {pages} page');"
                ),
                Duration::from_secs(30),
            )
            .await;
        let error = browser.text("#q-error").await;
        assert!(error.is_empty(), "{error}");
        let next = browser.client.find(Locator::Css("#q-next")).await.unwrap();
        if !next.is_enabled().await.unwrap() {
            break;
        }
        next.click().await.unwrap();
        pages += 1;
    }
    assert!(pages > 1, "page_size 2 spreads the player over pages");
    let ggr = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#q-table tbody tr')].map(r => r.cells[6].textContent);",
            vec![],
        )
        .await
        .unwrap();
    let sum: i128 = ggr
        .as_array()
        .unwrap()
        .iter()
        .map(|g| scaled(g.as_str().unwrap()))
        .sum();
    assert_eq!(sum, totals.ggr(), "the GGR column sums to the player's GGR");
    let bars = browser
        .client
        .find_all(Locator::Css("#ggr-chart rect.bar"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "GGR is plotted");
    pages
}

/// The key's panel: its credits less the pages read, and a usage chart once the ledger holds
/// the charges (it is drained every 200 ms here).
async fn usage_shows_the_queries(browser: &Browser, pages: usize) {
    let started = std::time::Instant::now();
    loop {
        browser.click("#usage-load").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let error = browser.text("#usage-error").await;
        assert!(error.is_empty(), "{error}");
        let queries = browser
            .client
            .execute(
                "const q = document.querySelector('#key-info dd[data-field=\"queries in span\"]'); \
                 return q === null ? -1 : Number(q.textContent);",
                vec![],
            )
            .await
            .unwrap();
        if queries == serde_json::json!(pages) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the usage shows {queries} queries, not {pages}"
        );
    }
    let credits = browser.text("#key-info dd[data-field=credits]").await;
    assert_eq!(credits, (1_000 - pages).to_string());
    let bars = browser
        .client
        .find_all(Locator::Css("#usage-chart rect.bar"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "usage is plotted");
}
