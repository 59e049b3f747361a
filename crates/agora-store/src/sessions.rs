//! [`Sessions`] (agora-cpo's port) on SQLite: the browse sessions of a CPO
//! server (protocol 3). A session id is unique by the primary key; ending
//! is one conditional `UPDATE`, so "the first end stands" holds across
//! processes sharing the database.
//!
//! K_p is sealed under the store's at-rest key, bound to its session id
//! ([`crate::at_rest`]).

use crate::at_rest::{AtRestKey, SESSION_K_P};
use crate::db::storage;
use crate::SqliteStore;
use agora_core::{Error, KeyId, Timestamp};
use agora_cpo::ports::{EndOutcome, Session, Sessions};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// The sessions port on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteSessions {
    store: SqliteStore,
}

impl SqliteSessions {
    /// The browse sessions of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteSessions { store }
    }
}

/// A time stored only in a session row: refused unless it comes back as is.
/// Whether browse session `session` is stored and not ended, read in the
/// caller's write transaction (a bid's; a binding checks it in its own
/// statement, `board.rs`).
pub(crate) fn session_open(conn: &Connection, session: &[u8; 32]) -> Result<bool, Error> {
    conn.prepare_cached("SELECT 1 FROM cpo_session WHERE id = ?1 AND ended_at IS NULL")
        .and_then(|mut st| st.exists([session.as_slice()]))
        .map_err(storage)
}

fn ts_exact(t: Timestamp, what: &'static str) -> Result<i64, Error> {
    i64::try_from(t.secs()).map_err(|_| Error::ApiMisuse(what))
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt session row: {what}"))
}

fn ts_back(v: i64) -> Result<Timestamp, Error> {
    u64::try_from(v)
        .map(Timestamp)
        .map_err(|_| corrupt("negative time"))
}

/// One row of `cpo_session` as read, before it is checked: K_p still
/// sealed.
struct RawSession {
    id: Vec<u8>,
    sealed_k_p: Vec<u8>,
    seller: Vec<u8>,
    bond: Vec<u8>,
    bond_serial: Vec<u8>,
    agency: Vec<u8>,
    from_at: i64,
    until_at: i64,
    ended_at: Option<i64>,
}

/// The columns a [`Session`] is rebuilt from, in this order.
const SESSION_COLUMNS: &str =
    "id, k_p, seller, bond, bond_serial, agency, from_at, until_at, ended_at";

impl RawSession {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawSession> {
        Ok(RawSession {
            id: r.get(0)?,
            sealed_k_p: r.get(1)?,
            seller: r.get(2)?,
            bond: r.get(3)?,
            bond_serial: r.get(4)?,
            agency: r.get(5)?,
            from_at: r.get(6)?,
            until_at: r.get(7)?,
            ended_at: r.get(8)?,
        })
    }

    /// The session, its K_p opened with `key` (refused unless it was
    /// sealed for this session id).
    fn to_session(&self, key: &AtRestKey) -> Result<Session, Error> {
        let k_p = key.open_32(SESSION_K_P, &self.id, &self.sealed_k_p)?;
        Ok(Session {
            id: self.id.as_slice().try_into().map_err(|_| corrupt("id"))?,
            k_p: *k_p.expose(),
            seller: KeyId::from_slice(&self.seller).map_err(|_| corrupt("seller"))?,
            bond: self.bond.clone(),
            bond_serial: self.bond_serial.clone(),
            agency: KeyId::from_slice(&self.agency).map_err(|_| corrupt("agency"))?,
            from: ts_back(self.from_at)?,
            until: ts_back(self.until_at)?,
            ended_at: self.ended_at.map(ts_back).transpose()?,
        })
    }
}

impl Sessions for SqliteSessions {
    fn create(&self, s: &Session) -> Result<(), Error> {
        let from_at = ts_exact(s.from, "session start beyond i64::MAX seconds")?;
        let until_at = ts_exact(s.until, "session end beyond i64::MAX seconds")?;
        let ended_at = s
            .ended_at
            .map(|t| ts_exact(t, "session end time beyond i64::MAX seconds"))
            .transpose()?;
        // Sealed here, not on the writer's thread: it holds up the batch.
        let sealed_k_p = self.store.at_rest().seal(SESSION_K_P, &s.id, &s.k_p);
        // Cloned, not moved out of: `Session` wipes K_p on drop.
        let s = s.clone();
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO cpo_session (id, k_p, seller, bond, bond_serial, agency,
                        from_at, until_at, ended_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        s.id.as_slice(),
                        sealed_k_p,
                        s.seller.as_bytes().as_slice(),
                        s.bond.as_slice(),
                        s.bond_serial.as_slice(),
                        s.agency.as_bytes().as_slice(),
                        from_at,
                        until_at,
                        ended_at
                    ])
                })
                .map_err(storage)?;
            if n == 0 {
                return Err(Error::Refused("session id exists".into()));
            }
            Ok(())
        })
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<Session>, Error> {
        let raw = self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM cpo_session WHERE id = ?1"
            ))
            .and_then(|mut st| {
                st.query_row([id.as_slice()], RawSession::from_row)
                    .optional()
            })
            .map_err(storage)
        })?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let s = raw.to_session(self.store.at_rest())?;
        if &s.id != id {
            return Err(corrupt("id differs from the one asked for"));
        }
        Ok(Some(s))
    }

    fn end(&self, id: &[u8; 32], at: Timestamp) -> Result<EndOutcome, Error> {
        let at = ts_exact(at, "session end time beyond i64::MAX seconds")?;
        let id = *id;
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE cpo_session SET ended_at = ?1 WHERE id = ?2 AND ended_at IS NULL",
                )
                .and_then(|mut st| st.execute(params![at, id.as_slice()]))
                .map_err(storage)?;
            if n == 1 {
                return Ok(EndOutcome::Ended);
            }
            let exists = conn
                .prepare_cached("SELECT 1 FROM cpo_session WHERE id = ?1")
                .and_then(|mut st| st.exists([id.as_slice()]))
                .map_err(storage)?;
            Ok(if exists {
                EndOutcome::AlreadyEnded
            } else {
                EndOutcome::Unknown
            })
        })
    }

    fn live(&self, now: Timestamp, after: Option<[u8; 32]>) -> Result<Vec<Session>, Error> {
        let now = crate::ts_ordered(now);
        let after = after.map(|a| a.to_vec()).unwrap_or_default();
        let raws = self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM cpo_session
                 WHERE ended_at IS NULL AND until_at > ?1 AND id > ?2
                 ORDER BY id LIMIT ?3"
            ))
            .and_then(|mut st| {
                st.query_map(
                    params![now, after, agora_cpo::ports::MAX_PAGE_LEN as i64],
                    RawSession::from_row,
                )?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)
        })?;
        let key = self.store.at_rest();
        raws.iter().map(|r| r.to_session(key)).collect()
    }

    fn end_all_of(&self, seller: &KeyId, at: Timestamp) -> Result<usize, Error> {
        let at = ts_exact(at, "session end time beyond i64::MAX seconds")?;
        let seller = *seller;
        self.store.writer().execute(move |conn| {
            conn.prepare_cached(
                "UPDATE cpo_session SET ended_at = ?1 WHERE seller = ?2 AND ended_at IS NULL",
            )
            .and_then(|mut st| st.execute(params![at, seller.as_bytes().as_slice()]))
            .map_err(storage)
        })
    }
}
