//! Complete SPEED purchases in one process: normal mode with negotiation
//! and aggressive mode, each paid from an account and by e-purse card.
//! Money moves exactly once; the product decrypts with the receipt's K.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_speed::customer;
use agora_speed::ledger::Ledger;
use agora_speed::strategy::{AcceptFirst, Target};
use common::*;

#[test]
fn normal_mode_negotiated_and_paid_from_account() {
    let mut m = Market::new(1);
    let strategy = Target {
        target: eur(700),
        step: 50,
        limit: eur(900),
    };
    let (ready, ct, sale) = m.negotiate_to_pay(SONG, &strategy);
    // Vendor asks 1000, 900, 800 (floor, last); Carol bids 700, 750, 800:
    // they meet at 8.00.
    assert_eq!(ready.price(), eur(800));
    let (carol_before, shop_before) = (m.cents(CAROL), m.cents(SHOP));
    let (purchase, receipt) = m.pay_from_account(ready);
    assert_eq!(decrypt(&purchase, &ct), m.product(SONG));
    assert_eq!(m.cents(CAROL), carol_before - 800);
    assert_eq!(m.cents(SHOP), shop_before + 800);
    assert_eq!(m.ledger.total(eur(0).currency).unwrap(), 0);
    // The vendor reads the same receipt with its RecKey.
    let (r, _) = m.vendor.open_receipt(&receipt, &sale).unwrap();
    assert_eq!(r.order, sale.order);
    // The signed receipt verifies as a third party would check it.
    let r = customer::verify_receipt(&purchase.receipt, &m.broker.verifying_key()).unwrap();
    assert_eq!(r.price, eur(800));
}

#[test]
fn normal_mode_accept_first_paid_by_card() {
    let mut m = Market::new(2);
    let (ready, ct, _) = m.negotiate_to_pay(SONG, &AcceptFirst);
    assert_eq!(ready.price(), eur(1000));
    let (float_before, shop_before) = (m.cents(FLOAT), m.cents(SHOP));
    let card_before = m.card.balance().cents;
    let (purchase, _) = m.pay_by_card(ready);
    assert_eq!(decrypt(&purchase, &ct), m.product(SONG));
    assert_eq!(m.card.balance().cents, card_before - 1000);
    assert_eq!(m.cents(FLOAT), float_before - 1000);
    assert_eq!(m.cents(SHOP), shop_before + 1000);
    // The float still equals the value on the card.
    assert_eq!(m.cents(FLOAT), m.card.balance().cents as i64);
    assert_eq!(m.ledger.total(eur(0).currency).unwrap(), 0);
}

fn aggressive(m: &mut Market) -> (agora_speed::customer::ReadyToPay, Vec<u8>) {
    let vendor = m.vendor_peer();
    let (expect, req) = customer::request(&mut m.rng, &m.carol, &vendor, SONG, eur(1000)).unwrap();
    let delivery = m
        .vendor
        .on_product_request(m.now, &req, &m.shelf, &m.handshakes)
        .unwrap();
    let (head, ct, _) = m.deliver(delivery);
    let expect = expect.on_delivery(&m.carol, &head).unwrap();
    (expect.on_product(encrypted_of(&ct)).unwrap(), ct)
}

#[test]
fn aggressive_mode_paid_from_account() {
    let mut m = Market::new(3);
    let (ready, ct) = aggressive(&mut m);
    let (purchase, _) = m.pay_from_account(ready);
    assert_eq!(decrypt(&purchase, &ct), m.product(SONG));
    assert_eq!(m.cents(SHOP), 1000);
}

#[test]
fn aggressive_mode_paid_by_card() {
    let mut m = Market::new(4);
    let (ready, ct) = aggressive(&mut m);
    let (purchase, _) = m.pay_by_card(ready);
    assert_eq!(decrypt(&purchase, &ct), m.product(SONG));
    assert_eq!(m.card.balance().cents, 4000);
}

#[test]
fn a_lost_receipt_is_sent_again() {
    let mut m = Market::new(5);
    let (ready, _, _) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let order = ready.order();
    let (_, receipt) = m.pay_from_account(ready);
    let again = m
        .broker
        .on_receipt_request(&customer::receipt_request(order), &m.ledger)
        .unwrap();
    assert_eq!(again, receipt);
}
