//! Admission over real sockets: a node that one client cannot lock out.
//! Slow heads and slow bodies are cut by their time bounds and hold no
//! work slot meanwhile; a declared length past the limit is refused before
//! the body; one address cannot hold more connections than its share;
//! readiness turns red when the node cannot take work; and a shutdown ends
//! within its grace, slow uploads or not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use agora_node::{Core, Node, NodeConfig, Service};
use axum::routing::{get, post};
use axum::Router;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A service with a quick route and one that holds its work slot until
/// told to let go.
struct Probe {
    release: Arc<Notify>,
}

impl Service for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn router(self: Arc<Self>, _core: Arc<Core>) -> Router {
        let release = self.release.clone();
        Router::new()
            .route(
                "/v1/probe/echo",
                post(|body: axum::body::Bytes| async move { body }),
            )
            .route("/v1/probe/quick", get(|| async { "quick\n" }))
            .route(
                "/v1/probe/hold",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "released\n"
                    }
                }),
            )
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

struct TestNode {
    served: common::Served,
    addr: SocketAddr,
    release: Arc<Notify>,
}

impl TestNode {
    fn start(config: NodeConfig) -> TestNode {
        let release = Arc::new(Notify::new());
        let probe = Arc::new(Probe {
            release: release.clone(),
        });
        let served = common::Served::start(|_| {
            Node::new(NodeConfig {
                housekeeping_every: Duration::from_secs(3600),
                ..config
            })
            .with(probe)
        });
        TestNode {
            addr: served.addr,
            served,
            release,
        }
    }

    /// A connection from loopback address `from` (127.0.0.x: all of
    /// 127/8 reaches the node on Linux).
    fn connect_from(&self, from: [u8; 4]) -> TcpStream {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = self.addr;
        let s = rt
            .block_on(async move {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(SocketAddr::new(IpAddr::from(from), 0))?;
                sock.connect(addr).await
            })
            .unwrap()
            .into_std()
            .unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// A whole request from 127.0.0.1; the status and the body.
    fn request(&self, raw: &str) -> (u16, String) {
        let mut s = self.connect_from([127, 0, 0, 1]);
        s.write_all(raw.as_bytes()).unwrap();
        read_response(&mut s)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    /// Stops the node; how long `serve` took to return.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        self.served.stop().unwrap();
        t.elapsed()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.release.notify_waiters();
    }
}

/// Reads one response until the server closes: the status and the body.
/// A connection closed with no response reads as status 0.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Headers and 3 bytes of a 1,000-byte body, then nothing.
fn slow_body(s: &mut TcpStream) {
    s.write_all(
        b"POST /v1/probe/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/cbor\r\n\
          Content-Length: 1000\r\nConnection: close\r\n\r\nabc",
    )
    .unwrap();
}

fn metric(node: &TestNode, name: &str) -> f64 {
    let (_, text) = node.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[test]
fn slow_bodies_are_counted_as_receiving_and_hold_no_work_slot() {
    let n = TestNode::start(NodeConfig {
        max_in_flight: 2,
        // Long enough that none of them is cut while the test looks.
        body_timeout: Duration::from_secs(3600),
        request_timeout: Duration::from_secs(3600),
        shutdown_grace: Duration::from_millis(200),
        ..NodeConfig::default()
    });
    // Many more slow senders than work slots, from addresses of their own.
    let _slow: Vec<TcpStream> = (0..60)
        .map(|i| {
            let mut s = n.connect_from([127, 0, 0, 2 + (i % 3) as u8]);
            slow_body(&mut s);
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&n, "agora_http_receiving") < 60.0 {
        assert!(
            Instant::now() < deadline,
            "the 60 bodies are being received"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Meanwhile the node serves others, and says it can.
    let (status, body) = n.get("/v1/probe/quick");
    assert_eq!((status, body.as_str()), (200, "quick\n"));
    let (status, body) = n.get("/readyz");
    assert_eq!(status, 200, "slow senders do not make it unready: {body}");
    assert_eq!(
        metric(&n, "agora_http_in_flight"),
        1.0,
        "only /metrics works"
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let n = TestNode::start(NodeConfig {
        body_timeout: Duration::from_secs(1),
        ..NodeConfig::default()
    });
    let mut slow: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = n.connect_from([127, 0, 0, 2]);
            slow_body(&mut s);
            s
        })
        .collect();
    for s in slow.iter_mut() {
        let (status, body) = read_response(s);
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("request-timeout"), "{body}");
    }
}

#[test]
fn a_slow_request_head_is_cut_at_its_timeout() {
    let n = TestNode::start(NodeConfig {
        header_timeout: Duration::from_secs(1),
        ..NodeConfig::default()
    });
    let mut s = n.connect_from([127, 0, 0, 2]);
    s.write_all(b"GET /v1/probe/quick HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    // Read until the node closes: without a head timeout it never does,
    // and the read fails at the test's read timeout (30 s) instead.
    let mut raw = Vec::new();
    let r = s.read_to_end(&mut raw);
    assert!(r.is_ok(), "the node closed the connection: {r:?}");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "closed, or told 408: {text}"
    );
    assert_eq!(n.get("/v1/probe/quick").0, 200);
}

#[test]
fn a_declared_length_past_the_limit_is_refused_before_the_body() {
    let n = TestNode::start(NodeConfig {
        max_body_bytes: 262_144,
        ..NodeConfig::default()
    });
    let mut s = n.connect_from([127, 0, 0, 1]);
    // 2^40 bytes declared, none sent: the answer cannot wait for the body.
    s.write_all(
        b"POST /v1/probe/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/cbor\r\n\
          Content-Length: 1099511627776\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .expect("an answer before the body timeout (10 s), without the body");
    assert_eq!(&head, b"HTTP/1.1 413");
    let (_, body) = read_response(&mut s);
    assert!(
        body.contains("262144"),
        "the detail names the limit enforced: {body}"
    );
    // A body longer than the limit that declares no length is cut too.
    let mut s = n.connect_from([127, 0, 0, 1]);
    s.write_all(
        b"POST /v1/probe/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    let chunk = vec![b'x'; 100_000];
    for _ in 0..3 {
        let _ = write!(s, "{:x}\r\n", chunk.len());
        let _ = s.write_all(&chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 413, "{body}");
}

#[test]
fn one_address_cannot_hold_more_connections_than_its_share() {
    let n = TestNode::start(NodeConfig {
        max_connections_per_client: 4,
        ..NodeConfig::default()
    });
    let mut held: Vec<TcpStream> = (0..4).map(|_| n.connect_from([127, 0, 0, 2])).collect();
    // The connections are admitted as they are accepted: make sure the node
    // has taken the four before the fifth comes.
    for s in held.iter_mut() {
        s.write_all(b"GET /v1/probe/quick HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let mut fifth = n.connect_from([127, 0, 0, 2]);
    let (status, body) = read_response(&mut fifth);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("overloaded"), "{body}");
    // Another address is served meanwhile.
    assert_eq!(n.get("/v1/probe/quick").0, 200);
    // A closed connection makes room again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = n.connect_from([127, 0, 0, 2]);
        s.write_all(b"GET /v1/probe/quick HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        match read_response(&mut s).0 {
            200 => break,
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("room was not given back: {other}"),
        }
    }
}

#[test]
fn readiness_turns_red_when_no_work_slot_is_free() {
    let n = TestNode::start(NodeConfig {
        max_in_flight: 1,
        ..NodeConfig::default()
    });
    let (status, body) = n.get("/readyz");
    assert_eq!(status, 200, "{body}");
    // One request holds the only work slot.
    let mut holder = n.connect_from([127, 0, 0, 1]);
    holder
        .write_all(b"GET /v1/probe/hold HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = n.get("/readyz");
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "never red: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(body.contains("work slot"), "{body}");
    assert_eq!(n.get("/healthz").0, 200, "alive all the same");
    assert_eq!(n.get("/v1/probe/quick").0, 503, "and it sheds");
    n.release.notify_waiters();
    assert_eq!(read_response(&mut holder).0, 200);
    assert_eq!(n.get("/readyz").0, 200);
}

#[test]
fn shutdown_ends_within_its_grace_with_slow_clients_open() {
    let mut n = TestNode::start(NodeConfig {
        shutdown_grace: Duration::from_secs(1),
        body_timeout: Duration::from_secs(3600),
        request_timeout: Duration::from_secs(3600),
        ..NodeConfig::default()
    });
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = n.connect_from([127, 0, 0, 2]);
            slow_body(&mut s);
            s
        })
        .collect();
    // A request holding its work slot until told, and never told.
    let mut holder = n.connect_from([127, 0, 0, 1]);
    holder
        .write_all(b"GET /v1/probe/hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let took = n.stop();
    // The bound is the grace (1 s); the margin is for a loaded machine, and
    // far below the body timeout (an hour) that would otherwise end them.
    assert!(took < Duration::from_secs(30), "stopped after {took:?}");
    for s in slow.iter_mut() {
        let _ = read_response(s);
    }
}
