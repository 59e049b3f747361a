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

use agora_core::crypto::{sha256, VerifyingKey};
use agora_core::wire::{self, cose, Message};
use agora_speed::customer::{self, Purchase};
use agora_speed::msg::{Bill, Receipt};
use agora_speed::strategy::AcceptFirst;
use agora_speed::vendor::Sale;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agora-core/tests/interop/cose_check.py")
}

/// Whether pycose is usable; panics with a clear message if not, unless
/// skipping is asked for.
fn pycose_available() -> bool {
    let skip = std::env::var("AGORA_SKIP_PYCOSE").is_ok_and(|v| v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import pycose"])
        .output();
    let problem = match probe {
        Err(e) => format!("cannot run python3: {e}"),
        Ok(o) if !o.status.success() => format!(
            "python3 cannot import pycose ({}); install it with `pip install pycose`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => return true,
    };
    if skip {
        eprintln!("SKIPPED pycose evidence interop (AGORA_SKIP_PYCOSE=1): {problem}");
        false
    } else {
        panic!("{problem}. Set AGORA_SKIP_PYCOSE=1 to skip this interop test.");
    }
}

/// Runs the script; returns whether it accepted (exit 0) or rejected (1).
fn pycose(mode: &str, args: &[&Path]) -> bool {
    let script = script();
    assert!(script.is_file(), "missing {}", script.display());
    let out = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .args(args)
        .output()
        .expect("run python3");
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "cose_check.py {mode} failed ({code:?}): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "cose_check.py {mode} {}: {}",
        args.first()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    code == Some(0)
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("agora-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// One piece of signed evidence: checks it in pycose and in agora, as made
/// and tampered with. Bill and Receipt hold secrets (RecKey, K) and have no
/// `PartialEq`, so messages are compared by their canonical encoding.
fn check_evidence<M: Message>(
    dir: &Path,
    name: &str,
    signed: &[u8],
    expected: &M,
    signer: &VerifyingKey,
    other: &VerifyingKey,
) {
    let key = write(
        dir,
        &format!("{name}.pub.hex"),
        hex::encode(signer.to_bytes()).as_bytes(),
    );
    let wrong_key = write(
        dir,
        &format!("{name}.other.pub.hex"),
        hex::encode(other.to_bytes()).as_bytes(),
    );
    let f = write(dir, &format!("{name}.sign1"), signed);
    let expected = wire::encode(expected);

    // agora: it verifies as its message type, and is that message.
    assert_eq!(
        wire::encode(&cose::verify::<M>(signed, signer).unwrap()),
        expected,
        "agora read another {name}"
    );
    assert_eq!(cose::peek_kid(signed).unwrap(), signer.key_id());

    // pycose: it verifies with the signer's raw key, and pycose reads the
    // very payload agora signed.
    let payload = dir.join(format!("{name}.payload"));
    assert!(
        pycose("verify-sign1-payload", &[&f, &key, &payload]),
        "pycose rejected {name}"
    );
    assert_eq!(
        std::fs::read(&payload).unwrap(),
        expected,
        "pycose read another payload of {name}"
    );
    assert!(
        pycose("verify-sign1", &[&f, &key]),
        "pycose rejected {name}"
    );
    // Under another party's key: refused by both.
    assert!(
        !pycose("verify-sign1", &[&f, &wrong_key]),
        "pycose accepted {name} under another key"
    );
    assert!(cose::verify::<M>(signed, other).is_err());

    // Tampered: one bit of the payload, or of the signature. The signature
    // is the last 64 bytes (after its 2-byte head), so byte n - 70 is the
    // payload's.
    let n = signed.len();
    assert!(expected.len() > 4, "{name}: payload too short to tamper");
    for (what, at) in [("payload", n - 70), ("signature", n - 1)] {
        let mut bad = signed.to_vec();
        bad[at] ^= 1;
        let f = write(dir, &format!("{name}-bad-{what}.sign1"), &bad);
        assert!(
            !pycose("verify-sign1", &[&f, &key]),
            "pycose accepted {name} with a tampered {what}"
        );
        assert!(
            cose::verify::<M>(&bad, signer).is_err(),
            "agora accepted {name} with a tampered {what}"
        );
    }
}

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
    assert_eq!(bill.rec_key, sale.rec_key);
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
