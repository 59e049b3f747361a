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

use crate::ids::{Pair, Tid};
use crate::log::{CommitLog, LogUnit, LogWritten, SubEvidence, TxRecord, MAX_LEAF_PAGE};
use crate::merkle::MerkleTree;
use crate::msg::{
    Consistency, Decide, Outcome, OutcomeLeaf, Pending, Started, Status, TreeHead, Vote,
    MAX_SUBTRANSACTIONS,
};
use crate::process::{open_opening, MAX_LIFETIME_SECS};
use crate::rules::{self, Decision, Effect, RuleError, Tx, TxOutcome};
use agora_core::crypto::{SigningKey, VerifyingKey};
use agora_core::wire::{cose, decode, tags};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::IdentityTrust;
use std::sync::{Arc, Mutex, RwLock};

/// How often a step retries after a conflicting write by another step on
/// the same transaction.
const MAX_CONFLICT_RETRIES: usize = 16;

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
    trust: RwLock<Arc<IdentityTrust>>,
    tree: Mutex<MerkleTree>,
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
            key,
            trust: RwLock::new(Arc::new(trust)),
            tree: Mutex::new(MerkleTree::new()),
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

    /// Its UID.
    pub fn uid(&self) -> KeyId {
        self.key.key_id()
    }

    /// Its verification key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A message for the CA: a signed Vote or Decide, or a Status.
    pub fn handle(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
        let tag = match cose::peek_tag(bytes) {
            Ok(t) => t,
            Err(_) => agora_core::wire::peek_tag(bytes)?,
        };
        if tag == tags::STP_VOTE {
            self.on_vote(now, bytes, log)
        } else if tag == tags::STP_DECIDE {
            self.on_decide(now, bytes, log)
        } else if tag == tags::STP_STATUS {
            let s: Status = decode(bytes)?;
            self.status(now, &s.tid, log)
        } else {
            Err(Error::PeerMisbehaved(
                "the commit authority takes Vote, Decide and Status",
            ))
        }
    }

    /// A Vote: checks the voter's certificate and signature, the opening's
    /// (initiator's certificate and signature, this CA named, the deadline
    /// within bounds), logs the vote, and answers Started, Pending or the
    /// outcome.
    pub fn on_vote(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
        let trust = self.trust();
        let mut voter_key = None;
        let (v, voter) = cose::verify_self_certified::<Vote>(bytes, |v| {
            let key = *trust.identity_of_any_role(&v.voter_cert, now)?.key();
            voter_key = Some(key);
            Ok(key)
        })?;
        let key = voter_key.ok_or(Error::ApiMisuse("verified without a key"))?;
        let o = open_opening(&v.opening, &trust, now)?;
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
        let rec = self.step(now, &o.tid, log, |stored| {
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
        })?;
        self.answer(now, &o.tid, &rec, log, Some((&o.pair, &voter)))
    }

    /// A Decide: signed by a party whose vote the CA holds; logs it and
    /// answers the outcome once decided, Pending until then.
    pub fn on_decide(&self, now: Timestamp, bytes: &[u8], log: &dyn CommitLog) -> Result<Answer> {
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
        let d: Decide = cose::verify(bytes, &key)?;
        let decision = match d.commit {
            Some(c) => Decision::Commit(c),
            None => Decision::Abort,
        };
        let rec = self.step(now, &d.tid, log, |stored| {
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
        })?;
        self.answer(now, &d.tid, &rec, log, None)
    }

    /// Status: the outcome if decided (aborting first what is undecided past
    /// its deadline), a signed Pending otherwise.
    pub fn status(&self, now: Timestamp, tid: &Tid, log: &dyn CommitLog) -> Result<Answer> {
        let Some(stored) = log.get(tid)? else {
            return Ok(Answer::Pending(self.pending(tid, false, Timestamp(0), now)));
        };
        let rec = TxRecord::decode(&stored.record)?;
        if rec.tx.outcome.is_none() && now.secs() >= rec.tx.deadline {
            return self.expire(now, tid, log);
        }
        self.answer(now, tid, &rec, log, None)
    }

    /// Aborts `tid` if it is undecided at or past its deadline (rule 5),
    /// and answers its status.
    pub fn expire(&self, now: Timestamp, tid: &Tid, log: &dyn CommitLog) -> Result<Answer> {
        let rec = self.step(now, tid, log, |stored| {
            let mut rec = stored.ok_or_else(|| Error::Refused("no such transaction".into()))?;
            let effect = match rec.tx.expire(now.secs()) {
                Some(o) => Effect::Decided(o),
                None => Effect::Unchanged,
            };
            Ok((rec, effect))
        })?;
        self.answer(now, tid, &rec, log, None)
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
    fn step(
        &self,
        now: Timestamp,
        tid: &Tid,
        log: &dyn CommitLog,
        apply: impl Fn(Option<TxRecord>) -> Result<(TxRecord, Effect)>,
    ) -> Result<TxRecord> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let stored = log.get(tid)?;
            let version = stored.as_ref().map_or(0, |s| s.version);
            let current = stored
                .as_ref()
                .map(|s| TxRecord::decode(&s.record))
                .transpose()?;
            let (rec, effect) = apply(current)?;
            if !effect.changed() {
                return Ok(rec);
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
            match log.commit(unit).wait()? {
                LogWritten::Written { .. } => return Ok(rec),
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
        rec: &TxRecord,
        log: &dyn CommitLog,
        voter: Option<(&Pair, &KeyId)>,
    ) -> Result<Answer> {
        if rec.tx.outcome.is_some() {
            return match self.outcome(tid, log)? {
                Some(o) => Ok(Answer::Outcome(o)),
                None => {
                    let index = log.get(tid)?.and_then(|s| s.leaf_index).ok_or_else(|| {
                        Error::Storage("a decided transaction without a leaf".into())
                    })?;
                    Ok(Answer::Sealing { index })
                }
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
/// signature verifies.
struct DecideTarget {
    tid: Tid,
    pair: Pair,
}

fn unverified_decide(bytes: &[u8]) -> Result<DecideTarget> {
    let d: Decide = cose::peek_unverified(bytes)?;
    Ok(DecideTarget {
        tid: d.tid,
        pair: d.pair,
    })
}
