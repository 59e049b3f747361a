//! The actors: each wraps an agora-cpo role, keeps its current step value,
//! dispatches incoming bytes by tag, drops (and counts) whatever fails its
//! checks, and restarts its protocol run with fresh randomness when it sees
//! no progress for a while (a bounded number of times).

use crate::net::Addr;
use crate::{now_of, EPOCH};
use agora_client::cpo::flow::{
    AnyApproval, AskBinding, Bid, Bind, Browse, Conversation, FetchBids, FetchPosted, Next,
    Outgoing, Posting, To,
};
use agora_core::crypto::VerifyingKey;
use agora_core::wire::{envelope, tags};
use agora_core::KeyId;
use agora_core::Money;
use agora_cpo::arbiter::{Arbiter, PendingApproval};
use agora_cpo::bidding::{check_notice, HeldReceipt, Outcome, PendingAward};
use agora_cpo::buyer::{Acceptance, PostReceipt};
use agora_cpo::seller::{BoundReceipt, SellerSession};
use agora_cpo::server::{PendingBrowse, PendingPost, Server};
use agora_cpo::{Bidding, Ccpo, FirstCome, Keys, Mode, Peer};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;

/// Transport frame kinds (first byte of every simulated message).
pub(crate) const PROTO: u8 = 0;
/// "List CPO X for session S" (mode byte: 0 first-come, 1 bidding).
pub(crate) const LIST: u8 = 1;
/// A signed notice (protocol 6, step 5c).
pub(crate) const NOTICE: u8 = 2;
/// "Send me the notice for receipt R of CPO X".
pub(crate) const NOTICE_REQUEST: u8 = 3;

/// The server's storage: in-memory ports.
pub type SimServer = Server;

/// How patient an actor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// No progress for this long: restart the protocol run.
    pub timeout_ms: u64,
    /// Most runs of one phase before giving up.
    pub max_attempts: u32,
}

/// What one actor's handling produced.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) now_ms: u64,
    pub(crate) sends: Vec<(Addr, Vec<u8>)>,
}

impl Out {
    pub(crate) fn new(now_ms: u64) -> Out {
        Out {
            now_ms,
            sends: Vec::new(),
        }
    }

    fn now(&self) -> agora_core::Timestamp {
        now_of(self.now_ms)
    }

    fn frame(&mut self, to: Addr, kind: u8, body: &[u8]) {
        let mut b = Vec::with_capacity(body.len() + 1);
        b.push(kind);
        b.extend_from_slice(body);
        self.sends.push((to, b));
    }

    fn proto(&mut self, to: Addr, m: &[u8]) {
        self.frame(to, PROTO, m);
    }

    /// A client conversation's message, to the role it names.
    fn send(&mut self, m: &Outgoing) {
        let to = match m.to {
            To::Arbiter => Addr::Arbiter,
            To::Server => Addr::Server,
        };
        self.proto(to, &m.body);
    }
}

/// The tag of a protocol message (envelope or channel frame alike).
fn split(bytes: &[u8]) -> Option<(u8, &[u8])> {
    bytes.split_first().map(|(k, b)| (*k, b))
}

fn tag_of(body: &[u8]) -> Option<agora_core::wire::Tag> {
    envelope::peek_tag(body).ok()
}

// ------------------------------------------------------------------ buyer

#[derive(Debug)]
enum BuyerStep {
    Idle,
    /// Protocol 1 or 5 (the client's conversation).
    Approving(AnyApproval),
    /// Protocol 2.
    Posting(Posting),
    /// His answer went out and M_3 never came: he asked for his posted CPO
    /// with a signed request (the server refuses to post it again).
    FetchPosted,
    Stalled,
    Done,
    GaveUp,
}

/// Bob: protocol 1 (or 5), then protocol 2, for one CPO.
#[derive(Debug)]
pub struct BuyerActor {
    pub(crate) keys: Keys,
    rng: ChaCha20Rng,
    arbiter: Peer,
    server: Peer,
    /// His CPO.
    pub ccpo: Ccpo,
    /// First-come or bidding.
    pub mode: Mode,
    step: BuyerStep,
    /// The ARBITER_ACCEPTANCE, once he has it.
    pub acceptance: Option<Acceptance>,
    /// The server's receipt, once he has it.
    pub receipt: Option<PostReceipt>,
    attempts: u32,
    pub(crate) deadline: Option<u64>,
    limits: Limits,
    /// Messages he dropped (failed checks or unexpected).
    pub rejected: u64,
    /// Runs restarted after a timeout.
    pub restarts: u64,
    /// Whether he asks for his posted CPO when M_3 does not come.
    recovery: bool,
    /// Whether his receipt came through that request.
    pub recovered_posted: bool,
    /// His latest request for his posted CPO: a late answer is still taken
    /// (it may come after he posted again).
    posted_request: Option<FetchPosted>,
    /// Whether he has answered a post challenge: from then on the CPO may
    /// be posted without his knowing.
    answered_post: bool,
}

impl BuyerActor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        keys: Keys,
        rng: ChaCha20Rng,
        arbiter: Peer,
        server: Peer,
        ccpo: Ccpo,
        mode: Mode,
        limits: Limits,
        start_ms: u64,
        recovery: bool,
    ) -> BuyerActor {
        BuyerActor {
            keys,
            rng,
            arbiter,
            server,
            ccpo,
            mode,
            step: BuyerStep::Idle,
            acceptance: None,
            receipt: None,
            attempts: 0,
            deadline: Some(start_ms),
            limits,
            rejected: 0,
            restarts: 0,
            recovery,
            recovered_posted: false,
            posted_request: None,
            answered_post: false,
        }
    }

    /// Starts (or restarts) the current phase with fresh randomness.
    pub(crate) fn on_timer(&mut self, out: &mut Out) {
        if matches!(self.step, BuyerStep::Done | BuyerStep::GaveUp) {
            self.deadline = None;
            return;
        }
        if self.attempts >= self.limits.max_attempts {
            self.step = BuyerStep::GaveUp;
            self.deadline = None;
            return;
        }
        if self.attempts > 0 {
            self.restarts += 1;
        }
        self.attempts += 1;
        self.deadline = Some(out.now_ms + self.limits.timeout_ms);
        let (k, rng) = (&self.keys, &mut self.rng);
        // His answer of protocol 2 went out and M_3 did not come: the CPO
        // may be posted, and posting again would be refused. He asks for it,
        // and posts again the next time (it may not be on the board), and so
        // on in turn.
        if self.recovery && self.answered_post && !matches!(self.step, BuyerStep::FetchPosted) {
            let (m, f) = FetchPosted::start(k, rng, out.now(), self.ccpo.id, &self.server);
            out.send(&m);
            self.posted_request = Some(f);
            self.step = BuyerStep::FetchPosted;
            return;
        }
        self.step = match &self.acceptance {
            None => {
                match AnyApproval::start(self.mode, k, rng, self.ccpo.clone(), "", &self.arbiter) {
                    Ok((m, c)) => {
                        out.send(&m);
                        BuyerStep::Approving(c)
                    }
                    Err(_) => BuyerStep::Stalled,
                }
            }
            Some(acc) => match Posting::start(k, rng, acc, &self.server) {
                Ok((m, c)) => {
                    out.send(&m);
                    BuyerStep::Posting(c)
                }
                Err(_) => BuyerStep::Stalled,
            },
        };
    }

    pub(crate) fn on_message(&mut self, out: &mut Out, _from: Addr, bytes: &[u8]) {
        let Some((PROTO, m)) = split(bytes) else {
            self.rejected += 1;
            return;
        };
        let Some(tag) = tag_of(m) else {
            self.rejected += 1;
            return;
        };
        let now = out.now();
        let progress = out.now_ms + self.limits.timeout_ms;
        let (k, rng) = (&self.keys, &mut self.rng);
        let step = std::mem::replace(&mut self.step, BuyerStep::Stalled);
        let mut ok = true;
        let mut next_phase = false;
        self.step = match step {
            BuyerStep::Approving(c) if c.expects() == Some(tag) => {
                match c.on_reply(k, rng, now, m) {
                    Ok(Next::Send(m2, c)) => {
                        out.send(&m2);
                        BuyerStep::Approving(c)
                    }
                    Ok(Next::Done(a)) => {
                        self.acceptance = Some(a);
                        next_phase = true;
                        BuyerStep::Idle
                    }
                    Err(_) => {
                        ok = false;
                        BuyerStep::Stalled
                    }
                }
            }
            BuyerStep::Posting(c) if c.expects() == Some(tag) => match c.on_reply(k, rng, now, m) {
                Ok(Next::Send(m2, c)) => {
                    out.send(&m2);
                    self.answered_post = true;
                    BuyerStep::Posting(c)
                }
                Ok(Next::Done(r)) => {
                    self.receipt = Some(r);
                    self.deadline = None;
                    return;
                }
                Err(_) => {
                    ok = false;
                    BuyerStep::Stalled
                }
            },
            // The answer to his latest request for his posted CPO, whatever
            // he has done since.
            other if tag == tags::CPO_POSTED_REPLY && !matches!(other, BuyerStep::Done) => {
                let opened = self
                    .posted_request
                    .clone()
                    .map(|f| f.on_reply(k, rng, now, m));
                match opened {
                    Some(Ok(Next::Done(r))) if r.cpo.ccpo == self.ccpo => {
                        self.receipt = Some(r);
                        self.recovered_posted = true;
                        self.posted_request = None;
                        self.step = BuyerStep::Done;
                        self.deadline = None;
                        return;
                    }
                    _ => {
                        ok = false;
                        other
                    }
                }
            }
            other => {
                ok = false;
                other
            }
        };
        if !ok {
            self.rejected += 1;
            return;
        }
        self.deadline = Some(progress);
        if next_phase {
            self.attempts = 0;
            self.on_timer(out);
        }
        if self.receipt.is_some() {
            self.step = BuyerStep::Done;
        }
    }
}

// ---------------------------------------------------------------- arbiter

/// Alice: protocols 1 and 5, and the award of protocol 6. Runs in progress
/// are kept per peer (a new request from a peer replaces its old run).
#[derive(Debug)]
pub struct ArbiterActor {
    pub(crate) arbiter: Arbiter,
    rng: ChaCha20Rng,
    server: Peer,
    pending_fc: BTreeMap<Addr, PendingApproval<FirstCome>>,
    pending_bid: BTreeMap<Addr, PendingApproval<Bidding>>,
    /// Messages she dropped.
    pub rejected: u64,
}

impl ArbiterActor {
    pub(crate) fn new(arbiter: Arbiter, rng: ChaCha20Rng, server: Peer) -> ArbiterActor {
        ArbiterActor {
            arbiter,
            rng,
            server,
            pending_fc: BTreeMap::new(),
            pending_bid: BTreeMap::new(),
            rejected: 0,
        }
    }

    pub(crate) fn on_message(&mut self, out: &mut Out, from: Addr, bytes: &[u8]) {
        if self.handle(out, from, bytes).is_none() {
            self.rejected += 1;
        }
    }

    fn handle(&mut self, out: &mut Out, from: Addr, bytes: &[u8]) -> Option<()> {
        let (PROTO, m) = split(bytes)? else {
            return None;
        };
        let tag = tag_of(m)?;
        let now = out.now();
        let (a, rng) = (&self.arbiter, &mut self.rng);
        if tag == tags::CPO_ARBITER_REQUEST {
            let (m1, p) = a.handle_request::<FirstCome>(rng, now, m).ok()?;
            self.pending_fc.insert(from, p);
            out.proto(from, &m1);
        } else if tag == tags::CPO_BID_ARBITER_REQUEST {
            let (m1, p) = a.handle_request::<Bidding>(rng, now, m).ok()?;
            self.pending_bid.insert(from, p);
            out.proto(from, &m1);
        } else if tag == tags::CPO_ARBITER_RESPONSE {
            let p = self.pending_fc.remove(&from)?;
            out.proto(from, &p.handle_response(a, rng, now, m).ok()?.reply);
        } else if tag == tags::CPO_BID_ARBITER_RESPONSE {
            let p = self.pending_bid.remove(&from)?;
            out.proto(from, &p.handle_response(a, rng, now, m).ok()?.reply);
        } else if tag == tags::CPO_BID_AWARD_REQUEST {
            let (reply, _) = a.handle_award_request(rng, now, m, &self.server).ok()?;
            out.proto(from, &reply);
        } else {
            return None;
        }
        Some(())
    }
}

// ----------------------------------------------------------------- server

/// The award of one bidding CPO, driven by the server's clock.
#[derive(Debug)]
pub(crate) struct AwardJob {
    pub(crate) cpo: [u8; 32],
    pending: Option<PendingAward>,
    attempts: u32,
    pub(crate) done: bool,
}

/// The CPO server on in-memory ports (bids of protocol 6 included).
#[derive(Debug)]
pub struct ServerActor {
    pub(crate) server: SimServer,
    rng: ChaCha20Rng,
    arbiter: Peer,
    pending_post: BTreeMap<Addr, PendingPost>,
    pending_browse: BTreeMap<Addr, PendingBrowse>,
    /// Where each seller (by bond key id) was last heard from.
    addr_of: Vec<(KeyId, Addr)>,
    pub(crate) award: Option<AwardJob>,
    pub(crate) deadline: Option<u64>,
    limits: Limits,
    recovery: bool,
    /// Messages it dropped.
    pub rejected: u64,
}

impl ServerActor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        server: SimServer,
        rng: ChaCha20Rng,
        arbiter: Peer,
        award: Option<([u8; 32], u64)>,
        limits: Limits,
        recovery: bool,
    ) -> ServerActor {
        ServerActor {
            server,
            rng,
            arbiter,
            pending_post: BTreeMap::new(),
            pending_browse: BTreeMap::new(),
            addr_of: Vec::new(),
            deadline: award.map(|(_, at)| at),
            award: award.map(|(cpo, _)| AwardJob {
                cpo,
                pending: None,
                attempts: 0,
                done: false,
            }),
            limits,
            recovery,
            rejected: 0,
        }
    }

    /// Bidding closed: ask the arbiter for the award (again, if no award
    /// came back in time).
    pub(crate) fn on_timer(&mut self, out: &mut Out) {
        self.deadline = None;
        let Some(job) = &mut self.award else { return };
        if job.done || job.attempts >= self.limits.max_attempts {
            return;
        }
        job.attempts += 1;
        self.deadline = Some(out.now_ms + self.limits.timeout_ms);
        match self
            .server
            .request_award(&mut self.rng, out.now(), &job.cpo, &self.arbiter)
        {
            Ok((m, p)) => {
                job.pending = Some(p);
                out.proto(Addr::Arbiter, &m);
            }
            Err(_) => job.pending = None,
        }
    }

    pub(crate) fn on_message(&mut self, out: &mut Out, from: Addr, bytes: &[u8]) {
        if self.handle(out, from, bytes).is_none() {
            self.rejected += 1;
        }
    }

    fn handle(&mut self, out: &mut Out, from: Addr, bytes: &[u8]) -> Option<()> {
        let (kind, body) = split(bytes)?;
        let now = out.now();
        let (srv, rng) = (&self.server, &mut self.rng);
        match kind {
            LIST => {
                let (session, rest) = body.split_first_chunk::<32>()?;
                let (cpo, rest) = rest.split_first_chunk::<32>()?;
                let m = match rest {
                    [0] => srv.listing(rng, now, session, cpo).ok()?,
                    [1] => srv.bid_listing(rng, now, session, cpo).ok()?,
                    _ => return None,
                };
                out.proto(from, &m);
            }
            NOTICE_REQUEST => {
                let (cpo, rest) = body.split_first_chunk::<32>()?;
                let hash: &[u8; 32] = rest.try_into().ok()?;
                let n = srv.notice(cpo, hash).ok()?;
                out.frame(from, NOTICE, &n);
            }
            PROTO => {
                // Envelopes, and the buyer's signed requests (COSE_Sign1).
                let tag = tag_of(body).or_else(|| agora_core::wire::cose::peek_tag(body).ok())?;
                if tag == tags::CPO_POST_REQUEST {
                    let (m1, p) = srv.handle_post_request(rng, now, body).ok()?;
                    self.pending_post.insert(from, p);
                    out.proto(from, &m1);
                } else if tag == tags::CPO_POST_RESPONSE {
                    let p = self.pending_post.remove(&from)?;
                    out.proto(from, &p.handle_response(srv, rng, now, body).ok()?.reply);
                } else if tag == tags::CPO_BROWSE_REQUEST {
                    let (m1, p) = srv.handle_browse_request(rng, now, body).ok()?;
                    self.pending_browse.insert(from, p);
                    out.proto(from, &m1);
                } else if tag == tags::CPO_BROWSE_RESPONSE {
                    let p = self.pending_browse.remove(&from)?;
                    let g = p.handle_response(srv, rng, now, body).ok()?;
                    if let Ok(Some(s)) = srv.sessions().get(&g.session) {
                        self.addr_of.retain(|(k, _)| *k != s.seller);
                        self.addr_of.push((s.seller, from));
                    }
                    out.proto(from, &g.reply);
                } else if tag == tags::CPO_BIND_OFFER {
                    out.proto(from, &srv.handle_bind_offer(rng, now, body).ok()?.reply);
                } else if tag == tags::CPO_BID {
                    out.proto(from, &srv.handle_bid(rng, now, body).ok()?.reply);
                } else if tag == tags::CPO_POSTED_REQUEST && self.recovery {
                    out.proto(from, &srv.posted_for_buyer(rng, now, body).ok()?);
                } else if tag == tags::CPO_BIDS_REQUEST && self.recovery {
                    out.proto(from, &srv.bids_for_seller(rng, now, body).ok()?);
                } else if tag == tags::CPO_SELLER_BINDING_QUERY && self.recovery {
                    out.proto(from, &srv.handle_binding_query(rng, now, body).ok()?);
                } else if tag == tags::CPO_BID_AWARD {
                    let job = self.award.as_mut()?;
                    let p = job.pending.take()?;
                    let awarded = p.handle_award(srv, now, body).ok()?;
                    job.done = true;
                    self.deadline = None;
                    for (seller, _, notice) in &awarded.notices {
                        if let Some((_, to)) = self.addr_of.iter().find(|(k, _)| k == seller) {
                            out.frame(*to, NOTICE, notice);
                        }
                    }
                } else {
                    return None;
                }
            }
            _ => return None,
        }
        Some(())
    }
}

// ----------------------------------------------------------------- seller

/// What a seller is after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Bind the first-come CPO `cpo` (protocol 4).
    Bind {
        /// Its id.
        cpo: [u8; 32],
    },
    /// Bid `price` on the bidding CPO `cpo` (protocol 6), which closes at
    /// `closes_ms`, and learn the outcome.
    Bid {
        /// Its id.
        cpo: [u8; 32],
        /// Her price.
        price: Money,
        /// When bidding closes (simulated ms).
        closes_ms: u64,
    },
}

#[derive(Debug)]
enum SellerStep {
    Idle,
    /// Protocol 3 (the client's conversation).
    Browsing(Browse),
    /// A listing asked for: it is pushed by the server (a transport frame).
    AwaitListing,
    /// Her offer sent (protocol 4).
    Binding(Bind),
    /// Her bid sent (protocol 6).
    Bidding(Bid),
    /// A bid of hers went out and its BID_RECEIPT never came: she asked
    /// for her receipts with a signed request.
    FetchBids,
    AwaitNotice,
    Stalled,
    Done,
    GaveUp,
}

/// What a simulated seller offers with a binding.
const OFFER: &str = "delivered within 5 days";
/// The details of a simulated seller's bid.
const BID_DETAILS: &str = "delivered in 3 days";

/// Pam (or Quinn, ...): protocol 3, then a listing, then protocol 4 or 6.
#[derive(Debug)]
pub struct SellerActor {
    pub(crate) keys: Keys,
    rng: ChaCha20Rng,
    bond: Vec<u8>,
    server: Peer,
    arbiter_sign: VerifyingKey,
    /// What she is after.
    pub goal: Goal,
    session: Option<SellerSession>,
    step: SellerStep,
    recovery_wait: Option<AskBinding>,
    offered: bool,
    recovery: bool,
    /// BOUND_CPO, if she believes she bound the CPO.
    pub bound: Option<BoundReceipt>,
    /// Whether she learnt of her binding through the recovery query.
    pub recovered: bool,
    /// Her BID_RECEIPTs, as she got them (the answer to a bid, or her
    /// request for her receipts), in the order she got them.
    pub receipts: Vec<HeldReceipt>,
    /// The notices she holds (each passed `check_notice`) and what they
    /// say, by the hash of the receipt they are about.
    pub notices: BTreeMap<[u8; 32], (Vec<u8>, Outcome)>,
    /// hash(X_1) of every bid she sent, in order.
    sent_bids: Vec<[u8; 32]>,
    /// How many of `sent_bids` her last complete list of receipts from the
    /// server covers: those are settled (she holds their receipt, or the
    /// server never took them).
    settled_bids: usize,
    /// Her latest request for her receipts, and how many bids she had sent
    /// when she made it. A late answer is still taken.
    bids_request: Option<(FetchBids, usize)>,
    /// Whether she already came back after bidding closed to learn how her
    /// unanswered bids went, once her bidding attempts ran out.
    came_back: bool,
    /// Whether some of her receipts came through her request for them.
    pub recovered_receipts: bool,
    attempts: u32,
    pub(crate) deadline: Option<u64>,
    limits: Limits,
    /// Messages she dropped.
    pub rejected: u64,
    /// Runs restarted after a timeout.
    pub restarts: u64,
}

impl SellerActor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        keys: Keys,
        rng: ChaCha20Rng,
        bond: Vec<u8>,
        server: Peer,
        arbiter_sign: VerifyingKey,
        goal: Goal,
        limits: Limits,
        recovery: bool,
        start_ms: u64,
    ) -> SellerActor {
        SellerActor {
            keys,
            rng,
            bond,
            server,
            arbiter_sign,
            goal,
            session: None,
            step: SellerStep::Idle,
            recovery_wait: None,
            offered: false,
            recovery,
            bound: None,
            recovered: false,
            receipts: Vec::new(),
            notices: BTreeMap::new(),
            sent_bids: Vec::new(),
            settled_bids: 0,
            bids_request: None,
            came_back: false,
            recovered_receipts: false,
            attempts: 0,
            deadline: Some(start_ms),
            limits,
            rejected: 0,
            restarts: 0,
        }
    }

    /// Whether she gave up before reaching her goal.
    pub fn gave_up(&self) -> bool {
        matches!(self.step, SellerStep::GaveUp)
    }

    /// What her notices tell her: won if one of her bids won, lost if she
    /// holds notices and none says so, nothing before any notice.
    pub fn outcome(&self) -> Option<Outcome> {
        if self.notices.is_empty() {
            None
        } else if self.notices.values().any(|(_, o)| *o == Outcome::Won) {
            Some(Outcome::Won)
        } else {
            Some(Outcome::Lost)
        }
    }

    /// Whether she knows how her bidding ended: one of her bids won, or
    /// every receipt she holds has its notice and (with the request for
    /// receipts) no bid of hers went unanswered since her last complete
    /// list.
    fn knows_outcome(&self) -> bool {
        self.outcome() == Some(Outcome::Won)
            || (!self.receipts.is_empty()
                && self
                    .receipts
                    .iter()
                    .all(|r| self.notices.contains_key(&r.hash()))
                && !(self.recovery && self.unanswered_bids() > 0))
    }

    /// Bids she sent, not settled by a complete list of her receipts, whose
    /// receipt she does not hold.
    fn unanswered_bids(&self) -> usize {
        self.sent_bids
            .get(self.settled_bids..)
            .unwrap_or_default()
            .iter()
            .filter(|h| !self.receipts.iter().any(|r| r.message.x1_hash == **h))
            .count()
    }

    /// Asks the server for her receipts on `cpo` from her `from`-th bid on.
    fn ask_for_bids(&mut self, out: &mut Out, cpo: [u8; 32], from: u64, sent: usize) {
        let (m, f) = FetchBids::start(
            &self.keys,
            &mut self.rng,
            out.now(),
            cpo,
            from,
            &self.server,
        );
        out.send(&m);
        self.bids_request = Some((f, sent));
        self.step = SellerStep::FetchBids;
    }

    /// Her request for her receipts was answered: she keeps those she did
    /// not hold, asks for the next page if there is one, and otherwise
    /// counts every bid she had sent by then as settled.
    fn take_bids_reply(&mut self, out: &mut Out, m: &[u8]) -> bool {
        let Goal::Bid { cpo, closes_ms, .. } = self.goal else {
            return false;
        };
        let Some((req, sent)) = self.bids_request.take() else {
            return false;
        };
        let opened = req
            .clone()
            .on_reply(&self.keys, &mut self.rng, out.now(), m);
        let got = match opened {
            Ok(Next::Done(got))
                if req.request().cpo == cpo && !matches!(self.step, SellerStep::Done) =>
            {
                got
            }
            _ => {
                self.bids_request = Some((req, sent));
                return false;
            }
        };
        let next = got.next();
        for r in got.receipts {
            if !self.receipts.contains(&r) {
                self.receipts.push(r);
                self.recovered_receipts = true;
            }
        }
        if let Some(from) = next {
            self.ask_for_bids(out, cpo, from, sent);
            self.deadline = Some(out.now_ms + self.limits.timeout_ms);
            return true;
        }
        self.settled_bids = self.settled_bids.max(sent);
        if self.knows_outcome() {
            self.done();
        } else if !matches!(self.step, SellerStep::Bidding(_)) {
            // (A bid she made since stays in flight.) Wait for the award's
            // notices, and ask for them if none come.
            self.step = SellerStep::AwaitNotice;
            self.attempts = 0;
            self.deadline = Some(closes_ms.max(out.now_ms) + 2 * self.limits.timeout_ms);
        }
        true
    }

    pub(crate) fn on_timer(&mut self, out: &mut Out) {
        if matches!(self.step, SellerStep::Done | SellerStep::GaveUp) {
            self.deadline = None;
            return;
        }
        if self.attempts >= self.limits.max_attempts {
            // Out of attempts with bids whose receipts never came: she comes
            // back once bidding has closed to ask how they went (once).
            if let Goal::Bid { closes_ms, .. } = self.goal {
                if self.recovery && self.unanswered_bids() > 0 && !self.came_back {
                    self.came_back = true;
                    self.attempts = 0;
                    self.step = SellerStep::AwaitNotice;
                    self.deadline = Some(closes_ms.max(out.now_ms) + 2 * self.limits.timeout_ms);
                    return;
                }
            }
            self.step = SellerStep::GaveUp;
            self.deadline = None;
            return;
        }
        if self.attempts > 0 {
            self.restarts += 1;
        }
        self.attempts += 1;
        self.deadline = Some(out.now_ms + self.limits.timeout_ms);
        let Some(s) = &self.session else {
            self.step = match Browse::start(
                &self.keys,
                &mut self.rng,
                self.bond.clone(),
                EPOCH.minus_secs(60),
                EPOCH.plus_secs(86_400),
                &self.server,
            ) {
                Ok((m, c)) => {
                    out.send(&m);
                    SellerStep::Browsing(c)
                }
                Err(_) => SellerStep::Stalled,
            };
            return;
        };
        let list = |out: &mut Out, cpo: &[u8; 32], mode: u8| {
            let mut b = s.id().to_vec();
            b.extend_from_slice(cpo);
            b.push(mode);
            out.frame(Addr::Server, LIST, &b);
        };
        match self.goal {
            Goal::Bind { cpo } => {
                if self.recovery && self.offered {
                    let (m, e) = AskBinding::start(s, &mut self.rng, &cpo, &self.bond);
                    out.send(&m);
                    self.recovery_wait = Some(e);
                }
                list(out, &cpo, 0);
                self.step = SellerStep::AwaitListing;
            }
            Goal::Bid { cpo, closes_ms, .. } => {
                // A bid of hers went out and its receipt never came: that
                // bid may be the one that wins. She asks for her receipts,
                // in turn with what she would do otherwise (bid again while
                // she holds no receipt and bidding is open: her bid may
                // never have reached the server; ask for her notices once
                // she holds a receipt).
                let closed = out.now_ms >= closes_ms;
                if self.recovery
                    && self.unanswered_bids() > 0
                    && (!matches!(self.step, SellerStep::FetchBids)
                        || (closed && self.receipts.is_empty()))
                {
                    let sent = self.sent_bids.len();
                    self.ask_for_bids(out, cpo, 0, sent);
                    return;
                }
                if self.receipts.is_empty() {
                    list(out, &cpo, 1);
                    self.step = SellerStep::AwaitListing;
                } else {
                    for r in &self.receipts {
                        let hash = r.hash();
                        if !self.notices.contains_key(&hash) {
                            let mut b = cpo.to_vec();
                            b.extend_from_slice(&hash);
                            out.frame(Addr::Server, NOTICE_REQUEST, &b);
                        }
                    }
                    self.step = SellerStep::AwaitNotice;
                }
            }
        }
    }

    pub(crate) fn on_message(&mut self, out: &mut Out, _from: Addr, bytes: &[u8]) {
        if !self.handle(out, bytes) {
            self.rejected += 1;
        }
    }

    fn done(&mut self) {
        self.step = SellerStep::Done;
        self.deadline = None;
    }

    fn handle(&mut self, out: &mut Out, bytes: &[u8]) -> bool {
        let Some((kind, m)) = split(bytes) else {
            return false;
        };
        if kind == NOTICE {
            // The notice of one of her receipts that has none yet.
            let found = self
                .receipts
                .iter()
                .filter(|r| !self.notices.contains_key(&r.hash()))
                .find_map(|r| {
                    check_notice(m, r, &self.server.sign, &self.arbiter_sign)
                        .ok()
                        .map(|o| (r.hash(), o))
                });
            let Some((hash, o)) = found else {
                return false;
            };
            self.notices.insert(hash, (m.to_vec(), o));
            if self.knows_outcome() {
                self.done();
            }
            return true;
        }
        if kind != PROTO {
            return false;
        }
        let Some(tag) = tag_of(m) else { return false };
        if tag == tags::CPO_BIDS_REPLY {
            return self.take_bids_reply(out, m);
        }
        if tag == tags::CPO_SELLER_BINDING_ANSWER {
            let (Some(e), Some(s)) = (self.recovery_wait.take(), &self.session) else {
                return false;
            };
            if self.bound.is_some() {
                return false;
            }
            return match e.on_reply(s, &mut self.rng, out.now(), m) {
                Ok(Next::Done(r)) => {
                    self.bound = Some(r);
                    self.recovered = true;
                    self.done();
                    true
                }
                _ => false,
            };
        }
        let progress = out.now_ms + self.limits.timeout_ms;
        let now = out.now();
        let step = std::mem::replace(&mut self.step, SellerStep::Stalled);
        let (k, rng) = (&self.keys, &mut self.rng);
        let mut ok = true;
        let mut next_phase = false;
        self.step = match (step, &self.session) {
            (SellerStep::Browsing(c), _) if c.expects() == Some(tag) => {
                match c.on_reply(k, rng, now, m) {
                    Ok(Next::Send(m2, c)) => {
                        out.send(&m2);
                        SellerStep::Browsing(c)
                    }
                    Ok(Next::Done(s)) => {
                        self.session = Some(s);
                        next_phase = true;
                        SellerStep::Idle
                    }
                    Err(_) => {
                        ok = false;
                        SellerStep::Stalled
                    }
                }
            }
            // The pushed listing goes to the bind (or bid) it answers,
            // which checks it is of her CPO, in her session, and offers.
            (SellerStep::AwaitListing, Some(s)) if tag == tags::CPO_BIND_LISTING => {
                let Goal::Bind { cpo } = self.goal else {
                    return false;
                };
                match Bind::awaiting(s, cpo, OFFER).on_reply(s, rng, now, m) {
                    Ok(Next::Send(m1, c)) => {
                        self.offered = true;
                        out.send(&m1);
                        SellerStep::Binding(c)
                    }
                    _ => {
                        ok = false;
                        SellerStep::AwaitListing
                    }
                }
            }
            (SellerStep::AwaitListing, Some(s)) if tag == tags::CPO_BID_LISTING => {
                let Goal::Bid { cpo, price, .. } = self.goal else {
                    return false;
                };
                match Bid::awaiting(s, cpo, price, BID_DETAILS).on_reply(s, rng, now, m) {
                    Ok(Next::Send(m1, c)) => {
                        out.send(&m1);
                        if let Some(h) = c.bid_hash() {
                            self.sent_bids.push(h);
                        }
                        SellerStep::Bidding(c)
                    }
                    _ => {
                        ok = false;
                        SellerStep::AwaitListing
                    }
                }
            }
            (SellerStep::Binding(c), Some(s)) if c.expects() == Some(tag) => {
                match c.on_reply(s, rng, now, m) {
                    Ok(Next::Done(r)) => {
                        self.bound = Some(r);
                        self.recovery_wait = None;
                        self.deadline = None;
                        SellerStep::Done
                    }
                    _ => {
                        ok = false;
                        SellerStep::Stalled
                    }
                }
            }
            (SellerStep::Bidding(c), Some(s)) if c.expects() == Some(tag) => {
                match c.on_reply(s, rng, now, m) {
                    Ok(Next::Done(r)) => {
                        if !self.receipts.contains(&r) {
                            self.receipts.push(r);
                        }
                        SellerStep::AwaitNotice
                    }
                    _ => {
                        ok = false;
                        SellerStep::Stalled
                    }
                }
            }
            (other, _) => {
                ok = false;
                other
            }
        };
        if !ok {
            return false;
        }
        if matches!(self.step, SellerStep::AwaitNotice) && self.knows_outcome() {
            self.done();
        }
        match self.step {
            SellerStep::Done => {}
            SellerStep::AwaitNotice => {
                // Wait for the award's notice; ask for it if none comes.
                self.attempts = 0;
                let closes = match self.goal {
                    Goal::Bid { closes_ms, .. } => closes_ms,
                    Goal::Bind { .. } => 0,
                };
                self.deadline = Some(closes.max(out.now_ms) + 2 * self.limits.timeout_ms);
            }
            _ => self.deadline = Some(progress),
        }
        if next_phase {
            self.attempts = 0;
            self.on_timer(out);
        }
        true
    }
}

impl SellerActor {
    /// Her bond certificate (DER).
    pub fn bond_der(&self) -> &[u8] {
        &self.bond
    }

    /// Whether she is after a first-come binding (not a bid).
    pub fn goal_is_bind(&self) -> bool {
        matches!(self.goal, Goal::Bind { .. })
    }
}
