#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Protocol 6: sellers bid on a CPO approved for bidding (protocol 5); when
//! bidding closes the server hands the bids to the arbiter, who signs the
//! winner under the stated rule; every bidder gets a signed notice.

mod common;

use agora_core::wire::{cose, envelope};
use agora_core::{Currency, Error, Money};
use agora_cpo::bidding::{
    check_notice, choose_winner, Award, BidReceipt, BidSummary, Bids, HeldReceipt, MemoryBids,
    Outcome, AWARD_GRACE_SECS, AWARD_RULE,
};
use agora_cpo::ports::Board;
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

fn bid(
    m: &mut Market,
    bids: &MemoryBids,
    b: &Bidder,
    ccpo: &Ccpo,
    cents: u64,
) -> Result<HeldReceipt, Error> {
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &b.session.id(), &ccpo.id)?;
    let l = b.session.open_bid_listing(&l)?;
    let (m1, exp) = b
        .session
        .bid(&mut m.rng, &l, eur(cents), "delivered in 3 days")?;
    let taken = m.server.handle_bid(bids, &mut m.rng, NOW, &m1)?;
    exp.handle(&b.session, &taken.reply)
}

#[test]
fn lowest_bid_wins_and_everyone_is_told() {
    let mut m = Market::new(30);
    let bids = MemoryBids::new();
    let ccpo = bidding_cpo(&mut m); // 120.00 EUR
    let (p, q, r) = (bidder(&mut m), bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &bids, &p, &ccpo, 11_500).unwrap();
    let rq = bid(&mut m, &bids, &q, &ccpo, 9_900).unwrap();
    let rr = bid(&mut m, &bids, &r, &ccpo, 10_400).unwrap();

    // BID_RECEIPT: signed by the server, with T_Response after EndDate.
    let x2: BidReceipt = cose::verify(&rq.signed, &m.server_peer.sign).unwrap();
    assert_eq!(x2.t_response, ccpo.end.plus_secs(AWARD_GRACE_SECS));
    assert_eq!(x2.price, eur(9_900));

    // No award while bidding is open.
    assert!(matches!(
        m.server
            .request_award(&bids, &mut m.rng, NOW, &ccpo.id, &m.alice_peer),
        Err(Error::Refused(_))
    ));
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&bids, &mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, signed_award) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    let awarded = pending
        .handle_award(&m.server, &bids, closed, &reply)
        .unwrap();
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
        assert_eq!(
            &m.server.notice(&bids, &ccpo.id, &held.hash()).unwrap(),
            notice
        );
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
        .request_award(&bids, &mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .is_err());
}

#[test]
fn bids_must_be_within_the_cpo_price_and_currency() {
    let mut m = Market::new(31);
    let bids = MemoryBids::new();
    let ccpo = bidding_cpo(&mut m);
    let p = bidder(&mut m);
    assert!(matches!(
        bid(&mut m, &bids, &p, &ccpo, 12_001),
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        bid(&mut m, &bids, &p, &ccpo, 0),
        Err(Error::Refused(_))
    ));
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id)
        .unwrap();
    let l = p.session.open_bid_listing(&l).unwrap();
    let usd = Money::new(100, Currency::new("USD").unwrap());
    let (m1, _) = p.session.bid(&mut m.rng, &l, usd, "").unwrap();
    assert!(matches!(
        m.server.handle_bid(&bids, &mut m.rng, NOW, &m1),
        Err(Error::Refused(_))
    ));
    assert!(bids.bids(&ccpo.id).unwrap().is_empty(), "nothing recorded");
    // Exactly the CPO's price is a valid bid.
    bid(&mut m, &bids, &p, &ccpo, 12_000).unwrap();
}

#[test]
fn a_bid_listing_is_not_a_binding_listing_and_vice_versa() {
    let mut m = Market::new(32);
    let bids = MemoryBids::new();
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
    let _ = bids;
}

#[test]
fn an_award_that_breaks_the_rule_is_refused() {
    let mut m = Market::new(33);
    let bids = MemoryBids::new();
    let ccpo = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &bids, &p, &ccpo, 11_000).unwrap();
    bid(&mut m, &bids, &q, &ccpo, 10_000).unwrap();
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&bids, &mut m.rng, closed, &ccpo.id, &m.alice_peer)
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
        pending
            .handle_award(&m.server, &bids, closed, &reply)
            .unwrap_err(),
        Error::PeerMisbehaved("the award does not follow the stated rule")
    );
    assert_eq!(bids.award(&ccpo.id).unwrap(), None, "nothing recorded");
    assert!(m.server.board().binding(&ccpo.id).unwrap().is_none());
}

#[test]
fn a_notice_that_contradicts_the_award_is_refused() {
    let mut m = Market::new(34);
    let bids = MemoryBids::new();
    let ccpo = bidding_cpo(&mut m);
    let (p, q) = (bidder(&mut m), bidder(&mut m));
    let rp = bid(&mut m, &bids, &p, &ccpo, 11_000).unwrap();
    bid(&mut m, &bids, &q, &ccpo, 10_000).unwrap();
    let closed = ccpo.end;
    let (req, pending) = m
        .server
        .request_award(&bids, &mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, award) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    pending
        .handle_award(&m.server, &bids, closed, &reply)
        .unwrap();
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
    let bids = MemoryBids::new();
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
            m.server
                .handle_bid(&bids, &mut m.rng, NOW, &flip(&m1, i))
                .is_err(),
            "bid M_1 byte {i}"
        );
    }
    assert!(bids.bids(&ccpo.id).unwrap().is_empty(), "nothing recorded");
    let taken = m.server.handle_bid(&bids, &mut m.rng, NOW, &m1).unwrap();
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
        .request_award(
            &bids,
            &mut award_rng.clone(),
            closed,
            &ccpo.id,
            &m.alice_peer,
        )
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
            .request_award(
                &bids,
                &mut award_rng.clone(),
                closed,
                &ccpo.id,
                &m.alice_peer,
            )
            .unwrap();
        assert!(
            pending
                .handle_award(&m.server, &bids, closed, &flip(&reply, i))
                .is_err(),
            "award byte {i}"
        );
    }
    assert_eq!(bids.award(&ccpo.id).unwrap(), None, "nothing recorded");
    let (_, pending) = m
        .server
        .request_award(
            &bids,
            &mut award_rng.clone(),
            closed,
            &ccpo.id,
            &m.alice_peer,
        )
        .unwrap();
    pending
        .handle_award(&m.server, &bids, closed, &reply)
        .unwrap();
}
