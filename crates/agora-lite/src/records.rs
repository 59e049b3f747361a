//! The vendor's client records (issue 18 item 3): what SKEP leaves with the
//! vendor for each client -- `id_C -> K`, the subscription `S_C`, and the
//! hash-chain verifier (anchor, length, last index and element) --, kept by
//! a store behind the port [`ClientRecords`]: the in-memory twin
//! [`MemoryClientRecords`] here, SQLite in agora-store (`K` sealed at rest
//! there), PostgreSQL to come.
//!
//! Records are keyed by `(id_V, id_C)`, so that one store serves several
//! vendors. Two rules hold for every process sharing a store, by
//! conditional writes rather than a read then a write:
//!
//! - **the first SKEP wins** ([`ClientRecords::subscribe`]): a record is
//!   written only if none exists for `(id_V, id_C)`. A second SKEP under the
//!   same id must not replace `K`: anyone can run SKEP under any id, and
//!   replacing the key would hand them the id;
//! - **the chain only moves forward** ([`ClientRecords::advance_chain`]): a
//!   compare-and-set on the stored last index, so that two requests
//!   carrying acknowledgements, checked concurrently against the same
//!   verifier state, cannot both advance it, nor move it back.
//!
//! This module does no I/O: the implementations do.

use crate::chain::ChainVerifier;
use crate::ids::{ClientId, VendorId};
use crate::skep::ClientRecord;
use crate::wire::Subscription;
use crate::VendorKey;
use agora_core::crypto::Secret;
use agora_core::{Error, Result, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;

/// What [`ClientRecords::subscribe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// The record is stored now.
    New,
    /// A record for this `(id_V, id_C)` was stored before: it stands,
    /// unchanged (its `K` is not replaced).
    AlreadySubscribed,
}

/// What [`ClientRecords::advance_chain`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advanced {
    /// The verifier moved to the new index and element.
    Advanced,
    /// The stored last index is no longer the one the caller read: another
    /// request advanced the chain first. Nothing changed; the caller reads
    /// the record again and checks its acknowledgement against it.
    Stale,
}

/// The vendor's store of client records (see the [module](self) for the
/// rules an implementation keeps). `Send + Sync`: one store serves every
/// request.
pub trait ClientRecords: Send + Sync {
    /// Stores `record` for `(id_v, record.id_c)`, received at `now`, unless
    /// a record exists for it: then [`Subscribed::AlreadySubscribed`] and
    /// the stored one stands. One conditional write. Refused
    /// ([`Error::ApiMisuse`]) if `record.chain` does not match the
    /// subscription's chain commitment ([`check_record`]).
    fn subscribe(
        &self,
        id_v: &VendorId,
        record: &ClientRecord,
        now: Timestamp,
    ) -> Result<Subscribed>;

    /// The record of client `id_c` with vendor `id_v`, if any.
    fn get(&self, id_v: &VendorId, id_c: &ClientId) -> Result<Option<ClientRecord>>;

    /// Moves the client's chain verifier from `from_index` to
    /// `(to_index, to_value)` if its stored last index is still
    /// `from_index` ([`Advanced::Stale`] otherwise, nothing changed). The
    /// caller has checked `to_value` with [`ChainVerifier::accept`] on the
    /// verifier it read; the store does not hash.
    ///
    /// Refused: `to_index <= from_index` ([`Error::ApiMisuse`]: the chain
    /// only moves forward); `to_index` beyond the chain's length, a client
    /// without a record, or a record without a chain ([`Error::Refused`]).
    fn advance_chain(
        &self,
        id_v: &VendorId,
        id_c: &ClientId,
        from_index: u64,
        to_index: u64,
        to_value: &[u8; 32],
    ) -> Result<Advanced>;
}

/// The check every implementation makes of a record before storing it: its
/// verifier is there exactly when the subscription commits to a chain, with
/// the same anchor and length.
pub fn check_record(record: &ClientRecord) -> Result<()> {
    match (&record.subscription.chain, &record.chain) {
        (None, None) => Ok(()),
        (Some(c), Some(v)) if c.anchor == v.anchor() && u64::from(c.n) == v.n() => Ok(()),
        _ => Err(Error::ApiMisuse(
            "client record: the chain verifier does not match the subscription's chain",
        )),
    }
}

/// The check of an advance's indices that needs no stored state.
pub fn check_advance(from_index: u64, to_index: u64) -> Result<()> {
    if to_index <= from_index {
        return Err(Error::ApiMisuse(
            "advance_chain: to_index must be above from_index (the chain only moves forward)",
        ));
    }
    Ok(())
}

/// A client that has no record with a vendor, as an error.
pub fn no_record(id_v: &VendorId, id_c: &ClientId) -> Error {
    Error::Refused(format!("client {id_c} has no record with vendor {id_v}"))
}

/// A record without a chain, asked to advance one, as an error.
pub fn no_chain(id_v: &VendorId, id_c: &ClientId) -> Error {
    Error::Refused(format!(
        "client {id_c}'s subscription with vendor {id_v} has no hash chain"
    ))
}

/// An index beyond the chain's end, as an error.
pub fn beyond_end(to_index: u64, n: u64) -> Error {
    Error::Refused(format!(
        "chain index {to_index} is beyond the end of the hash chain ({n})"
    ))
}

/// What the twin keeps of a record (`K` wiped on drop).
#[derive(Debug)]
struct Stored {
    k: Secret<32>,
    subscription: Subscription,
    chain: Option<ChainVerifier>,
}

/// The in-memory twin of [`ClientRecords`].
#[derive(Debug, Default)]
pub struct MemoryClientRecords(Mutex<HashMap<(VendorId, ClientId), Stored>>);

impl MemoryClientRecords {
    /// No records.
    pub fn new() -> MemoryClientRecords {
        MemoryClientRecords::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(VendorId, ClientId), Stored>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientRecords for MemoryClientRecords {
    fn subscribe(
        &self,
        id_v: &VendorId,
        record: &ClientRecord,
        _now: Timestamp,
    ) -> Result<Subscribed> {
        // The durable stores keep `now` (when the client subscribed); the
        // port reads it back nowhere yet, so the twin does not keep it.
        check_record(record)?;
        let mut m = self.lock();
        let key = (id_v.clone(), record.id_c.clone());
        if m.contains_key(&key) {
            return Ok(Subscribed::AlreadySubscribed);
        }
        m.insert(
            key,
            Stored {
                k: record.k.k().clone(),
                subscription: record.subscription.clone(),
                chain: record.chain.clone(),
            },
        );
        Ok(Subscribed::New)
    }

    fn get(&self, id_v: &VendorId, id_c: &ClientId) -> Result<Option<ClientRecord>> {
        Ok(self
            .lock()
            .get(&(id_v.clone(), id_c.clone()))
            .map(|s| ClientRecord {
                id_c: id_c.clone(),
                k: VendorKey::from_shared_key(s.k.clone()),
                subscription: s.subscription.clone(),
                chain: s.chain.clone(),
            }))
    }

    fn advance_chain(
        &self,
        id_v: &VendorId,
        id_c: &ClientId,
        from_index: u64,
        to_index: u64,
        to_value: &[u8; 32],
    ) -> Result<Advanced> {
        check_advance(from_index, to_index)?;
        let mut m = self.lock();
        let stored = m
            .get_mut(&(id_v.clone(), id_c.clone()))
            .ok_or_else(|| no_record(id_v, id_c))?;
        let chain = stored.chain.as_mut().ok_or_else(|| no_chain(id_v, id_c))?;
        if chain.last_index() != from_index {
            return Ok(Advanced::Stale);
        }
        if to_index > chain.n() {
            return Err(beyond_end(to_index, chain.n()));
        }
        *chain = ChainVerifier::from_parts(chain.anchor(), chain.n(), to_index, *to_value)?;
        Ok(Advanced::Advanced)
    }
}

/// The conformance suite of [`ClientRecords`].
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: a panic is its failure report
pub mod conformance {
    use super::*;
    use crate::wire::ChainCommitment;
    use std::sync::Barrier;

    /// The length of the suite's chains.
    const N: u32 = 100;

    fn vendor(s: &str) -> VendorId {
        VendorId::new(s).unwrap()
    }

    fn client(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    /// A record of `id_c` with key `[k; 32]`, with a chain of length [`N`]
    /// anchored at `[k ^ 0xA5; 32]` or none.
    pub fn record(id_c: &str, k: u8, chain: bool) -> ClientRecord {
        let anchor = [k ^ 0xA5; 32];
        let commitment = chain.then_some(ChainCommitment { anchor, n: N });
        ClientRecord {
            id_c: client(id_c),
            k: VendorKey::from_shared_key(Secret::new([k; 32])),
            subscription: Subscription {
                not_before: Timestamp(100),
                not_after: Timestamp(100_000),
                chain: commitment,
                payment: vec![k; 40],
                counter: u32::from(k),
            },
            chain: chain.then(|| ChainVerifier::new(anchor, N.into()).unwrap()),
        }
    }

    /// Asserts that `got` is `want`: the same client, `K`, subscription and
    /// chain state.
    pub fn assert_same(got: &ClientRecord, want: &ClientRecord) {
        assert_eq!(got.id_c, want.id_c);
        assert_eq!(got.k.k().expose(), want.k.k().expose(), "K");
        assert_eq!(got.subscription, want.subscription);
        assert_eq!(got.chain, want.chain);
    }

    fn chain_of(store: &dyn ClientRecords, id_v: &VendorId, id_c: &str) -> ChainVerifier {
        store
            .get(id_v, &client(id_c))
            .unwrap()
            .expect("a record")
            .chain
            .expect("a chain")
    }

    /// Runs every check against `store`, which must be empty.
    pub fn records_suite(store: &dyn ClientRecords) {
        let (v1, v2) = (vendor("vendor-1"), vendor("vendor-2"));
        let now = Timestamp(500);

        // Stored, then read back as it was.
        assert_eq!(store.get(&v1, &client("alice")).unwrap().map(|_| ()), None);
        let alice = record("alice", 1, true);
        assert_eq!(store.subscribe(&v1, &alice, now).unwrap(), Subscribed::New);
        assert_same(&store.get(&v1, &client("alice")).unwrap().unwrap(), &alice);
        let bob = record("bob", 2, false);
        assert_eq!(store.subscribe(&v1, &bob, now).unwrap(), Subscribed::New);
        assert_same(&store.get(&v1, &client("bob")).unwrap().unwrap(), &bob);

        // The first SKEP wins: a second one under the same id keeps K.
        let hijack = record("alice", 9, true);
        assert_eq!(
            store.subscribe(&v1, &hijack, Timestamp(600)).unwrap(),
            Subscribed::AlreadySubscribed
        );
        assert_same(&store.get(&v1, &client("alice")).unwrap().unwrap(), &alice);

        // The same client id with another vendor is another record.
        assert_eq!(store.get(&v2, &client("alice")).unwrap().map(|_| ()), None);
        let alice2 = record("alice", 3, true);
        assert_eq!(store.subscribe(&v2, &alice2, now).unwrap(), Subscribed::New);
        assert_same(&store.get(&v2, &client("alice")).unwrap().unwrap(), &alice2);
        assert_same(&store.get(&v1, &client("alice")).unwrap().unwrap(), &alice);

        // A verifier that does not match the subscription is refused.
        let mut odd = record("carol", 4, true);
        odd.chain = None;
        assert!(matches!(
            store.subscribe(&v1, &odd, now),
            Err(Error::ApiMisuse(_))
        ));
        assert_eq!(store.get(&v1, &client("carol")).unwrap().map(|_| ()), None);

        // The chain advances by compare-and-set on the last index.
        let w5 = [0x55; 32];
        assert_eq!(
            store
                .advance_chain(&v1, &client("alice"), 0, 5, &w5)
                .unwrap(),
            Advanced::Advanced
        );
        let c = chain_of(store, &v1, "alice");
        assert_eq!(
            (c.anchor(), c.n(), c.last_index(), c.last_value()),
            ([1 ^ 0xA5; 32], 100, 5, w5)
        );
        // From an index read before: stale, nothing changes.
        assert_eq!(
            store
                .advance_chain(&v1, &client("alice"), 0, 7, &[0x77; 32])
                .unwrap(),
            Advanced::Stale
        );
        assert_eq!(chain_of(store, &v1, "alice"), c);
        // Not forward: refused, nothing changes.
        for (from, to) in [(5, 5), (5, 3)] {
            let e = store
                .advance_chain(&v1, &client("alice"), from, to, &[0x33; 32])
                .unwrap_err();
            assert!(
                matches!(&e, Error::ApiMisuse(m) if m.contains("to_index must be above from_index")),
                "{e:?}"
            );
        }
        assert_eq!(chain_of(store, &v1, "alice"), c);
        // Beyond the chain's end: refused.
        assert!(matches!(
            store.advance_chain(&v1, &client("alice"), 5, u64::from(N) + 1, &[0x33; 32]),
            Err(Error::Refused(_))
        ));
        assert_eq!(chain_of(store, &v1, "alice"), c);
        // Up to the end.
        assert_eq!(
            store
                .advance_chain(&v1, &client("alice"), 5, N.into(), &[0x99; 32])
                .unwrap(),
            Advanced::Advanced
        );
        assert_eq!(chain_of(store, &v1, "alice").last_index(), u64::from(N));
        // The other vendor's alice did not move.
        assert_eq!(chain_of(store, &v2, "alice").last_index(), 0);
        // No record, or no chain: refused.
        assert!(matches!(
            store.advance_chain(&v1, &client("nobody"), 0, 1, &[1; 32]),
            Err(Error::Refused(_))
        ));
        assert!(matches!(
            store.advance_chain(&v1, &client("bob"), 0, 1, &[1; 32]),
            Err(Error::Refused(_))
        ));
        assert_same(&store.get(&v1, &client("bob")).unwrap().unwrap(), &bob);

        // Eight requests advance from the same index at once: one wins.
        const THREADS: u8 = 8;
        let barrier = Barrier::new(THREADS.into());
        let results: Vec<(u8, Advanced)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (barrier, v2) = (&barrier, &v2);
                    s.spawn(move || {
                        barrier.wait();
                        let to = 1 + u64::from(i);
                        let r = store
                            .advance_chain(v2, &client("alice"), 0, to, &[i + 1; 32])
                            .unwrap();
                        (i, r)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, r)| *r == Advanced::Advanced)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "exactly one advance wins: {results:?}");
        let w = winners[0];
        let c = chain_of(store, &v2, "alice");
        assert_eq!(
            (c.last_index(), c.last_value()),
            (1 + u64::from(w), [w + 1; 32])
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_client_records_pass_the_conformance_suite() {
        super::conformance::records_suite(&super::MemoryClientRecords::new());
    }
}
