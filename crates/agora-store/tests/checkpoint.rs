#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Background checkpoints (agora_store::checkpoint): the WAL reaches the
//! database file without the writer checkpointing, and the WAL file stays
//! bounded under steady writes.

use agora_core::Error;
use agora_store::{SqliteStore, StoreConfig};
use std::time::{Duration, Instant};

fn open(dir: &tempfile::TempDir, config: StoreConfig) -> SqliteStore {
    let s = SqliteStore::open(&dir.path().join("agora.db"), config, key()).unwrap();
    s.writer()
        .execute(|c| {
            c.execute_batch("CREATE TABLE blob (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
                .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    s
}

/// Inserts rows `keys` of 4000 bytes each, in one request.
fn insert(s: &SqliteStore, keys: std::ops::Range<i64>) {
    s.writer()
        .execute(move |c| {
            for k in keys {
                c.execute("INSERT INTO blob (k, v) VALUES (?1, zeroblob(4000))", [k])
                    .map_err(|e| Error::Storage(e.to_string()))?;
            }
            Ok(())
        })
        .unwrap();
}

fn file_len(s: &SqliteStore, suffix: &str) -> u64 {
    let mut p = s.path().as_os_str().to_owned();
    p.push(suffix);
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Waits (bounded) for `done`; a liveness check, not a timing one.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn committed_pages_reach_the_database_file_without_the_writer_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MB of rows: far below the writer's own checkpoint (4096 pages, 16
    // MiB), so only the background checkpointer copies them.
    let s = open(&dir, StoreConfig::default());
    for start in (0..256).step_by(8) {
        insert(&s, start..start + 8);
    }
    assert!(
        eventually(|| file_len(&s, "") >= 256 * 4000),
        "the database file holds the rows: {} bytes",
        file_len(&s, "")
    );
    let stats = s.checkpoint_stats();
    assert!(stats.runs >= 1, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
    // And nothing was lost on the way.
    let n: i64 = s
        .read(|c| {
            c.query_row("SELECT count(*) FROM blob", [], |r| r.get(0))
                .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    assert_eq!(n, 256);
}

#[test]
fn the_wal_file_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        wal_backstop_pages: 64,
        ..StoreConfig::default()
    };
    let s = open(&dir, config);
    // 8 MB from four writers at once, so that commits follow each other
    // without a pause in which a checkpoint could finish unopposed.
    std::thread::scope(|scope| {
        for w in 0..4i64 {
            let s = &s;
            scope.spawn(move || {
                for start in (0..500i64).step_by(4) {
                    let base = w * 1_000_000 + start;
                    insert(s, base..base + 4);
                }
            });
        }
    });
    let wal = file_len(&s, "-wal");
    // The WAL restarts once it holds the backstop's 64 pages (4 KiB and a
    // 24-byte header each, 264 KB); a commit or two (at most 4 requests of
    // 4 rows: each writer waits for its own) may come on top of that before
    // it does.
    assert!(wal <= 1024 * 1024, "WAL of {wal} bytes after 8 MB written");
    assert!(eventually(|| file_len(&s, "") >= 2000 * 4000));
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
