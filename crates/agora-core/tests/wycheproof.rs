#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Project Wycheproof vectors run through agora-core's own crypto API (not
//! the underlying crates), so that our wrappers' policies are tested too:
//! strict Ed25519, X25519 refusing all-zero shared secrets, the AEADs'
//! fixed 256-bit keys, 96-bit nonces and 128-bit tags, HKDF's output limit
//! and full-length HMAC tags.
//!
//! Every "valid" case must be accepted with the right output and every
//! "invalid" case rejected. "acceptable" cases are counted and printed, and
//! must follow the policy documented next to each test below.
//!
//! The vectors are looked for in `$AGORA_VECTORS_DIR/wycheproof` (or in
//! `$AGORA_VECTORS_DIR` itself if it holds the JSON files), else in
//! `<workspace>/../shared/vectors/wycheproof`. If they are absent every test
//! here fails, saying where it looked: a run without the vectors proves
//! nothing, so it must not pass (CI runs with `../shared` beside the clone).

use agora_core::crypto::{
    hkdf_sha256, hmac_sha256, hmac_sha256_verify, AeadAlg, AeadKey, MacKey, Secret, Signature,
    VerifyingKey, X25519Public, X25519Secret,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AGORA_VECTORS_DIR") {
        let d = PathBuf::from(d);
        let sub = d.join("wycheproof");
        return if sub.is_dir() { sub } else { d };
    }
    // CARGO_MANIFEST_DIR is <workspace>/crates/agora-core.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/wycheproof")
}

/// The parsed file. Panics, saying where it looked, if the vectors are
/// absent: a Wycheproof test that checked nothing must not pass.
fn load(file: &str) -> Value {
    let dir = vectors_dir();
    assert!(
        dir.is_dir(),
        "wycheproof vectors not found at {} (set AGORA_VECTORS_DIR, or clone with ../shared \
         beside the workspace): {file} cannot be checked",
        dir.display()
    );
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    // The file's own count must match what we iterate over.
    let n: u64 = groups(&v).iter().map(|g| tests(g).len() as u64).sum();
    assert_eq!(
        Some(n),
        v["numberOfTests"].as_u64(),
        "{file}: numberOfTests"
    );
    v
}

fn groups(v: &Value) -> &Vec<Value> {
    v["testGroups"].as_array().expect("testGroups")
}

fn tests(g: &Value) -> &Vec<Value> {
    g["tests"].as_array().expect("tests")
}

fn hex_field(t: &Value, field: &str) -> Vec<u8> {
    hex::decode(t[field].as_str().unwrap_or_else(|| panic!("field {field}")))
        .unwrap_or_else(|e| panic!("field {field}: {e}"))
}

fn uint(g: &Value, field: &str) -> u64 {
    g[field].as_u64().unwrap_or_else(|| panic!("field {field}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Valid,
    Invalid,
    Acceptable,
}

fn expected(t: &Value) -> Expected {
    match t["result"].as_str() {
        Some("valid") => Expected::Valid,
        Some("invalid") => Expected::Invalid,
        Some("acceptable") => Expected::Acceptable,
        other => panic!("tcId {}: unknown result {other:?}", t["tcId"]),
    }
}

fn id(t: &Value) -> u64 {
    uint(t, "tcId")
}

fn flags(t: &Value) -> String {
    t["flags"]
        .as_array()
        .map(|f| {
            let mut f: Vec<&str> = f.iter().filter_map(Value::as_str).collect();
            f.sort_unstable();
            f.join(",")
        })
        .unwrap_or_default()
}

/// Counts of one file's run.
#[derive(Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
    skipped: u64,
    /// "acceptable" cases by (flags, our decision).
    acceptable: BTreeMap<(String, &'static str), u64>,
}

impl Tally {
    /// Records our decision on `t` and checks it against the expected
    /// result. `policy` is what our documented policy says about an
    /// "acceptable" case (`true`: accept); `ok` is whether we accepted (with
    /// the right output, for valid cases).
    fn record(&mut self, file: &str, t: &Value, ok: bool, policy: bool) {
        if ok {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        match expected(t) {
            Expected::Valid => assert!(
                ok,
                "{file} tcId {} valid but rejected ({})",
                id(t),
                flags(t)
            ),
            Expected::Invalid => {
                assert!(
                    !ok,
                    "{file} tcId {} invalid but accepted ({})",
                    id(t),
                    flags(t)
                )
            }
            Expected::Acceptable => {
                let decision = if ok { "accepted" } else { "rejected" };
                *self.acceptable.entry((flags(t), decision)).or_default() += 1;
                assert_eq!(
                    ok,
                    policy,
                    "{file} tcId {}: acceptable case against policy",
                    id(t)
                );
            }
        }
    }

    fn print(&self, file: &str, skipped_why: &str) {
        let total = self.accepted + self.rejected + self.skipped;
        print!(
            "wycheproof {file}: {total} tests: {} accepted, {} rejected, {} skipped",
            self.accepted, self.rejected, self.skipped
        );
        if self.skipped > 0 {
            print!(" ({skipped_why})");
        }
        println!();
        if !self.acceptable.is_empty() {
            let total = |d: &str| -> u64 {
                self.acceptable
                    .iter()
                    .filter(|((_, x), _)| *x == d)
                    .map(|(_, n)| n)
                    .sum()
            };
            println!(
                "  acceptable cases: {} accepted, {} rejected, by flags:",
                total("accepted"),
                total("rejected")
            );
        }
        for ((flags, decision), n) in &self.acceptable {
            println!("  acceptable [{flags}]: {n} {decision}");
        }
    }
}

/// Ed25519 (RFC 8032) with strict verification: all "valid" signatures
/// verify; every "invalid" one (malleable `s`, non-canonical encodings,
/// wrong lengths) is refused. A public key that [`VerifyingKey::from_bytes`]
/// refuses (not a point, or small order) counts as a rejection.
#[test]
fn ed25519() {
    let file = "ed25519_test.json";
    let v = load(file);
    let mut tally = Tally::default();
    for g in groups(&v) {
        let pk = hex_field(&g["publicKey"], "pk");
        let vk = <[u8; 32]>::try_from(pk.as_slice())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok());
        for t in tests(g) {
            let msg = hex_field(t, "msg");
            let sig = hex_field(t, "sig");
            let ok = match (&vk, Signature::from_slice(&sig)) {
                (Some(vk), Ok(sig)) => vk.verify(&msg, &sig).is_ok(),
                _ => false,
            };
            // No "acceptable" cases are expected; strictness says reject.
            tally.record(file, t, ok, false);
        }
    }
    tally.print(file, "");
}

/// X25519 (RFC 7748). Policy: the function is computed as RFC 7748 says
/// (the top bit of the peer's u-coordinate is masked, non-canonical and
/// twist coordinates are used as given), and the all-zero shared secret of a
/// low-order point is refused (section 6.1). So an "acceptable" case is
/// accepted exactly when its shared secret is not all zeros.
#[test]
fn x25519() {
    let file = "x25519_test.json";
    let v = load(file);
    let mut tally = Tally::default();
    for g in groups(&v) {
        assert_eq!(g["curve"].as_str(), Some("curve25519"));
        for t in tests(g) {
            let private = hex_field(t, "private");
            let public = hex_field(t, "public");
            let shared = hex_field(t, "shared");
            let out = match (
                <[u8; 32]>::try_from(private.as_slice()),
                X25519Public::from_slice(&public),
            ) {
                (Ok(sk), Ok(pk)) => X25519Secret::from_bytes(sk).diffie_hellman(&pk).ok(),
                _ => None,
            };
            let ok = out
                .as_ref()
                .is_some_and(|s| s.as_slice() == shared.as_slice());
            if let (Some(s), Expected::Invalid) = (&out, expected(t)) {
                // An invalid case whose output we would have accepted.
                assert_ne!(s.as_slice(), shared.as_slice(), "tcId {}", id(t));
            }
            if out.is_some() && !ok {
                panic!("{file} tcId {}: wrong shared secret", id(t));
            }
            let policy = shared.iter().any(|&b| b != 0);
            if expected(t) == Expected::Valid {
                assert!(
                    policy,
                    "tcId {}: a valid case with an all-zero secret",
                    id(t)
                );
            }
            tally.record(file, t, ok, policy);
        }
    }
    tally.print(file, "");
}

/// Runs the AEAD groups of `file` with `keySize`/`ivSize`/`tagSize` that
/// agora's [`AeadKey`] offers (256/96/128) and skips the others. Valid cases
/// must seal to `ct || tag` and open back to `msg`; invalid ones must not
/// open.
fn aead(file: &str, alg: AeadAlg) {
    let v = load(file);
    let mut tally = Tally::default();
    let mut skipped_groups = 0;
    for g in groups(&v) {
        if (uint(g, "keySize"), uint(g, "ivSize"), uint(g, "tagSize")) != (256, 96, 128) {
            skipped_groups += 1;
            tally.skipped += tests(g).len() as u64;
            continue;
        }
        for t in tests(g) {
            let key = Secret::new(<[u8; 32]>::try_from(hex_field(t, "key").as_slice()).unwrap());
            let nonce = <[u8; 12]>::try_from(hex_field(t, "iv").as_slice()).unwrap();
            let (aad, msg) = (hex_field(t, "aad"), hex_field(t, "msg"));
            let ct_tag = [hex_field(t, "ct"), hex_field(t, "tag")].concat();
            let k = AeadKey::new(alg, &key);
            let opened = k.open(&nonce, &aad, &ct_tag);
            let ok = match expected(t) {
                Expected::Valid => {
                    assert_eq!(
                        k.seal(&nonce, &aad, &msg),
                        ct_tag,
                        "{file} tcId {}: seal",
                        id(t)
                    );
                    opened.as_deref() == Ok(msg.as_slice())
                }
                _ => opened.is_ok(),
            };
            // No "acceptable" AEAD cases are expected: reject them.
            tally.record(file, t, ok, false);
        }
    }
    tally.print(
        file,
        &format!("{skipped_groups} groups with parameters our API does not offer"),
    );
}

/// ChaCha20-Poly1305 (RFC 8439): the nonce is 96 bits in agora's API, so
/// the groups with other nonce sizes are skipped.
#[test]
fn chacha20_poly1305() {
    aead("chacha20_poly1305_test.json", AeadAlg::ChaCha20Poly1305);
}

/// AES-GCM: only AES-256 with 96-bit IVs and 128-bit tags goes through
/// agora's API; 128/192-bit keys and other IV sizes are skipped.
#[test]
fn aes_gcm() {
    aead("aes_gcm_test.json", AeadAlg::Aes256Gcm);
}

/// HKDF-SHA256 (RFC 5869): valid cases give `okm`; the invalid ones ask for
/// more than 255 * 32 bytes and must be refused.
#[test]
fn hkdf() {
    let file = "hkdf_sha256_test.json";
    let v = load(file);
    let mut tally = Tally::default();
    for g in groups(&v) {
        for t in tests(g) {
            let (ikm, salt, info) = (
                hex_field(t, "ikm"),
                hex_field(t, "salt"),
                hex_field(t, "info"),
            );
            let size = usize::try_from(uint(t, "size")).unwrap();
            let mut out = vec![0u8; size];
            let ok = match hkdf_sha256(&salt, &ikm, &info, &mut out) {
                Ok(()) => {
                    if expected(t) == Expected::Valid {
                        assert_eq!(out, hex_field(t, "okm"), "{file} tcId {}", id(t));
                    }
                    true
                }
                Err(_) => false,
            };
            tally.record(file, t, ok, false);
        }
    }
    tally.print(file, "");
}

/// HMAC-SHA-256 (RFC 2104): agora only sends and accepts full 32-byte tags,
/// so the groups of truncated tags are skipped (and counted).
#[test]
fn hmac_sha256_full_tags() {
    let file = "hmac_sha256_test.json";
    let v = load(file);
    let mut tally = Tally::default();
    let mut skipped_groups = 0;
    for g in groups(&v) {
        if uint(g, "tagSize") != 256 {
            skipped_groups += 1;
            tally.skipped += tests(g).len() as u64;
            continue;
        }
        for t in tests(g) {
            let (key, msg, tag) = (
                hex_field(t, "key"),
                hex_field(t, "msg"),
                hex_field(t, "tag"),
            );
            let ok = hmac_sha256_verify(&key, &msg, &tag).is_ok();
            assert_eq!(ok, hmac_sha256(&key, &msg).as_slice() == tag.as_slice());
            if let Ok(k) = <[u8; 32]>::try_from(key.as_slice()) {
                assert_eq!(
                    MacKey::new(k).verify(&msg, &tag).is_ok(),
                    ok,
                    "tcId {}",
                    id(t)
                );
            }
            tally.record(file, t, ok, false);
        }
    }
    tally.print(
        file,
        &format!("{skipped_groups} groups of truncated tags, which agora refuses"),
    );
}
