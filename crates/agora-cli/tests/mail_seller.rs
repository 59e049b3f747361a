#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! A seller's protocols by e-mail: `agora cpo mail start-session`,
//! `start-bind`, `seller` and `server`, each message a file, each party's
//! state saved between messages. Two sellers race for one CPO, or bid on
//! one (`start-bid`); tampered and replayed message files are refused and
//! change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn agora(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .current_dir(dir)
        .env("AGORA_PASSPHRASE", "test passphrase")
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .env_remove("AGORA_NODE")
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

/// Runs a command that must fail; returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = agora(dir, args);
    assert!(
        !out.status.success(),
        "agora {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The saved states under `cpo-mail/<role>/`, sorted.
fn saved(dir: &Path, role: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("agora-data/cpo-mail").join(role))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A copy of `from` with its last byte flipped, written to `to`.
fn tamper(dir: &Path, from: &str, to: &str) {
    let mut b = std::fs::read(dir.join(from)).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    std::fs::write(dir.join(to), b).unwrap();
}

/// A data directory with an agency, Bob (buyer) and Pam and Sam (sellers)
/// with bonds, and Bob's CPO approved and posted; returns the CPO id.
fn market(d: &Path) -> String {
    parties(d);
    ok(
        d,
        &[
            "cpo",
            "draft",
            "--buyer",
            "bob",
            "--bond",
            "bob-bond.pem",
            "--goods",
            "A letterpress, working",
            "--price",
            "300.00 EUR",
            "--out",
            "press.ccpo",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "approve",
            "press.ccpo",
            "--buyer",
            "bob",
            "--out",
            "press.acceptance",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "post",
            "press.acceptance",
            "--buyer",
            "bob",
            "--out",
            "press.posted",
        ],
    );
    let id = ok(d, &["cpo", "list", "--ids"]).trim().to_owned();
    assert_eq!(id.len(), 64, "one CPO id: {id}");
    id
}

/// A data directory with an agency, Bob (buyer) and Pam and Sam (sellers)
/// with bonds; returns the key ids of Pam and Sam.
fn parties(d: &Path) -> (String, String) {
    ok(d, &["init"]);
    ok(d, &["agency", "create", "acme-bonding"]);
    let mut ids = Vec::new();
    for k in ["bob", "pam", "sam"] {
        let out = ok(d, &["--json", "key", "new", k]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        ids.push(v["key_id"].as_str().unwrap().to_owned());
    }
    ok(
        d,
        &[
            "agency",
            "issue-bond",
            "--agency",
            "acme-bonding",
            "--holder",
            "bob",
            "--amount",
            "500.00 EUR",
            "--roles",
            "buyer",
            "--out",
            "bob-bond.pem",
        ],
    );
    for s in ["pam", "sam"] {
        let out = format!("{s}-bond.pem");
        ok(
            d,
            &[
                "agency",
                "issue-bond",
                "--agency",
                "acme-bonding",
                "--holder",
                s,
                "--amount",
                "2000.00 EUR",
                "--roles",
                "seller",
                "--out",
                &out,
            ],
        );
    }
    (ids[1].clone(), ids[2].clone())
}

/// Protocol 3 by mail for `seller`, files `<seller>-s<i>.asc`: every
/// message ASCII-armoured, the server's first answer pasted into a mail
/// body and quoted in a reply before the seller reads it.
fn session_by_mail(d: &Path, seller: &str) {
    let bond = format!("{seller}-bond.pem");
    let f = |i: u8| format!("{seller}-s{i}.asc");
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-session",
            "--seller",
            seller,
            "--bond",
            &bond,
            "--hours",
            "8",
            "--out",
            &f(0),
        ],
    );
    let armoured = std::fs::read_to_string(d.join(f(0))).unwrap();
    assert!(
        armoured.starts_with("-----BEGIN AGORA MESSAGE-----\n")
            && armoured.ends_with("-----END AGORA MESSAGE-----\n"),
        "{armoured}"
    );
    ok(d, &["cpo", "mail", "server", &f(0), "--out", &f(1)]);
    let body = std::fs::read_to_string(d.join(f(1))).unwrap();
    let mail = format!(
        "Subject: your session\n\nOn Monday the server wrote:\n{}\n-- \nserver\n",
        body.lines().map(|l| format!("> {l}\n")).collect::<String>()
    );
    std::fs::write(d.join(f(1)), mail).unwrap();
    ok(
        d,
        &[
            "cpo",
            "mail",
            "seller",
            &f(1),
            "--seller",
            seller,
            "--out",
            &f(2),
        ],
    );
    ok(d, &["cpo", "mail", "server", &f(2), "--out", &f(3)]);
    let out = ok(d, &["cpo", "mail", "seller", &f(3), "--seller", seller]);
    assert!(out.contains("browse session"), "{out}");
    assert!(
        d.join(format!("agora-data/cpo-sessions/{seller}.json"))
            .exists(),
        "kept where agora cpo session keeps it"
    );
}

#[test]
fn sellers_open_sessions_and_bind_by_mail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = market(d);

    // Protocol 3 for Pam, with a tampered and a replayed message on the way.
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-session",
            "--seller",
            "pam",
            "--bond",
            "pam-bond.pem",
            "--hours",
            "8",
            "--out",
            "p0.msg",
        ],
    );
    tamper(d, "p0.msg", "p0-bad.msg");
    let before = saved(d, "server");
    let err = fails(
        d,
        &["cpo", "mail", "server", "p0-bad.msg", "--out", "p1.msg"],
    );
    assert!(err.contains("refused"), "{err}");
    assert_eq!(
        saved(d, "server"),
        before,
        "a tampered request saves nothing"
    );
    assert!(!d.join("p1.msg").exists(), "and answers nothing");
    ok(d, &["cpo", "mail", "server", "p0.msg", "--out", "p1.msg"]);
    let before = saved(d, "server");
    let err = fails(
        d,
        &["cpo", "mail", "server", "p0.msg", "--out", "again.msg"],
    );
    assert!(err.contains("replayed") || err.contains("stale"), "{err}");
    assert_eq!(
        saved(d, "server"),
        before,
        "a replayed request saves nothing"
    );
    // A message for the server is not a seller's to handle.
    let err = fails(
        d,
        &[
            "cpo", "mail", "seller", "p0.msg", "--seller", "pam", "--out", "x.msg",
        ],
    );
    assert!(err.contains("a seller does not handle"), "{err}");
    // The challenge needs --out before anything is used up.
    let err = fails(d, &["cpo", "mail", "seller", "p1.msg", "--seller", "pam"]);
    assert!(err.contains("give --out"), "{err}");
    ok(
        d,
        &[
            "cpo", "mail", "seller", "p1.msg", "--seller", "pam", "--out", "p2.msg",
        ],
    );
    tamper(d, "p2.msg", "p2-bad.msg");
    let before = saved(d, "server");
    fails(
        d,
        &["cpo", "mail", "server", "p2-bad.msg", "--out", "p3.msg"],
    );
    assert_eq!(
        saved(d, "server"),
        before,
        "a tampered response uses up nothing"
    );
    ok(d, &["cpo", "mail", "server", "p2.msg", "--out", "p3.msg"]);
    let err = fails(
        d,
        &["cpo", "mail", "server", "p2.msg", "--out", "again.msg"],
    );
    assert!(
        err.contains("no run in progress expects this message"),
        "{err}"
    );
    let out = ok(d, &["cpo", "mail", "seller", "p3.msg", "--seller", "pam"]);
    assert!(out.contains("browse session"), "{out}");
    assert!(d.join("agora-data/cpo-sessions/pam.json").exists());

    // Sam opens his session the same way.
    session_by_mail(d, "sam");

    // Both ask for the listing before either offers.
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            &id,
            "--seller",
            "pam",
            "--offer",
            "Ships tomorrow by courier",
            "--out",
            "b0.msg",
        ],
    );
    ok(d, &["cpo", "mail", "server", "b0.msg", "--out", "b1.msg"]);
    let before = saved(d, "server");
    let err = fails(
        d,
        &["cpo", "mail", "server", "b0.msg", "--out", "again.msg"],
    );
    assert!(err.contains("handled already"), "{err}");
    assert_eq!(
        saved(d, "server"),
        before,
        "a replayed listing request saves nothing"
    );
    ok(
        d,
        &[
            "cpo", "mail", "seller", "b1.msg", "--seller", "pam", "--out", "b2.msg",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            &id,
            "--seller",
            "sam",
            "--out",
            "c0.msg",
        ],
    );
    ok(d, &["cpo", "mail", "server", "c0.msg", "--out", "c1.msg"]);
    // Pam's listing is not Sam's.
    fails(
        d,
        &[
            "cpo", "mail", "seller", "b1.msg", "--seller", "sam", "--out", "x.msg",
        ],
    );
    ok(
        d,
        &[
            "cpo", "mail", "seller", "c1.msg", "--seller", "sam", "--out", "c2.msg",
        ],
    );

    // Pam's offer, tampered: refused, nothing bound, nothing used up.
    tamper(d, "b2.msg", "b2-bad.msg");
    let before = saved(d, "server");
    fails(
        d,
        &["cpo", "mail", "server", "b2-bad.msg", "--out", "b3.msg"],
    );
    assert_eq!(saved(d, "server"), before);
    assert!(!d.join("b3.msg").exists());
    let status = ok(d, &["cpo", "status", &id]);
    assert!(!status.contains("status   bound"), "{status}");
    // Untampered: bound.
    ok(d, &["cpo", "mail", "server", "b2.msg", "--out", "b3.msg"]);
    let out = ok(
        d,
        &[
            "cpo",
            "mail",
            "seller",
            "b3.msg",
            "--seller",
            "pam",
            "--out",
            "press.bound",
        ],
    );
    assert!(out.contains("pam bound CPO"), "{out}");
    let v = ok(d, &["evidence", "verify", "press.bound"]);
    assert!(v.contains("valid signature"), "{v}");
    assert!(v.contains("CPO_BOUND_CPO"), "{v}");
    let status = ok(d, &["cpo", "status", &id]);
    assert!(status.contains("bound"), "{status}");
    // The same offer again binds nothing more.
    let err = fails(
        d,
        &["cpo", "mail", "server", "b2.msg", "--out", "again.msg"],
    );
    assert!(
        err.contains("no run in progress expects this message"),
        "{err}"
    );
    // BOUND_CPO handled twice: her run is over.
    fails(
        d,
        &[
            "cpo",
            "mail",
            "seller",
            "b3.msg",
            "--seller",
            "pam",
            "--out",
            "again.bound",
        ],
    );

    // Sam's offer, on the listing he got before: already bound.
    let err = fails(d, &["cpo", "mail", "server", "c2.msg", "--out", "c3.msg"]);
    assert!(err.contains("already bound"), "{err}");
    assert!(!d.join("c3.msg").exists());
    // And a new listing request is refused the same way.
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            &id,
            "--seller",
            "sam",
            "--out",
            "e0.msg",
        ],
    );
    let err = fails(d, &["cpo", "mail", "server", "e0.msg", "--out", "e1.msg"]);
    assert!(err.contains("already bound"), "{err}");

    // The sessions opened by mail are the ones later commands use.
    let out = ok(d, &["cpo", "end-session", "--seller", "sam"]);
    assert!(out.contains("sam's browse session ended"), "{out}");
}

#[test]
fn bad_input_to_the_seller_commands_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = market(d);
    // No session yet: start-bind says so and saves nothing.
    let err = fails(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            &id,
            "--seller",
            "pam",
            "--out",
            "b0.msg",
        ],
    );
    assert!(err.contains("has no browse session"), "{err}");
    assert!(saved(d, "seller-pam").is_empty());
    // A buyer's bond opens no session.
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-session",
            "--seller",
            "bob",
            "--bond",
            "bob-bond.pem",
            "--out",
            "x0.msg",
        ],
    );
    let err = fails(d, &["cpo", "mail", "server", "x0.msg", "--out", "x1.msg"]);
    assert!(err.contains("the server refused"), "{err}");
    assert!(saved(d, "server").is_empty());
    // An offer over the limit is refused before anything is saved.
    session_by_mail(d, "pam");
    let long = "x".repeat(agora_cpo::msg::MAX_OFFER_LEN + 1);
    let err = fails(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            &id,
            "--seller",
            "pam",
            "--offer",
            &long,
            "--out",
            "b0.msg",
        ],
    );
    assert!(err.contains("the offer is"), "{err}");
    assert!(saved(d, "seller-pam").is_empty());
    assert!(!d.join("b0.msg").exists());
    // A malformed CPO id, an unknown server key id.
    fails(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            "abc",
            "--seller",
            "pam",
            "--out",
            "b0.msg",
        ],
    );
    let err = fails(
        d,
        &[
            "cpo",
            "mail",
            "start-session",
            "--seller",
            "pam",
            "--bond",
            "pam-bond.pem",
            "--server",
            &"00".repeat(32),
            "--out",
            "y0.msg",
        ],
    );
    assert!(err.contains("not pinned"), "{err}");
    assert!(saved(d, "seller-pam").is_empty());
    // A file that is no message at all.
    std::fs::write(d.join("junk.msg"), b"hello").unwrap();
    let err = fails(d, &["cpo", "mail", "server", "junk.msg", "--out", "z.msg"]);
    assert!(err.contains("not an agora message"), "{err}");
    // A listing for a CPO not on the board: refused, nothing saved.
    let other = "11".repeat(32);
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-bind",
            &other,
            "--seller",
            "pam",
            "--out",
            "n0.msg",
        ],
    );
    let err = fails(d, &["cpo", "mail", "server", "n0.msg", "--out", "n1.msg"]);
    assert!(err.contains("no such CPO"), "{err}");
    assert!(saved(d, "server").is_empty());
}

/// Protocol 6 by mail for `seller` on `id`, files `<seller>-d<i>.msg`, up to
/// the bid (M_1) in `<seller>-d2.msg`.
fn bid_until_m1(d: &Path, id: &str, seller: &str, price: &str, details: &str) {
    let f = |i: u8| format!("{seller}-d{i}.msg");
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-bid",
            id,
            "--seller",
            seller,
            "--price",
            price,
            "--details",
            details,
            "--out",
            &f(0),
        ],
    );
    ok(d, &["cpo", "mail", "server", &f(0), "--out", &f(1)]);
    ok(
        d,
        &[
            "cpo",
            "mail",
            "seller",
            &f(1),
            "--seller",
            seller,
            "--out",
            &f(2),
        ],
    );
}

/// The last two steps of protocol 6 by mail: the server takes the bid, the
/// seller writes BID_RECEIPT to `<seller>.receipt`, which `agora evidence
/// verify` accepts.
fn bid_receipt(d: &Path, seller: &str) {
    let f = |i: u8| format!("{seller}-d{i}.msg");
    ok(d, &["cpo", "mail", "server", &f(2), "--out", &f(3)]);
    let receipt = format!("{seller}.receipt");
    let out = ok(
        d,
        &[
            "cpo",
            "mail",
            "seller",
            &f(3),
            "--seller",
            seller,
            "--out",
            &receipt,
        ],
    );
    assert!(out.contains(&format!("{seller} bid")), "{out}");
    assert!(out.contains("BID_RECEIPT in"), "{out}");
    let v = ok(d, &["evidence", "verify", &receipt]);
    assert!(v.contains("valid signature"), "{v}");
    assert!(v.contains("CPO_BID_RECEIPT"), "{v}");
}

#[test]
fn sellers_bid_by_mail_and_the_lower_bid_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_pam_id, sam_id) = parties(d);
    session_by_mail(d, "pam");
    // Sam's session times the five commands of protocol 3 on this machine:
    // the bidding window must outlast the commands until the last bid.
    let started = Instant::now();
    session_by_mail(d, "sam");
    let per_command = started.elapsed() / 5;
    let window = Duration::from_secs(5).max(per_command * 24);
    let window_arg = format!("{}s", window.as_secs_f64().ceil() as u64);
    let drafted = Instant::now();
    ok(
        d,
        &[
            "cpo",
            "draft",
            "--buyer",
            "bob",
            "--bond",
            "bob-bond.pem",
            "--goods",
            "A tea set for six",
            "--price",
            "80.00 EUR",
            "--ends-in",
            &window_arg,
            "--out",
            "tea.ccpo",
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
            "tea.acceptance",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "post",
            "tea.acceptance",
            "--buyer",
            "bob",
            "--out",
            "tea.posted",
        ],
    );
    let id = ok(d, &["cpo", "list", "--ids"]).trim().to_owned();
    assert_eq!(id.len(), 64, "one CPO id: {id}");

    // Pam's bid; a tampered copy is refused and uses up nothing.
    bid_until_m1(d, &id, "pam", "75.00 EUR", "Ships in three days");
    tamper(d, "pam-d2.msg", "pam-d2-bad.msg");
    let before = saved(d, "server");
    fails(
        d,
        &[
            "cpo",
            "mail",
            "server",
            "pam-d2-bad.msg",
            "--out",
            "pam-d3.msg",
        ],
    );
    assert_eq!(saved(d, "server"), before, "a tampered bid uses up nothing");
    assert!(!d.join("pam-d3.msg").exists(), "and answers nothing");
    bid_receipt(d, "pam");
    // The same bid file again: its listing is used up.
    let err = fails(
        d,
        &["cpo", "mail", "server", "pam-d2.msg", "--out", "again.msg"],
    );
    assert!(
        err.contains("no run in progress expects this message"),
        "{err}"
    );
    assert!(!d.join("again.msg").exists());
    // BID_RECEIPT handled twice: her run is over.
    fails(
        d,
        &[
            "cpo",
            "mail",
            "seller",
            "pam-d3.msg",
            "--seller",
            "pam",
            "--out",
            "again.receipt",
        ],
    );

    // Sam bids less.
    bid_until_m1(d, &id, "sam", "70.00 EUR", "Ships tomorrow");
    bid_receipt(d, "sam");
    assert!(
        saved(d, "server").is_empty(),
        "no listing left waiting: {:?}",
        saved(d, "server")
    );
    assert!(
        saved(d, "seller-pam").is_empty() && saved(d, "seller-sam").is_empty(),
        "both runs are over"
    );

    // Once bidding closes, the server sends the bids to the arbiter by mail
    // and her award comes back the same way: to the lower bid, Sam's.
    let closes = drafted + window + Duration::from_millis(1500);
    if let Some(left) = closes.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    award_by_mail(d, &id, &sam_id);
    // The node's view of the same award (made before, by mail).
    let out = ok(d, &["--json", "cpo", "award", &id, "--out-dir", "award"]);
    let award: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        award["bids"], 2,
        "the tampered and replayed bids are not among them: {award}"
    );
    assert_eq!(award["winner"].as_str(), Some(sam_id.as_str()), "{award}");
    let out = ok(d, &["cpo", "notice", &id, "--receipt", "sam.receipt"]);
    assert!(out.contains("the bid of 70.00 EUR won"), "{out}");
    let out = ok(d, &["cpo", "notice", &id, "--receipt", "pam.receipt"]);
    assert!(out.contains("the bid of 75.00 EUR lost"), "{out}");
}

/// Protocol 6, step 5, by mail: the award request, the arbiter's award
/// (a tampered copy refused, the award taken once), and each bidder's
/// notice checked from the file mailed to her.
fn award_by_mail(d: &Path, id: &str, winner: &str) {
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-award",
            id,
            "--out",
            "a1-to-arbiter.msg",
        ],
    );
    ok(
        d,
        &[
            "cpo",
            "mail",
            "arbiter",
            "a1-to-arbiter.msg",
            "--out",
            "a2-to-server.msg",
        ],
    );
    std::fs::create_dir_all(d.join("mailed")).unwrap();
    tamper(d, "a2-to-server.msg", "a2-bad.msg");
    let waiting = saved(d, "server");
    fails(
        d,
        &[
            "cpo",
            "mail",
            "server",
            "a2-bad.msg",
            "--out",
            "mailed/bad.award",
        ],
    );
    assert_eq!(
        saved(d, "server"),
        waiting,
        "a tampered award uses up nothing"
    );
    assert!(!d.join("mailed/bad.award").exists());
    let out = ok(
        d,
        &[
            "--json",
            "cpo",
            "mail",
            "server",
            "a2-to-server.msg",
            "--out",
            "mailed/tea.award",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["notices"], 2, "{r}");
    assert_eq!(r["winner"].as_str(), Some(winner), "{r}");
    assert!(saved(d, "server").is_empty(), "the award was taken once");
    fails(
        d,
        &[
            "cpo",
            "mail",
            "server",
            "a2-to-server.msg",
            "--out",
            "mailed/again.award",
        ],
    );
    ok(d, &["evidence", "verify", "mailed/tea.award"]);
    // Each bidder's notice is one of the files beside the award; only hers
    // checks against her receipt.
    let notices: Vec<String> = std::fs::read_dir(d.join("mailed"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("notice-"))
        .map(|n| format!("mailed/{n}"))
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    for (receipt, word) in [("sam.receipt", "won"), ("pam.receipt", "lost")] {
        let checked: Vec<String> = notices
            .iter()
            .filter_map(|n| {
                let out = agora(
                    d,
                    &["cpo", "notice", id, "--receipt", receipt, "--notice", n],
                );
                out.status
                    .success()
                    .then(|| String::from_utf8(out.stdout).unwrap())
            })
            .collect();
        assert_eq!(checked.len(), 1, "{receipt}: {checked:?}");
        assert!(checked[0].contains(word), "{receipt}: {}", checked[0]);
    }
}

#[test]
fn bad_input_to_start_bid_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = market(d);
    // No session yet.
    let err = fails(
        d,
        &[
            "cpo",
            "mail",
            "start-bid",
            &id,
            "--seller",
            "pam",
            "--price",
            "10.00 EUR",
            "--out",
            "d0.msg",
        ],
    );
    assert!(err.contains("has no browse session"), "{err}");
    assert!(saved(d, "seller-pam").is_empty());
    session_by_mail(d, "pam");
    // Details over the limit: refused before anything is saved.
    let long = "x".repeat(agora_cpo::bidding::MAX_BID_DETAILS_LEN + 1);
    let err = fails(
        d,
        &[
            "cpo",
            "mail",
            "start-bid",
            &id,
            "--seller",
            "pam",
            "--price",
            "10.00 EUR",
            "--details",
            &long,
            "--out",
            "d0.msg",
        ],
    );
    assert!(err.contains("the bid details are"), "{err}");
    assert!(saved(d, "seller-pam").is_empty());
    assert!(!d.join("d0.msg").exists());
    // A CPO that does not take bids: the server refuses the listing and
    // saves nothing.
    ok(
        d,
        &[
            "cpo",
            "mail",
            "start-bid",
            &id,
            "--seller",
            "pam",
            "--price",
            "10.00 EUR",
            "--out",
            "d0.msg",
        ],
    );
    let err = fails(d, &["cpo", "mail", "server", "d0.msg", "--out", "d1.msg"]);
    assert!(err.contains("the server refused"), "{err}");
    assert!(saved(d, "server").is_empty());
    assert!(!d.join("d1.msg").exists());
}
