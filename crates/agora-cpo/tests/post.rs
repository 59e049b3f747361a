#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Protocols 1, 5 and 2 end to end: Bob gets Alice's acceptance and posts
//! his CPO; what everyone holds afterwards verifies.

mod common;

use agora_core::wire::{self, cose};
use agora_cpo::msg::{ArbiterAcceptance, Mode, PostedCpo};
use agora_cpo::{Bidding, FirstCome};
use common::*;

#[test]
fn bob_gets_an_acceptance_and_posts_his_cpo() {
    let mut m = Market::new(1);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    assert_eq!(acceptance.mode, Mode::FirstCome);
    assert_eq!(acceptance.t3, NOW);
    // The acceptance is Alice's signature over X_3 with Bob's CCPO and ID_S.
    let x3: ArbiterAcceptance<FirstCome> =
        cose::verify(&acceptance.signed, &m.alice_peer.sign).unwrap();
    assert_eq!(x3.ccpo, ccpo);
    assert_eq!(x3.server, m.server_peer.id());

    let (receipt, posted, _) = m.post(&acceptance);
    assert_eq!(receipt.cpo.ccpo, ccpo);
    let signed: PostedCpo = cose::verify(&receipt.signed, &m.server_peer.sign).unwrap();
    assert_eq!(signed, receipt.cpo);
    // On the board, with its evidence, as first-come.
    let e = m.server.board().get(&ccpo.id).unwrap().unwrap();
    assert_eq!(e, posted.entry);
    assert_eq!(e.mode, Mode::FirstCome);
    assert_eq!(e.acceptance, acceptance.signed);
    assert_eq!(e.posted, receipt.signed);
    assert_eq!(e.buyer, m.bob.id());
    let open = m.server.board().list_open(NOW, None, 10).unwrap();
    assert_eq!(open.len(), 1);
}

#[test]
fn protocol_5_acceptance_posts_a_bidding_cpo() {
    let mut m = Market::new(2);
    let ccpo = m.ccpo();
    let (acceptance, msgs) = m.approve::<Bidding>(ccpo.clone(), "");
    assert_eq!(acceptance.mode, Mode::Bidding);
    // Every message of the run carries protocol 5 in its tag.
    for msg in &msgs {
        assert_eq!(wire::envelope::peek_tag(msg).unwrap().protocol, 5);
    }
    m.post(&acceptance);
    assert_eq!(
        m.server.board().get(&ccpo.id).unwrap().unwrap().mode,
        Mode::Bidding
    );
}

#[test]
fn messages_carry_the_papers_numbering() {
    let mut m = Market::new(3);
    let ccpo = m.ccpo();
    let (acceptance, approve) = m.approve::<FirstCome>(ccpo, "");
    let (_, _, post) = m.post(&acceptance);
    let tags = |ms: &[Vec<u8>; 4]| -> Vec<(u8, u8, u8)> {
        ms.iter()
            .map(|b| wire::envelope::peek_tag(b).unwrap())
            .map(|t| (t.system, t.protocol, t.step))
            .collect()
    };
    assert_eq!(
        tags(&approve),
        vec![(1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 4)]
    );
    assert_eq!(
        tags(&post),
        vec![(1, 2, 1), (1, 2, 2), (1, 2, 3), (1, 2, 4)]
    );
}

#[test]
fn every_party_can_save_its_state_between_messages_as_by_email() {
    use agora_cpo::arbiter::PendingApproval;
    use agora_cpo::buyer::{
        self, ExpectArbiterAcceptance, ExpectArbiterChallenge, ExpectPostChallenge, ExpectPosted,
    };
    use agora_cpo::server::PendingPost;
    let mut m = Market::new(5);
    let ccpo = m.ccpo();
    // Protocol 1, each state saved and restored from bytes before its step.
    let (m0, b) =
        buyer::request_approval::<FirstCome>(&m.bob, &mut m.rng, ccpo.clone(), "", &m.alice_peer)
            .unwrap();
    let b = ExpectArbiterChallenge::<FirstCome>::from_bytes(&b.to_bytes()).unwrap();
    assert!(
        ExpectArbiterChallenge::<Bidding>::from_bytes(&b.to_bytes()).is_err(),
        "other protocol"
    );
    let (m1, a) = m
        .alice
        .handle_request::<FirstCome>(&mut m.rng, NOW, &m0)
        .unwrap();
    let a = PendingApproval::<FirstCome>::from_bytes(&a.to_bytes()).unwrap();
    let (m2, b) = b.handle(&m.bob, &mut m.rng, &m1).unwrap();
    let b = ExpectArbiterAcceptance::<FirstCome>::from_bytes(&b.to_bytes()).unwrap();
    let later = NOW.plus_secs(3 * DAY);
    // An e-mail answer days later: the default five minutes refuse it...
    let saved = a.to_bytes();
    assert_eq!(
        a.handle_response(&m.alice, &mut m.rng, later, &m2)
            .unwrap_err(),
        agora_core::Error::Replayed
    );
    // ...an arbiter who works by e-mail waits longer.
    m.alice.session_timeout_secs = 7 * DAY;
    let a = PendingApproval::<FirstCome>::from_bytes(&saved).unwrap();
    let issued = a.handle_response(&m.alice, &mut m.rng, later, &m2).unwrap();
    let acceptance = b.handle(&m.bob, later, &issued.reply).unwrap();
    // Protocol 2 the same way.
    let (p0, b) = buyer::request_post(&m.bob, &mut m.rng, &acceptance, &m.server_peer).unwrap();
    let b = ExpectPostChallenge::from_bytes(&b.to_bytes()).unwrap();
    let (p1, s) = m
        .server
        .handle_post_request(&mut m.rng, later, &p0)
        .unwrap();
    let s = PendingPost::from_bytes(&s.to_bytes()).unwrap();
    let (p2, b) = b.handle(&m.bob, &mut m.rng, &p1).unwrap();
    let b = ExpectPosted::from_bytes(&b.to_bytes()).unwrap();
    let posted = s
        .handle_response(&m.server, &mut m.rng, later, &p2)
        .unwrap();
    let receipt = b.handle(&m.bob, &posted.reply).unwrap();
    assert_eq!(receipt.cpo.ccpo, ccpo);
    // A damaged saved state is refused, not half-read.
    let (_, fresh) = buyer::request_post(&m.bob, &mut m.rng, &acceptance, &m.server_peer).unwrap();
    let bytes = fresh.to_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad.truncate(i);
        assert!(
            ExpectPostChallenge::from_bytes(&bad).is_err(),
            "truncated at {i}"
        );
    }
    let mut extended = bytes.clone();
    extended.push(0);
    assert!(ExpectPostChallenge::from_bytes(&extended).is_err());
    assert!(
        ExpectPosted::from_bytes(&bytes).is_err(),
        "another kind of state"
    );
}

/// The simulator's finding: a buyer whose posted CPO (M_3) is lost on the
/// way is refused "already posted" if he posts again. He asks for it with a
/// request signed by his bond key and gets the posted CPO the server signed,
/// sealed to him; the same request again, a stale one, one signed by
/// someone else, or one for a CPO not on the board are refused.
#[test]
fn a_buyer_who_lost_his_posted_cpo_fetches_it_with_a_signed_request() {
    use agora_core::Error;
    use agora_cpo::delivery::{open_posted_reply, request_posted};
    let mut m = Market::new(7);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    let (receipt, _, _) = m.post(&acceptance);
    let (req_bytes, req) = request_posted(&m.bob, &mut m.rng, NOW, ccpo.id);
    let reply = m
        .server
        .posted_for_buyer(&mut m.rng, NOW, &req_bytes)
        .unwrap();
    let fetched = open_posted_reply(&m.bob, &m.server_peer.sign, &req, &reply).unwrap();
    assert_eq!(fetched.signed, receipt.signed, "the posted CPO as signed");
    assert_eq!(fetched.cpo, receipt.cpo);
    // Nobody else can read the reply: it is sealed to Bob.
    let eve = keys(&mut m.rng);
    assert!(open_posted_reply(&eve, &m.server_peer.sign, &req, &reply).is_err());
    // A reply to another request is refused by Bob.
    let (_, other) = request_posted(&m.bob, &mut m.rng, NOW, ccpo.id);
    assert!(matches!(
        open_posted_reply(&m.bob, &m.server_peer.sign, &other, &reply),
        Err(Error::PeerMisbehaved(_))
    ));
    // The same request again: replayed. A stale one: refused.
    assert_eq!(
        m.server
            .posted_for_buyer(&mut m.rng, NOW, &req_bytes)
            .unwrap_err(),
        Error::Replayed
    );
    let (old, _) = request_posted(
        &m.bob,
        &mut m.rng,
        NOW.minus_secs(agora_cpo::MAX_CLOCK_SKEW_SECS + 1),
        ccpo.id,
    );
    assert_eq!(
        m.server
            .posted_for_buyer(&mut m.rng, NOW, &old)
            .unwrap_err(),
        Error::Replayed
    );
    // Someone else asking for Bob's posted CPO: not his key.
    let (forged, _) = request_posted(&eve, &mut m.rng, NOW, ccpo.id);
    assert!(matches!(
        m.server.posted_for_buyer(&mut m.rng, NOW, &forged),
        Err(Error::NotAuthorised(_))
    ));
    // A CPO that is not on the board.
    let (unknown, _) = request_posted(&m.bob, &mut m.rng, NOW, [9; 32]);
    assert!(matches!(
        m.server.posted_for_buyer(&mut m.rng, NOW, &unknown),
        Err(Error::Refused(_))
    ));
    // A flipped bit anywhere in the request: refused.
    for i in 0..req_bytes.len() {
        let mut bad = req_bytes.clone();
        bad[i] ^= 1;
        assert!(
            m.server.posted_for_buyer(&mut m.rng, NOW, &bad).is_err(),
            "bit {i}"
        );
    }
}
