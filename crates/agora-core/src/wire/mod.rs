//! Wire format (ARCHITECTURE section 3).
//!
//! - [`cbor`]: strict deterministic CBOR (RFC 8949 section 4.2.1).
//! - [`tags`]: the one registry of message tags U = [system, protocol, step].
//! - [`Message`], [`encode`], [`decode`]: a message X on the wire is the CBOR
//!   array `[tag, field1, ..., fieldN]`; decoding checks the size, then the
//!   tag, and only then the fields.
//! - [`cose`]: `Sign(X)` (COSE_Sign1, EdDSA) and `Auth_K(X)` (COSE_Mac0,
//!   HMAC 256/256).
//! - [`envelope`]: `PKE(X, Sign(X))`, HPKE-sealed to the recipient.

use crate::crypto::{Signature, VerifyingKey, X25519Public};
use crate::{Currency, DecodeError, KeyId, Money, Timestamp};
use std::fmt;

pub mod cbor;
pub mod cose;
pub mod envelope;
pub mod saved;
pub mod sym;
pub mod tags;

pub use cbor::{Decoder, Encoder};

/// The largest message agora accepts of any kind, whatever its own limit.
/// Bulk data (products) travels in STREAM chunks, not in messages.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// A message tag U = [system, protocol, step].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tag {
    /// The system (1 CPO, 2 SPEED, 3 STP, 4 lightweight, 5 exchange).
    pub system: u8,
    /// The protocol within the system, numbered as in its paper.
    pub protocol: u8,
    /// The step within the protocol.
    pub step: u8,
}

impl Tag {
    /// The tag `[system, protocol, step]`.
    pub const fn new(system: u8, protocol: u8, step: u8) -> Tag {
        Tag {
            system,
            protocol,
            step,
        }
    }

    /// The deterministic CBOR encoding of the tag (an array of three
    /// unsigned integers), as bound into HPKE `info` and `aad`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(7);
        self.encode(&mut e);
        e.into_bytes()
    }

    /// The tag's name in the registry, if it is registered.
    pub fn name(&self) -> Option<&'static str> {
        tags::lookup(*self)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}, {}]", self.system, self.protocol, self.step)
    }
}

/// A value with one deterministic CBOR encoding, used as a message field.
///
/// Variable-length values (text, byte strings, lists) are not `Field`s:
/// each message reads them with its own explicit limit
/// ([`Decoder::text`], [`Decoder::bytes`], [`Decoder::array_max`]).
pub trait Field: Sized {
    /// Append the value's encoding.
    fn encode(&self, e: &mut Encoder);
    /// Read the value, strictly.
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;
}

impl Field for u64 {
    fn encode(&self, e: &mut Encoder) {
        e.uint(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.uint()
    }
}

impl Field for i64 {
    fn encode(&self, e: &mut Encoder) {
        e.int(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.int()
    }
}

impl Field for bool {
    fn encode(&self, e: &mut Encoder) {
        e.bool(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bool()
    }
}

/// A tag: `[system, protocol, step]`, each an unsigned integer below 256.
impl Field for Tag {
    fn encode(&self, e: &mut Encoder) {
        e.array(3)
            .uint(self.system.into())
            .uint(self.protocol.into())
            .uint(self.step.into());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(3)?;
        let mut part = || {
            d.uint().and_then(|v| {
                u8::try_from(v).map_err(|_| DecodeError::Invalid("tag part over 255"))
            })
        };
        Ok(Tag::new(part()?, part()?, part()?))
    }
}

/// A fixed-size byte string (nonces, hashes): a byte string of exactly `N`
/// bytes.
impl<const N: usize> Field for [u8; N] {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<N>("fixed-size byte string")
    }
}

/// A key id: a byte string of 32 bytes.
impl Field for KeyId {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<32>("key id").map(KeyId)
    }
}

/// A timestamp: an unsigned integer of Unix seconds.
impl Field for Timestamp {
    fn encode(&self, e: &mut Encoder) {
        e.uint(self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.uint().map(Timestamp)
    }
}

/// An amount: `[cents, "EUR"]`, the currency three capital letters.
impl Field for Money {
    fn encode(&self, e: &mut Encoder) {
        e.array(2).uint(self.cents).text(self.currency.as_str());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(2)?;
        let cents = d.uint()?;
        let currency = Currency::new(d.text("currency", 3)?)?;
        Ok(Money { cents, currency })
    }
}

/// An Ed25519 signature: a byte string of 64 bytes.
impl Field for Signature {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<64>("signature").map(Signature)
    }
}

/// An Ed25519 public key: a byte string of 32 bytes, parsed strictly (no
/// non-canonical or small-order points).
impl Field for VerifyingKey {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.to_bytes());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let b = d.bytes_exact::<32>("Ed25519 public key")?;
        VerifyingKey::from_bytes(&b)
            .map_err(|_| DecodeError::Invalid("not a valid Ed25519 public key"))
    }
}

/// An X25519 public key: a byte string of 32 bytes.
impl Field for X25519Public {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bytes_exact::<32>("X25519 public key").map(X25519Public)
    }
}

/// An optional value: `null` or the value.
impl<T: Field> Field for Option<T> {
    fn encode(&self, e: &mut Encoder) {
        match self {
            None => {
                e.null();
            }
            Some(v) => v.encode(e),
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        if d.next_is_null() {
            d.null()?;
            Ok(None)
        } else {
            T::decode(d).map(Some)
        }
    }
}

/// A protocol message X: on the wire, the CBOR array
/// `[TAG, field1, ..., fieldN]` with `N = FIELDS`.
pub trait Message: Sized {
    /// The message's tag; must be in the [`tags`] registry.
    const TAG: Tag;
    /// The number of fields after the tag.
    const FIELDS: usize;
    /// The largest encoding accepted, in bytes (at most
    /// [`MAX_MESSAGE_LEN`]).
    const MAX_LEN: usize;
    /// Write the `FIELDS` fields, in order.
    fn encode_fields(&self, e: &mut Encoder);
    /// Read the `FIELDS` fields, in order, each with its limit.
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;
}

/// The encoding of `m`: `[M::TAG, fields...]`.
///
/// The caller keeps `m` within `M::MAX_LEN` (it bounds its own text and
/// lists); the receiver refuses anything larger.
pub fn encode<M: Message>(m: &M) -> Vec<u8> {
    let mut e = Encoder::with_capacity(64);
    e.array(M::FIELDS + 1);
    M::TAG.encode(&mut e);
    m.encode_fields(&mut e);
    e.into_bytes()
}

fn tag_error(expected: Tag, found: Tag) -> DecodeError {
    if tags::is_registered(found) {
        DecodeError::WrongTag { expected, found }
    } else {
        DecodeError::UnknownTag(found)
    }
}

/// Reads the array head and the tag. Returns the array length and the tag.
fn read_head(d: &mut Decoder<'_>) -> Result<(u64, Tag), DecodeError> {
    let len = d.array_any()?;
    if len == 0 {
        return Err(DecodeError::Unexpected("message array starting with a tag"));
    }
    let tag = Tag::decode(d)?;
    Ok((len, tag))
}

/// Decodes a message of type `M`, strictly and in this order: size limit
/// (`M::MAX_LEN`), array head, tag (before any field: [`DecodeError::WrongTag`]
/// for another registered tag, [`DecodeError::UnknownTag`] for one not in the
/// registry), field count, fields, then no trailing bytes.
///
/// Safe on arbitrary input: never panics, allocates only what the fields
/// themselves copy.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let limit = M::MAX_LEN.min(MAX_MESSAGE_LEN);
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what: "message",
            limit,
        });
    }
    let mut d = Decoder::new(bytes);
    let (len, tag) = read_head(&mut d)?;
    if tag != M::TAG {
        return Err(tag_error(M::TAG, tag));
    }
    if len != M::FIELDS as u64 + 1 {
        return Err(DecodeError::Unexpected(
            "message with the tag's field count",
        ));
    }
    let m = M::decode_fields(&mut d)?;
    d.finish()?;
    Ok(m)
}

/// The tag of an encoded message, without decoding its fields. Refuses
/// input over [`MAX_MESSAGE_LEN`] and tags not in the registry.
pub fn peek_tag(bytes: &[u8]) -> Result<Tag, DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge {
            what: "message",
            limit: MAX_MESSAGE_LEN,
        });
    }
    let (_, tag) = read_head(&mut Decoder::new(bytes))?;
    if !tags::is_registered(tag) {
        return Err(DecodeError::UnknownTag(tag));
    }
    Ok(tag)
}

/// Checks that `bytes` start with the tag `expected` (registered), without
/// decoding the fields.
pub fn expect_tag(bytes: &[u8], expected: Tag) -> Result<(), DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge {
            what: "message",
            limit: MAX_MESSAGE_LEN,
        });
    }
    let (_, tag) = read_head(&mut Decoder::new(bytes))?;
    if tag != expected {
        return Err(tag_error(expected, tag));
    }
    Ok(())
}

/// The core test message [`tags::TEST_PING`]: used by tests, fuzzing and
/// connectivity checks. It carries one field of most wire types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// A fresh random nonce.
    pub nonce: [u8; 32],
    /// When it was sent.
    pub sent_at: Timestamp,
    /// The sender's key id.
    pub sender: KeyId,
    /// An optional amount.
    pub amount: Option<Money>,
    /// Free text, at most [`Ping::MAX_NOTE_LEN`] bytes.
    pub note: String,
    /// Opaque bytes, at most [`Ping::MAX_DATA_LEN`] bytes.
    pub data: Vec<u8>,
}

impl Ping {
    /// Limit on [`Ping::note`].
    pub const MAX_NOTE_LEN: usize = 256;
    /// Limit on [`Ping::data`].
    pub const MAX_DATA_LEN: usize = 4096;
}

impl Message for Ping {
    const TAG: Tag = tags::TEST_PING;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = 8192;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.nonce)
            .field(&self.sent_at)
            .field(&self.sender)
            .field(&self.amount)
            .text(&self.note)
            .bytes(&self.data);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Ping {
            nonce: d.field()?,
            sent_at: d.field()?,
            sender: d.field()?,
            amount: d.field()?,
            note: d.text("ping note", Ping::MAX_NOTE_LEN)?.to_owned(),
            data: d.bytes("ping data", Ping::MAX_DATA_LEN)?.to_vec(),
        })
    }
}

/// The core test reply [`tags::TEST_PONG`]: the SHA-256 of the ping it
/// answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// SHA-256 of the encoded ping.
    pub ping_hash: [u8; 32],
}

impl Message for Pong {
    const TAG: Tag = tags::TEST_PONG;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.ping_hash);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Pong {
            ping_hash: d.field()?,
        })
    }
}
