//! The escrow's handlers on arbitrary bytes, on a `MemoryEscrowStore`. The
//! first byte picks the step, the rest is the message, raw or as the
//! payload the target signs as the depositor (P) or the claimant (Q) would.
//!
//! | step (`steps::escrow`) | handler | input |
//! |---|---|---|
//! | `DEPOSIT`, `DEPOSIT_SIGNED` | `Escrow::on_deposit`, empty store | Deposit raw / payload signed by P |
//! | `CLAIM`, `CLAIM_SIGNED` | `Escrow::on_claim`, the fixture's deposit held | Claim raw / payload signed by Q |
//!
//! A refused deposit holds nothing; a deposit taken is held unsettled, and
//! the same again gets the same receipt. A refused claim settles nothing;
//! a claim that releases settles the deposit once, to Q (the transaction
//! committed with Q in it), and the same claim again changes nothing; the
//! release opens with the claim's key when it is the fixture's.
#![no_main]
use agora_core::crypto::{sha256, X25519Secret};
use agora_core::wire::cose;
use agora_stp::escrow::{open_release, EscrowStore, MemoryEscrowStore};
use agora_stp::msg::DepositReceipt;
use agora_stp::testkit::NOW;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "stp_fixture.rs"]
mod stp_fixture;

use stp_fixture::steps::escrow::*;
use stp_fixture::{rng, Stp, ITEM, P, Q, REPLY_SEED};

fn stp() -> &'static Stp {
    static STP: OnceLock<Stp> = OnceLock::new();
    STP.get_or_init(Stp::new)
}

fn deposit(f: &Stp, m: &[u8]) {
    let escrow = f.escrow();
    let store = MemoryEscrowStore::new();
    let id = sha256(m);
    match escrow.on_deposit(NOW, m, &store) {
        Err(_) => assert_eq!(
            store.get(&id).expect("store"),
            None,
            "a refused deposit is held"
        ),
        Ok(receipt) => {
            let held = store
                .get(&id)
                .expect("store")
                .expect("a deposit taken is held");
            assert_eq!(held.settled, None);
            let r: DepositReceipt =
                cose::verify(&receipt, &escrow.verifying_key()).expect("its receipt verifies");
            assert_eq!(r.deposit, id);
            assert_eq!(r.item_hash, sha256(&held.item));
            let again = escrow
                .on_deposit(NOW, m, &store)
                .expect("the same deposit again");
            assert_eq!(again, receipt, "the same deposit, another receipt");
        }
    }
}

fn claim(f: &Stp, m: &[u8]) {
    let escrow = f.escrow();
    let store = f.escrow_store();
    let id = f.held.id;
    match escrow.on_claim(&mut rng(), NOW, m, &store) {
        Err(_) => assert_eq!(
            store.get(&id).expect("store").and_then(|h| h.settled),
            None,
            "a refused claim settled the deposit"
        ),
        Ok(release) => {
            let s = store
                .get(&id)
                .expect("store")
                .and_then(|h| h.settled)
                .expect("a release settles");
            assert_eq!(
                (s.to, s.returned),
                (f.uid(Q), false),
                "released to the wrong party"
            );
            let _ = escrow.on_claim(&mut rng(), NOW, m, &store);
            assert_eq!(
                store.get(&id).expect("store").and_then(|h| h.settled),
                Some(s)
            );
            let reply = X25519Secret::from_bytes(REPLY_SEED);
            if let Ok(r) = open_release(&release, &reply, &escrow.verifying_key()) {
                assert_eq!(
                    (r.item.as_slice(), r.to, r.returned),
                    (ITEM, f.uid(Q), false)
                );
            }
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
        DEPOSIT => deposit(f, input),
        DEPOSIT_SIGNED => deposit(f, &signed_by(P)),
        CLAIM => claim(f, input),
        CLAIM_SIGNED => claim(f, &signed_by(Q)),
        _ => unreachable!("step modulo COUNT"),
    }
});
