#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Tampering with the SQLite archive behind the port's back, with raw SQL,
//! is detected by `verify()` with the right `ChainError`.

use agora_core::ports::{verify_against_head, ChainError, EvidenceArchive};
use agora_core::Timestamp;
use agora_store::{SqliteArchive, SqliteStore};
use rusqlite::Connection;

/// An archive of 6 entries, and a raw connection to its file with the
/// append-only triggers dropped (an attacker with file access can do that).
fn archive() -> (tempfile::TempDir, SqliteArchive, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let a = store.archive();
    for i in 1..=6u64 {
        a.append(
            "test/evidence",
            format!("evidence {i}").as_bytes(),
            Timestamp(1_000 + i),
        )
        .unwrap();
    }
    assert_eq!(a.verify(), Ok(6));
    let raw = Connection::open(store.path()).unwrap();
    raw.execute_batch(
        "DROP TRIGGER evidence_archive_no_update; DROP TRIGGER evidence_archive_no_delete;",
    )
    .unwrap();
    (dir, a, raw)
}

#[test]
fn plain_sql_cannot_update_or_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    store.archive().append("k", b"p", Timestamp(1)).unwrap();
    let raw = Connection::open(store.path()).unwrap();
    let upd = raw.execute(
        "UPDATE evidence_archive SET payload = x'00' WHERE seq = 1",
        [],
    );
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = raw.execute("DELETE FROM evidence_archive WHERE seq = 1", []);
    assert!(del.unwrap_err().to_string().contains("append-only"));
}

#[test]
fn changed_payload_is_detected() {
    let (_d, a, raw) = archive();
    raw.execute(
        "UPDATE evidence_archive SET payload = x'66' WHERE seq = 4",
        [],
    )
    .unwrap();
    assert_eq!(a.verify(), Err(ChainError::HashMismatch { seq: 4 }));
}

#[test]
fn changed_payload_with_recomputed_hash_is_detected() {
    let (_d, a, raw) = archive();
    let mut e = a.get(4).unwrap().unwrap();
    e.payload = b"forged".to_vec();
    let h = agora_core::ports::entry_hash(e.seq, e.recorded_at, &e.kind, &e.payload, &e.prev_hash);
    raw.execute(
        "UPDATE evidence_archive SET payload = ?1, hash = ?2 WHERE seq = 4",
        rusqlite::params![e.payload, h.as_slice()],
    )
    .unwrap();
    assert_eq!(a.verify(), Err(ChainError::PrevHashMismatch { seq: 5 }));
}

#[test]
fn removed_row_is_detected() {
    let (_d, a, raw) = archive();
    raw.execute("DELETE FROM evidence_archive WHERE seq = 3", [])
        .unwrap();
    assert_eq!(
        a.verify(),
        Err(ChainError::SeqMismatch {
            seq: 4,
            expected: 3
        })
    );
}

#[test]
fn removed_first_row_is_detected() {
    let (_d, a, raw) = archive();
    raw.execute("DELETE FROM evidence_archive WHERE seq = 1", [])
        .unwrap();
    assert_eq!(
        a.verify(),
        Err(ChainError::SeqMismatch {
            seq: 2,
            expected: 1
        })
    );
}

#[test]
fn swapped_rows_are_detected() {
    let (_d, a, raw) = archive();
    // Swap every column but seq between rows 3 and 4 (the rows are reordered).
    raw.execute_batch(
        "UPDATE evidence_archive SET seq = 1000 WHERE seq = 3;
         UPDATE evidence_archive SET seq = 3 WHERE seq = 4;
         UPDATE evidence_archive SET seq = 4 WHERE seq = 1000;",
    )
    .unwrap();
    assert_eq!(a.verify(), Err(ChainError::PrevHashMismatch { seq: 3 }));
}

#[test]
fn swapped_payloads_are_detected() {
    let (_d, a, raw) = archive();
    raw.execute_batch(
        "CREATE TEMP TABLE sw AS SELECT seq, payload FROM evidence_archive WHERE seq IN (2, 5);
         UPDATE evidence_archive SET payload = (SELECT payload FROM sw WHERE seq = 5) WHERE seq = 2;
         UPDATE evidence_archive SET payload = (SELECT payload FROM sw WHERE seq = 2) WHERE seq = 5;",
    )
    .unwrap();
    assert_eq!(a.verify(), Err(ChainError::HashMismatch { seq: 2 }));
}

#[test]
fn removed_tail_is_detected_against_remembered_head() {
    let (_d, a, raw) = archive();
    let head = a.head().unwrap().unwrap();
    raw.execute("DELETE FROM evidence_archive WHERE seq >= 5", [])
        .unwrap();
    // The shorter chain is internally valid...
    assert_eq!(a.verify(), Ok(4));
    // ...but not against the head remembered before.
    let entries = a.entries(1, 100).unwrap();
    assert_eq!(
        verify_against_head(entries.into_iter(), head),
        Err(ChainError::TailMissing {
            head_seq: 6,
            last_seq: 4
        })
    );
}

#[test]
fn corrupt_hash_column_is_reported_not_panicking() {
    let (_d, a, raw) = archive();
    raw.execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    raw.execute("UPDATE evidence_archive SET hash = x'00' WHERE seq = 2", [])
        .unwrap();
    assert!(matches!(
        a.verify(),
        Err(ChainError::Unreadable { seq: 1, .. })
    ));
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
