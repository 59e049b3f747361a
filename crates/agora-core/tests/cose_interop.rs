#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Interop with an independent COSE implementation, pycose (ARCHITECTURE
//! section 3: signed evidence must verify with one):
//!
//! (a) a COSE_Sign1 made by agora verifies in pycose;
//! (b) a COSE_Mac0 made by agora verifies in pycose;
//! (c) a COSE_Sign1 made by pycose verifies in agora;
//!
//! and a tampered one is rejected by both. Needs `python3` with `pycose`
//! (`pip install pycose`); without them the test fails, unless
//! `AGORA_SKIP_PYCOSE=1` is set.

use agora_core::crypto::{MacKey, SigningKey};
use agora_core::wire::{self, cose, Ping};
use agora_core::{Currency, Money, Timestamp};
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/cose_check.py")
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
        eprintln!("SKIPPED pycose interop (AGORA_SKIP_PYCOSE=1): {problem}");
        false
    } else {
        panic!("{problem}. Set AGORA_SKIP_PYCOSE=1 to skip this interop test.");
    }
}

/// Runs the script; returns whether it accepted (exit 0) or rejected (1).
fn pycose(args: &[&Path], mode: &str) -> bool {
    let out = Command::new("python3")
        .arg(script())
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
        "cose_check.py {mode}: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    code == Some(0)
}

fn ping() -> Ping {
    Ping {
        nonce: [9; 32],
        sent_at: Timestamp(1_750_000_000),
        sender: SigningKey::from_seed(&[1; 32]).key_id(),
        amount: Some(Money::new(4200, Currency::new("EUR").unwrap())),
        note: "interop ✓".into(),
        data: (0..=255).collect(),
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn agora_and_pycose_agree() {
    if !pycose_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = SigningKey::from_seed(&[0x42; 32]);
    let pub_hex = write(
        d,
        "pub.hex",
        hex::encode(key.verifying_key().to_bytes()).as_bytes(),
    );
    let seed_hex = write(d, "seed.hex", hex::encode(*key.to_seed()).as_bytes());

    // (a) agora's COSE_Sign1 verifies in pycose; tampered, it does not.
    let signed = cose::sign(&key, &ping());
    let f = write(d, "agora.sign1", &signed);
    assert!(
        pycose(&[&f, &pub_hex], "verify-sign1"),
        "pycose rejected agora's COSE_Sign1"
    );
    let mut bad = signed.clone();
    let n = bad.len();
    bad[n - 70] ^= 1; // inside the payload
    let f = write(d, "agora-bad.sign1", &bad);
    assert!(
        !pycose(&[&f, &pub_hex], "verify-sign1"),
        "pycose accepted a tampered COSE_Sign1"
    );
    assert!(cose::verify::<Ping>(&bad, &key.verifying_key()).is_err());

    // (b) agora's COSE_Mac0 verifies in pycose; tampered, it does not.
    let mk = MacKey::new([0x17; 32]);
    let mac_hex = write(d, "mac.hex", hex::encode(mk.expose()).as_bytes());
    let maced = cose::mac(&mk, &ping());
    let f = write(d, "agora.mac0", &maced);
    assert!(
        pycose(&[&f, &mac_hex], "verify-mac0"),
        "pycose rejected agora's COSE_Mac0"
    );
    let mut bad = maced.clone();
    let n = bad.len();
    bad[n - 40] ^= 0x80;
    let f = write(d, "agora-bad.mac0", &bad);
    assert!(
        !pycose(&[&f, &mac_hex], "verify-mac0"),
        "pycose accepted a tampered COSE_Mac0"
    );
    assert!(cose::verify_mac::<Ping>(&bad, &mk).is_err());

    // (c) pycose's COSE_Sign1 verifies in agora; tampered, in neither.
    let payload = wire::encode(&ping());
    let pf = write(d, "payload.bin", &payload);
    let out = d.join("pycose.sign1");
    assert!(pycose(&[&seed_hex, &pub_hex, &pf, &out], "make-sign1"));
    let theirs = std::fs::read(&out).unwrap();
    assert_eq!(
        cose::verify_raw(&theirs, &key.verifying_key()).unwrap(),
        payload
    );
    assert_eq!(cose::peek_kid(&theirs).unwrap(), key.key_id());
    assert_eq!(
        cose::verify::<Ping>(&theirs, &key.verifying_key()).unwrap(),
        ping()
    );
    // Ed25519 is deterministic and both encodings are canonical: the same bytes.
    assert_eq!(theirs, signed);
    let mut bad = theirs.clone();
    let n = bad.len();
    bad[n - 1] ^= 1; // inside the signature
    assert_eq!(
        cose::verify_raw(&bad, &key.verifying_key()),
        Err(agora_core::Error::Crypto)
    );
    let f = write(d, "pycose-bad.sign1", &bad);
    assert!(!pycose(&[&f, &pub_hex], "verify-sign1"));
}
