//! The optional request log (`NodeConfig::request_log`): one `tracing`
//! event per request, with the route's template, the status, the duration
//! and the problem code, and nothing a client sent (no path values, query,
//! headers or body). Off by default.
//!
//! The node's router is driven in process on a current-thread runtime, so
//! that the test's subscriber (set for this thread only) sees every event
//! the request makes, and no other test's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use agora_node::cpo::{CpoService, CpoSpec, TrustSource};
use agora_node::web::WebService;
use agora_node::{Node, NodeConfig, REQUEST_LOG};
use axum::body::Body;
use axum::http::Request;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

struct NoTrust;

impl TrustSource<agora_cpo::BondTrust> for NoTrust {
    fn load(&self) -> Result<agora_cpo::BondTrust, String> {
        Ok(agora_cpo::BondTrust {
            agencies: agora_pki::TrustAnchors::new(),
            crls: vec![],
        })
    }
}

/// One event as logged: its target and its fields as text.
#[derive(Clone, Debug)]
struct Logged {
    target: String,
    fields: BTreeMap<String, String>,
}

/// A subscriber that keeps every event (spans are not needed here).
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Logged>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Keep {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        e.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Logged {
            target: e.metadata().target().to_owned(),
            fields,
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

const SECRET_ID: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";

/// The node's router with the CPO service (no roles: its board only) and
/// the pages, its store in `dir`.
fn node(dir: &std::path::Path, request_log: bool) -> Node {
    let cpo = Arc::new(
        CpoService::new(CpoSpec {
            store: agora_store::Stores::in_data_dir(
                dir,
                agora_store::AtRestKey::generate(&mut agora_core::crypto::os_rng()),
            )
            .unwrap(),
            server: None,
            arbiter: None,
            trust: Box::new(NoTrust),
        })
        .unwrap(),
    );
    Node::new(NodeConfig {
        request_log,
        ..NodeConfig::default()
    })
    .with(cpo.clone())
    .with(Arc::new(WebService::new(cpo)))
}

/// Sends the test's requests (each carrying something secret in its path,
/// query, headers or body) through `app`; their statuses.
async fn traffic(app: &axum::Router) -> Vec<u16> {
    let requests = [
        Request::get("/v1/cpo/board?q=hushhush&limit=3")
            .header("authorization", "Bearer topsecret-token")
            .body(Body::empty())
            .unwrap(),
        Request::get("/v1/cpo/board?min_price=hushhush")
            .body(Body::empty())
            .unwrap(),
        Request::get(format!("/v1/cpo/board/{SECRET_ID}"))
            .body(Body::empty())
            .unwrap(),
        Request::get(format!("/cpo/{SECRET_ID}"))
            .header("cookie", "session=topsecret-cookie")
            .body(Body::empty())
            .unwrap(),
        Request::post("/v1/cpo/server")
            .header("content-type", "application/cbor")
            .body(Body::from("topsecret-body"))
            .unwrap(),
        Request::get("/no/such/hushhush")
            .body(Body::empty())
            .unwrap(),
    ];
    let mut statuses = Vec::new();
    for r in requests {
        let answer = app.clone().oneshot(r).await.unwrap();
        statuses.push(answer.status().as_u16());
        let _ = axum::body::to_bytes(answer.into_body(), 1 << 20).await;
    }
    statuses
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_log_says_route_status_duration_and_code_and_nothing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let app = node(dir.path(), true).router();
    let keep = Keep::default();
    let statuses = {
        let _on = tracing::subscriber::set_default(keep.clone());
        traffic(&app).await
    };
    assert_eq!(statuses, vec![200, 400, 404, 404, 400, 404]);
    let all = keep.0.lock().unwrap().clone();
    let logged: Vec<&Logged> = all.iter().filter(|l| l.target == REQUEST_LOG).collect();
    assert_eq!(
        logged.len(),
        statuses.len(),
        "one line per request: {all:#?}"
    );
    let expect = [
        ("GET", "/v1/cpo/board", "200", "-"),
        ("GET", "/v1/cpo/board", "400", "decode"),
        ("GET", "/v1/cpo/board/{id}", "404", "not-found"),
        ("GET", "/cpo/{id}", "404", "-"),
        ("POST", "/v1/cpo/server", "400", "decode"),
        ("GET", "unmatched", "404", "not-found"),
    ];
    for (l, (method, route, status, code)) in logged.iter().zip(expect) {
        let f = &l.fields;
        assert_eq!(f["method"], method, "{l:?}");
        assert_eq!(f["route"], route, "{l:?}");
        assert_eq!(f["status"], status, "{l:?}");
        assert_eq!(f["code"], code, "{l:?}");
        assert!(
            f["ms"].parse::<f64>().is_ok_and(|ms| ms >= 0.0),
            "a duration: {l:?}"
        );
        let keys: Vec<&str> = f.keys().map(String::as_str).collect();
        assert_eq!(keys, ["code", "message", "method", "ms", "route", "status"]);
    }
    // Nothing the clients sent is in any event the requests made.
    let text = format!("{all:?}");
    for secret in ["hushhush", "topsecret", SECRET_ID] {
        assert!(!text.contains(secret), "{secret} logged: {text}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_log_is_off_by_default() {
    assert!(!NodeConfig::default().request_log);
    let dir = tempfile::tempdir().unwrap();
    let app = node(dir.path(), false).router();
    let keep = Keep::default();
    {
        let _on = tracing::subscriber::set_default(keep.clone());
        traffic(&app).await;
    }
    let all = keep.0.lock().unwrap();
    assert!(
        all.iter().all(|l| l.target != REQUEST_LOG),
        "logged while off: {all:?}"
    );
}
