#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![cfg(unix)] // SIGKILL and ExitStatusExt::signal
//! Crash test: a child process writes through group commit and is killed
//! (SIGKILL) mid-stream; after reopening, every acknowledged request is fully
//! present and no request is half-written.
//!
//! The child is this test binary re-executed with `--exact crash_child`; the
//! env var [`DB_ENV`] carries the database path (without it, `crash_child`
//! returns at once, so a normal test run just passes it).

use agora_core::Error;
use agora_store::{SqliteStore, StoreConfig};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const DB_ENV: &str = "AGORA_CRASH_TEST_DB";
/// Threads submitting in the child: enough to fill batches.
const CHILD_WRITERS: u64 = 16;
/// Upper bound on the child's requests per thread, so a child that is never
/// killed still ends (the parent then fails: it must kill it mid-stream).
const CHILD_REQUESTS_PER_WRITER: u64 = 100_000;

/// Rows a request writes: 1 to 7, varying with its id, plus its marker.
fn rows_of(req: u64) -> i64 {
    (1 + req % 7) as i64
}

/// The child: writes forever (bounded) and prints `ACK <id>` right after each
/// acknowledgement.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return; // not re-executed by the parent: nothing to do
    };
    let store =
        SqliteStore::open(std::path::Path::new(&path), StoreConfig::default(), key()).unwrap();
    store
        .writer()
        .execute(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS crash_rows (req INTEGER NOT NULL, idx INTEGER NOT NULL,
                     PRIMARY KEY (req, idx));
                 CREATE TABLE IF NOT EXISTS crash_markers (req INTEGER PRIMARY KEY,
                     row_count INTEGER NOT NULL);",
            )
            .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    std::thread::scope(|s| {
        for w in 0..CHILD_WRITERS {
            let store = &store;
            s.spawn(move || {
                for i in 0..CHILD_REQUESTS_PER_WRITER {
                    let req = i * CHILD_WRITERS + w;
                    let ticket = store.writer().submit(move |c| {
                        let n = rows_of(req);
                        for idx in 0..n {
                            c.execute(
                                "INSERT INTO crash_rows (req, idx) VALUES (?1, ?2)",
                                [req as i64, idx],
                            )
                            .map_err(|e| Error::Storage(e.to_string()))?;
                        }
                        c.execute(
                            "INSERT INTO crash_markers (req, row_count) VALUES (?1, ?2)",
                            [req as i64, n],
                        )
                        .map_err(|e| Error::Storage(e.to_string()))?;
                        Ok(())
                    });
                    match ticket {
                        Ok(t) => t.wait().unwrap(),
                        Err(Error::Overloaded) => continue,
                        Err(e) => panic!("{e}"),
                    }
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {req}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

fn run_and_kill(kill_after_acks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = BTreeSet::new();
    // Keep the pipe open until the kill: a closed pipe would make the child
    // fail on its next print and exit by itself, not by SIGKILL.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.insert(id.trim().parse::<i64>().unwrap());
            if acked.len() >= kill_after_acks {
                break;
            }
        }
    }
    assert!(
        acked.len() >= kill_after_acks,
        "the child ended before it was killed"
    );
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no checkpoint
    let status = child.wait().unwrap();
    drop(lines);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was still writing when SIGKILLed: {status:?}"
    );

    let c = Connection::open(&path).unwrap();
    let markers: Vec<(i64, i64)> = c
        .prepare("SELECT req, row_count FROM crash_markers")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let marked: BTreeSet<i64> = markers.iter().map(|m| m.0).collect();
    for id in &acked {
        assert!(marked.contains(id), "acknowledged request {id} lost");
    }
    // No half-written request: every marker's rows are all there...
    let mismatched: i64 = c
        .query_row(
            "SELECT count(*) FROM crash_markers m
             WHERE m.row_count != (SELECT count(*) FROM crash_rows r WHERE r.req = m.req)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0, "a request is half-written");
    // ...and there are no rows without a marker.
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM crash_rows r WHERE NOT EXISTS
               (SELECT 1 FROM crash_markers m WHERE m.req = r.req)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "rows of an unacknowledged, partial request");
    for (req, n) in &markers {
        assert_eq!(*n, rows_of(*req as u64), "marker {req}");
    }
    eprintln!(
        "killed after {} acks: {} requests durable ({} beyond the last ack seen)",
        acked.len(),
        markers.len(),
        markers.len() - acked.len()
    );
}

#[test]
fn killed_writer_loses_no_acknowledged_request_and_half_writes_none() {
    for kill_after_acks in [150, 400, 777] {
        run_and_kill(kill_after_acks);
    }
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
