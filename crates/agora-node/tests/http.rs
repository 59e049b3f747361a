//! The node over real HTTP on loopback: the CPO protocols end to end through
//! `NodeClient`, the problem documents of bad requests, the guard (rate
//! limits, overload), the pending-step table, housekeeping (awards,
//! revocations), the PKI routes, /metrics and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_client::transport::{ClientError, CpoTransport, NodeClient};
use agora_core::crypto::{os_rng, SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::bidding::HeldReceipt;
use agora_cpo::buyer::{self, Acceptance};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::seller::{self, SellerSession};
use agora_cpo::{Bidding, BondTrust, Ccpo, CcpoDraft, FirstCome, Keys, Mode, Peer, Variant};
use agora_node::cpo::{BoardQuery, CpoService, CpoSpec, Role, TrustSource};
use agora_node::pki::{PkiService, PkiSpec};
use agora_node::{Node, NodeConfig, Service};
use agora_pki::{
    Agency, BondParams, Conditions, Crl, CrlParams, Revocation, RevocationReason, Role as BondRole,
    Serial, TrustAnchors,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DAY: u64 = 86_400;

fn now() -> Timestamp {
    Timestamp::now_from_system_clock()
}

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

fn keys() -> Keys {
    Keys {
        sign: SigningKey::generate(&mut os_rng()),
        enc: X25519Secret::generate(&mut os_rng()),
    }
}

/// Trust the test can change while the node runs.
struct SharedTrust(Arc<Mutex<BondTrust>>);

impl TrustSource<BondTrust> for SharedTrust {
    fn load(&self) -> Result<BondTrust, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

struct TestNode {
    url: String,
    client: NodeClient,
    svc: Arc<CpoService>,
    pki: Arc<PkiService>,
    agency: Agency,
    trust: Arc<Mutex<BondTrust>>,
    arbiter: Peer,
    server: Peer,
    served: common::Served,
    _dir: tempfile::TempDir,
}

fn crl(agency: &Agency, number: u64, revoked: Vec<Revocation>) -> Crl {
    agency
        .issue_crl(&CrlParams {
            this_update: now().minus_secs(60),
            next_update: now().plus_secs(7 * DAY),
            crl_number: number,
            revoked,
        })
        .unwrap()
}

impl TestNode {
    fn start(config: NodeConfig) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let store = agora_store::Stores::in_data_dir(
            dir.path(),
            agora_store::AtRestKey::generate(&mut agora_core::crypto::os_rng()),
        )
        .unwrap();
        let agency_key = SigningKey::generate(&mut os_rng());
        let agency = Agency::create(
            "Test Bonding Agency",
            SigningKey::from_seed(&agency_key.to_seed()),
            now().minus_secs(DAY),
            now().plus_secs(3650 * DAY),
            &mut os_rng(),
        )
        .unwrap();
        let mut agencies = TrustAnchors::new();
        agencies.add_der(agency.certificate_der()).unwrap();
        let trust = Arc::new(Mutex::new(BondTrust {
            agencies,
            crls: vec![crl(&agency, 1, vec![])],
        }));
        let (server_keys, arbiter_keys) = (keys(), keys());
        let (server, arbiter) = (server_keys.peer(), arbiter_keys.peer());
        let svc = Arc::new(
            CpoService::new(CpoSpec {
                store: store.clone(),
                server: Some((server_keys, vec![arbiter])),
                arbiter: Some((arbiter_keys, ArbiterPolicy::default(), vec![server])),
                trust: Box::new(SharedTrust(trust.clone())),
            })
            .unwrap(),
        );
        let pki = Arc::new(PkiService::new(PkiSpec {
            store,
            agencies: vec![Agency::from_parts(agency_key, agency.certificate_der()).unwrap()],
            crl_dir: dir.path().join("crls"),
            crl_days: 7,
        }));
        let served = common::Served::start(|url| {
            Node::new(NodeConfig {
                public_url: url.to_owned(),
                housekeeping_every: Duration::from_secs(3600),
                ..config
            })
            .with(svc.clone() as Arc<dyn Service>)
            .with(pki.clone())
            .with(Arc::new(agora_node::web::WebService::new(svc.clone())))
        });
        let url = served.url();
        TestNode {
            client: NodeClient::new(&url).unwrap(),
            url,
            svc,
            pki,
            agency,
            trust,
            arbiter,
            server,
            served,
            _dir: dir,
        }
    }

    fn bond(&self, holder: &Keys, role: BondRole) -> Vec<u8> {
        self.agency
            .issue_bond(
                &BondParams {
                    holder: holder.sign.verifying_key(),
                    holder_x25519: holder.enc.public(),
                    amount: eur(100_000),
                    roles: vec![role],
                    conditions: Conditions::default(),
                    not_before: now().minus_secs(DAY),
                    not_after: now().plus_secs(365 * DAY),
                    crl_uri: self.agency.crl_uri(&self.url),
                },
                &mut os_rng(),
            )
            .unwrap()
            .der
    }

    fn ccpo(&self, bond: &[u8], goods: &str, secs: u64) -> Ccpo {
        Ccpo::new(
            CcpoDraft {
                arbiter: self.arbiter.id(),
                server: self.server.id(),
                goods: goods.into(),
                price: eur(12_000),
                start: now().minus_secs(1),
                end: now().plus_secs(secs),
                terms: "Deliver within 5 days.".into(),
                bond: bond.to_vec(),
            },
            &mut os_rng(),
        )
        .unwrap()
    }

    /// Protocols 1 (or 5) and 2 over HTTP: the CPO is on the board.
    fn approve_and_post<V: Variant>(&self, bob: &Keys, ccpo: Ccpo) -> Acceptance {
        let rng = &mut os_rng();
        let (m0, b) = buyer::request_approval::<V>(bob, rng, ccpo, "", &self.arbiter).unwrap();
        let r1 = self.client.call(Role::Arbiter, &m0, None).unwrap();
        assert!(r1.step.is_some(), "the approval goes on");
        let (m2, b) = b.handle(bob, rng, &r1.body).unwrap();
        let r3 = self.client.call(Role::Arbiter, &m2, r1.step).unwrap();
        let acceptance = b.handle(bob, now(), &r3.body).unwrap();
        let (m0, b) = buyer::request_post(bob, rng, &acceptance, &self.server).unwrap();
        let r1 = self.client.call(Role::Server, &m0, None).unwrap();
        let (m2, b) = b.handle(bob, rng, &r1.body).unwrap();
        let r3 = self.client.call(Role::Server, &m2, r1.step).unwrap();
        b.handle(bob, &r3.body).unwrap();
        acceptance
    }

    fn session(&self, k: &Keys, bond: &[u8]) -> SellerSession {
        let rng = &mut os_rng();
        let (m0, p) = seller::request_session(
            k,
            rng,
            bond.to_vec(),
            now().minus_secs(60),
            now().plus_secs(DAY),
            &self.server,
        )
        .unwrap();
        let r1 = self.client.call(Role::Server, &m0, None).unwrap();
        let (m2, p) = p.handle(k, rng, &r1.body).unwrap();
        let r3 = self.client.call(Role::Server, &m2, r1.step).unwrap();
        p.handle(k, &r3.body).unwrap()
    }

    /// A bid of `cents` on bidding CPO `cpo` in session `s` (protocol 6):
    /// the listing, the bid and the seller's check of her BID_RECEIPT.
    fn bid(&self, s: &SellerSession, cpo: [u8; 32], cents: u64) -> HeldReceipt {
        let rng = &mut os_rng();
        let l = self
            .client
            .call(
                Role::Server,
                &s.request_listing(rng, cpo, Mode::Bidding),
                None,
            )
            .unwrap();
        let listing = s.open_bid_listing(&l.body).unwrap();
        let (m1, exp) = s.bid(rng, &listing, eur(cents), "").unwrap();
        let r = self.client.call(Role::Server, &m1, None).unwrap();
        exp.handle(s, &r.body).unwrap()
    }

    /// Seller `s`'s offer for first-come CPO `cpo` (protocol 4, steps 1 and
    /// 2: the listing over HTTP), not yet sent.
    fn offer(
        &self,
        s: &SellerSession,
        cpo: [u8; 32],
    ) -> Result<(Vec<u8>, agora_cpo::seller::ExpectBound), ClientError> {
        let rng = &mut os_rng();
        let l = self.client.call(
            Role::Server,
            &s.request_listing(rng, cpo, Mode::FirstCome),
            None,
        )?;
        let listing = s.open_listing(&l.body).unwrap();
        Ok(s.offer(rng, &listing, "ships tomorrow").unwrap())
    }

    fn bind(&self, s: &SellerSession, cpo: [u8; 32]) -> Result<Vec<u8>, ClientError> {
        let (m1, exp) = self.offer(s, cpo)?;
        let r = self.client.call(Role::Server, &m1, None)?;
        Ok(exp.handle(s, &r.body).unwrap().signed)
    }

    fn stop(&mut self) -> std::io::Result<()> {
        self.served.stop()
    }
}

fn problem(e: ClientError) -> agora_client::transport::ProblemDoc {
    match e {
        ClientError::Problem(p) => p,
        other => panic!("expected a problem document, got {other:?}"),
    }
}

#[test]
fn post_bind_refuse_and_fetch_over_http() {
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "A red bicycle, 56 cm frame", 30 * DAY);
    let id = ccpo.id;
    n.approve_and_post::<FirstCome>(&bob, ccpo);

    let listed = n
        .client
        .board(&BoardQuery {
            q: Some("bicycle".into()),
            ..Default::default()
        })
        .unwrap()
        .entries;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], hex::encode(id));
    assert!(listed[0].get("buyer").is_none(), "no buyer in public data");

    let (pam, sam) = (keys(), keys());
    let (pam_bond, sam_bond) = (
        n.bond(&pam, BondRole::Seller),
        n.bond(&sam, BondRole::Seller),
    );
    let (ps, ss) = (n.session(&pam, &pam_bond), n.session(&sam, &sam_bond));
    let bound = n.bind(&ps, id).expect("Pam binds first");
    let refused = problem(n.bind(&ss, id).expect_err("Sam comes second"));
    assert_eq!(refused.status, 409);
    assert_eq!(refused.code, "refused");
    assert!(refused.detail.unwrap_or_default().contains("already bound"));

    assert_eq!(n.client.cpo(&id).unwrap()["status"], "bound");
    assert!(
        n.client
            .board(&BoardQuery::default())
            .unwrap()
            .entries
            .is_empty(),
        "bound CPOs leave the listing"
    );

    // Bob fetches his binding with a signed request.
    let rng = &mut os_rng();
    let (req_bytes, req) = agora_cpo::delivery::request_binding(&bob, rng, now(), id);
    let reply = n.client.call(Role::Server, &req_bytes, None).unwrap();
    let evidence =
        agora_cpo::delivery::open_binding_reply(&bob, &n.server.sign, &req, &reply.body).unwrap();
    assert_eq!(evidence, bound, "Bob holds the BOUND_CPO Pam holds");

    // Pam ends her session; K_p binds nothing more.
    n.client.call(Role::Server, &ps.end(rng), None).unwrap();
    let e = problem(
        n.client
            .call(
                Role::Server,
                &ps.request_listing(rng, id, Mode::FirstCome),
                None,
            )
            .expect_err("ended"),
    );
    assert_eq!(e.status, 403);
}

/// Every kind of message either CPO role takes, genuine and then damaged
/// (a byte changed, cut short, lengthened) or replaced by random bytes,
/// sent to both roles with and without a pending step: every answer is a
/// `4xx` problem document, never a `5xx` and never a dropped connection.
/// The seed is printed so that a failure can be replayed.
#[test]
fn damaged_and_random_messages_to_either_role_get_a_4xx_problem() {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let n = TestNode::start(NodeConfig::default());
    let rng = &mut os_rng();
    // Genuine messages of every kind, with the step ids they continue.
    let mut genuine: Vec<(Vec<u8>, Option<[u8; 16]>)> = Vec::new();
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "A blue kettle", 30 * DAY);
    let (m0, b) = buyer::request_approval::<FirstCome>(&bob, rng, ccpo, "", &n.arbiter).unwrap();
    let r1 = n.client.call(Role::Arbiter, &m0, None).unwrap();
    let (m2, _) = b.handle(&bob, rng, &r1.body).unwrap();
    genuine.push((m0, None));
    genuine.push((m2, r1.step));
    let ccpo = n.ccpo(&bob_bond, "A green kettle", 30 * DAY);
    let id = ccpo.id;
    n.approve_and_post::<FirstCome>(&bob, ccpo);
    let pam = keys();
    let pam_bond = n.bond(&pam, BondRole::Seller);
    let (m0, p) = seller::request_session(
        &pam,
        rng,
        pam_bond.clone(),
        now().minus_secs(60),
        now().plus_secs(DAY),
        &n.server,
    )
    .unwrap();
    let r1 = n.client.call(Role::Server, &m0, None).unwrap();
    let (m2, _) = p.handle(&pam, rng, &r1.body).unwrap();
    genuine.push((m0, None));
    genuine.push((m2, r1.step));
    let s = n.session(&pam, &pam_bond);
    genuine.push((s.request_listing(rng, id, Mode::FirstCome), None));
    let (offer, _) = n.offer(&s, id).unwrap();
    genuine.push((offer, None));
    genuine.push((
        agora_cpo::delivery::request_binding(&bob, rng, now(), id).0,
        None,
    ));
    genuine.push((s.end(rng), None));

    let seed = os_rng().next_u64();
    println!("seed {seed}");
    let mut r = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let http = raw(&n.url);
    let mut sent = 0;
    for (m, step) in &genuine {
        for i in 0..24 {
            let mut bad = m.clone();
            match i % 4 {
                0 => {
                    let at = (r.next_u32() as usize) % bad.len();
                    bad[at] ^= 1 << (r.next_u32() % 8);
                }
                1 => bad.truncate((r.next_u32() as usize) % bad.len()),
                2 => bad.extend_from_slice(&[0u8; 3]),
                _ => {
                    bad = vec![0u8; 1 + (r.next_u32() as usize) % 600];
                    r.fill_bytes(&mut bad);
                }
            }
            for path in ["/v1/cpo/arbiter", "/v1/cpo/server"] {
                for with_step in [None, *step, Some([9u8; 16])] {
                    let mut req = http
                        .post(format!("{}{path}", n.url))
                        .header("content-type", "application/cbor")
                        .body(bad.clone());
                    if let Some(id) = with_step {
                        req = req.header("agora-step", hex::encode(id));
                    }
                    let resp = req.send().expect("an answer, not a dropped connection");
                    let status = resp.status().as_u16();
                    assert!(
                        (400..500).contains(&status),
                        "seed {seed}: {status} for a damaged message to {path}"
                    );
                    assert_eq!(
                        resp.headers()["content-type"],
                        "application/problem+json",
                        "seed {seed}"
                    );
                    sent += 1;
                }
            }
        }
    }
    assert_eq!(sent, genuine.len() * 24 * 6);
}

fn raw(url: &str) -> reqwest::blocking::Client {
    let _ = url;
    reqwest::blocking::Client::new()
}

/// A body refused for its declared size is read (up to the guard's drain
/// bound) before the 413 goes out: the client, still writing it, reads the
/// answer instead of a reset connection. Before, about one such request in a
/// hundred ended in `IncompleteMessage` on this machine.
#[test]
fn a_client_writing_a_body_too_large_reads_the_413() {
    let n = TestNode::start(NodeConfig::default());
    let http = raw(&n.url);
    for i in 0..400 {
        let r = http
            .post(format!("{}/v1/cpo/server", n.url))
            .header("content-type", "application/cbor")
            .body(vec![0u8; 300 * 1024 + i])
            .send()
            .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(r.status().as_u16(), 413, "request {i}");
    }
}

#[test]
fn bad_requests_get_problem_documents() {
    let n = TestNode::start(NodeConfig::default());
    let http = raw(&n.url);
    let post = |path: &str, ct: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", n.url))
            .header("content-type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    let check = |r: reqwest::blocking::Response, status: u16, code: &str| {
        assert_eq!(r.status().as_u16(), status, "{code}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let doc: serde_json::Value = r.json().unwrap();
        assert_eq!(doc["code"], code, "{doc}");
        assert_eq!(doc["status"], status);
        doc
    };
    check(
        post("/v1/cpo/server", "application/json", b"{}".to_vec()),
        415,
        "unsupported-media-type",
    );
    check(
        post("/v1/cpo/server", "application/cbor", vec![0u8; 300 * 1024]),
        413,
        "too-large",
    );
    check(
        post("/v1/cpo/server", "application/cbor", b"garbage".to_vec()),
        400,
        "decode",
    );
    check(
        http.get(format!("{}/nowhere", n.url)).send().unwrap(),
        404,
        "not-found",
    );
    let page = http
        .get(format!("{}/nowhere", n.url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 404);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let long = "x".repeat(300);
    check(
        http.get(format!("{}/v1/cpo/board?q={long}", n.url))
            .send()
            .unwrap(),
        400,
        "decode",
    );
    check(
        http.get(format!("{}/v1/cpo/board?min_price=abc", n.url))
            .send()
            .unwrap(),
        400,
        "decode",
    );
    check(
        http.get(format!("{}/v1/cpo/board?color=red", n.url))
            .send()
            .unwrap(),
        400,
        "decode",
    );
    check(
        http.get(format!("{}/v1/cpo/board/xyz", n.url))
            .send()
            .unwrap(),
        400,
        "decode",
    );
    check(
        http.get(format!("{}/v1/cpo/board/{}", n.url, "ab".repeat(32)))
            .send()
            .unwrap(),
        404,
        "not-found",
    );

    // The second message of a pending step: without, with an unknown, and with
    // a used step id.
    let bob = keys();
    let bond = n.bond(&bob, BondRole::Buyer);
    let rng = &mut os_rng();
    let (m0, b) = buyer::request_approval::<FirstCome>(
        &bob,
        rng,
        n.ccpo(&bond, "a lamp", DAY),
        "",
        &n.arbiter,
    )
    .unwrap();
    let r1 = n.client.call(Role::Arbiter, &m0, None).unwrap();
    let (m2, _) = b.handle(&bob, rng, &r1.body).unwrap();
    assert_eq!(
        problem(n.client.call(Role::Server, &m0, None).unwrap_err()).code,
        "unknown-message",
        "the server does not take the arbiter's messages"
    );
    assert_eq!(
        problem(n.client.call(Role::Arbiter, &m2, None).unwrap_err()).code,
        "missing-step"
    );
    assert_eq!(
        problem(
            n.client
                .call(Role::Arbiter, &m2, Some([7; 16]))
                .unwrap_err()
        )
        .code,
        "unknown-step"
    );
    // Sent to the wrong role, the pending step is not consumed...
    assert_eq!(
        problem(n.client.call(Role::Server, &m2, r1.step).unwrap_err()).code,
        "unknown-message"
    );
    n.client
        .call(Role::Arbiter, &m2, r1.step)
        .expect("...and still answers");
    let replay = problem(n.client.call(Role::Arbiter, &m2, r1.step).unwrap_err());
    assert_eq!(replay.code, "unknown-step", "a pending step is used once");

    // A tampered message: a crypto failure tells nothing more.
    let (mut m0, _) = buyer::request_approval::<FirstCome>(
        &bob,
        rng,
        n.ccpo(&bond, "a lamp", DAY),
        "",
        &n.arbiter,
    )
    .unwrap();
    let last = m0.len() - 1;
    m0[last] ^= 1;
    let e = problem(n.client.call(Role::Arbiter, &m0, None).unwrap_err());
    assert_eq!(e.status, 400);
    assert!(matches!(e.code.as_str(), "crypto" | "decode"), "{e:?}");
    if e.code == "crypto" {
        assert_eq!(e.detail, None, "no cryptographic detail");
    }
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let n = TestNode::start(NodeConfig {
        rate_limit_per_sec: 1,
        rate_limit_burst: 2,
        // The test's client is on loopback, which is exempt by default.
        rate_limit_loopback: true,
        ..Default::default()
    });
    let http = raw(&n.url);
    let codes: Vec<u16> = (0..4)
        .map(|_| {
            http.get(format!("{}/v1/cpo/board", n.url))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(&codes[..2], &[200, 200]);
    let r = http.get(format!("{}/v1/cpo/board", n.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    // The health check is never limited.
    assert_eq!(
        http.get(format!("{}/healthz", n.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn a_full_pending_step_table_answers_503() {
    let n = TestNode::start(NodeConfig {
        max_pending_steps: 1,
        ..Default::default()
    });
    let bob = keys();
    let bond = n.bond(&bob, BondRole::Buyer);
    let rng = &mut os_rng();
    let mut first = None;
    for i in 0..2 {
        let (m0, _) = buyer::request_approval::<FirstCome>(
            &bob,
            rng,
            n.ccpo(&bond, "a lamp", DAY),
            "",
            &n.arbiter,
        )
        .unwrap();
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/cpo/arbiter", n.url))
            .header("content-type", "application/cbor")
            .body(m0)
            .send()
            .unwrap();
        if i == 0 {
            assert_eq!(r.status().as_u16(), 200);
            first = Some(r);
        } else {
            assert_eq!(r.status().as_u16(), 503);
            assert_eq!(r.headers()["retry-after"], "1");
        }
    }
    assert!(first.is_some());
}

#[test]
fn housekeeping_awards_closed_bidding_and_takes_down_revoked_buyers() {
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    // A bidding CPO that closes in two seconds, with two bids.
    let ccpo = n.ccpo(&bob_bond, "Translation of a 20-page contract", 2);
    let id = ccpo.id;
    n.approve_and_post::<Bidding>(&bob, ccpo);
    let mut receipts = Vec::new();
    for cents in [9_000, 8_000] {
        let k = keys();
        let b = n.bond(&k, BondRole::Seller);
        let s = n.session(&k, &b);
        receipts.push(n.bid(&s, id, cents));
    }
    assert_eq!(
        problem(n.client.award(&id).unwrap_err()).code,
        "refused",
        "still open"
    );
    std::thread::sleep(Duration::from_millis(2_200));
    let said = n.svc.housekeeping(now()).unwrap().unwrap_or_default();
    assert!(said.contains("awarded CPO"), "{said}");
    let award = n.client.award(&id).unwrap();
    assert_eq!(award["new"], false, "housekeeping made it already");
    assert_eq!(award["bids"], 2);
    assert!(
        award["winner"].is_string(),
        "the winner is told again: {award}"
    );
    let server_vk = n.server.sign;
    let outcomes: Vec<_> = receipts
        .iter()
        .map(|r| {
            let notice = n.client.notice(&id, &r.hash()).unwrap();
            agora_cpo::bidding::check_notice(&notice, r, &server_vk, &n.arbiter.sign).unwrap()
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            agora_cpo::bidding::Outcome::Lost,
            agora_cpo::bidding::Outcome::Won
        ],
        "lowest price wins"
    );

    // Revoke Bob's bond: the next housekeeping takes his open CPO down.
    let open = n.ccpo(&bob_bond, "Another thing", DAY);
    let open_id = open.id;
    n.approve_and_post::<FirstCome>(&bob, open);
    let serial = agora_pki::parse_certificate(&bob_bond).unwrap().serial;
    let revoked = crl(
        &n.agency,
        2,
        vec![Revocation {
            serial: Serial(serial.0.clone()),
            revoked_at: now(),
            reason: RevocationReason::KeyCompromise,
        }],
    );
    n.trust.lock().unwrap().crls = vec![revoked];
    let said = n.svc.housekeeping(now()).unwrap().unwrap_or_default();
    assert!(said.contains("1 CPOs taken down"), "{said}");
    assert_eq!(n.client.cpo(&open_id).unwrap()["status"], "taken down");

    // The business, counted where each step committed: two CPOs posted,
    // one awarded (by housekeeping: the later call found it made), one
    // taken down, none bound first-come.
    let m = metrics(&n);
    for line in [
        "agora_cpos_posted_total 2",
        "agora_cpos_awarded_total 1",
        "agora_cpos_taken_down_total 1",
        "agora_cpos_bound_total 0",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
    // A second housekeeping run finds nothing new to count.
    n.svc.housekeeping(now()).unwrap();
    let m = metrics(&n);
    assert!(m.contains("agora_cpos_awarded_total 1"), "{m}");
    assert!(m.contains("agora_cpos_taken_down_total 1"), "{m}");
}

/// The node's `/metrics` text.
fn metrics(n: &TestNode) -> String {
    raw(&n.url)
        .get(format!("{}/metrics", n.url))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// A first-come binding is counted once it committed, and the refusal of
/// a second seller is counted by its problem code, not as a binding.
#[test]
fn bindings_and_refusals_are_counted_in_metrics() {
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "A counted lamp", DAY);
    let id = ccpo.id;
    n.approve_and_post::<FirstCome>(&bob, ccpo);
    let (pam, quinn) = (keys(), keys());
    let ps = n.session(&pam, &n.bond(&pam, BondRole::Seller));
    let qs = n.session(&quinn, &n.bond(&quinn, BondRole::Seller));
    let before = metrics(&n);
    assert!(before.contains("agora_cpos_posted_total 1"), "{before}");
    assert!(before.contains("agora_cpos_bound_total 0"), "{before}");
    // Both offers made while the CPO is open; Pam's is sent first.
    let (first, expect) = n.offer(&ps, id).unwrap();
    let (second, _) = n.offer(&qs, id).unwrap();
    let r = n.client.call(Role::Server, &first, None).unwrap();
    expect.handle(&ps, &r.body).unwrap();
    let late = problem(n.client.call(Role::Server, &second, None).unwrap_err());
    assert_eq!(late.code, "refused");
    let m = metrics(&n);
    assert!(m.contains("agora_cpos_bound_total 1"), "{m}");
    assert!(
        m.contains(r#"agora_refusals_total{code="refused"} 1"#),
        "{m}"
    );
}

/// A bidder whose BID_RECEIPT was lost asks for her receipts over HTTP
/// (CPO_BIDS_REQUEST to `POST /v1/cpo/server`): she gets every receipt of
/// hers as the server signed it, and none of another bidder's; the same
/// request again, or one another seller signs in her name, is refused.
#[test]
fn a_bidder_fetches_her_lost_receipts_over_http() {
    use agora_cpo::bidding::{open_bids_reply, request_bids, BidsRequest};
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "Proofreading of a novel", DAY);
    let id = ccpo.id;
    n.approve_and_post::<Bidding>(&bob, ccpo);
    let rng = &mut os_rng();
    let (pam, quinn) = (keys(), keys());
    let (ps, qs) = (
        n.session(&pam, &n.bond(&pam, BondRole::Seller)),
        n.session(&quinn, &n.bond(&quinn, BondRole::Seller)),
    );
    // Pam's first receipt is lost on the way (she never reads it).
    let lost = n.bid(&ps, id, 9_000);
    let theirs = n.bid(&qs, id, 9_500);
    let again = n.bid(&ps, id, 9_100);

    let (req_bytes, req) = request_bids(&pam, rng, now(), id, 0);
    let reply = n.client.call(Role::Server, &req_bytes, None).unwrap();
    assert!(reply.step.is_none(), "one round trip");
    let got = open_bids_reply(&pam, &n.server.sign, &req, &reply.body).unwrap();
    assert_eq!(got.total, 2);
    assert_eq!(got.receipts, vec![lost, again]);
    assert!(!got.receipts.contains(&theirs));

    let replayed = problem(
        n.client
            .call(Role::Server, &req_bytes, None)
            .expect_err("the same request again"),
    );
    assert_eq!(replayed.status, 409);
    let forged = agora_core::wire::cose::sign(
        &quinn.sign,
        &BidsRequest {
            cpo: id,
            seller: pam.sign.verifying_key(),
            from: 0,
            nonce: [7; 32],
            t: now(),
        },
    );
    let e = problem(
        n.client
            .call(Role::Server, &forged, None)
            .expect_err("Quinn in Pam's name"),
    );
    assert_eq!(e.status, 403);
}

#[test]
fn metrics_health_node_and_openapi() {
    let n = TestNode::start(NodeConfig::default());
    let http = raw(&n.url);
    assert_eq!(
        http.get(format!("{}/healthz", n.url))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok\n"
    );
    http.get(format!("{}/v1/cpo/board", n.url)).send().unwrap();
    let m = http
        .get(format!("{}/metrics", n.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains(r#"agora_http_requests_total{route="/v1/cpo/board",status="200"}"#),
        "{m}"
    );
    // The crypto counters are read at each scrape: a signature made since
    // the last one shows (node and test share the process and its counts).
    let signs = |m: &str| -> u64 {
        let line = m
            .lines()
            .find(|l| l.starts_with(r#"agora_crypto_operations_total{op="ed25519_sign"}"#))
            .unwrap_or_else(|| panic!("no ed25519_sign counter in {m}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        m.contains(r#"agora_crypto_bytes_total{op="chacha20poly1305"}"#),
        "{m}"
    );
    let before = signs(&m);
    let _ = SigningKey::generate(&mut os_rng()).sign(b"counted");
    let m = http
        .get(format!("{}/metrics", n.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(signs(&m) > before, "{m}");
    let node: serde_json::Value = http
        .get(format!("{}/v1/node", n.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        node["services"]["cpo"]["server"]["key_id"],
        n.server.id().to_string()
    );
    let api: serde_json::Value = http
        .get(format!("{}/openapi.json", n.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
    // The document as kept, but for its servers entry: this node.
    assert_eq!(
        api["servers"],
        serde_json::json!([{ "url": n.url, "description": "this node" }]),
        "the node names itself as the server"
    );
    let mut kept = common::api();
    assert_eq!(
        kept["servers"][0]["url"], "http://127.0.0.1:7878",
        "the document as kept names agora up's default address"
    );
    kept["servers"] = api["servers"].clone();
    assert_eq!(api, kept, "the node serves its document");
    for (method, path, _, _) in ROUTES {
        common::operation(&api, method, path);
    }
}

// ------------------------------------------------------------ the document

/// The statuses a connection can be answered with before any route is
/// chosen (`agora_node::serve`): `431` for a request head past its bound
/// (hyper's), `503` when the node or this client has as many connections
/// open as it takes. Every route, `/healthz` too.
const CONNECTION: &[u16] = &[431, 503];

/// What admission (`agora_node::guard`) answers any route behind it with:
/// `408 request-timeout` (the body came too slowly), `413 too-large`, `429
/// rate-limited` and `503 overloaded` (both with `Retry-After`), `504
/// timed-out` (the work took too long).
const ADMISSION: &[u16] = &[408, 413, 429, 503, 504];

/// A protocol endpoint's own (`agora_node::endpoint`, `Cbor`, the pending
/// steps, `Problem::from(agora_core::Error)`): `400` decode, crypto,
/// peer-misbehaved, unknown-message, missing-step; `403` not-authorised;
/// `404` unknown-step, or the role is not hosted; `409` refused, replayed;
/// `415` another media type.
const PROTOCOL: &[u16] = &[200, 400, 403, 404, 409, 415];

/// Every route the node serves: method, path template, whether admission
/// stands before it, and the statuses its own code answers. A `500` is a
/// defect, not a contract: it is documented nowhere (schemathesis's
/// `not_a_server_error` hunts it).
const ROUTES: &[(&str, &str, bool, &[u16])] = &[
    ("post", "/v1/cpo/arbiter", true, PROTOCOL),
    ("post", "/v1/cpo/server", true, PROTOCOL),
    // 400: a bad query.
    ("get", "/v1/cpo/board", true, &[200, 400]),
    // 400: not an id; 404: no such CPO.
    ("get", "/v1/cpo/board/{id}", true, &[200, 400, 404]),
    // 409: not awarded yet, or no such bid in the award.
    (
        "get",
        "/v1/cpo/notices/{id}/{receipt}",
        true,
        &[200, 400, 404, 409],
    ),
    // 404: no such CPO, or its arbiter or server not hosted; 409: refused.
    ("post", "/v1/cpo/awards/{id}", true, &[200, 400, 404, 409]),
    ("post", "/v1/speed/vendor", true, PROTOCOL),
    // 404: no vendor hosted.
    ("get", "/v1/speed/catalogue", true, &[200, 404]),
    ("post", "/v1/speed/broker", true, PROTOCOL),
    // An upload read by the route itself: 400 cut short or unreadable,
    // 403 not the customer's, 404 no broker, 409 refused, 415.
    (
        "post",
        "/v1/speed/complaints",
        true,
        &[200, 400, 403, 404, 409, 415],
    ),
    // The STP roles take no pending step and are always hosted together
    // (no 404): 400 decode, crypto, peer-misbehaved, unknown-message; 403
    // not-authorised (not a party, a certificate the node does not trust);
    // 409 refused (no such transaction or deposit, a deadline too far
    // ahead), replayed; 415 another media type.
    ("post", "/v1/stp/ca", true, &[200, 400, 403, 409, 415]),
    // The same, and 404 not-found when the node hosts no escrow.
    (
        "post",
        "/v1/stp/escrow",
        true,
        &[200, 400, 403, 404, 409, 415],
    ),
    // 400: not a TID (an unknown one is pending, known false).
    ("get", "/v1/stp/transactions/{tid}", true, &[200, 400]),
    // 404: no signed tree head yet.
    ("get", "/v1/stp/log/head", true, &[200, 404]),
    // 400: old or new missing or not a u64; 409: not 0 < old <= new <= the
    // latest head's size.
    ("get", "/v1/stp/log/consistency", true, &[200, 400, 409]),
    // 204: basic SKEP's confirm; 404: unknown-step; 409: refused,
    // replayed, already-subscribed.
    (
        "post",
        "/v1/lite/skep",
        true,
        &[200, 204, 400, 404, 409, 415],
    ),
    ("get", "/v1/lite/vendor", true, &[200]),
    // Behind the SDDP layer: 400 decode, crypto, a bad symbol list; 401
    // unsigned or no subscription; 409 replayed, refused.
    ("get", "/v1/lite/quotes", true, &[200, 400, 401, 409]),
    ("get", "/v1/pki/agencies", true, &[200]),
    ("get", "/v1/pki/{agency}/crl", true, &[200, 400, 404]),
    ("get", "/v1/pki/{agency}/cert", true, &[200, 400, 404]),
    ("get", "/v1/node", true, &[200]),
    // The pages: 400 a page saying what is wrong, 404 no such CPO.
    ("get", "/", true, &[200, 400]),
    ("get", "/cpo/{id}", true, &[200, 400, 404]),
    ("get", "/how-to-bind", true, &[200]),
    // 404: no SPEED vendor hosted.
    ("get", "/store", true, &[200, 404]),
    ("get", "/recent", true, &[200]),
    ("get", "/style.css", true, &[200]),
    ("get", "/favicon.svg", true, &[200]),
    ("get", "/favicon.ico", true, &[200]),
    ("get", "/openapi.json", true, &[200]),
    ("get", "/metrics", true, &[200]),
    // Health and readiness stand before admission.
    ("get", "/healthz", false, &[200]),
    ("get", "/readyz", false, &[200, 503]),
];

/// Every status `route` can be answered with.
fn answered(admitted: bool, own: &[u16]) -> Vec<u16> {
    let mut all: Vec<u16> = own.to_vec();
    all.extend(CONNECTION);
    if admitted {
        all.extend(ADMISSION);
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// The number of a status the node's source names.
fn status_named(name: &str) -> Option<u16> {
    use axum::http::StatusCode as S;
    let s = match name {
        "OK" => S::OK,
        "NO_CONTENT" => S::NO_CONTENT,
        "UNAUTHORIZED" => S::UNAUTHORIZED,
        "BAD_REQUEST" => S::BAD_REQUEST,
        "FORBIDDEN" => S::FORBIDDEN,
        "NOT_FOUND" => S::NOT_FOUND,
        "REQUEST_TIMEOUT" => S::REQUEST_TIMEOUT,
        "CONFLICT" => S::CONFLICT,
        "PAYLOAD_TOO_LARGE" => S::PAYLOAD_TOO_LARGE,
        "UNSUPPORTED_MEDIA_TYPE" => S::UNSUPPORTED_MEDIA_TYPE,
        "TOO_MANY_REQUESTS" => S::TOO_MANY_REQUESTS,
        "REQUEST_HEADER_FIELDS_TOO_LARGE" => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "INTERNAL_SERVER_ERROR" => S::INTERNAL_SERVER_ERROR,
        "SERVICE_UNAVAILABLE" => S::SERVICE_UNAVAILABLE,
        "GATEWAY_TIMEOUT" => S::GATEWAY_TIMEOUT,
        _ => return None,
    };
    Some(s.as_u16())
}

/// The node's source files, by name.
fn node_sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut todo = vec![dir];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                // The client proxy (`agora proxy`) is another server with
                // its own contract, not the node's API: tests/proxy.rs.
                && p.file_name().is_some_and(|n| n != "proxy.rs")
            {
                files.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    files
}

/// Every error a route answers is typed: a problem document
/// (`application/problem+json`) for the API, a page (`text/html`) for the
/// pages people read (and both for a busy page), never bare JSON nor an
/// untyped body; only `431`, whose connection is closed, has no body.
#[test]
fn every_error_response_is_a_problem_document_or_a_page() {
    let api = common::api();
    let pages = ["/", "/cpo/{id}", "/recent", "/store"];
    for (method, path, _, _) in ROUTES {
        for status in common::statuses(&api, method, path) {
            if status < 400 || status == 431 {
                continue;
            }
            let r = common::response(&api, method, path, status).unwrap();
            let types: Vec<&str> = r["content"]
                .as_object()
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let problem = types.contains(&"application/problem+json");
            let page = types.contains(&"text/html");
            let allowed = if *path == "/readyz" {
                // Not ready is JSON saying why (a probe reads it), or a
                // problem document from admission.
                problem && types.contains(&"application/json")
            } else if pages.contains(path) {
                (problem || page) && !types.contains(&"application/json")
            } else {
                problem && types.len() == 1
            };
            assert!(
                allowed,
                "{method} {path} {status} is typed {types:?}, not as a problem document or page"
            );
        }
    }
    // And a node sends what the document says: an error of the API is
    // application/problem+json.
    let n = TestNode::start(NodeConfig::default());
    let http = raw(&n.url);
    for (path, status) in [
        ("/v1/cpo/board?min_price=lots", 400),
        ("/v1/cpo/board/nothex", 400),
        ("/no/such/route", 404),
    ] {
        let r = http.get(format!("{}{path}", n.url)).send().unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
}

/// Every status a route's code returns is documented for that route, and
/// the table above is held to the code: a status the node's source names
/// that no route in it answers, or a problem code missing from the
/// document's list, fails here until both are written down.
#[test]
fn every_status_a_route_returns_is_documented() {
    let api = common::api();
    let mut missing = Vec::new();
    for (method, path, admitted, own) in ROUTES {
        let documented = common::statuses(&api, method, path);
        let answers = answered(*admitted, own);
        for status in &answers {
            if !documented.contains(status) {
                missing.push(format!("{method} {path}: {status}"));
            }
        }
        // And nothing is documented that the route does not answer.
        for status in &documented {
            assert!(
                answers.contains(status),
                "{method} {path} documents {status}, which its code does not answer"
            );
        }
        // Who is told to wait is told how long.
        for status in [429u16, 503] {
            if *admitted {
                let r = common::response(&api, method, path, status).unwrap();
                assert_eq!(
                    r["headers"]["Retry-After"]["required"], true,
                    "{method} {path} {status} without a required Retry-After"
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "statuses the code returns that openapi.json does not document:\n{}",
        missing.join("\n")
    );
    // Every operation in the document is a route here.
    for (path, item) in api["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                ROUTES.iter().any(|(m, p, _, _)| m == method && p == path),
                "{method} {path} is documented but not in this test's table of routes"
            );
        }
    }

    // Every status the source names is answered by some route in the table.
    let all: Vec<u16> = ROUTES
        .iter()
        .flat_map(|(_, _, a, own)| answered(*a, own))
        .collect();
    let codes: Vec<String> = api["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    for (file, text) in node_sources() {
        for (i, _) in text.match_indices("StatusCode::") {
            let name: String = text[i + "StatusCode::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let status = status_named(&name).unwrap_or_else(|| {
                panic!("{file} names StatusCode::{name}: add it to this test's table")
            });
            assert!(
                status == 500 || all.contains(&status),
                "{file} answers {status}, which no route in this test's table (and so \
                 perhaps openapi.json) says"
            );
        }
        for (i, _) in text.match_indices("HTTP/1.1 ") {
            if let Ok(status) = text[i + 9..]
                .chars()
                .take(3)
                .collect::<String>()
                .parse::<u16>()
            {
                assert!(all.contains(&status), "{file} answers {status} on its own");
            }
        }
        // The problem codes: the second argument of each Problem::new.
        for (i, _) in text.match_indices("Problem::new(") {
            let call: String = text[i..].chars().take_while(|c| *c != ')').collect();
            let Some(code) = call.split('"').nth(1) else {
                continue;
            };
            assert!(
                codes.iter().any(|c| c == code),
                "{file} answers problem code {code:?}, which openapi.json's Problem.code \
                 does not list"
            );
            let code: &'static str = Box::leak(code.to_owned().into_boxed_str());
            let doc = agora_node::Problem::new(axum::http::StatusCode::BAD_REQUEST, code).to_json();
            assert!(
                code == "internal" || doc["title"] != "Internal error",
                "{file}: problem code {code:?} has no title of its own"
            );
        }
    }
    // And those of the errors every role shares.
    use agora_core::Error as E;
    for e in [
        E::Decode(agora_core::DecodeError::Invalid("x")),
        E::Crypto,
        E::PeerMisbehaved("x"),
        E::Replayed,
        E::NotAuthorised("x".into()),
        E::Refused("x".into()),
        E::Overloaded,
        E::Storage("x".into()),
        E::ApiMisuse("x"),
    ] {
        let p = agora_node::Problem::from(e);
        assert!(
            codes.iter().any(|c| c == p.code),
            "{} is not listed",
            p.code
        );
    }
}

/// Requests that draw each kind of refusal (a head or a body too large, a
/// body too slow or of another media type, unreadable ids, a client past
/// its rate) to every
/// CPO, PKI, page and core route of a real node: each answer is one the
/// document describes (status, media type, required headers, body).
#[test]
fn real_refusals_are_the_documented_ones() {
    let api = common::api();
    let n = TestNode::start(NodeConfig {
        max_body_bytes: 1024,
        body_timeout: Duration::from_millis(200),
        ..NodeConfig::default()
    });
    let http = raw(&n.url);
    let addr = n.url.trim_start_matches("http://").to_owned();
    // The SPEED, STP and lightweight services are not hosted here
    // (speed_http.rs, stp_http.rs and lite_http.rs serve them).
    let here = |p: &str| {
        !p.starts_with("/v1/speed/") && !p.starts_with("/v1/stp/") && !p.starts_with("/v1/lite/")
    };
    for (method, path, admitted, own) in ROUTES.iter().filter(|r| here(r.1)) {
        let url = |p: &str| format!("{}{p}", n.url);
        let send = |p: &str, ct: &str, body: Vec<u8>| {
            let req = match *method {
                "post" => http.post(url(p)),
                _ => http.get(url(p)),
            };
            common::Answer::of(req.header("content-type", ct).body(body).send().unwrap())
        };
        let target = common::concrete(path);
        // As they are (ids that name nothing), and with a body of another
        // media type.
        let a = send(&target, "text/plain", b"hello".to_vec());
        common::assert_documented(&api, method, path, &a);
        if own.contains(&415) {
            assert_eq!(a.status, 415, "{method} {path}");
        }
        // A head past the connection's bound, before any route is chosen.
        let big = common::Raw {
            method,
            path: &target,
            content_type: "application/cbor",
            declared: 0,
            sent: 0,
            filler: 32 * 1024,
        };
        let a = common::raw_request(&addr, &big, Duration::from_secs(5));
        assert_eq!(a.status, 431, "{method} {path}");
        common::assert_documented(&api, method, path, &a);
        if !admitted {
            continue;
        }
        // Too large.
        let a = send(&target, "application/cbor", vec![0u8; 4096]);
        assert_eq!(a.status, 413, "{method} {path}");
        common::assert_documented(&api, method, path, &a);
        // Too slow: ten bytes promised, three sent.
        let slow = common::Raw {
            method,
            path: &target,
            content_type: "application/cbor",
            declared: 10,
            sent: 3,
            filler: 0,
        };
        let a = common::raw_request(&addr, &slow, Duration::from_secs(5));
        assert_eq!(a.status, 408, "{method} {path}");
        common::assert_documented(&api, method, path, &a);
        // Ids that are not ids, and segments that are not UTF-8.
        for bad in ["zz", "%FF%FE"] {
            if let Some(p) = common::with_bad_param(path, bad) {
                let a = send(&p, "application/cbor", Vec::new());
                assert_eq!(a.status, 400, "{method} {p}");
                common::assert_documented(&api, method, path, &a);
            }
        }
    }
    drop(n);

    // Past its rate, a client is told when to come back, on every route.
    let n = TestNode::start(NodeConfig {
        rate_limit_per_sec: 1,
        rate_limit_burst: 1,
        rate_limit_loopback: true,
        ..NodeConfig::default()
    });
    let http = raw(&n.url);
    for (method, path, _, _) in ROUTES.iter().filter(|r| here(r.1) && r.2) {
        let url = format!("{}{}", n.url, common::concrete(path));
        let mut limited = false;
        for _ in 0..3 {
            let req = match *method {
                "post" => http.post(&url),
                _ => http.get(&url),
            };
            let a = common::Answer::of(req.send().unwrap());
            common::assert_documented(&api, method, path, &a);
            limited |= a.status == 429;
        }
        assert!(limited, "{method} {path} was not rate-limited");
    }
}

/// The bodies of the public data routes are what the document says: the
/// board and the agencies are arrays (of CPOs, of agencies), as the CLI
/// and the client library read them.
#[test]
fn public_data_matches_its_schemas() {
    let api = common::api();
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let ccpo = n.ccpo(&n.bond(&bob, BondRole::Buyer), "A teak bookcase", DAY);
    let id = hex::encode(ccpo.id);
    n.approve_and_post::<FirstCome>(&bob, ccpo);
    let http = raw(&n.url);
    for (path, url) in [
        ("/v1/cpo/board", "/v1/cpo/board".to_owned()),
        ("/v1/cpo/board/{id}", format!("/v1/cpo/board/{id}")),
        ("/v1/pki/agencies", "/v1/pki/agencies".to_owned()),
        ("/v1/node", "/v1/node".to_owned()),
        ("/readyz", "/readyz".to_owned()),
    ] {
        let a = common::Answer::of(http.get(format!("{}{url}", n.url)).send().unwrap());
        assert_eq!(a.status, 200, "{url}");
        common::assert_documented(&api, "get", path, &a);
    }
    let board: serde_json::Value = http
        .get(format!("{}/v1/cpo/board", n.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(board[0]["id"], id.as_str(), "{board}");
    let agencies: serde_json::Value = http
        .get(format!("{}/v1/pki/agencies", n.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(agencies[0]["key_id"], n.agency.key_id().to_string());
    // The award of a bidding CPO once it has closed (with no bids: no
    // winner).
    let ccpo = n.ccpo(&n.bond(&bob, BondRole::Buyer), "A rowing boat", 2);
    let (bid, end) = (hex::encode(ccpo.id), ccpo.end);
    n.approve_and_post::<Bidding>(&bob, ccpo);
    while now() < end.plus_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = common::Answer::of(
        http.post(format!("{}/v1/cpo/awards/{bid}", n.url))
            .send()
            .unwrap(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    common::assert_documented(&api, "post", "/v1/cpo/awards/{id}", &a);
}

/// A notice is asked for by CPO and receipt: for a CPO the board does not
/// have, `404` (not `409 refused` as if it were only not yet awarded); for
/// one it has and has not awarded, `409`.
#[test]
fn a_notice_for_an_unknown_cpo_is_not_found() {
    let api = common::api();
    let n = TestNode::start(NodeConfig::default());
    let http = raw(&n.url);
    let get = |id: &str| {
        common::Answer::of(
            http.get(format!("{}/v1/cpo/notices/{id}/{}", n.url, "cd".repeat(32)))
                .send()
                .unwrap(),
        )
    };
    let a = get(&"ab".repeat(32));
    assert_eq!(a.status, 404);
    common::assert_documented(&api, "get", "/v1/cpo/notices/{id}/{receipt}", &a);
    let doc: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(doc["code"], "not-found", "{doc}");
    let e = problem(n.client.notice(&[0xab; 32], &[0xcd; 32]).unwrap_err());
    assert_eq!((e.status, e.code.as_str()), (404, "not-found"));

    let bob = keys();
    let ccpo = n.ccpo(&n.bond(&bob, BondRole::Buyer), "A pair of skis", DAY);
    let id = hex::encode(ccpo.id);
    n.approve_and_post::<Bidding>(&bob, ccpo);
    let a = get(&id);
    assert_eq!(a.status, 409, "on the board, not awarded yet");
    common::assert_documented(&api, "get", "/v1/cpo/notices/{id}/{receipt}", &a);
}

/// Media types are matched as RFC 9110 says: type and subtype whatever
/// their case, parameters allowed; another type is `415`.
#[test]
fn media_types_match_whatever_their_case() {
    use axum::http::{header, HeaderMap, HeaderValue};
    let is = |ct: &str, expected: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        agora_node::content_type_is(&h, expected)
    };
    for ct in [
        "application/cbor",
        "APPLICATION/CBOR",
        "Application/Cbor; charset=binary",
        "application/cbor ; x=\"y;z\"",
    ] {
        assert!(is(ct, agora_node::CBOR), "{ct}");
    }
    for ct in [
        "application/cbor-seq",
        "application/json",
        "application/cbor+x",
        "text/application/cbor",
        "",
    ] {
        assert!(!is(ct, agora_node::CBOR), "{ct}");
    }
    assert!(!agora_node::content_type_is(
        &HeaderMap::new(),
        agora_node::CBOR
    ));

    let n = TestNode::start(NodeConfig::default());
    let http = raw(&n.url);
    let post = |ct: &str| {
        http.post(format!("{}/v1/cpo/server", n.url))
            .header("content-type", ct)
            .body(b"garbage".to_vec())
            .send()
            .unwrap()
    };
    for ct in ["APPLICATION/CBOR", "Application/CBOR; charset=binary"] {
        let r = post(ct);
        assert_eq!(
            r.status().as_u16(),
            400,
            "{ct}: read, and refused as garbage"
        );
        let doc: serde_json::Value = r.json().unwrap();
        assert_eq!(doc["code"], "decode", "{ct}");
    }
    assert_eq!(post("application/cbor-seq").status().as_u16(), 415);
}

#[test]
fn pki_serves_the_current_crl() {
    let n = TestNode::start(NodeConfig::default());
    let kid = n.agency.key_id().to_string();
    let http = raw(&n.url);
    let r = http
        .get(format!("{}/v1/pki/{kid}/crl", n.url))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "no CRL before the first housekeeping"
    );
    assert_eq!(
        n.pki.refresh_crls(now()).unwrap(),
        1,
        "the first CRL is due"
    );
    assert_eq!(n.pki.refresh_crls(now()).unwrap(), 0, "and then current");
    let r = http
        .get(format!("{}/v1/pki/{kid}/crl", n.url))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    let crl = agora_pki::parse_crl(&r.bytes().unwrap()).unwrap();
    assert!(crl.is_current(now()));
    assert!(crl.crl_number.is_some());
    let r = http
        .get(format!("{}/v1/pki/{kid}/cert", n.url))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/pkix-cert");
    assert_eq!(r.bytes().unwrap().as_ref(), n.agency.certificate_der());
}

#[test]
fn graceful_shutdown_returns_after_requests_in_flight() {
    let mut n = TestNode::start(NodeConfig::default());
    let client = n.client.clone();
    let load = std::thread::spawn(move || {
        (0..50)
            .filter(|_| client.board(&BoardQuery::default()).is_ok())
            .count()
    });
    std::thread::sleep(Duration::from_millis(20));
    n.stop().expect("the node stops cleanly");
    let answered = load.join().unwrap();
    assert!(answered <= 50);
    assert!(
        NodeClient::new(&n.url)
            .unwrap()
            .board(&BoardQuery::default())
            .is_err(),
        "stopped"
    );
}

#[test]
fn a_listing_issued_before_housekeeping_still_binds_after_it() {
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "A clock", DAY);
    let id = ccpo.id;
    n.approve_and_post::<FirstCome>(&bob, ccpo);
    let pam = keys();
    let s = n.session(&pam, &n.bond(&pam, BondRole::Seller));
    let rng = &mut os_rng();
    let l = n
        .client
        .call(
            Role::Server,
            &s.request_listing(rng, id, Mode::FirstCome),
            None,
        )
        .unwrap();
    // The node reloads its CRLs between Pam's listing and her offer.
    n.svc.housekeeping(now()).unwrap();
    let listing = s.open_listing(&l.body).unwrap();
    let (m1, exp) = s.offer(rng, &listing, "").unwrap();
    let r = n
        .client
        .call(Role::Server, &m1, None)
        .expect("the listing survived");
    exp.handle(&s, &r.body).unwrap();
}

/// "Bad input changes nothing": the buyer's (protocols 1 and 2) and the
/// seller's (protocol 3) answers to a challenge, damaged on the way, are
/// refused without ending the pending step, so the genuine answer, sent again
/// under the same step id, still completes it. A genuine answer uses
/// the pending step up.
#[test]
fn damaged_answers_leave_the_step_pending() {
    let n = TestNode::start(NodeConfig::default());
    let rng = &mut os_rng();
    let flip = |m: &[u8]| {
        let mut d = m.to_vec();
        let i = d.len() / 2;
        d[i] ^= 0x04;
        d
    };
    let refused_but_pending = |role: Role, m: &[u8], x: Option<[u8; 16]>| {
        let e = problem(n.client.call(role, &flip(m), x).unwrap_err());
        assert!(matches!(e.code.as_str(), "crypto" | "decode"), "{e:?}");
    };
    let bob = keys();
    let bond = n.bond(&bob, BondRole::Buyer);
    // Protocol 1.
    let (m0, b) = buyer::request_approval::<FirstCome>(
        &bob,
        rng,
        n.ccpo(&bond, "a kettle", DAY),
        "",
        &n.arbiter,
    )
    .unwrap();
    let r1 = n.client.call(Role::Arbiter, &m0, None).unwrap();
    let (m2, b) = b.handle(&bob, rng, &r1.body).unwrap();
    refused_but_pending(Role::Arbiter, &m2, r1.step);
    refused_but_pending(Role::Arbiter, &m2, r1.step);
    let r3 = n.client.call(Role::Arbiter, &m2, r1.step).unwrap();
    let acceptance = b.handle(&bob, now(), &r3.body).unwrap();
    assert_eq!(
        problem(n.client.call(Role::Arbiter, &m2, r1.step).unwrap_err()).code,
        "unknown-step",
        "the genuine answer used it up"
    );
    // Protocol 2.
    let (m0, b) = buyer::request_post(&bob, rng, &acceptance, &n.server).unwrap();
    let r1 = n.client.call(Role::Server, &m0, None).unwrap();
    let (m2, b) = b.handle(&bob, rng, &r1.body).unwrap();
    refused_but_pending(Role::Server, &m2, r1.step);
    let r3 = n.client.call(Role::Server, &m2, r1.step).unwrap();
    b.handle(&bob, &r3.body).unwrap();
    // Protocol 3.
    let pam = keys();
    let pam_bond = n.bond(&pam, BondRole::Seller);
    let (m0, p) = seller::request_session(
        &pam,
        rng,
        pam_bond,
        now().minus_secs(60),
        now().plus_secs(DAY),
        &n.server,
    )
    .unwrap();
    let r1 = n.client.call(Role::Server, &m0, None).unwrap();
    let (m2, p) = p.handle(&pam, rng, &r1.body).unwrap();
    refused_but_pending(Role::Server, &m2, r1.step);
    let r3 = n.client.call(Role::Server, &m2, r1.step).unwrap();
    p.handle(&pam, &r3.body).unwrap();
}

/// The bind steps run on the node's async runtime and await the group
/// commit: sixteen sellers holding listings of one CPO offer at the same
/// moment; exactly one is bound, the others hear "already bound", and the
/// store holds the winner's BOUND_CPO.
#[test]
fn sixteen_sellers_offer_at_once_over_http_and_one_binds() {
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "A walnut writing desk", 30 * DAY);
    let id = ccpo.id;
    n.approve_and_post::<FirstCome>(&bob, ccpo);

    let offers: Vec<_> = (0..16)
        .map(|_| {
            let k = keys();
            let s = n.session(&k, &n.bond(&k, BondRole::Seller));
            let (m1, exp) = n.offer(&s, id).unwrap();
            (s, m1, exp)
        })
        .collect();
    let start = std::sync::Barrier::new(offers.len());
    let answers: Vec<Result<Vec<u8>, ClientError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = offers
            .into_iter()
            .map(|(s, m1, exp)| {
                let (n, start) = (&n, &start);
                scope.spawn(move || {
                    let client = NodeClient::new(&n.url).unwrap();
                    start.wait();
                    client
                        .call(Role::Server, &m1, None)
                        .map(|r| exp.handle(&s, &r.body).unwrap().signed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (won, lost): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    let won: Vec<Vec<u8>> = won.into_iter().map(Result::unwrap).collect();
    assert_eq!(won.len(), 1, "exactly one seller binds");
    for lost in lost.into_iter().map(Result::unwrap_err) {
        let p = problem(lost);
        assert_eq!((p.status, p.code.as_str()), (409, "refused"));
        assert!(p.detail.unwrap_or_default().contains("already bound"));
    }
    let stored = n.svc.store().board().binding(&id).unwrap().expect("bound");
    assert_eq!(stored.bound_cpo, won[0], "the store holds the winner's");
}

/// A seller fetches the listings of a page of CPOs in one request and binds
/// one of them; the page says why the others have none.
#[test]
fn a_page_of_listings_over_http() {
    let n = TestNode::start(NodeConfig::default());
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let ccpo = n.ccpo(&bob_bond, "A brass telescope", 30 * DAY);
    let id = ccpo.id;
    n.approve_and_post::<FirstCome>(&bob, ccpo);
    let pam = keys();
    let s = n.session(&pam, &n.bond(&pam, BondRole::Seller));
    let rng = &mut os_rng();
    let (m, exp) = s
        .request_listings(rng, &[[5; 32], id], Mode::FirstCome)
        .unwrap();
    let r = n.client.call(Role::Server, &m, None).unwrap();
    let page = exp.handle(&s, &r.body).unwrap();
    assert!(page[0].1.as_ref().unwrap_err().contains("no such CPO"));
    let listing = s.open_listing(page[1].1.as_ref().unwrap()).unwrap();
    assert_eq!(listing.ccpo().id, id);
    let (m1, exp) = s.offer(rng, &listing, "ships tomorrow").unwrap();
    let r = n.client.call(Role::Server, &m1, None).unwrap();
    exp.handle(&s, &r.body).unwrap();
    assert_eq!(n.client.cpo(&id).unwrap()["status"], "bound");
}

/// Replaying one recorded approval request cannot fill the pending-step
/// table (issue 15: 10,000 replays gave 10,000 fresh challenges and refused
/// approvals for two minutes). Every replay while the approval is pending
/// gets the same challenge and step; others find room meanwhile, and the
/// genuine approval goes on.
#[test]
fn replayed_approval_requests_cost_one_pending_step() {
    let n = TestNode::start(NodeConfig {
        max_pending_steps: 4,
        ..Default::default()
    });
    let bob = keys();
    let bond = n.bond(&bob, BondRole::Buyer);
    let rng = &mut os_rng();
    let ccpo = n.ccpo(&bond, "a lamp", DAY);
    let (m0, b) = buyer::request_approval::<FirstCome>(&bob, rng, ccpo, "", &n.arbiter).unwrap();
    let first = n.client.call(Role::Arbiter, &m0, None).unwrap();
    for _ in 0..10_000 {
        let again = n.client.call(Role::Arbiter, &m0, None).unwrap();
        assert_eq!(again, first, "the same challenge and step");
    }
    // Another buyer's approval and post find room.
    let alice = keys();
    let alice_bond = n.bond(&alice, BondRole::Buyer);
    n.approve_and_post::<FirstCome>(&alice, n.ccpo(&alice_bond, "a chair", DAY));
    // And Bob's approval goes on under its step.
    let (m2, b) = b.handle(&bob, rng, &first.body).unwrap();
    let r3 = n.client.call(Role::Arbiter, &m2, first.step).unwrap();
    b.handle(&bob, now(), &r3.body).unwrap();
}

/// A request refused for room changes nothing (issue 15: R_0 entered the
/// replay cache before the pending step was stored, so the client's retry
/// of the same bytes after a 503 was refused as replayed). Here the post
/// request is refused with a full table, and the same bytes sent again once
/// there is room go through to a posted CPO.
#[test]
fn a_post_refused_for_a_full_table_goes_through_when_sent_again() {
    let n = TestNode::start(NodeConfig {
        max_pending_steps: 1,
        ..Default::default()
    });
    let rng = &mut os_rng();
    let bob = keys();
    let bob_bond = n.bond(&bob, BondRole::Buyer);
    let (m0, b) = buyer::request_approval::<FirstCome>(
        &bob,
        rng,
        n.ccpo(&bob_bond, "a lamp", DAY),
        "",
        &n.arbiter,
    )
    .unwrap();
    let r1 = n.client.call(Role::Arbiter, &m0, None).unwrap();
    let (m2, b) = b.handle(&bob, rng, &r1.body).unwrap();
    let r3 = n.client.call(Role::Arbiter, &m2, r1.step).unwrap();
    let acceptance = b.handle(&bob, now(), &r3.body).unwrap();
    // Alice's approval holds the only pending step.
    let alice = keys();
    let alice_bond = n.bond(&alice, BondRole::Buyer);
    let (a0, a) = buyer::request_approval::<FirstCome>(
        &alice,
        rng,
        n.ccpo(&alice_bond, "a chair", DAY),
        "",
        &n.arbiter,
    )
    .unwrap();
    let a1 = n.client.call(Role::Arbiter, &a0, None).unwrap();
    // Bob's post request: 503 (sent raw: NodeClient would retry it).
    let (p0, p) = buyer::request_post(&bob, rng, &acceptance, &n.server).unwrap();
    let r = raw(&n.url)
        .post(format!("{}/v1/cpo/server", n.url))
        .header("content-type", "application/cbor")
        .body(p0.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    // Alice finishes; the step is free.
    let (a2, _) = a.handle(&alice, rng, &a1.body).unwrap();
    n.client.call(Role::Arbiter, &a2, a1.step).unwrap();
    // Bob's same bytes, again: not "replayed".
    let r1 = n
        .client
        .call(Role::Server, &p0, None)
        .expect("the refusal spent nothing");
    let (p2, p) = p.handle(&bob, rng, &r1.body).unwrap();
    let r3 = n.client.call(Role::Server, &p2, r1.step).unwrap();
    p.handle(&bob, &r3.body).unwrap();
}
