//! Constant memory: a large upload, generated and streamed on the fly, goes through the
//! producer without its memory growing with the file, nor with one huge record in it (a
//! quoted cell spanning millions of lines). Each test runs alone in its process
//! (nextest runs each test in its own), so the process's peak RSS is client + producer.

mod common;

use std::io::{self, Write};

use bytes::Bytes;
use common::{spawn_producer, streamed_file, HEADER};
use sluice_testkit::generate::{self, Options};

/// Peak resident set size of this process (`VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// Hands what the generator writes to the HTTP body, chunk by chunk.
struct ChannelWriter(tokio::sync::mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::other("the upload stopped reading"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_streamed_upload_keeps_peak_memory_flat() {
    const ROWS: u64 = 1_500_000;
    let producer = spawn_producer(|config| config.topic_partitions = 4).await;
    let url = format!("{}/csv_upload", producer.url);
    let before = peak_rss_mib();

    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let generator = std::thread::spawn(move || {
        generate::write(&Options::new(ROWS), ChannelWriter(sender)).expect("the whole file is sent")
    });
    let chunks = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let response = reqwest::Client::new()
        .post(url)
        .multipart(streamed_file("large.csv", chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: serde_json::Value = response.json().await.unwrap();
    let summary = generator.join().unwrap();
    assert_eq!(receipt["accepted"], ROWS, "{receipt}");
    let bytes = receipt["bytes"].as_u64().unwrap();
    assert!(bytes > 300 << 20, "the upload is large: {bytes} bytes");
    assert_eq!(summary.rows, ROWS);

    let peak = peak_rss_mib();
    assert!(
        peak < 256,
        "peak RSS {peak} MiB (before the upload: {before} MiB) for a {} MiB upload",
        bytes >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_quoted_multi_line_cell_is_rejected_without_being_buffered() {
    // One record of 200 MB: a quoted cell of 2 million 100-byte lines, streamed on the fly.
    const MIB_LINES: usize = 10_000;
    const PIECES: usize = 200;
    let producer = spawn_producer(|_| {}).await;
    let url = format!("{}/csv_upload", producer.url);
    let before = peak_rss_mib();

    let row = |id: u32| {
        format!("2019-10-22 08:20:42,{id},9ece8c4020f8aed10676cd1c56a41889,24002,2,0,0,0,Mental,Nolimit City\n")
    };
    let head = format!(
        "{HEADER}{}2019-10-22 08:20:43,2,9ece8c4020f8aed10676cd1c56a41889,24002,2,0,0,0,\"",
        row(1)
    );
    let lines = Bytes::from(format!("{}\n", "x".repeat(99)).repeat(MIB_LINES));
    let tail = format!("\",Nolimit City\n{}", row(3));
    let body = futures::stream::iter(
        std::iter::once(Bytes::from(head))
            .chain(std::iter::repeat_n(lines, PIECES))
            .chain(std::iter::once(Bytes::from(tail)))
            .map(Ok::<_, io::Error>),
    );
    let response = reqwest::Client::new()
        .post(url)
        .multipart(streamed_file("huge_cell.csv", body))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let receipt: serde_json::Value = response.json().await.unwrap();
    let peak = peak_rss_mib();
    assert!(
        peak < 256,
        "peak RSS {peak} MiB (before the upload: {before} MiB) for one record of 200 MB"
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 2, "{receipt}");
    assert_eq!(receipt["rejected"], 1, "{receipt}");
    assert_eq!(receipt["rejects"][0]["line"], 3, "{receipt}");
    let reason = receipt["rejects"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("record too large"), "{reason}");
    let bytes = receipt["bytes"].as_u64().unwrap();
    assert!(bytes > 200_000_000, "the record is large: {bytes} bytes");
}
