//! Money is conserved whatever happens: a property test over random
//! interleavings of purchases (account and card, normal and aggressive),
//! card loads, refusals (insufficient funds, tampered and replayed
//! messages) and failures (message a lost before the card saw it; message b
//! lost after the card debited, then sent again). After every step: the
//! books sum to zero, no account is below zero, the purse float equals the
//! value on the card, and each PaymentOrderID is paid at most once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_speed::broker::BrokerReply;
use agora_speed::customer::{self, ReadyToPay};
use agora_speed::ledger::{JournalEntry, Ledger, Posting};
use agora_speed::strategy::{AcceptFirst, PriceRule};
use agora_speed::PaymentOrderId;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    BuyFromAccount { price: u64, aggressive: bool },
    BuyByCard { price: u64, aggressive: bool },
    LoadCard { amount: u64 },
    ReplayLastOrder,
    TamperedOrder { price: u64, byte: usize },
    CardNeverSawDebit { price: u64 },
    ConfirmLostThenResent { price: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let price = 1u64..4_000;
    prop_oneof![
        (price.clone(), any::<bool>())
            .prop_map(|(price, aggressive)| Op::BuyFromAccount { price, aggressive }),
        (price.clone(), any::<bool>())
            .prop_map(|(price, aggressive)| Op::BuyByCard { price, aggressive }),
        (1u64..6_000).prop_map(|amount| Op::LoadCard { amount }),
        Just(Op::ReplayLastOrder),
        (price.clone(), any::<usize>()).prop_map(|(price, byte)| Op::TamperedOrder { price, byte }),
        price
            .clone()
            .prop_map(|price| Op::CardNeverSawDebit { price }),
        price.prop_map(|price| Op::ConfirmLostThenResent { price }),
    ]
}

struct World {
    m: Market,
    paid: BTreeSet<PaymentOrderId>,
    last_order: Option<Vec<u8>>,
    loads: u8,
}

impl World {
    fn ready(&mut self, price: u64, aggressive: bool) -> ReadyToPay {
        self.m.shelf.items.get_mut(SONG).unwrap().1.strategy =
            Arc::new(PriceRule::fixed(eur(price)));
        if aggressive {
            let vendor = self.m.vendor_peer();
            let (expect, req) =
                customer::request(&mut self.m.rng, &self.m.carol, &vendor, SONG, eur(price))
                    .unwrap();
            let d = self
                .m
                .vendor
                .on_product_request(self.m.now, &req, &self.m.shelf, &self.m.handshakes)
                .unwrap();
            let (head, ct, _) = self.m.deliver(d);
            let expect = expect.on_delivery(&self.m.carol, &head).unwrap();
            expect.on_product(encrypted_of(&ct)).unwrap()
        } else {
            self.m.negotiate_to_pay(SONG, &AcceptFirst).0
        }
    }

    fn account_order(&mut self, ready: ReadyToPay) -> (customer::ExpectReceipt, Vec<u8>) {
        let broker = self.m.broker_peer;
        let paid = self.paid.clone();
        ready
            .pay_from_account(
                &mut self.m.rng,
                &self.m.carol,
                &broker,
                self.m.carol_account.clone(),
                &|o| paid.contains(o),
            )
            .unwrap()
    }

    fn step(&mut self, op: &Op) {
        match op.clone() {
            Op::BuyFromAccount { price, aggressive } => {
                let ready = self.ready(price, aggressive);
                let order = ready.order();
                let (expect, po) = self.account_order(ready);
                self.last_order = Some(po.clone());
                let affordable = self.m.cents(CAROL) >= price as i64;
                match self.m.broker.on_payment_order(
                    self.m.now,
                    &mut self.m.rng,
                    &po,
                    &self.m.ledger,
                ) {
                    Ok(BrokerReply::Receipt(r)) => {
                        assert!(affordable);
                        expect.on_receipt(&r).unwrap();
                        assert!(self.paid.insert(order), "paid twice");
                    }
                    Ok(BrokerReply::PurseDebit(_)) => {
                        panic!("account payment answered with a card debit")
                    }
                    Err(e) => {
                        assert!(!affordable, "refused while affordable: {e}");
                        assert!(matches!(e, agora_core::Error::Refused(_)));
                    }
                }
            }
            Op::BuyByCard { price, aggressive } => {
                let ready = self.ready(price, aggressive);
                let order = ready.order();
                let affordable = self.m.card.balance().cents >= price;
                let broker = self.m.broker_peer;
                let s1 = self.m.card.authenticate(&mut self.m.rng);
                let (expect, po) = ready
                    .pay_by_card(&mut self.m.rng, &self.m.carol, &broker, s1, &|_| false)
                    .unwrap();
                match self.m.broker.on_payment_order(
                    self.m.now,
                    &mut self.m.rng,
                    &po,
                    &self.m.ledger,
                ) {
                    Ok(BrokerReply::PurseDebit(a)) => {
                        assert!(affordable);
                        let card = &mut self.m.card;
                        let (expect, b) = expect
                            .on_debit(&mut self.m.rng, &a, |s2| card.debit(s2))
                            .unwrap();
                        let r = self
                            .m
                            .broker
                            .on_purse_confirm(self.m.now, &order, &b, &self.m.ledger)
                            .unwrap();
                        expect.on_receipt(&r).unwrap();
                        assert!(self.paid.insert(order), "paid twice");
                    }
                    Ok(BrokerReply::Receipt(_)) => panic!("card payment answered with a receipt"),
                    Err(_) => assert!(!affordable),
                }
            }
            Op::LoadCard { amount } => {
                // The broker debits the account first, then its SAM loads
                // the card (what `agora speed card load` does).
                self.loads = self.loads.wrapping_add(1);
                let entry = JournalEntry {
                    id: [self.loads | 0x80; 16],
                    at: self.m.now,
                    memo: "card load".into(),
                    postings: vec![
                        Posting {
                            account: num(CAROL),
                            cents: -(amount as i64),
                        },
                        Posting {
                            account: num(FLOAT),
                            cents: amount as i64,
                        },
                    ],
                };
                let fits = self.m.card.balance().cents + amount
                    <= agora_speed::purse::MAX_CARD_BALANCE_CENTS;
                if !fits || self.m.cents(CAROL) < amount as i64 {
                    return;
                }
                if self.m.ledger.post(&entry).unwrap() != agora_speed::ledger::PostOutcome::Posted {
                    return;
                }
                let s1 = self.m.card.authenticate(&mut self.m.rng);
                let (cmd, pending) = self.m.sam.load(&s1, eur(amount), &mut self.m.rng).unwrap();
                let conf = self.m.card.load(&cmd).unwrap();
                self.m.sam.confirm_load(&pending, &conf).unwrap();
            }
            Op::ReplayLastOrder => {
                if let Some(po) = self.last_order.clone() {
                    let r = self.m.broker.on_payment_order(
                        self.m.now,
                        &mut self.m.rng,
                        &po,
                        &self.m.ledger,
                    );
                    assert!(r.is_err(), "a replayed order was accepted");
                }
            }
            Op::TamperedOrder { price, byte } => {
                let ready = self.ready(price, false);
                let (_, mut po) = self.account_order(ready);
                let i = byte % po.len();
                po[i] ^= 0x20;
                assert!(self
                    .m
                    .broker
                    .on_payment_order(self.m.now, &mut self.m.rng, &po, &self.m.ledger)
                    .is_err());
            }
            Op::CardNeverSawDebit { price } => {
                let ready = self.ready(price, false);
                let broker = self.m.broker_peer;
                let s1 = self.m.card.authenticate(&mut self.m.rng);
                let (_, po) = ready
                    .pay_by_card(&mut self.m.rng, &self.m.carol, &broker, s1, &|_| false)
                    .unwrap();
                // Message a is lost: the card never debits, nothing is paid.
                let _ = self.m.broker.on_payment_order(
                    self.m.now,
                    &mut self.m.rng,
                    &po,
                    &self.m.ledger,
                );
            }
            Op::ConfirmLostThenResent { price } => {
                let ready = self.ready(price, false);
                let order = ready.order();
                if self.m.card.balance().cents < price {
                    return;
                }
                let broker = self.m.broker_peer;
                let s1 = self.m.card.authenticate(&mut self.m.rng);
                let (expect, po) = ready
                    .pay_by_card(&mut self.m.rng, &self.m.carol, &broker, s1, &|_| false)
                    .unwrap();
                let Ok(BrokerReply::PurseDebit(a)) = self.m.broker.on_payment_order(
                    self.m.now,
                    &mut self.m.rng,
                    &po,
                    &self.m.ledger,
                ) else {
                    panic!("a card debit was expected")
                };
                let card = &mut self.m.card;
                let (expect, b) = expect
                    .on_debit(&mut self.m.rng, &a, |s2| card.debit(s2))
                    .unwrap();
                // The card debited; message b is lost on the way, so the
                // books lag the card until the customer sends b again.
                assert_eq!(
                    self.m.cents(FLOAT),
                    self.m.card.balance().cents as i64 + price as i64
                );
                let r = self
                    .m
                    .broker
                    .on_purse_confirm(self.m.now, &order, &b, &self.m.ledger)
                    .unwrap();
                expect.on_receipt(&r).unwrap();
                assert!(self.paid.insert(order), "paid twice");
                // A third copy of b pays nothing more.
                assert_eq!(
                    self.m
                        .broker
                        .on_purse_confirm(self.m.now, &order, &b, &self.m.ledger)
                        .unwrap_err(),
                    agora_core::Error::Replayed
                );
            }
        }
    }

    fn check(&self) {
        let m = &self.m;
        assert_eq!(
            m.ledger.total(eur(0).currency).unwrap(),
            0,
            "books do not balance"
        );
        for n in [CAROL, SHOP, FLOAT] {
            assert!(m.cents(n) >= 0, "{n} below zero");
        }
        assert_eq!(
            m.cents(FLOAT),
            m.card.balance().cents as i64,
            "float differs from the card"
        );
        for o in &self.paid {
            assert!(m.ledger.payment(o).unwrap().is_some());
        }
        // Everything the shop got was paid for, once.
        let paid_total: i64 = self
            .paid
            .iter()
            .map(|o| m.ledger.payment(o).unwrap().unwrap().price.cents as i64)
            .sum();
        assert_eq!(m.cents(SHOP), paid_total);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn money_is_conserved_and_each_order_paid_at_most_once(ops in proptest::collection::vec(op(), 1..24), seed in any::<u64>()) {
        let mut w = World { m: Market::new(seed), paid: BTreeSet::new(), last_order: None, loads: 0 };
        w.check();
        for op in &ops {
            w.step(op);
            w.check();
        }
    }
}
