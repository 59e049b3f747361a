//! The lightweight vendor on the network: SKEP as a protocol endpoint, SDDP
//! as a tower layer ([`SddpLayer`]) that any axum router can put in front of
//! its routes, and the demo vendor of personalized stock quotes (the paper's
//! examples 1 and 2) that the node hosts behind it.
//!
//! | route | body | what |
//! |---|---|---|
//! | `GET /v1/lite/vendor` | - | the vendor's id, keys and session-key policy (JSON) |
//! | `POST /v1/lite/skep` | CBOR | SKEP hello (answered with the challenge and a pending step), confirm (answered with the signed receipt, sealed under `K`, in non-repudiation mode; `204` in basic mode) |
//! | `GET /v1/lite/quotes?symbols=A,B` | - | behind [`SddpLayer`]: the client's quotes, sealed and signed |
//!
//! SKEP's pending state (between hello and confirm) is a pending step of
//! the node's table, as CPO's and SPEED's are; the client record it makes
//! is stored through the [`ClientRecords`] port in one conditional write
//! (the first SKEP for an id wins: a second one cannot replace `K`).
//!
//! The layer's steps read and write storage (the client record, the replay
//! cache): they run on the blocking pool, so that no unauthenticated
//! request reaches storage on an async worker. A request the layer refuses
//! gets an unsigned problem document: the client proxy reports it as the
//! vendor's refusal, not as data.
//!
//! Not here yet: EDDP over HTTP with daily hash-chain receipts (the paid
//! subscription of the paper's example 2: the sans-IO protocol is in
//! agora-lite, its HTTP binding is not), and the vendor's certificate for
//! the proxy to validate its keys against (`/v1/lite/vendor` publishes the
//! keys; the proxy that checks them is the next increment).

use crate::endpoint::{self, unknown_message, Answer, Endpoint, Inbound, Outbound};
use crate::{blocking, Core, Problem, Service};
use agora_core::crypto::{os_rng, sha256};
use agora_core::ports::replay::ReplayCache;
use agora_core::wire::tags;
use agora_core::Timestamp;
use agora_lite::http as lite_http;
use agora_lite::records::{ClientRecords, Subscribed};
use agora_lite::sddp::{SessionPolicy, MAX_DATA_LEN, MAX_REQUEST_LEN};
use agora_lite::skep::{confirm_client, SkepMode, SkepVendor, VendorAwaitConfirm};
use agora_lite::{ClientId, Granularity, VendorId};
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The largest sealed request body the layer reads: the plain request
/// bound, the AEAD nonce and tag.
pub const MAX_SEALED_REQUEST: usize = MAX_REQUEST_LEN + 64;

/// What the lightweight vendor is made of.
pub struct LiteSpec {
    /// The vendor's id and keys (X25519 for SKEP's hello, Ed25519 for
    /// receipts).
    pub vendor: SkepVendor,
    /// Whether SKEP ends with the signed receipt (non-repudiation SKEP).
    pub mode: SkepMode,
    /// The vendor's identity certificate (PEM), binding its id to both
    /// keys, for a client proxy to validate them against its trust.
    pub certificate: Option<String>,
    /// The client records.
    pub records: Arc<dyn ClientRecords>,
    /// The replay cache of SDDP nonces.
    pub replay: Arc<dyn ReplayCache>,
    /// The length of a unit of time of session keys.
    pub granularity: Granularity,
    /// Units accepted either side of the vendor's current one.
    pub window_units: u32,
}

impl std::fmt::Debug for LiteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteSpec")
            .field("vendor", self.vendor.id())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The lightweight vendor: what the SKEP endpoint and the SDDP layer share.
pub struct LiteVendor {
    spec: LiteSpec,
}

impl std::fmt::Debug for LiteVendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.spec.fmt(f)
    }
}

/// The client an SDDP request was authenticated as: the layer puts it in
/// the request's extensions for the service behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteClient(pub ClientId);

impl LiteVendor {
    /// The vendor of `spec`. Refuses a window over
    /// [`agora_lite::session::MAX_WINDOW_UNITS`].
    pub fn new(spec: LiteSpec) -> Result<LiteVendor, String> {
        if spec.window_units > agora_lite::session::MAX_WINDOW_UNITS {
            return Err(format!(
                "a window of {} units is over the limit of {}",
                spec.window_units,
                agora_lite::session::MAX_WINDOW_UNITS
            ));
        }
        Ok(LiteVendor { spec })
    }

    /// The vendor's id.
    pub fn id(&self) -> &VendorId {
        self.spec.vendor.id()
    }

    fn policy(&self, now: Timestamp) -> SessionPolicy {
        SessionPolicy {
            now,
            granularity: self.spec.granularity,
            window_units: self.spec.window_units,
        }
    }

    /// What `GET /v1/lite/vendor` says.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id().as_str(),
            "x25519": hex::encode(self.spec.vendor.x25519_public().to_bytes()),
            "ed25519": hex::encode(self.spec.vendor.verifying_key().to_bytes()),
            "skep_mode": match self.spec.mode {
                SkepMode::Basic => "basic",
                SkepMode::NonRepudiation => "non-repudiation",
            },
            "granularity_secs": self.spec.granularity.secs(),
            "window_units": self.spec.window_units,
            "certificate": self.spec.certificate,
            "skep": "/v1/lite/skep",
            "quotes": "/v1/lite/quotes",
        })
    }

    /// SKEP step 1 -> 2: the hello opens a pending step whose state waits
    /// for the confirm. A hello sent again while its step is pending gets
    /// the same challenge (the table's rule for openings).
    fn skep_hello(&self, core: &Core, m: &Inbound) -> Result<Outbound, Problem> {
        let (challenge, step) = core.pending.open(m.opening("lite/skep"), || {
            let (state, challenge) = self.spec.vendor.on_hello(&mut os_rng(), &m.body)?;
            Ok((challenge, state))
        })?;
        Ok(Outbound::go_on(challenge, step))
    }

    /// SKEP step 3 (-> 4): the confirm under the pending step's state; the
    /// record stored (first SKEP for an id wins), then the receipt.
    fn skep_confirm(&self, core: &Core, m: &Inbound) -> Result<Outbound, Problem> {
        let id_c = confirm_client(&m.body)?;
        let step = m.pending_step()?;
        let (record, receipt) = core.pending.step(&step, |state: VendorAwaitConfirm| {
            if state.client() != &id_c {
                return Err(agora_core::Error::Refused(
                    "this pending step is another client's SKEP".into(),
                ));
            }
            state
                .on_confirm(
                    &self.spec.vendor,
                    &mut os_rng(),
                    m.now,
                    &m.body,
                    self.spec.mode,
                )
                .map_err(agora_core::Error::from)
        })?;
        match self.spec.records.subscribe(self.id(), &record, m.now)? {
            Subscribed::New => {}
            Subscribed::AlreadySubscribed => {
                return Err(
                    Problem::new(StatusCode::CONFLICT, "already-subscribed").with_detail(
                        "this client id has a subscription with this vendor: its key stands",
                    ),
                )
            }
        }
        Ok(match receipt {
            Some(r) => Outbound::done(r),
            None => Outbound::Response(StatusCode::NO_CONTENT.into_response()),
        })
    }

    /// The SDDP layer's work on one request: authenticate and open it, run
    /// `inner` on the plain request, seal and sign its reply.
    async fn serve<S>(self: Arc<Self>, req: Request, mut inner: S) -> Result<Response, Problem>
    where
        S: tower::Service<Request, Response = Response, Error = Infallible> + Send,
        S::Future: Send,
    {
        if !lite_http::is_lite_request(req.headers()) {
            return Err(
                Problem::new(StatusCode::UNAUTHORIZED, "lite-unauthenticated").with_detail(
                    "this route is served over SDDP: send the request through `agora proxy`",
                ),
            );
        }
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_SEALED_REQUEST)
            .await
            .map_err(|_| {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large").with_detail(format!(
                    "a sealed request is at most {MAX_SEALED_REQUEST} bytes"
                ))
            })?;
        let mut sealed = http::Request::from_parts(parts, body.to_vec());
        let id_c = lite_http::request_client(sealed.headers())?;
        let now = Timestamp::now_from_system_clock();
        let vendor = self.clone();
        let (plain, accepted) = blocking(move || {
            let record = vendor
                .spec
                .records
                .get(vendor.id(), &id_c)?
                .ok_or_else(|| {
                    Problem::new(StatusCode::UNAUTHORIZED, "lite-unknown-client").with_detail(
                        "this vendor has no subscription for this client id: run SKEP first",
                    )
                })?;
            let accepted = lite_http::accept_request(
                &record,
                vendor.id(),
                vendor.policy(now),
                vendor.spec.replay.as_ref(),
                &mut sealed,
            )?;
            Ok((sealed, accepted))
        })
        .await?;
        let (mut parts, body) = plain.into_parts();
        parts
            .extensions
            .insert(LiteClient(accepted.client().clone()));
        let inner_req = Request::from_parts(parts, Body::from(body));
        let resp = match inner.call(inner_req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, MAX_DATA_LEN)
            .await
            .map_err(|_| Problem::internal("the vendor's reply is over the SDDP data limit"))?;
        let mut reply = http::Response::from_parts(parts, body.to_vec());
        accepted.seal_response(&mut os_rng(), now, &mut reply)?;
        let (parts, body) = reply.into_parts();
        Ok(Response::from_parts(parts, Body::from(body)))
    }
}

/// The tower layer that serves the routes behind it over SDDP: a request
/// must carry the client's RFC 9421 signature under her session key
/// (`agora proxy` makes it), its body is opened before the route sees it,
/// and the route's reply is sealed and signed for her. The route finds
/// the authenticated client in the request's extensions ([`LiteClient`]).
#[derive(Clone, Debug)]
pub struct SddpLayer {
    vendor: Arc<LiteVendor>,
}

impl SddpLayer {
    /// The layer of `vendor`.
    pub fn new(vendor: Arc<LiteVendor>) -> SddpLayer {
        SddpLayer { vendor }
    }
}

impl<S> tower::Layer<S> for SddpLayer {
    type Service = SddpService<S>;

    fn layer(&self, inner: S) -> SddpService<S> {
        SddpService {
            inner,
            vendor: self.vendor.clone(),
        }
    }
}

/// The service [`SddpLayer`] wraps around a route.
#[derive(Clone, Debug)]
pub struct SddpService<S> {
    inner: S,
    vendor: Arc<LiteVendor>,
}

impl<S> tower::Service<Request> for SddpService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone
        // stays for the next (tower's rule for services that are cloned).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let vendor = self.vendor.clone();
        Box::pin(async move {
            let realm = vendor.id().as_str().to_owned();
            Ok(match vendor.serve(req, inner).await {
                Ok(r) => r,
                Err(p) => {
                    let unauthorized = p.status == StatusCode::UNAUTHORIZED;
                    let mut r = p.into_response();
                    if unauthorized {
                        // RFC 9110 section 15.5.2: a 401 names its scheme.
                        let v = format!("agora-lite realm=\"{}\"", realm.replace(['"', '\\'], ""));
                        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
                            r.headers_mut()
                                .insert(axum::http::header::WWW_AUTHENTICATE, v);
                        }
                    }
                    r
                }
            })
        })
    }
}

struct SkepEndpoint(Arc<LiteVendor>);

impl Endpoint for SkepEndpoint {
    fn handle(self: Arc<Self>, core: Arc<Core>, m: Inbound) -> Answer {
        Box::pin(async move {
            let vendor = self.0.clone();
            match m.tag {
                // HPKE open and a challenge: a few tens of microseconds,
                // no storage.
                tags::LITE_SKEP_HELLO => vendor.skep_hello(&core, &m),
                // The record's conditional write: the blocking pool.
                tags::LITE_SKEP_CONFIRM => blocking(move || vendor.skep_confirm(&core, &m)).await,
                t => Err(unknown_message(t)),
            }
        })
    }
}

// ---- the demo vendor: personalized stock quotes -------------------------

/// The symbols a client gets when she names none.
pub const DEFAULT_WATCHLIST: [&str; 3] = ["ACME", "GLOBEX", "INITECH"];
/// The most symbols one request may name.
pub const MAX_SYMBOLS: usize = 20;

/// A demo quote: a price in cents for `symbol` on the day of `now`, made
/// up (a hash of the symbol and the day), the same for every client on
/// that day. The demo sells personalized delivery, not market data.
pub fn demo_price_cents(symbol: &str, now: Timestamp) -> u64 {
    let day = now.0 / 86_400;
    let mut m = Vec::with_capacity(symbol.len() + 8);
    m.extend_from_slice(symbol.as_bytes());
    m.extend_from_slice(&day.to_be_bytes());
    let h = sha256(&m);
    1_000 + u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]])) % 99_000
}

async fn quotes_route(
    Extension(LiteClient(client)): Extension<LiteClient>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let symbols: Vec<String> = match q.get("symbols") {
        None => DEFAULT_WATCHLIST.iter().map(|s| (*s).to_owned()).collect(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .collect(),
    };
    if symbols.is_empty() || symbols.len() > MAX_SYMBOLS {
        return Err(Problem::bad_request(format!(
            "name 1 to {MAX_SYMBOLS} symbols"
        )));
    }
    if let Some(bad) = symbols
        .iter()
        .find(|s| s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(Problem::bad_request(format!(
            "{bad:?} is not a symbol (1 to 8 letters or digits)"
        )));
    }
    let now = Timestamp::now_from_system_clock();
    let quotes: Vec<serde_json::Value> = symbols
        .iter()
        .map(|s| {
            let c = demo_price_cents(s, now);
            serde_json::json!({ "symbol": s, "price": format!("{}.{:02}", c / 100, c % 100) })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "client": client.as_str(),
        "at": now.0,
        "quotes": quotes,
        "note": "demo prices, made up from the symbol and the day",
    })))
}

/// The lightweight vendor as a node service: SKEP, its public keys, and
/// the demo quotes behind [`SddpLayer`].
#[derive(Debug)]
pub struct LiteService {
    vendor: Arc<LiteVendor>,
}

impl LiteService {
    /// The service of `spec`.
    pub fn new(spec: LiteSpec) -> Result<LiteService, String> {
        Ok(LiteService {
            vendor: Arc::new(LiteVendor::new(spec)?),
        })
    }

    /// The vendor (for a service of one's own behind [`SddpLayer`]).
    pub fn vendor(&self) -> Arc<LiteVendor> {
        self.vendor.clone()
    }
}

impl Service for LiteService {
    fn name(&self) -> &'static str {
        "lite"
    }

    fn router(self: Arc<Self>, core: Arc<Core>) -> Router {
        let vendor = self.vendor.clone();
        // `route_layer`: a method the route does not take is answered
        // `405` before the layer, not `401`.
        let quotes = Router::new().route(
            "/v1/lite/quotes",
            get(quotes_route).route_layer(SddpLayer::new(self.vendor.clone())),
        );
        Router::new()
            .route(
                "/v1/lite/skep",
                endpoint::route(Arc::new(SkepEndpoint(self.vendor.clone())), core),
            )
            .route(
                "/v1/lite/vendor",
                get(move || {
                    let v = vendor.clone();
                    async move { Json(v.public_json()) }
                }),
            )
            .merge(quotes)
    }

    fn describe(&self) -> serde_json::Value {
        self.vendor.public_json()
    }
}
