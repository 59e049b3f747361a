//! [`CommitLog`] (agora-stp's port: the STP commit authority's durable log)
//! on SQLite: the tables `stp_tx`, `stp_leaf` and `stp_head` of migration
//! 12.
//!
//! A [`LogUnit`] is one request to the group-commit writer, so the units of
//! concurrent CA steps share a transaction and each is acknowledged only
//! once that transaction is durable. Inside the request's savepoint, in
//! order, each part writing nothing when its condition fails:
//!
//! 1. the record, only at the version the unit was computed from: for
//!    version 0 an `INSERT ... ON CONFLICT (tid) DO NOTHING` (the primary
//!    key of `stp_tx` refuses a second first write), after it an
//!    `UPDATE ... WHERE tid = ? AND version = ?`. No row written is
//!    [`LogWritten::Conflict`], and the request ends there, having written
//!    nothing. This conditional write, not the isolation level, is what
//!    keeps two steps on one transaction from both applying, across
//!    processes sharing the file. With a leaf, the same statement sets the
//!    record's `leaf_index` to the next index (`MAX(idx) + 1` of
//!    `stp_leaf`, read by the statement inside the writer's transaction);
//!    the trigger `stp_tx_one_leaf` refuses it if the record has a leaf
//!    already;
//! 2. with a leaf, the leaf at that index. `UNIQUE (tid)` of `stp_leaf`
//!    holds one leaf per transaction; the trigger `stp_leaf_dense` (a leaf
//!    goes at `MAX(idx) + 1`), `CHECK (idx >= 0)` and the refusal of
//!    UPDATE and DELETE hold the indices dense from 0; the foreign key
//!    `(idx, tid) -> stp_tx (leaf_index, tid)` holds that the leaf and its
//!    transaction's record agree.
//!
//! A request failing at 2 (or between 1 and 2) rolls its savepoint back,
//! and a failed COMMIT fails every request of its batch: a unit is whole or
//! absent. [`CommitLog::record_head`] is one conditional `INSERT` in the
//! writer's transaction: it writes only if the size is at least the latest
//! head's and at most the leaf count, both read by the same statement.

use crate::db::storage;
use crate::SqliteStore;
use agora_core::ports::Commit;
use agora_core::{Error, Result, Timestamp};
use agora_stp::log::{CommitLog, LogUnit, LogWritten, StoredTx, MAX_LEAF_PAGE};
use agora_stp::Tid;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

/// The commit authority's log on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteCommitLog {
    store: SqliteStore,
}

impl SqliteCommitLog {
    /// The commit log of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteCommitLog { store }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt STP log row: {what}"))
}

/// A stored non-negative integer as a `u64`.
fn count_back(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

/// An index or count asked for as an SQLite integer (clamped: no row has
/// an index beyond `i64::MAX`).
fn index_arg(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Step 1 of a unit, by version (0: new) and whether it carries a leaf.
/// `?1` tid, `?2` record, `?3` deadline, `?4` the version it was computed
/// from (updates only). Each returns the record's leaf index, and no row
/// if it wrote nothing.
const INSERT_RECORD: &str = "INSERT INTO stp_tx (tid, version, record, deadline)
     VALUES (?1, 1, ?2, ?3)
     ON CONFLICT (tid) DO NOTHING
     RETURNING leaf_index";
const INSERT_DECIDED_RECORD: &str =
    "INSERT INTO stp_tx (tid, version, record, deadline, leaf_index)
     VALUES (?1, 1, ?2, ?3, (SELECT COALESCE(MAX(idx), -1) + 1 FROM stp_leaf))
     ON CONFLICT (tid) DO NOTHING
     RETURNING leaf_index";
const UPDATE_RECORD: &str = "UPDATE stp_tx SET version = version + 1, record = ?2, deadline = ?3
     WHERE tid = ?1 AND version = ?4
     RETURNING leaf_index";
const UPDATE_DECIDED_RECORD: &str =
    "UPDATE stp_tx SET version = version + 1, record = ?2, deadline = ?3,
         leaf_index = (SELECT COALESCE(MAX(idx), -1) + 1 FROM stp_leaf)
     WHERE tid = ?1 AND version = ?4
     RETURNING leaf_index";

/// Whether `e` is a constraint's refusal (a trigger's RAISE included).
fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

/// A unit as the writer runs it (see the module documentation).
fn write_unit(conn: &Connection, unit: &LogUnit) -> Result<LogWritten> {
    let tid = unit.tid.0.as_slice();
    let deadline = crate::ts_ordered(unit.deadline);
    let second_leaf = |e: rusqlite::Error| {
        if unit.leaf.is_some() && is_constraint(&e) {
            Error::Storage(format!(
                "a second outcome leaf for STP transaction {}: {e}",
                unit.tid
            ))
        } else {
            storage(e)
        }
    };
    let written: Option<Option<i64>> = if unit.version == 0 {
        let sql = if unit.leaf.is_some() {
            INSERT_DECIDED_RECORD
        } else {
            INSERT_RECORD
        };
        conn.prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row(params![tid, unit.record, deadline], |r| r.get(0))
                    .optional()
            })
            .map_err(second_leaf)?
    } else {
        let Ok(version) = i64::try_from(unit.version) else {
            // No record is at a version beyond i64::MAX.
            return Ok(LogWritten::Conflict);
        };
        let sql = if unit.leaf.is_some() {
            UPDATE_DECIDED_RECORD
        } else {
            UPDATE_RECORD
        };
        conn.prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row(params![tid, unit.record, deadline, version], |r| r.get(0))
                    .optional()
            })
            .map_err(second_leaf)?
    };
    let Some(leaf_index) = written else {
        return Ok(LogWritten::Conflict);
    };
    let Some(leaf) = &unit.leaf else {
        return Ok(LogWritten::Written { leaf_index: None });
    };
    let idx = leaf_index.ok_or_else(|| corrupt("a decided record without a leaf index"))?;
    crate::failpoint::hit("stp-unit-before-leaf")?;
    conn.prepare_cached("INSERT INTO stp_leaf (idx, tid, leaf) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![idx, tid, leaf]))
        .map_err(second_leaf)?;
    Ok(LogWritten::Written {
        leaf_index: Some(count_back(idx, "leaf index")?),
    })
}

/// The leaf count: dense indices from 0 make it `MAX(idx) + 1` (a lookup at
/// the end of the primary key, where `COUNT(*)` would read every leaf).
const LEAF_COUNT: &str = "SELECT COALESCE(MAX(idx), -1) + 1 FROM stp_leaf";

/// The latest head's size, 0 without one.
const LATEST_SIZE: &str = "SELECT COALESCE((SELECT size FROM stp_head ORDER BY n DESC LIMIT 1), 0)";

impl CommitLog for SqliteCommitLog {
    fn get(&self, tid: &Tid) -> Result<Option<StoredTx>> {
        let row: Option<(i64, Vec<u8>, Option<i64>)> = self.store.read(|conn| {
            conn.prepare_cached("SELECT version, record, leaf_index FROM stp_tx WHERE tid = ?1")
                .and_then(|mut st| {
                    st.query_row([tid.0.as_slice()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(storage)
        })?;
        row.map(|(version, record, leaf_index)| {
            Ok(StoredTx {
                version: count_back(version, "version")?,
                record,
                leaf_index: leaf_index
                    .map(|i| count_back(i, "leaf index"))
                    .transpose()?,
            })
        })
        .transpose()
    }

    fn commit(&self, unit: LogUnit) -> Commit<LogWritten> {
        match self
            .store
            .writer()
            .submit(move |conn| write_unit(conn, &unit))
        {
            Ok(ticket) => Commit::new(ticket),
            Err(e) => Commit::ready(Err(e)),
        }
    }

    fn leaf_count(&self) -> Result<u64> {
        let n: i64 = self.store.read(|conn| {
            conn.prepare_cached(LEAF_COUNT)
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(storage)
        })?;
        count_back(n, "leaf count")
    }

    fn leaves(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
        let limit = limit.min(MAX_LEAF_PAGE) as i64;
        let from = index_arg(from);
        self.store.read(|conn| {
            conn.prepare_cached("SELECT leaf FROM stp_leaf WHERE idx >= ?1 ORDER BY idx LIMIT ?2")
                .and_then(|mut st| {
                    st.query_map(params![from, limit], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()
                })
                .map_err(storage)
        })
    }

    fn record_head(&self, size: u64, head: &[u8]) -> Result<()> {
        let Ok(size_arg) = i64::try_from(size) else {
            return Err(Error::Storage(format!(
                "a tree head of {size} leaves, over the log's leaves"
            )));
        };
        let head = head.to_vec();
        self.store.writer().execute(move |conn| {
            // The check and the write are one statement, in the writer's
            // transaction: no head or leaf can come between them.
            let n = conn
                .prepare_cached(&format!(
                    "INSERT INTO stp_head (size, head) SELECT ?1, ?2
                     WHERE ?1 >= ({LATEST_SIZE}) AND ?1 <= ({LEAF_COUNT})"
                ))
                .and_then(|mut st| st.execute(params![size_arg, head]))
                .map_err(storage)?;
            if n == 1 {
                return Ok(());
            }
            let (latest, count): (i64, i64) = conn
                .query_row(
                    &format!("SELECT ({LATEST_SIZE}), ({LEAF_COUNT})"),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(storage)?;
            Err(Error::Storage(format!(
                "a tree head of {size} leaves after one of {latest}, over {count} leaves"
            )))
        })
    }

    fn latest_head(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let row: Option<(i64, Vec<u8>)> = self.store.read(|conn| {
            conn.prepare_cached("SELECT size, head FROM stp_head ORDER BY n DESC LIMIT 1")
                .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(storage)
        })?;
        row.map(|(size, head)| Ok((count_back(size, "head size")?, head)))
            .transpose()
    }

    fn undecided_past(&self, now: Timestamp, limit: usize) -> Result<Vec<Tid>> {
        let now = crate::ts_ordered(now);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let tids: Vec<Vec<u8>> = self.store.read(|conn| {
            // The partial index stp_tx_undecided: undecided rows only, by
            // deadline, so the sweep reads no decided transaction.
            conn.prepare_cached(
                "SELECT tid FROM stp_tx WHERE leaf_index IS NULL AND deadline <= ?1
                 ORDER BY deadline, tid LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(params![now, limit], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(storage)
        })?;
        tids.into_iter()
            .map(|t| {
                t.try_into()
                    .map(Tid)
                    .map_err(|_| corrupt("a TID not of 16 bytes"))
            })
            .collect()
    }
}
