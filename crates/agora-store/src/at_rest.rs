//! Secrets at rest: the columns of the database that hold secrets are
//! sealed under the store's **at-rest key** (ARCHITECTURE section 5,
//! "Secrets at rest"), so that a copy of the database file, of its `-wal`
//! file or of a backup of them gives none of them away.
//!
//! | table.column | what it holds |
//! |---|---|
//! | `cpo_session.k_p` | a browse session's K_p (whoever has it binds CPOs in the seller's name) |
//! | `speed_payment.k` | a paid product's key K |
//! | `speed_payment.bill` | the vendor-signed bill, which carries RecKey (it opens the receipt, which carries K) |
//! | `speed_hold.state` | a held card debit: its BEncKey, MAC key, K and bill |
//! | `stp_escrow.item` | an item the STP escrow holds for a transaction until it is settled |
//! | `lite_client.k` | a client's K_{C,V} with a lightweight vendor (whoever has it reads and sends in her name) |
//! | `store_at_rest.key_check` | a known value, to refuse a database sealed under another key at open |
//!
//! A sealed value is `nonce ‖ ChaCha20-Poly1305(at-rest key, nonce, aad,
//! secret)`, with a random 12-byte nonce and `aad = "agora-store/at-rest/1"
//! ‖ len ‖ table ‖ len ‖ column ‖ len ‖ row key` (lengths: one byte for the
//! names, four bytes big-endian for the row key). The associated data binds
//! each sealed value to its table, its column and its row (the row's
//! primary key): a value copied into another row, or another column, does
//! not open, and the read fails with [`Error::Storage`] naming the column
//! and the row (no detail of the cryptography).
//!
//! Random 96-bit nonces under one key stay safe for up to 2^32 sealed values
//! (collision probability below 2^-32); a node seals one value per session,
//! payment and held debit, many orders of magnitude fewer.
//!
//! The key itself is never stored here: the driver that opens the store
//! brings it (agora-client derives it from the data directory's keystore).

use agora_core::crypto::{os_rng, random_bytes, AeadAlg, AeadKey, Rng, Secret, NONCE_LEN, TAG_LEN};
use agora_core::Error;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Bytes a sealed value adds to its secret: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The prefix of every sealed value's associated data (its version).
const AAD_PREFIX: &[u8] = b"agora-store/at-rest/1";

/// The key the secret columns are sealed under: a 256-bit ChaCha20-Poly1305
/// key, wiped when the last clone is dropped. `Debug` prints nothing of it.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct AtRestKey {
    aead: Arc<AeadKey>,
}

impl std::fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRestKey(..)")
    }
}

impl AtRestKey {
    /// The at-rest key `key` (kept by the driver: agora-client derives it
    /// from the keystore).
    pub fn new(key: &Secret<32>) -> AtRestKey {
        AtRestKey {
            aead: Arc::new(AeadKey::new(AeadAlg::ChaCha20Poly1305, key)),
        }
    }

    /// A fresh random key: for a store that lives no longer than this
    /// process (a test's, a benchmark's).
    pub fn generate(rng: &mut impl Rng) -> AtRestKey {
        AtRestKey::new(&Secret::random(rng))
    }

    /// Seals `secret`, to be stored in `column` of the row whose primary
    /// key is `row`.
    pub(crate) fn seal(&self, column: Column, row: &[u8], secret: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random_bytes(&mut os_rng());
        // Room for the tag from the start: the plaintext is encrypted where
        // it lies, never left behind in a reallocated buffer.
        let mut body = Vec::with_capacity(secret.len() + TAG_LEN);
        body.extend_from_slice(secret);
        self.aead.seal_in_place(&nonce, &column.aad(row), &mut body);
        let mut sealed = Vec::with_capacity(NONCE_LEN + body.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        sealed
    }

    /// Opens a value read from `column` of the row whose primary key is
    /// `row`. Fails with [`Error::Storage`] if it was not sealed there under
    /// this key (changed, moved from another row or column, or sealed under
    /// another key).
    pub(crate) fn open(
        &self,
        column: Column,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let refused = || {
            Error::Storage(format!(
                "{}.{} of row {} does not open under this store's at-rest key: \
                 the row was changed or moved, or the database is sealed under another key",
                column.table,
                column.column,
                hex_prefix(row)
            ))
        };
        if sealed.len() < SEAL_OVERHEAD {
            return Err(refused());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| refused())?;
        let mut buf = Zeroizing::new(body.to_vec());
        self.aead
            .open_in_place(&nonce, &column.aad(row), &mut buf)
            .map_err(|_| refused())?;
        Ok(buf)
    }

    /// Opens a sealed 32-byte secret (a key).
    pub(crate) fn open_32(
        &self,
        column: Column,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Secret<32>, Error> {
        let plain = self.open(column, row, sealed)?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| {
            Error::Storage(format!(
                "{}.{} of row {}: not 32 bytes once opened",
                column.table,
                column.column,
                hex_prefix(row)
            ))
        })?;
        let secret = Secret::new(bytes);
        let mut bytes = bytes;
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(secret)
    }
}

/// The first 8 bytes of a row key, in hex: enough to find the row.
fn hex_prefix(row: &[u8]) -> String {
    row.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A secret column: the table and the column its sealed values belong to
/// (part of their associated data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
}

impl Column {
    fn aad(&self, row: &[u8]) -> Vec<u8> {
        let mut a = Vec::with_capacity(AAD_PREFIX.len() + 2 + 40 + 4 + row.len());
        a.extend_from_slice(AAD_PREFIX);
        for name in [self.table, self.column] {
            // Names are this crate's constants, far shorter than 256 bytes.
            a.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            a.extend_from_slice(name.as_bytes());
        }
        // Row keys are ids of 32 or 48 bytes.
        a.extend_from_slice(&u32::try_from(row.len()).unwrap_or(u32::MAX).to_be_bytes());
        a.extend_from_slice(row);
        a
    }
}

/// `cpo_session.k_p`, keyed by the session id.
pub(crate) const SESSION_K_P: Column = Column {
    table: "cpo_session",
    column: "k_p",
};
/// `speed_payment.k`, keyed by the PaymentOrderID.
pub(crate) const PAYMENT_K: Column = Column {
    table: "speed_payment",
    column: "k",
};
/// `speed_payment.bill`, keyed by the PaymentOrderID.
pub(crate) const PAYMENT_BILL: Column = Column {
    table: "speed_payment",
    column: "bill",
};
/// `speed_hold.state`, keyed by the PaymentOrderID.
pub(crate) const HOLD_STATE: Column = Column {
    table: "speed_hold",
    column: "state",
};
/// `stp_escrow.item`, keyed by the deposit id.
pub(crate) const ESCROW_ITEM: Column = Column {
    table: "stp_escrow",
    column: "item",
};
/// `store_at_rest.key_check`, in its only row (key `1`).
pub(crate) const KEY_CHECK: Column = Column {
    table: "store_at_rest",
    column: "key_check",
};

/// What `store_at_rest.key_check` seals.
const KEY_CHECK_VALUE: &[u8] = b"agora-store at-rest key check";

/// The row key of `store_at_rest`'s only row.
const KEY_CHECK_ROW: &[u8] = &[1];

/// Records the key check of `key` (migration 11, in its transaction).
pub(crate) fn write_key_check(conn: &rusqlite::Connection, key: &AtRestKey) -> Result<(), Error> {
    let sealed = key.seal(KEY_CHECK, KEY_CHECK_ROW, KEY_CHECK_VALUE);
    conn.execute(
        "INSERT INTO store_at_rest (one, key_check) VALUES (1, ?1)",
        [sealed],
    )
    .map_err(crate::db::storage)?;
    Ok(())
}

/// Refuses to go on with `key` unless the database was sealed under it: a
/// wrong key is caught at open, not at the first secret read.
pub(crate) fn check_key(conn: &rusqlite::Connection, key: &AtRestKey) -> Result<(), Error> {
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT key_check FROM store_at_rest WHERE one = 1",
            [],
            |r| r.get(0),
        )
        .map_err(|e| Error::Storage(format!("reading the at-rest key check: {e}")))?;
    match key.open(KEY_CHECK, KEY_CHECK_ROW, &sealed) {
        Ok(v) if v.as_slice() == KEY_CHECK_VALUE => Ok(()),
        _ => Err(Error::Storage(
            "the database's secrets are sealed under another at-rest key \
             (is it another data directory's store, or another keystore?)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_in_its_own_row_and_column_under_its_key() {
        let key = AtRestKey::new(&Secret::new([7; 32]));
        let sealed = key.seal(SESSION_K_P, &[1; 32], b"secret");
        assert_eq!(sealed.len(), 6 + SEAL_OVERHEAD);
        assert_eq!(
            key.open(SESSION_K_P, &[1; 32], &sealed).unwrap().as_slice(),
            b"secret"
        );
        let e = key.open(SESSION_K_P, &[2; 32], &sealed).unwrap_err();
        assert!(
            matches!(&e, Error::Storage(m) if m.contains("cpo_session.k_p of row 0202")),
            "{e:?}"
        );
        assert!(
            key.open(PAYMENT_K, &[1; 32], &sealed).is_err(),
            "another column"
        );
        let other = AtRestKey::new(&Secret::new([8; 32]));
        assert!(
            other.open(SESSION_K_P, &[1; 32], &sealed).is_err(),
            "another key"
        );
        assert!(
            key.open(SESSION_K_P, &[1; 32], &sealed[..20]).is_err(),
            "cut"
        );
        assert_ne!(
            key.seal(SESSION_K_P, &[1; 32], b"secret"),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(format!("{key:?}"), "AtRestKey(..)");
    }
}
