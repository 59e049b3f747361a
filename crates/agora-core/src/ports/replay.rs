//! The replay cache: nonces a role has already accepted, kept until they expire.
//!
//! A protocol message carries a 256-bit nonce and a validity window. A role
//! first checks the window against `now` (a stale message is rejected without
//! touching storage), then records the nonce here with `expires_at` = the end
//! of the window. A second message with the same nonce in the same scope is
//! [`Freshness::Replayed`].
//!
//! **Why an expired entry may be treated as absent.** An entry whose
//! `expires_at <= now` belongs to a message whose freshness window has closed.
//! Any copy of that message arriving now is rejected by the protocol's own
//! window check before the cache is consulted, so forgetting the nonce cannot
//! let a replay through. This is what keeps the cache bounded: it holds only
//! the nonces of the current window, and [`ReplayCache::purge_expired`] may
//! drop the rest at any time. The same reasoning is why inserting a nonce that
//! is already expired (`expires_at <= now`) is refused as API misuse: the
//! caller skipped the window check.

use crate::{Error, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;

/// Longest scope name, in bytes. Scopes are short constant labels such as
/// `"cpo/server"`; the limit keeps keys small and catches a caller passing
/// message data by mistake.
pub const MAX_SCOPE_LEN: usize = 64;

/// The outcome of [`ReplayCache::check_and_insert`]. An enum, not a `bool`, so
/// that a call site reads as what it means (STYLE 11).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// The nonce was not live in this scope; it is now recorded.
    Fresh,
    /// The nonce is already live in this scope: the message is a replay.
    Replayed,
}

/// The replay cache port.
///
/// Contract (checked by [`crate::ports::conformance::replay_cache_suite`]):
/// - `check_and_insert` is atomic: of any number of concurrent calls with the
///   same `(scope, nonce)`, exactly one returns [`Freshness::Fresh`];
/// - scopes are independent: the same nonce may be fresh once per scope, so
///   protocols and roles cannot make each other reject messages;
/// - an entry with `expires_at <= now` is treated as absent (see the module
///   documentation for why that is safe); re-inserting it stores the new
///   expiry;
/// - the result is durable when the call returns (for a durable
///   implementation): a restarted server still rejects the replay.
pub trait ReplayCache: Send + Sync {
    /// Records `nonce` in `scope` until `expires_at`, unless it is already
    /// live there. `now` is the caller's clock, used only to decide whether an
    /// existing entry has expired.
    ///
    /// Errors: [`Error::ApiMisuse`] for an empty or over-long scope or for
    /// `expires_at <= now`; [`Error::Storage`] / [`Error::Overloaded`] from
    /// the implementation.
    fn check_and_insert(
        &self,
        scope: &str,
        nonce: &[u8; 32],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Freshness, Error>;

    /// Drops every entry with `expires_at <= now`; returns how many.
    fn purge_expired(&self, now: Timestamp) -> Result<usize, Error>;
}

/// Checks a scope name against the port's rules (non-empty, at most
/// [`MAX_SCOPE_LEN`] bytes). Every implementation calls this first so that all
/// of them refuse the same inputs.
pub fn check_scope(scope: &str) -> Result<(), Error> {
    if scope.is_empty() {
        return Err(Error::ApiMisuse("replay cache scope is empty"));
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Err(Error::ApiMisuse("replay cache scope is too long"));
    }
    Ok(())
}

/// Checks the arguments of [`ReplayCache::check_and_insert`] shared by every
/// implementation.
pub fn check_insert_args(scope: &str, expires_at: Timestamp, now: Timestamp) -> Result<(), Error> {
    check_scope(scope)?;
    if expires_at <= now {
        return Err(Error::ApiMisuse(
            "replay cache entry already expired: check the freshness window first",
        ));
    }
    Ok(())
}

/// `(scope, nonce)` -> `expires_at`.
type Entries = HashMap<(String, [u8; 32]), Timestamp>;

/// In-memory twin of [`ReplayCache`] for tests and the simulator.
///
/// Bounded by `capacity` live entries: when full it first purges expired
/// entries, and if that frees nothing it answers [`Error::Overloaded`] rather
/// than grow without limit (a flood of fresh nonces is a load problem, and
/// refusing is safe: the message is not accepted).
#[derive(Debug)]
pub struct MemoryReplayCache {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl MemoryReplayCache {
    /// Default capacity: one million live nonces (about 100 MB), far more
    /// than a test or a simulation needs.
    pub const DEFAULT_CAPACITY: usize = 1 << 20;

    /// An empty cache with [`Self::DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty cache holding at most `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryReplayCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>, Error> {
        // A poisoned lock means a thread panicked while holding it; the map
        // itself is never left half-updated (each operation is one insert or
        // retain), but report it rather than hide it.
        self.entries
            .lock()
            .map_err(|_| Error::Storage("memory replay cache lock poisoned".into()))
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayCache for MemoryReplayCache {
    fn check_and_insert(
        &self,
        scope: &str,
        nonce: &[u8; 32],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Freshness, Error> {
        check_insert_args(scope, expires_at, now)?;
        let mut map = self.lock()?;
        let key = (scope.to_owned(), *nonce);
        if let Some(existing) = map.get_mut(&key) {
            if *existing > now {
                return Ok(Freshness::Replayed);
            }
            *existing = expires_at;
            return Ok(Freshness::Fresh);
        }
        if map.len() >= self.capacity {
            map.retain(|_, exp| *exp > now);
            if map.len() >= self.capacity {
                return Err(Error::Overloaded);
            }
        }
        map.insert(key, expires_at);
        Ok(Freshness::Fresh)
    }

    fn purge_expired(&self, now: Timestamp) -> Result<usize, Error> {
        let mut map = self.lock()?;
        let before = map.len();
        map.retain(|_, exp| *exp > now);
        Ok(before - map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_replay_cache_passes_conformance_suite() {
        crate::ports::conformance::replay_cache_suite(MemoryReplayCache::new);
    }

    #[test]
    fn full_cache_purges_then_refuses() {
        let c = MemoryReplayCache::with_capacity(2);
        let (t0, t10) = (Timestamp(0), Timestamp(10));
        assert_eq!(
            c.check_and_insert("s", &[1; 32], Timestamp(5), t0),
            Ok(Freshness::Fresh)
        );
        assert_eq!(
            c.check_and_insert("s", &[2; 32], Timestamp(50), t0),
            Ok(Freshness::Fresh)
        );
        assert_eq!(
            c.check_and_insert("s", &[3; 32], Timestamp(50), t0),
            Err(Error::Overloaded)
        );
        // At t10 the first entry has expired and makes room.
        assert_eq!(
            c.check_and_insert("s", &[3; 32], Timestamp(50), t10),
            Ok(Freshness::Fresh)
        );
        assert_eq!(
            c.check_and_insert("s", &[2; 32], Timestamp(50), t10),
            Ok(Freshness::Replayed)
        );
    }
}
