//! Tracing, the Prometheus recorder and the HTTP metrics middleware shared by the services.
//!
//! Every service renders [`prometheus`] at `GET /metrics` and wraps its `App` in
//! [`HttpMetrics`], so requests are counted the same way everywhere:
//! `sluice_http_requests_total{service, method, route, status}` and the histogram
//! `sluice_http_request_duration_seconds{service, method, route, status}`, where `route` is the
//! matched pattern (`/uploads/{id}`), never the raw path, and `unmatched` for a 404 no route
//! took.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How long a `/ready` waits for each dependency (all at once): every `/ready` answers within
/// a second, naming what did not answer, even when a dependency is frozen.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// `GET /health` of every service: the process serves HTTP.
pub async fn health() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /metrics` of every service: the Prometheus text exposition of `handle`.
pub fn exposition(handle: &PrometheusHandle) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// The `/ready` answer of a service with a work loop: 200 when the loop runs and every
/// dependency answered, else 503. The body names each dependency (`true` when it answered) and
/// a `status` of `ready`, `starting` (the loop does not run yet) or `unavailable`.
pub fn readiness(running: bool, dependencies: &[(&str, bool)]) -> actix_web::HttpResponse {
    let answered = dependencies.iter().all(|(_, up)| *up);
    let mut body = serde_json::Map::new();
    let status = match (running, answered) {
        (true, true) => "ready",
        (false, _) => "starting",
        (true, false) => "unavailable",
    };
    body.insert("status".into(), status.into());
    for (name, up) in dependencies {
        body.insert((*name).into(), (*up).into());
    }
    if running && answered {
        actix_web::HttpResponse::Ok().json(body)
    } else {
        actix_web::HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Whether `check` answers `true` within [`READY_TIMEOUT`].
pub async fn answers_in_time(check: impl Future<Output = bool>) -> bool {
    tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .unwrap_or(false)
}

/// The HTTP server of a service whose work is a loop (consumer, processor, watcher): `GET
/// /health`, `GET /ready` answered by its own handler over its state, and `GET /metrics` (the
/// process-wide [`prometheus`] recorder), every request counted by [`HttpMetrics`].
pub struct HealthServer {
    port: u16,
    server: actix_web::dev::Server,
}

impl HealthServer {
    /// Binds `listen_addr` and builds the server (not yet running) of `service` on `workers`
    /// threads (actix-web's default, one per core, when `None`); `ready` answers `/ready` from
    /// `state`, within [`READY_TIMEOUT`] of each dependency ([`answers_in_time`]).
    pub fn bind<S, F, R>(
        service: &'static str,
        listen_addr: &str,
        workers: Option<usize>,
        state: S,
        ready: F,
    ) -> std::io::Result<HealthServer>
    where
        S: Send + Sync + 'static,
        F: Fn(web::Data<S>) -> R + Clone + Send + 'static,
        R: Future<Output = HttpResponse> + 'static,
    {
        let state = web::Data::new(state);
        let handle = web::Data::new(prometheus());
        let listener = std::net::TcpListener::bind(listen_addr)?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(HttpMetrics::new(service))
                .app_data(state.clone())
                .app_data(handle.clone())
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready.clone()))
                .route("/metrics", web::get().to(metrics))
        });
        if let Some(workers) = workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.disable_signals().run();
        Ok(HealthServer { port, server })
    }

    /// The port it is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves while `work` runs; then stops gracefully (requests in flight are answered).
    pub async fn serve_while(self, work: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        work.await;
        handle.stop(true).await;
        server.await.map_err(std::io::Error::other)?
    }
}

/// `GET /metrics` of a [`HealthServer`].
async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    exposition(&handle)
}

/// Requests served, by service, method, matched route and status.
pub const HTTP_REQUESTS: &str = "sluice_http_requests_total";
/// Time from a request's arrival to its response's head, by the same labels.
pub const HTTP_DURATION: &str = "sluice_http_request_duration_seconds";

/// Bucket bounds of every `*_seconds` histogram: a millisecond to a quarter of an hour (an
/// upload of a large export is one long request).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

/// Bucket bounds of every `*_rows` histogram (batch sizes).
pub const ROWS_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    500.0,
    1_000.0,
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    1_000_000.0,
];

/// Installs the global tracing subscriber: JSON lines when `SLUICE_LOG_FORMAT=json`, text
/// otherwise; the level comes from `RUST_LOG`, else `default_filter`. Calling it twice is harmless.
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if std::env::var("SLUICE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    drop(result);
}

/// The process-wide Prometheus recorder, installed on first use. Services render it at
/// `GET /metrics`; several services in one process (tests) share it.
///
/// Every histogram is rendered as a Prometheus histogram (buckets), never as a summary, so
/// replicas can be aggregated: `*_seconds` with [`SECONDS_BUCKETS`], `*_rows` with
/// [`ROWS_BUCKETS`].
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROWS_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            metrics::describe_counter!(
                HTTP_REQUESTS,
                "HTTP requests served, by service, method, matched route and status."
            );
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "Time to the response's head, by service, method, matched route and status."
            );
            handle
        })
        .clone()
}

/// Registers counters at 0, so that rates of things that rarely happen (failures, refunds)
/// read 0 on a dashboard from the start rather than "no data" until the first one.
pub fn register_counters(names: &[&'static str]) {
    // Counted before the recorder exists, they would go nowhere.
    prometheus();
    for name in names {
        metrics::counter!(*name).increment(0);
    }
}

/// Middleware counting and timing every request of a service (see the module docs).
/// `App::new().wrap(HttpMetrics::new("gateway"))`.
#[derive(Debug, Clone, Copy)]
pub struct HttpMetrics {
    service: &'static str,
}

impl HttpMetrics {
    /// `service` becomes the `service` label (`producer`, `consumer`, `gateway`).
    pub fn new(service: &'static str) -> HttpMetrics {
        HttpMetrics { service }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            inner,
            service: self.service,
        }))
    }
}

/// [`HttpMetrics`] around one service.
pub struct HttpMetricsService<S> {
    inner: S,
    service: &'static str,
}

type Answer<B> = Result<ServiceResponse<B>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Answer<B>>>>;

    forward_ready!(inner);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = request.method().as_str().to_owned();
        let service = self.service;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            // Routing happens inside: the matched pattern is known only once it answered.
            let (route, status) = match &answer {
                Ok(response) => (
                    response.request().match_pattern(),
                    response.status().as_u16(),
                ),
                Err(error) => (None, error.as_response_error().status_code().as_u16()),
            };
            let labels = [
                ("service", service.to_owned()),
                ("method", method),
                ("route", route.unwrap_or_else(|| "unmatched".to_owned())),
                ("status", status.to_string()),
            ];
            metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
            metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
            answer
        })
    }
}

/// A token cancelled at the first SIGTERM or Ctrl-C (logged), for a service's
/// `run_until_stopped`: what every `main` hands its application.
pub fn shutdown_on_signal() -> std::io::Result<tokio_util::sync::CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trigger = shutdown.clone();
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("Shutdown requested.");
        trigger.cancel();
    });
    Ok(shutdown)
}
