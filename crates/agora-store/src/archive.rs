//! [`EvidenceArchive`] on SQLite. An append reads the current head and
//! inserts the next entry inside one write request, and the single writer
//! runs requests one after another, so concurrent appends chain correctly.

use crate::db::storage;
use crate::SqliteStore;
use agora_core::ports::archive::{
    check_append_args, ArchiveEntry, EvidenceArchive, GENESIS_PREV_HASH, MAX_PAGE_LEN,
};
use agora_core::ports::{Commit, Evidence};
use agora_core::{Error, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row};

/// The evidence archive port on a [`SqliteStore`]. Appends go through group commit;
/// reads use the read connections.
#[derive(Clone, Debug)]
pub struct SqliteArchive {
    store: SqliteStore,
}

impl SqliteArchive {
    /// The evidence archive of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteArchive { store }
    }
}

/// `recorded_at` is stored bit for bit (u64 as i64) so that the hash input
/// round-trips exactly; SQL never compares it.
fn ts_bits(t: Timestamp) -> i64 {
    i64::from_be_bytes(t.secs().to_be_bytes())
}

fn ts_from_bits(v: i64) -> Timestamp {
    Timestamp(u64::from_be_bytes(v.to_be_bytes()))
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], Error> {
    v.try_into()
        .map_err(|_| Error::Storage(format!("corrupt archive row: {what} is not 32 bytes")))
}

const COLUMNS: &str = "seq, recorded_at, kind, payload, prev_hash, hash";

fn entry_from_row(r: &Row<'_>) -> Result<ArchiveEntry, Error> {
    let seq: i64 = r.get(0).map_err(storage)?;
    Ok(ArchiveEntry {
        seq: u64::try_from(seq).map_err(|_| Error::Storage("corrupt archive row: seq".into()))?,
        recorded_at: ts_from_bits(r.get(1).map_err(storage)?),
        kind: r.get(2).map_err(storage)?,
        payload: r.get(3).map_err(storage)?,
        prev_hash: hash32(r.get(4).map_err(storage)?, "prev_hash")?,
        hash: hash32(r.get(5).map_err(storage)?, "hash")?,
    })
}

fn seq_sql(seq: u64) -> i64 {
    // Seqs beyond i64::MAX do not exist: clamping makes them "not found".
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn read_head(conn: &Connection) -> Result<Option<(u64, [u8; 32])>, Error> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM evidence_archive ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(storage)?;
    match row {
        None => Ok(None),
        Some((seq, hash)) => {
            let seq = u64::try_from(seq)
                .map_err(|_| Error::Storage("corrupt archive row: seq".into()))?;
            Ok(Some((seq, hash32(hash, "hash")?)))
        }
    }
}

/// Appends the next entry inside the caller's write request (the unit of a
/// step appends its evidence beside its other writes): it reads the head
/// and inserts after it, and the single writer runs requests one after
/// another, so concurrent appends chain correctly.
pub(crate) fn append_in(
    conn: &Connection,
    kind: &str,
    payload: &[u8],
    now: Timestamp,
) -> Result<ArchiveEntry, Error> {
    check_append_args(kind, payload)?;
    let (seq, prev_hash) = match read_head(conn)? {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_PREV_HASH),
    };
    let e = ArchiveEntry::new(seq, now, kind.to_owned(), payload.to_vec(), prev_hash);
    conn.prepare_cached(
        "INSERT INTO evidence_archive (seq, recorded_at, kind, payload, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(rusqlite::params![
            seq_sql(e.seq),
            ts_bits(e.recorded_at),
            e.kind,
            e.payload,
            e.prev_hash.as_slice(),
            e.hash.as_slice()
        ])
    })
    .map_err(storage)?;
    Ok(e)
}

/// Appends every piece of `evidence` inside the caller's write request.
pub(crate) fn record_in(
    conn: &Connection,
    evidence: &[Evidence],
    now: Timestamp,
) -> Result<Vec<ArchiveEntry>, Error> {
    evidence
        .iter()
        .map(|e| append_in(conn, e.kind, &e.payload, now))
        .collect()
}

impl EvidenceArchive for SqliteArchive {
    fn append(&self, kind: &str, payload: &[u8], now: Timestamp) -> Result<ArchiveEntry, Error> {
        check_append_args(kind, payload)?;
        let (kind, payload) = (kind.to_owned(), payload.to_vec());
        self.store
            .writer()
            .execute(move |conn| append_in(conn, &kind, &payload, now))
    }

    fn record(&self, evidence: Vec<Evidence>, now: Timestamp) -> Commit<Vec<ArchiveEntry>> {
        if let Err(e) = evidence.iter().try_for_each(Evidence::check) {
            return Commit::ready(Err(e));
        }
        match self
            .store
            .writer()
            .submit(move |conn| record_in(conn, &evidence, now))
        {
            Ok(ticket) => Commit::new(ticket),
            Err(e) => Commit::ready(Err(e)),
        }
    }

    fn get(&self, seq: u64) -> Result<Option<ArchiveEntry>, Error> {
        self.store.read(|conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM evidence_archive WHERE seq = ?1"
                ))
                .map_err(storage)?;
            let mut rows = st.query([seq_sql(seq)]).map_err(storage)?;
            match rows.next().map_err(storage)? {
                Some(r) => entry_from_row(r).map(Some),
                None => Ok(None),
            }
        })
    }

    fn entries(&self, from_seq: u64, limit: usize) -> Result<Vec<ArchiveEntry>, Error> {
        let limit = limit.min(MAX_PAGE_LEN);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.store.read(|conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM evidence_archive WHERE seq >= ?1 ORDER BY seq LIMIT ?2"
                ))
                .map_err(storage)?;
            let mut rows = st
                .query(rusqlite::params![seq_sql(from_seq), limit as i64])
                .map_err(storage)?;
            let mut out = Vec::with_capacity(limit);
            while let Some(r) = rows.next().map_err(storage)? {
                out.push(entry_from_row(r)?);
            }
            Ok(out)
        })
    }

    fn head(&self) -> Result<Option<(u64, [u8; 32])>, Error> {
        self.store.read(read_head)
    }
}
