#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The `agora` binary as a person or a script uses it: exit codes, one-line
//! errors, `--json`, and evidence verification of COSE files.

use agora_core::crypto::SigningKey;
use agora_core::wire::{self, cose, Ping};
use agora_core::Timestamp;
use std::path::Path;
use std::process::{Command, Output};

fn agora(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .current_dir(dir)
        .env("AGORA_PASSPHRASE", "test passphrase")
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .output()
        .expect("run agora")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = agora(dir, args);
    assert!(
        out.status.success(),
        "agora {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = agora(dir, &a);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "agora {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ping() -> Ping {
    Ping {
        nonce: [7; 32],
        sent_at: Timestamp(1_700_000_000),
        sender: agora_core::KeyId([1; 32]),
        amount: None,
        note: "evidence".into(),
        data: vec![1, 2, 3],
    }
}

#[test]
fn evidence_verify_accepts_a_signature_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = SigningKey::from_seed(&[42; 32]);
    std::fs::write(
        d.join("signer.pem"),
        agora_pki::pem::ed25519_public_pem(&key.verifying_key()),
    )
    .unwrap();
    let signed = cose::sign(&key, &ping());
    std::fs::write(d.join("ev.cose"), &signed).unwrap();

    // Needs no data directory when the key is given.
    let out = ok(d, &["evidence", "verify", "ev.cose", "--key", "signer.pem"]);
    assert!(out.contains("valid signature by"), "{out}");
    assert!(out.contains("TEST_PING"), "names the message: {out}");
    let v = json(d, &["evidence", "verify", "ev.cose", "--key", "signer.pem"]);
    assert_eq!(v["valid"], true);
    assert_eq!(v["signer_key_id"], key.key_id().to_string());
    assert_eq!(v["tag"], serde_json::json!([0, 0, 1]));

    // A flipped bit in the signature: refused, non-zero exit, code "crypto".
    let mut bad = signed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(d.join("bad.cose"), &bad).unwrap();
    let out = agora(
        d,
        &["evidence", "verify", "bad.cose", "--key", "signer.pem"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one readable line: {stderr}");
    assert!(stderr.starts_with("error: bad.cose refused"), "{stderr}");
    let v = json(
        d,
        &["evidence", "verify", "bad.cose", "--key", "signer.pem"],
    );
    assert_eq!(v["error"]["code"], "crypto");

    // Signed by someone else than the key given: not authorised.
    let other = SigningKey::from_seed(&[43; 32]);
    std::fs::write(d.join("other.cose"), cose::sign(&other, &ping())).unwrap();
    let v = json(
        d,
        &["evidence", "verify", "other.cose", "--key", "signer.pem"],
    );
    assert_eq!(v["error"]["code"], "not-authorised");

    // Not COSE at all.
    std::fs::write(d.join("junk.cose"), wire::encode(&ping())).unwrap();
    let v = json(
        d,
        &["evidence", "verify", "junk.cose", "--key", "signer.pem"],
    );
    assert_eq!(v["error"]["code"], "decode");
}

#[test]
fn init_is_idempotent_for_its_owner_and_the_passphrase_guards_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = json(d, &["init"]);
    assert_eq!(first["created"], true);
    let again = json(d, &["init"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["node_key_id"], first["node_key_id"]);

    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["key", "list"])
        .current_dir(d)
        .env("AGORA_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    // No passphrase and no terminal: a clear error, not a hang.
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["key", "list"])
        .current_dir(d)
        .env_remove("AGORA_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGORA_PASSPHRASE"));
}

#[test]
fn commands_refuse_a_missing_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = agora(dir.path(), &["agency", "create", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `agora init`"));
}

#[test]
fn agency_archive_and_register_follow_issue_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["init"]);
    ok(d, &["agency", "create", "acme"]);
    ok(d, &["key", "new", "pam"]);
    ok(d, &["key", "export", "pam", "--out-dir", "pub"]);
    // A holder elsewhere: the agency sees only public keys.
    let issued = json(
        d,
        &[
            "agency",
            "issue-bond",
            "--agency",
            "acme",
            "--holder-ed25519",
            "pub/pam.ed25519.pem",
            "--holder-x25519",
            "pub/pam.x25519.pem",
            "--amount",
            "2000 EUR",
            "--roles",
            "seller,buyer",
            "--days",
            "30",
            "--out",
            "pam.pem",
        ],
    );
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let shown = json(d, &["cert", "show", "pam.pem"]);
    assert_eq!(shown["kind"], "bond");
    assert_eq!(shown["bond"]["amount_cents"], 200_000);
    assert_eq!(
        shown["bond"]["roles"],
        serde_json::json!(["buyer", "seller"])
    );
    assert_eq!(
        json(d, &["cert", "verify", "pam.pem", "--role", "seller"])["valid"],
        true
    );

    // A currency the bond does not hold; a server it does not allow is fine
    // (no conditions = any).
    let v = json(
        d,
        &[
            "cert", "verify", "pam.pem", "--price", "1 USD", "--role", "seller",
        ],
    );
    assert_eq!(v["error"]["code"], "currency-mismatch");

    // Revoke by serial; a second revocation keeps the first.
    let r = json(
        d,
        &[
            "agency",
            "revoke",
            "--agency",
            "acme",
            &serial,
            "--reason",
            "superseded",
        ],
    );
    assert_eq!(r["outcome"], "revoked");
    let r = json(d, &["agency", "revoke", "--agency", "acme", &serial]);
    assert_eq!(r["outcome"], "was already revoked");
    let v = json(d, &["cert", "verify", "pam.pem", "--role", "seller"]);
    assert_eq!(v["error"]["code"], "revoked");
    // An unknown serial is refused and changes nothing.
    let v = json(d, &["agency", "revoke", "--agency", "acme", "0a0b0c"]);
    assert_eq!(v["error"]["code"], "refused");

    // Every certificate and CRL the agency signed is in the archive, and the
    // chain verifies.
    let list = json(d, &["evidence", "list"]);
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "pki/bond-certificate")
            .count(),
        1
    );
    assert!(kinds.iter().filter(|k| **k == "pki/crl").count() >= 3);
    // A listing cut short says so, and the command for the rest lists it.
    let n = kinds.len();
    let first = ok(d, &["evidence", "list", "--limit", "2"]);
    let rest = first
        .lines()
        .last()
        .and_then(|l| l.split_once("more follow: agora "))
        .map(|(_, r)| r.to_owned())
        .expect(&first);
    let args: Vec<&str> = rest.split_whitespace().collect();
    let more = ok(d, &args);
    assert_eq!(
        more.lines().count(),
        2.min(n - 2) + usize::from(n > 4),
        "{more}"
    );
    assert!(more.starts_with("     3  "), "{more}");
    let v = json(d, &["evidence", "verify", "--archive"]);
    assert_eq!(v["valid"], true);
    assert_eq!(v["entries"], list.as_array().unwrap().len());
}

#[test]
fn the_public_cpo_listing_never_names_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["init"]);
    ok(d, &["agency", "create", "acme"]);
    let bob = json(d, &["key", "new", "bob"]);
    ok(
        d,
        &[
            "agency",
            "issue-bond",
            "--agency",
            "acme",
            "--holder",
            "bob",
            "--amount",
            "50 EUR",
            "--roles",
            "buyer",
            "--out",
            "bond.pem",
        ],
    );
    ok(
        d,
        &[
            "cpo", "draft", "--buyer", "bob", "--bond", "bond.pem", "--goods", "tea", "--price",
            "5 EUR", "--out", "tea.ccpo",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "approve",
            "tea.ccpo",
            "--buyer",
            "bob",
            "--bidding",
            "--out",
            "tea.acc",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "post",
            "tea.acc",
            "--buyer",
            "bob",
            "--out",
            "tea.posted",
        ],
    );
    let list = json(d, &["cpo", "list"]);
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["mode"], "bidding");
    assert_eq!(entries[0]["status"], "open");
    let text = list.to_string();
    let bob_id = bob["key_id"].as_str().unwrap();
    assert!(
        !text.contains(bob_id),
        "buyer key id in the listing: {text}"
    );
    assert!(
        !text.to_lowercase().contains("bond"),
        "bond in the listing: {text}"
    );
    let id = entries[0]["id"].as_str().unwrap();
    let status = json(d, &["cpo", "status", id]);
    assert_eq!(status["goods"], "tea");
    assert!(!status.to_string().contains(bob_id));
}

#[test]
fn concurrent_commands_do_not_lose_each_others_keys() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["init"]);
    // Eight processes add a key pair each at once: every one must be in the
    // keystore afterwards (each holds the data directory's update lock from
    // reading the keystore to writing it).
    let names: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            Command::new(env!("CARGO_BIN_EXE_agora"))
                .args(["key", "new", n])
                .current_dir(dir.path())
                .env("AGORA_PASSPHRASE", "test passphrase")
                .env_remove("AGORA_DATA_DIR")
                .env_remove("AGORA_PASSPHRASE_FILE")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let listed = ok(dir.path(), &["key", "list"]);
    for n in &names {
        assert!(listed.contains(n.as_str()), "{n} was lost: {listed}");
    }
}

/// `agora --help` tells the truth: it names only what is built, groups the
/// global options apart from each command's own, and the `cpo` and `mail`
/// summaries name what their subcommands do.
#[test]
fn help_lists_what_works_and_groups_the_global_options() {
    let dir = tempfile::tempdir().unwrap();
    let help = ok(dir.path(), &["--help"]);
    for not_built in ["SEMPER", "postgres"] {
        assert!(!help.contains(not_built), "{not_built} in:\n{help}");
    }
    // An option is defined on a line of its own: "  -v, --verbose" or
    // "      --node <NODE>".
    let defines = |text: &str, flag: &str| {
        text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with(flag) || l.split_once(", ").is_some_and(|(_, f)| f.starts_with(flag))
        })
    };
    let (commands, global) = help.split_once("Global options:").expect(&help);
    for flag in [
        "--data-dir",
        "--node",
        "--json",
        "--force",
        "--store",
        "--verbose",
    ] {
        assert!(defines(global, flag), "{flag} is global:\n{help}");
        assert!(
            !defines(commands, flag),
            "{flag} only among the globals:\n{help}"
        );
    }
    // A command's help keeps its own options apart from the global ones.
    let buy = ok(dir.path(), &["speed", "buy", "--help"]);
    let (own, global) = buy.split_once("Global options:").expect(&buy);
    assert!(
        defines(own, "--product") && !defines(global, "--product"),
        "{buy}"
    );
    assert!(
        defines(global, "--node") && !defines(own, "--node"),
        "{buy}"
    );
    // The summaries match the subcommands.
    let cpo = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("cpo "))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    for sub in ["bind", "bid", "mail"] {
        assert!(cpo.contains(sub), "cpo's summary names {sub}: {cpo}");
    }
    let cpo_help = ok(dir.path(), &["cpo", "--help"]);
    let mail = cpo_help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("mail "))
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    for step in ["approval", "post", "session", "bind", "bid", "award"] {
        assert!(mail.contains(step), "mail's summary names {step}: {mail}");
    }
}

/// Several commands making one data directory at once (`agora init` beside
/// a starting `agora up`, as a newcomer may) make it once: every one
/// succeeds, and the store opens under the keystore that was kept.
#[test]
fn data_directories_made_at_once_are_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let makers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_agora"))
                .args(["--json", "init"])
                .current_dir(dir.path())
                .env("AGORA_PASSPHRASE", "test passphrase")
                .env_remove("AGORA_DATA_DIR")
                .env_remove("AGORA_PASSPHRASE_FILE")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for m in makers {
        let out = m.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.insert(v["node_key_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one node key: {ids:?}");
    // The store opens under it.
    ok(dir.path(), &["agency", "create", "acme"]);
    ok(dir.path(), &["evidence", "verify", "--archive"]);
}
