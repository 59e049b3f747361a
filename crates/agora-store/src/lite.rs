//! [`ClientRecords`] (agora-lite's port: the vendor's client records of
//! the lightweight protocols) on SQLite: the table `lite_client` of
//! migration 13.
//!
//! What holds each rule, for every process sharing the file:
//! - the first SKEP for `(vendor, client)` wins: the primary key
//!   (`INSERT ... ON CONFLICT (vendor, client) DO NOTHING`; no row written
//!   is [`Subscribed::AlreadySubscribed`]), and the trigger
//!   `lite_client_fixed` refuses any change to a stored key;
//! - the chain moves forward by compare-and-set: `UPDATE ... WHERE
//!   last_index = ?from` (no row written, the row being there with a chain:
//!   [`Advanced::Stale`]), and the trigger `lite_client_forward`.
//!
//! `K` is sealed under the store's at-rest key ([`crate::at_rest`]), bound
//! to its row: the row key in the associated data is `len(vendor) ‖ vendor
//! ‖ client` (one length byte: ids are at most 255 bytes), so a sealed key
//! copied to another client's or another vendor's row does not open.

use crate::at_rest::Column;
use crate::db::storage;
use crate::SqliteStore;
use agora_core::wire::{Decoder, Encoder};
use agora_core::{Error, Result, Timestamp};
use agora_lite::records::{
    beyond_end, check_advance, check_record, no_chain, no_record, Advanced, ClientRecords,
    Subscribed,
};
use agora_lite::skep::ClientRecord;
use agora_lite::wire::Subscription;
use agora_lite::{ChainVerifier, ClientId, VendorId, VendorKey};
use rusqlite::{params, OptionalExtension, Row};

/// `lite_client.k`, keyed by [`row_key`].
pub(crate) const LITE_CLIENT_K: Column = Column {
    table: "lite_client",
    column: "k",
};

/// The vendor's client records on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteClientRecords {
    store: SqliteStore,
}

impl SqliteClientRecords {
    /// The client records of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteClientRecords { store }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt lite_client row: {what}"))
}

/// The row key `K` is bound to: `len(vendor) ‖ vendor ‖ client`.
fn row_key(id_v: &VendorId, id_c: &ClientId) -> Vec<u8> {
    let (v, c) = (id_v.as_bytes(), id_c.as_bytes());
    let mut key = Vec::with_capacity(1 + v.len() + c.len());
    // VendorId is at most MAX_ID_LEN (255) bytes.
    key.push(u8::try_from(v.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(v);
    key.extend_from_slice(c);
    key
}

fn encode_subscription(s: &Subscription) -> Vec<u8> {
    let mut e = Encoder::new();
    e.field(s);
    e.into_bytes()
}

fn decode_subscription(bytes: &[u8]) -> Result<Subscription> {
    let mut d = Decoder::new(bytes);
    let s = d.field().map_err(|_| corrupt("subscription"))?;
    d.finish().map_err(|_| corrupt("subscription"))?;
    Ok(s)
}

fn to_i64(x: u64, what: &'static str) -> Result<i64> {
    i64::try_from(x).map_err(|_| Error::ApiMisuse(what))
}

/// One row of `lite_client` as read: `K` still sealed.
struct RawRecord {
    sealed_k: Vec<u8>,
    subscription: Vec<u8>,
    chain_anchor: Option<Vec<u8>>,
    chain_n: Option<i64>,
    last_index: Option<i64>,
    last_value: Option<Vec<u8>>,
}

impl RawRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawRecord> {
        Ok(RawRecord {
            sealed_k: r.get(0)?,
            subscription: r.get(1)?,
            chain_anchor: r.get(2)?,
            chain_n: r.get(3)?,
            last_index: r.get(4)?,
            last_value: r.get(5)?,
        })
    }

    fn chain(&self) -> Result<Option<ChainVerifier>> {
        match (
            self.chain_anchor.as_deref(),
            self.chain_n,
            self.last_index,
            self.last_value.as_deref(),
        ) {
            (None, None, None, None) => Ok(None),
            (Some(anchor), Some(n), Some(last_index), Some(last_value)) => {
                let anchor: [u8; 32] = anchor.try_into().map_err(|_| corrupt("chain_anchor"))?;
                let last_value: [u8; 32] =
                    last_value.try_into().map_err(|_| corrupt("last_value"))?;
                let n = u64::try_from(n).map_err(|_| corrupt("chain_n"))?;
                let last_index = u64::try_from(last_index).map_err(|_| corrupt("last_index"))?;
                ChainVerifier::from_parts(anchor, n, last_index, last_value)
                    .map(Some)
                    .map_err(|e| corrupt(&format!("chain: {e}")))
            }
            _ => Err(corrupt("a chain in part")),
        }
    }

    /// The record, `K` opened with the store's at-rest key (refused unless
    /// it was sealed for this row).
    fn to_record(
        &self,
        store: &SqliteStore,
        id_v: &VendorId,
        id_c: &ClientId,
    ) -> Result<ClientRecord> {
        let k = store
            .at_rest()
            .open_32(LITE_CLIENT_K, &row_key(id_v, id_c), &self.sealed_k)?;
        let record = ClientRecord {
            id_c: id_c.clone(),
            k: VendorKey::from_shared_key(k),
            subscription: decode_subscription(&self.subscription)?,
            chain: self.chain()?,
        };
        check_record(&record).map_err(|_| corrupt("the chain differs from the subscription's"))?;
        Ok(record)
    }
}

impl ClientRecords for SqliteClientRecords {
    fn subscribe(
        &self,
        id_v: &VendorId,
        record: &ClientRecord,
        now: Timestamp,
    ) -> Result<Subscribed> {
        check_record(record)?;
        // Sealed here, not on the writer's thread: it holds up the batch.
        let sealed_k = self.store.at_rest().seal(
            LITE_CLIENT_K,
            &row_key(id_v, &record.id_c),
            record.k.k().expose(),
        );
        let subscription = encode_subscription(&record.subscription);
        let created_at = to_i64(now.secs(), "subscription time beyond i64::MAX seconds")?;
        let chain = match &record.chain {
            Some(c) => Some((
                c.anchor(),
                to_i64(c.n(), "chain length beyond i64::MAX")?,
                to_i64(c.last_index(), "chain index beyond i64::MAX")?,
                c.last_value(),
            )),
            None => None,
        };
        let (anchor, n, last_index, last_value) = match chain {
            Some((a, n, i, w)) => (Some(a.to_vec()), Some(n), Some(i), Some(w.to_vec())),
            None => (None, None, None, None),
        };
        let (vendor, client) = (id_v.as_str().to_owned(), record.id_c.as_str().to_owned());
        let n_written = self.store.writer().execute(move |conn| {
            // One statement: a record stored before (the first SKEP) is
            // left as it is, whatever this one holds.
            conn.prepare_cached(
                "INSERT INTO lite_client (vendor, client, k, subscription, chain_anchor,
                     chain_n, last_index, last_value, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (vendor, client) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    vendor,
                    client,
                    sealed_k,
                    subscription,
                    anchor,
                    n,
                    last_index,
                    last_value,
                    created_at
                ])
            })
            .map_err(storage)
        })?;
        Ok(match n_written {
            1 => Subscribed::New,
            _ => Subscribed::AlreadySubscribed,
        })
    }

    fn get(&self, id_v: &VendorId, id_c: &ClientId) -> Result<Option<ClientRecord>> {
        let raw = self.store.read(|conn| {
            conn.prepare_cached(
                "SELECT k, subscription, chain_anchor, chain_n, last_index, last_value
                 FROM lite_client WHERE vendor = ?1 AND client = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![id_v.as_str(), id_c.as_str()], RawRecord::from_row)
                    .optional()
            })
            .map_err(storage)
        })?;
        raw.map(|r| r.to_record(&self.store, id_v, id_c))
            .transpose()
    }

    fn advance_chain(
        &self,
        id_v: &VendorId,
        id_c: &ClientId,
        from_index: u64,
        to_index: u64,
        to_value: &[u8; 32],
    ) -> Result<Advanced> {
        check_advance(from_index, to_index)?;
        let from = to_i64(from_index, "chain index beyond i64::MAX")?;
        let to = to_i64(to_index, "chain index beyond i64::MAX")?;
        let (vendor, client, value) = (
            id_v.as_str().to_owned(),
            id_c.as_str().to_owned(),
            to_value.to_vec(),
        );
        // What the writer found: written, or the row's (chain_n,
        // last_index) if it is there.
        type Found = Option<Option<(Option<i64>, Option<i64>)>>;
        let found: Found = self.store.writer().execute(move |conn| {
            // Compare-and-set: written only if the last index is still the
            // caller's and the new one is within the chain.
            let n = conn
                .prepare_cached(
                    "UPDATE lite_client SET last_index = ?4, last_value = ?5
                     WHERE vendor = ?1 AND client = ?2 AND last_index = ?3 AND ?4 <= chain_n",
                )
                .and_then(|mut st| st.execute(params![vendor, client, from, to, value]))
                .map_err(storage)?;
            if n == 1 {
                return Ok(None);
            }
            let row = conn
                .prepare_cached(
                    "SELECT chain_n, last_index FROM lite_client WHERE vendor = ?1 AND client = ?2",
                )
                .and_then(|mut st| {
                    st.query_row(params![vendor, client], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(storage)?;
            Ok(Some(row))
        })?;
        match found {
            None => Ok(Advanced::Advanced),
            Some(None) => Err(no_record(id_v, id_c)),
            Some(Some((None, None))) => Err(no_chain(id_v, id_c)),
            Some(Some((Some(n), Some(last)))) => {
                if last != from {
                    return Ok(Advanced::Stale);
                }
                let n = u64::try_from(n).map_err(|_| corrupt("chain_n"))?;
                if to_index > n {
                    return Err(beyond_end(to_index, n));
                }
                Err(corrupt(
                    "the chain did not advance, yet its index is the one given",
                ))
            }
            Some(Some(_)) => Err(corrupt("a chain in part")),
        }
    }
}
