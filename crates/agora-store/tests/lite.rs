#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! agora-lite's client records on SQLite: the port's conformance suite
//! (through [`Stores`], as the node gets it, and on the in-memory twin);
//! a client's `K` is never in the database files in the clear, and a
//! sealed `K` moved to another row does not open; records survive
//! reopening the store; the database itself refuses a change of key and a
//! chain moved back.

use agora_core::crypto::Secret;
use agora_core::{Error, Timestamp};
use agora_lite::records::conformance::{assert_same, record, records_suite};
use agora_lite::records::{Advanced, ClientRecords, MemoryClientRecords, Subscribed};
use agora_lite::skep::ClientRecord;
use agora_lite::{ClientId, VendorId, VendorKey};
use agora_store::{AtRestKey, SqliteStore, StoreUrl, Stores, DB_FILE_NAME};
use std::path::Path;

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> AtRestKey {
    AtRestKey::new(&Secret::new([7; 32]))
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open_dir(dir, key()).unwrap()
}

fn vendor(s: &str) -> VendorId {
    VendorId::new(s).unwrap()
}

fn client(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The database file of `dir` with its -wal and -shm files, concatenated.
fn files(dir: &Path) -> Vec<u8> {
    let db = dir.join(DB_FILE_NAME);
    let [wal, shm] = agora_store::db::wal_files(&db);
    [db, wal, shm]
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .flatten()
        .collect()
}

#[test]
fn sqlite_client_records_pass_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(&StoreUrl::in_data_dir(dir.path()), key()).unwrap();
    records_suite(stores.lite_records().as_ref());
}

#[test]
fn memory_client_records_pass_conformance_suite() {
    records_suite(&MemoryClientRecords::new());
}

#[test]
fn a_client_key_is_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let records = store.lite_records();
    // A K no other value in the files shares.
    let k: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5A);
    let mut rec = record("alice", 0, true);
    rec.k = VendorKey::from_shared_key(Secret::new(k));
    let v = vendor("vendor-1");
    assert_eq!(
        records.subscribe(&v, &rec, Timestamp(500)).unwrap(),
        Subscribed::New
    );
    let mut bob = record("bob", 0, true);
    bob.k = VendorKey::from_shared_key(Secret::new(k));
    records.subscribe(&v, &bob, Timestamp(500)).unwrap();
    assert_same(&records.get(&v, &client("alice")).unwrap().unwrap(), &rec);
    let raw: Vec<u8> = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT k FROM lite_client WHERE vendor = 'vendor-1' AND client = 'alice'",
                [],
                |r| r.get(0),
            )
            .unwrap())
        })
        .unwrap();
    assert_eq!(raw.len(), 32 + agora_store::at_rest::SEAL_OVERHEAD);
    assert!(!contains(&raw, &k));
    // Nor anywhere in the files, the store open (the WAL holds the writes)
    // and closed (checkpointed into the database file).
    assert!(!contains(&files(dir.path()), &k), "store open");
    drop(records);
    drop(store);
    assert!(!contains(&files(dir.path()), &k), "store closed");

    // A sealed K copied to another client's row does not open there.
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    c.execute_batch("DROP TRIGGER lite_client_fixed").unwrap();
    c.execute(
        "UPDATE lite_client SET k = (SELECT k FROM lite_client WHERE client = 'alice')
         WHERE client = 'bob'",
        [],
    )
    .unwrap();
    drop(c);
    let store = open(dir.path());
    let e = store
        .lite_records()
        .get(&v, &client("bob"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Storage(m) if m.contains("lite_client.k of row")),
        "{e:?}"
    );
    assert_same(
        &store
            .lite_records()
            .get(&v, &client("alice"))
            .unwrap()
            .unwrap(),
        &rec,
    );
}

#[test]
fn a_client_record_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (vendor("vendor-1"), vendor("vendor-2"));
    let alice = record("alice", 1, true);
    let bob = record("bob", 2, false);
    {
        let store = open(dir.path());
        let records = store.lite_records();
        records.subscribe(&v1, &alice, Timestamp(500)).unwrap();
        records.subscribe(&v2, &bob, Timestamp(500)).unwrap();
        assert_eq!(
            records
                .advance_chain(&v1, &client("alice"), 0, 3, &[0x33; 32])
                .unwrap(),
            Advanced::Advanced
        );
    }
    let store = open(dir.path());
    let records = store.lite_records();
    let got = records.get(&v1, &client("alice")).unwrap().unwrap();
    let chain = got.chain.clone().unwrap();
    assert_eq!((chain.last_index(), chain.last_value()), (3, [0x33; 32]));
    let moved = ClientRecord {
        chain: Some(chain),
        ..record("alice", 1, true)
    };
    assert_same(&got, &moved);
    assert_same(&records.get(&v2, &client("bob")).unwrap().unwrap(), &bob);
    assert!(records.get(&v1, &client("bob")).unwrap().is_none());
    // The first SKEP still wins after reopening.
    assert_eq!(
        records
            .subscribe(&v1, &record("alice", 9, true), Timestamp(600))
            .unwrap(),
        Subscribed::AlreadySubscribed
    );
    assert_same(
        &records.get(&v1, &client("alice")).unwrap().unwrap(),
        &moved,
    );
}

#[test]
fn the_database_itself_refuses_a_new_key_and_a_chain_moved_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let records = store.lite_records();
        records
            .subscribe(&vendor("v"), &record("alice", 1, true), Timestamp(500))
            .unwrap();
        records
            .advance_chain(&vendor("v"), &client("alice"), 0, 5, &[5; 32])
            .unwrap();
    }
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    for (sql, why) in [
        (
            "UPDATE lite_client SET k = zeroblob(60)",
            "keeps its key and subscription",
        ),
        (
            "UPDATE lite_client SET subscription = x'00'",
            "keeps its key and subscription",
        ),
        (
            "UPDATE lite_client SET last_index = 4",
            "only moves forward",
        ),
        (
            "UPDATE lite_client SET last_index = 5",
            "only moves forward",
        ),
        (
            "UPDATE lite_client SET last_index = 101",
            "CHECK constraint failed",
        ),
    ] {
        let e = c.execute(sql, []).unwrap_err().to_string();
        assert!(e.contains(why), "{sql}: {e}");
    }
}
