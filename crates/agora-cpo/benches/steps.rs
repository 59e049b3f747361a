#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! The CPU cost of each protocol step of the CPO roles (paper sections
//! 3.6-3.9), one thread, with the in-memory ports (`MemoryBoard`,
//! `MemoryReplayCache`, `MemorySessions`): no storage cost, only the role's
//! own work. One criterion group per role (`cpo_buyer`, `cpo_arbiter`,
//! `cpo_server`, `cpo_seller`); each bench id starts with its protocol
//! (`p1_` approval, `p2_` posting, `p3_` browse session, `p4_` binding).
//!
//! Steps that consume a state (a challenge answered, a run finished, a CPO
//! bound) get a fresh one per iteration from `iter_batched`, built outside
//! the measurement; each measured bind is on its own freshly posted
//! first-come CPO with its own listing, so every bind wins.
//!
//! `cargo bench -p agora-cpo --bench steps` (about a minute and a half);
//! smoke mode: `cargo bench -p agora-cpo --bench steps -- --test`.

use agora_core::crypto::{Rng, SigningKey, X25519Secret};
use agora_core::wire::cose;
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::buyer::{self, Acceptance};
use agora_cpo::msg::ArbiterAcceptance;
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::BoardEntry;
use agora_cpo::seller::{self, SellerSession};
use agora_cpo::server::Server;
use agora_cpo::session::{BindingKey, Channel};
use agora_cpo::{BondTrust, Ccpo, CcpoDraft, FirstCome, Keys, Peer};
use agora_pki::{Agency, BondParams, Conditions, CrlParams, Role, TrustAnchors};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::cell::Cell;
use std::time::Duration;

const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;
const OFFER: &str = "Ship by registered mail to the buyer's intermediary.";

type MemServer = Server;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
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
                not_before: NOW.minus_secs(DAY),
                not_after: NOW.plus_secs(365 * DAY),
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            rng,
        )
        .unwrap()
        .der
}

/// One agency (with a current CRL), Bob with a buyer bond, Alice the
/// arbiter, Pam with a seller bond, and a server on in-memory ports.
struct Market {
    bob: Keys,
    bob_bond: Vec<u8>,
    alice: Arbiter,
    alice_peer: Peer,
    /// Alice's signing key again, to make acceptances for fresh CCPOs
    /// without running protocol 1 in every setup (the server's checks are
    /// the same).
    alice_sign: SigningKey,
    server: MemServer,
    server_peer: Peer,
    pam: Keys,
    pam_bond: Vec<u8>,
    /// A posted entry (from a real protocol 2 run): its evidence blobs are
    /// reused for CPOs put on the board directly.
    template: BoardEntry,
}

impl Market {
    fn new(seed: u64) -> Market {
        let mut rng = rng(seed);
        let agency = Agency::create(
            "First Bonding Agency",
            SigningKey::generate(&mut rng),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut rng,
        )
        .unwrap();
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
        let trust = BondTrust {
            agencies,
            crls: vec![crl],
        };
        let bob = keys(&mut rng);
        let bob_bond = bond(&agency, &mut rng, &bob, Role::Buyer);
        let pam = keys(&mut rng);
        let pam_bond = bond(&agency, &mut rng, &pam, Role::Seller);
        let alice_keys = keys(&mut rng);
        let alice_peer = alice_keys.peer();
        let alice_sign = SigningKey::from_seed(&alice_keys.sign.to_seed());
        let alice = Arbiter::new(alice_keys, ArbiterPolicy::default(), trust.clone());
        let server_keys = keys(&mut rng);
        let server_peer = server_keys.peer();
        let server = Server::new(
            server_keys,
            trust,
            vec![alice_peer.sign],
            std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
        );
        let placeholder = Ccpo::with_id(
            [0; 32],
            Market::draft_of(&alice_peer, &server_peer, &bob_bond),
        )
        .unwrap();
        let mut m = Market {
            bob,
            bob_bond,
            alice,
            alice_peer,
            alice_sign,
            server,
            server_peer,
            pam,
            pam_bond,
            template: BoardEntry {
                ccpo: placeholder,
                mode: agora_cpo::Mode::FirstCome,
                buyer: alice_peer.id(),
                posted_at: NOW,
                acceptance: vec![],
                posted: vec![],
            },
        };
        // One honest run of protocols 1 and 2, for the template.
        let ccpo = m.ccpo(&mut rng);
        let (m0, b) =
            buyer::request_approval::<FirstCome>(&m.bob, &mut rng, ccpo, "", &m.alice_peer)
                .unwrap();
        let (m1, a) = m
            .alice
            .handle_request::<FirstCome>(&mut rng, NOW, &m0)
            .unwrap();
        let (m2, b) = b.handle(&m.bob, &mut rng, &m1).unwrap();
        let issued = a.handle_response(&m.alice, &mut rng, NOW, &m2).unwrap();
        let acc = b.handle(&m.bob, NOW, &issued.reply).unwrap();
        let (reply, expect) = m.post_until_reply(&mut rng, &acc);
        expect.handle(&m.bob, &reply.0).unwrap();
        m.template = reply.1;
        m
    }

    fn draft_of(alice: &Peer, server: &Peer, bond: &[u8]) -> CcpoDraft {
        CcpoDraft {
            arbiter: alice.id(),
            server: server.id(),
            goods: "A first edition of 'Applied Cryptography', good condition".into(),
            price: eur(12_000),
            start: NOW,
            end: NOW.plus_secs(30 * DAY),
            terms: "Deliver within 5 days to the buyer's intermediary.".into(),
            bond: bond.to_vec(),
        }
    }

    /// Bob's CCPO, with a fresh id.
    fn ccpo(&self, rng: &mut impl Rng) -> Ccpo {
        Ccpo::new(
            Market::draft_of(&self.alice_peer, &self.server_peer, &self.bob_bond),
            rng,
        )
        .unwrap()
    }

    /// An ARBITER_ACCEPTANCE of `ccpo` signed with Alice's key at NOW.
    fn acceptance(&self, ccpo: Ccpo) -> Acceptance {
        let x3 = ArbiterAcceptance::<FirstCome> {
            x2_hash: [0x42; 32],
            t3: NOW,
            server: ccpo.server,
            ccpo: ccpo.clone(),
            variant: std::marker::PhantomData,
        };
        Acceptance {
            signed: cose::sign(&self.alice_sign, &x3),
            ccpo,
            t3: NOW,
            mode: agora_cpo::Mode::FirstCome,
        }
    }

    /// Protocol 2 up to the server's M_3 (the CPO is then posted): the
    /// reply and entry, and Bob's state waiting for it.
    fn post_until_reply(
        &self,
        rng: &mut impl Rng,
        acc: &Acceptance,
    ) -> ((Vec<u8>, BoardEntry), buyer::ExpectPosted) {
        let (m0, b) = buyer::request_post(&self.bob, rng, acc, &self.server_peer).unwrap();
        let (m1, pending) = self.server.handle_post_request(rng, NOW, &m0).unwrap();
        let (m2, b) = b.handle(&self.bob, rng, &m1).unwrap();
        let posted = pending
            .handle_response(&self.server, rng, NOW, &m2)
            .unwrap();
        ((posted.reply, posted.entry), b)
    }

    /// A fresh first-come CPO put on the board directly (no protocol 2).
    fn post_direct(&self, rng: &mut impl Rng) -> [u8; 32] {
        let mut e = self.template.clone();
        e.ccpo = self.ccpo(rng);
        let id = e.ccpo.id;
        self.server.board().post(&e).unwrap();
        id
    }

    /// Protocol 3 run honestly: Pam's session, T = `[from, until)`.
    fn session(&self, rng: &mut impl Rng, from: Timestamp, until: Timestamp) -> SellerSession {
        let (m0, pam) = seller::request_session(
            &self.pam,
            rng,
            self.pam_bond.clone(),
            from,
            until,
            &self.server_peer,
        )
        .unwrap();
        let (m1, pending) = self.server.handle_browse_request(rng, NOW, &m0).unwrap();
        let (m2, pam) = pam.handle(&self.pam, rng, &m1).unwrap();
        let granted = pending
            .handle_response(&self.server, rng, NOW, &m2)
            .unwrap();
        pam.handle(&self.pam, &granted.reply).unwrap()
    }

    /// Protocol 4 up to Pam's offer on a freshly posted CPO.
    fn offer(&self, rng: &mut impl Rng, s: &SellerSession) -> (Vec<u8>, seller::ExpectBound) {
        let cpo = self.post_direct(rng);
        let l = self.server.listing(rng, NOW, &s.id(), &cpo).unwrap();
        let l = s.open_listing(&l).unwrap();
        s.offer(rng, &l, OFFER).unwrap()
    }
}

fn configure(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
}

fn buyer_steps(c: &mut Criterion) {
    let m = Market::new(1);
    let (mut setup_rng, mut rng) = (rng(10), rng(11));
    let mut g = c.benchmark_group("cpo_buyer");
    configure(&mut g);

    let ccpo = m.ccpo(&mut setup_rng);
    g.bench_function("p1_request_approval", |b| {
        b.iter_batched(
            || ccpo.clone(),
            |ccpo| {
                buyer::request_approval::<FirstCome>(&m.bob, &mut rng, ccpo, "", &m.alice_peer)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p1_challenge_to_response", |b| {
        b.iter_batched(
            || {
                let (m0, bob) = buyer::request_approval::<FirstCome>(
                    &m.bob,
                    &mut setup_rng,
                    ccpo.clone(),
                    "",
                    &m.alice_peer,
                )
                .unwrap();
                let (m1, _) = m
                    .alice
                    .handle_request::<FirstCome>(&mut setup_rng, NOW, &m0)
                    .unwrap();
                (m1, bob)
            },
            |(m1, bob)| bob.handle(&m.bob, &mut rng, &m1).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p1_accept", |b| {
        b.iter_batched(
            || {
                let (m0, bob) = buyer::request_approval::<FirstCome>(
                    &m.bob,
                    &mut setup_rng,
                    ccpo.clone(),
                    "",
                    &m.alice_peer,
                )
                .unwrap();
                let (m1, alice) = m
                    .alice
                    .handle_request::<FirstCome>(&mut setup_rng, NOW, &m0)
                    .unwrap();
                let (m2, bob) = bob.handle(&m.bob, &mut setup_rng, &m1).unwrap();
                let issued = alice
                    .handle_response(&m.alice, &mut setup_rng, NOW, &m2)
                    .unwrap();
                (issued.reply, bob)
            },
            |(m3, bob)| bob.handle(&m.bob, NOW, &m3).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // Never posted: the server's step 2 may be repeated on it.
    let unposted = m.acceptance(m.ccpo(&mut setup_rng));
    g.bench_function("p2_request_post", |b| {
        b.iter(|| buyer::request_post(&m.bob, &mut rng, &unposted, &m.server_peer).unwrap())
    });
    g.bench_function("p2_challenge_to_response", |b| {
        b.iter_batched(
            || {
                let (m0, bob) =
                    buyer::request_post(&m.bob, &mut setup_rng, &unposted, &m.server_peer).unwrap();
                let (m1, _) = m
                    .server
                    .handle_post_request(&mut setup_rng, NOW, &m0)
                    .unwrap();
                (m1, bob)
            },
            |(m1, bob)| bob.handle(&m.bob, &mut rng, &m1).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p2_receipt", |b| {
        b.iter_batched(
            || {
                let acc = m.acceptance(m.ccpo(&mut setup_rng));
                let ((m3, _), bob) = m.post_until_reply(&mut setup_rng, &acc);
                (m3, bob)
            },
            |(m3, bob)| bob.handle(&m.bob, &m3).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn arbiter_steps(c: &mut Criterion) {
    let m = Market::new(2);
    let (mut setup_rng, mut rng) = (rng(20), rng(21));
    let mut g = c.benchmark_group("cpo_arbiter");
    configure(&mut g);

    let ccpo = m.ccpo(&mut setup_rng);
    g.bench_function("p1_handle_request", |b| {
        b.iter_batched(
            || {
                buyer::request_approval::<FirstCome>(
                    &m.bob,
                    &mut setup_rng,
                    ccpo.clone(),
                    "",
                    &m.alice_peer,
                )
                .unwrap()
                .0
            },
            |m0| {
                m.alice
                    .handle_request::<FirstCome>(&mut rng, NOW, &m0)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p1_handle_response", |b| {
        b.iter_batched(
            || {
                let (m0, bob) = buyer::request_approval::<FirstCome>(
                    &m.bob,
                    &mut setup_rng,
                    ccpo.clone(),
                    "",
                    &m.alice_peer,
                )
                .unwrap();
                let (m1, alice) = m
                    .alice
                    .handle_request::<FirstCome>(&mut setup_rng, NOW, &m0)
                    .unwrap();
                let (m2, _) = bob.handle(&m.bob, &mut setup_rng, &m1).unwrap();
                (m2, alice)
            },
            |(m2, alice)| alice.handle_response(&m.alice, &mut rng, NOW, &m2).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn server_steps(c: &mut Criterion) {
    let m = Market::new(3);
    let (mut setup_rng, mut rng) = (rng(30), rng(31));
    let mut g = c.benchmark_group("cpo_server");
    configure(&mut g);

    let unposted = m.acceptance(m.ccpo(&mut setup_rng));
    g.bench_function("p2_handle_post_request", |b| {
        b.iter_batched(
            || {
                buyer::request_post(&m.bob, &mut setup_rng, &unposted, &m.server_peer)
                    .unwrap()
                    .0
            },
            |m0| m.server.handle_post_request(&mut rng, NOW, &m0).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p2_handle_response", |b| {
        b.iter_batched(
            || {
                let acc = m.acceptance(m.ccpo(&mut setup_rng));
                let (m0, bob) =
                    buyer::request_post(&m.bob, &mut setup_rng, &acc, &m.server_peer).unwrap();
                let (m1, pending) = m
                    .server
                    .handle_post_request(&mut setup_rng, NOW, &m0)
                    .unwrap();
                let (m2, _) = bob.handle(&m.bob, &mut setup_rng, &m1).unwrap();
                (m2, pending)
            },
            |(m2, pending)| {
                pending
                    .handle_response(&m.server, &mut rng, NOW, &m2)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    let (from, until) = (NOW.minus_secs(60), NOW.plus_secs(DAY));
    g.bench_function("p3_handle_browse_request", |b| {
        b.iter_batched(
            || {
                seller::request_session(
                    &m.pam,
                    &mut setup_rng,
                    m.pam_bond.clone(),
                    from,
                    until,
                    &m.server_peer,
                )
                .unwrap()
                .0
            },
            |m0| m.server.handle_browse_request(&mut rng, NOW, &m0).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p3_handle_response", |b| {
        b.iter_batched(
            || {
                let (m0, pam) = seller::request_session(
                    &m.pam,
                    &mut setup_rng,
                    m.pam_bond.clone(),
                    from,
                    until,
                    &m.server_peer,
                )
                .unwrap();
                let (m1, pending) = m
                    .server
                    .handle_browse_request(&mut setup_rng, NOW, &m0)
                    .unwrap();
                let (m2, _) = pam.handle(&m.pam, &mut setup_rng, &m1).unwrap();
                (m2, pending)
            },
            |(m2, pending)| {
                pending
                    .handle_response(&m.server, &mut rng, NOW, &m2)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    // Listings stay in the server's table until answered; its clock moves
    // one second every 64 listings so that old ones expire (after
    // LISTING_TTL_SECS) and the table never fills. A separate market, so
    // that the binds below run at NOW.
    {
        let lm = Market::new(4);
        let session = lm.session(
            &mut setup_rng,
            NOW.minus_secs(60),
            NOW.plus_secs(agora_cpo::MAX_SESSION_SECS - 60),
        );
        let cpo = lm.post_direct(&mut setup_rng);
        let (sid, n) = (session.id(), Cell::new(0u64));
        g.bench_function("p4_listing", |b| {
            b.iter(|| {
                let now = NOW.plus_secs(n.get() / 64);
                n.set(n.get() + 1);
                lm.server.listing(&mut rng, now, &sid, &cpo).unwrap()
            })
        });
        assert!(n.get() / 64 < agora_cpo::MAX_SESSION_SECS - 120);
    }

    let session = m.session(&mut setup_rng, from, until);
    g.bench_function("p4_handle_bind_offer", |b| {
        b.iter_batched(
            || m.offer(&mut setup_rng, &session).0,
            |m1| m.server.handle_bind_offer(&mut rng, NOW, &m1).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // Part of both listing and handle_bind_offer: the server derives the
    // session's channel keys from K_p for each message.
    let k_p = BindingKey::from_bytes(*session.k_p().expose());
    g.bench_function("p4_derive_channel", |b| b.iter(|| Channel::new(&k_p)));
    g.finish();
}

fn seller_steps(c: &mut Criterion) {
    let m = Market::new(5);
    let (mut setup_rng, mut rng) = (rng(50), rng(51));
    let mut g = c.benchmark_group("cpo_seller");
    configure(&mut g);

    let (from, until) = (NOW.minus_secs(60), NOW.plus_secs(DAY));
    g.bench_function("p3_request_session", |b| {
        b.iter_batched(
            || m.pam_bond.clone(),
            |bond| {
                seller::request_session(&m.pam, &mut rng, bond, from, until, &m.server_peer)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p3_challenge_to_response", |b| {
        b.iter_batched(
            || {
                let (m0, pam) = seller::request_session(
                    &m.pam,
                    &mut setup_rng,
                    m.pam_bond.clone(),
                    from,
                    until,
                    &m.server_peer,
                )
                .unwrap();
                let (m1, _) = m
                    .server
                    .handle_browse_request(&mut setup_rng, NOW, &m0)
                    .unwrap();
                (m1, pam)
            },
            |(m1, pam)| pam.handle(&m.pam, &mut rng, &m1).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("p3_grant", |b| {
        b.iter_batched(
            || {
                let (m0, pam) = seller::request_session(
                    &m.pam,
                    &mut setup_rng,
                    m.pam_bond.clone(),
                    from,
                    until,
                    &m.server_peer,
                )
                .unwrap();
                let (m1, pending) = m
                    .server
                    .handle_browse_request(&mut setup_rng, NOW, &m0)
                    .unwrap();
                let (m2, pam) = pam.handle(&m.pam, &mut setup_rng, &m1).unwrap();
                let granted = pending
                    .handle_response(&m.server, &mut setup_rng, NOW, &m2)
                    .unwrap();
                (granted.reply, pam)
            },
            |(m3, pam)| pam.handle(&m.pam, &m3).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let session = m.session(&mut setup_rng, from, until);
    let cpo = m.post_direct(&mut setup_rng);
    let listing_bytes = m
        .server
        .listing(&mut setup_rng, NOW, &session.id(), &cpo)
        .unwrap();
    g.bench_function("p4_open_listing", |b| {
        b.iter(|| session.open_listing(&listing_bytes).unwrap())
    });
    let listing = session.open_listing(&listing_bytes).unwrap();
    g.bench_function("p4_offer", |b| {
        b.iter(|| session.offer(&mut rng, &listing, OFFER).unwrap())
    });
    g.bench_function("p4_bound_receipt", |b| {
        b.iter_batched(
            || {
                let (m1, expect) = m.offer(&mut setup_rng, &session);
                let bound = m
                    .server
                    .handle_bind_offer(&mut setup_rng, NOW, &m1)
                    .unwrap();
                (bound.reply, expect)
            },
            |(m2, expect)| expect.handle(&session, &m2).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    buyer_steps,
    arbiter_steps,
    server_steps,
    seller_steps
);
criterion_main!(benches);
