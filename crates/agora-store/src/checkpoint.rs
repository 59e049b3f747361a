//! Background checkpoints: the WAL is copied into the database file by a
//! thread of its own, not by the group-commit writer.
//!
//! SQLite's default (`wal_autocheckpoint=1000`) runs a checkpoint inside the
//! commit that crossed 1000 WAL pages, on the committing connection: the
//! writer thread, which every queued request waits for, copies the pages and
//! waits for two more fsyncs (WAL, then database) before it can start the
//! next batch. Measured on the bind path (`cargo bench -p agora-store --bench
//! bind`), that was 15 % of the writer's CPU time and all of those fsyncs.
//!
//! Here a **checkpointer thread** with its own connection runs `PRAGMA
//! wal_checkpoint(PASSIVE)` after commits, at most once per
//! [`CHECKPOINT_PACE`]. A passive checkpoint never blocks the writer nor the
//! readers (SQLite lets one checkpoint run beside them), and copies only what
//! every reader has finished with.
//!
//! Only a commit that begins when the WAL is fully copied can restart the
//! WAL from its beginning, and under steady load a commit lands during almost
//! every background checkpoint. So the writer keeps a **backstop**: its own
//! `wal_autocheckpoint` at [`crate::StoreConfig::wal_backstop_pages`]. Once
//! the WAL is that long, its next commit checkpoints the few pages the
//! background has not copied yet, and the one after restarts the WAL. The WAL
//! file stays bounded (about the backstop's pages), and the writer's share
//! of checkpointing is a small copy every backstop's worth of pages.

use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Least time between two background checkpoints: each costs two fsyncs,
/// and pages written again within the pace are copied once.
pub const CHECKPOINT_PACE: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct State {
    /// A commit happened since the last checkpoint began.
    dirty: bool,
    closing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints run, and those that could not run or failed.
    runs: AtomicU64,
    failures: AtomicU64,
}

/// Counters of the background checkpointer, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Background checkpoints that completed.
    pub runs: u64,
    /// Background checkpoints that failed (logged; the next commit retries).
    pub failures: u64,
}

/// The checkpointer thread of one database. Stops (after a checkpoint in
/// progress) when closed or dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread, which owns `conn` (a connection to the database,
    /// see [`crate::db::open_connection`]).
    pub(crate) fn start(conn: Connection) -> Result<Checkpointer, agora_core::Error> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("agora-checkpoint".into())
            .spawn(move || run(&conn, &theirs))
            .map_err(|e| {
                agora_core::Error::Storage(format!("cannot start the checkpointer thread: {e}"))
            })?;
        Ok(Checkpointer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A function for the writer to call after each commit.
    pub(crate) fn notifier(&self) -> impl Fn() + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if !s.dirty {
                s.dirty = true;
                shared.wake.notify_one();
            }
        }
    }

    pub(crate) fn stats(&self) -> CheckpointStats {
        CheckpointStats {
            runs: self.shared.runs.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// Stops the thread once any checkpoint in progress is done. Idempotent.
    pub(crate) fn close(&self) {
        {
            let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            s.closing = true;
            self.shared.wake.notify_one();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut s = shared
                .wake
                .wait_while(s, |s| !s.dirty && !s.closing)
                .unwrap_or_else(|p| p.into_inner());
            if s.closing {
                return;
            }
            s.dirty = false;
        }
        // (busy, WAL pages, pages copied). Busy (another checkpoint holds the
        // lock: the writer's backstop, another process) is not a failure:
        // the pages are copied by whoever holds it.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => shared.runs.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "background WAL checkpoint failed");
                shared.failures.fetch_add(1, Ordering::Relaxed)
            }
        };
        let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = shared
            .wake
            .wait_timeout_while(s, CHECKPOINT_PACE, |s| !s.closing)
            .unwrap_or_else(|p| p.into_inner());
        if s.closing {
            return;
        }
    }
}
