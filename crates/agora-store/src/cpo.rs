//! [`CpoStore`] (agora-cpo's bundle of the server's ports) on SQLite, and
//! its units of work: a step's write and its evidence run as one request of
//! the group-commit writer, so they share one savepoint of one transaction.
//! A request that fails part-way (its evidence refused, a statement failing)
//! rolls its savepoint back, and a failed commit fails every request of the
//! batch: either way nothing of the unit stays.
//!
//! What each unit writes, in order (each step writes nothing when its
//! condition fails, so nothing needs undoing):
//! - post: the board row (unless the id is posted), then the evidence;
//! - bind: the binding (unless the CPO is bound, taken down or not posted,
//!   or the session ended), then the evidence;
//! - award: nothing if an award is recorded (it stands); else the winner's
//!   binding, if there is a winner (nothing more if it cannot be made),
//!   then the award, then the evidence.

use crate::archive::record_in;
use crate::board::{BindRow, PostRow};
use crate::db::storage;
use crate::{
    SqliteArchive, SqliteBids, SqliteBoard, SqliteReplayCache, SqliteSessions, SqliteStore,
};
use agora_core::ports::{Commit, Evidence, EvidenceArchive, ReplayCache};
use agora_core::{Error, Timestamp};
use agora_cpo::bidding::Bids;
use agora_cpo::ports::{BindOutcome, Board, PostOutcome, Sessions};
use agora_cpo::store::{AwardWritten, CpoStore, CpoUnit, CpoWrite, CpoWritten};
use rusqlite::{params, Connection, OptionalExtension};

/// The CPO server's ports on one SQLite database.
#[derive(Clone, Debug)]
pub struct SqliteCpoStore {
    store: SqliteStore,
    board: SqliteBoard,
    sessions: SqliteSessions,
    bids: SqliteBids,
    replay: SqliteReplayCache,
    archive: SqliteArchive,
}

impl SqliteCpoStore {
    /// The CPO ports of `store`.
    pub fn new(store: SqliteStore) -> SqliteCpoStore {
        SqliteCpoStore {
            board: SqliteBoard::new(store.clone()),
            sessions: SqliteSessions::new(store.clone()),
            bids: SqliteBids::new(store.clone()),
            replay: SqliteReplayCache::new(store.clone()),
            archive: SqliteArchive::new(store.clone()),
            store,
        }
    }
}

/// An award as written inside a write request.
struct AwardRow {
    cpo: [u8; 32],
    award: Vec<u8>,
    winner: Option<BindRow>,
}

impl AwardRow {
    fn insert(&self, conn: &Connection) -> Result<AwardWritten, Error> {
        let prev: Option<Vec<u8>> = conn
            .prepare_cached("SELECT award FROM cpo_award WHERE cpo = ?1")
            .and_then(|mut st| st.query_row([self.cpo.as_slice()], |r| r.get(0)).optional())
            .map_err(storage)?;
        if let Some(prev) = prev {
            return Ok(AwardWritten::AlreadyAwarded(prev));
        }
        if let Some(winner) = &self.winner {
            match winner.insert(conn)? {
                BindOutcome::Bound => {}
                other => return Ok(AwardWritten::NotBound(other)),
            }
        }
        // The award was absent above, in this same write transaction: the
        // insert cannot conflict (the primary key would still refuse a
        // second award should that ever change).
        conn.prepare_cached("INSERT INTO cpo_award (cpo, award) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![self.cpo.as_slice(), self.award]))
            .map_err(storage)?;
        Ok(AwardWritten::Recorded)
    }
}

/// A unit as the writer runs it: owned, checked for what SQL can hold.
enum Row {
    Post(PostRow),
    Bind(BindRow),
    Award(AwardRow),
}

impl Row {
    fn of(write: &CpoWrite) -> Result<Row, Error> {
        Ok(match write {
            CpoWrite::Post(entry) => Row::Post(PostRow::of(entry)?),
            CpoWrite::Bind {
                cpo,
                binding,
                session,
            } => Row::Bind(BindRow::of(cpo, binding, Some(*session))?),
            CpoWrite::Award { cpo, award, winner } => Row::Award(AwardRow {
                cpo: *cpo,
                award: award.clone(),
                winner: winner
                    .as_ref()
                    .map(|b| BindRow::of(cpo, b, None))
                    .transpose()?,
            }),
        })
    }

    /// The write, then, if it applied, the evidence: inside one request.
    fn run(
        &self,
        conn: &Connection,
        evidence: &[Evidence],
        now: Timestamp,
    ) -> Result<CpoWritten, Error> {
        let written = match self {
            Row::Post(r) => CpoWritten::Post(r.insert(conn)?),
            Row::Bind(r) => CpoWritten::Bind(r.insert(conn)?),
            Row::Award(r) => CpoWritten::Award(r.insert(conn)?),
        };
        if written.applied() {
            crate::failpoint::hit("cpo-unit-before-evidence")?;
            record_in(conn, evidence, now)?;
        }
        Ok(written)
    }
}

impl CpoStore for SqliteCpoStore {
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
        let prepared = unit
            .evidence
            .iter()
            .try_for_each(Evidence::check)
            .and_then(|()| Row::of(&unit.write));
        let row = match prepared {
            Ok(row) => row,
            Err(e) => return Commit::ready(Err(e)),
        };
        let evidence = unit.evidence;
        let ticket = match self
            .store
            .writer()
            .submit(move |conn| row.run(conn, &evidence, now))
        {
            Ok(t) => t,
            Err(e) => return Commit::ready(Err(e)),
        };
        let board = self.board.clone();
        let write = unit.write;
        Commit::new(async move {
            let written = ticket.await?;
            // What a committed unit showed is final: this process's reads
            // see it from now on.
            match (&write, &written) {
                (CpoWrite::Post(entry), CpoWritten::Post(PostOutcome::Posted)) => {
                    board.learn_post(entry)
                }
                (CpoWrite::Bind { cpo, .. }, CpoWritten::Bind(outcome)) => {
                    board.learn_bind(cpo, *outcome)
                }
                (CpoWrite::Award { cpo, .. }, CpoWritten::Award(AwardWritten::Recorded)) => {
                    if let CpoWrite::Award {
                        winner: Some(_), ..
                    } = &write
                    {
                        board.learn_bind(cpo, BindOutcome::Bound)
                    }
                }
                (CpoWrite::Award { cpo, .. }, CpoWritten::Award(AwardWritten::NotBound(o))) => {
                    board.learn_bind(cpo, *o)
                }
                _ => {}
            }
            Ok(written)
        })
    }
}
