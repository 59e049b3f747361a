//! Each STP message tampered with, replayed, reflected, redirected, sent out
//! of turn (without the token), sent after End, carrying a wrong context,
//! or forged as the CA: each is refused with the right error, and the
//! refused message changes nothing (the genuine one is still taken after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_core::crypto::SigningKey;
use agora_core::wire::cose;
use agora_core::{Error, Timestamp};
use agora_pki::{Revocation, RevocationReason};
use agora_stp::ca::Answer;
use agora_stp::msg::{Data, Decide, Started};
use agora_stp::process::{self, Invitation, Received};
use agora_stp::testkit::{trust_of, World, DAY};
use agora_stp::{Context, Tid};

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let i = at % b.len();
    b[i] ^= 0x01;
    b
}

#[test]
fn a_tampered_data_message_is_refused_and_the_genuine_one_still_taken() {
    let mut w = World::new(2, 20);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    let m = a.send(&w.parties[0], b"offer 100", true).unwrap();
    for at in [10, m.len() / 2, m.len() - 70, m.len() - 1] {
        let before = b.context();
        let e = b.receive(&flip(&m, at)).unwrap_err();
        // The kid tampered names another signer; anything else breaks the
        // signature or the encoding.
        assert!(
            matches!(
                e,
                Error::Crypto | Error::Decode(_) | Error::NotAuthorised(_)
            ),
            "byte {at}: {e:?}"
        );
        assert_eq!(b.context(), before, "a refused message changes nothing");
    }
    assert!(matches!(b.receive(&m).unwrap(), Received::Data { .. }));
}

#[test]
fn a_replayed_data_message_is_refused_as_a_replay() {
    let mut w = World::new(2, 21);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    let m = a.send(&w.parties[0], b"offer 100", false).unwrap();
    b.receive(&m).unwrap();
    assert_eq!(b.receive(&m), Err(Error::Replayed));
}

#[test]
fn a_reflected_data_message_is_refused_as_not_the_peers() {
    let mut w = World::new(2, 22);
    let (mut a, _b) = w.begin(0, 1).unwrap();
    let m = a.send(&w.parties[0], b"offer 100", true).unwrap();
    assert!(matches!(a.receive(&m), Err(Error::NotAuthorised(_))));
}

#[test]
fn a_data_message_redirected_to_another_subtransaction_is_refused() {
    let mut w = World::new(3, 23);
    let (mut a01, _b) = w.begin(0, 1).unwrap();
    let (_x, mut c20) = w.join(0, &a01, 2).unwrap();
    // p0 talks to p1; the same signed message handed to p2, whose peer is
    // also p0, belongs to another subtransaction.
    let m = a01.send(&w.parties[0], b"for p1 only", true).unwrap();
    assert!(matches!(c20.receive(&m), Err(Error::NotAuthorised(_))));
    // And one from another transaction between the same two parties.
    let (mut other, _) = w.begin(0, 2).unwrap();
    let m = other
        .send(&w.parties[0], b"another transaction", true)
        .unwrap();
    assert!(matches!(c20.receive(&m), Err(Error::NotAuthorised(_))));
}

/// A Data message signed by party `signer` of `open`'s pair, with the
/// fields given (what a misbehaving party could send).
fn forged_data(
    w: &World,
    signer: usize,
    tid: Tid,
    open: &process::Open,
    seq: u64,
    prev: Context,
) -> Vec<u8> {
    cose::sign(
        &w.parties[signer].sign,
        &Data {
            tid,
            pair: open.pair(),
            seq,
            prev,
            payload: vec![0; 32],
            pass_token: false,
        },
    )
}

#[test]
fn a_message_without_the_send_token_is_refused() {
    let mut w = World::new(2, 24);
    let (a, mut b) = w.begin(0, 1).unwrap();
    // p1 has not got the token; it cannot send through its own state...
    assert!(matches!(
        b.send(&w.parties[1], b"me first", false),
        Err(Error::Refused(_))
    ));
    assert!(matches!(b.end(&w.parties[1]), Err(Error::Refused(_))));
    // ...and what it signs by hand is refused by the token holder.
    let mut a = a;
    let m = forged_data(&w, 1, a.tid(), &a, 1, a.context());
    assert!(matches!(a.receive(&m), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_message_after_end_is_refused() {
    let mut w = World::new(2, 25);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    let end = a.end(&w.parties[0]).unwrap();
    b.receive(&end).unwrap();
    assert!(matches!(
        a.send(&w.parties[0], b"one more", false),
        Err(Error::Refused(_))
    ));
    let m = forged_data(&w, 0, a.tid(), &a, 2, b.context());
    assert!(matches!(b.receive(&m), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_message_with_a_wrong_context_or_number_is_refused() {
    let mut w = World::new(2, 26);
    let (a, mut b) = w.begin(0, 1).unwrap();
    let wrong_ctx = forged_data(&w, 0, a.tid(), &a, 1, Context([7; 32]));
    assert!(matches!(
        b.receive(&wrong_ctx),
        Err(Error::PeerMisbehaved(_))
    ));
    let skipped = forged_data(&w, 0, a.tid(), &a, 2, b.context());
    assert!(matches!(b.receive(&skipped), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_started_forged_as_the_ca_or_for_another_party_is_refused() {
    let mut w = World::new(3, 27);
    let tid = Tid::random(&mut w.rng);
    let peer = w.uid(1);
    let (wait, opened) = process::begin(
        &w.parties[0],
        &mut w.rng,
        w.now,
        tid,
        peer,
        w.now.plus_secs(DAY),
    )
    .unwrap();
    w.to_ca(&opened.vote).unwrap();
    let inv = Invitation::receive(&w.parties[1], w.now, &opened.opening).unwrap();
    let (_wait1, vote1) = inv.accept(&w.parties[1], &mut w.rng);
    let Answer::Started(for_p1) = w.to_ca(&vote1).unwrap() else {
        panic!()
    };
    let Answer::Started(for_p0) = w.to_ca(wait.vote()).unwrap() else {
        panic!()
    };
    // The Started meant for p1, delivered to p0.
    assert!(matches!(
        wait.on_started(&w.parties[0], w.now, &for_p1),
        Err(Error::NotAuthorised(_))
    ));
    // The same fields signed by someone who is not the pinned CA.
    let forger = SigningKey::generate(&mut w.rng);
    let s: Started = cose::verify(&for_p0, &w.ca.verifying_key()).unwrap();
    let forged = cose::sign(&forger, &s);
    assert!(matches!(
        wait.on_started(&w.parties[0], w.now, &forged),
        Err(Error::NotAuthorised(_))
    ));
    // Tampered.
    assert!(wait
        .on_started(&w.parties[0], w.now, &flip(&for_p0, for_p0.len() - 5))
        .is_err());
    // The genuine one still opens the subtransaction.
    assert!(wait
        .on_started(&w.parties[0], w.now, &for_p0)
        .unwrap()
        .has_token());
}

#[test]
fn votes_tampered_forged_or_from_a_stranger_are_refused_and_a_replayed_vote_changes_nothing() {
    let mut w = World::new(3, 28);
    let tid = Tid::random(&mut w.rng);
    let peer = w.uid(1);
    let (_wait, opened) = process::begin(
        &w.parties[0],
        &mut w.rng,
        w.now,
        tid,
        peer,
        w.now.plus_secs(DAY),
    )
    .unwrap();
    assert_eq!(
        w.to_ca(&flip(&opened.vote, opened.vote.len() - 3)),
        Err(Error::Crypto)
    );
    assert_eq!(
        w.log().get(&tid).unwrap(),
        None,
        "a refused vote writes nothing"
    );
    let first = w.to_ca(&opened.vote).unwrap();
    let version = w.log().get(&tid).unwrap().unwrap().version;
    // Replayed: the same answer, nothing written.
    assert_eq!(w.to_ca(&opened.vote).unwrap(), first);
    assert_eq!(w.log().get(&tid).unwrap().unwrap().version, version);
    // p2 votes on the subtransaction of p0 and p1.
    let stranger = {
        let mut v: agora_stp::msg::Vote =
            cose::verify(&opened.vote, &w.parties[0].sign.verifying_key()).unwrap();
        v.voter_cert = w.parties[2].cert.clone();
        cose::sign(&w.parties[2].sign, &v)
    };
    assert!(matches!(w.to_ca(&stranger), Err(Error::NotAuthorised(_))));
    // A Started reflected to the CA.
    assert!(matches!(
        w.to_ca(&opened.opening),
        Err(Error::PeerMisbehaved(_))
    ));
}

#[test]
fn a_party_that_votes_or_decides_differently_the_second_time_is_refused() {
    let mut w = World::new(2, 29);
    let tid = Tid::random(&mut w.rng);
    let peer = w.uid(1);
    let (wait, opened) = process::begin(
        &w.parties[0],
        &mut w.rng,
        w.now,
        tid,
        peer,
        w.now.plus_secs(DAY),
    )
    .unwrap();
    w.to_ca(&opened.vote).unwrap();
    let inv = Invitation::receive(&w.parties[1], w.now, &opened.opening).unwrap();
    let (wait1, accept) = inv.clone().accept(&w.parties[1], &mut w.rng);
    let reject = inv.reject(&w.parties[1], &mut w.rng);
    let Answer::Started(s1) = w.to_ca(&accept).unwrap() else {
        panic!()
    };
    assert!(matches!(w.to_ca(&reject), Err(Error::PeerMisbehaved(_))));
    // Voting the same again (with a fresh key share, so other bytes) is
    // the same vote: the first stands.
    let Answer::Started(s0) = w.to_ca(wait.vote()).unwrap() else {
        panic!()
    };
    let mut a = wait.on_started(&w.parties[0], w.now, &s0).unwrap();
    let mut b = wait1.on_started(&w.parties[1], w.now, &s1).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    let (_wa, commit) = a.clone().decide(&w.parties[0], true).unwrap();
    let (_, abort) = a.decide(&w.parties[0], false).unwrap();
    assert!(matches!(w.to_ca(&commit).unwrap(), Answer::Pending(_)));
    assert!(
        matches!(w.to_ca(&commit).unwrap(), Answer::Pending(_)),
        "the same again: unchanged"
    );
    assert!(matches!(w.to_ca(&abort), Err(Error::PeerMisbehaved(_))));
    let (wb, _) = w.decide(1, b, true).unwrap();
    assert!(w.outcome(1, &wb).unwrap().committed());
}

#[test]
fn decisions_forged_tampered_or_before_the_start_are_refused() {
    let mut w = World::new(3, 30);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    let d = Decide {
        tid: a.tid(),
        pair: a.pair(),
        commit: Some(a.context()),
    };
    // Signed by p2, who is not of the pair.
    let forged = cose::sign(&w.parties[2].sign, &d);
    assert!(matches!(w.to_ca(&forged), Err(Error::NotAuthorised(_))));
    // Signed by p0's kid but with another key.
    let (_, genuine) = a.clone().decide(&w.parties[0], true).unwrap();
    assert_eq!(
        w.to_ca(&flip(&genuine, genuine.len() - 2)),
        Err(Error::Crypto)
    );
    // A commit on a subtransaction that has not started.
    let tid = Tid::random(&mut w.rng);
    let peer = w.uid(2);
    let (wait, opened) = process::begin(
        &w.parties[0],
        &mut w.rng,
        w.now,
        tid,
        peer,
        w.now.plus_secs(DAY),
    )
    .unwrap();
    w.to_ca(&opened.vote).unwrap();
    let early = cose::sign(
        &w.parties[0].sign,
        &Decide {
            tid,
            pair: wait.opening().pair,
            commit: Some(Context([0; 32])),
        },
    );
    assert!(matches!(w.to_ca(&early), Err(Error::Refused(_))));
}

#[test]
fn a_join_through_a_decided_subtransaction_is_refused_by_the_ca() {
    let mut w = World::new(3, 31);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    let keep = a.clone(); // a misbehaving process keeps its state after deciding
    w.decide(0, a, true).unwrap();
    let peer = w.uid(2);
    let (_, opened) = process::join(&w.parties[0], &mut w.rng, w.now, &keep, peer).unwrap();
    assert!(matches!(w.to_ca(&opened.vote), Err(Error::Refused(_))));
    let inv = Invitation::receive(&w.parties[2], w.now, &opened.opening).unwrap();
    let (_, vote) = inv.accept(&w.parties[2], &mut w.rng);
    assert!(matches!(w.to_ca(&vote), Err(Error::Refused(_))));
}

#[test]
fn a_begin_for_someone_else_from_a_revoked_party_or_naming_another_ca_is_refused() {
    let mut w = World::new(3, 32);
    let tid = Tid::random(&mut w.rng);
    let peer = w.uid(1);
    let deadline = w.now.plus_secs(DAY);
    let (_, opened) =
        process::begin(&w.parties[0], &mut w.rng, w.now, tid, peer, deadline).unwrap();
    // Redirected to p2.
    assert!(matches!(
        Invitation::receive(&w.parties[2], w.now, &opened.opening),
        Err(Error::NotAuthorised(_))
    ));
    // p0's certificate revoked in p1's CRL.
    let serial = agora_pki::parse_certificate(&w.parties[0].cert)
        .unwrap()
        .serial;
    w.parties[1].trust = trust_of(
        &w.agency,
        vec![Revocation {
            serial,
            revoked_at: w.now.minus_secs(10),
            reason: RevocationReason::KeyCompromise,
        }],
        w.now,
    );
    assert!(matches!(
        Invitation::receive(&w.parties[1], w.now, &opened.opening),
        Err(Error::Refused(_))
    ));
    // A Begin naming a CA p2 does not pin.
    let other_ca = SigningKey::generate(&mut w.rng);
    w.parties[0].ca = other_ca.verifying_key();
    let peer = w.uid(2);
    let (_, opened) =
        process::begin(&w.parties[0], &mut w.rng, w.now, tid, peer, deadline).unwrap();
    assert!(matches!(
        Invitation::receive(&w.parties[2], w.now, &opened.opening),
        Err(Error::Refused(_))
    ));
    // ...and the CA refuses votes on it.
    assert!(matches!(
        w.to_ca(&opened.vote),
        Err(Error::NotAuthorised(_))
    ));
    // A deadline already past.
    let old = Timestamp(w.now.secs() - 1);
    assert!(process::begin(&w.parties[2], &mut w.rng, w.now, tid, peer, old).is_err());
}
