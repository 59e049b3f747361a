//! SDDP over HTTP (agora_lite::http): the run end to end, data privacy,
//! data integrity of every covered component, entity authentication, and
//! the attacks (replay, a stale unit, redirection to another vendor,
//! reflection of a request as a reply, a reply to another request).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agora_core::ports::replay::MemoryReplayCache;
use agora_core::{DecodeError, Error, Timestamp};
use agora_lite::http::{self as lite_http, CODING, CONTENT_DIGEST, SIGNATURE, SIGNATURE_INPUT};
use agora_lite::skep::{ClientRecord, SkepMode};
use common::*;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use proptest::prelude::*;

const QUOTES: &[u8] = b"{\"ACME\": 123.45, \"note\": \"your personal quotes\"}";

fn record() -> ClientRecord {
    skep(
        &vendor(quotes(), 1),
        &alice(),
        subscription(None),
        SkepMode::Basic,
    )
    .0
}

/// What the browser hands the proxy: an absolute URI, a plain body.
fn browser_request(method: Method, body: &[u8]) -> Request<Vec<u8>> {
    let mut b = Request::builder()
        .method(method)
        .uri("http://quotes.example:8080/quotes?symbol=ACME&days=5");
    if !body.is_empty() {
        b = b.header(CONTENT_TYPE, "application/json");
    }
    b.body(body.to_vec()).unwrap()
}

/// The request as the vendor's server sees it: origin form, `Host` set.
fn as_received(req: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let uri = req.uri();
    let mut b = Request::builder()
        .method(req.method().clone())
        .uri(uri.path_and_query().unwrap().as_str())
        .header(HOST, uri.authority().unwrap().as_str());
    for (k, v) in req.headers() {
        b = b.header(k, v);
    }
    b.body(req.body().clone()).unwrap()
}

fn reply(body: &[u8]) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .unwrap()
}

/// One signed request, as received by the vendor, and the client's state.
fn signed(method: Method, body: &[u8], seed: u64) -> (lite_http::AwaitReply, Request<Vec<u8>>) {
    let mut r = rng(seed);
    let k = client_key(&alice(), &quotes());
    let mut req = browser_request(method, body);
    let await_reply =
        lite_http::seal_request(&mut r, &k, &alice(), &quotes(), NOW, G, &mut req).unwrap();
    (await_reply, as_received(&req))
}

/// `req` checked by vendor `id_v` holding `rec`, at `now`, with a fresh
/// replay cache.
fn accept_at(
    rec: &ClientRecord,
    id_v: &agora_lite::VendorId,
    now: Timestamp,
    req: &mut Request<Vec<u8>>,
) -> agora_core::Result<lite_http::Accepted> {
    lite_http::accept_request(rec, id_v, policy(now), &MemoryReplayCache::new(), req)
}

fn accept(req: &mut Request<Vec<u8>>) -> agora_core::Result<lite_http::Accepted> {
    accept_at(&record(), &quotes(), NOW, req)
}

#[test]
fn sddp_over_http_end_to_end_get_and_post() {
    for (method, body) in [
        (Method::GET, &b""[..]),
        (Method::POST, &b"{\"limit\": 3}"[..]),
    ] {
        let (await_reply, mut req) = signed(method.clone(), body, 1);
        assert_eq!(lite_http::request_client(req.headers()).unwrap(), alice());
        let accepted = accept(&mut req).unwrap();
        assert_eq!(accepted.client(), &alice());
        // The service behind the layer sees the plain request.
        assert_eq!(req.method(), method);
        assert_eq!(req.uri().path(), "/quotes");
        assert_eq!(req.body(), body);
        assert!(req.headers().get(SIGNATURE).is_none());
        assert!(req.headers().get(CONTENT_ENCODING).is_none());

        let mut resp = reply(QUOTES);
        accepted.seal_response(&mut rng(2), NOW, &mut resp).unwrap();
        assert_eq!(resp.headers()[CONTENT_ENCODING], CODING);
        await_reply.open_response(&mut resp).unwrap();
        assert_eq!(resp.body(), QUOTES);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert!(resp.headers().get(CONTENT_DIGEST).is_none());
    }
}

#[test]
fn data_privacy_bodies_are_sealed_and_headers_stay_clear() {
    let secret_query = b"{\"portfolio\": \"ACME,INITECH\"}";
    let (await_reply, mut req) = signed(Method::POST, secret_query, 3);
    assert!(!req.body().windows(9).any(|w| w == b"portfolio"));
    // Headers are authenticated, never encrypted (paper section 6).
    assert_eq!(req.uri().query(), Some("symbol=ACME&days=5"));
    assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
    let accepted = accept(&mut req).unwrap();
    let mut resp = reply(QUOTES);
    accepted.seal_response(&mut rng(4), NOW, &mut resp).unwrap();
    assert!(!resp.body().windows(4).any(|w| w == b"ACME"));
    await_reply.open_response(&mut resp).unwrap();
}

/// A named change to a request in transit.
type Tampering = (&'static str, Box<dyn Fn(&mut Request<Vec<u8>>)>);

/// Each tampering of a request, by what it changes.
fn request_tamperings() -> Vec<Tampering> {
    vec![
        ("method", Box::new(|r| *r.method_mut() = Method::DELETE)),
        (
            "path",
            Box::new(|r| *r.uri_mut() = "/admin?symbol=ACME&days=5".parse().unwrap()),
        ),
        (
            "query",
            Box::new(|r| *r.uri_mut() = "/quotes?symbol=EVIL&days=5".parse().unwrap()),
        ),
        (
            "authority",
            Box::new(|r| {
                r.headers_mut()
                    .insert(HOST, HeaderValue::from_static("other.example:8080"));
            }),
        ),
        (
            "content-type",
            Box::new(|r| {
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }),
        ),
        (
            "body",
            Box::new(|r| {
                let last = r.body().len() - 1;
                r.body_mut()[last] ^= 1;
            }),
        ),
        (
            "body and its digest",
            Box::new(|r| {
                let last = r.body().len() - 1;
                r.body_mut()[last] ^= 1;
                let d = lite_http::content_digest(r.body());
                r.headers_mut()
                    .insert(CONTENT_DIGEST, HeaderValue::from_str(&d).unwrap());
            }),
        ),
        (
            "signature",
            Box::new(|r| {
                // A MAC of all zeros in place of the client's.
                let zeros = format!("lite=:{}=:", "A".repeat(43));
                r.headers_mut()
                    .insert(SIGNATURE, HeaderValue::from_str(&zeros).unwrap());
            }),
        ),
        (
            "created",
            Box::new(|r| {
                let s = r.headers()[SIGNATURE_INPUT]
                    .to_str()
                    .unwrap()
                    .replace(";created=1700000000", ";created=1700000001");
                r.headers_mut()
                    .insert(SIGNATURE_INPUT, HeaderValue::from_str(&s).unwrap());
            }),
        ),
    ]
}

#[test]
fn data_integrity_every_covered_component_tampered_is_refused() {
    for (what, tamper) in request_tamperings() {
        let (_, mut req) = signed(Method::POST, b"{\"limit\": 3}", 5);
        tamper(&mut req);
        let err = accept(&mut req).expect_err(what);
        assert!(
            matches!(err, Error::Crypto),
            "tampered {what}: want a failed MAC, got {err:?}"
        );
    }
}

#[test]
fn the_unit_and_vendor_headers_are_covered_too() {
    // Changing the unit moves the key: the MAC fails (or the unit is
    // refused first when it leaves the window).
    let (_, mut req) = signed(Method::GET, b"", 6);
    let t: u64 = req.headers()["agora-lite-unit"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    req.headers_mut()
        .insert("agora-lite-unit", HeaderValue::from(t - 1));
    assert!(matches!(accept(&mut req), Err(Error::Crypto)));

    let (_, mut req) = signed(Method::GET, b"", 7);
    req.headers_mut().insert(
        "agora-lite-vendor",
        HeaderValue::from_static("\"news.example\""),
    );
    assert!(matches!(accept(&mut req), Err(Error::Crypto)));
}

#[test]
fn headers_the_vendor_acts_on_must_be_covered() {
    // A Content-Type added by someone in the path is not covered: refused
    // before any MAC is computed.
    let (_, mut req) = signed(Method::GET, b"", 8);
    req.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    let err = accept(&mut req).unwrap_err();
    assert!(
        matches!(err, Error::Refused(ref m) if m.contains("content-type")),
        "{err:?}"
    );
    // A body added to a GET: its digest no longer matches.
    let (_, mut req) = signed(Method::GET, b"", 9);
    *req.body_mut() = b"injected".to_vec();
    assert!(matches!(accept(&mut req), Err(Error::Crypto)));
}

#[test]
fn entity_authentication_a_request_under_another_key_is_refused() {
    // Mallory signs in Alice's name with her own key with this vendor.
    let mut r = rng(10);
    let k = client_key(&mallory(), &quotes());
    let mut req = browser_request(Method::GET, b"");
    lite_http::seal_request(&mut r, &k, &alice(), &quotes(), NOW, G, &mut req).unwrap();
    let mut req = as_received(&req);
    assert!(matches!(accept(&mut req), Err(Error::Crypto)));
}

#[test]
fn replay_a_replayed_request_is_refused() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let (_, req) = signed(Method::GET, b"", 11);
    let mut first = req.clone();
    lite_http::accept_request(&rec, &quotes(), policy(NOW), &cache, &mut first).unwrap();
    let mut again = req.clone();
    assert!(matches!(
        lite_http::accept_request(&rec, &quotes(), policy(NOW), &cache, &mut again),
        Err(Error::Replayed)
    ));
}

#[test]
fn a_stale_unit_is_refused_and_a_future_one_too() {
    let rec = record();
    let (_, req) = signed(Method::GET, b"", 12);
    let later = NOW.plus_secs(10 * 60);
    let mut r1 = req.clone();
    assert!(matches!(
        accept_at(&rec, &quotes(), later, &mut r1),
        Err(Error::Replayed)
    ));
    let earlier = Timestamp(NOW.0 - 10 * 60);
    let mut r2 = req.clone();
    assert!(matches!(
        accept_at(&rec, &quotes(), earlier, &mut r2),
        Err(Error::Refused(_))
    ));
}

#[test]
fn redirection_a_request_for_v1_presented_to_v2_is_refused() {
    // The news vendor has its own record for Alice, with another key.
    let news_rec = skep(
        &vendor(news(), 2),
        &alice(),
        subscription(None),
        SkepMode::Basic,
    )
    .0;
    let (_, mut req) = signed(Method::GET, b"", 13);
    assert!(matches!(
        accept_at(&news_rec, &news(), NOW, &mut req),
        Err(Error::Crypto)
    ));
    // With the key of V1 (a vendor that knows it), V2's id is still refused.
    let (_, mut req) = signed(Method::GET, b"", 14);
    assert!(matches!(
        accept_at(&record(), &news(), NOW, &mut req),
        Err(Error::PeerMisbehaved(_))
    ));
}

#[test]
fn an_expired_subscription_gets_no_data() {
    let (_, mut req) = signed(Method::GET, b"", 15);
    let mut s = subscription(None);
    s.not_after = NOW.plus_secs(60);
    let rec = skep(&vendor(quotes(), 1), &alice(), s, SkepMode::Basic).0;
    // 90 s later: the unit is still in the window, the subscription is over.
    let later = NOW.plus_secs(90);
    assert!(matches!(
        accept_at(&rec, &quotes(), later, &mut req),
        Err(Error::Refused(_))
    ));
}

#[test]
fn a_reply_tampered_or_answering_another_request_is_refused() {
    let (await_reply, mut req) = signed(Method::GET, b"", 16);
    let accepted = accept(&mut req).unwrap();
    let mut good = reply(QUOTES);
    accepted
        .seal_response(&mut rng(17), NOW, &mut good)
        .unwrap();

    let mut status = good.clone();
    *status.status_mut() = StatusCode::NOT_FOUND;
    assert!(matches!(
        await_reply.open_response(&mut status),
        Err(Error::Crypto)
    ));

    let mut body = good.clone();
    body.body_mut()[20] ^= 1;
    assert!(matches!(
        await_reply.open_response(&mut body),
        Err(Error::Crypto)
    ));

    let mut ctype = good.clone();
    ctype
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    assert!(matches!(
        await_reply.open_response(&mut ctype),
        Err(Error::Crypto)
    ));

    // The same vendor's reply to another of Alice's requests, same unit.
    let (other_await, mut other_req) = signed(Method::GET, b"", 18);
    let other = accept(&mut other_req).unwrap();
    let mut other_reply = reply(b"{\"ACME\": 1}");
    other
        .seal_response(&mut rng(19), NOW, &mut other_reply)
        .unwrap();
    assert!(matches!(
        await_reply.open_response(&mut other_reply.clone()),
        Err(Error::PeerMisbehaved(_))
    ));
    other_await.open_response(&mut other_reply).unwrap();

    // And the genuine one still opens.
    await_reply.open_response(&mut good).unwrap();
    assert_eq!(good.body(), QUOTES);
}

#[test]
fn reflection_a_request_signature_is_not_a_reply_and_an_unsigned_reply_is_refused() {
    let (await_reply, req) = signed(Method::GET, b"", 20);
    // The client's own signature fields, reflected into a response.
    let mut reflected = reply(b"");
    for h in [SIGNATURE, SIGNATURE_INPUT, CONTENT_DIGEST] {
        reflected
            .headers_mut()
            .insert(h.clone(), req.headers()[&h].clone());
    }
    reflected.headers_mut().remove(CONTENT_TYPE);
    let err = await_reply.open_response(&mut reflected).unwrap_err();
    assert!(
        matches!(err, Error::PeerMisbehaved(_) | Error::Refused(_)),
        "{err:?}"
    );
    // A refusal the vendor did not sign is not data.
    let mut unsigned = reply(b"{}");
    assert!(matches!(
        await_reply.open_response(&mut unsigned),
        Err(Error::Decode(_))
    ));
}

#[test]
fn components_with_parameters_are_refused_rather_than_half_supported() {
    let (_, mut req) = signed(Method::GET, b"", 21);
    let input = req.headers()[SIGNATURE_INPUT].to_str().unwrap().replace(
        "\"@method\"",
        "\"@method\" \"@query-param\";name=\"symbol\"",
    );
    req.headers_mut()
        .insert(SIGNATURE_INPUT, HeaderValue::from_str(&input).unwrap());
    let err = accept(&mut req).unwrap_err();
    assert!(
        matches!(err, Error::Refused(_) | Error::Decode(_)),
        "{err:?}"
    );
}

#[test]
fn ids_that_are_not_printable_ascii_are_refused_by_the_binding() {
    let mut r = rng(22);
    let c = agora_lite::ClientId::new("zoë@example.org").unwrap();
    let k = client_key(&c, &quotes());
    let mut req = browser_request(Method::GET, b"");
    let err = lite_http::seal_request(&mut r, &k, &c, &quotes(), NOW, G, &mut req).unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
}

#[test]
fn sizes_are_bounded() {
    let mut r = rng(23);
    let k = client_key(&alice(), &quotes());
    let big = vec![0u8; agora_lite::sddp::MAX_REQUEST_LEN + 1];
    let mut req = browser_request(Method::POST, &big);
    assert!(matches!(
        lite_http::seal_request(&mut r, &k, &alice(), &quotes(), NOW, G, &mut req),
        Err(Error::ApiMisuse(_))
    ));
    let (_, mut req) = signed(Method::GET, b"", 24);
    let long = format!("lite=:{}:", "A".repeat(5000));
    req.headers_mut()
        .insert(SIGNATURE, HeaderValue::from_str(&long).unwrap());
    assert!(matches!(
        accept(&mut req),
        Err(Error::Decode(DecodeError::TooLarge { .. }))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Arbitrary signature fields, unit and digest never panic the vendor.
    #[test]
    fn arbitrary_headers_never_panic_the_vendor(
        input in "[ -~]{0,200}",
        sig in "[ -~]{0,120}",
        unit in "[ -~]{0,24}",
        digest in "[ -~]{0,80}",
    ) {
        let (_, mut req) = signed(Method::GET, b"", 25);
        for (h, v) in [("signature-input", &input), ("signature", &sig),
                       ("agora-lite-unit", &unit), ("content-digest", &digest)] {
            if let Ok(v) = HeaderValue::from_str(v) {
                req.headers_mut().insert(h, v);
            }
        }
        let _ = lite_http::request_client(req.headers());
        let _ = accept(&mut req);
    }
}
