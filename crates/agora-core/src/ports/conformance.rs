//! Conformance suites of the storage ports: one per trait, run unchanged
//! against every implementation (the in-memory twins here, SQLite in
//! agora-store's tests). A behaviour is part of a port's contract exactly
//! when its suite checks it.
//!
//! Each suite takes a `make` function returning a fresh, empty instance, and
//! panics (with the name of the failing case) on the first violation.
//! Available with the `testkit` feature.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test suite: a panic is its failure report

use super::archive::{
    entry_hash, verify_against_head, verify_chain, ArchiveEntry, EvidenceArchive,
    GENESIS_PREV_HASH, MAX_KIND_LEN, MAX_PAGE_LEN, MAX_PAYLOAD_LEN,
};
use super::replay::{Freshness, ReplayCache, MAX_SCOPE_LEN};
use super::unit::Evidence;
use crate::{Error, Timestamp};
use std::sync::Barrier;

/// Threads racing in the concurrency cases. Enough to make races likely on a
/// 2-core machine, few enough to run in milliseconds.
const RACERS: usize = 8;

fn nonce(i: u64) -> [u8; 32] {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&i.to_be_bytes());
    n[31] = 0x5a;
    n
}

/// Runs every replay-cache case, each on a fresh instance from `make`.
pub fn replay_cache_suite<C: ReplayCache + Sync>(make: impl Fn() -> C) {
    replay_fresh_then_replayed(&make());
    replay_scopes_are_separate(&make());
    replay_expired_entry_is_absent(&make());
    replay_purge_drops_only_expired(&make());
    replay_refuses_bad_arguments(&make());
    replay_concurrent_same_nonce_exactly_one_fresh(&make());
    replay_concurrent_distinct_nonces_all_fresh(&make());
}

/// A nonce is fresh once, then replayed while live; other nonces are unaffected.
pub fn replay_fresh_then_replayed<C: ReplayCache>(c: &C) {
    let now = Timestamp(1_000);
    let exp = Timestamp(2_000);
    assert_eq!(
        c.check_and_insert("s", &nonce(1), exp, now),
        Ok(Freshness::Fresh),
        "first sight"
    );
    assert_eq!(
        c.check_and_insert("s", &nonce(1), exp, now),
        Ok(Freshness::Replayed),
        "second sight"
    );
    assert_eq!(
        c.check_and_insert("s", &nonce(1), Timestamp(3_000), Timestamp(1_999)),
        Ok(Freshness::Replayed),
        "still live just before expiry, whatever the new expiry"
    );
    assert_eq!(
        c.check_and_insert("s", &nonce(2), exp, now),
        Ok(Freshness::Fresh),
        "another nonce"
    );
}

/// The same nonce is independent in each scope.
pub fn replay_scopes_are_separate<C: ReplayCache>(c: &C) {
    let (now, exp) = (Timestamp(10), Timestamp(20));
    let long_scope = "x".repeat(MAX_SCOPE_LEN);
    for scope in [
        "cpo/server",
        "cpo/arbiter",
        "speed/broker",
        long_scope.as_str(),
    ] {
        assert_eq!(
            c.check_and_insert(scope, &nonce(7), exp, now),
            Ok(Freshness::Fresh),
            "scope {scope}"
        );
    }
    for scope in [
        "cpo/server",
        "cpo/arbiter",
        "speed/broker",
        long_scope.as_str(),
    ] {
        assert_eq!(
            c.check_and_insert(scope, &nonce(7), exp, now),
            Ok(Freshness::Replayed),
            "scope {scope}"
        );
    }
}

/// An entry with `expires_at <= now` is absent: fresh again, with the new expiry.
pub fn replay_expired_entry_is_absent<C: ReplayCache>(c: &C) {
    let n = nonce(3);
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(100), Timestamp(50)),
        Ok(Freshness::Fresh)
    );
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(150), Timestamp(99)),
        Ok(Freshness::Replayed)
    );
    // At exactly expires_at the entry is expired.
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(300), Timestamp(100)),
        Ok(Freshness::Fresh),
        "expired at expires_at"
    );
    // The new expiry (300) was stored, not the old one.
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(400), Timestamp(299)),
        Ok(Freshness::Replayed),
        "new expiry stored"
    );
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(400), Timestamp(300)),
        Ok(Freshness::Fresh)
    );
}

/// `purge_expired` drops exactly the entries with `expires_at <= now`.
pub fn replay_purge_drops_only_expired<C: ReplayCache>(c: &C) {
    assert_eq!(c.purge_expired(Timestamp(0)), Ok(0), "empty");
    for (i, exp) in [10u64, 20, 30, 40].into_iter().enumerate() {
        let r = c.check_and_insert("s", &nonce(i as u64), Timestamp(exp), Timestamp(5));
        assert_eq!(r, Ok(Freshness::Fresh));
    }
    assert_eq!(
        c.check_and_insert("t", &nonce(9), Timestamp(20), Timestamp(5)),
        Ok(Freshness::Fresh)
    );
    assert_eq!(
        c.purge_expired(Timestamp(20)),
        Ok(3),
        "expires_at 10, 20 and the other scope's 20"
    );
    assert_eq!(c.purge_expired(Timestamp(20)), Ok(0), "idempotent");
    assert_eq!(
        c.check_and_insert("s", &nonce(2), Timestamp(50), Timestamp(25)),
        Ok(Freshness::Replayed),
        "a live entry survives the purge"
    );
    assert_eq!(
        c.check_and_insert("s", &nonce(0), Timestamp(50), Timestamp(25)),
        Ok(Freshness::Fresh),
        "a purged entry is gone"
    );
    assert_eq!(c.purge_expired(Timestamp(1_000)), Ok(3));
}

/// Empty and over-long scopes and already-expired entries are API misuse,
/// and a refused call records nothing.
pub fn replay_refuses_bad_arguments<C: ReplayCache>(c: &C) {
    let n = nonce(4);
    let too_long = "x".repeat(MAX_SCOPE_LEN + 1);
    assert!(matches!(
        c.check_and_insert("", &n, Timestamp(2), Timestamp(1)),
        Err(Error::ApiMisuse(_))
    ));
    assert!(matches!(
        c.check_and_insert(&too_long, &n, Timestamp(2), Timestamp(1)),
        Err(Error::ApiMisuse(_))
    ));
    assert!(matches!(
        c.check_and_insert("s", &n, Timestamp(1), Timestamp(1)),
        Err(Error::ApiMisuse(_))
    ));
    assert!(matches!(
        c.check_and_insert("s", &n, Timestamp(0), Timestamp(1)),
        Err(Error::ApiMisuse(_))
    ));
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(2), Timestamp(1)),
        Ok(Freshness::Fresh),
        "nothing recorded"
    );
    // Extreme timestamps are accepted and keep their order.
    assert_eq!(
        c.check_and_insert("s", &nonce(5), Timestamp(u64::MAX), Timestamp(0)),
        Ok(Freshness::Fresh)
    );
    assert_eq!(
        c.check_and_insert("s", &nonce(5), Timestamp(u64::MAX), Timestamp(1 << 40)),
        Ok(Freshness::Replayed)
    );
}

/// Of `RACERS` threads inserting the same nonce at once, exactly one sees it fresh.
pub fn replay_concurrent_same_nonce_exactly_one_fresh<C: ReplayCache + Sync>(c: &C) {
    for round in 0..16u64 {
        let barrier = Barrier::new(RACERS);
        let results: Vec<Freshness> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..RACERS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        c.check_and_insert(
                            "race",
                            &nonce(1_000 + round),
                            Timestamp(10),
                            Timestamp(1),
                        )
                        .expect("check_and_insert")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("racer panicked"))
                .collect()
        });
        let fresh = results.iter().filter(|r| **r == Freshness::Fresh).count();
        assert_eq!(
            fresh, 1,
            "round {round}: exactly one Fresh, got {results:?}"
        );
    }
}

/// Concurrent inserts of distinct nonces are all fresh and all recorded.
pub fn replay_concurrent_distinct_nonces_all_fresh<C: ReplayCache + Sync>(c: &C) {
    const PER_THREAD: u64 = 25;
    std::thread::scope(|s| {
        for t in 0..RACERS as u64 {
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let r = c.check_and_insert(
                        "many",
                        &nonce(t * 1_000 + i),
                        Timestamp(10),
                        Timestamp(1),
                    );
                    assert_eq!(r, Ok(Freshness::Fresh));
                }
            });
        }
    });
    for t in 0..RACERS as u64 {
        for i in 0..PER_THREAD {
            let r = c.check_and_insert("many", &nonce(t * 1_000 + i), Timestamp(10), Timestamp(1));
            assert_eq!(r, Ok(Freshness::Replayed));
        }
    }
}

/// Runs every evidence-archive case, each on a fresh instance from `make`.
pub fn archive_suite<A: EvidenceArchive + Sync>(make: impl Fn() -> A) {
    archive_empty(&make());
    archive_append_get_head_entries(&make());
    archive_paging(&make());
    archive_refuses_bad_arguments(&make());
    archive_concurrent_appends_chain(&make());
    archive_records_a_unit_whole_or_not_at_all(&make());
}

/// An empty archive: no head, nothing to read, verifies with 0 entries.
pub fn archive_empty<A: EvidenceArchive>(a: &A) {
    assert_eq!(a.head(), Ok(None));
    assert_eq!(a.get(1), Ok(None));
    assert_eq!(a.get(0), Ok(None));
    assert_eq!(a.entries(0, 10), Ok(vec![]));
    assert_eq!(a.verify(), Ok(0));
}

/// Appends chain from genesis; get, head and entries return what was appended.
pub fn archive_append_get_head_entries<A: EvidenceArchive>(a: &A) {
    let payloads: [&[u8]; 4] = [b"", b"first", &[0u8; 300], b"\xff\x00"];
    let mut appended: Vec<ArchiveEntry> = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let now = Timestamp(1_700_000_000 + i as u64);
        let e = a.append("test/evidence", p, now).expect("append");
        let prev = appended.last().map_or(GENESIS_PREV_HASH, |l| l.hash);
        assert_eq!(e.seq, i as u64 + 1, "seq from 1 without gaps");
        assert_eq!(e.recorded_at, now);
        assert_eq!(e.kind, "test/evidence");
        assert_eq!(e.payload, *p);
        assert_eq!(e.prev_hash, prev, "chained to the previous head");
        assert_eq!(e.hash, entry_hash(e.seq, now, &e.kind, p, &prev));
        assert_eq!(a.head(), Ok(Some((e.seq, e.hash))));
        appended.push(e);
    }
    for e in &appended {
        assert_eq!(
            a.get(e.seq).as_ref(),
            Ok(&Some(e.clone())),
            "get({})",
            e.seq
        );
    }
    assert_eq!(a.get(5), Ok(None));
    assert_eq!(a.entries(1, 100).as_ref(), Ok(&appended));
    assert_eq!(
        a.entries(0, 100).as_ref(),
        Ok(&appended),
        "from 0 = from the start"
    );
    assert_eq!(a.entries(2, 2).as_ref(), Ok(&appended[1..3].to_vec()));
    assert_eq!(a.entries(4, 100).as_ref(), Ok(&appended[3..].to_vec()));
    assert_eq!(a.entries(5, 100), Ok(vec![]));
    assert_eq!(a.entries(1, 0), Ok(vec![]));
    assert_eq!(a.verify(), Ok(4));
    assert_eq!(verify_chain(appended.clone().into_iter()), Ok(4));
    let head = a.head().unwrap().unwrap();
    assert_eq!(
        verify_against_head(a.entries(1, 100).unwrap().into_iter(), head),
        Ok(4)
    );
    // Max-size kind and payload are accepted.
    let kind = "k".repeat(MAX_KIND_LEN);
    let big = vec![0xA5u8; MAX_PAYLOAD_LEN];
    let e = a
        .append(&kind, &big, Timestamp(u64::MAX))
        .expect("max-size append");
    assert_eq!(a.get(e.seq), Ok(Some(e)));
    assert_eq!(a.verify(), Ok(5));
}

/// `entries` clamps `limit` to `MAX_PAGE_LEN`, and `verify` pages over it.
pub fn archive_paging<A: EvidenceArchive>(a: &A) {
    let n = MAX_PAGE_LEN as u64 + 5;
    for i in 0..n {
        a.append("page", &i.to_le_bytes(), Timestamp(i))
            .expect("append");
    }
    let first = a.entries(1, usize::MAX).expect("entries");
    assert_eq!(first.len(), MAX_PAGE_LEN, "limit clamped");
    assert_eq!(first.last().map(|e| e.seq), Some(MAX_PAGE_LEN as u64));
    assert_eq!(
        a.entries(MAX_PAGE_LEN as u64 + 1, usize::MAX)
            .map(|v| v.len()),
        Ok(5)
    );
    assert_eq!(a.verify(), Ok(n));
}

/// Empty or over-long kinds and over-large payloads are API misuse and
/// append nothing.
pub fn archive_refuses_bad_arguments<A: EvidenceArchive>(a: &A) {
    let t = Timestamp(1);
    assert!(matches!(a.append("", b"x", t), Err(Error::ApiMisuse(_))));
    assert!(matches!(
        a.append(&"k".repeat(MAX_KIND_LEN + 1), b"x", t),
        Err(Error::ApiMisuse(_))
    ));
    assert!(matches!(
        a.append("k", &vec![0u8; MAX_PAYLOAD_LEN + 1], t),
        Err(Error::ApiMisuse(_))
    ));
    assert_eq!(a.head(), Ok(None), "nothing appended");
    assert_eq!(a.append("k", b"x", t).map(|e| e.seq), Ok(1));
}

/// A unit of evidence ([`EvidenceArchive::record`]) is archived in order
/// and chained, or, if one of its entries breaks the limits, not at all.
pub fn archive_records_a_unit_whole_or_not_at_all<A: EvidenceArchive>(a: &A) {
    let t = Timestamp(9);
    a.append("before", b"0", t).expect("append");
    let bad = vec![
        Evidence::new("first", b"1".to_vec()),
        Evidence::new("second", vec![0u8; MAX_PAYLOAD_LEN + 1]),
    ];
    assert!(matches!(a.record(bad, t).wait(), Err(Error::ApiMisuse(_))));
    assert_eq!(
        a.head().map(|h| h.map(|(s, _)| s)),
        Ok(Some(1)),
        "nothing of a refused unit"
    );
    let got = a
        .record(
            vec![
                Evidence::new("first", b"1".to_vec()),
                Evidence::new("second", b"2".to_vec()),
            ],
            t,
        )
        .wait()
        .expect("record");
    let kinds: Vec<_> = got.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(kinds, vec![(2, "first"), (3, "second")]);
    assert_eq!(got[0].prev_hash, a.get(1).unwrap().unwrap().hash);
    assert_eq!(a.get(3), Ok(Some(got[1].clone())));
    assert_eq!(a.record(vec![], t).wait(), Ok(vec![]));
    assert_eq!(a.verify(), Ok(3));
}

/// Concurrent appends get distinct, gap-free seqs and still form one chain.
pub fn archive_concurrent_appends_chain<A: EvidenceArchive + Sync>(a: &A) {
    const PER_THREAD: u64 = 25;
    let barrier = Barrier::new(RACERS);
    let mut seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..RACERS as u64)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (0..PER_THREAD)
                        .map(|i| {
                            let payload = [t.to_be_bytes(), i.to_be_bytes()].concat();
                            a.append("race", &payload, Timestamp(t))
                                .expect("append")
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("appender panicked"))
            .collect()
    });
    seqs.sort_unstable();
    let total = RACERS as u64 * PER_THREAD;
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "distinct, gap-free seqs"
    );
    assert_eq!(a.verify(), Ok(total));
    assert_eq!(a.head().map(|h| h.map(|(s, _)| s)), Ok(Some(total)));
}
