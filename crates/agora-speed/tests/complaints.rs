//! Complaints (paper section 5.7): a customer whose product does not match
//! its description, or whose receipt's key does not decrypt it, presents
//! the description of her request and the encrypted product as delivered;
//! the broker checks both against the bill's digests, decrypts with K, and
//! signs a ruling. Someone else's complaint, a description or a product
//! other than the bill's, are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_core::crypto::{sha256, Secret};
use agora_core::wire::{cose, encode, sym, Message};
use agora_core::Error;
use agora_pki::PartyRole;
use agora_speed::customer::{self, CustomerNext, Identity};
use agora_speed::msg::{
    self, Bill, BillSecret, NegotiationRequest, ProductDelivery, Ruling, Verdict,
};
use agora_speed::product;
use agora_speed::strategy::{AcceptFirst, PriceRule};
use agora_speed::vendor::Offer;
use agora_speed::PaymentOrderId;
use common::*;
use std::sync::Arc;

fn shelve(m: &mut Market, id: &str, bytes: Vec<u8>) {
    let len = bytes.len() as u64;
    m.shelf.items.insert(
        id.into(),
        (
            bytes,
            Offer {
                strategy: Arc::new(PriceRule::fixed(eur(300))),
                len,
            },
        ),
    );
}

/// Buys `id` (paid from the account): the order and the encrypted product.
fn buy(m: &mut Market, id: &str) -> (PaymentOrderId, Vec<u8>, Secret<32>) {
    let (ready, ct, _) = m.negotiate_to_pay(id, &AcceptFirst);
    let order = ready.order();
    let (purchase, _) = m.pay_from_account(ready);
    (order, ct, purchase.key)
}

fn complain(
    m: &mut Market,
    who: &Identity,
    order: PaymentOrderId,
    id: &str,
    ct: &[u8],
) -> Result<Ruling, Error> {
    let broker = m.broker_peer;
    let c = customer::complaint(&mut m.rng, who, &broker, order, id, ct.len() as u64).unwrap();
    let case = m.broker.open_complaint(m.now, &c, &m.ledger)?;
    let found = case.examine(ct).unwrap();
    let ruling = case.rule(&found, m.now)?;
    // The ruling is signed evidence anyone can check.
    let signed = m.broker.sign_ruling(&ruling);
    assert_eq!(
        customer::verify_ruling(&signed, &m.broker.verifying_key()).unwrap(),
        ruling
    );
    Ok(ruling)
}

fn complain_as_carol(
    m: &mut Market,
    order: PaymentOrderId,
    id: &str,
    ct: &[u8],
) -> Result<Ruling, Error> {
    let carol = m.carol_identity();
    complain(m, &carol, order, id, ct)
}

#[test]
fn a_product_as_described_is_dismissed() {
    let mut m = Market::new(40);
    let song = m.product(SONG);
    let id = format!("SONG-2: the song, sha256:{}", hex::encode(sha256(&song)));
    shelve(&mut m, &id, song.clone());
    let (order, ct, _) = buy(&mut m, &id);
    let r = complain_as_carol(&mut m, order, &id, &ct).unwrap();
    assert_eq!(r.verdict, Verdict::Dismissed);
    assert!(r.decrypts);
    assert_eq!(r.content_hash, sha256(&song));
    assert_eq!(r.content_len, song.len() as u64);
}

#[test]
fn a_product_not_as_described_is_upheld() {
    let mut m = Market::new(41);
    let promised = b"the song she wanted".to_vec();
    let id = format!("SONG-3: sha256:{}", hex::encode(sha256(&promised)));
    shelve(&mut m, &id, b"three minutes of silence".to_vec());
    let (order, ct, _) = buy(&mut m, &id);
    let r = complain_as_carol(&mut m, order, &id, &ct).unwrap();
    assert_eq!(r.verdict, Verdict::Upheld);
    assert!(r.decrypts);
    assert_eq!(r.content_hash, sha256(b"three minutes of silence"));
}

#[test]
fn a_description_without_a_digest_is_recorded_for_a_person() {
    let mut m = Market::new(42);
    let (order, ct, _) = buy(&mut m, SONG);
    let r = complain_as_carol(&mut m, order, SONG, &ct).unwrap();
    assert_eq!(r.verdict, Verdict::Recorded);
    assert_eq!(r.content_hash, sha256(&m.product(SONG)));
    assert_eq!(r.product_id, SONG);
}

/// The vendor seals a K into the bill other than the one the product is
/// encrypted under: the receipt's K does not decrypt; upheld.
#[test]
fn a_key_that_does_not_decrypt_is_upheld() {
    let mut m = Market::new(43);
    let vendor = m.vendor_peer();
    let (c, req) = customer::negotiate(&mut m.rng, &m.carol, &vendor, SONG, &AcceptFirst).unwrap();
    let (_, step) = m
        .vendor
        .on_negotiation_request(m.now, &mut m.rng, &req, &m.shelf)
        .unwrap();
    let CustomerNext::Agreed(expect, _) = c
        .on_step(&mut m.rng, &m.carol, &step, &AcceptFirst)
        .unwrap()
    else {
        panic!("Carol accepts")
    };
    let trust = m.trust.clone();
    let now = m.now;
    let r = agora_core::wire::envelope::open_self_certified::<NegotiationRequest>(
        &req,
        &m.vendor.keys.enc,
        |r| {
            Ok(*trust
                .identity(&r.customer_cert, now, PartyRole::Customer)?
                .key())
        },
    )
    .unwrap()
    .message;
    let order = PaymentOrderId {
        vendor: m.vendor.id(),
        nid: r.nid,
    };
    let used = Secret::random(&mut m.rng);
    let billed = Secret::random(&mut m.rng);
    let song = m.product(SONG);
    let (ct, enc) = product::encrypt(&mut m.rng, &used, &song[..], Vec::new()).unwrap();
    let secret = BillSecret {
        account: m.vendor.account.clone(),
        key: billed,
    }
    .seal(&mut m.rng, &m.broker_peer.enc, &order)
    .unwrap();
    let bill = Bill {
        secret,
        product_hash: enc.hash,
        product_id_hash: msg::product_id_hash(SONG),
        order,
        price: eur(1000),
        rec_key: Secret::random(&mut m.rng),
    };
    let signed = cose::sign(&m.vendor.keys.sign, &bill);
    let head = encode(&ProductDelivery {
        nid: r.nid,
        product_len: enc.len,
        bill: sym::seal_raw(&r.en_key, Bill::TAG, &mut m.rng, &signed),
    });
    let ready = expect
        .on_delivery(&head)
        .unwrap()
        .on_product(encrypted_of(&ct))
        .unwrap();
    let (purchase, _) = m.pay_from_account(ready);
    assert!(product::decrypt(&purchase.key, &ct[..], Vec::new()).is_err());
    let r = complain_as_carol(&mut m, order, SONG, &ct).unwrap();
    assert_eq!(r.verdict, Verdict::Upheld);
    assert!(!r.decrypts);
}

#[test]
fn complaints_that_are_not_about_this_purchase_are_refused() {
    let mut m = Market::new(44);
    let (order, ct, _) = buy(&mut m, SONG);
    // Another customer.
    let mallory_keys = keys(&mut m.rng);
    let mallory = Identity {
        cert: identity(
            &m.ca,
            &mut m.rng,
            "mallory",
            PartyRole::Customer,
            &mallory_keys,
        ),
        keys: mallory_keys,
    };
    assert!(matches!(
        complain(&mut m, &mallory, order, SONG, &ct),
        Err(Error::NotAuthorised(_))
    ));
    // Another description than the one requested.
    assert!(matches!(
        complain_as_carol(&mut m, order, FILM, &ct),
        Err(Error::Refused(r)) if r.contains("description")
    ));
    // Another encrypted product than the one delivered.
    let mut other = ct.clone();
    other[40] ^= 1;
    assert!(matches!(
        complain_as_carol(&mut m, order, SONG, &other),
        Err(Error::Refused(r)) if r.contains("not the one the bill names")
    ));
    // A payment that never happened.
    let unpaid = PaymentOrderId {
        vendor: m.vendor.id(),
        nid: agora_speed::Nid([7; 16]),
    };
    assert!(matches!(
        complain_as_carol(&mut m, unpaid, SONG, &ct),
        Err(Error::Refused(_))
    ));
}
