//! STP over HTTP: a real node on loopback hosting the commit authority and
//! the escrow. Three parties (a buyer, a contractor, a subcontractor) run
//! one transaction through `POST /v1/stp/ca`; its status, the log's head and
//! a consistency proof come from the JSON routes; an item escrowed for the
//! transaction is released against the committed outcome; decisions sent
//! at once share signed heads; bad requests get problem documents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::wire::cose;
use agora_node::stp::{StpService, StpSpec, TrustSource};
use agora_node::Service;
use agora_pki::IdentityTrust;
use agora_stp::escrow::open_release;
use agora_stp::msg::{Claim, Deposit, DepositReceipt};
use agora_stp::outcome::{check_consistency, verify_head, verify_outcome};
use agora_stp::process::{self, Invitation, Open};
use agora_stp::testkit::{World, DAY};
use agora_stp::{MemoryCommitLog, MemoryEscrowStore, Tid};
use std::sync::Arc;

struct Fixed(IdentityTrust);

impl TrustSource<IdentityTrust> for Fixed {
    fn load(&self) -> Result<IdentityTrust, String> {
        Ok(self.0.clone())
    }
}

struct Net {
    _served: common::Served,
    url: String,
    http: reqwest::blocking::Client,
    escrow_key: agora_core::crypto::VerifyingKey,
}

fn serve(w: &mut World) -> Net {
    let escrow = SigningKey::generate(&mut w.rng);
    let escrow_key = escrow.verifying_key();
    let svc = Arc::new(
        StpService::new(StpSpec {
            ca_key: SigningKey::from_seed(&w.ca_key.to_seed()),
            escrow_key: Some(escrow),
            trust: Box::new(Fixed(w.parties[0].trust.clone())),
            log: Arc::new(MemoryCommitLog::new()),
            escrow: Arc::new(MemoryEscrowStore::new()),
        })
        .unwrap(),
    );
    let served = common::Served::one(svc as Arc<dyn Service>);
    Net {
        url: served.url(),
        _served: served,
        http: reqwest::blocking::Client::new(),
        escrow_key,
    }
}

impl Net {
    fn post(&self, route: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let r = self
            .http
            .post(format!("{}{route}", self.url))
            .header("content-type", "application/cbor")
            .body(body.to_vec())
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    }

    fn ca(&self, body: &[u8]) -> Vec<u8> {
        let (status, reply) = self.post("/v1/stp/ca", body);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        reply
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }
}

/// `p` begins (or, with `via`, joins) a subtransaction with `q` over HTTP.
fn open(w: &mut World, net: &Net, p: usize, q: usize, via: Option<&Open>) -> (Open, Open) {
    let peer = w.uid(q);
    let (wait, opened) = match via {
        None => {
            let tid = Tid::random(&mut w.rng);
            process::begin(
                &w.parties[p],
                &mut w.rng,
                w.now,
                tid,
                peer,
                w.now.plus_secs(DAY),
            )
        }
        Some(v) => process::join(&w.parties[p], &mut w.rng, w.now, v, peer),
    }
    .unwrap();
    net.ca(&opened.vote);
    let inv = Invitation::receive(&w.parties[q], w.now, &opened.opening).unwrap();
    let (wait_q, vote_q) = inv.accept(&w.parties[q], &mut w.rng);
    let started_q = net.ca(&vote_q);
    let started_p = net.ca(wait.vote());
    (
        wait.on_started(&w.parties[p], w.now, &started_p).unwrap(),
        wait_q.on_started(&w.parties[q], w.now, &started_q).unwrap(),
    )
}

#[test]
fn three_parties_commit_over_http_and_the_escrow_releases_against_the_outcome() {
    let mut w = World::at(3, 50, agora_core::Timestamp::now_from_system_clock());
    let net = serve(&mut w);
    // Buyer (0) and contractor (1); the contractor brings in the cement
    // subcontractor (2) through its own open subtransaction.
    let (mut b, mut c) = open(&mut w, &net, 0, 1, None);
    let (mut c2, mut s) = open(&mut w, &net, 1, 2, Some(&c));
    let tid = b.tid();
    // The contractor's order to the subcontractor waits in escrow.
    let deposit = cose::sign(
        &w.parties[1].sign,
        &Deposit {
            tid,
            depositor_cert: w.parties[1].cert.clone(),
            recipient: w.uid(2),
            ca: w.ca.uid(),
            item: b"order: 40 t of cement, grade C30".to_vec(),
        },
    );
    let (status, receipt) = net.post("/v1/stp/escrow", &deposit);
    assert_eq!(status, 200);
    let receipt: DepositReceipt = cose::verify(&receipt, &net.escrow_key).unwrap();
    w.converse((0, &mut b), (1, &mut c), 2).unwrap();
    w.converse((1, &mut c2), (2, &mut s), 1).unwrap();
    let (pending, _) = net.get(&format!("/v1/stp/transactions/{tid}"));
    assert_eq!(pending, 200);
    let mut waits = Vec::new();
    for (i, o) in [(0, b), (1, c), (1, c2), (2, s)] {
        let (wait, decide) = o.decide(&w.parties[i], true).unwrap();
        let reply = net.ca(&decide);
        waits.push((i, wait, reply));
    }
    // The last decision's answer is the Outcome; everyone asks again and
    // holds the same one.
    let outcome = waits.last().unwrap().2.clone();
    for (i, wait, _) in &waits {
        let again = net.ca(wait.decide());
        assert_eq!(again, outcome);
        assert!(wait.on_outcome(&w.parties[*i], &again).unwrap().committed());
    }
    let (status, json) = net.get(&format!("/v1/stp/transactions/{tid}"));
    assert_eq!((status, json["state"].as_str()), (200, Some("committed")));
    assert_eq!(json["subtransactions"].as_array().unwrap().len(), 2);
    assert_eq!(
        hex::decode(json["outcome"].as_str().unwrap()).unwrap(),
        outcome
    );
    // The head and a consistency proof from size 1 to it.
    let (status, head) = net.get("/v1/stp/log/head");
    assert_eq!(status, 200);
    let head = verify_head(
        &hex::decode(head["head"].as_str().unwrap()).unwrap(),
        &w.ca.verifying_key(),
    )
    .unwrap();
    let v = verify_outcome(&outcome, &w.ca.verifying_key()).unwrap();
    let (status, c) = net.get(&format!(
        "/v1/stp/log/consistency?old={}&new={}",
        v.head.size, head.size
    ));
    assert_eq!(status, 200);
    let proof: agora_stp::msg::Consistency =
        agora_core::wire::decode(&hex::decode(c["proof"].as_str().unwrap()).unwrap()).unwrap();
    check_consistency(&v.head, &head, &proof).unwrap();
    // The subcontractor claims the order with the committed outcome.
    let reply = X25519Secret::generate(&mut w.rng);
    let claim = cose::sign(
        &w.parties[2].sign,
        &Claim {
            deposit: receipt.deposit,
            claimant_cert: w.parties[2].cert.clone(),
            outcome: outcome.clone(),
            at: w.now,
            reply_to: reply.public(),
        },
    );
    let (status, sealed) = net.post("/v1/stp/escrow", &claim);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&sealed));
    let release = open_release(&sealed, &reply, &net.escrow_key).unwrap();
    assert_eq!(release.item, b"order: 40 t of cement, grade C30");
}

#[test]
fn decisions_sent_at_once_are_answered_with_outcomes_under_shared_heads() {
    let mut w = World::at(2, 51, agora_core::Timestamp::now_from_system_clock());
    let net = serve(&mut w);
    let mut decides = Vec::new();
    for _ in 0..16 {
        let (mut a, mut b) = open(&mut w, &net, 0, 1, None);
        w.converse((0, &mut a), (1, &mut b), 1).unwrap();
        let (_, da) = a.decide(&w.parties[0], true).unwrap();
        net.ca(&da);
        let (wb, db) = b.decide(&w.parties[1], true).unwrap();
        decides.push((wb, db));
    }
    let net = Arc::new(net);
    let threads: Vec<_> = decides
        .into_iter()
        .map(|(wb, db)| {
            let net = net.clone();
            std::thread::spawn(move || (wb, net.ca(&db)))
        })
        .collect();
    let mut sizes = std::collections::BTreeSet::new();
    for t in threads {
        let (wb, outcome) = t.join().unwrap();
        let d = wb.on_outcome(&w.parties[1], &outcome).unwrap();
        assert!(d.committed());
        sizes.insert(d.outcome.head.size);
    }
    // Each answer was proved against a head covering its own leaf; how
    // many heads the sixteen shared depends on the timing (not asserted).
    assert!(sizes.iter().all(|s| *s >= 1 && *s <= 16));
}

#[test]
fn bad_requests_get_problem_documents() {
    let mut w = World::new(2, 52);
    let net = serve(&mut w);
    let (status, p) = net.get("/v1/stp/transactions/not-hex");
    assert_eq!((status, p["code"].as_str()), (400, Some("decode")));
    let (status, p) = net.get(&format!("/v1/stp/transactions/{}", "00".repeat(16)));
    assert_eq!(
        (status, p["state"].as_str(), p["known"].as_bool()),
        (200, Some("pending"), Some(false))
    );
    let (status, _) = net.get("/v1/stp/log/head");
    assert_eq!(status, 404);
    let (status, p) = net.get("/v1/stp/log/consistency?old=1&new=2");
    assert_eq!((status, p["code"].as_str()), (409, Some("refused")));
    // A message of the log, not one the CA or the escrow takes.
    let ping = agora_core::wire::encode(&agora_stp::msg::Consistency {
        old_size: 1,
        new_size: 1,
        path: vec![],
    });
    let (status, body) = net.post("/v1/stp/ca", &ping);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("unknown-message"));
    let (status, _) = net.post("/v1/stp/escrow", &ping);
    assert_eq!(status, 400);
}
