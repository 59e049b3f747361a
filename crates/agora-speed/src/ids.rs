//! Identifiers of a SPEED purchase (paper section 4.2).

use agora_core::wire::{Decoder, Encoder, Field};
use agora_core::{DecodeError, KeyId};
use std::fmt;

/// NID, the negotiation identifier: chosen at random by the customer. The
/// paper's 4 bytes are widened to 16 (ARCHITECTURE section 6) so that two
/// customers of one vendor do not collide by chance.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nid(pub [u8; 16]);

impl Nid {
    /// A fresh random NID.
    pub fn random(rng: &mut impl agora_core::crypto::Rng) -> Nid {
        Nid(agora_core::crypto::random_bytes(rng))
    }
}

impl fmt::Debug for Nid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nid({})", hex::encode(self.0))
    }
}

impl Field for Nid {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<16>("NID").map(Nid)
    }
}

/// PaymentOrderID: the digest of the vendor's public key and the NID. Unique
/// system-wide at the broker (one vendor never reuses a NID for a second
/// bill; two vendors' ids differ in the first part).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentOrderId {
    /// VendorID: SHA-256 of the vendor's Ed25519 key.
    pub vendor: KeyId,
    /// The negotiation's NID.
    pub nid: Nid,
}

impl PaymentOrderId {
    /// The 48 bytes `vendor ‖ nid`, as stored and printed.
    pub fn to_bytes(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..32].copy_from_slice(&self.vendor.0);
        out[32..].copy_from_slice(&self.nid.0);
        out
    }

    /// Parses the 48 bytes of [`PaymentOrderId::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<PaymentOrderId, DecodeError> {
        if b.len() != 48 {
            return Err(DecodeError::Invalid("PaymentOrderID of 48 bytes"));
        }
        let mut vendor = [0u8; 32];
        let mut nid = [0u8; 16];
        vendor.copy_from_slice(&b[..32]);
        nid.copy_from_slice(&b[32..]);
        Ok(PaymentOrderId {
            vendor: KeyId(vendor),
            nid: Nid(nid),
        })
    }

    /// Lower-case hex of the 48 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Parses [`PaymentOrderId::to_hex`].
    pub fn from_hex(s: &str) -> Result<PaymentOrderId, DecodeError> {
        if s.len() != 96 {
            return Err(DecodeError::Invalid("PaymentOrderID of 96 hex digits"));
        }
        let b = hex::decode(s).map_err(|_| DecodeError::Invalid("PaymentOrderID in hex"))?;
        PaymentOrderId::from_bytes(&b)
    }
}

impl fmt::Debug for PaymentOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentOrderId({})", self.to_hex())
    }
}

impl fmt::Display for PaymentOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// On the wire: `[vendor (bstr 32), nid (bstr 16)]`.
impl Field for PaymentOrderId {
    fn encode(&self, e: &mut Encoder) {
        e.array(2).field(&self.vendor).field(&self.nid);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(2)?;
        Ok(PaymentOrderId {
            vendor: d.field()?,
            nid: d.field()?,
        })
    }
}

/// Longest account number (an IBAN has at most 34 characters).
pub const MAX_ACCOUNT_LEN: usize = 34;

/// An account number at the broker: 1 to 34 characters from `A-Z a-z 0-9 -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountNumber(String);

impl AccountNumber {
    /// Checks and wraps `s`.
    pub fn new(s: &str) -> Result<AccountNumber, DecodeError> {
        if s.is_empty() || s.len() > MAX_ACCOUNT_LEN {
            return Err(DecodeError::Invalid("account number of 1 to 34 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(DecodeError::Invalid(
                "account number of letters, digits and '-'",
            ));
        }
        Ok(AccountNumber(s.to_owned()))
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountNumber({})", self.0)
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Field for AccountNumber {
    fn encode(&self, e: &mut Encoder) {
        e.text(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        AccountNumber::new(d.text("account number", MAX_ACCOUNT_LEN)?)
    }
}

/// An e-purse card's identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId(pub [u8; 16]);

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardId({})", hex::encode(self.0))
    }
}

impl Field for CardId {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<16>("card id").map(CardId)
    }
}
