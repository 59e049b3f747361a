//! [`HandshakeRegister`] (agora-speed's vendor port) on SQLite: the table
//! `speed_handshake` of migration 8, one register per vendor key.

use crate::db::storage;
use crate::Store;
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_speed::vendor::HandshakeRegister;
use agora_speed::Nid;
use rusqlite::params;

/// The handshake register of the vendor `vendor` on a [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteHandshakes {
    store: Store,
    vendor: KeyId,
}

impl SqliteHandshakes {
    /// The register of the vendor with key id `vendor`.
    pub fn new(store: Store, vendor: KeyId) -> Self {
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
}
