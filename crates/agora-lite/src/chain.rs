//! Hash-chain receipts (paper section 5, after PayWord).
//!
//! The client draws `w_n` at random and hashes down to the anchor:
//! `w_{i-1} = SHA-256(w_i)`, so `w_0 = SHA-256^n(w_n)` ([`HashChain`]). The
//! anchor `w_0` goes to the vendor with the subscription data and comes back
//! signed in non-repudiation SKEP: the client's proof that the vendor agreed
//! to this chain. The client then acknowledges the `i`-th delivery by
//! sending `w_i`; the vendor checks it against the last element it accepted
//! ([`ChainVerifier`]) and keeps it as proof that it delivered at least `i`
//! items. Nobody but the client can produce `w_i` before she sends it
//! (SHA-256 is one-way), and nobody can produce a second chain for the same
//! signed anchor (SHA-256 is collision resistant).

use agora_core::crypto::{ct_eq, sha256, Rng, Secret};
use agora_core::{DecodeError, Error, Result};
use std::fmt;
use zeroize::Zeroizing;

/// The longest chain, `n` at most 2^20 (about a million receipts: a
/// delivery a minute for two years). The bound is what bounds the vendor's
/// work per receipt (at most `n` hashes) and the client's work to build a
/// chain (`n` hashes).
pub const MAX_CHAIN_LEN: u64 = 1 << 20;

fn check_len(n: u64) -> Result<()> {
    if (1..=MAX_CHAIN_LEN).contains(&n) {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "hash chain length {n}, expected 1 to {MAX_CHAIN_LEN}"
        )))
    }
}

/// The client's chain `w_0 .. w_n`.
///
/// Stored compactly: `w_n` and every `s`-th element, `s = ceil(sqrt(n))`,
/// in zeroizing memory (about `2 sqrt(n)` elements: 32 KiB for the longest
/// chain, against 32 MiB for all of it), so [`Self::element`] hashes fewer
/// than `s` times (at most 1023). Wiped when dropped, never printed.
pub struct HashChain {
    n: u64,
    stride: u64,
    /// `w_n`.
    top: Secret<32>,
    /// `marks[k] = w_{k * stride}` for `k = 0 ..= n / stride`.
    marks: Zeroizing<Vec<[u8; 32]>>,
}

impl HashChain {
    /// A fresh chain of length `n` (1 to [`MAX_CHAIN_LEN`]): `w_n` is 32
    /// bytes from `rng`, and the chain is hashed down to `w_0` (`n`
    /// SHA-256s).
    pub fn generate(rng: &mut impl Rng, n: u64) -> Result<HashChain> {
        check_len(n)?;
        // ceil(sqrt(n)) >= 1 since n >= 1.
        let stride = match n.isqrt() {
            r if r * r < n => r + 1,
            r => r,
        };
        let top = Secret::<32>::random(rng);
        // n <= 2^20, so these indices fit in usize everywhere agora runs.
        let slot = |i: u64| usize::try_from(i / stride).expect("chain indices are at most 2^20");
        let mut marks = Zeroizing::new(vec![[0u8; 32]; slot(n) + 1]);
        let mut w = Zeroizing::new(*top.expose());
        if n.is_multiple_of(stride) {
            marks[slot(n)] = *w;
        }
        // Invariant at the top of each turn: w = w_i.
        for i in (1..=n).rev() {
            *w = sha256(&*w);
            if (i - 1).is_multiple_of(stride) {
                marks[slot(i - 1)] = *w;
            }
        }
        Ok(HashChain {
            n,
            stride,
            top,
            marks,
        })
    }

    /// The chain's length `n`: its elements are `w_0 ..= w_n`.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The anchor `w_0`, for the vendor to sign.
    pub fn anchor(&self) -> [u8; 32] {
        self.marks[0]
    }

    /// `w_i`, the receipt for the `i`-th delivery (`i` from 0 to `n`).
    /// Fewer than `ceil(sqrt(n))` hashes. An `i` over `n` is refused as
    /// [`Error::ApiMisuse`].
    pub fn element(&self, i: u64) -> Result<[u8; 32]> {
        if i > self.n {
            return Err(Error::ApiMisuse(
                "hash chain element beyond the chain's end",
            ));
        }
        // The nearest stored element at or above i.
        let mark = i.div_ceil(self.stride) * self.stride;
        let (mut w, steps) = if mark <= self.n {
            let k = usize::try_from(mark / self.stride).expect("chain indices are at most 2^20");
            (Zeroizing::new(self.marks[k]), mark - i)
        } else {
            (Zeroizing::new(*self.top.expose()), self.n - i)
        };
        for _ in 0..steps {
            *w = sha256(&*w);
        }
        Ok(*w)
    }
}

impl fmt::Debug for HashChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashChain")
            .field("n", &self.n)
            .field("elements", &format_args!("<redacted>"))
            .finish()
    }
}

/// The vendor's check of a client's receipts on one chain: the anchor, the
/// chain's length and the last element accepted with its index.
///
/// Its state is four plain values ([`Self::anchor`], [`Self::n`],
/// [`Self::last_index`], [`Self::last_value`]) that a store persists and
/// gives back to [`Self::from_parts`]. They are not secret: every element
/// here has been sent by the client already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainVerifier {
    anchor: [u8; 32],
    n: u64,
    last_index: u64,
    last_value: [u8; 32],
}

impl ChainVerifier {
    /// A verifier for a chain of length `n` (1 to [`MAX_CHAIN_LEN`]) anchored
    /// at `anchor` (`w_0`, as the vendor signed it), nothing accepted yet.
    pub fn new(anchor: [u8; 32], n: u64) -> Result<ChainVerifier> {
        check_len(n)?;
        Ok(ChainVerifier {
            anchor,
            n,
            last_index: 0,
            last_value: anchor,
        })
    }

    /// A verifier restored from the parts a store kept. Refused as
    /// malformed if `n` is out of bounds, `last_index` is over `n`, or
    /// `last_index` is 0 with a `last_value` that is not the anchor. (It
    /// does not hash `last_value` down to the anchor: the store is trusted
    /// to give back what it was given.)
    pub fn from_parts(
        anchor: [u8; 32],
        n: u64,
        last_index: u64,
        last_value: [u8; 32],
    ) -> Result<ChainVerifier> {
        if !(1..=MAX_CHAIN_LEN).contains(&n) {
            return Err(DecodeError::Invalid("hash chain length out of bounds").into());
        }
        if last_index > n {
            return Err(DecodeError::Invalid("hash chain index beyond the chain's end").into());
        }
        if last_index == 0 && last_value != anchor {
            return Err(DecodeError::Invalid("hash chain element 0 is not the anchor").into());
        }
        Ok(ChainVerifier {
            anchor,
            n,
            last_index,
            last_value,
        })
    }

    /// The anchor `w_0`.
    pub fn anchor(&self) -> [u8; 32] {
        self.anchor
    }

    /// The chain's length `n`.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The index of the last element accepted (0: none yet, only the anchor).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The last element accepted (the anchor if none yet).
    pub fn last_value(&self) -> [u8; 32] {
        self.last_value
    }

    /// How many receipts the chain still holds: `n - last_index`.
    pub fn remaining(&self) -> u64 {
        self.n - self.last_index
    }

    /// Accepts `w` as the receipt `w_index`: hashes it `index - last_index`
    /// times and compares the result, in constant time, with the last
    /// element accepted. On success the verifier moves to `(index, w)` and
    /// returns the number of hashes done; receipts may skip indices (a lost
    /// acknowledgement), and the gap costs one hash per index.
    ///
    /// Refused, with the verifier unchanged:
    /// - `index <= last_index`: [`Error::Replayed`] (a receipt seen before,
    ///   or an older one);
    /// - `index > n`: [`Error::Refused`] (beyond the chain's end);
    /// - `w` not on the chain at `index`: [`Error::Crypto`].
    ///
    /// At most `n` hashes (2^20) per call. A vendor that takes receipts from
    /// senders it has not authenticated yet should authenticate them first
    /// (in EDDP the receipt travels under the client's MAC), or one forged
    /// receipt can cost it `n` hashes.
    pub fn accept(&mut self, index: u64, w: &[u8; 32]) -> Result<u64> {
        if index <= self.last_index {
            return Err(Error::Replayed);
        }
        if index > self.n {
            return Err(Error::Refused(format!(
                "receipt {index} is beyond the end of the hash chain ({})",
                self.n
            )));
        }
        let steps = index - self.last_index;
        let mut x = *w;
        for _ in 0..steps {
            x = sha256(&x);
        }
        if !ct_eq(&x, &self.last_value) {
            return Err(Error::Crypto);
        }
        self.last_index = index;
        self.last_value = *w;
        Ok(steps)
    }
}
