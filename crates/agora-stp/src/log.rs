//! The commit authority's durable log: the `CommitLog` storage port
//! (ARCHITECTURE section 5), its in-memory twin, and the record the CA
//! keeps per transaction.
//!
//! The CA holds nothing a restart could lose: every vote and decision is in
//! the transaction's record, written by one [`LogUnit`] before the CA
//! answers, and every decided transaction is one leaf of the log, appended
//! in the same unit. A unit is a conditional write: it names the record's
//! version it was computed from and is refused ([`LogWritten::Conflict`])
//! if another step wrote the record since, so two steps on one transaction
//! never both apply (the CA recomputes and tries again). That, and a
//! transaction's leaf being written once, are what each backend must
//! enforce (a unique constraint or a conditional update), not SERIALIZABLE.

use crate::ids::{Context, Pair, Tid};
use crate::rules::{Decision, Sub, Tx, TxOutcome, Vote};
use agora_core::crypto::VerifyingKey;
use agora_core::ports::Commit;
use agora_core::wire::{Decoder, Encoder};
use agora_core::{DecodeError, Error, KeyId, Result, Timestamp};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A transaction's record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTx {
    /// Its version: 1 for the first write, one more for each write after.
    pub version: u64,
    /// The encoded [`TxRecord`].
    pub record: Vec<u8>,
    /// The index of its outcome leaf, once decided.
    pub leaf_index: Option<u64>,
}

/// One step's write: the transaction's new record, computed from the
/// record at `version` (0: there was none), and, if the step decided the
/// transaction, its outcome leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogUnit {
    /// The transaction.
    pub tid: Tid,
    /// The version the record was computed from (0: new).
    pub version: u64,
    /// The new record.
    pub record: Vec<u8>,
    /// Its deadline (for the deadline sweep).
    pub deadline: Timestamp,
    /// The encoded outcome leaf, if this step decided the transaction.
    pub leaf: Option<Vec<u8>>,
}

/// What a unit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogWritten {
    /// Written as the record's next version; the leaf's index if it had one.
    Written {
        /// The leaf's index in the log.
        leaf_index: Option<u64>,
    },
    /// The record is not at the unit's version any more: nothing written.
    Conflict,
}

/// Most leaves [`CommitLog::leaves`] returns at once.
pub const MAX_LEAF_PAGE: usize = 4096;

/// What the commit authority remembers, on one backend (the in-memory twin
/// [`MemoryCommitLog`], SQLite in agora-store, PostgreSQL later).
pub trait CommitLog: Send + Sync {
    /// The record of `tid`.
    fn get(&self, tid: &Tid) -> Result<Option<StoredTx>>;
    /// Writes one step's unit (see the module documentation): the record
    /// only if it is still at `unit.version`, and the leaf with it, at the
    /// next index. A leaf for a transaction that has one already is an
    /// error, and nothing is written.
    fn commit(&self, unit: LogUnit) -> Commit<LogWritten>;
    /// Leaves in the log.
    fn leaf_count(&self) -> Result<u64>;
    /// Leaves `from..` in order, at most `limit` (capped at
    /// [`MAX_LEAF_PAGE`]).
    fn leaves(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>>;
    /// Keeps a signed tree head of `size` leaves; refused unless `size` is
    /// at least the latest head's and at most the leaf count.
    fn record_head(&self, size: u64, head: &[u8]) -> Result<()>;
    /// The latest signed tree head and its size.
    fn latest_head(&self) -> Result<Option<(u64, Vec<u8>)>>;
    /// Undecided transactions whose deadline is at or before `now`, at most
    /// `limit`.
    fn undecided_past(&self, now: Timestamp, limit: usize) -> Result<Vec<Tid>>;
}

/// What a [`MemoryCommitLog`] holds: the transactions' records and
/// deadlines, the leaves, the signed heads. It can be copied out and in (a
/// fuzz target starts each run from a saved state and compares after).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryLogState {
    /// Records and deadlines by TID.
    pub txs: BTreeMap<Tid, (StoredTx, Timestamp)>,
    /// The leaves, in order.
    pub leaves: Vec<Vec<u8>>,
    /// The signed heads and their sizes, in order.
    pub heads: Vec<(u64, Vec<u8>)>,
}

/// The in-memory twin of [`CommitLog`].
#[derive(Debug, Default)]
pub struct MemoryCommitLog(Mutex<MemoryLogState>);

impl MemoryCommitLog {
    /// An empty log.
    pub fn new() -> MemoryCommitLog {
        MemoryCommitLog::default()
    }

    /// A log holding `state`.
    pub fn at(state: &MemoryLogState) -> MemoryCommitLog {
        MemoryCommitLog(Mutex::new(state.clone()))
    }

    /// What it holds now.
    pub fn state(&self) -> MemoryLogState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryLogState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CommitLog for MemoryCommitLog {
    fn get(&self, tid: &Tid) -> Result<Option<StoredTx>> {
        Ok(self.lock().txs.get(tid).map(|(s, _)| s.clone()))
    }

    fn commit(&self, unit: LogUnit) -> Commit<LogWritten> {
        let mut g = self.lock();
        let current = g.txs.get(&unit.tid).map(|(s, _)| s.clone());
        let at = current.as_ref().map_or(0, |s| s.version);
        if at != unit.version {
            return Commit::ready(Ok(LogWritten::Conflict));
        }
        let had_leaf = current.as_ref().and_then(|s| s.leaf_index);
        if unit.leaf.is_some() && had_leaf.is_some() {
            return Commit::ready(Err(Error::Storage(
                "a second outcome leaf for one transaction".into(),
            )));
        }
        let leaf_index = match unit.leaf {
            Some(leaf) => {
                g.leaves.push(leaf);
                Some(g.leaves.len() as u64 - 1)
            }
            None => None,
        };
        let stored = StoredTx {
            version: at + 1,
            record: unit.record,
            leaf_index: leaf_index.or(had_leaf),
        };
        g.txs.insert(unit.tid, (stored, unit.deadline));
        Commit::ready(Ok(LogWritten::Written { leaf_index }))
    }

    fn leaf_count(&self) -> Result<u64> {
        Ok(self.lock().leaves.len() as u64)
    }

    fn leaves(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
        let g = self.lock();
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(g.leaves
            .iter()
            .skip(from)
            .take(limit.min(MAX_LEAF_PAGE))
            .cloned()
            .collect())
    }

    fn record_head(&self, size: u64, head: &[u8]) -> Result<()> {
        let mut g = self.lock();
        let latest = g.heads.last().map_or(0, |(s, _)| *s);
        if size < latest || size > g.leaves.len() as u64 {
            return Err(Error::Storage(format!(
                "a tree head of {size} leaves after one of {latest}, over {} leaves",
                g.leaves.len()
            )));
        }
        g.heads.push((size, head.to_vec()));
        Ok(())
    }

    fn latest_head(&self) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self.lock().heads.last().cloned())
    }

    fn undecided_past(&self, now: Timestamp, limit: usize) -> Result<Vec<Tid>> {
        let g = self.lock();
        Ok(g.txs
            .iter()
            .filter(|(_, (s, deadline))| s.leaf_index.is_none() && *deadline <= now)
            .map(|(t, _)| *t)
            .take(limit)
            .collect())
    }
}

/// What the CA keeps of one subtransaction besides the rules' state: the
/// signed opening, each party's signed vote and key, each signed decision
/// (so that every answer can be rebuilt from the record alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubEvidence {
    /// The signed Begin or Join.
    pub opening: Vec<u8>,
    /// Each party's signed vote (index 0: the pair's smaller UID).
    pub votes: [Option<Vec<u8>>; 2],
    /// Each party's verification key, from its vote's certificate.
    pub keys: [Option<VerifyingKey>; 2],
    /// Each party's signed decision.
    pub decides: [Option<Vec<u8>>; 2],
}

/// A transaction at the CA: the rules' state and the evidence of each
/// subtransaction (same order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// The rules' state.
    pub tx: Tx<KeyId, Context>,
    /// Per subtransaction, what was signed.
    pub evidence: Vec<SubEvidence>,
}

/// Longest record: every subtransaction's opening, votes and decisions.
pub const MAX_RECORD_LEN: usize = crate::msg::MAX_SUBTRANSACTIONS
    * (crate::msg::MAX_OPENING_LEN + 2 * crate::msg::MAX_VOTE_LEN + 1024);

fn opt_bytes(e: &mut Encoder, b: &Option<Vec<u8>>) {
    match b {
        Some(b) => e.bytes(b),
        None => e.null(),
    };
}

fn read_opt_bytes(d: &mut Decoder<'_>, max: usize) -> Result<Option<Vec<u8>>, DecodeError> {
    if d.next_is_null() {
        d.null()?;
        return Ok(None);
    }
    Ok(Some(d.bytes("record bytes", max)?.to_vec()))
}

fn put_vote(e: &mut Encoder, v: &Option<Vote>) {
    match v {
        None => e.null(),
        Some(v) => e.bool(*v == Vote::Accept),
    };
}

fn read_vote(d: &mut Decoder<'_>) -> Result<Option<Vote>, DecodeError> {
    if d.next_is_null() {
        d.null()?;
        return Ok(None);
    }
    Ok(Some(if d.bool()? {
        Vote::Accept
    } else {
        Vote::Reject
    }))
}

fn put_decision(e: &mut Encoder, dec: &Option<Decision<Context>>) {
    match dec {
        None => e.null(),
        Some(Decision::Abort) => e.array(0),
        Some(Decision::Commit(c)) => e.array(1).field(c),
    };
}

fn read_decision(d: &mut Decoder<'_>) -> Result<Option<Decision<Context>>, DecodeError> {
    if d.next_is_null() {
        d.null()?;
        return Ok(None);
    }
    Ok(Some(match d.array_max("decision", 1)? {
        0 => Decision::Abort,
        _ => Decision::Commit(d.field()?),
    }))
}

impl TxRecord {
    /// Its encoding (deterministic CBOR).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(4096);
        e.array(3).field(&Timestamp(self.tx.deadline));
        match self.tx.outcome {
            None => {
                e.null();
            }
            Some((o, at)) => {
                let code = match o {
                    TxOutcome::Committed => 0,
                    TxOutcome::Aborted(r) => r.code(),
                };
                e.array(2).uint(code.into()).uint(at);
            }
        }
        e.array(self.tx.subs.len());
        for (s, ev) in self.tx.subs.iter().zip(&self.evidence) {
            let pair = Pair::from_tuple(&s.pair);
            e.array(14).field(&pair).field(&s.initiator);
            e.field(&s.via.as_ref().and_then(Pair::from_tuple));
            put_vote(&mut e, &s.votes[0]);
            put_vote(&mut e, &s.votes[1]);
            put_decision(&mut e, &s.decisions[0]);
            put_decision(&mut e, &s.decisions[1]);
            e.bytes(&ev.opening);
            opt_bytes(&mut e, &ev.votes[0]);
            opt_bytes(&mut e, &ev.votes[1]);
            e.field(&ev.keys[0]).field(&ev.keys[1]);
            opt_bytes(&mut e, &ev.decides[0]);
            opt_bytes(&mut e, &ev.decides[1]);
        }
        e.into_bytes()
    }

    /// Reads a record (a storage error if it is not one: the store is
    /// corrupt, not the peer at fault).
    pub fn decode(bytes: &[u8]) -> Result<TxRecord> {
        Self::decode_inner(bytes).map_err(|e| Error::Storage(format!("a corrupt STP record: {e}")))
    }

    fn decode_inner(bytes: &[u8]) -> Result<TxRecord, DecodeError> {
        use crate::msg::{MAX_OPENING_LEN, MAX_SUBTRANSACTIONS, MAX_VOTE_LEN};
        let mut d = Decoder::new(bytes);
        d.array(3)?;
        let deadline: Timestamp = d.field()?;
        let outcome = if d.next_is_null() {
            d.null()?;
            None
        } else {
            d.array(2)?;
            let code = d.uint_max("outcome", 4)? as u8;
            let at = d.uint()?;
            let o = if code == 0 {
                TxOutcome::Committed
            } else {
                TxOutcome::Aborted(
                    crate::rules::AbortReason::from_code(code)
                        .ok_or(DecodeError::Invalid("abort reason"))?,
                )
            };
            Some((o, at))
        };
        let n = d.array_max("subtransactions", MAX_SUBTRANSACTIONS)?;
        let mut subs = Vec::with_capacity(n);
        let mut evidence = Vec::with_capacity(n);
        for _ in 0..n {
            d.array(14)?;
            let pair: Pair = d.field()?;
            let initiator: KeyId = d.field()?;
            let via: Option<Pair> = d.field()?;
            let votes = [read_vote(&mut d)?, read_vote(&mut d)?];
            let decisions = [read_decision(&mut d)?, read_decision(&mut d)?];
            let opening = d.bytes("opening", MAX_OPENING_LEN)?.to_vec();
            let vote_bytes = [
                read_opt_bytes(&mut d, MAX_VOTE_LEN)?,
                read_opt_bytes(&mut d, MAX_VOTE_LEN)?,
            ];
            let keys = [d.field()?, d.field()?];
            let decides = [read_opt_bytes(&mut d, 1024)?, read_opt_bytes(&mut d, 1024)?];
            subs.push(Sub {
                pair: pair.as_tuple(),
                initiator,
                via: via.map(|v| v.as_tuple()),
                votes,
                decisions,
            });
            evidence.push(SubEvidence {
                opening,
                votes: vote_bytes,
                keys,
                decides,
            });
        }
        d.finish()?;
        Ok(TxRecord {
            tx: Tx {
                deadline: deadline.secs(),
                subs,
                outcome,
            },
            evidence,
        })
    }
}

/// The conformance suite of [`CommitLog`].
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a test suite: a panic is its failure report
pub mod conformance {
    use super::*;

    fn unit(tid: u8, version: u64, record: &[u8], leaf: Option<&[u8]>) -> LogUnit {
        LogUnit {
            tid: Tid([tid; 16]),
            version,
            record: record.to_vec(),
            deadline: Timestamp(100 + u64::from(tid)),
            leaf: leaf.map(<[u8]>::to_vec),
        }
    }

    /// Runs every check against `log`, which must be empty.
    pub fn commit_log_suite(log: &dyn CommitLog) {
        a_unit_applies_only_at_the_version_it_was_computed_from(log);
        leaves_are_appended_in_order_once_per_transaction(log);
        tree_heads_only_grow(log);
        the_deadline_sweep_finds_undecided_transactions_past_their_deadline(log);
    }

    fn a_unit_applies_only_at_the_version_it_was_computed_from(log: &dyn CommitLog) {
        let t = Tid([1; 16]);
        assert_eq!(log.get(&t).unwrap(), None);
        let w = log.commit(unit(1, 0, b"v1", None)).wait().unwrap();
        assert_eq!(w, LogWritten::Written { leaf_index: None });
        assert_eq!(log.get(&t).unwrap().unwrap().version, 1);
        // Two steps computed from version 1: the first wins, the second
        // conflicts and writes nothing.
        assert!(matches!(
            log.commit(unit(1, 1, b"v2a", None)).wait().unwrap(),
            LogWritten::Written { .. }
        ));
        assert_eq!(
            log.commit(unit(1, 1, b"v2b", None)).wait().unwrap(),
            LogWritten::Conflict
        );
        assert_eq!(
            log.commit(unit(1, 0, b"again", None)).wait().unwrap(),
            LogWritten::Conflict
        );
        let s = log.get(&t).unwrap().unwrap();
        assert_eq!((s.version, s.record.as_slice()), (2, &b"v2a"[..]));
    }

    fn leaves_are_appended_in_order_once_per_transaction(log: &dyn CommitLog) {
        let before = log.leaf_count().unwrap();
        let w = log
            .commit(unit(2, 0, b"r", Some(b"leaf-2")))
            .wait()
            .unwrap();
        assert_eq!(
            w,
            LogWritten::Written {
                leaf_index: Some(before)
            }
        );
        log.commit(unit(3, 0, b"r", Some(b"leaf-3")))
            .wait()
            .unwrap();
        assert!(log
            .commit(unit(2, 1, b"r2", Some(b"leaf-2 again")))
            .wait()
            .is_err());
        assert_eq!(log.get(&Tid([2; 16])).unwrap().unwrap().version, 1);
        assert_eq!(log.leaf_count().unwrap(), before + 2);
        let leaves = log.leaves(before, 10).unwrap();
        assert_eq!(leaves, vec![b"leaf-2".to_vec(), b"leaf-3".to_vec()]);
        let s = log.get(&Tid([2; 16])).unwrap().unwrap();
        assert_eq!(s.leaf_index, Some(before));
        // A later write without a leaf keeps the leaf index.
        log.commit(unit(2, 1, b"r2", None)).wait().unwrap();
        assert_eq!(
            log.get(&Tid([2; 16])).unwrap().unwrap().leaf_index,
            Some(before)
        );
    }

    fn tree_heads_only_grow(log: &dyn CommitLog) {
        let n = log.leaf_count().unwrap();
        log.record_head(n, b"head-n").unwrap();
        assert_eq!(log.latest_head().unwrap(), Some((n, b"head-n".to_vec())));
        assert!(log.record_head(n + 1, b"beyond the leaves").is_err());
        if n > 0 {
            assert!(log.record_head(n - 1, b"smaller").is_err());
        }
        assert_eq!(log.latest_head().unwrap(), Some((n, b"head-n".to_vec())));
    }

    fn the_deadline_sweep_finds_undecided_transactions_past_their_deadline(log: &dyn CommitLog) {
        // Tid 1 (deadline 101) is undecided; 2 and 3 are decided.
        log.commit(unit(9, 0, b"r", None)).wait().unwrap(); // deadline 109
        assert_eq!(log.undecided_past(Timestamp(100), 10).unwrap(), vec![]);
        assert_eq!(
            log.undecided_past(Timestamp(101), 10).unwrap(),
            vec![Tid([1; 16])]
        );
        assert_eq!(
            log.undecided_past(Timestamp(200), 10).unwrap(),
            vec![Tid([1; 16]), Tid([9; 16])]
        );
        assert_eq!(log.undecided_past(Timestamp(200), 1).unwrap().len(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_log_passes_the_conformance_suite() {
        conformance::commit_log_suite(&MemoryCommitLog::new());
    }
}
