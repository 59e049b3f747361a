//! The STP process's side: a party's subtransactions kept in files between
//! program runs, carried on through a commit authority reached over HTTP
//! or hosted in this process ([`StpTransport`]).
//!
//! Messages between the parties travel however the caller carries them
//! (the paper assumes only a reliable, ordered channel; the CLI writes and
//! reads message files). What the commit authority must answer (Started,
//! the Outcome) is asked for again whenever a command touches a
//! subtransaction still waiting for it, so a lost answer costs nothing.

use crate::transport::{AsyncNodeClient, ClientError, NodeClient};
use agora_core::crypto::{Rng, VerifyingKey};
use agora_core::wire::{cose, tags, Tag};
use agora_core::{Error, KeyId, Timestamp};
use agora_node::stp::StpService;
use agora_stp::msg::{Data, End};
use agora_stp::outcome::verify_outcome;
use agora_stp::process::{self, Decided, Invitation, Party, Received, SubState};
use agora_stp::{Pair, Tid};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a party reaches the commit authority and the escrow.
pub trait StpTransport {
    /// One message for the commit authority (Vote, Decide, Status): its
    /// reply.
    fn to_ca(&self, body: &[u8]) -> Result<Vec<u8>, ClientError>;
    /// One message for the escrow (Deposit, Claim): its reply.
    fn to_escrow(&self, body: &[u8]) -> Result<Vec<u8>, ClientError>;
    /// What `GET /v1/stp/transactions/{tid}` says.
    fn transaction(&self, tid: &Tid) -> Result<serde_json::Value, ClientError>;
}

impl StpTransport for NodeClient {
    fn to_ca(&self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self.post_cbor(CA_PATH, body, &[])?.0)
    }

    fn to_escrow(&self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self.post_cbor("/v1/stp/escrow", body, &[])?.0)
    }

    fn transaction(&self, tid: &Tid) -> Result<serde_json::Value, ClientError> {
        self.get_json(&format!("/v1/stp/transactions/{tid}"))
    }
}

/// How a party reaches the commit authority from an event loop: one
/// message at a time, awaited (no thread waits while the CA answers; see
/// [`AsyncNodeClient`]).
pub trait AsyncStpTransport {
    /// One message for the commit authority (Vote, Decide, Status): its
    /// reply, as [`StpTransport::to_ca`] gives it.
    fn to_ca(&self, body: &[u8])
        -> impl std::future::Future<Output = Result<Vec<u8>, ClientError>>;
}

impl AsyncStpTransport for AsyncNodeClient {
    async fn to_ca(&self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self.post_cbor(CA_PATH, body, None).await?.body)
    }
}

/// The commit authority's route.
const CA_PATH: &str = "/v1/stp/ca";

/// The commit authority and the escrow hosted in this process, on the data
/// directory's store.
#[derive(Debug)]
pub struct LocalStp {
    service: Arc<StpService>,
}

impl LocalStp {
    /// Hosts `service` here.
    pub fn new(service: StpService) -> LocalStp {
        LocalStp {
            service: Arc::new(service),
        }
    }
}

impl StpTransport for LocalStp {
    fn to_ca(&self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        let now = Timestamp::now_from_system_clock();
        self.service
            .ca_step(now, body)
            .map_err(|e| ClientError::from(agora_node::Problem::from(e)))
    }

    fn to_escrow(&self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        let now = Timestamp::now_from_system_clock();
        let tag = agora_node::endpoint::message_tag(body, |_| None)?;
        self.service
            .escrow_step(now, tag, body)
            .map_err(|e| ClientError::from(agora_node::Problem::from(e)))
    }

    fn transaction(&self, tid: &Tid) -> Result<serde_json::Value, ClientError> {
        let now = Timestamp::now_from_system_clock();
        let answer = self
            .service
            .status(now, tid)
            .map_err(|e| ClientError::from(agora_node::Problem::from(e)))?;
        agora_node::stp::status_json(tid, &answer)
            .map_err(|e| ClientError::from(agora_node::Problem::from(e)))
    }
}

/// Why a party's step failed.
#[derive(Debug, thiserror::Error)]
pub enum StpError {
    /// The protocol refused (a message, a state, a rule).
    #[error("{0}")]
    Protocol(#[from] Error),
    /// The commit authority or the escrow could not be reached, or refused.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A file of the party's could not be read or written.
    #[error("{0}")]
    Files(String),
}

/// Where a subtransaction is after a command.
#[derive(Debug)]
pub enum Progress {
    /// Waiting for the other party's vote (or the CA's answer).
    AwaitingStart,
    /// Open: data may flow; whether this party holds the send token.
    Open {
        /// Whether this party may send or end.
        token: bool,
        /// Whether the subtransaction has ended.
        ended: bool,
    },
    /// Decided by this party; the transaction is not decided yet.
    AwaitingOutcome,
    /// Decided: the CA's verified outcome.
    Decided(Box<Decided>),
}

/// What a received message was.
#[derive(Debug)]
pub enum Incoming {
    /// A Begin or Join: the invitation, and whether it was accepted (voted
    /// for) or rejected.
    Invitation {
        /// What it says.
        opening: Box<process::Opening>,
        /// Where the subtransaction is (after an accept).
        progress: Option<Progress>,
    },
    /// Data or End from the other party.
    Message(Received),
}

/// A subtransaction as listed.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The transaction.
    pub tid: Tid,
    /// The other party.
    pub peer: KeyId,
    /// Its step in words.
    pub step: &'static str,
}

/// A party's STP client: its identity, the directory its subtransactions
/// are kept in, and the way to the commit authority.
pub struct StpClient<'a, T: StpTransport> {
    party: &'a Party,
    dir: PathBuf,
    transport: &'a T,
}

impl<T: StpTransport> std::fmt::Debug for StpClient<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StpClient")
            .field("party", &self.party.uid())
            .field("dir", &self.dir)
            .finish()
    }
}

fn files(e: impl std::fmt::Display) -> StpError {
    StpError::Files(e.to_string())
}

/// The tag of a reply of the CA: a COSE_Sign1's payload's, or a bare
/// message's (an Outcome).
fn reply_tag(reply: &[u8]) -> Result<Tag, Error> {
    cose::peek_tag(reply).or_else(|_| Ok(agora_core::wire::peek_tag(reply)?))
}

impl<'a, T: StpTransport> StpClient<'a, T> {
    /// The client of `party`, keeping its subtransactions under `dir`.
    pub fn new(party: &'a Party, dir: &Path, transport: &'a T) -> StpClient<'a, T> {
        StpClient {
            party,
            dir: dir.to_path_buf(),
            transport,
        }
    }

    fn path(&self, tid: &Tid, peer: &KeyId) -> PathBuf {
        self.dir
            .join(format!("{tid}-{}.sub", &peer.to_string()[..16]))
    }

    fn save(&self, s: &SubState) -> Result<(), StpError> {
        let me = self.party.uid();
        let peer = s
            .pair()
            .other(&me)
            .ok_or(Error::ApiMisuse("a subtransaction of another party"))?;
        crate::datadir::write_private_file_atomic(&self.path(&s.tid(), &peer), &s.to_bytes())
            .map_err(files)
    }

    fn load(&self, tid: &Tid, peer: &KeyId) -> Result<SubState, StpError> {
        let path = self.path(tid, peer);
        let bytes =
            crate::datadir::read_at_most(&path, process::MAX_SAVED_LEN as u64).map_err(|_| {
                StpError::Files(format!(
                    "no subtransaction {tid} with {peer} here (agora stp list shows them)"
                ))
            })?;
        Ok(SubState::from_bytes(&bytes, &self.party.ca)?)
    }

    /// Every subtransaction kept here, those waiting for the commit
    /// authority carried on first.
    pub fn list(&self, now: Timestamp) -> Result<Vec<Listed>, StpError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(files(e)),
        };
        let me = self.party.uid();
        for entry in rd {
            let path = entry.map_err(files)?.path();
            if path.extension().is_none_or(|e| e != "sub") {
                continue;
            }
            let bytes = crate::datadir::read_at_most(&path, process::MAX_SAVED_LEN as u64)
                .map_err(files)?;
            let mut s = SubState::from_bytes(&bytes, &self.party.ca)?;
            // What waits for the commit authority is asked for again; if it
            // cannot be reached, the step saved is the step shown.
            if matches!(s, SubState::AwaitingStart(_) | SubState::AwaitingOutcome(_)) {
                if let Ok(next) = self.advance(s.clone(), now) {
                    s = next;
                }
            }
            if let Some(peer) = s.pair().other(&me) {
                out.push(Listed {
                    tid: s.tid(),
                    peer,
                    step: s.step(),
                });
            }
        }
        out.sort_by_key(|l| (l.tid, l.peer));
        Ok(out)
    }

    /// Carries a subtransaction waiting for the CA as far as the CA's
    /// answers take it, and saves it.
    fn advance(&self, s: SubState, now: Timestamp) -> Result<SubState, StpError> {
        let next = match s {
            SubState::AwaitingStart(wait) => {
                let reply = self.transport.to_ca(wait.vote())?;
                let tag = reply_tag(&reply)?;
                if tag == tags::STP_STARTED {
                    SubState::Open(wait.on_started(self.party, now, &reply)?)
                } else if tag == tags::STP_OUTCOME {
                    // Decided before it started: a party rejected, or the
                    // deadline passed.
                    let v = verify_outcome(&reply, &self.party.ca)?;
                    if v.leaf.tid != wait.opening().tid {
                        return Err(
                            Error::PeerMisbehaved("an outcome of another transaction").into()
                        );
                    }
                    SubState::Decided(Decided {
                        outcome: v,
                        outcome_bytes: reply,
                        transcript: Vec::new(),
                        pair: wait.opening().pair,
                        peer_cert: Vec::new(),
                    })
                } else {
                    SubState::AwaitingStart(wait)
                }
            }
            SubState::AwaitingOutcome(wait) => {
                let reply = self.transport.to_ca(wait.decide())?;
                if reply_tag(&reply)? == tags::STP_OUTCOME {
                    SubState::Decided(wait.on_outcome(self.party, &reply)?)
                } else {
                    SubState::AwaitingOutcome(wait)
                }
            }
            other => other,
        };
        self.save(&next)?;
        Ok(next)
    }

    fn progress(s: &SubState) -> Progress {
        match s {
            SubState::Invited(_) | SubState::AwaitingStart(_) => Progress::AwaitingStart,
            SubState::Open(o) => Progress::Open {
                token: o.has_token(),
                ended: o.ended(),
            },
            SubState::AwaitingOutcome(_) => Progress::AwaitingOutcome,
            SubState::Decided(d) => Progress::Decided(Box::new(d.clone())),
        }
    }

    /// The subtransaction `tid` with `peer`, carried on with the CA first.
    pub fn state(&self, tid: &Tid, peer: &KeyId, now: Timestamp) -> Result<SubState, StpError> {
        let s = self.load(tid, peer)?;
        self.advance(s, now)
    }

    /// Begins a new transaction with `peer`, decided by `deadline`: the
    /// Begin for the peer; this party's vote is with the CA.
    pub fn begin(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        peer: KeyId,
        deadline: Timestamp,
    ) -> Result<(Tid, Vec<u8>, Progress), StpError> {
        let tid = Tid::random(rng);
        let (wait, opened) = process::begin(self.party, rng, now, tid, peer, deadline)?;
        self.save(&SubState::AwaitingStart(wait.clone()))?;
        let s = self.advance(SubState::AwaitingStart(wait), now)?;
        Ok((tid, opened.opening, Self::progress(&s)))
    }

    /// Brings `peer` into transaction `tid` through this party's open
    /// subtransaction with `via`: the Join for the new peer.
    pub fn join(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        tid: &Tid,
        via: &KeyId,
        peer: KeyId,
    ) -> Result<(Vec<u8>, Progress), StpError> {
        let SubState::Open(open) = self.state(tid, via, now)? else {
            return Err(Error::Refused(
                "a party brings others in only through its own open subtransaction".into(),
            )
            .into());
        };
        let (wait, opened) = process::join(self.party, rng, now, &open, peer)?;
        self.save(&SubState::AwaitingStart(wait.clone()))?;
        let s = self.advance(SubState::AwaitingStart(wait), now)?;
        Ok((opened.opening, Self::progress(&s)))
    }

    /// A message from another party: a Begin or Join (accepted, or
    /// rejected with `accept` false), or Data or End on an open
    /// subtransaction.
    pub fn receive(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        bytes: &[u8],
        accept: bool,
    ) -> Result<Incoming, StpError> {
        let tag = cose::peek_tag(bytes)?;
        if tag == tags::STP_BEGIN || tag == tags::STP_JOIN {
            let inv = Invitation::receive(self.party, now, bytes)?;
            let opening = inv.opening().clone();
            if !accept {
                let vote = inv.reject(self.party, rng);
                self.transport.to_ca(&vote)?;
                return Ok(Incoming::Invitation {
                    opening: Box::new(opening),
                    progress: None,
                });
            }
            let (wait, _) = inv.accept(self.party, rng);
            self.save(&SubState::AwaitingStart(wait.clone()))?;
            let s = self.advance(SubState::AwaitingStart(wait), now)?;
            return Ok(Incoming::Invitation {
                opening: Box::new(opening),
                progress: Some(Self::progress(&s)),
            });
        }
        let (tid, pair) = if tag == tags::STP_DATA {
            let d: Data = cose::peek_unverified(bytes)?;
            (d.tid, d.pair)
        } else if tag == tags::STP_END {
            let e: End = cose::peek_unverified(bytes)?;
            (e.tid, e.pair)
        } else {
            return Err(Error::PeerMisbehaved("expected a Begin, Join, Data or End").into());
        };
        let peer = self.peer_of(&pair)?;
        let SubState::Open(mut open) = self.state(&tid, &peer, now)? else {
            return Err(Error::Refused("the subtransaction is not open".into()).into());
        };
        let got = open.receive(bytes)?;
        self.save(&SubState::Open(open))?;
        Ok(Incoming::Message(got))
    }

    fn peer_of(&self, pair: &Pair) -> Result<KeyId, StpError> {
        pair.other(&self.party.uid()).ok_or_else(|| {
            Error::NotAuthorised("a message between two other parties".into()).into()
        })
    }

    fn open(
        &self,
        tid: &Tid,
        peer: &KeyId,
        now: Timestamp,
    ) -> Result<agora_stp::process::Open, StpError> {
        match self.state(tid, peer, now)? {
            SubState::Open(o) => Ok(o),
            SubState::AwaitingStart(_) | SubState::Invited(_) => Err(Error::Refused(
                "the subtransaction has not started: the other party has not accepted yet".into(),
            )
            .into()),
            _ => Err(Error::Refused("the subtransaction is decided".into()).into()),
        }
    }

    /// Data for `peer`: `payload` sealed to it; `pass_token` hands it the
    /// send token.
    pub fn send(
        &self,
        now: Timestamp,
        tid: &Tid,
        peer: &KeyId,
        payload: &[u8],
        pass_token: bool,
    ) -> Result<Vec<u8>, StpError> {
        let mut open = self.open(tid, peer, now)?;
        let m = open.send(self.party, payload, pass_token)?;
        self.save(&SubState::Open(open))?;
        Ok(m)
    }

    /// End: this party, holding the token, closes the subtransaction.
    pub fn end(&self, now: Timestamp, tid: &Tid, peer: &KeyId) -> Result<Vec<u8>, StpError> {
        let mut open = self.open(tid, peer, now)?;
        let m = open.end(self.party)?;
        self.save(&SubState::Open(open))?;
        Ok(m)
    }

    /// Commits (with this party's final context, after End) or aborts the
    /// subtransaction with `peer`; the CA's answer says whether the
    /// transaction is decided.
    pub fn decide(
        &self,
        now: Timestamp,
        tid: &Tid,
        peer: &KeyId,
        commit: bool,
    ) -> Result<Progress, StpError> {
        let s = match self.state(tid, peer, now)? {
            SubState::Open(open) => {
                let (wait, _) = open.decide(self.party, commit)?;
                SubState::AwaitingOutcome(wait)
            }
            SubState::AwaitingStart(wait) if !commit => {
                self.transport.to_ca(&wait.abort(self.party))?;
                SubState::AwaitingStart(wait)
            }
            SubState::AwaitingStart(_) | SubState::Invited(_) => {
                return Err(Error::Refused(
                    "the subtransaction has not started: only an abort is possible".into(),
                )
                .into())
            }
            decided => return Ok(Self::progress(&decided)),
        };
        self.save(&s)?;
        let s = self.advance(s, now)?;
        Ok(Self::progress(&s))
    }

    /// A proof bundle of the committed subtransaction with `peer`.
    pub fn prove(&self, now: Timestamp, tid: &Tid, peer: &KeyId) -> Result<Vec<u8>, StpError> {
        let SubState::Decided(d) = self.state(tid, peer, now)? else {
            return Err(Error::Refused("the transaction is not decided yet".into()).into());
        };
        let invitee = d.invitee_cert(&self.party.uid(), &self.party.cert).to_vec();
        Ok(agora_stp::bundle::prove(&d, &invitee)?)
    }

    /// The commit authority's key this client trusts.
    pub fn ca(&self) -> &VerifyingKey {
        &self.party.ca
    }
}
