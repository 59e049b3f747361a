#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Protocols 1, 5 and 2 end to end: Bob gets Alice's acceptance and posts
//! his CPO; what everyone holds afterwards verifies.

mod common;

use agora_core::wire::{self, cose};
use agora_cpo::msg::{ArbiterAcceptance, Mode, PostedCpo};
use agora_cpo::ports::Board;
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
