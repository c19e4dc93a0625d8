//! The producer's limits against real servers (issue 12): a record too large for Kafka, a
//! decompression bomb, slow and silent clients, full upload slots, a header of 100 000
//! unknown columns. Each fails in a bounded way, quickly, and never costs the good rows.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};

use common::{spawn_producer, streamed_file, HEADER};
use sluice_testkit::http;

fn good_row(game_instance_id: u64) -> String {
    format!(
        "2019-10-22 08:20:42,{game_instance_id},9ece8c4020f8aed10676cd1c56a41889,24002,2,0,0,0,\
         Mental,Nolimit City\n"
    )
}

/// A multipart upload whose `file` part is `body`; the answer, or `None` if none came
/// within `wait`.
async fn upload_stream<S>(
    url: &str,
    body: S,
    wait: Duration,
) -> Option<(u16, reqwest::header::HeaderMap, serde_json::Value)>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
{
    answer(url, streamed_file("rounds.csv", body), wait).await
}

async fn answer(
    url: &str,
    form: reqwest::multipart::Form,
    wait: Duration,
) -> Option<(u16, reqwest::header::HeaderMap, serde_json::Value)> {
    let request = reqwest::Client::new()
        .post(format!("{url}/csv_upload"))
        .multipart(form)
        .send();
    let response = tokio::time::timeout(wait, request).await.ok()?.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Some((status, headers, response.json().await.unwrap()))
}

/// The value of one series (name and labels, as exposed) on the producer's `/metrics`.
async fn counter(url: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn a_record_too_large_for_kafka_is_that_rows_reject_and_the_upload_goes_on() {
    let producer = spawn_producer(|_| {}).await;
    // A quoted cell of 2 MB over 20 000 lines: Kafka takes at most 1 MB per message.
    let lines = 20_000;
    let cell = format!("{}\n", "x".repeat(99)).repeat(lines);
    let body = format!(
        "{HEADER}{}2019-10-22 08:20:43,2,9ece8c4020f8aed10676cd1c56a41889,24002,2,0,0,0,\
         \"{cell}\",Nolimit City\n{}not a round\n{}",
        good_row(1),
        good_row(3),
        good_row(4),
    );
    let upload = http::upload_csv(&producer.url, body.into_bytes(), "text/csv").await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    assert_eq!(upload.body["accepted"], 3);
    assert_eq!(upload.body["rejected"], 2);
    let rejects = &upload.body["rejects"];
    assert_eq!(rejects[0]["line"], 3, "{rejects}");
    let reason = rejects[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("record too large"), "{reason}");
    // The rows after it keep their line numbers: the record spans lines 3 to 20 003.
    assert_eq!(rejects[1]["line"], 3 + lines + 2, "{rejects}");
    assert_eq!(
        counter(
            &producer.url,
            "sluice_producer_transactions_total{outcome=\"committed\"}"
        )
        .await,
        1.0
    );
}

/// `frames` zstd frames of 16 MiB of line feeds each: 1 GiB from a few dozen KB.
async fn zstd_bomb(frames: usize) -> Vec<u8> {
    use async_compression::tokio::bufread::ZstdEncoder;
    use tokio::io::AsyncReadExt;
    let newlines = vec![b'\n'; 16 << 20];
    let mut frame = Vec::new();
    ZstdEncoder::new(&newlines[..])
        .read_to_end(&mut frame)
        .await
        .unwrap();
    frame.repeat(frames)
}

#[tokio::test]
async fn a_decompression_bomb_is_413_before_its_body_even_ends() {
    let producer = spawn_producer(|_| {}).await;
    let bomb = zstd_bomb(64).await;
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    // The body never ends (and the idle timeout is 30 s): only an answer given as soon as
    // the expansion crosses its limit comes within the wait.
    let body = futures::stream::once(async move { Ok(Bytes::from(bomb)) })
        .chain(futures::stream::pending());
    let (status, _, problem) = upload_stream(&producer.url, body, Duration::from_secs(20))
        .await
        .expect("answered before the body ended");
    assert_eq!(status, 413, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("SLUICE_PRODUCER_MAX_DECOMPRESSION_RATIO"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_client_sending_too_slowly_is_cut_with_408() {
    // One byte every 100 ms (10 B/s): never idle for the 1 s timeout, far below the rate.
    let producer = spawn_producer(|config| config.body_idle_timeout_ms = 1_000).await;
    let header = futures::stream::once(async { Ok(Bytes::from(HEADER)) });
    let drip = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok(Bytes::from_static(b"2")), ()))
    });
    let (status, _, problem) =
        upload_stream(&producer.url, header.chain(drip), Duration::from_secs(20))
            .await
            .expect("the slow client is cut");
    assert_eq!(status, 408, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("slower than the minimum"), "{detail}");
}

#[tokio::test]
async fn a_silent_field_before_the_file_is_cut_with_408() {
    let producer = spawn_producer(|config| config.body_idle_timeout_ms = 1_000).await;
    let silent = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("a note")) })
        .chain(futures::stream::pending());
    let note = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(silent));
    let file = reqwest::multipart::Part::bytes(HEADER.as_bytes().to_vec())
        .file_name("rounds.csv")
        .mime_str("text/csv")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part("note", note)
        .part("file", file);
    let (status, _, problem) = answer(&producer.url, form, Duration::from_secs(20))
        .await
        .expect("the silent client is cut");
    assert_eq!(status, 408, "{problem}");
}

#[tokio::test]
async fn with_every_slot_busy_an_upload_is_refused_at_once_with_503_and_retry_after() {
    let producer = spawn_producer(|config| config.max_concurrent_uploads = 1).await;
    // One upload holds the only slot: it sent rows and goes on (the body is still open).
    let (mut pieces, body) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let url = producer.url.clone();
    let holder =
        tokio::spawn(async move { upload_stream(&url, body, Duration::from_secs(60)).await });
    pieces.send(Ok(Bytes::from(HEADER))).await.unwrap();
    pieces.send(Ok(Bytes::from(good_row(1)))).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let list: serde_json::Value = reqwest::get(format!("{}/uploads", producer.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Its body is being read, so it holds the slot.
        if list["in_progress"][0]["bytes"].as_u64() > Some(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never read: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let other = reqwest::multipart::Part::bytes(format!("{HEADER}{}", good_row(2)).into_bytes())
        .file_name("rounds.csv")
        .mime_str("text/csv")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", other);
    let (status, headers, problem) = answer(&producer.url, form, Duration::from_secs(10))
        .await
        .expect("refused at once, not queued behind the running upload");
    assert_eq!(status, 503, "{problem}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");

    // The running upload was not disturbed, and once it is done the slot is free again.
    pieces.send(Ok(Bytes::from(good_row(3)))).await.unwrap();
    drop(pieces);
    let (status, _, receipt) = holder.await.unwrap().expect("the holder's receipt");
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 2);
    let upload = http::upload_csv(
        &producer.url,
        format!("{HEADER}{}", good_row(2)).into_bytes(),
        "text/csv",
    )
    .await;
    assert_eq!(upload.status, 200, "{}", upload.body);
}

#[tokio::test]
async fn a_header_of_a_hundred_thousand_unknown_columns_gets_a_short_receipt() {
    let producer = spawn_producer(|_| {}).await;
    let unknown = 100_000;
    let mut header = HEADER.trim_end().to_owned();
    for column in 0..unknown {
        header.push_str(&format!(",u{column}"));
    }
    let padding = ",".repeat(unknown);
    let row = |id: u64| format!("{}{padding}\n", good_row(id).trim_end());
    let body = format!("{header}\n{}{}", row(1), row(2));
    let upload = http::upload_csv(&producer.url, body.into_bytes(), "text/csv").await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    assert_eq!(upload.body["accepted"], 2);
    assert_eq!(upload.body["unknown_columns_count"], unknown);
    let listed = upload.body["unknown_columns"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(listed[0], "u0");
    assert_eq!(listed[99], "u99");
    // The receipt stored in Redis (and shown by GET /uploads/{id}) is as short.
    let id = upload.body["upload_id"].as_str().unwrap();
    let stored = reqwest::get(format!("{}/uploads/{id}", producer.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stored.len() < 10_000, "{} bytes", stored.len());
}
