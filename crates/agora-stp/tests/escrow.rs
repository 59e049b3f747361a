//! Isolation: the escrow releases a held item to its recipient only against
//! a committed outcome, returns it to its depositor on abort, to no one
//! else, exactly once; claims with another transaction's outcome, a forged
//! outcome, a stale time, or replayed by someone else get nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::wire::cose;
use agora_core::{Error, Timestamp};
use agora_stp::ca::Answer;
use agora_stp::escrow::{open_release, Escrow, EscrowStore, MemoryEscrowStore};
use agora_stp::msg::{Claim, Deposit, DepositReceipt};
use agora_stp::process::Decided;
use agora_stp::testkit::World;
use agora_stp::Tid;

struct Desk {
    escrow: Escrow,
    store: MemoryEscrowStore,
}

fn desk(w: &mut World) -> Desk {
    Desk {
        escrow: Escrow::new(
            SigningKey::generate(&mut w.rng),
            w.parties[0].trust.clone(),
            w.ca.verifying_key(),
        ),
        store: MemoryEscrowStore::new(),
    }
}

/// Party `from` deposits `item` for `tid`, to go to party `to`; returns the
/// deposit's id.
fn deposit(w: &World, d: &Desk, tid: Tid, from: usize, to: usize, item: &[u8]) -> [u8; 32] {
    let bytes = cose::sign(
        &w.parties[from].sign,
        &Deposit {
            tid,
            depositor_cert: w.parties[from].cert.clone(),
            recipient: w.uid(to),
            ca: w.ca.uid(),
            item: item.to_vec(),
        },
    );
    let receipt = d.escrow.on_deposit(w.now, &bytes, &d.store).unwrap();
    let r: DepositReceipt = cose::verify(&receipt, &d.escrow.verifying_key()).unwrap();
    assert_eq!(r.item_hash, agora_core::crypto::sha256(item));
    // The same deposit again: the same receipt.
    assert_eq!(
        d.escrow.on_deposit(w.now, &bytes, &d.store).unwrap(),
        receipt
    );
    r.deposit
}

/// Party `who` claims deposit `id` with `outcome`; returns the claim's
/// bytes and the escrow's answer, opened.
fn claim(
    w: &mut World,
    d: &Desk,
    who: usize,
    id: [u8; 32],
    outcome: &[u8],
    at: Timestamp,
) -> (Vec<u8>, agora_core::Result<agora_stp::msg::Release>) {
    let reply = X25519Secret::generate(&mut w.rng);
    let bytes = cose::sign(
        &w.parties[who].sign,
        &Claim {
            deposit: id,
            claimant_cert: w.parties[who].cert.clone(),
            outcome: outcome.to_vec(),
            at,
            reply_to: reply.public(),
        },
    );
    let answer = d
        .escrow
        .on_claim(&mut w.rng, w.now, &bytes, &d.store)
        .and_then(|sealed| open_release(&sealed, &reply, &d.escrow.verifying_key()));
    (bytes, answer)
}

/// A two-party transaction, committed or aborted by p1; p0's view.
fn decided(w: &mut World, commit: bool) -> Decided {
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    w.converse((0, &mut a), (1, &mut b), 1).unwrap();
    let (wa, _) = w.decide(0, a, true).unwrap();
    w.decide(1, b, commit).unwrap();
    w.outcome(0, &wa).unwrap()
}

#[test]
fn a_held_item_goes_to_its_recipient_only_against_a_committed_outcome() {
    let mut w = World::new(3, 40);
    let d = desk(&mut w);
    let tid = {
        let (a, _) = w.begin(0, 1).unwrap();
        a.tid()
    };
    let id = deposit(&w, &d, tid, 0, 1, b"the order for 40 tonnes of cement");
    // No outcome yet: the status is Pending, nothing to claim with.
    assert!(matches!(
        w.ca.status(w.now, &tid, w.log()).unwrap(),
        Answer::Pending(_)
    ));
    // A decided transaction, and an item escrowed for it.
    let done = decided(&mut w, true);
    let id2 = deposit(&w, &d, done.outcome.leaf.tid, 0, 1, b"the order");
    let now = w.now;
    let (_, got) = claim(&mut w, &d, 1, id2, &done.outcome_bytes, now);
    let r = got.unwrap();
    assert_eq!(
        (r.item.as_slice(), r.returned, r.to),
        (&b"the order"[..], false, w.uid(1))
    );
    // The depositor and a stranger get nothing; the recipient again gets the same.
    assert!(matches!(
        claim(&mut w, &d, 0, id2, &done.outcome_bytes, now).1,
        Err(Error::NotAuthorised(_))
    ));
    assert!(matches!(
        claim(&mut w, &d, 2, id2, &done.outcome_bytes, now).1,
        Err(Error::NotAuthorised(_))
    ));
    assert_eq!(
        claim(&mut w, &d, 1, id2, &done.outcome_bytes, now)
            .1
            .unwrap()
            .item,
        b"the order"
    );
    // The first deposit's transaction is not the decided one's.
    assert!(matches!(
        claim(&mut w, &d, 1, id, &done.outcome_bytes, now).1,
        Err(Error::PeerMisbehaved(_))
    ));
    assert!(d.store.get(&id).unwrap().unwrap().settled.is_none());
}

#[test]
fn an_aborted_transaction_returns_the_item_to_its_depositor_and_never_to_the_recipient() {
    let mut w = World::new(2, 41);
    let d = desk(&mut w);
    let done = decided(&mut w, false);
    assert!(!done.committed());
    let id = deposit(&w, &d, done.outcome.leaf.tid, 0, 1, b"payment 500 EUR");
    let now = w.now;
    assert!(matches!(
        claim(&mut w, &d, 1, id, &done.outcome_bytes, now).1,
        Err(Error::NotAuthorised(_))
    ));
    let r = claim(&mut w, &d, 0, id, &done.outcome_bytes, now)
        .1
        .unwrap();
    assert!(r.returned);
    assert_eq!(r.to, w.uid(0));
    let s = d.store.get(&id).unwrap().unwrap().settled.unwrap();
    assert!(s.returned);
}

#[test]
fn claims_with_a_forged_outcome_a_stale_time_or_replayed_by_another_get_nothing() {
    let mut w = World::new(3, 42);
    let d = desk(&mut w);
    let done = decided(&mut w, true);
    let id = deposit(&w, &d, done.outcome.leaf.tid, 0, 1, b"the goods");
    // An outcome "committed" by a CA the escrow does not pin.
    let mut other = World::new(2, 43);
    let forged = decided(&mut other, true);
    let now = w.now;
    assert!(claim(&mut w, &d, 1, id, &forged.outcome_bytes, now)
        .1
        .is_err());
    // A claim too old.
    let stale = Timestamp(now.secs() - 3600);
    assert_eq!(
        claim(&mut w, &d, 1, id, &done.outcome_bytes, stale).1,
        Err(Error::Replayed)
    );
    // The recipient's genuine claim, replayed by someone else: the release
    // is sealed to the recipient's reply key, so the replayer reads nothing.
    let (bytes, got) = claim(&mut w, &d, 1, id, &done.outcome_bytes, now);
    assert!(got.is_ok());
    let sealed = d
        .escrow
        .on_claim(&mut w.rng, w.now, &bytes, &d.store)
        .unwrap();
    let eavesdropper = X25519Secret::generate(&mut w.rng);
    assert!(open_release(&sealed, &eavesdropper, &d.escrow.verifying_key()).is_err());
    assert!(!sealed.windows(9).any(|s| s == b"the goods"));
}

#[test]
fn deposits_naming_another_ca_or_for_oneself_are_refused() {
    let mut w = World::new(2, 44);
    let d = desk(&mut w);
    let tid = Tid::random(&mut w.rng);
    let mut dep = Deposit {
        tid,
        depositor_cert: w.parties[0].cert.clone(),
        recipient: w.uid(0),
        ca: w.ca.uid(),
        item: b"x".to_vec(),
    };
    let own = cose::sign(&w.parties[0].sign, &dep);
    assert!(matches!(
        d.escrow.on_deposit(w.now, &own, &d.store),
        Err(Error::Refused(_))
    ));
    dep.recipient = w.uid(1);
    dep.ca = w.uid(1);
    let other_ca = cose::sign(&w.parties[0].sign, &dep);
    assert!(matches!(
        d.escrow.on_deposit(w.now, &other_ca, &d.store),
        Err(Error::Refused(_))
    ));
    // Signed by someone other than the certificate's holder.
    dep.ca = w.ca.uid();
    let forged = cose::sign(&w.parties[1].sign, &dep);
    assert!(d.escrow.on_deposit(w.now, &forged, &d.store).is_err());
    assert!(d.store.of_transaction(&tid).unwrap().is_empty());
}

#[test]
fn a_transaction_that_committed_without_the_recipient_returns_the_item() {
    let mut w = World::new(3, 45);
    let d = desk(&mut w);
    let done = decided(&mut w, true);
    // p2 never took part: the committed transaction is p0's and p1's.
    let id = deposit(&w, &d, done.outcome.leaf.tid, 0, 2, b"for p2");
    let now = w.now;
    assert!(matches!(
        claim(&mut w, &d, 2, id, &done.outcome_bytes, now).1,
        Err(Error::NotAuthorised(_))
    ));
    let r = claim(&mut w, &d, 0, id, &done.outcome_bytes, now)
        .1
        .unwrap();
    assert!(r.returned);
}
