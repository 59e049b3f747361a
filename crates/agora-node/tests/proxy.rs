//! The client proxy's HTTP side (agora_node::proxy) over real loopback
//! HTTP, with an upstream that records what it was given: credentials from
//! Proxy-Authorization, 407 without them, no tunnels, no origin-form
//! requests, hop-by-hop headers stripped both ways, bodies bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_node::proxy::{self, Credentials, Upstream, MAX_BODY};
use agora_node::Problem;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// The id, secret and request the upstream was given.
type Seen = (String, String, http::Request<Vec<u8>>);

/// What the upstream saw of each request.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Upstream for Recorder {
    fn forward(
        &self,
        creds: &Credentials,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        if creds.id == "refuse@example.org" {
            return Err(Problem::new(http::StatusCode::BAD_GATEWAY, "upstream")
                .with_detail("not a lightweight vendor"));
        }
        self.seen
            .lock()
            .unwrap()
            .push((creds.id.clone(), creds.secret.as_str().to_owned(), req));
        Ok(http::Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .header("connection", "x-secret-hop")
            .header("x-secret-hop", "1")
            .body(b"from the vendor".to_vec())
            .unwrap())
    }
}

fn start(upstream: Arc<Recorder>) -> common::Served {
    common::Served::start_with(|_| {
        move |listener, stopped: tokio::sync::oneshot::Receiver<()>| {
            proxy::serve(listener, upstream, async {
                let _ = stopped.await;
            })
        }
    })
}

/// One raw HTTP/1.1 exchange with the proxy: the status line and headers,
/// and the body.
fn raw(port: u16, request: &[u8]) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

/// `Basic base64(id:secret)`.
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[test]
fn credentials_reach_the_upstream_and_hop_by_hop_headers_do_not() {
    let up = Arc::new(Recorder::default());
    let p = start(up.clone());
    let req = format!(
        "POST http://vendor.example:7878/v1/lite/quotes?symbols=ACME HTTP/1.1\r\n\
         Host: vendor.example:7878\r\n\
         Proxy-Authorization: {}\r\n\
         Proxy-Connection: keep-alive\r\n\
         Connection: close, x-private\r\n\
         X-Private: hop\r\n\
         Content-Type: application/json\r\n\
         Content-Length: 2\r\n\r\n{{}}",
        basic("alice@example.org", "one secret: with a colon")
    );
    let (head, body) = raw(p.addr.port(), req.as_bytes());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "from the vendor");
    // The vendor's hop-by-hop headers stay on its side.
    assert!(
        !head.to_ascii_lowercase().contains("x-secret-hop"),
        "{head}"
    );
    let seen = up.seen.lock().unwrap();
    let (id, secret, r) = &seen[0];
    assert_eq!(id, "alice@example.org");
    assert_eq!(secret, "one secret: with a colon");
    assert_eq!(r.method(), http::Method::POST);
    assert_eq!(
        r.uri().to_string(),
        "http://vendor.example:7878/v1/lite/quotes?symbols=ACME"
    );
    assert_eq!(r.body(), b"{}");
    assert_eq!(r.headers()["content-type"], "application/json");
    for gone in [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "x-private",
        "host",
    ] {
        assert!(r.headers().get(gone).is_none(), "{gone} was forwarded");
    }
}

#[test]
fn without_credentials_the_proxy_asks_for_them() {
    let up = Arc::new(Recorder::default());
    let p = start(up.clone());
    for auth in [
        String::new(),
        "Proxy-Authorization: Bearer x\r\n".to_owned(),
        format!(
            "Proxy-Authorization: {}\r\n",
            basic("alice@example.org", "")
        ),
        "Proxy-Authorization: Basic !!!\r\n".to_owned(),
    ] {
        let req = format!(
            "GET http://vendor.example/v1/lite/quotes HTTP/1.1\r\nHost: vendor.example\r\n{auth}Connection: close\r\n\r\n"
        );
        let (head, body) = raw(p.addr.port(), req.as_bytes());
        assert!(head.starts_with("HTTP/1.1 407"), "{auth:?}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authenticate: basic realm=\"agora proxy\""),
            "{head}"
        );
        assert!(body.contains("proxy-authentication"), "{body}");
    }
    assert!(up.seen.lock().unwrap().is_empty());
}

#[test]
fn tunnels_origin_form_requests_and_large_bodies_are_refused() {
    let up = Arc::new(Recorder::default());
    let p = start(up.clone());
    let auth = basic("alice@example.org", "s");
    let (head, _) = raw(
        p.addr.port(),
        format!(
            "CONNECT vendor.example:443 HTTP/1.1\r\nHost: vendor.example:443\r\nProxy-Authorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 501"), "{head}");
    let (head, _) = raw(
        p.addr.port(),
        format!(
            "GET /v1/lite/quotes HTTP/1.1\r\nHost: vendor.example\r\nProxy-Authorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let big = "x".repeat(MAX_BODY + 1);
    let (head, _) = raw(
        p.addr.port(),
        format!(
            "POST http://vendor.example/q HTTP/1.1\r\nHost: vendor.example\r\nProxy-Authorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        up.seen.lock().unwrap().is_empty(),
        "nothing reached the vendor"
    );
    // The upstream's refusal is the browser's answer.
    let (head, body) = raw(
        p.addr.port(),
        format!(
            "GET http://vendor.example/q HTTP/1.1\r\nHost: vendor.example\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
            basic("refuse@example.org", "s")
        )
        .as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(body.contains("not a lightweight vendor"), "{body}");
}
