#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The ports' conformance suites (the same functions the in-memory twins
//! pass in agora-core) run against SQLite, each case on a fresh database.

use agora_core::ports::conformance::{archive_suite, replay_cache_suite};
use agora_core::ports::{Freshness, MemoryReplayCache, ReplayCache};
use agora_core::Timestamp;
use agora_store::{
    SqliteAgencyRegistry, SqliteArchive, SqliteBoard, SqliteReplayCache, SqliteSessions,
    SqliteStore,
};
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
    fn store(&self) -> SqliteStore {
        let i = self.n.fetch_add(1, Ordering::Relaxed);
        SqliteStore::open_dir(&self.dir.path().join(i.to_string()), key()).unwrap()
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
fn sqlite_board_passes_conformance_suite() {
    let dbs = Dbs::new();
    agora_cpo::ports::conformance::board_suite(|| -> SqliteBoard { dbs.store().board() });
}

#[test]
fn sqlite_cpo_store_keeps_every_unit_whole() {
    let dbs = Dbs::new();
    agora_cpo::store::conformance::cpo_store_suite(|| dbs.store().cpo());
}

#[test]
fn sqlite_sessions_pass_conformance_suite() {
    let dbs = Dbs::new();
    agora_cpo::ports::conformance::sessions_suite(|| -> SqliteSessions { dbs.store().sessions() });
}

/// Browse session `[n; 32]` of seller `[3; 32]`, live from time 100 on.
fn session(n: u8) -> agora_cpo::ports::Session {
    agora_cpo::ports::Session {
        id: [n; 32],
        k_p: [2; 32],
        seller: agora_core::KeyId([3; 32]),
        bond: vec![0x30, 0x01, 0x00],
        bond_serial: vec![0x7F; 20],
        agency: agora_core::KeyId([4; 32]),
        from: Timestamp(100),
        until: Timestamp(i64::MAX as u64),
        ended_at: None,
    }
}

/// A binding by seller `[3; 32]` at time 150.
fn binding() -> agora_cpo::ports::Binding {
    agora_cpo::ports::Binding {
        seller: agora_core::KeyId([3; 32]),
        bound_at: Timestamp(150),
        bound_cpo: vec![9; 300],
    }
}

#[test]
fn sessions_and_bindings_survive_reopen() {
    use agora_cpo::ports::{BindOutcome, Board, EndOutcome, Sessions};
    let dir = tempfile::tempdir().unwrap();
    let session = session(1);
    let binding = binding();
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&1u64.to_be_bytes());
    {
        let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
        store.sessions().create(&session).unwrap();
        agora_cpo::ports::conformance::post_then_get(&store.board());
        assert_eq!(
            store.board().try_bind(&id, &binding).unwrap(),
            BindOutcome::Bound
        );
    }
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let sessions = store.sessions();
    assert_eq!(sessions.get(&[1; 32]).unwrap(), Some(session.clone()));
    assert!(matches!(
        sessions.create(&session),
        Err(agora_core::Error::Refused(_))
    ));
    assert_eq!(
        sessions.end(&[1; 32], Timestamp(120)).unwrap(),
        EndOutcome::Ended
    );
    assert_eq!(store.board().binding(&id).unwrap(), Some(binding.clone()));
    assert_eq!(
        store.board().try_bind(&id, &binding).unwrap(),
        BindOutcome::AlreadyBound
    );
    assert!(store
        .board()
        .list_open(Timestamp(0), None, 10)
        .unwrap()
        .is_empty());
    // Times a row could not give back are refused, not clamped.
    let mut far = session.clone();
    far.id = [5; 32];
    far.until = Timestamp(u64::MAX);
    assert!(matches!(
        sessions.create(&far),
        Err(agora_core::Error::ApiMisuse(_))
    ));
}

/// A binding or bid made in a browse session commits only while the
/// session is stored and not ended, read in the same write transaction
/// (another process may have ended it after the server read it live).
#[test]
fn binds_and_bids_in_a_session_need_it_open() {
    use agora_core::{Currency, KeyId, Money};
    use agora_cpo::bidding::{BidRecord, BidSummary, Bids};
    use agora_cpo::ports::{BindOutcome, Board, Sessions};
    use agora_cpo::store::{CpoStore, CpoUnit, CpoWrite, CpoWritten};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let (ended, live, unknown) = ([1; 32], [5; 32], [6; 32]);
    store.sessions().create(&session(1)).unwrap();
    store.sessions().create(&session(5)).unwrap();
    store.sessions().end(&ended, Timestamp(120)).unwrap();
    agora_cpo::ports::conformance::post_then_get(&store.board());
    let mut cpo = [0u8; 32];
    cpo[..8].copy_from_slice(&1u64.to_be_bytes());
    let binding = binding();
    let board = store.board();
    let cpo_store = store.cpo();
    let bind_in = |s: &[u8; 32]| {
        cpo_store
            .commit(
                CpoUnit {
                    write: CpoWrite::Bind {
                        cpo,
                        binding: binding.clone(),
                        session: *s,
                    },
                    evidence: vec![],
                },
                Timestamp(150),
            )
            .wait()
            .unwrap()
    };
    for s in [&ended, &unknown] {
        assert_eq!(bind_in(s), CpoWritten::Bind(BindOutcome::SessionEnded));
    }
    assert_eq!(board.binding(&cpo).unwrap(), None, "nothing bound");
    let bid = BidRecord {
        summary: BidSummary {
            receipt_hash: [7; 32],
            seller: KeyId([3; 32]),
            price: Money::new(500, Currency::new("EUR").unwrap()),
            t: Timestamp(150),
        },
        receipt: vec![7; 3],
    };
    let bids = store.bids();
    for s in [&ended, &unknown] {
        assert!(matches!(
            bids.record_bid_in_session(&cpo, &bid, s),
            Err(agora_core::Error::NotAuthorised(_))
        ));
    }
    assert!(bids.bids(&cpo).unwrap().is_empty(), "nothing recorded");
    bids.record_bid_in_session(&cpo, &bid, &live).unwrap();
    assert_eq!(bids.bids(&cpo).unwrap(), vec![bid]);
    assert_eq!(bind_in(&live), CpoWritten::Bind(BindOutcome::Bound));
    assert_eq!(board.binding(&cpo).unwrap(), Some(binding));
}

#[test]
fn board_survives_reopen() {
    use agora_core::{Currency, KeyId, Money};
    use agora_cpo::ports::{Board, BoardEntry, PostOutcome};
    use agora_cpo::{Ccpo, CcpoDraft, Mode};
    let dir = tempfile::tempdir().unwrap();
    let entry = |n: u8, end: u64| BoardEntry {
        ccpo: Ccpo::with_id(
            [n; 32],
            CcpoDraft {
                arbiter: KeyId([1; 32]),
                server: KeyId([2; 32]),
                goods: format!("goods {n}"),
                price: Money::new(u64::MAX, Currency::new("USD").unwrap()),
                start: Timestamp(5),
                end: Timestamp(end),
                terms: "terms \u{2014} all of them".into(),
                bond: vec![0x30, 0x03, 1, 2, n],
            },
        )
        .unwrap(),
        mode: Mode::Bidding,
        buyer: KeyId([n ^ 0xFF; 32]),
        posted_at: Timestamp(7),
        acceptance: vec![n; 100],
        posted: vec![],
    };
    let (a, b) = (entry(1, 1_000), entry(2, u64::MAX));
    {
        let board = SqliteStore::open_dir(dir.path(), key()).unwrap().board();
        assert_eq!(board.post(&a).unwrap(), PostOutcome::Posted);
        assert_eq!(board.post(&b).unwrap(), PostOutcome::Posted);
    }
    let board = SqliteStore::open_dir(dir.path(), key()).unwrap().board();
    assert_eq!(board.get(&[1; 32]).unwrap(), Some(a.clone()));
    assert_eq!(board.get(&[2; 32]).unwrap(), Some(b.clone()));
    assert_eq!(board.post(&a).unwrap(), PostOutcome::AlreadyPosted);
    assert_eq!(
        board.list_open(Timestamp(10), None, 10).unwrap(),
        vec![a, b.clone()]
    );
    assert_eq!(
        board.list_open(Timestamp(1_000), None, 10).unwrap(),
        vec![b]
    );
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
        let r = SqliteStore::open_dir(dir.path(), key())
            .unwrap()
            .agency_registry();
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
    let r = SqliteStore::open_dir(dir.path(), key())
        .unwrap()
        .agency_registry();
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
        let c = SqliteStore::open_dir(dir.path(), key())
            .unwrap()
            .replay_cache();
        assert_eq!(
            c.check_and_insert("s", &n, Timestamp(100), Timestamp(1)),
            Ok(Freshness::Fresh)
        );
    }
    let c = SqliteStore::open_dir(dir.path(), key())
        .unwrap()
        .replay_cache();
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
        let sql = SqliteStore::open_dir(dir.path(), key()).unwrap().replay_cache();
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

#[test]
fn board_reports_a_corrupt_row_as_a_storage_error() {
    use agora_cpo::ports::Board;
    let dbs = Dbs::new();
    let store = dbs.store();
    agora_cpo::ports::conformance::post_then_get(&store.board());
    // Flip a bit of the last byte of the stored CCPO (inside its checksum).
    store
        .writer()
        .execute(|c| {
            let mut ccpo: Vec<u8> = c
                .query_row("SELECT ccpo FROM cpo_board", [], |r| r.get(0))
                .unwrap();
            *ccpo.last_mut().unwrap() ^= 1;
            c.execute("UPDATE cpo_board SET ccpo = ?1", [ccpo]).unwrap();
            Ok(())
        })
        .unwrap();
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&1u64.to_be_bytes());
    assert!(matches!(
        store.board().get(&id),
        Err(agora_core::Error::Storage(m)) if m.contains("corrupt board row")
    ));
    assert!(matches!(
        store.board().list_open(Timestamp(0), None, 10),
        Err(agora_core::Error::Storage(_))
    ));
}

#[test]
fn sqlite_bids_pass_conformance_suite() {
    let dbs = Dbs::new();
    agora_cpo::bidding::conformance::bids_suite(|| dbs.store().bids());
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
