#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The CPO protocols' signed evidence verifies with an independent COSE
//! implementation, pycose (ARCHITECTURE section 3): protocols 1 to 4 run in
//! one process, then
//!
//! - the ARBITER_ACCEPTANCE (protocol 1, signed by Alice),
//! - the posted CPO (protocol 2, signed by the server),
//! - BOUND_CPO (protocol 4, signed by the server),
//!
//! are each checked by pycose against the signer's raw Ed25519 public key
//! (and pycose must read exactly the payload agora signed), and by agora's
//! own `cose::verify` for the message type; a tampered copy (payload or
//! signature), or the right bytes under another party's key, is refused by
//! both. Uses agora-core's `tests/interop/cose_check.py`; needs `python3`
//! with `pycose` (`pip install pycose`): without them the test fails,
//! unless `AGORA_SKIP_PYCOSE=1` is set.

mod common;

use agora_core::crypto::VerifyingKey;
use agora_core::wire::{self, cose, Message};
use agora_cpo::msg::{ArbiterAcceptance, BoundCpo, PostedCpo};
use agora_cpo::FirstCome;
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
/// and tampered with.
fn check_evidence<M: Message + PartialEq + std::fmt::Debug>(
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

    // agora: it verifies as its message type, and is that message.
    assert_eq!(&cose::verify::<M>(signed, signer).unwrap(), expected);
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
        wire::encode(expected),
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

    // Tampered: one bit of the payload, or of the signature.
    let n = signed.len();
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

#[test]
fn cpo_evidence_verifies_in_pycose() {
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(40);

    // Protocol 1: ARBITER_ACCEPTANCE; protocol 2: the posted CPO.
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "arbiter-fee: 2.50 EUR");
    let (receipt, posted, _) = m.post(&acceptance);
    assert_eq!(posted.entry.acceptance, acceptance.signed);
    assert_eq!(
        posted.entry.posted, receipt.signed,
        "Bob keeps what the board keeps"
    );

    // Protocol 3: Pam's browse session.
    let (pam, pam_bond) = m.seller_keys();
    let session = m.day_session(&pam, &pam_bond);

    // Protocol 4: she binds the CPO; BOUND_CPO.
    let listing = m
        .server
        .listing(&mut m.rng, NOW, &session.id(), &ccpo.id)
        .unwrap();
    let listing = session.open_listing(&listing).unwrap();
    let (offer, expect) = session
        .offer(&mut m.rng, &listing, "ship to the intermediary ✓")
        .unwrap();
    let bound = m.server.handle_bind_offer(&mut m.rng, NOW, &offer).unwrap();
    let bound_receipt = expect.handle(&session, &bound.reply).unwrap();
    assert_eq!(bound_receipt.signed, bound.signed);
    assert_eq!(bound.message.seller_bond, pam_bond);

    let dir = TempDir::new("evidence-interop");
    let d = &dir.0;
    let x3: ArbiterAcceptance<FirstCome> =
        wire::decode(&cose::verify_raw(&acceptance.signed, &m.alice_peer.sign).unwrap()).unwrap();
    assert_eq!(x3.ccpo, ccpo);
    check_evidence(
        d,
        "arbiter_acceptance",
        &acceptance.signed,
        &x3,
        &m.alice_peer.sign,
        &m.server_peer.sign,
    );
    check_evidence::<PostedCpo>(
        d,
        "posted_cpo",
        &posted.entry.posted,
        &receipt.cpo,
        &m.server_peer.sign,
        &m.alice_peer.sign,
    );
    check_evidence::<BoundCpo>(
        d,
        "bound_cpo",
        &bound_receipt.signed,
        &bound.message,
        &m.server_peer.sign,
        &pam.sign.verifying_key(),
    );
}

#[test]
fn bidding_evidence_verifies_in_pycose() {
    use agora_cpo::bidding::{Award, BidReceipt, MemoryBids, Notice};
    if !pycose_available() {
        return;
    }
    let mut m = Market::new(41);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<agora_cpo::Bidding>(ccpo.clone(), "");
    m.post(&acceptance);
    let bids = MemoryBids::new();
    let (pam, pam_bond) = m.seller_keys();
    let session = m.day_session(&pam, &pam_bond);
    let l = m
        .server
        .bid_listing(&mut m.rng, NOW, &session.id(), &ccpo.id)
        .unwrap();
    let l = session.open_bid_listing(&l).unwrap();
    let (b1, exp) = session
        .bid(&mut m.rng, &l, eur(9_000), "in a week")
        .unwrap();
    let taken = m.server.handle_bid(&bids, &mut m.rng, NOW, &b1).unwrap();
    let held = exp.handle(&session, &taken.reply).unwrap();
    let closed = ccpo.end;
    let (req, pa) = m
        .server
        .request_award(&bids, &mut m.rng, closed, &ccpo.id, &m.alice_peer)
        .unwrap();
    let (reply, _) = m
        .alice
        .handle_award_request(&mut m.rng, closed, &req, &m.server_peer)
        .unwrap();
    let awarded = pa.handle_award(&m.server, &bids, closed, &reply).unwrap();
    let award: Award = cose::verify(&awarded.award, &m.alice_peer.sign).unwrap();
    let (_, _, notice_bytes) = &awarded.notices[0];
    let notice: Notice = cose::verify(notice_bytes, &m.server_peer.sign).unwrap();

    let dir = TempDir::new("bidding-evidence-interop");
    let d = &dir.0;
    check_evidence::<BidReceipt>(
        d,
        "bid_receipt",
        &held.signed,
        &held.message,
        &m.server_peer.sign,
        &m.alice_peer.sign,
    );
    check_evidence::<Award>(
        d,
        "award",
        &awarded.award,
        &award,
        &m.alice_peer.sign,
        &m.server_peer.sign,
    );
    check_evidence::<Notice>(
        d,
        "notice",
        notice_bytes,
        &notice,
        &m.server_peer.sign,
        &m.alice_peer.sign,
    );
}
