//! The fixed CPO market of the `cpo_*` targets and of their seeds (`examples/make_seeds.rs` includes this file too, so the
//! seeds are sealed to the very keys the targets hold). Every key comes
//! from a fixed seed and every random choice from a fixed ChaCha20 seed.
#![allow(dead_code)] // each includer uses part of it

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::bidding::{BidRecord, BidTaken, PendingAward};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::{BindOutcome, Binding, BoardEntry, Session};
use agora_cpo::seller::SellerSession;
use agora_cpo::server::Server;
use agora_cpo::session::BindingKey;
use agora_cpo::{BondTrust, Ccpo, CcpoDraft, Keys, Mode, Peer};
use agora_pki::{
    validate_bond, Agency, BondParams, BondRequirement, Conditions, CrlParams, Role, TrustAnchors,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::OnceLock;

/// The targets' clock.
pub const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;

/// Keys from a one-byte seed.
pub fn keys(seed: u8) -> Keys {
    Keys {
        sign: SigningKey::from_seed(&[seed; 32]),
        enc: X25519Secret::from_bytes([seed ^ 0x80; 32]),
    }
}

/// Bob (the buyer), Alice (the arbiter), the server and Pam (a seller).
pub const BOB: u8 = 21;
pub const ALICE: u8 = 22;
pub const SERVER: u8 = 23;
pub const PAM: u8 = 24;

/// K_p of Pam's browse session in the `cpo_bind` and `cpo_seller` targets.
pub const K_P: [u8; 32] = [0x4b; 32];
/// Pam's offer in the `cpo_seller` target (and in its BOUND_CPO seed).
pub const OFFER: &str = "ship to the buyer's intermediary";
/// Pam's bid in the `cpo_bid` target (and in its seeds): price and details.
pub const BID_CENTS: u64 = 11_000;
pub const BID_DETAILS: &str = "courier to the buyer's intermediary, 3 days";
/// The verifier of the `cpo_delivery` target's fixed delivery challenge.
pub const VERIFIER: &str = "fuzz intermediary";

/// When Bob's CPO closes (its EndDate): bidding is over from then on.
pub fn end() -> Timestamp {
    NOW.plus_secs(30 * DAY)
}

/// An RNG for one run: deterministic, so a crash replays exactly.
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5eed)
}

pub fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").expect("EUR"))
}

/// The market's fixed, expensive part: the agency, its CRL, Bob's and
/// Pam's bonds.
pub struct Market {
    pub trust: BondTrust,
    pub bob_bond: Vec<u8>,
    pub pam_bond: Vec<u8>,
    /// Pam's session as the server keeps it, made on first use (validating
    /// her bond is the dear part of a fresh server's setup).
    pam_session: OnceLock<Session>,
    /// Alice's and the server's public keys and Bob's CCPO, made on first
    /// use (each public key is a scalar multiplication).
    alice_peer: OnceLock<Peer>,
    server_peer: OnceLock<Peer>,
    ccpo: OnceLock<Ccpo>,
}

impl Market {
    pub fn new() -> Market {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let agency = Agency::create(
            "Fuzz Bonding Agency",
            SigningKey::from_seed(&[20; 32]),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut rng,
        )
        .expect("agency");
        let mut agencies = TrustAnchors::new();
        agencies
            .add_der(agency.certificate_der())
            .expect("trust anchor");
        let crl = agency
            .issue_crl(&CrlParams {
                this_update: NOW.minus_secs(60),
                next_update: NOW.plus_secs(7 * DAY),
                crl_number: 1,
                revoked: vec![],
            })
            .expect("crl");
        let bob = keys(BOB);
        let bob_bond = agency
            .issue_bond(
                &BondParams {
                    holder: bob.sign.verifying_key(),
                    holder_x25519: bob.enc.public(),
                    amount: eur(100_000),
                    roles: vec![Role::Buyer],
                    conditions: Conditions::default(),
                    not_before: NOW.minus_secs(DAY),
                    not_after: NOW.plus_secs(365 * DAY),
                    crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
                },
                &mut rng,
            )
            .expect("bond")
            .der;
        let pam = keys(PAM);
        let pam_bond = agency
            .issue_bond(
                &BondParams {
                    holder: pam.sign.verifying_key(),
                    holder_x25519: pam.enc.public(),
                    amount: eur(50_000),
                    roles: vec![Role::Seller],
                    conditions: Conditions::default(),
                    not_before: NOW.minus_secs(DAY),
                    not_after: NOW.plus_secs(365 * DAY),
                    crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
                },
                &mut rng,
            )
            .expect("bond")
            .der;
        Market {
            trust: BondTrust {
                agencies,
                crls: vec![crl],
            },
            bob_bond,
            pam_bond,
            pam_session: OnceLock::new(),
            alice_peer: OnceLock::new(),
            server_peer: OnceLock::new(),
            ccpo: OnceLock::new(),
        }
    }

    /// Pam's browse session T: from a minute ago for a day.
    pub fn session_range(&self) -> (Timestamp, Timestamp) {
        (NOW.minus_secs(60), NOW.plus_secs(DAY))
    }

    /// Pam's live browse session under [`K_P`], as the server keeps it.
    pub fn pam_session(&self) -> Session {
        self.pam_session
            .get_or_init(|| self.make_pam_session())
            .clone()
    }

    fn make_pam_session(&self) -> Session {
        let valid = validate_bond(
            &self.pam_bond,
            &self.trust.agencies,
            &self.trust.crls,
            NOW,
            &BondRequirement {
                price: None,
                role: Role::Seller,
                server: Some(self.server_peer().id()),
                arbiter: None,
            },
        )
        .expect("Pam's bond");
        let (from, until) = self.session_range();
        Session {
            id: BindingKey::from_bytes(K_P).session_id(),
            k_p: K_P,
            seller: valid.holder_key_id(),
            bond: self.pam_bond.clone(),
            bond_serial: valid.serial().0.clone(),
            agency: valid.agency(),
            from,
            until,
            ended_at: None,
        }
    }

    /// Pam's side of that session.
    pub fn pam_seller_session(&self) -> SellerSession {
        let (from, until) = self.session_range();
        SellerSession::from_parts(
            BindingKey::from_bytes(K_P),
            self.server_peer(),
            self.pam_bond.clone(),
            from,
            until,
        )
    }

    /// Bob's CCPO as the server posted it (first-come; the evidence fields
    /// are not read by binding, so they stay empty).
    pub fn board_entry(&self) -> BoardEntry {
        BoardEntry {
            ccpo: self.ccpo(),
            mode: Mode::FirstCome,
            buyer: keys(BOB).id(),
            posted_at: NOW,
            acceptance: vec![],
            posted: vec![],
        }
    }

    /// A server on fresh in-memory storage with Bob's CPO posted, Pam's
    /// session live, and one listing of the CPO sent to her (made with a
    /// fresh [`rng`], so it is the same every time); returns the server and
    /// the listing as sent (M_0 of protocol 4).
    pub fn bind_server(&self) -> (Server, Vec<u8>) {
        let server = self.server();
        let entry = self.board_entry();
        server.board().post(&entry).expect("post");
        let session = self.pam_session();
        server.sessions().create(&session).expect("session");
        let listing = server
            .listing(&mut rng(), NOW, &session.id, &entry.ccpo.id)
            .expect("listing");
        (server, listing)
    }

    /// Bob's CCPO as the server posted it for bidding (protocol 5).
    pub fn bidding_entry(&self) -> BoardEntry {
        BoardEntry {
            mode: Mode::Bidding,
            ..self.board_entry()
        }
    }

    /// Like [`Self::bind_server`], but Bob's CPO is posted for bidding and
    /// the listing sent to Pam is a bid listing (M_0 of protocol 6).
    pub fn bid_server(&self) -> (Server, Vec<u8>) {
        let server = self.server();
        let entry = self.bidding_entry();
        server.board().post(&entry).expect("post");
        let session = self.pam_session();
        server.sessions().create(&session).expect("session");
        let listing = server
            .bid_listing(&mut rng(), NOW, &session.id, &entry.ccpo.id)
            .expect("bid listing");
        (server, listing)
    }

    /// Pam's bid ([`BID_CENTS`], [`BID_DETAILS`]) on Bob's CPO, taken by a
    /// [`Self::bid_server`] (whose keys every server of the market shares):
    /// the server holding the bid it recorded, and what it answered.
    pub fn pam_bid(&self, pam: &SellerSession) -> (Server, BidTaken) {
        let (server, m0) = self.bid_server();
        let listing = pam
            .open_bid_listing(&m0)
            .expect("the fixture's bid listing");
        let (m1, _) = pam
            .bid(&mut rng(), &listing, eur(BID_CENTS), BID_DETAILS)
            .expect("bid");
        let taken = server
            .handle_bid(&mut rng(), NOW, &m1)
            .expect("the fixture's bid");
        (server, taken)
    }

    /// Bidding on Bob's CPO has closed ([`end`]) with `bid` taken: a server
    /// on fresh storage with the CPO posted for bidding and its bid, and the
    /// award request it sealed to Alice (made with a fresh [`rng`]) with the
    /// pending award waiting for her answer.
    pub fn award_server(&self, bid: &BidRecord) -> (Server, Vec<u8>, PendingAward) {
        let server = self.server_with_bid(bid);
        let entry = self.bidding_entry();
        let (m, pending) = server
            .request_award(&mut rng(), end(), &entry.ccpo.id, &self.alice_peer())
            .expect("award request");
        (server, m, pending)
    }

    /// A server on fresh storage with Bob's CPO posted for bidding and `bid`
    /// taken.
    pub fn server_with_bid(&self, bid: &BidRecord) -> Server {
        let server = self.server();
        let entry = self.bidding_entry();
        server.board().post(&entry).expect("post");
        server
            .store()
            .bids()
            .record_bid(&entry.ccpo.id, bid)
            .expect("bid");
        server
    }

    /// A server on fresh storage with Bob's first-come CPO posted and bound
    /// by `binding`, and Pam's session under [`K_P`] live.
    pub fn bound_server(&self, binding: &Binding) -> Server {
        let server = self.server();
        let entry = self.board_entry();
        server.board().post(&entry).expect("post");
        let bound = server
            .board()
            .try_bind(&entry.ccpo.id, binding)
            .expect("bind");
        assert_eq!(bound, BindOutcome::Bound);
        server
            .sessions()
            .create(&self.pam_session())
            .expect("session");
        server
    }

    /// Alice, with an empty policy.
    pub fn arbiter(&self) -> Arbiter {
        Arbiter::new(keys(ALICE), ArbiterPolicy::default(), self.trust.clone())
    }

    /// The server on fresh in-memory storage, working with Alice.
    pub fn server(&self) -> Server {
        Server::new(
            keys(SERVER),
            self.trust.clone(),
            vec![self.alice_peer().sign],
            std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
        )
    }

    pub fn alice_peer(&self) -> Peer {
        *self.alice_peer.get_or_init(|| keys(ALICE).peer())
    }

    pub fn server_peer(&self) -> Peer {
        *self.server_peer.get_or_init(|| keys(SERVER).peer())
    }

    /// Bob's CCPO.
    pub fn ccpo(&self) -> Ccpo {
        self.ccpo.get_or_init(|| self.make_ccpo()).clone()
    }

    fn make_ccpo(&self) -> Ccpo {
        Ccpo::with_id(
            [7; 32],
            CcpoDraft {
                arbiter: self.alice_peer().id(),
                server: self.server_peer().id(),
                goods: "A first edition of 'Applied Cryptography'".into(),
                price: eur(12_000),
                start: NOW,
                end: NOW.plus_secs(30 * DAY),
                terms: "Deliver within 5 days to the buyer's intermediary.".into(),
                bond: self.bob_bond.clone(),
            },
        )
        .expect("ccpo")
    }
}
