#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Runs the README's walk-through blocks exactly as written, with the
//! freshly built `agora` first on PATH, in an empty directory. A line that
//! starts with `! ` must fail; every other line must succeed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn readme() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(p).expect("README.md")
}

/// The ```sh block that follows `<!-- walkthrough:NAME -->`.
fn block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- walkthrough:{name} -->");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"));
    let rest = &readme[start..];
    let open = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let close = rest[open..].find("```").expect("the block's end") + open;
    rest[open..close].to_owned()
}

/// Turns the block into a bash script: `set -e`, and each `! cmd` line into a
/// check that `cmd` fails (bash's own `!` would not stop `set -e`).
fn script(block: &str) -> String {
    let mut s = String::from("set -euo pipefail\n");
    // A line continued with a backslash is one command.
    let block = block.replace("\\\n", "");
    for line in block.lines() {
        match line.strip_prefix("! ") {
            Some(cmd) => s.push_str(&format!(
                "echo '+ ! {q}'; if {cmd}; then echo 'UNEXPECTED SUCCESS: {q}' >&2; exit 1; fi\n",
                q = cmd.replace('\'', "'\\''")
            )),
            None if line.trim().is_empty() || line.trim_start().starts_with('#') => {
                s.push_str(line);
                s.push('\n');
            }
            None => {
                s.push_str(&format!("echo '+ {}'\n", line.replace('\'', "'\\''")));
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    s
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_agora"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A port no one listens on now, for a block's node: the README's blocks
/// say 7878, the default of `agora up`, and run at once in parallel tests.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_block(name: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    run_block_in(name, dir.path(), &free_port().to_string())
}

/// [`run_block`], the README's proxy ports 8118 and 8119 read as free ones
/// too.
fn run_proxy_block(name: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let text = block(&readme(), name)
        .replace("8118", &free_port().to_string())
        .replace("8119", &free_port().to_string());
    run_script_in(&text, dir.path(), &free_port().to_string())
}

/// [`run_block`] in `dir`, the README's port 7878 read as `port`.
fn run_block_in(name: &str, dir: &Path, port: &str) -> std::process::Output {
    run_script_in(&block(&readme(), name), dir, port)
}

/// Runs a block's text in `dir`, the README's port 7878 read as `port`.
fn run_script_in(text: &str, dir: &Path, port: &str) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script(&text.replace("7878", port)))
        .env("AGORA_PORT", port)
        .env_remove("AGORA_NODE")
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .output()
        .expect("bash");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn readme_walkthrough_certificates() {
    let out = run_block("cert");
    assert!(
        out.status.success(),
        "the README's certificate walk-through failed"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What a person reading along should see.
    assert!(stdout.contains("created bonding agency acme-bonding"));
    assert!(stdout.contains("valid bond of 500.00 EUR for buyer"));
    assert!(
        stdout.contains("alice-bond.pem: OK"),
        "openssl accepted the bond"
    );
    assert!(
        stderr.contains("the bond covers 500.00 EUR, the price is 600.00 EUR"),
        "the over-price refusal names both amounts: {stderr}"
    );
    assert!(
        stderr.contains("revoked"),
        "the refusal after revocation says revoked"
    );
    assert!(
        stderr.contains("certificate revoked"),
        "openssl says revoked"
    );
}

#[test]
fn readme_walkthrough_cpo() {
    let out = run_block("cpo");
    assert!(out.status.success(), "the README's CPO walk-through failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("agora node at http://127.0.0.1:") && stdout.contains("cpo"),
        "the walk-through runs against `agora up`: {stdout}"
    );
    assert!(stdout.contains("accepted CPO"), "{stdout}");
    assert!(stdout.contains("posted (first-come)"));
    assert!(
        stdout.contains("120.00 EUR  first-come"),
        "the listing shows the CPO"
    );
    assert!(
        stderr.contains("the bond covers 500.00 EUR, the price is 900.00 EUR"),
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "was posted already (first-come); the server's signed CPO is in again.posted"
        ),
        "posted once, and Bob is given his posted CPO: {stdout}"
    );
    assert!(
        stderr.contains("again.posted exists already"),
        "not replaced without --force: {stderr}"
    );
    assert!(
        stdout.contains("posted; the server's signed CPO is in again.posted"),
        "Bob fetched his posted CPO again: {stdout}"
    );
    assert!(stdout.contains("over CPO_ARBITER_ACCEPTANCE [1, 1, 4]"));
    assert!(stdout.contains("over CPO_POSTED [1, 2, 4]"));
    assert!(stdout.contains("evidence archive intact"));
    assert!(stdout.contains("pam bound CPO"), "{stdout}");
    assert!(stderr.contains("already bound"), "Quinn is told: {stderr}");
    assert!(
        stderr.contains("the server refused the session: role not allowed by the certificate"),
        "a buyer bond opens no session: {stderr}"
    );
    assert!(stdout.contains("status   bound"));
    assert!(stdout.contains("over CPO_BOUND_CPO [1, 4, 3]"));
    assert!(stdout.contains("browse session ended"));
    assert!(
        stdout.contains("proof valid"),
        "Pam proves she holds BC_P's key"
    );
    assert!(
        stderr.contains("the proof is refused"),
        "Quinn cannot: {stderr}"
    );
}

#[test]
fn readme_walkthrough_bidding() {
    let out = run_block("bidding");
    assert!(
        out.status.success(),
        "the README's bidding walk-through failed"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("accepted CPO") && stdout.contains("(bidding)"),
        "{stdout}"
    );
    assert!(stderr.contains("a bid must ask between"), "{stderr}");
    assert!(stdout.contains("of 2 bids"));
    assert!(
        stdout.contains("rita has 1 bid(s) on CPO") && stdout.contains("rita-receipts/receipt-"),
        "Rita fetched her receipt again: {stdout}"
    );
    assert!(stdout.contains("the bid of 75.00 EUR lost"));
    assert!(stdout.contains("the bid of 70.00 EUR won"));
    assert!(stdout.contains("over CPO_BID_RECEIPT [1, 6, 3]"));
    assert!(stdout.contains("over CPO_BID_AWARD [1, 6, 5]"));
    assert!(stdout.contains("status   bound"));
}

#[test]
fn readme_walkthrough_mail() {
    let out = run_block("mail");
    assert!(
        out.status.success(),
        "the README's e-mail walk-through failed"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("ARBITER_ACCEPTANCE: written to press.acceptance"),
        "{stdout}"
    );
    assert!(stdout.contains("300.00 EUR  first-come"));
    assert!(
        stderr.contains("no run in progress expects this message"),
        "{stderr}"
    );
    assert!(stdout.contains("over CPO_POSTED [1, 2, 4]"));
    // Vera's session and binding by mail: BOUND_CPO, checked.
    assert!(stdout.contains("over CPO_BOUND_CPO [1, 4, 3]"), "{stdout}");
}

#[test]
fn the_script_transform_checks_expected_failures() {
    let s = script("true\n! false\n# comment\n");
    let out = Command::new("bash").arg("-c").arg(&s).output().unwrap();
    assert!(out.status.success());
    let s = script("! true\n");
    let out = Command::new("bash").arg("-c").arg(&s).output().unwrap();
    assert!(
        !out.status.success(),
        "a `!` line that succeeds fails the walk-through"
    );
}

#[test]
fn readme_walkthrough_stp() {
    let out = run_block("stp");
    assert!(out.status.success(), "the README's STP walk-through failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("registered STP party cement"), "{stdout}");
    assert!(
        stdout.contains("Build a house on lot 7 for 250000 EUR by 1 June"),
        "the contractor read the buyer's data: {stdout}"
    );
    assert!(
        stderr.contains("only the holder of the send token sends"),
        "{stderr}"
    );
    assert!(stderr.contains("replayed"), "{stderr}");
    assert_eq!(
        stdout.matches("the transaction COMMITTED").count(),
        1,
        "the fourth decision commits the transaction: {stdout}"
    );
    assert!(stdout.contains(": COMMITTED"), "{stdout}");
    assert!(
        stdout.contains("released to you: the transaction committed")
            && stdout.contains("ORDER 1: 40 t cement C30 for lot 7, 6400 EUR"),
        "{stdout}"
    );
    assert!(stdout.contains("proof bundle OK") && stdout.contains("message 1 preceded message 2"));
    assert!(
        stderr.contains("message 2 did not precede message 1"),
        "{stderr}"
    );
    // The second run: the subcontractor's abort aborts it all, and the
    // order goes back to the contractor, never to her.
    assert!(stdout.contains(": ABORTED (a party aborted)"), "{stdout}");
    assert!(
        stderr.contains("the item goes back to its depositor"),
        "{stderr}"
    );
    assert!(
        stdout.contains("returned to you: the transaction aborted"),
        "{stdout}"
    );
}

#[test]
fn readme_walkthrough_speed() {
    let out = run_block("speed");
    assert!(
        out.status.success(),
        "the README's SPEED walk-through failed"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("registered customer carol"), "{stdout}");
    assert!(stdout.contains("DEMO-SONG-1: Loopback Blues"));
    assert!(stdout.contains("loaded 5.00 EUR onto the card"));
    assert!(
        stdout.contains("paid 1.20 EUR") && stdout.contains("song.mp3 (3000000 bytes)"),
        "they meet at 1.20 and the song decrypts: {stdout}"
    );
    assert!(stdout.contains(": 3.80 EUR ("), "the card paid: {stdout}");
    assert!(stdout.contains("over SPEED_PURCHASE_RECEIPT [2, 1, 6]"));
    assert!(stdout.contains("over SPEED_BILL [2, 1, 9]"), "{stdout}");
    assert!(
        stdout.contains("ruling: recorded")
            && stdout.contains("decrypts with the receipt's key  yes"),
        "{stdout}"
    );
    assert!(stdout.contains("paid 0.50 EUR") && stdout.contains("stream.key (16 bytes)"));
    assert!(stderr.contains("no deal"), "{stderr}");
    assert!(
        stdout.contains("V-DEMO: 2 payments, 1.70 EUR"),
        "the vendor was paid twice, once each: {stdout}"
    );
    // The vendor's copy: two deliveries (the walk-away never got one), both
    // paid, the receipts read with its derived RecKey and verified again.
    assert!(
        stdout.contains(": 2 deliveries, 2 paid (receipts checked)")
            && stdout.contains("1.20 EUR")
            && stdout.contains("0.50 EUR"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("over SPEED_PURCHASE_RECEIPT [2, 1, 6]")
            .count(),
        3,
        "the customer's receipt and the vendor's two: {stdout}"
    );
}

/// A newcomer runs the README in order, in one directory: the first
/// command's `agora up` keeps running, and each walk-through after it (whose
/// own `agora up &` is then refused: the data directory's node runs) works
/// against that node, none colliding with another's keys, agencies or files.
#[test]
fn the_walkthroughs_run_in_order_in_one_directory_beside_the_first_node() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let log = std::fs::File::create(dir.path().join("first-node.log")).unwrap();
    let mut first = Command::new(bin_dir().join("agora"))
        .arg("up")
        .env("AGORA_PORT", &port)
        .env("AGORA_PASSPHRASE", "correct horse battery staple")
        .env_remove("AGORA_NODE")
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The reader sees "agora node up at ..." before she goes on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !std::fs::read_to_string(dir.path().join("first-node.log"))
        .unwrap_or_default()
        .contains("agora node up at")
    {
        assert!(
            std::time::Instant::now() < deadline && first.try_wait().unwrap().is_none(),
            "the first command's node did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut failed = None;
    for name in ["cert", "cpo", "bidding", "mail", "speed", "stp"] {
        let out = run_block_in(name, dir.path(), &port);
        if !out.status.success() {
            failed = Some(name);
            break;
        }
    }
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(
        failed, None,
        "a walk-through failed after the others (its output is above)"
    );
}

#[test]
fn readme_walkthrough_lite() {
    let out = run_block("lite");
    assert!(
        out.status.success(),
        "the README's lightweight walk-through failed"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("subscribed  alice@example.org with agora-quotes for 30 days"),
        "{stdout}"
    );
    assert!(stdout.contains("(signed by the vendor)"), "{stdout}");
    assert!(
        stdout.contains("\"client\": \"alice@example.org\"")
            && stdout.contains("\"symbol\": \"ACME\"")
            && stdout.contains("\"symbol\": \"INITECH\""),
        "her quotes, opened: {stdout}"
    );
    assert!(
        stdout.contains("alice@example.org with agora-quotes"),
        "the receipt is listed: {stdout}"
    );
    assert!(stderr.contains("already-subscribed"), "{stderr}");
    // The key id derive prints is the one the subscription used.
    let kid = stdout
        .split("(key id ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("subscribe prints the key id");
    assert!(
        stdout.contains(&format!("key id   {kid}")),
        "derive gives the same key: {stdout}"
    );
    assert!(
        stderr.contains("crypto"),
        "the guessed key is refused: {stderr}"
    );
}

#[test]
fn readme_walkthrough_proxy() {
    let out = run_proxy_block("proxy");
    assert!(
        out.status.success(),
        "the README's proxy walk-through failed"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("\"client\":\"bob@example.org\"") && stdout.contains("\"symbol\":\"ACME\""),
        "the quotes through the first proxy: {stdout}"
    );
    assert!(
        stdout.contains("receipt.cose: receipt signed by agora-quotes (its certificate checked)")
            && stdout.contains("client   bob@example.org"),
        "the receipt the proxy handed over verifies: {stdout}"
    );
    assert!(
        stdout.contains("\"symbol\":\"GLOBEX\""),
        "the second proxy carried on: {stdout}"
    );
    assert!(
        stdout.contains("\"code\":\"upstream\"") && stdout.contains("crypto"),
        "the guessed secret is refused by the vendor: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("proxy-authentication"),
        "no credentials, 407: {stdout}"
    );
}
