//! Everything the CPO server keeps, on one backend, and its units of work
//! (ARCHITECTURE section 1: one server step, one unit of work).
//!
//! [`CpoStore`] bundles the server's narrow ports (board, sessions, bids,
//! replay cache, evidence archive) with [`CpoStore::commit`]: the writes of
//! one server step and the evidence it archives ([`CpoUnit`]) commit in one
//! transaction, all or nothing. A step of the server ([`crate::server`],
//! [`crate::bidding`]) returns its unit without touching storage; the driver
//! commits it (awaiting the [`Commit`] on an async runtime, or waiting for
//! it on a thread) and resumes the step with the outcome.
//!
//! The rules every backend keeps (checked by `conformance::cpo_store_suite`, feature `testkit`):
//! - the evidence of a unit is archived exactly when its write applies
//!   ([`CpoWritten::applied`]): a CPO already posted, already bound, already
//!   awarded or taken down writes nothing and archives nothing;
//! - a unit whose evidence breaks the archive's limits writes nothing;
//! - an award and the binding of its winner are one write: both or neither.

use crate::bidding::{AwardOutcome, Bids, MemoryBids};
use crate::ports::{
    BindOutcome, Binding, Board, BoardEntry, MemoryBoard, MemorySessions, PostOutcome, Sessions,
};
use agora_core::ports::{
    Commit, Evidence, EvidenceArchive, MemoryArchive, MemoryReplayCache, ReplayCache,
};
use agora_core::{Error, Timestamp};
use std::sync::Mutex;

/// The write of one step of the CPO server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpoWrite {
    /// Protocol 2, step 4: the posted CPO goes on the board, unless its id
    /// is there already.
    Post(BoardEntry),
    /// Protocol 4, step 2: first-come binding of `cpo` in browse session
    /// `session`, unless it is bound or taken down, or the session has ended
    /// (by whichever process ended it).
    Bind {
        /// The CPO.
        cpo: [u8; 32],
        /// The binding, with the signed BOUND_CPO.
        binding: Binding,
        /// The session the offer came in.
        session: [u8; 32],
    },
    /// Protocol 6, step 5: the arbiter's award of `cpo`, unless one was
    /// recorded before, and the binding of its winner if there is one.
    Award {
        /// The CPO.
        cpo: [u8; 32],
        /// The arbiter's signed award.
        award: Vec<u8>,
        /// The winner's binding (the server's signed notice as its
        /// contract); `None` if no bid won.
        winner: Option<Binding>,
    },
}

/// One step's unit of work: its write and the evidence archived with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpoUnit {
    /// The write.
    pub write: CpoWrite,
    /// Archived in the same transaction, exactly when the write applies.
    pub evidence: Vec<Evidence>,
}

/// What an award's unit found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwardWritten {
    /// The award is recorded and its winner (if any) bound.
    Recorded,
    /// An award was recorded before; it stands (here it is). Nothing
    /// changed.
    AlreadyAwarded(Vec<u8>),
    /// The winner could not be bound (the CPO is not on the board, was taken
    /// down, or is bound); nothing changed.
    NotBound(BindOutcome),
}

/// The outcome of a committed [`CpoUnit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpoWritten {
    /// Of [`CpoWrite::Post`].
    Post(PostOutcome),
    /// Of [`CpoWrite::Bind`].
    Bind(BindOutcome),
    /// Of [`CpoWrite::Award`].
    Award(AwardWritten),
}

impl CpoWritten {
    /// Whether the write was made (and its evidence archived).
    pub fn applied(&self) -> bool {
        matches!(
            self,
            CpoWritten::Post(PostOutcome::Posted)
                | CpoWritten::Bind(BindOutcome::Bound)
                | CpoWritten::Award(AwardWritten::Recorded)
        )
    }
}

/// A unit's outcome read as another kind of write's: a backend's bug.
fn kind_mismatch() -> Error {
    Error::Storage("a unit's outcome is of another kind of write".into())
}

impl CpoWritten {
    /// The outcome of a post, or a storage error if this is another kind.
    pub fn post(self) -> Result<PostOutcome, Error> {
        match self {
            CpoWritten::Post(o) => Ok(o),
            _ => Err(kind_mismatch()),
        }
    }

    /// The outcome of a binding, or a storage error if this is another kind.
    pub fn bind(self) -> Result<BindOutcome, Error> {
        match self {
            CpoWritten::Bind(o) => Ok(o),
            _ => Err(kind_mismatch()),
        }
    }

    /// The outcome of an award, or a storage error if this is another kind.
    pub fn award(self) -> Result<AwardWritten, Error> {
        match self {
            CpoWritten::Award(o) => Ok(o),
            _ => Err(kind_mismatch()),
        }
    }
}

/// Everything the CPO server keeps, on one backend (the in-memory twin
/// [`MemoryCpoStore`], SQLite in agora-store, PostgreSQL later).
pub trait CpoStore: Send + Sync {
    /// The board of posted CPOs and their bindings.
    fn board(&self) -> &dyn Board;
    /// The browse sessions and their K_p.
    fn sessions(&self) -> &dyn Sessions;
    /// The bids and awards of protocol 6.
    fn bids(&self) -> &dyn Bids;
    /// The server's replay cache (R_0 of requests).
    fn replay(&self) -> &dyn ReplayCache;
    /// The server's evidence archive.
    fn archive(&self) -> &dyn EvidenceArchive;
    /// Commits one step's write and its evidence as one transaction (see the
    /// module documentation for the rules). The commit resolves once the
    /// unit is durable; an error means nothing of it was written.
    fn commit(&self, unit: CpoUnit, now: Timestamp) -> Commit<CpoWritten>;
}

/// The in-memory twin of [`CpoStore`]: the in-memory ports, and units made
/// one at a time under one lock (checks first, then the write, then the
/// evidence, so a unit that cannot complete changes nothing).
#[derive(Debug, Default)]
pub struct MemoryCpoStore {
    /// The board.
    pub board: MemoryBoard,
    /// The sessions.
    pub sessions: MemorySessions,
    /// The bids.
    pub bids: MemoryBids,
    /// The replay cache.
    pub replay: MemoryReplayCache,
    /// The evidence archive.
    pub archive: MemoryArchive,
    units: Mutex<()>,
}

impl MemoryCpoStore {
    /// An empty store.
    pub fn new() -> MemoryCpoStore {
        MemoryCpoStore::default()
    }

    /// The unit's checks and writes, made while holding the unit lock.
    fn apply(&self, unit: &CpoUnit, now: Timestamp) -> Result<CpoWritten, Error> {
        for e in &unit.evidence {
            e.check()?;
        }
        let written = match &unit.write {
            CpoWrite::Post(entry) => {
                if self.board.get(&entry.ccpo.id)?.is_some() {
                    CpoWritten::Post(PostOutcome::AlreadyPosted)
                } else {
                    self.board.post(entry)?;
                    CpoWritten::Post(PostOutcome::Posted)
                }
            }
            CpoWrite::Bind {
                cpo,
                binding,
                session,
            } => {
                let open = self
                    .sessions
                    .get(session)?
                    .is_some_and(|s| s.ended_at.is_none());
                match self.bind_outcome(cpo)? {
                    Some(refused) => CpoWritten::Bind(refused),
                    None if !open => CpoWritten::Bind(BindOutcome::SessionEnded),
                    None => CpoWritten::Bind(self.board.try_bind(cpo, binding)?),
                }
            }
            CpoWrite::Award { cpo, award, winner } => {
                if let Some(prev) = self.bids.award(cpo)? {
                    CpoWritten::Award(AwardWritten::AlreadyAwarded(prev))
                } else if let (Some(_), Some(refused)) = (winner, self.bind_outcome(cpo)?) {
                    CpoWritten::Award(AwardWritten::NotBound(refused))
                } else {
                    match self.bids.record_award(cpo, award)? {
                        AwardOutcome::Recorded => {}
                        AwardOutcome::AlreadyAwarded(prev) => {
                            return Ok(CpoWritten::Award(AwardWritten::AlreadyAwarded(prev)))
                        }
                    }
                    if let Some(b) = winner {
                        self.board.try_bind(cpo, b)?;
                    }
                    CpoWritten::Award(AwardWritten::Recorded)
                }
            }
        };
        if written.applied() {
            self.archive.record_now(&unit.evidence, now)?;
        }
        Ok(written)
    }

    /// Why `cpo` cannot be bound now, if it cannot.
    fn bind_outcome(&self, cpo: &[u8; 32]) -> Result<Option<BindOutcome>, Error> {
        Ok(match self.board.state(cpo)? {
            None => Some(BindOutcome::NotPosted),
            Some(s) if s.taken_down => Some(BindOutcome::TakenDown),
            Some(s) if s.bound => Some(BindOutcome::AlreadyBound),
            Some(_) => None,
        })
    }
}

impl CpoStore for MemoryCpoStore {
    fn board(&self) -> &dyn Board {
        &self.board
    }
    fn sessions(&self) -> &dyn Sessions {
        &self.sessions
    }
    fn bids(&self) -> &dyn Bids {
        &self.bids
    }
    fn replay(&self) -> &dyn ReplayCache {
        &self.replay
    }
    fn archive(&self) -> &dyn EvidenceArchive {
        &self.archive
    }

    fn commit(&self, unit: CpoUnit, now: Timestamp) -> Commit<CpoWritten> {
        let _one_at_a_time = self.units.lock().unwrap_or_else(|p| p.into_inner());
        // The archive is checked for room before anything is written: it is
        // the only write here that can fail after the checks.
        let room = self
            .archive
            .head()
            .map(|h| h.map_or(0, |(seq, _)| seq))
            .map(|len| {
                len.saturating_add(unit.evidence.len() as u64)
                    <= MemoryArchive::DEFAULT_CAPACITY as u64
            });
        Commit::ready(match room {
            Err(e) => Err(e),
            Ok(false) => Err(Error::Storage("memory archive is full".into())),
            Ok(true) => self.apply(&unit, now),
        })
    }
}

/// The conformance suite of [`CpoStore`]'s units of work.
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a test suite: a panic is its failure report
pub mod conformance {
    use super::*;
    use crate::ports::conformance::{entry, session};
    use agora_core::ports::MAX_PAYLOAD_LEN;
    use agora_core::KeyId;

    const NOW: Timestamp = Timestamp(1_000);

    fn binding(n: u8) -> Binding {
        Binding {
            seller: KeyId([n; 32]),
            bound_at: NOW,
            bound_cpo: vec![n; 40],
        }
    }

    fn evidence(kind: &'static str, n: u8) -> Vec<Evidence> {
        vec![Evidence::new(kind, vec![n; 16])]
    }

    fn too_large() -> Vec<Evidence> {
        vec![Evidence::new("x", vec![0; MAX_PAYLOAD_LEN + 1])]
    }

    fn archived<S: CpoStore + ?Sized>(s: &S) -> Vec<(String, Vec<u8>)> {
        s.archive()
            .entries(0, 1024)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.payload))
            .collect()
    }

    /// Runs every case on fresh stores from `make`.
    pub fn cpo_store_suite<S: CpoStore>(make: impl Fn() -> S) {
        a_post_and_its_evidence_are_one_unit(&make());
        a_bind_and_its_evidence_are_one_unit(&make());
        an_award_its_binding_and_its_evidence_are_one_unit(&make());
    }

    /// A post archives its evidence; a second post of the id, or a post
    /// whose evidence cannot be archived, writes and archives nothing.
    pub fn a_post_and_its_evidence_are_one_unit<S: CpoStore + ?Sized>(s: &S) {
        let e = entry(1, 5_000);
        let unit = |evidence| CpoUnit {
            write: CpoWrite::Post(e.clone()),
            evidence,
        };
        assert!(
            s.commit(unit(too_large()), NOW).wait().is_err(),
            "evidence over the limit refuses the unit"
        );
        assert_eq!(s.board().get(&e.ccpo.id), Ok(None), "nothing posted");
        assert_eq!(archived(s), vec![]);
        let w = s.commit(unit(evidence("cpo/posted", 1)), NOW).wait();
        assert_eq!(w, Ok(CpoWritten::Post(PostOutcome::Posted)));
        assert_eq!(s.board().get(&e.ccpo.id), Ok(Some(e.clone())));
        assert_eq!(archived(s), vec![("cpo/posted".into(), vec![1; 16])]);
        let again = s.commit(unit(evidence("cpo/posted", 2)), NOW).wait();
        assert_eq!(again, Ok(CpoWritten::Post(PostOutcome::AlreadyPosted)));
        assert_eq!(
            archived(s).len(),
            1,
            "no evidence of a post that did not apply"
        );
    }

    /// A binding needs the CPO open and the session live; whatever refuses
    /// it, nothing is bound and nothing archived.
    pub fn a_bind_and_its_evidence_are_one_unit<S: CpoStore + ?Sized>(s: &S) {
        let e = entry(2, 5_000);
        let cpo = e.ccpo.id;
        let live = session(1, 1);
        let ended = session(2, 2);
        s.sessions().create(&live).unwrap();
        s.sessions().create(&ended).unwrap();
        s.sessions().end(&ended.id, NOW).unwrap();
        let bind = |n: u8, session: [u8; 32], evidence| CpoUnit {
            write: CpoWrite::Bind {
                cpo,
                binding: binding(n),
                session,
            },
            evidence,
        };
        let w = s
            .commit(bind(1, live.id, evidence("cpo/bound", 1)), NOW)
            .wait();
        assert_eq!(w, Ok(CpoWritten::Bind(BindOutcome::NotPosted)));
        s.board().post(&e).unwrap();
        let w = s
            .commit(bind(1, ended.id, evidence("cpo/bound", 1)), NOW)
            .wait();
        assert_eq!(w, Ok(CpoWritten::Bind(BindOutcome::SessionEnded)));
        let w = s
            .commit(bind(1, [9; 32], evidence("cpo/bound", 1)), NOW)
            .wait();
        assert_eq!(
            w,
            Ok(CpoWritten::Bind(BindOutcome::SessionEnded)),
            "an unknown session binds nothing"
        );
        assert!(s.commit(bind(1, live.id, too_large()), NOW).wait().is_err());
        assert_eq!(s.board().binding(&cpo), Ok(None), "nothing bound yet");
        assert_eq!(archived(s), vec![]);
        let w = s
            .commit(bind(1, live.id, evidence("cpo/bound", 1)), NOW)
            .wait();
        assert_eq!(w, Ok(CpoWritten::Bind(BindOutcome::Bound)));
        let w = s
            .commit(bind(2, live.id, evidence("cpo/bound", 2)), NOW)
            .wait();
        assert_eq!(w, Ok(CpoWritten::Bind(BindOutcome::AlreadyBound)));
        assert_eq!(s.board().binding(&cpo), Ok(Some(binding(1))));
        assert_eq!(archived(s), vec![("cpo/bound".into(), vec![1; 16])]);
        let down = entry(3, 5_000);
        s.board().post(&down).unwrap();
        s.board().take_down(&down.ccpo.id, NOW).unwrap();
        let w = s
            .commit(
                CpoUnit {
                    write: CpoWrite::Bind {
                        cpo: down.ccpo.id,
                        binding: binding(3),
                        session: live.id,
                    },
                    evidence: vec![],
                },
                NOW,
            )
            .wait();
        assert_eq!(w, Ok(CpoWritten::Bind(BindOutcome::TakenDown)));
    }

    /// The award, its winner's binding and its evidence are written
    /// together or not at all; the first award stands.
    pub fn an_award_its_binding_and_its_evidence_are_one_unit<S: CpoStore + ?Sized>(s: &S) {
        let e = entry(4, 5_000);
        let cpo = e.ccpo.id;
        let award = |a: &[u8], winner: Option<Binding>, evidence| CpoUnit {
            write: CpoWrite::Award {
                cpo,
                award: a.to_vec(),
                winner,
            },
            evidence,
        };
        let w = s.commit(award(b"A", Some(binding(1)), evidence("cpo/award", 1)), NOW);
        assert_eq!(
            w.wait(),
            Ok(CpoWritten::Award(AwardWritten::NotBound(
                BindOutcome::NotPosted
            )))
        );
        assert_eq!(
            s.bids().award(&cpo),
            Ok(None),
            "no award without its binding"
        );
        s.board().post(&e).unwrap();
        assert!(s
            .commit(award(b"A", Some(binding(1)), too_large()), NOW)
            .wait()
            .is_err());
        assert_eq!(s.bids().award(&cpo), Ok(None));
        assert_eq!(s.board().binding(&cpo), Ok(None));
        assert_eq!(archived(s), vec![]);
        let w = s.commit(award(b"A", Some(binding(1)), evidence("cpo/award", 1)), NOW);
        assert_eq!(w.wait(), Ok(CpoWritten::Award(AwardWritten::Recorded)));
        assert_eq!(s.bids().award(&cpo), Ok(Some(b"A".to_vec())));
        assert_eq!(s.board().binding(&cpo), Ok(Some(binding(1))));
        let w = s.commit(award(b"B", Some(binding(2)), evidence("cpo/award", 2)), NOW);
        assert_eq!(
            w.wait(),
            Ok(CpoWritten::Award(AwardWritten::AlreadyAwarded(
                b"A".to_vec()
            )))
        );
        assert_eq!(s.board().binding(&cpo), Ok(Some(binding(1))));
        assert_eq!(archived(s), vec![("cpo/award".into(), vec![1; 16])]);
        // An award with no winner binds nothing; one on a taken-down CPO
        // with a winner is refused whole.
        let none = entry(5, 5_000);
        s.board().post(&none).unwrap();
        let w = s.commit(
            CpoUnit {
                write: CpoWrite::Award {
                    cpo: none.ccpo.id,
                    award: b"C".to_vec(),
                    winner: None,
                },
                evidence: evidence("cpo/award", 3),
            },
            NOW,
        );
        assert_eq!(w.wait(), Ok(CpoWritten::Award(AwardWritten::Recorded)));
        assert_eq!(s.board().binding(&none.ccpo.id), Ok(None));
        let down = entry(6, 5_000);
        s.board().post(&down).unwrap();
        s.board().take_down(&down.ccpo.id, NOW).unwrap();
        let w = s.commit(
            CpoUnit {
                write: CpoWrite::Award {
                    cpo: down.ccpo.id,
                    award: b"D".to_vec(),
                    winner: Some(binding(4)),
                },
                evidence: evidence("cpo/award", 4),
            },
            NOW,
        );
        assert_eq!(
            w.wait(),
            Ok(CpoWritten::Award(AwardWritten::NotBound(
                BindOutcome::TakenDown
            )))
        );
        assert_eq!(s.bids().award(&down.ccpo.id), Ok(None));
        assert_eq!(archived(s).len(), 2);
    }

    #[cfg(test)]
    #[test]
    fn memory_cpo_store_passes_the_conformance_suite() {
        cpo_store_suite(MemoryCpoStore::new);
    }
}
