//! One server step, one unit of work (ARCHITECTURE section 1).
//!
//! Everything a server step changes, its port writes and the evidence it
//! archives, commits in one storage transaction, durable before the reply
//! that announces it. The shape that keeps roles sans-IO:
//!
//! 1. the role's step checks the message and returns the **unit** it wants
//!    written (a port's write, typed, and its [`Evidence`]), touching no
//!    storage itself;
//! 2. the driver hands the unit to the port, which answers at once with a
//!    [`Commit`]: a future that resolves once the unit is durable, or failed
//!    as a whole. Backends batch the units of concurrent steps into one
//!    transaction (group commit); an async driver awaits the commit, a
//!    blocking one [`Commit::wait`]s for it;
//! 3. the role's step is resumed with the commit's outcome and makes the
//!    reply.
//!
//! A unit is all or nothing: a write whose condition fails (the CPO is
//! already posted, already bound) writes nothing and archives nothing, and
//! so does a unit whose evidence cannot be archived. Each port's
//! conformance suite checks this on every backend.

use crate::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Evidence a step archives in the same transaction as its writes: a
/// signed message (an acceptance, a posted CPO, an award, a ruling), under
/// a kind such as `"cpo/posted"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// What it is (at most [`crate::ports::MAX_KIND_LEN`] bytes).
    pub kind: &'static str,
    /// The evidence itself (at most [`crate::ports::MAX_PAYLOAD_LEN`] bytes).
    pub payload: Vec<u8>,
}

impl Evidence {
    /// Evidence of `kind`.
    pub fn new(kind: &'static str, payload: Vec<u8>) -> Evidence {
        Evidence { kind, payload }
    }

    /// Checks the limits every archive applies, so that a unit whose
    /// evidence would be refused is refused before anything is written.
    pub fn check(&self) -> Result<(), Error> {
        crate::ports::check_append_args(self.kind, &self.payload)
    }
}

/// A unit of work handed to storage. It resolves once the unit is durable
/// (or has failed as a whole): `.await` it in async code, or [`Self::wait`]
/// for it on a thread. Dropping it does not withdraw the unit, which may
/// still commit.
#[must_use = "a unit is only known to be durable once its commit resolves"]
pub struct Commit<T> {
    fut: Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>,
}

impl<T> std::fmt::Debug for Commit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Commit<T> {
    /// A commit that resolves with `fut`.
    pub fn new(fut: impl Future<Output = Result<T, Error>> + Send + 'static) -> Commit<T> {
        Commit { fut: Box::pin(fut) }
    }

    /// A commit already made (an in-memory store), or refused before it was
    /// queued.
    pub fn ready(outcome: Result<T, Error>) -> Commit<T> {
        Commit::new(std::future::ready(outcome))
    }

    /// A commit whose outcome is `f` of this one's, once it has resolved.
    pub fn map<U: Send + 'static>(
        self,
        f: impl FnOnce(T) -> Result<U, Error> + Send + 'static,
    ) -> Commit<U> {
        Commit::new(async move { f(self.await?) })
    }

    /// Blocks this thread until the unit is durable or failed. For blocking
    /// drivers (the CLI, tests); an async task awaits instead.
    pub fn wait(self) -> Result<T, Error> {
        block_on(self)
    }
}

impl<T> Future for Commit<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

/// Wakes the thread that waits in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on this thread, parking between polls. Written
/// here (a dozen lines, no unsafe code) rather than taking an executor crate
/// into the supporting layer for it.
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake before this park leaves the token set: park returns at
        // once, and the future is polled again.
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_commit_waits_for_nothing() {
        assert_eq!(Commit::ready(Ok(7)).wait(), Ok(7));
        assert_eq!(
            Commit::<u8>::ready(Err(Error::Overloaded)).wait(),
            Err(Error::Overloaded)
        );
    }

    #[test]
    fn a_commit_resolved_from_another_thread_wakes_its_waiter() {
        type Shared = Arc<std::sync::Mutex<(Option<u32>, Option<Waker>)>>;
        let shared: Shared = Arc::default();
        let s = shared.clone();
        // The value and the waker under one lock: a value set after a poll
        // found none always finds that poll's waker.
        let fut = std::future::poll_fn(move |cx| {
            let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
            match g.0 {
                Some(v) => Poll::Ready(Ok(v)),
                None => {
                    g.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let c = Commit::new(fut).map(|v| Ok(v * 2));
        let resolver = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let waker = {
                let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
                g.0 = Some(21);
                g.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
        assert_eq!(c.wait(), Ok(42));
        resolver.join().unwrap_or(());
    }
}
