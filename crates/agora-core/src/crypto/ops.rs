//! Counts of the cryptographic operations this process performed, by kind:
//! what a benchmark's crypto bound is priced from (ARCHITECTURE section 8:
//! "priced from the operations the production code actually performed").
//!
//! Every operation of this crate's crypto API counts itself as it runs:
//! Ed25519 signatures and verifications (a batch counts each signature),
//! X25519 agreements, HPKE seals and opens (their KEM and key schedule; the
//! ChaCha20-Poly1305 of an HPKE context counts as such), AEAD seals and
//! opens by algorithm,
//! HMAC-SHA-256 tags and checks, SHA-256 digests, HKDF derivations and
//! Argon2id. Symmetric operations count their bytes too. Hashing done with
//! the re-exported `Sha256` hasher directly (a product's digest on the fly)
//! is not counted.
//!
//! Counting is cheap: each thread adds to counters of its own (two relaxed
//! atomic additions, no contention); reading sums every thread's, those
//! that have ended included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A kind of cryptographic operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// An Ed25519 signature.
    Ed25519Sign,
    /// An Ed25519 verification (strict).
    Ed25519Verify,
    /// One signature of an Ed25519 batch verification.
    Ed25519BatchItem,
    /// An X25519 agreement.
    X25519,
    /// An HPKE seal (encapsulation and key schedule; one-shot or context).
    HpkeSeal,
    /// An HPKE open (decapsulation and key schedule).
    HpkeOpen,
    /// A ChaCha20-Poly1305 seal or open.
    ChaCha20Poly1305,
    /// An AES-256-GCM seal or open.
    Aes256Gcm,
    /// An HMAC-SHA-256 tag or check.
    Hmac,
    /// A SHA-256 digest.
    Sha256,
    /// An HKDF-SHA256 derivation.
    Hkdf,
    /// An Argon2id derivation.
    Argon2id,
}

/// Every kind, in a fixed order.
pub const OPS: [Op; 12] = [
    Op::Ed25519Sign,
    Op::Ed25519Verify,
    Op::Ed25519BatchItem,
    Op::X25519,
    Op::HpkeSeal,
    Op::HpkeOpen,
    Op::ChaCha20Poly1305,
    Op::Aes256Gcm,
    Op::Hmac,
    Op::Sha256,
    Op::Hkdf,
    Op::Argon2id,
];

const N: usize = OPS.len();

impl Op {
    /// A stable name, e.g. `ed25519_sign` (the label in `/metrics`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Ed25519Sign => "ed25519_sign",
            Op::Ed25519Verify => "ed25519_verify",
            Op::Ed25519BatchItem => "ed25519_batch_item",
            Op::X25519 => "x25519",
            Op::HpkeSeal => "hpke_seal",
            Op::HpkeOpen => "hpke_open",
            Op::ChaCha20Poly1305 => "chacha20poly1305",
            Op::Aes256Gcm => "aes256gcm",
            Op::Hmac => "hmac",
            Op::Sha256 => "sha256",
            Op::Hkdf => "hkdf",
            Op::Argon2id => "argon2id",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        OPS.into_iter().find(|o| o.name() == name)
    }

    /// Whether it is a public-key operation (its cost does not depend on
    /// the bytes).
    pub fn is_public_key(self) -> bool {
        matches!(
            self,
            Op::Ed25519Sign
                | Op::Ed25519Verify
                | Op::Ed25519BatchItem
                | Op::X25519
                | Op::HpkeSeal
                | Op::HpkeOpen
        )
    }

    /// Its place in [`OPS`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How many operations of each kind, and how many bytes they processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    calls: [u64; N],
    bytes: [u64; N],
}

impl OpCounts {
    /// Operations of kind `op`.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()]
    }

    /// Bytes the operations of kind `op` processed.
    pub fn bytes(&self, op: Op) -> u64 {
        self.bytes[op.index()]
    }

    /// Counts `calls` operations of `op` over `bytes` (a counter read from
    /// elsewhere, e.g. another process's `/metrics`).
    pub fn add(&mut self, op: Op, calls: u64, bytes: u64) {
        let i = op.index();
        self.calls[i] = self.calls[i].saturating_add(calls);
        self.bytes[i] = self.bytes[i].saturating_add(bytes);
    }

    /// What was counted since `earlier` (a reading of the same counters).
    pub fn since(&self, earlier: &OpCounts) -> OpCounts {
        let mut d = OpCounts::default();
        for i in 0..N {
            d.calls[i] = self.calls[i].saturating_sub(earlier.calls[i]);
            d.bytes[i] = self.bytes[i].saturating_sub(earlier.bytes[i]);
        }
        d
    }

    /// The sum of two readings.
    pub fn plus(&self, other: &OpCounts) -> OpCounts {
        let mut s = *self;
        for op in OPS {
            s.add(op, other.calls(op), other.bytes(op));
        }
        s
    }

    /// `(kind, calls, bytes)` of every kind.
    pub fn iter(&self) -> impl Iterator<Item = (Op, u64, u64)> + '_ {
        OPS.into_iter()
            .map(|op| (op, self.calls(op), self.bytes(op)))
    }
}

/// One thread's counters.
#[derive(Debug, Default)]
struct Slot {
    calls: [AtomicU64; N],
    bytes: [AtomicU64; N],
}

impl Slot {
    fn read(&self) -> OpCounts {
        let mut c = OpCounts::default();
        for i in 0..N {
            c.calls[i] = self.calls[i].load(Ordering::Relaxed);
            c.bytes[i] = self.bytes[i].load(Ordering::Relaxed);
        }
        c
    }
}

/// The counters of every live thread, and the sum of the ended ones'.
#[derive(Debug, Default)]
struct Registry {
    live: Vec<Arc<Slot>>,
    ended: OpCounts,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    ended: OpCounts {
        calls: [0; N],
        bytes: [0; N],
    },
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // Every change under this lock is a push, a removal or additions: a
    // panic cannot leave it half made.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// This thread's slot, registered on first use and folded into the ended
/// threads' sum when the thread ends.
struct Mine(Arc<Slot>);

impl Mine {
    fn new() -> Mine {
        let slot = Arc::new(Slot::default());
        registry().live.push(slot.clone());
        Mine(slot)
    }
}

impl Drop for Mine {
    fn drop(&mut self) {
        let mut r = registry();
        r.ended = r.ended.plus(&self.0.read());
        r.live.retain(|s| !Arc::ptr_eq(s, &self.0));
    }
}

thread_local! {
    static MINE: Mine = Mine::new();
}

/// Counts `calls` operations of kind `op` over `bytes` bytes on this thread.
pub(crate) fn count_n(op: Op, calls: u64, bytes: usize) {
    // After this thread's counters were dropped (a destructor running late
    // in the thread's exit), nothing is counted.
    let _ = MINE.try_with(|m| {
        m.0.calls[op.index()].fetch_add(calls, Ordering::Relaxed);
        m.0.bytes[op.index()].fetch_add(bytes as u64, Ordering::Relaxed);
    });
}

/// Counts one operation of kind `op` over `bytes` bytes on this thread.
pub(crate) fn count(op: Op, bytes: usize) {
    count_n(op, 1, bytes);
}

/// What this thread has counted.
pub fn this_thread() -> OpCounts {
    MINE.try_with(|m| m.0.read()).unwrap_or_default()
}

/// What every thread of this process has counted, ended threads included.
pub fn this_process() -> OpCounts {
    let r = registry();
    r.live.iter().fold(r.ended, |sum, s| sum.plus(&s.read()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_kinds_are_told_apart() {
        for op in OPS {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert!(Op::Ed25519Sign.is_public_key());
        assert!(!Op::ChaCha20Poly1305.is_public_key());
    }

    #[test]
    fn a_thread_counts_its_own_and_the_process_keeps_them_after_it_ends() {
        let before = this_process();
        let counted = std::thread::spawn(|| {
            let t0 = this_thread();
            count(Op::Hmac, 40);
            count_n(Op::Ed25519BatchItem, 3, 300);
            this_thread().since(&t0)
        })
        .join()
        .unwrap_or_default();
        assert_eq!(counted.calls(Op::Hmac), 1);
        assert_eq!(counted.bytes(Op::Hmac), 40);
        assert_eq!(counted.calls(Op::Ed25519BatchItem), 3);
        let after = this_process().since(&before);
        // Other tests' threads may count meanwhile: at least these.
        assert!(after.calls(Op::Hmac) >= 1);
        assert!(after.calls(Op::Ed25519BatchItem) >= 3);
    }
}
