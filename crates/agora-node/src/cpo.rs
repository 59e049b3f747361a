//! Conditional Purchase Orders on the network: the arbiter and the CPO
//! server as a [`Service`].
//!
//! | route | body | what |
//! |---|---|---|
//! | `POST /v1/cpo/arbiter` | CBOR | protocols 1 and 5 (approval), 6 step 5 (award) |
//! | `POST /v1/cpo/server` | CBOR | protocols 2, 3, 4, 6; binding fetch and recovery; a buyer's lost posted CPO, a bidder's lost receipts |
//! | `GET /v1/cpo/board` | - | the public listing (JSON; filters, paging) |
//! | `GET /v1/cpo/board/{id}` | - | one CPO's public fields and status (JSON) |
//! | `GET /v1/cpo/notices/{id}/{receipt}` | - | a bidder's signed notice (COSE) |
//! | `POST /v1/cpo/awards/{id}` | - | award a closed bidding CPO now (JSON) |
//!
//! A protocol message is routed by its registered tag: the envelope's, or
//! the K_p channel's. The second message of a four-message protocol names
//! its exchange in the [`EXCHANGE_HEADER`]. Housekeeping reloads the trust
//! (agencies, CRLs) and rebuilds the roles with it, applies revocations
//! (a revoked buyer's CPOs come down, a revoked seller's sessions end), and
//! hands the bids of every closed bidding CPO to the arbiter.

use crate::exchange::{parse_id, ExchangeId};
use crate::{blocking, cbor_reply, Cbor, Core, Problem, Service, COSE, EXCHANGE_HEADER};
use agora_core::crypto::{os_rng, SigningKey, VerifyingKey, X25519Secret};
use agora_core::ports::EvidenceArchive;
use agora_core::wire::{envelope, tags, Tag};
use agora_core::{Currency, Timestamp};
use agora_cpo::arbiter::{Arbiter, PendingApproval};
use agora_cpo::bidding::Bids;
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::{Board, BoardEntry, ListFilter};
use agora_cpo::server::{PendingBrowse, PendingPost, Server};
use agora_cpo::{Bidding, BondTrust, FirstCome, Keys, Mode, Peer};
use agora_store::{SqliteBoard, SqliteReplayCache, SqliteSessions, Store};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::{Arc, RwLock};

/// The CPO server on the SQLite store.
pub type CpoServer = Server<SqliteBoard, SqliteReplayCache, SqliteSessions>;

/// Where the roles' trust comes from: called at start and by housekeeping,
/// so that new CRLs (and agencies) take effect without a restart.
pub trait TrustSource: Send + Sync {
    /// The trusted bonding agencies and their newest CRLs.
    fn bond_trust(&self) -> Result<BondTrust, String>;
}

/// Bidding CPOs awarded per housekeeping run, at most.
const AWARDS_PER_RUN: usize = 64;
/// Entries per page of the public listing, at most.
pub const MAX_PAGE: usize = 200;

/// What the node's CPO service hosts.
pub struct CpoSpec {
    /// The store (board, sessions, replay cache, bids, archive).
    pub store: Store,
    /// The server's keys and the arbiters whose acceptances it takes.
    pub server: Option<(Keys, Vec<Peer>)>,
    /// The arbiter's keys, its policy and the servers whose award requests it
    /// takes.
    pub arbiter: Option<(Keys, ArbiterPolicy, Vec<Peer>)>,
    /// Agencies and CRLs.
    pub trust: Box<dyn TrustSource>,
}

impl std::fmt::Debug for CpoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpoSpec")
            .field("server", &self.server.as_ref().map(|s| s.0.id()))
            .field("arbiter", &self.arbiter.as_ref().map(|a| a.0.id()))
            .finish()
    }
}

struct ServerRole {
    keys: Keys,
    /// One server for the node's life: it holds the listings issued and
    /// not yet answered, so a trust reload must not replace it.
    server: Arc<CpoServer>,
}

struct ArbiterRole {
    keys: Keys,
    policy: ArbiterPolicy,
    servers: Vec<Peer>,
    current: RwLock<Arc<Arbiter>>,
}

/// The CPO roles as a node service.
pub struct CpoService {
    store: Store,
    server: Option<ServerRole>,
    arbiter: Option<ArbiterRole>,
    trust: Box<dyn TrustSource>,
}

impl std::fmt::Debug for CpoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpoService")
            .field("server", &self.server.as_ref().map(|s| s.keys.id()))
            .field("arbiter", &self.arbiter.as_ref().map(|a| a.keys.id()))
            .finish()
    }
}

fn clone_keys(k: &Keys) -> Keys {
    Keys {
        sign: SigningKey::from_seed(&k.sign.to_seed()),
        enc: X25519Secret::from_bytes(*k.enc.to_bytes()),
    }
}

fn read<T: ?Sized>(l: &RwLock<Arc<T>>) -> Arc<T> {
    // Only whole-Arc swaps happen under the write lock: a poisoned lock
    // still holds a complete value.
    l.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl CpoService {
    /// Builds the roles with the trust as it is now.
    pub fn new(spec: CpoSpec) -> Result<CpoService, String> {
        let trust = spec.trust.bond_trust()?;
        let store = spec.store;
        let server = spec.server.map(|(keys, arbiters)| ServerRole {
            server: Arc::new(make_server(&store, &keys, &arbiters, trust.clone())),
            keys,
        });
        let arbiter = spec.arbiter.map(|(keys, policy, servers)| ArbiterRole {
            current: RwLock::new(Arc::new(Arbiter::new(
                clone_keys(&keys),
                policy.clone(),
                trust.clone(),
            ))),
            keys,
            policy,
            servers,
        });
        Ok(CpoService {
            store,
            server,
            arbiter,
            trust: spec.trust,
        })
    }

    fn server(&self) -> Result<Arc<CpoServer>, Problem> {
        self.server
            .as_ref()
            .map(|s| s.server.clone())
            .ok_or_else(|| Problem::not_found("this node hosts no CPO server"))
    }

    fn arbiter(&self) -> Result<Arc<Arbiter>, Problem> {
        self.arbiter
            .as_ref()
            .map(|a| read(&a.current))
            .ok_or_else(|| Problem::not_found("this node hosts no CPO arbiter"))
    }

    /// Reloads the trust: the server takes it in place (its issued
    /// listings stay valid), the stateless arbiter is rebuilt with it.
    pub fn reload_trust(&self) -> Result<(), String> {
        let trust = self.trust.bond_trust()?;
        if let Some(s) = &self.server {
            s.server.set_trust(trust.clone());
        }
        if let Some(a) = &self.arbiter {
            let fresh = Arc::new(Arbiter::new(clone_keys(&a.keys), a.policy.clone(), trust));
            *a.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
        Ok(())
    }

    /// Awards `cpo` if its bidding has closed: the server hands the bids to
    /// the arbiter the CPO names (which must be hosted here), records the
    /// award and the winner's binding, and archives the award.
    pub fn award(&self, cpo: &[u8; 32], now: Timestamp) -> Result<AwardSummary, Problem> {
        let server = self.server()?;
        let bids = self.store.bids();
        if let Some(award) = bids.award(cpo)? {
            // Made before (by housekeeping, or an earlier call): the winner
            // is the seller of the winning receipt among the recorded bids.
            let recorded = bids.bids(cpo)?;
            let arbiter_key = self
                .arbiter
                .as_ref()
                .map(|a| a.keys.sign.verifying_key())
                .ok_or_else(|| Problem::not_found("this node hosts no CPO arbiter"))?;
            let winner =
                agora_core::wire::cose::verify::<agora_cpo::bidding::Award>(&award, &arbiter_key)
                    .ok()
                    .and_then(|a| a.winner)
                    .and_then(|w| recorded.iter().find(|b| b.summary.receipt_hash == w))
                    .map(|b| b.summary.seller.to_string());
            return Ok(AwardSummary {
                award,
                winner,
                bids: recorded.len(),
                new: false,
            });
        }
        let entry = server
            .board()
            .get(cpo)?
            .ok_or_else(|| Problem::not_found("no such CPO on this board"))?;
        let arbiter = self.arbiter()?;
        if arbiter.id() != entry.ccpo.arbiter {
            return Err(Problem::from(agora_core::Error::Refused(
                "the CPO's arbiter is not hosted on this node".into(),
            )));
        }
        let (server_role, arbiter_role) = match (&self.server, &self.arbiter) {
            (Some(s), Some(a)) => (s, a),
            _ => return Err(Problem::internal("roles vanished")),
        };
        let mut rng = os_rng();
        let (m, pending) =
            server.request_award(&bids, &mut rng, now, cpo, &arbiter_role.keys.peer())?;
        let (reply, _) =
            arbiter.handle_award_request(&mut rng, now, &m, &server_role.keys.peer())?;
        let awarded = pending.handle_award(&server, &bids, now, &reply)?;
        self.store
            .archive()
            .append("cpo/award", &awarded.award, now)?;
        Ok(AwardSummary {
            bids: awarded.notices.len(),
            winner: awarded.winner.map(|w| w.to_string()),
            award: awarded.award,
            new: true,
        })
    }
}

/// The outcome of [`CpoService::award`].
#[derive(Clone, Debug)]
pub struct AwardSummary {
    /// The arbiter's signed award.
    pub award: Vec<u8>,
    /// The winner's bond key id (known when the award is new).
    pub winner: Option<String>,
    /// Bids considered.
    pub bids: usize,
    /// Whether this call made it.
    pub new: bool,
}

fn make_server(store: &Store, keys: &Keys, arbiters: &[Peer], trust: BondTrust) -> CpoServer {
    Server::new(
        clone_keys(keys),
        trust,
        arbiters
            .iter()
            .map(|p| p.sign)
            .collect::<Vec<VerifyingKey>>(),
        store.board(),
        store.replay_cache(),
        store.sessions(),
    )
}

/// The tag of a protocol message: an envelope's or a K_p channel message's.
fn message_tag(body: &[u8]) -> Result<Tag, Problem> {
    if let Ok(t) = envelope::peek_tag(body) {
        return Ok(t);
    }
    if let Ok((t, _)) = agora_cpo::session::peek(body) {
        return Ok(t);
    }
    if let Ok(t) = agora_core::wire::cose::peek_tag(body) {
        return Ok(t);
    }
    Err(Problem::bad_request("not a protocol message"))
}

fn unknown(tag: Tag) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "unknown-message").with_detail(format!(
        "this role does not take {}",
        tags::lookup(tag).unwrap_or("unregistered messages")
    ))
}

type Svc = (Arc<CpoService>, Arc<Core>);

/// The two protocol endpoints of the CPO service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `POST /v1/cpo/arbiter`.
    Arbiter,
    /// `POST /v1/cpo/server`.
    Server,
}

impl Role {
    /// The route of this role.
    pub fn path(self) -> &'static str {
        match self {
            Role::Arbiter => "/v1/cpo/arbiter",
            Role::Server => "/v1/cpo/server",
        }
    }
}

/// A role's answer to one protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply message (CBOR).
    pub body: Vec<u8>,
    /// Set when the exchange goes on: send it with the next message.
    pub exchange: Option<ExchangeId>,
}

fn go_on(body: Vec<u8>, exchange: ExchangeId) -> Reply {
    Reply {
        body,
        exchange: Some(exchange),
    }
}

fn done(body: Vec<u8>) -> Reply {
    Reply {
        body,
        exchange: None,
    }
}

fn need(exchange: Option<ExchangeId>) -> Result<ExchangeId, Problem> {
    exchange.ok_or_else(|| {
        Problem::bad_request(format!(
            "this message continues an exchange: send {EXCHANGE_HEADER}"
        ))
    })
}

impl CpoService {
    /// Handles one protocol message to `role`: the HTTP routes call this,
    /// and so does a client that hosts the roles in its own process. Blocks
    /// (storage, signatures).
    pub fn handle(
        &self,
        exchanges: &crate::Exchanges,
        role: Role,
        exchange: Option<ExchangeId>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Reply, Problem> {
        let tag = message_tag(body)?;
        match role {
            Role::Arbiter => self.handle_arbiter(exchanges, tag, exchange, body, now),
            Role::Server => self.handle_server(exchanges, tag, exchange, body, now),
        }
    }

    fn handle_arbiter(
        &self,
        exchanges: &crate::Exchanges,
        tag: Tag,
        exchange: Option<ExchangeId>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Reply, Problem> {
        let arbiter = self.arbiter()?;
        let rng = &mut os_rng();
        match tag {
            tags::CPO_ARBITER_REQUEST => {
                let (m1, pending) = arbiter.handle_request::<FirstCome>(rng, now, body)?;
                Ok(go_on(m1, exchanges.insert(pending)?))
            }
            tags::CPO_BID_ARBITER_REQUEST => {
                let (m1, pending) = arbiter.handle_request::<Bidding>(rng, now, body)?;
                Ok(go_on(m1, exchanges.insert(pending)?))
            }
            tags::CPO_ARBITER_RESPONSE => {
                self.accept::<FirstCome>(&arbiter, exchanges, exchange, body, now)
            }
            tags::CPO_BID_ARBITER_RESPONSE => {
                self.accept::<Bidding>(&arbiter, exchanges, exchange, body, now)
            }
            tags::CPO_BID_AWARD_REQUEST => {
                let role = self
                    .arbiter
                    .as_ref()
                    .ok_or_else(|| Problem::internal("arbiter vanished"))?;
                // The sender's key id is inside the envelope: try each
                // server this arbiter serves (one, usually).
                let mut last = agora_core::Error::NotAuthorised(
                    "award requests are taken from this arbiter's servers only".into(),
                );
                for server in &role.servers {
                    match arbiter.handle_award_request(rng, now, body, server) {
                        Ok((reply, _)) => return Ok(done(reply)),
                        Err(e) => last = e,
                    }
                }
                Err(last.into())
            }
            other => Err(unknown(other)),
        }
    }

    /// Step 3 -> 4 of protocol 1 (or 5): the exchange's pending approval
    /// takes Bob's answer; the acceptance is archived before the reply.
    fn accept<V: agora_cpo::Variant>(
        &self,
        arbiter: &Arbiter,
        exchanges: &crate::Exchanges,
        exchange: Option<ExchangeId>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Reply, Problem> {
        // An answer that does not authenticate leaves the approval pending.
        let issued = exchanges.step(&need(exchange)?, |p: PendingApproval<V>| {
            p.handle_response(arbiter, &mut os_rng(), now, body)
        })?;
        self.store
            .archive()
            .append("cpo/arbiter-acceptance", &issued.acceptance, now)?;
        Ok(done(issued.reply))
    }

    fn handle_server(
        &self,
        exchanges: &crate::Exchanges,
        tag: Tag,
        exchange: Option<ExchangeId>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Reply, Problem> {
        let server = self.server()?;
        let rng = &mut os_rng();
        match tag {
            tags::CPO_POST_REQUEST => {
                let (m1, pending) = server.handle_post_request(rng, now, body)?;
                Ok(go_on(m1, exchanges.insert(pending)?))
            }
            tags::CPO_POST_RESPONSE => {
                let posted = exchanges.step(&need(exchange)?, |p: PendingPost| {
                    p.handle_response(&server, rng, now, body)
                })?;
                self.store
                    .archive()
                    .append("cpo/posted", &posted.entry.posted, now)?;
                Ok(done(posted.reply))
            }
            tags::CPO_BROWSE_REQUEST => {
                let (m1, pending) = server.handle_browse_request(rng, now, body)?;
                Ok(go_on(m1, exchanges.insert(pending)?))
            }
            tags::CPO_BROWSE_RESPONSE => {
                let granted = exchanges.step(&need(exchange)?, |p: PendingBrowse| {
                    p.handle_response(&server, rng, now, body)
                })?;
                Ok(done(granted.reply))
            }
            tags::CPO_LISTING_REQUEST => Ok(done(server.handle_listing_request(rng, now, body)?)),
            tags::CPO_LISTINGS_REQUEST => Ok(done(server.handle_listings_request(rng, now, body)?)),
            tags::CPO_BIND_OFFER => Ok(done(server.handle_bind_offer(rng, now, body)?.reply)),
            tags::CPO_BID => Ok(done(
                server.handle_bid(&self.store.bids(), rng, now, body)?.reply,
            )),
            tags::CPO_BROWSE_END => {
                let outcome = server.handle_end_session(now, body)?;
                // A one-word answer; the seller needs nothing signed here.
                let mut e = agora_core::wire::Encoder::new();
                e.text(&format!("{outcome:?}"));
                Ok(done(e.as_bytes().to_vec()))
            }
            tags::CPO_BINDING_REQUEST => Ok(done(server.binding_for_buyer(rng, now, body)?)),
            tags::CPO_POSTED_REQUEST => Ok(done(server.posted_for_buyer(rng, now, body)?)),
            tags::CPO_BIDS_REQUEST => Ok(done(server.bids_for_seller(
                &self.store.bids(),
                rng,
                now,
                body,
            )?)),
            tags::CPO_SELLER_BINDING_QUERY => {
                Ok(done(server.handle_binding_query(rng, now, body)?))
            }
            other => Err(unknown(other)),
        }
    }
}

/// The server's messages handled on the async runtime rather than the
/// blocking pool: the two of a bind (see [`CpoService::handle_bind_step`]).
const BIND_STEPS: [Tag; 2] = [tags::CPO_LISTING_REQUEST, tags::CPO_BIND_OFFER];

impl CpoService {
    /// The two messages of a bind (protocol 4), run on the async runtime
    /// instead of the blocking pool: they read what is usually in this
    /// process's memory (the session and its K_p channel, the CPO's state;
    /// a miss is one indexed read of a row), sign at most once, and the bind
    /// awaits its group commit as a future, so no thread waits for the disk.
    /// Handing each of them to a blocking thread cost more than the step
    /// itself (docs/BENCHMARKS.md, "Binds on the runtime").
    async fn handle_bind_step(
        &self,
        tag: Tag,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Reply, Problem> {
        let server = self.server()?;
        match tag {
            tags::CPO_LISTING_REQUEST => Ok(done(server.handle_listing_request(
                &mut os_rng(),
                now,
                body,
            )?)),
            tags::CPO_BIND_OFFER => {
                let prepared = server.prepare_bind_offer(&mut os_rng(), now, body)?;
                let outcome = server
                    .board()
                    .try_bind_in_session_async(&prepared.cpo, &prepared.binding, &prepared.session)
                    .await?;
                Ok(done(server.finish_bind(prepared, outcome)?.reply))
            }
            other => Err(unknown(other)),
        }
    }
}

async fn protocol_route(
    svc: Arc<CpoService>,
    core: Arc<Core>,
    role: Role,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let exchange = match headers.get(EXCHANGE_HEADER) {
        None => None,
        Some(v) => {
            Some(parse_id(v.to_str().map_err(|_| {
                Problem::bad_request("the exchange id is not text")
            })?)?)
        }
    };
    let now = Timestamp::now_from_system_clock();
    let tag = message_tag(&body)?;
    let r = if role == Role::Server && BIND_STEPS.contains(&tag) {
        svc.handle_bind_step(tag, &body, now).await?
    } else {
        blocking(move || svc.handle(&core.exchanges, role, exchange, &body, now)).await?
    };
    Ok(cbor_reply(r.body, r.exchange))
}

async fn arbiter_route(
    State((svc, core)): State<Svc>,
    headers: HeaderMap,
    Cbor(body): Cbor,
) -> Result<Response, Problem> {
    protocol_route(svc, core, Role::Arbiter, headers, body).await
}

async fn server_route(
    State((svc, core)): State<Svc>,
    headers: HeaderMap,
    Cbor(body): Cbor,
) -> Result<Response, Problem> {
    protocol_route(svc, core, Role::Server, headers, body).await
}

/// The query of `GET /v1/cpo/board`.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    /// Words that must all occur in the goods or the terms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Lowest price, e.g. `10 EUR` or `10.00 EUR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_price: Option<String>,
    /// Highest price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price: Option<String>,
    /// Currency, e.g. `EUR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Active at this Unix time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_at: Option<u64>,
    /// `first-come` or `bidding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Paging: the last id of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Entries per page (at most [`MAX_PAGE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl BoardQuery {
    /// The board filter this query asks for; a clear error for bad input.
    pub fn filter(&self) -> Result<(ListFilter, Option<[u8; 32]>, usize), Problem> {
        let bad = |what: &str, v: &str| Problem::bad_request(format!("{what}: {v:?}"));
        let money =
            |s: &Option<String>, what: &str| -> Result<Option<agora_core::Money>, Problem> {
                match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                    None => Ok(None),
                    Some(v) => v.parse().map(Some).map_err(|_| bad(what, v)),
                }
            };
        let min = money(&self.min_price, "min_price")?;
        let max = money(&self.max_price, "max_price")?;
        let mut currency = match self
            .currency
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(c) => Some(Currency::new(c).map_err(|_| bad("currency", c))?),
        };
        for m in [min, max].into_iter().flatten() {
            match currency {
                Some(c) if c != m.currency => {
                    return Err(Problem::bad_request(
                        "the price bounds and the currency name different currencies",
                    ))
                }
                _ => currency = Some(m.currency),
            }
        }
        let mode = match self
            .mode
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "any")
        {
            None => None,
            Some(m) => Some(Mode::from_name(m).ok_or_else(|| bad("mode", m))?),
        };
        let after = match self.after.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(h) => Some(
                agora_core::KeyId::from_hex(h)
                    .map_err(|_| bad("after", h))?
                    .0,
            ),
        };
        let f = ListFilter {
            text: self.q.clone().filter(|q| !q.trim().is_empty()),
            min_price_cents: min.map(|m| m.cents),
            max_price_cents: max.map(|m| m.cents),
            currency,
            active_at: self.active_at.map(Timestamp),
            mode,
        };
        // Over-long search text is the caller's bad input here: 400.
        f.check().map_err(|e| Problem::bad_request(e.to_string()))?;
        Ok((f, after, self.limit.unwrap_or(50).clamp(1, MAX_PAGE)))
    }
}

/// The public fields of a board entry: never the buyer, never the bond.
pub fn public_json(e: &BoardEntry, now: Timestamp) -> serde_json::Value {
    let c = &e.ccpo;
    serde_json::json!({
        "id": hex::encode(c.id),
        "goods": c.goods,
        "price": c.price.to_string(),
        "price_cents": c.price.cents,
        "currency": c.price.currency.as_str(),
        "start": c.start.secs(),
        "end": c.end.secs(),
        "terms": c.terms,
        "mode": e.mode.as_str(),
        "arbiter": c.arbiter.to_string(),
        "posted_at": e.posted_at.secs(),
        "status": if c.end <= now { "expired" } else if c.start > now { "not yet active" } else { "open" },
    })
}

/// A CPO's public fields and status (`open`, `not yet active`, `expired`,
/// `bound`, `taken down`), or `None` if the board has no such CPO.
pub fn status_json<B: Board>(
    board: &B,
    id: &[u8; 32],
    now: Timestamp,
) -> Result<Option<serde_json::Value>, agora_core::Error> {
    let Some(e) = board.get(id)? else {
        return Ok(None);
    };
    let mut json = public_json(&e, now);
    if let Some(b) = board.binding(id)? {
        json["status"] = "bound".into();
        json["bound_at"] = b.bound_at.secs().into();
    }
    if let Some(t) = board.taken_down(id)? {
        json["status"] = "taken down".into();
        json["taken_down_at"] = t.secs().into();
    }
    Ok(Some(json))
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], Problem> {
    agora_core::KeyId::from_hex(s)
        .map(|k| k.0)
        .map_err(|_| Problem::bad_request(format!("{what} is not 64 hex digits")))
}

impl CpoService {
    /// The public listing for `q`, as JSON entries.
    pub fn board_json(
        &self,
        q: &BoardQuery,
        now: Timestamp,
    ) -> Result<Vec<serde_json::Value>, Problem> {
        let (filter, after, limit) = q.filter()?;
        let es = self.store.board().search(now, &filter, after, limit)?;
        Ok(es.iter().map(|e| public_json(e, now)).collect())
    }

    /// One CPO's public fields and status.
    pub fn cpo_json(&self, id: &[u8; 32], now: Timestamp) -> Result<serde_json::Value, Problem> {
        status_json(&self.store.board(), id, now)?
            .ok_or_else(|| Problem::not_found("no such CPO on this board"))
    }

    /// The signed notice for the bid whose BID_RECEIPT hashes to `receipt`.
    pub fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, Problem> {
        Ok(self.server()?.notice(&self.store.bids(), id, receipt)?)
    }

    /// The store this service keeps its state in.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// [`AwardSummary`] as the JSON of `POST /v1/cpo/awards/{id}`.
pub fn award_json(id: &[u8; 32], s: &AwardSummary) -> serde_json::Value {
    serde_json::json!({
        "id": hex::encode(id),
        "new": s.new,
        "winner": s.winner,
        "bids": s.bids,
        "award": hex::encode(&s.award),
    })
}

async fn board_route(
    State((svc, _)): State<Svc>,
    q: Result<Query<BoardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let entries = blocking(move || svc.board_json(&q, Timestamp::now_from_system_clock())).await?;
    Ok(Json(entries).into_response())
}

async fn cpo_route(
    State((svc, _)): State<Svc>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = hex32(&id, "the CPO id")?;
    let json = blocking(move || svc.cpo_json(&id, Timestamp::now_from_system_clock())).await?;
    Ok(Json(json).into_response())
}

async fn notice_route(
    State((svc, _)): State<Svc>,
    Path((id, receipt)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = hex32(&id, "the CPO id")?;
    let receipt = hex32(&receipt, "the receipt hash")?;
    let notice = blocking(move || svc.notice(&id, &receipt)).await?;
    Ok(([(header::CONTENT_TYPE, COSE)], notice).into_response())
}

async fn award_route(
    State((svc, _)): State<Svc>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = hex32(&id, "the CPO id")?;
    let s = blocking(move || svc.award(&id, Timestamp::now_from_system_clock())).await?;
    Ok(Json(award_json(&id, &s)).into_response())
}

impl Service for CpoService {
    fn name(&self) -> &'static str {
        "cpo"
    }

    fn router(self: Arc<Self>, core: Arc<Core>) -> Router {
        Router::new()
            .route("/v1/cpo/arbiter", post(arbiter_route))
            .route("/v1/cpo/server", post(server_route))
            .route("/v1/cpo/board", get(board_route))
            .route("/v1/cpo/board/{id}", get(cpo_route))
            .route("/v1/cpo/notices/{id}/{receipt}", get(notice_route))
            .route("/v1/cpo/awards/{id}", post(award_route))
            .with_state((self, core))
    }

    fn housekeeping(&self, now: Timestamp) -> Result<Option<String>, String> {
        self.reload_trust()?;
        let mut said = Vec::new();
        if let Some(s) = &self.server {
            let r = s.server.apply_revocations(now).map_err(|e| e.to_string())?;
            if r.cpos_taken_down + r.sessions_ended > 0 {
                said.push(format!(
                    "revocations: {} CPOs taken down, {} sessions ended",
                    r.cpos_taken_down, r.sessions_ended
                ));
            }
        }
        if self.server.is_some() && self.arbiter.is_some() {
            let board = self.store.board();
            for cpo in self
                .store
                .bids()
                .awaiting_award(AWARDS_PER_RUN)
                .map_err(|e| e.to_string())?
            {
                let closed = board
                    .get(&cpo)
                    .map_err(|e| e.to_string())?
                    .is_some_and(|e| e.ccpo.end <= now);
                if !closed {
                    continue;
                }
                match self.award(&cpo, now) {
                    Ok(a) => said.push(format!(
                        "awarded CPO {}: {} bids, winner {}",
                        hex::encode(cpo),
                        a.bids,
                        a.winner.as_deref().unwrap_or("none")
                    )),
                    Err(p) => said.push(format!(
                        "could not award CPO {}: {}",
                        hex::encode(cpo),
                        p.detail.unwrap_or_else(|| p.code.to_owned())
                    )),
                }
            }
        }
        Ok((!said.is_empty()).then(|| said.join("; ")))
    }

    fn describe(&self) -> serde_json::Value {
        let peer = |k: &Keys| {
            let p = k.peer();
            serde_json::json!({
                "key_id": p.id().to_string(),
                "ed25519": hex::encode(p.sign.to_bytes()),
                "x25519": hex::encode(p.enc.to_bytes()),
            })
        };
        serde_json::json!({
            "server": self.server.as_ref().map(|s| peer(&s.keys)),
            "arbiter": self.arbiter.as_ref().map(|a| peer(&a.keys)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::string::string_regex(".{0,300}").expect("regex"))
    }

    proptest! {
        /// Whatever a client puts in the query, the filter is built or
        /// refused with a 400; it never panics, and a page is 1..=MAX_PAGE.
        #[test]
        fn any_board_query_is_filtered_or_refused_cleanly(
            q in any_text(), min in any_text(), max in any_text(), cur in any_text(),
            mode in any_text(), after in any_text(), active in any::<Option<u64>>(),
            limit in any::<Option<usize>>(),
        ) {
            let query = BoardQuery {
                q, min_price: min, max_price: max, currency: cur, active_at: active,
                mode, after, limit,
            };
            match query.filter() {
                Ok((_, _, n)) => prop_assert!((1..=MAX_PAGE).contains(&n)),
                Err(p) => prop_assert_eq!(p.status, StatusCode::BAD_REQUEST),
            }
        }

        /// Any bytes to either role get an answer, never a panic, and
        /// unroutable bytes are a 400.
        #[test]
        fn any_body_gets_a_problem_not_a_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = message_tag(&body);
        }
    }

    #[test]
    fn prices_and_currency_must_agree() {
        let q = BoardQuery {
            min_price: Some("10 EUR".into()),
            currency: Some("USD".into()),
            ..Default::default()
        };
        assert_eq!(
            q.filter().expect_err("disagree").status,
            StatusCode::BAD_REQUEST
        );
        let q = BoardQuery {
            min_price: Some("10 EUR".into()),
            max_price: Some("20.50 EUR".into()),
            mode: Some("bidding".into()),
            limit: Some(100_000),
            ..Default::default()
        };
        let (f, after, limit) = q.filter().expect("valid");
        assert_eq!(f.min_price_cents, Some(1000));
        assert_eq!(f.max_price_cents, Some(2050));
        assert_eq!(f.mode, Some(Mode::Bidding));
        assert_eq!((after, limit), (None, MAX_PAGE));
    }
}
