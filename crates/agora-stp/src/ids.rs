//! STP's identifiers (paper section 3): the transaction id (TID), a
//! subtransaction's unordered pair of process ids (UIDs: the key ids of the
//! processes' signing keys), and the message context.

use agora_core::crypto::{random_bytes, sha256, Rng};
use agora_core::wire::{Decoder, Encoder, Field};
use agora_core::{DecodeError, KeyId};
use std::fmt;

/// A transaction id: 16 random bytes chosen by the process that begins it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(pub [u8; 16]);

impl Tid {
    /// A fresh TID.
    pub fn random(rng: &mut impl Rng) -> Tid {
        Tid(random_bytes(rng))
    }

    /// From 32 hex digits.
    pub fn from_hex(s: &str) -> Result<Tid, DecodeError> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).map_err(|_| DecodeError::Invalid("TID: 32 hex digits"))?;
        Ok(Tid(b))
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid({self})")
    }
}

impl Field for Tid {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<16>("TID").map(Tid)
    }
}

/// A subtransaction's pair: the UIDs of its two processes, unordered (the
/// paper: "identified by its TID and by the unordered UIDs of the two
/// processes"), kept smaller first. On the wire `[lo, hi]` with `lo < hi`
/// strictly; any other order is refused, so a pair has one encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    lo: KeyId,
    hi: KeyId,
}

impl Pair {
    /// The pair of `a` and `b`; `None` if they are the same process.
    pub fn new(a: KeyId, b: KeyId) -> Option<Pair> {
        crate::rules::pair_of(&a, &b).map(|(lo, hi)| Pair { lo, hi })
    }

    /// The smaller UID.
    pub fn lo(&self) -> KeyId {
        self.lo
    }

    /// The larger UID.
    pub fn hi(&self) -> KeyId {
        self.hi
    }

    /// Both, smaller first (the rules' form).
    pub fn as_tuple(&self) -> (KeyId, KeyId) {
        (self.lo, self.hi)
    }

    /// Whether `uid` is one of the pair.
    pub fn contains(&self, uid: &KeyId) -> bool {
        self.lo == *uid || self.hi == *uid
    }

    /// The other one of the pair than `uid`, if `uid` is one of it.
    pub fn other(&self, uid: &KeyId) -> Option<KeyId> {
        if *uid == self.lo {
            Some(self.hi)
        } else if *uid == self.hi {
            Some(self.lo)
        } else {
            None
        }
    }

    /// The pair from the rules' form.
    pub fn from_tuple(t: &(KeyId, KeyId)) -> Option<Pair> {
        Pair::new(t.0, t.1)
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pair({}, {})", self.lo, self.hi)
    }
}

impl Field for Pair {
    fn encode(&self, e: &mut Encoder) {
        e.array(2).field(&self.lo).field(&self.hi);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(2)?;
        let lo: KeyId = d.field()?;
        let hi: KeyId = d.field()?;
        if lo >= hi {
            return Err(DecodeError::Invalid(
                "pair: two different UIDs, smaller first",
            ));
        }
        Ok(Pair { lo, hi })
    }
}

/// A subtransaction's context (paper section 3: "computed when a new message
/// is sent or received by taking the message digest of the concatenation of
/// the old context and the new message"): `context_n = SHA-256(context_{n-1}
/// ‖ message_n)` over the signed bytes of message n. Context 0 chains the
/// signed Begin or Join onto 32 zero bytes, so it is bound to the
/// subtransaction's TID, pair, certificates and deadline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Context(pub [u8; 32]);

impl Context {
    /// Context 0 of the subtransaction opened by `opening` (the signed
    /// Begin or Join).
    pub fn initial(opening: &[u8]) -> Context {
        Context([0u8; 32]).next(opening)
    }

    /// The context after `message` (its signed bytes).
    pub fn next(&self, message: &[u8]) -> Context {
        let mut buf = Vec::with_capacity(32 + message.len());
        buf.extend_from_slice(&self.0);
        buf.extend_from_slice(message);
        Context(sha256(&buf))
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({self})")
    }
}

impl Field for Context {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<32>("context").map(Context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_unordered_and_has_one_encoding() {
        let (a, b) = (KeyId([1; 32]), KeyId([2; 32]));
        assert_eq!(Pair::new(a, b), Pair::new(b, a));
        assert_eq!(Pair::new(a, a), None);
        let p = Pair::new(b, a).unwrap_or_else(|| unreachable!());
        let mut e = Encoder::new();
        e.field(&p);
        let bytes = e.into_bytes();
        assert_eq!(Decoder::new(&bytes).field::<Pair>(), Ok(p));
        let mut swapped = Encoder::new();
        swapped.array(2).field(&b).field(&a);
        assert!(Decoder::new(swapped.as_bytes()).field::<Pair>().is_err());
    }

    #[test]
    fn each_context_depends_on_the_one_before_and_the_message() {
        let c0 = Context::initial(b"begin");
        assert_ne!(c0.next(b"m1"), c0.next(b"m2"));
        assert_ne!(c0.next(b"m1").next(b"m2"), c0.next(b"m2").next(b"m1"));
        assert_ne!(Context::initial(b"begin2").next(b"m1"), c0.next(b"m1"));
    }
}
