//! The lightweight vendor over real HTTP: SKEP through the node's endpoint
//! (hello, challenge under a pending step, confirm, signed receipt), then
//! personalized quotes over SDDP through the vendor's tower layer; and what
//! the layer refuses: unsigned, unknown clients, replays, tampering, a
//! second SKEP for the same id.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_core::crypto::{os_rng, SigningKey, X25519Public, X25519Secret};
use agora_core::ports::replay::MemoryReplayCache;
use agora_core::Timestamp;
use agora_lite::http as lite_http;
use agora_lite::records::MemoryClientRecords;
use agora_lite::skep::{verify_receipt, SignedReceipt, SkepClient, SkepMode, SkepVendor};
use agora_lite::wire::Subscription;
use agora_lite::{ClientId, Granularity, Janus, JanusParams, VendorId, VendorKey};
use agora_node::lite::{LiteService, LiteSpec};
use agora_node::{Service, STEP_HEADER};
use std::sync::Arc;

const VENDOR: &str = "quotes.agora.test";

struct Net {
    _served: common::Served,
    url: String,
    http: reqwest::blocking::Client,
}

fn serve() -> Net {
    let mut r = os_rng();
    let svc = Arc::new(
        LiteService::new(LiteSpec {
            vendor: SkepVendor::new(
                VendorId::new(VENDOR).unwrap(),
                X25519Secret::generate(&mut r),
                SigningKey::generate(&mut r),
            ),
            mode: SkepMode::NonRepudiation,
            certificate: None,
            records: Arc::new(MemoryClientRecords::new()),
            replay: Arc::new(MemoryReplayCache::new()),
            granularity: Granularity::MINUTE,
            window_units: 2,
        })
        .unwrap(),
    );
    let served = common::Served::one(svc as Arc<dyn Service>);
    Net {
        url: served.url(),
        _served: served,
        http: reqwest::blocking::Client::new(),
    }
}

fn client_key(id: &ClientId) -> VendorKey {
    Janus::open(
        id.clone(),
        b"correct horse",
        JanusParams::insecure_for_tests(),
    )
    .unwrap()
    .vendor_key(&VendorId::new(VENDOR).unwrap(), 0)
}

/// The vendor's Ed25519 key as `/v1/lite/vendor` publishes it.
fn ed25519(info: &serde_json::Value) -> agora_core::crypto::VerifyingKey {
    let b: [u8; 32] = hex::decode(info["ed25519"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    agora_core::crypto::VerifyingKey::from_bytes(&b).unwrap()
}

fn now() -> Timestamp {
    Timestamp::now_from_system_clock()
}

impl Net {
    fn vendor_info(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/v1/lite/vendor", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn post(&self, body: &[u8], step: Option<&str>) -> reqwest::blocking::Response {
        let mut b = self
            .http
            .post(format!("{}/v1/lite/skep", self.url))
            .header("content-type", "application/cbor")
            .body(body.to_vec());
        if let Some(s) = step {
            b = b.header(STEP_HEADER, s);
        }
        b.send().unwrap()
    }

    /// SKEP over HTTP; returns the status of the confirm and, on success,
    /// the receipt checked against the vendor's published key.
    fn subscribe(&self, id: &ClientId) -> (u16, Option<SignedReceipt>) {
        let info = self.vendor_info();
        let x: [u8; 32] = hex::decode(info["x25519"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let ed = ed25519(&info);
        let mut r = os_rng();
        let k = client_key(id);
        let (await_challenge, hello) = SkepClient::start(
            &mut r,
            &k,
            id.clone(),
            VendorId::new(VENDOR).unwrap(),
            &X25519Public::from_slice(&x).unwrap(),
        )
        .unwrap();
        let resp = self.post(&hello, None);
        assert_eq!(resp.status(), 200);
        let step = resp.headers()[STEP_HEADER].to_str().unwrap().to_owned();
        let challenge = resp.bytes().unwrap();
        let s = Subscription {
            not_before: Timestamp(now().0 - 60),
            not_after: now().plus_secs(30 * 86_400),
            chain: None,
            payment: b"free".to_vec(),
            counter: 0,
        };
        let (confirmed, confirm) = await_challenge.on_challenge(&mut r, &challenge, s).unwrap();
        let resp = self.post(&confirm, Some(&step));
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, None);
        }
        let receipt = confirmed.on_receipt(&resp.bytes().unwrap(), &ed).unwrap();
        (status, Some(receipt))
    }

    /// A signed SDDP request for `path_and_query` as `id`, sent as is.
    fn quotes_request(
        &self,
        id: &ClientId,
        path_and_query: &str,
    ) -> (lite_http::AwaitReply, http::Request<Vec<u8>>) {
        let mut req = http::Request::builder()
            .method("GET")
            .uri(format!("{}{path_and_query}", self.url))
            .body(Vec::new())
            .unwrap();
        let a = lite_http::seal_request(
            &mut os_rng(),
            &client_key(id),
            id,
            &VendorId::new(VENDOR).unwrap(),
            now(),
            Granularity::MINUTE,
            &mut req,
        )
        .unwrap();
        (a, req)
    }

    fn send(&self, req: &http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        let mut b = self
            .http
            .request(req.method().clone(), req.uri().to_string());
        for (k, v) in req.headers() {
            b = b.header(k, v);
        }
        let resp = b.body(req.body().clone()).send().unwrap();
        let mut out = http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        out.body(resp.bytes().unwrap().to_vec()).unwrap()
    }
}

fn alice() -> ClientId {
    ClientId::new("alice@example.org").unwrap()
}

fn problem_code(resp: &http::Response<Vec<u8>>) -> String {
    let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    v["code"].as_str().unwrap().to_owned()
}

#[test]
fn skep_then_sddp_over_http_delivers_personalized_quotes() {
    let net = serve();
    let (status, receipt) = net.subscribe(&alice());
    assert_eq!(status, 200);
    let receipt = receipt.unwrap();
    // A third party checks the receipt with the vendor's published key.
    let ed = ed25519(&net.vendor_info());
    assert_eq!(
        verify_receipt(&receipt.cose_sign1, &ed).unwrap().id_c,
        alice()
    );

    let (await_reply, req) = net.quotes_request(&alice(), "/v1/lite/quotes?symbols=acme,initech");
    let mut resp = net.send(&req);
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    // Sealed on the wire, signed.
    assert_eq!(resp.headers()["content-encoding"], lite_http::CODING);
    assert!(!resp.body().windows(4).any(|w| w == b"ACME"));
    await_reply.open_response(&mut resp).unwrap();
    let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(v["client"], "alice@example.org");
    assert_eq!(v["quotes"][0]["symbol"], "ACME");
    assert_eq!(v["quotes"][1]["symbol"], "INITECH");
}

#[test]
fn the_layer_refuses_unsigned_requests_and_unknown_clients() {
    let net = serve();
    let plain = net
        .http
        .get(format!("{}/v1/lite/quotes", net.url))
        .send()
        .unwrap();
    assert_eq!(plain.status(), 401);
    let v: serde_json::Value = plain.json().unwrap();
    assert_eq!(v["code"], "lite-unauthenticated");

    // Bob never ran SKEP with this vendor.
    let bob = ClientId::new("bob@example.org").unwrap();
    let (_, req) = net.quotes_request(&bob, "/v1/lite/quotes");
    let resp = net.send(&req);
    assert_eq!(resp.status(), 401);
    assert_eq!(problem_code(&resp), "lite-unknown-client");
}

#[test]
fn a_replayed_request_is_refused_and_a_tampered_one_too() {
    let net = serve();
    assert_eq!(net.subscribe(&alice()).0, 200);
    let (_, req) = net.quotes_request(&alice(), "/v1/lite/quotes");
    assert_eq!(net.send(&req).status(), 200);
    let again = net.send(&req);
    assert_eq!(again.status(), 409);
    assert_eq!(problem_code(&again), "replayed");

    let (_, req) = net.quotes_request(&alice(), "/v1/lite/quotes?symbols=ACME");
    let mut tampered = req.clone();
    *tampered.uri_mut() = format!("{}/v1/lite/quotes?symbols=EVIL", net.url)
        .parse()
        .unwrap();
    let resp = net.send(&tampered);
    assert_eq!(resp.status(), 400);
    assert_eq!(problem_code(&resp), "crypto");
    // The genuine request was not used up by the forgery.
    assert_eq!(net.send(&req).status(), 200);
}

#[test]
fn a_second_skep_for_the_same_id_cannot_replace_the_key() {
    let net = serve();
    assert_eq!(net.subscribe(&alice()).0, 200);
    assert_eq!(net.subscribe(&alice()).0, 409);
    // Alice's first key still works.
    let (a, req) = net.quotes_request(&alice(), "/v1/lite/quotes");
    let mut resp = net.send(&req);
    assert_eq!(resp.status(), 200);
    a.open_response(&mut resp).unwrap();
}

#[test]
fn a_confirm_without_its_pending_step_is_refused() {
    let net = serve();
    let resp = net.post(b"\x00", None);
    assert_eq!(resp.status(), 400);
}

/// The lightweight routes' refusals are the ones openapi.json documents
/// (status, media type, required headers), as http.rs checks the others.
#[test]
fn refusals_are_the_documented_ones() {
    let net = serve();
    let api = common::api();
    let skep_text = net
        .http
        .post(format!("{}/v1/lite/skep", net.url))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .unwrap();
    let a = common::Answer::of(skep_text);
    assert_eq!(a.status, 415);
    common::assert_documented(&api, "post", "/v1/lite/skep", &a);

    let unsigned = net
        .http
        .get(format!("{}/v1/lite/quotes", net.url))
        .send()
        .unwrap();
    assert_eq!(
        unsigned.headers()["www-authenticate"],
        "agora-lite realm=\"quotes.agora.test\""
    );
    let a = common::Answer::of(unsigned);
    assert_eq!(a.status, 401);
    common::assert_documented(&api, "get", "/v1/lite/quotes", &a);

    let info = net
        .http
        .get(format!("{}/v1/lite/vendor", net.url))
        .send()
        .unwrap();
    let a = common::Answer::of(info);
    assert_eq!(a.status, 200);
    common::assert_documented(&api, "get", "/v1/lite/vendor", &a);
}
