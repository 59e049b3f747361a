//! Carol the customer's step handlers on arbitrary bytes. The first byte
//! picks the step, the rest is the message; each step comes in two forms:
//! the message as it arrives ("raw"), and its plaintext, which the target
//! authenticates and encrypts as the honest sender would (under the keys of
//! the fixture's purchase), so that the checks after the cryptography are
//! fuzzed too ("sealed").
//!
//! | step (`steps::customer`) | handler | input |
//! |---|---|---|
//! | `STEP`, `STEP_SEALED` | `Negotiating::on_step` (strategy: `haggler`) | message 2 raw / NegotiationStep under EnKey, SignKey |
//! | `DELIVERY`, `DELIVERY_SEALED` | `ExpectDelivery::on_delivery` | message 4 head raw / Bill signed by the vendor, under EnKey |
//! | `AGGRESSIVE_DELIVERY`, `_SEALED` | `ExpectAggressiveDelivery::on_delivery` | aggressive message 2 head raw / Bill in PKE to Carol |
//! | `PRODUCT` | `ExpectProduct::on_product` | length (8 bytes, big-endian) and digest (32) |
//! | `RECEIPT`, `RECEIPT_SEALED` | `ExpectReceipt::on_receipt`, `verify_receipt` | message 6 raw / Receipt signed by the broker, under RecKey |
//! | `PURSE_DEBIT`, `PURSE_DEBIT_SEALED` | `ExpectPurseDebit::on_debit` (the card answers) | message a raw / PurseDebit under BEncKey, BSignKey |
//! | `PAY_BY_CARD` | `ReadyToPay::pay_by_card` | the card's S1 |
//!
//! The market and one purchase of each kind are built once
//! (`speed_fixture.rs`); each run rebuilds the state its step needs, by
//! replaying the fixture's earlier steps with their fixed RNGs (an HPKE seal
//! and a signature or two), or from Carol's saved state (one signature
//! check) for the states after the delivery.
#![no_main]
use agora_core::wire::{encode, tags, Message};
use agora_speed::customer;
use agora_speed::msg::{AggressiveDelivery, Bill, ProductDelivery};
use agora_speed::product::Encrypted;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "speed_fixture.rs"]
mod speed_fixture;

use speed_fixture::steps::customer::*;
use speed_fixture::{haggler, rng, Speed, R_DEBIT, R_HANDSHAKE, R_PAY};

fn speed() -> &'static Speed {
    static SPEED: OnceLock<Speed> = OnceLock::new();
    SPEED.get_or_init(Speed::new)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let f = speed();
    match step % COUNT {
        STEP => {
            let (c, _) = f.negotiate();
            let _ = c.on_step(&mut rng(R_HANDSHAKE), &f.carol, input, &haggler());
        }
        STEP_SEALED => {
            let m = f.seal_mac(&f.en_key, &f.sign_key, tags::SPEED_NEGOTIATION_STEP, input);
            let (c, _) = f.negotiate();
            let _ = c.on_step(&mut rng(R_HANDSHAKE), &f.carol, &m, &haggler());
        }
        DELIVERY => {
            let _ = f.expect_delivery().on_delivery(input);
        }
        DELIVERY_SEALED => {
            let head = encode(&ProductDelivery {
                nid: f.nid,
                product_len: speed_fixture::PRODUCT.len,
                bill: f.seal_signed(&f.en_key, &f.vendor.keys.sign, Bill::TAG, input),
            });
            let _ = f.expect_delivery().on_delivery(&head);
        }
        AGGRESSIVE_DELIVERY => {
            let (expect, _) = f.aggressive_request();
            let _ = expect.on_delivery(&f.carol, input);
        }
        AGGRESSIVE_DELIVERY_SEALED => {
            let (expect, _) = f.aggressive_request();
            let head = encode(&AggressiveDelivery {
                nid: expect.nid(),
                product_len: speed_fixture::PRODUCT.len,
                bill: f.envelope(&f.vendor.keys.sign, &f.carol_peer.enc, Bill::TAG, input),
            });
            let _ = expect.on_delivery(&f.carol, &head);
        }
        PRODUCT => {
            let mut len = [0u8; 8];
            let mut hash = [0u8; 32];
            let n = input.len().min(8);
            len[..n].copy_from_slice(&input[..n]);
            let rest = &input[n..];
            let m = rest.len().min(32);
            hash[..m].copy_from_slice(&rest[..m]);
            let got = Encrypted {
                len: u64::from_be_bytes(len),
                hash,
            };
            let expect = f
                .expect_delivery()
                .on_delivery(&f.delivery)
                .expect("delivery");
            let ok = expect.on_product(got).is_ok();
            assert_eq!(
                ok,
                got == speed_fixture::PRODUCT,
                "paid for another product than the bill's"
            );
        }
        RECEIPT => {
            // A receipt that does not open leaves her waiting for the real
            // one.
            let expect = f.expect_receipt();
            if expect.on_receipt(input).is_err() {
                expect
                    .on_receipt(&f.receipt)
                    .expect("a bad receipt cost her the real one");
            }
            let _ = customer::verify_receipt(input, &f.broker_peer.sign);
        }
        RECEIPT_SEALED => {
            let m = f.seal_signed(
                &f.rec_key,
                &f.broker_keys.sign,
                tags::SPEED_PURCHASE_RECEIPT,
                input,
            );
            if let Ok(purchase) = f.expect_receipt().on_receipt(&m) {
                assert_eq!(purchase.order, f.order);
                assert_eq!(purchase.price, f.price);
                customer::verify_receipt(&purchase.receipt, &f.broker_peer.sign)
                    .expect("the receipt she keeps verifies");
            }
        }
        PURSE_DEBIT => {
            let mut card = f.card();
            let _ = f
                .expect_purse_debit()
                .on_debit(&mut rng(R_DEBIT), input, |s2| card.debit(s2));
        }
        PURSE_DEBIT_SEALED => {
            let m = f.seal_mac(&f.b_enc_key, &f.b_sign_key, tags::SPEED_PURSE_DEBIT, input);
            let mut card = f.card();
            let before = (card.balance(), card.counter());
            let r = f
                .expect_purse_debit()
                .on_debit(&mut rng(R_DEBIT), &m, |s2| card.debit(s2));
            if r.is_err() {
                assert_eq!(
                    (card.balance(), card.counter()),
                    before,
                    "a refused debit moved money"
                );
            }
        }
        PAY_BY_CARD => {
            let _ = f.ready_to_pay().pay_by_card(
                &mut rng(R_PAY),
                &f.carol,
                &f.broker_peer,
                input.to_vec(),
                &|_| false,
            );
        }
        _ => unreachable!("step modulo COUNT"),
    }
});
