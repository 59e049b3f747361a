//! `PKE(X, Sign(X))` (ARCHITECTURE section 3): the signed message, HPKE-sealed
//! to the recipient's X25519 key.
//!
//! On the wire an envelope is the CBOR array
//! `[tag, recipient key id (bstr 32), enc (bstr 32), ciphertext (bstr)]`
//! where the plaintext is the `COSE_Sign1` of X ([`super::cose::sign`]).
//! HPKE (RFC 9180 base mode) binds the tag and the recipient:
//! `info = "agora/1" || cbor(tag)`, `aad = cbor(tag) || recipient key id`.
//!
//! [`open`] checks, in order: the total size; the outer tag (before anything
//! else); that the envelope is addressed to us; the HPKE decryption; the
//! inner signature, whose payload must carry the outer tag; then the
//! message's fields.

use super::cose::{self, SIGN1_OVERHEAD};
use super::{decode, Decoder, Encoder, Field, Message, Tag, MAX_MESSAGE_LEN};
use crate::crypto::{hpke, Rng, SigningKey, VerifyingKey, X25519Public, X25519Secret};
use crate::{DecodeError, Error, KeyId, Result};

/// The HPKE `info` prefix; the tag follows it.
pub const INFO_PREFIX: &[u8] = b"agora/1";

/// Bytes an envelope adds around the ciphertext, rounded up: array head (1),
/// tag (up to 10), key id (34), enc (34), ciphertext head (up to 5) = 84.
pub const ENVELOPE_OVERHEAD: usize = 96;

/// The largest ciphertext an envelope for `M` may carry.
fn max_ciphertext<M: Message>() -> usize {
    M::MAX_LEN.min(MAX_MESSAGE_LEN) + SIGN1_OVERHEAD + hpke::OVERHEAD
}

/// The largest envelope accepted for `M`.
pub fn max_len<M: Message>() -> usize {
    max_ciphertext::<M>() + ENVELOPE_OVERHEAD
}

fn info(tag: Tag) -> Vec<u8> {
    let mut v = INFO_PREFIX.to_vec();
    v.extend_from_slice(&tag.to_cbor());
    v
}

fn aad(tag: Tag, recipient: &KeyId) -> Vec<u8> {
    let mut v = tag.to_cbor();
    v.extend_from_slice(&recipient.0);
    v
}

/// Seals `Sign_{sender}(m)` to `recipient`.
pub fn seal<M: Message>(
    rng: &mut impl Rng,
    sender: &SigningKey,
    recipient: &X25519Public,
    m: &M,
) -> Result<Vec<u8>> {
    seal_signed(rng, recipient, M::TAG, &cose::sign(sender, m))
}

/// Seals a message already signed (the `COSE_Sign1` [`cose::sign`] made of
/// a message tagged `tag`) to `recipient`: for a sender that keeps the
/// signed message as evidence too, so that it is signed once, or one that
/// forwards what another signed.
pub fn seal_signed(
    rng: &mut impl Rng,
    recipient: &X25519Public,
    tag: Tag,
    signed: &[u8],
) -> Result<Vec<u8>> {
    let rid = recipient.key_id();
    let (enc, ct) = hpke::seal(rng, recipient, &info(tag), &aad(tag, &rid), signed)?;
    let mut e = Encoder::with_capacity(ct.len() + ENVELOPE_OVERHEAD);
    e.array(4).field(&tag).field(&rid).bytes(&enc).bytes(&ct);
    Ok(e.into_bytes())
}

/// An opened envelope.
#[derive(Debug, Clone)]
pub struct Opened<M> {
    /// The message.
    pub message: M,
    /// The key id of the signer (the sender).
    pub signer: KeyId,
    /// The inner `COSE_Sign1` of the message: evidence a third party can
    /// verify.
    pub signed: Vec<u8>,
}

/// The tag an envelope claims, checked against the registry, without
/// opening it: to route an incoming envelope to its handler.
pub fn peek_tag(bytes: &[u8]) -> Result<Tag, DecodeError> {
    let mut d = Decoder::new(bytes);
    d.array_any()?;
    let tag = Tag::decode(&mut d)?;
    if !super::tags::is_registered(tag) {
        return Err(DecodeError::UnknownTag(tag));
    }
    Ok(tag)
}

/// Checks the envelope around an `M` for `recipient` (size, tag first,
/// addressee) and decrypts it: the inner `COSE_Sign1` bytes, not yet
/// verified.
fn decrypt<M: Message>(bytes: &[u8], recipient: &X25519Secret) -> Result<Vec<u8>> {
    let limit = max_len::<M>();
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what: "envelope",
            limit,
        }
        .into());
    }
    let mut d = Decoder::new(bytes);
    let len = d.array_any()?;
    if len == 0 {
        return Err(DecodeError::Unexpected("envelope array starting with a tag").into());
    }
    let tag = Tag::decode(&mut d)?;
    if tag != M::TAG {
        return Err(if super::tags::is_registered(tag) {
            DecodeError::WrongTag {
                expected: M::TAG,
                found: tag,
            }
        } else {
            DecodeError::UnknownTag(tag)
        }
        .into());
    }
    if len != 4 {
        return Err(DecodeError::Unexpected("envelope of four items").into());
    }
    let rid = KeyId::decode(&mut d)?;
    let ours = recipient.public().key_id();
    if rid != ours {
        return Err(Error::NotAuthorised(
            "envelope addressed to another party".into(),
        ));
    }
    let enc: hpke::Encapped = d.bytes_exact("HPKE enc")?;
    let ct = d.bytes("envelope ciphertext", max_ciphertext::<M>())?;
    d.finish()?;
    hpke::open(recipient, &enc, &info(tag), &aad(tag, &ours), ct)
}

fn inner_limit<M: Message>() -> usize {
    M::MAX_LEN.min(MAX_MESSAGE_LEN) + SIGN1_OVERHEAD
}

/// Opens an envelope carrying an `M` addressed to `recipient`; the sender's
/// key is found by its key id through `sender`. Safe on arbitrary input.
pub fn open<M: Message>(
    bytes: &[u8],
    recipient: &X25519Secret,
    sender: impl Fn(&KeyId) -> Option<VerifyingKey>,
) -> Result<Opened<M>> {
    let signed = decrypt::<M>(bytes, recipient)?;
    let (payload, signer) = cose::verify_tagged_with(&signed, inner_limit::<M>(), M::TAG, sender)?;
    let message = decode::<M>(&payload)?;
    Ok(Opened {
        message,
        signer,
        signed,
    })
}

/// Opens an envelope whose message certifies its own sender (see
/// [`cose::verify_self_certified`]): `key_from` validates what the message
/// carries (a bond certificate) and returns the sender's key.
pub fn open_self_certified<M: Message>(
    bytes: &[u8],
    recipient: &X25519Secret,
    key_from: impl FnOnce(&M) -> Result<VerifyingKey>,
) -> Result<Opened<M>> {
    let signed = decrypt::<M>(bytes, recipient)?;
    let (message, signer) =
        cose::verify_self_certified_within(&signed, inner_limit::<M>(), key_from)?;
    Ok(Opened {
        message,
        signer,
        signed,
    })
}
