#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![cfg(unix)] // file modes, and the umask set in a shell
//! Secrets at rest (issue 15): the database files are private (mode 0600
//! under any umask), and the secret columns are sealed under the at-rest
//! key, each bound to its row: no secret is in the files in the clear, a
//! sealed value moved to another row does not open, a store sealed under
//! another key is refused, and the plaintext rows of a database from
//! before (version 10) are sealed by migration 11, leaving no copy.
//!
//! The umask is the process's: the test that needs one runs this binary
//! again, under `umask 022` set by a shell, with `--exact umask_child`; the
//! env var [`DIR_ENV`] carries its directory (without it, `umask_child`
//! returns at once, so a normal run just passes it).

use agora_core::crypto::Secret;
use agora_core::{Error, KeyId, Money, Timestamp};
use agora_cpo::ports::{Session, Sessions};
use agora_speed::ledger::conformance::{books, eur, num, order};
use agora_speed::ledger::{HoldOutcome, Ledger, PayMode, PayOutcome, PaymentRecord};
use agora_store::{
    migrate, open_connection, AtRestKey, SqliteLedger, SqliteStore, StoreConfig, DB_FILE_NAME,
    MIGRATIONS,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const DIR_ENV: &str = "AGORA_AT_REST_TEST_DIR";

/// The at-rest key of this file's stores.
fn key() -> AtRestKey {
    AtRestKey::new(&Secret::new([7; 32]))
}

/// `N` bytes no other test value shares (seeded: a failure replays).
fn distinct<const N: usize>(seed: u64) -> [u8; N] {
    let mut b = [0u8; N];
    rand_chacha::ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut b);
    b
}

/// A browse session whose K_p is `k_p`.
fn session(id: [u8; 32], k_p: [u8; 32]) -> Session {
    Session {
        id,
        k_p,
        seller: KeyId([3; 32]),
        bond: vec![0x30, 1],
        bond_serial: vec![1],
        agency: KeyId([4; 32]),
        from: Timestamp(100),
        until: Timestamp(u64::from(u32::MAX)),
        ended_at: None,
    }
}

/// A payment of 100 cents from C1 to V1 (accounts of [`books`]) with
/// product key `k` and bill `bill`.
fn payment(nid: u64, k: [u8; 32], bill: Vec<u8>) -> PaymentRecord {
    PaymentRecord {
        id: order(9, nid),
        payer: num("C1"),
        vendor: num("V1"),
        price: Money::new(100, eur()),
        mode: PayMode::Account,
        customer: KeyId([0xC0; 32]),
        bill,
        receipt: vec![0x5E, 1],
        key: Secret::new(k),
        paid_at: Timestamp(1_000),
    }
}

/// The database file of `dir` and its -wal and -shm files.
fn db_files(dir: &Path) -> [PathBuf; 3] {
    let db = dir.join(DB_FILE_NAME);
    let [wal, shm] = agora_store::db::wal_files(&db);
    [db, wal, shm]
}

/// Every byte of the database files of `dir` that exist.
fn raw_bytes(dir: &Path) -> Vec<u8> {
    db_files(dir)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .flatten()
        .collect()
}

fn hx(b: impl AsRef<[u8]>) -> String {
    b.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The child: opens a store in `$DIR_ENV` (its umask 022, set by the
/// parent's shell), writes a session, and checks the modes of the database
/// files while they are open (SQLite removes -wal and -shm at close).
#[test]
fn umask_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return; // not re-executed by the parent: nothing to do
    };
    let dir = PathBuf::from(dir);
    let store = SqliteStore::open_dir(&dir, key()).unwrap();
    store.sessions().create(&session([1; 32], [2; 32])).unwrap();
    for f in db_files(&dir) {
        let mode = std::fs::metadata(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .permissions()
            .mode();
        println!("MODE {} {:o}", f.display(), mode & 0o777);
        assert_eq!(mode & 0o077, 0, "{} is {:o}", f.display(), mode & 0o777);
    }
}

/// Runs [`umask_child`] under umask 022 on `dir`; returns its output.
fn run_child_under_umask_022(dir: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "umask_child", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the child failed:\n{text}");
    assert_eq!(text.matches("MODE ").count(), 3, "the child ran:\n{text}");
    text
}

#[test]
fn database_files_are_created_0600_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    run_child_under_umask_022(dir.path());
    let mode = std::fs::metadata(dir.path().join(DB_FILE_NAME))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// The child of [`making_the_files_private_keeps_the_locks_of_this_process`]:
/// opens the database of `$WAL_CHILD_ENV`, reads, closes. At close SQLite
/// checkpoints and deletes the WAL if it can lock the database file
/// exclusively, that is if no other process has it open.
#[test]
fn wal_child() {
    let Ok(path) = std::env::var(WAL_CHILD_ENV) else {
        return;
    };
    let c = rusqlite::Connection::open(path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM cpo_session", [], |r| r.get(0))
        .unwrap();
    println!("WAL CHILD READ {n}");
}

const WAL_CHILD_ENV: &str = "AGORA_AT_REST_WAL_CHILD_DB";

/// Closing a descriptor of the database file drops every POSIX lock the
/// process holds on it, its SQLite connections' included: had making the
/// files private opened the existing database file (once per connection a
/// store opens), another process closing its last connection would find
/// the file unlocked, checkpoint and delete the WAL under this process's
/// connections, and the database would be corrupt (what `agora bench`
/// beside a node did).
#[test]
fn making_the_files_private_keeps_the_locks_of_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    store.sessions().create(&session([1; 32], [2; 32])).unwrap();
    let db = dir.path().join(DB_FILE_NAME);
    let [wal, _] = agora_store::db::wal_files(&db);
    assert!(wal.exists());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "wal_child", "--nocapture", "--test-threads=1"])
        .env(WAL_CHILD_ENV, &db)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("WAL CHILD READ 1"), "{text}");
    assert!(
        wal.exists(),
        "the other process deleted the WAL: this one held no lock"
    );
    store.sessions().create(&session([3; 32], [4; 32])).unwrap();
    let ok: String = store
        .read(|c| {
            Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap())
        })
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn database_files_readable_by_others_are_restricted_to_0600_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_dir(dir.path(), key()).unwrap());
    let db = dir.path().join(DB_FILE_NAME);
    // As an older version left them (or a copy made under umask 022).
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let [wal, _] = agora_store::db::wal_files(&db);
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o664)).unwrap();
    let _store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    for f in db_files(dir.path()) {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", f.display(), mode & 0o777);
    }
}

#[test]
fn secrets_stored_through_the_ports_are_not_in_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let k_p: [u8; 32] = distinct(1);
    let s = session([1; 32], k_p);
    store.sessions().create(&s).unwrap();

    let ledger = SqliteLedger::new(store.clone());
    books(&ledger);
    let k: [u8; 32] = distinct(2);
    let rec_key: [u8; 32] = distinct(3);
    let mut bill = b"a bill that carries RecKey: ".to_vec();
    bill.extend_from_slice(&rec_key);
    let p = payment(1, k, bill);
    assert_eq!(ledger.pay(&p).unwrap(), PayOutcome::Paid);
    // A held card debit: its state carries the debit's keys and K.
    let held_key: [u8; 32] = distinct(4);
    let mut state = b"held debit, BEncKey: ".to_vec();
    state.extend_from_slice(&held_key);
    let held = order(9, 2);
    assert_eq!(
        ledger.hold(&held, &state, Timestamp(1_000)).unwrap(),
        HoldOutcome::Held
    );

    // They come back through the ports ...
    assert_eq!(store.sessions().get(&s.id).unwrap(), Some(s.clone()));
    assert_eq!(ledger.payment(&p.id).unwrap(), Some(p.clone()));
    assert_eq!(ledger.held(&held).unwrap(), Some(state.clone()));
    // ... and a second hold of the same order gets the state as held.
    assert_eq!(
        ledger.hold(&held, b"other", Timestamp(1_001)).unwrap(),
        HoldOutcome::AlreadyHeld(state.clone())
    );

    // The raw columns are sealed: nonce, ciphertext, tag.
    let (raw_k_p, raw_k, raw_bill, raw_state) = store
        .read(|c| {
            let one = |sql: &str| -> Vec<u8> { c.query_row(sql, [], |r| r.get(0)).unwrap() };
            Ok((
                one("SELECT k_p FROM cpo_session"),
                one("SELECT k FROM speed_payment"),
                one("SELECT bill FROM speed_payment"),
                one("SELECT state FROM speed_hold"),
            ))
        })
        .unwrap();
    assert_eq!((raw_k_p.len(), raw_k.len()), (60, 60));
    assert_eq!(raw_bill.len(), p.bill.len() + 28);
    assert_eq!(raw_state.len(), state.len() + 28);
    for (raw, secret) in [
        (&raw_k_p, &k_p[..]),
        (&raw_k, &k[..]),
        (&raw_bill, &rec_key[..]),
        (&raw_state, &held_key[..]),
    ] {
        assert!(!contains(raw, secret));
    }

    // Nor is any of them anywhere in the files (database, WAL, shm), the
    // store still open (so the WAL holds the writes), nor after it closed.
    for when in ["open", "closed"] {
        let bytes = raw_bytes(dir.path());
        assert!(bytes.len() > 4096, "the files were read");
        for (what, secret) in [
            ("K_p", &k_p[..]),
            ("K", &k[..]),
            ("RecKey in the bill", &rec_key[..]),
            ("the held debit's key", &held_key[..]),
        ] {
            assert!(
                !contains(&bytes, secret),
                "{what} is in the database files in the clear (store {when})"
            );
        }
        if when == "open" {
            drop(ledger);
            drop(store);
            break;
        }
    }
    let bytes = raw_bytes(dir.path());
    assert!(!contains(&bytes, &k_p) && !contains(&bytes, &k));
}

/// Runs `sql` on the database of `dir` behind the store's back.
fn tamper(dir: &Path, sql: &str) {
    let c = rusqlite::Connection::open(dir.join(DB_FILE_NAME)).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn a_sealed_value_moved_to_another_row_does_not_open_and_the_error_names_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
        store
            .sessions()
            .create(&session([1; 32], distinct(11)))
            .unwrap();
        store
            .sessions()
            .create(&session([2; 32], distinct(12)))
            .unwrap();
        let ledger = SqliteLedger::new(store.clone());
        books(&ledger);
        for n in [1, 2] {
            assert_eq!(
                ledger
                    .pay(&payment(n, distinct(20 + n), vec![0xB1; 40]))
                    .unwrap(),
                PayOutcome::Paid
            );
            ledger
                .hold(&order(9, 10 + n), &[n as u8; 64], Timestamp(1))
                .unwrap();
        }
    }
    // Session 1's sealed K_p copied into session 2's row; payment 1's
    // sealed K and bill into payment 2's (the register refuses UPDATE: its
    // trigger goes first); hold 11's state into hold 12's.
    let (s1, s2) = (hx([1u8; 32]), hx([2u8; 32]));
    let (p1, p2) = (hx(order(9, 1).to_bytes()), hx(order(9, 2).to_bytes()));
    let (h1, h2) = (hx(order(9, 11).to_bytes()), hx(order(9, 12).to_bytes()));
    tamper(
        dir.path(),
        &format!(
            "UPDATE cpo_session SET k_p = (SELECT k_p FROM cpo_session WHERE id = x'{s1}')
                 WHERE id = x'{s2}';
             DROP TRIGGER speed_payment_no_update;
             UPDATE speed_payment SET
                 k = (SELECT k FROM speed_payment WHERE id = x'{p1}'),
                 bill = (SELECT bill FROM speed_payment WHERE id = x'{p1}')
                 WHERE id = x'{p2}';
             UPDATE speed_hold SET state = (SELECT state FROM speed_hold WHERE id = x'{h1}')
                 WHERE id = x'{h2}';"
        ),
    );
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let ledger = SqliteLedger::new(store.clone());
    let refused = |r: Result<(), Error>, column: &str| match r {
        Err(Error::Storage(m)) => {
            assert!(m.contains(column), "{m}");
            assert!(
                m.contains("does not open under this store's at-rest key"),
                "{m}"
            );
        }
        other => panic!("{column}: {other:?}"),
    };
    refused(
        store.sessions().get(&[2; 32]).map(drop),
        "cpo_session.k_p of row 0202",
    );
    refused(
        ledger.payment(&order(9, 2)).map(drop),
        "speed_payment.k of row",
    );
    refused(
        ledger.held(&order(9, 12)).map(drop),
        "speed_hold.state of row",
    );
    // The rows they came from are intact.
    assert!(store.sessions().get(&[1; 32]).unwrap().is_some());
    assert!(ledger.payment(&order(9, 1)).unwrap().is_some());
    assert_eq!(ledger.held(&order(9, 11)).unwrap(), Some(vec![1; 64]));
}

#[test]
fn a_store_sealed_under_another_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_dir(dir.path(), key()).unwrap());
    let other = AtRestKey::new(&Secret::new([8; 32]));
    let e = SqliteStore::open_dir(dir.path(), other).unwrap_err();
    assert!(
        matches!(&e, Error::Storage(m) if m.contains("sealed under another at-rest key")),
        "{e:?}"
    );
    assert!(SqliteStore::open_dir(dir.path(), key()).is_ok());
}

#[test]
fn plaintext_secrets_of_a_version_10_database_are_sealed_by_migration_11() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let k_p: [u8; 32] = distinct(31);
    let k: [u8; 32] = distinct(32);
    let rec_key: [u8; 32] = distinct(33);
    let held_key: [u8; 32] = distinct(34);
    let p = payment(1, k, rec_key.to_vec());
    let held = order(9, 2);
    {
        // The schema of the version before, and rows as it wrote them: the
        // secrets in the clear.
        let mut c = open_connection(&path, 1_000).unwrap();
        assert_eq!(migrate(&mut c, &MIGRATIONS[..10], &key()), Ok(10));
        c.execute_batch(
            "INSERT INTO speed_account (number, owner, kind, currency, allow_credit)
             VALUES ('C1', zeroblob(32), 'customer', 'EUR', 1),
                    ('V1', zeroblob(32), 'vendor', 'EUR', 0);
             INSERT INTO speed_journal (seq, id, at, memo) VALUES (1, zeroblob(16), 1000, 'pay');",
        )
        .unwrap();
        c.execute(
            "INSERT INTO cpo_session (id, k_p, seller, bond, bond_serial, agency,
                 from_at, until_at, ended_at)
             VALUES (?1, ?2, ?3, x'3001', x'01', ?4, 100, 4294967295, NULL)",
            rusqlite::params![[1u8; 32], k_p, [3u8; 32], [4u8; 32]],
        )
        .unwrap();
        c.execute(
            "INSERT INTO speed_payment (id, payer, vendor, price_cents, currency, mode, card,
                 customer, bill, receipt, k, paid_at, entry)
             VALUES (?1, 'C1', 'V1', 100, 'EUR', 'account', NULL, ?2, ?3, x'5e01', ?4, 1000, 1)",
            rusqlite::params![p.id.to_bytes(), [0xC0u8; 32], rec_key, k],
        )
        .unwrap();
        c.execute(
            "INSERT INTO speed_hold (id, state, held_at) VALUES (?1, ?2, 1000)",
            rusqlite::params![held.to_bytes(), held_key],
        )
        .unwrap();
        // Into the database file itself, as a long-running node would have.
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    assert!(
        contains(&raw_bytes(dir.path()), &k_p),
        "in the clear before"
    );

    let store = SqliteStore::open(&path, StoreConfig::default(), key()).unwrap();
    assert_eq!(store.schema_version(), Ok(MIGRATIONS.len() as u32));
    // Every row is there, its secrets as they were ...
    assert_eq!(
        store.sessions().get(&[1; 32]).unwrap(),
        Some(session([1; 32], k_p))
    );
    let ledger = SqliteLedger::new(store.clone());
    assert_eq!(ledger.payment(&p.id).unwrap(), Some(p.clone()));
    assert_eq!(ledger.held(&held).unwrap(), Some(held_key.to_vec()));
    // ... and the tables keep their rules.
    ledger
        .open_account(&agora_speed::ledger::conformance::account(
            "EXT",
            agora_speed::ledger::AccountKind::External,
            eur(),
            false,
        ))
        .unwrap();
    assert_eq!(
        ledger.hold(&p.id, b"s2", Timestamp(1)).unwrap(),
        HoldOutcome::AlreadyPaid
    );
    let e = store
        .writer()
        .execute(|c| {
            c.execute("DELETE FROM speed_payment", [])
                .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap_err();
    assert!(
        matches!(&e, Error::Storage(m) if m.contains("append-only")),
        "{e:?}"
    );
    // No plaintext copy is left in the files: the old pages were zeroed
    // and the WAL emptied.
    let bytes = raw_bytes(dir.path());
    for (what, secret) in [
        ("K_p", &k_p[..]),
        ("K", &k[..]),
        ("RecKey in the bill", &rec_key[..]),
        ("the held debit's key", &held_key[..]),
    ] {
        assert!(
            !contains(&bytes, secret),
            "{what} of the old rows is still in the database files"
        );
    }
}
