//! The ST process's steps on arbitrary bytes. The first byte picks the
//! step, the rest is the message, raw or as the payload the target signs as
//! its honest sender would.
//!
//! | step (`steps::process`) | handler | input |
//! |---|---|---|
//! | `RECEIVE`, `RECEIVE_SIGNED` | Q's `Open::receive` on (P, Q) just started, P holding the token | Data or End raw / payload signed by P |
//! | `RECEIVE_BY_HOLDER_SIGNED` | P's `Open::receive` (P holds the token) | payload signed by Q: always refused |
//! | `INVITATION`, `INVITATION_SIGNED` | `Invitation::receive` by Q | Begin or Join raw / payload signed by P |
//! | `STARTED`, `STARTED_SIGNED` | P's `AwaitStarted::on_started` | Started raw / payload signed by the CA |
//! | `OUTCOME` | P's `AwaitOutcome::on_outcome` (P committed) | an Outcome |
//! | `OUTCOME_LEAF` | the same | a leaf, in a one-leaf tree whose head the CA signs |
//!
//! A refused Data or End leaves the subtransaction as it was (its saved
//! bytes unchanged); a taken one advances it, and the same bytes again are
//! refused as replayed. What an invitation, a Started or an Outcome lets
//! through is for this party's subtransaction.
#![no_main]
use agora_core::wire::{self, cose};
use agora_core::Error;
use agora_stp::ids::Pair;
use agora_stp::merkle::leaf_hash;
use agora_stp::msg::{Outcome, TreeHead};
use agora_stp::process::{Invitation, Open, SubState};
use agora_stp::testkit::NOW;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "stp_fixture.rs"]
mod stp_fixture;

use stp_fixture::steps::process::*;
use stp_fixture::{Stp, P, Q, TID};

fn stp() -> &'static Stp {
    static STP: OnceLock<Stp> = OnceLock::new();
    STP.get_or_init(Stp::new)
}

fn saved(o: &Open) -> Vec<u8> {
    SubState::Open(o.clone()).to_bytes().to_vec()
}

/// `m` to `open`: refused, nothing changes; taken, the same again is a
/// replay.
fn receive(mut open: Open, m: &[u8]) -> bool {
    let before = saved(&open);
    match open.receive(m) {
        Err(_) => {
            assert_eq!(saved(&open), before, "a refused message changed the state");
            false
        }
        Ok(_) => {
            assert_ne!(saved(&open), before, "a message taken changed nothing");
            let after = saved(&open);
            assert_eq!(open.receive(m).err(), Some(Error::Replayed), "taken twice");
            assert_eq!(saved(&open), after);
            true
        }
    }
}

fn invitation(f: &Stp, m: &[u8]) {
    if let Ok(inv) = Invitation::receive(f.party(Q), NOW, m) {
        let o = inv.opening();
        assert!(o.pair.contains(&f.uid(Q)) && o.initiator != f.uid(Q));
        assert_eq!(o.ca, f.ca_key.key_id());
        assert!(o.deadline > NOW);
    }
}

fn outcome(f: &Stp, m: &[u8]) {
    if let Ok(d) = f.await_outcome_p.on_outcome(f.party(P), m) {
        assert_eq!(d.outcome.leaf.tid, TID);
        let pair = Pair::new(f.uid(P), f.uid(Q)).expect("two parties");
        if d.committed() {
            assert_eq!(
                d.outcome.leaf.context_of(&pair),
                Some(f.final_context),
                "committed with another context than P's"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let f = stp();
    let signed_by = |i: usize| cose::sign_raw(&f.party(i).sign, input);
    match step % COUNT {
        RECEIVE => {
            receive(f.open_q.clone(), input);
        }
        RECEIVE_SIGNED => {
            receive(f.open_q.clone(), &signed_by(P));
        }
        RECEIVE_BY_HOLDER_SIGNED => {
            let taken = receive(f.open_p.clone(), &signed_by(Q));
            assert!(!taken, "a message from the party without the token");
        }
        INVITATION => invitation(f, input),
        INVITATION_SIGNED => invitation(f, &signed_by(P)),
        STARTED | STARTED_SIGNED => {
            let m = if step % COUNT == STARTED {
                input.to_vec()
            } else {
                cose::sign_raw(&f.world.ca_key, input)
            };
            if let Ok(open) = f.await_started_p.on_started(f.party(P), NOW, &m) {
                assert_eq!((open.tid(), open.me()), (TID, f.uid(P)));
                assert_eq!(open.peer(), f.uid(Q));
            }
        }
        OUTCOME => outcome(f, input),
        OUTCOME_LEAF => {
            let head = cose::sign(
                &f.world.ca_key,
                &TreeHead {
                    ca: f.ca_key.key_id(),
                    size: 1,
                    root: leaf_hash(input),
                    timestamp: NOW,
                },
            );
            let o = Outcome {
                leaf: input.to_vec(),
                index: 0,
                path: vec![],
                head,
            };
            outcome(f, &wire::encode(&o));
        }
        _ => unreachable!("step modulo COUNT"),
    }
});
