//! The measured phase: its limits (requests, seconds), and the workers
//! released at once, as threads ([`race`]) or as futures on event loops
//! ([`race_loops`]), the crypto counters read as they start and end.

use crate::bound::Window;
use agora_client::transport::AsyncNodeClient;
use agora_core::crypto::Rng;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The bounds of the measured phase, shared by its workers.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) budget: u64,
    pub(crate) duration: Duration,
    pub(crate) start: OnceLock<Instant>,
    sent: AtomicU64,
    halted: AtomicBool,
    stopped_by: Mutex<Option<&'static str>>,
}

impl Limits {
    pub(crate) fn new(budget: u64, duration: Duration) -> Limits {
        Limits {
            budget,
            duration,
            start: OnceLock::new(),
            sent: AtomicU64::new(0),
            halted: AtomicBool::new(false),
            stopped_by: Mutex::new(None),
        }
    }

    pub(crate) fn stop(&self, why: &'static str) {
        self.halted.store(true, Ordering::Relaxed);
        let mut s = self.stopped_by.lock().unwrap_or_else(|p| p.into_inner());
        s.get_or_insert(why);
    }

    /// Takes `n` requests from the budget, or says stop (time is up or the
    /// budget is spent).
    pub(crate) fn reserve(&self, n: u64) -> bool {
        if self.halted.load(Ordering::Relaxed) {
            return false;
        }
        let start = *self.start.get_or_init(Instant::now);
        if start.elapsed() >= self.duration {
            self.stop("duration");
            return false;
        }
        let before = self.sent.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.budget {
            self.sent.fetch_sub(n, Ordering::Relaxed);
            self.stop("requests");
            return false;
        }
        true
    }

    /// Gives back requests reserved and not sent.
    pub(crate) fn release(&self, n: u64) {
        self.sent.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn stopped_by(&self) -> &'static str {
        self.stopped_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or("done")
    }
}

/// Runs `work` on one thread per item of `items`, all released at once;
/// returns their results and the wall time from the release to the last
/// one's end.
pub(crate) fn race<W: Send, R: Send>(
    items: Vec<W>,
    limits: &Limits,
    window: &Window,
    work: impl Fn(usize, W) -> R + Sync,
) -> (Vec<R>, Duration) {
    let n = items.len();
    let ready = Barrier::new(n + 1);
    let go = Barrier::new(n + 1);
    let (work, ready_ref, go_ref) = (&work, &ready, &go);
    let out: Vec<(R, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                s.spawn(move || {
                    ready_ref.wait();
                    go_ref.wait();
                    let r = work(i, item);
                    (r, Instant::now())
                })
            })
            .collect();
        ready.wait();
        window.open();
        let _ = limits.start.set(Instant::now());
        go.wait();
        let out = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        window.close();
        out
    });
    let start = limits.start.get().copied().unwrap_or_else(Instant::now);
    let end = out.iter().map(|(_, t)| *t).max().unwrap_or(start);
    (
        out.into_iter().map(|(r, _)| r).collect(),
        end.saturating_duration_since(start),
    )
}

/// Threads that drive `cpo-bind`'s sellers, each an event loop: one per
/// core of the reference machine.
pub(crate) const LOOPS: usize = 2;

/// Runs `work` for each of `items` as a future: the items are dealt round
/// robin to `loops` threads ([`race`] releases them at once), each driving
/// its share on a single-threaded runtime with its own HTTP client
/// (connection pool). Returns the results in the order of `items` and the
/// wall time from the release to the last one's end. Each thread makes its
/// runtime and client once released: a fraction of a millisecond of the
/// measured phase, before its first request.
///
/// A thread per worker with a blocking client (as [`race`]) sleeps while the
/// node answers and is woken for every reply: with 64 sellers on two cores
/// that was a quarter of the load tool's CPU, taken from the node under
/// test. An event loop sleeps only when none of its sellers has a reply to
/// read.
pub(crate) fn race_loops<'a, W: Sync, R: Send, F: std::future::Future<Output = R>>(
    items: &'a [W],
    loops: usize,
    url: &str,
    limits: &Limits,
    window: &Window,
    work: impl Fn(usize, &'a W, AsyncNodeClient) -> F + Sync,
) -> anyhow::Result<(Vec<R>, Duration)> {
    let loops = loops.clamp(1, items.len().max(1));
    let (out, wall) = race((0..loops).collect(), limits, window, |_, l: usize| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the event loop's runtime")?;
        let client = AsyncNodeClient::new(url)?;
        let mine = items
            .iter()
            .enumerate()
            .skip(l)
            .step_by(loops)
            .map(|(k, item)| {
                let f = work(k, item, client.clone());
                async move { (k, f.await) }
            });
        anyhow::Ok(rt.block_on(futures_util::future::join_all(mine)))
    });
    let mut all = Vec::with_capacity(items.len());
    for o in out {
        all.extend(o?);
    }
    all.sort_by_key(|(k, _)| *k);
    Ok((all.into_iter().map(|(_, r)| r).collect(), wall))
}

/// A number in `0..n` (`n` > 0); the modulo bias of a 64-bit draw is
/// far below anything a benchmark could notice.
pub(crate) fn below(rng: &mut impl Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_stop_at_the_request_budget() {
        let l = Limits::new(5, Duration::from_secs(3600));
        assert!(l.reserve(2));
        assert!(l.reserve(2));
        assert!(!l.reserve(2), "5 requests at most");
        assert_eq!(l.stopped_by(), "requests");
        let l = Limits::new(5, Duration::from_secs(3600));
        assert!(l.reserve(4));
        l.release(3);
        assert!(l.reserve(4), "released requests can be reserved again");
        let l = Limits::new(100, Duration::ZERO);
        assert!(!l.reserve(1));
        assert_eq!(l.stopped_by(), "duration");
        assert_eq!(Limits::new(1, Duration::from_secs(1)).stopped_by(), "done");
    }
}
