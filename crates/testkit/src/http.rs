//! HTTP helpers for tests that drive the services from outside.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

/// What the producer answered to an upload.
#[derive(Debug)]
pub struct Upload {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl Upload {
    /// Line numbers of the rejects the receipt lists, in order.
    pub fn reject_lines(&self) -> Vec<u64> {
        self.body["rejects"]
            .as_array()
            .map(|rejects| rejects.iter().filter_map(|r| r["line"].as_u64()).collect())
            .unwrap_or_default()
    }
}

/// `POST {producer_url}/csv_upload` with `bytes` as the multipart field `file` of type `mime`.
pub async fn upload_csv(producer_url: &str, bytes: Vec<u8>, mime: &str) -> Upload {
    upload_csv_with_headers(producer_url, bytes, mime, &[]).await
}

/// [`upload_csv`] with extra request headers (e.g. `Idempotency-Key`).
pub async fn upload_csv_with_headers(
    producer_url: &str,
    bytes: Vec<u8>,
    mime: &str,
    headers: &[(&str, &str)],
) -> Upload {
    upload_to(producer_url, "/csv_upload", bytes, mime, headers).await
}

/// Uploads `bytes` as the `file` part to the producer's `path` (`/csv_upload`,
/// `/datasets/{name}/upload`), with extra request headers.
pub async fn upload_to(
    producer_url: &str,
    path: &str,
    bytes: Vec<u8>,
    mime: &str,
    headers: &[(&str, &str)],
) -> Upload {
    let file = File {
        name: Some("upload.csv"),
        mime,
        bytes,
    };
    upload_file(producer_url, path, file, headers).await
}

/// A `file` part: its file name (none: no `filename` parameter), media type and bytes.
pub struct File<'a> {
    pub name: Option<&'a str>,
    pub mime: &'a str,
    pub bytes: Vec<u8>,
}

/// Uploads `file` as the `file` part to the producer's `path`, with extra request headers.
pub async fn upload_file(
    producer_url: &str,
    path: &str,
    file: File<'_>,
    headers: &[(&str, &str)],
) -> Upload {
    let mut part = reqwest::multipart::Part::bytes(file.bytes);
    if let Some(name) = file.name {
        part = part.file_name(name.to_owned());
    }
    let part = part.mime_str(file.mime).expect("a valid media type");
    let mut request = reqwest::Client::new().post(format!("{producer_url}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("the producer answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("a JSON answer");
    Upload {
        status,
        headers,
        body,
    }
}

/// `GET {producer_url}/uploads/{id}`'s reconciliation, polled until it says `landed`;
/// `authorization` is the header a producer with upload tokens wants (`Bearer …`).
///
/// # Panics
/// When it says `unknown` (the producer cannot ask ClickHouse), or after `timeout`.
pub async fn wait_until_landed(
    producer_url: &str,
    id: &str,
    authorization: Option<&str>,
    timeout: Duration,
) -> serde_json::Value {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let mut request = http.get(format!("{producer_url}/uploads/{id}"));
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await.expect("the producer answers");
        let status: serde_json::Value = response.json().await.expect("a JSON answer");
        let reconciliation = status["reconciliation"].clone();
        assert_ne!(
            reconciliation["status"], "unknown",
            "the producer cannot ask ClickHouse (is its CLICKHOUSE_URL set?): {status}"
        );
        if reconciliation["status"] == "landed" {
            return reconciliation;
        }
        assert!(
            started.elapsed() < timeout,
            "not everything landed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `GET {url}` (a `/ready`, say), which must answer within `limit`: its status and JSON body.
pub async fn answer_within(url: &str, limit: Duration) -> (u16, serde_json::Value) {
    let asked = Instant::now();
    let response = reqwest::get(url).await.expect("the service answers");
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON answer");
    let took = asked.elapsed();
    assert!(took < limit, "{url} answered after {took:?}");
    (status, body)
}
