//! Conditional Purchase Orders on the network: the arbiter and the CPO
//! server as a [`Service`].
//!
//! | route | body | what |
//! |---|---|---|
//! | `POST /v1/cpo/arbiter` | CBOR | protocols 1 and 5 (approval), 6 step 5 (award) |
//! | `POST /v1/cpo/server` | CBOR | protocols 2, 3, 4, 6; binding fetch and recovery; a buyer's lost posted CPO, a bidder's lost receipts |
//! | `GET /v1/cpo/board` | - | the public listing (JSON; filters, orders, a next-page cursor) |
//! | `GET /v1/cpo/board/{id}` | - | one CPO's public fields and status (JSON) |
//! | `GET /v1/cpo/notices/{id}/{receipt}` | - | a bidder's signed notice (COSE) |
//! | `POST /v1/cpo/awards/{id}` | - | award a closed bidding CPO now (JSON) |
//!
//! A protocol message is routed by its registered tag: the envelope's, or
//! the K_p channel's. The second message of a four-message protocol names
//! its pending step in the [`STEP_HEADER`](crate::STEP_HEADER). Housekeeping reloads the trust
//! (agencies, CRLs) and rebuilds the roles with it, applies revocations
//! (a revoked buyer's CPOs come down, a revoked seller's sessions end), and
//! hands the bids of every closed bidding CPO to the arbiter.

use crate::endpoint::{self, Answer, Endpoint, Inbound, Outbound, Reloading};
use crate::pending::StepId;
use crate::problem::path_of;
use crate::{blocking, Core, Problem, Service, COSE};
use agora_core::crypto::{os_rng, SigningKey, VerifyingKey, X25519Secret};
use agora_core::ports::Evidence;
use agora_core::wire::{tags, Tag};
use agora_core::{Currency, Timestamp};
use agora_cpo::arbiter::{Arbiter, PendingApproval};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::{Board, BoardEntry, ListFilter};
use agora_cpo::server::{PendingBrowse, PendingPost, PreparedPost, Server};
use agora_cpo::store::{CpoStore, CpoUnit, CpoWritten};
use agora_cpo::{Bidding, BondTrust, FirstCome, Keys, Mode, Peer};
use agora_store::{BoardCursor, BoardOrder, BoardViews, Stores};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::{Arc, RwLock};

/// Where the CPO roles' trust (bonding agencies and their newest CRLs)
/// comes from.
pub use crate::endpoint::TrustSource;

/// The header of `GET /v1/cpo/board` naming the next page's cursor (beside
/// its `Link: <...>; rel="next"`), when there is a next page.
pub const NEXT_CURSOR_HEADER: &str = "agora-next-cursor";

/// Longest `cursor` of `GET /v1/cpo/board` read (one this board gives is
/// under 100 bytes; openapi.json says 200).
pub const MAX_CURSOR_LEN: usize = 200;

/// Bidding CPOs awarded per housekeeping run, at most.
const AWARDS_PER_RUN: usize = 64;
/// Entries per page of the public listing, at most.
pub const MAX_PAGE: usize = 200;

/// What the node's CPO service hosts.
pub struct CpoSpec {
    /// The store (board, sessions, replay cache, bids, archive), on the
    /// backend chosen at start-up.
    pub store: Stores,
    /// The server's keys and the arbiters whose acceptances it takes.
    pub server: Option<(Keys, Vec<Peer>)>,
    /// The arbiter's keys, its policy and the servers whose award requests it
    /// takes.
    pub arbiter: Option<(Keys, ArbiterPolicy, Vec<Peer>)>,
    /// Agencies and CRLs.
    pub trust: Box<dyn TrustSource<BondTrust>>,
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
    server: Arc<Server>,
}

struct ArbiterRole {
    keys: Keys,
    policy: ArbiterPolicy,
    servers: Vec<Peer>,
    current: RwLock<Arc<Arbiter>>,
}

/// The CPO roles as a node service.
pub struct CpoService {
    /// The server's ports, and the arbiter's evidence archive.
    store: Arc<dyn CpoStore>,
    /// The board's reads for people (orders, bid counts, bound lately).
    views: Arc<dyn BoardViews>,
    /// The node's business counts, once a node hosts this service.
    business: std::sync::OnceLock<crate::Business>,
    server: Option<ServerRole>,
    arbiter: Option<ArbiterRole>,
    trust: Reloading<BondTrust>,
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
        let reloading = Reloading::new(spec.trust)?;
        let trust = (*reloading.current()).clone();
        let store = spec.store.cpo();
        let views = spec.store.board_views();
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
            views,
            business: std::sync::OnceLock::new(),
            server,
            arbiter,
            trust: reloading,
        })
    }

    fn server(&self) -> Result<Arc<Server>, Problem> {
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

    /// Counts business done with `count`, if a node hosts this service.
    fn count(&self, count: impl FnOnce(&crate::Business)) {
        if let Some(b) = self.business.get() {
            count(b);
        }
    }

    /// Reloads the trust: the server takes it in place (its issued
    /// listings stay valid), the stateless arbiter is rebuilt with it.
    pub fn reload_trust(&self) -> Result<(), String> {
        let trust = (*self.trust.reload()?).clone();
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
        let (m, pending) = server.request_award(&mut rng, now, cpo, &arbiter_role.keys.peer())?;
        let (reply, _) =
            arbiter.handle_award_request(&mut rng, now, &m, &server_role.keys.peer())?;
        // Blocking: an award runs on the blocking pool (its route and
        // housekeeping), and its unit (award, winner's binding, evidence)
        // commits before the notices exist.
        let awarded = pending.handle_award(&server, now, &reply)?;
        self.count(crate::Business::cpo_awarded);
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

fn make_server(
    store: &Arc<dyn CpoStore>,
    keys: &Keys,
    arbiters: &[Peer],
    trust: BondTrust,
) -> Server {
    Server::new(
        clone_keys(keys),
        trust,
        arbiters
            .iter()
            .map(|p| p.sign)
            .collect::<Vec<VerifyingKey>>(),
        store.clone(),
    )
}

/// The tag of a message on the K_p channel of a browse session (listing
/// requests, offers, bids, the end of a session).
fn kp_tag(body: &[u8]) -> Option<Tag> {
    agora_cpo::session::peek(body).ok().map(|(t, _)| t)
}

/// The CPO roles' protocol endpoints: the arbiter's or the server's.
#[derive(Debug)]
pub struct CpoEndpoint {
    svc: Arc<CpoService>,
    role: Role,
}

impl Endpoint for CpoEndpoint {
    fn own_framing_tag(&self, body: &[u8]) -> Option<Tag> {
        kp_tag(body)
    }

    fn handle(self: Arc<Self>, core: Arc<Core>, m: Inbound) -> Answer {
        Box::pin(async move {
            let now = m.now;
            // A bind step runs on the runtime only when its session is in
            // memory: one naming an unknown session (anyone can send one)
            // would read storage, so it goes to the blocking pool.
            let in_memory = self.role == Role::Server
                && BIND_STEPS.contains(&m.tag)
                && self.svc.server().is_ok_and(|s| s.has_in_memory(&m.body));
            let r = if in_memory {
                self.svc.handle_bind_step(m.tag, &m.body, now).await?
            } else {
                let svc = self.svc.clone();
                let role = self.role;
                let handled = blocking(move || svc.handle_message(&core.pending, role, &m)).await?;
                match handled {
                    Handled::Reply(r) => r,
                    // The commit is awaited here, on the runtime: no thread
                    // waits for the disk.
                    Handled::Unit(job) => {
                        let (unit, finish) = *job;
                        let written = self.svc.store.commit(unit, now).await?;
                        self.svc.finish(finish, written)?
                    }
                    Handled::Evidence(evidence, r) => {
                        self.svc.store.archive().record(evidence, now).await?;
                        r
                    }
                }
            };
            Ok(match r.step {
                Some(step) => Outbound::go_on(r.body, step),
                None => Outbound::done(r.body),
            })
        })
    }
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
    /// Set when the protocol goes on: send it with the next message.
    pub step: Option<StepId>,
}

fn go_on(body: Vec<u8>, step: StepId) -> Reply {
    Reply {
        body,
        step: Some(step),
    }
}

/// The reply to a message that opened a protocol run, and its step.
fn opened((body, step): (Vec<u8>, StepId)) -> Reply {
    go_on(body, step)
}

fn done(body: Vec<u8>) -> Reply {
    Reply { body, step: None }
}

impl CpoService {
    /// Handles one protocol message to `role`: the HTTP routes call this,
    /// and so does a client that hosts the roles in its own process. Blocks
    /// (storage, signatures).
    pub fn handle(
        &self,
        pending: &crate::PendingSteps,
        role: Role,
        step: Option<StepId>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Reply, Problem> {
        let tag = endpoint::message_tag(body, kp_tag)?;
        match self.handle_message(pending, role, &Inbound::local(tag, body, step, now))? {
            Handled::Reply(r) => Ok(r),
            Handled::Unit(job) => {
                let (unit, finish) = *job;
                let written = self.store.commit(unit, now).wait()?;
                self.finish(finish, written)
            }
            Handled::Evidence(evidence, r) => {
                self.store.archive().record(evidence, now).wait()?;
                Ok(r)
            }
        }
    }

    /// The end of a step whose unit committed with `written`.
    fn finish(&self, finish: Finish, written: CpoWritten) -> Result<Reply, Problem> {
        match finish {
            Finish::Post(p) => {
                let server = self.server()?;
                let posted = p.finish(&server, &mut os_rng(), written)?;
                // Finished only when the posting was new and committed.
                self.count(crate::Business::cpo_posted);
                Ok(done(posted.reply))
            }
        }
    }

    /// Handles one message whose tag was read, up to its unit of work: the
    /// checks, signatures and reads of the step (see [`Self::handle`]).
    fn handle_message(
        &self,
        pending: &crate::PendingSteps,
        role: Role,
        m: &Inbound,
    ) -> Result<Handled, Problem> {
        match role {
            Role::Arbiter => self.handle_arbiter(pending, m),
            Role::Server => self.handle_server(pending, m),
        }
    }

    fn handle_arbiter(&self, steps: &crate::PendingSteps, m: &Inbound) -> Result<Handled, Problem> {
        let arbiter = self.arbiter()?;
        let rng = &mut os_rng();
        let (body, now) = (&m.body[..], m.now);
        let reply = match m.tag {
            tags::CPO_ARBITER_REQUEST => opened(steps.open(m.opening("cpo/arbiter"), || {
                Ok(arbiter.handle_request::<FirstCome>(rng, now, body)?)
            })?),
            tags::CPO_BID_ARBITER_REQUEST => {
                opened(steps.open(m.opening("cpo/arbiter"), || {
                    Ok(arbiter.handle_request::<Bidding>(rng, now, body)?)
                })?)
            }
            tags::CPO_ARBITER_RESPONSE => return self.accept::<FirstCome>(&arbiter, steps, m),
            tags::CPO_BID_ARBITER_RESPONSE => return self.accept::<Bidding>(&arbiter, steps, m),
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
                let mut answered = None;
                for server in &role.servers {
                    match arbiter.handle_award_request(rng, now, body, server) {
                        Ok((reply, _)) => {
                            answered = Some(reply);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                done(answered.ok_or(last)?)
            }
            other => return Err(endpoint::unknown_message(other)),
        };
        Ok(Handled::Reply(reply))
    }

    /// Step 3 -> 4 of protocol 1 (or 5): the pending approval takes Bob's
    /// answer. Its unit of work is the acceptance archived
    /// (`cpo/arbiter-acceptance`), before the reply.
    fn accept<V: agora_cpo::Variant>(
        &self,
        arbiter: &Arbiter,
        steps: &crate::PendingSteps,
        m: &Inbound,
    ) -> Result<Handled, Problem> {
        let now = m.now;
        // An answer that does not authenticate leaves the approval pending.
        let issued = steps.step(&m.pending_step()?, |p: PendingApproval<V>| {
            p.handle_response(arbiter, &mut os_rng(), now, &m.body)
        })?;
        Ok(Handled::Evidence(
            vec![Evidence::new(ACCEPTANCE_EVIDENCE, issued.acceptance)],
            done(issued.reply),
        ))
    }

    fn handle_server(&self, steps: &crate::PendingSteps, m: &Inbound) -> Result<Handled, Problem> {
        let server = self.server()?;
        let rng = &mut os_rng();
        let (body, now) = (&m.body[..], m.now);
        let reply = match m.tag {
            tags::CPO_POST_REQUEST => opened(steps.open(m.opening("cpo/server"), || {
                Ok(server.handle_post_request(rng, now, body)?)
            })?),
            tags::CPO_POST_RESPONSE => {
                let (unit, prepared) = steps.step(&m.pending_step()?, |p: PendingPost| {
                    p.prepare_response(&server, now, body)
                })?;
                return Ok(Handled::Unit(Box::new((unit, Finish::Post(prepared)))));
            }
            tags::CPO_BROWSE_REQUEST => opened(steps.open(m.opening("cpo/server"), || {
                Ok(server.handle_browse_request(rng, now, body)?)
            })?),
            tags::CPO_BROWSE_RESPONSE => {
                let granted = steps.step(&m.pending_step()?, |p: PendingBrowse| {
                    p.handle_response(&server, rng, now, body)
                })?;
                done(granted.reply)
            }
            tags::CPO_LISTING_REQUEST => done(server.handle_listing_request(rng, now, body)?),
            tags::CPO_LISTINGS_REQUEST => done(server.handle_listings_request(rng, now, body)?),
            tags::CPO_BIND_OFFER => {
                let bound = server.handle_bind_offer(rng, now, body)?;
                self.count(crate::Business::cpo_bound);
                done(bound.reply)
            }
            tags::CPO_BID => done(server.handle_bid(rng, now, body)?.reply),
            tags::CPO_BROWSE_END => {
                let outcome = server.handle_end_session(now, body)?;
                // A one-word answer; the seller needs nothing signed here.
                let mut e = agora_core::wire::Encoder::new();
                e.text(outcome.code());
                done(e.as_bytes().to_vec())
            }
            tags::CPO_BINDING_REQUEST => done(server.binding_for_buyer(rng, now, body)?),
            tags::CPO_POSTED_REQUEST => done(server.posted_for_buyer(rng, now, body)?),
            tags::CPO_BIDS_REQUEST => done(server.bids_for_seller(rng, now, body)?),
            tags::CPO_SELLER_BINDING_QUERY => done(server.handle_binding_query(rng, now, body)?),
            other => return Err(endpoint::unknown_message(other)),
        };
        Ok(Handled::Reply(reply))
    }
}

/// The evidence kind of an arbiter's acceptance in its archive.
pub const ACCEPTANCE_EVIDENCE: &str = "cpo/arbiter-acceptance";

/// What a step asks of its driver once its checks and signatures are done
/// (on the blocking pool): the reply, or first a unit of work to commit.
enum Handled {
    /// Nothing (more) to write: the reply.
    Reply(Reply),
    /// A unit of work (a write and its evidence) to commit, then the step
    /// to finish with what it wrote.
    Unit(Box<(CpoUnit, Finish)>),
    /// Evidence to archive (the step's only write), then the reply.
    Evidence(Vec<Evidence>, Reply),
}

/// A step waiting for its unit to commit.
enum Finish {
    /// Protocol 2, step 4: the posted CPO's reply to Bob.
    Post(PreparedPost),
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
                let (unit, prepared) = server.prepare_bind_offer(&mut os_rng(), now, body)?;
                let written = server.store().commit(unit, now).await?;
                let bound = server.finish_bind(prepared, written)?;
                // Finished only when this offer's binding committed.
                self.count(crate::Business::cpo_bound);
                Ok(done(bound.reply))
            }
            other => Err(endpoint::unknown_message(other)),
        }
    }
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
    /// Paging in the id order: the last id of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Entries per page (at most [`MAX_PAGE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The order: `id` (the default), `newest`, `ending`, `price` or
    /// `price-desc` ([`BoardOrder::name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Paging in any order: the cursor the previous page ended with
    /// ([`BoardPage::next`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A page of the board: its entries (public JSON, with the bid count of
/// each bidding CPO) and, if more follow, the cursor of the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardPage {
    /// The entries.
    pub entries: Vec<serde_json::Value>,
    /// Where the next page starts (the `cursor` parameter), if there is one.
    pub next: Option<String>,
}

/// A cursor as the board's JSON and pages carry it: the order's name, the
/// last entry's sort key and its CPO id, e.g. `newest.42.<64 hex digits>`.
pub fn cursor_text(order: BoardOrder, c: &BoardCursor) -> String {
    format!("{}.{}.{}", order.name(), c.key, hex::encode(c.id))
}

/// Reads a cursor of [`cursor_text`] for `order`; a clear `400` otherwise.
pub fn parse_cursor(order: BoardOrder, text: &str) -> Result<BoardCursor, Problem> {
    let bad = |why: &str| Problem::bad_request(format!("cursor: {why}"));
    let mut parts = text.trim().splitn(3, '.');
    let (Some(name), Some(key), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not a cursor this board gave"));
    };
    if name != order.name() {
        return Err(bad("it pages another order; ask for the first page again"));
    }
    let key = key
        .parse::<i64>()
        .map_err(|_| bad("not a cursor this board gave"))?;
    let id = agora_core::KeyId::from_hex(id)
        .map_err(|_| bad("not a cursor this board gave"))?
        .0;
    Ok(BoardCursor { key, id })
}

impl BoardQuery {
    /// The order this query asks for and where its page starts; a clear
    /// error for bad input (an unknown order, a cursor of another order,
    /// `after` with an order other than the id order).
    pub fn order_and_start(&self) -> Result<(BoardOrder, Option<BoardCursor>), Problem> {
        let order = match self
            .sort
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => BoardOrder::Id,
            Some(name) => BoardOrder::from_name(name).ok_or_else(|| {
                Problem::bad_request(format!(
                    "sort: {name:?} is not an order (id, newest, ending, price, price-desc)"
                ))
            })?,
        };
        if self
            .cursor
            .as_ref()
            .is_some_and(|c| c.len() > MAX_CURSOR_LEN)
        {
            return Err(Problem::bad_request(format!(
                "cursor: longer than {MAX_CURSOR_LEN} bytes, so not one this board gave"
            )));
        }
        let cursor = self.cursor.as_deref().filter(|c| !c.trim().is_empty());
        let after = self.after.as_deref().filter(|a| !a.is_empty());
        match (cursor, after) {
            (Some(c), _) => Ok((order, Some(parse_cursor(order, c)?))),
            (None, Some(_)) if order != BoardOrder::Id => Err(Problem::bad_request(
                "after pages the id order only: page other orders with cursor",
            )),
            (None, _) => {
                let (_, after, _) = self.filter()?;
                Ok((order, after.map(|id| BoardCursor { key: 0, id })))
            }
        }
    }

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
pub fn status_json(
    board: &dyn Board,
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
    /// A page of the public listing for `q`: its entries in the order asked
    /// for, each bidding one with its count of bids (`bids`), and the
    /// cursor of the next page if there is one.
    pub fn board_page(&self, q: &BoardQuery, now: Timestamp) -> Result<BoardPage, Problem> {
        let (filter, _, limit) = q.filter()?;
        let (order, start) = q.order_and_start()?;
        // One more than the page: whether a next page exists.
        let mut found = self
            .views
            .list(now, &filter, order, start.as_ref(), limit + 1)?;
        let more = found.len() > limit;
        found.truncate(limit);
        let next = found
            .last()
            .filter(|_| more)
            .map(|l| cursor_text(order, &l.cursor));
        let entries: Vec<_> = found.iter().map(|l| &l.entry).collect();
        Ok(BoardPage {
            entries: self.with_bids(&entries, now)?,
            next,
        })
    }

    /// The public JSON of `entries`, each bidding one with its bid count.
    fn with_bids(
        &self,
        entries: &[&BoardEntry],
        now: Timestamp,
    ) -> Result<Vec<serde_json::Value>, Problem> {
        let bidding: Vec<[u8; 32]> = entries
            .iter()
            .filter(|e| e.mode == Mode::Bidding)
            .map(|e| e.ccpo.id)
            .collect();
        let mut counts = self.views.bid_counts(&bidding)?.into_iter();
        Ok(entries
            .iter()
            .map(|e| {
                let mut json = public_json(e, now);
                if e.mode == Mode::Bidding {
                    json["bids"] = counts.next().unwrap_or(0).into();
                }
                json
            })
            .collect())
    }

    /// The CPOs bound or awarded most recently, the latest first (at most
    /// `limit`): their public fields, `bound` or `awarded`, and when.
    pub fn recently_bound_json(
        &self,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<serde_json::Value>, Problem> {
        Ok(self
            .views
            .recently_bound(limit)?
            .iter()
            .map(|c| {
                let mut json = public_json(&c.entry, now);
                json["status"] = if c.awarded() { "awarded" } else { "bound" }.into();
                json["bound_at"] = c.bound_at.secs().into();
                json
            })
            .collect())
    }

    /// One CPO's public fields and status.
    pub fn cpo_json(&self, id: &[u8; 32], now: Timestamp) -> Result<serde_json::Value, Problem> {
        let mut json = status_json(self.store.board(), id, now)?
            .ok_or_else(|| Problem::not_found("no such CPO on this board"))?;
        if json["mode"] == Mode::Bidding.as_str() {
            json["bids"] = self
                .views
                .bid_counts(&[*id])?
                .first()
                .copied()
                .unwrap_or(0)
                .into();
        }
        Ok(json)
    }

    /// The signed notice for the bid whose BID_RECEIPT hashes to `receipt`:
    /// `404` if the board has no such CPO, `409` if it is not awarded yet or
    /// its award considered no such bid.
    pub fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, Problem> {
        let server = self.server()?;
        if self.store.board().get(id)?.is_none() {
            return Err(Problem::not_found("no such CPO on this board"));
        }
        Ok(server.notice(id, receipt)?)
    }

    /// The store this service keeps its state in.
    pub fn store(&self) -> &Arc<dyn CpoStore> {
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
    let asked = q.clone();
    let page = blocking(move || svc.board_page(&q, Timestamp::now_from_system_clock())).await?;
    let mut r = Json(page.entries).into_response();
    if let Some(next) = page.next {
        // The next page: the same query, from the cursor (RFC 8288 `Link`,
        // and the cursor alone for clients that build their own query).
        let link = BoardQuery {
            after: None,
            cursor: Some(next.clone()),
            ..asked
        };
        let qs = serde_urlencoded::to_string(&link).unwrap_or_default();
        if let Ok(v) = header::HeaderValue::from_str(&format!("</v1/cpo/board?{qs}>; rel=\"next\""))
        {
            r.headers_mut().insert(header::LINK, v);
        }
        if let Ok(v) = header::HeaderValue::from_str(&next) {
            r.headers_mut().insert(NEXT_CURSOR_HEADER, v);
        }
    }
    Ok(r)
}

async fn cpo_route(
    State((svc, _)): State<Svc>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let id = hex32(&path_of(id)?, "the CPO id")?;
    let json = blocking(move || svc.cpo_json(&id, Timestamp::now_from_system_clock())).await?;
    Ok(Json(json).into_response())
}

async fn notice_route(
    State((svc, _)): State<Svc>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let (id, receipt) = path_of(path)?;
    let id = hex32(&id, "the CPO id")?;
    let receipt = hex32(&receipt, "the receipt hash")?;
    let notice = blocking(move || svc.notice(&id, &receipt)).await?;
    Ok(([(header::CONTENT_TYPE, COSE)], notice).into_response())
}

async fn award_route(
    State((svc, _)): State<Svc>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let id = hex32(&path_of(id)?, "the CPO id")?;
    let s = blocking(move || svc.award(&id, Timestamp::now_from_system_clock())).await?;
    Ok(Json(award_json(&id, &s)).into_response())
}

impl Service for CpoService {
    fn name(&self) -> &'static str {
        "cpo"
    }

    fn router(self: Arc<Self>, core: Arc<Core>) -> Router {
        let _ = self.business.set(core.metrics.business.clone());
        let endpoint = |role| {
            endpoint::route(
                Arc::new(CpoEndpoint {
                    svc: self.clone(),
                    role,
                }),
                core.clone(),
            )
        };
        Router::new()
            .route("/v1/cpo/arbiter", endpoint(Role::Arbiter))
            .route("/v1/cpo/server", endpoint(Role::Server))
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
            self.count(|b| b.cpos_taken_down(r.cpos_taken_down as u64));
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
    use axum::http::StatusCode;
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
            limit in any::<Option<usize>>(), sort in any_text(), cursor in any_text(),
        ) {
            let query = BoardQuery {
                q, min_price: min, max_price: max, currency: cur, active_at: active,
                mode, after, limit, sort, cursor,
            };
            match query.filter() {
                Ok((_, _, n)) => prop_assert!((1..=MAX_PAGE).contains(&n)),
                Err(p) => prop_assert_eq!(p.status, StatusCode::BAD_REQUEST),
            }
            if let Err(p) = query.order_and_start() {
                prop_assert_eq!(p.status, StatusCode::BAD_REQUEST);
            }
        }
    }

    #[test]
    fn cursors_name_their_order() {
        let c = BoardCursor {
            key: -3,
            id: [0xab; 32],
        };
        for order in BoardOrder::ALL {
            let text = cursor_text(order, &c);
            assert_eq!(parse_cursor(order, &text).expect("its own"), c);
            let other = if order == BoardOrder::Id {
                BoardOrder::Newest
            } else {
                BoardOrder::Id
            };
            assert_eq!(
                parse_cursor(other, &text)
                    .expect_err("another order's")
                    .status,
                StatusCode::BAD_REQUEST
            );
        }
        for bad in ["", "newest", "newest.x.00", "newest.1.zz", "newest.1"] {
            assert!(parse_cursor(BoardOrder::Newest, bad).is_err(), "{bad:?}");
        }
        // Blank is the first page, unless longer than a cursor may be.
        let blank = |n: usize| BoardQuery {
            cursor: Some(" ".repeat(n)),
            ..Default::default()
        };
        assert_eq!(blank(3).order_and_start().expect("blank").1, None);
        assert!(blank(MAX_CURSOR_LEN + 1).order_and_start().is_err());
        // `after` pages the id order only.
        let q = BoardQuery {
            sort: Some("price".into()),
            after: Some("ab".repeat(32)),
            ..Default::default()
        };
        assert!(q.order_and_start().is_err());
        let q = BoardQuery {
            after: Some("ab".repeat(32)),
            ..Default::default()
        };
        assert_eq!(
            q.order_and_start().expect("the id order").1,
            Some(BoardCursor {
                key: 0,
                id: [0xab; 32]
            })
        );
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
