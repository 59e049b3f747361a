//! Group commit: many concurrent write requests, one durable transaction.
//!
//! With `synchronous=FULL` every commit waits for the disk (about 7k commits/s
//! on the reference machine), while one transaction can carry hundreds of
//! rows for the same price. So one **writer thread** owns the only write
//! connection, and callers submit requests through a **bounded queue**:
//!
//! 1. the writer blocks for the first waiting request, then takes whatever
//!    else is already queued, up to `max_batch` (no timer: while one batch is
//!    being made durable the next one fills up by itself, so a lone request
//!    pays no extra latency and a busy system gets large batches);
//! 2. it opens ONE `BEGIN IMMEDIATE` transaction and runs each request inside
//!    its own `SAVEPOINT`: a request that fails (a unique-constraint conflict,
//!    a check of its own) rolls back only its savepoint and gets its own error,
//!    the others go on;
//! 3. it commits once, and only then acknowledges each request through its
//!    [`Ticket`]. If the commit fails, every request that had succeeded gets
//!    [`Error::Storage`] (a request that had already failed keeps its own
//!    error: its outcome did not depend on the commit).
//!
//! A full queue answers [`Error::Overloaded`] at once: callers never block
//! forever on submission, and the node turns it into `503 Retry-After`.
//!
//! Shutdown ([`GroupCommit::close`] or drop): the queue is closed to new
//! requests, the writer finishes every request already queued, then stops.
//!
//! A request is a closure `FnOnce(&Connection) -> Result<T, Error>`; it runs on
//! the writer thread inside its savepoint and must not commit, roll back or
//! release anything itself, nor block on anything but SQLite (it holds up the
//! whole batch). A panicking request is caught and answered with
//! [`Error::Storage`]; its savepoint is rolled back.

use agora_core::Error;
use rusqlite::Connection;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

/// Largest queue accepted by [`GroupCommitConfig`]: the queue holds requests
/// (and their data) in memory, so it is bounded even if misconfigured.
pub const MAX_QUEUE_LEN: usize = 1 << 16;

/// Largest batch accepted by [`GroupCommitConfig`]: one batch holds the write
/// lock for its whole duration, so very large batches would delay readers'
/// checkpoints and other processes' writers.
pub const MAX_BATCH_LEN: usize = 4096;

/// Sizing of a [`GroupCommit`] writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Requests that may wait for the writer; beyond this, submission fails
    /// with [`Error::Overloaded`]. Clamped to `1..=MAX_QUEUE_LEN`.
    pub queue_len: usize,
    /// Most requests in one transaction. Clamped to `1..=MAX_BATCH_LEN`.
    pub max_batch: usize,
}

impl Default for GroupCommitConfig {
    /// 4096 queued requests (16 batches: a few milliseconds of work), batches
    /// of 256 (where the measured throughput of SQLite levels off).
    fn default() -> Self {
        GroupCommitConfig {
            queue_len: 4096,
            max_batch: 256,
        }
    }
}

impl GroupCommitConfig {
    fn clamped(self) -> Self {
        GroupCommitConfig {
            queue_len: self.queue_len.clamp(1, MAX_QUEUE_LEN),
            max_batch: self.max_batch.clamp(1, MAX_BATCH_LEN),
        }
    }
}

/// Counters of a writer, for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Requests taken from the queue and answered.
    pub requests: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Transactions whose `BEGIN` or `COMMIT` failed.
    pub failed_commits: u64,
    /// The largest batch so far.
    pub largest_batch: u64,
}

#[derive(Debug, Default)]
struct StatsCounters {
    requests: AtomicU64,
    commits: AtomicU64,
    failed_commits: AtomicU64,
    largest_batch: AtomicU64,
}

/// The acknowledgement of one request: resolves once the request's batch is
/// durable (or failed). `.await` it in async code, or [`Ticket::wait`] for it
/// on a thread.
#[must_use = "a request is only known to be durable once its ticket resolves"]
#[derive(Debug)]
pub struct Ticket<T> {
    rx: tokio::sync::oneshot::Receiver<Result<T, Error>>,
}

fn writer_gone() -> Error {
    Error::Storage("group-commit writer stopped before answering".into())
}

impl<T> Ticket<T> {
    /// Blocks the current thread until the request is durable or failed.
    /// Must not be called from inside an async task (use `.await` there).
    pub fn wait(self) -> Result<T, Error> {
        self.rx
            .blocking_recv()
            .unwrap_or_else(|_| Err(writer_gone()))
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(writer_gone())))
    }
}

/// A request with its type erased, so that one writer serves every port.
trait Job: Send {
    /// Runs the request inside its savepoint. `true` if it succeeded (release
    /// the savepoint), `false` if it failed (roll the savepoint back).
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Replaces the request's result with an error (its savepoint could not
    /// be opened or released).
    fn fail(&mut self, e: Error);
    /// Answers the caller once the batch's fate is known.
    fn complete(self: Box<Self>, batch: &Result<(), Error>);
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, Error>>,
    ack: tokio::sync::oneshot::Sender<Result<T, Error>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, Error> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            self.result = Some(Err(Error::Storage("request applied twice".into())));
            return false;
        };
        let r = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(Error::Storage("write request panicked".into())));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn fail(&mut self, e: Error) {
        self.result = Some(Err(e));
    }

    fn complete(self: Box<Self>, batch: &Result<(), Error>) {
        let answer = match (self.result, batch) {
            // A request that failed on its own keeps its own error.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) => Err(e.clone()),
            (None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(Error::Storage("request was not applied".into())),
        };
        // The caller may have dropped its ticket; nothing to do then.
        let _ = self.ack.send(answer);
    }
}

/// A group-commit writer: one thread, one write connection, one bounded queue.
/// Share it behind an `Arc` (or through [`crate::SqliteStore`]); it is `Sync`.
pub struct GroupCommit {
    queue: RwLock<Option<SyncSender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<StatsCounters>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer thread, which takes ownership of `conn` (already
    /// configured and migrated; see [`crate::db::open_connection`]).
    pub fn start(conn: Connection, config: GroupCommitConfig) -> Result<GroupCommit, Error> {
        GroupCommit::start_with_hook(conn, config, || {})
    }

    /// [`Self::start`], and the writer calls `after_commit` after each
    /// successful commit (before it acknowledges the batch; it must not
    /// block).
    pub fn start_with_hook(
        conn: Connection,
        config: GroupCommitConfig,
        after_commit: impl Fn() + Send + 'static,
    ) -> Result<GroupCommit, Error> {
        let config = config.clamped();
        // The requests' statements and the transaction-control ones.
        conn.set_prepared_statement_cache_capacity(64);
        let (tx, rx) = mpsc::sync_channel::<Box<dyn Job>>(config.queue_len);
        let stats = Arc::new(StatsCounters::default());
        let writer_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("agora-group-commit".into())
            .spawn(move || writer_loop(conn, rx, config.max_batch, &writer_stats, after_commit))
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(GroupCommit {
            queue: RwLock::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// Queues a write request; never blocks. The returned ticket resolves
    /// with `f`'s result once the transaction that carried it has committed.
    ///
    /// Errors at once: [`Error::Overloaded`] if the queue is full,
    /// [`Error::Storage`] if the writer is closed.
    pub fn submit<T, F>(&self, f: F) -> Result<Ticket<T>, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            f: Some(f),
            result: None,
            ack,
        });
        let queue = self
            .queue
            .read()
            .map_err(|_| Error::Storage("group-commit queue lock poisoned".into()))?;
        let Some(tx) = queue.as_ref() else {
            return Err(Error::Storage("group-commit writer is closed".into()));
        };
        match tx.try_send(job) {
            Ok(()) => Ok(Ticket { rx }),
            Err(TrySendError::Full(_)) => Err(Error::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(writer_gone()),
        }
    }

    /// [`Self::submit`] and wait: for blocking callers (the ports' traits).
    pub fn execute<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.submit(f)?.wait()
    }

    /// A snapshot of the writer's counters.
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            requests: self.stats.requests.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
            failed_commits: self.stats.failed_commits.load(Ordering::Relaxed),
            largest_batch: self.stats.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Closes the queue, lets the writer finish every request already queued
    /// (each is answered), and waits for the thread to stop. Idempotent; later
    /// submissions fail with [`Error::Storage`]. Called from a write request
    /// (the last `SqliteStore` dropped inside one), it does not wait: the writer
    /// stops by itself after the queue is drained.
    pub fn close(&self) {
        // Dropping the only sender ends the writer's loop once the queue is empty.
        if let Ok(mut q) = self.queue.write() {
            q.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            if h.thread().id() == std::thread::current().id() {
                // Closed from a request (say it dropped the last SqliteStore):
                // joining would wait for ourselves. The loop still ends once
                // the queue is drained, since the sender is gone.
                return;
            }
            // A panic of the writer itself (not of a request) already answered
            // every pending ticket with "writer stopped" by dropping them.
            let _ = h.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: Receiver<Box<dyn Job>>,
    max_batch: usize,
    stats: &StatsCounters,
    after_commit: impl Fn(),
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    // `recv` fails only when every sender is gone and the queue is empty:
    // that is the graceful shutdown.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_batch(&mut conn, &mut batch);
        let n = batch.len() as u64;
        match outcome {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                after_commit();
            }
            Err(_) => {
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.largest_batch.fetch_max(n, Ordering::Relaxed);
        stats.requests.fetch_add(n, Ordering::Relaxed);
        // Acknowledge only now: the batch is durable (or known failed).
        for job in batch.drain(..) {
            job.complete(&outcome);
        }
    }
}

fn storage(e: rusqlite::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Runs a transaction-control statement through the statement cache: it is
/// parsed once per connection, not once per request (`Transaction` and
/// `Savepoint` of rusqlite parse theirs every time: 10 % of the writer's
/// time on the bind path, measured with `perf`).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs one batch in one transaction, each request in its own savepoint.
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> Result<(), Error> {
    // IMMEDIATE takes the write lock up front: no deadlock-prone upgrade from
    // a read lock if another process writes to the same file.
    control(conn, "BEGIN IMMEDIATE").map_err(storage)?;
    let outcome = apply_batch(conn, batch).and_then(|()| control(conn, "COMMIT").map_err(storage));
    // A failed COMMIT (or a batch given up) leaves the transaction open:
    // nothing of it may stay.
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = control(conn, "ROLLBACK");
    }
    outcome
}

/// Applies each request of the batch in its own savepoint, inside the open
/// transaction.
fn apply_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), Error> {
    for job in batch.iter_mut() {
        if let Err(e) = control(conn, "SAVEPOINT request") {
            job.fail(storage(e));
            continue;
        }
        if job.apply(conn) {
            if let Err(e) = control(conn, "RELEASE request") {
                // The savepoint could not be released: its changes are in an
                // unknown state, so the whole batch must not commit.
                job.fail(storage(e));
                return Err(Error::Storage(
                    "a savepoint could not be released; batch rolled back".into(),
                ));
            }
        } else if let Err(e) =
            control(conn, "ROLLBACK TO request").and_then(|()| control(conn, "RELEASE request"))
        {
            // Undoing this request only failed.
            return Err(Error::Storage(format!(
                "a savepoint could not be rolled back ({e}); batch rolled back"
            )));
        }
    }
    Ok(())
}
