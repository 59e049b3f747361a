//! Admission: what a request must pass before it costs the node work, in
//! this order (ARCHITECTURE section 1, "nothing before admission").
//!
//! 1. **Rate**: past a client address's rate, `429` with `Retry-After`
//!    (loopback clients are exempt unless `rate_limit_loopback`).
//! 2. **Declared size**: a `Content-Length` above the route's limit is
//!    answered `413` without a byte of the body reaching a role: at once if
//!    it declares more than [`MAX_DRAIN`], else once the body has been read
//!    and dropped, so that its sender reads the answer, not a reset.
//! 3. **Receiving**: the whole body is received, within `body_timeout`
//!    (`408` past it) and `max_body_bytes` (`413`), while holding only a
//!    *receiving* place (`max_receiving`), not a work slot: a client that
//!    sends slowly holds its connection and nothing that other clients need.
//! 4. **Work**: one of `max_in_flight` work slots, taken without waiting
//!    (`503 overloaded` with `Retry-After` when none is free), for at most
//!    what is left of `request_timeout` (`504 timed-out` past it).
//!
//! Nothing a refused request carried has reached a role when it is refused
//! at steps 1 to 4: a `429` or a `503` from here has changed nothing.
//!
//! Upload routes (a SPEED complaint: a message and the product it is about,
//! streamed through its examination) read their own body as it arrives:
//! they take an upload slot (`max_uploads`) instead of a receiving place
//! and a work slot, their body is cut at `max_upload_bytes`, and the whole
//! upload must be done within `upload_timeout`.

use crate::{Core, NodeConfig, Problem};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::BodyExt;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The node's admission state: connections, receiving places, work and
/// upload slots, rate limits, and whether it is stopping.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) connections: Arc<Places>,
    work: Arc<Semaphore>,
    uploads: Arc<Places>,
    receiving: AtomicUsize,
    max_receiving: usize,
    limiter: Option<Limiter>,
    stopping: AtomicBool,
}

struct Limiter {
    by_client: DefaultKeyedRateLimiter<IpAddr>,
    loopback_too: bool,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("loopback_too", &self.loopback_too)
            .finish_non_exhaustive()
    }
}

impl Admission {
    pub(crate) fn new(c: &NodeConfig) -> Admission {
        let limiter = NonZeroU32::new(c.rate_limit_per_sec).map(|rate| {
            let burst = NonZeroU32::new(c.rate_limit_burst).unwrap_or(rate);
            Limiter {
                by_client: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                loopback_too: c.rate_limit_loopback,
            }
        });
        Admission {
            connections: Arc::new(Places::new(c.max_connections, c.max_connections_per_client)),
            work: Arc::new(Semaphore::new(c.max_in_flight.max(1))),
            uploads: Arc::new(Places::new(c.max_uploads, c.max_uploads_per_client)),
            receiving: AtomicUsize::new(0),
            max_receiving: c.max_receiving.max(1),
            limiter,
            stopping: AtomicBool::new(false),
        }
    }

    /// The node has begun to stop: readiness turns red.
    pub(crate) fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Why the node cannot take more work now, if it cannot: for `/readyz`.
    pub(crate) fn not_ready(&self, core: &Core) -> Vec<&'static str> {
        let mut why = Vec::new();
        if self.stopping.load(Ordering::SeqCst) {
            why.push("stopping");
        }
        if self.work.available_permits() == 0 {
            why.push("every work slot is taken");
        }
        if self.connections.is_full() {
            why.push("as many connections as it takes are open");
        }
        if self.receiving.load(Ordering::SeqCst) >= self.max_receiving {
            why.push("as many bodies as it takes are being received");
        }
        if core.pending.is_full() {
            why.push("the pending-step table is full");
        }
        why
    }

    fn rate_limited(&self, client: IpAddr) -> bool {
        match &self.limiter {
            Some(l) if l.loopback_too || !client.is_loopback() => {
                l.by_client.check_key(&client).is_err()
            }
            _ => false,
        }
    }
}

/// Places held (connections open, uploads under way), in all and by client
/// address, each bounded.
#[derive(Debug)]
pub(crate) struct Places {
    max: usize,
    per_client: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Why a place was not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every place of the node is held.
    NodeFull,
    /// This client holds as many as it may.
    ClientFull,
}

/// A place held: counted until dropped.
#[derive(Debug)]
pub(crate) struct Place {
    conns: Arc<Places>,
    client: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut o = self.conns.lock();
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                o.by_client.remove(&self.client);
            }
        }
    }
}

impl Places {
    pub(crate) fn new(max: usize, per_client: usize) -> Places {
        Places {
            max: max.max(1),
            per_client: per_client.max(1),
            open: Mutex::new(Open::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Every update is a pair of counts changed together under the
        // lock; a panic cannot happen between them.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `client` a place, unless a limit is reached.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Place, Refusal> {
        let mut o = self.lock();
        if o.total >= self.max {
            return Err(Refusal::NodeFull);
        }
        let n = o.by_client.entry(client).or_insert(0);
        if *n >= self.per_client {
            return Err(Refusal::ClientFull);
        }
        *n += 1;
        o.total += 1;
        Ok(Place {
            conns: self.clone(),
            client,
        })
    }

    /// Places held now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }

    /// Whether every place is held.
    pub(crate) fn is_full(&self) -> bool {
        self.open() >= self.max
    }
}

/// A receiving place, given back when dropped.
struct Receiving<'a>(&'a Core);

impl<'a> Receiving<'a> {
    fn take(core: &'a Core) -> Option<Receiving<'a>> {
        let a = &core.admission;
        let taken = a
            .receiving
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < a.max_receiving).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| {
            core.metrics.receiving.inc();
            Receiving(core)
        })
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.admission.receiving.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.receiving.dec();
    }
}

/// A request holding a work slot, counted until dropped (also when its
/// connection is dropped mid-request).
struct InFlight<'a>(&'a crate::Metrics);

impl<'a> InFlight<'a> {
    fn count(m: &'a crate::Metrics) -> InFlight<'a> {
        m.in_flight.inc();
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// The guard's state: the core and the routes that read their own uploads.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) core: Arc<Core>,
    pub(crate) upload_routes: HashSet<&'static str>,
}

/// How much of a body refused for its size is still read before the answer
/// goes out, so that its sender reads the `413` rather than a reset of the
/// connection (a lingering close, as the SPEED complaint route does for a
/// refused upload). A body declared or found longer is answered at once and
/// its connection closed.
pub(crate) const MAX_DRAIN: u64 = 16 << 20;

/// The whole of `body`, if it is at most `limit` bytes. A longer one is
/// read on to [`MAX_DRAIN`] and dropped, then refused as too large.
async fn receive(mut body: Body, limit: u64) -> Result<axum::body::Bytes, Problem> {
    let mut kept = Vec::new();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Problem::bad_request("the body could not be read"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > MAX_DRAIN {
            break;
        }
        if seen <= limit {
            kept.extend_from_slice(data);
        }
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(kept.into())
}

/// Reads and drops `body`, at most [`MAX_DRAIN`] bytes of it.
async fn drain(mut body: Body) {
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if seen > MAX_DRAIN {
            return;
        }
    }
}

/// `413 too-large` naming the limit that applies.
pub(crate) fn too_large(limit: u64) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        .with_detail(format!("a request body here is at most {limit} bytes"))
}

fn body_timeout(d: Duration) -> Problem {
    Problem::new(StatusCode::REQUEST_TIMEOUT, "request-timeout").with_detail(format!(
        "the request body did not arrive within {} s",
        d.as_secs_f64()
    ))
}

fn work_timeout(d: Duration) -> Problem {
    Problem::new(StatusCode::GATEWAY_TIMEOUT, "timed-out").with_detail(format!(
        "the request was not answered within {} s; if it was a protocol step, ask for its \
         outcome before sending it again",
        d.as_secs_f64()
    ))
}

/// The declared length of a request's body, if it declares one.
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The `tracing` target of the request log (`NodeConfig::request_log`).
pub const REQUEST_LOG: &str = "agora_node::request";

/// The middleware: admission, then the route, then metrics and the log.
pub(crate) async fn layer(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
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
    let upload = g.upload_routes.contains(route.as_str());
    let response = match admit_and_run(&g.core, client, upload, started, req, next).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    };
    let status = response.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    g.core.metrics.observe(&route, status, secs);
    let code = response
        .extensions()
        .get::<crate::problem::ProblemCode>()
        .map(|c| c.0);
    if let Some(code) = code {
        g.core.metrics.business.refused(code);
    }
    if g.core.config.request_log {
        // The route's template, never the path a client sent (its values
        // may name a CPO or an agency), nor its query, headers or body.
        tracing::info!(
            target: REQUEST_LOG,
            %method,
            route,
            status,
            ms = secs * 1e3,
            code = code.unwrap_or("-"),
            "request"
        );
    }
    if response.status().is_server_error() {
        tracing::warn!(%method, route, status, ms = secs * 1e3, %client, "request failed");
    } else {
        tracing::debug!(%method, route, status, ms = secs * 1e3, "request");
    }
    response
}

async fn admit_and_run(
    core: &Arc<Core>,
    client: IpAddr,
    upload: bool,
    started: Instant,
    req: Request,
    next: Next,
) -> Result<Response, Problem> {
    let (a, c, m) = (&core.admission, &core.config, &core.metrics);
    if a.rate_limited(client) {
        m.rate_limited.inc();
        let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited")
            .with_detail("this client sent too many requests");
        p.retry_after = Some(1);
        return Err(p);
    }
    let limit = if upload {
        c.max_upload_bytes
    } else {
        c.max_body_bytes as u64
    };
    if let Some(declared) = declared_length(&req).filter(|&n| n > limit) {
        // A body short enough to read is read and dropped first (holding a
        // receiving place, within the body's time), so that a client still
        // writing it reads this answer rather than a reset.
        if declared <= MAX_DRAIN && !upload {
            if let Some(_receiving) = Receiving::take(core) {
                let _ = tokio::time::timeout(c.body_timeout, drain(req.into_body())).await;
            }
        }
        return Err(too_large(limit));
    }
    if upload {
        let _place = a.uploads.admit(client).map_err(|why| {
            m.shed.inc();
            Problem::overloaded(match why {
                Refusal::NodeFull => "the node is receiving as many uploads as it can",
                Refusal::ClientFull => "this client is sending as many uploads as it may",
            })
        })?;
        let (parts, body) = req.into_parts();
        // A body longer than it declared, or chunked past the limit, ends
        // in an error the route reports as too large.
        let body = Body::new(http_body_util::Limited::new(body, limit as usize));
        let req = Request::from_parts(parts, body);
        return match tokio::time::timeout(c.upload_timeout, next.run(req)).await {
            Ok(r) => Ok(r),
            Err(_) => {
                m.timed_out.inc();
                Err(body_timeout(c.upload_timeout))
            }
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = {
        let Some(_receiving) = Receiving::take(core) else {
            m.shed.inc();
            return Err(Problem::overloaded(
                "the node is receiving as many requests as it can",
            ));
        };
        match tokio::time::timeout(c.body_timeout, receive(body, limit)).await {
            Err(_) => {
                m.timed_out.inc();
                return Err(body_timeout(c.body_timeout));
            }
            Ok(received) => received?,
        }
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    let Ok(_work) = a.work.clone().try_acquire_owned() else {
        m.shed.inc();
        return Err(Problem::overloaded(
            "the node is serving as many requests as it can",
        ));
    };
    let _counted = InFlight::count(m);
    let left = c.request_timeout.saturating_sub(started.elapsed());
    tokio::time::timeout(left, next.run(req))
        .await
        .map_err(|_| {
            m.timed_out.inc();
            work_timeout(c.request_timeout)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_in_all_and_per_client() {
        let c = Arc::new(Places::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let a1 = c.admit(a).expect("first");
        let _a2 = c.admit(a).expect("second");
        assert_eq!(c.admit(a).expect_err("third"), Refusal::ClientFull);
        let _b1 = c.admit(b).expect("another client");
        assert_eq!(c.admit(b).expect_err("node full"), Refusal::NodeFull);
        assert!(c.is_full());
        drop(a1);
        assert_eq!(c.open(), 2);
        let _a3 = c.admit(a).expect("a slot freed by a closed connection");
    }

    #[test]
    fn by_default_other_clients_are_rate_limited_and_loopback_is_not() {
        let c = NodeConfig::default();
        let a = Admission::new(&c);
        let remote: IpAddr = "192.0.2.1".parse().expect("ip");
        let limited = (0..=c.rate_limit_burst)
            .filter(|_| a.rate_limited(remote))
            .count();
        assert!(limited >= 1, "past its burst, a remote client is limited");
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!((0..10 * c.rate_limit_burst).all(|_| !a.rate_limited(local)));
        // Unless loopback is limited too.
        let a = Admission::new(&NodeConfig {
            rate_limit_loopback: true,
            ..c.clone()
        });
        assert!((0..=c.rate_limit_burst).any(|_| a.rate_limited(local)));
    }
}
