#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `agora bench` against a real node: `agora up` on a fresh data directory
//! and a free loopback port, then each scenario for about two seconds with
//! small concurrency and `--json`. Checks that something was done, that no
//! CPO was bound twice, that the SPEED purchases' money adds up, and that
//! the only errors are the expected ones. No timing is asserted.
//!
//! Each scenario gets a node of its own: the node's housekeeping (every 30
//! seconds) rebuilds the CPO server, and with it the table of listings
//! waiting for an offer, so that a run crossing it sees offers refused as
//! `replayed`; a fresh node keeps every run well inside one period.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "bench smoke passphrase";

/// `agora up` in the background; killed when dropped, even if the test
/// fails.
struct Node {
    child: Child,
    url: String,
    data_dir: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agora() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agora"));
    c.env("AGORA_PASSPHRASE", PASSPHRASE)
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .env_remove("AGORA_NODE")
        .env_remove("AGORA_PORT");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.") && reply.contains(" 200 ") && reply.ends_with("ok\n")
}

impl Node {
    fn start() -> Node {
        // A port picked free may be taken before the node binds it: retry.
        for _ in 0..3 {
            if let Some(node) = Node::try_start() {
                return node;
            }
        }
        panic!("no free loopback port for agora up");
    }

    /// `None` if the port was taken meanwhile.
    fn try_start() -> Option<Node> {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let log = dir.path().join("node.log");
        let port = free_port();
        let child = agora()
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["up", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("node.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start agora up");
        let mut node = Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if healthy(port) {
                return Some(node);
            }
            if let Some(status) = node.child.try_wait().unwrap() {
                let text = node.log_text();
                if text.contains("listening on") {
                    return None;
                }
                panic!("agora up exited with {status}: {text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("agora up did not become healthy: {}", node.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `agora bench <args> --json` against this node: its JSON report.
    fn bench(&self, args: &[&str]) -> serde_json::Value {
        let out = agora()
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--node", &self.url, "--json", "bench"])
            .args(args)
            .output()
            .expect("run agora bench");
        assert!(
            out.status.success(),
            "agora bench {args:?} failed ({}):\nstdout: {}\nstderr: {}\nnode log: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "agora bench {args:?} printed no JSON object ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// What every report must show: work done, a throughput and a crypto bound.
fn check_report(r: &serde_json::Value, scenario: &str, allowed_errors: &[&str]) {
    assert_eq!(r["scenario"], scenario, "{r:#}");
    assert!(r["throughput"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(r["successes"].as_u64().unwrap() > 0, "{r:#}");
    // A request gives at most one success, or one per CPO of a page.
    let page = r["page"].as_u64().unwrap_or(1).max(1);
    assert!(
        r["requests"].as_u64().unwrap() * page >= r["successes"].as_u64().unwrap(),
        "{r:#}"
    );
    assert!(r["wall_secs"].as_f64().unwrap() > 0.0, "{r:#}");
    for (code, n) in r["errors"].as_object().unwrap() {
        assert!(
            allowed_errors.contains(&code.as_str()),
            "{scenario}: unexpected errors {code} x{n}: {r:#}"
        );
    }
    let latency = r["latency"].as_object().unwrap();
    assert!(!latency.is_empty(), "{r:#}");
    for (step, p) in latency {
        if p["count"].as_u64().unwrap() > 0 {
            assert!(p["p50_us"].as_u64().unwrap() > 0, "{step}: {r:#}");
            assert!(
                p["p50_us"].as_u64() <= p["p99_us"].as_u64(),
                "{step}: {r:#}"
            );
            assert!(
                p["p99_us"].as_u64() <= p["p999_us"].as_u64(),
                "{step}: {r:#}"
            );
        }
    }
    let c = &r["crypto_bound"];
    assert_eq!(c["sides"], "client+server", "{r:#}");
    assert!(c["bound_per_sec"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(c["ratio"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(c["server_only"]["ratio"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(c["cores"].as_u64().unwrap() >= 1, "{r:#}");
}

/// The calls of `op` that the crypto bound counted on `side` (`node` or
/// `clients`) in the measured phase.
fn counted(r: &serde_json::Value, side: &str, op: &str) -> u64 {
    r["crypto_bound"]["operations"][side]
        .as_array()
        .unwrap_or_else(|| panic!("no counted operations: {r:#}"))
        .iter()
        .find(|o| o["op"] == op)
        .map_or(0, |o| o["calls"].as_u64().unwrap())
}

#[test]
fn bench_scenarios_run_against_a_real_node() {
    {
        let node = Node::start();
        let r = node.bench(&["cpo-post", "--duration", "2", "--concurrency", "4"]);
        check_report(&r, "cpo-post", &[]);
        for step in ["approval-1", "approval-2", "post-1", "post-2"] {
            assert!(r["latency"][step]["count"].as_u64().unwrap() > 0, "{r:#}");
        }
        assert!(r["invariant"].is_null());
    }
    {
        let node = Node::start();
        let r = node.bench(&[
            "cpo-browse",
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--cpos",
            "8",
        ]);
        check_report(&r, "cpo-browse", &[]);
        assert_eq!(r["setup"]["cpos_posted"], 8, "{r:#}");
        assert_eq!(r["setup"]["sessions_opened"], 4, "{r:#}");
        assert_eq!(r["successes"], r["latency"]["listing"]["count"], "{r:#}");
        // A page of 8 listings per request: every listing counted, one
        // request per page.
        let r = node.bench(&[
            "cpo-browse",
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--cpos",
            "8",
            "--page",
            "8",
        ]);
        check_report(&r, "cpo-browse", &[]);
        assert_eq!(r["page"], 8, "{r:#}");
        let pages = r["latency"]["listings"]["count"].as_u64().unwrap();
        assert_eq!(r["successes"].as_u64().unwrap(), 8 * pages, "{r:#}");
        assert_eq!(r["requests"].as_u64().unwrap(), pages, "{r:#}");
    }
    {
        let node = Node::start();
        let r = node.bench(&[
            "cpo-bind",
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--cpos",
            "100",
        ]);
        check_report(&r, "cpo-bind", &["already-bound"]);
        let inv = &r["invariant"];
        assert_eq!(inv["ok"], true, "{r:#}");
        assert!(inv["violations"].as_array().unwrap().is_empty(), "{r:#}");
        // Every success is one CPO bound by exactly one seller.
        assert_eq!(r["successes"], inv["cpos_bound_once"], "{r:#}");
        assert_eq!(inv["cpos_already_bound_without_binder"], 0, "{r:#}");
        // The bound is priced from what the roles did: the server signs
        // each BOUND_CPO and the seller checks it; the rest is the K_p
        // channel (no seller signs, no one opens HPKE in a bind).
        let binds = r["successes"].as_u64().unwrap();
        assert!(counted(&r, "node", "ed25519_sign") >= binds, "{r:#}");
        assert!(counted(&r, "clients", "ed25519_verify") >= binds, "{r:#}");
        assert_eq!(counted(&r, "clients", "ed25519_sign"), 0, "{r:#}");
        assert_eq!(counted(&r, "node", "hpke_open"), 0, "{r:#}");
        assert!(counted(&r, "node", "hmac") > 0, "{r:#}");
        let errors = r["errors"]["already-bound"].as_u64().unwrap_or(0);
        assert_eq!(r["already_bound"].as_u64().unwrap(), errors, "{r:#}");
        assert!(r["attempts"].as_u64().unwrap() >= r["successes"].as_u64().unwrap());
        if r["stopped_by"] == "all-bound" {
            // The race ends when every CPO is bound, once.
            assert_eq!(inv["cpos_bound_once"], 100, "{r:#}");
            assert_eq!(inv["cpos_unbound"], 0, "{r:#}");
        } else {
            assert_eq!(r["stopped_by"], "duration", "{r:#}");
        }
        // Sellers who fetch their listings a page at a time keep it too.
        let r = node.bench(&[
            "cpo-bind",
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--cpos",
            "100",
            "--page",
            "16",
        ]);
        check_report(&r, "cpo-bind", &["already-bound"]);
        assert_eq!(r["invariant"]["ok"], true, "{r:#}");
        assert!(
            r["latency"]["listings"]["count"].as_u64().unwrap() > 0,
            "{r:#}"
        );
        assert!(
            r["latency"]["offer"]["count"].as_u64().unwrap() > 0,
            "{r:#}"
        );
        // The requests bound holds too.
        let r = node.bench(&[
            "cpo-bind",
            "--duration",
            "10",
            "--concurrency",
            "2",
            "--cpos",
            "20",
            "--requests",
            "10",
        ]);
        assert!(r["requests"].as_u64().unwrap() <= 10, "{r:#}");
        assert_eq!(r["stopped_by"], "requests", "{r:#}");
        assert_eq!(r["invariant"]["ok"], true, "{r:#}");
    }
}

/// The SPEED scenarios: purchases of the demo 16-byte product, every step
/// timed, every product checked, and the money accounted for.
#[test]
fn speed_scenarios_run_against_a_real_node() {
    let node = Node::start();
    for (scenario, steps) in [
        (
            "speed-normal",
            &["negotiate", "handshake+delivery", "pay", "purchase"][..],
        ),
        (
            "speed-aggressive",
            &["request+delivery", "pay", "purchase"][..],
        ),
    ] {
        let r = node.bench(&[scenario, "--duration", "2", "--concurrency", "4"]);
        check_report(&r, scenario, &[]);
        for step in steps {
            assert!(
                r["latency"][step]["count"].as_u64().unwrap() > 0,
                "{step}: {r:#}"
            );
        }
        // Every success is a whole purchase whose product decrypted to the
        // vendor's 16 bytes.
        assert_eq!(r["latency"]["purchase"]["count"], r["successes"], "{r:#}");
        // Priced from what the roles did: the vendor signs each bill and
        // the broker each receipt; the customer signs her order, and seals
        // her request and her order to vendor and broker.
        let bought = r["successes"].as_u64().unwrap();
        assert!(counted(&r, "node", "ed25519_sign") >= 2 * bought, "{r:#}");
        assert!(counted(&r, "clients", "ed25519_sign") >= bought, "{r:#}");
        assert!(counted(&r, "clients", "hpke_seal") >= 2 * bought, "{r:#}");
        let speed = &r["speed"];
        assert_eq!(speed["product_bytes"], 16, "{r:#}");
        assert_eq!(speed["price"], "0.50 EUR", "{r:#}");
        assert_eq!(speed["products_checked"], r["successes"], "{r:#}");
        let money = &r["money"];
        assert_eq!(money["ok"], true, "{r:#}");
        assert_eq!(money["ledger_total_before_cents"], "0", "{r:#}");
        assert_eq!(money["ledger_total_after_cents"], "0", "{r:#}");
        assert_eq!(money["paid_not_completed"], 0, "{r:#}");
        assert_eq!(
            money["vendor_gain_cents"].as_u64().unwrap(),
            50 * r["successes"].as_u64().unwrap(),
            "{r:#}"
        );
        assert_eq!(money["customers_spent_cents"], money["vendor_gain_cents"]);
        assert!(r["invariant"].is_null());
    }
    // The requests bound holds: two normal-mode purchases are six
    // requests, a third does not fit in seven.
    let r = node.bench(&[
        "speed-normal",
        "--duration",
        "10",
        "--concurrency",
        "1",
        "--requests",
        "7",
    ]);
    assert_eq!(r["requests"], 6, "{r:#}");
    assert_eq!(r["successes"], 2, "{r:#}");
    assert_eq!(r["stopped_by"], "requests", "{r:#}");
    assert_eq!(r["money"]["vendor_gain_cents"], 100, "{r:#}");
}

#[test]
fn bench_refuses_a_node_that_is_not_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "http://10.1.2.3:7878",
        "http://example.com",
        "https://127.0.0.1:7878",
    ] {
        let out = agora()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--node", url, "bench", "cpo-post", "--duration", "1"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback"), "{url}: {err}");
    }
}

/// The STP scenarios: the commit authority alone (the transactions'
/// messages signed in the setup, only sent in the measured phase) and end
/// to end (both parties' steps live), every step timed, every outcome
/// verified, and the crypto bound priced from what each side did.
#[test]
fn stp_scenarios_run_against_a_real_node() {
    let node = Node::start();
    let r = node.bench(&[
        "stp-ca",
        "--duration",
        "2",
        "--concurrency",
        "4",
        "--transactions",
        "200",
    ]);
    check_report(&r, "stp-ca", &[]);
    for step in ["vote-1", "vote-2", "decide-1", "decide-2", "transaction"] {
        assert!(
            r["latency"][step]["count"].as_u64().unwrap() > 0,
            "{step}: {r:#}"
        );
    }
    let committed = r["successes"].as_u64().unwrap();
    assert_eq!(
        r["latency"]["transaction"]["count"], r["successes"],
        "{r:#}"
    );
    assert_eq!(r["setup"]["transactions_prepared"], 200, "{r:#}");
    let outcomes = &r["stp"]["outcomes"];
    assert_eq!(outcomes["ok"], true, "{r:#}");
    assert_eq!(outcomes["verified"].as_u64().unwrap(), committed, "{r:#}");
    assert!(
        outcomes["signed_tree_heads"].as_u64().unwrap() >= 1,
        "{r:#}"
    );
    if r["stopped_by"] == "all-sent" {
        assert_eq!(committed, 200, "{r:#}");
    } else {
        assert_eq!(r["stopped_by"], "duration", "{r:#}");
    }
    // The CA signs Pending, Started and Pending per transaction and checks
    // each vote and decision; the load tool only sends what its setup
    // signed.
    assert!(
        counted(&r, "node", "ed25519_sign") >= 3 * committed,
        "{r:#}"
    );
    assert!(
        counted(&r, "node", "ed25519_verify") >= 4 * committed,
        "{r:#}"
    );
    assert_eq!(counted(&r, "clients", "ed25519_sign"), 0, "{r:#}");

    let r = node.bench(&["stp-e2e", "--duration", "2", "--concurrency", "4"]);
    check_report(&r, "stp-e2e", &[]);
    for step in [
        "vote-begin",
        "vote-accept",
        "vote-started",
        "decide-1",
        "decide-2",
        "decide-again",
        "transaction",
    ] {
        assert!(
            r["latency"][step]["count"].as_u64().unwrap() > 0,
            "{step}: {r:#}"
        );
    }
    let committed = r["successes"].as_u64().unwrap();
    let outcomes = &r["stp"]["outcomes"];
    assert_eq!(outcomes["ok"], true, "{r:#}");
    assert_eq!(
        outcomes["verified"].as_u64().unwrap(),
        2 * committed,
        "{r:#}"
    );
    // Both parties' steps ran here: a Begin, two votes, two Data, an End
    // and two Decides signed, two key agreements, per transaction.
    assert!(
        counted(&r, "clients", "ed25519_sign") >= 8 * committed,
        "{r:#}"
    );
    assert!(counted(&r, "clients", "x25519") >= 2 * committed, "{r:#}");
    assert!(
        counted(&r, "node", "ed25519_sign") >= 3 * committed,
        "{r:#}"
    );

    // The requests bound holds: a transaction end to end is six requests,
    // a third does not fit in thirteen.
    let r = node.bench(&[
        "stp-e2e",
        "--duration",
        "10",
        "--concurrency",
        "1",
        "--requests",
        "13",
    ]);
    assert_eq!(r["requests"], 12, "{r:#}");
    assert_eq!(r["successes"], 2, "{r:#}");
    assert_eq!(r["stopped_by"], "requests", "{r:#}");
}
