#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Protocols 3 and 4: a seller's browse session gives her K_p; under it she
//! binds a CPO, first come, exactly once; and the attacks of section 4.3 on
//! binding (no K_p, another seller's K_p, a retired K_p, replays, a revoked
//! seller) are refused.

mod common;

use agora_core::wire::cose;
use agora_core::{Error, Timestamp};
use agora_cpo::msg::BoundCpo;
use agora_cpo::ports::EndOutcome;
use agora_cpo::seller::{self, SellerSession};
use agora_cpo::session::{BindingKey, Channel, Direction};
use agora_cpo::{BondTrust, Ccpo, FirstCome, Keys};
use agora_pki::{CrlParams, Revocation, RevocationReason};
use common::*;
use rand_chacha::rand_core::SeedableRng;

struct Seller {
    keys: Keys,
    bond: Vec<u8>,
}

fn seller(m: &mut Market) -> Seller {
    let (keys, bond) = m.seller_keys();
    Seller { keys, bond }
}

/// Protocol 3 run honestly: the seller's session.
fn session(m: &mut Market, s: &Seller, from: Timestamp, until: Timestamp) -> SellerSession {
    m.browse_session(&s.keys, &s.bond, from, until)
}

/// A posted first-come CPO.
fn posted_cpo(m: &mut Market) -> Ccpo {
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    m.post(&acceptance);
    ccpo
}

fn day_session(m: &mut Market, s: &Seller) -> SellerSession {
    session(m, s, NOW.minus_secs(60), NOW.plus_secs(DAY))
}

fn refused_with(r: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match r {
        Err(Error::Refused(msg)) if msg.contains(needle) => {}
        other => panic!("expected Refused({needle:?}), got {other:?}"),
    }
}

#[test]
fn pam_binds_first_and_quinn_is_told_already_bound() {
    let mut m = Market::new(10);
    let ccpo = posted_cpo(&mut m);
    let (pam, quinn) = (seller(&mut m), seller(&mut m));
    let pam_s = day_session(&mut m, &pam);
    let quinn_s = day_session(&mut m, &quinn);

    // Both browse the CPO before either binds.
    let l_pam = m
        .server
        .listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id)
        .unwrap();
    let l_quinn = m
        .server
        .listing(&mut m.rng, NOW, &quinn_s.id(), &ccpo.id)
        .unwrap();
    let l_pam = pam_s.open_listing(&l_pam).unwrap();
    let l_quinn = quinn_s.open_listing(&l_quinn).unwrap();
    assert_eq!(l_pam.ccpo(), &ccpo);

    let (o_pam, exp_pam) = pam_s
        .offer(&mut m.rng, &l_pam, "ship to the intermediary")
        .unwrap();
    let (o_quinn, _) = quinn_s
        .offer(&mut m.rng, &l_quinn, "hand delivery")
        .unwrap();
    let bound = m.server.handle_bind_offer(&mut m.rng, NOW, &o_pam).unwrap();
    refused_with(
        m.server.handle_bind_offer(&mut m.rng, NOW, &o_quinn),
        "already bound",
    );

    // Pam's BOUND_CPO: the contract, signed by the server.
    let receipt = exp_pam.handle(&pam_s, &bound.reply).unwrap();
    let x2: BoundCpo = cose::verify(&receipt.signed, &m.server_peer.sign).unwrap();
    assert_eq!(x2.ccpo, ccpo);
    assert_eq!(x2.seller_bond, pam.bond);
    assert_eq!(x2.offer, "ship to the intermediary");
    assert_eq!(x2.t, NOW);
    // The board keeps it, and the CPO left the listing.
    let b = m.server.board().binding(&ccpo.id).unwrap().unwrap();
    assert_eq!(b.seller, pam.keys.id());
    assert_eq!(b.bound_cpo, receipt.signed);
    assert!(m
        .server
        .board()
        .list_open(NOW, None, 10)
        .unwrap()
        .is_empty());
    // Asking for the listing again: already bound.
    refused_with(
        m.server.listing(&mut m.rng, NOW, &quinn_s.id(), &ccpo.id),
        "already bound",
    );
}

#[test]
fn binding_without_k_p() {
    let mut m = Market::new(11);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    let listing = pam_s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id)
                .unwrap(),
        )
        .unwrap();
    // Mallory knows Pam's session id (it travels in the clear) but not K_p.
    let mallory = SellerSession::from_parts(
        BindingKey::random(&mut m.rng),
        m.server_peer,
        pam.bond.clone(),
        pam_s.from,
        pam_s.until,
    );
    let (forged, _) = mallory.offer(&mut m.rng, &listing, "mine").unwrap();
    // Under an unknown session id: no such session.
    assert!(matches!(
        m.server.handle_bind_offer(&mut m.rng, NOW, &forged),
        Err(Error::NotAuthorised(_))
    ));
    // Re-framed under Pam's session id: the AEAD under K_p refuses it.
    let mut reframed = forged.clone();
    let at = find(&reframed, &mallory.id()).unwrap();
    reframed[at..at + 32].copy_from_slice(&pam_s.id());
    assert_eq!(
        m.server
            .handle_bind_offer(&mut m.rng, NOW, &reframed)
            .unwrap_err(),
        Error::Crypto
    );
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn binding_with_another_sellers_k_p() {
    let mut m = Market::new(12);
    let ccpo = posted_cpo(&mut m);
    let (pam, quinn) = (seller(&mut m), seller(&mut m));
    let pam_s = day_session(&mut m, &pam);
    let quinn_s = day_session(&mut m, &quinn);
    let quinn_listing = quinn_s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &quinn_s.id(), &ccpo.id)
                .unwrap(),
        )
        .unwrap();
    // Quinn authenticates her offer with Pam's K_p but sends it in her own
    // session: the keys do not match the session's.
    let with_pams_key = Channel::new(pam_s.k_p());
    let offer = agora_cpo::msg::BindOffer {
        x0_hash: agora_cpo::msg::digest(&quinn_listing.message),
        r1: [1; 32],
        offer: "x".into(),
    };
    let mut m1 = with_pams_key.seal_authed(&mut m.rng, Direction::ToServer, &offer);
    let at = find(&m1, &pam_s.id()).unwrap();
    m1[at..at + 32].copy_from_slice(&quinn_s.id());
    assert_eq!(
        m.server
            .handle_bind_offer(&mut m.rng, NOW, &m1)
            .unwrap_err(),
        Error::Crypto
    );
    // And Pam's session cannot bind a listing sent to Quinn's session.
    let (m1, _) = pam_s.offer(&mut m.rng, &quinn_listing, "y").unwrap();
    assert!(matches!(
        m.server.handle_bind_offer(&mut m.rng, NOW, &m1),
        Err(Error::NotAuthorised(_))
    ));
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn an_ended_session_binds_nothing() {
    let mut m = Market::new(13);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    let listing = pam_s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id)
                .unwrap(),
        )
        .unwrap();
    let (offer, _) = pam_s.offer(&mut m.rng, &listing, "z").unwrap();
    let end = pam_s.end(&mut m.rng);
    assert_eq!(
        m.server.handle_end_session(NOW, &end).unwrap(),
        EndOutcome::Ended
    );
    assert_eq!(
        m.server.handle_end_session(NOW, &end).unwrap(),
        EndOutcome::AlreadyEnded
    );
    assert!(matches!(
        m.server.handle_bind_offer(&mut m.rng, NOW, &offer),
        Err(Error::NotAuthorised(_))
    ));
    assert!(matches!(
        m.server.listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id),
        Err(Error::NotAuthorised(_))
    ));
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn a_replayed_offer_binds_nothing_more() {
    let mut m = Market::new(14);
    let (c1, c2) = (posted_cpo(&mut m), posted_cpo(&mut m));
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    let l1 = pam_s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &pam_s.id(), &c1.id)
                .unwrap(),
        )
        .unwrap();
    let (offer, _) = pam_s.offer(&mut m.rng, &l1, "o").unwrap();
    m.server.handle_bind_offer(&mut m.rng, NOW, &offer).unwrap();
    // The listing was used up: a replay is stale, and cannot be turned
    // against the other CPO.
    assert_eq!(
        m.server
            .handle_bind_offer(&mut m.rng, NOW, &offer)
            .unwrap_err(),
        Error::Replayed
    );
    assert!(m.server.board().binding(&c2.id).unwrap().is_none());
}

#[test]
fn binding_only_within_the_session_and_the_cpo_dates() {
    let mut m = Market::new(15);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    // A session that starts tomorrow: no listing today.
    let later = session(&mut m, &pam, NOW.plus_secs(DAY), NOW.plus_secs(2 * DAY));
    refused_with(
        m.server.listing(&mut m.rng, NOW, &later.id(), &ccpo.id),
        "time range",
    );
    // A listing answered after the listing's time to live: stale.
    let pam_s = day_session(&mut m, &pam);
    let l = pam_s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id)
                .unwrap(),
        )
        .unwrap();
    let (offer, _) = pam_s.offer(&mut m.rng, &l, "late").unwrap();
    let late = NOW.plus_secs(agora_cpo::LISTING_TTL_SECS + 1);
    assert_eq!(
        m.server
            .handle_bind_offer(&mut m.rng, late, &offer)
            .unwrap_err(),
        Error::Replayed
    );
    // A session longer than allowed is refused at once.
    let (m0, _) = seller::request_session(
        &pam.keys,
        &mut m.rng,
        pam.bond.clone(),
        NOW,
        NOW.plus_secs(agora_cpo::MAX_SESSION_SECS + 1),
        &m.server_peer,
    )
    .unwrap();
    refused_with(
        m.server.handle_browse_request(&mut m.rng, NOW, &m0),
        "at most",
    );
}

#[test]
fn a_buyer_bond_cannot_open_a_browse_session() {
    let mut m = Market::new(16);
    let bob = Seller {
        keys: clone_keys(&m.bob),
        bond: m.bob_bond.clone(),
    };
    let (m0, _) = seller::request_session(
        &bob.keys,
        &mut m.rng,
        bob.bond,
        NOW,
        NOW.plus_secs(DAY),
        &m.server_peer,
    )
    .unwrap();
    refused_with(m.server.handle_browse_request(&mut m.rng, NOW, &m0), "role");
}

#[test]
fn a_revoked_seller_binds_nothing_and_her_sessions_end() {
    let mut m = Market::new(17);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    let listing = pam_s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id)
                .unwrap(),
        )
        .unwrap();
    let (offer, _) = pam_s.offer(&mut m.rng, &listing, "o").unwrap();
    // The agency revokes Pam's bond; the server loads the new CRL.
    let serial = agora_pki::parse_certificate(&pam.bond).unwrap().serial;
    let crl = m
        .agency
        .issue_crl(&CrlParams {
            this_update: NOW.minus_secs(10),
            next_update: NOW.plus_secs(DAY),
            crl_number: 2,
            revoked: vec![Revocation {
                serial,
                revoked_at: NOW.minus_secs(10),
                reason: RevocationReason::KeyCompromise,
            }],
        })
        .unwrap();
    m.server.set_trust(BondTrust {
        crls: vec![crl],
        ..(*m.server.trust()).clone()
    });
    assert!(matches!(
        m.server.handle_bind_offer(&mut m.rng, NOW, &offer),
        Err(Error::NotAuthorised(_))
    ));
    assert!(m
        .server
        .sessions()
        .get(&pam_s.id())
        .unwrap()
        .unwrap()
        .ended_at
        .is_some());
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn bidding_cpos_are_not_bound_first_come() {
    let mut m = Market::new(18);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<agora_cpo::Bidding>(ccpo.clone(), "");
    m.post(&acceptance);
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    refused_with(
        m.server.listing(&mut m.rng, NOW, &pam_s.id(), &ccpo.id),
        "bids",
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Pam binds the CPO; returns her session and receipt.
fn bound(m: &mut Market) -> (Ccpo, Seller, agora_cpo::seller::BoundReceipt) {
    let ccpo = posted_cpo(m);
    let pam = seller(m);
    let s = day_session(m, &pam);
    let l = s
        .open_listing(
            &m.server
                .listing(&mut m.rng, NOW, &s.id(), &ccpo.id)
                .unwrap(),
        )
        .unwrap();
    let (o, exp) = s.offer(&mut m.rng, &l, "courier").unwrap();
    let b = m.server.handle_bind_offer(&mut m.rng, NOW, &o).unwrap();
    (ccpo, pam, exp.handle(&s, &b.reply).unwrap())
}

#[test]
fn the_buyer_fetches_his_binding_with_a_signed_request() {
    use agora_cpo::delivery::{open_binding_reply, request_binding};
    let mut m = Market::new(40);
    let (ccpo, _, receipt) = bound(&mut m);
    let (req_bytes, req) = request_binding(&m.bob, &mut m.rng, NOW, ccpo.id);
    let reply = m
        .server
        .binding_for_buyer(&mut m.rng, NOW, &req_bytes)
        .unwrap();
    let evidence = open_binding_reply(&m.bob, &m.server_peer.sign, &req, &reply).unwrap();
    assert_eq!(
        evidence, receipt.signed,
        "Bob gets Pam's BOUND_CPO, with her BC_P inside"
    );
    // The same request again: replayed.
    assert_eq!(
        m.server
            .binding_for_buyer(&mut m.rng, NOW, &req_bytes)
            .unwrap_err(),
        Error::Replayed
    );
    // A stale one: refused.
    let (old, _) = request_binding(
        &m.bob,
        &mut m.rng,
        NOW.minus_secs(agora_cpo::MAX_CLOCK_SKEW_SECS + 1),
        ccpo.id,
    );
    assert_eq!(
        m.server
            .binding_for_buyer(&mut m.rng, NOW, &old)
            .unwrap_err(),
        Error::Replayed
    );
    // Someone else asking for Bob's binding: not his key.
    let mallory = keys(&mut m.rng);
    let (forged, _) = request_binding(&mallory, &mut m.rng, NOW, ccpo.id);
    assert!(matches!(
        m.server.binding_for_buyer(&mut m.rng, NOW, &forged),
        Err(Error::NotAuthorised(_))
    ));
}

#[test]
fn delivery_proves_the_seller_holds_bc_p() {
    use agora_cpo::delivery::{challenge, check_proof, prove};
    let mut m = Market::new(41);
    let (_, pam, receipt) = bound(&mut m);
    let c = challenge(&mut m.rng, NOW, &receipt.signed, "Bob's intermediary").unwrap();
    let proof = prove(&pam.keys, &c, &receipt.signed).unwrap();
    let who = check_proof(&proof, &c, &receipt.signed, &m.server_peer.sign, NOW).unwrap();
    assert_eq!(who, pam.keys.id());
    // Quinn, who did not bind it, cannot answer for Pam.
    let quinn = keys(&mut m.rng);
    let fake = prove(&quinn, &c, &receipt.signed).unwrap();
    assert!(check_proof(&fake, &c, &receipt.signed, &m.server_peer.sign, NOW).is_err());
    // An old proof does not answer a new challenge; an old challenge expires.
    let c2 = challenge(&mut m.rng, NOW, &receipt.signed, "Bob").unwrap();
    assert!(matches!(
        check_proof(&proof, &c2, &receipt.signed, &m.server_peer.sign, NOW),
        Err(Error::PeerMisbehaved(_))
    ));
    let late = NOW.plus_secs(agora_cpo::delivery::CHALLENGE_TTL_SECS + 1);
    assert_eq!(
        check_proof(&proof, &c, &receipt.signed, &m.server_peer.sign, late).unwrap_err(),
        Error::Replayed
    );
    // Pam refuses to sign a challenge about another binding.
    let other = challenge(&mut m.rng, NOW, b"some other contract", "Bob").unwrap();
    assert!(prove(&pam.keys, &other, &receipt.signed).is_err());
}

#[test]
fn revoked_buyers_cpos_are_taken_down_and_revoked_sellers_sessions_end() {
    let mut m = Market::new(42);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    let quinn = seller(&mut m);
    let quinn_s = day_session(&mut m, &quinn);
    // Nothing revoked: the sweep changes nothing.
    assert_eq!(m.server.apply_revocations(NOW).unwrap(), Default::default());
    // The agency revokes Bob's bond and Pam's; the server loads the CRL.
    let serial = |der: &[u8]| agora_pki::parse_certificate(der).unwrap().serial;
    let crl = m
        .agency
        .issue_crl(&CrlParams {
            this_update: NOW.minus_secs(10),
            next_update: NOW.plus_secs(DAY),
            crl_number: 2,
            revoked: [serial(&m.bob_bond), serial(&pam.bond)]
                .into_iter()
                .map(|serial| Revocation {
                    serial,
                    revoked_at: NOW.minus_secs(10),
                    reason: RevocationReason::KeyCompromise,
                })
                .collect(),
        })
        .unwrap();
    m.server.set_trust(BondTrust {
        crls: vec![crl],
        ..(*m.server.trust()).clone()
    });
    let report = m.server.apply_revocations(NOW).unwrap();
    assert_eq!(report.cpos_taken_down, 1);
    assert_eq!(report.sessions_ended, 1);
    assert_eq!(m.server.board().taken_down(&ccpo.id).unwrap(), Some(NOW));
    assert!(m
        .server
        .board()
        .list_open(NOW, None, 10)
        .unwrap()
        .is_empty());
    assert!(m
        .server
        .sessions()
        .get(&pam_s.id())
        .unwrap()
        .unwrap()
        .ended_at
        .is_some());
    assert!(m
        .server
        .sessions()
        .get(&quinn_s.id())
        .unwrap()
        .unwrap()
        .ended_at
        .is_none());
    // Quinn, still in good standing, can no longer bind the taken-down CPO.
    refused_with(
        m.server.listing(&mut m.rng, NOW, &quinn_s.id(), &ccpo.id),
        "taken down",
    );
    // A second sweep finds nothing more to do.
    assert_eq!(m.server.apply_revocations(NOW).unwrap(), Default::default());
}

/// Flips one bit of every byte of `msg` (the bit rotates with the
/// position) and asserts that `receive` refuses each copy.
fn every_byte_flipped_is_refused(name: &str, msg: &[u8], mut receive: impl FnMut(&[u8]) -> bool) {
    assert!(
        receive(msg),
        "{name}: the untampered message must be accepted"
    );
    for i in 0..msg.len() {
        let mut bad = msg.to_vec();
        bad[i] ^= 1 << (i % 8);
        assert!(
            !receive(&bad),
            "{name}: a flipped bit at byte {i} was accepted"
        );
    }
}

#[test]
fn a_flipped_bit_anywhere_in_protocols_3_and_4_is_refused() {
    let mut m = Market::new(43);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    let (from, until) = (NOW.minus_secs(60), NOW.plus_secs(DAY));
    // Each receiving step consumes its state, so each try gets a state
    // rebuilt from cloned RNGs: every try faces the same expected hashes,
    // and only the flipped bit differs.
    let seller_rng = rand_chacha::ChaCha20Rng::seed_from_u64(4343);
    let server_rng = rand_chacha::ChaCha20Rng::seed_from_u64(4344);
    let start = || {
        seller::request_session(
            &pam.keys,
            &mut seller_rng.clone(),
            pam.bond.clone(),
            from,
            until,
            &m.server_peer,
        )
        .unwrap()
    };
    let (m0, _) = start();
    // A fresh server (fresh replay cache) for each try of the server's steps.
    let fresh_server = || m.server_with_arbiters(vec![m.alice_peer.sign]);
    every_byte_flipped_is_refused("browse M_0", &m0, |b| {
        fresh_server()
            .handle_browse_request(&mut server_rng.clone(), NOW, b)
            .is_ok()
    });
    let (m1, _) = fresh_server()
        .handle_browse_request(&mut server_rng.clone(), NOW, &m0)
        .unwrap();
    let answer = |m1: &[u8]| {
        let (_, st) = start();
        st.handle(&pam.keys, &mut seller_rng.clone(), m1)
    };
    every_byte_flipped_is_refused("browse M_1", &m1, |b| answer(b).is_ok());
    let (m2, _) = answer(&m1).unwrap();
    let server = fresh_server();
    every_byte_flipped_is_refused("browse M_2", &m2, |b| {
        let s = fresh_server();
        let (_, pending) = s
            .handle_browse_request(&mut server_rng.clone(), NOW, &m0)
            .unwrap();
        pending
            .handle_response(&s, &mut server_rng.clone(), NOW, b)
            .is_ok()
    });
    let (_, pending) = server
        .handle_browse_request(&mut server_rng.clone(), NOW, &m0)
        .unwrap();
    let granted = pending
        .handle_response(&server, &mut server_rng.clone(), NOW, &m2)
        .unwrap();
    every_byte_flipped_is_refused("browse M_3", &granted.reply, |b| {
        let (_, st) = answer(&m1).unwrap();
        st.handle(&pam.keys, b).is_ok()
    });
    let (_, st) = answer(&m1).unwrap();
    let session = st.handle(&pam.keys, &granted.reply).unwrap();

    // Protocol 4 on that server: the listing (opening it changes nothing),
    // the offer (refused before it would use up the listing), BOUND_CPO
    // (the seller's state rebuilt for each try).
    server
        .board()
        .post(&m.server.board().get(&ccpo.id).unwrap().unwrap())
        .unwrap();
    let l0 = server
        .listing(&mut m.rng, NOW, &session.id(), &ccpo.id)
        .unwrap();
    every_byte_flipped_is_refused("bind M_0", &l0, |b| session.open_listing(b).is_ok());
    let listing = session.open_listing(&l0).unwrap();
    let offer_rng = rand_chacha::ChaCha20Rng::seed_from_u64(4345);
    let (offer, _) = session
        .offer(&mut offer_rng.clone(), &listing, "o")
        .unwrap();
    for i in 0..offer.len() {
        let mut bad = offer.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(
            server.handle_bind_offer(&mut m.rng, NOW, &bad).is_err(),
            "bind M_1: a flipped bit at byte {i} was accepted"
        );
    }
    let bound = server.handle_bind_offer(&mut m.rng, NOW, &offer).unwrap();
    every_byte_flipped_is_refused("bind M_2", &bound.reply, |b| {
        let (_, exp) = session
            .offer(&mut offer_rng.clone(), &listing, "o")
            .unwrap();
        exp.handle(&session, b).is_ok()
    });
}

#[test]
fn listings_are_pulled_under_k_p_and_only_by_its_holder() {
    let mut m = Market::new(41);
    let ccpo = posted_cpo(&mut m);
    let (pam, quinn) = (seller(&mut m), seller(&mut m));
    let pam_s = day_session(&mut m, &pam);
    let quinn_s = day_session(&mut m, &quinn);

    // Pam's request gives her the protocol-4 listing she can bind with.
    let req = pam_s.request_listing(&mut m.rng, ccpo.id, agora_cpo::Mode::FirstCome);
    let m0 = m
        .server
        .handle_listing_request(&mut m.rng, NOW, &req)
        .unwrap();
    let listing = pam_s.open_listing(&m0).unwrap();
    assert_eq!(listing.message.ccpo, ccpo);
    let (m1, exp) = pam_s.offer(&mut m.rng, &listing, "").unwrap();
    let bound = m.server.handle_bind_offer(&mut m.rng, NOW, &m1).unwrap();
    exp.handle(&pam_s, &bound.reply).unwrap();

    // A request under Pam's K_p relabelled as Quinn's session: the MAC key
    // is not the session's.
    let mut forged = pam_s.request_listing(&mut m.rng, ccpo.id, agora_cpo::Mode::FirstCome);
    let at = find(&forged, &pam_s.id()).unwrap();
    forged[at..at + 32].copy_from_slice(&quinn_s.id());
    assert_eq!(
        m.server
            .handle_listing_request(&mut m.rng, NOW, &forged)
            .unwrap_err(),
        Error::Crypto
    );
    // A request naming another session inside the MAC is refused.
    let inner = agora_cpo::msg::ListingRequest {
        session: pam_s.id(),
        cpo: ccpo.id,
        mode: agora_cpo::Mode::FirstCome,
    };
    let quinn_channel = Channel::new(quinn_s.k_p());
    let swapped = quinn_channel.seal_authed(&mut m.rng, Direction::ToServer, &inner);
    assert!(matches!(
        m.server.handle_listing_request(&mut m.rng, NOW, &swapped),
        Err(Error::PeerMisbehaved(_))
    ));
    // An unknown session, and a bound CPO, give no listing.
    let stranger = Channel::new(&BindingKey::from_bytes([9; 32]));
    let unknown = stranger.seal_authed(&mut m.rng, Direction::ToServer, &inner);
    assert!(matches!(
        m.server.handle_listing_request(&mut m.rng, NOW, &unknown),
        Err(Error::NotAuthorised(_))
    ));
    let again = quinn_s.request_listing(&mut m.rng, ccpo.id, agora_cpo::Mode::FirstCome);
    refused_with(
        m.server.handle_listing_request(&mut m.rng, NOW, &again),
        "bound",
    );
}

/// A page of listings in one round trip: each open CPO gets its own listing
/// (fresh R_0, usable once, only in this session), each other CPO its
/// refusal in its place; the answer is under K_p and for this request only.
#[test]
fn a_page_of_listings_lists_what_is_open_and_says_why_the_rest_is_not() {
    let mut m = Market::new(43);
    let (open_a, open_b, bound) = (posted_cpo(&mut m), posted_cpo(&mut m), posted_cpo(&mut m));
    let (pam, quinn) = (seller(&mut m), seller(&mut m));
    let pam_s = day_session(&mut m, &pam);
    let quinn_s = day_session(&mut m, &quinn);
    // Quinn binds `bound` first.
    let l = m
        .server
        .listing(&mut m.rng, NOW, &quinn_s.id(), &bound.id)
        .unwrap();
    let (m1, _) = quinn_s
        .offer(&mut m.rng, &quinn_s.open_listing(&l).unwrap(), "")
        .unwrap();
    m.server.handle_bind_offer(&mut m.rng, NOW, &m1).unwrap();

    let page = [open_a.id, bound.id, [7; 32], open_b.id];
    let (req, exp) = pam_s
        .request_listings(&mut m.rng, &page, agora_cpo::Mode::FirstCome)
        .unwrap();
    let reply = m
        .server
        .handle_listings_request(&mut m.rng, NOW, &req)
        .unwrap();
    every_byte_flipped_is_refused("listings", &reply, |b| {
        let (_, exp) = pam_s
            .request_listings(&mut m.rng.clone(), &page, agora_cpo::Mode::FirstCome)
            .unwrap();
        exp.handle(&pam_s, b).is_ok()
    });
    let entries = exp.handle(&pam_s, &reply).unwrap();
    assert_eq!(
        entries.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        page,
        "in the order asked"
    );
    assert!(entries[1].1.as_ref().unwrap_err().contains("already bound"));
    assert!(entries[2].1.as_ref().unwrap_err().contains("no such CPO"));
    let la = pam_s.open_listing(entries[0].1.as_ref().unwrap()).unwrap();
    let lb = pam_s.open_listing(entries[3].1.as_ref().unwrap()).unwrap();
    assert_eq!((la.ccpo().id, lb.ccpo().id), (open_a.id, open_b.id));

    // Each listing binds once, in this session only.
    let (offer_a, exp_a) = pam_s.offer(&mut m.rng, &la, "").unwrap();
    let bound_a = m
        .server
        .handle_bind_offer(&mut m.rng, NOW, &offer_a)
        .unwrap();
    exp_a.handle(&pam_s, &bound_a.reply).unwrap();
    assert_eq!(
        m.server
            .handle_bind_offer(&mut m.rng, NOW, &offer_a)
            .unwrap_err(),
        Error::Replayed
    );
    let stolen = Channel::new(quinn_s.k_p()).seal_authed(
        &mut m.rng,
        Direction::ToServer,
        &agora_cpo::msg::BindOffer {
            x0_hash: agora_cpo::msg::digest(&lb.message),
            r1: [1; 32],
            offer: String::new(),
        },
    );
    assert!(matches!(
        m.server.handle_bind_offer(&mut m.rng, NOW, &stolen),
        Err(Error::NotAuthorised(_))
    ));
    // (That try used Pam's listing up: the server takes a listing out before
    // it checks whose it is. Only a K_p holder can name it: R_0 is sealed.)
    let (req_b, exp_lb) = pam_s
        .request_listings(&mut m.rng, &[open_b.id], agora_cpo::Mode::FirstCome)
        .unwrap();
    let again = m
        .server
        .handle_listings_request(&mut m.rng, NOW, &req_b)
        .unwrap();
    let lb = pam_s
        .open_listing(
            exp_lb.handle(&pam_s, &again).unwrap()[0]
                .1
                .as_ref()
                .unwrap(),
        )
        .unwrap();
    let (offer_b, exp_b) = pam_s.offer(&mut m.rng, &lb, "").unwrap();
    let bound_b = m
        .server
        .handle_bind_offer(&mut m.rng, NOW, &offer_b)
        .unwrap();
    exp_b.handle(&pam_s, &bound_b.reply).unwrap();

    // The answer to another request is refused by Pam.
    let (_, other) = pam_s
        .request_listings(&mut m.rng, &[open_a.id], agora_cpo::Mode::FirstCome)
        .unwrap();
    assert!(matches!(
        other.handle(&pam_s, &reply),
        Err(Error::PeerMisbehaved(_))
    ));
    // A request under another K_p, or naming another session inside the MAC.
    let mut forged = req.clone();
    let at = find(&forged, &pam_s.id()).unwrap();
    forged[at..at + 32].copy_from_slice(&quinn_s.id());
    assert_eq!(
        m.server
            .handle_listings_request(&mut m.rng, NOW, &forged)
            .unwrap_err(),
        Error::Crypto
    );
    let swapped = Channel::new(quinn_s.k_p()).seal_authed(
        &mut m.rng,
        Direction::ToServer,
        &agora_cpo::msg::ListingsRequest {
            session: pam_s.id(),
            cpos: vec![open_a.id],
            mode: agora_cpo::Mode::FirstCome,
        },
    );
    assert!(matches!(
        m.server.handle_listings_request(&mut m.rng, NOW, &swapped),
        Err(Error::PeerMisbehaved(_))
    ));
    // Pages are 1 to 32 CPOs, none twice.
    for bad in [
        vec![],
        vec![open_a.id, open_a.id],
        (0..33u8).map(|i| [i; 32]).collect(),
    ] {
        assert!(matches!(
            pam_s.request_listings(&mut m.rng, &bad, agora_cpo::Mode::FirstCome),
            Err(Error::ApiMisuse(_))
        ));
    }
    // An ended session gets no page.
    let end = pam_s.end(&mut m.rng);
    m.server.handle_end_session(NOW, &end).unwrap();
    let (req, _) = pam_s
        .request_listings(&mut m.rng, &[open_b.id], agora_cpo::Mode::FirstCome)
        .unwrap();
    assert!(matches!(
        m.server.handle_listings_request(&mut m.rng, NOW, &req),
        Err(Error::NotAuthorised(_))
    ));
}

/// A seller who asks for listings faster than she answers them retires her
/// own oldest past MAX_LISTINGS_PER_SESSION, not anyone else's.
#[test]
fn a_session_holds_a_bounded_number_of_listings() {
    let mut m = Market::new(44);
    let ccpo = posted_cpo(&mut m);
    let (pam, quinn) = (seller(&mut m), seller(&mut m));
    let pam_s = day_session(&mut m, &pam);
    let quinn_s = day_session(&mut m, &quinn);
    let listing = |s: &SellerSession, m: &mut Market| {
        let l = m
            .server
            .listing(&mut m.rng, NOW, &s.id(), &ccpo.id)
            .unwrap();
        s.open_listing(&l).unwrap()
    };
    let quinns = listing(&quinn_s, &mut m);
    let first = listing(&pam_s, &mut m);
    let mut last = None;
    for _ in 0..agora_cpo::MAX_LISTINGS_PER_SESSION {
        last = Some(listing(&pam_s, &mut m));
    }
    let (retired, _) = pam_s.offer(&mut m.rng, &first, "").unwrap();
    assert_eq!(
        m.server
            .handle_bind_offer(&mut m.rng, NOW, &retired)
            .unwrap_err(),
        Error::Replayed,
        "her oldest listing was retired by her newest"
    );
    // Quinn's listing, older than all of Pam's, still answers.
    let (offer, exp) = quinn_s.offer(&mut m.rng, &quinns, "").unwrap();
    let bound = m.server.handle_bind_offer(&mut m.rng, NOW, &offer).unwrap();
    exp.handle(&quinn_s, &bound.reply).unwrap();
    // Pam's newest was kept (the CPO is bound now, so it is refused as such).
    let (newest, _) = pam_s.offer(&mut m.rng, &last.unwrap(), "").unwrap();
    refused_with(
        m.server.handle_bind_offer(&mut m.rng, NOW, &newest),
        "already bound",
    );
}

/// What a node asks before it runs a bind step on its async workers: is the
/// session the message names held in this server's memory? A message naming
/// a session the server never opened, which anyone can send, is not, so the
/// node takes it to its blocking pool instead of reading storage on a
/// worker (issue 15); so is a message that is no session message at all.
#[test]
fn only_a_session_held_in_memory_lets_a_bind_step_run_on_the_runtime() {
    let mut m = Market::new(10);
    let ccpo = posted_cpo(&mut m);
    let pam = seller(&mut m);
    let pam_s = day_session(&mut m, &pam);
    // Once the server has read a live session (its first step, on the
    // blocking pool), it holds it: the next steps may run on the runtime.
    let first = pam_s.request_listing(&mut m.rng, ccpo.id, agora_cpo::Mode::FirstCome);
    m.server
        .handle_listing_request(&mut m.rng, NOW, &first)
        .expect("a listing");
    let real = pam_s.request_listing(&mut m.rng, ccpo.id, agora_cpo::Mode::FirstCome);
    assert!(m.server.has_in_memory(&real));
    let made_up = SellerSession::from_parts(
        BindingKey::from_bytes([9; 32]),
        *pam_s.server(),
        pam.bond.clone(),
        NOW.minus_secs(60),
        NOW.plus_secs(DAY),
    );
    let forged = made_up.request_listing(&mut m.rng, ccpo.id, agora_cpo::Mode::FirstCome);
    assert!(!m.server.has_in_memory(&forged));
    assert!(!m.server.has_in_memory(b"not a session message"));
    // The blocking path refuses it as the role always did.
    assert!(m
        .server
        .handle_listing_request(&mut m.rng, NOW, &forged)
        .is_err());
}
