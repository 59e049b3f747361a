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
//! - admission before work (`guard.rs`): per-client rate limits (`429`,
//!   loopback exempt by default), body size (`413` for a declared length
//!   past the limit, the body read and dropped first up to 16 MiB so that
//!   its sender reads the answer) and body time (`408`), the body received before a
//!   work slot is taken, and past `max_in_flight` requests `503` with
//!   `Retry-After`; a refused request has changed nothing;
//! - connections admitted and bounded (`serve.rs`): in all and per client
//!   address, a header-read timeout, a shutdown that ends within
//!   `shutdown_grace`;
//! - `/healthz` (the process is up), `/readyz` (it can take work now),
//!   `/metrics` (Prometheus text), `/openapi.json`, `/v1/node`;
//! - an optional request log (`request_log`): one `tracing` event per
//!   request with its route template, status, duration and problem code,
//!   and nothing a client sent (no path values, query, headers or body);
//! - structured logs (tracing) and graceful shutdown: on SIGINT/SIGTERM the
//!   node stops accepting, finishes the requests in flight (their commits are
//!   durable before their replies) for at most `shutdown_grace`, and then
//!   returns.
//!
//! Storage calls block (SQLite, group commit): handlers run them through
//! [`blocking`], on tokio's blocking pool. The exception is the two steps of
//! a bind (`cpo`), which run on the async workers: they usually read only
//! memory, and their binding awaits its commit as a future.
#![forbid(unsafe_code)]

pub mod cpo;
pub mod endpoint;
mod guard;
pub mod lite;
pub mod metrics;
pub mod pending;
pub mod pki;
pub mod problem;
pub mod proxy;
mod serve;
pub mod speed;
pub mod stp;
pub mod web;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub use guard::REQUEST_LOG;
pub use metrics::{Business, Metrics};
pub use pending::{PendingSteps, STEP_HEADER};
pub use problem::Problem;
use std::sync::Arc;
use std::time::Duration;

/// The media type of protocol messages.
pub const CBOR: &str = "application/cbor";
/// The media type of signed evidence (COSE_Sign1).
pub const COSE: &str = "application/cose";

/// What the node's core enforces for every service (docs/NODE.md lists
/// each limit with its default and its setting).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Largest request body, in bytes, of every route but uploads.
    pub max_body_bytes: usize,
    /// Largest upload (a SPEED complaint: its message and the encrypted
    /// product), in bytes.
    pub max_upload_bytes: u64,
    /// Requests served at once; past it, `503` with `Retry-After`.
    pub max_in_flight: usize,
    /// Request bodies being received at once (a slow sender holds one of
    /// these, not a work slot); past it, `503`.
    pub max_receiving: usize,
    /// Uploads being received and examined at once; past it, `503`.
    pub max_uploads: usize,
    /// Uploads at once from one client address.
    pub max_uploads_per_client: usize,
    /// Connections open at once; past it, a new one gets `503` and is closed.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Time for a request's head (request line and headers) to arrive, and
    /// the longest a keep-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Time for a request's whole body to arrive once its head has; past
    /// it, `408`.
    pub body_timeout: Duration,
    /// Time for a whole request, body and work, from the end of its head;
    /// past it, `504 timed-out`.
    pub request_timeout: Duration,
    /// Time for a whole upload (received and examined).
    pub upload_timeout: Duration,
    /// On shutdown, how long requests in flight may take to finish before
    /// their connections are closed.
    pub shutdown_grace: Duration,
    /// Requests per second per client address (0: no limit).
    pub rate_limit_per_sec: u32,
    /// Burst above the rate a client may use.
    pub rate_limit_burst: u32,
    /// Whether loopback clients are rate-limited too (by default they are
    /// not: they are this machine's own tools).
    pub rate_limit_loopback: bool,
    /// Protocol steps pending at once.
    pub max_pending_steps: usize,
    /// Protocol steps pending at once for one client address.
    pub max_pending_per_client: usize,
    /// How long a pending step waits for the client's next message.
    pub pending_step_ttl: Duration,
    /// How often each service's housekeeping runs.
    pub housekeeping_every: Duration,
    /// The URL clients reach this node at (for links and `/v1/node`).
    pub public_url: String,
    /// Whether every request is logged (target `agora_node::request`, level
    /// info): its method, route template, status, duration and problem
    /// code. Never a path's values, a query, a header or a body. Off by
    /// default.
    pub request_log: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_body_bytes: 256 * 1024,
            max_upload_bytes: 1 << 30,
            max_in_flight: 512,
            max_receiving: 1024,
            max_uploads: 4,
            max_uploads_per_client: 1,
            max_connections: 4096,
            max_connections_per_client: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(10),
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            rate_limit_loopback: false,
            max_pending_steps: 10_000,
            max_pending_per_client: 1_000,
            pending_step_ttl: Duration::from_secs(120),
            housekeeping_every: Duration::from_secs(30),
            public_url: "http://127.0.0.1:7878".into(),
            request_log: false,
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
    /// Connections, work slots, rate limits (the guard's and the
    /// connection loop's).
    admission: guard::Admission,
    /// The services the node hosts, once it has built its routes: what one
    /// service may ask of the others (the web pages, of a vendor's
    /// catalogue).
    services: std::sync::OnceLock<Vec<Arc<dyn Service>>>,
}

impl Core {
    /// The services the node hosts (none before its routes are built).
    pub fn services(&self) -> &[Arc<dyn Service>] {
        self.services.get().map(Vec::as_slice).unwrap_or(&[])
    }

    /// The catalogue of the first hosted service that sells something
    /// ([`Service::storefront`]), if one does.
    pub fn storefront(&self) -> Option<Result<serde_json::Value, Problem>> {
        self.services().iter().find_map(|s| s.storefront())
    }
}

/// A role (or a set of roles) the node hosts.
pub trait Service: Send + Sync + 'static {
    /// A short name for logs and `/v1/node` (e.g. `cpo`).
    fn name(&self) -> &'static str;
    /// Its routes. They are merged with the other services' and the core's.
    fn router(self: Arc<Self>, core: Arc<Core>) -> Router;
    /// Its routes that read their own body as it arrives (bounded by
    /// `max_upload_bytes` and `upload_timeout` instead of being received
    /// whole first).
    fn upload_routes(&self) -> &'static [&'static str] {
        &[]
    }
    /// Periodic work (CRL refresh, expiry, awards...): a summary for the log
    /// if something happened. Runs on the blocking pool.
    fn housekeeping(&self, _now: agora_core::Timestamp) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// What `/v1/node` says of it: roles, key ids, URLs.
    fn describe(&self) -> serde_json::Value;
    /// What it sells, if it sells something (a SPEED vendor's catalogue, as
    /// `GET /v1/speed/catalogue` gives it): the web's store page shows it.
    fn storefront(&self) -> Option<Result<serde_json::Value, Problem>> {
        None
    }
}

impl std::fmt::Debug for dyn Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
        let pending = PendingSteps::new(config.max_pending_steps, config.pending_step_ttl)
            .with_quotas(config.max_pending_per_client);
        Node {
            core: Arc::new(Core {
                admission: guard::Admission::new(&config),
                config,
                pending,
                metrics: Metrics::new(),
                services: std::sync::OnceLock::new(),
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
        // The first set of services stays: a node's services do not change.
        let _ = self.core.services.set(self.services.clone());
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
        let guard = Arc::new(guard::Guard {
            core: self.core.clone(),
            upload_routes: self
                .services
                .iter()
                .flat_map(|s| s.upload_routes().iter().copied())
                .collect(),
        });
        let core = self.core.clone();
        let ready = self.core.clone();
        let api = Arc::new(openapi_for(&self.core.config.public_url));
        app.route(
            "/v1/node",
            get(move || {
                let d = node_doc.clone();
                async move { axum::Json((*d).clone()) }
            }),
        )
        .route(
            "/openapi.json",
            get(move || {
                let api = api.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], (*api).clone()) }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                core.metrics.pending_steps.set(core.pending.len() as i64);
                // Counted as connections are admitted, in the order they
                // were accepted: this request's own is among them.
                core.metrics
                    .connections
                    .set(core.admission.connections.open() as i64);
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
        .layer(axum::middleware::from_fn_with_state(guard, guard::layer))
        // Health and readiness bypass admission: they must answer when
        // nothing else can.
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                let why = ready.admission.not_ready(&ready);
                let status = if why.is_empty() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (
                    status,
                    axum::Json(serde_json::json!({ "ready": why.is_empty(), "why": why })),
                )
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            self.core.config.max_body_bytes,
        ))
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// requests in flight (for at most `shutdown_grace`) and returns.
    /// Housekeeping runs every `housekeeping_every` (and once at start).
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
        let served = serve::run(self.core.clone(), app, listener, shutdown).await;
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

/// Whether a request's `Content-Type` names the media type `expected`
/// (`type/subtype`, written in lower case): type and subtype are compared
/// without regard to case and parameters may follow (RFC 9110 section
/// 8.3.1), so `APPLICATION/CBOR; x=y` names `application/cbor`.
pub fn content_type_is(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// A protocol message: an `application/cbor` body of at most
/// [`agora_core::wire::MAX_MESSAGE_LEN`] bytes. Anything else is refused
/// with a problem document before a role sees it.
#[derive(Debug)]
pub struct Cbor(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Cbor {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), CBOR) {
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
/// it documents the contract, and a test holds it to the routes). Its
/// `servers` entry names `agora up`'s default address; a node serves it
/// with its own ([`openapi_for`]).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// [`OPENAPI`] as the node at `public_url` serves it: its `servers` entry
/// names that URL, so that a client (or schemathesis) reading the document
/// from the node talks to the node.
pub fn openapi_for(public_url: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        return OPENAPI.to_owned();
    };
    doc["servers"] = serde_json::json!([{
        "url": public_url.trim_end_matches('/'),
        "description": "this node",
    }]);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| OPENAPI.to_owned())
}
