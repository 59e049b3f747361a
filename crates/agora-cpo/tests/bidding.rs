#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Protocol 6: sellers bid on a CPO approved for bidding (protocol 5); when
//! bidding closes the server hands the bids to the arbiter, who signs the
//! winner under the stated rule; every bidder gets a signed notice.

mod common;

use agora_core::wire::{cose, envelope};
use agora_core::{Currency, Error, Money};
use agora_cpo::bidding::{
    check_notice, choose_winner, Award, BidReceipt, BidSummary, HeldReceipt, Outcome,
    AWARD_GRACE_SECS, AWARD_RULE,
};

use agora_cpo::seller::SellerSession;
use agora_cpo::{Bidding, Ccpo, Keys};
use common::*;

struct Bidder {
    keys: Keys,
    session: SellerSession,
}

fn bidder(m: &mut Market) -> Bidder {
    let (keys, bond) = m.seller_keys();
    let session = m.day_session(&keys, &bond);
    Bidder { keys, session }
}

fn bidding_cpo(m: &mut Market) -> Ccpo {
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<Bidding>(ccpo.clone(), "");
    m.post(&acceptance);
    ccpo
}

fn bid(m: &mut Market, b: &Bidder, ccpo: &Ccpo, cents: u64) -> Result<HeldReceipt, Error> {
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &b.session.id(), &ccpo.id)?;
    let l = b.session.open_bid_listing(&l)?;
    let (m1, exp) = b
        .session
        .bid(&mut m.rng, &l, eur(cents), "delivered in 3 days")?;
    let taken = m.server.handle_bid(&mut m.rng, NOW, &m1)?;
    exp.handle(&b.session, &taken.reply)
}

#[test]
fn lowest_bid_wins_and_everyone_is_told() {
    let mut m = Market::new(30);
    let ccpo = bidding_cpo(&mut m); // 120.00 EUR
    let (p, q, r) = (bidder(&mut m), bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &p, &ccpo, 11_500).unwrap();
    let rq = bid(&mut m, &q, &ccpo, 9_900).unwrap();
    let rr = bid(&mut m, &r, &ccpo, 10_400).unwrap();

    // BID_RECEIPT: signed by the server, with T_Response after EndDate.
    let x2: BidReceipt = cose::verify(&rq.signed, &m.server_peer.sign).unwrap();
    assert_eq!(x2.t_response, ccpo.end.plus_secs(AWARD_GRACE_SECS));
    assert_eq!(x2.price, eur(9_900));

    // No award while bidding is open.
    assert!(matches!(
        m.server
            .request_award(&mut m.rng, NOW, &ccpo.id, &m.alice_peer),
        Err(Error::Refused(_))
    ));
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, signed_award) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    // The pending award survives being saved (the award may come by mail).
    let saved = pending.to_bytes();
    let pending = agora_cpo::bidding::PendingAward::from_bytes(&saved).unwrap();
    assert_eq!(pending.to_bytes(), saved);
    let awarded = pending.handle_award(&m.server, closed, &reply).unwrap();
    assert_eq!(awarded.award, signed_award);
    assert_eq!(awarded.winner, Some(q.keys.id()));
    let a: Award = cose::verify(&signed_award, &m.alice_peer.sign).unwrap();
    assert_eq!(a.rule, AWARD_RULE);
    assert_eq!(a.winner, Some(rq.hash()));
    assert_eq!(a.considered, vec![rp.hash(), rq.hash(), rr.hash()]);

    // Every bidder's notice checks out, and says what the award says.
    assert_eq!(awarded.notices.len(), 3);
    for (held, expect) in [
        (&rp, Outcome::Lost),
        (&rq, Outcome::Won),
        (&rr, Outcome::Lost),
    ] {
        let (_, _, notice) = awarded
            .notices
            .iter()
            .find(|(_, h, _)| *h == held.hash())
            .unwrap();
        let got = check_notice(notice, held, &m.server_peer.sign, &m.alice_peer.sign).unwrap();
        assert_eq!(got, expect);
        // Asking again gives the same notice.
        assert_eq!(&m.server.notice(&ccpo.id, &held.hash()).unwrap(), notice);
    }
    // The CPO is bound to the winner and left the listing.
    let b = m.server.board().binding(&ccpo.id).unwrap().unwrap();
    assert_eq!(b.seller, q.keys.id());
    assert!(m
        .server
        .board()
        .list_open(closed, None, 10)
        .unwrap()
        .is_empty());
    // A second award is refused; late bids are refused.
    assert!(m
        .server
        .request_award(&mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .is_err());
}

#[test]
fn bids_must_be_within_the_cpo_price_and_currency() {
    let mut m = Market::new(31);
    let ccpo = bidding_cpo(&mut m);
    let p = bidder(&mut m);
    assert!(matches!(
        bid(&mut m, &p, &ccpo, 12_001),
        Err(Error::Refused(_))
    ));
    assert!(matches!(bid(&mut m, &p, &ccpo, 0), Err(Error::Refused(_))));
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id)
        .unwrap();
    let l = p.session.open_bid_listing(&l).unwrap();
    let usd = Money::new(100, Currency::new("USD").unwrap());
    let (m1, _) = p.session.bid(&mut m.rng, &l, usd, "").unwrap();
    assert!(matches!(
        m.server.handle_bid(&mut m.rng, NOW, &m1),
        Err(Error::Refused(_))
    ));
    assert!(
        m.server.store().bids().bids(&ccpo.id).unwrap().is_empty(),
        "nothing recorded"
    );
    // Exactly the CPO's price is a valid bid.
    bid(&mut m, &p, &ccpo, 12_000).unwrap();
}

#[test]
fn a_bid_listing_is_not_a_binding_listing_and_vice_versa() {
    let mut m = Market::new(32);
    let ccpo = bidding_cpo(&mut m);
    let p = bidder(&mut m);
    // A bidding CPO is never listed for first-come binding...
    assert!(matches!(
        m.server.listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id),
        Err(Error::Refused(_))
    ));
    // ...and an offer that answers a bid listing does not bind it.
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id)
        .unwrap();
    let l = p.session.open_bid_listing(&l).unwrap();
    let as_bind = agora_cpo::seller::Listing::for_testing_only(
        agora_cpo::msg::BindListing {
            r0: l.message.r0,
            ccpo: l.message.ccpo.clone(),
        },
        agora_cpo::msg::digest(&l.message),
    );
    let (m1, _) = p.session.offer(&mut m.rng, &as_bind, "sneaky").unwrap();
    assert!(matches!(
        m.server.handle_bind_offer(&mut m.rng, NOW, &m1),
        Err(Error::PeerMisbehaved(_))
    ));
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn an_award_that_breaks_the_rule_is_refused() {
    let mut m = Market::new(33);
    let ccpo = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &p, &ccpo, 11_000).unwrap();
    bid(&mut m, &q, &ccpo, 10_000).unwrap();
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    // A corrupted Alice picks the dearer bid.
    let opened = envelope::open::<agora_cpo::bidding::AwardRequest>(&req, &m.alice_keys.enc, |k| {
        m.server_peer.key_if(k)
    })
    .unwrap();
    let bad = Award {
        request_hash: agora_cpo::msg::digest(&opened.message),
        cpo: ccpo.id,
        winner: Some(rp.hash()),
        rule: AWARD_RULE.into(),
        considered: opened.message.bids.iter().map(|b| b.receipt_hash).collect(),
        t: closed,
    };
    let reply = envelope::seal(&mut m.rng, &m.alice_keys.sign, &m.server_peer.enc, &bad).unwrap();
    assert_eq!(
        pending.handle_award(&m.server, closed, &reply).unwrap_err(),
        Error::PeerMisbehaved("the award does not follow the stated rule")
    );
    assert_eq!(
        m.server.store().bids().award(&ccpo.id).unwrap(),
        None,
        "nothing recorded"
    );
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn a_notice_that_contradicts_the_award_is_refused() {
    let mut m = Market::new(34);
    let ccpo = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &p, &ccpo, 11_000).unwrap();
    bid(&mut m, &q, &ccpo, 10_000).unwrap();
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, award) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    pending.handle_award(&m.server, closed, &reply).unwrap();
    // A server that tells Pam she won, although the award says otherwise.
    let lie = cose::sign(
        &m.server_keys.sign,
        &agora_cpo::bidding::Notice {
            cpo: ccpo.id,
            receipt_hash: rp.hash(),
            won: true,
            award,
        },
    );
    assert_eq!(
        check_notice(&lie, &rp, &m.server_peer.sign, &m.alice_peer.sign).unwrap_err(),
        Error::PeerMisbehaved("the notice contradicts the award")
    );
}

#[test]
fn the_rule_prefers_lower_then_earlier_then_smaller_hash() {
    let s = |h: u8, cents: u64, t: u64| BidSummary {
        receipt_hash: [h; 32],
        seller: agora_core::KeyId([h; 32]),
        price: eur(cents),
        t: agora_core::Timestamp(t),
    };
    let cap = eur(1_000);
    assert_eq!(choose_winner(&[], &cap), None);
    assert_eq!(
        choose_winner(&[s(1, 1_001, 5)], &cap),
        None,
        "over the price"
    );
    assert_eq!(
        choose_winner(&[s(1, 900, 5), s(2, 800, 9)], &cap),
        Some([2; 32])
    );
    assert_eq!(
        choose_winner(&[s(1, 800, 9), s(2, 800, 5)], &cap),
        Some([2; 32])
    );
    assert_eq!(
        choose_winner(&[s(3, 800, 5), s(2, 800, 5)], &cap),
        Some([2; 32])
    );
}

#[test]
fn a_flipped_bit_anywhere_in_protocol_6_is_refused() {
    use rand_chacha::rand_core::SeedableRng;
    let flip = |msg: &[u8], i: usize| {
        let mut b = msg.to_vec();
        b[i] ^= 1 << (i % 8);
        b
    };
    let mut m = Market::new(35);
    let ccpo = bidding_cpo(&mut m);
    let p = bidder(&mut m);
    // The listing and the bid.
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id)
        .unwrap();
    for i in 0..l.len() {
        assert!(
            p.session.open_bid_listing(&flip(&l, i)).is_err(),
            "bid M_0 byte {i}"
        );
    }
    let l = p.session.open_bid_listing(&l).unwrap();
    let bid_rng = rand_chacha::ChaCha20Rng::seed_from_u64(3535);
    let (m1, _) = p
        .session
        .bid(&mut bid_rng.clone(), &l, eur(9_000), "d")
        .unwrap();
    for i in 0..m1.len() {
        assert!(
            m.server.handle_bid(&mut m.rng, NOW, &flip(&m1, i)).is_err(),
            "bid M_1 byte {i}"
        );
    }
    assert!(
        m.server.store().bids().bids(&ccpo.id).unwrap().is_empty(),
        "nothing recorded"
    );
    let taken = m.server.handle_bid(&mut m.rng, NOW, &m1).unwrap();
    // BID_RECEIPT: the bidder's state rebuilt for each try.
    for i in 0..taken.reply.len() {
        let (_, exp) = p
            .session
            .bid(&mut bid_rng.clone(), &l, eur(9_000), "d")
            .unwrap();
        assert!(
            exp.handle(&p.session, &flip(&taken.reply, i)).is_err(),
            "BID_RECEIPT byte {i}"
        );
    }
    // The award request and the award.
    let closed = ccpo.end;
    let award_rng = rand_chacha::ChaCha20Rng::seed_from_u64(3536);
    let (req, _) = m
        .server
        .request_award(&mut award_rng.clone(), closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    for i in 0..req.len() {
        assert!(
            m.alice
                .handle_award_request(&mut m.rng, closed, &flip(&req, i), &m.server_peer)
                .is_err(),
            "award request byte {i}"
        );
    }
    let (reply, _) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    for i in 0..reply.len() {
        let (_, pending) = m
            .server
            .request_award(&mut award_rng.clone(), closed, &ccpo.id, &m.alice_peer)
            .unwrap();
        assert!(
            pending
                .handle_award(&m.server, closed, &flip(&reply, i))
                .is_err(),
            "award byte {i}"
        );
    }
    assert_eq!(
        m.server.store().bids().award(&ccpo.id).unwrap(),
        None,
        "nothing recorded"
    );
    let (_, pending) = m
        .server
        .request_award(&mut award_rng.clone(), closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    pending.handle_award(&m.server, closed, &reply).unwrap();
}

/// The award of `ccpo` (closed at its EndDate), run honestly.
fn award_now(m: &mut Market, ccpo: &Ccpo) -> agora_cpo::bidding::Awarded {
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, _) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    pending.handle_award(&m.server, closed, &reply).unwrap()
}

/// The simulator's finding on bidding, fixed: a bidder whose BID_RECEIPT is
/// lost bids again, and her first bid (same price, earlier) wins. She asks
/// for her receipts with a request signed by her bond key and gets every
/// one of hers, as the server signed them, and none of anyone else's; with
/// the recovered receipt her notice says she won. Nothing changes on the
/// server, and only she can read the reply.
#[test]
fn a_bidder_who_lost_her_receipt_fetches_hers_with_a_signed_request() {
    use agora_cpo::bidding::{open_bids_reply, request_bids};
    let mut m = Market::new(36);
    let ccpo = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    // Pam's first receipt is lost on the way; she bids again (a little
    // higher: every bid here is taken at the same second, and the rule
    // would break the tie by receipt hash).
    let lost = bid(&mut m, &p, &ccpo, 9_000).unwrap();
    let rq = bid(&mut m, &q, &ccpo, 9_500).unwrap();
    let again = bid(&mut m, &p, &ccpo, 9_100).unwrap();
    let before = m.server.store().bids().bids(&ccpo.id).unwrap();

    let (req_bytes, req) = request_bids(&p.keys, &mut m.rng, NOW, ccpo.id, 0);
    let reply = m
        .server
        .bids_for_seller(&mut m.rng, NOW, &req_bytes)
        .unwrap();
    let got = open_bids_reply(&p.keys, &m.server_peer.sign, &req, &reply).unwrap();
    assert_eq!(got.total, 2);
    assert_eq!(got.next(), None, "she holds them all");
    assert_eq!(
        got.receipts,
        vec![lost.clone(), again.clone()],
        "hers, in the order taken, as signed"
    );
    assert!(!got.receipts.contains(&rq), "not Quinn's");
    assert_eq!(
        m.server.store().bids().bids(&ccpo.id).unwrap(),
        before,
        "nothing changed"
    );
    // Sealed to Pam: Quinn cannot read it.
    assert!(open_bids_reply(&q.keys, &m.server_peer.sign, &req, &reply).is_err());
    // Nor is it taken from another server key.
    let other = keys(&mut m.rng);
    assert!(open_bids_reply(&p.keys, &other.sign.verifying_key(), &req, &reply).is_err());

    // After the award, her recovered first receipt's notice says she won
    // (the receipt she held says she lost).
    let awarded = award_now(&mut m, &ccpo);
    assert_eq!(awarded.winner, Some(p.keys.id()));
    let notice = |m: &Market, h: &HeldReceipt| {
        let n = m.server.notice(&ccpo.id, &h.hash()).unwrap();
        check_notice(&n, h, &m.server_peer.sign, &m.alice_peer.sign).unwrap()
    };
    assert_eq!(notice(&m, &again), Outcome::Lost);
    assert_eq!(notice(&m, &got.receipts[0]), Outcome::Won);
    // She may still ask once bidding is over.
    let (late, late_req) = request_bids(&p.keys, &mut m.rng, ccpo.end, ccpo.id, 0);
    let reply = m
        .server
        .bids_for_seller(&mut m.rng, ccpo.end, &late)
        .unwrap();
    let got = open_bids_reply(&p.keys, &m.server_peer.sign, &late_req, &reply).unwrap();
    assert_eq!(got.receipts.len(), 2);
}

/// Only the bidder herself gets her receipts: a request signed by another
/// key than the one it names is not authorised; a seller (or anyone) asking
/// with her own key gets none of Pam's, only a refusal when she has no bid
/// there; a request for a CPO she did not bid on, or past her last receipt,
/// is refused.
#[test]
fn another_sellers_request_for_her_receipts_is_refused() {
    use agora_cpo::bidding::{request_bids, BidsRequest};
    let mut m = Market::new(37);
    let ccpo = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    bid(&mut m, &p, &ccpo, 9_000).unwrap();
    // Quinn signs a request naming Pam's key.
    let forged = cose::sign(
        &q.keys.sign,
        &BidsRequest {
            cpo: ccpo.id,
            seller: p.keys.sign.verifying_key(),
            from: 0,
            nonce: [5; 32],
            t: NOW,
        },
    );
    assert!(matches!(
        m.server.bids_for_seller(&mut m.rng, NOW, &forged),
        Err(Error::NotAuthorised(_))
    ));
    // Quinn asks with her own key: she has no bid there.
    let (own, _) = request_bids(&q.keys, &mut m.rng, NOW, ccpo.id, 0);
    assert!(matches!(
        m.server.bids_for_seller(&mut m.rng, NOW, &own),
        Err(Error::Refused(_))
    ));
    // Pam asks about a CPO she did not bid on, or past her last receipt.
    let (elsewhere, _) = request_bids(&p.keys, &mut m.rng, NOW, [9; 32], 0);
    assert!(matches!(
        m.server.bids_for_seller(&mut m.rng, NOW, &elsewhere),
        Err(Error::Refused(_))
    ));
    let (past, _) = request_bids(&p.keys, &mut m.rng, NOW, ccpo.id, 2);
    assert!(matches!(
        m.server.bids_for_seller(&mut m.rng, NOW, &past),
        Err(Error::Refused(_))
    ));
}

/// The same request twice is a replay; a request older or newer than the
/// clock skew allows is refused the same way; a flipped bit anywhere in the
/// request is refused (and does not use up its nonce).
#[test]
fn replayed_stale_and_tampered_requests_for_receipts_are_refused() {
    use agora_cpo::bidding::request_bids;
    use agora_cpo::MAX_CLOCK_SKEW_SECS;
    let mut m = Market::new(38);
    let ccpo = bidding_cpo(&mut m);
    let p = bidder(&mut m);
    bid(&mut m, &p, &ccpo, 9_000).unwrap();
    let (req_bytes, _) = request_bids(&p.keys, &mut m.rng, NOW, ccpo.id, 0);
    for i in 0..req_bytes.len() {
        for bit in [0, 3, 7] {
            let mut bad = req_bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(
                m.server.bids_for_seller(&mut m.rng, NOW, &bad).is_err(),
                "bit {bit} of byte {i}"
            );
        }
    }
    m.server
        .bids_for_seller(&mut m.rng, NOW, &req_bytes)
        .unwrap();
    assert_eq!(
        m.server
            .bids_for_seller(&mut m.rng, NOW, &req_bytes)
            .unwrap_err(),
        Error::Replayed
    );
    for t in [
        NOW.minus_secs(MAX_CLOCK_SKEW_SECS + 1),
        NOW.plus_secs(MAX_CLOCK_SKEW_SECS + 1),
    ] {
        let (stale, _) = request_bids(&p.keys, &mut m.rng, t, ccpo.id, 0);
        assert_eq!(
            m.server
                .bids_for_seller(&mut m.rng, NOW, &stale)
                .unwrap_err(),
            Error::Replayed
        );
    }
}

/// Pam refuses a reply that answers another request, a reply with a
/// flipped bit, and a reply (signed and sealed by the server) that holds
/// another seller's receipt, a receipt on another CPO, a receipt twice, or
/// fewer receipts than it counts.
#[test]
fn a_bidder_refuses_a_tampered_or_wrong_reply() {
    use agora_cpo::bidding::{open_bids_reply, request_bids, BidsReply};
    use agora_cpo::msg::digest;
    let mut m = Market::new(39);
    let ccpo = bidding_cpo(&mut m);
    let elsewhere = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &p, &ccpo, 9_000).unwrap();
    let rq = bid(&mut m, &q, &ccpo, 9_500).unwrap();
    let rp_elsewhere = bid(&mut m, &p, &elsewhere, 9_000).unwrap();
    let (req_bytes, req) = request_bids(&p.keys, &mut m.rng, NOW, ccpo.id, 0);
    let reply = m
        .server
        .bids_for_seller(&mut m.rng, NOW, &req_bytes)
        .unwrap();
    let server = m.server_peer.sign;
    open_bids_reply(&p.keys, &server, &req, &reply).unwrap();
    // A reply to another request.
    let (_, other) = request_bids(&p.keys, &mut m.rng, NOW, ccpo.id, 0);
    assert!(matches!(
        open_bids_reply(&p.keys, &server, &other, &reply),
        Err(Error::PeerMisbehaved(_))
    ));
    // A flipped bit anywhere.
    for i in 0..reply.len() {
        let mut bad = reply.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(
            open_bids_reply(&p.keys, &server, &req, &bad).is_err(),
            "byte {i}"
        );
    }
    // Replies a faulty server signs and seals to her.
    let seal = |m: &mut Market, total: u64, receipts: Vec<&HeldReceipt>| {
        envelope::seal(
            &mut m.rng,
            &m.server_keys.sign,
            &p.keys.enc.public(),
            &BidsReply {
                request_hash: digest(&req),
                total,
                receipts: receipts.into_iter().map(|r| r.signed.clone()).collect(),
            },
        )
        .unwrap()
    };
    for (total, receipts, why) in [
        (2, vec![&rp, &rq], "another seller's receipt"),
        (2, vec![&rp, &rp_elsewhere], "a receipt on another CPO"),
        (2, vec![&rp, &rp], "a receipt twice"),
        (2, vec![&rp], "fewer receipts than it counts"),
        (1, vec![], "none while counting one"),
    ] {
        let bad = seal(&mut m, total, receipts);
        assert!(
            matches!(
                open_bids_reply(&p.keys, &server, &req, &bad),
                Err(Error::PeerMisbehaved(_))
            ),
            "{why}"
        );
    }
    // The honest form of the same: accepted.
    let good = seal(&mut m, 1, vec![&rp]);
    assert_eq!(
        open_bids_reply(&p.keys, &server, &req, &good)
            .unwrap()
            .receipts,
        vec![rp]
    );
}

/// More bids than one reply carries: the first reply holds
/// MAX_RECEIPTS_PER_REPLY of them and says where to go on; the next one the
/// rest, in the order taken.
#[test]
fn many_receipts_come_a_page_at_a_time() {
    use agora_cpo::bidding::{open_bids_reply, request_bids, MAX_RECEIPTS_PER_REPLY};
    let mut m = Market::new(40);
    let ccpo = bidding_cpo(&mut m);
    let p = bidder(&mut m);
    let n = MAX_RECEIPTS_PER_REPLY + 2;
    let mine: Vec<HeldReceipt> = (0..n)
        .map(|i| bid(&mut m, &p, &ccpo, 9_000 + i as u64).unwrap())
        .collect();
    let mut got = Vec::new();
    let mut from = Some(0);
    let mut pages = 0;
    while let Some(f) = from {
        let (req_bytes, req) = request_bids(&p.keys, &mut m.rng, NOW, ccpo.id, f);
        let reply = m
            .server
            .bids_for_seller(&mut m.rng, NOW, &req_bytes)
            .unwrap();
        let page = open_bids_reply(&p.keys, &m.server_peer.sign, &req, &reply).unwrap();
        assert_eq!(page.total, n as u64);
        from = page.next();
        got.extend(page.receipts);
        pages += 1;
    }
    assert_eq!(pages, 2);
    assert_eq!(got, mine);
}

/// The request and the reply decode strictly: round trips, and a reply
/// with more receipts than a page, a count over MAX_BIDS_PER_CPO, a request
/// starting past it, or a trailing byte is refused.
#[test]
fn bids_request_and_reply_decode_strictly() {
    use agora_core::wire::{decode, encode};
    use agora_cpo::bidding::{
        request_bids, BidsReply, BidsRequest, MAX_BIDS_PER_CPO, MAX_RECEIPTS_PER_REPLY,
    };
    let mut m = Market::new(41);
    let p = bidder(&mut m);
    let (_, req) = request_bids(&p.keys, &mut m.rng, NOW, [1; 32], 3);
    assert_eq!(decode::<BidsRequest>(&encode(&req)).unwrap(), req);
    let past = BidsRequest {
        from: MAX_BIDS_PER_CPO as u64 + 1,
        ..req.clone()
    };
    assert!(decode::<BidsRequest>(&encode(&past)).is_err());
    let reply = |total: u64, n: usize| BidsReply {
        request_hash: [2; 32],
        total,
        receipts: vec![vec![0xa0; 10]; n],
    };
    let ok = reply(MAX_BIDS_PER_CPO as u64, MAX_RECEIPTS_PER_REPLY);
    assert_eq!(decode::<BidsReply>(&encode(&ok)).unwrap(), ok);
    assert!(decode::<BidsReply>(&encode(&reply(20, MAX_RECEIPTS_PER_REPLY + 1))).is_err());
    assert!(decode::<BidsReply>(&encode(&reply(MAX_BIDS_PER_CPO as u64 + 1, 1))).is_err());
    let mut longer = encode(&ok);
    longer.push(0);
    assert!(decode::<BidsReply>(&longer).is_err());
}
