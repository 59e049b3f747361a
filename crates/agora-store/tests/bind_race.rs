#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! First-come binding under contention, through the real protocol path
//! (paper section 4.2, issue 3): a CPO server whose board, replay cache and
//! browse sessions are on SQLite posts one first-come CPO (protocols 1 and
//! 2); 64 bonded sellers each open a browse session (protocol 3), receive a
//! listing of that CPO and make an offer (protocol 4); then all 64 offers
//! reach the server at once, from 64 threads. Exactly one binds; the 63
//! others are refused "already bound"; the binding is durable and the CPO
//! leaves the listing.

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::wire::cose;
use agora_core::{Currency, Error, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::msg::BoundCpo;
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::{Board, Sessions};
use agora_cpo::seller::{self, ExpectBound, SellerSession};
use agora_cpo::server::{Bound, Server};
use agora_cpo::{buyer, BondTrust, Ccpo, CcpoDraft, FirstCome, Keys};
use agora_pki::{Agency, BondParams, Conditions, CrlParams, Role, TrustAnchors};
use agora_store::Store;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Instant;

const SELLERS: usize = 64;
const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

/// A bond from `agency` to `holder`, valid around `NOW`, for any server.
fn bond(agency: &Agency, rng: &mut ChaCha20Rng, holder: &Keys, roles: Vec<Role>) -> Vec<u8> {
    agency
        .issue_bond(
            &BondParams {
                holder: holder.sign.verifying_key(),
                holder_x25519: holder.enc.public(),
                amount: eur(100_000),
                roles,
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

/// The agency as a trust anchor, with a current, empty CRL.
fn trust_of(agency: &Agency) -> BondTrust {
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

/// One seller, ready to offer: her keys, her session, her offer (M_1 of
/// protocol 4) and what she expects back.
struct Seller {
    keys: Keys,
    session: SellerSession,
    m1: Vec<u8>,
    expect: ExpectBound,
}

#[test]
fn sixty_four_sellers_race_to_bind_one_cpo_through_the_protocol_and_one_wins() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
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
    let bob_bond = bond(&agency, &mut rng, &bob, vec![Role::Buyer]);
    let alice_keys = keys(&mut rng);
    let alice_peer = alice_keys.peer();
    let alice = Arbiter::new(alice_keys, ArbiterPolicy::default(), trust.clone());
    let server_keys = keys(&mut rng);
    let server_peer = server_keys.peer();

    let store = Store::open_dir(dir.path()).unwrap();
    let server = Server::new(
        server_keys,
        trust,
        vec![alice_peer.sign],
        store.board(),
        store.replay_cache(),
        store.sessions(),
    );

    // Protocol 1: Alice approves Bob's first-come CCPO.
    let ccpo = Ccpo::new(
        CcpoDraft {
            arbiter: alice_peer.id(),
            server: server_peer.id(),
            goods: "A first edition of 'Applied Cryptography', good condition".into(),
            price: eur(12_000),
            start: NOW,
            end: NOW.plus_secs(30 * DAY),
            terms: "Deliver within 5 days to the buyer's intermediary.".into(),
            bond: bob_bond,
        },
        &mut rng,
    )
    .unwrap();
    let cpo_id = ccpo.id;
    let (m0, b) =
        buyer::request_approval::<FirstCome>(&bob, &mut rng, ccpo, "", &alice_peer).unwrap();
    let (m1, a) = alice
        .handle_request::<FirstCome>(&mut rng, NOW, &m0)
        .unwrap();
    let (m2, b) = b.handle(&bob, &mut rng, &m1).unwrap();
    let issued = a.handle_response(&alice, &mut rng, NOW, &m2).unwrap();
    let acceptance = b.handle(&bob, NOW, &issued.reply).unwrap();

    // Protocol 2: the server posts it, on the SQLite board.
    let (m0, b) = buyer::request_post(&bob, &mut rng, &acceptance, &server_peer).unwrap();
    let (m1, pending) = server.handle_post_request(&mut rng, NOW, &m0).unwrap();
    let (m2, b) = b.handle(&bob, &mut rng, &m1).unwrap();
    let posted = pending
        .handle_response(&server, &mut rng, NOW, &m2)
        .unwrap();
    b.handle(&bob, &posted.reply).unwrap();
    let listed = server.board().list_open(NOW, None, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].ccpo.id, cpo_id);
    let posted_at = started.elapsed();

    // 64 sellers: a seller bond each, a browse session (protocol 3), a
    // listing of the CPO and an offer (protocol 4, steps 1 and 2).
    let sellers: Vec<Seller> = (0..SELLERS)
        .map(|i| {
            let keys = keys(&mut rng);
            let bond = bond(&agency, &mut rng, &keys, vec![Role::Seller]);
            let (m0, pam) = seller::request_session(
                &keys,
                &mut rng,
                bond,
                NOW,
                NOW.plus_secs(DAY),
                &server_peer,
            )
            .unwrap();
            let (m1, pending) = server.handle_browse_request(&mut rng, NOW, &m0).unwrap();
            let (m2, pam) = pam.handle(&keys, &mut rng, &m1).unwrap();
            let granted = pending
                .handle_response(&server, &mut rng, NOW, &m2)
                .unwrap();
            let session = pam.handle(&keys, &granted.reply).unwrap();
            assert_eq!(session.id(), granted.session);
            let listing = server
                .listing(&mut rng, NOW, &session.id(), &cpo_id)
                .unwrap();
            let listing = session.open_listing(&listing).unwrap();
            assert_eq!(listing.ccpo().id, cpo_id);
            let (m1, expect) = session
                .offer(&mut rng, &listing, &format!("seller {i} delivers tomorrow"))
                .unwrap();
            Seller {
                keys,
                session,
                m1,
                expect,
            }
        })
        .collect();
    let sessions_at = started.elapsed();

    // The race: 64 offers at once, each thread with its own RNG; the server
    // is shared by reference.
    let barrier = std::sync::Barrier::new(SELLERS);
    let outcomes: Vec<Result<Bound, Error>> = std::thread::scope(|s| {
        let hs: Vec<_> = sellers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (server, barrier, m1) = (&server, &barrier, &p.m1);
                s.spawn(move || {
                    let mut rng = ChaCha20Rng::seed_from_u64(1_000 + i as u64);
                    barrier.wait();
                    server.handle_bind_offer(&mut rng, NOW, m1)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let raced_at = started.elapsed();

    let winners: Vec<usize> = (0..SELLERS).filter(|i| outcomes[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one binding: {outcomes:?}");
    let w = winners[0];
    for (i, o) in outcomes.iter().enumerate() {
        if i != w {
            assert!(
                matches!(o, Err(Error::Refused(m)) if m.contains("already bound")),
                "seller {i}: {o:?}"
            );
        }
    }
    let mut outcomes = outcomes;
    let bound = outcomes.swap_remove(w).unwrap();
    let contract = cose::verify::<BoundCpo>(&bound.signed, &server_peer.sign).unwrap();
    assert_eq!(contract, bound.message);
    assert_eq!(contract.ccpo.id, cpo_id);
    let mut sellers = sellers;
    let winner = sellers.swap_remove(w);
    let receipt = winner.expect.handle(&winner.session, &bound.reply).unwrap();
    assert_eq!(receipt.signed, bound.signed);
    assert_eq!(
        receipt.message.offer,
        format!("seller {w} delivers tomorrow")
    );
    let winner_id = winner.keys.id();
    let winner_session = winner.session.id();

    // Durable: a reopened store has the winner's binding, and the CPO is no
    // longer listed.
    drop(server);
    drop(store);
    let store = Store::open_dir(dir.path()).unwrap();
    let binding = store.board().binding(&cpo_id).unwrap().expect("bound");
    assert_eq!(binding.seller, winner_id);
    assert_eq!(binding.bound_cpo, bound.signed);
    assert_eq!(binding.bound_at, NOW);
    assert!(store.board().list_open(NOW, None, 10).unwrap().is_empty());
    assert!(store.board().get(&cpo_id).unwrap().is_some());
    let s = store
        .sessions()
        .get(&winner_session)
        .unwrap()
        .expect("session");
    assert_eq!(s.seller, winner_id);
    assert_eq!(s.ended_at, None);

    eprintln!(
        "bind race: posting {posted_at:?}, 64 seller bonds + sessions + offers {:?}, \
         race {:?}, total {:?}",
        sessions_at - posted_at,
        raced_at - sessions_at,
        started.elapsed()
    );
}
