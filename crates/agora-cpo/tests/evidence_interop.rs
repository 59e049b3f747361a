#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The CPO protocols' signed evidence verifies with an independent COSE
//! implementation, pycose (ARCHITECTURE section 3): protocols 1 to 4 run in
//! one process, then
//!
//! - the ARBITER_ACCEPTANCE (protocol 1, signed by Alice),
//! - the posted CPO (protocol 2, signed by the server),
//! - BOUND_CPO (protocol 4, signed by the server),
//!
//! are each checked by pycose against the signer's raw Ed25519 public key
//! (and pycose must read exactly the payload agora signed), and by agora's
//! own `cose::verify` for the message type; a tampered copy (payload or
//! signature), or the right bytes under another party's key, is refused by
//! both. Uses agora-core's `tests/interop/cose_check.py`; needs `python3`
//! with `pycose` (`pip install pycose`): without them the test fails,
//! unless `AGORA_SKIP_PYCOSE=1` is set.

mod common;

use agora_core::wire::{self, cose};
use agora_cpo::msg::{ArbiterAcceptance, BoundCpo, PostedCpo};
use agora_cpo::FirstCome;
use common::*;
#[path = "../../agora-core/tests/interop/evidence.rs"]
mod evidence;
use evidence::*;

#[test]
fn cpo_evidence_verifies_in_pycose() {
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(40);

    // Protocol 1: ARBITER_ACCEPTANCE; protocol 2: the posted CPO.
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "arbiter-fee: 2.50 EUR");
    let (receipt, posted, _) = m.post(&acceptance);
    assert_eq!(posted.entry.acceptance, acceptance.signed);
    assert_eq!(
        posted.entry.posted, receipt.signed,
        "Bob keeps what the board keeps"
    );

    // Protocol 3: Pam's browse session.
    let (pam, pam_bond) = m.seller_keys();
    let session = m.day_session(&pam, &pam_bond);

    // Protocol 4: she binds the CPO; BOUND_CPO.
    let listing = m
        .server
        .listing(&mut m.rng, NOW, &session.id(), &ccpo.id)
        .unwrap();
    let listing = session.open_listing(&listing).unwrap();
    let (offer, expect) = session
        .offer(&mut m.rng, &listing, "ship to the intermediary ✓")
        .unwrap();
    let bound = m.server.handle_bind_offer(&mut m.rng, NOW, &offer).unwrap();
    let bound_receipt = expect.handle(&session, &bound.reply).unwrap();
    assert_eq!(bound_receipt.signed, bound.signed);
    assert_eq!(bound.message.seller_bond, pam_bond);

    let dir = TempDir::new("evidence-interop");
    let d = &dir.0;
    let x3: ArbiterAcceptance<FirstCome> =
        wire::decode(&cose::verify_raw(&acceptance.signed, &m.alice_peer.sign).unwrap()).unwrap();
    assert_eq!(x3.ccpo, ccpo);
    check_evidence(
        d,
        "arbiter_acceptance",
        &acceptance.signed,
        &x3,
        &m.alice_peer.sign,
        &m.server_peer.sign,
    );
    check_evidence::<PostedCpo>(
        d,
        "posted_cpo",
        &posted.entry.posted,
        &receipt.cpo,
        &m.server_peer.sign,
        &m.alice_peer.sign,
    );
    check_evidence::<BoundCpo>(
        d,
        "bound_cpo",
        &bound_receipt.signed,
        &bound.message,
        &m.server_peer.sign,
        &pam.sign.verifying_key(),
    );
}

#[test]
fn bidding_evidence_verifies_in_pycose() {
    use agora_cpo::bidding::{Award, BidReceipt, Notice};
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(41);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<agora_cpo::Bidding>(ccpo.clone(), "");
    m.post(&acceptance);
    let (pam, pam_bond) = m.seller_keys();
    let session = m.day_session(&pam, &pam_bond);
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &session.id(), &ccpo.id)
        .unwrap();
    let l = session.open_bid_listing(&l).unwrap();
    let (b1, exp) = session
        .bid(&mut m.rng, &l, eur(9_000), "in a week")
        .unwrap();
    let taken = m.server.handle_bid(&mut m.rng, NOW, &b1).unwrap();
    let held = exp.handle(&session, &taken.reply).unwrap();
    let closed = ccpo.end;
    let (req, pa) = m
        .server
        .request_award(&mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, _) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    let awarded = pa.handle_award(&m.server, closed, &reply).unwrap();
    let award: Award = cose::verify(&awarded.award, &m.alice_peer.sign).unwrap();
    let (_, _, notice_bytes) = &awarded.notices[0];
    let notice: Notice = cose::verify(notice_bytes, &m.server_peer.sign).unwrap();

    let dir = TempDir::new("bidding-evidence-interop");
    let d = &dir.0;
    check_evidence::<BidReceipt>(
        d,
        "bid_receipt",
        &held.signed,
        &held.message,
        &m.server_peer.sign,
        &m.alice_peer.sign,
    );
    check_evidence::<Award>(
        d,
        "award",
        &awarded.award,
        &award,
        &m.alice_peer.sign,
        &m.server_peer.sign,
    );
    check_evidence::<Notice>(
        d,
        "notice",
        notice_bytes,
        &notice,
        &m.server_peer.sign,
        &m.alice_peer.sign,
    );
}
