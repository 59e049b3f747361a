//! [`EscrowStore`] (agora-stp's port: the items the STP escrow holds) on
//! SQLite: the table `stp_escrow` of migration 12.
//!
//! What holds each rule, for every process sharing the file:
//! - a deposit id is held once, the first deposit standing: the primary key
//!   (`INSERT ... ON CONFLICT (id) DO NOTHING`);
//! - at most [`MAX_DEPOSITS_PER_TRANSACTION`] deposits per transaction: the
//!   same `INSERT` writes only if the transaction's count, read by the
//!   statement in the writer's transaction, is below it;
//! - settled exactly once: `UPDATE ... WHERE id = ? AND settled_at IS NULL`
//!   (no row written: settled before, or unknown), and the trigger
//!   `stp_escrow_settled_once` refuses any change to a settled row.
//!
//! The item is sealed under the store's at-rest key, bound to the deposit
//! id ([`crate::at_rest`]).

use crate::at_rest::{AtRestKey, ESCROW_ITEM};
use crate::db::storage;
use crate::SqliteStore;
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_stp::escrow::{
    DepositOutcome, EscrowStore, Held, SettleOutcome, Settlement, MAX_DEPOSITS_PER_TRANSACTION,
};
use agora_stp::Tid;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// The escrow's store on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteEscrowStore {
    store: SqliteStore,
}

impl SqliteEscrowStore {
    /// The escrow store of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteEscrowStore { store }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt escrow row: {what}"))
}

/// One row of `stp_escrow` as read: the item still sealed.
struct RawHeld {
    id: Vec<u8>,
    tid: Vec<u8>,
    depositor: Vec<u8>,
    recipient: Vec<u8>,
    sealed_item: Vec<u8>,
    receipt: Vec<u8>,
    settled_to: Option<Vec<u8>>,
    returned: Option<i64>,
    settled_at: Option<i64>,
}

/// The columns a [`Held`] is rebuilt from, in this order.
const HELD_COLUMNS: &str =
    "id, tid, depositor, recipient, item, receipt, settled_to, returned, settled_at";

impl RawHeld {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawHeld> {
        Ok(RawHeld {
            id: r.get(0)?,
            tid: r.get(1)?,
            depositor: r.get(2)?,
            recipient: r.get(3)?,
            sealed_item: r.get(4)?,
            receipt: r.get(5)?,
            settled_to: r.get(6)?,
            returned: r.get(7)?,
            settled_at: r.get(8)?,
        })
    }

    fn settlement(&self) -> Result<Option<Settlement>> {
        settlement_of(self.settled_to.as_deref(), self.returned, self.settled_at)
    }

    /// The deposit, its item opened with `key` (refused unless it was
    /// sealed for this deposit id).
    fn to_held(&self, key: &AtRestKey) -> Result<Held> {
        let item = key.open(ESCROW_ITEM, &self.id, &self.sealed_item)?;
        Ok(Held {
            id: self.id.as_slice().try_into().map_err(|_| corrupt("id"))?,
            tid: Tid(self.tid.as_slice().try_into().map_err(|_| corrupt("tid"))?),
            depositor: KeyId::from_slice(&self.depositor).map_err(|_| corrupt("depositor"))?,
            recipient: KeyId::from_slice(&self.recipient).map_err(|_| corrupt("recipient"))?,
            item: item.to_vec(),
            receipt: self.receipt.clone(),
            settled: self.settlement()?,
        })
    }
}

/// A settlement from its columns (all null: not settled).
fn settlement_of(
    to: Option<&[u8]>,
    returned: Option<i64>,
    at: Option<i64>,
) -> Result<Option<Settlement>> {
    match (to, returned, at) {
        (None, None, None) => Ok(None),
        (Some(to), Some(returned), Some(at)) => Ok(Some(Settlement {
            to: KeyId::from_slice(to).map_err(|_| corrupt("settled_to"))?,
            returned: match returned {
                0 => false,
                1 => true,
                _ => return Err(corrupt("returned")),
            },
            at: Timestamp(u64::try_from(at).map_err(|_| corrupt("settled_at"))?),
        })),
        _ => Err(corrupt("a settlement in part")),
    }
}

/// The row of deposit `id`, read on `conn`.
fn raw_held(conn: &Connection, id: &[u8; 32]) -> Result<Option<RawHeld>> {
    conn.prepare_cached(&format!(
        "SELECT {HELD_COLUMNS} FROM stp_escrow WHERE id = ?1"
    ))
    .and_then(|mut st| st.query_row([id.as_slice()], RawHeld::from_row).optional())
    .map_err(storage)
}

/// What a deposit request found, before the item of a deposit held before
/// is opened (off the writer's thread).
enum Deposited {
    Held,
    Before(Box<RawHeld>),
    Full,
}

impl EscrowStore for SqliteEscrowStore {
    fn deposit(&self, held: &Held) -> Result<DepositOutcome> {
        // Sealed here, not on the writer's thread: it holds up the batch.
        let sealed_item = self.store.at_rest().seal(ESCROW_ITEM, &held.id, &held.item);
        let (id, tid, depositor, recipient, receipt) = (
            held.id,
            held.tid,
            held.depositor,
            held.recipient,
            held.receipt.clone(),
        );
        let max = MAX_DEPOSITS_PER_TRANSACTION as i64;
        let found = self.store.writer().execute(move |conn| {
            // The limit and the write are one statement in the writer's
            // transaction: no deposit can come between the count and the
            // insert. A held id writes nothing (the first stands).
            let n = conn
                .prepare_cached(
                    "INSERT INTO stp_escrow (id, tid, depositor, recipient, item, receipt)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6
                     WHERE (SELECT COUNT(*) FROM stp_escrow WHERE tid = ?2) < ?7
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        id.as_slice(),
                        tid.0.as_slice(),
                        depositor.as_bytes().as_slice(),
                        recipient.as_bytes().as_slice(),
                        sealed_item,
                        receipt,
                        max
                    ])
                })
                .map_err(storage)?;
            if n == 1 {
                return Ok(Deposited::Held);
            }
            Ok(match raw_held(conn, &id)? {
                Some(raw) => Deposited::Before(Box::new(raw)),
                None => Deposited::Full,
            })
        })?;
        Ok(match found {
            Deposited::Held => DepositOutcome::Held,
            Deposited::Full => DepositOutcome::Full,
            Deposited::Before(raw) => {
                let h = raw.to_held(self.store.at_rest())?;
                if h.id != held.id {
                    return Err(corrupt("id differs from the one asked for"));
                }
                DepositOutcome::AlreadyHeld(Box::new(h))
            }
        })
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<Held>> {
        let Some(raw) = self.store.read(|conn| raw_held(conn, id))? else {
            return Ok(None);
        };
        let h = raw.to_held(self.store.at_rest())?;
        if &h.id != id {
            return Err(corrupt("id differs from the one asked for"));
        }
        Ok(Some(h))
    }

    fn settle(&self, id: &[u8; 32], s: &Settlement) -> Result<SettleOutcome> {
        let at = i64::try_from(s.at.secs())
            .map_err(|_| Error::ApiMisuse("settlement time beyond i64::MAX seconds"))?;
        let (id, to, returned) = (*id, s.to, i64::from(s.returned));
        let before = self.store.writer().execute(move |conn| {
            // Settled once: only an unsettled row is written.
            let n = conn
                .prepare_cached(
                    "UPDATE stp_escrow SET settled_to = ?2, returned = ?3, settled_at = ?4
                     WHERE id = ?1 AND settled_at IS NULL",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        id.as_slice(),
                        to.as_bytes().as_slice(),
                        returned,
                        at
                    ])
                })
                .map_err(storage)?;
            if n == 1 {
                return Ok(None);
            }
            type Columns = (Option<Vec<u8>>, Option<i64>, Option<i64>);
            let row: Option<Columns> = conn
                .prepare_cached(
                    "SELECT settled_to, returned, settled_at FROM stp_escrow WHERE id = ?1",
                )
                .and_then(|mut st| {
                    st.query_row([id.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(storage)?;
            Ok(Some(row))
        })?;
        match before {
            None => Ok(SettleOutcome::Settled),
            Some(None) => Ok(SettleOutcome::Unknown),
            Some(Some((to, returned, at))) => match settlement_of(to.as_deref(), returned, at)? {
                Some(prev) => Ok(SettleOutcome::AlreadySettled(prev)),
                None => Err(corrupt("unsettled, yet the settlement was not written")),
            },
        }
    }

    fn of_transaction(&self, tid: &Tid) -> Result<Vec<Held>> {
        let raws = self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {HELD_COLUMNS} FROM stp_escrow WHERE tid = ?1 ORDER BY id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(
                    params![tid.0.as_slice(), MAX_DEPOSITS_PER_TRANSACTION as i64],
                    RawHeld::from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(storage)
        })?;
        let key = self.store.at_rest();
        raws.iter().map(|r| r.to_held(key)).collect()
    }
}
