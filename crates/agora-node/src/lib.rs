//! The agora node: an HTTP server (axum on tokio) that hosts any set of
//! server-side roles around their sans-IO state machines.
//!
//! The core knows nothing of any protocol. A role plugs in as a [`Service`]:
//! it brings its routes, its housekeeping (run on a schedule: CRL refresh,
//! expiry, awards...) and a description for `/v1/node`. The core adds what
//! every route needs (ARCHITECTURE section 7):
//!
//! - protocol messages are `POST /v1/<system>/<role>` with `application/cbor`
//!   bodies ([`Cbor`]), bounded in size; public data is JSON;
//! - errors are RFC 9457 problem documents with stable codes ([`Problem`]);
//! - one protocol-endpoint layer ([`endpoint`]): the message and its tag,
//!   dispatch, the pending-step header, the errors every role shares, trust
//!   reload;
//! - a bounded table of pending protocol steps with expiry
//!   ([`pending::PendingSteps`]);
//! - load shedding: past `max_in_flight` requests, `503` with `Retry-After`;
//!   per-client rate limits (`429`), keyed by the client's address;
//! - `/healthz`, `/metrics` (Prometheus text), `/openapi.json`, `/v1/node`;
//! - structured logs (tracing) and graceful shutdown: on SIGINT/SIGTERM the
//!   node stops accepting, finishes the requests in flight (their commits are
//!   durable before their replies) and then returns.
//!
//! Storage calls block (SQLite, group commit): handlers run them through
//! [`blocking`], on tokio's blocking pool. The exception is the two steps of
//! a bind (`cpo`), which run on the async workers: they usually read only
//! memory, and their binding awaits its commit as a future.
#![forbid(unsafe_code)]

pub mod cpo;
pub mod endpoint;
pub mod metrics;
pub mod pending;
pub mod pki;
pub mod problem;
pub mod speed;
pub mod web;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
pub use metrics::Metrics;
pub use pending::{PendingSteps, STEP_HEADER};
pub use problem::Problem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The media type of protocol messages.
pub const CBOR: &str = "application/cbor";
/// The media type of signed evidence (COSE_Sign1).
pub const COSE: &str = "application/cose";

/// What the node's core enforces for every service.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests served at once; past it, `503` with `Retry-After`.
    pub max_in_flight: usize,
    /// Requests per second per client address (0: no limit).
    pub rate_limit_per_sec: u32,
    /// Burst above the rate a client may use.
    pub rate_limit_burst: u32,
    /// Protocol steps pending at once.
    pub max_pending_steps: usize,
    /// How long a pending step waits for the client's next message.
    pub pending_step_ttl: Duration,
    /// How often each service's housekeeping runs.
    pub housekeeping_every: Duration,
    /// The URL clients reach this node at (for links and `/v1/node`).
    pub public_url: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_body_bytes: 256 * 1024,
            max_in_flight: 512,
            rate_limit_per_sec: 0,
            rate_limit_burst: 100,
            max_pending_steps: 10_000,
            pending_step_ttl: Duration::from_secs(120),
            housekeeping_every: Duration::from_secs(30),
            public_url: "http://127.0.0.1:7878".into(),
        }
    }
}

/// What the core shares with every service.
#[derive(Debug)]
pub struct Core {
    /// The configuration.
    pub config: NodeConfig,
    /// Pending protocol steps.
    pub pending: PendingSteps,
    /// Metrics.
    pub metrics: Metrics,
}

/// A role (or a set of roles) the node hosts.
pub trait Service: Send + Sync + 'static {
    /// A short name for logs and `/v1/node` (e.g. `cpo`).
    fn name(&self) -> &'static str;
    /// Its routes. They are merged with the other services' and the core's.
    fn router(self: Arc<Self>, core: Arc<Core>) -> Router;
    /// Periodic work (CRL refresh, expiry, awards...): a summary for the log
    /// if something happened. Runs on the blocking pool.
    fn housekeeping(&self, _now: agora_core::Timestamp) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// What `/v1/node` says of it: roles, key ids, URLs.
    fn describe(&self) -> serde_json::Value;
}

/// The node: a core and the services it hosts.
pub struct Node {
    core: Arc<Core>,
    services: Vec<Arc<dyn Service>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field(
                "services",
                &self.services.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Node {
    /// A node with `config` and no services yet.
    pub fn new(config: NodeConfig) -> Node {
        let pending = PendingSteps::new(config.max_pending_steps, config.pending_step_ttl);
        Node {
            core: Arc::new(Core {
                config,
                pending,
                metrics: Metrics::new(),
            }),
            services: Vec::new(),
        }
    }

    /// Hosts `service` too.
    pub fn with(mut self, service: Arc<dyn Service>) -> Node {
        self.services.push(service);
        self
    }

    /// The core (configuration, pending steps, metrics).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The whole HTTP application.
    pub fn router(&self) -> Router {
        let mut app = Router::new();
        for s in &self.services {
            app = app.merge(s.clone().router(self.core.clone()));
        }
        let described: Vec<(String, serde_json::Value)> = self
            .services
            .iter()
            .map(|s| (s.name().to_owned(), s.describe()))
            .collect();
        let node_doc = Arc::new(serde_json::json!({
            "software": "agora",
            "version": env!("CARGO_PKG_VERSION"),
            "url": self.core.config.public_url,
            "services": described.into_iter().collect::<serde_json::Map<_, _>>(),
        }));
        let guard = Arc::new(Guard::new(&self.core.config));
        let core = self.core.clone();
        app.route(
            "/v1/node",
            get(move || {
                let d = node_doc.clone();
                async move { axum::Json((*d).clone()) }
            }),
        )
        .route("/openapi.json", get(openapi))
        .route(
            "/metrics",
            get(move || async move {
                core.metrics.pending_steps.set(core.pending.len() as i64);
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    core.metrics.render(),
                )
            }),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            (self.core.clone(), guard),
            guard_layer,
        ))
        // The health check bypasses load shedding and rate limits.
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::extract::DefaultBodyLimit::max(
            self.core.config.max_body_bytes,
        ))
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// requests in flight and returns. Housekeeping runs every
    /// `housekeeping_every` (and once at start).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(housekeeping_loop(
            self.core.clone(),
            self.services.clone(),
            stop_rx,
        ));
        // No Nagle: a reply written in a few pieces (a SPEED delivery: its
        // length, the product, the head) would otherwise wait for the
        // client's delayed acknowledgement, 40 ms on Linux.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop_tx.send(true);
        let _ = keeper.await;
        tracing::info!("node stopped: in-flight requests finished");
        served
    }

    /// Runs every service's housekeeping once, now (for tests and
    /// `agora serve --once`).
    pub async fn housekeeping_once(&self) {
        run_housekeeping(&self.core, &self.services).await;
    }
}

async fn housekeeping_loop(
    core: Arc<Core>,
    services: Vec<Arc<dyn Service>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(core.config.housekeeping_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => run_housekeeping(&core, &services).await,
            _ = stop.changed() => return,
        }
    }
}

async fn run_housekeeping(core: &Arc<Core>, services: &[Arc<dyn Service>]) {
    let expired = core.pending.purge();
    if expired > 0 {
        tracing::debug!(expired, "expired pending protocol steps dropped");
    }
    for s in services {
        let s = s.clone();
        let now = agora_core::Timestamp::now_from_system_clock();
        let name = s.name();
        let r = tokio::task::spawn_blocking(move || s.housekeeping(now)).await;
        match r {
            Ok(Ok(Some(summary))) => {
                core.metrics.housekeeping_ran(name, true);
                tracing::info!(service = name, "{summary}");
            }
            Ok(Ok(None)) => core.metrics.housekeeping_ran(name, true),
            Ok(Err(e)) => {
                core.metrics.housekeeping_ran(name, false);
                tracing::warn!(service = name, error = %e, "housekeeping failed");
            }
            Err(e) => {
                core.metrics.housekeeping_ran(name, false);
                tracing::error!(service = name, error = %e, "housekeeping panicked");
            }
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

// ------------------------------------------------------------ the guard

/// Load shedding and per-client rate limits.
struct Guard {
    slots: Arc<Semaphore>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Guard {
    fn new(c: &NodeConfig) -> Guard {
        let limiter = NonZeroU32::new(c.rate_limit_per_sec).map(|rate| {
            let burst = NonZeroU32::new(c.rate_limit_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Guard {
            slots: Arc::new(Semaphore::new(c.max_in_flight.max(1))),
            limiter,
        }
    }
}

async fn guard_layer(
    State((core, guard)): State<(Arc<Core>, Arc<Guard>)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let method = req.method().clone();
    let response = if let Some(l) = &guard.limiter {
        if l.check_key(&client).is_err() {
            core.metrics.rate_limited.inc();
            let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited")
                .with_detail("this client sent too many requests");
            p.retry_after = Some(1);
            Some(p.into_response())
        } else {
            None
        }
    } else {
        None
    };
    let response = match response {
        Some(r) => r,
        None => match guard.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                core.metrics.in_flight.inc();
                let r = next.run(req).await;
                core.metrics.in_flight.dec();
                drop(permit);
                r
            }
            Err(_) => {
                core.metrics.shed.inc();
                Problem::overloaded("the node is serving as many requests as it can")
                    .into_response()
            }
        },
    };
    let status = response.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    core.metrics.observe(&route, status, secs);
    if response.status().is_server_error() {
        tracing::warn!(%method, route, status, ms = secs * 1e3, %client, "request failed");
    } else {
        tracing::debug!(%method, route, status, ms = secs * 1e3, "request");
    }
    response
}

/// Unknown routes: a problem document, or a page for a browser.
async fn not_found(headers: axum::http::HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Not found - agora</title></head><body><h1>Not found</h1>\
             <p>There is no such page. <a href=\"/\">See the open CPOs</a>.</p></body></html>",
        )
            .into_response()
    } else {
        Problem::not_found("no such route").into_response()
    }
}

// ------------------------------------------------------------ bodies

/// A protocol message: an `application/cbor` body of at most
/// [`agora_core::wire::MAX_MESSAGE_LEN`] bytes. Anything else is refused
/// with a problem document before a role sees it.
#[derive(Debug)]
pub struct Cbor(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Cbor {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct.split(';').next().map(str::trim) != Some(CBOR) {
            return Err(
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
                    .with_detail(format!("protocol messages are {CBOR}")),
            );
        }
        // The node's body limit (DefaultBodyLimit) applies here; a protocol
        // message is also never longer than the wire format allows.
        let too_large = || {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large").with_detail(format!(
                "a protocol message is at most {} bytes",
                agora_core::wire::MAX_MESSAGE_LEN
            ))
        };
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::bad_request("the body could not be read")
            }
        })?;
        if bytes.len() > agora_core::wire::MAX_MESSAGE_LEN {
            return Err(too_large());
        }
        Ok(Cbor(bytes))
    }
}

/// A protocol reply: `application/cbor`, with the pending step's id when
/// the protocol goes on.
pub fn cbor_reply(body: Vec<u8>, step: Option<pending::StepId>) -> Response {
    let mut r = ([(header::CONTENT_TYPE, CBOR)], body).into_response();
    if let Some(id) = step {
        if let Ok(v) = HeaderValue::from_str(&hex::encode(id)) {
            r.headers_mut().insert(STEP_HEADER, v);
        }
    }
    r
}

/// Runs blocking work (storage, signatures) on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Problem::internal(&format!("a handler failed: {e}"))),
    }
}

// ------------------------------------------------------------ OpenAPI

/// The OpenAPI document of the HTTP API (kept by hand beside this crate:
/// it documents the contract, and a test holds it to the routes).
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
