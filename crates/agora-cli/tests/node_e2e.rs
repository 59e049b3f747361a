#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `agora up` as a real process, and buyers and sellers reaching it with
//! `--node`: the walk-through of the README through HTTP, a client with its
//! own data directory that pins the node first, a graceful stop on SIGTERM,
//! and a SIGKILL in the middle of a bind load after which every binding a
//! seller was told of is still there and no CPO is bound twice.
//!
//! Every test kills its node when it ends, also when it fails ([`Node`]'s
//! `Drop`).

mod common;

use agora_client::transport::{CpoTransport, NodeClient};
use agora_core::crypto::{os_rng, SigningKey, X25519Secret};
use agora_core::wire::cose;
use agora_core::{KeyId, Money, Timestamp};
use agora_cpo::msg::BoundCpo;
use agora_cpo::seller::SellerSession;
use agora_cpo::{buyer, seller, Ccpo, CcpoDraft, FirstCome, Keys, Mode, Peer};
use agora_node::cpo::Role;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn buyers_and_sellers_walk_through_a_running_node() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, free_port(), &tmp.path().join("node.log"));
    let cli = Cli::new(&data, &tmp.path().join("work"), Some(node.url()));

    for name in ["alice", "pam", "sam"] {
        cli.ok(&["key", "new", name]);
    }
    issue_bond(&cli, "alice", "500.00 EUR", "buyer", "alice-bond.pem");
    issue_bond(&cli, "pam", "2000.00 EUR", "seller", "pam-bond.pem");
    issue_bond(&cli, "sam", "2000.00 EUR", "seller", "sam-bond.pem");

    // First come (protocols 1 to 4).
    let started = Instant::now();
    cli.ok(&[
        "cpo",
        "draft",
        "--buyer",
        "alice",
        "--bond",
        "alice-bond.pem",
        "--goods",
        "A first edition of Applied Cryptography",
        "--price",
        "120.00 EUR",
        "--days",
        "30",
        "--out",
        "book.ccpo",
    ]);
    let out = cli.ok(&[
        "cpo",
        "approve",
        "book.ccpo",
        "--buyer",
        "alice",
        "--out",
        "book.acceptance",
    ]);
    assert!(out.contains("accepted CPO"), "{out}");
    let out = cli.ok(&[
        "cpo",
        "post",
        "book.acceptance",
        "--buyer",
        "alice",
        "--out",
        "book.posted",
    ]);
    assert!(out.contains("posted (first-come)"), "{out}");
    // The slowest of these three commands sets the bidding window below.
    let per_command = started.elapsed() / 3;
    let again = cli.ok(&[
        "cpo",
        "post",
        "book.acceptance",
        "--buyer",
        "alice",
        "--out",
        "again.posted",
    ]);
    // Posted once: the second post is told so, and gets the posted CPO.
    assert!(again.contains("was posted already"), "{again}");
    assert_eq!(
        std::fs::read(cli.work.join("again.posted")).unwrap(),
        std::fs::read(cli.work.join("book.posted")).unwrap()
    );
    let list = cli.ok(&["cpo", "list"]);
    assert!(list.contains("120.00 EUR  first-come"), "{list}");
    let id = cli.ok(&["cpo", "list", "--ids"]).trim().to_owned();
    assert_eq!(id.len(), 64, "one CPO: {id}");

    cli.ok(&[
        "cpo",
        "session",
        "--seller",
        "pam",
        "--bond",
        "pam-bond.pem",
        "--hours",
        "8",
    ]);
    cli.ok(&[
        "cpo",
        "session",
        "--seller",
        "sam",
        "--bond",
        "sam-bond.pem",
        "--hours",
        "8",
    ]);
    let out = cli.ok(&[
        "cpo",
        "bind",
        &id,
        "--seller",
        "pam",
        "--offer",
        "Ships tomorrow",
        "--out",
        "book.bound",
    ]);
    assert!(out.contains("pam bound CPO"), "{out}");
    let err = cli.fails(&["cpo", "bind", &id, "--seller", "sam", "--out", "sam.bound"]);
    assert_eq!(
        err.trim(),
        "error: the server refused the binding: this CPO is already bound"
    );
    let v = cli.json(&["cpo", "bind", &id, "--seller", "sam", "--out", "sam.bound"]);
    assert_eq!(v["error"]["code"], "refused", "{v}");
    assert!(cli.ok(&["cpo", "status", &id]).contains("status   bound"));
    assert_eq!(cli.json(&["cpo", "status", &id])["status"], "bound");
    let (status, body) = http_get(node.port, &format!("/v1/cpo/board/{id}")).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"bound\""), "{body}");

    // Alice fetches her binding; Pam proves she holds the bond's key.
    cli.ok(&[
        "cpo",
        "binding",
        &id,
        "--buyer",
        "alice",
        "--out",
        "book.contract",
    ]);
    cli.ok(&[
        "cpo",
        "challenge",
        "--bound",
        "book.contract",
        "--verifier",
        "alice",
        "--out",
        "book.challenge",
    ]);
    cli.ok(&[
        "cpo",
        "prove",
        "--challenge",
        "book.challenge",
        "--bound",
        "book.bound",
        "--seller",
        "pam",
        "--out",
        "pam.proof",
    ]);
    let out = cli.ok(&[
        "cpo",
        "verify-proof",
        "--proof",
        "pam.proof",
        "--challenge",
        "book.challenge",
        "--bound",
        "book.contract",
    ]);
    assert!(out.contains("proof valid"), "{out}");
    cli.ok(&[
        "cpo",
        "prove",
        "--challenge",
        "book.challenge",
        "--bound",
        "book.bound",
        "--seller",
        "sam",
        "--out",
        "sam.proof",
    ]);
    let err = cli.fails(&[
        "cpo",
        "verify-proof",
        "--proof",
        "sam.proof",
        "--challenge",
        "book.challenge",
        "--bound",
        "book.contract",
    ]);
    assert!(err.contains("the proof is refused"), "{err}");
    let out = cli.ok(&["evidence", "verify", "book.bound"]);
    assert!(out.contains("over CPO_BOUND_CPO"), "{out}");

    // Bidding (protocols 5 and 6): a window of 3 s, longer only if this
    // machine is too slow to approve, post and bid twice within it.
    let window = Duration::from_secs(3).max(per_command * 8);
    let window_arg = format!("{}s", window.as_secs_f64().ceil() as u64);
    let drafted = Instant::now();
    cli.ok(&[
        "cpo",
        "draft",
        "--buyer",
        "alice",
        "--bond",
        "alice-bond.pem",
        "--goods",
        "A tea set for six",
        "--price",
        "80.00 EUR",
        "--ends-in",
        &window_arg,
        "--out",
        "tea.ccpo",
    ]);
    cli.ok(&[
        "cpo",
        "approve",
        "tea.ccpo",
        "--buyer",
        "alice",
        "--bidding",
        "--out",
        "tea.acceptance",
    ]);
    let posted = cli.json(&[
        "cpo",
        "post",
        "tea.acceptance",
        "--buyer",
        "alice",
        "--out",
        "tea.posted",
    ]);
    assert_eq!(posted["mode"], "bidding", "{posted}");
    let tea = posted["id"].as_str().unwrap().to_owned();
    cli.ok(&[
        "cpo",
        "bid",
        &tea,
        "--seller",
        "pam",
        "--price",
        "75.00 EUR",
        "--out",
        "pam.receipt",
    ]);
    cli.ok(&[
        "cpo",
        "bid",
        &tea,
        "--seller",
        "sam",
        "--price",
        "70.00 EUR",
        "--out",
        "sam.receipt",
    ]);
    let closes = drafted + window + Duration::from_millis(1500);
    if let Some(left) = closes.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    let award = cli.json(&["cpo", "award", &tea, "--out-dir", "tea-award"]);
    assert_eq!(award["bids"], 2, "{award}");
    assert!(award["winner_receipt"].is_string(), "{award}");
    assert!(cli.work.join("tea-award/award.cose").exists());
    let out = cli.ok(&["cpo", "notice", &tea, "--receipt", "pam.receipt"]);
    assert!(out.contains("the bid of 75.00 EUR lost"), "{out}");
    let out = cli.ok(&[
        "cpo",
        "notice",
        &tea,
        "--receipt",
        "sam.receipt",
        "--out",
        "sam.notice",
    ]);
    assert!(out.contains("the bid of 70.00 EUR won"), "{out}");
    // Had Sam lost her BID_RECEIPT, she would fetch it again with a signed
    // request (and only hers: Pam's is not among them); her notice then
    // checks against the recovered file.
    let sam_bids = cli.json(&[
        "cpo",
        "bids",
        &tea,
        "--seller",
        "sam",
        "--out-dir",
        "sam-bids",
    ]);
    let listed = sam_bids["bids"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{sam_bids}");
    assert_eq!(listed[0]["price"], "70.00 EUR", "{sam_bids}");
    let file = listed[0]["file"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read(cli.work.join(&file)).unwrap(),
        std::fs::read(cli.work.join("sam.receipt")).unwrap(),
        "the receipt as the server signed it"
    );
    let out = cli.ok(&["cpo", "notice", &tea, "--receipt", &file]);
    assert!(out.contains("the bid of 70.00 EUR won"), "{out}");
    // A second award gives the same one.
    let again = cli.json(&["cpo", "award", &tea, "--out-dir", "tea-award-2"]);
    assert_eq!(again["winner_receipt"], award["winner_receipt"]);
    assert_eq!(
        std::fs::read(cli.work.join("tea-award/award.cose")).unwrap(),
        std::fs::read(cli.work.join("tea-award-2/award.cose")).unwrap()
    );
    assert!(cli.ok(&["cpo", "status", &tea]).contains("status   bound"));
    let out = cli.ok(&["evidence", "verify", "tea-award/award.cose"]);
    assert!(out.contains("over CPO_BID_AWARD"), "{out}");

    let out = cli.ok(&["cpo", "end-session", "--seller", "pam"]);
    assert!(out.contains("browse session ended"), "{out}");
    let err = cli.fails(&["cpo", "sweep"]);
    assert!(err.contains("sweeps by itself"), "{err}");

    // The client's copies of what it received are in the archive beside the
    // node's, and the chain is intact.
    let kinds: Vec<String> = cli
        .json(&["evidence", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    for k in [
        "cpo/bound-cpo",
        "cpo/bid-receipt",
        "cpo/award",
        "cpo/bid-notice",
        "cpo/binding",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} archived: {kinds:?}");
    }
    assert!(cli
        .ok(&["evidence", "verify", "--archive"])
        .contains("evidence archive intact"));

    // SIGTERM: the node finishes what is in flight and exits 0.
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit {status}:\n{}", node.logs());
    assert!(http_get(node.port, "/healthz").is_err(), "nothing listens");
}

#[test]
fn a_client_with_its_own_data_directory_pins_the_node_first() {
    let tmp = tempfile::tempdir().unwrap();
    let node_data = tmp.path().join("node");
    let node = Node::start(&node_data, free_port(), &tmp.path().join("node.log"));
    let operator = Cli::new(&node_data, &tmp.path().join("operator"), None);
    let carol_dir = tmp.path().join("carol");
    let carol = Cli::new(
        &carol_dir.join("data"),
        &carol_dir.join("work"),
        Some(node.url()),
    );
    let carol_local = Cli::new(&carol_dir.join("data"), &carol_dir.join("work"), None);

    carol_local.ok(&["init"]);
    carol_local.ok(&["key", "new", "carol"]);
    carol_local.ok(&["key", "export", "carol", "--out-dir", "../../operator"]);
    operator.ok(&[
        "agency",
        "issue-bond",
        "--agency",
        "agora-bonding",
        "--holder-ed25519",
        "carol.ed25519.pem",
        "--holder-x25519",
        "carol.x25519.pem",
        "--amount",
        "100 EUR",
        "--roles",
        "buyer",
        "--out",
        "../carol/work/carol-bond.pem",
    ]);
    let draft = [
        "cpo",
        "draft",
        "--buyer",
        "carol",
        "--bond",
        "carol-bond.pem",
        "--goods",
        "a bicycle bell",
        "--price",
        "9.50 EUR",
        "--out",
        "bell.ccpo",
    ];

    // Her trust store knows her own data directory's roles, not the node's.
    let err = carol.fails(&draft);
    assert!(
        err.contains("is not pinned") && err.contains("agora cpo trust-node"),
        "{err}"
    );
    let (_, doc) = {
        let c = NodeClient::new(&node.url()).unwrap();
        let doc: serde_json::Value = c.get_json("/v1/node").unwrap();
        (c, doc)
    };
    let server_id = doc["services"]["cpo"]["server"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let arbiter_id = doc["services"]["cpo"]["arbiter"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = carol.fails(&[
        "cpo",
        "trust-node",
        &node.url(),
        "--expect-server",
        &"0".repeat(64),
    ]);
    assert!(err.contains("nothing pinned"), "{err}");
    carol.fails(&draft);
    let out = carol_local.ok(&[
        "cpo",
        "trust-node",
        &node.url(),
        "--expect-server",
        &server_id,
    ]);
    assert!(
        out.contains(&server_id) && out.contains(&arbiter_id),
        "{out}"
    );
    assert!(out.contains("agora-bonding"), "its agency too: {out}");
    let again = carol_local.json(&["cpo", "trust-node", &node.url()]);
    assert_eq!(again["server"]["state"], "already pinned", "{again}");
    assert_eq!(again["agencies"][0]["state"], "already pinned", "{again}");

    let drafted = carol.json(&draft);
    let id = drafted["id"].as_str().unwrap().to_owned();
    // Without --node her own data directory's arbiter is asked: not the one
    // the CCPO names.
    let err = carol_local.fails(&[
        "cpo",
        "approve",
        "bell.ccpo",
        "--buyer",
        "carol",
        "--out",
        "x",
    ]);
    assert!(err.contains("not this node's"), "{err}");
    carol.ok(&[
        "cpo",
        "approve",
        "bell.ccpo",
        "--buyer",
        "carol",
        "--out",
        "bell.acceptance",
    ]);
    carol.ok(&[
        "cpo",
        "post",
        "bell.acceptance",
        "--buyer",
        "carol",
        "--out",
        "bell.posted",
    ]);
    assert_eq!(carol.json(&["cpo", "status", &id])["status"], "open");
    assert!(carol.ok(&["cpo", "list", "--search", "bell"]).contains(&id));
    // The operator sees it on the node's board; her own board is empty.
    assert!(operator.ok(&["cpo", "list", "--ids"]).contains(&id));
    assert!(carol_local.ok(&["cpo", "list"]).contains("no open CPOs"));
    // Her archive keeps her copies, which verify against the pinned keys.
    let kinds = carol_local.ok(&["evidence", "list"]);
    assert!(
        kinds.contains("cpo/arbiter-acceptance") && kinds.contains("cpo/posted"),
        "{kinds}"
    );
    let out = carol_local.ok(&["evidence", "verify", "bell.posted"]);
    assert!(out.contains(&server_id), "{out}");

    // A node that cannot be reached: one line, saying so.
    let gone = Cli::new(
        &carol_dir.join("data"),
        &carol_dir.join("work"),
        Some(format!("http://127.0.0.1:{}", free_port())),
    );
    let url = gone.node.clone().unwrap();
    for args in [&["cpo", "list"][..], &["speed", "catalogue"], &["status"]] {
        let err = gone.fails(args);
        assert_eq!(
            err.trim(),
            format!("error: connection refused: is `agora up` running at {url}?"),
            "{args:?}"
        );
    }
}

// ------------------------------------------------------------ crash test

/// A party made here, with its bond issued by the node's agency.
struct Party {
    keys: Keys,
    bond: Vec<u8>,
}

fn make_party(operator: &Cli, name: &str, role: &str, amount: &str) -> Party {
    let mut rng = os_rng();
    let keys = Keys {
        sign: SigningKey::generate(&mut rng),
        enc: X25519Secret::generate(&mut rng),
    };
    let dir = &operator.work;
    std::fs::write(
        dir.join(format!("{name}.ed.pem")),
        agora_pki::pem::ed25519_public_pem(&keys.sign.verifying_key()),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.x.pem")),
        agora_pki::pem::x25519_public_pem(&keys.enc.public()),
    )
    .unwrap();
    let out = format!("{name}-bond.pem");
    operator.ok(&[
        "agency",
        "issue-bond",
        "--agency",
        "agora-bonding",
        "--holder-ed25519",
        &format!("{name}.ed.pem"),
        "--holder-x25519",
        &format!("{name}.x.pem"),
        "--amount",
        amount,
        "--roles",
        role,
        "--out",
        &out,
    ]);
    let pem = std::fs::read_to_string(dir.join(&out)).unwrap();
    Party {
        keys,
        bond: agora_pki::pem::decode(&pem, "CERTIFICATE").unwrap(),
    }
}

fn node_peer(doc: &serde_json::Value, role: &str) -> Peer {
    let v = &doc["services"]["cpo"][role];
    let mut ed = [0u8; 32];
    hex::decode_to_slice(v["ed25519"].as_str().unwrap(), &mut ed).unwrap();
    let x = hex::decode(v["x25519"].as_str().unwrap()).unwrap();
    Peer {
        sign: agora_core::crypto::VerifyingKey::from_bytes(&ed).unwrap(),
        enc: agora_core::crypto::X25519Public::from_slice(&x).unwrap(),
    }
}

/// Protocols 1 and 2 through `node`: a first-come CPO on its board.
fn post_cpo(node: &NodeClient, buyer: &Party, arbiter: &Peer, server: &Peer, n: usize) -> [u8; 32] {
    let mut rng = os_rng();
    let now = Timestamp::now_from_system_clock();
    let ccpo = Ccpo::new(
        CcpoDraft {
            arbiter: arbiter.id(),
            server: server.id(),
            goods: format!("crate number {n}"),
            price: "10.00 EUR".parse::<Money>().unwrap(),
            start: now,
            end: now.plus_secs(86_400),
            terms: String::new(),
            bond: buyer.bond.clone(),
        },
        &mut rng,
    )
    .unwrap();
    let (m0, b) =
        buyer::request_approval::<FirstCome>(&buyer.keys, &mut rng, ccpo, "", arbiter).unwrap();
    let r1 = node.call(Role::Arbiter, &m0, None).unwrap();
    let (m2, b) = b.handle(&buyer.keys, &mut rng, &r1.body).unwrap();
    let r3 = node.call(Role::Arbiter, &m2, r1.step).unwrap();
    let acc = b
        .handle(&buyer.keys, Timestamp::now_from_system_clock(), &r3.body)
        .unwrap();
    let (m0, b) = buyer::request_post(&buyer.keys, &mut rng, &acc, server).unwrap();
    let r1 = node.call(Role::Server, &m0, None).unwrap();
    let (m2, b) = b.handle(&buyer.keys, &mut rng, &r1.body).unwrap();
    let r3 = node.call(Role::Server, &m2, r1.step).unwrap();
    b.handle(&buyer.keys, &r3.body).unwrap().cpo.ccpo.id
}

/// Protocol 3 through `node`.
fn open_session(node: &NodeClient, party: &Party, server: &Peer) -> SellerSession {
    let mut rng = os_rng();
    let now = Timestamp::now_from_system_clock();
    let (m0, p) = seller::request_session(
        &party.keys,
        &mut rng,
        party.bond.clone(),
        now,
        now.plus_secs(3600),
        server,
    )
    .unwrap();
    let r1 = node.call(Role::Server, &m0, None).unwrap();
    let (m2, p) = p.handle(&party.keys, &mut rng, &r1.body).unwrap();
    let r3 = node.call(Role::Server, &m2, r1.step).unwrap();
    p.handle(&party.keys, &r3.body).unwrap()
}

/// Protocol 4 through `node`: BOUND_CPO if this seller won the CPO.
fn bind(node: &NodeClient, session: &SellerSession, cpo: [u8; 32]) -> Result<Vec<u8>, String> {
    let mut rng = os_rng();
    let r0 = node
        .call(
            Role::Server,
            &session.request_listing(&mut rng, cpo, Mode::FirstCome),
            None,
        )
        .map_err(|e| e.to_string())?;
    let listing = session.open_listing(&r0.body).map_err(|e| e.to_string())?;
    let (m1, exp) = session
        .offer(&mut rng, &listing, "crash test")
        .map_err(|e| e.to_string())?;
    let r2 = node
        .call(Role::Server, &m1, None)
        .map_err(|e| e.to_string())?;
    Ok(exp
        .handle(session, &r2.body)
        .map_err(|e| e.to_string())?
        .signed)
}

/// A BOUND_CPO a seller received: her index, the CPO, the signed BOUND_CPO.
type Acked = (usize, [u8; 32], Vec<u8>);

#[test]
fn every_acknowledged_binding_survives_a_sigkill_and_none_is_doubled() {
    const CPOS: usize = 48;
    const SELLERS: usize = 6;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("node.log");
    let mut node = Node::start(&data, free_port(), &log);
    let operator = Cli::new(&data, &tmp.path().join("operator"), None);
    let client = NodeClient::new(&node.url()).unwrap();
    let doc: serde_json::Value = client.get_json("/v1/node").unwrap();
    let (arbiter, server) = (node_peer(&doc, "arbiter"), node_peer(&doc, "server"));

    let buyer = make_party(&operator, "buyer", "buyer", "1000 EUR");
    let sellers: Vec<Party> = (0..SELLERS)
        .map(|i| make_party(&operator, &format!("seller{i}"), "seller", "1000 EUR"))
        .collect();
    let cpos: Vec<[u8; 32]> = (0..CPOS)
        .map(|n| post_cpo(&client, &buyer, &arbiter, &server, n))
        .collect();
    let sessions: Vec<SellerSession> = sellers
        .iter()
        .map(|s| open_session(&client, s, &server))
        .collect();

    // Every seller tries every CPO, each starting elsewhere in the list; a
    // BOUND_CPO received is an acknowledged binding.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let unreachable = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            let (client, cpos) = (client.clone(), cpos.clone());
            let (acked, refused, unreachable) =
                (acked.clone(), refused.clone(), unreachable.clone());
            std::thread::spawn(move || {
                for k in 0..CPOS {
                    let cpo = cpos[(k + i * CPOS / SELLERS) % CPOS];
                    match bind(&client, &session, cpo) {
                        Ok(bound) => acked.lock().unwrap().push((i, cpo, bound)),
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            // Once the node is gone, every call fails fast.
                            if client.board(&Default::default()).is_err() {
                                unreachable.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    // SIGKILL once a quarter of the CPOs are bound: in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < CPOS / 4 {
        assert!(Instant::now() < deadline, "no binds:\n{}", node.logs());
        std::thread::sleep(Duration::from_millis(2));
    }
    node.kill();
    let acked_at_kill = acked.lock().unwrap().len();
    for t in threads {
        t.join().unwrap();
    }
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    println!(
        "{} bindings acknowledged ({acked_at_kill} when killed), {} attempts refused or failed",
        acked.len(),
        refused.load(Ordering::Relaxed)
    );
    assert!(
        unreachable.load(Ordering::Relaxed) || acked.len() < CPOS,
        "the kill did not land in the middle of the load"
    );

    // No CPO was acknowledged to two sellers.
    let mut by_cpo: BTreeMap<[u8; 32], Vec<usize>> = BTreeMap::new();
    for (i, cpo, _) in &acked {
        by_cpo.entry(*cpo).or_default().push(*i);
    }
    for (cpo, who) in &by_cpo {
        assert_eq!(
            who.len(),
            1,
            "CPO {} bound to sellers {who:?}",
            hex::encode(cpo)
        );
    }

    // Restarted on the same data directory, the node shows every
    // acknowledged binding, to the seller who was told of it.
    let node = Node::start(&data, free_port(), &log);
    let client = NodeClient::new(&node.url()).unwrap();
    let mut rng = os_rng();
    for (i, cpo, bound) in &acked {
        let status = client.cpo(cpo).unwrap();
        assert_eq!(status["status"], "bound", "{status}");
        let (req_bytes, req) = agora_cpo::delivery::request_binding(
            &buyer.keys,
            &mut rng,
            Timestamp::now_from_system_clock(),
            *cpo,
        );
        let r = client.call(Role::Server, &req_bytes, None).unwrap();
        let evidence =
            agora_cpo::delivery::open_binding_reply(&buyer.keys, &server.sign, &req, &r.body)
                .unwrap();
        let held: BoundCpo = cose::verify(&evidence, &server.sign).unwrap();
        let told: BoundCpo = cose::verify(bound, &server.sign).unwrap();
        assert_eq!(held.seller_bond, sellers[*i].bond, "bound to whom it said");
        assert_eq!(held, told);
    }
    // Any CPO bound now is bound once: a second seller is refused.
    let statuses: BTreeSet<String> = cpos
        .iter()
        .map(|c| {
            client.cpo(c).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        statuses.iter().all(|s| s == "bound" || s == "open"),
        "{statuses:?}"
    );
    let session = open_session(&client, &sellers[0], &server);
    for (i, cpo, _) in acked.iter().filter(|(i, _, _)| *i != 0).take(3) {
        let err = bind(&client, &session, *cpo).unwrap_err();
        assert!(err.contains("already bound"), "seller {i}'s CPO: {err}");
    }
    // Through the CLI too, and the archive's chain survived the kill.
    let cli = Cli::new(&data, &tmp.path().join("operator"), Some(node.url()));
    if let Some((_, cpo, _)) = acked.first() {
        let v = cli.json(&["cpo", "status", &KeyId(*cpo).to_string()]);
        assert_eq!(v["status"], "bound", "{v}");
    }
    assert!(cli
        .ok(&["evidence", "verify", "--archive"])
        .contains("evidence archive intact"));
    drop(node);
}

// ---------------------------------------------------------------- SPEED

/// Carol, registered through the CLI on the node's data directory (an
/// account with 20.00 EUR and a card with 5.00 EUR), as the test process
/// drives her: keys from the keystore, certificate, account, and the
/// node's broker and vendor from the trust store.
struct Carol {
    id: agora_speed::customer::Identity,
    account: agora_speed::AccountNumber,
    broker: Peer,
    vendor: Peer,
    card: std::path::PathBuf,
}

fn register_carol(operator: &Cli, data: &Path) -> Carol {
    let card = register_customer(operator, "carol");
    let ks = agora_pki::Keystore::load(&data.join("keystore.toml"), PASS.as_bytes()).unwrap();
    let keys = Keys {
        sign: SigningKey::from_seed(&ks.ed25519("carol.ed25519").unwrap().to_seed()),
        enc: X25519Secret::from_bytes(*ks.x25519("carol.x25519").unwrap().to_bytes()),
    };
    let dir = data.join("speed/customers");
    let pem = std::fs::read_to_string(dir.join("carol.pem")).unwrap();
    let cert = agora_pki::pem::decode(&pem, "CERTIFICATE").unwrap();
    let account = std::fs::read_to_string(dir.join("carol.account")).unwrap();
    let trust = agora_pki::TrustStore::load(&data.join("trust.toml")).unwrap();
    let peer = |role| {
        trust
            .by_role(role)
            .find_map(|p| {
                Some(Peer {
                    sign: p.verifying_key()?,
                    enc: p.x25519()?,
                })
            })
            .unwrap()
    };
    Carol {
        id: agora_speed::customer::Identity { keys, cert },
        account: agora_speed::AccountNumber::new(account.trim()).unwrap(),
        broker: peer(agora_pki::PartyRole::Broker),
        vendor: peer(agora_pki::PartyRole::Vendor),
        card,
    }
}

const DEMO_KEY: &str = "DEMO-KEY-1: a 16-byte key to the demo stream";

/// The broker is SIGKILLed after the card debited and before message b:
/// after the restart the same b gets the receipt, exactly one payment is
/// recorded, the vendor is credited once and the books still balance. The
/// same for an account payment whose reply was lost with the node.
#[test]
fn speed_broker_killed_between_debit_and_receipt_pays_exactly_once() {
    use agora_speed::purse::Card;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("node.log");
    let port = free_port();
    let mut node = Node::start(&data, port, &log);
    let operator = Cli::new(&data, &tmp.path().join("operator"), Some(node.url()));
    let carol = register_carol(&operator, &data);
    operator.ok(&[
        "speed",
        "card",
        "load",
        "--as",
        "carol",
        "--card",
        "carol.card",
        "--amount",
        "5.00 EUR",
    ]);
    let speed = agora_client::speed::SpeedClient::http(NodeClient::new(&node.url()).unwrap());
    let http = NodeClient::new(&node.url()).unwrap();
    let rng = &mut os_rng();

    // Card: negotiate, order, message a, the card debits ... and the node dies.
    let ct = tmp.path().join("key.enc");
    let agora_client::speed::Negotiated::Ready(ready) = speed
        .negotiate(
            rng,
            &carol.id,
            &carol.vendor,
            DEMO_KEY,
            &agora_speed::strategy::AcceptFirst,
            &ct,
        )
        .unwrap()
    else {
        panic!("no deal")
    };
    let order = ready.order();
    let mut card = Card::from_bytes(&std::fs::read(&carol.card).unwrap()).unwrap();
    let s1 = card.authenticate(rng);
    let (expect, po) = ready
        .pay_by_card(rng, &carol.id, &carol.broker, s1, &|_| false)
        .unwrap();
    let (a, _) = http.post_cbor("/v1/speed/broker", &po, &[]).unwrap();
    let (expect, b) = expect.on_debit(rng, &a, |s2| card.debit(s2)).unwrap();
    assert_eq!(card.balance().cents, 450);
    node.kill();
    let node = Node::start(&data, port, &log);
    let order_header = [("agora-payment-order", order.to_hex())];
    let (receipt, _) = http
        .post_cbor("/v1/speed/broker", &b, &order_header)
        .unwrap();
    let purchase = expect.on_receipt(&receipt).unwrap();
    let mut key = Vec::new();
    agora_speed::product::decrypt(&purchase.key, std::fs::File::open(&ct).unwrap(), &mut key)
        .unwrap();
    assert_eq!(key, b"agora-demo-key16");
    // b again pays nothing more; the receipt is there to be asked for.
    let e = http
        .post_cbor("/v1/speed/broker", &b, &order_header)
        .unwrap_err();
    assert_eq!(e.code(), "replayed");
    let again = http
        .post_cbor(
            "/v1/speed/broker",
            &agora_speed::customer::receipt_request(order),
            &[],
        )
        .unwrap()
        .0;
    assert_eq!(again, receipt);

    // Account: the order is committed, the reply is lost with the node.
    let agora_client::speed::Negotiated::Ready(ready) = speed
        .negotiate(
            rng,
            &carol.id,
            &carol.vendor,
            DEMO_KEY,
            &agora_speed::strategy::AcceptFirst,
            &ct,
        )
        .unwrap()
    else {
        panic!("no deal")
    };
    let order2 = ready.order();
    let (expect, po) = ready
        .pay_from_account(
            rng,
            &carol.id,
            &carol.broker,
            carol.account.clone(),
            &|_| false,
        )
        .unwrap();
    let _lost = http.post_cbor("/v1/speed/broker", &po, &[]).unwrap();
    drop(node);
    let mut node = Node::start(&data, port, &log);
    let e = http.post_cbor("/v1/speed/broker", &po, &[]).unwrap_err();
    assert_eq!(e.code(), "replayed", "the order is paid already");
    let purchase = speed.receipt(expect).unwrap();
    assert_eq!(purchase.order, order2);

    assert_eq!(node.terminate(Duration::from_secs(30)).code(), Some(0));
    assert_eq!(
        cents(&data, "V-DEMO"),
        100,
        "two purchases, each credited once"
    );
    assert_eq!(
        cents(&data, "B-FLOAT-EUR"),
        450,
        "the float is what the card holds"
    );
    assert_eq!(cents(&data, &carol.account.to_string()), 20_00 - 5_00 - 50);
    assert_eq!(books_balance(&data), 0);
}

/// Peak resident memory of a process (`VmHWM` of /proc), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A 1 GiB product bought through the node with `agora speed buy`: the
/// vendor encrypts it as it sends it, the customer hashes it as it stores
/// it and decrypts it to a file; neither process's peak RSS passes 64 MiB.
#[test]
fn a_1_gib_product_is_bought_in_constant_memory() {
    const GIB: u64 = 1 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("node.log");
    let port = free_port();
    // First run creates the data directory and the demo catalogue.
    let mut node = Node::start(&data, port, &log);
    node.terminate(Duration::from_secs(30));
    let big = tmp.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(GIB).unwrap();
    let operator = Cli::new(&data, &tmp.path().join("operator"), None);
    operator.ok(&[
        "speed",
        "vendor",
        "add-product",
        "--id",
        "BIG-1: a 1 GiB film",
        "--file",
        big.to_str().unwrap(),
        "--price",
        "2.00 EUR",
    ]);
    assert!(operator
        .fails(&[
            "speed",
            "vendor",
            "add-product",
            "--id",
            "BIG-1: a 1 GiB film",
            "--file",
            big.to_str().unwrap(),
            "--price",
            "2.00 EUR"
        ])
        .contains("already"));
    let node = Node::start(&data, port, &log);
    let buyer = Cli::new(&data, &tmp.path().join("buyer"), Some(node.url()));
    buyer.ok(&["key", "new", "carol"]);
    buyer.ok(&["speed", "register", "carol", "--deposit", "10.00 EUR"]);
    let mut c = Command::new(env!("CARGO_BIN_EXE_agora"));
    c.arg("--data-dir")
        .arg(&data)
        .args(["--node", &node.url()])
        .args([
            "speed",
            "buy",
            "--as",
            "carol",
            "--product",
            "BIG-1: a 1 GiB film",
            "--out",
            "film.bin",
        ])
        .current_dir(&buyer.work)
        .env("AGORA_PASSPHRASE", PASS)
        .env_remove("AGORA_NODE")
        .env_remove("AGORA_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Sample the buyer's peak until it exits (VmHWM is gone after exit).
    let mut buyer_peak = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                buyer_peak = buyer_peak.max(v);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "agora speed buy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node_peak = peak_rss_kib(node.child.id());
    let film = buyer.work.join("film.bin");
    assert_eq!(std::fs::metadata(&film).unwrap().len(), GIB);
    // The product is all zeros (a sparse file): spot-check it.
    let mut f = std::fs::File::open(&film).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..4 {
        f.read_exact(&mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == 0));
    }
    println!("peak RSS: node {node_peak} KiB, buyer {buyer_peak} KiB");
    assert!(node_peak < 64 * 1024, "node peak RSS {node_peak} KiB");
    assert!(buyer_peak < 64 * 1024, "buyer peak RSS {buyer_peak} KiB");
}

/// `agora speed broker add-vendor`: a vendor certificate from the node's
/// SPEED CA is registered with an account; a customer's certificate, or an
/// account number taken, is refused; the node starts with the new vendor.
#[test]
fn the_broker_registers_another_vendor() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("node.log");
    let port = free_port();
    let mut node = Node::start(&data, port, &log);
    node.terminate(Duration::from_secs(30));
    let operator = Cli::new(&data, &tmp.path().join("operator"), None);
    operator.ok(&["key", "new", "carol"]);
    operator.ok(&["speed", "register", "carol"]);
    // The bookshop's identity certificate, issued by the node's SPEED CA.
    let ks = agora_pki::Keystore::load(&data.join("keystore.toml"), PASS.as_bytes()).unwrap();
    let ca_key = SigningKey::from_seed(
        &ks.ed25519("agency-agora-speed-ca.ed25519")
            .unwrap()
            .to_seed(),
    );
    let ca_pem = std::fs::read_to_string(data.join("agencies/agora-speed-ca/agency.pem")).unwrap();
    let ca = agora_pki::Agency::from_parts(
        ca_key,
        &agora_pki::pem::decode(&ca_pem, "CERTIFICATE").unwrap(),
    )
    .unwrap();
    let shop = SigningKey::generate(&mut os_rng());
    let now = Timestamp::now_from_system_clock();
    let cert = ca
        .issue_identity(
            &agora_pki::IdentityParams {
                name: "bookshop".into(),
                key: shop.verifying_key(),
                role: agora_pki::PartyRole::Vendor,
                x25519: Some(X25519Secret::generate(&mut os_rng()).public()),
                not_before: now.minus_secs(60),
                not_after: now.plus_secs(86_400),
                crl_uri: ca.crl_uri("http://127.0.0.1:1"),
            },
            &mut os_rng(),
        )
        .unwrap();
    std::fs::write(operator.work.join("bookshop.pem"), cert.to_pem()).unwrap();
    let out = operator.ok(&[
        "speed",
        "broker",
        "add-vendor",
        "bookshop",
        "--cert",
        "bookshop.pem",
        "--account",
        "V-BOOKSHOP",
    ]);
    assert!(out.contains("registered vendor bookshop"), "{out}");
    assert!(operator
        .fails(&[
            "speed",
            "broker",
            "add-vendor",
            "bookshop2",
            "--cert",
            "bookshop.pem",
            "--account",
            "V-BOOKSHOP"
        ])
        .contains("exists"));
    let carol_pem = data.join("speed/customers/carol.pem");
    assert!(operator
        .fails(&[
            "speed",
            "broker",
            "add-vendor",
            "carol",
            "--cert",
            carol_pem.to_str().unwrap(),
            "--account",
            "V-CAROL"
        ])
        .contains("not a valid vendor"));
    assert_eq!(cents(&data, "V-BOOKSHOP"), 0);
    // The node starts with two vendors registered at its broker.
    let _node = Node::start(&data, port, &log);
}

/// SPEED commands behave alike with and without `--node`: without it they
/// host the data directory's vendor and broker in the process (as `agora
/// cpo` commands do). A purchase in each mode, one through the node and one
/// in process after the node stopped, leaves the same evidence and the
/// same books.
#[test]
fn speed_commands_run_in_process_without_a_node_as_with_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("node.log");
    let port = free_port();
    let mut node = Node::start(&data, port, &log);
    let online = Cli::new(&data, &tmp.path().join("online"), Some(node.url()));
    register_carol(&online, &data);
    let buy = |cli: &Cli, out: &str| {
        cli.json(&[
            "speed",
            "buy",
            "--as",
            "carol",
            "--product",
            DEMO_KEY,
            "--aggressive",
            "--price",
            "0.50 EUR",
            "--out",
            out,
        ])
    };
    let via_node = buy(&online, "key.bin");
    let catalogue_online = online.json(&["speed", "catalogue"]);
    node.terminate(Duration::from_secs(20));

    let offline = Cli::new(&data, &tmp.path().join("offline"), None);
    assert_eq!(
        offline.json(&["speed", "catalogue"]),
        catalogue_online,
        "the same catalogue in process"
    );
    let in_process = buy(&offline, "key.bin");
    assert_eq!(
        std::fs::read(tmp.path().join("online/key.bin")).unwrap(),
        std::fs::read(tmp.path().join("offline/key.bin")).unwrap(),
        "the same product"
    );
    assert_ne!(via_node["order"], in_process["order"], "two purchases");
    assert_eq!(
        cents(&data, "V-DEMO"),
        100,
        "the vendor paid for both: 0.50 EUR twice"
    );
    assert_eq!(books_balance(&data), 0, "the books balance");
}

/// A connection to the node on loopback `port` from 127.0.0.`last` (all of
/// 127/8 reaches loopback on Linux), so that an attacker's connections are
/// counted apart from the honest client's 127.0.0.1.
fn connect_from(rt: &tokio::runtime::Runtime, last: u8, port: u16) -> TcpStream {
    let s = rt
        .block_on(async move {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0)))?;
            sock.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .await
        })
        .expect("connect")
        .into_std()
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// A value of `/metrics` (an unlabelled gauge or counter).
fn metric(port: u16, name: &str) -> f64 {
    let (_, text) = http_get(port, "/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// The attack of issue 15: 600 connections that send half a request each
/// (300 a head and 3 bytes of a 1,000-byte body, 300 part of a head) held
/// all 512 work slots of the node, and the board, the arbiter and `agora cpo
/// list` answered 503 while they lasted. Now they hold connections only:
/// an honest `agora cpo list` and an approval succeed meanwhile, the slow
/// ones are cut at their time bounds, and with slow uploads open a SIGTERM
/// stops the node within its shutdown grace.
#[test]
fn six_hundred_slow_clients_do_not_lock_out_a_listing_and_an_approval() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut node = Node::start(&data, port, &tmp.path().join("node.log"));
    let operator = Cli::new(&data, &tmp.path().join("operator"), None);
    let remote = Cli::new(&data, &tmp.path().join("remote"), Some(node.url()));
    let client = NodeClient::new(&node.url()).unwrap();
    let doc: serde_json::Value = client.get_json("/v1/node").unwrap();
    let (arbiter, server) = (node_peer(&doc, "arbiter"), node_peer(&doc, "server"));
    let buyer = make_party(&operator, "buyer", "buyer", "1000 EUR");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Three attacker addresses, 200 connections each (within the default
    // share of 256 per address, so that all 600 are really held).
    let mut slow: Vec<(bool, TcpStream)> = (0..600)
        .map(|i| {
            let mut s = connect_from(&rt, 2 + (i % 3) as u8, port);
            let body = i % 2 == 0;
            if body {
                s.write_all(
                    b"POST /v1/cpo/arbiter HTTP/1.1\r\nHost: node\r\n\
                      Content-Type: application/cbor\r\nContent-Length: 1000\r\n\r\nabc",
                )
                .unwrap();
            } else {
                s.write_all(b"GET /v1/cpo/board HTTP/1.1\r\nHost: node\r\nX-Slow: ")
                    .unwrap();
            }
            (body, s)
        })
        .collect();

    // They are all held (the 600, and the connection asking), half of
    // them receiving.
    // (Connections are admitted in the order they were accepted, so the
    // one asking comes after the 600.)
    assert!(metric(port, "agora_connections") >= 601.0);
    let deadline = Instant::now() + Duration::from_secs(8);
    while metric(port, "agora_http_receiving") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the slow bodies are being received"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ready, why) = http_get(port, "/readyz").unwrap();
    assert_eq!(ready, 200, "{why}");
    // Meanwhile: the honest listing (a CLI process) and an approval and a
    // post (protocols 1 and 2 over HTTP). Before issue 15 the listing
    // answered 503 for as long as the slow ones lasted.
    let list = remote.ok(&["cpo", "list"]);
    assert!(list.contains("no open CPOs"), "{list}");
    let id = post_cpo(&client, &buyer, &arbiter, &server, 1);
    assert!(remote
        .ok(&["cpo", "list", "--ids"])
        .contains(&hex::encode(id)));

    // Each is cut at its bound: a slow body gets 408, a slow head is closed.
    for (body, s) in slow.iter_mut().take(20) {
        let mut raw = Vec::new();
        let r = s.read_to_end(&mut raw);
        assert!(r.is_ok(), "the node ended it: {r:?}");
        let text = String::from_utf8_lossy(&raw);
        if *body {
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        } else {
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
        }
    }

    // Two slow uploads and a few slow bodies open, then SIGTERM: the node
    // stops within its grace (10 s) instead of waiting for them.
    let _held: Vec<TcpStream> = (0..6)
        .map(|i| {
            let mut s = connect_from(&rt, 5, port);
            let req: &[u8] = if i < 2 {
                b"POST /v1/speed/complaints HTTP/1.1\r\nHost: node\r\n\
                  Content-Type: application/vnd.agora.speed-complaint\r\n\
                  Content-Length: 100000000\r\n\r\n\0\0\0\x10abcd"
            } else {
                b"POST /v1/cpo/server HTTP/1.1\r\nHost: node\r\n\
                  Content-Type: application/cbor\r\nContent-Length: 1000\r\n\r\nabc"
            };
            s.write_all(req).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = node.terminate(Duration::from_secs(40));
    assert!(status.success(), "{status}:\n{}", node.logs());
}

/// Runs `agora args` with `data`, which must end within a minute (a node
/// that was not refused would serve forever: it is killed, and the test
/// fails on its exit status).
fn run_briefly(data: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("AGORA_PASSPHRASE", PASS)
        .env_remove("AGORA_NODE")
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .env_remove("AGORA_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agora");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// Issue 16: a second `agora up` on a data directory a node is serving
/// started silently on another port. It is refused now, with a sentence
/// that says what to do, and listens on nothing; and a node whose port is
/// taken is refused before it makes a data directory, so that a reader who
/// runs a walk-through's `agora up` beside a running node is left with
/// nothing half made.
#[test]
fn a_second_node_on_a_data_directory_and_a_taken_port_are_refused_before_anything_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let _node = Node::start(&data, port, &tmp.path().join("node.log"));

    let other = free_port();
    let (status, err) = run_briefly(&data, &["up", "--port", &other.to_string()]);
    assert!(!status.success(), "refused: {err}");
    assert!(
        err.contains("another node is serving the data directory"),
        "{err}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", other)).is_err(),
        "the refused node listens on nothing"
    );

    let fresh = tmp.path().join("fresh");
    let (status, err) = run_briefly(&fresh, &["up", "--port", &port.to_string()]);
    assert!(!status.success(), "refused: {err}");
    assert!(err.contains("the port is in use"), "{err}");
    let made: Vec<String> = std::fs::read_dir(&fresh)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        made.iter().all(|n| n == "node.lock"),
        "nothing but the lock was made: {made:?}"
    );
}

/// Issue 16: `agora status | head -1` panicked with "failed printing to
/// stdout: Broken pipe". A reader that goes away ends the command quietly.
#[test]
fn no_command_panics_on_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data, free_port(), &tmp.path().join("node.log"));
    for args in [
        vec!["status"],
        vec!["--json", "status"],
        vec!["cpo", "list"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--node", &node.url()])
            .args(&args)
            .env("AGORA_PASSPHRASE", PASS)
            .env_remove("AGORA_NODE")
            .env_remove("AGORA_DATA_DIR")
            .env_remove("AGORA_PASSPHRASE_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run agora");
        // The reader is gone before the command writes a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "agora {args:?}: {err}");
        assert!(out.status.success(), "agora {args:?}: {err}");
    }
}

/// `agora up` prints the commands to try next; each works as printed, in
/// order, in another terminal with the same passphrase and data directory
/// (run by bash with `set -e`, the binary on the PATH).
#[test]
fn every_next_command_agora_up_prints_works_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("node.log");
    let node = Node::start(&data, free_port(), &log);
    let printed = node.logs();
    let hints: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("next, in another terminal"))
        .skip(1)
        .map(str::trim)
        .filter(|l| l.starts_with("agora ") || l.starts_with("export "))
        .collect();
    assert!(
        hints.iter().any(|h| h.starts_with("agora speed buy"))
            && hints.iter().any(|h| h.starts_with("agora cpo post")),
        "the hints go as far as a purchase and a posted CPO:\n{printed}"
    );
    let work = tmp.path().join("terminal");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!("set -e\n{}\n", hints.join("\n"));
    let out = command("bash", &work)
        .arg("-c")
        .arg(&script)
        .env("AGORA_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the printed commands:\n{script}\nfailed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(work.join("song.mp3").exists() && work.join("bicycle.posted").exists());
}
