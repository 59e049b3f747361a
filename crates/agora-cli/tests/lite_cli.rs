#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `agora lite derive` and `agora lite dispute`, run as the built binary:
//! the Janus key id is the same for the same inputs, whichever way the
//! secret comes in, and the secret is never printed; a dispute is judged
//! from a receipt made by a real non-repudiation SKEP run in this process.

mod common;

use agora_core::crypto::{sha256, SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_lite::skep::{SkepClient, SkepMode, SkepVendor};
use agora_lite::wire::{ChainCommitment, Subscription};
use agora_lite::{ClientId, HashChain, Janus, JanusParams, VendorId};
use base64ct::Encoding as _;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

const SECRET: &str = "correct horse battery staple";
const ID: &str = "alice@example.org";
const VENDOR: &str = "quotes.example";

/// `agora ARGS` in `work`, with the secret in the environment (`env`)
/// and/or on stdin (`stdin`), and neither otherwise.
fn agora(work: &Path, args: &[&str], env: Option<&str>, stdin: Option<&str>) -> Output {
    let mut c = common::command("agora", work);
    c.args(args).env_remove("AGORA_LITE_SECRET");
    if let Some(s) = env {
        c.env("AGORA_LITE_SECRET", s);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run agora");
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The one line of stderr of a command that must fail.
fn fails(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one readable line: {stderr}");
    stderr
}

fn derive_json(
    work: &Path,
    extra: &[&str],
    env: Option<&str>,
    stdin: Option<&str>,
) -> serde_json::Value {
    let mut args = vec!["--json", "lite", "derive", "--id", ID, "--vendor", VENDOR];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(agora(work, &args, env, stdin))).unwrap()
}

#[test]
fn derive_gives_the_same_key_id_for_the_same_secret_and_another_for_another_counter() {
    let dir = tempfile::tempdir().unwrap();
    let a = derive_json(dir.path(), &[], Some(SECRET), None);
    let b = derive_json(dir.path(), &[], Some(SECRET), None);
    assert_eq!(a["key_id"], b["key_id"]);
    assert_eq!(a["key_id"].as_str().unwrap().len(), 16);
    assert_eq!(
        (a["vendor"].as_str(), a["counter"].as_u64()),
        (Some(VENDOR), Some(0))
    );
    assert!(a.get("key").is_none(), "K is printed only with --reveal");
    let rotated = derive_json(dir.path(), &["--counter", "1"], Some(SECRET), None);
    assert_eq!(rotated["counter"], 1);
    assert_ne!(rotated["key_id"], a["key_id"]);
    let other = derive_json(dir.path(), &[], Some("another secret"), None);
    assert_ne!(other["key_id"], a["key_id"]);
    // The key id is SHA-256("agora/janus/key-id" ‖ K), and --reveal
    // prints the K that agora-lite derives, as base64url.
    let k = Janus::open(
        ClientId::new(ID).unwrap(),
        SECRET.as_bytes(),
        JanusParams::DEFAULT,
    )
    .unwrap()
    .vendor_key(&VendorId::new(VENDOR).unwrap(), 0);
    let mut m = b"agora/janus/key-id".to_vec();
    m.extend_from_slice(k.k().expose());
    assert_eq!(a["key_id"], hex::encode(&sha256(&m)[..8]));
    let revealed = derive_json(dir.path(), &["--reveal"], Some(SECRET), None);
    let want = base64ct::Base64UrlUnpadded::encode_string(k.k().expose());
    assert_eq!(revealed["key"], want.as_str());
    // The secret itself is never printed, in text or JSON.
    let text = agora(
        dir.path(),
        &["lite", "derive", "--id", ID, "--vendor", VENDOR, "--reveal"],
        Some(SECRET),
        None,
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(
        all.contains(&format!("key id   {}", a["key_id"].as_str().unwrap())),
        "{all}"
    );
    assert!(!all.contains(SECRET), "{all}");
}

#[test]
fn derive_reads_the_same_secret_from_stdin_as_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = derive_json(dir.path(), &[], Some(SECRET), None);
    for line in [
        format!("{SECRET}\n"),
        format!("{SECRET}\r\n"),
        SECRET.to_owned(),
    ] {
        let from_stdin = derive_json(dir.path(), &[], None, Some(&line));
        assert_eq!(from_stdin["key_id"], from_env["key_id"], "{line:?}");
    }
    // Nothing on stdin and no variable: refused, saying where to put it.
    let e = fails(agora(
        dir.path(),
        &["lite", "derive", "--id", ID, "--vendor", VENDOR],
        None,
        Some(""),
    ));
    assert!(e.contains("AGORA_LITE_SECRET"), "{e}");
}

/// A vendor, a chain of 30 and the receipt of a non-repudiation SKEP run
/// for it, written to `dir` as `receipt.cose` with the vendor's key as
/// `vendor.pem`.
fn receipt_files(dir: &Path) -> (SkepVendor, HashChain) {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let v = SkepVendor::new(
        VendorId::new(VENDOR).unwrap(),
        X25519Secret::generate(&mut r),
        SigningKey::generate(&mut r),
    );
    let chain = HashChain::generate(&mut r, 30).unwrap();
    let now = Timestamp(1_700_000_000);
    let s = Subscription {
        not_before: now,
        not_after: now.plus_secs(30 * 86_400),
        chain: Some(ChainCommitment {
            anchor: chain.anchor(),
            n: 30,
        }),
        payment: b"payment-ref-42".to_vec(),
        counter: 0,
    };
    let k = Janus::open(
        ClientId::new(ID).unwrap(),
        SECRET.as_bytes(),
        JanusParams::insecure_for_tests(),
    )
    .unwrap()
    .vendor_key(v.id(), 0);
    let (c1, hello) = SkepClient::start(
        &mut r,
        &k,
        ClientId::new(ID).unwrap(),
        v.id().clone(),
        &v.x25519_public(),
    )
    .unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let (confirmed, confirm) = c1.on_challenge(&mut r, &challenge, s).unwrap();
    let (_, sealed) = pending
        .on_confirm(&v, &mut r, now, &confirm, SkepMode::NonRepudiation)
        .unwrap();
    let signed = confirmed
        .on_receipt(&sealed.unwrap(), &v.verifying_key())
        .unwrap();
    std::fs::write(dir.join("receipt.cose"), &signed.cose_sign1).unwrap();
    std::fs::write(
        dir.join("vendor.pem"),
        agora_pki::pem::ed25519_public_pem(&v.verifying_key()),
    )
    .unwrap();
    (v, chain)
}

/// `agora lite dispute` over the files [`receipt_files`] wrote, with
/// `extra` arguments (global flags such as `--json` first).
fn dispute_args<'a>(global: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = global.to_vec();
    args.extend_from_slice(&[
        "lite",
        "dispute",
        "--receipt",
        "receipt.cose",
        "--vendor-key",
        "vendor.pem",
    ]);
    args.extend_from_slice(extra);
    args
}

fn dispute(work: &Path, extra: &[&str]) -> Output {
    agora(work, &dispute_args(&[], extra), None, None)
}

#[test]
fn dispute_a_genuine_w_i_proves_i_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chain) = receipt_files(dir.path());
    let shown = format!("12:{}", hex::encode(chain.element(12).unwrap()));
    let text = ok(dispute(
        dir.path(),
        &["--vendor-shows", &shown, "--client-claims", "3"],
    ));
    assert!(
        text.contains("acknowledged at least 12 of the 30"),
        "{text}"
    );
    assert!(text.contains("her claim is refuted"), "{text}");
    assert!(text.contains("refund owed   18/30"), "{text}");
    assert!(
        text.contains("Refund evidence is not built in agora yet"),
        "{text}"
    );
    let args = dispute_args(&["--json"], &["--vendor-shows", &shown]);
    let j: serde_json::Value =
        serde_json::from_str(&ok(agora(dir.path(), &args, None, None))).unwrap();
    assert_eq!(j["vendor_evidence"]["judgement"], "valid");
    assert_eq!(
        (j["proven"].as_u64(), j["not_acknowledged"].as_u64()),
        (Some(12), Some(18))
    );
    assert_eq!(
        (j["client"].as_str(), j["vendor"].as_str()),
        (Some(ID), Some(VENDOR))
    );
    assert_eq!(j["refund_owed"]["units"], 18);
}

#[test]
fn dispute_a_forged_element_proves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chain) = receipt_files(dir.path());
    // w_11 shown as w_12: on the chain, but not at that index.
    let forged = format!("12:{}", hex::encode(chain.element(11).unwrap()));
    let text = ok(dispute(dir.path(), &["--vendor-shows", &forged]));
    assert!(
        text.contains("not on the chain the vendor signed"),
        "{text}"
    );
    assert!(
        text.contains("deliveries    30 promised, 0 proven, 30 not acknowledged"),
        "{text}"
    );
    let beyond = format!("31:{}", hex::encode(chain.element(30).unwrap()));
    let text = ok(dispute(dir.path(), &["--vendor-shows", &beyond]));
    assert!(
        text.contains("outside the chain's receipts 1 to 30"),
        "{text}"
    );
    // Bad input is refused in one line.
    let e = fails(dispute(dir.path(), &["--vendor-shows", "12:abcd"]));
    assert!(e.contains("not 64 hex digits"), "{e}");
    let e = fails(dispute(dir.path(), &["--vendor-shows", "twelve"]));
    assert!(e.contains("is not INDEX:HEX"), "{e}");
}

#[test]
fn dispute_with_a_wrong_vendor_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chain) = receipt_files(dir.path());
    let other = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(9)).verifying_key();
    std::fs::write(
        dir.path().join("other.pem"),
        agora_pki::pem::ed25519_public_pem(&other),
    )
    .unwrap();
    let shown = format!("12:{}", hex::encode(chain.element(12).unwrap()));
    let e = fails(agora(
        dir.path(),
        &[
            "lite",
            "dispute",
            "--receipt",
            "receipt.cose",
            "--vendor-key",
            "other.pem",
            "--vendor-shows",
            &shown,
        ],
        None,
        None,
    ));
    assert!(
        e.contains("is not a receipt signed by the vendor key"),
        "{e}"
    );
    // A tampered receipt, with the right key: refused too.
    let mut bytes = std::fs::read(dir.path().join("receipt.cose")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.path().join("receipt.cose"), &bytes).unwrap();
    let e = fails(dispute(dir.path(), &["--vendor-shows", &shown]));
    assert!(
        e.contains("is not a receipt signed by the vendor key"),
        "{e}"
    );
}

/// Key authentication before SKEP: a client whose data directory does not
/// trust the CA that certified the vendor refuses it before sealing a key
/// to it, and nothing is subscribed; the node's own data directory (which
/// trusts its identity CA) subscribes, fetches and keeps the receipt.
#[test]
fn subscribe_refuses_a_vendor_its_trust_does_not_certify() {
    let dir = tempfile::tempdir().unwrap();
    let node_data = dir.path().join("node");
    let node = common::Node::start(
        &node_data,
        common::free_port(),
        &dir.path().join("node.log"),
    );
    // Another data directory, with its own (empty) trust.
    let stranger = common::Cli::new(&dir.path().join("stranger"), dir.path(), Some(node.url()));
    stranger.ok(&["init"]);
    let out = {
        let mut c = common::command("agora", dir.path());
        c.arg("--data-dir")
            .arg(dir.path().join("stranger"))
            .args(["--node", &node.url(), "lite", "subscribe", "--id", ID])
            .env("AGORA_LITE_SECRET", SECRET);
        c.output().unwrap()
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checking the vendor"), "{err}");

    // The node's data directory trusts its CA: subscribe, fetch, receipts.
    let run = |args: &[&str]| {
        let mut c = common::command("agora", dir.path());
        c.arg("--data-dir")
            .arg(&node_data)
            .args(["--node", &node.url(), "lite"])
            .args(args)
            .env("AGORA_LITE_SECRET", SECRET);
        c.output().unwrap()
    };
    let sub = run(&["subscribe", "--id", ID]);
    assert!(
        sub.status.success(),
        "{}",
        String::from_utf8_lossy(&sub.stderr)
    );
    let fetched = run(&["fetch", "--id", ID, "/v1/lite/quotes?symbols=ACME"]);
    assert!(fetched.status.success());
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("\"symbol\": \"ACME\""));
    let listed = run(&["receipts"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("alice@example.org with agora-quotes"));
}
