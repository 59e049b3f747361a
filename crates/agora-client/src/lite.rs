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
