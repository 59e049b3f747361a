//! The client proxy's HTTP side (`agora proxy`, what LPWA was): a plain
//! HTTP forward proxy on loopback that a browser or curl uses
//! (`curl -x http://alice%40example.org:SECRET@127.0.0.1:PORT URL`).
//!
//! The user gives her id and secret once per request as proxy
//! authentication (`Proxy-Authorization: Basic`, as LPWA took them); no
//! credentials get `407` with `Proxy-Authenticate`. Each absolute-form
//! request is handed, with the credentials, to an [`Upstream`] (the
//! lightweight client in agora-client: Janus, SKEP on first contact, SDDP
//! per request), on the blocking pool; its answer goes back to the browser
//! with hop-by-hop headers removed. The proxy writes nothing anywhere: a
//! second proxy with the same id and secret derives the same keys.
//!
//! Refused here: `CONNECT` (https through this proxy: the point of the
//! proxy is to see and sign the request, and an https origin would need
//! its own TLS termination, not built), origin-form requests (this is not
//! a web server), bodies over [`MAX_BODY`].

use crate::Problem;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The largest request body the proxy forwards: SDDP's request bound.
pub const MAX_BODY: usize = agora_lite::sddp::MAX_REQUEST_LEN;

/// What the user gave in `Proxy-Authorization`: her id and her secret
/// (wiped when dropped, never printed).
pub struct Credentials {
    /// The client id, e.g. an e-mail address.
    pub id: String,
    /// The secret her keys are derived from.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Where the proxy sends a request: the lightweight client.
pub trait Upstream: Send + Sync + 'static {
    /// Forwards `req` (absolute URI, plain body, hop-by-hop headers gone)
    /// for the user of `creds`, blocking; the response for the browser, or
    /// a problem (`502` when the origin is not a lightweight vendor or
    /// cannot be reached, the vendor's own status when it refused).
    fn forward(
        &self,
        creds: &Credentials,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Problem>;
}

/// Headers that concern one connection, not the request (RFC 9110
/// section 7.6.1), and the proxy's own.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Fields the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The credentials of `Proxy-Authorization: Basic base64(id:secret)`.
fn credentials(h: &HeaderMap) -> Option<Credentials> {
    let v = h.get(header::PROXY_AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Zeroizing::new(STANDARD.decode(b64.trim()).ok()?);
    let text = std::str::from_utf8(&raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    if id.is_empty() || secret.is_empty() {
        return None;
    }
    Some(Credentials {
        id: id.to_owned(),
        secret: Zeroizing::new(secret.to_owned()),
    })
}

fn proxy_problem(status: StatusCode, code: &'static str, detail: &str) -> Response {
    Problem::new(status, code)
        .with_detail(detail.to_owned())
        .into_response()
}

async fn handle(upstream: Arc<dyn Upstream>, req: Request) -> Response {
    let Some(creds) = credentials(req.headers()) else {
        let mut r = proxy_problem(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "proxy-authentication",
            "give your client id and secret as proxy credentials \
             (curl -x http://ID:SECRET@HOST:PORT, the id's @ written %40)",
        );
        r.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"agora proxy\", charset=\"UTF-8\""),
        );
        return r;
    };
    if req.method() == Method::CONNECT {
        return proxy_problem(
            StatusCode::NOT_IMPLEMENTED,
            "not-implemented",
            "this proxy signs plain http:// requests to lightweight vendors; it does not tunnel https",
        );
    }
    if req.uri().scheme_str() != Some("http") || req.uri().authority().is_none() {
        return proxy_problem(
            StatusCode::BAD_REQUEST,
            "decode",
            "this is a proxy: send it absolute-form http:// requests (curl -x)",
        );
    }
    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return proxy_problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                &format!("a request body through the proxy is at most {MAX_BODY} bytes"),
            )
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    parts.extensions = Default::default();
    let forwarded = http::Request::from_parts(parts, body);
    let answer = tokio::task::spawn_blocking(move || upstream.forward(&creds, forwarded)).await;
    match answer {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
        Ok(Err(p)) => p.into_response(),
        Err(e) => Problem::internal(&format!("the proxy's upstream failed: {e}")).into_response(),
    }
}

/// The proxy's router: every request, whatever its target, goes to
/// [`Upstream`] (a proxy has no routes of its own).
pub fn router(upstream: Arc<dyn Upstream>) -> Router {
    Router::new().fallback(move |req: Request| handle(upstream.clone(), req))
}

/// Serves the proxy on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: Arc<dyn Upstream>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(upstream))
        .with_graceful_shutdown(shutdown)
        .await
}
