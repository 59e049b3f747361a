//! agora-store: the storage ports of agora implemented on SQLite, the only
//! crate that knows SQL (ARCHITECTURE sections 1 and 5).
//!
//! - [`Stores`]: every port as a trait object, on the backend a
//!   [`StoreUrl`] names (`sqlite:PATH`; PostgreSQL to come), chosen at
//!   start-up: what the node and the CLI use, naming no backend type.
//! - [`SqliteStore`]: one database file (`<data-dir>/agora.db`, mode 0600),
//!   configured for durability (WAL, `synchronous=FULL`), migrated on open,
//!   with one group-commit writer and a pool of read connections; its
//!   secret columns sealed under an [`AtRestKey`] ([`at_rest`]).
//! - [`group_commit`]: concurrent write requests batched into one transaction,
//!   each in its own savepoint, each acknowledged only once durable.
//! - [`SqliteReplayCache`], [`SqliteArchive`]: the supporting layer's ports
//!   ([`agora_core::ports`]); [`SqliteAgencyRegistry`]: agora-pki's agency
//!   register; [`SqliteBoard`]: agora-cpo's board of posted CPOs and their
//!   bindings; [`SqliteSessions`]: agora-cpo's browse sessions;
//!   [`SqliteLedger`]: agora-speed's broker ledger and payment register;
//!   [`SqliteCpoStore`]: the CPO server's ports and units of work (a step's
//!   write and its evidence in one transaction); [`BoardViews`]: the
//!   board's reads for people (orders and cursors, bid counts, recently
//!   bound CPOs); [`SqliteCommitLog`]: agora-stp's commit authority log
//!   (one conditional unit per CA step, group-committed);
//!   [`SqliteEscrowStore`]: agora-stp's escrow (items sealed at rest,
//!   settled once); [`SqliteClientRecords`]: agora-lite's vendor client
//!   records (`K` sealed at rest, the first SKEP for an id winning, the
//!   hash chain advanced by compare-and-set). Their conformance suites run
//!   against them in this crate's tests.
#![forbid(unsafe_code)]

mod agency;
mod archive;
pub mod at_rest;
mod bids;
mod board;
mod board_cache;
pub mod board_views;
pub mod checkpoint;
mod commit_log;
mod cpo;
pub mod db;
mod escrow;
pub mod failpoint;
pub mod group_commit;
mod handshakes;
mod ledger;
mod lite;
mod replay;
mod sessions;
mod stores;

pub use agency::SqliteAgencyRegistry;
pub use archive::SqliteArchive;
pub use at_rest::AtRestKey;
pub use bids::SqliteBids;
pub use board::SqliteBoard;
pub use board_views::{BoardCursor, BoardOrder, BoardViews, Closed, Listed};
pub use checkpoint::CheckpointStats;
pub use commit_log::SqliteCommitLog;
pub use cpo::SqliteCpoStore;
pub use db::{
    migrate, open_connection, schema_version, Migration, MigrationStep, DB_FILE_NAME, MIGRATIONS,
};
pub use escrow::SqliteEscrowStore;
pub use group_commit::{GroupCommit, GroupCommitConfig, GroupCommitStats, Ticket};
pub use handshakes::SqliteHandshakes;
pub use ledger::SqliteLedger;
pub use lite::SqliteClientRecords;
pub use replay::SqliteReplayCache;
pub use sessions::SqliteSessions;
pub use stores::{StoreUrl, Stores};

use agora_core::Error;
use db::ReadPool;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a [`SqliteStore`] is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Queue and batch sizes of the writer.
    pub group_commit: GroupCommitConfig,
    /// How long a connection waits for another process's lock before failing
    /// with [`Error::Storage`] (at most [`db::MAX_BUSY_TIMEOUT_MS`]).
    pub busy_timeout_ms: u64,
    /// Read connections in the pool (1..=[`db::MAX_READ_CONNECTIONS`]).
    pub read_connections: usize,
    /// WAL pages past which the writer checkpoints by itself, should the
    /// background checkpointer fall behind; it also bounds the WAL file
    /// (see [`checkpoint`]). At least 1.
    pub wal_backstop_pages: u32,
}

impl Default for StoreConfig {
    /// 5 s busy timeout; 4 read connections (twice the cores of the reference
    /// machine: reads are short and mostly served from the page cache); a
    /// WAL of at most about 4096 pages (16 MiB).
    fn default() -> Self {
        StoreConfig {
            group_commit: GroupCommitConfig::default(),
            busy_timeout_ms: 5_000,
            read_connections: 4,
            wal_backstop_pages: 4096,
        }
    }
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: GroupCommit,
    checkpointer: checkpoint::Checkpointer,
    readers: ReadPool,
    /// What this process knows of posted CPOs (see [`board_cache`]).
    cpo_states: board_cache::StateCache,
    /// What the secret columns are sealed under.
    at_rest: AtRestKey,
}

/// An open agora database. Cheap to clone (shared); the writer stops, after
/// finishing what is queued, when the last clone (including the ports made
/// from it) is dropped.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens `<dir>/agora.db` with the default configuration, creating the
    /// directory and the database if needed, its secrets sealed under `key`.
    pub fn open_dir(dir: &Path, key: AtRestKey) -> Result<SqliteStore, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
        SqliteStore::open(&dir.join(DB_FILE_NAME), StoreConfig::default(), key)
    }

    /// Opens the database at `path` (created mode 0600), applies pending
    /// [`MIGRATIONS`] (refusing a database newer than this code), checks
    /// that its secrets are sealed under `key` (refusing another key),
    /// starts the writer and the readers.
    ///
    /// A database of a version before the secrets were sealed (10 or less)
    /// has its secrets sealed by migration 11; the plaintext it held is
    /// then overwritten (`secure_delete` during the migration) and the WAL
    /// truncated, so that it leaves no copy in the files.
    pub fn open(path: &Path, config: StoreConfig, key: AtRestKey) -> Result<SqliteStore, Error> {
        let mut conn = open_connection(path, config.busy_timeout_ms)?;
        let found = schema_version(&conn)?;
        let sealing = found > 0 && found < db::SEALED_SINCE;
        if sealing {
            conn.pragma_update(None, "secure_delete", "ON")
                .map_err(db::storage)?;
        }
        migrate(&mut conn, MIGRATIONS, &key)?;
        if sealing {
            // Every page the old tables held is zeros now; copy them over
            // the database file and empty the WAL, which may hold older
            // copies. Busy (another process reading) leaves the WAL as it
            // is: said in the log, the next full checkpoint does it.
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db::storage)?;
            if busy != 0 {
                tracing::warn!(
                    "secrets sealed at rest, but the WAL of {} could not be truncated now",
                    path.display()
                );
            }
            conn.pragma_update(None, "secure_delete", "OFF")
                .map_err(db::storage)?;
        }
        at_rest::check_key(&conn, &key)?;
        conn.pragma_update(None, "wal_autocheckpoint", config.wal_backstop_pages.max(1))
            .map_err(|e| Error::Storage(e.to_string()))?;
        let readers = ReadPool::open(path, config.read_connections, config.busy_timeout_ms)?;
        let checkpointer =
            checkpoint::Checkpointer::start(open_connection(path, config.busy_timeout_ms)?)?;
        let writer =
            GroupCommit::start_with_hook(conn, config.group_commit, checkpointer.notifier())?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer,
                checkpointer,
                readers,
                cpo_states: board_cache::StateCache::default(),
                at_rest: key,
            }),
        })
    }

    /// What the secret columns are sealed under.
    pub(crate) fn at_rest(&self) -> &AtRestKey {
        &self.inner.at_rest
    }

    fn cpo_states(&self) -> &board_cache::StateCache {
        &self.inner.cpo_states
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The group-commit writer: every write goes through it.
    pub fn writer(&self) -> &GroupCommit {
        &self.inner.writer
    }

    /// The background checkpointer's counters.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.inner.checkpointer.stats()
    }

    /// Runs a read on a pooled read-only connection. It sees every request
    /// acknowledged before the call.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.inner.readers.with(f)
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<u32, Error> {
        self.read(schema_version)
    }

    /// The replay cache port on this database.
    pub fn replay_cache(&self) -> SqliteReplayCache {
        SqliteReplayCache::new(self.clone())
    }

    /// The evidence archive port on this database.
    pub fn archive(&self) -> SqliteArchive {
        SqliteArchive::new(self.clone())
    }

    /// The bids port (CPO protocol 6) on this database.
    pub fn bids(&self) -> SqliteBids {
        SqliteBids::new(self.clone())
    }

    /// The agency register port (agora-pki) on this database.
    pub fn agency_registry(&self) -> SqliteAgencyRegistry {
        SqliteAgencyRegistry::new(self.clone())
    }

    /// Every port of the CPO server (agora-cpo) on this database, with its
    /// units of work.
    pub fn cpo(&self) -> SqliteCpoStore {
        SqliteCpoStore::new(self.clone())
    }

    /// The SPEED broker's ledger (agora-speed) on this database.
    pub fn ledger(&self) -> SqliteLedger {
        SqliteLedger::new(self.clone())
    }

    /// The register of `vendor`'s SPEED deliveries on this database.
    pub fn handshakes(&self, vendor: agora_core::KeyId) -> SqliteHandshakes {
        SqliteHandshakes::new(self.clone(), vendor)
    }

    /// The CPO server's board port (agora-cpo) on this database.
    pub fn board(&self) -> SqliteBoard {
        SqliteBoard::new(self.clone())
    }

    /// The CPO server's browse sessions port (agora-cpo) on this database.
    /// Each session's K_p is sealed under the at-rest key.
    pub fn sessions(&self) -> SqliteSessions {
        SqliteSessions::new(self.clone())
    }

    /// The STP commit authority's log (agora-stp) on this database.
    pub fn commit_log(&self) -> SqliteCommitLog {
        SqliteCommitLog::new(self.clone())
    }

    /// The STP escrow's store (agora-stp) on this database. Each item is
    /// sealed under the at-rest key.
    pub fn escrow(&self) -> SqliteEscrowStore {
        SqliteEscrowStore::new(self.clone())
    }

    /// The vendor's client records of the lightweight protocols
    /// (agora-lite) on this database, for every vendor it serves. Each
    /// client's `K` is sealed under the at-rest key.
    pub fn lite_records(&self) -> SqliteClientRecords {
        SqliteClientRecords::new(self.clone())
    }
}

/// A timestamp as an SQLite integer for columns compared in SQL: clamped to
/// `i64::MAX` (the year 292 billion), which keeps the order of all real
/// timestamps.
pub(crate) fn ts_ordered(t: agora_core::Timestamp) -> i64 {
    i64::try_from(t.secs()).unwrap_or(i64::MAX)
}
