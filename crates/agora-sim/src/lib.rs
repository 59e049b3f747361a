//! agora-sim: the CPO roles of protocols 1 to 6 (buyer, arbiter, server,
//! sellers; not delivery, revocation or the e-mail mode), SPEED's
//! customer, vendor and broker, and STP's processes and commit authority,
//! in one process over a simulated network and clock, reproducible from a
//! seed (STYLE item 6; ARCHITECTURE section 8).
//!
//! What is simulated:
//!
//! - **The network** ([`SimNet`]): every message is dropped, duplicated, or
//!   tampered with (one random bit flipped) with the probabilities of a
//!   [`NetConfig`], and each copy is delayed at random, which reorders
//!   them. Deliveries are processed in (time, sequence) order.
//! - **The clock**: simulated milliseconds, advanced to the next delivery or
//!   timer; a role's `now` is [`EPOCH`] plus the elapsed whole seconds.
//! - **The parties** ([`actors`]): buyers (protocol 1 or 5, then 2), the
//!   arbiter (1, 5 and the award of 6), the server on in-memory ports (2,
//!   3, 4, 6, the award, notices, the binding recovery query of
//!   [`agora_cpo::recovery`], and the buyer's and the bidder's signed
//!   requests for a lost posted CPO or BID_RECEIPT), and sellers (3, a
//!   listing request, then 4 or 6). The buyers' and sellers' protocol runs
//!   are agora-client's conversations (`agora_client::cpo::flow`), the
//!   same the CLI, the load tool and the e-mail mode carry; the actors add
//!   the network's timing, retries and recovery. The request for a listing,
//!   and for a notice, are transport-level messages, not protocol messages. A message that fails its checks is
//!   dropped and counted; an actor with no progress for
//!   [`Scenario::timeout_ms`] restarts its run with fresh randomness, at most
//!   [`Scenario::max_attempts`] times per phase.
//!
//! Keys, nonces and faults all come from ChaCha20 streams seeded by the
//! run's seed, so one seed gives one transcript ([`Summary::transcript`]).
//! To replay a failure, run the seed the test printed:
//! `World::new(seed, NetConfig::lossy(), Scenario::default()).run()`.
//! At the end of a run, [`World::check`] lists every broken invariant.
//! SPEED purchases (customers, a vendor, the broker) run on the same network in [`speed`].
//! STP transactions (chains of ST processes and a commit authority that
//! crashes and restarts on its log) run on the same network in [`stp`]; a
//! failing STP seed prints the line that replays it,
//! `stp::replay(seed, cfg, scenario)`.
#![forbid(unsafe_code)]

pub mod actors;
pub mod net;
pub mod speed;
pub mod stp;

pub use actors::{ArbiterActor, BuyerActor, Goal, Limits, SellerActor, ServerActor};
pub use net::{Addr, NetConfig, NetStats, Packet, SimNet};

use actors::Out;
use agora_core::crypto::{SigningKey, VerifyingKey, X25519Secret};
use agora_core::wire::cose;
use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::bidding::{check_notice, choose_winner, Award, BidReceipt, Outcome};
use agora_cpo::msg::BoundCpo;
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::server::{check_acceptance, Server};
use agora_cpo::{BondTrust, Ccpo, CcpoDraft, Keys, Mode, Peer};
use agora_pki::{Agency, BondParams, Conditions, CrlParams, Role, TrustAnchors};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Simulated time 0, as a protocol timestamp.
pub const EPOCH: Timestamp = Timestamp(1_800_000_000);
/// How long the bidding CPO takes bids (seconds after [`EPOCH`]).
pub const BIDDING_SECS: u64 = 300;
/// A run stops at this simulated time at the latest.
pub const MAX_RUN_MS: u64 = 30 * 60 * 1000;
/// A run stops after this many events at the latest.
pub const MAX_EVENTS: u64 = 200_000;

const DAY: u64 = 86_400;

/// A protocol timestamp for simulated time `ms`.
pub fn now_of(ms: u64) -> Timestamp {
    EPOCH.plus_secs(ms / 1000)
}

/// Who takes part and how patient they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Sellers racing to bind the first-come CPO (0: no first-come CPO).
    pub sellers: u8,
    /// Bidders on the bidding CPO (0: no bidding CPO).
    pub bidders: u8,
    /// Whether sellers use the binding recovery query.
    pub recovery: bool,
    /// No progress for this long: restart the run.
    pub timeout_ms: u64,
    /// Most runs of one phase before an actor gives up.
    pub max_attempts: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            sellers: 3,
            bidders: 3,
            recovery: true,
            timeout_ms: 3_000,
            max_attempts: 12,
        }
    }
}

/// The price bidder `i` asks, in cents (the CPO's price is 120.00 EUR).
pub fn bid_price(i: u8) -> u64 {
    match i {
        0 => 11_500,
        1 => 9_900,
        2 => 10_400,
        n => 10_000 + 37 * u64::from(n),
    }
}

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").expect("EUR is a currency code"))
}

fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

fn bond(agency: &Agency, rng: &mut ChaCha20Rng, holder: &Keys, role: Role) -> Vec<u8> {
    agency
        .issue_bond(
            &BondParams {
                holder: holder.sign.verifying_key(),
                holder_x25519: holder.enc.public(),
                amount: eur(100_000),
                roles: vec![role],
                conditions: Conditions::default(),
                not_before: EPOCH.minus_secs(DAY),
                not_after: EPOCH.plus_secs(365 * DAY),
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            rng,
        )
        .expect("the simulated agency issues bonds")
        .der
}

fn trust_of(agency: &Agency) -> BondTrust {
    let mut agencies = TrustAnchors::new();
    agencies
        .add_der(agency.certificate_der())
        .expect("the agency's own certificate");
    let crl = agency
        .issue_crl(&CrlParams {
            this_update: EPOCH.minus_secs(60),
            next_update: EPOCH.plus_secs(7 * DAY),
            crl_number: 1,
            revoked: vec![],
        })
        .expect("the simulated agency issues CRLs");
    BondTrust {
        agencies,
        crls: vec![crl],
    }
}

fn child(rng: &mut ChaCha20Rng) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(rng.next_u64())
}

/// One simulated market and its network.
#[derive(Debug)]
pub struct World {
    /// The seed of the run.
    pub seed: u64,
    /// The network.
    pub net: SimNet,
    /// Buyers: the first-come CPO's (if any), then the bidding CPO's.
    pub buyers: Vec<BuyerActor>,
    /// Alice.
    pub arbiter: ArbiterActor,
    /// The server.
    pub server: ServerActor,
    /// Sellers racing to bind, then bidders.
    pub sellers: Vec<SellerActor>,
    /// The arbiter as everyone knows her.
    pub arbiter_peer: Peer,
    /// The server as everyone knows it.
    pub server_peer: Peer,
    events: u64,
}

/// What a run did, for tests and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// SHA-256 over every delivered message and its time.
    pub transcript: [u8; 32],
    /// What the network did.
    pub net: NetStats,
    /// Simulated time at the end (ms).
    pub end_ms: u64,
    /// Events processed (deliveries and timers).
    pub events: u64,
    /// Messages the parties dropped because they failed a check or came
    /// out of turn.
    pub rejected: u64,
    /// Protocol runs restarted after a timeout.
    pub restarts: u64,
    /// Per buyer: his CPO is on the board.
    pub posted: Vec<bool>,
    /// Per buyer: he holds the server's receipt.
    pub receipts: Vec<bool>,
    /// The seller the board binds the first-come CPO to, if any.
    pub bound_to: Option<u8>,
    /// Sellers who believe they bound the first-come CPO.
    pub believers: Vec<u8>,
    /// Sellers who learnt of their binding through the recovery query.
    pub recovered: Vec<u8>,
    /// Whether the bidding CPO was awarded.
    pub awarded: bool,
    /// The seller the bidding CPO is bound to, if any.
    pub award_winner: Option<u8>,
    /// Per bidder: what her notices tell her, if she holds any.
    pub notices: Vec<Option<Outcome>>,
    /// The bidding CPO's winner holds no Won notice: the winning bid is one
    /// whose BID_RECEIPT she never got (she bid again after a timeout) and
    /// did not recover.
    pub unaware_bid_winner: bool,
    /// Bidders who got receipts of theirs through the request for them.
    pub bids_recovered: Vec<u8>,
}

impl World {
    /// A market for `scenario` on a network behaving as `cfg`, everything
    /// drawn from `seed`.
    pub fn new(seed: u64, cfg: NetConfig, scenario: Scenario) -> World {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let limits = Limits {
            timeout_ms: scenario.timeout_ms,
            max_attempts: scenario.max_attempts,
        };
        let agency = Agency::create(
            "Simulated Bonding Agency",
            SigningKey::generate(&mut rng),
            EPOCH.minus_secs(30 * DAY),
            EPOCH.plus_secs(3650 * DAY),
            &mut rng,
        )
        .expect("the simulated agency");
        let trust = trust_of(&agency);
        let alice = keys(&mut rng);
        let arbiter_peer = alice.peer();
        let server_keys = keys(&mut rng);
        let server_peer = server_keys.peer();
        let net = SimNet::new(cfg, rng.next_u64());

        let mut buyers = Vec::new();
        let mut make_buyer = |rng: &mut ChaCha20Rng, mode: Mode, end: Timestamp| {
            let k = keys(rng);
            let b = bond(&agency, rng, &k, Role::Buyer);
            let ccpo = Ccpo::new(
                CcpoDraft {
                    arbiter: arbiter_peer.id(),
                    server: server_peer.id(),
                    goods: "A first edition of 'Applied Cryptography'".into(),
                    price: eur(12_000),
                    start: EPOCH,
                    end,
                    terms: "Deliver within 5 days to the buyer's intermediary.".into(),
                    bond: b,
                },
                rng,
            )
            .expect("a valid CCPO");
            let n = u8::try_from(buyers.len()).unwrap_or(u8::MAX);
            let r = child(rng);
            buyers.push(BuyerActor::new(
                k,
                r,
                arbiter_peer,
                server_peer,
                ccpo,
                mode,
                limits,
                u64::from(n) * 7,
                scenario.recovery,
            ));
        };
        if scenario.sellers > 0 {
            make_buyer(&mut rng, Mode::FirstCome, EPOCH.plus_secs(30 * DAY));
        }
        if scenario.bidders > 0 {
            make_buyer(&mut rng, Mode::Bidding, EPOCH.plus_secs(BIDDING_SECS));
        }
        let fc_cpo = buyers
            .iter()
            .find(|b| b.mode == Mode::FirstCome)
            .map(|b| b.ccpo.id);
        let bid_cpo = buyers
            .iter()
            .find(|b| b.mode == Mode::Bidding)
            .map(|b| b.ccpo.id);

        let mut sellers = Vec::new();
        let goals = fc_cpo
            .into_iter()
            .flat_map(|cpo| (0..scenario.sellers).map(move |_| Goal::Bind { cpo }))
            .chain(bid_cpo.into_iter().flat_map(|cpo| {
                (0..scenario.bidders).map(move |i| Goal::Bid {
                    cpo,
                    price: eur(bid_price(i)),
                    closes_ms: BIDDING_SECS * 1000,
                })
            }));
        for (i, goal) in goals.enumerate() {
            let k = keys(&mut rng);
            let b = bond(&agency, &mut rng, &k, Role::Seller);
            let r = child(&mut rng);
            sellers.push(SellerActor::new(
                k,
                r,
                b,
                server_peer,
                arbiter_peer.sign,
                goal,
                limits,
                scenario.recovery,
                1_000 + 3 * i as u64,
            ));
        }

        let arbiter = ArbiterActor::new(
            Arbiter::new(alice, ArbiterPolicy::default(), trust.clone()),
            child(&mut rng),
            server_peer,
        );
        let server = ServerActor::new(
            Server::new(
                server_keys,
                trust,
                vec![arbiter_peer.sign],
                std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
            ),
            child(&mut rng),
            arbiter_peer,
            bid_cpo.map(|c| (c, BIDDING_SECS * 1000)),
            limits,
            scenario.recovery,
        );
        World {
            seed,
            net,
            buyers,
            arbiter,
            server,
            sellers,
            arbiter_peer,
            server_peer,
            events: 0,
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.buyers
            .iter()
            .map(|b| b.deadline)
            .chain(std::iter::once(self.server.deadline))
            .chain(self.sellers.iter().map(|s| s.deadline))
            .flatten()
            .min()
    }

    fn flush(&mut self, from: Addr, out: Out) {
        for (to, bytes) in out.sends {
            self.net.send(from, to, bytes);
        }
    }

    fn deliver(&mut self, p: Packet) {
        let mut out = Out::new(self.net.now_ms());
        match p.to {
            Addr::Arbiter => self.arbiter.on_message(&mut out, p.from, &p.bytes),
            Addr::Server => self.server.on_message(&mut out, p.from, &p.bytes),
            Addr::Buyer(i) => {
                if let Some(b) = self.buyers.get_mut(usize::from(i)) {
                    b.on_message(&mut out, p.from, &p.bytes);
                }
            }
            Addr::Seller(i) => {
                if let Some(s) = self.sellers.get_mut(usize::from(i)) {
                    s.on_message(&mut out, p.from, &p.bytes);
                }
            }
        }
        self.flush(p.to, out);
    }

    fn fire_timers(&mut self, now: u64) {
        for i in 0..self.buyers.len() {
            if self.buyers[i].deadline.is_some_and(|d| d <= now) {
                let mut out = Out::new(now);
                self.buyers[i].deadline = None;
                self.buyers[i].on_timer(&mut out);
                self.flush(Addr::Buyer(i as u8), out);
            }
        }
        if self.server.deadline.is_some_and(|d| d <= now) {
            let mut out = Out::new(now);
            self.server.on_timer(&mut out);
            self.flush(Addr::Server, out);
        }
        for i in 0..self.sellers.len() {
            if self.sellers[i].deadline.is_some_and(|d| d <= now) {
                let mut out = Out::new(now);
                self.sellers[i].deadline = None;
                self.sellers[i].on_timer(&mut out);
                self.flush(Addr::Seller(i as u8), out);
            }
        }
    }

    /// Runs until nothing is in flight and no timer is set (or
    /// [`MAX_RUN_MS`] / [`MAX_EVENTS`]).
    pub fn run(&mut self) -> Summary {
        while self.events < MAX_EVENTS {
            let net_t = self.net.next_delivery_at();
            let t = match (net_t, self.next_timer()) {
                (None, None) => break,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a.min(b),
            };
            if t > MAX_RUN_MS {
                break;
            }
            self.events += 1;
            self.net.advance_to(t);
            match self.net.pop_due() {
                Some(p) => self.deliver(p),
                None => self.fire_timers(t),
            }
        }
        self.summary()
    }

    fn seller_index(&self, id: &KeyId) -> Option<u8> {
        self.sellers
            .iter()
            .position(|s| s.keys.id() == *id)
            .and_then(|i| u8::try_from(i).ok())
    }

    fn cpo_of(&self, mode: Mode) -> Option<&Ccpo> {
        self.buyers.iter().find(|b| b.mode == mode).map(|b| &b.ccpo)
    }

    /// What the run did.
    pub fn summary(&self) -> Summary {
        let board = self.server.server.board();
        let fc = self.cpo_of(Mode::FirstCome).map(|c| c.id);
        let bid = self.cpo_of(Mode::Bidding).map(|c| c.id);
        let bound_seller = |cpo: Option<[u8; 32]>| {
            cpo.and_then(|c| board.binding(&c).ok().flatten())
                .and_then(|b| self.seller_index(&b.seller))
        };
        let idx = |f: &dyn Fn(&SellerActor) -> bool| {
            self.sellers
                .iter()
                .enumerate()
                .filter(|(_, s)| f(s))
                .filter_map(|(i, _)| u8::try_from(i).ok())
                .collect::<Vec<u8>>()
        };
        Summary {
            seed: self.seed,
            transcript: self.net.transcript_hash(),
            net: self.net.stats(),
            end_ms: self.net.now_ms(),
            events: self.events,
            rejected: self.arbiter.rejected
                + self.server.rejected
                + self.buyers.iter().map(|b| b.rejected).sum::<u64>()
                + self.sellers.iter().map(|s| s.rejected).sum::<u64>(),
            restarts: self.buyers.iter().map(|b| b.restarts).sum::<u64>()
                + self.sellers.iter().map(|s| s.restarts).sum::<u64>(),
            posted: self
                .buyers
                .iter()
                .map(|b| board.get(&b.ccpo.id).ok().flatten().is_some())
                .collect(),
            receipts: self.buyers.iter().map(|b| b.receipt.is_some()).collect(),
            bound_to: bound_seller(fc),
            believers: idx(&|s| s.bound.is_some()),
            recovered: idx(&|s| s.recovered),
            awarded: bid.is_some_and(|c| {
                self.server
                    .server
                    .store()
                    .bids()
                    .award(&c)
                    .ok()
                    .flatten()
                    .is_some()
            }),
            award_winner: bound_seller(bid),
            notices: self
                .sellers
                .iter()
                .filter(|s| matches!(s.goal, Goal::Bid { .. }))
                .map(|s| s.outcome())
                .collect(),
            unaware_bid_winner: bound_seller(bid)
                .and_then(|i| self.sellers.get(usize::from(i)))
                .is_some_and(|s| s.outcome() != Some(Outcome::Won)),
            bids_recovered: idx(&|s| s.recovered_receipts),
        }
    }

    /// Every invariant the run broke (empty: all hold).
    pub fn check(&self) -> Vec<String> {
        let mut v = Vec::new();
        let board = self.server.server.board();
        let server_key: VerifyingKey = self.server_peer.sign;
        let arbiter_key: VerifyingKey = self.arbiter_peer.sign;

        // Buyers: an acceptance verifies; a receipt equals the board entry.
        for (i, b) in self.buyers.iter().enumerate() {
            if let Some(a) = &b.acceptance {
                match check_acceptance(&a.signed, &[arbiter_key]) {
                    Ok(c) if c.ccpo == b.ccpo && c.mode == b.mode => {}
                    _ => v.push(format!("buyer {i}: his acceptance does not verify")),
                }
            }
            if let Some(r) = &b.receipt {
                match board.get(&b.ccpo.id) {
                    Ok(Some(e))
                        if e.posted == r.signed && e.ccpo == r.cpo.ccpo && e.mode == b.mode => {}
                    _ => v.push(format!(
                        "buyer {i}: the board entry differs from his receipt"
                    )),
                }
            }
        }

        // First-come: at most one believer, and she is the board's.
        if let Some(c) = self.cpo_of(Mode::FirstCome) {
            let binding = board.binding(&c.id).ok().flatten();
            if let Some(b) = &binding {
                if cose::verify::<BoundCpo>(&b.bound_cpo, &server_key).is_err() {
                    v.push("the board's BOUND_CPO does not verify".into());
                }
                if self.seller_index(&b.seller).is_none() {
                    v.push("the CPO is bound to a stranger".into());
                }
            }
            let believers: Vec<_> = self
                .sellers
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.bound.as_ref().map(|r| (i, s, r)))
                .collect();
            if believers.len() > 1 {
                v.push(format!(
                    "{} sellers believe they bound the first-come CPO",
                    believers.len()
                ));
            }
            for (i, s, r) in believers {
                if r.message.ccpo.id != c.id
                    || cose::verify::<BoundCpo>(&r.signed, &server_key)
                        .ok()
                        .as_ref()
                        != Some(&r.message)
                {
                    v.push(format!("seller {i}: her BOUND_CPO does not verify"));
                }
                match &binding {
                    Some(b) if b.seller == s.keys.id() && b.bound_cpo == r.signed => {}
                    _ => v.push(format!(
                        "seller {i} believes she bound a CPO the board binds otherwise"
                    )),
                }
            }
        }

        // Bidding: the award follows the rule over the recorded bids, the
        // binding is the winner's, and every held notice checks out.
        if let Some(c) = self.cpo_of(Mode::Bidding) {
            let bids = self.server.server.store().bids();
            let recorded: Vec<_> = bids
                .bids(&c.id)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.summary)
                .collect();
            let binding = board.binding(&c.id).ok().flatten();
            let mut won_hash = None;
            match bids.award(&c.id).ok().flatten() {
                Some(signed) => match cose::verify::<Award>(&signed, &arbiter_key) {
                    Ok(a) => {
                        won_hash = a.winner;
                        if a.winner != choose_winner(&recorded, &c.price) {
                            v.push("the award does not follow the rule".into());
                        }
                        let hashes: Vec<_> = recorded.iter().map(|b| b.receipt_hash).collect();
                        if a.considered != hashes {
                            v.push("the award does not consider exactly the recorded bids".into());
                        }
                        let winner = a
                            .winner
                            .and_then(|w| recorded.iter().find(|b| b.receipt_hash == w));
                        if binding.as_ref().map(|b| b.seller) != winner.map(|w| w.seller) {
                            v.push("the bidding CPO is not bound to the award's winner".into());
                        }
                    }
                    Err(_) => v.push("the stored award does not verify".into()),
                },
                None => {
                    if binding.is_some() {
                        v.push("the bidding CPO is bound without an award".into());
                    }
                }
            }
            for (i, s) in self.sellers.iter().enumerate() {
                for r in &s.receipts {
                    if cose::verify::<BidReceipt>(&r.signed, &server_key)
                        .ok()
                        .as_ref()
                        != Some(&r.message)
                        || r.message.ccpo.id != c.id
                        || r.message.seller_bond != s.bond_der()
                    {
                        v.push(format!("seller {i}: a receipt of hers does not verify"));
                    }
                    if !recorded.iter().any(|b| b.receipt_hash == r.hash()) {
                        v.push(format!("seller {i}: her receipt's bid is not recorded"));
                    }
                }
                for (hash, (n, o)) in &s.notices {
                    let Some(r) = s.receipts.iter().find(|r| r.hash() == *hash) else {
                        v.push(format!("seller {i}: a notice without a receipt"));
                        continue;
                    };
                    match check_notice(n, r, &server_key, &arbiter_key) {
                        Ok(x) if x == *o => {}
                        _ => v.push(format!("seller {i}: her notice does not check")),
                    }
                    // A Lost notice while the board binds her is possible:
                    // another bid of hers won, whose receipt she lost (and,
                    // without the request for receipts, never got; see
                    // Summary::unaware_bid_winner).
                    let hers = binding.as_ref().is_some_and(|b| b.seller == s.keys.id());
                    if *o == Outcome::Won && !hers {
                        v.push(format!("seller {i}: she holds a win the board denies"));
                    }
                    if *o == Outcome::Lost && hers && won_hash == Some(*hash) {
                        v.push(format!("seller {i}: told she lost the bid that won"));
                    }
                }
            }
        }
        v
    }
}
