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

#[test]
fn card_loaded_from_account_through_the_broker_once_however_often_asked() {
    let mut m = Market::new(6);
    let broker = m.broker_peer;
    let (carol, float, card) = (m.cents(CAROL), m.cents(FLOAT), m.card.balance().cents);
    let s1 = m.card.authenticate(&mut m.rng);
    let req = customer::card_load_request(
        &mut m.rng,
        &m.carol,
        &broker,
        m.carol_account.clone(),
        eur(2_000),
        s1,
        m.now,
    )
    .unwrap();
    let cmd = m.broker.on_card_load(m.now, &req, &m.ledger).unwrap();
    // The command was lost: the same request again debits nothing more and
    // gets the same command.
    let again = m.broker.on_card_load(m.now, &req, &m.ledger).unwrap();
    assert_eq!(again, cmd);
    m.card.load(&cmd).unwrap();
    assert_eq!(m.cents(CAROL), carol - 2_000);
    assert_eq!(m.cents(FLOAT), float + 2_000);
    assert_eq!(m.card.balance().cents, card + 2_000);
    // The card applies it once.
    assert_eq!(m.card.load(&cmd).unwrap_err(), agora_core::Error::Replayed);
    assert_eq!(m.cents(FLOAT), m.card.balance().cents as i64);
    // Too much: refused, nothing moves.
    let s1 = m.card.authenticate(&mut m.rng);
    let req = customer::card_load_request(
        &mut m.rng,
        &m.carol,
        &broker,
        m.carol_account.clone(),
        eur(9_000),
        s1,
        m.now,
    )
    .unwrap();
    let before = (m.cents(CAROL), m.cents(FLOAT));
    assert!(matches!(
        m.broker.on_card_load(m.now, &req, &m.ledger),
        Err(agora_core::Error::Refused(r)) if r.contains("insufficient")
    ));
    assert_eq!((m.cents(CAROL), m.cents(FLOAT)), before);
    // A stale request (an hour old) is refused.
    let s1 = m.card.authenticate(&mut m.rng);
    let req = customer::card_load_request(
        &mut m.rng,
        &m.carol,
        &broker,
        m.carol_account.clone(),
        eur(100),
        s1,
        m.now.minus_secs(3600),
    )
    .unwrap();
    assert_eq!(
        m.broker.on_card_load(m.now, &req, &m.ledger).unwrap_err(),
        agora_core::Error::Replayed
    );
}

/// `agora speed negotiate` and `agora speed pay` are two program runs: the
/// customer's states survive as bytes, and a changed byte is refused.
#[test]
fn a_purchase_resumes_from_saved_states() {
    use agora_speed::broker::BrokerReply;
    use agora_speed::customer::{ExpectPurseDebit, ExpectReceipt, ReadyToPay};
    let mut m = Market::new(7);
    let vendor_key = m.vendor.keys.sign.verifying_key();
    let (ready, ct, _) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let saved = ready.to_bytes(&vendor_key);
    for i in 0..saved.len() {
        let mut t = saved.to_vec();
        t[i] ^= 0x01;
        assert!(ReadyToPay::from_bytes(&t).is_err(), "byte {i}");
    }
    let ready = ReadyToPay::from_bytes(&saved).unwrap();
    let broker = m.broker_peer;
    let order = ready.order();
    let s1 = m.card.authenticate(&mut m.rng);
    let (expect, po) = ready
        .pay_by_card(&mut m.rng, &m.carol, &broker, s1, &|_| false)
        .unwrap();
    let expect = ExpectPurseDebit::from_bytes(&expect.to_bytes(&vendor_key)).unwrap();
    let BrokerReply::PurseDebit(a) = m
        .broker
        .on_payment_order(m.now, &mut m.rng, &po, &m.ledger)
        .unwrap()
    else {
        panic!("message a")
    };
    let saved = expect.to_bytes(&vendor_key);
    let card = &mut m.card;
    let (expect, lost_b) = expect
        .on_debit(&mut m.rng, &a, |s2| card.debit(s2))
        .unwrap();
    let expect = ExpectReceipt::from_bytes(&expect.to_bytes(&vendor_key)).unwrap();
    // The program died with message b: the saved state and the card's last
    // confirmation make it again; the broker pays once.
    let s3 = m.card.last_confirmation().unwrap().to_vec();
    let (again, b) = ExpectPurseDebit::from_bytes(&saved)
        .unwrap()
        .resume(&mut m.rng, s3);
    assert_eq!(again.order(), order);
    let r = m
        .broker
        .on_purse_confirm(m.now, &order, &b, &m.ledger)
        .unwrap();
    assert_eq!(
        m.broker
            .on_purse_confirm(m.now, &order, &lost_b, &m.ledger)
            .unwrap_err(),
        agora_core::Error::Replayed
    );
    let purchase = expect.on_receipt(&r).unwrap();
    assert_eq!(decrypt(&purchase, &ct), m.product(SONG));
    assert!(again.on_receipt(&r).is_ok());
}

/// Message a lost on its way: the same PaymentOrder again gets the same
/// message a, the card (still in its session) debits once, and the payment
/// completes; nothing is paid twice.
#[test]
fn a_lost_message_a_is_sent_again() {
    use agora_speed::broker::BrokerReply;
    let mut m = Market::new(8);
    let (ready, ct, _) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let broker = m.broker_peer;
    let order = ready.order();
    let s1 = m.card.authenticate(&mut m.rng);
    let (expect, po) = ready
        .pay_by_card(&mut m.rng, &m.carol, &broker, s1, &|_| false)
        .unwrap();
    let BrokerReply::PurseDebit(lost) = m
        .broker
        .on_payment_order(m.now, &mut m.rng, &po, &m.ledger)
        .unwrap()
    else {
        panic!("message a")
    };
    let BrokerReply::PurseDebit(a) = m
        .broker
        .on_payment_order(m.now, &mut m.rng, &po, &m.ledger)
        .unwrap()
    else {
        panic!("message a again")
    };
    assert_eq!(a, lost);
    let card = &mut m.card;
    let (expect, b) = expect
        .on_debit(&mut m.rng, &a, |s2| card.debit(s2))
        .unwrap();
    let r = m
        .broker
        .on_purse_confirm(m.now, &order, &b, &m.ledger)
        .unwrap();
    let purchase = expect.on_receipt(&r).unwrap();
    assert_eq!(decrypt(&purchase, &ct), m.product(SONG));
    assert_eq!(m.cents(FLOAT), m.card.balance().cents as i64);
    // A damaged receipt does not cost the customer her RecKey.
    let mut bad = r.clone();
    bad[20] ^= 1;
    assert!(expect.on_receipt(&bad).is_err());
    assert!(expect.on_receipt(&r).is_ok());
}

/// The vendor's copy of the receipt (section 5.6: the broker sends it to
/// customer and vendor): the vendor keeps no key per sale, it derives
/// RecKey from its own key and the PaymentOrderID, reads the receipt the
/// broker resends on request, and finds its sales in the handshake
/// register.
#[test]
fn the_vendor_reads_its_receipts_by_payment_order_alone() {
    use agora_speed::msg::ReceiptRequest;
    use agora_speed::vendor::HandshakeRegister;
    let mut m = Market::new(11);
    let (ready, _, first) = m.negotiate_to_pay(SONG, &AcceptFirst);
    m.pay_from_account(ready);
    m.now = agora_core::Timestamp(m.now.0 + 60);
    let (ready, _, second) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let unpaid = second.order;
    drop(ready);
    // RecKey in the bill is the derived one, one per sale.
    let rec_key_of = |sale: &agora_speed::vendor::Sale| {
        let bill: agora_speed::msg::Bill =
            agora_core::wire::cose::verify(&sale.signed_bill, &m.vendor.keys.sign.verifying_key())
                .unwrap();
        bill.rec_key
    };
    assert_eq!(m.vendor.rec_key(&first.order).unwrap(), rec_key_of(&first));
    assert_eq!(
        m.vendor.rec_key(&second.order).unwrap(),
        rec_key_of(&second)
    );
    assert_ne!(rec_key_of(&first), rec_key_of(&second));
    // The register lists both deliveries, newest first.
    let sales = m.handshakes.deliveries(10).unwrap();
    let nids: Vec<_> = sales.iter().map(|d| d.nid).collect();
    assert_eq!(nids, vec![second.order.nid, first.order.nid]);
    // The broker resends the first receipt; the second was never paid.
    let ask = |order| agora_core::wire::encode(&ReceiptRequest { order });
    let sealed = m
        .broker
        .on_receipt_request(&ask(first.order), &m.ledger)
        .unwrap();
    assert!(m
        .broker
        .on_receipt_request(&ask(unpaid), &m.ledger)
        .is_err());
    let (r, signed) = m.vendor.open_receipt_of(&first.order, &sealed).unwrap();
    assert_eq!((r.order, r.price), (first.order, eur(1000)));
    customer::verify_receipt(&signed, &m.broker.verifying_key()).unwrap();
    // Cut and pasted onto another of its orders: refused (the RecKey of
    // that order does not open it).
    assert!(m.vendor.open_receipt_of(&unpaid, &sealed).is_err());
    // Tampered: refused.
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(m.vendor.open_receipt_of(&first.order, &bad).is_err());
    // An order naming another vendor: refused before any key is derived.
    let mut theirs = first.order;
    theirs.vendor = agora_core::KeyId([5; 32]);
    assert!(m.vendor.open_receipt_of(&theirs, &sealed).is_err());
}
