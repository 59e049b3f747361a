//! STP end to end in one process: transactions of 2, 3 and 10 parties, the
//! commit rules, deadlines, a CA restarted at every step, and a CA that
//! tells two parties two things convicted by what they hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_core::wire::{cose, decode};
use agora_core::Error;
use agora_stp::ca::Answer;
use agora_stp::msg::Decide;
use agora_stp::msg::Outcome;
use agora_stp::outcome::{convict, verify_outcome, Conviction};
use agora_stp::process::{AwaitOutcome, Open};
use agora_stp::rules::AbortReason;
use agora_stp::testkit::{World, DAY};
use agora_stp::Context;
use agora_stp::MemoryCommitLog;

/// A chain of `n` parties: p0 begins with p1, then each p_i brings in
/// p_{i+1} through its open subtransaction; every pair converses, ends and
/// commits. Returns each party's decided view.
fn chain(n: usize, seed: u64) -> (World, Vec<agora_stp::process::Decided>) {
    let mut w = World::new(n, seed);
    let mut subs: Vec<(usize, Open, usize, Open)> = Vec::new();
    let (a, b) = w.begin(0, 1).unwrap();
    subs.push((0, a, 1, b));
    for i in 2..n {
        let (a, b) = {
            let via = &subs.last().unwrap().3;
            w.join(i - 1, via, i).unwrap()
        };
        subs.push((i - 1, a, i, b));
    }
    for (ia, oa, ib, ob) in subs.iter_mut() {
        w.converse((*ia, oa), (*ib, ob), 2).unwrap();
        assert_eq!(oa.context(), ob.context());
    }
    let mut waits: Vec<(usize, AwaitOutcome)> = Vec::new();
    let last = subs.len() * 2 - 1;
    for (k, (ia, oa, ib, ob)) in subs.into_iter().enumerate() {
        for (j, (i, o)) in [(ia, oa), (ib, ob)].into_iter().enumerate() {
            let (wait, answer) = w.decide(i, o, true).unwrap();
            if 2 * k + j < last {
                assert!(
                    matches!(answer, Answer::Pending(_)),
                    "undecided until the last decision"
                );
            } else {
                assert!(matches!(answer, Answer::Sealing { .. }), "{answer:?}");
            }
            waits.push((i, wait));
        }
    }
    let decided = waits
        .iter()
        .map(|(i, wait)| w.outcome(*i, wait).unwrap())
        .collect();
    (w, decided)
}

fn all_committed_alike(decided: &[agora_stp::process::Decided]) {
    for d in decided {
        assert!(d.committed());
        assert_eq!(d.outcome.leaf_bytes, decided[0].outcome.leaf_bytes);
    }
}

#[test]
fn two_parties_commit_and_both_hold_the_same_verified_outcome() {
    let (_, decided) = chain(2, 1);
    all_committed_alike(&decided);
    assert_eq!(decided[0].outcome.leaf.subs.len(), 1);
}

#[test]
fn three_parties_commit_one_transaction_of_two_subtransactions() {
    let (_, decided) = chain(3, 2);
    all_committed_alike(&decided);
    assert_eq!(decided[0].outcome.leaf.subs.len(), 2);
}

#[test]
fn ten_parties_commit_one_transaction_of_nine_subtransactions() {
    let (w, decided) = chain(10, 3);
    all_committed_alike(&decided);
    assert_eq!(decided[0].outcome.leaf.subs.len(), 9);
    // One leaf, one signed tree head for the whole transaction.
    assert_eq!(w.log().leaf_count().unwrap(), 1);
}

#[test]
fn the_commit_authority_never_sees_a_payload_in_clear() {
    let mut w = World::new(2, 4);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    let secret = b"the price is 1234 and the cement grade is C30";
    let m = a.send(&w.parties[0], secret, true).unwrap();
    assert!(!m.windows(secret.len()).any(|s| s == secret));
    assert_eq!(
        b.receive(&m).unwrap(),
        agora_stp::process::Received::Data {
            payload: secret.to_vec(),
            token: true
        }
    );
    let end = b.end(&w.parties[1]).unwrap();
    a.receive(&end).unwrap();
    let (wa, _) = w.decide(0, a, true).unwrap();
    w.decide(1, b, true).unwrap();
    let d = w.outcome(0, &wa).unwrap();
    // The CA's whole record and log hold identities, votes and contexts only.
    let tid = d.outcome.leaf.tid;
    let record = w.log().get(&tid).unwrap().unwrap().record;
    assert!(!record.windows(12).any(|s| s == &secret[..12]));
}

#[test]
fn a_subtransaction_whose_parties_report_different_contexts_aborts_the_transaction() {
    let mut w = World::new(2, 5);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    // p0 reports a context other than the one both hold.
    let lie = cose::sign(
        &w.parties[0].sign,
        &Decide {
            tid: a.tid(),
            pair: a.pair(),
            commit: Some(Context([9; 32])),
        },
    );
    assert!(matches!(w.to_ca(&lie).unwrap(), Answer::Pending(_)));
    let (wb, answer) = w.decide(1, b, true).unwrap();
    assert!(matches!(answer, Answer::Sealing { .. }));
    let db = w.outcome(1, &wb).unwrap();
    assert!(!db.committed());
    assert_eq!(db.outcome.leaf.outcome, AbortReason::ContextsDiffer.code());
    assert_eq!(db.outcome.leaf.subs[0].1, None);
}

#[test]
fn any_abort_aborts_the_whole_transaction_of_three() {
    let mut w = World::new(3, 14);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    let (mut c, mut d) = w.join(1, &b, 2).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    w.converse((1, &mut c), (2, &mut d), 1).unwrap();
    let (wa, _) = w.decide(0, a, true).unwrap();
    w.decide(1, b, true).unwrap();
    w.decide(1, c, true).unwrap();
    let (wd, answer) = w.decide(2, d, false).unwrap();
    assert!(matches!(answer, Answer::Sealing { .. }));
    for (i, wait) in [(0, &wa), (2, &wd)] {
        let o = w.outcome(i, wait).unwrap();
        assert!(!o.committed());
        assert_eq!(o.outcome.leaf.outcome, AbortReason::PartyAborted.code());
    }
}

#[test]
fn a_deadline_passed_aborts_what_is_undecided() {
    let mut w = World::new(2, 6);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    let (wa, answer) = w.decide(0, a, true).unwrap();
    assert!(matches!(answer, Answer::Pending(_)));
    // p1 never decides. A day later the sweep aborts the transaction.
    w.now = w.now.plus_secs(DAY);
    assert_eq!(w.ca.expire_due(w.now, w.log(), 100).unwrap(), 1);
    let d = w.outcome(0, &wa).unwrap();
    assert!(!d.committed());
    assert_eq!(d.outcome.leaf.outcome, AbortReason::DeadlinePassed.code());
    // p1's late commit changes nothing: it gets the same outcome.
    let (wb, answer) = w.decide(1, b, true).unwrap();
    assert!(matches!(answer, Answer::Outcome(_)));
    assert_eq!(
        w.outcome(1, &wb).unwrap().outcome.leaf_bytes,
        d.outcome.leaf_bytes
    );
}

#[test]
fn a_status_query_past_the_deadline_aborts_and_answers_the_same_ever_after() {
    let mut w = World::new(2, 7);
    let (a, _b) = w.begin(0, 1).unwrap();
    let tid = a.tid();
    assert!(matches!(
        w.ca.status(w.now, &tid, w.log()).unwrap(),
        Answer::Pending(_)
    ));
    w.now = w.now.plus_secs(DAY + 1);
    assert!(matches!(
        w.ca.status(w.now, &tid, w.log()).unwrap(),
        Answer::Sealing { .. }
    ));
    w.ca.seal(w.now, w.log()).unwrap();
    let Answer::Outcome(first) = w.ca.status(w.now, &tid, w.log()).unwrap() else {
        panic!("decided")
    };
    w.now = w.now.plus_secs(DAY);
    let Answer::Outcome(again) = w.ca.status(w.now, &tid, w.log()).unwrap() else {
        panic!("decided")
    };
    assert_eq!(first, again);
}

#[test]
fn a_commit_authority_restarted_after_logging_at_any_step_answers_as_before() {
    // A three-party run, recording every message the CA receives.
    let (reference, decided) = chain(3, 8);
    all_committed_alike(&decided);
    let msgs = reference.sent_to_ca.lock().unwrap().clone();
    // Replay them into two new CAs (same keys, new logs): one crashes right
    // after each step is logged, its answer lost, and restarts; the other
    // runs uninterrupted. Each message reaches both twice (the crashing
    // one's client sends it again). Every answer after a restart is the
    // uninterrupted CA's, byte for byte.
    let mut crashing = World::new(3, 8);
    let steady = World::new(3, 8);
    assert_eq!(crashing.ca.uid(), reference.ca.uid());
    for m in &msgs {
        let _lost = crashing.ca.handle(crashing.now, m, crashing.log());
        crashing.restart_ca();
        let after_restart = crashing.ca.handle(crashing.now, m, crashing.log());
        let _ = steady.ca.handle(steady.now, m, steady.log());
        let expected = steady.ca.handle(steady.now, m, steady.log());
        assert_eq!(after_restart, expected);
        if matches!(expected, Ok(Answer::Sealing { .. })) {
            crashing.ca.seal(crashing.now, crashing.log()).unwrap();
            crashing.restart_ca();
            steady.ca.seal(steady.now, steady.log()).unwrap();
        }
    }
    let last = msgs.last().unwrap();
    let a = crashing
        .ca
        .handle(crashing.now, last, crashing.log())
        .unwrap();
    assert!(matches!(a, Answer::Outcome(_)));
    assert_eq!(a, steady.ca.handle(steady.now, last, steady.log()).unwrap());
}

#[test]
fn a_ca_that_told_two_parties_two_outcomes_is_convicted_by_their_proofs() {
    // The same CA key on two logs: one says committed, the other aborted.
    let (w, decided) = chain(2, 9);
    let honest = decided[0].outcome.clone();
    let fork_log = MemoryCommitLog::new();
    // Replay the votes into the fork and abort there.
    let tid = honest.leaf.tid;
    let rec =
        agora_stp::log::TxRecord::decode(&w.log().get(&tid).unwrap().unwrap().record).unwrap();
    for ev in &rec.evidence {
        for v in ev.votes.iter().flatten() {
            w.ca.handle(w.now, v, &fork_log).unwrap();
        }
    }
    let abort = ev_decide_abort(&w, &rec);
    w.ca.handle(w.now, &abort, &fork_log).unwrap();
    w.ca.seal(w.now, &fork_log).unwrap();
    let Answer::Outcome(lie) = w.ca.status(w.now, &tid, &fork_log).unwrap() else {
        panic!("decided in the fork")
    };
    let lie = verify_outcome(&lie, &w.ca.verifying_key()).unwrap();
    assert!(!lie.leaf.committed() && honest.leaf.committed());
    assert_eq!(convict(&honest, &lie, None), Some(Conviction::TwoOutcomes));
    assert_eq!(convict(&honest, &honest, None), None);
}

/// p0's signed abort for the first subtransaction of `rec`, made from the
/// world's own party key.
fn ev_decide_abort(w: &World, rec: &agora_stp::log::TxRecord) -> Vec<u8> {
    let pair = agora_stp::Pair::from_tuple(&rec.tx.subs[0].pair).unwrap();
    let tid = decode::<agora_stp::msg::Vote>(
        &agora_core::wire::cose::verify_raw(
            rec.evidence[0].votes[0].as_ref().unwrap(),
            rec.evidence[0].keys[0].as_ref().unwrap(),
        )
        .unwrap(),
    )
    .unwrap()
    .tid;
    let signer = w.parties.iter().find(|p| pair.contains(&p.uid())).unwrap();
    agora_core::wire::cose::sign(
        &signer.sign,
        &agora_stp::msg::Decide {
            tid,
            pair,
            commit: None,
        },
    )
}

#[test]
fn heads_of_one_size_with_two_roots_convict_the_ca_of_a_forked_log() {
    let (w, decided) = chain(2, 10);
    let honest = decided[0].outcome.clone();
    let fork = MemoryCommitLog::new();
    let rec =
        agora_stp::log::TxRecord::decode(&w.log().get(&honest.leaf.tid).unwrap().unwrap().record)
            .unwrap();
    for ev in &rec.evidence {
        for v in ev.votes.iter().flatten() {
            w.ca.handle(w.now, v, &fork).unwrap();
        }
    }
    w.ca.handle(w.now, &ev_decide_abort(&w, &rec), &fork)
        .unwrap();
    w.ca.seal(w.now, &fork).unwrap();
    let Answer::Outcome(lie) = w.ca.status(w.now, &honest.leaf.tid, &fork).unwrap() else {
        panic!("decided in the fork")
    };
    let mut lie = verify_outcome(&lie, &w.ca.verifying_key()).unwrap();
    // Two heads of one size with two roots convict the CA even to someone
    // who holds the same leaf from both.
    assert_eq!(lie.head.size, honest.head.size);
    lie.leaf_bytes = honest.leaf_bytes.clone();
    lie.leaf = honest.leaf.clone();
    assert_eq!(convict(&honest, &lie, None), Some(Conviction::ForkedLog));
}

#[test]
fn an_outcome_is_checked_against_the_pinned_ca_and_its_proof() {
    let (w, decided) = chain(2, 12);
    let bytes = decided[0].outcome_bytes.clone();
    let ca = w.ca.verifying_key();
    assert!(verify_outcome(&bytes, &ca).is_ok());
    // Forged as the CA: a head signed by another key.
    let other = World::new(1, 13);
    assert!(verify_outcome(&bytes, &other.ca.verifying_key()).is_err());
    // A tampered leaf no longer has its inclusion proof.
    let mut o: Outcome = decode(&bytes).unwrap();
    let n = o.leaf.len();
    o.leaf[n - 1] ^= 1;
    assert_eq!(
        verify_outcome(&agora_core::wire::encode(&o), &ca),
        Err(Error::Crypto)
    );
}

#[test]
fn a_subtransaction_saved_at_every_step_carries_on_after_it_is_read_back() {
    use agora_stp::process::{Invitation, SubState};
    let mut w = World::new(2, 15);
    let ca = w.ca.verifying_key();
    let save = |s: SubState| SubState::from_bytes(&s.to_bytes(), &ca).unwrap();
    let tid = agora_stp::Tid::random(&mut w.rng);
    let peer = w.uid(1);
    let deadline = w.now.plus_secs(DAY);
    let (wait0, opened) =
        agora_stp::process::begin(&w.parties[0], &mut w.rng, w.now, tid, peer, deadline).unwrap();
    let SubState::AwaitingStart(wait0) = save(SubState::AwaitingStart(wait0)) else {
        panic!()
    };
    w.to_ca(&opened.vote).unwrap();
    let inv = Invitation::receive(&w.parties[1], w.now, &opened.opening).unwrap();
    let SubState::Invited(inv) = save(SubState::Invited(inv)) else {
        panic!()
    };
    let (wait1, vote1) = inv.accept(&w.parties[1], &mut w.rng);
    let Answer::Started(s1) = w.to_ca(&vote1).unwrap() else {
        panic!()
    };
    let Answer::Started(s0) = w.to_ca(wait0.vote()).unwrap() else {
        panic!()
    };
    let a = wait0.on_started(&w.parties[0], w.now, &s0).unwrap();
    let b = wait1.on_started(&w.parties[1], w.now, &s1).unwrap();
    let SubState::Open(mut a) = save(SubState::Open(a)) else {
        panic!()
    };
    let SubState::Open(mut b) = save(SubState::Open(b)) else {
        panic!()
    };
    w.converse((0, &mut a), (1, &mut b), 2).unwrap();
    let SubState::Open(b) = save(SubState::Open(b)) else {
        panic!()
    };
    let (wa, _) = w.decide(0, a, true).unwrap();
    let (wb, _) = w.decide(1, b, true).unwrap();
    let SubState::AwaitingOutcome(wa) = save(SubState::AwaitingOutcome(wa)) else {
        panic!()
    };
    let da = w.outcome(0, &wa).unwrap();
    let SubState::Decided(da2) = save(SubState::Decided(da.clone())) else {
        panic!()
    };
    assert_eq!(da2.outcome, da.outcome);
    assert_eq!(da2.transcript, da.transcript);
    assert!(w.outcome(1, &wb).unwrap().committed());
    // A saved state is decoded as strictly as peer input.
    let bytes = SubState::Decided(da).to_bytes();
    assert!(SubState::from_bytes(&bytes[..bytes.len() - 1], &ca).is_err());
    let other_ca = World::new(1, 16).ca.verifying_key();
    assert!(SubState::from_bytes(&bytes, &other_ca).is_err());
}
