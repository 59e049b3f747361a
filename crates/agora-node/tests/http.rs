//! The node over real HTTP on loopback: the CPO protocols end to end through
//! `NodeClient`, the problem documents of bad requests, the guard (rate
//! limits, overload), the pending-step table, housekeeping (awards,
//! revocations), the PKI routes, /metrics and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
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
        let store = agora_store::Stores::in_data_dir(dir.path()).unwrap();
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
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let url = format!("http://{addr}");
        let node = Node::new(NodeConfig {
            public_url: url.clone(),
            housekeeping_every: Duration::from_secs(3600),
            ..config
        })
        .with(svc.clone() as Arc<dyn Service>)
        .with(pki.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                node.serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        TestNode {
            client: NodeClient::new(&url).unwrap(),
            url,
            svc,
            pki,
            agency,
            trust,
            arbiter,
            server,
            stop: Some(stop),
            thread: Some(thread),
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
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.stop();
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
        .unwrap();
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
        n.client.board(&BoardQuery::default()).unwrap().is_empty(),
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
    for path in [
        "/v1/cpo/arbiter",
        "/v1/cpo/server",
        "/v1/cpo/board",
        "/v1/cpo/board/{id}",
        "/v1/cpo/notices/{id}/{receipt}",
        "/v1/cpo/awards/{id}",
        "/v1/speed/vendor",
        "/v1/speed/catalogue",
        "/v1/speed/broker",
        "/v1/speed/complaints",
        "/v1/pki/agencies",
        "/v1/pki/{agency}/crl",
        "/v1/pki/{agency}/cert",
        "/v1/node",
        "/",
        "/cpo/{id}",
        "/how-to-bind",
        "/style.css",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            api["paths"].get(path).is_some(),
            "{path} is not in the OpenAPI document"
        );
    }
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
