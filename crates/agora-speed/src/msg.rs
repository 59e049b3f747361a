//! The SPEED messages (paper section 4) with the paper's fields, as agora
//! wire messages ([`agora_core::wire::Message`]).
//!
//! How each travels (ARCHITECTURE sections 2 and 3):
//!
//! | paper | agora |
//! |---|---|
//! | 1 NegotiationRequest `{{...}_{C^-1}}_V` | [`NegotiationRequest`] in `PKE(X, Sign(X))` to the vendor |
//! | 2 NegotiationStep `\|...\|^{SignKey}_{EnKey}` | [`NegotiationStep`] in [`agora_core::wire::sym::seal_mac`] |
//! | 3 Handshake `\|{NID, Price}_{C^-1}\|_{EnKey}` | [`Handshake`] in [`agora_core::wire::sym::seal_signed`] |
//! | 4 CipheredProductDelivery | [`ProductDelivery`]: the sealed signed [`Bill`]; the product follows as a STREAM |
//! | 5 PaymentOrder `{{{Bill}_{V^-1}, PaymentMode}_{C^-1}}_B` | [`PaymentOrder`] in `PKE(X, Sign(X))` to the broker |
//! | a, b (e-purse) | [`PurseDebit`], [`PurseConfirm`] in `seal_mac` under BEncKey / BSignKey |
//! | 6 PurchaseReceipt `\|{PaymentOrderID, Price, K}_{B^-1}\|_{RecKey}` | [`Receipt`] in `seal_signed` under RecKey |
//! | aggressive 1 ProductRequest | [`ProductRequest`] in `PKE(X, Sign(X))` to the vendor |
//! | aggressive 2 CipheredProductDelivery `\|Product\|_K, {{Bill}_{V^-1}}_C` | [`AggressiveDelivery`]: the bill in `PKE(Bill, Sign(Bill))` to the customer |
//!
//! Two fields are added to what the paper lists. NegotiationRequest,
//! ProductRequest and PaymentOrder carry the customer's X.509 identity
//! certificate, so that vendor and broker can check the signature of a
//! registered customer they have not met ("only registered users can
//! interoperate", section 3.1) without a directory lookup. And the keys the
//! paper sizes at 128 bits (EnKey, SignKey, RecKey, K, BEncKey, BSignKey) are
//! 256-bit here.

use crate::ids::{AccountNumber, Nid, PaymentOrderId};
use agora_core::crypto::{hpke, MacKey, Rng, Secret, X25519Public, X25519Secret};
use agora_core::wire::{tags, Decoder, Encoder, Field, Message, Tag};
use agora_core::{DecodeError, Error, KeyId, Money, Result};
use zeroize::Zeroize;

/// Longest ProductID (product code and description), in bytes.
pub const MAX_PRODUCT_ID_LEN: usize = 4096;
/// Longest X.509 certificate carried in a message (agora-pki's limit).
pub const MAX_CERT_LEN: usize = agora_pki::MAX_CERT_LEN;
/// Longest e-purse command (S1, S2 or S3) carried in a message.
pub const MAX_PURSE_COMMAND_LEN: usize = 1024;
/// Longest signed bill (a `COSE_Sign1` of a [`Bill`]).
pub const MAX_SIGNED_BILL_LEN: usize = 1024;
/// Longest sealed bill in a delivery (the signed bill under EnKey, or
/// sealed to the customer).
pub const MAX_SEALED_BILL_LEN: usize = 2048;

fn secret(d: &mut Decoder<'_>, what: &'static str) -> std::result::Result<Secret<32>, DecodeError> {
    let mut b: [u8; 32] = d.bytes_exact(what)?;
    let s = Secret::new(b);
    b.zeroize();
    Ok(s)
}

/// A MAC key carried in a message.
fn mac_key(d: &mut Decoder<'_>, what: &'static str) -> std::result::Result<MacKey, DecodeError> {
    let mut b: [u8; 32] = d.bytes_exact(what)?;
    let k = MacKey::new(b);
    b.zeroize();
    Ok(k)
}

/// Message 1 (normal mode): `{NID, SeqN, ProductID, [Price], VendorID,
/// EnKey, SignKey, Flag}`, signed by the customer and sealed to the vendor.
#[derive(Debug)]
pub struct NegotiationRequest {
    /// The negotiation's id, chosen by the customer.
    pub nid: Nid,
    /// Sequence number of this message (the first of the negotiation).
    pub seq: u64,
    /// What the customer wants: product code and description.
    pub product_id: String,
    /// The customer's opening offer, if she has one.
    pub price: Option<Money>,
    /// VendorID: the digest of the intended vendor's key (section 5.4).
    pub vendor: KeyId,
    /// EnKey: encrypts the rest of the negotiation and the bill.
    pub en_key: Secret<32>,
    /// SignKey: authenticates the NegotiationSteps.
    pub sign_key: MacKey,
    /// Whether `price` is the customer's last offer.
    pub last_offer: bool,
    /// The customer's identity certificate (DER).
    pub customer_cert: Vec<u8>,
}

impl Message for NegotiationRequest {
    const TAG: Tag = tags::SPEED_NEGOTIATION_REQUEST;
    const FIELDS: usize = 9;
    const MAX_LEN: usize = MAX_PRODUCT_ID_LEN + MAX_CERT_LEN + 512;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nid)
            .uint(self.seq)
            .text(&self.product_id)
            .field(&self.price)
            .field(&self.vendor)
            .bytes(self.en_key.expose())
            .bytes(self.sign_key.expose())
            .bool(self.last_offer)
            .bytes(&self.customer_cert);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(NegotiationRequest {
            nid: d.field()?,
            seq: d.uint()?,
            product_id: d.text("ProductID", MAX_PRODUCT_ID_LEN)?.to_owned(),
            price: d.field()?,
            vendor: d.field()?,
            en_key: secret(d, "EnKey")?,
            sign_key: mac_key(d, "SignKey")?,
            last_offer: d.bool()?,
            customer_cert: d.bytes("customer certificate", MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// Message 2: `{NID, SeqN, Price, Flag}` under SignKey and EnKey, sent by
/// either party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiationStep {
    /// The negotiation.
    pub nid: Nid,
    /// One more than the last sequence number the sender received.
    pub seq: u64,
    /// The sender's offer.
    pub price: Money,
    /// Whether it is the sender's last offer.
    pub last_offer: bool,
}

impl Message for NegotiationStep {
    const TAG: Tag = tags::SPEED_NEGOTIATION_STEP;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nid)
            .uint(self.seq)
            .field(&self.price)
            .bool(self.last_offer);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(NegotiationStep {
            nid: d.field()?,
            seq: d.uint()?,
            price: d.field()?,
            last_offer: d.bool()?,
        })
    }
}

/// Checks the sequence number of a NegotiationStep: it must be exactly one
/// more than the last one seen. "A negotiation message with a repeated
/// sequence number is interpreted as an active attack, and it will cause
/// the end of the communication" (section 5.3): the caller's state is
/// consumed, so the negotiation ends.
pub(crate) fn check_seq(last: u64, got: u64) -> Result<()> {
    if got <= last {
        return Err(Error::PeerMisbehaved(
            "repeated NegotiationStep sequence number: negotiation ended",
        ));
    }
    if Some(got) != last.checked_add(1) {
        return Err(Error::PeerMisbehaved(
            "skipped NegotiationStep sequence number: negotiation ended",
        ));
    }
    Ok(())
}

/// Message 3: `{NID, Price}`, signed by the customer, under EnKey: she
/// accepts the vendor's last offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The negotiation.
    pub nid: Nid,
    /// The price agreed.
    pub price: Money,
}

impl Message for Handshake {
    const TAG: Tag = tags::SPEED_HANDSHAKE;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = 96;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nid).field(&self.price);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Handshake {
            nid: d.field()?,
            price: d.field()?,
        })
    }
}

/// `{AccountNumber, K}_B`: the part of the bill only the broker reads.
#[derive(Debug)]
pub struct BillSecret {
    /// The vendor's account at the broker.
    pub account: AccountNumber,
    /// K, the key the product is encrypted under.
    pub key: Secret<32>,
}

impl Message for BillSecret {
    const TAG: Tag = tags::SPEED_BILL_SECRET;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.account).bytes(self.key.expose());
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(BillSecret {
            account: d.field()?,
            key: secret(d, "K")?,
        })
    }
}

impl BillSecret {
    fn info() -> Vec<u8> {
        let mut v = agora_core::wire::envelope::INFO_PREFIX.to_vec();
        v.extend_from_slice(&Self::TAG.to_cbor());
        v
    }

    /// The HPKE `aad`: the tag, the broker's key id and the PaymentOrderID,
    /// so that the secret cannot be cut from one bill and pasted into
    /// another.
    fn aad(broker: &KeyId, order: &PaymentOrderId) -> Vec<u8> {
        let mut v = Self::TAG.to_cbor();
        v.extend_from_slice(&broker.0);
        v.extend_from_slice(&order.to_bytes());
        v
    }

    /// Seals the secret to the broker's X25519 key, bound to `order`:
    /// `[enc (bstr 32), ciphertext (bstr)]`.
    pub fn seal(
        &self,
        rng: &mut impl Rng,
        broker: &X25519Public,
        order: &PaymentOrderId,
    ) -> Result<Vec<u8>> {
        let plain = zeroize::Zeroizing::new(agora_core::wire::encode(self));
        let (enc, ct) = hpke::seal(
            rng,
            broker,
            &Self::info(),
            &Self::aad(&broker.key_id(), order),
            &plain,
        )?;
        let mut e = Encoder::with_capacity(ct.len() + 40);
        e.array(2).bytes(&enc).bytes(&ct);
        Ok(e.into_bytes())
    }

    /// Opens what [`BillSecret::seal`] made for `order`.
    pub fn open(
        sealed: &[u8],
        broker: &X25519Secret,
        order: &PaymentOrderId,
    ) -> Result<BillSecret> {
        let mut d = Decoder::new(sealed);
        d.array(2)?;
        let enc: hpke::Encapped = d.bytes_exact("HPKE enc")?;
        let ct = d.bytes("bill secret", Self::MAX_LEN + hpke::OVERHEAD)?;
        d.finish()?;
        let plain = zeroize::Zeroizing::new(hpke::open(
            broker,
            &enc,
            &Self::info(),
            &Self::aad(&broker.public().key_id(), order),
            ct,
        )?);
        Ok(agora_core::wire::decode::<BillSecret>(&plain)?)
    }
}

/// Longest sealed [`BillSecret`].
pub const MAX_SEALED_SECRET_LEN: usize = 256;

/// The Bill: `{AccountNumber, K}_B, Hash(|Product|_K), Hash(ProductID),
/// PaymentOrderID, Price, RecKey`, signed by the vendor.
#[derive(Debug)]
pub struct Bill {
    /// `{AccountNumber, K}_B` ([`BillSecret::seal`]).
    pub secret: Vec<u8>,
    /// SHA-256 of the encrypted product as delivered (the STREAM bytes).
    pub product_hash: [u8; 32],
    /// SHA-256 of the ProductID of the request: the broker sees the digest,
    /// not the description (section 5.5).
    pub product_id_hash: [u8; 32],
    /// Unique system-wide: the vendor's key digest and the NID.
    pub order: PaymentOrderId,
    /// The price agreed.
    pub price: Money,
    /// RecKey: the broker encrypts the receipt under it.
    pub rec_key: Secret<32>,
}

impl Message for Bill {
    const TAG: Tag = tags::SPEED_BILL;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_SEALED_SECRET_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.bytes(&self.secret)
            .field(&self.product_hash)
            .field(&self.product_id_hash)
            .field(&self.order)
            .field(&self.price)
            .bytes(self.rec_key.expose());
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Bill {
            secret: d
                .bytes("sealed account and key", MAX_SEALED_SECRET_LEN)?
                .to_vec(),
            product_hash: d.field()?,
            product_id_hash: d.field()?,
            order: d.field()?,
            price: d.field()?,
            rec_key: secret(d, "RecKey")?,
        })
    }
}

/// Message 4 (normal mode), the part before the product: the signed bill
/// under EnKey ([`agora_core::wire::sym::seal_signed`]) and the length of
/// the encrypted product that follows it. Not signed itself: the bill
/// carries the digest of the product, so a changed length or product is
/// caught there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductDelivery {
    /// The negotiation.
    pub nid: Nid,
    /// Bytes of `|Product|_K` that follow.
    pub product_len: u64,
    /// `|{Bill}_{V^-1}|_{EnKey}`.
    pub bill: Vec<u8>,
}

impl Message for ProductDelivery {
    const TAG: Tag = tags::SPEED_PRODUCT_DELIVERY;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_SEALED_BILL_LEN + 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nid).uint(self.product_len).bytes(&self.bill);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(ProductDelivery {
            nid: d.field()?,
            product_len: d.uint()?,
            bill: d.bytes("sealed bill", MAX_SEALED_BILL_LEN)?.to_vec(),
        })
    }
}

/// Aggressive message 1: `{NID, ProductID, Price, VendorID}`, signed by the
/// customer and sealed to the vendor.
#[derive(Debug)]
pub struct ProductRequest {
    /// The purchase's id, chosen by the customer.
    pub nid: Nid,
    /// What the customer wants.
    pub product_id: String,
    /// The (fixed) price she accepts.
    pub price: Money,
    /// VendorID: the digest of the intended vendor's key (section 5.4).
    pub vendor: KeyId,
    /// The customer's identity certificate (DER); its X25519 key receives
    /// the bill.
    pub customer_cert: Vec<u8>,
}

impl Message for ProductRequest {
    const TAG: Tag = tags::SPEED_PRODUCT_REQUEST;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_PRODUCT_ID_LEN + MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nid)
            .text(&self.product_id)
            .field(&self.price)
            .field(&self.vendor)
            .bytes(&self.customer_cert);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(ProductRequest {
            nid: d.field()?,
            product_id: d.text("ProductID", MAX_PRODUCT_ID_LEN)?.to_owned(),
            price: d.field()?,
            vendor: d.field()?,
            customer_cert: d.bytes("customer certificate", MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// Aggressive message 2, the part before the product: the bill in
/// `PKE(Bill, Sign(Bill))` to the customer, and the product's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggressiveDelivery {
    /// The purchase.
    pub nid: Nid,
    /// Bytes of `|Product|_K` that follow.
    pub product_len: u64,
    /// `{{Bill}_{V^-1}}_C`.
    pub bill: Vec<u8>,
}

impl Message for AggressiveDelivery {
    const TAG: Tag = tags::SPEED_AGGRESSIVE_DELIVERY;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_SEALED_BILL_LEN + 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nid).uint(self.product_len).bytes(&self.bill);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(AggressiveDelivery {
            nid: d.field()?,
            product_len: d.uint()?,
            bill: d.bytes("sealed bill", MAX_SEALED_BILL_LEN)?.to_vec(),
        })
    }
}

/// PaymentMode: how the customer pays.
#[derive(Debug)]
pub enum PaymentMode {
    /// `{AccountNumber}`: from the customer's account at the broker.
    Account(AccountNumber),
    /// `{BEncKey, BSignKey, S1}`: from an e-purse card; the keys protect
    /// messages a and b, S1 authenticates the card.
    Purse {
        /// BEncKey.
        enc_key: Secret<32>,
        /// BSignKey.
        sign_key: MacKey,
        /// S1, the card's authentication.
        s1: Vec<u8>,
    },
}

/// `[0, account]` or `[1, BEncKey, BSignKey, S1]`.
impl Field for PaymentMode {
    fn encode(&self, e: &mut Encoder) {
        match self {
            PaymentMode::Account(a) => {
                e.array(2).uint(0).field(a);
            }
            PaymentMode::Purse {
                enc_key,
                sign_key,
                s1,
            } => {
                e.array(4)
                    .uint(1)
                    .bytes(enc_key.expose())
                    .bytes(sign_key.expose())
                    .bytes(s1);
            }
        }
    }

    fn decode(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        let n = d.array_max("payment mode", 4)?;
        match (d.uint()?, n) {
            (0, 2) => Ok(PaymentMode::Account(d.field()?)),
            (1, 4) => Ok(PaymentMode::Purse {
                enc_key: secret(d, "BEncKey")?,
                sign_key: mac_key(d, "BSignKey")?,
                s1: d.bytes("S1", MAX_PURSE_COMMAND_LEN)?.to_vec(),
            }),
            _ => Err(DecodeError::Invalid("payment mode")),
        }
    }
}

/// Message 5: `{{Bill}_{V^-1}, PaymentMode}`, signed by the customer and
/// sealed to the broker: the point of no return.
#[derive(Debug)]
pub struct PaymentOrder {
    /// The vendor's signed bill (`COSE_Sign1`) as the customer received it.
    pub bill: Vec<u8>,
    /// How she pays.
    pub mode: PaymentMode,
    /// The customer's identity certificate (DER).
    pub customer_cert: Vec<u8>,
}

impl Message for PaymentOrder {
    const TAG: Tag = tags::SPEED_PAYMENT_ORDER;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_SIGNED_BILL_LEN + MAX_PURSE_COMMAND_LEN + MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.bytes(&self.bill)
            .field(&self.mode)
            .bytes(&self.customer_cert);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(PaymentOrder {
            bill: d.bytes("signed bill", MAX_SIGNED_BILL_LEN)?.to_vec(),
            mode: d.field()?,
            customer_cert: d.bytes("customer certificate", MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// Message a: `{PaymentOrderID, S2}` under BSignKey and BEncKey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurseDebit {
    /// The payment.
    pub order: PaymentOrderId,
    /// S2, the SAM's debit command.
    pub s2: Vec<u8>,
}

impl Message for PurseDebit {
    const TAG: Tag = tags::SPEED_PURSE_DEBIT;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_PURSE_COMMAND_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.order).bytes(&self.s2);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(PurseDebit {
            order: d.field()?,
            s2: d.bytes("S2", MAX_PURSE_COMMAND_LEN)?.to_vec(),
        })
    }
}

/// Message b: `{PaymentOrderID, S3}` under BSignKey and BEncKey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurseConfirm {
    /// The payment.
    pub order: PaymentOrderId,
    /// S3, the card's confirmation of the debit.
    pub s3: Vec<u8>,
}

impl Message for PurseConfirm {
    const TAG: Tag = tags::SPEED_PURSE_CONFIRM;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_PURSE_COMMAND_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.order).bytes(&self.s3);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(PurseConfirm {
            order: d.field()?,
            s3: d.bytes("S3", MAX_PURSE_COMMAND_LEN)?.to_vec(),
        })
    }
}

/// A customer asks the broker for the balance of her account: signed by
/// her (self-certified by `customer_cert`) and sealed to the broker, so
/// that `reply_key` is hers and the broker's alone.
#[derive(Debug)]
pub struct BalanceRequest {
    /// The account.
    pub account: AccountNumber,
    /// When she asked (the broker refuses a request far from its clock).
    pub at: agora_core::Timestamp,
    /// The key the answer is sealed under.
    pub reply_key: Secret<32>,
    /// The customer's identity certificate (DER).
    pub customer_cert: Vec<u8>,
}

impl Message for BalanceRequest {
    const TAG: Tag = tags::SPEED_BALANCE_REQUEST;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.account)
            .field(&self.at)
            .bytes(self.reply_key.expose())
            .bytes(&self.customer_cert);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(BalanceRequest {
            account: d.field()?,
            at: d.field()?,
            reply_key: secret(d, "reply key")?,
            customer_cert: d.bytes("customer certificate", MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// The broker's answer to a [`BalanceRequest`]: signed, sealed under its
/// reply key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    /// SHA-256 of the sealed request it answers.
    pub request_hash: [u8; 32],
    /// The account.
    pub account: AccountNumber,
    /// Its balance.
    pub balance: Money,
    /// As of this time (the broker's clock).
    pub at: agora_core::Timestamp,
}

impl Message for Balance {
    const TAG: Tag = tags::SPEED_BALANCE;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.request_hash)
            .field(&self.account)
            .field(&self.balance)
            .field(&self.at);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Balance {
            request_hash: d.field()?,
            account: d.field()?,
            balance: d.field()?,
            at: d.field()?,
        })
    }
}

/// Message 6: `{PaymentOrderID, Price, K}`, signed by the broker, under
/// RecKey, to customer and vendor.
#[derive(Debug)]
pub struct Receipt {
    /// The payment.
    pub order: PaymentOrderId,
    /// What was paid.
    pub price: Money,
    /// K: the key of the product.
    pub key: Secret<32>,
}

impl Message for Receipt {
    const TAG: Tag = tags::SPEED_PURCHASE_RECEIPT;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 160;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.order)
            .field(&self.price)
            .bytes(self.key.expose());
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Receipt {
            order: d.field()?,
            price: d.field()?,
            key: secret(d, "K")?,
        })
    }
}

/// A request to load value onto an e-purse card from the customer's
/// account, signed by the customer and sealed to the broker. A retry sends
/// the same request (same id, S1 and time): the broker debits once and
/// answers with the same load command.
#[derive(Debug)]
pub struct CardLoadRequest {
    /// The customer's id of this request, random.
    pub id: [u8; 16],
    /// The account debited.
    pub account: AccountNumber,
    /// How much to load.
    pub amount: Money,
    /// S1, the card's authentication.
    pub s1: Vec<u8>,
    /// When the customer made the request (the broker refuses it far from
    /// its own clock).
    pub at: agora_core::Timestamp,
    /// The customer's identity certificate (DER).
    pub customer_cert: Vec<u8>,
}

impl Message for CardLoadRequest {
    const TAG: Tag = tags::SPEED_CARD_LOAD_REQUEST;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_PURSE_COMMAND_LEN + MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id)
            .field(&self.account)
            .field(&self.amount)
            .bytes(&self.s1)
            .field(&self.at)
            .bytes(&self.customer_cert);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(CardLoadRequest {
            id: d.field()?,
            account: d.field()?,
            amount: d.field()?,
            s1: d.bytes("S1", MAX_PURSE_COMMAND_LEN)?.to_vec(),
            at: d.field()?,
            customer_cert: d.bytes("customer certificate", MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// A request for the receipt of a payment (section 5.7: "a customer who
/// lost a receipt"). Not authenticated: the broker answers with the sealed
/// receipt, which only holders of RecKey can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRequest {
    /// The payment.
    pub order: PaymentOrderId,
}

impl Message for ReceiptRequest {
    const TAG: Tag = tags::SPEED_RECEIPT_REQUEST;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 96;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.order);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(ReceiptRequest { order: d.field()? })
    }
}

/// A complaint (section 5.7): the customer presents the product
/// description of her request (the broker holds only its digest, in the
/// bill) for a payment she made; the encrypted product as delivered follows
/// the message (its digest is in the bill too). Signed by the customer and
/// sealed to the broker.
#[derive(Debug)]
pub struct Complaint {
    /// The payment.
    pub order: PaymentOrderId,
    /// The ProductID of her request.
    pub product_id: String,
    /// Bytes of `|Product|_K` that follow.
    pub product_len: u64,
    /// The customer's identity certificate (DER).
    pub customer_cert: Vec<u8>,
}

impl Message for Complaint {
    const TAG: Tag = tags::SPEED_COMPLAINT;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_PRODUCT_ID_LEN + MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.order)
            .text(&self.product_id)
            .uint(self.product_len)
            .bytes(&self.customer_cert);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Complaint {
            order: d.field()?,
            product_id: d.text("ProductID", MAX_PRODUCT_ID_LEN)?.to_owned(),
            product_len: d.uint()?,
            customer_cert: d.bytes("customer certificate", MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// The broker's finding on a complaint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The vendor is at fault: K in the receipt does not decrypt the product
    /// the bill names, or the product is not the one its description names
    /// by digest.
    Upheld,
    /// The product is the one its description names by digest.
    Dismissed,
    /// The description names no digest: the facts are recorded (the
    /// description, the product's digest and length) for a person to judge.
    Recorded,
}

impl Verdict {
    /// A stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Upheld => "upheld",
            Verdict::Dismissed => "dismissed",
            Verdict::Recorded => "recorded",
        }
    }
}

/// The broker's signed ruling on a complaint: what it checked and found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruling {
    /// The payment.
    pub order: PaymentOrderId,
    /// The customer who complained (key id).
    pub customer: KeyId,
    /// The description she presented (its digest is the bill's).
    pub product_id: String,
    /// SHA-256 of the encrypted product she presented (the bill's).
    pub product_hash: [u8; 32],
    /// Whether K from the receipt decrypts it.
    pub decrypts: bool,
    /// SHA-256 and length of the decrypted product (zeros and 0 if it does
    /// not decrypt).
    pub content_hash: [u8; 32],
    /// Length of the decrypted product.
    pub content_len: u64,
    /// The finding.
    pub verdict: Verdict,
    /// When.
    pub at: agora_core::Timestamp,
}

impl Message for Ruling {
    const TAG: Tag = tags::SPEED_RULING;
    const FIELDS: usize = 9;
    const MAX_LEN: usize = MAX_PRODUCT_ID_LEN + 512;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.order)
            .field(&self.customer)
            .text(&self.product_id)
            .field(&self.product_hash)
            .bool(self.decrypts)
            .field(&self.content_hash)
            .uint(self.content_len)
            .text(self.verdict.as_str())
            .field(&self.at);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Ruling {
            order: d.field()?,
            customer: d.field()?,
            product_id: d.text("ProductID", MAX_PRODUCT_ID_LEN)?.to_owned(),
            product_hash: d.field()?,
            decrypts: d.bool()?,
            content_hash: d.field()?,
            content_len: d.uint()?,
            verdict: match d.text("verdict", 16)? {
                "upheld" => Verdict::Upheld,
                "dismissed" => Verdict::Dismissed,
                "recorded" => Verdict::Recorded,
                _ => return Err(DecodeError::Invalid("verdict")),
            },
            at: d.field()?,
        })
    }
}

/// The content digest a product description names, if any: the first
/// `sha256:<64 hex digits>` in it. A vendor that puts it in its ProductIDs
/// lets the broker rule on "not as described" mechanically.
pub fn described_digest(product_id: &str) -> Option<[u8; 32]> {
    let at = product_id.find("sha256:")?;
    let hex_part = product_id.get(at + 7..at + 7 + 64)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// SHA-256 of a ProductID, as the bill carries it.
pub fn product_id_hash(product_id: &str) -> [u8; 32] {
    agora_core::crypto::sha256(product_id.as_bytes())
}

/// Checks a ProductID: 1 to [`MAX_PRODUCT_ID_LEN`] bytes, no control
/// characters.
pub fn check_product_id(product_id: &str) -> Result<()> {
    if product_id.is_empty() || product_id.len() > MAX_PRODUCT_ID_LEN {
        return Err(Error::Decode(DecodeError::Invalid(
            "ProductID of 1 to 4096 bytes",
        )));
    }
    if product_id.chars().any(|c| c.is_control()) {
        return Err(Error::Decode(DecodeError::Invalid(
            "ProductID without control characters",
        )));
    }
    Ok(())
}
