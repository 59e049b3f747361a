#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Named attacks on protocols 1, 5 and 2 (paper section 4.3, "Direct
//! Attacks"), one test each. Every test asserts the specific error and that
//! nothing changed: the board is still empty (or as it was), and an honest
//! run afterwards still works.

mod common;

use agora_core::crypto::{hpke, SigningKey, X25519Public};
use agora_core::wire::{self, cose, envelope, Encoder, Message, Tag};
use agora_core::{DecodeError, Error, KeyId, Money};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::buyer::{self, Acceptance};
use agora_cpo::msg::{
    ArbiterAcceptance, ArbiterChallenge, ArbiterRequest, ArbiterResponse, Mode, PostChallenge,
    PostRequest, PostResponse,
};
use agora_cpo::policy::{ArbiterPolicy, Template};

use agora_cpo::server::Server;
use agora_cpo::{
    Bidding, Ccpo, FirstCome, Peer, ACCEPTANCE_MAX_AGE_SECS, MAX_CLOCK_SKEW_SECS,
    SESSION_TIMEOUT_SECS,
};
use agora_pki::{Agency, Conditions, CrlParams, Revocation, RevocationReason, Role};
use common::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::marker::PhantomData;

// ----------------------------------------------------------------- helpers

fn err<T: std::fmt::Debug>(r: agora_core::Result<T>) -> Error {
    r.expect_err("the attack must be refused")
}

/// A refused certificate, with its stable refusal code (see
/// `impl From<Refusal> for agora_core::Error` in agora-pki).
fn assert_cert_refused(e: &Error, code: &str) {
    match e {
        Error::Refused(msg) => assert!(
            msg.starts_with(&format!("certificate {code}:")),
            "expected certificate {code}, got {msg:?}"
        ),
        other => panic!("expected a refused certificate ({code}), got {other:?}"),
    }
}

fn not_authorised(e: &Error, what: &str) {
    match e {
        Error::NotAuthorised(msg) => assert!(msg.contains(what), "{msg:?} lacks {what:?}"),
        other => panic!("expected NotAuthorised({what:?}), got {other:?}"),
    }
}

fn wrong_tag(e: &Error, expected: Tag, found: Tag) {
    assert_eq!(
        *e,
        Error::Decode(DecodeError::WrongTag { expected, found }),
        "expected wrong tag"
    );
}

fn board_len(s: &Server) -> usize {
    s.board().list_open(NOW, None, 100).unwrap().len()
}

fn assert_board_empty(m: &Market) {
    assert_eq!(board_len(&m.server), 0, "nothing was posted");
}

/// After an attack, an honest approval and post still work.
fn honest_run_still_works(m: &mut Market) {
    let before = board_len(&m.server);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    m.post(&acceptance);
    assert!(m.server.board().get(&ccpo.id).unwrap().is_some());
    assert_eq!(board_len(&m.server), before + 1);
}

fn ccpo_with_bond(m: &mut Market, bond: Vec<u8>) -> Ccpo {
    let mut d = m.draft();
    d.bond = bond;
    Ccpo::new(d, &mut m.rng).unwrap()
}

/// Bob's M_0 of protocol 1 (5) for `ccpo`, to Alice.
fn request<V: agora_cpo::Variant>(m: &mut Market, ccpo: Ccpo, terms: &str) -> Vec<u8> {
    buyer::request_approval::<V>(&m.bob, &mut m.rng, ccpo, terms, &m.alice_peer)
        .unwrap()
        .0
}

/// Alice's verdict on Bob's request for `ccpo` (step 1 -> 2).
fn alice_judges(m: &mut Market, ccpo: Ccpo, terms: &str) -> agora_core::Result<()> {
    let m0 = request::<FirstCome>(m, ccpo, terms);
    m.alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0)
        .map(|_| ())
}

/// The server's verdict on Bob's post of `acceptance` (step 1 -> 2) at `now`.
fn server_judges(m: &mut Market, acceptance: &Acceptance) -> agora_core::Result<()> {
    let (m0, _) = m.post_request(acceptance);
    m.server
        .handle_post_request(&mut m.rng, NOW, &m0)
        .map(|_| ())
}

/// A bond for Bob from the market's agency.
fn bob_bond(m: &mut Market, amount: Money, roles: Vec<Role>, conditions: Conditions) -> Vec<u8> {
    bond(
        &m.agency,
        &mut m.rng,
        &m.bob,
        amount,
        roles,
        conditions,
        NOW.plus_secs(365 * DAY),
    )
}

/// A CCPO on `bond` is refused by Alice with `code`; a careless Alice's
/// acceptance of it anyway is refused by the server with the same code.
/// Nothing is posted.
fn refused_by_arbiter_and_server(m: &mut Market, ccpo: Ccpo, code: &str) {
    assert_cert_refused(&err(alice_judges(m, ccpo.clone(), "")), code);
    let acceptance = m.careless_acceptance::<FirstCome>(&ccpo, NOW);
    assert_cert_refused(&err(server_judges(m, &acceptance)), code);
    assert_board_empty(m);
}

/// Protocol 1 run with another arbiter.
fn approve_with(m: &mut Market, arbiter: &Arbiter, peer: &Peer, ccpo: Ccpo) -> Acceptance {
    let (m0, bob) =
        buyer::request_approval::<FirstCome>(&m.bob, &mut m.rng, ccpo, "", peer).unwrap();
    let (m1, pending) = arbiter
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0)
        .unwrap();
    let (m2, bob) = bob.handle(&m.bob, &mut m.rng, &m1).unwrap();
    let issued = pending
        .handle_response(arbiter, &mut m.rng, NOW, &m2)
        .unwrap();
    bob.handle(&m.bob, NOW, &issued.reply).unwrap()
}

/// An envelope around already-signed bytes (the format of
/// `agora_core::wire::envelope`), for forgeries `envelope::seal` cannot make.
fn seal_raw(rng: &mut ChaCha20Rng, tag: Tag, recipient: &X25519Public, signed: &[u8]) -> Vec<u8> {
    let rid = recipient.key_id();
    let mut info = envelope::INFO_PREFIX.to_vec();
    info.extend_from_slice(&tag.to_cbor());
    let mut aad = tag.to_cbor();
    aad.extend_from_slice(&rid.0);
    let (enc, ct) = hpke::seal(rng, recipient, &info, &aad, signed).unwrap();
    let mut e = Encoder::new();
    e.array(4).field(&tag).field(&rid).bytes(&enc).bytes(&ct);
    e.into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------- forged bonds (4.3.1)

#[test]
fn forged_bond_certificate() {
    let mut m = Market::new(10);
    let mut rng = ChaCha20Rng::seed_from_u64(0xBAD);
    // Same name as the real agency, another key: names prove nothing.
    let rogue = Agency::create(
        "First Bonding Agency",
        SigningKey::generate(&mut rng),
        NOW.minus_secs(30 * DAY),
        NOW.plus_secs(3650 * DAY),
        &mut rng,
    )
    .unwrap();
    let forged = bond(
        &rogue,
        &mut rng,
        &m.bob,
        eur(10_000_000),
        vec![Role::Buyer],
        Conditions::default(),
        NOW.plus_secs(365 * DAY),
    );
    let ccpo = ccpo_with_bond(&mut m, forged.clone());
    assert_cert_refused(&err(alice_judges(&mut m, ccpo, "")), "unknown-issuer");

    // Carl, an arbiter who trusts the rogue agency, approves it; the server
    // works with Carl but does not trust the rogue agency.
    let carl_keys = keys(&mut rng);
    let carl_peer = carl_keys.peer();
    let carl = Arbiter::new(carl_keys, ArbiterPolicy::default(), trust_of(&rogue));
    let server = m.server_with_arbiters(vec![m.alice_peer.sign, carl_peer.sign]);
    let mut d = m.draft();
    d.bond = forged;
    d.arbiter = carl_peer.id();
    let ccpo = Ccpo::new(d, &mut m.rng).unwrap();
    let acceptance = approve_with(&mut m, &carl, &carl_peer, ccpo);
    let (m0, _) = m.post_request(&acceptance);
    assert_cert_refused(
        &err(server.handle_post_request(&mut m.rng, NOW, &m0)),
        "unknown-issuer",
    );
    assert_eq!(board_len(&server), 0);
    honest_run_still_works(&mut m);
}

/// The notAfter of `der` moved two years later, by editing its UTCTime
/// digits in place (the signature is left as it was).
fn extend_not_after(der: &[u8]) -> Vec<u8> {
    let times: Vec<usize> = (0..der.len() - 15)
        .filter(|&i| {
            der[i] == 0x17
                && der[i + 1] == 13
                && der[i + 2..i + 14].iter().all(u8::is_ascii_digit)
                && der[i + 14] == b'Z'
        })
        .collect();
    assert!(times.len() >= 2, "a Validity of two UTCTimes");
    let year_units = times[1] + 3; // YYMMDDhhmmssZ: the second Y.
    let mut edited = der.to_vec();
    assert!(edited[year_units] <= b'7');
    edited[year_units] += 2;
    edited
}

#[test]
fn bond_validity_extended_by_editing() {
    let mut m = Market::new(11);
    let expired = bond(
        &m.agency,
        &mut m.rng,
        &m.bob,
        eur(100_000),
        vec![Role::Buyer],
        Conditions::default(),
        NOW.minus_secs(3600),
    );
    let ccpo = ccpo_with_bond(&mut m, expired.clone());
    assert_cert_refused(&err(alice_judges(&mut m, ccpo, "")), "expired");

    let edited = extend_not_after(&expired);
    let parsed = agora_pki::parse_certificate(&edited).unwrap();
    assert!(parsed.not_after > NOW.plus_secs(365 * DAY), "the edit took");
    let ccpo = ccpo_with_bond(&mut m, edited);
    // Paper 4.3.1: extending a certificate "is equivalent to defeating the
    // signature scheme".
    refused_by_arbiter_and_server(&mut m, ccpo, "bad-signature");
    honest_run_still_works(&mut m);
}

#[test]
fn revoked_buyer_bond_refused() {
    let mut m = Market::new(12);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    let serial = agora_pki::parse_certificate(&m.bob_bond).unwrap().serial;
    let crl = m
        .agency
        .issue_crl(&CrlParams {
            this_update: NOW.minus_secs(10),
            next_update: NOW.plus_secs(7 * DAY),
            crl_number: 2,
            revoked: vec![Revocation {
                serial,
                revoked_at: NOW.minus_secs(10),
                reason: RevocationReason::KeyCompromise,
            }],
        })
        .unwrap();
    // Both learn the new CRL and keep the old one: a listing in any current
    // CRL counts, so an older CRL cannot hide it.
    m.alice.trust.crls.push(crl.clone());
    let mut trust = (*m.server.trust()).clone();
    trust.crls.push(crl);
    m.server.set_trust(trust);
    // The acceptance Bob got before the revocation no longer posts.
    assert_cert_refused(&err(server_judges(&mut m, &acceptance)), "revoked");
    let ccpo = m.ccpo();
    refused_by_arbiter_and_server(&mut m, ccpo, "revoked");
}

#[test]
fn bond_does_not_cover_price() {
    let mut m = Market::new(13);
    // Bob's bond covers 1000.00 EUR.
    let ccpo = m.ccpo_with("A piano", eur(100_001));
    refused_by_arbiter_and_server(&mut m, ccpo, "amount-too-low");
    let usd = Money::new(500, agora_core::Currency::new("USD").unwrap());
    let ccpo = m.ccpo_with("A piano", usd);
    refused_by_arbiter_and_server(&mut m, ccpo, "currency-mismatch");
    // Exactly the bond's amount is covered.
    let ccpo = m.ccpo_with("A piano", eur(100_000));
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    m.post(&acceptance);
}

#[test]
fn bond_for_seller_role_only() {
    let mut m = Market::new(14);
    let seller_bond = bob_bond(
        &mut m,
        eur(100_000),
        vec![Role::Seller],
        Conditions::default(),
    );
    let ccpo = ccpo_with_bond(&mut m, seller_bond);
    refused_by_arbiter_and_server(&mut m, ccpo, "role-not-allowed");
    honest_run_still_works(&mut m);
}

#[test]
fn bond_restricted_to_other_server() {
    let mut m = Market::new(15);
    let only_elsewhere = Conditions {
        servers: vec![KeyId([7; 32])],
        arbiters: vec![],
    };
    let b = bob_bond(&mut m, eur(100_000), vec![Role::Buyer], only_elsewhere);
    let ccpo = ccpo_with_bond(&mut m, b);
    refused_by_arbiter_and_server(&mut m, ccpo, "server-not-allowed");
    // A bond that names this server is fine.
    let here = Conditions {
        servers: vec![KeyId([7; 32]), m.server_peer.id()],
        arbiters: vec![],
    };
    m.bob_bond = bob_bond(&mut m, eur(100_000), vec![Role::Buyer], here);
    honest_run_still_works(&mut m);
}

#[test]
fn bond_restricted_to_other_arbiter() {
    let mut m = Market::new(16);
    let only_elsewhere = Conditions {
        servers: vec![],
        arbiters: vec![KeyId([8; 32])],
    };
    let b = bob_bond(&mut m, eur(100_000), vec![Role::Buyer], only_elsewhere);
    let ccpo = ccpo_with_bond(&mut m, b);
    refused_by_arbiter_and_server(&mut m, ccpo, "arbiter-not-allowed");
    let here = Conditions {
        servers: vec![],
        arbiters: vec![m.alice_peer.id()],
    };
    m.bob_bond = bob_bond(&mut m, eur(100_000), vec![Role::Buyer], here);
    honest_run_still_works(&mut m);
}

// ------------------------------------------ forged acceptances (4.3.2)

fn x3_for(ccpo: &Ccpo) -> ArbiterAcceptance<FirstCome> {
    ArbiterAcceptance {
        x2_hash: [0; 32],
        t3: NOW,
        ccpo: ccpo.clone(),
        server: ccpo.server,
        variant: PhantomData,
    }
}

fn acceptance_signed_by(key: &SigningKey, ccpo: &Ccpo) -> Acceptance {
    Acceptance {
        signed: cose::sign(key, &x3_for(ccpo)),
        ccpo: ccpo.clone(),
        t3: NOW,
        mode: Mode::FirstCome,
    }
}

#[test]
fn forged_arbiter_acceptance() {
    let mut m = Market::new(20);
    let mallory = keys(&mut m.rng);
    // (a) Signed by a key that is no known arbiter: for a CCPO naming Alice,
    // and for one naming Mallory herself.
    let ccpo = m.ccpo();
    let forged = acceptance_signed_by(&mallory.sign, &ccpo);
    not_authorised(
        &err(server_judges(&mut m, &forged)),
        "not signed by a known arbiter",
    );
    let mut d = m.draft();
    d.arbiter = mallory.id();
    let ccpo_m = Ccpo::new(d, &mut m.rng).unwrap();
    let forged = acceptance_signed_by(&mallory.sign, &ccpo_m);
    not_authorised(
        &err(server_judges(&mut m, &forged)),
        "not signed by a known arbiter",
    );

    // (b) Signed by Carl, an arbiter the server knows, for a CCPO that names
    // Alice: Carl cannot accept on Alice's behalf.
    let carl = keys(&mut m.rng);
    let server = m.server_with_arbiters(vec![m.alice_peer.sign, carl.sign.verifying_key()]);
    let by_carl = acceptance_signed_by(&carl.sign, &ccpo);
    let (m0, _) = m.post_request(&by_carl);
    not_authorised(
        &err(server.handle_post_request(&mut m.rng, NOW, &m0)),
        "not signed by the arbiter the CCPO names",
    );
    assert_eq!(board_len(&server), 0);

    // (c) Alice's genuine acceptance with T_3 moved an hour later: the
    // signature no longer verifies.
    let (genuine, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    let mut t3 = vec![0x1a];
    t3.extend_from_slice(&u32::try_from(NOW.secs()).unwrap().to_be_bytes());
    let at = find(&genuine.signed, &t3).expect("T_3 in the payload");
    let mut later = genuine.clone();
    later.signed[at + 1..at + 5]
        .copy_from_slice(&u32::try_from(NOW.secs() + 3600).unwrap().to_be_bytes());
    assert_eq!(err(server_judges(&mut m, &later)), Error::Crypto);
    // ... and a flipped bit anywhere in it is refused too.
    for i in 0..genuine.signed.len() {
        let mut flipped = genuine.clone();
        flipped.signed[i] ^= 1 << (i % 8);
        let (m0, _) = m.post_request(&flipped);
        assert!(
            m.server.handle_post_request(&mut m.rng, NOW, &m0).is_err(),
            "byte {i}"
        );
    }
    assert_board_empty(&m);
    // The genuine one still posts.
    m.post(&genuine);
    assert_eq!(board_len(&m.server), 1);
}

#[test]
fn replayed_acceptance() {
    let mut m = Market::new(21);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    m.post(&acceptance);
    let entry = m.server.board().get(&ccpo.id).unwrap();
    // Posting the same acceptance again (a fresh R_0, Bob's own key).
    assert_eq!(
        err(server_judges(&mut m, &acceptance)),
        Error::Refused("this CPO is already posted".into())
    );
    assert_eq!(m.server.board().get(&ccpo.id).unwrap(), entry);
    assert_eq!(board_len(&m.server), 1);

    // Two posts of one acceptance interleaved: both get a challenge, only
    // the first to answer posts.
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    let (m0a, bob_a) = m.post_request(&acceptance);
    let (m0b, bob_b) = m.post_request(&acceptance);
    let (m1a, pending_a) = m.server.handle_post_request(&mut m.rng, NOW, &m0a).unwrap();
    let (m1b, pending_b) = m.server.handle_post_request(&mut m.rng, NOW, &m0b).unwrap();
    let (m2a, _) = bob_a.handle(&m.bob, &mut m.rng, &m1a).unwrap();
    let (m2b, _) = bob_b.handle(&m.bob, &mut m.rng, &m1b).unwrap();
    let first = pending_a
        .handle_response(&m.server, &mut m.rng, NOW, &m2a)
        .unwrap();
    assert_eq!(
        err(pending_b.handle_response(&m.server, &mut m.rng, NOW, &m2b)),
        Error::Refused("this CPO is already posted".into())
    );
    assert_eq!(m.server.board().get(&ccpo.id).unwrap(), Some(first.entry));
    assert_eq!(board_len(&m.server), 2);
}

#[test]
fn stale_acceptance() {
    let mut m = Market::new(22);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    // Older than ACCEPTANCE_MAX_AGE_SECS.
    let (m0, _) = m.post_request(&acceptance);
    let late = NOW.plus_secs(ACCEPTANCE_MAX_AGE_SECS + 1);
    assert_eq!(
        err(m.server.handle_post_request(&mut m.rng, late, &m0)),
        Error::Replayed
    );
    assert_board_empty(&m);
    // At exactly the limit it is still fresh.
    let (m0, _) = m.post_request(&acceptance);
    let just = NOW.plus_secs(ACCEPTANCE_MAX_AGE_SECS);
    assert!(m.server.handle_post_request(&mut m.rng, just, &m0).is_ok());

    // T_3 in the future beyond the allowed clock skew (Alice's clock is
    // ahead, or someone signed a post-dated acceptance).
    let ccpo = m.ccpo();
    let ahead = NOW.plus_secs(MAX_CLOCK_SKEW_SECS + 1);
    let (acceptance, _) = m.approve_at::<FirstCome>(ccpo, "", ahead);
    assert_eq!(err(server_judges(&mut m, &acceptance)), Error::Replayed);
    assert_board_empty(&m);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve_at::<FirstCome>(ccpo, "", NOW.plus_secs(MAX_CLOCK_SKEW_SECS));
    m.post(&acceptance);
    assert_eq!(board_len(&m.server), 1);
}

#[test]
fn acceptance_used_with_another_server() {
    let mut m = Market::new(23);
    let s2_keys = keys(&mut m.rng);
    let s2_peer = s2_keys.peer();
    let s2 = Server::new(
        s2_keys,
        m.trust.clone(),
        vec![m.alice_peer.sign],
        std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
    );
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    // Bob's own software will not send it there ...
    assert!(matches!(
        buyer::request_post(&m.bob, &mut m.rng, &acceptance, &s2_peer),
        Err(Error::ApiMisuse(_))
    ));
    // ... and a hand-made M_0 to S2 is refused by S2.
    let x0 = PostRequest {
        r0: [7; 32],
        acceptance: acceptance.signed.clone(),
    };
    let m0 = envelope::seal(&mut m.rng, &m.bob.sign, &s2_peer.enc, &x0).unwrap();
    not_authorised(
        &err(s2.handle_post_request(&mut m.rng, NOW, &m0)),
        "the acceptance names another server",
    );
    assert_eq!(board_len(&s2), 0);
    // It still posts where it belongs.
    m.post(&acceptance);
    assert_eq!(board_len(&m.server), 1);
}

// -------------------------------------------------- forged posts (4.3.3)

/// Documented: a post signed by Mallory's own key is refused as
/// `NotAuthorised` (her kid is not the bond holder's); a post that claims
/// Bob's kid but carries a signature that is not his is refused as
/// `Crypto`.
#[test]
fn forged_post() {
    let mut m = Market::new(30);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    let mallory = keys(&mut m.rng);
    let x0 = PostRequest {
        r0: [9; 32],
        acceptance: acceptance.signed.clone(),
    };
    // (a) Mallory signs Bob's X_0 with her key.
    let m0 = envelope::seal(&mut m.rng, &mallory.sign, &m.server_peer.enc, &x0).unwrap();
    not_authorised(
        &err(m.server.handle_post_request(&mut m.rng, NOW, &m0)),
        "signed by a key other than the one the message certifies",
    );
    // (b) Bob's kid, Mallory's signature bytes (a COSE_Sign1 ends with the
    // 64-byte signature).
    let mut signed = cose::sign(&m.bob.sign, &x0);
    let hers = cose::sign(&mallory.sign, &x0);
    let n = signed.len();
    signed[n - 64..].copy_from_slice(&hers[hers.len() - 64..]);
    let m0 = seal_raw(&mut m.rng, PostRequest::TAG, &m.server_peer.enc, &signed);
    assert_eq!(
        err(m.server.handle_post_request(&mut m.rng, NOW, &m0)),
        Error::Crypto
    );
    assert_board_empty(&m);
    // Control: the same hand-made envelope with Bob's real signature is
    // accepted, so (b) failed on the signature alone.
    let genuine = cose::sign(&m.bob.sign, &x0);
    let m0 = seal_raw(&mut m.rng, PostRequest::TAG, &m.server_peer.enc, &genuine);
    assert!(m.server.handle_post_request(&mut m.rng, NOW, &m0).is_ok());
}

#[test]
fn replayed_post_request() {
    let mut m = Market::new(31);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    let (m0, bob) = m.post_request(&acceptance);
    let (m1, pending) = m.server.handle_post_request(&mut m.rng, NOW, &m0).unwrap();
    // The same M_0 again, while the first run is in progress: R_0 is known.
    assert_eq!(
        err(m.server.handle_post_request(&mut m.rng, NOW, &m0)),
        Error::Replayed
    );
    // The first run still completes.
    let (m2, bob) = bob.handle(&m.bob, &mut m.rng, &m1).unwrap();
    let posted = pending
        .handle_response(&m.server, &mut m.rng, NOW, &m2)
        .unwrap();
    bob.handle(&m.bob, &posted.reply).unwrap();
    // Replayed after the CPO is posted: the board check comes first, so it
    // is refused as already posted (still no second entry).
    assert_eq!(
        err(m.server.handle_post_request(&mut m.rng, NOW, &m0)),
        Error::Refused("this CPO is already posted".into())
    );
    assert_eq!(board_len(&m.server), 1);
    assert_eq!(m.server.board().get(&ccpo.id).unwrap(), Some(posted.entry));
}

#[test]
fn replayed_post_response() {
    let mut m = Market::new(32);
    // Run 1 completes.
    let ccpo1 = m.ccpo();
    let (acc1, _) = m.approve::<FirstCome>(ccpo1, "");
    let (_, _, [_, _, m2_run1, _]) = m.post(&acc1);
    // Run 2 waits for Bob's answer; the attacker sends run 1's M_2.
    let ccpo2 = m.ccpo();
    let (acc2, _) = m.approve::<FirstCome>(ccpo2.clone(), "");
    let (m0, _) = m.post_request(&acc2);
    let (_, pending) = m.server.handle_post_request(&mut m.rng, NOW, &m0).unwrap();
    assert_eq!(
        err(pending.handle_response(&m.server, &mut m.rng, NOW, &m2_run1)),
        Error::PeerMisbehaved("the response answers another challenge")
    );
    assert_eq!(board_len(&m.server), 1);
    assert!(m.server.board().get(&ccpo2.id).unwrap().is_none());
    // The run is lost (the attacker can interfere, paper 4.3.6), but the
    // acceptance is not: Bob retries with a new R_0.
    m.post(&acc2);
    assert_eq!(board_len(&m.server), 2);
}

// ------------------------------------------------- replays in protocol 1

#[test]
fn replayed_arbiter_messages() {
    let mut m = Market::new(33);
    let ccpo_a = m.ccpo();
    let ccpo_b = m.ccpo();
    let (m0a, bob_a) =
        buyer::request_approval::<FirstCome>(&m.bob, &mut m.rng, ccpo_a.clone(), "", &m.alice_peer)
            .unwrap();
    let (m0b, bob_b) =
        buyer::request_approval::<FirstCome>(&m.bob, &mut m.rng, ccpo_b, "", &m.alice_peer)
            .unwrap();
    let (m1a, alice_a) = m
        .alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0a)
        .unwrap();
    let (m1b, alice_b) = m
        .alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0b)
        .unwrap();
    // Bob refuses a challenge of another run.
    assert_eq!(
        err(bob_b.handle(&m.bob, &mut m.rng, &m1a)),
        Error::PeerMisbehaved("the challenge answers another request")
    );
    let (m2a, bob_a) = bob_a.handle(&m.bob, &mut m.rng, &m1a).unwrap();
    // Run A's M_2 against run B's pending approval.
    assert_eq!(
        err(alice_b.handle_response(&m.alice, &mut m.rng, NOW, &m2a)),
        Error::PeerMisbehaved("the response answers another challenge")
    );
    let issued = alice_a
        .handle_response(&m.alice, &mut m.rng, NOW, &m2a)
        .unwrap();
    bob_a.handle(&m.bob, NOW, &issued.reply).unwrap();

    // M_0 replayed: Alice answers with a new challenge (new R_1) ...
    let (m1a2, alice_a2) = m
        .alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0a)
        .unwrap();
    assert_ne!(m1a2, m1a);
    // ... that the attacker cannot read (sealed to Bob) ...
    let mallory = keys(&mut m.rng);
    not_authorised(
        &err(envelope::open::<ArbiterChallenge<FirstCome>>(
            &m1a2,
            &mallory.enc,
            |kid| m.alice_peer.key_if(kid),
        )),
        "addressed to another party",
    );
    // ... nor answer: the old M_2 answers the old challenge, and an M_2
    // signed by another key is from an unknown signer.
    assert_eq!(
        err(alice_a2.handle_response(&m.alice, &mut m.rng, NOW, &m2a)),
        Error::PeerMisbehaved("the response answers another challenge")
    );
    let (_, alice_a3) = m
        .alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0a)
        .unwrap();
    let guess = ArbiterResponse::<FirstCome> {
        x1_hash: [0x55; 32],
        variant: PhantomData,
    };
    let m2_forged = envelope::seal(&mut m.rng, &mallory.sign, &m.alice_peer.enc, &guess).unwrap();
    not_authorised(
        &err(alice_a3.handle_response(&m.alice, &mut m.rng, NOW, &m2_forged)),
        "unknown signer",
    );
    // Bob, in a later run, refuses the old acceptance M_3 of run A.
    let ccpo_c = m.ccpo();
    let (m0c, bob_c) =
        buyer::request_approval::<FirstCome>(&m.bob, &mut m.rng, ccpo_c, "", &m.alice_peer)
            .unwrap();
    let (m1c, _) = m
        .alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0c)
        .unwrap();
    let (_, bob_c) = bob_c.handle(&m.bob, &mut m.rng, &m1c).unwrap();
    assert_eq!(
        err(bob_c.handle(&m.bob, NOW, &issued.reply)),
        Error::PeerMisbehaved("the acceptance answers another response")
    );
    let _ = m1b;
}

#[test]
fn reflected_message() {
    type P1 = FirstCome;
    let mut m = Market::new(34);
    let ccpo = m.ccpo();
    let (m0, bob) =
        buyer::request_approval::<P1>(&m.bob, &mut m.rng, ccpo.clone(), "", &m.alice_peer).unwrap();
    let (m1, alice) = m.alice.handle_request::<P1>(&mut m.rng, NOW, &m0).unwrap();
    // Alice's M_1 back to Alice, as a request and as the answer.
    wrong_tag(
        &err(m.alice.handle_request::<P1>(&mut m.rng, NOW, &m1)),
        ArbiterRequest::<P1>::TAG,
        ArbiterChallenge::<P1>::TAG,
    );
    wrong_tag(
        &err(alice.handle_response(&m.alice, &mut m.rng, NOW, &m1)),
        ArbiterResponse::<P1>::TAG,
        ArbiterChallenge::<P1>::TAG,
    );
    // Bob's M_0 back to Bob as a challenge: the size limit of a challenge
    // envelope is checked even before its tag.
    assert!(matches!(
        err(bob.handle(&m.bob, &mut m.rng, &m0)),
        Error::Decode(DecodeError::TooLarge {
            what: "envelope",
            ..
        })
    ));
    // Bob's protocol-1 M_0 to the server.
    wrong_tag(
        &err(m.server.handle_post_request(&mut m.rng, NOW, &m0)),
        PostRequest::TAG,
        ArbiterRequest::<P1>::TAG,
    );
    // A protocol-5 request to a protocol-1 handler.
    let m0_bid = request::<Bidding>(&mut m, ccpo, "");
    wrong_tag(
        &err(m.alice.handle_request::<P1>(&mut m.rng, NOW, &m0_bid)),
        ArbiterRequest::<P1>::TAG,
        ArbiterRequest::<Bidding>::TAG,
    );

    // Protocol 2: the server's M_1 back to the server; Bob's post M_0 to
    // Alice; Alice's M_3 (the acceptance envelope) to the server.
    let ccpo = m.ccpo();
    let (acceptance, [_, _, _, m3_p1]) = m.approve::<P1>(ccpo, "");
    let (m0, _) = m.post_request(&acceptance);
    let (m1, pending) = m.server.handle_post_request(&mut m.rng, NOW, &m0).unwrap();
    wrong_tag(
        &err(pending.handle_response(&m.server, &mut m.rng, NOW, &m1)),
        PostResponse::TAG,
        PostChallenge::TAG,
    );
    wrong_tag(
        &err(m.alice.handle_request::<P1>(&mut m.rng, NOW, &m0)),
        ArbiterRequest::<P1>::TAG,
        PostRequest::TAG,
    );
    wrong_tag(
        &err(m.server.handle_post_request(&mut m.rng, NOW, &m3_p1)),
        PostRequest::TAG,
        ArbiterAcceptance::<P1>::TAG,
    );
    assert_board_empty(&m);
    honest_run_still_works(&mut m);
}

/// The tag is checked before the addressee, so a message of another
/// protocol is refused as `WrongTag`; a message of the right protocol for
/// another party is `NotAuthorised("envelope addressed to another party")`.
#[test]
fn misdirected_envelope() {
    let mut m = Market::new(35);
    let ccpo = m.ccpo();
    let m0 = request::<FirstCome>(&mut m, ccpo.clone(), "");
    // M_0 for Alice delivered to the server.
    wrong_tag(
        &err(m.server.handle_post_request(&mut m.rng, NOW, &m0)),
        PostRequest::TAG,
        ArbiterRequest::<FirstCome>::TAG,
    );
    // ... and to Carl, another arbiter.
    let carl_keys = keys(&mut m.rng);
    let carl = Arbiter::new(carl_keys, ArbiterPolicy::default(), m.trust.clone());
    not_authorised(
        &err(carl.handle_request::<FirstCome>(&mut m.rng, NOW, &m0)),
        "envelope addressed to another party",
    );
    // A post M_0 for this server delivered to another server.
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    let (m0, _) = m.post_request(&acceptance);
    let s2 = Server::new(
        keys(&mut m.rng),
        m.trust.clone(),
        vec![m.alice_peer.sign],
        std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
    );
    not_authorised(
        &err(s2.handle_post_request(&mut m.rng, NOW, &m0)),
        "envelope addressed to another party",
    );
    assert_eq!(board_len(&s2), 0);
    // It still works where it was sent.
    let (_, pending) = m.server.handle_post_request(&mut m.rng, NOW, &m0).unwrap();
    assert_eq!(pending.ccpo().id, acceptance.ccpo.id);
}

// ------------------------------------------- interference (4.3.6)

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Bytes at the start of an envelope (array head, tag, addressee, HPKE enc
/// and the ciphertext's head: `envelope::ENVELOPE_OVERHEAD`) whose every bit
/// is flipped; past them one bit per byte, rotating, unless
/// `AGORA_ALL_BITS=1` asks for every bit (about 16 s instead of 2 s).
const HEADER_LEN: usize = envelope::ENVELOPE_OVERHEAD;

/// Single-bit flips of `msg` covering every byte make `receive` fail.
fn every_flip_fails(name: &str, msg: &[u8], mut receive: impl FnMut(&[u8]) -> bool) {
    assert!(receive(msg), "{name}: the genuine message is accepted");
    let all = std::env::var("AGORA_ALL_BITS").is_ok_and(|v| v == "1");
    let mut bad = msg.to_vec();
    for i in 0..msg.len() {
        let bits: Vec<u8> = if all || i < HEADER_LEN {
            (0..8).collect()
        } else {
            vec![(i % 8) as u8]
        };
        for bit in bits {
            bad[i] ^= 1 << bit;
            assert!(
                !receive(&bad),
                "{name}: flipping bit {bit} of byte {i} was accepted"
            );
            bad[i] ^= 1 << bit;
        }
    }
}

/// Each party draws from its own seeded generator, so replaying its steps on
/// the same inputs rebuilds its state exactly (the states are consumed by
/// value and cannot be cloned). Bits covering every byte of every message
/// of protocols 1 and 2 are flipped in turn (see [`every_flip_fails`]); the
/// receiving step must return an error, never panic.
#[test]
fn flipped_bit_anywhere_in_any_message() {
    let mut m = Market::new(36);
    let ccpo = m.ccpo();
    let (bob_seed, alice_seed, server_seed) = (1, 2, 3);

    // Protocol 1.
    let bob_start = |m: &Market| {
        buyer::request_approval::<FirstCome>(
            &m.bob,
            &mut rng(bob_seed),
            ccpo.clone(),
            "",
            &m.alice_peer,
        )
        .unwrap()
    };
    let (m0, _) = bob_start(&m);
    let (m1, _) = m
        .alice
        .handle_request::<FirstCome>(&mut rng(alice_seed), NOW, &m0)
        .unwrap();
    let (m2, _) = bob_start(&m)
        .1
        .handle(&m.bob, &mut rng(bob_seed), &m1)
        .unwrap();
    let alice_pending = |m: &Market| {
        m.alice
            .handle_request::<FirstCome>(&mut rng(alice_seed), NOW, &m0)
            .unwrap()
            .1
    };
    let m3 = alice_pending(&m)
        .handle_response(&m.alice, &mut rng(alice_seed), NOW, &m2)
        .unwrap()
        .reply;
    every_flip_fails("protocol 1 M_0", &m0, |b| {
        m.alice
            .handle_request::<FirstCome>(&mut rng(alice_seed), NOW, b)
            .is_ok()
    });
    every_flip_fails("protocol 1 M_1", &m1, |b| {
        bob_start(&m)
            .1
            .handle(&m.bob, &mut rng(bob_seed), b)
            .is_ok()
    });
    every_flip_fails("protocol 1 M_2", &m2, |b| {
        alice_pending(&m)
            .handle_response(&m.alice, &mut rng(alice_seed), NOW, b)
            .is_ok()
    });
    let bob_waiting = |m: &Market| {
        bob_start(m)
            .1
            .handle(&m.bob, &mut rng(bob_seed), &m1)
            .unwrap()
            .1
    };
    let acceptance = bob_waiting(&m).handle(&m.bob, NOW, &m3).unwrap();
    every_flip_fails("protocol 1 M_3", &m3, |b| {
        bob_waiting(&m).handle(&m.bob, NOW, b).is_ok()
    });

    // Protocol 2; the server gets fresh storage for each try, so that its
    // replay cache does not refuse the genuine M_0 the second time.
    let fresh_server = |m: &Market| m.server_with_arbiters(vec![m.alice_peer.sign]);
    let bob_post = |m: &Market| {
        buyer::request_post(&m.bob, &mut rng(bob_seed), &acceptance, &m.server_peer).unwrap()
    };
    let (p0, _) = bob_post(&m);
    let server = fresh_server(&m);
    let (p1, pending) = server
        .handle_post_request(&mut rng(server_seed), NOW, &p0)
        .unwrap();
    let (p2, bob) = bob_post(&m)
        .1
        .handle(&m.bob, &mut rng(bob_seed), &p1)
        .unwrap();
    let p3 = pending
        .handle_response(&server, &mut rng(server_seed), NOW, &p2)
        .unwrap()
        .reply;
    bob.handle(&m.bob, &p3).unwrap();
    every_flip_fails("protocol 2 M_0", &p0, |b| {
        fresh_server(&m)
            .handle_post_request(&mut rng(server_seed), NOW, b)
            .is_ok()
    });
    every_flip_fails("protocol 2 M_1", &p1, |b| {
        bob_post(&m).1.handle(&m.bob, &mut rng(bob_seed), b).is_ok()
    });
    every_flip_fails("protocol 2 M_2", &p2, |b| {
        let s = fresh_server(&m);
        let (_, pending) = s
            .handle_post_request(&mut rng(server_seed), NOW, &p0)
            .unwrap();
        pending
            .handle_response(&s, &mut rng(server_seed), NOW, b)
            .is_ok()
    });
    every_flip_fails("protocol 2 M_3", &p3, |b| {
        let (_, bob) = bob_post(&m)
            .1
            .handle(&m.bob, &mut rng(bob_seed), &p1)
            .unwrap();
        bob.handle(&m.bob, b).is_ok()
    });
    assert_board_empty(&m);
}

#[test]
fn session_timeout() {
    let mut m = Market::new(37);
    for (late, ok) in [
        (SESSION_TIMEOUT_SECS + 1, false),
        (SESSION_TIMEOUT_SECS, true),
    ] {
        // Protocol 1: Alice waits at most SESSION_TIMEOUT_SECS for M_2.
        let ccpo = m.ccpo();
        let (m0, bob) =
            buyer::request_approval::<FirstCome>(&m.bob, &mut m.rng, ccpo, "", &m.alice_peer)
                .unwrap();
        let (m1, alice) = m
            .alice
            .handle_request::<FirstCome>(&mut m.rng, NOW, &m0)
            .unwrap();
        let (m2, _) = bob.handle(&m.bob, &mut m.rng, &m1).unwrap();
        let r = alice.handle_response(&m.alice, &mut m.rng, NOW.plus_secs(late), &m2);
        if ok {
            assert!(r.is_ok());
        } else {
            assert_eq!(err(r), Error::Replayed);
        }
        // Protocol 2: so does the server.
        let ccpo = m.ccpo();
        let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
        let (m0, bob) = m.post_request(&acceptance);
        let (m1, pending) = m.server.handle_post_request(&mut m.rng, NOW, &m0).unwrap();
        let (m2, _) = bob.handle(&m.bob, &mut m.rng, &m1).unwrap();
        let r = pending.handle_response(&m.server, &mut m.rng, NOW.plus_secs(late), &m2);
        if ok {
            assert!(r.is_ok());
        } else {
            assert_eq!(err(r), Error::Replayed);
            assert_board_empty(&m);
        }
    }
    assert_eq!(board_len(&m.server), 1);
}

// --------------------------------------------------------- the CCPO itself

#[test]
fn expired_ccpo_refused() {
    let mut m = Market::new(38);
    let mut d = m.draft();
    d.start = NOW.minus_secs(DAY);
    d.end = NOW;
    let ccpo = Ccpo::new(d, &mut m.rng).unwrap();
    assert_eq!(
        err(alice_judges(&mut m, ccpo, "")),
        Error::Refused("the CCPO has already expired".into())
    );
    // Approved while open, posted after its EndDate.
    let mut d = m.draft();
    d.end = NOW.plus_secs(3600);
    let ccpo = Ccpo::new(d, &mut m.rng).unwrap();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    let (m0, _) = m.post_request(&acceptance);
    assert_eq!(
        err(m
            .server
            .handle_post_request(&mut m.rng, NOW.plus_secs(3600), &m0)),
        Error::Refused("the CPO has already expired".into())
    );
    assert_board_empty(&m);
    honest_run_still_works(&mut m);
}

#[test]
fn ccpo_checksum_mismatch() {
    let mut m = Market::new(39);
    let ccpo = m.ccpo();
    let forged = ccpo.with_goods_for_testing_only("A Gutenberg Bible");
    let checksum = Error::Decode(DecodeError::Invalid(
        "CCPO checksum does not match its fields",
    ));
    // At the wire level ...
    let x0 = ArbiterRequest::<FirstCome> {
        ccpo: forged.clone(),
        server: forged.server,
        r0: [1; 32],
        additional_terms: String::new(),
        variant: PhantomData,
    };
    assert_eq!(
        wire::decode::<ArbiterRequest<FirstCome>>(&wire::encode(&x0)).map_err(Error::from),
        Err(checksum.clone())
    );
    // ... by Alice ...
    assert_eq!(err(alice_judges(&mut m, forged.clone(), "")), checksum);
    // ... and by the server, in an acceptance Alice signed carelessly.
    let acceptance = m.careless_acceptance::<FirstCome>(&forged, NOW);
    assert_eq!(err(server_judges(&mut m, &acceptance)), checksum);
    assert_board_empty(&m);
    honest_run_still_works(&mut m);
}

// ------------------------------------------------- privacy (4.3.5)

#[test]
fn encryptions_of_the_same_ccpo_differ() {
    let mut m = Market::new(40);
    let ccpo = m.ccpo();
    let a = request::<FirstCome>(&mut m, ccpo.clone(), "");
    let b = request::<FirstCome>(&mut m, ccpo.clone(), "");
    assert_ne!(a, b);
    // Even the very same X_0 sealed twice: the bodies share nothing.
    let x0 = ArbiterRequest::<FirstCome> {
        ccpo: ccpo.clone(),
        server: ccpo.server,
        r0: [1; 32],
        additional_terms: String::new(),
        variant: PhantomData,
    };
    let a = envelope::seal(&mut m.rng, &m.bob.sign, &m.alice_peer.enc, &x0).unwrap();
    let b = envelope::seal(&mut m.rng, &m.bob.sign, &m.alice_peer.enc, &x0).unwrap();
    assert_eq!(a.len(), b.len());
    // Past the tag and the addressee (the first 48 bytes), no 16-byte window
    // of one appears in the other.
    let body = 48;
    for w in a[body..].windows(16) {
        assert!(find(&b[body..], w).is_none());
    }
    // Two posts of one acceptance differ too.
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    assert_ne!(m.post_request(&acceptance).0, m.post_request(&acceptance).0);
}

/// What an eavesdropper sees of protocols 1, 5 and 2 reveals nothing of the
/// CCPO: not the goods, the terms, the price, the CCPO id or checksum, Bob's
/// signing key id, nor any part of his bond. (The addressee's X25519 key id
/// is in every envelope by design, to route it: M_1 and M_3 name Bob's
/// encryption key.)
#[test]
fn nothing_of_the_ccpo_is_readable() {
    let mut m = Market::new(41);
    let ccpo = m.ccpo();
    let (acceptance, p1) = m.approve::<FirstCome>(ccpo.clone(), "arbiter-fee: 2.50 EUR");
    let (_, _, p2) = m.post(&acceptance);
    let ccpo5 = m.ccpo();
    let (acceptance5, p5) = m.approve::<Bidding>(ccpo5.clone(), "");
    let (_, _, p2b) = m.post(&acceptance5);
    let mut price = Encoder::new();
    price.field(&ccpo.price);
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("goods".into(), ccpo.goods.as_bytes().to_vec()),
        ("goods (bidding)".into(), ccpo5.goods.as_bytes().to_vec()),
        ("terms".into(), ccpo.terms.as_bytes().to_vec()),
        ("additional terms".into(), b"arbiter-fee".to_vec()),
        ("price".into(), price.into_bytes()),
        ("CCPO id".into(), ccpo.id.to_vec()),
        ("CCPO id (bidding)".into(), ccpo5.id.to_vec()),
        ("checksum".into(), ccpo.checksum().to_vec()),
        ("Bob's key id".into(), m.bob.id().0.to_vec()),
        (
            "Bob's verifying key".into(),
            m.bob.sign.verifying_key().to_bytes().to_vec(),
        ),
    ];
    for (i, chunk) in m.bob_bond.chunks(16).enumerate() {
        if chunk.len() == 16 {
            needles.push((format!("bond bytes {}..", i * 16), chunk.to_vec()));
        }
    }
    for (k, msg) in p1.iter().chain(&p2).chain(&p5).chain(&p2b).enumerate() {
        for (what, needle) in &needles {
            assert!(
                find(msg, needle).is_none(),
                "{what} readable in message {k}"
            );
        }
    }
}

// ------------------------------------------------------ the arbiter's policy

fn policy_market(seed: u64, policy: ArbiterPolicy) -> Market {
    Market::with_policy(seed, policy)
}

fn refused_by_policy(e: &Error, what: &str) {
    match e {
        Error::Refused(msg) => assert!(msg.contains(what), "{msg:?} lacks {what:?}"),
        other => panic!("expected Refused({what:?}), got {other:?}"),
    }
}

#[test]
fn policy_refuses_listed_bond() {
    let mut rng0 = rng(50);
    let mut m = policy_market(50, ArbiterPolicy::default());
    m.alice.policy.refused_bonds = vec![m.bob.id()];
    let ccpo = m.ccpo();
    refused_by_policy(
        &err(alice_judges(&mut m, ccpo, "")),
        "does not deal with this bond holder",
    );
    // Another buyer, with his own bond, is accepted.
    m.bob = keys(&mut rng0);
    m.bob_bond = bob_bond(
        &mut m,
        eur(100_000),
        vec![Role::Buyer],
        Conditions::default(),
    );
    honest_run_still_works(&mut m);
}

#[test]
fn policy_refuses_goods_words() {
    let mut m = policy_market(
        51,
        ArbiterPolicy {
            refused_words: vec!["used car".into()],
            ..ArbiterPolicy::default()
        },
    );
    let ccpo = m.ccpo_with("A USED CAR, 1972, runs", eur(9_000));
    refused_by_policy(&err(alice_judges(&mut m, ccpo, "")), "used car");
    let ccpo = m.ccpo_with("A new bicycle", eur(9_000));
    alice_judges(&mut m, ccpo, "").unwrap();
}

#[test]
fn policy_refuses_price_over_limit() {
    let mut m = policy_market(
        52,
        ArbiterPolicy {
            max_prices: vec![eur(10_000)],
            ..ArbiterPolicy::default()
        },
    );
    let ccpo = m.ccpo_with("A lamp", eur(10_001));
    refused_by_policy(
        &err(alice_judges(&mut m, ccpo, "")),
        "over the arbiter's limit",
    );
    let ccpo = m.ccpo_with("A lamp", eur(10_000));
    alice_judges(&mut m, ccpo, "").unwrap();
}

#[test]
fn policy_requires_template() {
    let mut m = policy_market(
        53,
        ArbiterPolicy {
            templates: vec![Template::parse("Deliver within {} days to {}.").unwrap()],
            ..ArbiterPolicy::default()
        },
    );
    let mut d = m.draft();
    d.terms = "Deliver whenever, and the arbiter decides what 'working' means.".into();
    let ccpo = Ccpo::new(d, &mut m.rng).unwrap();
    refused_by_policy(&err(alice_judges(&mut m, ccpo, "")), "templates");
    let mut d = m.draft();
    d.terms = "Deliver within 5 days to Paris.".into();
    let ccpo = Ccpo::new(d, &mut m.rng).unwrap();
    alice_judges(&mut m, ccpo, "").unwrap();
}

#[test]
fn policy_requires_fee() {
    let mut m = policy_market(
        54,
        ArbiterPolicy {
            fee: Some(eur(250)),
            ..ArbiterPolicy::default()
        },
    );
    for terms in [
        "",
        "arbiter-fee: 2.49 EUR",
        "arbiter-fee: 3.00 USD",
        "arbiter-fee: lots",
    ] {
        let ccpo = m.ccpo();
        refused_by_policy(&err(alice_judges(&mut m, ccpo, terms)), "arbiter's fee");
    }
    let ccpo = m.ccpo();
    alice_judges(&mut m, ccpo, "delivery by courier\narbiter-fee: 2.50 EUR").unwrap();
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "arbiter-fee: 2.50 EUR");
    m.post(&acceptance);
    assert_eq!(board_len(&m.server), 1);
}
