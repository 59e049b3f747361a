//! Clients of the CPO service: over HTTP ([`NodeClient`]), or with the roles
//! hosted in the caller's own process ([`LocalCpo`]). Both speak through
//! [`CpoTransport`], so a buyer or seller runs the same protocol code
//! whichever way the messages travel.

use agora_core::Timestamp;
use agora_node::cpo::{award_json, BoardPage, BoardQuery, CpoService, Reply, Role};
use agora_node::pending::{parse_id, StepId};
use agora_node::{PendingSteps, Problem, CBOR, STEP_HEADER};
use std::time::Duration;

/// A problem document as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProblemDoc {
    /// The HTTP status.
    pub status: u16,
    /// The stable code.
    pub code: String,
    /// What went wrong, if told.
    pub detail: Option<String>,
}

impl std::fmt::Display for ProblemDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.code),
            None => write!(f, "{}", self.code),
        }
    }
}

impl From<Problem> for ProblemDoc {
    fn from(p: Problem) -> ProblemDoc {
        ProblemDoc {
            status: p.status.as_u16(),
            code: p.code.to_owned(),
            detail: p.detail,
        }
    }
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The node (or the local role) refused, with a problem document.
    #[error("{0}")]
    Problem(ProblemDoc),
    /// The node could not be reached, or answered something that is not
    /// this API.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The problem's code, or `transport`.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Problem(p) => &p.code,
            ClientError::Transport(_) => "transport",
        }
    }
}

impl From<Problem> for ClientError {
    fn from(p: Problem) -> ClientError {
        ClientError::Problem(p.into())
    }
}

/// A request that got no answer from `base`, said so that the user knows
/// what to do: a refused connection asks whether the node runs there; a
/// timeout says the node did not answer in time. The HTTP client's own
/// words ("error sending request for url ...") say nothing more to a person
/// and are left out.
fn unreachable(base: &str, e: &reqwest::Error) -> ClientError {
    let refused = std::iter::successors(Some(e as &dyn std::error::Error), |c| c.source())
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    ClientError::Transport(if refused {
        format!("connection refused: is `agora up` running at {base}?")
    } else if e.is_connect() {
        format!("cannot connect to {base}: is `agora up` running there, and is the address right?")
    } else if e.is_timeout() {
        format!("{base} did not answer in time: the node may be overloaded; try again")
    } else {
        format!("the connection to {base} failed before the answer came: try again")
    })
}

/// How a buyer or a seller reaches the CPO roles.
pub trait CpoTransport {
    /// Sends one protocol message to `role`.
    fn call(&self, role: Role, body: &[u8], step: Option<StepId>) -> Result<Reply, ClientError>;
    /// A page of the public listing in the order `q` asks for (`sort`),
    /// with the cursor of the next page if there is one.
    fn board(&self, q: &BoardQuery) -> Result<BoardPage, ClientError>;
    /// One CPO's public fields and status.
    fn cpo(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError>;
    /// A bidder's signed notice.
    fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, ClientError>;
    /// Awards a closed bidding CPO (idempotent).
    fn award(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError>;
}

/// The CPO roles hosted in this process, with their own pending-step table.
#[derive(Debug)]
pub struct LocalCpo {
    service: CpoService,
    pending: PendingSteps,
}

impl LocalCpo {
    /// Hosts `service` here.
    pub fn new(service: CpoService) -> LocalCpo {
        LocalCpo {
            service,
            pending: PendingSteps::new(64, Duration::from_secs(600)),
        }
    }

    /// The service.
    pub fn service(&self) -> &CpoService {
        &self.service
    }
}

fn now() -> Timestamp {
    Timestamp::now_from_system_clock()
}

impl CpoTransport for LocalCpo {
    fn call(&self, role: Role, body: &[u8], step: Option<StepId>) -> Result<Reply, ClientError> {
        Ok(self
            .service
            .handle(&self.pending, role, step, body, now())?)
    }

    fn board(&self, q: &BoardQuery) -> Result<BoardPage, ClientError> {
        Ok(self.service.board_page(q, now())?)
    }

    fn cpo(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        Ok(self.service.cpo_json(id, now())?)
    }

    fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
        Ok(self.service.notice(id, receipt)?)
    }

    fn award(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        let s = self.service.award(id, now())?;
        Ok(award_json(id, &s))
    }
}

/// Attempts per request when the node answers `503`. The load shedder's
/// `503` comes before any work, so its retry cannot do anything twice; a
/// full pending-step table's comes after the step's R_0 entered the
/// replay cache, and its retry is refused as replayed (issue 15).
const ATTEMPTS: u32 = 4;
/// Largest reply read, in bytes.
const MAX_REPLY: u64 = 4 * 1024 * 1024;

/// A node's base URL as the clients keep it: `http://` or `https://`, no
/// trailing slash.
fn node_base(base: &str) -> Result<String, ClientError> {
    let base = base.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ClientError::Transport(format!(
            "node URL {base:?}: use http://host:port"
        )));
    }
    Ok(base)
}

/// A node over HTTP.
#[derive(Clone, Debug)]
pub struct NodeClient {
    base: String,
    http: reqwest::blocking::Client,
    /// For long bodies (a SPEED delivery): a connect timeout, no total one.
    streaming: reqwest::blocking::Client,
}

impl NodeClient {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Result<NodeClient, ClientError> {
        let base = node_base(base)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Transport(format!("HTTP client: {e}")))?;
        let streaming = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .map_err(|e| ClientError::Transport(format!("HTTP client: {e}")))?;
        Ok(NodeClient {
            base,
            http,
            streaming,
        })
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST path` with a CBOR body and extra headers: the reply's body and
    /// pending step id.
    pub fn post_cbor(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Result<(Vec<u8>, Option<StepId>), ClientError> {
        let r = self.post_cbor_with(&self.http, path, body, headers)?;
        let step = step_of(&r)?;
        Ok((Self::body(r)?, step))
    }

    /// `POST path` with a CBOR body, the reply left to be read as a stream
    /// (no total timeout; the caller bounds what it reads).
    pub fn post_cbor_stream(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Result<reqwest::blocking::Response, ClientError> {
        self.post_cbor_with(&self.streaming, path, body, headers)
    }

    /// `POST path` with a streamed body of `content_type` (e.g. a SPEED
    /// complaint with the encrypted product); `body` is called again for a
    /// retry after `503`.
    pub fn post_stream(
        &self,
        path: &str,
        content_type: &str,
        body: impl Fn() -> std::io::Result<(Box<dyn std::io::Read + Send>, u64)>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let opened = std::cell::RefCell::new(None);
        let r = self.send(|| {
            let b = match body() {
                Ok((reader, len)) => reqwest::blocking::Body::sized(reader, len),
                Err(e) => {
                    *opened.borrow_mut() = Some(e.to_string());
                    reqwest::blocking::Body::from(Vec::new())
                }
            };
            self.streaming
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(b)
        });
        if let Some(e) = opened.into_inner() {
            return Err(ClientError::Transport(format!(
                "reading the body to send: {e}"
            )));
        }
        Self::body(r?)
    }

    fn post_cbor_with(
        &self,
        http: &reqwest::blocking::Client,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(|| {
            let mut b = http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, CBOR)
                .body(body.to_vec());
            for (k, v) in headers {
                b = b.header(*k, v.as_str());
            }
            b
        })
    }

    fn send(
        &self,
        make: impl Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = make().send().map_err(|e| unreachable(&self.base, &e))?;
            if r.status().is_success() {
                return Ok(r);
            }
            match retry_wait(r.status().as_u16(), r.headers(), attempt) {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(problem_of(r)),
            }
        }
    }

    fn body(r: reqwest::blocking::Response) -> Result<Vec<u8>, ClientError> {
        use std::io::Read;
        let mut buf = Vec::new();
        r.take(MAX_REPLY + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ClientError::Transport(format!("reading the reply: {e}")))?;
        if buf.len() as u64 > MAX_REPLY {
            return Err(ClientError::Transport("the reply is too large".into()));
        }
        Ok(buf)
    }

    /// Sends `req` (its URI under this node's base) as it is, headers and
    /// body, and returns the answer whatever its status: for a protocol
    /// whose replies carry their own authentication (SDDP over HTTP), so
    /// that the caller judges a signed error reply itself. Retried after a
    /// `503` like every call (a request refused for load changed nothing,
    /// so the same bytes may go again).
    pub fn exchange(
        &self,
        req: &http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, ClientError> {
        let url = req.uri().to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut b = self.http.request(req.method().clone(), &url);
            for (k, v) in req.headers() {
                b = b.header(k, v);
            }
            let r = b
                .body(req.body().clone())
                .send()
                .map_err(|e| unreachable(&self.base, &e))?;
            if let Some(wait) = retry_wait(r.status().as_u16(), r.headers(), attempt) {
                std::thread::sleep(wait);
                continue;
            }
            let mut out = http::Response::builder().status(r.status());
            for (k, v) in r.headers() {
                out = out.header(k, v);
            }
            return out
                .body(Self::body(r)?)
                .map_err(|e| ClientError::Transport(format!("the answer: {e}")));
        }
    }

    /// `GET path` as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::json(path, self.get(path)?)
    }

    /// `GET path`, answered with success.
    fn get(&self, path: &str) -> Result<reqwest::blocking::Response, ClientError> {
        self.send(|| self.http.get(format!("{}{path}", self.base)))
    }

    /// The JSON body of `r`, the answer to `path`.
    fn json<T: serde::de::DeserializeOwned>(
        path: &str,
        r: reqwest::blocking::Response,
    ) -> Result<T, ClientError> {
        serde_json::from_slice(&Self::body(r)?)
            .map_err(|e| ClientError::Transport(format!("{path}: not the JSON expected: {e}")))
    }

    /// `GET path` as bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        Self::body(self.get(path)?)
    }

    /// `POST path` (no body) answered with JSON.
    pub fn post_empty(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let r = self.send(|| self.http.post(format!("{}{path}", self.base)))?;
        serde_json::from_slice(&Self::body(r)?)
            .map_err(|e| ClientError::Transport(format!("{path}: not JSON: {e}")))
    }
}

fn step_of(r: &reqwest::blocking::Response) -> Result<Option<StepId>, ClientError> {
    step_in(r.headers())
}

/// The headers of a protocol message: its content type, and the pending step
/// it answers, if any.
fn message_headers(step: Option<StepId>) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static(CBOR),
    );
    if let Some(id) = step {
        // Hex digits are always a valid header value.
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&hex::encode(id)) {
            h.insert(STEP_HEADER, v);
        }
    }
    h
}

fn step_in(headers: &reqwest::header::HeaderMap) -> Result<Option<StepId>, ClientError> {
    match headers.get(STEP_HEADER) {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .map_err(|_| ClientError::Transport("bad step header".into()))
                .and_then(|v| parse_id(v).map_err(ClientError::from))?,
        )),
    }
}

fn problem_of(r: reqwest::blocking::Response) -> ClientError {
    let status = r.status().as_u16();
    problem_from(status, NodeClient::body(r).ok().as_deref())
}

/// The error of a reply with a failure `status`: its problem document, if
/// the body is one.
/// The error of an answer `status` with `body`: its problem document, or a
/// transport error if it is none.
pub fn problem_from(status: u16, body: Option<&[u8]>) -> ClientError {
    let doc: Option<serde_json::Value> = body.and_then(|b| serde_json::from_slice(b).ok());
    match doc {
        Some(d) if d.get("code").is_some() => ClientError::Problem(ProblemDoc {
            status,
            code: d["code"].as_str().unwrap_or("unknown").to_owned(),
            detail: d["detail"].as_str().map(str::to_owned),
        }),
        _ => ClientError::Transport(format!("the node answered HTTP {status}")),
    }
}

/// How long to wait before attempt `attempt + 1` of a request answered
/// `status`: only after `503` (see [`ATTEMPTS`]), at most [`ATTEMPTS`]
/// in all, as long as `Retry-After` says (1 to 5 seconds).
fn retry_wait(status: u16, headers: &reqwest::header::HeaderMap, attempt: u32) -> Option<Duration> {
    if status != 503 || attempt >= ATTEMPTS {
        return None;
    }
    let secs = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Some(Duration::from_secs(secs.unwrap_or(1).min(5)))
}

impl CpoTransport for NodeClient {
    fn call(&self, role: Role, body: &[u8], step: Option<StepId>) -> Result<Reply, ClientError> {
        let url = format!("{}{}", self.base, role.path());
        let r = self.send(|| {
            self.http
                .post(&url)
                .headers(message_headers(step))
                .body(body.to_vec())
        })?;
        let step = step_of(&r)?;
        Ok(Reply {
            body: Self::body(r)?,
            step,
        })
    }

    fn board(&self, q: &BoardQuery) -> Result<BoardPage, ClientError> {
        let qs = serde_urlencoded::to_string(q)
            .map_err(|e| ClientError::Transport(format!("query: {e}")))?;
        let path = format!("/v1/cpo/board?{qs}");
        let r = self.get(&path)?;
        let next = r
            .headers()
            .get(agora_node::cpo::NEXT_CURSOR_HEADER)
            .map(|v| {
                v.to_str().map(str::to_owned).map_err(|_| {
                    ClientError::Transport("a next-page cursor that is not text".into())
                })
            })
            .transpose()?;
        Ok(BoardPage {
            entries: Self::json(&path, r)?,
            next,
        })
    }

    fn cpo(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        self.get_json(&format!("/v1/cpo/board/{}", hex::encode(id)))
    }

    fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!(
            "/v1/cpo/notices/{}/{}",
            hex::encode(id),
            hex::encode(receipt)
        ))
    }

    fn award(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        self.post_empty(&format!("/v1/cpo/awards/{}", hex::encode(id)))
    }
}

/// The protocol messages of the CPO roles (and, through
/// [`crate::stp::AsyncStpTransport`], STP's commit authority) over HTTP, for
/// async callers: a load generator's event loops, where many sellers share one thread and
/// none sleeps while the node answers her (a thread per seller with a
/// blocking [`NodeClient`] sleeps and is woken once per request: a quarter of
/// the load tool's CPU in `agora bench cpo-bind`, per `perf`). Cheap to
/// clone (clones share the connection pool); the pool belongs to the
/// runtime it is first used on.
#[derive(Clone, Debug)]
pub struct AsyncNodeClient {
    base: String,
    http: reqwest::Client,
}

/// How a party reaches the CPO roles from an event loop: one protocol
/// message at a time, awaited (no thread waits while the node answers).
pub trait AsyncCpoTransport {
    /// Sends one protocol message to `role`.
    fn call(
        &self,
        role: Role,
        body: &[u8],
        step: Option<StepId>,
    ) -> impl std::future::Future<Output = Result<Reply, ClientError>>;
}

impl AsyncCpoTransport for AsyncNodeClient {
    fn call(
        &self,
        role: Role,
        body: &[u8],
        step: Option<StepId>,
    ) -> impl std::future::Future<Output = Result<Reply, ClientError>> {
        AsyncNodeClient::call(self, role, body, step)
    }
}

impl AsyncNodeClient {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Result<AsyncNodeClient, ClientError> {
        let base = node_base(base)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Transport(format!("HTTP client: {e}")))?;
        Ok(AsyncNodeClient { base, http })
    }

    /// Sends one protocol message to `role`, as [`CpoTransport::call`] does
    /// (retrying after `503`).
    pub async fn call(
        &self,
        role: Role,
        body: &[u8],
        step: Option<StepId>,
    ) -> Result<Reply, ClientError> {
        self.post_cbor(role.path(), body, step).await
    }

    /// `POST path` with a CBOR body (and the step's id, if any), retrying
    /// after `503` as the blocking [`NodeClient::post_cbor`] does: the reply,
    /// at most 4 MiB, or the node's problem.
    pub async fn post_cbor(
        &self,
        path: &str,
        body: &[u8],
        step: Option<StepId>,
    ) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut r = self
                .http
                .post(&url)
                .headers(message_headers(step))
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| unreachable(&self.base, &e))?;
            let status = r.status().as_u16();
            let retry = retry_wait(status, r.headers(), attempt);
            let reply_step = step_in(r.headers());
            let body = read_bounded(&mut r).await;
            if r.status().is_success() {
                return Ok(Reply {
                    body: body?,
                    step: reply_step?,
                });
            }
            match retry {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(problem_from(status, body.ok().as_deref())),
            }
        }
    }
}

/// A reply's body, at most [`MAX_REPLY`] bytes.
async fn read_bounded(r: &mut reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(c) = r
        .chunk()
        .await
        .map_err(|e| ClientError::Transport(format!("reading the reply: {e}")))?
    {
        if (body.len() + c.len()) as u64 > MAX_REPLY {
            return Err(ClientError::Transport("the reply is too large".into()));
        }
        body.extend_from_slice(&c);
    }
    Ok(body)
}
