//! The Candidate CPO (paper section 3.4) and its checksum.
//!
//! ```text
//! a. ID            random identifier (256 bits here; 160 in the paper)
//! b. ArbiterID     key id of the arbiter
//! c. ServerID      key id of the server
//! d. Goods         text description of the goods
//! e. Price         u64 cents and an ISO 4217 currency
//! f. StartDate     Unix seconds (64-bit; 32-bit in the paper)
//! g. EndDate       Unix seconds
//! h. Terms         text description of all the terms
//! i. Bond          the buyer's bond certificate BC_B (DER)
//! j. Checksum      SHA-256 of the canonical CBOR of fields a-i
//! ```
//!
//! On the wire a CCPO is the CBOR array `[a, ..., j]`; decoding recomputes
//! the checksum and refuses a CCPO whose checksum does not match.

use agora_core::crypto::{sha256, Rng};
use agora_core::wire::{Decoder, Encoder, Field};
use agora_core::{DecodeError, KeyId, Money, Timestamp};

/// Longest goods description, in bytes.
pub const MAX_GOODS_LEN: usize = 1024;
/// Longest terms text, in bytes.
pub const MAX_TERMS_LEN: usize = 4096;
/// Largest encoded CCPO: the texts, the bond certificate and the fixed
/// fields, rounded up.
pub const MAX_CCPO_LEN: usize = MAX_GOODS_LEN + MAX_TERMS_LEN + agora_pki::MAX_CERT_LEN + 512;

/// A Candidate CPO. Build one with [`Ccpo::new`]; its checksum is then
/// always the checksum of its fields (decoding refuses anything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ccpo {
    /// a. A random identifier.
    pub id: [u8; 32],
    /// b. The arbiter's key id.
    pub arbiter: KeyId,
    /// c. The server's key id.
    pub server: KeyId,
    /// d. What the buyer wants to buy.
    pub goods: String,
    /// e. The price he will pay.
    pub price: Money,
    /// f. When the CPO becomes active.
    pub start: Timestamp,
    /// g. When it expires.
    pub end: Timestamp,
    /// h. All the terms.
    pub terms: String,
    /// i. The buyer's bond certificate (DER).
    pub bond: Vec<u8>,
    /// j. SHA-256 of the canonical encoding of a-i.
    checksum: [u8; 32],
}

/// What a buyer fills in; [`Ccpo::new`] adds the id and the checksum.
#[derive(Clone, Debug)]
pub struct CcpoDraft {
    /// b.
    pub arbiter: KeyId,
    /// c.
    pub server: KeyId,
    /// d.
    pub goods: String,
    /// e.
    pub price: Money,
    /// f.
    pub start: Timestamp,
    /// g.
    pub end: Timestamp,
    /// h.
    pub terms: String,
    /// i.
    pub bond: Vec<u8>,
}

impl Ccpo {
    /// A CCPO with a fresh random id. Refuses empty goods, a zero price,
    /// `end <= start`, and texts or a certificate over their limits.
    pub fn new(draft: CcpoDraft, rng: &mut impl Rng) -> Result<Ccpo, DecodeError> {
        Ccpo::with_id(agora_core::crypto::random_bytes(rng), draft)
    }

    /// A CCPO with the given id (for stores and tests; a buyer uses
    /// [`Ccpo::new`], whose id is random as the paper requires).
    pub fn with_id(id: [u8; 32], draft: CcpoDraft) -> Result<Ccpo, DecodeError> {
        let mut c = Ccpo {
            id,
            arbiter: draft.arbiter,
            server: draft.server,
            goods: draft.goods,
            price: draft.price,
            start: draft.start,
            end: draft.end,
            terms: draft.terms,
            bond: draft.bond,
            checksum: [0; 32],
        };
        c.check_fields()?;
        c.checksum = c.compute_checksum();
        Ok(c)
    }

    fn check_fields(&self) -> Result<(), DecodeError> {
        if self.goods.trim().is_empty() {
            return Err(DecodeError::Invalid("CCPO goods are empty"));
        }
        if self.goods.len() > MAX_GOODS_LEN {
            return Err(DecodeError::TooLarge {
                what: "CCPO goods",
                limit: MAX_GOODS_LEN,
            });
        }
        if self.terms.len() > MAX_TERMS_LEN {
            return Err(DecodeError::TooLarge {
                what: "CCPO terms",
                limit: MAX_TERMS_LEN,
            });
        }
        if self.bond.is_empty() || self.bond.len() > agora_pki::MAX_CERT_LEN {
            return Err(DecodeError::Invalid(
                "CCPO bond certificate empty or too large",
            ));
        }
        if self.price.cents == 0 {
            return Err(DecodeError::Invalid("CCPO price is zero"));
        }
        if self.end <= self.start {
            return Err(DecodeError::Invalid("CCPO ends before it starts"));
        }
        Ok(())
    }

    fn encode_a_to_i(&self, e: &mut Encoder) {
        e.field(&self.id)
            .field(&self.arbiter)
            .field(&self.server)
            .text(&self.goods)
            .field(&self.price)
            .field(&self.start)
            .field(&self.end)
            .text(&self.terms)
            .bytes(&self.bond);
    }

    fn compute_checksum(&self) -> [u8; 32] {
        let mut e = Encoder::with_capacity(self.bond.len() + self.terms.len() + 256);
        e.array(9);
        self.encode_a_to_i(&mut e);
        sha256(e.as_bytes())
    }

    /// j. The checksum.
    pub fn checksum(&self) -> &[u8; 32] {
        &self.checksum
    }

    /// Whether the CPO may be bound at `now` (StartDate <= now < EndDate).
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }

    /// A copy with one field changed and the checksum left as it was: a
    /// forgery, for tests of the checks that must catch it.
    pub fn with_goods_for_testing_only(&self, goods: &str) -> Ccpo {
        Ccpo {
            goods: goods.to_owned(),
            ..self.clone()
        }
    }
}

impl Field for Ccpo {
    fn encode(&self, e: &mut Encoder) {
        e.array(10);
        self.encode_a_to_i(e);
        e.field(&self.checksum);
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(10)?;
        let c = Ccpo {
            id: d.field()?,
            arbiter: d.field()?,
            server: d.field()?,
            goods: d.text("CCPO goods", MAX_GOODS_LEN)?.to_owned(),
            price: d.field()?,
            start: d.field()?,
            end: d.field()?,
            terms: d.text("CCPO terms", MAX_TERMS_LEN)?.to_owned(),
            bond: d
                .bytes("CCPO bond certificate", agora_pki::MAX_CERT_LEN)?
                .to_vec(),
            checksum: d.field()?,
        };
        c.check_fields()?;
        if !agora_core::crypto::ct_eq(&c.compute_checksum(), &c.checksum) {
            return Err(DecodeError::Invalid(
                "CCPO checksum does not match its fields",
            ));
        }
        Ok(c)
    }
}
