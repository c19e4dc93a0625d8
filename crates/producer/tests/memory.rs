//! Constant memory: a large upload, generated and streamed on the fly, goes through the
//! producer without its memory growing with the file. This test runs alone in its process
//! (nextest runs each test in its own), so the process's peak RSS is client + producer.

use std::io::{self, Write};

use bytes::Bytes;
use sluice_producer::{Application, Config};
use sluice_testkit::generate::{self, Options};
use sluice_testkit::{unique, Stack};

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
    let mut config = Config::with_endpoints(&Stack::get().kafka_brokers, &Stack::get().redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("producer"));
    config.transactional_id_prefix = Some(unique("producer"));
    config.topic = unique("memory");
    config.topic_partitions = 4;
    let producer = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}/csv_upload", producer.port());
    tokio::spawn(producer.run_until_stopped());
    let before = peak_rss_mib();

    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let generator = std::thread::spawn(move || {
        generate::write(&Options::new(ROWS), ChannelWriter(sender)).expect("the whole file is sent")
    });
    let chunks = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(chunks))
        .file_name("large.csv")
        .mime_str("text/csv")
        .unwrap();
    let response = reqwest::Client::new()
        .post(url)
        .multipart(reqwest::multipart::Form::new().part("file", part))
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
