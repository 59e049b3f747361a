#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Keystore files: round trip, wrong passphrase, tampering.

mod common;

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_pki::{KeyKind, Keystore, KeystoreError, ARGON2_PARAMS_FOR_TESTING_ONLY};
use common::rng;

fn sample() -> (Keystore, SigningKey, X25519Secret) {
    let mut r = rng(1);
    let sk = SigningKey::generate(&mut r);
    let xk = X25519Secret::generate(&mut r);
    let mut ks = Keystore::new();
    ks.insert_ed25519("signing", SigningKey::from_seed(&sk.to_seed()))
        .unwrap();
    ks.insert_x25519("encryption", X25519Secret::from_bytes(*xk.to_bytes()))
        .unwrap();
    (ks, sk, xk)
}

#[test]
fn keystore_round_trip_through_a_file() {
    let (ks, sk, xk) = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buyer.keystore");
    ks.save(
        &path,
        b"correct horse",
        ARGON2_PARAMS_FOR_TESTING_ONLY,
        &mut rng(2),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("format = \"agora-keystore\""));
    assert!(!text.contains(&hex::encode(*sk.to_seed())), "seed in clear");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let back = Keystore::load(&path, b"correct horse").unwrap();
    assert_eq!(
        back.list(),
        vec![
            ("encryption", KeyKind::X25519),
            ("signing", KeyKind::Ed25519)
        ]
    );
    assert_eq!(back.ed25519("signing").unwrap().key_id(), sk.key_id());
    assert_eq!(back.x25519("encryption").unwrap().public(), xk.public());
    assert!(back.ed25519("encryption").is_none());
    // Debug prints no secret.
    let dbg = format!("{back:?}");
    assert!(!dbg.contains(&hex::encode(*sk.to_seed())));
}

#[test]
fn keystore_empty_round_trip() {
    let text = Keystore::new()
        .seal(b"pw", ARGON2_PARAMS_FOR_TESTING_ONLY, &mut rng(3))
        .unwrap();
    assert!(Keystore::open(&text, b"pw").unwrap().list().is_empty());
}

#[test]
fn keystore_wrong_passphrase() {
    let (ks, _, _) = sample();
    let text = ks
        .seal(
            b"correct horse",
            ARGON2_PARAMS_FOR_TESTING_ONLY,
            &mut rng(4),
        )
        .unwrap();
    let err = Keystore::open(&text, b"battery staple").unwrap_err();
    assert!(matches!(err, KeystoreError::WrongPassphraseOrCorrupted));
    assert_eq!(err.to_string(), "wrong passphrase or corrupted keystore");
    let core: agora_core::Error = err.into();
    assert_eq!(core, agora_core::Error::Crypto);
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap();
    line.split('"')
        .nth(1)
        .unwrap_or_else(|| line.split(" = ").nth(1).unwrap())
}

#[test]
fn keystore_tampered_ciphertext() {
    let (ks, _, _) = sample();
    let text = ks
        .seal(b"pw", ARGON2_PARAMS_FOR_TESTING_ONLY, &mut rng(5))
        .unwrap();
    let ct = field(&text, "ciphertext").to_owned();
    let mut bytes = hex::decode(&ct).unwrap();
    bytes[10] ^= 0x01;
    let tampered = text.replace(&ct, &hex::encode(bytes));
    let err = Keystore::open(&tampered, b"pw").unwrap_err();
    assert!(matches!(err, KeystoreError::WrongPassphraseOrCorrupted));
}

#[test]
fn keystore_tampered_header() {
    let (ks, _, _) = sample();
    let text = ks
        .seal(b"pw", ARGON2_PARAMS_FOR_TESTING_ONLY, &mut rng(6))
        .unwrap();
    // Another salt or cheaper parameters: the key (and the AAD) change.
    let salt = field(&text, "salt").to_owned();
    let tampered = text.replace(&salt, &"00".repeat(16));
    assert!(matches!(
        Keystore::open(&tampered, b"pw").unwrap_err(),
        KeystoreError::WrongPassphraseOrCorrupted
    ));
    let tampered = text.replace("argon2_memory_kib = 256", "argon2_memory_kib = 512");
    assert_ne!(tampered, text);
    assert!(matches!(
        Keystore::open(&tampered, b"pw").unwrap_err(),
        KeystoreError::WrongPassphraseOrCorrupted
    ));
}

#[test]
fn keystore_bad_format_is_not_a_crypto_error() {
    for bad in [
        "",
        "format = \"agora-keystore\"",
        "version = 2",
        "\u{0}\u{1}",
    ] {
        assert!(matches!(
            Keystore::open(bad, b"pw").unwrap_err(),
            KeystoreError::Format(_)
        ));
    }
    let (ks, _, _) = sample();
    let text = ks
        .seal(b"pw", ARGON2_PARAMS_FOR_TESTING_ONLY, &mut rng(7))
        .unwrap();
    let v2 = text.replace("version = 1", "version = 2");
    assert!(matches!(
        Keystore::open(&v2, b"pw").unwrap_err(),
        KeystoreError::Format(_)
    ));
    // Parameters over agora-core's limits are refused before any work.
    let huge = text.replace("argon2_memory_kib = 256", "argon2_memory_kib = 4294967295");
    assert!(matches!(
        Keystore::open(&huge, b"pw").unwrap_err(),
        KeystoreError::Core(_)
    ));
}

#[test]
fn keystore_names_are_unique_and_bounded() {
    let mut ks = Keystore::new();
    let mut r = rng(8);
    ks.insert_ed25519("a", SigningKey::generate(&mut r))
        .unwrap();
    assert!(ks
        .insert_x25519("a", X25519Secret::generate(&mut r))
        .is_err());
    assert!(ks.insert_ed25519("", SigningKey::generate(&mut r)).is_err());
    assert!(ks
        .insert_ed25519(&"n".repeat(65), SigningKey::generate(&mut r))
        .is_err());
    assert!(ks.remove("a"));
    assert!(!ks.remove("a"));
}

#[test]
fn symmetric_secrets_round_trip_and_stay_hidden() {
    let (mut ks, _, _) = sample();
    let k_p = agora_core::crypto::Secret::new([0x5c; 32]);
    ks.insert_secret("cpo-session", k_p.clone()).unwrap();
    assert!(
        ks.insert_secret("cpo-session", k_p.clone()).is_err(),
        "names are unique"
    );
    let text = ks
        .seal(b"pw", ARGON2_PARAMS_FOR_TESTING_ONLY, &mut rng(3))
        .unwrap();
    assert!(!text.contains(&hex::encode([0x5c; 32])));
    let back = Keystore::open(&text, b"pw").unwrap();
    assert_eq!(back.secret("cpo-session"), Some(&k_p));
    assert!(back.ed25519("cpo-session").is_none());
    assert!(back.secret("signing").is_none());
    assert!(back.list().contains(&("cpo-session", KeyKind::Secret)));
    assert!(!format!("{back:?}").contains("5c5c5c"));
}
