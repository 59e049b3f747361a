//! The broker's message handlers on arbitrary bytes, on a `MemoryLedger`.
//! The first byte picks the step, the rest is the message, raw or as
//! plaintext that the target seals as Carol or the vendor would (see
//! `speed_customer.rs`).
//!
//! | step (`steps::broker`) | handler | input |
//! |---|---|---|
//! | `ORDER`, `ORDER_SEALED` | `Broker::on_payment_order` | message 5 raw / PaymentOrder in PKE from Carol |
//! | `BILL_SEALED` | `Broker::on_payment_order` | a Bill signed by the vendor, in Carol's PaymentOrder from her account |
//! | `CONFIRM`, `CONFIRM_SEALED` | `Broker::on_purse_confirm` | message b raw / PurseConfirm under BEncKey, BSignKey |
//! | `HELD` | `Broker::on_purse_confirm` (the fixture's message b) | the held debit as the ledger keeps it |
//! | `RECEIPT_REQUEST` | `Broker::on_receipt_request` | a ReceiptRequest |
//! | `BILL_SECRET` | `BillSecret::open` | `{AccountNumber, K}_B` |
//! | `CARD_LOAD`, `CARD_LOAD_SEALED` | `Broker::on_card_load` | raw / CardLoadRequest in PKE from Carol |
//! | `BALANCE`, `BALANCE_SEALED` | `Broker::on_balance_request` | raw / BalanceRequest in PKE from Carol |
//!
//! Each run gets a fresh ledger (Carol's account with 100.00 less the 50.00
//! on her card; for message b, the fixture's card debit held), so a seed's
//! payment is not "replayed" on the next run. After every run the books
//! must balance; a refused message must move no money and leave a held
//! debit held; a message that moved money must move none the second time
//! (a card order held may get its message a again, unchanged).
#![no_main]
use agora_core::wire::{cose, envelope, tags, Message};
use agora_core::Error;
use agora_speed::broker::BrokerReply;
use agora_speed::ledger::{Ledger, MemoryLedger};
use agora_speed::msg::{BalanceRequest, BillSecret, CardLoadRequest, PaymentMode, PaymentOrder};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "speed_fixture.rs"]
mod speed_fixture;

use speed_fixture::steps::broker::*;
use speed_fixture::{balances, eur, num, rng, Speed, CAROL_ACCOUNT, NOW, R_BROKER, R_SEAL};

fn speed() -> &'static Speed {
    static SPEED: OnceLock<Speed> = OnceLock::new();
    SPEED.get_or_init(Speed::new)
}

/// The books balance whatever happened.
fn books_balance(ledger: &MemoryLedger) {
    assert_eq!(
        ledger.total(eur(0).currency).expect("total"),
        0,
        "the books do not balance"
    );
}

/// Message 5 on a fresh ledger: refused, it moves nothing; accepted, it
/// moves the price from one account to another (or holds a card debit and
/// moves nothing yet), and the same bytes again move nothing: refused as
/// replayed, or (a card order) answered with the same message a.
fn payment_order(f: &Speed, m: &[u8]) {
    let ledger = f.ledger();
    let before = balances(&ledger);
    let r = f
        .broker
        .on_payment_order(NOW, &mut rng(R_BROKER), m, &ledger);
    let after = balances(&ledger);
    books_balance(&ledger);
    match r {
        Err(_) => assert_eq!(after, before, "a refused payment order moved money"),
        Ok(BrokerReply::PurseDebit(_)) => {
            assert_eq!(after, before, "a card payment moved money before message b")
        }
        Ok(BrokerReply::Receipt(_)) => {
            assert_ne!(after, before, "a paid order moved no money");
        }
    }
    if let Ok(first) = r {
        let again = f
            .broker
            .on_payment_order(NOW, &mut rng(R_BROKER), m, &ledger);
        match (first, again) {
            (_, Err(Error::Replayed)) => {}
            // A card payment whose message a was lost: the same order again
            // may get the same message a, and nothing more.
            (BrokerReply::PurseDebit(a), Ok(BrokerReply::PurseDebit(again))) => {
                assert_eq!(again, a, "a retried card order got another message a")
            }
            (_, again) => panic!("one order paid twice: {again:?}"),
        }
        assert_eq!(balances(&ledger), after, "a replayed order moved money");
    }
}

/// Message b on a ledger holding `held`: refused, it moves nothing and the
/// debit stays held; accepted, the debit is settled once.
fn purse_confirm(f: &Speed, held: &[u8], m: &[u8]) {
    let ledger = f.ledger();
    if ledger.hold(&f.order, held, NOW).is_err() {
        return;
    }
    let before = balances(&ledger);
    let r = f.broker.on_purse_confirm(NOW, &f.order, m, &ledger);
    let after = balances(&ledger);
    books_balance(&ledger);
    match r {
        Err(_) => {
            assert_eq!(after, before, "a refused message b moved money");
            assert!(
                ledger.held(&f.order).expect("held").is_some(),
                "a refused message b released the held debit"
            );
        }
        Ok(_) => {
            assert!(ledger.held(&f.order).expect("held").is_none());
            let again = f.broker.on_purse_confirm(NOW, &f.order, m, &ledger);
            assert_eq!(
                again.err(),
                Some(Error::Replayed),
                "one card debit settled twice"
            );
            assert_eq!(balances(&ledger), after, "a replayed message b moved money");
        }
    }
}

/// A card load on a fresh ledger: refused, it moves nothing; accepted, the
/// same request again moves nothing more and gets the same command.
fn card_load(f: &Speed, m: &[u8]) {
    let ledger = f.ledger();
    let before = balances(&ledger);
    let r = f.broker.on_card_load(NOW, m, &ledger);
    let after = balances(&ledger);
    books_balance(&ledger);
    match r {
        Err(_) => assert_eq!(after, before, "a refused card load moved money"),
        Ok(cmd) => {
            let again = f
                .broker
                .on_card_load(NOW, m, &ledger)
                .expect("a retried load");
            assert_eq!(again, cmd, "a retried load got another command");
            assert_eq!(balances(&ledger), after, "a retried load moved money again");
        }
    }
}

/// A balance request: answered or refused, it moves no money.
fn balance(f: &Speed, m: &[u8]) {
    let ledger = f.ledger();
    let before = balances(&ledger);
    let _ = f
        .broker
        .on_balance_request(NOW, &mut rng(R_BROKER), m, &ledger);
    assert_eq!(balances(&ledger), before, "a balance request moved money");
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let f = speed();
    match step % COUNT {
        ORDER => payment_order(f, input),
        ORDER_SEALED => {
            let m = f.envelope(
                &f.carol.keys.sign,
                &f.broker_peer.enc,
                PaymentOrder::TAG,
                input,
            );
            payment_order(f, &m);
        }
        BILL_SEALED => {
            let po = PaymentOrder {
                bill: cose::sign_raw(&f.vendor.keys.sign, input),
                mode: PaymentMode::Account(num(CAROL_ACCOUNT)),
                customer_cert: f.carol.cert.clone(),
            };
            let m = envelope::seal(
                &mut rng(R_SEAL),
                &f.carol.keys.sign,
                &f.broker_peer.enc,
                &po,
            )
            .expect("seal");
            payment_order(f, &m);
        }
        CONFIRM => purse_confirm(f, &f.held, input),
        CONFIRM_SEALED => {
            let m = f.seal_mac(
                &f.b_enc_key,
                &f.b_sign_key,
                tags::SPEED_PURSE_CONFIRM,
                input,
            );
            purse_confirm(f, &f.held, &m);
        }
        HELD => purse_confirm(f, input, &f.purse_confirm),
        RECEIPT_REQUEST => {
            if let Ok(r) = f.broker.on_receipt_request(input, &f.paid_ledger) {
                assert_eq!(r, f.receipt, "a receipt of another payment");
            }
        }
        BILL_SECRET => {
            let _ = BillSecret::open(input, &f.broker_keys.enc, &f.order);
        }
        CARD_LOAD => card_load(f, input),
        CARD_LOAD_SEALED => {
            let m = f.envelope(
                &f.carol.keys.sign,
                &f.broker_peer.enc,
                CardLoadRequest::TAG,
                input,
            );
            card_load(f, &m);
        }
        BALANCE => balance(f, input),
        BALANCE_SEALED => {
            let m = f.envelope(
                &f.carol.keys.sign,
                &f.broker_peer.enc,
                BalanceRequest::TAG,
                input,
            );
            balance(f, &m);
        }
        _ => unreachable!("step modulo COUNT"),
    }
});
