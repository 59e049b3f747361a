#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! SPEED's signed evidence verifies with an independent COSE implementation,
//! pycose (ARCHITECTURE section 3): a normal-mode purchase runs in one
//! process, paid from Carol's account or by her e-purse card, then
//!
//! - the Bill (message 4, signed by the vendor),
//! - the PurchaseReceipt (message 6, signed by the broker),
//!
//! are each checked by pycose against the signer's raw Ed25519 public key
//! (and pycose must read exactly the payload agora signed), and by agora's
//! own `cose::verify` for the message type; a tampered copy (payload or
//! signature), or the right bytes under another party's key, is refused by
//! both. The vendor's signed Handshake evidence stays at the vendor (the
//! customer never holds it), so it is not checked here. Uses agora-core's
//! `tests/interop/cose_check.py`; needs `python3` with `pycose` (`pip
//! install pycose`): without them the test fails, unless
//! `AGORA_SKIP_PYCOSE=1` is set.

mod common;

use agora_core::crypto::sha256;
use agora_core::wire::{self, cose};
use agora_speed::customer::{self, Purchase};
use agora_speed::msg::{Bill, Receipt};
use agora_speed::strategy::AcceptFirst;
use agora_speed::vendor::Sale;
use common::*;
#[path = "../../agora-core/tests/interop/evidence.rs"]
mod evidence;
use evidence::*;

/// What one purchase leaves: the customer's Purchase, the vendor's Sale,
/// the encrypted product, and the bill as Carol held it before paying.
struct Done {
    purchase: Purchase,
    sale: Sale,
    ct: Vec<u8>,
    bill_before_paying: Vec<u8>,
}

/// The Bill and the PurchaseReceipt of `done`, each read by agora, tied to
/// what the parties know independently, then checked in pycose.
fn check_purchase(m: &Market, done: &Done, dir: &str) {
    let Done {
        purchase,
        sale,
        ct,
        bill_before_paying,
    } = done;
    let vendor = m.vendor_peer().sign;
    let broker = m.broker_peer.sign;
    assert_eq!(m.broker.verifying_key(), broker);

    // The bill: Carol's copy is the vendor's, and says what was sold.
    assert_eq!(purchase.bill, *bill_before_paying);
    assert_eq!(purchase.bill, sale.signed_bill);
    let bill: Bill = wire::decode(&cose::verify_raw(&purchase.bill, &vendor).unwrap()).unwrap();
    assert_eq!(bill.order, sale.order);
    assert_eq!(bill.order, purchase.order);
    assert_eq!(bill.order.vendor, vendor.key_id());
    assert_eq!(bill.price, sale.price);
    assert_eq!(bill.price, purchase.price);
    assert_eq!(bill.rec_key, m.vendor.rec_key(&sale.order).unwrap());
    assert_eq!(bill.product_hash, encrypted_of(ct).hash);
    assert_eq!(bill.product_id_hash, sha256(SONG.as_bytes()));

    // The receipt: Carol's and the vendor's are the same signed bytes, and
    // name the payment, the price and the K that decrypts the product.
    let receipt = customer::verify_receipt(&purchase.receipt, &broker).unwrap();
    assert_eq!(receipt.order, purchase.order);
    assert_eq!(receipt.price, purchase.price);
    assert_eq!(receipt.key, purchase.key);
    assert_eq!(decrypt(purchase, ct), m.product(SONG));

    let dir = TempDir::new(dir);
    let d = &dir.0;
    check_evidence::<Bill>(d, "bill", &purchase.bill, &bill, &vendor, &broker);
    check_evidence::<Receipt>(d, "receipt", &purchase.receipt, &receipt, &broker, &vendor);
}

#[test]
fn account_paid_purchase_evidence_verifies_in_pycose() {
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(60);
    let (ready, ct, sale) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let bill_before_paying = ready.signed_bill().to_vec();
    let (purchase, sealed) = m.pay_from_account(ready);
    let (_, vendor_copy) = m.vendor.open_receipt(&sealed, &sale).unwrap();
    assert_eq!(
        vendor_copy, purchase.receipt,
        "the vendor keeps what Carol keeps"
    );
    let done = Done {
        purchase,
        sale,
        ct,
        bill_before_paying,
    };
    check_purchase(&m, &done, "speed-evidence-account");
}

#[test]
fn card_paid_purchase_evidence_verifies_in_pycose() {
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(61);
    let (ready, ct, sale) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let bill_before_paying = ready.signed_bill().to_vec();
    let card_before = m.card.balance().cents;
    let (purchase, sealed) = m.pay_by_card(ready);
    assert_eq!(m.card.balance().cents, card_before - 1000, "paid by card");
    let (_, vendor_copy) = m.vendor.open_receipt(&sealed, &sale).unwrap();
    assert_eq!(
        vendor_copy, purchase.receipt,
        "the vendor keeps what Carol keeps"
    );
    let done = Done {
        purchase,
        sale,
        ct,
        bill_before_paying,
    };
    check_purchase(&m, &done, "speed-evidence-card");
}

/// The broker's signed ruling on a complaint (section 5.7) verifies in
/// pycose under the broker's key, and is refused under the vendor's or
/// tampered with.
#[test]
fn complaint_ruling_verifies_in_pycose() {
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(62);
    let (ready, ct, _) = m.negotiate_to_pay(SONG, &AcceptFirst);
    let order = ready.order();
    let _ = m.pay_from_account(ready);
    let broker = m.broker_peer;
    let carol = m.carol_identity();
    let c =
        agora_speed::customer::complaint(&mut m.rng, &carol, &broker, order, SONG, ct.len() as u64)
            .unwrap();
    let case = m.broker.open_complaint(m.now, &c, &m.ledger).unwrap();
    let found = case.examine(&ct[..]).unwrap();
    let ruling = case.rule(&found, m.now).unwrap();
    let signed = m.broker.sign_ruling(&ruling);
    let dir = std::env::temp_dir().join(format!("speed-evidence-ruling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    check_evidence(
        &dir,
        "ruling",
        &signed,
        &ruling,
        &m.broker.verifying_key(),
        &m.vendor.keys.sign.verifying_key(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
