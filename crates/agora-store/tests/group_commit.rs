#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The group-commit writer: batching, per-request savepoints, failed commits,
//! overload, graceful shutdown, and 64 concurrent writers losing nothing.

use agora_core::Error;
use agora_store::{open_connection, GroupCommit, GroupCommitConfig, SqliteStore, StoreConfig};
use rusqlite::Connection;
use std::sync::mpsc;
use std::sync::Arc;

fn store_with(dir: &tempfile::TempDir, config: StoreConfig) -> SqliteStore {
    let s = SqliteStore::open(&dir.path().join("agora.db"), config, key()).unwrap();
    s.writer()
        .execute(|c| {
            c.execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (id INTEGER PRIMARY KEY,
                     parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    s
}

fn insert(k: i64) -> impl FnOnce(&Connection) -> Result<i64, Error> + Send + 'static {
    move |c| {
        c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok(k)
    }
}

fn keys(s: &SqliteStore) -> Vec<i64> {
    s.read(|c| {
        let mut st = c.prepare("SELECT k FROM t ORDER BY k").unwrap();
        let v = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<i64>, _>>()
            .unwrap();
        Ok(v)
    })
    .unwrap()
}

/// Holds the writer inside a request until the returned sender is used (or
/// dropped), so that the requests submitted meanwhile queue up and form the
/// next batch. Returns once the writer is inside the gate.
fn gate(s: &SqliteStore) -> (mpsc::Sender<()>, agora_store::Ticket<i64>) {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let t = s
        .writer()
        .submit(move |c| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            insert(0)(c)
        })
        .unwrap();
    started_rx.recv().unwrap();
    (release_tx, t)
}

#[test]
fn a_failing_request_rolls_back_only_its_own_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(&dir, StoreConfig::default());
    let before = s.writer().stats();
    let (release, g) = gate(&s);
    let w = s.writer();
    let a = w.submit(insert(1)).unwrap();
    let dup = w.submit(insert(1)).unwrap();
    let own_err = w
        .submit(|c| {
            insert(2)(c)?;
            Err::<i64, _>(Error::ApiMisuse("refused after writing"))
        })
        .unwrap();
    let panics = w
        .submit(|c| -> Result<i64, Error> {
            insert(4)(c)?;
            panic!("a buggy request")
        })
        .unwrap();
    let e = w.submit(insert(3)).unwrap();
    release.send(()).unwrap();
    assert_eq!(g.wait(), Ok(0));
    assert_eq!(a.wait(), Ok(1));
    let dup = dup.wait().unwrap_err();
    assert!(
        matches!(&dup, Error::Storage(m) if m.contains("UNIQUE")),
        "{dup:?}"
    );
    assert_eq!(
        own_err.wait(),
        Err(Error::ApiMisuse("refused after writing"))
    );
    assert!(matches!(panics.wait(), Err(Error::Storage(m)) if m.contains("panicked")));
    assert_eq!(e.wait(), Ok(3));
    assert_eq!(
        keys(&s),
        vec![0, 1, 3],
        "rows 2 and 4 rolled back with their savepoints"
    );
    let after = s.writer().stats();
    assert_eq!(
        after.commits - before.commits,
        2,
        "the gate, then one batch of five"
    );
    assert_eq!(after.requests - before.requests, 6);
    assert!(after.largest_batch >= 5);
}

#[test]
fn a_failed_commit_fails_every_request_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(&dir, StoreConfig::default());
    let (release, g) = gate(&s);
    let w = s.writer();
    let ok = w.submit(insert(1)).unwrap();
    // A deferred foreign key is only checked at COMMIT: the statement and the
    // savepoint succeed, the commit fails.
    let orphan = w
        .submit(|c| {
            c.execute("INSERT INTO child (id, parent_id) VALUES (1, 99)", [])
                .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    let own_err = w
        .submit(|_| Err::<(), _>(Error::ApiMisuse("mine")))
        .unwrap();
    release.send(()).unwrap();
    assert_eq!(g.wait(), Ok(0));
    assert!(matches!(ok.wait(), Err(Error::Storage(m)) if m.contains("FOREIGN KEY")));
    assert!(matches!(orphan.wait(), Err(Error::Storage(_))));
    assert_eq!(
        own_err.wait(),
        Err(Error::ApiMisuse("mine")),
        "its own error stands"
    );
    assert_eq!(s.writer().stats().failed_commits, 1);
    // The writer carries on, and nothing of the failed batch is there.
    assert_eq!(w.execute(insert(2)), Ok(2));
    assert_eq!(keys(&s), vec![0, 2]);
}

#[test]
fn a_full_queue_answers_overloaded_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        group_commit: GroupCommitConfig {
            queue_len: 4,
            max_batch: 256,
        },
        ..StoreConfig::default()
    };
    let s = store_with(&dir, config);
    let (release, g) = gate(&s);
    let queued: Vec<_> = (1..=4)
        .map(|k| s.writer().submit(insert(k)).unwrap())
        .collect();
    assert_eq!(s.writer().submit(insert(5)).err(), Some(Error::Overloaded));
    release.send(()).unwrap();
    assert_eq!(g.wait(), Ok(0));
    let done: Vec<_> = queued.into_iter().map(|t| t.wait().unwrap()).collect();
    assert_eq!(done, vec![1, 2, 3, 4]);
    assert_eq!(s.writer().execute(insert(5)), Ok(5), "room again");
}

#[test]
fn close_drains_queued_requests_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let conn = open_connection(&path, 1_000).unwrap();
    conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        .unwrap();
    let w = GroupCommit::start(conn, GroupCommitConfig::default()).unwrap();
    let tickets: Vec<_> = (0..500i64)
        .map(|k| {
            w.submit(move |c| {
                c.execute("INSERT INTO t (k) VALUES (?1)", [k])
                    .map_err(|e| Error::Storage(e.to_string()))
            })
            .unwrap()
        })
        .collect();
    w.close();
    assert!(matches!(w.submit(|_| Ok(())), Err(Error::Storage(_))));
    for t in tickets {
        assert_eq!(t.wait(), Ok(1));
    }
    let stats = w.stats();
    assert_eq!(stats.requests, 500);
    assert!(stats.commits < 500, "batched: {stats:?}");
    drop(w);
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 500);
}

#[test]
fn a_ticket_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(&dir, StoreConfig::default());
    let t = s.writer().submit(insert(7)).unwrap();
    // Polled as a future (by the one-future executor behind `Commit::wait`,
    // no runtime), not through `Ticket::wait`.
    assert_eq!(agora_core::ports::Commit::new(t).wait(), Ok(7));
    assert_eq!(keys(&s), vec![7]);
}

/// 64 threads × 40 requests, each waiting for its ticket before the next:
/// every request acknowledged, every row present, the count exact, and the
/// writer batched (fewer commits than requests).
#[test]
fn sixty_four_concurrent_writers_lose_nothing() {
    const WRITERS: i64 = 64;
    const PER_WRITER: i64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(&dir, StoreConfig::default());
    let before = s.writer().stats();
    let barrier = Arc::new(std::sync::Barrier::new(WRITERS as usize));
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (s, barrier) = (&s, Arc::clone(&barrier));
            scope.spawn(move || {
                barrier.wait();
                for i in 0..PER_WRITER {
                    let k = w * 1_000 + i;
                    assert_eq!(s.writer().submit(insert(k)).unwrap().wait(), Ok(k));
                }
            });
        }
    });
    let stats = s.writer().stats();
    let requests = stats.requests - before.requests;
    let commits = stats.commits - before.commits;
    assert_eq!(requests, (WRITERS * PER_WRITER) as u64);
    let mut expected: Vec<i64> = (0..WRITERS)
        .flat_map(|w| (0..PER_WRITER).map(move |i| w * 1_000 + i))
        .collect();
    expected.sort_unstable();
    assert_eq!(keys(&s), expected);
    assert!(
        commits < requests / 4,
        "batching happened: {commits} commits for {requests} requests"
    );
    assert!(stats.largest_batch > 1);
    eprintln!(
        "64 writers: {requests} requests in {commits} commits, largest batch {}",
        stats.largest_batch
    );
}

#[test]
fn dropping_the_last_store_inside_a_request_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(&dir, StoreConfig::default());
    let inner = s.clone();
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    let t = s
        .writer()
        .submit(move |c| {
            dropped_rx.recv().unwrap(); // the caller's SqliteStore is gone
            let r = insert(1)(c);
            drop(inner); // the last SqliteStore: closes the writer from the writer
            r
        })
        .unwrap();
    drop(s);
    dropped_tx.send(()).unwrap();
    assert_eq!(t.wait(), Ok(1));
    let c = Connection::open(dir.path().join("agora.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
