//! STP on the network: the commit authority and the escrow as a
//! [`Service`].
//!
//! | route | body | what |
//! |---|---|---|
//! | `POST /v1/stp/ca` | CBOR | Vote (answered Started, Pending or Outcome), Decide (Pending or Outcome), Status (Pending or Outcome) |
//! | `GET /v1/stp/transactions/{tid}` | - | the outcome with its proof, or pending (JSON; the signed messages in hex) |
//! | `GET /v1/stp/log/head` | - | the latest signed tree head (JSON) |
//! | `GET /v1/stp/log/consistency?old=N&new=M` | - | a consistency proof between two tree sizes (JSON) |
//! | `POST /v1/stp/escrow` | CBOR | Deposit (answered with the signed receipt), Claim (the Release, sealed to the claim's key) |
//!
//! A step that decides a transaction answers once a signed tree head covers
//! its leaf: the first such step seals one head over every leaf logged so
//! far, and the steps that wait behind it find their leaves covered (one
//! signature for the whole batch). Housekeeping aborts what is undecided
//! past its deadline and seals what it decided.
//!
//! The roles' steps read and write storage. A message for the CA whose
//! signature checks before any record is read
//! ([`CommitAuthority::authenticates`]: a Vote, or a Decide by a voter
//! whose key the CA has seen) runs on the async runtime, its log unit's
//! group commit awaited as a future; every other message, the sealing of a
//! tree head and the escrow's steps run on the blocking pool
//! ([`crate::blocking`]), so that no unauthenticated request reaches
//! storage on an async worker.

use crate::endpoint::{self, unknown_message, Answer, Endpoint, Inbound, Outbound, Reloading};
use crate::problem::path_of;
use crate::{blocking, Core, Problem, Service};
use agora_core::crypto::{os_rng, SigningKey};
use agora_core::wire::{cose, decode, tags};
use agora_core::{Error, Timestamp};
use agora_pki::IdentityTrust;
use agora_stp::ca::{Answer as CaAnswer, CommitAuthority};
use agora_stp::escrow::{Escrow, EscrowStore};
use agora_stp::log::CommitLog;
use agora_stp::msg::{Outcome, OutcomeLeaf, Pending, TreeHead};
use agora_stp::rules::AbortReason;
use agora_stp::Tid;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::{Arc, Mutex};

pub use crate::endpoint::TrustSource;

/// Most transactions one housekeeping round aborts for their deadline.
pub const MAX_EXPIRED_PER_ROUND: usize = 10_000;

/// What the STP service is made of.
pub struct StpSpec {
    /// The commit authority's signing key (its identity certificate has
    /// role `commitAuthority`).
    pub ca_key: SigningKey,
    /// The escrow's signing key, if the node hosts an escrow.
    pub escrow_key: Option<SigningKey>,
    /// Where the trust in the parties' certificates comes from.
    pub trust: Box<dyn TrustSource<IdentityTrust>>,
    /// The commit authority's log.
    pub log: Arc<dyn CommitLog>,
    /// The escrow's store.
    pub escrow: Arc<dyn EscrowStore>,
}

impl std::fmt::Debug for StpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StpSpec")
            .field("ca", &self.ca_key.key_id())
            .finish_non_exhaustive()
    }
}

/// The commit authority and the escrow, hosted.
pub struct StpService {
    ca: CommitAuthority,
    escrow: Option<Escrow>,
    log: Arc<dyn CommitLog>,
    escrow_store: Arc<dyn EscrowStore>,
    trust: Reloading<IdentityTrust>,
    /// Held while a tree head is being signed: the steps waiting for one
    /// find their leaves covered by the head signed while they waited.
    sealing: Mutex<()>,
}

impl std::fmt::Debug for StpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StpService")
            .field("ca", &self.ca.uid())
            .field("escrow", &self.escrow.is_some())
            .finish()
    }
}

impl StpService {
    /// The service of `spec`.
    pub fn new(spec: StpSpec) -> Result<StpService, String> {
        let trust = Reloading::new(spec.trust)?;
        let current = (*trust.current()).clone().with_cache();
        let ca = CommitAuthority::new(spec.ca_key, current.clone());
        let escrow = spec
            .escrow_key
            .map(|k| Escrow::new(k, current, ca.verifying_key()));
        Ok(StpService {
            ca,
            escrow,
            log: spec.log,
            escrow_store: spec.escrow,
            trust,
            sealing: Mutex::new(()),
        })
    }

    /// The commit authority.
    pub fn ca(&self) -> &CommitAuthority {
        &self.ca
    }

    /// The escrow's verification key, if the node hosts one.
    pub fn escrow_key(&self) -> Option<agora_core::crypto::VerifyingKey> {
        self.escrow.as_ref().map(Escrow::verifying_key)
    }

    /// Makes sure a signed tree head covers leaf `index`.
    fn seal_covering(&self, now: Timestamp, index: u64) -> Result<(), Error> {
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        let covered = self.log.latest_head()?.map_or(0, |(size, _)| size);
        if covered <= index {
            self.ca.seal(now, self.log.as_ref())?;
        }
        Ok(())
    }

    /// A message for the CA, answered with the CA's signed reply (or the
    /// Outcome, once sealed).
    pub fn ca_step(&self, now: Timestamp, body: &[u8]) -> Result<Vec<u8>, Error> {
        let answer = self.ca.handle(now, body, self.log.as_ref())?;
        let answer = match answer {
            CaAnswer::Sealing { index } => self.sealed(now, index)?,
            a => a,
        };
        reply(answer)
    }

    /// [`Self::ca_step`] on the async runtime, for a message that
    /// [`CommitAuthority::authenticates`]: the step's commit is awaited;
    /// a tree head to seal is sealed on the blocking pool.
    async fn ca_step_async(
        self: Arc<Self>,
        now: Timestamp,
        body: &[u8],
    ) -> Result<Vec<u8>, Problem> {
        let answer = self.ca.handle_async(now, body, self.log.as_ref()).await?;
        let answer = match answer {
            CaAnswer::Sealing { index } => {
                let svc = self.clone();
                blocking(move || Ok(svc.sealed(now, index)?)).await?
            }
            a => a,
        };
        Ok(reply(answer)?)
    }

    /// The answer to a message whose transaction's leaf `index` waits for a
    /// signed tree head: the head sealed, the Outcome of that leaf. The
    /// message was checked and applied; the same message again would change
    /// nothing and answer this very Outcome, so it is not checked twice.
    fn sealed(&self, now: Timestamp, index: u64) -> Result<CaAnswer, Error> {
        self.seal_covering(now, index)?;
        Ok(match self.ca.outcome_at(index, self.log.as_ref())? {
            Some(o) => CaAnswer::Outcome(o),
            None => CaAnswer::Sealing { index },
        })
    }

    /// The status of `tid`: the Outcome or the signed Pending.
    pub fn status(&self, now: Timestamp, tid: &Tid) -> Result<Vec<u8>, Error> {
        self.ca_step(
            now,
            &agora_core::wire::encode(&agora_stp::msg::Status { tid: *tid }),
        )
    }

    /// A message for the escrow (a Deposit or a Claim), answered with its
    /// receipt or its sealed Release.
    pub fn escrow_step(
        &self,
        now: Timestamp,
        tag: agora_core::wire::Tag,
        body: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let escrow = self
            .escrow
            .as_ref()
            .ok_or_else(|| Error::Refused("this node hosts no escrow".into()))?;
        if tag == tags::STP_ESCROW_DEPOSIT {
            escrow.on_deposit(now, body, self.escrow_store.as_ref())
        } else {
            escrow.on_claim(&mut os_rng(), now, body, self.escrow_store.as_ref())
        }
    }

    fn reload_trust(&self) -> Result<(), String> {
        let t = (*self.trust.reload()?).clone().with_cache();
        self.ca.set_trust(t);
        Ok(())
    }
}

/// The CA's signed reply, or the Outcome.
fn reply(answer: CaAnswer) -> Result<Vec<u8>, Error> {
    match answer {
        CaAnswer::Started(b) | CaAnswer::Pending(b) | CaAnswer::Outcome(b) => Ok(b),
        CaAnswer::Sealing { .. } => Err(Error::Storage(
            "a decided transaction's leaf is still not covered by a head".into(),
        )),
    }
}

struct CaEndpoint(Arc<StpService>);

impl Endpoint for CaEndpoint {
    fn handle(self: Arc<Self>, _core: Arc<Core>, m: Inbound) -> Answer {
        Box::pin(async move {
            if ![tags::STP_VOTE, tags::STP_DECIDE, tags::STP_STATUS].contains(&m.tag) {
                return Err(unknown_message(m.tag));
            }
            let svc = self.0.clone();
            // A signature check, no storage: on the runtime.
            if svc.ca.authenticates(m.now, &m.body) {
                return svc.ca_step_async(m.now, &m.body).await.map(Outbound::done);
            }
            blocking(move || Ok(svc.ca_step(m.now, &m.body)?))
                .await
                .map(Outbound::done)
        })
    }
}

struct EscrowEndpoint(Arc<StpService>);

impl Endpoint for EscrowEndpoint {
    fn handle(self: Arc<Self>, _core: Arc<Core>, m: Inbound) -> Answer {
        Box::pin(async move {
            if ![tags::STP_ESCROW_DEPOSIT, tags::STP_ESCROW_CLAIM].contains(&m.tag) {
                return Err(unknown_message(m.tag));
            }
            if self.0.escrow.is_none() {
                return Err(Problem::not_found("this node hosts no escrow"));
            }
            let svc = self.0.clone();
            blocking(move || Ok(svc.escrow_step(m.now, m.tag, &m.body)?))
                .await
                .map(Outbound::done)
        })
    }
}

type St = State<Arc<StpService>>;

fn outcome_code_words(code: u8) -> (&'static str, Option<&'static str>) {
    match AbortReason::from_code(code) {
        None => ("committed", None),
        Some(r) => ("aborted", Some(r.as_str())),
    }
}

/// The JSON of a status answer (an Outcome or a signed Pending), as
/// `GET /v1/stp/transactions/{tid}` gives it.
pub fn status_json(tid: &Tid, answer: &[u8]) -> Result<serde_json::Value, Error> {
    if let Ok(o) = decode::<Outcome>(answer) {
        let leaf: OutcomeLeaf = decode(&o.leaf)?;
        let head: TreeHead = cose::peek_unverified(&o.head)?;
        let (state, reason) = outcome_code_words(leaf.outcome);
        let subs: Vec<serde_json::Value> = leaf
            .subs
            .iter()
            .map(|(p, c)| {
                serde_json::json!({
                    "pair": [p.lo().to_string(), p.hi().to_string()],
                    "context": c.map(|c| c.to_string()),
                })
            })
            .collect();
        return Ok(serde_json::json!({
            "tid": tid.to_string(),
            "state": state,
            "reason": reason,
            "decided_at_unix": leaf.decided_at.secs(),
            "subtransactions": subs,
            "leaf_index": o.index,
            "tree_size": head.size,
            "tree_root": hex::encode(head.root),
            "outcome": hex::encode(answer),
        }));
    }
    let p: Pending = cose::peek_unverified(answer)?;
    Ok(serde_json::json!({
        "tid": tid.to_string(),
        "state": "pending",
        "known": p.known,
        "deadline_unix": p.known.then_some(p.deadline.secs()),
        "as_of_unix": p.as_of.secs(),
        "pending": hex::encode(answer),
    }))
}

async fn transaction_route(
    State(svc): St,
    tid: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let tid = Tid::from_hex(&path_of(tid)?).map_err(Problem::from)?;
    blocking(move || {
        let now = Timestamp::now_from_system_clock();
        let answer = svc.status(now, &tid)?;
        Ok(Json(status_json(&tid, &answer)?))
    })
    .await
}

async fn head_route(State(svc): St) -> Result<Json<serde_json::Value>, Problem> {
    blocking(move || {
        let Some((size, head)) = svc.log.latest_head()? else {
            return Err(Problem::new(StatusCode::NOT_FOUND, "not-found")
                .with_detail("the log has no signed tree head yet"));
        };
        let h: TreeHead = cose::peek_unverified(&head)?;
        Ok(Json(serde_json::json!({
            "size": size,
            "root": hex::encode(h.root),
            "timestamp_unix": h.timestamp.secs(),
            "ca": h.ca.to_string(),
            "head": hex::encode(&head),
        })))
    })
    .await
}

#[derive(serde::Deserialize)]
struct Sizes {
    old: u64,
    new: u64,
}

async fn consistency_route(
    State(svc): St,
    q: Result<Query<Sizes>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    blocking(move || {
        let c = svc.ca.consistency(q.old, q.new, svc.log.as_ref())?;
        Ok(Json(serde_json::json!({
            "old_size": c.old_size,
            "new_size": c.new_size,
            "path": c.path.iter().map(hex::encode).collect::<Vec<_>>(),
            "proof": hex::encode(agora_core::wire::encode(&c)),
        })))
    })
    .await
}

impl Service for StpService {
    fn name(&self) -> &'static str {
        "stp"
    }

    fn router(self: Arc<Self>, core: Arc<Core>) -> Router {
        Router::new()
            .route(
                "/v1/stp/ca",
                endpoint::route(Arc::new(CaEndpoint(self.clone())), core.clone()),
            )
            .route(
                "/v1/stp/escrow",
                endpoint::route(Arc::new(EscrowEndpoint(self.clone())), core),
            )
            .route("/v1/stp/transactions/{tid}", get(transaction_route))
            .route("/v1/stp/log/head", get(head_route))
            .route("/v1/stp/log/consistency", get(consistency_route))
            .with_state(self)
    }

    fn housekeeping(&self, now: Timestamp) -> Result<Option<String>, String> {
        self.reload_trust()?;
        let expired = self
            .ca
            .expire_due(now, self.log.as_ref(), MAX_EXPIRED_PER_ROUND)
            .map_err(|e| e.to_string())?;
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        self.ca
            .seal(now, self.log.as_ref())
            .map_err(|e| e.to_string())?;
        Ok((expired > 0)
            .then(|| format!("stp: {expired} transactions aborted past their deadline")))
    }

    fn describe(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "commit_authority": { "key_id": self.ca.uid().to_string() },
        });
        if let Some(e) = &self.escrow {
            v["escrow"] = serde_json::json!({ "key_id": e.verifying_key().key_id().to_string() });
        }
        v
    }
}
