#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The trust store file: round trip, lookups, consistency checks.

mod common;

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_pki::{
    parse_certificate, validate_bond, BondRequirement, Party, PartyRole, Role, TrustStore,
};
use common::*;

const NOW: Timestamp = Timestamp(1_800_000_000);

fn store(w: &mut World) -> (TrustStore, SigningKey) {
    let mut ts = TrustStore::new();
    ts.add_ca(
        "First Bonding Agency",
        PartyRole::Agency,
        w.agency.certificate_der(),
    )
    .unwrap();
    let arbiter = SigningKey::generate(&mut w.rng);
    ts.add(Party {
        name: "Alice".into(),
        role: PartyRole::Arbiter,
        key_id: arbiter.key_id(),
        certificate: None,
        ed25519: Some(arbiter.verifying_key()),
        x25519: Some(X25519Secret::generate(&mut w.rng).public()),
    })
    .unwrap();
    let server = w.identity("The CPO server", PartyRole::Server);
    let cert = parse_certificate(&server.der).unwrap();
    ts.add(Party {
        name: "The CPO server".into(),
        role: PartyRole::Server,
        key_id: cert.key_id(),
        certificate: Some(cert),
        ed25519: None,
        x25519: None,
    })
    .unwrap();
    (ts, arbiter)
}

#[test]
fn trust_store_round_trip_and_lookups() {
    let mut w = World::new(1, NOW);
    let (ts, arbiter) = store(&mut w);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.toml");
    ts.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[[party]]"));
    assert!(text.contains("role = \"agency\""));
    assert!(text.contains("-----BEGIN CERTIFICATE-----"));
    let back = TrustStore::load(&path).unwrap();
    assert_eq!(back.parties().len(), 3);

    let alice = back.by_key_id(&arbiter.key_id()).unwrap();
    assert_eq!(alice.name, "Alice");
    assert_eq!(alice.verifying_key(), Some(arbiter.verifying_key()));
    let agencies: Vec<_> = back.by_role(PartyRole::Agency).collect();
    assert_eq!(agencies.len(), 1);
    assert_eq!(agencies[0].key_id, w.agency.key_id());
    let server = back.by_role(PartyRole::Server).next().unwrap();
    assert!(server.x25519().is_some(), "from its identity certificate");

    // The agencies are the anchors for bonds.
    let bond = w.bond();
    let req = BondRequirement {
        price: Some(eur(1)),
        role: Role::Buyer,
        server: None,
        arbiter: Some(arbiter.key_id()),
    };
    validate_bond(&bond.der, &back.agency_anchors(), &[w.crl(&[])], NOW, &req).unwrap();
    // Arbiters are no anchors.
    assert!(back.anchors(PartyRole::Arbiter).is_empty());
}

#[test]
fn trust_store_refuses_inconsistent_entries() {
    let mut w = World::new(2, NOW);
    let (ts, _) = store(&mut w);
    let text = ts.to_toml_string().unwrap();
    // A key id that does not match the certificate.
    let wrong = text.replacen(&w.agency.key_id().to_string(), &"00".repeat(32), 1);
    assert!(TrustStore::from_toml_str(&wrong).is_err());
    // Unknown fields, unknown roles, unknown versions.
    assert!(TrustStore::from_toml_str(&format!("{text}\nextra = 1\n")).is_err());
    assert!(TrustStore::from_toml_str(&text.replace("\"arbiter\"", "\"wizard\"")).is_err());
    assert!(TrustStore::from_toml_str(&text.replace("version = 1", "version = 9")).is_err());
    // A duplicate key id.
    let mut ts2 = ts.clone();
    assert!(ts2
        .add_ca("again", PartyRole::Agency, w.agency.certificate_der())
        .is_err());
    // An end-entity certificate cannot be pinned as an agency.
    let ident = w.identity("Not a CA", PartyRole::Agency);
    assert!(TrustStore::new()
        .add_ca("Not a CA", PartyRole::Agency, &ident.der)
        .is_err());
}

/// The env var that makes [`umask_child`] write into its directory.
#[cfg(unix)]
const UMASK_DIR_ENV: &str = "AGORA_PKI_UMASK_TEST_DIR";

/// The child of [`trust_store_and_keystore_are_written_0600_under_umask_022`]:
/// this binary run again by a shell under umask 022 (a process's umask is
/// its own: setting it here would change it for the tests running beside),
/// writing a trust store and a keystore into `$UMASK_DIR_ENV`, twice (a
/// new file, then one replaced). Without the variable it returns at once.
#[cfg(unix)]
#[test]
fn umask_child() {
    let Ok(dir) = std::env::var(UMASK_DIR_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut w = World::new(5, NOW);
    let (ts, _) = store(&mut w);
    for _ in 0..2 {
        ts.save(&dir.join("trust.toml")).unwrap();
        agora_pki::Keystore::new()
            .save(
                &dir.join("keystore.toml"),
                b"pass",
                agora_pki::ARGON2_PARAMS_FOR_TESTING_ONLY,
                &mut w.rng,
            )
            .unwrap();
    }
    println!("UMASK CHILD WROTE");
}

#[cfg(unix)]
#[test]
fn trust_store_and_keystore_are_written_0600_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Files of the kind an older version left: 0644.
    for name in ["trust.toml", "trust.toml.tmp"] {
        std::fs::write(dir.path().join(name), b"old").unwrap();
        std::fs::set_permissions(
            dir.path().join(name),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "umask_child", "--nocapture", "--test-threads=1"])
        .env(UMASK_DIR_ENV, dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("UMASK CHILD WROTE"), "the child ran: {text}");
    for name in ["trust.toml", "keystore.toml"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
    assert!(TrustStore::load(&dir.path().join("trust.toml")).is_ok());
}
