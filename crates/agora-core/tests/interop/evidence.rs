//! Shared by the evidence interop tests of the protocol crates (included
//! with `#[path]`): runs `cose_check.py` (pycose) on signed evidence, and
//! checks one piece of evidence in pycose and in agora, as made and
//! tampered with.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support may panic

use agora_core::crypto::VerifyingKey;
use agora_core::wire::{self, cose, Message};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agora-core/tests/interop/cose_check.py")
}

/// Whether pycose is usable; panics with a clear message if not, unless
/// skipping is asked for.
pub fn pycose_available() -> bool {
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
pub fn pycose(mode: &str, args: &[&Path]) -> bool {
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
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
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

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// One piece of signed evidence: checks it in pycose and in agora, as made
/// and tampered with. Bill and Receipt hold secrets (RecKey, K) and have no
/// `PartialEq`, so messages are compared by their canonical encoding.
pub fn check_evidence<M: Message>(
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
