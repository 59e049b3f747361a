#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `agora stp` without a node (the commit authority and escrow of the data
//! directory, hosted in the command's own process, the messages between the
//! parties in files) decides the same transactions the node then reports;
//! and the commands' refusals say what is wrong in one line.

mod common;

use common::{free_port, Cli, Node};

#[test]
fn stp_commands_run_in_process_on_message_files_and_the_node_reports_the_same_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agora-data");
    let log = dir.path().join("node.log");
    // `agora up` makes the commit authority, the escrow and the identity CA.
    let mut node = Node::start(&data, free_port(), &log);
    node.terminate(std::time::Duration::from_secs(20));
    let cli = Cli::new(&data, &dir.path().join("work"), None);
    for p in ["ann", "ben"] {
        cli.ok(&["key", "new", p]);
        cli.ok(&["stp", "register", p]);
    }
    let begun = cli.json(&[
        "stp",
        "begin",
        "--as",
        "ann",
        "--with",
        "ben",
        "--out",
        "begin.cose",
    ]);
    let tid = begun["tid"].as_str().unwrap().to_owned();
    assert_eq!(begun["step"], "awaiting-start");
    let accepted = cli.json(&["stp", "receive", "--as", "ben", "begin.cose"]);
    assert_eq!(accepted["step"], "open");
    cli.ok(&[
        "stp", "send", "--as", "ann", "--tid", &tid, "--with", "ben", "an offer", "--pass",
        "--out", "m1.cose",
    ]);
    let got = cli.json(&["stp", "receive", "--as", "ben", "m1.cose"]);
    assert_eq!(
        (got["data"].as_str(), got["token"].as_bool()),
        (Some("an offer"), Some(true))
    );
    cli.ok(&[
        "stp",
        "end",
        "--as",
        "ben",
        "--tid",
        "begin.cose",
        "--with",
        "ann",
        "--out",
        "end.cose",
    ]);
    cli.ok(&["stp", "receive", "--as", "ann", "end.cose"]);
    let first = cli.json(&[
        "stp", "commit", "--as", "ann", "--tid", &tid, "--with", "ben",
    ]);
    assert_eq!(first["step"], "awaiting-outcome");
    let last = cli.json(&[
        "stp", "commit", "--as", "ben", "--tid", &tid, "--with", "ann",
    ]);
    assert_eq!(last["step"], "committed");
    let here = cli.json(&["stp", "status", &tid]);
    assert_eq!(here["state"], "committed");
    // The node on the same data directory reports the same outcome, proof
    // and all, over HTTP.
    let port = free_port();
    let node = Node::start(&data, port, &log);
    let over_http = Cli::new(&data, &dir.path().join("work"), Some(node.url()));
    let there = over_http.json(&["stp", "status", &tid]);
    assert_eq!(there["outcome"], here["outcome"]);
    // Ann's view of it, asked again over HTTP: committed too.
    let listed = over_http.json(&["stp", "list", "--as", "ann"]);
    assert_eq!(listed[0]["step"], "committed");
    over_http.ok(&[
        "stp", "prove", "--as", "ann", "--tid", &tid, "--with", "ben", "--out", "p.cbor",
    ]);
    let ok = over_http.ok(&[
        "stp",
        "verify-proof",
        "p.cbor",
        "--first",
        "1",
        "--then",
        "2",
    ]);
    assert!(ok.contains("message 1 preceded message 2"), "{ok}");
}

#[test]
fn stp_refusals_say_what_is_wrong_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agora-data");
    let mut node = Node::start(&data, free_port(), &dir.path().join("node.log"));
    node.terminate(std::time::Duration::from_secs(20));
    let cli = Cli::new(&data, &dir.path().join("work"), None);
    cli.ok(&["key", "new", "ann"]);
    let e = cli.fails(&[
        "stp", "begin", "--as", "ann", "--with", "ben", "--out", "b.cose",
    ]);
    assert!(
        e.contains("ann is not registered (agora stp register ann)"),
        "{e}"
    );
    cli.ok(&["stp", "register", "ann"]);
    let e = cli.fails(&["stp", "register", "ann"]);
    assert!(e.contains("ann is registered already"), "{e}");
    let e = cli.fails(&[
        "stp", "begin", "--as", "ann", "--with", "ben", "--out", "b.cose",
    ]);
    assert!(e.contains("ben is not a registered party here"), "{e}");
    let e = cli.fails(&["stp", "status", "not-a-tid"]);
    assert!(
        e.contains("is not a transaction id (32 hex digits) nor a message file"),
        "{e}"
    );
    let e = cli.fails(&[
        "stp",
        "commit",
        "--as",
        "ann",
        "--tid",
        &"ab".repeat(16),
        "--with",
        "ann",
    ]);
    assert!(e.contains("no subtransaction"), "{e}");
    std::fs::write(dir.path().join("work/junk.cose"), b"not a message").unwrap();
    let e = cli.fails(&["stp", "receive", "--as", "ann", "junk.cose"]);
    assert!(e.contains("malformed input"), "{e}");
    let unknown = cli.json(&["stp", "status", &"cd".repeat(16)]);
    assert_eq!(
        (unknown["state"].as_str(), unknown["known"].as_bool()),
        (Some("pending"), Some(false))
    );
}
