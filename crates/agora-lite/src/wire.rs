//! What the lightweight protocols share on the wire: the ids as message
//! fields, the subscription data `S_C`, and [`Rejected`], the error that
//! gives a refused state machine back to its caller.

use crate::chain::MAX_CHAIN_LEN;
use crate::ids::{ClientId, VendorId, MAX_ID_LEN};
use agora_core::wire::{Decoder, Encoder, Field};
use agora_core::{DecodeError, Error, Result, Timestamp};
use std::fmt;

/// The random nonces `N_C` and `N_V`: 16 bytes, as the design fixes them
/// (128 bits: a collision among the nonces of one client is negligible).
pub const NONCE_LEN: usize = 16;

/// A nonce `N_C` or `N_V`.
pub type Nonce = [u8; NONCE_LEN];

/// The longest opaque payment data in a subscription (a payment reference,
/// a SET or PayWord commitment): 1 KiB. Card data or a reference fits; a
/// larger blob belongs in a payment system, not in a key-establishment
/// message.
pub const MAX_PAYMENT_LEN: usize = 1024;

/// The largest encoded [`Subscription`], in bytes: the payment data, the
/// anchor and a few integers.
pub const MAX_SUBSCRIPTION_LEN: usize = MAX_PAYMENT_LEN + 128;

/// A client id: a text string of 1 to [`MAX_ID_LEN`] bytes.
impl Field for ClientId {
    fn encode(&self, e: &mut Encoder) {
        e.text(self.as_str());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let s = d.text("client id", MAX_ID_LEN)?;
        // The length is checked, so only emptiness can be refused here.
        ClientId::new(s).map_err(|_| DecodeError::Invalid("client id is empty"))
    }
}

/// A vendor id: a text string of 1 to [`MAX_ID_LEN`] bytes.
impl Field for VendorId {
    fn encode(&self, e: &mut Encoder) {
        e.text(self.as_str());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let s = d.text("vendor id", MAX_ID_LEN)?;
        VendorId::new(s).map_err(|_| DecodeError::Invalid("vendor id is empty"))
    }
}

/// The hash-chain commitment of a subscription: the anchor `w_0` and the
/// chain's length `n` (paper section 5, after PayWord).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainCommitment {
    /// `w_0`.
    pub anchor: [u8; 32],
    /// `n`, 1 to [`MAX_CHAIN_LEN`].
    pub n: u32,
}

/// `[anchor (bstr 32), n (uint, 1 to MAX_CHAIN_LEN)]`.
impl Field for ChainCommitment {
    fn encode(&self, e: &mut Encoder) {
        e.array(2).bytes(&self.anchor).uint(self.n.into());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(2)?;
        let anchor = d.bytes_exact::<32>("chain anchor")?;
        let n = d.uint()?;
        if !(1..=MAX_CHAIN_LEN).contains(&n) {
            return Err(DecodeError::Invalid("hash chain length out of bounds"));
        }
        let n = u32::try_from(n).map_err(|_| DecodeError::Invalid("hash chain length"))?;
        Ok(ChainCommitment { anchor, n })
    }
}

/// The subscription data `S_C` the client gives the vendor in SKEP step 3
/// ("start-date or expiration date, and possible payment information ... or
/// commitments used in electronic (micro-)payments").
///
/// `Debug` prints the payment data's length only: it may be card data.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The first second the subscription is valid.
    pub not_before: Timestamp,
    /// The first second it is no longer valid.
    pub not_after: Timestamp,
    /// The hash-chain commitment, if the client acknowledges deliveries.
    pub chain: Option<ChainCommitment>,
    /// Opaque payment data, at most [`MAX_PAYMENT_LEN`] bytes.
    pub payment: Vec<u8>,
    /// The Janus counter the client's key with this vendor was made with,
    /// so that the vendor can remind a client that forgot it.
    pub counter: u32,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain", &self.chain)
            .field("payment_len", &self.payment.len())
            .field("counter", &self.counter)
            .finish()
    }
}

impl Subscription {
    /// Checks what the decoder cannot: the period is not inverted
    /// (`not_before < not_after`), and the fields are within their bounds
    /// (for a value built in memory rather than decoded).
    pub fn check(&self) -> Result<()> {
        if self.not_before >= self.not_after {
            return Err(Error::Refused(
                "subscription ends before it begins (inverted period)".into(),
            ));
        }
        if self.payment.len() > MAX_PAYMENT_LEN {
            return Err(Error::Refused(format!(
                "subscription payment data over {MAX_PAYMENT_LEN} bytes"
            )));
        }
        if let Some(c) = self.chain {
            if !(1..=MAX_CHAIN_LEN).contains(&u64::from(c.n)) {
                return Err(Error::Refused(format!(
                    "hash chain length {}, expected 1 to {MAX_CHAIN_LEN}",
                    c.n
                )));
            }
        }
        Ok(())
    }

    /// Whether the subscription is valid at `now`: checked, and
    /// `not_before <= now < not_after`. Refused otherwise.
    pub fn check_valid_at(&self, now: Timestamp) -> Result<()> {
        self.check()?;
        if now < self.not_before {
            return Err(Error::Refused("subscription not yet valid".into()));
        }
        if now >= self.not_after {
            return Err(Error::Refused("subscription expired".into()));
        }
        Ok(())
    }
}

/// `[not_before, not_after, chain or null, payment (bstr <= 1 KiB), counter]`.
impl Field for Subscription {
    fn encode(&self, e: &mut Encoder) {
        e.array(5)
            .field(&self.not_before)
            .field(&self.not_after)
            .field(&self.chain)
            .bytes(&self.payment)
            .uint(self.counter.into());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(5)?;
        let not_before = d.field()?;
        let not_after = d.field()?;
        let chain = d.field()?;
        let payment = d.bytes("payment data", MAX_PAYMENT_LEN)?.to_vec();
        let counter = u32::try_from(d.uint_max("Janus counter", u32::MAX.into())?)
            .map_err(|_| DecodeError::Invalid("Janus counter over 32 bits"))?;
        Ok(Subscription {
            not_before,
            not_after,
            chain,
            payment,
            counter,
        })
    }
}

/// A refused input: the state machine that refused it, unchanged, and why.
///
/// A state is consumed only when a message moves it forward; a message it
/// refuses (a forgery, a corrupted or replayed copy) leaves the caller
/// holding the state as it was, so the genuine message may still come.
/// Whether to keep waiting is the caller's choice:
/// [`Error::leaves_state_intact`] says which errors come from messages that
/// did not authenticate.
pub struct Rejected<S> {
    /// The state, as it was before the refused input.
    pub state: S,
    /// Why the input was refused.
    pub error: Error,
}

impl<S> Rejected<S> {
    pub(crate) fn new(state: S, error: impl Into<Error>) -> Self {
        Rejected {
            state,
            error: error.into(),
        }
    }
}

impl<S> fmt::Debug for Rejected<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state may hold keys: print only the error.
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Display for Rejected<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<S> std::error::Error for Rejected<S> {}

impl<S> From<Rejected<S>> for Error {
    fn from(r: Rejected<S>) -> Error {
        r.error
    }
}

/// A copy of a key, for a state that must own one: the same `K` (and the
/// same `K_enc`, `K_mac`), in its own zeroizing memory.
pub(crate) fn copy_key(k: &crate::VendorKey) -> crate::VendorKey {
    crate::VendorKey::from_shared_key(agora_core::crypto::Secret::new(*k.k().expose()))
}
