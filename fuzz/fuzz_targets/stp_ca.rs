//! The commit authority's entry point, `CommitAuthority::handle`, on
//! arbitrary bytes, over a log at one of the fixture's stages. The first
//! byte picks the step, the second the stage (`>> 1`, modulo `STAGES`) and
//! the time (even: the fixture's now; odd: past the deadline); the rest is
//! the message, raw or as the payload the target signs as a party would.
//!
//! | step (`steps::ca`) | input |
//! |---|---|
//! | `RAW` | a Vote, Decide or Status as it arrives |
//! | `VOTE_SIGNED_P`, `VOTE_SIGNED_Q` | a Vote's payload, signed by P / Q |
//! | `DECIDE_SIGNED_P`, `DECIDE_SIGNED_R` | a Decide's payload, signed by P / R |
//! | `SWEEP` | a TID (16 bytes): the deadline sweep, a seal, its Status |
//!
//! Each run starts from a copy of the stage's log and a fresh commit
//! authority (nothing cached). A refused message changes nothing in the
//! log; an accepted one, sent again, gets the same answer and changes
//! nothing more; a commit authority restarted on the log answers it the
//! same. After every run the log holds records that decode (canonically),
//! one leaf per transaction, each record pointing at its own leaf, and
//! heads no larger than the leaves.
#![no_main]
use agora_core::wire::{self, cose};
use agora_stp::ids::Tid;
use agora_stp::log::TxRecord;
use agora_stp::msg::OutcomeLeaf;
use agora_stp::testkit::NOW;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::sync::OnceLock;

#[path = "stp_fixture.rs"]
mod stp_fixture;

use stp_fixture::steps::ca::*;
use stp_fixture::{LogState, Stp, LATE, P, Q, R};

fn stp() -> &'static Stp {
    static STP: OnceLock<Stp> = OnceLock::new();
    STP.get_or_init(Stp::new)
}

fn log_holds(s: &LogState) {
    let mut tids = BTreeSet::new();
    for (i, leaf) in s.leaves.iter().enumerate() {
        let l: OutcomeLeaf = wire::decode(leaf).expect("a leaf the CA wrote decodes");
        assert!(tids.insert(l.tid), "a second leaf for {}", l.tid);
        let rec = s
            .txs
            .get(&l.tid)
            .expect("a leaf of a transaction the log holds");
        assert_eq!(
            rec.0.leaf_index,
            Some(i as u64),
            "a record not pointing at its leaf"
        );
    }
    for (tid, (stored, _)) in &s.txs {
        let r = TxRecord::decode(&stored.record).expect("a record the CA wrote decodes");
        assert_eq!(r.encode(), stored.record);
        assert_eq!(
            stored.leaf_index.is_some(),
            r.tx.outcome.is_some(),
            "{tid}: decided without a leaf, or a leaf without a decision"
        );
    }
    if let Some((size, _)) = s.heads.last() {
        assert!(*size <= s.leaves.len() as u64);
    }
}

fuzz_target!(|data: &[u8]| {
    let [step, at, input @ ..] = data else {
        return;
    };
    let f = stp();
    let log = f.log(at >> 1);
    let now = if at & 1 == 0 { NOW } else { LATE };
    let ca = f.ca();
    let sign = |i: usize| cose::sign_raw(&f.party(i).sign, input);
    let msg = match step % COUNT {
        RAW => input.to_vec(),
        VOTE_SIGNED_P | DECIDE_SIGNED_P => sign(P),
        VOTE_SIGNED_Q => sign(Q),
        DECIDE_SIGNED_R => sign(R),
        SWEEP => {
            let _ = ca.expire_due(now, &log, 64);
            let _ = ca.seal(now, &log);
            if let Some(t) = input.get(..16).and_then(|t| <[u8; 16]>::try_from(t).ok()) {
                let _ = ca.status(now, &Tid(t), &log);
            }
            log_holds(&log.state());
            return;
        }
        _ => unreachable!("step modulo COUNT"),
    };
    let before = log.state();
    match ca.handle(now, &msg, &log) {
        Err(_) => assert_eq!(log.state(), before, "a refused message changed the log"),
        Ok(first) => {
            let after = log.state();
            let again = ca.handle(now, &msg, &log);
            assert_eq!(
                again.as_ref().ok(),
                Some(&first),
                "the same message, another answer"
            );
            assert_eq!(log.state(), after, "the same message changed the log again");
            let restarted = f.ca().handle(now, &msg, &log);
            assert_eq!(
                restarted.ok(),
                Some(first),
                "a restarted CA answers otherwise"
            );
            assert_eq!(log.state(), after);
        }
    }
    log_holds(&log.state());
});
