//! A message under a shared symmetric key, in the SPEED paper's notation
//! `|X|_K` (encrypted), `|X|^{K'}_K` (authenticated with K' under HMAC, then
//! encrypted with K) and `|{X}_{A^-1}|_K` (signed by A, then encrypted).
//!
//! On the wire: the CBOR array `[tag, nonce (bstr 12), ciphertext (bstr)]`,
//! where ciphertext = ChaCha20-Poly1305(K, nonce, aad, inner) with
//! `aad = "agora/sym/1" ‖ cbor(tag)`, and inner is the `COSE_Mac0` (under K')
//! or the `COSE_Sign1` of X. The nonce is random: each key protects a
//! handful of messages of one purchase, far from the 2^32 messages at which
//! 96-bit random nonces would start to risk a collision.
//!
//! [`open_mac`] and [`open_signed`] check, in order: the total size; the
//! outer tag (before anything else); the AEAD; the inner MAC or signature,
//! whose payload must carry the outer tag; then the fields.

use super::cose::{self, MAC0_OVERHEAD, SIGN1_OVERHEAD};
use super::{Decoder, Encoder, Field, Message, Tag, MAX_MESSAGE_LEN};
use crate::crypto::{
    random_bytes, AeadAlg, AeadKey, MacKey, Rng, Secret, SigningKey, VerifyingKey, NONCE_LEN,
    TAG_LEN,
};
use crate::{DecodeError, Result};

/// The AEAD's associated-data prefix; the tag follows it.
pub const AAD_PREFIX: &[u8] = b"agora/sym/1";

/// Bytes the wrapper adds around the inner item, rounded up: array head (1),
/// tag (up to 10), nonce (13), ciphertext head (up to 5), AEAD tag (16).
pub const SYM_OVERHEAD: usize = 48;

fn aad(tag: Tag) -> Vec<u8> {
    let mut v = AAD_PREFIX.to_vec();
    v.extend_from_slice(&tag.to_cbor());
    v
}

/// Encrypts `inner` under `key` as a message tagged `tag`.
pub fn seal_raw(key: &Secret<32>, tag: Tag, rng: &mut impl Rng, inner: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random_bytes(rng);
    let ct = AeadKey::new(AeadAlg::ChaCha20Poly1305, key).seal(&nonce, &aad(tag), inner);
    let mut e = Encoder::with_capacity(ct.len() + SYM_OVERHEAD);
    e.array(3).field(&tag).bytes(&nonce).bytes(&ct);
    e.into_bytes()
}

/// Checks the wrapper (size at most `max_inner` + overhead, tag `tag`
/// first) and decrypts it: the inner bytes, not yet verified.
pub fn open_raw(bytes: &[u8], key: &Secret<32>, tag: Tag, max_inner: usize) -> Result<Vec<u8>> {
    let limit = max_inner + SYM_OVERHEAD;
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what: "encrypted message",
            limit,
        }
        .into());
    }
    let mut d = Decoder::new(bytes);
    let len = d.array_any()?;
    if len == 0 {
        return Err(DecodeError::Unexpected("encrypted message starting with a tag").into());
    }
    let found = Tag::decode(&mut d)?;
    if found != tag {
        return Err(if super::tags::is_registered(found) {
            DecodeError::WrongTag {
                expected: tag,
                found,
            }
        } else {
            DecodeError::UnknownTag(found)
        }
        .into());
    }
    if len != 3 {
        return Err(DecodeError::Unexpected("encrypted message of three items").into());
    }
    let nonce: [u8; NONCE_LEN] = d.bytes_exact("nonce")?;
    let ct = d.bytes("ciphertext", max_inner + TAG_LEN)?;
    d.finish()?;
    AeadKey::new(AeadAlg::ChaCha20Poly1305, key).open(&nonce, &aad(tag), ct)
}

fn inner_limit<M: Message>(overhead: usize) -> usize {
    M::MAX_LEN.min(MAX_MESSAGE_LEN) + overhead
}

/// The largest wrapper accepted for an `M` under a MAC.
pub fn max_mac_len<M: Message>() -> usize {
    inner_limit::<M>(MAC0_OVERHEAD) + SYM_OVERHEAD
}

/// The largest wrapper accepted for a signed `M`.
pub fn max_signed_len<M: Message>() -> usize {
    inner_limit::<M>(SIGN1_OVERHEAD) + SYM_OVERHEAD
}

/// `|X|^{mac}_{enc}`: X authenticated with `mac` (COSE_Mac0), then encrypted
/// with `enc`.
pub fn seal_mac<M: Message>(enc: &Secret<32>, mac: &MacKey, rng: &mut impl Rng, m: &M) -> Vec<u8> {
    seal_raw(enc, M::TAG, rng, &cose::mac(mac, m))
}

/// Opens `|X|^{mac}_{enc}`.
pub fn open_mac<M: Message>(bytes: &[u8], enc: &Secret<32>, mac: &MacKey) -> Result<M> {
    let inner = open_raw(bytes, enc, M::TAG, inner_limit::<M>(MAC0_OVERHEAD))?;
    cose::verify_mac::<M>(&inner, mac)
}

/// `|{X}_{signer^-1}|_{enc}`: X signed by `signer` (COSE_Sign1), then
/// encrypted with `enc`.
pub fn seal_signed<M: Message>(
    enc: &Secret<32>,
    signer: &SigningKey,
    rng: &mut impl Rng,
    m: &M,
) -> Vec<u8> {
    seal_raw(enc, M::TAG, rng, &cose::sign(signer, m))
}

/// Opens `|{X}_{signer^-1}|_{enc}`, the signature made by `signer`. Returns
/// the message and its `COSE_Sign1` (evidence a third party can verify).
pub fn open_signed<M: Message>(
    bytes: &[u8],
    enc: &Secret<32>,
    signer: &VerifyingKey,
) -> Result<(M, Vec<u8>)> {
    let inner = open_raw(bytes, enc, M::TAG, inner_limit::<M>(SIGN1_OVERHEAD))?;
    let m = cose::verify::<M>(&inner, signer)?;
    Ok((m, inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ping;
    use crate::{Error, KeyId, Timestamp};
    use rand_chacha::rand_core::SeedableRng;

    fn ping() -> Ping {
        Ping {
            nonce: [7; 32],
            sent_at: Timestamp(1),
            sender: KeyId([1; 32]),
            amount: None,
            note: "hi".into(),
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn mac_round_trip_and_every_flipped_bit_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let enc = Secret::random(&mut rng);
        let mac = MacKey::random(&mut rng);
        let sealed = seal_mac(&enc, &mac, &mut rng, &ping());
        assert_eq!(open_mac::<Ping>(&sealed, &enc, &mac).unwrap(), ping());
        for i in 0..sealed.len() * 8 {
            let mut t = sealed.clone();
            t[i / 8] ^= 1 << (i % 8);
            assert!(open_mac::<Ping>(&t, &enc, &mac).is_err(), "bit {i}");
        }
        let other = Secret::random(&mut rng);
        assert_eq!(open_mac::<Ping>(&sealed, &other, &mac), Err(Error::Crypto));
        let other_mac = MacKey::random(&mut rng);
        assert_eq!(
            open_mac::<Ping>(&sealed, &enc, &other_mac),
            Err(Error::Crypto)
        );
    }

    #[test]
    fn signed_round_trip_and_wrong_signer_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let enc = Secret::random(&mut rng);
        let a = SigningKey::generate(&mut rng);
        let b = SigningKey::generate(&mut rng);
        let sealed = seal_signed(&enc, &a, &mut rng, &ping());
        let (m, signed) = open_signed::<Ping>(&sealed, &enc, &a.verifying_key()).unwrap();
        assert_eq!(m, ping());
        assert_eq!(
            cose::verify::<Ping>(&signed, &a.verifying_key()).unwrap(),
            ping()
        );
        assert!(open_signed::<Ping>(&sealed, &enc, &b.verifying_key()).is_err());
    }

    #[test]
    fn a_message_under_another_tag_is_refused_before_decryption() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let enc = Secret::random(&mut rng);
        let sealed = seal_raw(&enc, super::super::tags::TEST_PONG, &mut rng, b"x");
        assert!(matches!(
            open_raw(&sealed, &enc, super::super::tags::TEST_PING, 64),
            Err(Error::Decode(DecodeError::WrongTag { .. }))
        ));
    }
}
