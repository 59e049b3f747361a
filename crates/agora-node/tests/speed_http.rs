//! SPEED over HTTP: a real node on loopback hosting a broker and a vendor
//! with products in files; a customer buys through `SpeedClient` in normal
//! mode (negotiated, paid from her account), loads her card and pays by
//! card, and buys in aggressive mode. The books balance, each product
//! decrypts, and replays get problem documents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_client::speed::{Negotiated, SpeedClient};
use agora_client::transport::{ClientError, NodeClient};
use agora_core::crypto::{os_rng, Secret, SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_node::speed::{
    BrokerSpec, CatalogueSource, Product, SpeedService, SpeedSpec, SpeedTrustSource, VendorSpec,
};
use agora_node::{Node, NodeConfig, Service};
use agora_pki::{Agency, CrlParams, IdentityParams, PartyRole, TrustAnchors};
use agora_speed::customer::Identity;
use agora_speed::ledger::{Account, AccountKind, JournalEntry, Posting};
use agora_speed::purse::Sam;
use agora_speed::strategy::{AcceptFirst, PriceRule, Target};
use agora_speed::{AccountNumber, CardId, Keys, Peer, SpeedTrust};
use agora_store::Stores;
use std::sync::Arc;
use std::time::Duration;

const DAY: u64 = 86_400;
const SONG: &str = "SONG-1: a song, MP3";
const KEY: &str = "KEY-1: a 16-byte key to a stream";
const MASTER: [u8; 32] = [0x5a; 32];

fn eur(c: u64) -> Money {
    Money::new(c, Currency::new("EUR").unwrap())
}

fn num(s: &str) -> AccountNumber {
    AccountNumber::new(s).unwrap()
}

fn keys() -> Keys {
    Keys {
        sign: SigningKey::generate(&mut os_rng()),
        enc: X25519Secret::generate(&mut os_rng()),
    }
}

struct Fixed(Vec<Product>);

impl CatalogueSource for Fixed {
    fn products(&self) -> Result<Vec<Product>, String> {
        Ok(self.0.clone())
    }
}

struct NoBonds;

impl agora_node::cpo::TrustSource<agora_cpo::BondTrust> for NoBonds {
    fn load(&self) -> Result<agora_cpo::BondTrust, String> {
        Ok(agora_cpo::BondTrust {
            agencies: TrustAnchors::new(),
            crls: vec![],
        })
    }
}

struct Trust(SpeedTrust);

impl SpeedTrustSource<SpeedTrust> for Trust {
    fn load(&self) -> Result<SpeedTrust, String> {
        Ok(self.0.clone())
    }
}

struct TestNode {
    url: String,
    svc: Arc<SpeedService>,
    carol: Identity,
    vendor: Peer,
    broker: Peer,
    song: Vec<u8>,
    key_product: Vec<u8>,
    // Declared before `dir`: fields drop in order, so the node stops
    // before its data directory goes.
    _served: common::Served,
    dir: tempfile::TempDir,
}

fn start() -> TestNode {
    start_with(NodeConfig::default())
}

fn start_with(config: NodeConfig) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now_from_system_clock();
    let mut rng = os_rng();
    let ca = Agency::create(
        "SPEED CA",
        SigningKey::generate(&mut rng),
        now.minus_secs(DAY),
        now.plus_secs(365 * DAY),
        &mut rng,
    )
    .unwrap();
    let issue = |k: &Keys, name: &str, role| {
        ca.issue_identity(
            &IdentityParams {
                name: name.into(),
                key: k.sign.verifying_key(),
                role,
                x25519: Some(k.enc.public()),
                not_before: now.minus_secs(60),
                not_after: now.plus_secs(DAY),
                crl_uri: ca.crl_uri("http://127.0.0.1:1"),
            },
            &mut os_rng(),
        )
        .unwrap()
        .der
    };
    let mut cas = TrustAnchors::new();
    cas.add_der(ca.certificate_der()).unwrap();
    let crl = ca
        .issue_crl(&CrlParams {
            this_update: now.minus_secs(60),
            next_update: now.plus_secs(DAY),
            crl_number: 1,
            revoked: vec![],
        })
        .unwrap();
    let trust = SpeedTrust::new(cas, vec![crl]);
    let (carol_keys, vendor_keys, broker_keys) = (keys(), keys(), keys());
    let carol = Identity {
        cert: issue(&carol_keys, "carol", PartyRole::Customer),
        keys: carol_keys,
    };
    let vendor_cert = issue(&vendor_keys, "shop", PartyRole::Vendor);
    let (vendor, broker) = (vendor_keys.peer(), broker_keys.peer());
    let song: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let key_product = b"0123456789abcdef".to_vec();
    std::fs::write(dir.path().join("song.mp3"), &song).unwrap();
    std::fs::write(dir.path().join("key.bin"), &key_product).unwrap();
    let store = Stores::in_data_dir(
        dir.path(),
        agora_store::AtRestKey::generate(&mut agora_core::crypto::os_rng()),
    )
    .unwrap();
    // The pages too (the store page), over a CPO service hosting no role.
    let web = Arc::new(agora_node::web::WebService::new(Arc::new(
        agora_node::cpo::CpoService::new(agora_node::cpo::CpoSpec {
            store: store.clone(),
            server: None,
            arbiter: None,
            trust: Box::new(NoBonds),
        })
        .unwrap(),
    )));
    let svc = Arc::new(
        SpeedService::new(SpeedSpec {
            store,
            broker: Some(BrokerSpec {
                keys: broker_keys,
                sam_master: Secret::new(MASTER),
                vendors: vec![vendor_cert],
                floats: vec![(eur(0).currency, num("B-FLOAT-EUR"))],
            }),
            vendor: Some(VendorSpec {
                keys: vendor_keys,
                account: num("V-SHOP"),
                broker,
                catalogue: Box::new(Fixed(vec![
                    Product {
                        id: SONG.into(),
                        path: dir.path().join("song.mp3"),
                        rule: PriceRule {
                            list: eur(150),
                            floor: eur(100),
                            step: 20,
                        },
                    },
                    Product {
                        id: KEY.into(),
                        path: dir.path().join("key.bin"),
                        rule: PriceRule::fixed(eur(50)),
                    },
                ])),
                max_aggressive_len: 1_000_000,
            }),
            trust: Box::new(Trust(trust)),
        })
        .unwrap(),
    );
    let l = svc.ledger();
    let open = |n: &str, owner, kind| {
        l.open_account(&Account {
            number: num(n),
            owner,
            kind,
            currency: eur(0).currency,
            allow_credit: false,
        })
        .unwrap()
    };
    open("C-CAROL", carol.keys.id(), AccountKind::Customer);
    open("V-SHOP", vendor.id(), AccountKind::Vendor);
    open("B-FLOAT-EUR", broker.id(), AccountKind::PurseFloat);
    open("B-CASH-EUR", broker.id(), AccountKind::External);
    l.post(&JournalEntry {
        id: [1; 16],
        at: now,
        memo: "deposit".into(),
        postings: vec![
            Posting {
                account: num("B-CASH-EUR"),
                cents: -10_000,
            },
            Posting {
                account: num("C-CAROL"),
                cents: 10_000,
            },
        ],
    })
    .unwrap();
    let served = common::Served::start(|url| {
        Node::new(NodeConfig {
            public_url: url.to_owned(),
            housekeeping_every: Duration::from_secs(3600),
            ..config
        })
        .with(svc.clone() as Arc<dyn Service>)
        .with(web.clone())
    });
    let url = served.url();
    TestNode {
        url,
        svc,
        carol,
        vendor,
        broker,
        song,
        key_product,
        dir,
        _served: served,
    }
}

impl TestNode {
    fn client(&self) -> SpeedClient {
        SpeedClient::http(NodeClient::new(&self.url).unwrap())
    }
    fn cents(&self, n: &str) -> i64 {
        self.svc.ledger().balance(&num(n)).unwrap().cents
    }
    fn decrypt(&self, key: &Secret<32>, file: &str) -> Vec<u8> {
        let ct = std::fs::File::open(self.dir.path().join(file)).unwrap();
        let mut out = Vec::new();
        agora_speed::product::decrypt(key, ct, &mut out).unwrap();
        out
    }
}

#[test]
fn negotiated_purchase_paid_from_account_over_http() {
    let n = start();
    let c = n.client();
    let cat = c.catalogue().unwrap();
    assert_eq!(cat["products"].as_array().unwrap().len(), 2);
    let strategy = Target {
        target: eur(90),
        step: 10,
        limit: eur(130),
    };
    let out = n.dir.path().join("song.enc");
    let Negotiated::Ready(ready) = c
        .negotiate(&mut os_rng(), &n.carol, &n.vendor, SONG, &strategy, &out)
        .unwrap()
    else {
        panic!("no agreement")
    };
    // Vendor 1.50, 1.30, 1.10, 1.00 (last); Carol 0.90, 1.00, 1.10: 1.10.
    assert_eq!(ready.price(), eur(110));
    let purchase = c
        .pay_from_account(
            &mut os_rng(),
            &n.carol,
            &n.broker,
            &n.vendor,
            ready,
            num("C-CAROL"),
            &|_| false,
            |_, _| Ok(()),
        )
        .unwrap();
    assert_eq!(n.decrypt(&purchase.key, "song.enc"), n.song);
    // A complaint, streamed with the encrypted song: the broker checks it
    // against the bill, decrypts it, and signs a ruling. The description
    // names no digest, so the facts are recorded for a person.
    let (ruling, signed) = c
        .complain(
            &mut os_rng(),
            &n.carol,
            &n.broker,
            purchase.order,
            SONG,
            &out,
        )
        .unwrap();
    assert_eq!(ruling.verdict, agora_speed::msg::Verdict::Recorded);
    assert!(ruling.decrypts);
    assert_eq!(ruling.content_hash, agora_core::crypto::sha256(&n.song));
    assert!(agora_speed::customer::verify_ruling(&signed, &n.broker.sign).is_ok());
    // Someone else's description is refused.
    let e = c
        .complain(
            &mut os_rng(),
            &n.carol,
            &n.broker,
            purchase.order,
            KEY,
            &out,
        )
        .unwrap_err();
    assert_eq!(e.code(), "refused");
    assert_eq!(n.cents("C-CAROL"), 10_000 - 110);
    assert_eq!(n.cents("V-SHOP"), 110);
    assert_eq!(n.svc.ledger().total(eur(0).currency).unwrap(), 0);
}

#[test]
fn card_loaded_then_aggressive_purchase_paid_by_card_over_http() {
    let n = start();
    let c = n.client();
    let mut card = Sam::new(Secret::new(MASTER)).issue(CardId([3; 16]), eur(0).currency);
    c.load_card(
        &mut os_rng(),
        &n.carol,
        &n.broker,
        num("C-CAROL"),
        eur(500),
        &mut card,
        Timestamp::now_from_system_clock(),
        |_| Ok(()),
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(card.balance(), eur(500));
    assert_eq!(n.cents("B-FLOAT-EUR"), 500);
    let out = n.dir.path().join("key.enc");
    let ready = c
        .request(&mut os_rng(), &n.carol, &n.vendor, KEY, eur(50), &out)
        .unwrap();
    let mut saved_card = None;
    let purchase = c
        .pay_by_card(
            &mut os_rng(),
            &n.carol,
            &n.broker,
            &n.vendor,
            ready,
            &mut card,
            &|_| false,
            |_, _| Ok(()),
            |c| {
                saved_card = Some(c.to_bytes());
                Ok(())
            },
        )
        .unwrap();
    assert!(saved_card.is_some(), "the card was saved before S3 left it");
    assert_eq!(n.decrypt(&purchase.key, "key.enc"), n.key_product);
    assert_eq!(card.balance(), eur(450));
    assert_eq!(n.cents("B-FLOAT-EUR"), 450);
    assert_eq!(n.cents("V-SHOP"), 50);
    assert_eq!(n.svc.ledger().total(eur(0).currency).unwrap(), 0);
}

#[test]
fn walking_away_and_refusals_over_http() {
    let n = start();
    let c = n.client();
    let stingy = Target {
        target: eur(10),
        step: 5,
        limit: eur(40),
    };
    let out = n.dir.path().join("x.enc");
    match c
        .negotiate(&mut os_rng(), &n.carol, &n.vendor, SONG, &stingy, &out)
        .unwrap()
    {
        Negotiated::WalkedAway { offer, .. } => assert_eq!(offer, eur(100)),
        Negotiated::Ready(_) => panic!("agreed above her limit"),
    }
    // Aggressive mode at a price under the vendor's is refused.
    let e = c
        .request(&mut os_rng(), &n.carol, &n.vendor, SONG, eur(1), &out)
        .unwrap_err();
    assert_eq!(e.code(), "refused");
    // An unknown product.
    let e = c
        .negotiate(
            &mut os_rng(),
            &n.carol,
            &n.vendor,
            "NOPE",
            &AcceptFirst,
            &out,
        )
        .unwrap_err();
    assert_eq!(e.code(), "refused");
    // A receipt for a payment that never happened.
    let Negotiated::Ready(ready) = c
        .negotiate(&mut os_rng(), &n.carol, &n.vendor, KEY, &AcceptFirst, &out)
        .unwrap()
    else {
        panic!()
    };
    let (expect, order) = ready
        .pay_from_account(&mut os_rng(), &n.carol, &n.broker, num("C-CAROL"), &|_| {
            false
        })
        .unwrap();
    let node = NodeClient::new(&n.url).unwrap();
    let lost = agora_speed::customer::receipt_request(expect.order());
    let e = node.post_cbor("/v1/speed/broker", &lost, &[]).unwrap_err();
    assert_eq!(e.code(), "refused");
    // Paid once; the same order again is a replay, and changes nothing.
    node.post_cbor("/v1/speed/broker", &order, &[]).unwrap();
    let e = node.post_cbor("/v1/speed/broker", &order, &[]).unwrap_err();
    assert!(matches!(&e, ClientError::Problem(p) if p.status == 409 && p.code == "replayed"));
    assert_eq!(n.cents("V-SHOP"), 50);
    // The lost receipt, asked for again.
    let purchase = c.receipt(expect).unwrap();
    assert_eq!(purchase.price, eur(50));
    // A NegotiationStep without the step id of its negotiation, and
    // one under an step id the node never gave.
    let (_, request) =
        agora_speed::customer::negotiate(&mut os_rng(), &n.carol, &n.vendor, SONG, &AcceptFirst)
            .unwrap();
    let (step, id) = node.post_cbor("/v1/speed/vendor", &request, &[]).unwrap();
    assert!(id.is_some());
    let e = node.post_cbor("/v1/speed/vendor", &step, &[]).unwrap_err();
    assert!(
        matches!(&e, ClientError::Problem(p) if p.detail.as_deref().unwrap_or("").contains("agora-step"))
    );
    let e = node
        .post_cbor(
            "/v1/speed/vendor",
            &step,
            &[("agora-step", "00".repeat(16))],
        )
        .unwrap_err();
    assert_eq!(e.code(), "unknown-step");
}

/// "Bad input changes nothing": a NegotiationStep or Handshake damaged on
/// the way is refused and the vendor's negotiation goes on, so the genuine
/// message, sent again under the same step id, is answered. A message
/// that authenticates and breaks the protocol (a repeated SeqN) ends the
/// negotiation as an attack.
#[test]
fn damaged_negotiation_messages_leave_the_negotiation_intact() {
    use agora_node::STEP_HEADER;
    use agora_speed::customer::{self, CustomerNext};
    let n = start();
    let node = NodeClient::new(&n.url).unwrap();
    let strategy = Target {
        target: eur(90),
        step: 10,
        limit: eur(130),
    };
    let mut rng = os_rng();
    let (state, m1) = customer::negotiate(&mut rng, &n.carol, &n.vendor, SONG, &strategy).unwrap();
    let (step, x) = node.post_cbor("/v1/speed/vendor", &m1, &[]).unwrap();
    let CustomerNext::Counter(state, m2) =
        state.on_step(&mut rng, &n.carol, &step, &strategy).unwrap()
    else {
        panic!("Carol counters 0.90")
    };
    let hdr = |x: Option<[u8; 16]>| [(STEP_HEADER, hex::encode(x.unwrap()))];
    let flip = |m: &[u8], i: usize| {
        let mut d = m.to_vec();
        d[i] ^= 0x20;
        d
    };
    // Damaged in the middle and at the end (the tag): refused, twice.
    for i in [m2.len() / 2, m2.len() - 1] {
        let e = node
            .post_cbor("/v1/speed/vendor", &flip(&m2, i), &hdr(x))
            .unwrap_err();
        assert_ne!(e.code(), "unknown-step", "{e}");
    }
    // The genuine step is still answered.
    let (step, x2) = node.post_cbor("/v1/speed/vendor", &m2, &hdr(x)).unwrap();
    // Carol keeps countering until she accepts; her Handshake is damaged
    // first, then sent as it is.
    let (mut state, mut step, mut x2) = (state, step, x2);
    let (expect, handshake) = loop {
        match state.on_step(&mut rng, &n.carol, &step, &strategy).unwrap() {
            CustomerNext::Counter(s, m) => {
                let (next, x) = node.post_cbor("/v1/speed/vendor", &m, &hdr(x2)).unwrap();
                (state, step, x2) = (s, next, x);
            }
            CustomerNext::Agreed(expect, m3) => break (expect, m3),
            CustomerNext::WalkedAway { .. } => panic!("they meet at 1.10"),
        }
    };
    let e = node
        .post_cbor_stream(
            "/v1/speed/vendor",
            &flip(&handshake, handshake.len() / 2),
            &hdr(x2),
        )
        .unwrap_err();
    assert_ne!(e.code(), "unknown-step", "{e}");
    let r = node
        .post_cbor_stream("/v1/speed/vendor", &handshake, &hdr(x2))
        .unwrap();
    assert!(r.status().is_success());
    drop((r, expect));
    // A repeated SeqN ends a negotiation: in a new negotiation, Carol's
    // counter-offer sent again after the vendor answered it (under the new
    // step id) authenticates, but repeats its SeqN.
    let (state, m1) = customer::negotiate(&mut rng, &n.carol, &n.vendor, SONG, &strategy).unwrap();
    let (step, x) = node.post_cbor("/v1/speed/vendor", &m1, &[]).unwrap();
    let CustomerNext::Counter(_, m2) = state.on_step(&mut rng, &n.carol, &step, &strategy).unwrap()
    else {
        panic!("Carol counters")
    };
    let (_, x2) = node.post_cbor("/v1/speed/vendor", &m2, &hdr(x)).unwrap();
    let e = node
        .post_cbor("/v1/speed/vendor", &m2, &hdr(x2))
        .unwrap_err();
    assert_eq!(e.code(), "peer-misbehaved", "{e}");
    // ... and the negotiation is gone.
    let e = node
        .post_cbor("/v1/speed/vendor", &m2, &hdr(x2))
        .unwrap_err();
    assert_eq!(e.code(), "unknown-step", "{e}");
}

/// The SPEED routes answer what openapi.json says: the catalogue's body,
/// bodies that are no message (each a `4xx` problem document), another
/// media type (`415`), and the media types in any case (read, not `415`).
#[test]
fn speed_routes_answer_what_the_document_says() {
    let api = common::api();
    let n = start();
    let http = reqwest::blocking::Client::new();
    let a = common::Answer::of(
        http.get(format!("{}/v1/speed/catalogue", n.url))
            .send()
            .unwrap(),
    );
    assert_eq!(a.status, 200);
    common::assert_documented(&api, "get", "/v1/speed/catalogue", &a);
    let post = |path: &str, ct: &str, body: &[u8]| {
        common::Answer::of(
            http.post(format!("{}{path}", n.url))
                .header("content-type", ct)
                .body(body.to_vec())
                .send()
                .unwrap(),
        )
    };
    for (path, media) in [
        ("/v1/speed/vendor", "application/cbor"),
        ("/v1/speed/broker", "application/cbor"),
        ("/v1/speed/complaints", agora_node::speed::COMPLAINT_TYPE),
    ] {
        let upper = media.to_ascii_uppercase();
        let with_params = format!(
            "{}; charset=binary",
            media.replace("application", "Application")
        );
        for body in [&b""[..], b"garbage", &[0xff; 64]] {
            for ct in [media, upper.as_str(), with_params.as_str()] {
                let a = post(path, ct, body);
                assert!(
                    (400..500).contains(&a.status) && a.status != 415,
                    "{path} as {ct}: {}",
                    a.status
                );
                common::assert_documented(&api, "post", path, &a);
            }
        }
        let a = post(path, "application/octet-stream", b"garbage");
        assert_eq!(a.status, 415, "{path}");
        common::assert_documented(&api, "post", path, &a);
    }
}

/// Replaying one recorded negotiation request cannot fill the pending-step
/// table (issue 15: 10,000 replays took 10,000 slots and refused normal
/// purchases for two minutes). Each replay while the negotiation is pending
/// gets the same step back; the table holds one step for them all, and the
/// genuine negotiation goes on under that step.
#[test]
fn replayed_negotiation_requests_cost_one_pending_step() {
    use agora_node::STEP_HEADER;
    use agora_speed::customer::{self, CustomerNext};
    let n = start();
    let node = NodeClient::new(&n.url).unwrap();
    let strategy = Target {
        target: eur(90),
        step: 10,
        limit: eur(130),
    };
    let mut rng = os_rng();
    let (state, m1) = customer::negotiate(&mut rng, &n.carol, &n.vendor, SONG, &strategy).unwrap();
    let (step, x) = node.post_cbor("/v1/speed/vendor", &m1, &[]).unwrap();
    for _ in 0..2_000 {
        let (again, y) = node.post_cbor("/v1/speed/vendor", &m1, &[]).unwrap();
        assert_eq!((&again, y), (&step, x), "the same answer and step");
    }
    let metrics: String = reqwest::blocking::get(format!("{}/metrics", n.url))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "agora_pending_steps 1"),
        "one pending step for 2,001 copies of the request:\n{metrics}"
    );
    // The negotiation itself is unharmed.
    let CustomerNext::Counter(_, m2) = state.on_step(&mut rng, &n.carol, &step, &strategy).unwrap()
    else {
        panic!("Carol counters 0.90")
    };
    let hdr = [(STEP_HEADER, hex::encode(x.unwrap()))];
    node.post_cbor("/v1/speed/vendor", &m2, &hdr).unwrap();
}

/// The complaint route is an upload: bounded in size before its body is
/// read (a declared 2^40 bytes is refused at once, naming the limit
/// enforced), in number (one at a time from a client address, `503` past
/// it, and `max_uploads` in all) and in time (an upload whose data stops
/// for `body_timeout` is cut with `408`), and a slow uploader holds an
/// upload place, not one of the work slots other requests need.
#[test]
fn complaint_uploads_are_bounded_in_size_number_and_time() {
    use std::io::{Read, Write};
    let n = start_with(NodeConfig {
        body_timeout: Duration::from_secs(1),
        ..NodeConfig::default()
    });
    let addr = n.url.trim_start_matches("http://").to_owned();
    let head = |len: u64| {
        format!(
            "POST /v1/speed/complaints HTTP/1.1\r\nHost: t\r\n\
             Content-Type: application/vnd.agora.speed-complaint\r\n\
             Content-Length: {len}\r\n\r\n"
        )
    };
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head(1 << 40).as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer)
        .expect("an answer without the body");
    assert_eq!(&answer, b"HTTP/1.1 413");
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    let limit = NodeConfig::default().max_upload_bytes;
    assert!(rest.contains(&limit.to_string()), "{rest}");
    // A slow upload holds this client's upload place...
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(head(1_000_000).as_bytes()).unwrap();
    slow.write_all(b"\0\0").unwrap();
    let second = || {
        reqwest::blocking::Client::new()
            .post(format!("{}/v1/speed/complaints", n.url))
            .header("content-type", "application/vnd.agora.speed-complaint")
            .body(vec![0u8; 16])
            .send()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let r = second();
        if r.status().as_u16() == 503 {
            break r.text().unwrap();
        }
        // The slow one may not have been admitted yet.
        assert!(std::time::Instant::now() < deadline, "{}", r.status());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(refused.contains("as many uploads as it may"), "{refused}");
    // ... while other routes are served ...
    let r = reqwest::blocking::get(format!("{}/v1/speed/catalogue", n.url)).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // ... until its data stops for longer than the body timeout.
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let r = second();
    assert_ne!(r.status().as_u16(), 503, "the place was given back");
}

/// The text of `html` with the five entities of `agora_node::web::escape`
/// replaced by their characters.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The words a POSIX shell makes of `line` (plain words and single-quoted
/// ones, which is all the store page writes).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The store page lists the vendor's products at their list prices, and
/// the command it prints for one, run as printed (the customer's name in
/// place of `<you>`), buys it: its ProductID, limit and node make a deal at
/// the list price, paid and decrypted. The purchase is then counted in
/// `/metrics`, by currency, once.
#[test]
fn the_store_page_prints_a_command_that_buys_the_product() {
    let n = start();
    let http = reqwest::blocking::Client::new();
    let r = http.get(format!("{}/store", n.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().unwrap();
    assert!(
        page.contains(&n.vendor.id().to_string()),
        "the vendor's key id"
    );
    assert!(page.contains("2 products on sale"), "{page}");
    let commands: Vec<String> = page
        .split("<pre class=\"buy\"><code>")
        .skip(1)
        .map(|rest| unescape(rest.split("</code>").next().unwrap()))
        .collect();
    assert_eq!(commands.len(), 2, "{page}");
    let line = commands
        .iter()
        .find(|c| c.contains(SONG))
        .expect("the song's command");
    let words = shell_words(&line.replace("<you>", "carol"));
    assert_eq!(words[..3], ["agora", "speed", "buy"], "{line}");
    let flag = |name: &str| -> String {
        let i = words
            .iter()
            .position(|w| w == name)
            .unwrap_or_else(|| panic!("{name} in {line}"));
        words[i + 1].clone()
    };
    assert_eq!(flag("--as"), "carol");
    assert_eq!(flag("--product"), SONG);
    assert_eq!(flag("--node"), n.url);
    assert!(!flag("--out").is_empty());
    let limit: Money = flag("--limit").parse().unwrap();
    assert_eq!(limit, eur(150), "the list price");
    assert_eq!(words.len(), 13, "no other word: {words:?}");

    // `--limit` alone is agora speed buy's WalkAwayAbove.
    let c = SpeedClient::http(NodeClient::new(&flag("--node")).unwrap());
    let out = n.dir.path().join("bought.enc");
    let strategy = agora_speed::strategy::WalkAwayAbove { limit };
    let Negotiated::Ready(ready) = c
        .negotiate(
            &mut os_rng(),
            &n.carol,
            &n.vendor,
            &flag("--product"),
            &strategy,
            &out,
        )
        .unwrap()
    else {
        panic!("no deal at the printed limit")
    };
    assert_eq!(ready.price(), eur(150));
    let purchase = c
        .pay_from_account(
            &mut os_rng(),
            &n.carol,
            &n.broker,
            &n.vendor,
            ready,
            num("C-CAROL"),
            &|_| false,
            |_, _| Ok(()),
        )
        .unwrap();
    assert_eq!(n.decrypt(&purchase.key, "bought.enc"), n.song);

    let metrics = |n: &TestNode| {
        http.get(format!("{}/metrics", n.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let m = metrics(&n);
    assert!(
        m.contains(r#"agora_speed_purchases_total{currency="EUR"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"agora_speed_volume_cents_total{currency="EUR"} 150"#),
        "{m}"
    );
}
