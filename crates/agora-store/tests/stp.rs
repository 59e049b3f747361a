#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! agora-stp's ports on SQLite: the commit authority's log and the escrow's
//! store pass their conformance suites (through [`Stores`], as the node
//! gets them); racing units on one transaction apply once; a unit that
//! fails before its leaf leaves nothing; the database itself refuses a
//! second leaf, a gap in the leaves and a rewrite; the escrow's items are
//! sealed at rest; and the commit authority over SQLite answers a whole
//! run byte for byte as over the in-memory log.
//!
//! The failure point `stp-unit-before-leaf` is process-wide: the test that
//! arms it holds [`ARMING`] for writing, every test that commits a unit
//! holds it for reading.

use agora_core::crypto::{sha256, Secret, SigningKey};
use agora_core::{Error, KeyId, Timestamp};
use agora_store::failpoint::{arm_for_testing_only, disarm_all_for_testing_only, Action};
use agora_store::{AtRestKey, SqliteStore, StoreConfig, StoreUrl, Stores, DB_FILE_NAME};
use agora_stp::ca::{Answer, CommitAuthority};
use agora_stp::escrow::{DepositOutcome, EscrowStore, Held, SettleOutcome, Settlement};
use agora_stp::log::{CommitLog, LogUnit, LogWritten, MemoryCommitLog};
use agora_stp::outcome::verify_outcome;
use agora_stp::process::AwaitOutcome;
use agora_stp::testkit::World;
use agora_stp::Tid;
use std::path::Path;
use std::sync::{Barrier, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Held for writing by the test that arms a failure point, for reading by
/// every test that commits units.
static ARMING: RwLock<()> = RwLock::new(());

fn committing() -> RwLockReadGuard<'static, ()> {
    ARMING.read().unwrap_or_else(|p| p.into_inner())
}

fn arming() -> RwLockWriteGuard<'static, ()> {
    ARMING.write().unwrap_or_else(|p| p.into_inner())
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> AtRestKey {
    AtRestKey::new(&Secret::new([7; 32]))
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open_dir(dir, key()).unwrap()
}

fn unit(tid: Tid, version: u64, record: &[u8], leaf: Option<&[u8]>) -> LogUnit {
    LogUnit {
        tid,
        version,
        record: record.to_vec(),
        deadline: Timestamp(1_000),
        leaf: leaf.map(<[u8]>::to_vec),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sqlite_commit_log_passes_conformance_suite() {
    let _c = committing();
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(&StoreUrl::in_data_dir(dir.path()), key()).unwrap();
    agora_stp::log::conformance::commit_log_suite(stores.commit_log().as_ref());
}

#[test]
fn sqlite_escrow_store_passes_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(&StoreUrl::in_data_dir(dir.path()), key()).unwrap();
    agora_stp::escrow::conformance::escrow_store_suite(stores.escrow().as_ref());
}

/// Two threads commit a unit each on `tid` from the version it is at,
/// through `a` and `b`, released together; returns what each got.
fn race(
    a: &dyn CommitLog,
    b: &dyn CommitLog,
    tid: Tid,
    leaves: bool,
) -> [(Vec<u8>, LogWritten); 2] {
    let version = a.get(&tid).unwrap().map_or(0, |s| s.version);
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let runs = [(a, b"from thread a"), (b, b"from thread b")].map(|(log, record)| {
            let barrier = &barrier;
            s.spawn(move || {
                let leaf = leaves.then_some(&record[..]);
                barrier.wait();
                let w = log.commit(unit(tid, version, record, leaf)).wait().unwrap();
                (record.to_vec(), w)
            })
        });
        runs.map(|h| h.join().unwrap())
    })
}

/// Checks that of a race from `version`, exactly one unit applied and the
/// other conflicted, and that the record is the winner's.
fn exactly_one_applied(log: &dyn CommitLog, tid: Tid, version: u64, got: &[(Vec<u8>, LogWritten)]) {
    let applied: Vec<&Vec<u8>> = got
        .iter()
        .filter(|(_, w)| matches!(w, LogWritten::Written { .. }))
        .map(|(r, _)| r)
        .collect();
    let conflicts = got
        .iter()
        .filter(|(_, w)| *w == LogWritten::Conflict)
        .count();
    assert_eq!((applied.len(), conflicts), (1, 1), "{got:?}");
    let stored = log.get(&tid).unwrap().unwrap();
    assert_eq!(stored.version, version + 1);
    assert_eq!(&stored.record, applied[0]);
}

#[test]
fn two_threads_racing_units_on_one_transaction_from_one_version_apply_exactly_one() {
    let _c = committing();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A second store on the same file: its own writer connection, as a
    // second process would have.
    let other = SqliteStore::open(store.path(), StoreConfig::default(), key()).unwrap();
    let (log, other_log) = (store.commit_log(), other.commit_log());
    for (name, b) in [
        ("one store", &log as &dyn CommitLog),
        ("two stores on one file", &other_log as &dyn CommitLog),
    ] {
        // Records only: the first write (the primary key) and then 40
        // updates (the version check).
        let tid = Tid(sha256(name.as_bytes())[..16].try_into().unwrap());
        for version in 0..40 {
            let got = race(&log, b, tid, false);
            exactly_one_applied(&log, tid, version, &got);
        }
        // With leaves, from version 0 and from version 1: one leaf each.
        for n in 0..20u8 {
            let tid = Tid([n; 16]);
            let tid = Tid(sha256(&[name.as_bytes(), &tid.0].concat())[..16]
                .try_into()
                .unwrap());
            if n % 2 == 1 {
                log.commit(unit(tid, 0, b"undecided", None)).wait().unwrap();
            }
            let before = log.leaf_count().unwrap();
            let version = u64::from(n % 2);
            let got = race(&log, b, tid, true);
            exactly_one_applied(&log, tid, version, &got);
            assert_eq!(log.leaf_count().unwrap(), before + 1, "{name}: one leaf");
            let index = log.get(&tid).unwrap().unwrap().leaf_index.unwrap();
            assert_eq!(index, before);
            let winner = got
                .iter()
                .find(|(_, w)| *w != LogWritten::Conflict)
                .unwrap();
            assert_eq!(
                winner.1,
                LogWritten::Written {
                    leaf_index: Some(before)
                }
            );
            assert_eq!(log.leaves(index, 1).unwrap(), vec![winner.0.clone()]);
        }
    }
}

#[test]
fn a_unit_that_fails_before_its_leaf_leaves_nothing() {
    let _a = arming();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.commit_log();
    let tid = Tid([5; 16]);
    log.commit(unit(tid, 0, b"voted", None)).wait().unwrap();
    for version in [1, 0] {
        // From an existing record (the update) and for a new transaction
        // (the insert).
        let tid = if version == 0 { Tid([6; 16]) } else { tid };
        let before = log.get(&tid).unwrap();
        arm_for_testing_only("stp-unit-before-leaf", Action::Fail);
        let r = log
            .commit(unit(tid, version, b"decided", Some(b"the leaf")))
            .wait();
        disarm_all_for_testing_only();
        assert!(
            matches!(&r, Err(Error::Storage(m)) if m.contains("stp-unit-before-leaf")),
            "{r:?}"
        );
        assert_eq!(log.get(&tid).unwrap(), before, "the record is as it was");
        assert_eq!(log.leaf_count().unwrap(), 0);
    }
    // Nothing of them stands in the way of the same units now.
    assert_eq!(
        log.commit(unit(tid, 1, b"decided", Some(b"the leaf")))
            .wait()
            .unwrap(),
        LogWritten::Written {
            leaf_index: Some(0)
        }
    );
    assert_eq!(
        log.commit(unit(Tid([6; 16]), 0, b"decided", Some(b"leaf 2")))
            .wait()
            .unwrap(),
        LogWritten::Written {
            leaf_index: Some(1)
        }
    );
}

#[test]
fn the_database_itself_refuses_a_second_leaf_a_gap_and_a_rewrite() {
    let _c = committing();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.commit_log();
    let (t1, t2, t3) = (Tid([1; 16]), Tid([2; 16]), Tid([3; 16]));
    log.commit(unit(t1, 0, b"r", Some(b"leaf 1")))
        .wait()
        .unwrap();
    log.commit(unit(t2, 0, b"r", Some(b"leaf 2")))
        .wait()
        .unwrap();
    log.commit(unit(t3, 0, b"r", None)).wait().unwrap();
    log.record_head(2, b"head").unwrap();
    let escrow = store.escrow();
    let held = Held {
        id: [9; 32],
        tid: t1,
        depositor: KeyId([1; 32]),
        recipient: KeyId([2; 32]),
        item: b"item".to_vec(),
        receipt: b"receipt".to_vec(),
        settled: None,
    };
    escrow.deposit(&held).unwrap();
    let s = Settlement {
        to: KeyId([2; 32]),
        returned: false,
        at: Timestamp(5),
    };
    assert_eq!(escrow.settle(&held.id, &s).unwrap(), SettleOutcome::Settled);

    // Another writer on the file, past the store's code: what it tries is
    // refused by the schema.
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    for (what, sql) in [
        (
            "a second leaf for a decided transaction",
            "INSERT INTO stp_leaf (idx, tid, leaf) VALUES (2, x'01010101010101010101010101010101', x'00')",
        ),
        (
            "a leaf past the next index",
            "INSERT INTO stp_leaf (idx, tid, leaf) VALUES (5, x'03030303030303030303030303030303', x'00')",
        ),
        (
            "a leaf whose record does not name it",
            "INSERT INTO stp_leaf (idx, tid, leaf) VALUES (2, x'03030303030303030303030303030303', x'00')",
        ),
        ("a leaf rewritten", "UPDATE stp_leaf SET leaf = x'00' WHERE idx = 0"),
        ("a leaf removed", "DELETE FROM stp_leaf WHERE idx = 1"),
        (
            "a record's leaf index moved",
            "UPDATE stp_tx SET leaf_index = 1 WHERE tid = x'01010101010101010101010101010101'",
        ),
        ("a record removed", "DELETE FROM stp_tx"),
        ("a tree head rewritten", "UPDATE stp_head SET size = 0"),
        ("a settlement rewritten", "UPDATE stp_escrow SET returned = 1"),
        ("a deposit removed", "DELETE FROM stp_escrow"),
    ] {
        assert!(c.execute(sql, []).is_err(), "{what} was let through");
    }
    // Through the port, a second leaf is an error and writes nothing.
    let r = log
        .commit(unit(t1, 1, b"again", Some(b"leaf 1 again")))
        .wait();
    assert!(
        matches!(&r, Err(Error::Storage(m)) if m.contains("second outcome leaf")),
        "{r:?}"
    );
    assert_eq!(log.get(&t1).unwrap().unwrap().version, 1);
    assert_eq!(log.leaf_count().unwrap(), 2);
}

#[test]
fn tree_heads_are_refused_below_the_latest_or_past_the_leaves() {
    let _c = committing();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.commit_log();
    assert!(log.record_head(1, b"over no leaves").is_err());
    log.record_head(0, b"empty").unwrap();
    for n in 0..3u8 {
        log.commit(unit(Tid([n; 16]), 0, b"r", Some(&[n])))
            .wait()
            .unwrap();
    }
    log.record_head(2, b"two").unwrap();
    let e = log.record_head(1, b"one").unwrap_err();
    assert!(
        matches!(&e, Error::Storage(m) if m.contains("of 1 leaves after one of 2, over 3")),
        "{e:?}"
    );
    assert!(log.record_head(4, b"four").is_err());
    assert!(log.record_head(u64::MAX, b"far").is_err());
    log.record_head(2, b"two again").unwrap();
    log.record_head(3, b"three").unwrap();
    assert_eq!(log.latest_head().unwrap(), Some((3, b"three".to_vec())));
}

#[test]
fn the_log_and_the_escrow_survive_reopen() {
    let _c = committing();
    let dir = tempfile::tempdir().unwrap();
    let held = Held {
        id: [4; 32],
        tid: Tid([4; 16]),
        depositor: KeyId([1; 32]),
        recipient: KeyId([2; 32]),
        item: vec![0xAB; 1000],
        receipt: b"receipt".to_vec(),
        settled: None,
    };
    let (stored, leaves) = {
        let store = open(dir.path());
        let log = store.commit_log();
        log.commit(unit(Tid([1; 16]), 0, b"a", None))
            .wait()
            .unwrap();
        log.commit(unit(Tid([1; 16]), 1, b"b", Some(b"leaf")))
            .wait()
            .unwrap();
        log.commit(unit(Tid([2; 16]), 0, b"c", None))
            .wait()
            .unwrap();
        log.record_head(1, b"head").unwrap();
        store.escrow().deposit(&held).unwrap();
        (
            [
                log.get(&Tid([1; 16])).unwrap(),
                log.get(&Tid([2; 16])).unwrap(),
            ],
            log.leaves(0, 10).unwrap(),
        )
    };
    let store = open(dir.path());
    let log = store.commit_log();
    assert_eq!(
        [
            log.get(&Tid([1; 16])).unwrap(),
            log.get(&Tid([2; 16])).unwrap()
        ],
        stored
    );
    assert_eq!(log.leaves(0, 10).unwrap(), leaves);
    assert_eq!(log.latest_head().unwrap(), Some((1, b"head".to_vec())));
    assert_eq!(
        log.undecided_past(Timestamp(1_000), 10).unwrap(),
        vec![Tid([2; 16])]
    );
    assert_eq!(store.escrow().get(&held.id).unwrap(), Some(held));
}

#[test]
fn escrowed_items_are_sealed_at_rest_and_bound_to_their_deposit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let escrow = store.escrow();
    let item: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
    let held = |id: u8| Held {
        id: [id; 32],
        tid: Tid([3; 16]),
        depositor: KeyId([1; 32]),
        recipient: KeyId([2; 32]),
        item: item.clone(),
        receipt: b"receipt".to_vec(),
        settled: None,
    };
    assert_eq!(escrow.deposit(&held(1)).unwrap(), DepositOutcome::Held);
    assert_eq!(escrow.deposit(&held(2)).unwrap(), DepositOutcome::Held);
    assert_eq!(escrow.get(&[1; 32]).unwrap(), Some(held(1)));
    let raw: Vec<u8> = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT item FROM stp_escrow WHERE id = ?1",
                [[1u8; 32]],
                |r| r.get(0),
            )
            .unwrap())
        })
        .unwrap();
    assert_eq!(raw.len(), item.len() + agora_store::at_rest::SEAL_OVERHEAD);
    assert!(!contains(&raw, &item[..16]));
    // Nor anywhere in the files, the store open (the WAL holds the writes)
    // and closed.
    let files = |dir: &Path| -> Vec<u8> {
        let db = dir.join(DB_FILE_NAME);
        let [wal, shm] = agora_store::db::wal_files(&db);
        [db, wal, shm]
            .iter()
            .filter_map(|f| std::fs::read(f).ok())
            .flatten()
            .collect()
    };
    assert!(!contains(&files(dir.path()), &item[..16]), "store open");
    drop(escrow);
    drop(store);
    assert!(!contains(&files(dir.path()), &item[..16]), "store closed");

    // A sealed item copied to another deposit's row does not open there.
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    c.execute(
        "UPDATE stp_escrow SET item = (SELECT item FROM stp_escrow WHERE id = ?1) WHERE id = ?2",
        [[1u8; 32], [2u8; 32]],
    )
    .unwrap();
    let store = open(dir.path());
    let e = store.escrow().get(&[2; 32]).unwrap_err();
    assert!(
        matches!(&e, Error::Storage(m) if m.contains("stp_escrow.item of row 0202")),
        "{e:?}"
    );
    assert_eq!(store.escrow().get(&[1; 32]).unwrap(), Some(held(1)));
}

/// A run of the commit authority in the in-memory [`World`]: a chain of
/// three parties that commits, and a pair that aborts. Returns the world
/// (its log and every message it sent the CA) and the Outcomes its
/// parties were given.
fn world_run() -> (World, Vec<Vec<u8>>) {
    let mut w = World::new(4, 41);
    let (a, b) = w.begin(0, 1).unwrap();
    let (c, d) = w.join(1, &b, 2).unwrap();
    let mut subs = vec![(0, a, 1, b), (1, c, 2, d)];
    for (ia, oa, ib, ob) in subs.iter_mut() {
        w.converse((*ia, oa), (*ib, ob), 1).unwrap();
    }
    let mut waits: Vec<AwaitOutcome> = Vec::new();
    for (ia, oa, ib, ob) in subs {
        waits.push(w.decide(ia, oa, true).unwrap().0);
        waits.push(w.decide(ib, ob, true).unwrap().0);
    }
    let (mut e, mut f) = w.begin(2, 3).unwrap();
    w.converse((2, &mut e), (3, &mut f), 0).unwrap();
    waits.push(w.decide(2, e, false).unwrap().0);
    let outcomes = waits
        .iter()
        .map(|wait| match w.to_ca_sealed(wait.decide()).unwrap() {
            Answer::Outcome(o) => o,
            a => panic!("not decided: {a:?}"),
        })
        .collect();
    (w, outcomes)
}

/// The messages the world sent its CA, handled in order by a commit
/// authority with the same key over `log`, sealing where the world sealed
/// (a message sent again right after a Sealing answer).
fn replay(w: &World, log: &dyn CommitLog) -> Vec<Answer> {
    let ca = CommitAuthority::new(
        SigningKey::from_seed(&w.ca_key.to_seed()),
        w.parties[0].trust.clone(),
    );
    let sent = w.sent_to_ca.lock().unwrap().clone();
    let mut answers = Vec::with_capacity(sent.len());
    for (i, m) in sent.iter().enumerate() {
        let a = ca.handle(w.now, m, log).unwrap();
        if matches!(a, Answer::Sealing { .. }) && sent.get(i + 1) == Some(m) {
            ca.seal(w.now, log).unwrap();
        }
        answers.push(a);
    }
    answers
}

#[test]
fn the_commit_authority_over_sqlite_answers_byte_for_byte_as_over_memory() {
    let _c = committing();
    let (w, outcomes) = world_run();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sqlite = store.commit_log();
    let over_sqlite = replay(&w, &sqlite);
    let over_memory = replay(&w, &MemoryCommitLog::new());
    assert_eq!(over_sqlite.len(), w.sent_to_ca.lock().unwrap().len());
    assert_eq!(over_sqlite, over_memory);
    // The final Outcomes are those the world's parties were given, and
    // they verify.
    let ca = w.ca.verifying_key();
    let mut committed = 0;
    for o in &outcomes {
        assert!(over_sqlite.contains(&Answer::Outcome(o.clone())));
        committed += usize::from(verify_outcome(o, &ca).unwrap().leaf.committed());
    }
    assert_eq!((outcomes.len(), committed), (5, 4));
    // The logs hold the same: leaves, the latest head, each record.
    let memory = w.log();
    assert_eq!(sqlite.leaf_count().unwrap(), 2);
    assert_eq!(sqlite.leaf_count(), memory.leaf_count());
    assert_eq!(sqlite.leaves(0, 10), memory.leaves(0, 10));
    assert_eq!(sqlite.latest_head(), memory.latest_head());
    for o in &outcomes {
        let tid = verify_outcome(o, &ca).unwrap().leaf.tid;
        assert_eq!(sqlite.get(&tid), memory.get(&tid));
        assert!(sqlite.get(&tid).unwrap().unwrap().version >= 3);
    }
}
