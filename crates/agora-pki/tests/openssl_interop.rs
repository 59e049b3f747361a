#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Interoperability with an independent X.509 implementation: the openssl
//! CLI must read agora's certificates, CRLs and public keys, accept a valid
//! bond under `-crl_check`, and refuse a revoked or expired one, exactly as
//! agora does. Fails if openssl is missing, unless AGORA_SKIP_OPENSSL=1.

mod common;

use agora_core::Timestamp;
use agora_pki::{pem, validate_bond, BondRequirement, Refusal, Role};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The openssl binary, or None when the caller opted out.
fn openssl() -> Option<PathBuf> {
    if std::env::var("AGORA_SKIP_OPENSSL").as_deref() == Ok("1") {
        eprintln!("AGORA_SKIP_OPENSSL=1: skipping the openssl interop test");
        return None;
    }
    let candidates = [PathBuf::from("/usr/bin/openssl"), PathBuf::from("openssl")];
    for c in candidates {
        if Command::new(&c)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    panic!(
        "the openssl CLI is required for the interop tests (install openssl, \
         or set AGORA_SKIP_OPENSSL=1 to skip them)"
    );
}

/// Runs openssl; returns (success, stdout + stderr).
fn run(bin: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn req() -> BondRequirement {
    BondRequirement {
        price: Some(eur(100)),
        role: Role::Buyer,
        server: None,
        arbiter: None,
    }
}

#[test]
fn openssl_verify_accepts_valid_and_refuses_revoked_and_expired_bonds() {
    let Some(bin) = openssl() else { return };
    // openssl reads the real clock, so these certificates are issued
    // around it.
    let now = Timestamp::now_from_system_clock();
    let mut w = World::new(42, now);
    let good = w.bond();
    let revoked = w.bond();
    let mut p = w.bond_params();
    p.not_before = now.minus_secs(10 * DAY);
    p.not_after = now.minus_secs(DAY);
    let expired = w.issue(&p);
    let crl = w.crl(&[&revoked]);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("agency.pem"), w.agency.certificate_pem()).unwrap();
    std::fs::write(d.join("crl.pem"), crl.to_pem()).unwrap();
    std::fs::write(d.join("bond.pem"), good.to_pem()).unwrap();
    std::fs::write(d.join("revoked.pem"), revoked.to_pem()).unwrap();
    std::fs::write(d.join("expired.pem"), expired.to_pem()).unwrap();

    let verify = |file: &str| {
        run(
            &bin,
            d,
            &[
                "verify",
                "-CAfile",
                "agency.pem",
                "-CRLfile",
                "crl.pem",
                "-crl_check",
                file,
            ],
        )
    };

    let (ok, out) = verify("bond.pem");
    assert!(ok, "openssl verify refused a valid bond:\n{out}");
    assert!(out.contains("bond.pem: OK"), "{out}");
    let a = w.anchors();
    validate_bond(&good.der, &a, std::slice::from_ref(&crl), now, &req()).unwrap();

    let (ok, out) = verify("revoked.pem");
    assert!(!ok, "openssl accepted a revoked bond:\n{out}");
    assert!(out.contains("revoked"), "{out}");
    let err = validate_bond(&revoked.der, &a, std::slice::from_ref(&crl), now, &req());
    assert_eq!(err.unwrap_err(), Refusal::Revoked);

    let (ok, out) = verify("expired.pem");
    assert!(!ok, "openssl accepted an expired bond:\n{out}");
    assert!(out.contains("expired"), "{out}");
    let err = validate_bond(&expired.der, &a, std::slice::from_ref(&crl), now, &req());
    assert_eq!(err.unwrap_err(), Refusal::Expired);
}

#[test]
fn openssl_parses_certificates_and_crls() {
    let Some(bin) = openssl() else { return };
    let now = Timestamp::now_from_system_clock();
    let mut w = World::new(43, now);
    let bond = w.bond();
    let ident = w.identity("Alice the arbiter", agora_pki::PartyRole::Arbiter);
    let crl = w.crl(&[&bond]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("agency.pem"), w.agency.certificate_pem()).unwrap();
    std::fs::write(d.join("bond.pem"), bond.to_pem()).unwrap();
    std::fs::write(d.join("ident.pem"), ident.to_pem()).unwrap();
    std::fs::write(d.join("crl.pem"), crl.to_pem()).unwrap();

    let (ok, out) = run(&bin, d, &["x509", "-in", "bond.pem", "-noout", "-text"]);
    assert!(ok, "{out}");
    assert!(out.contains("ED25519"), "{out}");
    assert!(out.contains(agora_pki::BOND_EXT_OID), "{out}");
    assert!(
        out.contains(&w.agency.crl_uri("http://127.0.0.1:7070")),
        "{out}"
    );
    assert!(
        out.contains(&format!("CN={}", w.holder.key_id()))
            || out.contains(&format!("CN = {}", w.holder.key_id())),
        "{out}"
    );

    let (ok, out) = run(&bin, d, &["x509", "-in", "agency.pem", "-noout", "-text"]);
    assert!(ok, "{out}");
    assert!(out.contains("CA:TRUE"), "{out}");
    assert!(out.contains("Certificate Sign, CRL Sign"), "{out}");

    let (ok, out) = run(&bin, d, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(ok, "{out}");
    assert!(out.contains("Key Compromise"), "{out}");
    assert!(
        out.contains(&bond.serial.to_string().to_uppercase()),
        "{out}"
    );
    let (ok, out) = run(
        &bin,
        d,
        &["crl", "-in", "crl.pem", "-noout", "-CAfile", "agency.pem"],
    );
    assert!(
        ok && out.contains("verify OK"),
        "openssl refused the CRL signature:\n{out}"
    );

    let (ok, out) = run(
        &bin,
        d,
        &[
            "verify",
            "-CAfile",
            "agency.pem",
            "-CRLfile",
            "crl.pem",
            "-crl_check",
            "ident.pem",
        ],
    );
    assert!(ok && out.contains("ident.pem: OK"), "{out}");
    let (ok, out) = run(&bin, d, &["x509", "-in", "ident.pem", "-noout", "-text"]);
    assert!(ok && out.contains(agora_pki::IDENTITY_EXT_OID), "{out}");
}

fn colon_hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn openssl_reads_exported_public_keys() {
    let Some(bin) = openssl() else { return };
    let w = World::new(44, Timestamp(1_800_000_000));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ed = pem::ed25519_public_pem(&w.holder.verifying_key());
    let x = pem::x25519_public_pem(&w.holder_x.public());
    std::fs::write(d.join("ed.pem"), &ed).unwrap();
    std::fs::write(d.join("x.pem"), &x).unwrap();

    let (ok, out) = run(
        &bin,
        d,
        &["pkey", "-pubin", "-in", "ed.pem", "-noout", "-text"],
    );
    assert!(ok && out.contains("ED25519 Public-Key"), "{out}");
    let flat: String = out.split_whitespace().collect();
    assert!(
        flat.contains(&colon_hex(&w.holder.verifying_key().to_bytes())),
        "{out}"
    );

    let (ok, out) = run(
        &bin,
        d,
        &["pkey", "-pubin", "-in", "x.pem", "-noout", "-text"],
    );
    assert!(ok && out.contains("X25519 Public-Key"), "{out}");
    let flat: String = out.split_whitespace().collect();
    assert!(flat.contains(&colon_hex(&w.holder_x.public().0)), "{out}");

    // And back.
    assert_eq!(
        pem::ed25519_from_public_pem(&ed).unwrap(),
        w.holder.verifying_key()
    );
    assert_eq!(
        pem::x25519_from_public_pem(&x).unwrap(),
        w.holder_x.public()
    );
}
