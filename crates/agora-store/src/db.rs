//! SQLite plumbing: opening and configuring connections, schema migrations,
//! and the pool of read connections.

use crate::at_rest::{self, AtRestKey};
use agora_core::Error;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The database file inside a data directory.
pub const DB_FILE_NAME: &str = "agora.db";

/// Longest `busy_timeout_ms` accepted: a writer of another process holding
/// the lock longer than this is a fault to report, not to wait out.
pub const MAX_BUSY_TIMEOUT_MS: u64 = 60_000;

pub(crate) fn storage(e: rusqlite::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Opens (creating if needed) the database at `path` and configures the
/// connection the way agora needs it:
///
/// - `journal_mode=WAL`: readers never block the writer nor the writer them;
/// - `synchronous=FULL`: a commit is on disk when it returns (the WAL is
///   fsynced at every commit), because a reply announcing a binding or a
///   payment is sent only after its commit (ARCHITECTURE 1);
/// - `busy_timeout`: wait (bounded) for another process's write lock;
/// - `foreign_keys=ON`: SQLite's default is off.
///
/// The database file is created mode 0600 whatever the umask, and an
/// existing one (or its `-wal` or `-shm` file) readable by others is
/// restricted to 0600 ([`restrict_files`]): besides the sealed secrets, it
/// holds the books and the evidence.
pub fn open_connection(path: &Path, busy_timeout_ms: u64) -> Result<Connection, Error> {
    create_private(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(storage)?;
    conn.busy_timeout(Duration::from_millis(
        busy_timeout_ms.min(MAX_BUSY_TIMEOUT_MS),
    ))
    .map_err(storage)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(storage)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Storage(format!(
            "cannot switch the database to WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(storage)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(storage)?;
    // SQLite made the -wal and -shm files (if it did) with the database
    // file's mode; files left by an older version may be looser.
    restrict_files(path)?;
    Ok(conn)
}

/// The files SQLite keeps beside the database `path` in WAL mode.
pub fn wal_files(path: &Path) -> [std::path::PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    })
}

/// Creates the database file `path`, empty, mode 0600 (before SQLite
/// creates it with 0644 less the umask), or restricts it to 0600 if it
/// exists and others may read it.
///
/// An existing file is never opened here, only stat'ed and chmod'ed by
/// path: closing a descriptor of a database file drops every POSIX lock
/// this process holds on it, those of its open SQLite connections
/// included, and another process could then write beside them and corrupt
/// the file (sqlite.org/howtocorrupt.html, 2.2). A file created here is
/// new: no connection of this process has it open.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(f) => drop(f),
            // Made meanwhile by another process: restricted below.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Storage(format!(
                    "cannot create {}: {e}",
                    path.display()
                )))
            }
        }
    }
    restrict(path)
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// Restricts the database `path` and its `-wal` and `-shm` files, those
/// that exist, to mode 0600 if group or others have any access (by path:
/// no descriptor of them is opened, see `create_private`).
pub fn restrict_files(path: &Path) -> Result<(), Error> {
    restrict(path)?;
    for f in wal_files(path) {
        restrict(&f)?;
    }
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Storage(format!("{}: {e}", path.display()))),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            Error::Storage(format!(
                "cannot restrict {} to mode 0600: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// One schema change. Versions start at 1 and increase by one; the database
/// records the last one applied in `PRAGMA user_version`.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The schema version this migration produces.
    pub version: u32,
    /// What it does, for logs and errors.
    pub name: &'static str,
    /// The SQL, run as one batch inside the migration's transaction.
    pub sql: &'static str,
    /// What SQL cannot do, run after `sql` in the same transaction (sealing
    /// the secrets of existing rows under the at-rest key).
    pub then: Option<MigrationStep>,
}

/// The Rust part of a [`Migration`]: it gets the migration's transaction
/// and the store's at-rest key.
pub type MigrationStep = fn(&Connection, &AtRestKey) -> Result<(), Error>;

/// The schema version from which the secret columns are sealed at rest
/// (migration 11).
pub(crate) const SEALED_SINCE: u32 = 11;

/// agora's migrations, in order. Append only: a released migration is never
/// edited, a change is a new migration.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "replay cache and evidence archive",
        sql: r#"
        -- ReplayCache: uniqueness of (scope, nonce) is the primary key, so it
        -- holds across processes sharing the file.
        CREATE TABLE replay_cache (
            scope      TEXT    NOT NULL,
            nonce      BLOB    NOT NULL CHECK (length(nonce) = 32),
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (scope, nonce)
        ) WITHOUT ROWID;
        CREATE INDEX replay_cache_expires_at ON replay_cache (expires_at);

        -- EvidenceArchive: append-only, hash-chained (agora_core::ports::archive).
        CREATE TABLE evidence_archive (
            seq         INTEGER PRIMARY KEY CHECK (seq >= 1),
            recorded_at INTEGER NOT NULL,
            kind        TEXT    NOT NULL,
            payload     BLOB    NOT NULL,
            prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
            hash        BLOB    NOT NULL CHECK (length(hash) = 32)
        );
        -- Defence in depth against our own bugs: the chain detects tampering,
        -- these refuse it through ordinary SQL.
        CREATE TRIGGER evidence_archive_no_update BEFORE UPDATE ON evidence_archive
        BEGIN SELECT RAISE(ABORT, 'evidence archive is append-only'); END;
        CREATE TRIGGER evidence_archive_no_delete BEFORE DELETE ON evidence_archive
        BEGIN SELECT RAISE(ABORT, 'evidence archive is append-only'); END;
    "#,
        then: None,
    },
    Migration {
        version: 2,
        name: "agency registers",
        sql: r#"
        -- AgencyRegistry (agora_pki::registry): what each agency issued and
        -- revoked, and its last CRL number. Primary keys make a serial unique
        -- per agency and let only the first revocation of a serial stand.
        CREATE TABLE agency_issued (
            agency    BLOB    NOT NULL CHECK (length(agency) = 32),
            serial    BLOB    NOT NULL CHECK (length(serial) BETWEEN 1 AND 20),
            kind      TEXT    NOT NULL CHECK (kind IN ('bond', 'identity')),
            subject   BLOB    NOT NULL CHECK (length(subject) = 32),
            issued_at INTEGER NOT NULL,
            not_after INTEGER NOT NULL,
            der       BLOB    NOT NULL,
            PRIMARY KEY (agency, serial)
        );
        CREATE TABLE agency_revoked (
            agency     BLOB    NOT NULL,
            serial     BLOB    NOT NULL,
            revoked_at INTEGER NOT NULL,
            reason     INTEGER NOT NULL,
            PRIMARY KEY (agency, serial),
            FOREIGN KEY (agency, serial) REFERENCES agency_issued (agency, serial)
        );
        CREATE TABLE agency_crl_number (
            agency BLOB    NOT NULL PRIMARY KEY CHECK (length(agency) = 32),
            last   INTEGER NOT NULL CHECK (last >= 1)
        );
    "#,
        then: None,
    },
    Migration {
        version: 3,
        name: "cpo board",
        sql: r#"
        -- Board (agora_cpo::ports): the posted CPOs. The primary key posts a
        -- CPO id at most once, across processes sharing the file. `ccpo` (the
        -- encoded CCPO, checksum included) is the source of truth; the
        -- columns copied from it serve listing and searching.
        CREATE TABLE cpo_board (
            id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
            mode        TEXT    NOT NULL CHECK (mode IN ('first-come', 'bidding')),
            buyer       BLOB    NOT NULL CHECK (length(buyer) = 32),
            price_cents INTEGER NOT NULL,
            currency    TEXT    NOT NULL,
            start_at    INTEGER NOT NULL,
            end_at      INTEGER NOT NULL,
            goods       TEXT    NOT NULL,
            terms       TEXT    NOT NULL,
            posted_at   INTEGER NOT NULL,
            ccpo        BLOB    NOT NULL,
            acceptance  BLOB    NOT NULL,
            posted      BLOB    NOT NULL
        );
        CREATE INDEX cpo_board_end_at ON cpo_board (end_at);
    "#,
        then: None,
    },
    Migration {
        version: 4,
        name: "cpo bindings and sessions",
        sql: r#"
        -- Board bindings (agora_cpo::ports::Board::try_bind): the primary key
        -- binds a CPO at most once, so "the first valid binding wins" holds
        -- across processes sharing the file. `bound_cpo` is BOUND_CPO as the
        -- server signed it (COSE_Sign1): the evidence.
        CREATE TABLE cpo_binding (
            id        BLOB    NOT NULL PRIMARY KEY REFERENCES cpo_board (id),
            seller    BLOB    NOT NULL CHECK (length(seller) = 32),
            bound_at  INTEGER NOT NULL,
            bound_cpo BLOB    NOT NULL
        );

        -- Sessions (agora_cpo::ports::Sessions): browse sessions of protocol 3.
        -- SECURITY: `k_p` is each session's secret binding key, stored here in
        -- the clear; whoever reads it can bind CPOs in the seller's name while
        -- the session lives. The database file (and its -wal file, and every
        -- backup of them) must be protected like the keystore. Encrypting K_p
        -- under a node key is future work.
        CREATE TABLE cpo_session (
            id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
            k_p         BLOB    NOT NULL CHECK (length(k_p) = 32),
            seller      BLOB    NOT NULL CHECK (length(seller) = 32),
            bond        BLOB    NOT NULL,
            bond_serial BLOB    NOT NULL,
            agency      BLOB    NOT NULL CHECK (length(agency) = 32),
            from_at     INTEGER NOT NULL,
            until_at    INTEGER NOT NULL,
            ended_at    INTEGER NULL
        );
        CREATE INDEX cpo_session_seller ON cpo_session (seller);
    "#,
        then: None,
    },
    Migration {
        version: 5,
        name: "cpo bids, awards and take-downs",
        sql: r#"
        -- Bids (agora_cpo::bidding::Bids), in the order taken (seq).
        CREATE TABLE cpo_bid (
            seq          INTEGER PRIMARY KEY,
            cpo          BLOB    NOT NULL CHECK (length(cpo) = 32),
            receipt_hash BLOB    NOT NULL CHECK (length(receipt_hash) = 32),
            seller       BLOB    NOT NULL CHECK (length(seller) = 32),
            price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
            currency     TEXT    NOT NULL,
            t            INTEGER NOT NULL,
            receipt      BLOB    NOT NULL
        );
        CREATE INDEX cpo_bid_cpo ON cpo_bid (cpo, seq);
        -- The arbiter's signed award: one per CPO, the first stands.
        CREATE TABLE cpo_award (
            cpo   BLOB NOT NULL PRIMARY KEY CHECK (length(cpo) = 32),
            award BLOB NOT NULL
        );
        -- CPOs taken down because their buyer's bond was revoked.
        CREATE TABLE cpo_takedown (
            id BLOB    NOT NULL PRIMARY KEY REFERENCES cpo_board (id),
            at INTEGER NOT NULL
        );
    "#,
        then: None,
    },
    Migration {
        version: 6,
        name: "cpo board search index",
        sql: r#"
        -- The board's search (see "How search finds its rows" in
        -- crate::board): derived data only, rebuilt from cpo_board here and
        -- kept in step with it by triggers, so by the statement that changes
        -- cpo_board, in its transaction, whoever runs it.
        --
        -- cpo_search: one compact row per posted CPO (bound, taken-down and
        -- expired ones included: the query excludes them, as before), with
        -- the columns the filters read and goods and terms case folded like
        -- agora_cpo::ports::fold_case (SQLite's built-in lower() folds ASCII
        -- letters only). cpo_board rows are 1-2 KiB (the CCPO carries the
        -- bond certificate); these are a few hundred bytes. `doc` names the
        -- row in the trigram index: an INTEGER PRIMARY KEY (VACUUM keeps it,
        -- unlike cpo_board's implicit rowid), AUTOINCREMENT so that a doc is
        -- never reused (an index entry left by a deleted row then matches
        -- no row) and docs only grow (see cpo_search_indexed).
        CREATE TABLE cpo_search (
            doc         INTEGER PRIMARY KEY AUTOINCREMENT,
            id          BLOB    NOT NULL,
            end_at      INTEGER NOT NULL,
            start_at    INTEGER NOT NULL,
            price_cents INTEGER NOT NULL,
            currency    TEXT    NOT NULL,
            mode        TEXT    NOT NULL,
            goods       TEXT    NOT NULL,
            terms       TEXT    NOT NULL
        );
        -- The walk in id order: every filter but the words is tested on the
        -- index entry, before the row is read.
        CREATE INDEX cpo_search_walk
            ON cpo_search (id, end_at, mode, currency, price_cents, start_at);
        -- Rows are replaced (deleted, inserted), never updated.
        CREATE TRIGGER cpo_search_no_update BEFORE UPDATE ON cpo_search
        BEGIN SELECT RAISE(ABORT, 'cpo_search rows are replaced, not updated'); END;

        -- The trigrams of the folded goods and terms (rowid = doc): a
        -- prefilter, whose rows are a superset of those containing the
        -- words. `case_sensitive 1` because the text is folded already.
        -- Each text is indexed as json_quote() writes it, then U+0001: the
        -- trigram tokenizer stops at a NUL, json_quote() escapes NUL (and
        -- the other control characters, `"` and `\`) and keeps every other
        -- character as it is; and the closing quote and the U+0001 after
        -- the last character make every substring of 1 or 2 characters
        -- begin a trigram. Contentless (the text is in cpo_search), no
        -- deletes (see cpo_search.doc). With positions (detail=full, 5 times
        -- the size of detail=none), for phrase queries: a word made of
        -- common trigrams ("dear": "dea", "ear") is in 91 of 110,000 rows of
        -- the benchmark, the AND of its trigrams in 20,589.
        CREATE VIRTUAL TABLE cpo_search_fts USING fts5(
            goods, terms,
            tokenize = 'trigram case_sensitive 1',
            content = '', columnsize = 0, detail = full
        );
        -- The trigrams themselves, in order, with their rows: words of 1 or
        -- 2 characters are looked up by prefix here.
        CREATE VIRTUAL TABLE cpo_search_terms USING fts5vocab(cpo_search_fts, 'instance');

        -- Every row up to doc `upto` is in the trigram index; those after it
        -- are not yet (the search takes them all as candidates). They are
        -- indexed `batch` at a time: FTS5 writes its pending terms out at
        -- every savepoint, so one row per group-commit request costs twice
        -- as much as a batch (measured: 194 against 89 us per row).
        CREATE TABLE cpo_search_indexed (
            one   INTEGER PRIMARY KEY CHECK (one = 1),
            upto  INTEGER NOT NULL,
            batch INTEGER NOT NULL CHECK (batch >= 1)
        );

        -- Backfill.
        INSERT INTO cpo_search
            (id, end_at, start_at, price_cents, currency, mode, goods, terms)
        SELECT id, end_at, start_at, price_cents, currency, mode, lower(goods), lower(terms)
        FROM cpo_board ORDER BY rowid;
        INSERT INTO cpo_search_fts (rowid, goods, terms)
        SELECT doc,
            json_quote(goods) || char(1),
            json_quote(terms) || char(1)
        FROM cpo_search;
        INSERT INTO cpo_search_indexed (one, upto, batch)
        SELECT 1, coalesce(max(doc), 0), 128 FROM cpo_search;

        -- Index the rows not yet indexed once there are `batch` of them.
        CREATE TRIGGER cpo_search_index AFTER INSERT ON cpo_search
        WHEN NEW.doc >= (SELECT upto + batch FROM cpo_search_indexed)
        BEGIN
            INSERT INTO cpo_search_fts (rowid, goods, terms)
            SELECT doc,
                json_quote(goods) || char(1),
                json_quote(terms) || char(1)
            FROM cpo_search WHERE doc > (SELECT upto FROM cpo_search_indexed);
            UPDATE cpo_search_indexed SET upto = (SELECT max(doc) FROM cpo_search);
        END;

        -- cpo_search follows cpo_board.
        CREATE TRIGGER cpo_board_search_insert AFTER INSERT ON cpo_board BEGIN
            INSERT INTO cpo_search
                (id, end_at, start_at, price_cents, currency, mode, goods, terms)
            VALUES (NEW.id, NEW.end_at, NEW.start_at, NEW.price_cents, NEW.currency,
                NEW.mode, lower(NEW.goods), lower(NEW.terms));
        END;
        CREATE TRIGGER cpo_board_search_delete AFTER DELETE ON cpo_board BEGIN
            DELETE FROM cpo_search WHERE id = OLD.id;
        END;
        CREATE TRIGGER cpo_board_search_update
        AFTER UPDATE OF id, end_at, start_at, price_cents, currency, mode, goods, terms
        ON cpo_board BEGIN
            DELETE FROM cpo_search WHERE id = OLD.id;
            INSERT INTO cpo_search
                (id, end_at, start_at, price_cents, currency, mode, goods, terms)
            VALUES (NEW.id, NEW.end_at, NEW.start_at, NEW.price_cents, NEW.currency,
                NEW.mode, lower(NEW.goods), lower(NEW.terms));
        END;
    "#,
        then: None,
    },
    Migration {
        version: 7,
        name: "speed ledger and payment register",
        sql: r#"
        -- Ledger (agora_speed::ledger): the SPEED broker's double-entry books
        -- and payment register. Every write is one request of the writer, so
        -- one savepoint: a payment's register row, journal entry, postings,
        -- balances and cleared hold commit together or not at all. The
        -- bounds below (16 postings, a memo of 200 bytes, a hold state of
        -- 16 KiB) are those of agora_speed::ledger (MAX_POSTINGS,
        -- MAX_MEMO_LEN, MAX_HOLD_STATE_LEN); a test checks they agree.

        -- Accounts, each with its balance, updated by the request that posts
        -- to it. The code refuses an overdraft first ("insufficient funds");
        -- the CHECK refuses it again through any SQL. Only the balance
        -- changes, and no account is deleted (its postings refer to it).
        CREATE TABLE speed_account (
            number        TEXT    NOT NULL PRIMARY KEY
                                  CHECK (length(number) BETWEEN 1 AND 34),
            owner         BLOB    NOT NULL CHECK (length(owner) = 32),
            kind          TEXT    NOT NULL CHECK (kind IN
                                  ('customer', 'vendor', 'broker', 'purse-float', 'external')),
            currency      TEXT    NOT NULL CHECK (length(currency) = 3),
            allow_credit  INTEGER NOT NULL CHECK (allow_credit IN (0, 1)),
            balance_cents INTEGER NOT NULL DEFAULT 0,
            CHECK (balance_cents >= 0 OR allow_credit = 1 OR kind = 'external')
        ) STRICT;
        CREATE INDEX speed_account_owner ON speed_account (owner, number);
        CREATE INDEX speed_account_currency ON speed_account (currency);
        CREATE TRIGGER speed_account_fixed
        BEFORE UPDATE OF number, owner, kind, currency, allow_credit ON speed_account
        BEGIN SELECT RAISE(ABORT, 'only the balance of an account changes'); END;
        CREATE TRIGGER speed_account_no_delete BEFORE DELETE ON speed_account
        BEGIN SELECT RAISE(ABORT, 'accounts are never deleted'); END;

        -- The journal, in order (seq), and its postings (n: the posting's
        -- place in its entry), each with the balance it left. The unique id
        -- makes a retried post recognisable. Append-only.
        CREATE TABLE speed_journal (
            seq  INTEGER PRIMARY KEY,
            id   BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
            at   INTEGER NOT NULL CHECK (at >= 0),
            memo TEXT    NOT NULL CHECK (length(CAST(memo AS BLOB)) <= 200)
        ) STRICT;
        CREATE TABLE speed_posting (
            seq           INTEGER NOT NULL REFERENCES speed_journal (seq),
            n             INTEGER NOT NULL CHECK (n BETWEEN 0 AND 15),
            account       TEXT    NOT NULL REFERENCES speed_account (number),
            cents         INTEGER NOT NULL CHECK (cents <> 0),
            balance_after INTEGER NOT NULL,
            PRIMARY KEY (seq, n),
            UNIQUE (seq, account)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX speed_posting_account ON speed_posting (account, seq);
        CREATE TRIGGER speed_journal_no_update BEFORE UPDATE ON speed_journal
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TRIGGER speed_journal_no_delete BEFORE DELETE ON speed_journal
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TRIGGER speed_posting_no_update BEFORE UPDATE ON speed_posting
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TRIGGER speed_posting_no_delete BEFORE DELETE ON speed_posting
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;

        -- The payment register (paper 5.3, 5.7): the primary key pays a
        -- PaymentOrderID (vendor key id || NID, 48 bytes) at most once,
        -- across processes sharing the file. `entry` is the payment's
        -- journal entry. SECURITY: `k` is the product key K, in the clear;
        -- the broker learns it anyway and must be able to resend it, but
        -- whoever reads the file can decrypt the products: protect the
        -- database (its -wal file, its backups) like the broker's keys.
        CREATE TABLE speed_payment (
            id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 48),
            payer       TEXT    NOT NULL REFERENCES speed_account (number),
            vendor      TEXT    NOT NULL REFERENCES speed_account (number),
            price_cents INTEGER NOT NULL CHECK (price_cents > 0),
            currency    TEXT    NOT NULL CHECK (length(currency) = 3),
            mode        TEXT    NOT NULL CHECK (mode IN ('account', 'purse')),
            card        BLOB    CHECK (card IS NULL OR length(card) = 16),
            customer    BLOB    NOT NULL CHECK (length(customer) = 32),
            bill        BLOB    NOT NULL,
            receipt     BLOB    NOT NULL,
            k           BLOB    NOT NULL CHECK (length(k) = 32),
            paid_at     INTEGER NOT NULL CHECK (paid_at >= 0),
            entry       INTEGER NOT NULL UNIQUE REFERENCES speed_journal (seq),
            CHECK ((mode = 'purse') = (card IS NOT NULL))
        ) STRICT;
        CREATE INDEX speed_payment_vendor ON speed_payment (vendor, paid_at, id);
        CREATE TRIGGER speed_payment_no_update BEFORE UPDATE ON speed_payment
        BEGIN SELECT RAISE(ABORT, 'the payment register is append-only'); END;
        CREATE TRIGGER speed_payment_no_delete BEFORE DELETE ON speed_payment
        BEGIN SELECT RAISE(ABORT, 'the payment register is append-only'); END;

        -- Pending e-purse debits, between the broker's S2 and the card's S3;
        -- the payment deletes its hold. A paid order is never held.
        CREATE TABLE speed_hold (
            id      BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 48),
            state   BLOB    NOT NULL CHECK (length(state) <= 16384),
            held_at INTEGER NOT NULL CHECK (held_at >= 0)
        ) STRICT;
        CREATE TRIGGER speed_hold_not_paid BEFORE INSERT ON speed_hold
        WHEN EXISTS (SELECT 1 FROM speed_payment WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'the payment order is paid'); END;
    "#,
        then: None,
    },
    Migration {
        version: 8,
        name: "speed handshake register",
        sql: r#"
        -- HandshakeRegister (agora_speed::vendor): every NID a vendor has
        -- delivered for (a Handshake, or an aggressive ProductRequest). The
        -- primary key delivers a NID at most once, across processes sharing
        -- the file; rows are never changed or removed.
        CREATE TABLE speed_handshake (
            vendor   BLOB    NOT NULL CHECK (length(vendor) = 32),
            nid      BLOB    NOT NULL CHECK (length(nid) = 16),
            customer BLOB    NOT NULL CHECK (length(customer) = 32),
            at       INTEGER NOT NULL CHECK (at >= 0),
            PRIMARY KEY (vendor, nid)
        ) STRICT, WITHOUT ROWID;
        CREATE TRIGGER speed_handshake_no_update BEFORE UPDATE ON speed_handshake
        BEGIN SELECT RAISE(ABORT, 'the handshake register is append-only'); END;
        CREATE TRIGGER speed_handshake_no_delete BEFORE DELETE ON speed_handshake
        BEGIN SELECT RAISE(ABORT, 'the handshake register is append-only'); END;
    "#,
        then: None,
    },
    Migration {
        version: 9,
        name: "speed deliveries by time",
        sql: r#"
        -- HandshakeRegister::deliveries: a vendor's latest deliveries (its
        -- sales, whose receipts it asks the broker for), newest first.
        CREATE INDEX speed_handshake_by_time ON speed_handshake (vendor, at DESC, nid DESC);
    "#,
        then: None,
    },
    Migration {
        version: 10,
        name: "cpo bindings in posting order",
        sql: r#"
        -- Until now a binding's row was keyed by the CPO id, a random 32-byte
        -- value: every binding put an entry at a random place of that key's
        -- index, so each one dirtied a 4 KiB index page of its own (written
        -- to the WAL, then again by the checkpoint): 11.7 KB written per
        -- binding, twice the rest of the binding transaction
        -- (`cargo bench -p agora-store --bench bind`). Now the rows are
        -- appended in binding order, and "at most once" is a unique index of
        -- the CPO's posting number: small entries, for CPOs posted near in
        -- time, so the bindings of one commit share a few pages. The random
        -- lookup by id is a read of cpo_posting, written when the CPO was
        -- posted.
        --
        -- cpo_posting: each posted CPO's number, in posting order (an
        -- INTEGER PRIMARY KEY: VACUUM keeps it). Kept in step with cpo_board
        -- by triggers, in the statement that changes cpo_board.
        CREATE TABLE cpo_posting (
            seq INTEGER PRIMARY KEY,
            id  BLOB    NOT NULL UNIQUE REFERENCES cpo_board (id)
        );
        INSERT INTO cpo_posting (id) SELECT id FROM cpo_board ORDER BY rowid;
        CREATE TRIGGER cpo_board_posting_insert AFTER INSERT ON cpo_board BEGIN
            INSERT INTO cpo_posting (id) VALUES (NEW.id);
        END;
        CREATE TRIGGER cpo_board_posting_delete AFTER DELETE ON cpo_board BEGIN
            DELETE FROM cpo_posting WHERE id = OLD.id;
        END;

        -- The bindings (agora_cpo::ports::Board::try_bind), in the order
        -- made: the unique `seq` binds a CPO at most once ("the first valid
        -- binding wins", across processes sharing the file). `bound_cpo` is
        -- BOUND_CPO as the server signed it (COSE_Sign1): the evidence.
        CREATE TABLE cpo_bound (
            n         INTEGER PRIMARY KEY,
            seq       INTEGER NOT NULL UNIQUE REFERENCES cpo_posting (seq),
            seller    BLOB    NOT NULL CHECK (length(seller) = 32),
            bound_at  INTEGER NOT NULL,
            bound_cpo BLOB    NOT NULL
        );
        INSERT INTO cpo_bound (seq, seller, bound_at, bound_cpo)
        SELECT p.seq, b.seller, b.bound_at, b.bound_cpo
        FROM cpo_binding b JOIN cpo_posting p ON p.id = b.id
        ORDER BY p.seq;
        DROP TABLE cpo_binding;
        -- Readers keep asking for a CPO's binding by its id.
        CREATE VIEW cpo_binding (id, seller, bound_at, bound_cpo) AS
        SELECT p.id, b.seller, b.bound_at, b.bound_cpo
        FROM cpo_bound b JOIN cpo_posting p ON p.seq = b.seq;
    "#,
        then: None,
    },
    Migration {
        version: 11,
        name: "secrets sealed at rest",
        sql: r#"
        -- Until now K_p (cpo_session.k_p), the product keys
        -- (speed_payment.k), the bills that carry RecKey
        -- (speed_payment.bill) and the held card debits (speed_hold.state)
        -- were stored in the clear. From now on each is sealed under the
        -- store's at-rest key (crate::at_rest: nonce || ChaCha20-Poly1305,
        -- bound to its table, column and row). The tables are made anew
        -- with the sealed columns' sizes; the Rust step of this migration
        -- (seal_existing_secrets) seals the rows already there into them,
        -- then puts them in the old tables' place, in this transaction.

        -- The at-rest key's check: a known value sealed under it, so that a
        -- store opened with another key is refused at open.
        CREATE TABLE store_at_rest (
            one       INTEGER PRIMARY KEY CHECK (one = 1),
            key_check BLOB    NOT NULL
        ) STRICT;

        -- As in migration 4, but k_p is sealed: 12 + 32 + 16 bytes.
        CREATE TABLE cpo_session_sealed (
            id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
            k_p         BLOB    NOT NULL CHECK (length(k_p) = 60),
            seller      BLOB    NOT NULL CHECK (length(seller) = 32),
            bond        BLOB    NOT NULL,
            bond_serial BLOB    NOT NULL,
            agency      BLOB    NOT NULL CHECK (length(agency) = 32),
            from_at     INTEGER NOT NULL,
            until_at    INTEGER NOT NULL,
            ended_at    INTEGER NULL
        );

        -- As in migration 7, but k (12 + 32 + 16 bytes) and bill (12 + the
        -- bill + 16) are sealed.
        CREATE TABLE speed_payment_sealed (
            id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 48),
            payer       TEXT    NOT NULL REFERENCES speed_account (number),
            vendor      TEXT    NOT NULL REFERENCES speed_account (number),
            price_cents INTEGER NOT NULL CHECK (price_cents > 0),
            currency    TEXT    NOT NULL CHECK (length(currency) = 3),
            mode        TEXT    NOT NULL CHECK (mode IN ('account', 'purse')),
            card        BLOB    CHECK (card IS NULL OR length(card) = 16),
            customer    BLOB    NOT NULL CHECK (length(customer) = 32),
            bill        BLOB    NOT NULL CHECK (length(bill) >= 28),
            receipt     BLOB    NOT NULL,
            k           BLOB    NOT NULL CHECK (length(k) = 60),
            paid_at     INTEGER NOT NULL CHECK (paid_at >= 0),
            entry       INTEGER NOT NULL UNIQUE REFERENCES speed_journal (seq),
            CHECK ((mode = 'purse') = (card IS NOT NULL))
        ) STRICT;

        -- As in migration 7, but the state is sealed (16 KiB + 28 bytes).
        CREATE TABLE speed_hold_sealed (
            id      BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 48),
            state   BLOB    NOT NULL CHECK (length(state) BETWEEN 28 AND 16412),
            held_at INTEGER NOT NULL CHECK (held_at >= 0)
        ) STRICT;
    "#,
        then: Some(seal_existing_secrets),
    },
    Migration {
        version: 12,
        name: "stp commit log and escrow",
        sql: r#"
        -- CommitLog (agora_stp::log): the STP commit authority's log. What
        -- holds each of its invariants, for every process sharing the file:
        --
        -- * a unit applies only at the version it was computed from: the
        --   conditional write of crate::commit_log (INSERT ... ON CONFLICT
        --   (tid) DO NOTHING for version 0, UPDATE ... WHERE tid = ? AND
        --   version = ? after it); no row written is the Conflict;
        -- * one outcome leaf per transaction: UNIQUE (tid) of stp_leaf, and
        --   stp_tx_one_leaf (a record's leaf index, once set, never changes);
        -- * dense leaf indices 0, 1, 2, ...: stp_leaf_dense (a leaf goes at
        --   MAX(idx) + 1, read by the inserting statement inside the write
        --   transaction), CHECK (idx >= 0), and no UPDATE or DELETE of a leaf;
        -- * a leaf and its transaction's record agree: the foreign key
        --   (idx, tid) -> stp_tx (leaf_index, tid);
        -- * tree heads only grow and never pass the leaves: the conditional
        --   INSERT of crate::commit_log::record_head, in the writer's
        --   transaction.
        --
        -- stp_tx: one row per transaction, its record (agora_stp::log::
        -- TxRecord, encoded), version and deadline; leaf_index once decided.
        -- A rowid table: a record can be tens of KiB.
        CREATE TABLE stp_tx (
            tid        BLOB    NOT NULL PRIMARY KEY CHECK (length(tid) = 16),
            version    INTEGER NOT NULL CHECK (version >= 1),
            record     BLOB    NOT NULL,
            deadline   INTEGER NOT NULL,
            leaf_index INTEGER CHECK (leaf_index >= 0),
            UNIQUE (leaf_index, tid)
        ) STRICT;
        -- The deadline sweep (undecided_past) reads undecided rows only.
        CREATE INDEX stp_tx_undecided ON stp_tx (deadline, tid) WHERE leaf_index IS NULL;
        CREATE TRIGGER stp_tx_one_leaf BEFORE UPDATE OF leaf_index ON stp_tx
        WHEN OLD.leaf_index IS NOT NULL AND NEW.leaf_index IS NOT OLD.leaf_index
        BEGIN SELECT RAISE(ABORT, 'stp_tx: a transaction has one outcome leaf'); END;
        CREATE TRIGGER stp_tx_no_delete BEFORE DELETE ON stp_tx
        BEGIN SELECT RAISE(ABORT, 'the commit log keeps every transaction'); END;

        -- stp_leaf: the outcome leaves (encoded OutcomeLeaf), in log order.
        CREATE TABLE stp_leaf (
            idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
            tid  BLOB    NOT NULL UNIQUE,
            leaf BLOB    NOT NULL,
            FOREIGN KEY (idx, tid) REFERENCES stp_tx (leaf_index, tid)
        ) STRICT;
        CREATE TRIGGER stp_leaf_dense BEFORE INSERT ON stp_leaf
        WHEN NEW.idx IS NOT (SELECT COALESCE(MAX(idx), -1) + 1 FROM stp_leaf)
        BEGIN SELECT RAISE(ABORT, 'stp_leaf: a leaf goes at the next index'); END;
        CREATE TRIGGER stp_leaf_no_update BEFORE UPDATE ON stp_leaf
        BEGIN SELECT RAISE(ABORT, 'the commit log is append-only'); END;
        CREATE TRIGGER stp_leaf_no_delete BEFORE DELETE ON stp_leaf
        BEGIN SELECT RAISE(ABORT, 'the commit log is append-only'); END;

        -- stp_head: the signed tree heads, in the order recorded.
        CREATE TABLE stp_head (
            n    INTEGER PRIMARY KEY,
            size INTEGER NOT NULL CHECK (size >= 0),
            head BLOB    NOT NULL
        ) STRICT;
        CREATE TRIGGER stp_head_no_update BEFORE UPDATE ON stp_head
        BEGIN SELECT RAISE(ABORT, 'the tree heads are append-only'); END;
        CREATE TRIGGER stp_head_no_delete BEFORE DELETE ON stp_head
        BEGIN SELECT RAISE(ABORT, 'the tree heads are append-only'); END;

        -- EscrowStore (agora_stp::escrow): the items held per transaction.
        -- A deposit id is held once (the primary key; a second deposit of
        -- it keeps the first); at most MAX_DEPOSITS_PER_TRANSACTION per
        -- transaction (the conditional INSERT of crate::escrow, counting in
        -- the writer's transaction); settled once (UPDATE ... WHERE id = ?
        -- AND settled_at IS NULL). `item` is sealed under the at-rest key
        -- (crate::at_rest: 12-byte nonce + the item + 16-byte tag), bound
        -- to the deposit id.
        CREATE TABLE stp_escrow (
            id         BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
            tid        BLOB    NOT NULL CHECK (length(tid) = 16),
            depositor  BLOB    NOT NULL CHECK (length(depositor) = 32),
            recipient  BLOB    NOT NULL CHECK (length(recipient) = 32),
            item       BLOB    NOT NULL CHECK (length(item) >= 28),
            receipt    BLOB    NOT NULL,
            settled_to BLOB    CHECK (length(settled_to) = 32),
            returned   INTEGER CHECK (returned IN (0, 1)),
            settled_at INTEGER CHECK (settled_at >= 0),
            CHECK ((settled_to IS NULL) = (settled_at IS NULL)
               AND (returned IS NULL) = (settled_at IS NULL))
        ) STRICT;
        CREATE INDEX stp_escrow_tid ON stp_escrow (tid, id);
        CREATE TRIGGER stp_escrow_settled_once BEFORE UPDATE ON stp_escrow
        WHEN OLD.settled_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'stp_escrow: a deposit is settled once'); END;
        CREATE TRIGGER stp_escrow_no_delete BEFORE DELETE ON stp_escrow
        BEGIN SELECT RAISE(ABORT, 'stp_escrow: a deposit is kept'); END;
    "#,
        then: None,
    },
    Migration {
        version: 13,
        name: "lightweight protocols: the vendor's client records",
        sql: r#"
        -- ClientRecords (agora_lite::records): what SKEP leaves with a
        -- vendor for each client, one row per (vendor, client) so that one
        -- store serves several vendors. What holds each rule, for every
        -- process sharing the file:
        --
        -- * the first SKEP for an id wins: the primary key (INSERT ... ON
        --   CONFLICT (vendor, client) DO NOTHING in crate::lite), and
        --   lite_client_fixed refuses any change to the key, the
        --   subscription or the chain's anchor and length;
        -- * the chain only moves forward: UPDATE ... WHERE last_index = ?
        --   (compare-and-set) in crate::lite, lite_client_forward (a new
        --   last index above the old one), and last_index <= chain_n.
        --
        -- `k` is K_{C,V} sealed under the at-rest key (crate::at_rest:
        -- 12-byte nonce + 32 bytes + 16-byte tag), bound to the row (its
        -- vendor and client). `subscription` is the wire encoding of
        -- agora_lite::wire::Subscription (at most MAX_SUBSCRIPTION_LEN,
        -- 1152 bytes). The chain's four columns are all null (no chain) or
        -- all set (agora_lite::ChainVerifier's parts). Ids are 1 to 255
        -- bytes of UTF-8.
        CREATE TABLE lite_client (
            vendor       TEXT    NOT NULL CHECK (length(CAST(vendor AS BLOB)) BETWEEN 1 AND 255),
            client       TEXT    NOT NULL CHECK (length(CAST(client AS BLOB)) BETWEEN 1 AND 255),
            k            BLOB    NOT NULL CHECK (length(k) = 60),
            subscription BLOB    NOT NULL CHECK (length(subscription) BETWEEN 1 AND 1152),
            chain_anchor BLOB    CHECK (length(chain_anchor) = 32),
            chain_n      INTEGER CHECK (chain_n BETWEEN 1 AND 1048576),
            last_index   INTEGER CHECK (last_index BETWEEN 0 AND chain_n),
            last_value   BLOB    CHECK (length(last_value) = 32),
            created_at   INTEGER NOT NULL CHECK (created_at >= 0),
            PRIMARY KEY (vendor, client),
            CHECK ((chain_anchor IS NULL) = (chain_n IS NULL)
               AND (chain_n IS NULL) = (last_index IS NULL)
               AND (last_index IS NULL) = (last_value IS NULL))
        ) STRICT;
        CREATE TRIGGER lite_client_fixed
        BEFORE UPDATE OF vendor, client, k, subscription, chain_anchor, chain_n, created_at
        ON lite_client
        BEGIN SELECT RAISE(ABORT, 'lite_client: a client record keeps its key and subscription'); END;
        CREATE TRIGGER lite_client_forward BEFORE UPDATE OF last_index ON lite_client
        WHEN NEW.last_index IS NULL OR NEW.last_index <= OLD.last_index
        BEGIN SELECT RAISE(ABORT, 'lite_client: the hash chain only moves forward'); END;
    "#,
        then: None,
    },
];

/// The end of migration 11, once the rows are sealed into the new tables:
/// they take the old tables' place, with the old indexes and triggers.
/// Dropping a table drops its indexes and triggers, and fires none
/// (speed_payment's refusal of DELETE included); `speed_hold_not_paid`,
/// which reads speed_payment, goes with speed_hold, before speed_payment.
const SWAP_SEALED_TABLES: &str = r#"
    DROP TABLE speed_hold;
    DROP TABLE speed_payment;
    DROP TABLE cpo_session;
    ALTER TABLE cpo_session_sealed RENAME TO cpo_session;
    ALTER TABLE speed_payment_sealed RENAME TO speed_payment;
    ALTER TABLE speed_hold_sealed RENAME TO speed_hold;

    CREATE INDEX cpo_session_seller ON cpo_session (seller);

    CREATE INDEX speed_payment_vendor ON speed_payment (vendor, paid_at, id);
    CREATE TRIGGER speed_payment_no_update BEFORE UPDATE ON speed_payment
    BEGIN SELECT RAISE(ABORT, 'the payment register is append-only'); END;
    CREATE TRIGGER speed_payment_no_delete BEFORE DELETE ON speed_payment
    BEGIN SELECT RAISE(ABORT, 'the payment register is append-only'); END;

    CREATE TRIGGER speed_hold_not_paid BEFORE INSERT ON speed_hold
    WHEN EXISTS (SELECT 1 FROM speed_payment WHERE id = NEW.id)
    BEGIN SELECT RAISE(ABORT, 'the payment order is paid'); END;
"#;

/// A row read by migration 11: its primary key and its secrets in the
/// clear (wiped on drop).
struct PlainRow {
    id: Vec<u8>,
    secrets: Vec<zeroize::Zeroizing<Vec<u8>>>,
}

/// The rows `select` reads: the primary key first, then secret columns.
fn plain_rows(conn: &Connection, select: &str) -> Result<Vec<PlainRow>, Error> {
    let mut st = conn.prepare(select).map_err(storage)?;
    let n = st.column_count();
    let rows = st
        .query_map([], |r| {
            Ok(PlainRow {
                id: r.get(0)?,
                secrets: (1..n)
                    .map(|i| r.get::<_, Vec<u8>>(i).map(zeroize::Zeroizing::new))
                    .collect::<rusqlite::Result<_>>()?,
            })
        })
        .map_err(storage)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(storage);
    rows
}

/// Migration 11's Rust step: records the key check of `key`, seals the
/// secrets of the rows already stored (in the clear, by versions before
/// it) into the new tables, each bound to its row's primary key, and swaps
/// the tables. One transaction: a failure leaves the database at version
/// 10, its rows as they were.
fn seal_existing_secrets(conn: &Connection, key: &AtRestKey) -> Result<(), Error> {
    use at_rest::{HOLD_STATE, PAYMENT_BILL, PAYMENT_K, SESSION_K_P};
    at_rest::write_key_check(conn, key)?;
    for r in plain_rows(conn, "SELECT id, k_p FROM cpo_session")? {
        let k_p = key.seal(SESSION_K_P, &r.id, &r.secrets[0]);
        conn.execute(
            "INSERT INTO cpo_session_sealed
             SELECT id, ?2, seller, bond, bond_serial, agency, from_at, until_at, ended_at
             FROM cpo_session WHERE id = ?1",
            rusqlite::params![r.id, k_p],
        )
        .map_err(storage)?;
    }
    for r in plain_rows(conn, "SELECT id, k, bill FROM speed_payment")? {
        let k = key.seal(PAYMENT_K, &r.id, &r.secrets[0]);
        let bill = key.seal(PAYMENT_BILL, &r.id, &r.secrets[1]);
        conn.execute(
            "INSERT INTO speed_payment_sealed
             SELECT id, payer, vendor, price_cents, currency, mode, card, customer, ?2,
                 receipt, ?3, paid_at, entry
             FROM speed_payment WHERE id = ?1",
            rusqlite::params![r.id, bill, k],
        )
        .map_err(storage)?;
    }
    for r in plain_rows(conn, "SELECT id, state FROM speed_hold")? {
        let state = key.seal(HOLD_STATE, &r.id, &r.secrets[0]);
        conn.execute(
            "INSERT INTO speed_hold_sealed SELECT id, ?2, held_at FROM speed_hold WHERE id = ?1",
            rusqlite::params![r.id, state],
        )
        .map_err(storage)?;
    }
    conn.execute_batch(SWAP_SEALED_TABLES).map_err(storage)
}

/// The schema version recorded in the database (0 for a new one).
pub fn schema_version(conn: &Connection) -> Result<u32, Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(storage)
}

/// Applies every migration newer than the database, each in its own
/// `BEGIN IMMEDIATE` transaction (re-reading the version inside it, so two
/// processes opening the same new file do not both migrate). Refuses a
/// database whose version is newer than the code: running old code on it
/// could misread data. Returns the resulting version.
pub fn migrate(
    conn: &mut Connection,
    migrations: &[Migration],
    key: &AtRestKey,
) -> Result<u32, Error> {
    for (i, m) in migrations.iter().enumerate() {
        if usize::try_from(m.version).ok() != Some(i + 1) {
            return Err(Error::ApiMisuse("migrations must be numbered 1, 2, 3, ..."));
        }
    }
    let latest =
        u32::try_from(migrations.len()).map_err(|_| Error::ApiMisuse("too many migrations"))?;
    let found = schema_version(conn)?;
    if found > latest {
        return Err(Error::Storage(format!(
            "database schema version {found} is newer than this program's {latest}; upgrade agora"
        )));
    }
    for m in migrations.iter().skip(found as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(storage)?;
        if schema_version(&tx)? >= m.version {
            continue; // another process applied it meanwhile
        }
        let failed =
            |e: String| Error::Storage(format!("migration {} ({}) failed: {e}", m.version, m.name));
        tx.execute_batch(m.sql).map_err(|e| failed(e.to_string()))?;
        if let Some(step) = m.then {
            step(&tx, key).map_err(|e| failed(e.to_string()))?;
        }
        // user_version lives in the file header and is part of the transaction.
        tx.pragma_update(None, "user_version", m.version)
            .map_err(storage)?;
        tx.commit().map_err(storage)?;
    }
    schema_version(conn)
}

/// Most read connections in a pool; each holds a file descriptor and a page
/// cache (2 MiB by default).
pub const MAX_READ_CONNECTIONS: usize = 64;

/// A fixed set of read-only connections, shared by all readers. WAL lets them
/// read committed data while the writer writes.
pub(crate) struct ReadPool {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for ReadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPool")
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl ReadPool {
    pub(crate) fn open(path: &Path, n: usize, busy_timeout_ms: u64) -> Result<ReadPool, Error> {
        let n = n.clamp(1, MAX_READ_CONNECTIONS);
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let c = open_connection(path, busy_timeout_ms)?;
            // A read connection that tries to write is a bug: fail loudly.
            c.pragma_update(None, "query_only", "ON").map_err(storage)?;
            conns.push(Mutex::new(c));
        }
        Ok(ReadPool {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free connection (or waits for one, round-robin).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(c) = self.conns[(start + i) % n].try_lock() {
                return f(&c);
            }
        }
        let c = self.conns[start % n]
            .lock()
            .map_err(|_| Error::Storage("read connection lock poisoned".into()))?;
        f(&c)
    }
}
