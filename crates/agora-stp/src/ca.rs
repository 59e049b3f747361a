//! The commit authority (paper section 3): it takes no part in the
//! exchange; it hears each party's vote at the start of a subtransaction
//! and its decision at the end, applies the [`crate::rules`], and answers.
//!
//! A transparent CA (ARCHITECTURE section 6): every vote and decision is
//! in the [`CommitLog`] before the CA answers (one [`LogUnit`] per step);
//! a decided transaction is a leaf of a Merkle log (RFC 9162 hashing); the
//! CA signs one tree head per batch ([`CommitAuthority::seal`]), and each
//! Outcome carries its leaf's inclusion proof against such a head. Every
//! answer is rebuilt from the log alone (Ed25519 signatures are
//! deterministic), so a CA restarted after a crash at any point answers as
//! it would have.
//!
//! The CA sees identities, votes and contexts only: the pair's data key
//! comes from the two key shares it relays, and it holds neither secret.
//!
//! Besides its tree, the CA keeps in memory only what it has verified: the
//! digests of signed messages whose signatures checked (both votes of a
//! subtransaction carry the same signed opening; a party asks again with
//! the same vote or decision), and the voters' keys by UID (so that a
//! driver can check a Decide before reading the log,
//! [`CommitAuthority::authenticates`]). Neither can be wrong, only missing:
//! a CA that lacks them (restarted, another node) verifies again and
//! answers the same; certificates are judged again on every message. The
//! steps are async ([`CommitAuthority::handle_async`]): their one wait is
//! their log unit's commit, which an async driver awaits and the blocking
//! methods wait for.

use crate::ids::{Pair, Tid};
use crate::log::{CommitLog, LogUnit, LogWritten, StoredTx, SubEvidence, TxRecord, MAX_LEAF_PAGE};
use crate::merkle::MerkleTree;
use crate::msg::{
    Consistency, Decide, Outcome, OutcomeLeaf, Pending, Started, Status, TreeHead, Vote,
    MAX_SUBTRANSACTIONS,
};
use crate::process::{open_opening, open_verified_opening, Opening, MAX_LIFETIME_SECS};
use crate::rules::{self, Decision, Effect, RuleError, Tx, TxOutcome};
use agora_core::crypto::{sha256, SigningKey, VerifyingKey};
use agora_core::wire::{cose, decode, tags};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::IdentityTrust;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

/// How often a step retries after a conflicting write by another step on
/// the same transaction.
const MAX_CONFLICT_RETRIES: usize = 16;

/// Most signed messages a [`CommitAuthority`] remembers as verified (it
/// starts afresh when full): some 4 MiB of digests, more than the messages
/// of the transactions in flight on a busy node.
pub const MAX_VERIFIED: usize = 65_536;

/// The SHA-256 digests of signed messages (each a whole `COSE_Sign1`, as
/// received) whose signature this CA has verified: the signature of such
/// bytes is valid for the key whose id their `kid` names, whatever the time
/// (an Ed25519 signature does not expire; the certificates that vouch for
/// the keys are judged again every time). Both votes of a subtransaction
/// carry the same signed opening, and a party asks again with the same
/// vote or decision when it waits for Started or the Outcome: each is
/// checked once. A digest missing (never seen, forgotten, another process)
/// only costs the verification again.
#[derive(Debug, Default)]
struct Verified(Mutex<HashSet<[u8; 32]>>);

impl Verified {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn knows(&self, digest: &[u8; 32]) -> bool {
        self.lock().contains(digest)
    }

    fn learn(&self, digest: [u8; 32]) {
        let mut set = self.lock();
        if set.len() >= MAX_VERIFIED {
            set.clear();
        }
        set.insert(digest);
    }
}

/// The keys of the voters whose votes this CA has verified, by UID (a UID
/// is the SHA-256 of its key: an entry is never wrong, only missing), so
/// that a voter's Decide can be checked before the log is read
/// ([`CommitAuthority::authenticates`]). At most [`MAX_VERIFIED`] (it
/// starts afresh when full).
#[derive(Debug, Default)]
struct VoterKeys(Mutex<HashMap<KeyId, VerifyingKey>>);

impl VoterKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, VerifyingKey>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, uid: &KeyId) -> Option<VerifyingKey> {
        self.lock().get(uid).copied()
    }

    fn learn(&self, uid: KeyId, key: VerifyingKey) {
        let mut map = self.lock();
        if map.len() >= MAX_VERIFIED && !map.contains_key(&uid) {
            map.clear();
        }
        map.insert(uid, key);
    }
}

/// Runs `fut` to completion on this thread, parking it between polls: the
/// blocking face of the CA's steps, whose only wait is their log unit's
/// commit (as [`agora_core::ports::Commit::wait`] waits for one).
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake before this park leaves the token set: park returns at
        // once, and the future is polled again.
        std::thread::park();
    }
}

/// The CA's answer to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The subtransaction has started: the signed Started for the asker.
    Started(Vec<u8>),
    /// Not decided yet (and, for a vote, the other party has not accepted
    /// yet): a signed Pending.
    Pending(Vec<u8>),
    /// Decided: the Outcome with its inclusion proof.
    Outcome(Vec<u8>),
    /// Decided and logged as leaf `index`, which no signed tree head covers
    /// yet: ask again after the next [`CommitAuthority::seal`].
    Sealing {
        /// The leaf's index.
        index: u64,
    },
}

/// The commit authority role.
#[derive(Debug)]
pub struct CommitAuthority {
    key: SigningKey,
    /// The key's id, computed once (a SHA-256 of the key each time it is
    /// asked for otherwise).
    uid: KeyId,
    trust: RwLock<Arc<IdentityTrust>>,
    tree: Mutex<MerkleTree>,
    verified: Verified,
    voters: VoterKeys,
}

/// A transaction's record after a step, and its outcome leaf's index if it
/// is decided (as stored, or as the step's write placed it).
struct Stepped {
    rec: TxRecord,
    leaf_index: Option<u64>,
}

fn refused(e: RuleError) -> Error {
    match e {
        RuleError::VotedDifferently | RuleError::DecidedDifferently => {
            Error::PeerMisbehaved(e.as_str())
        }
        RuleError::NotAParty => Error::NotAuthorised(e.as_str().into()),
        _ => Error::Refused(e.as_str().into()),
    }
}

impl CommitAuthority {
    /// A CA signing with `key` (its identity has role `commitAuthority`),
    /// judging the parties' certificates under `trust`.
    pub fn new(key: SigningKey, trust: IdentityTrust) -> CommitAuthority {
        CommitAuthority {
            uid: key.key_id(),
            key,
            trust: RwLock::new(Arc::new(trust)),
            tree: Mutex::new(MerkleTree::new()),
            verified: Verified::default(),
            voters: VoterKeys::default(),
        }
    }

    /// Judges certificates under `trust` from now on (new CRLs, new CAs);
    /// steps in flight keep the trust they started with.
    pub fn set_trust(&self, trust: IdentityTrust) {
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(trust);
    }

    fn trust(&self) -> Arc<IdentityTrust> {
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// [`open_opening`], its signature checked once per opening: both
    /// votes of a subtransaction carry the same signed Begin or Join.
    fn open(&self, bytes: &[u8], trust: &IdentityTrust, now: Timestamp) -> Result<Opening> {
        let digest = sha256(bytes);
        if self.verified.knows(&digest) {
            return open_verified_opening(bytes, trust, now);
        }
        let o = open_opening(bytes, trust, now)?;
        self.verified.learn(digest);
        Ok(o)
    }

    /// Its UID.
    pub fn uid(&self) -> KeyId {
        self.uid
    }

    /// Its verification key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A message for the CA: a signed Vote or Decide, or a Status.
    pub fn handle(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
        block_on(self.handle_async(now, bytes, log))
    }

    /// [`Self::handle`] for an async driver: the same step, its log unit's
    /// commit awaited rather than waited for (the log's reads, which a
    /// step makes before and after it, are the log's own calls).
    pub async fn handle_async(
        &self,
        now: Timestamp,
        bytes: &[u8],
        log: &dyn CommitLog,
    ) -> Result<Answer> {
        let tag = match cose::peek_tag(bytes) {
            Ok(t) => t,
            Err(_) => agora_core::wire::peek_tag(bytes)?,
        };
        if tag == tags::STP_VOTE {
            self.vote_step(now, bytes, log).await
        } else if tag == tags::STP_DECIDE {
            self.decide_step(now, bytes, log).await
        } else if tag == tags::STP_STATUS {
            let s: Status = decode(bytes)?;
            self.status_step(now, &s.tid, log).await
        } else {
            Err(Error::PeerMisbehaved(
                "the commit authority takes Vote, Decide and Status",
            ))
        }
    }

    /// Whether `bytes` is a Vote or Decide whose signature checks before
    /// any record is read: a Vote by the key its certificate (valid under
    /// the CA's trust at `now`) certifies, or a Decide by a voter whose key
    /// the CA has seen in a verified vote. A driver may then run the step
    /// where unauthenticated requests must not reach storage; `false` says
    /// nothing against the message (the step itself judges it). The
    /// signature checked here is not checked again by the step.
    pub fn authenticates(&self, now: Timestamp, bytes: &[u8]) -> bool {
        let Ok(tag) = cose::peek_tag(bytes) else {
            return false;
        };
        let digest = sha256(bytes);
        if self.verified.knows(&digest) {
            return true;
        }
        let ok = if tag == tags::STP_VOTE {
            let trust = self.trust();
            cose::verify_self_certified::<Vote>(bytes, |v| {
                Ok(*trust.identity_of_any_role(&v.voter_cert, now)?.key())
            })
            .is_ok()
        } else if tag == tags::STP_DECIDE {
            cose::peek_kid(bytes)
                .ok()
                .and_then(|kid| self.voters.get(&kid))
                .is_some_and(|key| cose::verify::<Decide>(bytes, &key).is_ok())
        } else {
            false
        };
        if ok {
            self.verified.learn(digest);
        }
        ok
    }

    /// A Vote: checks the voter's certificate and signature, the opening's
    /// (initiator's certificate and signature, this CA named, the deadline
    /// within bounds), logs the vote, and answers Started, Pending or the
    /// outcome.
    pub fn on_vote(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
        block_on(self.vote_step(now, bytes, log))
    }

    async fn vote_step(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
        let trust = self.trust();
        let digest = sha256(bytes);
        let (v, voter, key) = if self.verified.knows(&digest) {
            // Signed as checked before: the voter's certificate is judged
            // again, at `now`, and must still certify the signing key.
            let v: Vote = cose::peek_unverified(bytes)?;
            let key = *trust.identity_of_any_role(&v.voter_cert, now)?.key();
            let voter = cose::peek_kid(bytes)?;
            if key.key_id() != voter {
                return Err(Error::NotAuthorised(
                    "signed by a key other than the one the message certifies".into(),
                ));
            }
            (v, voter, key)
        } else {
            let mut voter_key = None;
            let (v, voter) = cose::verify_self_certified::<Vote>(bytes, |v| {
                let key = *trust.identity_of_any_role(&v.voter_cert, now)?.key();
                voter_key = Some(key);
                Ok(key)
            })?;
            self.verified.learn(digest);
            let key = voter_key.ok_or(Error::ApiMisuse("verified without a key"))?;
            (v, voter, key)
        };
        self.voters.learn(voter, key);
        let o = self.open(&v.opening, &trust, now)?;
        if o.tid != v.tid || o.pair != v.pair {
            return Err(Error::PeerMisbehaved("a vote on another subtransaction"));
        }
        if !o.pair.contains(&voter) {
            return Err(Error::NotAuthorised(
                "the voter is not one of the subtransaction's pair".into(),
            ));
        }
        if o.ca != self.uid() {
            return Err(Error::NotAuthorised(
                "the transaction names another commit authority".into(),
            ));
        }
        if o.deadline.secs() > now.secs().saturating_add(MAX_LIFETIME_SECS) {
            return Err(Error::Refused("a deadline too far ahead".into()));
        }
        let opening = rules::Opening {
            pair: o.pair.as_tuple(),
            initiator: o.initiator,
            via: o.via.map(|p| p.as_tuple()),
            deadline: o.deadline.secs(),
        };
        let vote = if v.accept {
            rules::Vote::Accept
        } else {
            rules::Vote::Reject
        };
        let step = self.step(now, &o.tid, log, None, |stored| {
            let mut rec = match stored {
                Some(r) => r,
                None => {
                    if o.deadline <= now {
                        return Err(Error::Refused(
                            "the transaction's deadline has passed".into(),
                        ));
                    }
                    TxRecord {
                        tx: Tx::begin(&opening).map_err(refused)?,
                        evidence: vec![SubEvidence {
                            opening: v.opening.clone(),
                            votes: [None, None],
                            keys: [None, None],
                            decides: [None, None],
                        }],
                    }
                }
            };
            if rec.tx.sub(&opening.pair).is_none() && rec.tx.subs.len() >= MAX_SUBTRANSACTIONS {
                return Err(Error::Refused(format!(
                    "a transaction has at most {MAX_SUBTRANSACTIONS} subtransactions"
                )));
            }
            let effect = rec
                .tx
                .vote(now.secs(), &opening, &voter, vote)
                .map_err(refused)?;
            if rec.evidence.len() < rec.tx.subs.len() {
                rec.evidence.push(SubEvidence {
                    opening: v.opening.clone(),
                    votes: [None, None],
                    keys: [None, None],
                    decides: [None, None],
                });
            }
            if effect.changed() && !matches!(effect, Effect::AlreadyDecided(_)) {
                if let Some(i) = rec.tx.subs.iter().position(|s| s.pair == opening.pair) {
                    let k = usize::from(voter != opening.pair.0);
                    if rec.evidence[i].votes[k].is_none() {
                        rec.evidence[i].votes[k] = Some(bytes.to_vec());
                        rec.evidence[i].keys[k] = Some(key);
                    }
                }
            }
            Ok((rec, effect))
        });
        let done = step.await?;
        self.answer(now, &o.tid, &done, log, Some((&o.pair, &voter)))
    }

    /// A Decide: signed by a party whose vote the CA holds; logs it and
    /// answers the outcome once decided, Pending until then.
    pub fn on_decide(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
        block_on(self.decide_step(now, bytes, log))
    }

    async fn decide_step(
        &self,
        now: Timestamp,
        bytes: &[u8],
        log: &dyn CommitLog,
    ) -> Result<Answer> {
        let kid = cose::peek_kid(bytes)?;
        // The record names the parties' keys; the message is read only once
        // its signature is checked against the key the record holds.
        let target = {
            let p = cose::peek_tag(bytes)?;
            if p != tags::STP_DECIDE {
                return Err(Error::PeerMisbehaved("expected a Decide"));
            }
            // The TID is needed to find the record: read it from the
            // unverified payload, then verify before anything is applied.
            unverified_decide(bytes)?
        };
        let stored = log
            .get(&target.tid)?
            .ok_or_else(|| Error::Refused("no such transaction".into()))?;
        let rec = TxRecord::decode(&stored.record)?;
        let version = stored.version;
        let i = rec
            .tx
            .subs
            .iter()
            .position(|s| s.pair == target.pair.as_tuple())
            .ok_or_else(|| refused(RuleError::UnknownSubtransaction))?;
        let k = if kid == target.pair.lo() {
            0
        } else if kid == target.pair.hi() {
            1
        } else {
            return Err(refused(RuleError::NotAParty));
        };
        let key = rec.evidence[i].keys[k]
            .ok_or_else(|| Error::Refused("a decision from a party that has not voted".into()))?;
        let digest = sha256(bytes);
        let d: Decide = if self.verified.knows(&digest) {
            // Signed, as checked before, by the key of this `kid`.
            if key.key_id() != kid {
                return Err(Error::NotAuthorised(
                    "signed by a key other than the expected one".into(),
                ));
            }
            target.decide
        } else {
            let d = cose::verify(bytes, &key)?;
            self.verified.learn(digest);
            d
        };
        let decision = match d.commit {
            Some(c) => Decision::Commit(c),
            None => Decision::Abort,
        };
        // The record read above is the step's first read, if the Decide is
        // about the transaction it was read for (its TID was read before the
        // signature was checked; it is the same unless the message lied).
        let first = (d.tid == target.tid).then_some((
            Some(StoredTx {
                version,
                record: stored.record,
                leaf_index: stored.leaf_index,
            }),
            rec,
        ));
        let step = self.step(now, &d.tid, log, first, |stored| {
            let mut rec = stored.ok_or_else(|| Error::Refused("no such transaction".into()))?;
            let effect = rec
                .tx
                .decide(now.secs(), &d.pair.as_tuple(), &kid, decision.clone())
                .map_err(refused)?;
            if matches!(effect, Effect::Recorded | Effect::Decided(_))
                && rec.evidence[i].decides[k].is_none()
                && rec.tx.subs[i].decisions[k].is_some()
            {
                rec.evidence[i].decides[k] = Some(bytes.to_vec());
            }
            Ok((rec, effect))
        });
        let done = step.await?;
        self.answer(now, &d.tid, &done, log, None)
    }

    /// Status: the outcome if decided (aborting first what is undecided past
    /// its deadline), a signed Pending otherwise.
    pub fn status(&self, now: Timestamp, tid: &Tid, log: &dyn CommitLog) -> Result<Answer> {
        block_on(self.status_step(now, tid, log))
    }

    async fn status_step(&self, now: Timestamp, tid: &Tid, log: &dyn CommitLog) -> Result<Answer> {
        let Some(stored) = log.get(tid)? else {
            return Ok(Answer::Pending(self.pending(tid, false, Timestamp(0), now)));
        };
        let rec = TxRecord::decode(&stored.record)?;
        if rec.tx.outcome.is_none() && now.secs() >= rec.tx.deadline {
            return self.expire_step(now, tid, log).await;
        }
        let done = Stepped {
            rec,
            leaf_index: stored.leaf_index,
        };
        self.answer(now, tid, &done, log, None)
    }

    /// Aborts `tid` if it is undecided at or past its deadline (rule 5),
    /// and answers its status.
    pub fn expire(&self, now: Timestamp, tid: &Tid, log: &dyn CommitLog) -> Result<Answer> {
        block_on(self.expire_step(now, tid, log))
    }

    async fn expire_step(&self, now: Timestamp, tid: &Tid, log: &dyn CommitLog) -> Result<Answer> {
        let step = self.step(now, tid, log, None, |stored| {
            let mut rec = stored.ok_or_else(|| Error::Refused("no such transaction".into()))?;
            let effect = match rec.tx.expire(now.secs()) {
                Some(o) => Effect::Decided(o),
                None => Effect::Unchanged,
            };
            Ok((rec, effect))
        });
        let done = step.await?;
        self.answer(now, tid, &done, log, None)
    }

    /// Aborts every transaction undecided past its deadline (at most
    /// `limit`); returns how many it aborted.
    pub fn expire_due(&self, now: Timestamp, log: &dyn CommitLog, limit: usize) -> Result<usize> {
        let due = log.undecided_past(now, limit)?;
        for tid in &due {
            self.expire(now, tid, log)?;
        }
        Ok(due.len())
    }

    /// One step on the record of `tid`: `apply` computes the new record and
    /// the rules' effect from the stored one; a changed record is written
    /// (with the outcome leaf if the step decided the transaction) at the
    /// version it was read at, and recomputed if another step wrote first.
    /// `first` is the stored record and its decoding, if the caller has
    /// just read them (the first attempt uses them instead of reading
    /// again; a conflict reads afresh).
    async fn step(
        &self,
        now: Timestamp,
        tid: &Tid,
        log: &dyn CommitLog,
        mut first: Option<(Option<StoredTx>, TxRecord)>,
        apply: impl Fn(Option<TxRecord>) -> Result<(TxRecord, Effect)>,
    ) -> Result<Stepped> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (stored, current) = match first.take() {
                Some((stored, decoded)) => (stored, Some(decoded)),
                None => {
                    let stored = log.get(tid)?;
                    let current = stored
                        .as_ref()
                        .map(|s| TxRecord::decode(&s.record))
                        .transpose()?;
                    (stored, current)
                }
            };
            let version = stored.as_ref().map_or(0, |s| s.version);
            let stored_leaf = stored.as_ref().and_then(|s| s.leaf_index);
            let (rec, effect) = apply(current)?;
            if !effect.changed() {
                return Ok(Stepped {
                    rec,
                    leaf_index: stored_leaf,
                });
            }
            let leaf = match effect {
                Effect::Decided(o) => Some(self.leaf(now, tid, &rec, o)),
                _ => None,
            };
            let unit = LogUnit {
                tid: *tid,
                version,
                record: rec.encode(),
                deadline: Timestamp(rec.tx.deadline),
                leaf,
            };
            match log.commit(unit).await? {
                LogWritten::Written { leaf_index } => {
                    return Ok(Stepped {
                        rec,
                        leaf_index: leaf_index.or(stored_leaf),
                    })
                }
                LogWritten::Conflict => continue,
            }
        }
        Err(Error::Overloaded)
    }

    fn leaf(&self, now: Timestamp, tid: &Tid, rec: &TxRecord, o: TxOutcome) -> Vec<u8> {
        let subs = rec
            .tx
            .subs
            .iter()
            .filter_map(|s| {
                let pair = Pair::from_tuple(&s.pair)?;
                let ctx = match &s.decisions {
                    [Some(Decision::Commit(a)), Some(Decision::Commit(b))] if a == b => Some(*a),
                    _ => None,
                };
                Some((pair, ctx))
            })
            .collect();
        agora_core::wire::encode(&OutcomeLeaf {
            ca: self.uid(),
            tid: *tid,
            outcome: match o {
                TxOutcome::Committed => 0,
                TxOutcome::Aborted(r) => r.code(),
            },
            subs,
            decided_at: rec.tx.outcome.map_or(now, |(_, at)| Timestamp(at)),
        })
    }

    fn pending(&self, tid: &Tid, known: bool, deadline: Timestamp, now: Timestamp) -> Vec<u8> {
        cose::sign(
            &self.key,
            &Pending {
                tid: *tid,
                known,
                deadline,
                as_of: now,
            },
        )
    }

    /// The answer the record gives: the outcome if decided; for a voter, the
    /// Started of its subtransaction once both accepted; Pending otherwise.
    fn answer(
        &self,
        now: Timestamp,
        tid: &Tid,
        done: &Stepped,
        log: &dyn CommitLog,
        voter: Option<(&Pair, &KeyId)>,
    ) -> Result<Answer> {
        let rec = &done.rec;
        if rec.tx.outcome.is_some() {
            let index = match done.leaf_index {
                Some(i) => i,
                None => log
                    .get(tid)?
                    .and_then(|s| s.leaf_index)
                    .ok_or_else(|| Error::Storage("a decided transaction without a leaf".into()))?,
            };
            return match self.outcome_at(index, log)? {
                Some(o) => Ok(Answer::Outcome(o)),
                None => Ok(Answer::Sealing { index }),
            };
        }
        if let Some((pair, voter)) = voter {
            if let Some(i) = rec.tx.subs.iter().position(|s| s.pair == pair.as_tuple()) {
                let s = &rec.tx.subs[i];
                if s.started() {
                    let k = usize::from(*voter == pair.hi());
                    let peer_vote = rec.evidence[i].votes[1 - k].clone().ok_or_else(|| {
                        Error::Storage("a started subtransaction without its votes".into())
                    })?;
                    return Ok(Answer::Started(cose::sign(
                        &self.key,
                        &Started {
                            tid: *tid,
                            pair: *pair,
                            to: *voter,
                            peer_vote,
                            token: s.initiator,
                            deadline: Timestamp(rec.tx.deadline),
                        },
                    )));
                }
            }
        }
        Ok(Answer::Pending(self.pending(
            tid,
            true,
            Timestamp(rec.tx.deadline),
            now,
        )))
    }

    /// Brings the in-memory tree up to the log's leaves.
    fn sync(&self, log: &dyn CommitLog) -> Result<std::sync::MutexGuard<'_, MerkleTree>> {
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        let count = log.leaf_count()?;
        // The tree is a cache of the log's leaves: if its last leaf is not
        // the log's (another log, or a log restored from elsewhere), it is
        // rebuilt rather than trusted.
        if let Some(last) = tree.len().checked_sub(1) {
            let same = log
                .leaves(last, 1)?
                .first()
                .is_some_and(|l| Some(crate::merkle::leaf_hash(l)) == tree.leaf_hash_at(last));
            if !same || count < tree.len() {
                *tree = MerkleTree::new();
            }
        }
        while tree.len() < count {
            let page = log.leaves(tree.len(), MAX_LEAF_PAGE)?;
            if page.is_empty() {
                return Err(Error::Storage("the log lost leaves it counted".into()));
            }
            for leaf in page {
                tree.push(&leaf);
            }
        }
        Ok(tree)
    }

    /// Signs a tree head over every leaf logged so far, if there are leaves
    /// no head covers yet: one signature for the whole batch. Returns the
    /// latest signed head.
    pub fn seal(&self, now: Timestamp, log: &dyn CommitLog) -> Result<Option<Vec<u8>>> {
        let tree = self.sync(log)?;
        let latest = log.latest_head()?;
        let covered = latest.as_ref().map_or(0, |(s, _)| *s);
        if tree.len() == covered {
            return Ok(latest.map(|(_, h)| h));
        }
        let head = cose::sign(
            &self.key,
            &TreeHead {
                ca: self.uid(),
                size: tree.len(),
                root: tree.root(),
                timestamp: now,
            },
        );
        log.record_head(tree.len(), &head)?;
        Ok(Some(head))
    }

    /// The Outcome of `tid` with its inclusion proof against the latest
    /// signed head, if it is decided and a head covers it.
    pub fn outcome(&self, tid: &Tid, log: &dyn CommitLog) -> Result<Option<Vec<u8>>> {
        let Some(index) = log.get(tid)?.and_then(|s| s.leaf_index) else {
            return Ok(None);
        };
        self.outcome_at(index, log)
    }

    /// The Outcome of the transaction of leaf `index`, with its inclusion
    /// proof against the latest signed head, if a head covers it (an
    /// [`Answer::Sealing`] names the index: after [`Self::seal`], this is
    /// the answer the same message would now get).
    pub fn outcome_at(&self, index: u64, log: &dyn CommitLog) -> Result<Option<Vec<u8>>> {
        let Some((size, head)) = log.latest_head()? else {
            return Ok(None);
        };
        if index >= size {
            return Ok(None);
        }
        let tree = self.sync(log)?;
        let leaf = log
            .leaves(index, 1)?
            .pop()
            .ok_or_else(|| Error::Storage("a leaf index past the log".into()))?;
        let path = tree.inclusion_proof(index, size)?;
        Ok(Some(agora_core::wire::encode(&Outcome {
            leaf,
            index,
            path,
            head,
        })))
    }

    /// The consistency proof between the trees of `old_size` and
    /// `new_size` leaves (both at most the latest signed head's).
    pub fn consistency(
        &self,
        old_size: u64,
        new_size: u64,
        log: &dyn CommitLog,
    ) -> Result<Consistency> {
        let latest = log.latest_head()?.map_or(0, |(s, _)| s);
        if old_size == 0 || old_size > new_size || new_size > latest {
            return Err(Error::Refused(format!(
                "a consistency proof needs 0 < old <= new <= {latest}"
            )));
        }
        let tree = self.sync(log)?;
        Ok(Consistency {
            old_size,
            new_size,
            path: tree.consistency_proof(old_size, new_size)?,
        })
    }
}

/// The TID and pair of a Decide, read before its signature is checked (to
/// find the key to check it with). Nothing else of it is used until the
/// signature verifies (or is known to have verified: then `decide` is the
/// message).
struct DecideTarget {
    tid: Tid,
    pair: Pair,
    decide: Decide,
}

fn unverified_decide(bytes: &[u8]) -> Result<DecideTarget> {
    let d: Decide = cose::peek_unverified(bytes)?;
    Ok(DecideTarget {
        tid: d.tid,
        pair: d.pair,
        decide: d,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
    use super::*;
    use crate::process::{self, Invitation};
    use crate::testkit::{trust_of, World, DAY};
    use agora_core::crypto::ops::{self, Op};
    use agora_pki::{Revocation, RevocationReason};

    fn verifications() -> u64 {
        ops::this_thread().calls(Op::Ed25519Verify)
    }

    fn revoked(w: &World, party: usize) -> IdentityTrust {
        let serial = agora_pki::parse_certificate(&w.parties[party].cert)
            .unwrap()
            .serial;
        trust_of(
            &w.agency,
            vec![Revocation {
                serial,
                revoked_at: w.now.minus_secs(10),
                reason: RevocationReason::KeyCompromise,
            }],
            w.now,
        )
    }

    #[test]
    fn an_opening_checked_before_opens_as_open_opening_does() {
        let mut w = World::new(3, 40);
        let (a, _b) = w.begin(0, 1).unwrap();
        let (now, p1, p2) = (w.now, w.uid(1), w.uid(2));
        let (_, begin) = process::begin(
            &w.parties[0],
            &mut w.rng,
            now,
            a.tid(),
            p1,
            now.plus_secs(DAY),
        )
        .unwrap();
        let (_, join) = process::join(&w.parties[0], &mut w.rng, now, &a, p2).unwrap();
        let trust = trust_of(&w.agency, vec![], w.now);
        let later = w.now.plus_secs(400 * DAY);
        for opening in [&begin.opening, &join.opening] {
            for (trust, now) in [(&trust, w.now), (&revoked(&w, 0), w.now), (&trust, later)] {
                assert_eq!(
                    open_verified_opening(opening, trust, now),
                    open_opening(opening, trust, now)
                );
            }
        }
        assert!(open_verified_opening(&begin.opening, &revoked(&w, 0), w.now).is_err());
        assert!(open_verified_opening(&join.opening, &trust, w.now)
            .unwrap()
            .via
            .is_some());
        // A message that is no opening is refused as open_opening does.
        assert_eq!(
            open_verified_opening(&begin.vote, &trust, w.now),
            open_opening(&begin.vote, &trust, w.now)
        );
    }

    #[test]
    fn each_signature_is_verified_once_and_each_certificate_judged_every_time() {
        let mut w = World::new(2, 41);
        let tid = Tid::random(&mut w.rng);
        let (now, p1) = (w.now, w.uid(1));
        let (wait, opened) =
            process::begin(&w.parties[0], &mut w.rng, now, tid, p1, now.plus_secs(DAY)).unwrap();
        let v0 = verifications();
        let first = w.to_ca(&opened.vote).unwrap();
        // The vote's signature and the opening's (the voter's certificate
        // is the initiator's: validated once, then from the trust's cache
        // or not at all in this World, whose trust has none).
        let checked_first = verifications() - v0;
        assert!(checked_first >= 2, "{checked_first}");
        let inv = Invitation::receive(&w.parties[1], w.now, &opened.opening).unwrap();
        let (_, accept) = inv.accept(&w.parties[1], &mut w.rng);
        let v1 = verifications();
        assert!(matches!(w.to_ca(&accept).unwrap(), Answer::Started(_)));
        // The second vote's signature; its opening was checked already.
        assert_eq!(verifications() - v1, checked_first - 1);
        // The first vote again: nothing verified again, the same answer as
        // a CA that never saw it (restarted: an empty cache).
        let v2 = verifications();
        let again = w.to_ca(wait.vote()).unwrap();
        assert_eq!(verifications() - v2, checked_first - 2);
        w.restart_ca();
        assert_eq!(w.to_ca(wait.vote()).unwrap(), again);
        assert!(matches!(again, Answer::Started(_)));
        assert!(matches!(first, Answer::Pending(_)));
        // Once the voter's certificate is revoked, the vote checked before
        // is refused all the same.
        w.ca.set_trust(revoked(&w, 0));
        assert!(matches!(w.to_ca(wait.vote()), Err(Error::Refused(_))));
        // And a tampered copy of a message checked before is another
        // message: its signature is checked, and fails.
        let mut tampered = accept.clone();
        let n = tampered.len();
        tampered[n - 3] ^= 1;
        w.ca.set_trust(trust_of(&w.agency, vec![], w.now));
        assert_eq!(w.to_ca(&tampered), Err(Error::Crypto));
    }

    #[test]
    fn a_decision_checked_before_is_taken_again_without_its_signature_checked() {
        let mut w = World::new(2, 42);
        let (mut a, mut b) = w.begin(0, 1).unwrap();
        w.converse((0, &mut a), (1, &mut b), 1).unwrap();
        let (wait_a, decide_a) = a.decide(&w.parties[0], true).unwrap();
        assert!(matches!(w.to_ca(&decide_a).unwrap(), Answer::Pending(_)));
        let v = verifications();
        assert!(matches!(w.to_ca(&decide_a).unwrap(), Answer::Pending(_)));
        assert_eq!(verifications(), v);
        let (_, decide_b) = b.decide(&w.parties[1], true).unwrap();
        assert!(matches!(
            w.to_ca(&decide_b).unwrap(),
            Answer::Sealing { .. }
        ));
        assert!(w.outcome(0, &wait_a).unwrap().committed());
        // A tampered copy is checked, and refused.
        let mut tampered = decide_a.clone();
        let n = tampered.len();
        tampered[n - 2] ^= 1;
        assert_eq!(w.to_ca(&tampered), Err(Error::Crypto));
    }
}
