//! The fixed CPO market of the `cpo_*` targets and of their seeds (`examples/make_seeds.rs` includes this file too, so the
//! seeds are sealed to the very keys the targets hold). Every key comes
//! from a fixed seed and every random choice from a fixed ChaCha20 seed.
#![allow(dead_code)] // each includer uses part of it

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::ports::MemoryReplayCache;
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::{Board, BoardEntry, MemoryBoard, MemorySessions, Session, Sessions};
use agora_cpo::seller::SellerSession;
use agora_cpo::server::Server;
use agora_cpo::session::BindingKey;
use agora_cpo::{BondTrust, Ccpo, CcpoDraft, Keys, Mode, Peer};
use agora_pki::{
    validate_bond, Agency, BondParams, BondRequirement, Conditions, CrlParams, Role, TrustAnchors,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

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

/// An RNG for one run: deterministic, so a crash replays exactly.
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5eed)
}

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").expect("EUR"))
}

/// The market's fixed, expensive part: the agency, its CRL, Bob's and
/// Pam's bonds.
pub struct Market {
    pub trust: BondTrust,
    pub bob_bond: Vec<u8>,
    pub pam_bond: Vec<u8>,
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
        }
    }

    /// Pam's browse session T: from a minute ago for a day.
    pub fn session_range(&self) -> (Timestamp, Timestamp) {
        (NOW.minus_secs(60), NOW.plus_secs(DAY))
    }

    /// Pam's live browse session under [`K_P`], as the server keeps it.
    pub fn pam_session(&self) -> Session {
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
    pub fn bind_server(
        &self,
    ) -> (
        Server<MemoryBoard, MemoryReplayCache, MemorySessions>,
        Vec<u8>,
    ) {
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

    /// Alice, with an empty policy.
    pub fn arbiter(&self) -> Arbiter {
        Arbiter::new(keys(ALICE), ArbiterPolicy::default(), self.trust.clone())
    }

    /// The server on fresh in-memory storage, working with Alice.
    pub fn server(&self) -> Server<MemoryBoard, MemoryReplayCache, MemorySessions> {
        Server::new(
            keys(SERVER),
            self.trust.clone(),
            vec![keys(ALICE).sign.verifying_key()],
            MemoryBoard::new(),
            MemoryReplayCache::new(),
            MemorySessions::new(),
        )
    }

    pub fn alice_peer(&self) -> Peer {
        keys(ALICE).peer()
    }

    pub fn server_peer(&self) -> Peer {
        keys(SERVER).peer()
    }

    /// Bob's CCPO.
    pub fn ccpo(&self) -> Ccpo {
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
