//! A CPO market in one process, for the protocol tests: one bonding agency
//! (with a current CRL), Bob the buyer with a bond, Pam and Quinn, sellers,
//! Alice the arbiter, and a server on in-memory storage. Deterministic from
//! a seed; the clock is `NOW` unless a test moves it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::buyer::{self, Acceptance, PostReceipt};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::server::{Posted, Server};
use agora_cpo::{BondTrust, Ccpo, CcpoDraft, Keys, Peer, Variant};
use agora_pki::{Agency, BondParams, Conditions, CrlParams, Role, TrustAnchors};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub const NOW: Timestamp = Timestamp(1_800_000_000);
pub const DAY: u64 = 86_400;

pub fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

pub fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

pub fn clone_keys(k: &Keys) -> Keys {
    Keys {
        sign: SigningKey::from_seed(&k.sign.to_seed()),
        enc: X25519Secret::from_bytes(*k.enc.to_bytes()),
    }
}

pub struct Market {
    pub rng: ChaCha20Rng,
    pub agency: Agency,
    pub trust: BondTrust,
    pub bob: Keys,
    pub bob_bond: Vec<u8>,
    pub alice: Arbiter,
    pub alice_peer: Peer,
    /// A copy of Alice's keys, for tests that play a careless or corrupt
    /// Alice (signing what the honest `Arbiter` would refuse).
    pub alice_keys: Keys,
    pub server: Server,
    pub server_peer: Peer,
    /// A copy of the server's keys, for a second instance of the same
    /// server (other arbiters, fresh storage).
    pub server_keys: Keys,
}

/// Issue a bond from `agency` to `holder`.
pub fn bond(
    agency: &Agency,
    rng: &mut ChaCha20Rng,
    holder: &Keys,
    amount: Money,
    roles: Vec<Role>,
    conditions: Conditions,
    not_after: Timestamp,
) -> Vec<u8> {
    agency
        .issue_bond(
            &BondParams {
                holder: holder.sign.verifying_key(),
                holder_x25519: holder.enc.public(),
                amount,
                roles,
                conditions,
                not_before: NOW.minus_secs(DAY),
                not_after,
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            rng,
        )
        .unwrap()
        .der
}

pub fn trust_of(agency: &Agency) -> BondTrust {
    let mut agencies = TrustAnchors::new();
    agencies.add_der(agency.certificate_der()).unwrap();
    let crl = agency
        .issue_crl(&CrlParams {
            this_update: NOW.minus_secs(60),
            next_update: NOW.plus_secs(7 * DAY),
            crl_number: 1,
            revoked: vec![],
        })
        .unwrap();
    BondTrust {
        agencies,
        crls: vec![crl],
    }
}

impl Market {
    pub fn new(seed: u64) -> Market {
        Market::with_policy(seed, ArbiterPolicy::default())
    }

    pub fn with_policy(seed: u64, policy: ArbiterPolicy) -> Market {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let agency = Agency::create(
            "First Bonding Agency",
            SigningKey::generate(&mut rng),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut rng,
        )
        .unwrap();
        let trust = trust_of(&agency);
        let bob = keys(&mut rng);
        let bob_bond = bond(
            &agency,
            &mut rng,
            &bob,
            eur(100_000),
            vec![Role::Buyer],
            Conditions::default(),
            NOW.plus_secs(365 * DAY),
        );
        let alice_keys = keys(&mut rng);
        let alice_peer = alice_keys.peer();
        let alice_copy = clone_keys(&alice_keys);
        let alice = Arbiter::new(alice_keys, policy, trust.clone());
        let server_keys = keys(&mut rng);
        let server_peer = server_keys.peer();
        let server_copy = clone_keys(&server_keys);
        let server = Server::new(
            server_keys,
            trust.clone(),
            vec![alice_peer.sign],
            std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
        );
        Market {
            rng,
            agency,
            trust,
            bob,
            bob_bond,
            alice,
            alice_peer,
            alice_keys: alice_copy,
            server,
            server_peer,
            server_keys: server_copy,
        }
    }

    /// What [`Market::ccpo`] fills in, for tests that change a field.
    pub fn draft(&self) -> CcpoDraft {
        CcpoDraft {
            arbiter: self.alice_peer.id(),
            server: self.server_peer.id(),
            goods: "A first edition of 'Applied Cryptography', good condition".into(),
            price: eur(12_000),
            start: NOW,
            end: NOW.plus_secs(30 * DAY),
            terms: "Deliver within 5 days to the buyer's intermediary.".into(),
            bond: self.bob_bond.clone(),
        }
    }

    /// A second instance of the same server (same keys and trust) on fresh
    /// storage, working with `arbiters`.
    pub fn server_with_arbiters(&self, arbiters: Vec<agora_core::crypto::VerifyingKey>) -> Server {
        Server::new(
            clone_keys(&self.server_keys),
            self.trust.clone(),
            arbiters,
            std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
        )
    }

    /// An ARBITER_ACCEPTANCE signed with Alice's key without any of her
    /// checks: what a careless (or corrupted) Alice would issue. Lets a test
    /// reach the server's own checks.
    pub fn careless_acceptance<V: Variant>(&self, ccpo: &Ccpo, t3: Timestamp) -> Acceptance {
        let x3 = agora_cpo::msg::ArbiterAcceptance::<V> {
            x2_hash: [0x42; 32],
            t3,
            ccpo: ccpo.clone(),
            server: ccpo.server,
            variant: std::marker::PhantomData,
        };
        Acceptance {
            signed: agora_core::wire::cose::sign(&self.alice_keys.sign, &x3),
            ccpo: ccpo.clone(),
            t3,
            mode: V::MODE,
        }
    }

    /// Bob's M_0 of protocol 2 for `acceptance`, sealed to the server.
    pub fn post_request(
        &mut self,
        acceptance: &Acceptance,
    ) -> (Vec<u8>, buyer::ExpectPostChallenge) {
        buyer::request_post(&self.bob, &mut self.rng, acceptance, &self.server_peer).unwrap()
    }

    /// Bob's CCPO: 120.00 EUR, active from now for 30 days.
    pub fn ccpo(&mut self) -> Ccpo {
        self.ccpo_with(
            "A first edition of 'Applied Cryptography', good condition",
            eur(12_000),
        )
    }

    pub fn ccpo_with(&mut self, goods: &str, price: Money) -> Ccpo {
        Ccpo::new(
            CcpoDraft {
                arbiter: self.alice_peer.id(),
                server: self.server_peer.id(),
                goods: goods.into(),
                price,
                start: NOW,
                end: NOW.plus_secs(30 * DAY),
                terms: "Deliver within 5 days to the buyer's intermediary.".into(),
                bond: self.bob_bond.clone(),
            },
            &mut self.rng,
        )
        .unwrap()
    }

    /// Protocol 1 (or 5) run honestly to the end; every message as sent.
    pub fn approve<V: Variant>(
        &mut self,
        ccpo: Ccpo,
        additional_terms: &str,
    ) -> (Acceptance, [Vec<u8>; 4]) {
        self.approve_at::<V>(ccpo, additional_terms, NOW)
    }

    /// As [`Market::approve`], with everyone's clock at `now`.
    pub fn approve_at<V: Variant>(
        &mut self,
        ccpo: Ccpo,
        additional_terms: &str,
        now: Timestamp,
    ) -> (Acceptance, [Vec<u8>; 4]) {
        let (m0, bob) = buyer::request_approval::<V>(
            &self.bob,
            &mut self.rng,
            ccpo,
            additional_terms,
            &self.alice_peer,
        )
        .unwrap();
        let (m1, alice) = self
            .alice
            .handle_request::<V>(&mut self.rng, now, &m0)
            .unwrap();
        let (m2, bob) = bob.handle(&self.bob, &mut self.rng, &m1).unwrap();
        let issued = alice
            .handle_response(&self.alice, &mut self.rng, now, &m2)
            .unwrap();
        let acceptance = bob.handle(&self.bob, now, &issued.reply).unwrap();
        assert_eq!(
            acceptance.signed, issued.acceptance,
            "Bob stores what Alice signed"
        );
        (acceptance, [m0, m1, m2, issued.reply])
    }

    /// A seller's keys and her bond from the agency: 500.00 EUR, seller role,
    /// valid for a year.
    pub fn seller_keys(&mut self) -> (Keys, Vec<u8>) {
        let k = keys(&mut self.rng);
        let b = bond(
            &self.agency,
            &mut self.rng,
            &k,
            eur(50_000),
            vec![Role::Seller],
            Conditions::default(),
            NOW.plus_secs(365 * DAY),
        );
        (k, b)
    }

    /// Protocol 3 run honestly at `NOW`: the seller's browse session for
    /// [from, until).
    pub fn browse_session(
        &mut self,
        k: &Keys,
        bond: &[u8],
        from: Timestamp,
        until: Timestamp,
    ) -> agora_cpo::seller::SellerSession {
        let (m0, run) = agora_cpo::seller::request_session(
            k,
            &mut self.rng,
            bond.to_vec(),
            from,
            until,
            &self.server_peer,
        )
        .unwrap();
        let (m1, pending) = self
            .server
            .handle_browse_request(&mut self.rng, NOW, &m0)
            .unwrap();
        let (m2, run) = run.handle(k, &mut self.rng, &m1).unwrap();
        let granted = pending
            .handle_response(&self.server, &mut self.rng, NOW, &m2)
            .unwrap();
        let session = run.handle(k, &granted.reply).unwrap();
        assert_eq!(session.id(), granted.session);
        session
    }

    /// [`Self::browse_session`] for a day, from a minute ago.
    pub fn day_session(&mut self, k: &Keys, bond: &[u8]) -> agora_cpo::seller::SellerSession {
        self.browse_session(k, bond, NOW.minus_secs(60), NOW.plus_secs(DAY))
    }

    /// Protocol 2 run honestly to the end; every message as sent.
    pub fn post(&mut self, acceptance: &Acceptance) -> (PostReceipt, Posted, [Vec<u8>; 4]) {
        let (m0, bob) =
            buyer::request_post(&self.bob, &mut self.rng, acceptance, &self.server_peer).unwrap();
        let (m1, pending) = self
            .server
            .handle_post_request(&mut self.rng, NOW, &m0)
            .unwrap();
        let (m2, bob) = bob.handle(&self.bob, &mut self.rng, &m1).unwrap();
        let posted = pending
            .handle_response(&self.server, &mut self.rng, NOW, &m2)
            .unwrap();
        let receipt = bob.handle(&self.bob, &posted.reply).unwrap();
        let m3 = posted.reply.clone();
        (receipt, posted, [m0, m1, m2, m3])
    }
}
