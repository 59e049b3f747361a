//! The broker's double-entry ledger and payment register: a storage port
//! (ARCHITECTURE section 5) with an in-memory twin. agora-store implements
//! [`Ledger`] on SQLite; `conformance` (in test builds and with the
//! `testkit` feature) holds the suite every implementation runs.
//!
//! - **Double entry.** Money moves only by [`JournalEntry`]s, whose postings
//!   sum to zero, so the balances of one currency always sum to zero
//!   ([`Ledger::total`]). Money entering the system (a deposit) comes from an
//!   [`AccountKind::External`] account, which goes below zero by as much.
//! - **Payment register.** "It is mandatory for broker to keep track of every
//!   processed transaction" (paper 5.3): [`Ledger::pay`] records a
//!   [`PaymentRecord`] and moves its price in ONE transaction, and pays a
//!   PaymentOrderID at most once, so a replayed bill credits its vendor
//!   once. The record keeps what the broker needs "to know whether it can
//!   retransmit the encryption key to the customer" (5.7): the sealed
//!   receipt, and K.
//! - **Holds.** A smart-card payment takes two more messages (4.2, a and b):
//!   between the broker's S2 and the card's S3 the pending debit is kept
//!   durably ([`Ledger::hold`]), and the payment clears it.
//!
//! Amounts are `i64` cents in the ledger (what an SQL integer holds), summed
//! in `i128`; every sum and every new balance is checked, nothing overflows.

use crate::ids::{AccountNumber, CardId, PaymentOrderId};
use agora_core::crypto::{sha256, Secret};
use agora_core::{Currency, Error, KeyId, Money, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Most postings in one journal entry. A payment has 2; a payment with fees
/// or a split refund a few more. The bound keeps one entry (one transaction
/// holding the write lock) small.
pub const MAX_POSTINGS: usize = 16;

/// Longest memo of a journal entry, in bytes: a line of a statement.
pub const MAX_MEMO_LEN: usize = 200;

/// Longest bill kept in a [`PaymentRecord`], in bytes. A signed bill is a
/// few hundred bytes; the bound leaves room for a certificate chain.
pub const MAX_BILL_LEN: usize = 64 * 1024;

/// Longest sealed receipt kept in a [`PaymentRecord`], in bytes (a signed
/// receipt of three fields, encrypted: a few hundred bytes in practice).
pub const MAX_RECEIPT_LEN: usize = 64 * 1024;

/// Longest state of a pending e-purse debit ([`Ledger::hold`]), in bytes:
/// the SAM's state between S2 and S3 is a few keys and counters.
pub const MAX_HOLD_STATE_LEN: usize = 16 * 1024;

/// Most rows of one listing ([`Ledger::accounts_of`], [`Ledger::journal`]):
/// a listing is read into memory whole.
pub const MAX_LIST_LEN: usize = 500;

/// Most payments listed in one [`Settlement`] (its count and total cover
/// them all): about 100 KiB of rows. A vendor with more payments in the
/// range asks again for a narrower one.
pub const MAX_SETTLEMENT_LEN: usize = 1_000;

/// What an account is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountKind {
    /// A customer's account at the broker (the account payment mode).
    Customer,
    /// A vendor's account, credited by payments.
    Vendor,
    /// The broker's own (fees, for instance).
    Broker,
    /// The money loaded on e-purse cards: card payments are debited here,
    /// since the card's own balance is on the card.
    PurseFloat,
    /// Money entering or leaving the system (deposits, withdrawals, card
    /// loads): the other side of the world. It may go below zero, whatever
    /// its `allow_credit`.
    External,
}

impl AccountKind {
    /// Every kind.
    pub const ALL: [AccountKind; 5] = [
        AccountKind::Customer,
        AccountKind::Vendor,
        AccountKind::Broker,
        AccountKind::PurseFloat,
        AccountKind::External,
    ];

    /// The kind's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Vendor => "vendor",
            AccountKind::Broker => "broker",
            AccountKind::PurseFloat => "purse-float",
            AccountKind::External => "external",
        }
    }

    /// Parses [`AccountKind::as_str`].
    pub fn from_name(s: &str) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An account at the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Its number: unique at the broker, whatever the currency.
    pub number: AccountNumber,
    /// The key id of the holder's identity key (the broker's own for its
    /// accounts).
    pub owner: KeyId,
    /// What it is for.
    pub kind: AccountKind,
    /// Its one currency: every posting to it is in this currency.
    pub currency: Currency,
    /// Whether its balance may go below zero (an overdraft the broker
    /// grants). [`AccountKind::External`] accounts may anyway.
    pub allow_credit: bool,
}

impl Account {
    /// Whether its balance may go below zero: credit allowed, or external.
    pub fn may_go_negative(&self) -> bool {
        self.allow_credit || self.kind == AccountKind::External
    }
}

/// A balance. Signed: an account allowed credit, and an external one, may
/// be below zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// The balance in cents; below zero for money owed.
    pub cents: i64,
    /// The account's currency.
    pub currency: Currency,
}

impl Balance {
    /// The balance as [`Money`], unless it is below zero.
    pub fn as_money(&self) -> Option<Money> {
        u64::try_from(self.cents)
            .ok()
            .map(|c| Money::new(c, self.currency))
    }

    /// Whether the balance covers `price`: same currency and at least as
    /// much.
    pub fn covers(&self, price: &Money) -> bool {
        self.as_money().is_some_and(|m| m.covers(price))
    }
}

/// One line of a journal entry: `cents` added to `account` (below zero:
/// taken from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    /// The account.
    pub account: AccountNumber,
    /// The amount in cents added (a debit of the account if below zero).
    /// Never zero.
    pub cents: i64,
}

/// A movement of money: postings that sum to zero, applied together or not
/// at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Its id, unique in the ledger: the idempotency key of
    /// [`Ledger::post`] (a retried post is recognised by it).
    pub id: [u8; 16],
    /// When (at most `i64::MAX` seconds, what the store holds).
    pub at: Timestamp,
    /// What it is, for statements: at most [`MAX_MEMO_LEN`] bytes.
    pub memo: String,
    /// 2 to [`MAX_POSTINGS`] postings, each to another account, none of
    /// zero, summing to zero.
    pub postings: Vec<Posting>,
}

/// Refuses a time the stores could not give back as it is (they hold
/// seconds as SQL integers).
fn check_time(t: Timestamp, what: &'static str) -> Result<(), Error> {
    if i64::try_from(t.secs()).is_err() {
        return Err(Error::ApiMisuse(what));
    }
    Ok(())
}

impl JournalEntry {
    /// The checks that need no account: the number of postings, none of
    /// zero, no account twice, a sum of zero, the memo's length, the time.
    /// [`Error::Refused`] says which failed ([`Error::ApiMisuse`] for a time
    /// beyond `i64::MAX`).
    pub fn check(&self) -> Result<(), Error> {
        check_time(self.at, "journal entry time beyond i64::MAX seconds")?;
        let n = self.postings.len();
        if !(2..=MAX_POSTINGS).contains(&n) {
            return Err(Error::Refused(format!(
                "a journal entry has 2 to {MAX_POSTINGS} postings, not {n}"
            )));
        }
        if self.memo.len() > MAX_MEMO_LEN {
            return Err(Error::Refused(format!(
                "memo longer than {MAX_MEMO_LEN} bytes"
            )));
        }
        let mut sum: i128 = 0;
        for (i, p) in self.postings.iter().enumerate() {
            if p.cents == 0 {
                return Err(Error::Refused("a posting of zero".into()));
            }
            if self.postings[..i].iter().any(|q| q.account == p.account) {
                return Err(Error::Refused(format!(
                    "account {} posted twice in one entry",
                    p.account
                )));
            }
            // At most 16 terms of at most 2^63 each: i128 cannot overflow.
            sum += i128::from(p.cents);
        }
        if sum != 0 {
            return Err(Error::Refused(format!(
                "postings sum to {sum} cents, not zero"
            )));
        }
        Ok(())
    }
}

/// The checks of a journal entry against the accounts it touches, and the
/// balances it leaves: `touched[i]` is the account of `entry.postings[i]`
/// with its balance now. Refuses ([`Error::Refused`]) accounts of different
/// currencies ("currency mismatch"), a balance beyond the `i64` range, and
/// a balance below zero of an account that may not go negative ("insufficient
/// funds"). Every [`Ledger`] applies an entry with this, after
/// [`JournalEntry::check`], so all agree on what is refused.
pub fn checked_balances(
    entry: &JournalEntry,
    touched: &[(Account, i64)],
) -> Result<Vec<i64>, Error> {
    if touched.len() != entry.postings.len() {
        return Err(Error::ApiMisuse("one account per posting"));
    }
    let Some((first, _)) = touched.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(touched.len());
    for (p, (a, balance)) in entry.postings.iter().zip(touched) {
        if a.number != p.account {
            return Err(Error::ApiMisuse("accounts in the order of the postings"));
        }
        if a.currency != first.currency {
            return Err(Error::Refused(format!(
                "currency mismatch: {} in {}, {} in {}",
                first.number, first.currency, a.number, a.currency
            )));
        }
        let new = i64::try_from(i128::from(*balance) + i128::from(p.cents))
            .map_err(|_| Error::Refused(format!("balance of {} overflows", a.number)))?;
        if new < 0 && !a.may_go_negative() {
            return Err(Error::Refused("insufficient funds".into()));
        }
        out.push(new);
    }
    Ok(out)
}

/// The result of [`Ledger::post`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// Applied now.
    Posted,
    /// The same entry (same id, same content) was posted before; nothing
    /// changed.
    AlreadyPosted,
}

/// How a payment was made (the PaymentMode of the paper's message 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayMode {
    /// From the customer's account at the broker.
    Account,
    /// From an e-purse card, through the broker's SAM: the payer is then the
    /// purse float account.
    Purse {
        /// The card debited.
        card: CardId,
    },
}

/// A processed payment, as the register keeps it (paper 5.3 and 5.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The PaymentOrderID: paid at most once.
    pub id: PaymentOrderId,
    /// The account debited: the customer's ([`PayMode::Account`], an
    /// [`AccountKind::Customer`] account) or the purse float
    /// ([`PayMode::Purse`], an [`AccountKind::PurseFloat`] account).
    pub payer: AccountNumber,
    /// The vendor's account ([`AccountKind::Vendor`]), credited.
    pub vendor: AccountNumber,
    /// The price of the bill, in the currency of both accounts; not zero,
    /// at most `i64::MAX` cents.
    pub price: Money,
    /// How it was paid.
    pub mode: PayMode,
    /// The key id of the customer's identity key.
    pub customer: KeyId,
    /// The vendor-signed bill, as presented (evidence for complaints), at
    /// most [`MAX_BILL_LEN`] bytes.
    pub bill: Vec<u8>,
    /// The sealed PurchaseReceipt, resent on request (paper 5.7), at most
    /// [`MAX_RECEIPT_LEN`] bytes.
    pub receipt: Vec<u8>,
    /// K, the key of the product, for complaints. Stored because the broker
    /// learns it anyway (the bill carries it to the broker, which puts it in
    /// the receipt) and must be able to send it again; a store keeping it
    /// must be protected like the broker's keys.
    pub key: Secret<32>,
    /// When it was paid (at most `i64::MAX` seconds).
    pub paid_at: Timestamp,
}

/// The label the id of a payment's journal entry is derived under.
const PAYMENT_ENTRY_LABEL: &[u8] = b"agora-speed ledger: journal entry of payment ";

impl PaymentRecord {
    /// The checks that need no account: the price (not zero, at most
    /// `i64::MAX` cents), the sizes of the bill and the receipt, two
    /// different accounts, the time.
    pub fn check(&self) -> Result<(), Error> {
        check_time(self.paid_at, "payment time beyond i64::MAX seconds")?;
        if self.price.cents == 0 {
            return Err(Error::Refused("a payment of zero".into()));
        }
        if i64::try_from(self.price.cents).is_err() {
            return Err(Error::Refused("price beyond i64::MAX cents".into()));
        }
        if self.payer == self.vendor {
            return Err(Error::Refused("payer and vendor are one account".into()));
        }
        if self.bill.len() > MAX_BILL_LEN {
            return Err(Error::Refused(format!(
                "bill longer than {MAX_BILL_LEN} bytes"
            )));
        }
        if self.receipt.len() > MAX_RECEIPT_LEN {
            return Err(Error::Refused(format!(
                "receipt longer than {MAX_RECEIPT_LEN} bytes"
            )));
        }
        Ok(())
    }

    /// The checks of the two accounts: the payer of the kind the mode
    /// requires, the vendor a vendor account, both in the price's currency.
    pub fn check_accounts(&self, payer: &Account, vendor: &Account) -> Result<(), Error> {
        let want = match self.mode {
            PayMode::Account => AccountKind::Customer,
            PayMode::Purse { .. } => AccountKind::PurseFloat,
        };
        if payer.kind != want {
            return Err(Error::Refused(format!(
                "payer {} is a {} account, not a {} one",
                payer.number,
                payer.kind.as_str(),
                want.as_str()
            )));
        }
        if vendor.kind != AccountKind::Vendor {
            return Err(Error::Refused(format!(
                "{} is not a vendor account",
                vendor.number
            )));
        }
        if payer.currency != self.price.currency || vendor.currency != self.price.currency {
            return Err(Error::Refused(format!(
                "currency mismatch: price in {}",
                self.price.currency
            )));
        }
        Ok(())
    }

    /// The journal entry of the payment: `price` from the payer to the
    /// vendor, at `paid_at`. Its id is derived from the PaymentOrderID, so
    /// it is the same whoever builds it.
    pub fn entry(&self) -> Result<JournalEntry, Error> {
        let cents = i64::try_from(self.price.cents)
            .map_err(|_| Error::Refused("price beyond i64::MAX cents".into()))?;
        let mut label = PAYMENT_ENTRY_LABEL.to_vec();
        label.extend_from_slice(&self.id.to_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&sha256(&label)[..16]);
        Ok(JournalEntry {
            id,
            at: self.paid_at,
            // 8 + 96 bytes: within MAX_MEMO_LEN.
            memo: format!("payment {}", self.id.to_hex()),
            postings: vec![
                Posting {
                    account: self.payer.clone(),
                    cents: -cents,
                },
                Posting {
                    account: self.vendor.clone(),
                    cents,
                },
            ],
        })
    }
}

/// The result of [`Ledger::pay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayOutcome {
    /// Paid now: recorded, and the price moved.
    Paid,
    /// This PaymentOrderID was paid before: nothing changed. The record
    /// stored then (boxed: it is large).
    AlreadyPaid(Box<PaymentRecord>),
}

/// The result of [`Ledger::hold`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held now.
    Held,
    /// A debit of this PaymentOrderID is held already: nothing changed. Its
    /// state.
    AlreadyHeld(Vec<u8>),
    /// This PaymentOrderID is paid: nothing changed.
    AlreadyPaid,
}

/// The payments to a vendor's account in a time range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The vendor's account.
    pub vendor: AccountNumber,
    /// How many payments (all of the range, listed or not).
    pub count: u64,
    /// Their total (all of the range), in the account's currency.
    pub total: Money,
    /// The payments, by time then PaymentOrderID: the first
    /// [`MAX_SETTLEMENT_LEN`] of the range.
    pub payments: Vec<(PaymentOrderId, Money, Timestamp)>,
}

/// One line of an account's statement: a posting and its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalLine {
    /// The entry's place in the journal: larger is later.
    pub seq: u64,
    /// The entry's id.
    pub entry: [u8; 16],
    /// The entry's time.
    pub at: Timestamp,
    /// The entry's memo.
    pub memo: String,
    /// The posting's amount, in cents.
    pub cents: i64,
    /// The account's balance after the entry, in cents.
    pub balance_after: i64,
}

/// The broker's ledger and payment register. Every write is one atomic
/// transaction, durable when it returns; refused writes change nothing.
/// PaymentOrderID uniqueness holds across processes sharing the store.
pub trait Ledger: Send + Sync {
    /// Opens `account`, with a balance of zero. Refused if its number exists.
    fn open_account(&self, account: &Account) -> Result<(), Error>;
    /// The account `number`.
    fn account(&self, number: &AccountNumber) -> Result<Option<Account>, Error>;
    /// The accounts of `owner`, by number, at most [`MAX_LIST_LEN`].
    fn accounts_of(&self, owner: &KeyId) -> Result<Vec<Account>, Error>;
    /// The balance of `number`; refused if there is no such account.
    fn balance(&self, number: &AccountNumber) -> Result<Balance, Error>;
    /// Applies `entry` in one transaction. Refused (nothing changes) unless
    /// [`JournalEntry::check`] passes, every account exists, and
    /// [`checked_balances`] passes (one currency, no overflow, "insufficient
    /// funds" if a balance that may not go negative would). The same entry
    /// again is [`PostOutcome::AlreadyPosted`]; another entry with its id is
    /// refused.
    fn post(&self, entry: &JournalEntry) -> Result<PostOutcome, Error>;
    /// Records `payment` and applies its [`PaymentRecord::entry`], and
    /// clears the hold of its id, in one transaction. A PaymentOrderID paid
    /// before is [`PayOutcome::AlreadyPaid`] with the stored record, whatever
    /// `payment` says, and nothing changes. Refused (nothing changes) unless
    /// [`PaymentRecord::check`] and [`PaymentRecord::check_accounts`] pass,
    /// both accounts exist, and the payer has the funds
    /// (`Refused("insufficient funds")`).
    fn pay(&self, payment: &PaymentRecord) -> Result<PayOutcome, Error>;
    /// Keeps `state`, the pending e-purse debit of `id` (between the
    /// broker's S2 and the card's S3; at most [`MAX_HOLD_STATE_LEN`] bytes),
    /// unless `id` is paid or held already. `at` is when (at most `i64::MAX`
    /// seconds).
    fn hold(&self, id: &PaymentOrderId, state: &[u8], at: Timestamp) -> Result<HoldOutcome, Error>;
    /// The state of the pending debit of `id`, if one is held.
    fn held(&self, id: &PaymentOrderId) -> Result<Option<Vec<u8>>, Error>;
    /// The payment of `id`, if it is paid.
    fn payment(&self, id: &PaymentOrderId) -> Result<Option<PaymentRecord>, Error>;
    /// The payments to `vendor` with `from <= paid_at < to` (see
    /// [`Settlement`]: at most [`MAX_SETTLEMENT_LEN`] listed). Refused if
    /// there is no such account, or if the total overflows.
    fn settlement(
        &self,
        vendor: &AccountNumber,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Settlement, Error>;
    /// The sum of the balances of every account in `currency`: zero, always,
    /// in double entry (for audits and tests; reads every account).
    fn total(&self, currency: Currency) -> Result<i128, Error>;
    /// The statement of `number`: its last `limit` lines (at most
    /// [`MAX_LIST_LEN`]), newest first. Refused if there is no such account.
    fn journal(&self, number: &AccountNumber, limit: usize) -> Result<Vec<JournalLine>, Error>;
}

fn unknown(number: &AccountNumber) -> Error {
    Error::Refused(format!("unknown account {number}"))
}

/// The in-memory twin of [`Ledger`].
#[derive(Debug, Default)]
pub struct MemoryLedger(Mutex<Books>);

/// Everything a [`MemoryLedger`] holds.
#[derive(Debug, Default)]
struct Books {
    /// Accounts by number, each with its balance.
    accounts: BTreeMap<AccountNumber, (Account, i64)>,
    /// The journal, in order (seq = index + 1).
    journal: Vec<JournalEntry>,
    /// Journal entries by id: their index in `journal`.
    entry_ids: HashMap<[u8; 16], usize>,
    /// Each account's lines: (index in `journal`, cents, balance after).
    lines: HashMap<AccountNumber, Vec<(usize, i64, i64)>>,
    payments: BTreeMap<PaymentOrderId, PaymentRecord>,
    holds: BTreeMap<PaymentOrderId, (Vec<u8>, Timestamp)>,
}

impl Books {
    /// Applies `entry` (checked already), or changes nothing.
    fn apply(&mut self, entry: &JournalEntry) -> Result<(), Error> {
        let touched = entry
            .postings
            .iter()
            .map(|p| {
                self.accounts
                    .get(&p.account)
                    .cloned()
                    .ok_or_else(|| unknown(&p.account))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let balances = checked_balances(entry, &touched)?;
        let at = self.journal.len();
        for (p, b) in entry.postings.iter().zip(balances) {
            if let Some((_, balance)) = self.accounts.get_mut(&p.account) {
                *balance = b;
            }
            self.lines
                .entry(p.account.clone())
                .or_default()
                .push((at, p.cents, b));
        }
        self.entry_ids.insert(entry.id, at);
        self.journal.push(entry.clone());
        Ok(())
    }
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Books>, Error> {
        self.0
            .lock()
            .map_err(|_| Error::Storage("ledger lock poisoned".into()))
    }
}

impl Ledger for MemoryLedger {
    fn open_account(&self, account: &Account) -> Result<(), Error> {
        let mut b = self.lock()?;
        if b.accounts.contains_key(&account.number) {
            return Err(Error::Refused(format!("account {} exists", account.number)));
        }
        b.accounts
            .insert(account.number.clone(), (account.clone(), 0));
        Ok(())
    }

    fn account(&self, number: &AccountNumber) -> Result<Option<Account>, Error> {
        Ok(self.lock()?.accounts.get(number).map(|(a, _)| a.clone()))
    }

    fn accounts_of(&self, owner: &KeyId) -> Result<Vec<Account>, Error> {
        Ok(self
            .lock()?
            .accounts
            .values()
            .map(|(a, _)| a)
            .filter(|a| &a.owner == owner)
            .take(MAX_LIST_LEN)
            .cloned()
            .collect())
    }

    fn balance(&self, number: &AccountNumber) -> Result<Balance, Error> {
        let b = self.lock()?;
        let (a, cents) = b.accounts.get(number).ok_or_else(|| unknown(number))?;
        Ok(Balance {
            cents: *cents,
            currency: a.currency,
        })
    }

    fn post(&self, entry: &JournalEntry) -> Result<PostOutcome, Error> {
        entry.check()?;
        let mut b = self.lock()?;
        if let Some(&i) = b.entry_ids.get(&entry.id) {
            return if &b.journal[i] == entry {
                Ok(PostOutcome::AlreadyPosted)
            } else {
                Err(Error::Refused(
                    "journal entry id reused with other content".into(),
                ))
            };
        }
        b.apply(entry)?;
        Ok(PostOutcome::Posted)
    }

    fn pay(&self, payment: &PaymentRecord) -> Result<PayOutcome, Error> {
        payment.check()?;
        let entry = payment.entry()?;
        let mut b = self.lock()?;
        if let Some(stored) = b.payments.get(&payment.id) {
            return Ok(PayOutcome::AlreadyPaid(Box::new(stored.clone())));
        }
        let account = |n: &AccountNumber| {
            b.accounts
                .get(n)
                .map(|(a, _)| a.clone())
                .ok_or_else(|| unknown(n))
        };
        payment.check_accounts(&account(&payment.payer)?, &account(&payment.vendor)?)?;
        if b.entry_ids.contains_key(&entry.id) {
            return Err(Error::Refused(
                "journal entry id of the payment is taken".into(),
            ));
        }
        b.apply(&entry)?;
        b.payments.insert(payment.id, payment.clone());
        b.holds.remove(&payment.id);
        Ok(PayOutcome::Paid)
    }

    fn hold(&self, id: &PaymentOrderId, state: &[u8], at: Timestamp) -> Result<HoldOutcome, Error> {
        check_hold(state, at)?;
        let mut b = self.lock()?;
        if b.payments.contains_key(id) {
            return Ok(HoldOutcome::AlreadyPaid);
        }
        if let Some((s, _)) = b.holds.get(id) {
            return Ok(HoldOutcome::AlreadyHeld(s.clone()));
        }
        b.holds.insert(*id, (state.to_vec(), at));
        Ok(HoldOutcome::Held)
    }

    fn held(&self, id: &PaymentOrderId) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.lock()?.holds.get(id).map(|(s, _)| s.clone()))
    }

    fn payment(&self, id: &PaymentOrderId) -> Result<Option<PaymentRecord>, Error> {
        Ok(self.lock()?.payments.get(id).cloned())
    }

    fn settlement(
        &self,
        vendor: &AccountNumber,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Settlement, Error> {
        let b = self.lock()?;
        let (account, _) = b.accounts.get(vendor).ok_or_else(|| unknown(vendor))?;
        let mut found: Vec<(PaymentOrderId, Money, Timestamp)> = b
            .payments
            .values()
            .filter(|p| &p.vendor == vendor && from <= p.paid_at && p.paid_at < to)
            .map(|p| (p.id, p.price, p.paid_at))
            .collect();
        found.sort_by_key(|(id, _, at)| (*at, *id));
        settlement_of(vendor, account.currency, found.into_iter())
    }

    fn total(&self, currency: Currency) -> Result<i128, Error> {
        Ok(self
            .lock()?
            .accounts
            .values()
            .filter(|(a, _)| a.currency == currency)
            .map(|(_, c)| i128::from(*c))
            .sum())
    }

    fn journal(&self, number: &AccountNumber, limit: usize) -> Result<Vec<JournalLine>, Error> {
        let b = self.lock()?;
        if !b.accounts.contains_key(number) {
            return Err(unknown(number));
        }
        let Some(lines) = b.lines.get(number) else {
            return Ok(Vec::new());
        };
        Ok(lines
            .iter()
            .rev()
            .take(limit.min(MAX_LIST_LEN))
            .map(|&(i, cents, balance_after)| {
                let e = &b.journal[i];
                JournalLine {
                    seq: i as u64 + 1,
                    entry: e.id,
                    at: e.at,
                    memo: e.memo.clone(),
                    cents,
                    balance_after,
                }
            })
            .collect())
    }
}

/// The checks of [`Ledger::hold`]'s arguments.
pub fn check_hold(state: &[u8], at: Timestamp) -> Result<(), Error> {
    check_time(at, "hold time beyond i64::MAX seconds")?;
    if state.len() > MAX_HOLD_STATE_LEN {
        return Err(Error::Refused(format!(
            "hold state longer than {MAX_HOLD_STATE_LEN} bytes"
        )));
    }
    Ok(())
}

/// A [`Settlement`] of `vendor` (in `currency`) from its payments in order:
/// counts and totals them all (refused if the total overflows), lists the
/// first [`MAX_SETTLEMENT_LEN`]. Every [`Ledger`] builds its settlement
/// with this.
pub fn settlement_of(
    vendor: &AccountNumber,
    currency: Currency,
    payments: impl Iterator<Item = (PaymentOrderId, Money, Timestamp)>,
) -> Result<Settlement, Error> {
    let mut s = Settlement {
        vendor: vendor.clone(),
        count: 0,
        total: Money::zero(currency),
        payments: Vec::new(),
    };
    for p in payments {
        s.count += 1;
        s.total = s
            .total
            .checked_add(p.1)
            .map_err(|_| Error::Refused("settlement total overflows".into()))?;
        if s.payments.len() < MAX_SETTLEMENT_LEN {
            s.payments.push(p);
        }
    }
    Ok(s)
}

/// The conformance suite of [`Ledger`].
#[cfg(any(test, feature = "testkit"))]
pub mod conformance {
    use super::*;
    use crate::ids::Nid;

    /// Runs every check on fresh ledgers from `make`.
    pub fn ledger_suite<L: Ledger>(make: impl Fn() -> L) {
        accounts_open_once(&make());
        post_moves_money(&make());
        refused_posts_change_nothing(&make());
        credit_and_external_accounts_may_go_negative(&make());
        posts_are_idempotent(&make());
        pay_credits_the_vendor_once(&make());
        refused_payments_change_nothing(&make());
        holds_last_until_paid(&make());
        settlement_of_a_vendor(&make());
        settlement_caps_its_list(&make());
        journal_is_a_statement(&make());
        concurrent_payments_pay_each_order_once(&make());
    }

    /// EUR.
    pub fn eur() -> Currency {
        Currency::new("EUR").expect("EUR")
    }

    /// USD.
    pub fn usd() -> Currency {
        Currency::new("USD").expect("USD")
    }

    /// The account number `s`.
    pub fn num(s: &str) -> AccountNumber {
        AccountNumber::new(s).expect("account number")
    }

    /// The owner of the accounts of [`books`] whose number starts with `s`'s
    /// first letter: one key id per letter.
    fn owner_of(s: &str) -> KeyId {
        KeyId([s.as_bytes()[0]; 32])
    }

    /// An account: `n` of `kind` in `currency`, owned by `owner_of(n)`.
    pub fn account(n: &str, kind: AccountKind, currency: Currency, credit: bool) -> Account {
        Account {
            number: num(n),
            owner: owner_of(n),
            kind,
            currency,
            allow_credit: credit,
        }
    }

    /// An entry `id` of `postings`.
    pub fn entry(id: u8, postings: &[(&str, i64)]) -> JournalEntry {
        JournalEntry {
            id: [id; 16],
            at: Timestamp(1_000 + u64::from(id)),
            memo: format!("entry {id}"),
            postings: postings
                .iter()
                .map(|(a, c)| Posting {
                    account: num(a),
                    cents: *c,
                })
                .collect(),
        }
    }

    /// The PaymentOrderID of vendor key `v` and NID `n`.
    pub fn order(v: u8, n: u64) -> PaymentOrderId {
        let mut nid = [0u8; 16];
        nid[8..].copy_from_slice(&n.to_be_bytes());
        PaymentOrderId {
            vendor: KeyId([v; 32]),
            nid: Nid(nid),
        }
    }

    /// A payment of `cents` EUR for `id` from `payer` to `vendor`, by
    /// account (by purse if `payer` is `FLOAT`), at `at`.
    pub fn payment(
        id: PaymentOrderId,
        payer: &str,
        vendor: &str,
        cents: u64,
        at: u64,
    ) -> PaymentRecord {
        let mode = if payer == "FLOAT" {
            PayMode::Purse {
                card: CardId([id.nid.0[15]; 16]),
            }
        } else {
            PayMode::Account
        };
        PaymentRecord {
            id,
            payer: num(payer),
            vendor: num(vendor),
            price: Money::new(cents, eur()),
            mode,
            customer: KeyId([0xC0; 32]),
            bill: vec![0xB1, id.nid.0[15]],
            receipt: vec![0x5E, id.nid.0[15], 1],
            key: Secret::new([id.nid.0[15]; 32]),
            paid_at: Timestamp(at),
        }
    }

    /// The accounts of the suite, funded from `EXT` (EUR) and `EXTUSD`:
    /// customers `C1` (10,000 cents) and `C2` (500), vendors `V1` and `V2`,
    /// the purse float `FLOAT` (5,000), the broker's `BRK`, a customer
    /// allowed credit `CR`, and in USD the customer `CUSD` (1,000).
    pub fn books<L: Ledger>(l: &L) {
        use AccountKind::*;
        for a in [
            account("EXT", External, eur(), false),
            account("C1", Customer, eur(), false),
            account("C2", Customer, eur(), false),
            account("V1", Vendor, eur(), false),
            account("V2", Vendor, eur(), false),
            account("FLOAT", PurseFloat, eur(), false),
            account("BRK", Broker, eur(), false),
            account("CR", Customer, eur(), true),
            account("EXTUSD", External, usd(), false),
            account("CUSD", Customer, usd(), false),
        ] {
            l.open_account(&a).expect("open");
        }
        for (i, (to, cents)) in [("C1", 10_000), ("C2", 500), ("FLOAT", 5_000)]
            .into_iter()
            .enumerate()
        {
            let e = entry(200 + i as u8, &[("EXT", -cents), (to, cents)]);
            assert_eq!(l.post(&e).expect("deposit"), PostOutcome::Posted);
        }
        let e = entry(210, &[("EXTUSD", -1_000), ("CUSD", 1_000)]);
        assert_eq!(l.post(&e).expect("deposit"), PostOutcome::Posted);
    }

    /// The accounts of [`books`].
    pub const BOOKS: [&str; 10] = [
        "EXT", "C1", "C2", "V1", "V2", "FLOAT", "BRK", "CR", "EXTUSD", "CUSD",
    ];

    /// The balance of `n`, in cents.
    pub fn cents<L: Ledger>(l: &L, n: &str) -> i64 {
        l.balance(&num(n)).expect("balance").cents
    }

    /// Everything the suite can see of the accounts `names`: balances and
    /// statements.
    fn snapshot<L: Ledger>(l: &L, names: &[&str]) -> Vec<(Balance, Vec<JournalLine>)> {
        names
            .iter()
            .map(|n| {
                (
                    l.balance(&num(n)).expect("balance"),
                    l.journal(&num(n), MAX_LIST_LEN).expect("journal"),
                )
            })
            .collect()
    }

    /// The books balance: each currency sums to zero, and no account that
    /// may not go negative is below zero.
    pub fn assert_books_balance<L: Ledger>(l: &L, names: &[&str]) {
        assert_eq!(l.total(eur()).expect("total"), 0, "EUR sums to zero");
        assert_eq!(l.total(usd()).expect("total"), 0, "USD sums to zero");
        for n in names {
            let a = l.account(&num(n)).expect("account").expect("exists");
            if !a.may_go_negative() {
                assert!(cents(l, n) >= 0, "{n} below zero");
            }
        }
    }

    fn is_refused<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
        assert!(matches!(r, Err(Error::Refused(_))), "{what}: {r:?}");
    }

    /// Accounts open once, come back as opened, list by owner; an unknown
    /// account has no balance.
    pub fn accounts_open_once<L: Ledger>(l: &L) {
        let a = account("A1", AccountKind::Customer, eur(), false);
        let b = account("A2", AccountKind::Vendor, usd(), true);
        let c = account("B1", AccountKind::Customer, eur(), false);
        for x in [&b, &a, &c] {
            l.open_account(x).expect("open");
        }
        let mut other = a.clone();
        other.currency = usd();
        is_refused(l.open_account(&other), "a number opens once");
        assert_eq!(l.account(&a.number).expect("account"), Some(a.clone()));
        assert_eq!(l.account(&num("ZZ")).expect("account"), None);
        assert_eq!(
            l.accounts_of(&owner_of("A")).expect("accounts"),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(l.accounts_of(&owner_of("Q")).expect("accounts"), vec![]);
        assert_eq!(
            l.balance(&a.number).expect("balance"),
            Balance {
                cents: 0,
                currency: eur()
            }
        );
        assert_eq!(l.balance(&b.number).expect("balance").currency, usd());
        is_refused(l.balance(&num("ZZ")), "no such account");
        is_refused(l.journal(&num("ZZ"), 10), "no such account");
        assert_eq!(l.journal(&a.number, 10).expect("journal"), vec![]);
    }

    /// A balanced entry moves money; the books still balance.
    pub fn post_moves_money<L: Ledger>(l: &L) {
        books(l);
        assert_eq!(cents(l, "EXT"), -15_500);
        assert_eq!(cents(l, "C1"), 10_000);
        let e = entry(1, &[("C1", -1_200), ("V1", 1_000), ("BRK", 200)]);
        assert_eq!(l.post(&e).expect("post"), PostOutcome::Posted);
        assert_eq!(cents(l, "C1"), 8_800);
        assert_eq!(cents(l, "V1"), 1_000);
        assert_eq!(cents(l, "BRK"), 200);
        // To exactly zero.
        let e = entry(2, &[("C2", -500), ("V2", 500)]);
        assert_eq!(l.post(&e).expect("post"), PostOutcome::Posted);
        assert_eq!(cents(l, "C2"), 0);
        // The most postings.
        let mut big = entry(3, &[("C1", -(MAX_POSTINGS as i64 - 1))]);
        for i in 1..MAX_POSTINGS {
            let n = format!("M{i}");
            l.open_account(&account(&n, AccountKind::Broker, eur(), false))
                .expect("open");
            big.postings.push(Posting {
                account: num(&n),
                cents: 1,
            });
        }
        assert_eq!(l.post(&big).expect("post"), PostOutcome::Posted);
        assert_eq!(cents(l, "M3"), 1);
        assert_books_balance(l, &BOOKS);
    }

    /// Unbalanced, too short or too long, mixed currencies, unknown
    /// accounts, an account twice, a posting of zero, a long memo, an
    /// overdraft: each refused, nothing changed; the id stays free.
    pub fn refused_posts_change_nothing<L: Ledger>(l: &L) {
        books(l);
        let before = snapshot(l, &BOOKS);
        let mut long_memo = entry(9, &[("C1", -1), ("V1", 1)]);
        long_memo.memo = "m".repeat(MAX_MEMO_LEN + 1);
        let mut too_many = entry(9, &[("C1", -(MAX_POSTINGS as i64))]);
        for _ in 0..MAX_POSTINGS {
            too_many.postings.push(Posting {
                account: num("V1"),
                cents: 1,
            });
        }
        let cases = [
            ("unbalanced", entry(9, &[("C1", -100), ("V1", 99)])),
            ("one posting", entry(9, &[("C1", 0)])),
            ("no posting", entry(9, &[])),
            ("too many postings", too_many),
            ("mixed currencies", entry(9, &[("CUSD", -100), ("V1", 100)])),
            ("unknown account", entry(9, &[("C1", -100), ("NOPE", 100)])),
            ("unknown debtor", entry(9, &[("NOPE", -100), ("V1", 100)])),
            (
                "account twice",
                entry(9, &[("C1", -100), ("V1", 50), ("V1", 50)]),
            ),
            (
                "posting of zero",
                entry(9, &[("C1", -100), ("V1", 100), ("V2", 0)]),
            ),
            ("long memo", long_memo),
            ("overdraft", entry(9, &[("C2", -501), ("V1", 501)])),
            (
                "overdraft in the last posting",
                entry(9, &[("V1", 1), ("C1", 600), ("C2", -601)]),
            ),
            ("overflow", entry(9, &[("CR", -i64::MAX), ("C1", i64::MAX)])),
            (
                "sum beyond i64",
                entry(
                    9,
                    &[
                        ("C1", i64::MAX),
                        ("V1", i64::MAX),
                        ("EXT", i64::MIN),
                        ("V2", i64::MIN),
                        ("BRK", 2),
                    ],
                ),
            ),
        ];
        for (what, e) in &cases {
            is_refused(l.post(e), what);
            assert_eq!(snapshot(l, &BOOKS), before, "{what} changed nothing");
        }
        let e = entry(9, &[("C2", -500), ("V1", 500)]);
        match l.post(&e) {
            Err(Error::Refused(m)) => panic!("{m}"),
            r => assert_eq!(r, Ok(PostOutcome::Posted)),
        }
        let e = entry(10, &[("C2", -1), ("V1", 1)]);
        assert_eq!(
            l.post(&e),
            Err(Error::Refused("insufficient funds".into())),
            "the overdraft's refusal"
        );
        assert_books_balance(l, &BOOKS);
    }

    /// An account allowed credit, and an external one, go below zero; both
    /// come back.
    pub fn credit_and_external_accounts_may_go_negative<L: Ledger>(l: &L) {
        books(l);
        let e = entry(1, &[("CR", -2_500), ("V1", 2_500)]);
        assert_eq!(l.post(&e).expect("credit"), PostOutcome::Posted);
        assert_eq!(cents(l, "CR"), -2_500);
        assert_eq!(
            l.balance(&num("CR")).expect("balance").as_money(),
            None,
            "below zero is no Money"
        );
        let e = entry(2, &[("EXT", -1_000_000), ("CR", 1_000_000)]);
        assert_eq!(l.post(&e).expect("deposit"), PostOutcome::Posted);
        assert_eq!(cents(l, "CR"), 997_500);
        assert!(l
            .balance(&num("CR"))
            .expect("balance")
            .covers(&Money::new(997_500, eur())));
        assert_eq!(cents(l, "EXT"), -1_015_500);
        // Up to i64::MAX, not beyond (the USD books sum to zero, so the
        // external account is then at -i64::MAX).
        let e = entry(
            3,
            &[("EXTUSD", i64::MIN + 1_001), ("CUSD", i64::MAX - 1_000)],
        );
        assert_eq!(l.post(&e).expect("to the limit"), PostOutcome::Posted);
        assert_eq!(cents(l, "EXTUSD"), -i64::MAX);
        assert_eq!(cents(l, "CUSD"), i64::MAX);
        let before = snapshot(l, &BOOKS);
        is_refused(
            l.post(&entry(4, &[("EXTUSD", -1), ("CUSD", 1)])),
            "beyond i64",
        );
        assert_eq!(snapshot(l, &BOOKS), before);
        assert_books_balance(l, &BOOKS);
    }

    /// The same entry again is AlreadyPosted and changes nothing; another
    /// entry with its id is refused, even a valid one.
    pub fn posts_are_idempotent<L: Ledger>(l: &L) {
        books(l);
        let e = entry(1, &[("C1", -300), ("V1", 300)]);
        assert_eq!(l.post(&e).expect("post"), PostOutcome::Posted);
        let after = snapshot(l, &BOOKS);
        assert_eq!(l.post(&e).expect("again"), PostOutcome::AlreadyPosted);
        assert_eq!(snapshot(l, &BOOKS), after);
        let mut other = e.clone();
        other.postings[1].account = num("V2");
        is_refused(l.post(&other), "other accounts");
        let mut other = e.clone();
        other.memo.push('!');
        is_refused(l.post(&other), "other memo");
        let mut other = e.clone();
        other.at = Timestamp(7);
        is_refused(l.post(&other), "other time");
        is_refused(l.post(&entry(1, &[("C1", -1), ("V1", 1)])), "other amounts");
        assert_eq!(snapshot(l, &BOOKS), after);
        // A deposit retried after its funds were spent is still AlreadyPosted.
        let spend = entry(2, &[("C1", -9_700), ("V2", 9_700)]);
        assert_eq!(l.post(&spend).expect("spend"), PostOutcome::Posted);
        assert_eq!(l.post(&e).expect("again"), PostOutcome::AlreadyPosted);
        assert_eq!(l.post(&spend).expect("again"), PostOutcome::AlreadyPosted);
        assert_books_balance(l, &BOOKS);
    }

    /// A payment moves its price once, is registered, and a second pay of
    /// its PaymentOrderID returns the stored record and changes nothing.
    pub fn pay_credits_the_vendor_once<L: Ledger>(l: &L) {
        books(l);
        let p = payment(order(1, 1), "C1", "V1", 1_234, 5_000);
        assert_eq!(l.payment(&p.id).expect("payment"), None);
        assert_eq!(l.pay(&p).expect("pay"), PayOutcome::Paid);
        assert_eq!(cents(l, "C1"), 10_000 - 1_234);
        assert_eq!(cents(l, "V1"), 1_234);
        assert_eq!(l.payment(&p.id).expect("payment"), Some(p.clone()));
        let after = snapshot(l, &BOOKS);
        assert_eq!(
            l.pay(&p).expect("again"),
            PayOutcome::AlreadyPaid(Box::new(p.clone()))
        );
        // Another record for the same id (a replayed bill, another price,
        // another payer): the first stands.
        let mut replay = payment(order(1, 1), "C2", "V2", 99, 6_000);
        replay.receipt = vec![9; 9];
        assert_eq!(
            l.pay(&replay).expect("replay"),
            PayOutcome::AlreadyPaid(Box::new(p.clone()))
        );
        assert_eq!(snapshot(l, &BOOKS), after, "credited once");
        // The journal shows it.
        let line = &l.journal(&num("V1"), 1).expect("journal")[0];
        assert_eq!(line.entry, p.entry().expect("entry").id);
        assert_eq!(line.memo, format!("payment {}", p.id.to_hex()));
        assert_eq!((line.cents, line.balance_after), (1_234, 1_234));
        assert_eq!(line.at, Timestamp(5_000));
        // Its journal entry posted again is AlreadyPosted.
        assert_eq!(
            l.post(&p.entry().expect("entry")).expect("post"),
            PostOutcome::AlreadyPosted
        );
        // By purse, from the float; another vendor's id with the same NID
        // is another order.
        let q = payment(order(2, 1), "FLOAT", "V1", 5_000, 5_001);
        assert_eq!(l.pay(&q).expect("pay"), PayOutcome::Paid);
        assert_eq!(cents(l, "FLOAT"), 0);
        assert_eq!(cents(l, "V1"), 6_234);
        assert_eq!(l.payment(&q.id).expect("payment"), Some(q));
        assert_books_balance(l, &BOOKS);
    }

    /// Insufficient funds, unknown accounts, accounts of the wrong kind or
    /// currency, a price of zero, a payer that is the vendor, oversized
    /// bills: refused, nothing changed, nothing registered.
    pub fn refused_payments_change_nothing<L: Ledger>(l: &L) {
        books(l);
        l.open_account(&account("VUSD", AccountKind::Vendor, usd(), false))
            .expect("open");
        let before = snapshot(l, &BOOKS);
        let id = order(3, 3);
        let p = |payer: &str, vendor: &str, cents: u64| payment(id, payer, vendor, cents, 9);
        let mut by_purse_from_customer = p("C1", "V1", 10);
        by_purse_from_customer.mode = PayMode::Purse {
            card: CardId([1; 16]),
        };
        let mut big_bill = p("C1", "V1", 10);
        big_bill.bill = vec![0; MAX_BILL_LEN + 1];
        let mut big_receipt = p("C1", "V1", 10);
        big_receipt.receipt = vec![0; MAX_RECEIPT_LEN + 1];
        let mut in_usd = p("CUSD", "VUSD", 10);
        in_usd.price.currency = eur();
        let mut price_beyond_i64 = p("CR", "V1", 10);
        price_beyond_i64.price.cents = i64::MAX as u64 + 1;
        let cases = [
            ("insufficient funds", p("C2", "V1", 501)),
            ("float short", p("FLOAT", "V1", 5_001)),
            ("unknown payer", p("NOPE", "V1", 10)),
            ("unknown vendor", p("C1", "NOPE", 10)),
            ("vendor not a vendor", p("C1", "BRK", 10)),
            ("payer a vendor", p("V2", "V1", 10)),
            ("payer external", p("EXT", "V1", 10)),
            ("purse mode from a customer", by_purse_from_customer),
            ("account mode from the float", {
                let mut x = p("FLOAT", "V1", 10);
                x.mode = PayMode::Account;
                x
            }),
            ("vendor in another currency", p("C1", "VUSD", 10)),
            ("price in another currency", in_usd),
            ("price of zero", p("C1", "V1", 0)),
            ("price beyond i64", price_beyond_i64),
            ("payer is the vendor", p("V1", "V1", 10)),
            ("bill too long", big_bill),
            ("receipt too long", big_receipt),
        ];
        for (what, x) in &cases {
            is_refused(l.pay(x), what);
            assert_eq!(snapshot(l, &BOOKS), before, "{what} changed nothing");
            assert_eq!(l.payment(&id).expect("payment"), None, "{what}");
        }
        assert_eq!(
            l.pay(&p("C2", "V1", 501)),
            Err(Error::Refused("insufficient funds".into()))
        );
        // The id is still free: paid now, exactly.
        assert_eq!(l.pay(&p("C2", "V1", 500)).expect("pay"), PayOutcome::Paid);
        assert_eq!(cents(l, "C2"), 0);
        // A customer allowed credit may pay beyond its balance.
        assert_eq!(
            l.pay(&payment(order(3, 4), "CR", "V1", 700, 9))
                .expect("pay"),
            PayOutcome::Paid
        );
        assert_eq!(cents(l, "CR"), -700);
        assert_books_balance(l, &BOOKS);
    }

    /// A pending debit is held once, read back, and cleared by its payment;
    /// a paid id is not held; a refused payment keeps its hold.
    pub fn holds_last_until_paid<L: Ledger>(l: &L) {
        books(l);
        let (a, b) = (order(4, 1), order(4, 2));
        assert_eq!(l.held(&a).expect("held"), None);
        assert_eq!(
            l.hold(&a, b"s2 state", Timestamp(10)).expect("hold"),
            HoldOutcome::Held
        );
        assert_eq!(
            l.hold(&a, b"other", Timestamp(11)).expect("hold"),
            HoldOutcome::AlreadyHeld(b"s2 state".to_vec())
        );
        assert_eq!(l.held(&a).expect("held"), Some(b"s2 state".to_vec()));
        assert_eq!(
            l.hold(&b, b"", Timestamp(10)).expect("hold"),
            HoldOutcome::Held
        );
        assert_eq!(l.held(&b).expect("held"), Some(Vec::new()));
        is_refused(
            l.hold(
                &order(4, 3),
                &vec![0; MAX_HOLD_STATE_LEN + 1],
                Timestamp(10),
            ),
            "state too long",
        );
        assert_eq!(l.held(&order(4, 3)).expect("held"), None);
        // A refused payment keeps the hold.
        is_refused(l.pay(&payment(a, "FLOAT", "V1", 5_001, 20)), "float short");
        assert_eq!(l.held(&a).expect("held"), Some(b"s2 state".to_vec()));
        // The payment clears it, in its transaction.
        assert_eq!(
            l.pay(&payment(a, "FLOAT", "V1", 4_000, 20)).expect("pay"),
            PayOutcome::Paid
        );
        assert_eq!(l.held(&a).expect("held"), None);
        assert_eq!(
            l.hold(&a, b"late", Timestamp(30)).expect("hold"),
            HoldOutcome::AlreadyPaid
        );
        assert_eq!(l.held(&a).expect("held"), None);
        assert_eq!(l.held(&b).expect("held"), Some(Vec::new()), "b untouched");
        // A payment without a hold needs none.
        assert_eq!(
            l.pay(&payment(order(4, 9), "C1", "V1", 1, 20))
                .expect("pay"),
            PayOutcome::Paid
        );
        assert_books_balance(l, &BOOKS);
    }

    /// A settlement lists a vendor's payments of the range `[from, to)` by
    /// time then id, counts and totals them.
    pub fn settlement_of_a_vendor<L: Ledger>(l: &L) {
        books(l);
        let pays = [
            (order(5, 3), "V1", 100, 50),
            (order(5, 1), "V1", 200, 60),
            (order(5, 2), "V1", 300, 60),
            (order(5, 4), "V2", 400, 60),
            (order(5, 5), "V1", 500, 70),
            (order(5, 6), "V1", 600, 40),
        ];
        for (id, v, c, at) in pays {
            assert_eq!(
                l.pay(&payment(id, "C1", v, c, at)).expect("pay"),
                PayOutcome::Paid
            );
        }
        let m = |c| Money::new(c, eur());
        let s = l
            .settlement(&num("V1"), Timestamp(50), Timestamp(70))
            .expect("settlement");
        assert_eq!(
            s,
            Settlement {
                vendor: num("V1"),
                count: 3,
                total: m(600),
                payments: vec![
                    (order(5, 3), m(100), Timestamp(50)),
                    (order(5, 1), m(200), Timestamp(60)),
                    (order(5, 2), m(300), Timestamp(60)),
                ],
            }
        );
        let all = l
            .settlement(&num("V1"), Timestamp(0), Timestamp(u64::MAX))
            .expect("settlement");
        assert_eq!((all.count, all.total), (5, m(1_700)));
        assert_eq!(all.payments[0].0, order(5, 6));
        let none = l
            .settlement(&num("V1"), Timestamp(70), Timestamp(70))
            .expect("settlement");
        assert_eq!((none.count, none.total, none.payments), (0, m(0), vec![]));
        let v2 = l
            .settlement(&num("V2"), Timestamp(0), Timestamp(100))
            .expect("settlement");
        assert_eq!(v2.payments, vec![(order(5, 4), m(400), Timestamp(60))]);
        is_refused(
            l.settlement(&num("NOPE"), Timestamp(0), Timestamp(100)),
            "no such account",
        );
        // At the edges of time.
        assert_eq!(
            l.pay(&payment(order(5, 7), "C1", "V2", 1, i64::MAX as u64))
                .expect("pay"),
            PayOutcome::Paid
        );
        assert!(matches!(
            l.pay(&payment(order(5, 8), "C1", "V2", 1, i64::MAX as u64 + 1)),
            Err(Error::ApiMisuse(_))
        ));
        let count = |from: u64, to: u64| {
            l.settlement(&num("V2"), Timestamp(from), Timestamp(to))
                .expect("settlement")
                .count
        };
        assert_eq!(count(0, u64::MAX), 2);
        assert_eq!(count(i64::MAX as u64, u64::MAX), 1);
        assert_eq!(count(i64::MAX as u64 + 1, u64::MAX), 0);
        assert_eq!(count(0, i64::MAX as u64), 1);
        assert_eq!(count(0, i64::MAX as u64 + 1), 2);
        assert_eq!(count(0, 0), 0);
        assert_books_balance(l, &BOOKS);
    }

    /// A settlement lists at most [`MAX_SETTLEMENT_LEN`] payments, the
    /// earliest; its count and total cover them all.
    pub fn settlement_caps_its_list<L: Ledger>(l: &L) {
        books(l);
        let n = MAX_SETTLEMENT_LEN as u64 + 3;
        // From 8 threads: a store batching concurrent writes takes them in
        // few transactions.
        std::thread::scope(|s| {
            for t in 0..8 {
                s.spawn(move || {
                    for i in (t..n).step_by(8) {
                        let p = payment(order(6, i), "C1", "V2", 2, 1_000 + (n - i));
                        assert_eq!(l.pay(&p).expect("pay"), PayOutcome::Paid);
                    }
                });
            }
        });
        let s = l
            .settlement(&num("V2"), Timestamp(0), Timestamp(u64::MAX))
            .expect("settlement");
        assert_eq!(s.count, n);
        assert_eq!(s.total, Money::new(2 * n, eur()));
        assert_eq!(s.payments.len(), MAX_SETTLEMENT_LEN);
        assert_eq!(s.payments[0].0, order(6, n - 1), "earliest first");
        assert_eq!(s.payments[MAX_SETTLEMENT_LEN - 1].0, order(6, 3));
        assert_eq!(cents(l, "V2"), 2 * n as i64);
        assert_books_balance(l, &BOOKS);
    }

    /// An account's journal: its lines newest first, each with the balance
    /// after it, at most `limit`.
    pub fn journal_is_a_statement<L: Ledger>(l: &L) {
        books(l);
        let e1 = entry(1, &[("C1", -1_000), ("V1", 1_000)]);
        let e2 = entry(2, &[("V1", -250), ("C2", 250)]);
        let e3 = entry(3, &[("V1", -5), ("BRK", 5)]);
        for e in [&e1, &e2, &e3] {
            assert_eq!(l.post(e).expect("post"), PostOutcome::Posted);
        }
        let lines = l.journal(&num("V1"), 10).expect("journal");
        let got: Vec<_> = lines
            .iter()
            .map(|x| (x.entry, x.at, x.memo.as_str(), x.cents, x.balance_after))
            .collect();
        assert_eq!(
            got,
            vec![
                (e3.id, e3.at, "entry 3", -5, 745),
                (e2.id, e2.at, "entry 2", -250, 750),
                (e1.id, e1.at, "entry 1", 1_000, 1_000),
            ]
        );
        assert!(
            lines.windows(2).all(|w| w[0].seq > w[1].seq),
            "newest first"
        );
        assert_eq!(l.journal(&num("V1"), 2).expect("journal"), lines[..2]);
        assert_eq!(l.journal(&num("V1"), 0).expect("journal"), vec![]);
        let c1 = l.journal(&num("C1"), 10).expect("journal");
        assert_eq!(c1.len(), 2, "the deposit and e1");
        assert_eq!((c1[0].cents, c1[0].balance_after), (-1_000, 9_000));
        assert_eq!((c1[1].cents, c1[1].balance_after), (10_000, 10_000));
        assert_eq!(c1[0].seq, lines[2].seq, "one entry, one seq");
        // Refused posts leave no line.
        is_refused(l.post(&entry(4, &[("V1", -746), ("C2", 746)])), "overdraft");
        assert_eq!(l.journal(&num("V1"), 10).expect("journal"), lines);
        // The limit is capped. (From 8 threads: a store batching concurrent
        // writes takes them in few transactions.)
        let n = MAX_LIST_LEN as u64 + 2;
        std::thread::scope(|s| {
            for t in 0..8 {
                s.spawn(move || {
                    for i in (t..n).step_by(8) {
                        let mut e = entry(5, &[("C1", -1), ("BRK", 1)]);
                        e.id[..8].copy_from_slice(&i.to_be_bytes());
                        assert_eq!(l.post(&e).expect("post"), PostOutcome::Posted);
                    }
                });
            }
        });
        assert_eq!(
            l.journal(&num("BRK"), usize::MAX).expect("journal").len(),
            MAX_LIST_LEN
        );
        assert_books_balance(l, &BOOKS);
    }

    /// A small deterministic generator (xorshift64*) for the concurrent
    /// case: the suite runs without a random-number crate.
    struct Xorshift(u64);

    impl Xorshift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    /// 16 threads pay random orders, the same PaymentOrderIDs from several
    /// threads, from shared accounts, some short of funds: each id is paid
    /// at most once (exactly once if any thread got AlreadyPaid), the stored
    /// record is the one whose pay won, no balance is below zero, and the
    /// books balance to the cent.
    pub fn concurrent_payments_pay_each_order_once<L: Ledger>(l: &L) {
        books(l);
        const ORDERS: u64 = 64;
        const THREADS: u64 = 16;
        const PAYS: u64 = 40;
        let payers = ["C1", "C2", "FLOAT", "CR"];
        let vendors = ["V1", "V2"];
        let record = |n: u64, thread: u64| {
            let mut p = payment(
                order(7, n),
                payers[(n % 4) as usize],
                vendors[(n % 2) as usize],
                90 + 7 * n,
                2_000 + n,
            );
            p.receipt = vec![thread as u8; 4];
            p
        };
        let outcomes: Vec<(u64, u64, Result<PayOutcome, Error>)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    s.spawn(move || {
                        let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                        (0..PAYS)
                            .map(|_| {
                                let n = rng.below(ORDERS);
                                (n, t, l.pay(&record(n, t)))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut paid = [0u64; ORDERS as usize];
        let mut winner = [None::<u64>; ORDERS as usize];
        for (n, t, r) in &outcomes {
            match r {
                Ok(PayOutcome::Paid) => {
                    paid[*n as usize] += 1;
                    winner[*n as usize] = Some(*t);
                }
                Ok(PayOutcome::AlreadyPaid(_)) => {}
                Err(Error::Refused(m)) => assert_eq!(m, "insufficient funds"),
                Err(e) => panic!("pay of order {n}: {e:?}"),
            }
        }
        let (mut debits, mut credits) = (BTreeMap::new(), BTreeMap::new());
        for n in 0..ORDERS {
            let i = n as usize;
            assert!(paid[i] <= 1, "order {n} paid {} times", paid[i]);
            let stored = l.payment(&order(7, n)).expect("payment");
            match winner[i] {
                Some(t) => {
                    let want = record(n, t);
                    assert_eq!(stored.as_ref(), Some(&want), "order {n}");
                    *debits.entry(want.payer.clone()).or_insert(0i64) += 90 + 7 * n as i64;
                    *credits.entry(want.vendor.clone()).or_insert(0i64) += 90 + 7 * n as i64;
                }
                None => assert_eq!(stored, None, "order {n} never paid"),
            }
            for (m, _, r) in &outcomes {
                if *m == n {
                    if let Ok(PayOutcome::AlreadyPaid(rec)) = r {
                        assert_eq!(Some(rec.as_ref()), stored.as_ref(), "order {n}");
                    }
                }
            }
        }
        assert!(paid.contains(&1), "some orders paid");
        for (name, start) in [("C1", 10_000), ("C2", 500), ("FLOAT", 5_000), ("CR", 0)] {
            let d = debits.get(&num(name)).copied().unwrap_or(0);
            assert_eq!(cents(l, name), start - d, "{name}");
        }
        for name in vendors {
            let c = credits.get(&num(name)).copied().unwrap_or(0);
            assert_eq!(cents(l, name), c, "{name}");
        }
        assert_books_balance(l, &BOOKS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_ledger_passes_the_conformance_suite() {
        conformance::ledger_suite(MemoryLedger::new);
    }

    #[test]
    fn account_kinds_round_trip_by_name() {
        for k in AccountKind::ALL {
            assert_eq!(AccountKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(AccountKind::from_name("Customer"), None);
    }

    #[test]
    fn payment_entries_have_derived_ids() {
        use conformance::{order, payment};
        let a = payment(order(1, 1), "C1", "V1", 10, 5);
        let mut b = a.clone();
        b.price.cents = 20;
        assert_eq!(a.entry().map(|e| e.id), b.entry().map(|e| e.id));
        let c = payment(order(1, 2), "C1", "V1", 10, 5);
        assert_ne!(a.entry().map(|e| e.id), c.entry().map(|e| e.id));
        assert!(a.entry().is_ok_and(|e| e.check().is_ok()));
    }

    #[test]
    fn debug_of_a_payment_hides_the_key() {
        let p = conformance::payment(conformance::order(1, 1), "C1", "V1", 10, 5);
        let shown = format!("{p:?}");
        assert!(!shown.contains(&format!("{:?}", p.key.expose())));
    }
}
