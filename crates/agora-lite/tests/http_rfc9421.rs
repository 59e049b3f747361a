//! Interop: agora-lite's HTTP signatures checked by an independent RFC 9421
//! implementation (the `http-message-signatures` package from PyPI, run by
//! tests/rfc9421_check.py), in both directions: it verifies what we sign,
//! refuses what was tampered, and signs what our vendor then accepts.
//!
//! This test fails rather than skips without python3 and the package (CI
//! installs `http-message-signatures==3.0.0` and `requests`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agora_core::ports::replay::MemoryReplayCache;
use agora_lite::http::{self as lite_http, SIGNATURE, SIGNATURE_INPUT};
use agora_lite::skep::SkepMode;
use agora_lite::time_unit;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const URL: &str = "http://quotes.example:8080/quotes?symbol=ACME&days=5";

fn require_checker() {
    let probe = Command::new("python3")
        .args(["-c", "import http_message_signatures, requests"])
        .output();
    match probe {
        Err(e) => panic!("cannot run python3: {e}; install Python 3 with http-message-signatures"),
        Ok(o) if !o.status.success() => panic!(
            "python3 cannot import http_message_signatures and requests ({}); install them \
             with `pip install http-message-signatures==3.0.0 requests`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

/// Runs the checker over `cases`; returns its results, one per case.
fn check(cases: Vec<Value>) -> Vec<Value> {
    require_checker();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc9421_check.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let n = cases.len();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rfc9421_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), n);
    results
}

fn headers_json(h: &HeaderMap) -> Value {
    Value::Array(
        h.iter()
            .map(|(k, v)| json!([k.as_str(), v.to_str().unwrap()]))
            .collect(),
    )
}

/// The quotes vendor's check of `req`, holding Alice's record from a
/// basic SKEP.
fn vendor_accepts(req: &mut Request<Vec<u8>>) -> agora_core::Result<lite_http::Accepted> {
    let rec = skep(
        &vendor(quotes(), 1),
        &alice(),
        subscription(None),
        SkepMode::Basic,
    )
    .0;
    lite_http::accept_request(&rec, &quotes(), policy(NOW), &MemoryReplayCache::new(), req)
}

fn key_b64() -> String {
    let k = client_key(&alice(), &quotes());
    let sig = lite_http::signature_key(&k, time_unit(NOW, G));
    STANDARD.encode(sig.expose())
}

fn request_case(req: &Request<Vec<u8>>) -> Value {
    json!({
        "kind": "verify-request",
        "key": key_b64(),
        "keyid": "alice@example.org",
        "tag": lite_http::REQUEST_TAG,
        "require": lite_http::REQUEST_COVERS,
        "method": req.method().as_str(),
        "url": req.uri().to_string(),
        "headers": headers_json(req.headers()),
        "body": STANDARD.encode(req.body()),
    })
}

fn signed_request(body: &[u8], seed: u64) -> (lite_http::AwaitReply, Request<Vec<u8>>) {
    let mut b = Request::builder().method(Method::POST).uri(URL);
    if !body.is_empty() {
        b = b.header(CONTENT_TYPE, "application/json");
    }
    let mut req = b.body(body.to_vec()).unwrap();
    let k = client_key(&alice(), &quotes());
    let a =
        lite_http::seal_request(&mut rng(seed), &k, &alice(), &quotes(), NOW, G, &mut req).unwrap();
    (a, req)
}

#[test]
fn an_independent_rfc9421_verifier_accepts_our_signed_requests_and_replies() {
    let (_, with_body) = signed_request(b"{\"portfolio\": \"ACME\"}", 1);
    let (_, without_body) = signed_request(b"", 2);

    // The vendor's reply to the first.
    let mut received = with_body.clone();
    let accepted = vendor_accepts(&mut received).unwrap();
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(b"{\"ACME\": 123.45}".to_vec())
        .unwrap();
    accepted.seal_response(&mut rng(3), NOW, &mut resp).unwrap();
    let reply_case = json!({
        "kind": "verify-response",
        "key": key_b64(),
        "keyid": "quotes.example",
        "tag": lite_http::REPLY_TAG,
        "require": ["@status", "content-digest", "content-type", "content-encoding"],
        "status": resp.status().as_u16(),
        "headers": headers_json(resp.headers()),
        "body": STANDARD.encode(resp.body()),
    });

    let results = check(vec![
        request_case(&with_body),
        request_case(&without_body),
        reply_case,
    ]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["ok"], true, "case {i}: {r}");
    }
}

#[test]
fn the_independent_verifier_refuses_what_was_tampered() {
    let (_, req) = signed_request(b"{\"portfolio\": \"ACME\"}", 4);
    let mut cases = Vec::new();
    // Another query.
    let mut c = request_case(&req);
    c["url"] = json!(URL.replace("ACME", "EVIL"));
    cases.push(c);
    // Another method.
    let mut c = request_case(&req);
    c["method"] = json!("PUT");
    cases.push(c);
    // A body that is not the one digested.
    let mut c = request_case(&req);
    let mut body = req.body().clone();
    body[0] ^= 1;
    c["body"] = json!(STANDARD.encode(&body));
    cases.push(c);
    // Another key (Mallory's).
    let mut c = request_case(&req);
    let mk = client_key(&mallory(), &quotes());
    c["key"] = json!(STANDARD.encode(lite_http::signature_key(&mk, time_unit(NOW, G)).expose()));
    cases.push(c);
    for (i, r) in check(cases).iter().enumerate() {
        assert_eq!(r["ok"], false, "tampered case {i} verified: {r}");
    }
}

#[test]
fn our_vendor_accepts_a_request_the_independent_implementation_signed() {
    // Our proxy seals the body and sets the lite headers; the signature is
    // then made by the Python implementation from the same key and
    // parameters, and replaces ours.
    let (_, mut req) = signed_request(b"{\"portfolio\": \"ACME\"}", 5);
    let input = req.headers()[SIGNATURE_INPUT].to_str().unwrap().to_owned();
    let nonce = input
        .split(";nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    req.headers_mut().remove(SIGNATURE);
    req.headers_mut().remove(SIGNATURE_INPUT);
    let mut components: Vec<&str> = lite_http::REQUEST_COVERS.to_vec();
    components.extend(["content-type", "content-encoding"]);
    let results = check(vec![json!({
        "kind": "sign-request",
        "key": key_b64(),
        "keyid": "alice@example.org",
        "tag": lite_http::REQUEST_TAG,
        "nonce": nonce,
        "created": NOW.0,
        "components": components,
        "method": "POST",
        "url": URL,
        "headers": headers_json(req.headers()),
        "body": STANDARD.encode(req.body()),
    })]);
    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    for h in ["signature-input", "signature"] {
        let v = results[0]["headers"][h].as_str().unwrap();
        req.headers_mut()
            .insert(h, HeaderValue::from_str(v).unwrap());
    }
    // As the vendor's server receives it: origin form and Host.
    let mut received = Request::builder()
        .method(Method::POST)
        .uri("/quotes?symbol=ACME&days=5")
        .header("host", "quotes.example:8080");
    for (k, v) in req.headers() {
        received = received.header(k, v);
    }
    let mut received = received.body(req.body().clone()).unwrap();
    vendor_accepts(&mut received).unwrap();
    assert_eq!(received.body(), b"{\"portfolio\": \"ACME\"}");
}
