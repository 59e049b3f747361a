//! [`HandshakeRegister`] (agora-speed's vendor port) on SQLite: the table
//! `speed_handshake` of migration 8, one register per vendor key.

use crate::db::storage;
use crate::SqliteStore;
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_speed::vendor::{DeliveryRecord, HandshakeRegister};
use agora_speed::Nid;
use rusqlite::params;

/// The handshake register of the vendor `vendor` on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteHandshakes {
    store: SqliteStore,
    vendor: KeyId,
}

impl SqliteHandshakes {
    /// The register of the vendor with key id `vendor`.
    pub fn new(store: SqliteStore, vendor: KeyId) -> Self {
        SqliteHandshakes { store, vendor }
    }
}

impl HandshakeRegister for SqliteHandshakes {
    fn record(&self, nid: &Nid, customer: &KeyId, at: Timestamp) -> Result<bool> {
        let at = i64::try_from(at.secs()).map_err(|_| Error::ApiMisuse("time beyond i64::MAX"))?;
        let (vendor, nid, customer) = (self.vendor.0, nid.0, customer.0);
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO speed_handshake (vendor, nid, customer, at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (vendor, nid) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![vendor.as_slice(), nid.as_slice(), customer.as_slice(), at])
                })
                .map_err(storage)?;
            Ok(n == 1)
        })
    }

    fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let vendor = self.vendor.0;
        self.store.read(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT nid, customer, at FROM speed_handshake WHERE vendor = ?1 \
                     ORDER BY at DESC, nid DESC LIMIT ?2",
                )
                .map_err(storage)?;
            let rows = st
                .query_map(params![vendor.as_slice(), limit], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .map_err(storage)?;
            let mut out = Vec::new();
            for row in rows {
                let (nid, customer, at) = row.map_err(storage)?;
                // The table's CHECKs hold these; a file changed behind our
                // back is reported, not trusted.
                let bad = || Error::Storage("speed_handshake: malformed row".into());
                out.push(DeliveryRecord {
                    nid: Nid(nid.try_into().map_err(|_| bad())?),
                    customer: KeyId(customer.try_into().map_err(|_| bad())?),
                    at: Timestamp(u64::try_from(at).map_err(|_| bad())?),
                });
            }
            Ok(out)
        })
    }
}
