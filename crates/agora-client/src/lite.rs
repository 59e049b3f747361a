//! The lightweight primitives' client side over HTTP: the vendor's keys
//! fetched and validated against its identity certificate, SKEP through
//! the vendor's endpoint, and SDDP requests signed and their replies opened
//! (agora-lite's HTTP binding). `agora lite subscribe / fetch` drive it;
//! the client keeps nothing but her id and secret, from which the Janus
//! key with each vendor is derived again on every run.

use crate::transport::{ClientError, NodeClient};
use agora_core::crypto::{Rng, VerifyingKey, X25519Public};
use agora_core::Timestamp;
use agora_lite::http as lite_http;
use agora_lite::skep::{SignedReceipt, SkepClient, SkepMode};
use agora_lite::wire::Subscription;
use agora_lite::{ClientId, Granularity, VendorId, VendorKey};
use agora_node::Problem;
use agora_pki::{IdentityTrust, PartyRole};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The route of a vendor's public description.
pub const VENDOR_PATH: &str = "/v1/lite/vendor";
/// The route of SKEP.
pub const SKEP_PATH: &str = "/v1/lite/skep";

/// A lightweight vendor whose keys were checked against its identity
/// certificate.
#[derive(Clone, Debug)]
pub struct Vendor {
    /// `id_V`, the certificate's name.
    pub id: VendorId,
    /// The key SKEP's hello is sealed to.
    pub x25519: X25519Public,
    /// The key that signs its receipts.
    pub ed25519: VerifyingKey,
    /// Its unit of time for session keys.
    pub granularity: Granularity,
    /// Whether its SKEP ends with a signed receipt.
    pub mode: SkepMode,
}

fn core(e: agora_core::Error) -> ClientError {
    ClientError::from(Problem::from(e))
}

fn refused(why: String) -> ClientError {
    core(agora_core::Error::Refused(why))
}

fn hex32(v: &serde_json::Value, what: &str) -> Result<[u8; 32], ClientError> {
    v.as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ClientError::Transport(format!("{VENDOR_PATH}: {what} is not 32 bytes of hex"))
        })
}

/// Fetches the vendor at `node` and validates it: its identity
/// certificate must be valid now under `trust` (a trusted CA, its current
/// CRL, not revoked), of role `vendor`, name the vendor id it publishes,
/// and carry exactly the Ed25519 and X25519 keys it publishes. Anything
/// else is refused: the client would otherwise seal her key to whoever
/// answered.
pub fn discover(
    node: &NodeClient,
    trust: &IdentityTrust,
    now: Timestamp,
) -> Result<Vendor, ClientError> {
    let v: serde_json::Value = node.get_json(VENDOR_PATH)?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| ClientError::Transport(format!("{VENDOR_PATH}: no id")))?;
    let id = VendorId::new(id).map_err(core)?;
    let pem = v["certificate"].as_str().ok_or_else(|| {
        refused(format!(
            "vendor {:?} publishes no certificate: its keys cannot be checked",
            id.as_str()
        ))
    })?;
    let der = agora_pki::pem::decode(pem, "CERTIFICATE")
        .map_err(|e| refused(format!("the vendor's certificate: {e}")))?;
    let valid = trust.identity(&der, now, PartyRole::Vendor).map_err(core)?;
    if valid.name() != id.as_str() {
        return Err(refused(format!(
            "the certificate names {:?}, the vendor says it is {:?}",
            valid.name(),
            id.as_str()
        )));
    }
    let ed25519 = VerifyingKey::from_bytes(&hex32(&v["ed25519"], "ed25519")?).map_err(core)?;
    let x25519 = X25519Public::from_slice(&hex32(&v["x25519"], "x25519")?).map_err(core)?;
    if valid.key() != &ed25519 || valid.x25519() != Some(&x25519) {
        return Err(refused(
            "the vendor's published keys are not those of its certificate".into(),
        ));
    }
    let granularity = v["granularity_secs"]
        .as_u64()
        .ok_or_else(|| ClientError::Transport(format!("{VENDOR_PATH}: no granularity_secs")))
        .and_then(|g| Granularity::from_secs(g).map_err(core))?;
    let mode = match v["skep_mode"].as_str() {
        Some("basic") => SkepMode::Basic,
        Some("non-repudiation") => SkepMode::NonRepudiation,
        _ => {
            return Err(ClientError::Transport(format!(
                "{VENDOR_PATH}: unknown skep_mode"
            )))
        }
    };
    Ok(Vendor {
        id,
        x25519,
        ed25519,
        granularity,
        mode,
    })
}

/// SKEP with `vendor` at `node` as client `id_c` with her Janus `key`:
/// hello, challenge, confirm with `subscription`, and in non-repudiation
/// mode the vendor's receipt, checked against its certificate's key.
/// `409 already-subscribed` if the vendor has this client already (her key
/// stands: the same id and secret derive it again).
pub fn subscribe(
    node: &NodeClient,
    vendor: &Vendor,
    id_c: &ClientId,
    key: &VendorKey,
    rng: &mut impl Rng,
    subscription: Subscription,
) -> Result<Option<SignedReceipt>, ClientError> {
    let (await_challenge, hello) =
        SkepClient::start(rng, key, id_c.clone(), vendor.id.clone(), &vendor.x25519)
            .map_err(core)?;
    let (challenge, step) = node.post_cbor(SKEP_PATH, &hello, &[])?;
    let step = step.ok_or_else(|| {
        ClientError::Transport("the vendor's challenge names no pending step".into())
    })?;
    let (confirmed, confirm) = await_challenge
        .on_challenge(rng, &challenge, subscription)
        .map_err(|r| core(r.error))?;
    let (receipt, _) = node.post_cbor(
        SKEP_PATH,
        &confirm,
        &[(agora_node::STEP_HEADER, hex::encode(step))],
    )?;
    match vendor.mode {
        SkepMode::Basic => Ok(None),
        SkepMode::NonRepudiation => confirmed
            .on_receipt(&receipt, &vendor.ed25519)
            .map(Some)
            .map_err(|r| core(r.error)),
    }
}

/// One SDDP request to `vendor` at `node`: `method path_and_query` with
/// `body` (of `content_type`), signed under the session key of `now`'s
/// unit; the reply checked and opened. Returns the vendor's reply
/// (status, headers, plain body). A refusal the vendor did not sign (an
/// unknown client, a replay) is its problem document.
#[allow(clippy::too_many_arguments)] // one request: who, to whom, what
pub fn fetch(
    node: &NodeClient,
    vendor: &Vendor,
    id_c: &ClientId,
    key: &VendorKey,
    rng: &mut impl Rng,
    now: Timestamp,
    method: http::Method,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<http::Response<Vec<u8>>, ClientError> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("{}{path_and_query}", node.base()));
    if let Some(ct) = content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    let mut req = b
        .body(body)
        .map_err(|e| ClientError::Transport(format!("not a request: {e}")))?;
    let wait = lite_http::seal_request(
        rng,
        key,
        id_c,
        &vendor.id,
        now,
        vendor.granularity,
        &mut req,
    )
    .map_err(core)?;
    let mut resp = node.exchange(&req)?;
    if !resp.headers().contains_key(&lite_http::SIGNATURE) {
        // Unsigned: the layer refused before it knew the client.
        return Err(crate::transport::problem_from(
            resp.status().as_u16(),
            Some(resp.body()),
        ));
    }
    wait.open_response(&mut resp).map_err(core)?;
    Ok(resp)
}

// ---- the client proxy's upstream -------------------------------------------

/// The response header in which the proxy hands the user the vendor's
/// signed receipt (COSE_Sign1, a structured-field byte sequence) of the
/// subscription it made on her first request to that vendor.
pub const RECEIPT_HEADER: http::HeaderName = http::HeaderName::from_static("agora-lite-receipt");

/// A user's Janus state, opened under the secret whose MAC is kept.
type Opened = ([u8; 32], Arc<agora_lite::Janus>);

/// A vendor the proxy validated: how to reach it, what it is, when it was
/// checked.
type Validated = (Arc<NodeClient>, Vendor, Timestamp);

/// The code of the vendor's refusal of a client it has no record of.
const UNKNOWN_CLIENT: &str = "lite-unknown-client";

/// What `agora proxy` does with each request a browser sends it: the
/// vendor at the request's origin discovered and validated once (its
/// certificate under `trust`), the user's Janus state opened once per id
/// and secret (Argon2id), SKEP on the vendor's first `401
/// lite-unknown-client`, then the request over SDDP. Everything it keeps
/// is in memory: a second proxy with the same id and secret derives the
/// same keys and carries on.
pub struct LiteProxy {
    trust: IdentityTrust,
    params: agora_lite::JanusParams,
    subscription_days: u64,
    /// A random key of this process: the secret is remembered only as its
    /// MAC under it, to tell whether a request brings the same one.
    secret_key: agora_core::crypto::MacKey,
    /// By client id: the secret's MAC and the Janus state it opened.
    sessions: Mutex<HashMap<String, Opened>>,
    /// By origin: its node client, the vendor validated, and when.
    vendors: Mutex<HashMap<String, Validated>>,
}

/// How long the proxy trusts a vendor it validated before it fetches and
/// validates its certificate again (a revocation takes effect within it).
pub const VENDOR_RECHECK_SECS: u64 = 600;

impl std::fmt::Debug for LiteProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteProxy").finish_non_exhaustive()
    }
}

/// The most users (ids) and vendors a proxy keeps state for; past it, it
/// starts afresh (the state is a cache of what it can derive again).
pub const MAX_PROXY_ENTRIES: usize = 1024;

impl LiteProxy {
    /// A proxy trusting vendors' certificates under `trust`, opening
    /// Janus with `params`, subscribing for `subscription_days` on first
    /// contact.
    pub fn new(
        trust: IdentityTrust,
        params: agora_lite::JanusParams,
        subscription_days: u64,
    ) -> LiteProxy {
        LiteProxy {
            trust,
            params,
            subscription_days,
            secret_key: agora_core::crypto::MacKey::random(&mut agora_core::crypto::os_rng()),
            sessions: Default::default(),
            vendors: Default::default(),
        }
    }

    fn janus(&self, id: &ClientId, secret: &str) -> Result<Arc<agora_lite::Janus>, ClientError> {
        let tag = self.secret_key.tag(secret.as_bytes());
        {
            let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((t, j)) = s.get(id.as_str()) {
                if agora_core::crypto::ct_eq(t, &tag) {
                    return Ok(j.clone());
                }
            }
        }
        let j = Arc::new(
            agora_lite::Janus::open(id.clone(), secret.as_bytes(), self.params).map_err(core)?,
        );
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() >= MAX_PROXY_ENTRIES {
            s.clear();
        }
        s.insert(id.as_str().to_owned(), (tag, j.clone()));
        Ok(j)
    }

    fn vendor(
        &self,
        origin: &str,
        now: Timestamp,
    ) -> Result<(Arc<NodeClient>, Vendor), ClientError> {
        if let Some((node, vendor, checked)) = self
            .vendors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
        {
            if now.0 < checked.0.saturating_add(VENDOR_RECHECK_SECS) {
                return Ok((node.clone(), vendor.clone()));
            }
        }
        let node = Arc::new(NodeClient::new(origin)?);
        let vendor = discover(&node, &self.trust, now)?;
        let mut v = self.vendors.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= MAX_PROXY_ENTRIES {
            v.clear();
        }
        v.insert(origin.to_owned(), (node.clone(), vendor.clone(), now));
        Ok((node, vendor))
    }

    /// One request for the user `id` with `secret`: `req` has an absolute
    /// `http://` URI and a plain body.
    pub fn forward_request(
        &self,
        id: &str,
        secret: &str,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, ClientError> {
        let now = Timestamp::now_from_system_clock();
        let id_c = ClientId::new(id).map_err(core)?;
        let uri = req.uri();
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority()
                .ok_or_else(|| ClientError::Transport("the request has no origin".into()))?
        );
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let (node, vendor) = self.vendor(&origin, now)?;
        let janus = self.janus(&id_c, secret)?;
        let key = janus.vendor_key(&vendor.id, 0);
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let method = req.method().clone();
        let body = req.into_body();
        let mut rng = agora_core::crypto::os_rng();
        let send = |rng: &mut _| {
            fetch(
                &node,
                &vendor,
                &id_c,
                &key,
                rng,
                now,
                method.clone(),
                &path,
                content_type.as_deref(),
                body.clone(),
            )
        };
        match send(&mut rng) {
            Err(ClientError::Problem(p)) if p.code == UNKNOWN_CLIENT => {
                let s = Subscription {
                    not_before: now,
                    not_after: now.plus_secs(self.subscription_days * 86_400),
                    chain: None,
                    payment: b"agora proxy: first contact".to_vec(),
                    counter: 0,
                };
                let receipt = subscribe(&node, &vendor, &id_c, &key, &mut rng, s)?;
                let mut resp = send(&mut rng)?;
                // The proxy keeps nothing: the receipt of the subscription
                // it just made goes to the user with this answer.
                if let Some(r) = receipt {
                    let v = format!(":{}:", STANDARD.encode(&r.cose_sign1));
                    if let Ok(v) = http::HeaderValue::from_str(&v) {
                        resp.headers_mut().insert(RECEIPT_HEADER, v);
                    }
                }
                Ok(resp)
            }
            other => other,
        }
    }
}

impl agora_node::proxy::Upstream for LiteProxy {
    fn forward(
        &self,
        creds: &agora_node::proxy::Credentials,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Problem> {
        self.forward_request(&creds.id, &creds.secret, req)
            .map_err(|e| match e {
                // The vendor refused: its status, the proxy's code.
                ClientError::Problem(p) => Problem::new(
                    http::StatusCode::from_u16(p.status).unwrap_or(http::StatusCode::BAD_GATEWAY),
                    "upstream",
                )
                .with_detail(format!(
                    "{}: {}",
                    p.code,
                    p.detail.unwrap_or_default()
                )),
                ClientError::Transport(t) => {
                    Problem::new(http::StatusCode::BAD_GATEWAY, "upstream").with_detail(t)
                }
            })
    }
}
