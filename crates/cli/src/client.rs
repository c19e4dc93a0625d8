//! HTTP clients for the producer and the gateway. Every request goes through [`send`], which
//! turns a transport failure into [`CliError::Unreachable`] and an error status into
//! [`CliError::Refused`] with the server's own `detail` and a hint saying what to do.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::error::{CliError, Service};
use crate::settings::Settings;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest answer to anything but an upload.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait for `GET /datasets`, asked only to describe (a hint, an order of columns).
const DESCRIPTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Rate-limited answers (429, never charged) waited out per request before giving up.
const MAX_RATE_LIMITED_RETRIES: u32 = 30;

/// An answer with a success status, its body read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self, service: Service) -> Result<Value, CliError> {
        serde_json::from_str(&self.text).map_err(|error| CliError::Unexpected {
            service,
            detail: format!("not JSON ({error})"),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn http_client(timeout: Option<Duration>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("sluice-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().expect("the HTTP client builds")
}

/// The producer: uploads, their progress, receipts and rejects.
pub struct Producer {
    pub url: String,
    token: Option<SecretString>,
    http: reqwest::Client,
    /// Without a total timeout: an upload takes as long as the file needs.
    upload_http: reqwest::Client,
}

impl Producer {
    pub fn new(settings: &Settings) -> Producer {
        Producer {
            url: settings.producer_url.clone(),
            token: settings.upload_token.clone(),
            http: http_client(Some(REQUEST_TIMEOUT)),
            upload_http: http_client(None),
        }
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    /// `POST {path}` (`/csv_upload`, or `/datasets/{name}/upload`) with `form`.
    pub async fn upload(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
        idempotency_key: &str,
    ) -> Result<Answer, CliError> {
        let request = self
            .upload_http
            .post(format!("{}{path}", self.url))
            .header("Idempotency-Key", idempotency_key)
            .multipart(form);
        send(self.context(), self.authorized(request)).await
    }

    /// `GET {path}` (under the producer), JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let request = self.http.get(format!("{}{path}", self.url)).query(query);
        send(self.context(), self.authorized(request))
            .await?
            .json(Service::Producer)
    }

    fn context(&self) -> Context<'_> {
        Context {
            service: Service::Producer,
            url: &self.url,
            credential_set: self.token.is_some(),
        }
    }
}

/// The gateway: metered queries with the API key, the admin API with the admin token.
pub struct Gateway {
    pub url: String,
    api_key: Option<SecretString>,
    admin_token: Option<SecretString>,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(settings: &Settings) -> Gateway {
        Gateway {
            url: settings.gateway_url.clone(),
            api_key: settings.api_key.clone(),
            admin_token: settings.admin_token.clone(),
            http: http_client(Some(REQUEST_TIMEOUT)),
        }
    }

    /// A metered `GET /{endpoint}?{query}` with the API key. A 429 (never charged) is waited
    /// out as its `Retry-After` says, up to [`MAX_RATE_LIMITED_RETRIES`] times.
    pub async fn query(
        &self,
        endpoint: &str,
        query: &[(String, String)],
    ) -> Result<Answer, CliError> {
        let context = Context {
            service: Service::Gateway,
            url: &self.url,
            credential_set: self.api_key.is_some(),
        };
        let mut retries = 0;
        loop {
            let mut request = self
                .http
                .get(format!("{}/{endpoint}", self.url))
                .query(query);
            if let Some(key) = &self.api_key {
                request = request.header("X-API-Key", key.expose_secret());
            }
            match send(context, request).await {
                Err(CliError::Refused {
                    status: 429,
                    retry_after,
                    ..
                }) if retries < MAX_RATE_LIMITED_RETRIES => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1).max(1))).await;
                }
                result => return result,
            }
        }
    }

    /// `GET /datasets`: every dataset the gateway knows, with its columns and endpoints (no
    /// key: it describes the API, not the data).
    pub async fn datasets(&self) -> Result<Value, CliError> {
        let context = Context {
            service: Service::Gateway,
            url: &self.url,
            credential_set: self.api_key.is_some(),
        };
        let request = self
            .http
            .get(format!("{}/datasets", self.url))
            .timeout(DESCRIPTION_TIMEOUT);
        send(context, request).await?.json(Service::Gateway)
    }

    /// An admin API call with the admin token; `body` is sent as JSON.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = &self.admin_token {
            request = request.bearer_auth(token.expose_secret());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let context = Context {
            service: Service::Admin,
            url: &self.url,
            credential_set: self.admin_token.is_some(),
        };
        send(context, request).await?.json(Service::Admin)
    }
}

/// Who a request goes to, for messages and hints.
#[derive(Debug, Clone, Copy)]
struct Context<'a> {
    service: Service,
    url: &'a str,
    /// Whether the credential this service takes was set.
    credential_set: bool,
}

/// Sends `request`; a success status is an [`Answer`], anything else a [`CliError`].
async fn send(context: Context<'_>, request: RequestBuilder) -> Result<Answer, CliError> {
    let unreachable = |error: reqwest::Error| CliError::Unreachable {
        service: context.service,
        url: context.url.to_owned(),
        reason: describe(&error),
        hint: format!(
            "is the {} running there? Set {} (or --{}) to where it listens",
            match context.service {
                Service::Producer => "producer",
                _ => "gateway",
            },
            url_variable(context.service),
            url_variable(context.service)
                .trim_start_matches("SLUICE_")
                .to_lowercase()
                .replace('_', "-"),
        ),
    };
    let response: Response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.map_err(unreachable)?;
    if status.is_success() {
        return Ok(Answer {
            status: status.as_u16(),
            headers,
            text,
        });
    }
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Err(CliError::Refused {
        service: context.service,
        status: status.as_u16(),
        detail: detail(status, &text),
        hint: hint(context, status, retry_after),
        retry_after,
    })
}

/// The server's explanation: `detail` of the producer's `{"error","detail","status"}` and of
/// the gateway's problem details alike; else the start of the body.
fn detail(status: StatusCode, text: &str) -> String {
    if let Ok(body) = serde_json::from_str::<Value>(text) {
        if let Some(detail) = body["detail"].as_str() {
            return detail.to_owned();
        }
    }
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

fn url_variable(service: Service) -> &'static str {
    match service {
        Service::Producer => "SLUICE_PRODUCER_URL",
        Service::Gateway | Service::Admin => "SLUICE_GATEWAY_URL",
    }
}

/// What to do about a refusal. Never holds a secret: only the names of where to set one.
fn hint(context: Context<'_>, status: StatusCode, retry_after: Option<u64>) -> Option<String> {
    let (variable, setting) = match context.service {
        Service::Producer => ("SLUICE_UPLOAD_TOKEN", "upload_token"),
        Service::Gateway => ("SLUICE_API_KEY", "api_key"),
        Service::Admin => ("SLUICE_ADMIN_TOKEN", "admin_token"),
    };
    let flag = format!("--{}", setting.replace('_', "-"));
    match status.as_u16() {
        401 if context.credential_set => Some(format!(
            "the {what} in use was refused: check {variable} (or {flag}, or {setting} in the \
             config file){extra}",
            what = setting.replace('_', " "),
            extra = match context.service {
                Service::Gateway => "; a key may be revoked, expired or rotated",
                _ => "",
            },
        )),
        401 => Some(format!(
            "set {variable} to the {what} (or pass {flag}, or set {setting} in the config file){extra}",
            what = setting.replace('_', " "),
            extra = match context.service {
                Service::Producer => "; `scripts/dev up` writes it into target/sluice/stack.env",
                Service::Admin => "; `scripts/dev up` writes it into target/sluice/stack.env",
                Service::Gateway => "; an admin creates keys with `sluice keys create NAME --credits N`",
            },
        )),
        402 => Some(
            "the key has no credits left: an admin can add some with `sluice keys top-up ID CREDITS`"
                .into(),
        ),
        404 if context.service == Service::Producer => Some(
            "`sluice uploads` lists the running uploads; a receipt's upload_id names a committed one"
                .into(),
        ),
        404 if context.service == Service::Admin => {
            Some("`sluice keys list` shows every key's id".into())
        }
        429 | 503 | 504 | 408 | 409 => retry_after.map(|s| format!("retry in {s} s")),
        _ => None,
    }
}

/// A transport error with its causes (reqwest's own message is often just "error sending
/// request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(service: Service, credential_set: bool) -> Context<'static> {
        Context {
            service,
            url: "http://x",
            credential_set,
        }
    }

    #[test]
    fn the_servers_detail_is_read_from_either_error_shape() {
        let producer = r#"{"error":"Bad Request","detail":"the multipart body has no `file` field","status":400}"#;
        let gateway = r#"{"type":"about:blank","title":"Payment Required","status":402,"detail":"the API key has no credits left"}"#;
        assert_eq!(
            detail(StatusCode::BAD_REQUEST, producer),
            "the multipart body has no `file` field"
        );
        assert_eq!(
            detail(StatusCode::PAYMENT_REQUIRED, gateway),
            "the API key has no credits left"
        );
        assert_eq!(detail(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
    }

    #[test]
    fn a_401_says_which_setting_to_set_or_check() {
        let missing = hint(
            context(Service::Admin, false),
            StatusCode::UNAUTHORIZED,
            None,
        )
        .unwrap();
        assert!(missing.starts_with("set SLUICE_ADMIN_TOKEN"), "{missing}");
        let wrong = hint(
            context(Service::Producer, true),
            StatusCode::UNAUTHORIZED,
            None,
        )
        .unwrap();
        assert!(wrong.contains("check SLUICE_UPLOAD_TOKEN"), "{wrong}");
        let key = hint(
            context(Service::Gateway, true),
            StatusCode::UNAUTHORIZED,
            None,
        )
        .unwrap();
        assert!(
            key.contains("SLUICE_API_KEY") && key.contains("revoked"),
            "{key}"
        );
        assert_eq!(
            hint(
                context(Service::Gateway, true),
                StatusCode::TOO_MANY_REQUESTS,
                Some(2)
            )
            .as_deref(),
            Some("retry in 2 s")
        );
    }
}
