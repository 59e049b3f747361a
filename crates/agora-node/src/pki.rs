//! Bonding agencies on the network: certificates and CRLs as public data,
//! and CRLs re-issued on a schedule.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/pki/agencies` | the agencies this node knows CRLs of (JSON) |
//! | `GET /v1/pki/{agency}/cert` | a hosted agency's certificate (DER) |
//! | `GET /v1/pki/{agency}/crl` | an agency's current CRL (DER), the bond certificates' distribution point |
//!
//! The current CRL of each agency is a PEM file `<crl dir>/<agency key
//! id>.pem`: `agora agency revoke` writes a new one at once, the node's
//! housekeeping re-issues a hosted agency's CRL once half of its validity
//! has passed (so a current CRL is always at hand: bonds are refused
//! without one), and the CPO service reloads them from there.

use crate::problem::path_of;
use crate::{blocking, Core, Problem, Service};
use agora_core::Timestamp;
use agora_pki::{Agency, Crl, CrlParams};
use agora_store::Stores;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::path::PathBuf;
use std::sync::Arc;

const DAY_SECS: u64 = 86_400;

/// Writes `bytes` to `path` through a synced temporary file and a rename, so
/// that a reader sees the old file or the new one, never half of one.
pub fn write_file_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A name of its own per writer: two writers (the node's housekeeping and
    // `agora agency revoke`) may replace the same file at once.
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        hex::encode(agora_core::crypto::random_bytes::<8>(
            &mut agora_core::crypto::os_rng()
        ))
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Issues `agency`'s next CRL (valid `days`), archives it, and makes it the
/// current one in `crl_dir`.
pub fn publish_crl(
    store: &Stores,
    agency: &Agency,
    crl_dir: &std::path::Path,
    days: u64,
    now: Timestamp,
) -> Result<Crl, agora_core::Error> {
    let reg = store.agency_registry();
    let crl = agency
        .issue_crl(&CrlParams {
            this_update: now,
            next_update: now.plus_secs(days.max(1) * DAY_SECS),
            crl_number: reg.next_crl_number(&agency.key_id())?,
            revoked: reg.revocations(&agency.key_id())?,
        })
        .map_err(|e| agora_core::Error::Storage(format!("issuing a CRL: {e}")))?;
    store.archive().append("pki/crl", crl.der(), now)?;
    write_file_atomic(
        &crl_dir.join(format!("{}.pem", agency.key_id())),
        crl.to_pem().as_bytes(),
    )
    .map_err(|e| agora_core::Error::Storage(format!("writing the CRL: {e}")))?;
    Ok(crl)
}

/// Reads the current CRL of agency `key_id` from `crl_dir`, if any.
pub fn current_crl(crl_dir: &std::path::Path, key_id: &str) -> Result<Option<Crl>, String> {
    let path = crl_dir.join(format!("{key_id}.pem"));
    let pem = match std::fs::read_to_string(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let der =
        agora_pki::pem::decode(&pem, "X509 CRL").map_err(|e| format!("{}: {e}", path.display()))?;
    agora_pki::parse_crl(&der)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The current CRL of every CA in `crl_dir` (`<key id>.pem` each), as the
/// node's trust sources read them; none if the directory does not exist.
pub fn current_crls(crl_dir: &std::path::Path) -> Result<Vec<Crl>, String> {
    let mut crls = Vec::new();
    let dir = match std::fs::read_dir(crl_dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(crls),
        Err(e) => return Err(format!("{}: {e}", crl_dir.display())),
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(kid) = name.to_str().and_then(|n| n.strip_suffix(".pem")) else {
            continue;
        };
        if let Some(c) = current_crl(crl_dir, kid)? {
            crls.push(c);
        }
    }
    Ok(crls)
}

/// What the PKI service hosts.
pub struct PkiSpec {
    /// The store (agency register, archive).
    pub store: Stores,
    /// The agencies hosted here (their CRLs are re-issued on schedule).
    pub agencies: Vec<Agency>,
    /// Where current CRLs are kept.
    pub crl_dir: PathBuf,
    /// Validity of the CRLs this node issues, in days.
    pub crl_days: u64,
}

impl std::fmt::Debug for PkiSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiSpec")
            .field("agencies", &self.agencies.len())
            .field("crl_dir", &self.crl_dir)
            .finish()
    }
}

/// The bonding agencies as a node service.
#[derive(Debug)]
pub struct PkiService(PkiSpec);

impl PkiService {
    /// Hosts `spec`.
    pub fn new(spec: PkiSpec) -> PkiService {
        PkiService(spec)
    }

    /// Re-issues each hosted agency's CRL if it is missing or past half its
    /// validity; returns how many were issued.
    pub fn refresh_crls(&self, now: Timestamp) -> Result<usize, String> {
        let mut issued = 0;
        for a in &self.0.agencies {
            let due = match current_crl(&self.0.crl_dir, &a.key_id().to_string())? {
                None => true,
                Some(c) => match c.next_update {
                    None => true,
                    Some(next) => {
                        let half = next.secs().saturating_sub(c.this_update.secs()) / 2;
                        now.secs() >= c.this_update.secs().saturating_add(half)
                    }
                },
            };
            if due {
                publish_crl(&self.0.store, a, &self.0.crl_dir, self.0.crl_days, now)
                    .map_err(|e| e.to_string())?;
                issued += 1;
            }
        }
        Ok(issued)
    }
}

fn key_id_path(s: &str) -> Result<String, Problem> {
    agora_core::KeyId::from_hex(s)
        .map(|k| k.to_string())
        .map_err(|_| Problem::bad_request("the agency key id is not 64 hex digits"))
}

async fn crl_route(
    State(svc): State<Arc<PkiService>>,
    kid: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let kid = key_id_path(&path_of(kid)?)?;
    let crl =
        blocking(move || current_crl(&svc.0.crl_dir, &kid).map_err(|e| Problem::internal(&e)))
            .await?
            .ok_or_else(|| Problem::not_found("no CRL of that agency here"))?;
    Ok((
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        crl.der().to_vec(),
    )
        .into_response())
}

async fn cert_route(
    State(svc): State<Arc<PkiService>>,
    kid: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let kid = key_id_path(&path_of(kid)?)?;
    let a = svc
        .0
        .agencies
        .iter()
        .find(|a| a.key_id().to_string() == kid)
        .ok_or_else(|| Problem::not_found("no such agency hosted here"))?;
    Ok((
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        a.certificate_der().to_vec(),
    )
        .into_response())
}

async fn agencies_route(State(svc): State<Arc<PkiService>>) -> Json<serde_json::Value> {
    Json(svc.describe())
}

impl Service for PkiService {
    fn name(&self) -> &'static str {
        "pki"
    }

    fn router(self: Arc<Self>, _core: Arc<Core>) -> Router {
        Router::new()
            .route("/v1/pki/agencies", get(agencies_route))
            .route("/v1/pki/{agency}/crl", get(crl_route))
            .route("/v1/pki/{agency}/cert", get(cert_route))
            .with_state(self)
    }

    fn housekeeping(&self, now: Timestamp) -> Result<Option<String>, String> {
        let n = self.refresh_crls(now)?;
        Ok((n > 0).then(|| format!("issued {n} CRLs")))
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .agencies
                .iter()
                .map(|a| {
                    let kid = a.key_id().to_string();
                    serde_json::json!({
                        "name": a.name(),
                        "key_id": kid,
                        "cert": format!("/v1/pki/{kid}/cert"),
                        "crl": format!("/v1/pki/{kid}/crl"),
                    })
                })
                .collect(),
        )
    }
}
