#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! agora-speed's ledger conformance suite against [`SqliteLedger`], each
//! case on a fresh database; what survives reopening; what the schema
//! refuses on its own.

use agora_core::{Error, Timestamp};
use agora_speed::ledger::conformance::{
    assert_books_balance, books, cents, ledger_suite, num, order, payment, BOOKS,
};
use agora_speed::ledger::{HoldOutcome, Ledger, PayOutcome};
use agora_store::{SqliteLedger, SqliteStore};
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
fn sqlite_ledger_passes_the_conformance_suite() {
    let dbs = Dbs::new();
    ledger_suite(|| SqliteLedger::new(dbs.store()));
}

#[test]
fn payments_and_balances_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = payment(order(1, 1), "C1", "V1", 1_234, 5_000);
    let q = payment(order(1, 2), "FLOAT", "V2", 50, 5_001);
    {
        let l = SqliteLedger::new(SqliteStore::open_dir(dir.path(), key()).unwrap());
        books(&l);
        assert_eq!(l.pay(&p).unwrap(), PayOutcome::Paid);
        assert_eq!(
            l.hold(&q.id, b"s2", Timestamp(5_000)).unwrap(),
            HoldOutcome::Held
        );
    }
    let l = SqliteLedger::new(SqliteStore::open_dir(dir.path(), key()).unwrap());
    assert_eq!(l.payment(&p.id).unwrap(), Some(p.clone()));
    assert_eq!(cents(&l, "C1"), 10_000 - 1_234);
    assert_eq!(cents(&l, "V1"), 1_234);
    assert_eq!(
        l.pay(&p).unwrap(),
        PayOutcome::AlreadyPaid(Box::new(p.clone()))
    );
    assert_eq!(cents(&l, "V1"), 1_234, "credited once");
    assert_eq!(l.held(&q.id).unwrap(), Some(b"s2".to_vec()));
    assert_eq!(l.pay(&q).unwrap(), PayOutcome::Paid);
    assert_eq!(l.held(&q.id).unwrap(), None);
    assert_eq!(l.journal(&num("V1"), 10).unwrap().len(), 1);
    assert_books_balance(&l, &BOOKS);
}

/// What a write that bypassed the port would do: refused by the schema.
fn raw_write(store: &SqliteStore, sql: &'static str) -> Result<usize, Error> {
    store.writer().execute(move |c| {
        c.execute(sql, [])
            .map_err(|e| Error::Storage(e.to_string()))
    })
}

#[test]
fn the_schema_refuses_what_the_port_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let l = SqliteLedger::new(store.clone());
    books(&l);
    let p = payment(order(2, 1), "C2", "V1", 100, 10);
    assert_eq!(l.pay(&p).unwrap(), PayOutcome::Paid);
    for (sql, why) in [
        (
            "UPDATE speed_account SET balance_cents = -1 WHERE number = 'C2'",
            "CHECK constraint failed",
        ),
        (
            "UPDATE speed_account SET balance_cents = 'lots' WHERE number = 'CR'",
            "cannot store TEXT value in INTEGER column",
        ),
        (
            "UPDATE speed_account SET owner = zeroblob(32) WHERE number = 'C2'",
            "only the balance of an account changes",
        ),
        (
            "DELETE FROM speed_account WHERE number = 'BRK'",
            "accounts are never deleted",
        ),
        (
            "UPDATE speed_posting SET cents = 1",
            "the journal is append-only",
        ),
        ("DELETE FROM speed_journal", "the journal is append-only"),
        (
            "UPDATE speed_payment SET price_cents = 1",
            "the payment register is append-only",
        ),
        (
            "DELETE FROM speed_payment",
            "the payment register is append-only",
        ),
        (
            "INSERT INTO speed_payment SELECT id, payer, vendor, price_cents, currency,
                mode, card, customer, bill, receipt, k, paid_at, entry + 1000
             FROM speed_payment",
            "UNIQUE constraint failed: speed_payment.id",
        ),
        (
            "INSERT INTO speed_hold (id, state, held_at) SELECT id, x'', 1 FROM speed_payment",
            "the payment order is paid",
        ),
    ] {
        match raw_write(&store, sql) {
            Err(Error::Storage(m)) => assert!(m.contains(why), "{sql}: {m}"),
            r => panic!("{sql}: {r:?}"),
        }
    }
    assert_eq!(l.payment(&p.id).unwrap(), Some(p));
    // The customer allowed credit may be below zero, in SQL too.
    raw_write(
        &store,
        "UPDATE speed_account SET balance_cents = -5 WHERE number = 'CR'",
    )
    .unwrap();
    assert_eq!(cents(&l, "CR"), -5);
}

#[test]
fn the_schema_bounds_are_the_ports() {
    use agora_speed::ledger::{MAX_HOLD_STATE_LEN, MAX_MEMO_LEN, MAX_POSTINGS};
    // Migration 7 writes them as numbers: 16 postings (n in 0..=15), a
    // memo of 200 bytes, a hold state of 16384 bytes.
    assert_eq!(
        (MAX_POSTINGS, MAX_MEMO_LEN, MAX_HOLD_STATE_LEN),
        (16, 200, 16_384)
    );
}

#[test]
fn sqlite_handshake_register_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    agora_speed::vendor::conformance::handshake_suite(|| {
        // A fresh vendor per case: one register per vendor key.
        let mut v = [0u8; 32];
        v[..8].copy_from_slice(&rand_vendor().to_be_bytes());
        agora_store::SqliteHandshakes::new(store.clone(), agora_core::KeyId(v))
    });
}

fn rand_vendor() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
