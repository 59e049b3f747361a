//! The e-purse card and the broker's SAM on arbitrary bytes. The first byte
//! picks the step, the rest is the input: a purse message as it arrives,
//! or its plaintext, which the target MACs under the card's key for that
//! direction as the SAM or the card would (`PurseKeys`).
//!
//! | step (`steps::purse`) | handler | input |
//! |---|---|---|
//! | `DEBIT`, `DEBIT_SEALED` | `Card::debit` (session open) | S2 / DebitCommand |
//! | `LOAD`, `LOAD_SEALED` | `Card::load` (session open) | load command / LoadCommand |
//! | `AUTH`, `AUTH_SEALED` | `Sam::verify_card_auth`, `Sam::debit`, `Sam::load` | S1 / CardAuth |
//! | `CONFIRM`, `CONFIRM_SEALED` | `Sam::confirm`, `Sam::confirm_load` | S3 or load confirmation / DebitConfirmation or LoadConfirmation |
//! | `CARD_FILE` | `Card::from_bytes`, then a debit and a load through the SAM | a card file |
//! | `PENDING` | `PendingDebit`/`PendingLoad::from_bytes`, then `Sam::confirm`/`confirm_load` | a saved pending command |
//!
//! The card's promises are checked on every run: a refused command leaves
//! balance and counter as they were, every command closes the session, and
//! an accepted one moves the balance by its amount, within
//! `MAX_CARD_BALANCE_CENTS`, and counts once. All of this is HMAC and CBOR:
//! cheap, no state is shared between runs (the card is read from its file
//! each run).
#![no_main]
use agora_core::wire::cose;
use agora_core::Money;
use agora_speed::purse::{
    read_unverified, Card, DebitConfirmation, LoadConfirmation, PendingDebit, PendingLoad,
    MAX_CARD_BALANCE_CENTS,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "speed_fixture.rs"]
mod speed_fixture;

use speed_fixture::steps::purse::*;
use speed_fixture::{eur, rng, Speed, R_SAM, SAM_DEBIT_CENTS, SAM_LOAD_CENTS};

fn speed() -> &'static Speed {
    static SPEED: OnceLock<Speed> = OnceLock::new();
    SPEED.get_or_init(Speed::new)
}

#[derive(Clone, Copy, PartialEq)]
enum Command {
    Debit,
    Load,
}

/// `command` on `card` (a session open, or not): the card's promises.
/// Returns the confirmation if the card accepted it.
fn on_card(card: &mut Card, command: Command, m: &[u8]) -> Option<Vec<u8>> {
    let (balance, counter) = (card.balance(), card.counter());
    let r = match command {
        Command::Debit => card.debit(m),
        Command::Load => card.load(m),
    };
    assert!(!card.has_open_session(), "a command left the session open");
    let Ok(conf) = r else {
        assert_eq!(
            (card.balance(), card.counter()),
            (balance, counter),
            "a refused command changed the card"
        );
        return None;
    };
    assert_eq!(
        card.counter(),
        counter + 1,
        "an accepted command counted other than once"
    );
    assert!(
        card.balance().cents <= MAX_CARD_BALANCE_CENTS,
        "balance over the limit"
    );
    assert_eq!(card.last_confirmation(), Some(&conf[..]));
    let (amount, after): (Money, Money) = match command {
        Command::Debit => {
            let c: DebitConfirmation = read_unverified(&conf).expect("S3");
            assert_eq!(
                card.balance().cents + c.amount.cents,
                balance.cents,
                "debited another amount"
            );
            (c.amount, c.balance)
        }
        Command::Load => {
            let c: LoadConfirmation = read_unverified(&conf).expect("load confirmation");
            assert_eq!(
                balance.cents + c.amount.cents,
                card.balance().cents,
                "loaded another amount"
            );
            (c.amount, c.balance)
        }
    };
    assert!(amount.cents > 0, "a command of zero accepted");
    assert_eq!(
        after,
        card.balance(),
        "the confirmation states another balance"
    );
    Some(conf)
}

/// A card from an arbitrary file: authenticated, debited and loaded through
/// the SAM (also without the SAM's own limits, to reach the card's).
fn card_file(f: &Speed, file: &[u8]) {
    let Ok(mut card) = Card::from_bytes(file) else {
        return;
    };
    let mut r = rng(R_SAM);
    for command in [Command::Debit, Command::Load] {
        for checked in [true, false] {
            let s1 = card.authenticate(&mut r);
            let issued = match (command, checked) {
                (Command::Debit, true) => f
                    .sam
                    .debit(&s1, eur(SAM_DEBIT_CENTS), &f.sam_order, &mut r)
                    .map(|(m, p)| (m, Some(p), None)),
                (Command::Debit, false) => f
                    .sam
                    .debit_for_testing_only(&s1, eur(SAM_DEBIT_CENTS), &f.sam_order, &mut r)
                    .map(|(m, p)| (m, Some(p), None)),
                (Command::Load, true) => f
                    .sam
                    .load(&s1, eur(SAM_LOAD_CENTS), &mut r)
                    .map(|(m, p)| (m, None, Some(p))),
                (Command::Load, false) => f
                    .sam
                    .load_for_testing_only(&s1, eur(SAM_LOAD_CENTS), &mut r)
                    .map(|(m, p)| (m, None, Some(p))),
            };
            let Ok((m, pending_debit, pending_load)) = issued else {
                continue;
            };
            let Some(conf) = on_card(&mut card, command, &m) else {
                continue;
            };
            if let Some(p) = pending_debit {
                f.sam
                    .confirm(&p, &conf)
                    .expect("the SAM confirms the card's S3");
            }
            if let Some(p) = pending_load {
                f.sam
                    .confirm_load(&p, &conf)
                    .expect("the SAM confirms the card's load confirmation");
            }
        }
    }
    let saved = card.to_bytes();
    let again = Card::from_bytes(&saved).expect("a card reads its own file");
    assert_eq!(&again.to_bytes()[..], &saved[..]);
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let f = speed();
    let keys = &f.purse_keys;
    let step = step % COUNT;
    match step {
        DEBIT => {
            on_card(&mut f.card(), Command::Debit, input);
        }
        DEBIT_SEALED => {
            on_card(
                &mut f.card(),
                Command::Debit,
                &cose::mac_raw(&keys.to_card, input),
            );
        }
        LOAD => {
            on_card(&mut f.card(), Command::Load, input);
        }
        LOAD_SEALED => {
            on_card(
                &mut f.card(),
                Command::Load,
                &cose::mac_raw(&keys.to_card, input),
            );
        }
        AUTH | AUTH_SEALED => {
            let sealed;
            let s1 = if step == AUTH {
                input
            } else {
                sealed = cose::mac_raw(&keys.to_sam, input);
                &sealed
            };
            let mut r = rng(R_SAM);
            let _ = f.sam.verify_card_auth(s1);
            if let Ok((_, p)) = f.sam.debit(s1, eur(SAM_DEBIT_CENTS), &f.sam_order, &mut r) {
                assert_eq!(p.amount(), eur(SAM_DEBIT_CENTS));
            }
            if let Ok((_, p)) = f.sam.load(s1, eur(SAM_LOAD_CENTS), &mut r) {
                assert_eq!(p.amount(), eur(SAM_LOAD_CENTS));
            }
        }
        CONFIRM | CONFIRM_SEALED => {
            let sealed;
            let conf = if step == CONFIRM {
                input
            } else {
                sealed = cose::mac_raw(&keys.to_sam, input);
                &sealed
            };
            if let Ok(proof) = f.sam.confirm(&f.pending_debit, conf) {
                assert_eq!(proof.amount(), f.pending_debit.amount());
                assert_eq!(proof.order(), f.pending_debit.order());
                assert_eq!(proof.counter(), f.pending_debit.counter_after());
            }
            if let Ok(proof) = f.sam.confirm_load(&f.pending_load, conf) {
                assert_eq!(proof.amount(), f.pending_load.amount());
                assert_eq!(proof.counter(), f.pending_load.counter_after());
            }
        }
        CARD_FILE => card_file(f, input),
        PENDING => {
            if let Ok(p) = PendingDebit::from_bytes(input) {
                let _ = f.sam.confirm(&p, &f.debit_conf);
            }
            if let Ok(p) = PendingLoad::from_bytes(input) {
                let _ = f.sam.confirm_load(&p, &f.load_conf);
            }
        }
        _ => unreachable!("step modulo COUNT"),
    }
});
