#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Every client flow survives an interruption (issue 16, item 1): the CLI
//! talks to a real node (`agora up`) through a proxy that cuts one message
//! (and all after it, as a node that went away would): either before the
//! node sees it, or after the node has done its step and before the answer
//! reaches the client. The command fails, prints what is pending and the
//! one command that finishes it; that command, run as printed, finishes it;
//! and no money is lost or taken twice.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where the proxy cuts a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// The request never reaches the node: the connection closes.
    BeforeNode,
    /// The node takes the request and starts answering; the client gets
    /// nothing of the answer: the connection closes.
    AfterNode,
    /// The request reaches the node with its last byte flipped (this one
    /// only; later ones pass).
    Damage,
}

/// A TCP proxy to the node that counts the HTTP requests it forwards and
/// cuts the `at`-th one and every later one.
struct Proxy {
    port: u16,
    count: Arc<AtomicUsize>,
    plan: Arc<Mutex<Option<(usize, Cut)>>>,
}

impl Proxy {
    fn start(node_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let plan: Arc<Mutex<Option<(usize, Cut)>>> = Arc::new(Mutex::new(None));
        let (c, p) = (count.clone(), plan.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (c, p) = (c.clone(), p.clone());
                std::thread::spawn(move || relay(client, node_port, &c, &p));
            }
        });
        Proxy { port, count, plan }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Counts from zero again, and cuts the `at`-th request on (or none).
    fn plan(&self, cut: Option<(usize, Cut)>) {
        self.count.store(0, Ordering::SeqCst);
        *self.plan.lock().unwrap() = cut;
    }

    fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1.1 request (head and a Content-Length body) from `r`.
fn read_request(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding"),
        "the proxy reads Content-Length bodies only"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    buf.extend_from_slice(&body);
    Some(buf)
}

fn relay(
    mut client: TcpStream,
    node_port: u16,
    count: &AtomicUsize,
    plan: &Mutex<Option<(usize, Cut)>>,
) {
    let Ok(mut node) = TcpStream::connect(("127.0.0.1", node_port)) else {
        return;
    };
    // Set before a request to be cut after the node goes upstream: the
    // answer is then dropped at its first byte.
    let cut_answer = Arc::new(AtomicBool::new(false));
    let (mut from_node, mut to_client) = (node.try_clone().unwrap(), client.try_clone().unwrap());
    let cut = cut_answer.clone();
    let answers = std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = match from_node.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cut.load(Ordering::SeqCst) {
                break;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
        let _ = from_node.shutdown(Shutdown::Both);
    });
    while let Some(req) = read_request(&mut client) {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let how = match *plan.lock().unwrap() {
            Some((at, Cut::Damage)) if n == at => Some(Cut::Damage),
            Some((_, Cut::Damage)) => None,
            Some((at, how)) if n >= at => Some(how),
            _ => None,
        };
        let mut req = req;
        if how == Some(Cut::Damage) {
            *req.last_mut().unwrap() ^= 0x01;
        }
        if how == Some(Cut::BeforeNode) {
            break;
        }
        if how == Some(Cut::AfterNode) {
            cut_answer.store(true, Ordering::SeqCst);
        }
        if node.write_all(&req).is_err() {
            break;
        }
    }
    if !cut_answer.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = node.shutdown(Shutdown::Both);
    }
    let _ = answers.join();
    let _ = client.shutdown(Shutdown::Both);
}

/// Runs `agora` with `args` as a user would type them (the data directory
/// and the node are among them), in `work`.
fn agora(work: &Path, args: &[String]) -> Output {
    command("agora", work)
        .args(args)
        .output()
        .expect("run agora")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The command on the `resume:` line of a failed command's stderr, after
/// a `pending:` line.
fn resume_command(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume:"))
        .unwrap_or_else(|| panic!("no resume command printed:\n{stderr}"));
    assert!(
        stderr.lines().any(|l| l.starts_with("pending: ")),
        "what is pending is said: {stderr}"
    );
    let line = line.trim();
    assert!(line.starts_with("agora "), "{line}");
    line.to_owned()
}

/// Runs a printed command line as the user would: by the shell, with the
/// `agora` binary on the PATH.
fn run_line(work: &Path, line: &str) -> Output {
    command("bash", work)
        .arg("-c")
        .arg(line)
        .output()
        .expect("run bash")
}

const DEMO_KEY: &str = "DEMO-KEY-1: a 16-byte key to the demo stream";
/// What the demo key product decrypts to.
const KEY_BYTES: &[u8] = b"agora-demo-key16";

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A purchase cut at each of its messages, before and after the node (and
/// its payment messages damaged), for an account and a card payment, after
/// a card load cut likewise: each ends
/// with the printed command; every product is there, each purchase is paid
/// once, the card holds what was loaded less what it paid, and the books
/// balance.
#[test]
fn purchases_and_card_loads_cut_at_each_message_finish_with_the_printed_command_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut node = Node::start(&data, port, &tmp.path().join("node.log"));
    let operator = Cli::new(&data, &tmp.path().join("operator"), Some(node.url()));
    let card = register_customer(&operator, "carol");
    let proxy = Proxy::start(port);
    let work = tmp.path().join("carol");
    std::fs::create_dir_all(&work).unwrap();
    let base = words(&["--data-dir", data.to_str().unwrap(), "--node", &proxy.url()]);
    let with = |args: &[&str]| [base.clone(), words(args)].concat();
    let account = std::fs::read_to_string(data.join("speed/customers/carol.account")).unwrap();
    let account = account.trim().to_owned();

    // A load cut before and after the node.
    let load = with(&[
        "speed",
        "card",
        "load",
        "--as",
        "carol",
        "--card",
        card.to_str().unwrap(),
        "--amount",
        "5.00 EUR",
    ]);
    for cut in [Cut::BeforeNode, Cut::AfterNode] {
        proxy.plan(Some((1, cut)));
        let out = agora(&work, &load);
        assert!(!out.status.success(), "{cut:?}: {}", text(&out));
        let resume = resume_command(&out);
        // The card is not used while its load is pending.
        let out2 = agora(&work, &load);
        assert!(!out2.status.success());
        assert!(text(&out2).contains("has not finished"), "{}", text(&out2));
        proxy.plan(None);
        let done = run_line(&work, &resume);
        assert!(done.status.success(), "{cut:?}: {}", text(&done));
        // Finished once: again, nothing is pending.
        let again = run_line(&work, &resume);
        assert!(!again.status.success());
        assert!(text(&again).contains("no load"), "{}", text(&again));
    }
    assert_eq!(cents(&data, "B-FLOAT-EUR"), 10_00, "two loads, each once");
    assert_eq!(cents(&data, &account), 20_00 - 10_00);

    // How many messages a purchase is, paid each way.
    let mut paid_cents = 0;
    let mut card_cents = 10_00;
    let mut n = 0;
    for pay in [
        &["--pay", "account"][..],
        &["--pay", "card", "--card", card.to_str().unwrap()][..],
    ] {
        let buy = |out: &str| {
            [
                with(&[
                    "speed",
                    "buy",
                    "--as",
                    "carol",
                    "--product",
                    DEMO_KEY,
                    "--out",
                    out,
                ]),
                words(pay),
            ]
            .concat()
        };
        proxy.plan(None);
        n += 1;
        let out = agora(&work, &buy(&format!("key-{n}")));
        assert!(out.status.success(), "{}", text(&out));
        let messages = proxy.requests();
        assert!(messages >= 3, "a purchase is at least three messages");
        paid_cents += 50;
        if pay[1] == "card" {
            card_cents -= 50;
        }
        // The payment's messages (the order; by card also b) are damaged
        // on their way too: refused, and finished by the printed command.
        let paying = if pay[1] == "card" { 2 } else { 1 };
        let cuts = (1..=messages).flat_map(|at| {
            let mut cuts = vec![(at, Cut::BeforeNode), (at, Cut::AfterNode)];
            if at > messages - paying {
                cuts.push((at, Cut::Damage));
            }
            cuts
        });
        for (at, cut) in cuts {
            {
                n += 1;
                let file = format!("key-{n}");
                proxy.plan(Some((at, cut)));
                let out = agora(&work, &buy(&file));
                assert!(
                    !out.status.success(),
                    "{pay:?} cut at {at} {cut:?}: {}",
                    text(&out)
                );
                let resume = resume_command(&out);
                proxy.plan(None);
                let done = run_line(&work, &resume);
                assert!(
                    done.status.success(),
                    "{pay:?} cut at {at} {cut:?}, resumed with {resume}: {}",
                    text(&done)
                );
                assert_eq!(
                    std::fs::read(work.join(&file)).unwrap(),
                    KEY_BYTES,
                    "{pay:?} cut at {at} {cut:?}"
                );
                paid_cents += 50;
                if pay[1] == "card" {
                    card_cents -= 50;
                }
                // Run again, the finished purchase is not paid again: a
                // payment says it is done; a purchase begun afresh refuses
                // to replace the product it wrote.
                let again = run_line(&work, &resume);
                if resume.contains(" speed pay ") {
                    assert!(again.status.success(), "{}", text(&again));
                    assert!(text(&again).contains("is paid"), "{}", text(&again));
                } else {
                    assert!(!again.status.success());
                    assert!(text(&again).contains("exists already"), "{}", text(&again));
                }
                assert_eq!(
                    cents(&data, "V-DEMO"),
                    paid_cents,
                    "{pay:?} cut at {at} {cut:?}"
                );
            }
        }
    }
    // Her purchases, each paid once, none left pending.
    let listed = agora(
        &work,
        &with(&["--json", "speed", "purchases", "--as", "carol"]),
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len() as i64, paid_cents / 50, "{listed:?}");
    assert!(listed.iter().all(|p| p["status"] == "paid"), "{listed:?}");
    let card_file = agora_speed::purse::Card::from_bytes(&std::fs::read(&card).unwrap()).unwrap();
    assert_eq!(card_file.balance().cents, card_cents as u64);
    assert_eq!(cents(&data, "B-FLOAT-EUR"), card_cents);
    assert_eq!(
        cents(&data, &account),
        20_00 - 10_00 - (paid_cents - (10_00 - card_cents)),
        "the account paid the account purchases once each"
    );
    assert_eq!(books_balance(&data), 0);
    assert_eq!(
        node.terminate(std::time::Duration::from_secs(30)).code(),
        Some(0)
    );
}

/// Runs `args` (through the proxy, uncut) and returns its JSON output.
fn json_ok(work: &Path, args: &[String]) -> serde_json::Value {
    let mut a = vec!["--json".to_owned()];
    a.extend_from_slice(args);
    let out = agora(work, &a);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the command `make(k)` gives once uncut to count its messages, then
/// once for each message cut before and after the node, each time running
/// the printed command to its end. `make` prepares what the command needs
/// (uncut) and returns its arguments and the file it writes. Returns how
/// many times the command was run to its end.
fn cut_everywhere(
    proxy: &Proxy,
    work: &Path,
    mut make: impl FnMut(usize) -> (Vec<String>, Option<String>),
) -> usize {
    proxy.plan(None);
    let (args, file) = make(0);
    proxy.plan(None);
    let out = agora(work, &args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    let messages = proxy.requests();
    let mut done = 1;
    for at in 1..=messages {
        for cut in [Cut::BeforeNode, Cut::AfterNode] {
            proxy.plan(None);
            let (args, file) = make(done);
            proxy.plan(Some((at, cut)));
            let out = agora(work, &args);
            assert!(
                !out.status.success(),
                "{args:?} cut at {at} {cut:?}: {}",
                text(&out)
            );
            let resume = resume_command(&out);
            proxy.plan(None);
            let finished = run_line(work, &resume);
            assert!(
                finished.status.success(),
                "{args:?} cut at {at} {cut:?}, resumed with {resume}: {}",
                text(&finished)
            );
            if let Some(f) = file {
                assert!(work.join(&f).exists(), "{f} written");
            }
            done += 1;
        }
    }
    let _ = file;
    done
}

/// The CPO conversations (approval, post, browse session, bind, bid) cut
/// at each message before and after the node: each command prints what is
/// pending and the command that finishes it, which does; each CPO is
/// posted once and bound by the seller who was told so, and a seller's bid
/// is counted once.
#[test]
fn cpo_conversations_cut_at_each_message_finish_with_the_printed_command_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut node = Node::start(&data, port, &tmp.path().join("node.log"));
    let work = tmp.path().join("work");
    let operator = Cli::new(&data, &work, Some(node.url()));
    for (name, role, amount) in [
        ("bob", "buyer", "500.00 EUR"),
        ("pam", "seller", "900.00 EUR"),
    ] {
        operator.ok(&["key", "new", name]);
        issue_bond(&operator, name, amount, role, &format!("{name}-bond.pem"));
    }
    let proxy = Proxy::start(port);
    let base = words(&["--data-dir", data.to_str().unwrap(), "--node", &proxy.url()]);
    let with = |args: &[&str]| [base.clone(), words(args)].concat();
    let draft = |name: &str| {
        let ccpo = format!("{name}.ccpo");
        let goods = format!("goods {name}");
        json_ok(
            &work,
            &with(&[
                "cpo",
                "draft",
                "--buyer",
                "bob",
                "--bond",
                "bob-bond.pem",
                "--goods",
                &goods,
                "--price",
                "100.00 EUR",
                "--ends-in",
                "1h",
                "--out",
                &ccpo,
            ]),
        );
        ccpo
    };
    let approve = |name: &str, bidding: bool| {
        let ccpo = draft(name);
        let acc = format!("{name}.acc");
        let mut args = vec!["cpo", "approve", &ccpo, "--buyer", "bob", "--out", &acc];
        if bidding {
            args.push("--bidding");
        }
        json_ok(&work, &with(&args));
        acc
    };
    let post = |name: &str, bidding: bool| -> String {
        let acc = approve(name, bidding);
        let posted = format!("{name}.posted");
        let v = json_ok(
            &work,
            &with(&["cpo", "post", &acc, "--buyer", "bob", "--out", &posted]),
        );
        v["id"].as_str().unwrap().to_owned()
    };

    cut_everywhere(&proxy, &work, |k| {
        let name = format!("a{k}");
        let ccpo = draft(&name);
        let acc = format!("{name}.acc");
        (
            with(&["cpo", "approve", &ccpo, "--buyer", "bob", "--out", &acc]),
            Some(acc),
        )
    });
    let posts = cut_everywhere(&proxy, &work, |k| {
        let name = format!("p{k}");
        let acc = approve(&name, false);
        let posted = format!("{name}.posted");
        (
            with(&["cpo", "post", &acc, "--buyer", "bob", "--out", &posted]),
            Some(posted),
        )
    });
    let board = json_ok(
        &work,
        &with(&["cpo", "list", "--search", "goods", "--limit", "500"]),
    );
    let mut names: Vec<String> = board
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["goods"].as_str().unwrap().to_owned())
        .filter(|g| g.starts_with("goods p"))
        .collect();
    let listed = names.len();
    names.dedup();
    assert_eq!(
        (listed, names.len()),
        (posts, posts),
        "each CPO posted once: {board}"
    );

    cut_everywhere(&proxy, &work, |_| {
        (
            with(&[
                "cpo",
                "session",
                "--seller",
                "pam",
                "--bond",
                "pam-bond.pem",
            ]),
            None,
        )
    });
    let mut bound = Vec::new();
    cut_everywhere(&proxy, &work, |k| {
        let id = post(&format!("b{k}"), false);
        bound.push(id.clone());
        let out = format!("b{k}.bound");
        (
            with(&["cpo", "bind", &id, "--seller", "pam", "--out", &out]),
            Some(out),
        )
    });
    for id in &bound {
        let v = json_ok(&work, &with(&["cpo", "status", id]));
        assert_eq!(v["status"], "bound", "{v}");
    }
    let mut bids = Vec::new();
    cut_everywhere(&proxy, &work, |k| {
        let id = post(&format!("d{k}"), true);
        bids.push(id.clone());
        let out = format!("d{k}.receipt");
        let args = with(&[
            "cpo",
            "bid",
            &id,
            "--seller",
            "pam",
            "--price",
            "90.00 EUR",
            "--out",
            &out,
        ]);
        (args, Some(out))
    });
    for (k, id) in bids.iter().enumerate() {
        let dir = format!("bids-{k}");
        let v = json_ok(
            &work,
            &with(&["cpo", "bids", id, "--seller", "pam", "--out-dir", &dir]),
        );
        assert_eq!(
            v["bids"].as_array().unwrap().len(),
            1,
            "one bid counted: {v}"
        );
    }
    assert_eq!(
        node.terminate(std::time::Duration::from_secs(30)).code(),
        Some(0)
    );
}
