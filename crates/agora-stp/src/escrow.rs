//! Isolation (paper section 2: goods "not used or referred to unless their
//! corresponding transaction has been properly committed"): an exchange
//! authority, the escrow, holds an item for a transaction and releases it
//! to the named recipient only against the CA's committed outcome, or gives
//! it back to its depositor against an aborted one. The SEMPER exchange
//! layer builds its fair exchange on it.
//!
//! The escrow trusts no one's word on the outcome: a claim carries the CA's
//! Outcome, which the escrow checks against the commit authority it pins
//! (tree head signature and inclusion proof). A deposit is settled once, by
//! a conditional write ([`EscrowStore::settle`]); a second claim gets the
//! same settlement again. The item is opaque to the escrow (a depositor who
//! wants it confidential seals it to the recipient first); the release is
//! sealed to a key the claim names, so a replayed claim yields nothing
//! readable.

use crate::ids::Tid;
use crate::msg::{Claim, Deposit, DepositReceipt, Release};
use crate::outcome::verify_outcome;
use agora_core::crypto::{sha256, Rng, SigningKey, VerifyingKey, X25519Secret};
use agora_core::wire::{cose, envelope, tags};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::IdentityTrust;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How far a claim's time may be from the escrow's (seconds).
pub const CLAIM_WINDOW_SECS: u64 = 300;
/// Most deposits one transaction may hold.
pub const MAX_DEPOSITS_PER_TRANSACTION: usize = 256;

/// An item held: what the deposit said and the receipt given for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The deposit's id: SHA-256 of the signed Deposit.
    pub id: [u8; 32],
    /// The transaction.
    pub tid: Tid,
    /// Who deposited it.
    pub depositor: KeyId,
    /// Who gets it on commit.
    pub recipient: KeyId,
    /// The item.
    pub item: Vec<u8>,
    /// The escrow's signed receipt.
    pub receipt: Vec<u8>,
    /// Its settlement, once settled.
    pub settled: Option<Settlement>,
}

/// How a deposit was settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Who got the item.
    pub to: KeyId,
    /// Whether it went back to its depositor (the transaction aborted).
    pub returned: bool,
    /// When.
    pub at: Timestamp,
}

/// What [`EscrowStore::deposit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DepositOutcome {
    /// Held now.
    Held,
    /// Held before (the same deposit again): the first stands.
    AlreadyHeld(Box<Held>),
    /// The transaction holds [`MAX_DEPOSITS_PER_TRANSACTION`] already.
    Full,
}

/// What [`EscrowStore::settle`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Settled now.
    Settled,
    /// Settled before: this settlement stands.
    AlreadySettled(Settlement),
    /// No such deposit.
    Unknown,
}

/// What the escrow remembers (the in-memory twin [`MemoryEscrowStore`],
/// SQLite in agora-store, the item sealed at rest there).
pub trait EscrowStore: Send + Sync {
    /// Holds `held` (unsettled) unless a deposit with its id is held.
    fn deposit(&self, held: &Held) -> Result<DepositOutcome>;
    /// The deposit `id`.
    fn get(&self, id: &[u8; 32]) -> Result<Option<Held>>;
    /// Settles deposit `id` as `s` unless it is settled: exactly once,
    /// across processes sharing the store.
    fn settle(&self, id: &[u8; 32], s: &Settlement) -> Result<SettleOutcome>;
    /// The deposits of `tid`, by id (at most
    /// [`MAX_DEPOSITS_PER_TRANSACTION`]).
    fn of_transaction(&self, tid: &Tid) -> Result<Vec<Held>>;
}

/// The in-memory twin of [`EscrowStore`].
#[derive(Debug, Default)]
pub struct MemoryEscrowStore(Mutex<BTreeMap<[u8; 32], Held>>);

impl MemoryEscrowStore {
    /// Nothing held.
    pub fn new() -> MemoryEscrowStore {
        MemoryEscrowStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<[u8; 32], Held>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EscrowStore for MemoryEscrowStore {
    fn deposit(&self, held: &Held) -> Result<DepositOutcome> {
        let mut m = self.lock();
        if let Some(h) = m.get(&held.id) {
            return Ok(DepositOutcome::AlreadyHeld(Box::new(h.clone())));
        }
        if m.values().filter(|h| h.tid == held.tid).count() >= MAX_DEPOSITS_PER_TRANSACTION {
            return Ok(DepositOutcome::Full);
        }
        let mut h = held.clone();
        h.settled = None;
        m.insert(h.id, h);
        Ok(DepositOutcome::Held)
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<Held>> {
        Ok(self.lock().get(id).cloned())
    }

    fn settle(&self, id: &[u8; 32], s: &Settlement) -> Result<SettleOutcome> {
        let mut m = self.lock();
        let Some(h) = m.get_mut(id) else {
            return Ok(SettleOutcome::Unknown);
        };
        if let Some(prev) = &h.settled {
            return Ok(SettleOutcome::AlreadySettled(prev.clone()));
        }
        h.settled = Some(s.clone());
        Ok(SettleOutcome::Settled)
    }

    fn of_transaction(&self, tid: &Tid) -> Result<Vec<Held>> {
        Ok(self
            .lock()
            .values()
            .filter(|h| h.tid == *tid)
            .take(MAX_DEPOSITS_PER_TRANSACTION)
            .cloned()
            .collect())
    }
}

/// The escrow role.
#[derive(Debug)]
pub struct Escrow {
    key: SigningKey,
    trust: IdentityTrust,
    ca: VerifyingKey,
}

impl Escrow {
    /// An escrow signing with `key`, judging certificates under `trust`,
    /// acting on the outcomes of the commit authority `ca`.
    pub fn new(key: SigningKey, trust: IdentityTrust, ca: VerifyingKey) -> Escrow {
        Escrow { key, trust, ca }
    }

    /// Its verification key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A signed Deposit: checks the depositor's certificate and signature,
    /// that the deposit names the pinned CA and a recipient other than the
    /// depositor; holds the item and answers the signed receipt (the same
    /// receipt for the same deposit again).
    pub fn on_deposit(
        &self,
        now: Timestamp,
        bytes: &[u8],
        store: &dyn EscrowStore,
    ) -> Result<Vec<u8>> {
        let (d, depositor) = cose::verify_self_certified::<Deposit>(bytes, |d| {
            Ok(*self
                .trust
                .identity_of_any_role(&d.depositor_cert, now)?
                .key())
        })?;
        if d.ca != self.ca.key_id() {
            return Err(Error::Refused(
                "the deposit names a commit authority this escrow does not act on".into(),
            ));
        }
        if d.recipient == depositor {
            return Err(Error::Refused("a deposit for its own depositor".into()));
        }
        let id = sha256(bytes);
        let receipt = cose::sign(
            &self.key,
            &DepositReceipt {
                deposit: id,
                tid: d.tid,
                depositor,
                recipient: d.recipient,
                item_hash: sha256(&d.item),
                at: now,
            },
        );
        let held = Held {
            id,
            tid: d.tid,
            depositor,
            recipient: d.recipient,
            item: d.item,
            receipt,
            settled: None,
        };
        match store.deposit(&held)? {
            DepositOutcome::Held => Ok(held.receipt),
            DepositOutcome::AlreadyHeld(h) => Ok(h.receipt),
            DepositOutcome::Full => Err(Error::Refused(format!(
                "a transaction holds at most {MAX_DEPOSITS_PER_TRANSACTION} deposits"
            ))),
        }
    }

    /// A signed Claim: checks the claimant's certificate and signature, its
    /// time, and the Outcome it carries (the pinned CA's, for the deposit's
    /// transaction); releases the item to the recipient if the transaction
    /// committed with the recipient in one of its subtransactions, and
    /// returns it to the depositor otherwise, to no one else. Answers the signed Release sealed to the claim's key.
    pub fn on_claim(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        bytes: &[u8],
        store: &dyn EscrowStore,
    ) -> Result<Vec<u8>> {
        let (c, claimant) = cose::verify_self_certified::<Claim>(bytes, |c| {
            Ok(*self
                .trust
                .identity_of_any_role(&c.claimant_cert, now)?
                .key())
        })?;
        if c.at.distance_secs(now) > CLAIM_WINDOW_SECS {
            return Err(Error::Replayed);
        }
        let held = store
            .get(&c.deposit)?
            .ok_or_else(|| Error::Refused("no such deposit".into()))?;
        let v = verify_outcome(&c.outcome, &self.ca)?;
        if v.leaf.tid != held.tid {
            return Err(Error::PeerMisbehaved(
                "the outcome is of another transaction than the deposit's",
            ));
        }
        // Released only if the transaction committed with the recipient in
        // it: a transaction may commit without a subtransaction whose votes
        // never reached the CA, and then the deposit was not part of what
        // committed.
        let in_it = |uid: &KeyId| v.leaf.subs.iter().any(|(p, _)| p.contains(uid));
        let (to, returned) = if v.leaf.committed() && in_it(&held.recipient) {
            (held.recipient, false)
        } else {
            (held.depositor, true)
        };
        if claimant != to {
            return Err(Error::NotAuthorised(if returned {
                "the transaction aborted: the item goes back to its depositor".into()
            } else {
                "the transaction committed: the item goes to its recipient".into()
            }));
        }
        let s = Settlement {
            to,
            returned,
            at: now,
        };
        let s = match store.settle(&held.id, &s)? {
            SettleOutcome::Settled => s,
            SettleOutcome::AlreadySettled(prev) => prev,
            SettleOutcome::Unknown => return Err(Error::Refused("no such deposit".into())),
        };
        if s.to != claimant {
            // Two outcomes for one transaction: the CA equivocated, and the
            // first settlement stands.
            return Err(Error::NotAuthorised(
                "the deposit was settled to another party".into(),
            ));
        }
        let release = Release {
            deposit: held.id,
            tid: held.tid,
            to: s.to,
            returned: s.returned,
            item: held.item,
        };
        envelope::seal(rng, &self.key, &c.reply_to, &release)
    }
}

/// Opens a Release sealed to `reply` and signed by the escrow `escrow`.
pub fn open_release(bytes: &[u8], reply: &X25519Secret, escrow: &VerifyingKey) -> Result<Release> {
    let tag = envelope::peek_tag(bytes)?;
    if tag != tags::STP_ESCROW_RELEASE {
        return Err(Error::PeerMisbehaved("expected a Release"));
    }
    Ok(envelope::open::<Release>(bytes, reply, |kid| {
        (*kid == escrow.key_id()).then_some(*escrow)
    })?
    .message)
}

/// The conformance suite of [`EscrowStore`].
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a test suite: a panic is its failure report
pub mod conformance {
    use super::*;

    fn held(id: u8, tid: u8) -> Held {
        Held {
            id: [id; 32],
            tid: Tid([tid; 16]),
            depositor: KeyId([1; 32]),
            recipient: KeyId([2; 32]),
            item: vec![id; 100],
            receipt: vec![9; 10],
            settled: None,
        }
    }

    /// Runs every check against `store`, which must be empty.
    pub fn escrow_store_suite(store: &dyn EscrowStore) {
        assert_eq!(store.deposit(&held(1, 1)).unwrap(), DepositOutcome::Held);
        assert_eq!(store.get(&[1; 32]).unwrap(), Some(held(1, 1)));
        let mut other = held(1, 1);
        other.item = b"another item under the same id".to_vec();
        assert_eq!(
            store.deposit(&other).unwrap(),
            DepositOutcome::AlreadyHeld(Box::new(held(1, 1)))
        );
        assert_eq!(store.get(&[2; 32]).unwrap(), None);
        store.deposit(&held(3, 1)).unwrap();
        store.deposit(&held(4, 2)).unwrap();
        let ids: Vec<[u8; 32]> = store
            .of_transaction(&Tid([1; 16]))
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, vec![[1; 32], [3; 32]]);
        // Settled exactly once.
        let s = Settlement {
            to: KeyId([2; 32]),
            returned: false,
            at: Timestamp(10),
        };
        assert_eq!(store.settle(&[1; 32], &s).unwrap(), SettleOutcome::Settled);
        let back = Settlement {
            to: KeyId([1; 32]),
            returned: true,
            at: Timestamp(11),
        };
        assert_eq!(
            store.settle(&[1; 32], &back).unwrap(),
            SettleOutcome::AlreadySettled(s.clone())
        );
        assert_eq!(store.get(&[1; 32]).unwrap().unwrap().settled, Some(s));
        assert_eq!(
            store.settle(&[7; 32], &back).unwrap(),
            SettleOutcome::Unknown
        );
        // A transaction's deposits are bounded.
        for i in 0..MAX_DEPOSITS_PER_TRANSACTION {
            let mut h = held(0, 9);
            h.id = sha256(&i.to_be_bytes());
            assert_eq!(store.deposit(&h).unwrap(), DepositOutcome::Held);
        }
        let mut h = held(0, 9);
        h.id = [0xee; 32];
        assert_eq!(store.deposit(&h).unwrap(), DepositOutcome::Full);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_escrow_store_passes_the_conformance_suite() {
        super::conformance::escrow_store_suite(&super::MemoryEscrowStore::new());
    }
}
