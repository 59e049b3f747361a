//! [`Ledger`] (agora-speed's port) on SQLite: the SPEED broker's
//! double-entry books and payment register (tables of migration 7).
//!
//! Every write is one request of the group-commit writer, so it runs in its
//! own savepoint of the writer's `BEGIN IMMEDIATE` transaction: its checks
//! and its writes see the same state, and a refusal (returned as an error)
//! rolls back everything the request wrote. A payment's register row,
//! journal entry, postings, balances and cleared hold are one request.
//!
//! Across processes sharing the file, the write lock serialises requests,
//! and the schema holds what matters on its own: the primary key of
//! `speed_payment` pays a PaymentOrderID at most once, the CHECK of
//! `speed_account` keeps a balance that may not go negative at zero or
//! above, and triggers keep the journal and the register append-only.
//!
//! Balances are computed in Rust with [`checked_balances`] (the same
//! function the in-memory twin uses) and written as values: SQLite's own
//! integer arithmetic would turn an overflow into a REAL.
//!
//! The secrets the broker keeps are sealed under the store's at-rest key,
//! each bound to its PaymentOrderID ([`crate::at_rest`]): a payment's
//! product key K and its bill (which carries RecKey, the key of the
//! receipt that carries K), and a held card debit's whole state.

use crate::at_rest::{AtRestKey, HOLD_STATE, PAYMENT_BILL, PAYMENT_K};
use crate::db::storage;
use crate::SqliteStore;
use agora_core::{Currency, Error, KeyId, Money, Timestamp};
use agora_speed::ids::{AccountNumber, CardId, PaymentOrderId};
use agora_speed::ledger::{
    check_hold, checked_balances, settlement_of, Account, AccountKind, Balance, HoldOutcome,
    JournalEntry, JournalLine, Ledger, PayMode, PayOutcome, PaymentRecord, PostOutcome, Posting,
    Settlement, MAX_LIST_LEN,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// The ledger port on a [`SqliteStore`].
///
/// The payment register keeps each product key K (see
/// [`PaymentRecord::key`]) and each bill sealed under the at-rest key, and
/// so are the held card debits.
#[derive(Clone, Debug)]
pub struct SqliteLedger {
    store: SqliteStore,
}

impl SqliteLedger {
    /// The ledger of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteLedger { store }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt ledger row: {what}"))
}

fn unknown(number: &AccountNumber) -> Error {
    Error::Refused(format!("unknown account {number}"))
}

/// A time as stored. The port's checks refuse times beyond `i64::MAX`
/// before they get here.
fn secs(t: Timestamp) -> Result<i64, Error> {
    i64::try_from(t.secs()).map_err(|_| Error::ApiMisuse("time beyond i64::MAX seconds"))
}

fn ts_back(v: i64) -> Result<Timestamp, Error> {
    u64::try_from(v)
        .map(Timestamp)
        .map_err(|_| corrupt("negative time"))
}

fn number_back(s: &str) -> Result<AccountNumber, Error> {
    AccountNumber::new(s).map_err(|_| corrupt("account number"))
}

fn currency_back(s: &str) -> Result<Currency, Error> {
    Currency::new(s).map_err(|_| corrupt("currency"))
}

/// The columns an account and its balance are rebuilt from, in this order.
const ACCOUNT_COLUMNS: &str = "number, owner, kind, currency, allow_credit, balance_cents";

/// One row of `speed_account` as read, before it is checked.
struct RawAccount {
    number: String,
    owner: Vec<u8>,
    kind: String,
    currency: String,
    allow_credit: i64,
    balance_cents: i64,
}

impl RawAccount {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawAccount> {
        Ok(RawAccount {
            number: r.get(0)?,
            owner: r.get(1)?,
            kind: r.get(2)?,
            currency: r.get(3)?,
            allow_credit: r.get(4)?,
            balance_cents: r.get(5)?,
        })
    }

    fn into_account(self) -> Result<(Account, i64), Error> {
        let account = Account {
            number: number_back(&self.number)?,
            owner: KeyId::from_slice(&self.owner).map_err(|_| corrupt("owner"))?,
            kind: AccountKind::from_name(&self.kind).ok_or_else(|| corrupt("account kind"))?,
            currency: currency_back(&self.currency)?,
            allow_credit: match self.allow_credit {
                0 => false,
                1 => true,
                _ => return Err(corrupt("allow_credit")),
            },
        };
        Ok((account, self.balance_cents))
    }
}

/// The account `number` and its balance.
fn account_row(conn: &Connection, number: &AccountNumber) -> Result<Option<(Account, i64)>, Error> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM speed_account WHERE number = ?1"
        ))
        .and_then(|mut st| {
            st.query_row([number.as_str()], RawAccount::from_row)
                .optional()
        })
        .map_err(storage)?;
    raw.map(RawAccount::into_account).transpose()
}

/// The journal entry `id`, as stored.
fn stored_entry(conn: &Connection, id: &[u8; 16]) -> Result<Option<JournalEntry>, Error> {
    let head: Option<(i64, i64, String)> = conn
        .prepare_cached("SELECT seq, at, memo FROM speed_journal WHERE id = ?1")
        .and_then(|mut st| {
            st.query_row([id.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(storage)?;
    let Some((seq, at, memo)) = head else {
        return Ok(None);
    };
    let rows: Vec<(String, i64)> = conn
        .prepare_cached("SELECT account, cents FROM speed_posting WHERE seq = ?1 ORDER BY n")
        .and_then(|mut st| {
            st.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(storage)?;
    let postings = rows
        .into_iter()
        .map(|(account, cents)| {
            Ok(Posting {
                account: number_back(&account)?,
                cents,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Some(JournalEntry {
        id: *id,
        at: ts_back(at)?,
        memo,
        postings,
    }))
}

fn entry_exists(conn: &Connection, id: &[u8; 16]) -> Result<bool, Error> {
    conn.prepare_cached("SELECT 1 FROM speed_journal WHERE id = ?1")
        .and_then(|mut st| st.exists([id.as_slice()]))
        .map_err(storage)
}

/// Applies `entry` (passed [`JournalEntry::check`], id not in the journal):
/// checks it against its accounts, appends it and its postings, writes the
/// balances. Returns its seq. On an error the request's savepoint is rolled
/// back, so a refusal after some writes leaves nothing.
fn apply(conn: &Connection, entry: &JournalEntry) -> Result<i64, Error> {
    let touched = entry
        .postings
        .iter()
        .map(|p| account_row(conn, &p.account)?.ok_or_else(|| unknown(&p.account)))
        .collect::<Result<Vec<_>, _>>()?;
    let balances = checked_balances(entry, &touched)?;
    let at = secs(entry.at)?;
    conn.prepare_cached("INSERT INTO speed_journal (id, at, memo) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![entry.id.as_slice(), at, entry.memo]))
        .map_err(storage)?;
    let seq = conn.last_insert_rowid();
    for (n, (p, balance)) in entry.postings.iter().zip(balances).enumerate() {
        let n = i64::try_from(n).map_err(|_| Error::ApiMisuse("too many postings"))?;
        conn.prepare_cached(
            "INSERT INTO speed_posting (seq, n, account, cents, balance_after)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut st| st.execute(params![seq, n, p.account.as_str(), p.cents, balance]))
        .map_err(storage)?;
        let updated = conn
            .prepare_cached("UPDATE speed_account SET balance_cents = ?2 WHERE number = ?1")
            .and_then(|mut st| st.execute(params![p.account.as_str(), balance]))
            .map_err(storage)?;
        if updated != 1 {
            return Err(Error::Storage(format!(
                "account {} vanished while posting",
                p.account
            )));
        }
    }
    Ok(seq)
}

/// The columns a [`PaymentRecord`] is rebuilt from, in this order.
const PAYMENT_COLUMNS: &str =
    "id, payer, vendor, price_cents, currency, mode, card, customer, bill, receipt, k, paid_at";

/// One row of `speed_payment` as read, before it is checked: K and the bill
/// still sealed.
struct RawPayment {
    id: Vec<u8>,
    payer: String,
    vendor: String,
    price_cents: i64,
    currency: String,
    mode: String,
    card: Option<Vec<u8>>,
    customer: Vec<u8>,
    bill: Vec<u8>,
    receipt: Vec<u8>,
    k: Vec<u8>,
    paid_at: i64,
}

impl RawPayment {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawPayment> {
        Ok(RawPayment {
            id: r.get(0)?,
            payer: r.get(1)?,
            vendor: r.get(2)?,
            price_cents: r.get(3)?,
            currency: r.get(4)?,
            mode: r.get(5)?,
            card: r.get(6)?,
            customer: r.get(7)?,
            bill: r.get(8)?,
            receipt: r.get(9)?,
            k: r.get(10)?,
            paid_at: r.get(11)?,
        })
    }

    /// The record, K and the bill opened with `key` (refused unless they
    /// were sealed for this payment).
    fn into_record(self, key: &AtRestKey) -> Result<PaymentRecord, Error> {
        let k = key.open_32(PAYMENT_K, &self.id, &self.k)?;
        let bill = key.open(PAYMENT_BILL, &self.id, &self.bill)?.to_vec();
        let mode = match (self.mode.as_str(), self.card.as_deref()) {
            ("account", None) => PayMode::Account,
            ("purse", Some(card)) => PayMode::Purse {
                card: CardId(card.try_into().map_err(|_| corrupt("card id"))?),
            },
            _ => return Err(corrupt("payment mode")),
        };
        Ok(PaymentRecord {
            id: PaymentOrderId::from_bytes(&self.id).map_err(|_| corrupt("payment id"))?,
            payer: number_back(&self.payer)?,
            vendor: number_back(&self.vendor)?,
            price: Money::new(
                u64::try_from(self.price_cents).map_err(|_| corrupt("negative price"))?,
                currency_back(&self.currency)?,
            ),
            mode,
            customer: KeyId::from_slice(&self.customer).map_err(|_| corrupt("customer"))?,
            bill,
            receipt: self.receipt,
            key: k,
            paid_at: ts_back(self.paid_at)?,
        })
    }
}

/// The payment `id`, as stored, its secrets opened with `key`.
fn stored_payment(
    conn: &Connection,
    key: &AtRestKey,
    id: &[u8; 48],
) -> Result<Option<PaymentRecord>, Error> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM speed_payment WHERE id = ?1"
        ))
        .and_then(|mut st| {
            st.query_row([id.as_slice()], RawPayment::from_row)
                .optional()
        })
        .map_err(storage)?;
    raw.map(|r| r.into_record(key)).transpose()
}

/// A payment's secrets, sealed for its row.
struct SealedPayment {
    k: Vec<u8>,
    bill: Vec<u8>,
}

impl SealedPayment {
    fn of(key: &AtRestKey, p: &PaymentRecord) -> SealedPayment {
        let id = p.id.to_bytes();
        SealedPayment {
            k: key.seal(PAYMENT_K, &id, p.key.expose()),
            bill: key.seal(PAYMENT_BILL, &id, &p.bill),
        }
    }
}

/// Records `p` (checked, not paid, accounts checked; its secrets `sealed`)
/// with its journal entry `seq`, and deletes the hold of its id.
fn insert_payment(
    conn: &Connection,
    p: &PaymentRecord,
    sealed: &SealedPayment,
    seq: i64,
) -> Result<(), Error> {
    let id = p.id.to_bytes();
    let price = i64::try_from(p.price.cents)
        .map_err(|_| Error::Refused("price beyond i64::MAX cents".into()))?;
    let paid_at = secs(p.paid_at)?;
    let (mode, card) = match &p.mode {
        PayMode::Account => ("account", None),
        PayMode::Purse { card } => ("purse", Some(card.0.to_vec())),
    };
    conn.prepare_cached(
        "INSERT INTO speed_payment (id, payer, vendor, price_cents, currency, mode, card,
            customer, bill, receipt, k, paid_at, entry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut st| {
        st.execute(params![
            id.as_slice(),
            p.payer.as_str(),
            p.vendor.as_str(),
            price,
            p.price.currency.as_str(),
            mode,
            card,
            p.customer.as_bytes().as_slice(),
            sealed.bill,
            p.receipt,
            sealed.k,
            paid_at,
            seq
        ])
    })
    .map_err(storage)?;
    conn.prepare_cached("DELETE FROM speed_hold WHERE id = ?1")
        .and_then(|mut st| st.execute([id.as_slice()]))
        .map_err(storage)?;
    Ok(())
}

/// The state of the card debit held for `id`, opened with `key`.
fn held_state(conn: &Connection, key: &AtRestKey, id: &[u8; 48]) -> Result<Option<Vec<u8>>, Error> {
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT state FROM speed_hold WHERE id = ?1")
        .and_then(|mut st| st.query_row([id.as_slice()], |r| r.get(0)).optional())
        .map_err(storage)?;
    sealed
        .map(|s| Ok(key.open(HOLD_STATE, id, &s)?.to_vec()))
        .transpose()
}

impl Ledger for SqliteLedger {
    fn open_account(&self, account: &Account) -> Result<(), Error> {
        let a = account.clone();
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO speed_account (number, owner, kind, currency, allow_credit)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (number) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        a.number.as_str(),
                        a.owner.as_bytes().as_slice(),
                        a.kind.as_str(),
                        a.currency.as_str(),
                        i64::from(a.allow_credit)
                    ])
                })
                .map_err(storage)?;
            if n == 0 {
                return Err(Error::Refused(format!("account {} exists", a.number)));
            }
            Ok(())
        })
    }

    fn account(&self, number: &AccountNumber) -> Result<Option<Account>, Error> {
        Ok(self
            .store
            .read(|conn| account_row(conn, number))?
            .map(|(a, _)| a))
    }

    fn accounts_of(&self, owner: &KeyId) -> Result<Vec<Account>, Error> {
        let rows = self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM speed_account WHERE owner = ?1
                 ORDER BY number LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(
                    params![owner.as_bytes().as_slice(), MAX_LIST_LEN as i64],
                    RawAccount::from_row,
                )?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)
        })?;
        rows.into_iter()
            .map(|r| r.into_account().map(|(a, _)| a))
            .collect()
    }

    fn balance(&self, number: &AccountNumber) -> Result<Balance, Error> {
        let (a, cents) = self
            .store
            .read(|conn| account_row(conn, number))?
            .ok_or_else(|| unknown(number))?;
        Ok(Balance {
            cents,
            currency: a.currency,
        })
    }

    fn post(&self, entry: &JournalEntry) -> Result<PostOutcome, Error> {
        entry.check()?;
        let entry = entry.clone();
        self.store.writer().execute(move |conn| {
            if let Some(stored) = stored_entry(conn, &entry.id)? {
                return if stored == entry {
                    Ok(PostOutcome::AlreadyPosted)
                } else {
                    Err(Error::Refused(
                        "journal entry id reused with other content".into(),
                    ))
                };
            }
            apply(conn, &entry)?;
            Ok(PostOutcome::Posted)
        })
    }

    fn pay(&self, payment: &PaymentRecord) -> Result<PayOutcome, Error> {
        payment.check()?;
        let entry = payment.entry()?;
        let p = payment.clone();
        // Sealed here, not on the writer's thread: it holds up the batch.
        let key = self.store.at_rest().clone();
        let sealed = SealedPayment::of(&key, &p);
        self.store.writer().execute(move |conn| {
            if let Some(stored) = stored_payment(conn, &key, &p.id.to_bytes())? {
                return Ok(PayOutcome::AlreadyPaid(Box::new(stored)));
            }
            let account = |n: &AccountNumber| {
                account_row(conn, n)?
                    .map(|(a, _)| a)
                    .ok_or_else(|| unknown(n))
            };
            p.check_accounts(&account(&p.payer)?, &account(&p.vendor)?)?;
            if entry_exists(conn, &entry.id)? {
                return Err(Error::Refused(
                    "journal entry id of the payment is taken".into(),
                ));
            }
            let seq = apply(conn, &entry)?;
            insert_payment(conn, &p, &sealed, seq)?;
            Ok(PayOutcome::Paid)
        })
    }

    fn hold(&self, id: &PaymentOrderId, state: &[u8], at: Timestamp) -> Result<HoldOutcome, Error> {
        check_hold(state, at)?;
        let (id, at) = (id.to_bytes(), secs(at)?);
        let key = self.store.at_rest().clone();
        let sealed = key.seal(HOLD_STATE, &id, state);
        self.store.writer().execute(move |conn| {
            let paid = conn
                .prepare_cached("SELECT 1 FROM speed_payment WHERE id = ?1")
                .and_then(|mut st| st.exists([id.as_slice()]))
                .map_err(storage)?;
            if paid {
                return Ok(HoldOutcome::AlreadyPaid);
            }
            if let Some(s) = held_state(conn, &key, &id)? {
                return Ok(HoldOutcome::AlreadyHeld(s));
            }
            conn.prepare_cached("INSERT INTO speed_hold (id, state, held_at) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![id.as_slice(), sealed, at]))
                .map_err(storage)?;
            Ok(HoldOutcome::Held)
        })
    }

    fn held(&self, id: &PaymentOrderId) -> Result<Option<Vec<u8>>, Error> {
        let id = id.to_bytes();
        self.store
            .read(|conn| held_state(conn, self.store.at_rest(), &id))
    }

    fn payment(&self, id: &PaymentOrderId) -> Result<Option<PaymentRecord>, Error> {
        self.store
            .read(|conn| stored_payment(conn, self.store.at_rest(), &id.to_bytes()))
    }

    fn settlement(
        &self,
        vendor: &AccountNumber,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Settlement, Error> {
        // `from <= paid_at < to` as `from <= paid_at <= to - 1` on stored
        // times (0..=i64::MAX): a `from` beyond i64::MAX or a `to` of zero
        // selects nothing, an upper bound beyond it everything above `from`.
        let bounds = match (i64::try_from(from.secs()), to.secs().checked_sub(1)) {
            (Ok(lo), Some(hi)) => Some((lo, i64::try_from(hi).unwrap_or(i64::MAX))),
            _ => None,
        };
        self.store.read(|conn| {
            // One read transaction: the account and its payments as of one
            // moment.
            let tx = conn.unchecked_transaction().map_err(storage)?;
            let (account, _) = account_row(&tx, vendor)?.ok_or_else(|| unknown(vendor))?;
            let currency = account.currency;
            let Some((lo, hi)) = bounds else {
                return settlement_of(vendor, currency, std::iter::empty());
            };
            let mut st = tx
                .prepare_cached(
                    "SELECT id, price_cents, currency, paid_at FROM speed_payment
                     WHERE vendor = ?1 AND paid_at >= ?2 AND paid_at <= ?3
                     ORDER BY paid_at, id",
                )
                .map_err(storage)?;
            let mut rows = st
                .query(params![vendor.as_str(), lo, hi])
                .map_err(storage)?;
            // Rows are read one at a time (counted and summed, only the
            // first ones kept): the first error stops the walk here.
            let mut failed = None;
            let payments = std::iter::from_fn(|| {
                let row = match rows.next() {
                    Ok(Some(r)) => r,
                    Ok(None) => return None,
                    Err(e) => {
                        failed = Some(storage(e));
                        return None;
                    }
                };
                let read = || -> Result<(PaymentOrderId, Money, Timestamp), Error> {
                    let id: Vec<u8> = row.get(0).map_err(storage)?;
                    let cents: i64 = row.get(1).map_err(storage)?;
                    let cur: String = row.get(2).map_err(storage)?;
                    let at: i64 = row.get(3).map_err(storage)?;
                    if currency_back(&cur)? != currency {
                        return Err(corrupt("payment in another currency than its vendor"));
                    }
                    Ok((
                        PaymentOrderId::from_bytes(&id).map_err(|_| corrupt("payment id"))?,
                        Money::new(
                            u64::try_from(cents).map_err(|_| corrupt("negative price"))?,
                            currency,
                        ),
                        ts_back(at)?,
                    ))
                };
                match read() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                }
            });
            let s = settlement_of(vendor, currency, payments);
            if let Some(e) = failed {
                return Err(e);
            }
            s
        })
    }

    fn total(&self, currency: Currency) -> Result<i128, Error> {
        self.store.read(|conn| {
            let mut st = conn
                .prepare_cached("SELECT balance_cents FROM speed_account WHERE currency = ?1")
                .map_err(storage)?;
            let mut rows = st.query([currency.as_str()]).map_err(storage)?;
            let mut sum: i128 = 0;
            while let Some(r) = rows.next().map_err(storage)? {
                let c: i64 = r.get(0).map_err(storage)?;
                // Fewer than 2^64 rows of at most 2^63: no overflow.
                sum += i128::from(c);
            }
            Ok(sum)
        })
    }

    fn journal(&self, number: &AccountNumber, limit: usize) -> Result<Vec<JournalLine>, Error> {
        let limit = i64::try_from(limit.min(MAX_LIST_LEN)).unwrap_or(0);
        type RawLine = (i64, Vec<u8>, i64, String, i64, i64);
        let rows: Vec<RawLine> = self.store.read(|conn| {
            let tx = conn.unchecked_transaction().map_err(storage)?;
            if account_row(&tx, number)?.is_none() {
                return Err(unknown(number));
            }
            tx.prepare_cached(
                "SELECT j.seq, j.id, j.at, j.memo, p.cents, p.balance_after
                 FROM speed_posting p JOIN speed_journal j ON j.seq = p.seq
                 WHERE p.account = ?1 ORDER BY p.seq DESC LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(params![number.as_str(), limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)
        })?;
        rows.into_iter()
            .map(|(seq, id, at, memo, cents, balance_after)| {
                Ok(JournalLine {
                    seq: u64::try_from(seq).map_err(|_| corrupt("negative seq"))?,
                    entry: id.as_slice().try_into().map_err(|_| corrupt("entry id"))?,
                    at: ts_back(at)?,
                    memo,
                    cents,
                    balance_after,
                })
            })
            .collect()
    }
}
