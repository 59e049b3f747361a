//! [`ReplayCache`] on SQLite: uniqueness is the table's primary key
//! `(scope, nonce)`, so it holds across processes sharing the database.

use crate::db::storage;
use crate::{ts_ordered, SqliteStore};
use agora_core::ports::replay::{check_insert_args, Freshness, ReplayCache};
use agora_core::{Error, Timestamp};

/// Rows deleted per purge transaction: a purge of millions of expired nonces
/// must not hold the write lock (and delay every other request) for seconds.
const PURGE_CHUNK_ROWS: i64 = 10_000;

/// The replay cache port on a [`SqliteStore`]. Writes go through group commit.
#[derive(Clone, Debug)]
pub struct SqliteReplayCache {
    store: SqliteStore,
}

impl SqliteReplayCache {
    /// The replay cache of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteReplayCache { store }
    }
}

impl ReplayCache for SqliteReplayCache {
    fn check_and_insert(
        &self,
        scope: &str,
        nonce: &[u8; 32],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Freshness, Error> {
        check_insert_args(scope, expires_at, now)?;
        let (scope, nonce) = (scope.to_owned(), nonce.to_vec());
        let (expires_at, now) = (ts_ordered(expires_at), ts_ordered(now));
        self.store.writer().execute(move |conn| {
            // Insert, or take over an expired entry; a live entry is left
            // alone and nothing changes. One statement: atomic.
            let changed = conn
                .prepare_cached(
                    "INSERT INTO replay_cache (scope, nonce, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (scope, nonce) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE replay_cache.expires_at <= ?4",
                )
                .and_then(|mut st| st.execute(rusqlite::params![scope, nonce, expires_at, now]))
                .map_err(storage)?;
            Ok(if changed == 1 {
                Freshness::Fresh
            } else {
                Freshness::Replayed
            })
        })
    }

    fn purge_expired(&self, now: Timestamp) -> Result<usize, Error> {
        let now = ts_ordered(now);
        let mut total = 0usize;
        loop {
            let n = self.store.writer().execute(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM replay_cache WHERE (scope, nonce) IN
                       (SELECT scope, nonce FROM replay_cache WHERE expires_at <= ?1 LIMIT ?2)",
                )
                .and_then(|mut st| st.execute(rusqlite::params![now, PURGE_CHUNK_ROWS]))
                .map_err(storage)
            })?;
            total = total.saturating_add(n);
            if (n as i64) < PURGE_CHUNK_ROWS {
                return Ok(total);
            }
        }
    }
}
