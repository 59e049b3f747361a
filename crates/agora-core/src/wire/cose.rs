//! `Sign(X)` and `Auth_K(X)` (ARCHITECTURE section 3) as COSE (RFC 9052 /
//! RFC 9053) over deterministic CBOR.
//!
//! - `Sign(X)`: a tagged `COSE_Sign1` (CBOR tag 18). Protected header
//!   `{1: -8 (EdDSA), 4: kid}` with `kid` the [`KeyId`] of the signer (SHA-256
//!   of the Ed25519 public key); unprotected header empty; payload the
//!   encoded message; signature over the `Sig_structure`
//!   `["Signature1", protected, h'', payload]` (RFC 9052 section 4.4, empty
//!   external AAD).
//! - `Auth_K(X)`: a tagged `COSE_Mac0` (CBOR tag 17). Protected header
//!   `{1: 5 (HMAC 256/256)}`; unprotected header empty; tag over the
//!   `MAC_structure` `["MAC0", protected, h'', payload]` (RFC 9052 section
//!   6.3), checked in constant time.
//!
//! We write the bytes ourselves with the deterministic [`Encoder`]
//! (infallible, one encoding); we read them with coset, then re-encode what
//! coset parsed and refuse the input unless it is byte-for-byte the same, so
//! non-canonical CBOR, extra header parameters or a re-serialised protected
//! header never verify. The `Sig_structure` and `MAC_structure` on the
//! verifying side are coset's, an implementation independent of our writer.
//!
//! Checks, in order: total size; COSE structure and canonical encoding;
//! headers (algorithm, nothing else but `kid`); `kid` against the expected
//! key; the payload's message tag (before any public-key operation); the
//! signature or MAC; then the payload's fields. Malformed input gives
//! [`Error::Decode`], a bad signature or MAC [`Error::Crypto`] without
//! detail.

use super::{decode, expect_tag, Encoder, Message, Tag, MAX_MESSAGE_LEN};
use crate::crypto::{MacKey, Signature, SigningKey, VerifyingKey, HMAC_LEN};
use crate::{DecodeError, Error, KeyId, Result};
use coset::{iana, TaggedCborSerializable};

/// CBOR tag of `COSE_Sign1` (RFC 9052 section 2).
pub const COSE_SIGN1_TAG: u64 = 18;
/// CBOR tag of `COSE_Mac0` (RFC 9052 section 2).
pub const COSE_MAC0_TAG: u64 = 17;

/// Bytes a `COSE_Sign1` adds around its payload, rounded up: CBOR tag (1),
/// array head (1), protected header bstr (40), empty unprotected map (1),
/// payload head (up to 5), signature bstr (66) = 114.
pub const SIGN1_OVERHEAD: usize = 128;
/// Bytes a `COSE_Mac0` adds around its payload, rounded up: tag (1), array
/// (1), protected bstr (4), unprotected (1), payload head (up to 5), MAC
/// bstr (34) = 46.
pub const MAC0_OVERHEAD: usize = 64;

/// Largest `COSE_Sign1` accepted by the raw functions.
pub const MAX_SIGN1_LEN: usize = MAX_MESSAGE_LEN + SIGN1_OVERHEAD;
/// Largest `COSE_Mac0` accepted by the raw functions.
pub const MAX_MAC0_LEN: usize = MAX_MESSAGE_LEN + MAC0_OVERHEAD;

/// The encoded protected header of a `Sign(X)`: `{1: -8, 4: kid}`.
fn sign1_protected(kid: &KeyId) -> Vec<u8> {
    let mut e = Encoder::with_capacity(38);
    // Map with two pairs (major type 5); keys in canonical order 1, 4.
    e.raw(&[0xa2]).uint(1).int(iana::Algorithm::EdDSA as i64);
    e.uint(4).bytes(&kid.0);
    e.into_bytes()
}

/// The encoded protected header of an `Auth_K(X)`: `{1: 5}`.
fn mac0_protected() -> Vec<u8> {
    let mut e = Encoder::with_capacity(3);
    e.raw(&[0xa1])
        .uint(1)
        .int(iana::Algorithm::HMAC_256_256 as i64);
    e.into_bytes()
}

/// `[context, protected, external_aad = h'', payload]` (RFC 9052 sections
/// 4.4 and 6.3).
fn to_be_authenticated(context: &str, protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(payload.len() + protected.len() + 16);
    e.array(4)
        .text(context)
        .bytes(protected)
        .bytes(&[])
        .bytes(payload);
    e.into_bytes()
}

/// The tagged four-element COSE array.
fn cose_array(tag: u64, protected: &[u8], payload: &[u8], auth: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(payload.len() + SIGN1_OVERHEAD);
    e.tag(tag)
        .array(4)
        .bytes(protected)
        .raw(&[0xa0]) // empty unprotected header map
        .bytes(payload)
        .bytes(auth);
    e.into_bytes()
}

/// `Sign(payload)` for arbitrary payload bytes.
pub fn sign_raw(key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let protected = sign1_protected(&key.key_id());
    let sig = key.sign(&to_be_authenticated("Signature1", &protected, payload));
    cose_array(COSE_SIGN1_TAG, &protected, payload, &sig.0)
}

/// `Sign(X)`: a tagged `COSE_Sign1` over the encoding of `m`.
pub fn sign<M: Message>(key: &SigningKey, m: &M) -> Vec<u8> {
    sign_raw(key, &super::encode(m))
}

fn malformed(what: &'static str) -> Error {
    Error::Decode(DecodeError::Invalid(what))
}

fn too_large(what: &'static str, limit: usize) -> Error {
    Error::Decode(DecodeError::TooLarge { what, limit })
}

/// Whether a header carries nothing besides (optionally) an algorithm and a
/// key id.
fn only_alg_and_kid(h: &coset::Header) -> bool {
    h.crit.is_empty()
        && h.content_type.is_none()
        && h.iv.is_empty()
        && h.partial_iv.is_empty()
        && h.counter_signatures.is_empty()
        && h.rest.is_empty()
}

/// A `COSE_Sign1` that passed the structural checks (not the signature).
struct ParsedSign1 {
    kid: KeyId,
    payload: Vec<u8>,
    signature: Signature,
    /// The `Sig_structure`, as computed by coset.
    tbs: Vec<u8>,
}

/// Size, structure, canonical encoding and headers of a `COSE_Sign1`.
fn parse_sign1(bytes: &[u8], limit: usize) -> Result<ParsedSign1> {
    if bytes.len() > limit {
        return Err(too_large("COSE_Sign1", limit));
    }
    let s = coset::CoseSign1::from_tagged_slice(bytes)
        .map_err(|_| malformed("not a tagged COSE_Sign1"))?;
    let mut again = s.clone();
    again.protected.original_data = None;
    let canonical = again
        .to_tagged_vec()
        .map_err(|_| malformed("not a tagged COSE_Sign1"))?;
    if canonical != bytes {
        return Err(
            DecodeError::NonCanonical("COSE_Sign1 is not in deterministic encoding").into(),
        );
    }
    if !s.unprotected.is_empty() {
        return Err(malformed("COSE unprotected header must be empty"));
    }
    let h = &s.protected.header;
    if h.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::EdDSA)) {
        return Err(malformed("COSE_Sign1 algorithm must be EdDSA"));
    }
    if !only_alg_and_kid(h) {
        return Err(malformed(
            "COSE_Sign1 header has parameters other than alg and kid",
        ));
    }
    let kid = KeyId::from_slice(&h.key_id)?;
    let payload = s
        .payload
        .clone()
        .ok_or_else(|| malformed("COSE_Sign1 payload is detached"))?;
    let signature = Signature::from_slice(&s.signature)?;
    let tbs = s.tbs_data(&[]);
    Ok(ParsedSign1 {
        kid,
        payload,
        signature,
        tbs,
    })
}

/// The full check of a `COSE_Sign1`: structure, then `key_for(kid)` (which
/// refuses unknown or unexpected signers), then the payload tag if one is
/// expected, then the strict signature. Returns the payload and signer.
fn check_sign1(
    bytes: &[u8],
    limit: usize,
    expected_tag: Option<Tag>,
    key_for: impl FnOnce(&KeyId) -> Result<VerifyingKey>,
) -> Result<(Vec<u8>, KeyId)> {
    let p = parse_sign1(bytes, limit)?;
    let key = key_for(&p.kid)?;
    if key.key_id() != p.kid {
        return Err(Error::NotAuthorised(
            "signed by a key other than the expected one".into(),
        ));
    }
    if let Some(tag) = expected_tag {
        expect_tag(&p.payload, tag)?;
    }
    key.verify(&p.tbs, &p.signature)?;
    Ok((p.payload, p.kid))
}

fn sign1_limit<M: Message>() -> usize {
    M::MAX_LEN.min(MAX_MESSAGE_LEN) + SIGN1_OVERHEAD
}

/// Verifies `Sign(X)` made by `key` and decodes X as an `M`.
pub fn verify<M: Message>(bytes: &[u8], key: &VerifyingKey) -> Result<M> {
    let (payload, _) = check_sign1(bytes, sign1_limit::<M>(), Some(M::TAG), |_| Ok(*key))?;
    Ok(decode::<M>(&payload)?)
}

/// Verifies `Sign(X)` whose signer is found by `kid` through `lookup`
/// (`None`: [`Error::NotAuthorised`]) and decodes X as an `M`. Returns the
/// message and the signer's key id.
pub fn verify_with<M: Message>(
    bytes: &[u8],
    lookup: impl FnOnce(&KeyId) -> Option<VerifyingKey>,
) -> Result<(M, KeyId)> {
    let (payload, kid) = check_sign1(bytes, sign1_limit::<M>(), Some(M::TAG), |kid| {
        lookup(kid).ok_or_else(|| Error::NotAuthorised("unknown signer".into()))
    })?;
    Ok((decode::<M>(&payload)?, kid))
}

/// Verifies a `COSE_Sign1` over any payload made by `key`; returns the
/// payload. For interop and `agora evidence verify`.
pub fn verify_raw(bytes: &[u8], key: &VerifyingKey) -> Result<Vec<u8>> {
    check_sign1(bytes, MAX_SIGN1_LEN, None, |_| Ok(*key)).map(|(p, _)| p)
}

/// Verifies a `COSE_Sign1` over any payload whose signer is found through
/// `lookup`; returns the payload and the signer's key id.
pub fn verify_raw_with(
    bytes: &[u8],
    lookup: impl FnOnce(&KeyId) -> Option<VerifyingKey>,
) -> Result<(Vec<u8>, KeyId)> {
    check_sign1(bytes, MAX_SIGN1_LEN, None, |kid| {
        lookup(kid).ok_or_else(|| Error::NotAuthorised("unknown signer".into()))
    })
}

/// Verifies a `COSE_Sign1` whose payload must carry `tag`, signer found
/// through `lookup`; returns the payload bytes and the signer. Used by the
/// envelope, which knows the tag but not yet the message type's fields.
pub(crate) fn verify_tagged_with(
    bytes: &[u8],
    limit: usize,
    tag: Tag,
    lookup: impl FnOnce(&KeyId) -> Option<VerifyingKey>,
) -> Result<(Vec<u8>, KeyId)> {
    check_sign1(bytes, limit, Some(tag), |kid| {
        lookup(kid).ok_or_else(|| Error::NotAuthorised("unknown signer".into()))
    })
}

/// Verifies a *self-certified* `Sign(X)`: one whose signer's key travels
/// inside X itself (the CPO paper's X_0 messages carry the sender's bond
/// certificate). The payload is decoded strictly **before** the signature is
/// checked, because the key is in it; `key_from` must validate whatever
/// vouches for the key (the bond certificate) and return it. The signature
/// is then checked against that key, whose id must equal the `kid`.
/// Nothing of an unverified message escapes: the caller gets `M` only after
/// the signature verified.
pub fn verify_self_certified<M: Message>(
    bytes: &[u8],
    key_from: impl FnOnce(&M) -> Result<VerifyingKey>,
) -> Result<(M, KeyId)> {
    verify_self_certified_within(bytes, sign1_limit::<M>(), key_from)
}

pub(crate) fn verify_self_certified_within<M: Message>(
    bytes: &[u8],
    limit: usize,
    key_from: impl FnOnce(&M) -> Result<VerifyingKey>,
) -> Result<(M, KeyId)> {
    let p = parse_sign1(bytes, limit)?;
    expect_tag(&p.payload, M::TAG)?;
    let m = decode::<M>(&p.payload)?;
    let key = key_from(&m)?;
    if key.key_id() != p.kid {
        return Err(Error::NotAuthorised(
            "signed by a key other than the one the message certifies".into(),
        ));
    }
    key.verify(&p.tbs, &p.signature)?;
    Ok((m, p.kid))
}

/// The signer's key id of a `COSE_Sign1` (the `kid` of its protected
/// header), after the structural checks but without verifying anything: to
/// find the key to verify with.
pub fn peek_kid(bytes: &[u8]) -> Result<KeyId> {
    parse_sign1(bytes, MAX_SIGN1_LEN).map(|p| p.kid)
}

/// The tag of the message a `COSE_Sign1` carries, after the structural
/// checks but without verifying anything: to route it to its handler, which
/// verifies.
pub fn peek_tag(bytes: &[u8]) -> Result<Tag> {
    let p = parse_sign1(bytes, MAX_SIGN1_LEN)?;
    Ok(super::peek_tag(&p.payload)?)
}

/// The message a `COSE_Sign1` carries, decoded as an `M` after the
/// structural checks but **without verifying the signature**: only to find
/// the key to verify with when the message itself names whose it is (an
/// STP Decide names its transaction, whose record holds the signer's key).
/// The caller must verify the same bytes before acting on anything else.
pub fn peek_unverified<M: Message>(bytes: &[u8]) -> Result<M> {
    let p = parse_sign1(bytes, sign1_limit::<M>())?;
    Ok(decode::<M>(&p.payload)?)
}

/// `Auth_K(payload)` for arbitrary payload bytes.
pub fn mac_raw(key: &MacKey, payload: &[u8]) -> Vec<u8> {
    let protected = mac0_protected();
    let tag = key.tag(&to_be_authenticated("MAC0", &protected, payload));
    cose_array(COSE_MAC0_TAG, &protected, payload, &tag)
}

/// `Auth_K(X)`: a tagged `COSE_Mac0` over the encoding of `m`.
pub fn mac<M: Message>(key: &MacKey, m: &M) -> Vec<u8> {
    mac_raw(key, &super::encode(m))
}

fn check_mac0(
    bytes: &[u8],
    limit: usize,
    expected_tag: Option<Tag>,
    key: &MacKey,
) -> Result<Vec<u8>> {
    if bytes.len() > limit {
        return Err(too_large("COSE_Mac0", limit));
    }
    let m = coset::CoseMac0::from_tagged_slice(bytes)
        .map_err(|_| malformed("not a tagged COSE_Mac0"))?;
    let mut again = m.clone();
    again.protected.original_data = None;
    let canonical = again
        .to_tagged_vec()
        .map_err(|_| malformed("not a tagged COSE_Mac0"))?;
    if canonical != bytes {
        return Err(DecodeError::NonCanonical("COSE_Mac0 is not in deterministic encoding").into());
    }
    if !m.unprotected.is_empty() {
        return Err(malformed("COSE unprotected header must be empty"));
    }
    let h = &m.protected.header;
    if h.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::HMAC_256_256)) {
        return Err(malformed("COSE_Mac0 algorithm must be HMAC 256/256"));
    }
    if !only_alg_and_kid(h) || !h.key_id.is_empty() {
        return Err(malformed("COSE_Mac0 header has parameters other than alg"));
    }
    if m.tag.len() != HMAC_LEN {
        return Err(malformed("COSE_Mac0 tag must be 32 bytes"));
    }
    let payload = m
        .payload
        .as_ref()
        .ok_or_else(|| malformed("COSE_Mac0 payload is detached"))?;
    if let Some(tag) = expected_tag {
        expect_tag(payload, tag)?;
    }
    let tbm = coset::mac_structure_data(
        coset::MacContext::CoseMac0,
        m.protected.clone(),
        &[],
        payload,
    );
    key.verify(&tbm, &m.tag)?;
    Ok(payload.clone())
}

/// Verifies `Auth_K(X)` under `key` and decodes X as an `M`.
pub fn verify_mac<M: Message>(bytes: &[u8], key: &MacKey) -> Result<M> {
    let limit = M::MAX_LEN.min(MAX_MESSAGE_LEN) + MAC0_OVERHEAD;
    let payload = check_mac0(bytes, limit, Some(M::TAG), key)?;
    Ok(decode::<M>(&payload)?)
}

/// Verifies a `COSE_Mac0` over any payload under `key`; returns the payload.
pub fn verify_mac_raw(bytes: &[u8], key: &MacKey) -> Result<Vec<u8>> {
    check_mac0(bytes, MAX_MAC0_LEN, None, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ping, Pong};
    use crate::Timestamp;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32])
    }

    fn ping() -> Ping {
        Ping {
            nonce: [7; 32],
            sent_at: Timestamp(1_700_000_000),
            sender: key(1).key_id(),
            amount: None,
            note: "hello".into(),
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn our_encoding_is_what_coset_writes() {
        let k = key(1);
        let signed = sign(&k, &ping());
        let s = coset::CoseSign1::from_tagged_slice(&signed).unwrap();
        let mut fresh = coset::CoseSign1Builder::new()
            .protected(
                coset::HeaderBuilder::new()
                    .algorithm(iana::Algorithm::EdDSA)
                    .key_id(k.key_id().0.to_vec())
                    .build(),
            )
            .payload(crate::wire::encode(&ping()))
            .build();
        fresh.signature = s.signature.clone();
        assert_eq!(fresh.to_tagged_vec().unwrap(), signed);
        assert_eq!(verify::<Ping>(&signed, &k.verifying_key()).unwrap(), ping());
        assert_eq!(peek_kid(&signed).unwrap(), k.key_id());
    }

    #[test]
    fn wrong_key_and_wrong_type() {
        let signed = sign(&key(1), &ping());
        assert!(matches!(
            verify::<Ping>(&signed, &key(2).verifying_key()),
            Err(Error::NotAuthorised(_))
        ));
        // Over Pong's size limit: refused before anything is parsed.
        assert!(matches!(
            verify::<Pong>(&signed, &key(1).verifying_key()),
            Err(Error::Decode(DecodeError::TooLarge { .. }))
        ));
        let pong = sign(&key(1), &Pong { ping_hash: [0; 32] });
        assert!(matches!(
            verify::<Ping>(&pong, &key(1).verifying_key()),
            Err(Error::Decode(DecodeError::WrongTag { .. }))
        ));
        let mk = MacKey::new([3; 32]);
        let maced = mac(&mk, &ping());
        assert_eq!(verify_mac::<Ping>(&maced, &mk).unwrap(), ping());
        assert_eq!(
            verify_mac::<Ping>(&maced, &MacKey::new([4; 32])),
            Err(Error::Crypto)
        );
    }
}
