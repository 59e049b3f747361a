#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The ports' conformance suites (the same functions the in-memory twins
//! pass in agora-core) run against SQLite, each case on a fresh database.

use agora_core::ports::conformance::{archive_suite, replay_cache_suite};
use agora_core::ports::{Freshness, MemoryReplayCache, ReplayCache};
use agora_core::Timestamp;
use agora_store::{SqliteAgencyRegistry, SqliteArchive, SqliteReplayCache, Store};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Fresh databases under one temporary directory, removed at the end.
struct Dbs {
    dir: tempfile::TempDir,
    n: AtomicUsize,
}

impl Dbs {
    fn new() -> Self {
        Dbs {
            dir: tempfile::tempdir().unwrap(),
            n: AtomicUsize::new(0),
        }
    }
    fn store(&self) -> Store {
        let i = self.n.fetch_add(1, Ordering::Relaxed);
        Store::open_dir(&self.dir.path().join(i.to_string())).unwrap()
    }
}

#[test]
fn sqlite_replay_cache_passes_conformance_suite() {
    let dbs = Dbs::new();
    replay_cache_suite(|| -> SqliteReplayCache { dbs.store().replay_cache() });
}

#[test]
fn sqlite_archive_passes_conformance_suite() {
    let dbs = Dbs::new();
    archive_suite(|| -> SqliteArchive { dbs.store().archive() });
}

#[test]
fn sqlite_agency_registry_passes_conformance_suite() {
    let dbs = Dbs::new();
    agora_pki::registry::conformance::agency_registry_suite(|| -> SqliteAgencyRegistry {
        dbs.store().agency_registry()
    });
}

#[test]
fn agency_registry_survives_reopen() {
    use agora_pki::registry::{AgencyRegistry, IssuedKind, IssuedRecord};
    use agora_pki::{RevocationReason, Serial};
    let dir = tempfile::tempdir().unwrap();
    let agency = agora_core::KeyId([4; 32]);
    let rec = IssuedRecord {
        serial: Serial(vec![0x11, 0x22]),
        kind: IssuedKind::Bond,
        subject: agora_core::KeyId([5; 32]),
        issued_at: Timestamp(10),
        not_after: Timestamp(20),
        der: vec![0x30, 0x00],
    };
    {
        let r = Store::open_dir(dir.path()).unwrap().agency_registry();
        r.record_issued(&agency, &rec).unwrap();
        r.revoke(
            &agency,
            &rec.serial,
            RevocationReason::Superseded,
            Timestamp(15),
        )
        .unwrap();
        assert_eq!(r.next_crl_number(&agency).unwrap(), 1);
    }
    let r = Store::open_dir(dir.path()).unwrap().agency_registry();
    assert_eq!(r.issued(&agency, &rec.serial).unwrap(), Some(rec.clone()));
    let revs = r.revocations(&agency).unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].reason, RevocationReason::Superseded);
    assert_eq!(r.next_crl_number(&agency).unwrap(), 2);
}

#[test]
fn replay_cache_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let n = [9u8; 32];
    {
        let c = Store::open_dir(dir.path()).unwrap().replay_cache();
        assert_eq!(
            c.check_and_insert("s", &n, Timestamp(100), Timestamp(1)),
            Ok(Freshness::Fresh)
        );
    }
    let c = Store::open_dir(dir.path()).unwrap().replay_cache();
    assert_eq!(
        c.check_and_insert("s", &n, Timestamp(100), Timestamp(2)),
        Ok(Freshness::Replayed)
    );
}

#[derive(Debug, Clone)]
enum Op {
    Insert { scope: u8, nonce: u8, ttl: u8 },
    Purge,
    Tick(u8),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..3, 0u8..8, 1u8..20).prop_map(|(scope, nonce, ttl)| Op::Insert { scope, nonce, ttl }),
        1 => Just(Op::Purge),
        2 => (0u8..10).prop_map(Op::Tick),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// SQLite answers exactly like the in-memory twin on random histories of
    /// inserts, purges and clock ticks over a few colliding nonces.
    #[test]
    fn sqlite_replay_cache_matches_memory_twin(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let sql = Store::open_dir(dir.path()).unwrap().replay_cache();
        let mem = MemoryReplayCache::new();
        let mut now = 1_000u64;
        for op in ops {
            match op {
                Op::Insert { scope, nonce, ttl } => {
                    let scope = format!("scope{scope}");
                    let nonce = [nonce; 32];
                    let exp = Timestamp(now + u64::from(ttl));
                    proptest::prop_assert_eq!(
                        sql.check_and_insert(&scope, &nonce, exp, Timestamp(now)),
                        mem.check_and_insert(&scope, &nonce, exp, Timestamp(now))
                    );
                }
                Op::Purge => proptest::prop_assert_eq!(
                    sql.purge_expired(Timestamp(now)),
                    mem.purge_expired(Timestamp(now))
                ),
                Op::Tick(d) => now += u64::from(d),
            }
        }
    }
}
