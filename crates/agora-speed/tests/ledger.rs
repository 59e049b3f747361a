#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The ledger port's in-memory twin: random sequences of posts, payments
//! and holds, many refused, against a model of double entry written apart
//! from the twin (tests/ledger.rs uses only the public API).
//!
//! After every step: each account's balance is the model's (a refusal
//! changed nothing, an acceptance exactly what it says), each currency sums
//! to zero, no account that may not go negative is below zero, and a
//! PaymentOrderID is paid at most once (the model predicts every Paid and
//! AlreadyPaid, and the record returned).

use agora_core::crypto::Secret;
use agora_core::{Currency, Error, KeyId, Money, Timestamp};
use agora_speed::ids::{AccountNumber, CardId, Nid, PaymentOrderId};
use agora_speed::ledger::{
    Account, AccountKind, HoldOutcome, JournalEntry, Ledger, MemoryLedger, PayMode, PayOutcome,
    PaymentRecord, PostOutcome, Posting, MAX_LIST_LEN, MAX_POSTINGS,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// The conformance suite's own run on the twin is a unit test of
/// src/ledger.rs; here it runs when the suite is compiled in (the
/// `testkit` feature, as agora-store's tests enable it).
#[cfg(feature = "testkit")]
#[test]
fn memory_ledger_passes_the_conformance_suite() {
    agora_speed::ledger::conformance::ledger_suite(MemoryLedger::new);
}

fn eur() -> Currency {
    Currency::new("EUR").unwrap()
}

fn usd() -> Currency {
    Currency::new("USD").unwrap()
}

/// The accounts: number, kind, currency, credit allowed, opening balance.
/// `NOPE` (the last) is never opened.
const ACCOUNTS: [(&str, AccountKind, bool, bool, i64); 11] = [
    ("EXT", AccountKind::External, true, false, -15_500),
    ("C1", AccountKind::Customer, true, false, 10_000),
    ("C2", AccountKind::Customer, true, false, 500),
    ("V1", AccountKind::Vendor, true, false, 0),
    ("V2", AccountKind::Vendor, true, false, 0),
    ("FLOAT", AccountKind::PurseFloat, true, false, 5_000),
    ("BRK", AccountKind::Broker, true, false, 0),
    ("CR", AccountKind::Customer, true, true, 0),
    ("EXTUSD", AccountKind::External, false, false, -1_000),
    ("CUSD", AccountKind::Customer, false, false, 1_000),
    ("NOPE", AccountKind::Customer, true, false, 0),
];

const OPENED: usize = ACCOUNTS.len() - 1;

fn num(i: usize) -> AccountNumber {
    AccountNumber::new(ACCOUNTS[i].0).unwrap()
}

fn currency(i: usize) -> Currency {
    if ACCOUNTS[i].2 {
        eur()
    } else {
        usd()
    }
}

fn may_go_negative(i: usize) -> bool {
    ACCOUNTS[i].1 == AccountKind::External || ACCOUNTS[i].3
}

fn order(n: u8) -> PaymentOrderId {
    PaymentOrderId {
        vendor: KeyId([9; 32]),
        nid: Nid([n; 16]),
    }
}

/// One step.
#[derive(Clone, Debug)]
enum Op {
    /// Post entry `id` of these legs; if `balance`, the last leg is set to
    /// make the sum zero.
    Post {
        id: u8,
        legs: Vec<(usize, i64)>,
        balance: bool,
    },
    /// Pay order `n`.
    Pay {
        n: u8,
        payer: usize,
        vendor: usize,
        cents: u64,
        purse: bool,
        usd: bool,
        at: u64,
    },
    /// Hold a debit of order `n`.
    Hold { n: u8, state: u8 },
}

fn account() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0..OPENED, 1 => Just(OPENED)]
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        20 => -3_000i64..3_000,
        1 => Just(0i64),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(-i64::MAX),
    ]
}

/// Indices of the EUR accounts money usually moves between: EXT, C1, C2,
/// V1, V2, FLOAT, BRK, CR.
const EUR_ACCOUNTS: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// Mostly entries that may well pass (2 or 3 distinct EUR accounts,
/// balanced, small amounts: then only funds and idempotency decide), and
/// some of anything.
fn post() -> impl Strategy<Value = Op> {
    let likely = (
        0u8..12,
        prop::sample::subsequence(EUR_ACCOUNTS.to_vec(), 2..=3).prop_shuffle(),
        prop::collection::vec(-3_000i64..3_000, 3),
    )
        .prop_map(|(id, accounts, amounts)| Op::Post {
            id,
            legs: accounts.into_iter().zip(amounts).collect(),
            balance: true,
        });
    let anything = (
        0u8..12,
        prop::collection::vec((account(), amount()), 0..=MAX_POSTINGS + 1),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(id, legs, balance)| Op::Post { id, legs, balance });
    prop_oneof![3 => likely, 1 => anything]
}

/// Mostly well-formed payments (a customer by account or the float by
/// purse, to a vendor, in EUR: then only funds and the register decide),
/// and some of anything.
fn pay() -> impl Strategy<Value = Op> {
    let likely = (
        0u8..10,
        prop::sample::select(vec![(1, false), (2, false), (7, false), (5, true)]),
        3usize..5,
        1u64..2_500,
        0u64..100,
    )
        .prop_map(|(n, (payer, purse), vendor, cents, at)| Op::Pay {
            n,
            payer,
            vendor,
            cents,
            purse,
            usd: false,
            at,
        });
    let anything = (
        0u8..10,
        account(),
        account(),
        prop_oneof![20 => 0u64..3_000, 1 => Just(i64::MAX as u64 + 1), 1 => Just(u64::MAX)],
        any::<bool>(),
        prop::bool::weighted(0.1),
        0u64..100,
    )
        .prop_map(|(n, payer, vendor, cents, purse, usd, at)| Op::Pay {
            n,
            payer,
            vendor,
            cents,
            purse,
            usd,
            at,
        });
    prop_oneof![3 => likely, 1 => anything]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => post(),
        4 => pay(),
        2 => (0u8..10, any::<u8>()).prop_map(|(n, state)| Op::Hold { n, state }),
    ]
}

fn entry_of(id: u8, legs: &[(usize, i64)], balance: bool) -> JournalEntry {
    let mut legs = legs.to_vec();
    if balance && !legs.is_empty() {
        let k = legs.len() - 1;
        let rest: i128 = legs[..k].iter().map(|(_, c)| i128::from(*c)).sum();
        if let Ok(c) = i64::try_from(-rest) {
            legs[k].1 = c;
        }
    }
    JournalEntry {
        id: [id; 16],
        at: Timestamp(u64::from(id)),
        memo: format!("entry {id}"),
        postings: legs
            .iter()
            .map(|(a, c)| Posting {
                account: num(*a),
                cents: *c,
            })
            .collect(),
    }
}

fn record_of(
    n: u8,
    payer: usize,
    vendor: usize,
    cents: u64,
    purse: bool,
    usd_: bool,
    at: u64,
) -> PaymentRecord {
    PaymentRecord {
        id: order(n),
        payer: num(payer),
        vendor: num(vendor),
        price: Money::new(cents, if usd_ { usd() } else { eur() }),
        mode: if purse {
            PayMode::Purse {
                card: CardId([n; 16]),
            }
        } else {
            PayMode::Account
        },
        customer: KeyId([0xC0; 32]),
        bill: vec![n, 1],
        receipt: vec![n, 2, at as u8],
        key: Secret::new([n; 32]),
        paid_at: Timestamp(at),
    }
}

/// Double entry as the port describes it, written apart from the twin.
#[derive(Default)]
struct Model {
    balances: Vec<i64>,
    entries: HashMap<[u8; 16], JournalEntry>,
    paid: HashMap<PaymentOrderId, PaymentRecord>,
    holds: HashMap<PaymentOrderId, Vec<u8>>,
}

impl Model {
    fn index(n: &AccountNumber) -> usize {
        ACCOUNTS.iter().position(|a| a.0 == n.as_str()).unwrap()
    }

    /// The balances after `legs`, if they are allowed.
    fn moved(&self, legs: &[(usize, i64)]) -> Option<Vec<i64>> {
        let mut b = self.balances.clone();
        let cur = currency(legs.first()?.0);
        for (a, c) in legs {
            if *a >= OPENED || currency(*a) != cur {
                return None;
            }
            let new = i64::try_from(i128::from(b[*a]) + i128::from(*c)).ok()?;
            if new < 0 && !may_go_negative(*a) {
                return None;
            }
            b[*a] = new;
        }
        Some(b)
    }

    /// What posting `e` must do; applies it to the model.
    fn post(&mut self, e: &JournalEntry) -> Option<PostOutcome> {
        let legs: Vec<(usize, i64)> = e
            .postings
            .iter()
            .map(|p| (Model::index(&p.account), p.cents))
            .collect();
        let n = legs.len();
        let mut seen = legs.iter().map(|l| l.0).collect::<Vec<_>>();
        seen.sort_unstable();
        seen.dedup();
        let sum: i128 = legs.iter().map(|l| i128::from(l.1)).sum();
        if !(2..=MAX_POSTINGS).contains(&n) || seen.len() != n || sum != 0 {
            return None;
        }
        if legs.iter().any(|l| l.1 == 0) {
            return None;
        }
        if let Some(stored) = self.entries.get(&e.id) {
            return (stored == e).then_some(PostOutcome::AlreadyPosted);
        }
        self.balances = self.moved(&legs)?;
        self.entries.insert(e.id, e.clone());
        Some(PostOutcome::Posted)
    }

    /// What paying `p` must do; applies it to the model.
    fn pay(&mut self, p: &PaymentRecord) -> Option<PayOutcome> {
        let cents = i64::try_from(p.price.cents).ok().filter(|c| *c > 0)?;
        if p.payer == p.vendor {
            return None;
        }
        if let Some(stored) = self.paid.get(&p.id) {
            return Some(PayOutcome::AlreadyPaid(Box::new(stored.clone())));
        }
        let (payer, vendor) = (Model::index(&p.payer), Model::index(&p.vendor));
        if payer >= OPENED || vendor >= OPENED {
            return None;
        }
        let want = match p.mode {
            PayMode::Account => AccountKind::Customer,
            PayMode::Purse { .. } => AccountKind::PurseFloat,
        };
        if ACCOUNTS[payer].1 != want || ACCOUNTS[vendor].1 != AccountKind::Vendor {
            return None;
        }
        if currency(payer) != p.price.currency || currency(vendor) != p.price.currency {
            return None;
        }
        self.balances = self.moved(&[(payer, -cents), (vendor, cents)])?;
        self.paid.insert(p.id, p.clone());
        self.holds.remove(&p.id);
        Some(PayOutcome::Paid)
    }

    fn hold(&mut self, id: PaymentOrderId, state: &[u8]) -> HoldOutcome {
        if self.paid.contains_key(&id) {
            return HoldOutcome::AlreadyPaid;
        }
        if let Some(s) = self.holds.get(&id) {
            return HoldOutcome::AlreadyHeld(s.clone());
        }
        self.holds.insert(id, state.to_vec());
        HoldOutcome::Held
    }
}

/// A ledger with the accounts opened and funded, and its model.
fn start() -> (MemoryLedger, Model) {
    let l = MemoryLedger::new();
    for (i, (n, kind, _, credit, _)) in ACCOUNTS[..OPENED].iter().enumerate() {
        l.open_account(&Account {
            number: AccountNumber::new(n).unwrap(),
            owner: KeyId([i as u8; 32]),
            kind: *kind,
            currency: currency(i),
            allow_credit: *credit,
        })
        .unwrap();
    }
    let mut m = Model {
        balances: vec![0; OPENED],
        ..Model::default()
    };
    for (k, (to, from)) in [(1, 0), (2, 0), (5, 0), (9, 8)].into_iter().enumerate() {
        let c = ACCOUNTS[to].4;
        let e = entry_of(200 + k as u8, &[(from, -c), (to, c)], false);
        assert_eq!(l.post(&e).unwrap(), PostOutcome::Posted);
        assert_eq!(m.post(&e), Some(PostOutcome::Posted));
    }
    (l, m)
}

fn check_books(l: &MemoryLedger, m: &Model) -> Result<(), TestCaseError> {
    for (i, want) in m.balances.iter().enumerate() {
        let b = l.balance(&num(i)).unwrap();
        prop_assert_eq!(b.cents, *want, "balance of {}", ACCOUNTS[i].0);
        prop_assert_eq!(b.currency, currency(i));
        prop_assert!(
            b.cents >= 0 || may_go_negative(i),
            "{} below zero",
            ACCOUNTS[i].0
        );
        // The statement agrees with the balance.
        let lines = l.journal(&num(i), MAX_LIST_LEN).unwrap();
        if let Some(last) = lines.first() {
            prop_assert_eq!(last.balance_after, b.cents);
        }
        if lines.len() < MAX_LIST_LEN {
            let sum: i128 = lines.iter().map(|x| i128::from(x.cents)).sum();
            prop_assert_eq!(sum, i128::from(b.cents));
        }
    }
    prop_assert_eq!(l.total(eur()).unwrap(), 0);
    prop_assert_eq!(l.total(usd()).unwrap(), 0);
    Ok(())
}

fn is_refusal<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Refused(_)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_books_balance_whatever_the_steps(ops in prop::collection::vec(op(), 1..80)) {
        let (l, mut m) = start();
        check_books(&l, &m)?;
        for op in &ops {
            match op {
                Op::Post { id, legs, balance } => {
                    let e = entry_of(*id, legs, *balance);
                    let got = l.post(&e);
                    match m.post(&e) {
                        Some(want) => prop_assert_eq!(got, Ok(want), "{:?}", e),
                        None => prop_assert!(is_refusal(&got), "{:?}: {:?}", e, got),
                    }
                }
                Op::Pay { n, payer, vendor, cents, purse, usd, at } => {
                    let p = record_of(*n, *payer, *vendor, *cents, *purse, *usd, *at);
                    let got = l.pay(&p);
                    match m.pay(&p) {
                        Some(want) => prop_assert_eq!(got, Ok(want), "{:?}", p),
                        None => prop_assert!(is_refusal(&got), "{:?}: {:?}", p, got),
                    }
                }
                Op::Hold { n, state } => {
                    let got = l.hold(&order(*n), &[*state], Timestamp(1)).unwrap();
                    prop_assert_eq!(got, m.hold(order(*n), &[*state]));
                }
            }
            check_books(&l, &m)?;
        }
        for n in 0..10 {
            prop_assert_eq!(l.payment(&order(n)).unwrap(), m.paid.get(&order(n)).cloned());
            prop_assert_eq!(l.held(&order(n)).unwrap(), m.holds.get(&order(n)).cloned());
        }
        // Each vendor's settlement is what the register says it was paid.
        for v in [3, 4] {
            let s = l.settlement(&num(v), Timestamp(0), Timestamp(u64::MAX)).unwrap();
            let mine: Vec<&PaymentRecord> =
                m.paid.values().filter(|p| p.vendor == num(v)).collect();
            prop_assert_eq!(s.count, mine.len() as u64);
            prop_assert_eq!(s.total.cents, mine.iter().map(|p| p.price.cents).sum::<u64>());
        }
    }
}
