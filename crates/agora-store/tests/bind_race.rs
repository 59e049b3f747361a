#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! First-come binding under contention, through the real protocol path
//! (paper section 4.2, issue 3): a CPO server whose board, replay cache and
//! browse sessions are on SQLite posts one first-come CPO (protocols 1 and
//! 2); 64 bonded sellers each open a browse session (protocol 3), receive a
//! listing of that CPO and make an offer (protocol 4); then all 64 offers
//! reach the server at once, from 64 threads. Exactly one binds; the 63
//! others are refused "already bound"; the binding is durable and the CPO
//! leaves the listing.

use agora_core::crypto::VerifyingKey;
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
use agora_store::SqliteStore;
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

type SqliteServer = Server;

/// A CPO server on `store`, its keys drawn from `seed` (so that two servers
/// made with one seed are one server in two processes).
fn sqlite_server(
    store: &SqliteStore,
    trust: BondTrust,
    arbiter: VerifyingKey,
    seed: u64,
) -> SqliteServer {
    Server::new(
        keys(&mut ChaCha20Rng::seed_from_u64(seed)),
        trust,
        vec![arbiter],
        std::sync::Arc::new(store.cpo()),
    )
}

/// A first-come CPO approved by Alice and posted on `store`'s board by a
/// server whose keys come from `server_seed`.
struct Market {
    agency: Agency,
    trust: BondTrust,
    arbiter: VerifyingKey,
    server: SqliteServer,
    server_peer: agora_cpo::Peer,
    cpo_id: [u8; 32],
}

fn market(store: &SqliteStore, rng: &mut ChaCha20Rng, server_seed: u64) -> Market {
    let rng = &mut *rng;
    let agency = Agency::create(
        "First Bonding Agency",
        SigningKey::generate(rng),
        NOW.minus_secs(30 * DAY),
        NOW.plus_secs(3650 * DAY),
        rng,
    )
    .unwrap();
    let trust = trust_of(&agency);
    let bob = keys(rng);
    let bob_bond = bond(&agency, rng, &bob, vec![Role::Buyer]);
    let alice_keys = keys(rng);
    let alice_peer = alice_keys.peer();
    let alice = Arbiter::new(alice_keys, ArbiterPolicy::default(), trust.clone());
    let server = sqlite_server(store, trust.clone(), alice_peer.sign, server_seed);
    let server_peer = keys(&mut ChaCha20Rng::seed_from_u64(server_seed)).peer();

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
        rng,
    )
    .unwrap();
    let cpo_id = ccpo.id;
    let (m0, b) = buyer::request_approval::<FirstCome>(&bob, rng, ccpo, "", &alice_peer).unwrap();
    let (m1, a) = alice.handle_request::<FirstCome>(rng, NOW, &m0).unwrap();
    let (m2, b) = b.handle(&bob, rng, &m1).unwrap();
    let issued = a.handle_response(&alice, rng, NOW, &m2).unwrap();
    let acceptance = b.handle(&bob, NOW, &issued.reply).unwrap();

    // Protocol 2: the server posts it, on the SQLite board.
    let (m0, b) = buyer::request_post(&bob, rng, &acceptance, &server_peer).unwrap();
    let (m1, pending) = server.handle_post_request(rng, NOW, &m0).unwrap();
    let (m2, b) = b.handle(&bob, rng, &m1).unwrap();
    let posted = pending.handle_response(&server, rng, NOW, &m2).unwrap();
    b.handle(&bob, &posted.reply).unwrap();
    let listed = server.board().list_open(NOW, None, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].ccpo.id, cpo_id);
    Market {
        agency,
        trust,
        arbiter: alice_peer.sign,
        server,
        server_peer,
        cpo_id,
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

/// Seller `i`: a seller bond, a browse session (protocol 3), a listing of
/// CPO `cpo_id` and her offer for it (protocol 4, steps 1 and 2).
fn ready_seller(
    server: &SqliteServer,
    rng: &mut ChaCha20Rng,
    agency: &Agency,
    server_peer: &agora_cpo::Peer,
    cpo_id: &[u8; 32],
    i: usize,
) -> Seller {
    let keys = keys(rng);
    let bond = bond(agency, rng, &keys, vec![Role::Seller]);
    let (m0, pam) =
        seller::request_session(&keys, rng, bond, NOW, NOW.plus_secs(DAY), server_peer).unwrap();
    let (m1, pending) = server.handle_browse_request(rng, NOW, &m0).unwrap();
    let (m2, pam) = pam.handle(&keys, rng, &m1).unwrap();
    let granted = pending.handle_response(server, rng, NOW, &m2).unwrap();
    let session = pam.handle(&keys, &granted.reply).unwrap();
    assert_eq!(session.id(), granted.session);
    let listing = server.listing(rng, NOW, &session.id(), cpo_id).unwrap();
    let listing = session.open_listing(&listing).unwrap();
    assert_eq!(listing.ccpo().id, *cpo_id);
    let (m1, expect) = session
        .offer(rng, &listing, &format!("seller {i} delivers tomorrow"))
        .unwrap();
    Seller {
        keys,
        session,
        m1,
        expect,
    }
}

/// Two servers with the same keys on one database, each on its own
/// `SqliteStore`, as two processes would be: the market on the first, and the
/// second (`other`). Keep the directory alive while they run.
struct TwoProcesses {
    _dir: tempfile::TempDir,
    rng: ChaCha20Rng,
    agency: Agency,
    server: SqliteServer,
    server_peer: agora_cpo::Peer,
    cpo_id: [u8; 32],
    other: SqliteServer,
}

fn two_processes(rng_seed: u64, server_seed: u64) -> TwoProcesses {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(rng_seed);
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let m = market(&store, &mut rng, server_seed);
    let other_store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let other = sqlite_server(&other_store, m.trust, m.arbiter, server_seed);
    TwoProcesses {
        _dir: dir,
        rng,
        agency: m.agency,
        server: m.server,
        server_peer: m.server_peer,
        cpo_id: m.cpo_id,
        other,
    }
}

#[test]
fn sixty_four_sellers_race_to_bind_one_cpo_through_the_protocol_and_one_wins() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let Market {
        agency,
        server,
        server_peer,
        cpo_id,
        ..
    } = market(&store, &mut rng, 77);
    let posted_at = started.elapsed();

    // 64 sellers: a seller bond each, a browse session (protocol 3), a
    // listing of the CPO and an offer (protocol 4, steps 1 and 2).
    let sellers: Vec<Seller> = (0..SELLERS)
        .map(|i| ready_seller(&server, &mut rng, &agency, &server_peer, &cpo_id, i))
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
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
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

/// A browse session ended by another process sharing the store (here a
/// second server, with the same keys, on the same database) binds nothing
/// through a server that read it live before and still remembers it so:
/// the bind transaction reads the session's end. The server then forgets
/// it, and a live session of another seller still binds.
#[test]
fn a_session_ended_by_another_process_binds_nothing() {
    let TwoProcesses {
        mut rng,
        agency,
        server,
        server_peer,
        cpo_id,
        other,
        _dir,
    } = two_processes(4, 78);
    let pam = ready_seller(&server, &mut rng, &agency, &server_peer, &cpo_id, 0);
    let quinn = ready_seller(&server, &mut rng, &agency, &server_peer, &cpo_id, 1);

    let end = pam.session.end(&mut rng);
    assert_eq!(
        other.handle_end_session(NOW, &end).unwrap(),
        agora_cpo::ports::EndOutcome::Ended
    );

    let refused = server.handle_bind_offer(&mut rng, NOW, &pam.m1);
    assert!(
        matches!(&refused, Err(Error::NotAuthorised(m)) if m.contains("ended")),
        "{refused:?}"
    );
    assert_eq!(server.board().binding(&cpo_id).unwrap(), None);
    // Forgotten: her next listing request is refused before any listing.
    let again = server.listing(&mut rng, NOW, &pam.session.id(), &cpo_id);
    assert!(
        matches!(&again, Err(Error::NotAuthorised(m)) if m.contains("ended")),
        "{again:?}"
    );

    let bound = server.handle_bind_offer(&mut rng, NOW, &quinn.m1).unwrap();
    quinn.expect.handle(&quinn.session, &bound.reply).unwrap();
    let binding = other.board().binding(&cpo_id).unwrap().unwrap();
    assert_eq!(binding.seller, quinn.keys.peer().id());
}

/// A server keeps the CPOs it has read (a listing then reads nothing), so it
/// may not know at once that another process bound one. The binding
/// transaction decides all the same, and from its answer on the server
/// refuses the CPO before signing or listing anything.
#[test]
fn a_cpo_bound_by_another_process_is_refused_and_then_known_bound() {
    let TwoProcesses {
        mut rng,
        agency,
        server,
        server_peer,
        cpo_id,
        other,
        _dir,
    } = two_processes(5, 79);
    // Pam's listing made this server read (and keep) the CPO, open.
    let pam = ready_seller(&server, &mut rng, &agency, &server_peer, &cpo_id, 0);
    let quinn = ready_seller(&other, &mut rng, &agency, &server_peer, &cpo_id, 1);
    let bound = other.handle_bind_offer(&mut rng, NOW, &quinn.m1).unwrap();
    quinn.expect.handle(&quinn.session, &bound.reply).unwrap();

    let refused = server.handle_bind_offer(&mut rng, NOW, &pam.m1);
    assert!(
        matches!(&refused, Err(Error::Refused(m)) if m.contains("already bound")),
        "{refused:?}"
    );
    let state = server.board().state(&cpo_id).unwrap().unwrap();
    assert!(state.bound && !state.taken_down, "learned from the refusal");
    let again = server.listing(&mut rng, NOW, &pam.session.id(), &cpo_id);
    assert!(
        matches!(&again, Err(Error::Refused(m)) if m.contains("already bound")),
        "{again:?}"
    );
    let binding = server.board().binding(&cpo_id).unwrap().unwrap();
    assert_eq!(binding.seller, quinn.keys.peer().id());
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
