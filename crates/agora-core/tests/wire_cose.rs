#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `Sign(X)` (COSE_Sign1) and `Auth_K(X)` (COSE_Mac0): round trips and named
//! rejections: every bit flipped, truncated, extended, non-canonical
//! re-encodings with valid signatures, foreign headers, re-tagged payloads.

mod common;

use agora_core::crypto::{MacKey, SigningKey};
use agora_core::wire::cose::{self, MAX_SIGN1_LEN};
use agora_core::wire::{self, tags, Encoder, Message, Ping, Pong};
use agora_core::{DecodeError, Error};
use common::{arb_ping, key, sample_ping};
use proptest::collection::vec;
use proptest::prelude::*;

fn protected(alg: i64, kid: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.raw(&[0xa2]).uint(1).int(alg).uint(4).bytes(kid);
    e.into_bytes()
}

fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.array(4)
        .text("Signature1")
        .bytes(protected)
        .bytes(&[])
        .bytes(payload);
    e.into_bytes()
}

/// A COSE_Sign1 assembled by hand from raw parts, validly signed over the
/// given protected bytes and payload.
fn assemble(
    k: &SigningKey,
    tag_head: &[u8],
    protected: &[u8],
    unprotected: &[u8],
    payload_head: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let sig = k.sign(&sig_structure(protected, payload));
    let mut e = Encoder::new();
    e.raw(tag_head).array(4).bytes(protected).raw(unprotected);
    match payload_head {
        Some(h) => {
            e.raw(h).raw(payload);
        }
        None => {
            e.bytes(payload);
        }
    }
    e.bytes(&sig.0);
    e.into_bytes()
}

fn canonical_parts(k: &SigningKey) -> (Vec<u8>, Vec<u8>) {
    (protected(-8, &k.key_id().0), wire::encode(&sample_ping()))
}

proptest! {
    #[test]
    fn sign_verify_round_trip(p in arb_ping(), seed in any::<u8>()) {
        let k = key(seed);
        let signed = cose::sign(&k, &p);
        prop_assert_eq!(cose::verify::<Ping>(&signed, &k.verifying_key())?, p.clone());
        prop_assert_eq!(cose::peek_kid(&signed)?, k.key_id());
        let vk = k.verifying_key();
        let (q, kid) = cose::verify_with::<Ping>(&signed, |id| (*id == vk.key_id()).then_some(vk))?;
        prop_assert_eq!(q, p.clone());
        prop_assert_eq!(kid, k.key_id());
        prop_assert_eq!(cose::verify_raw(&signed, &vk)?, wire::encode(&p));
    }

    #[test]
    fn raw_payload_round_trip(payload in vec(any::<u8>(), 0..2000)) {
        let k = key(3);
        let signed = cose::sign_raw(&k, &payload);
        prop_assert_eq!(cose::verify_raw(&signed, &k.verifying_key())?, payload.clone());
        let mk = MacKey::new([9; 32]);
        let maced = cose::mac_raw(&mk, &payload);
        prop_assert_eq!(cose::verify_mac_raw(&maced, &mk)?, payload);
    }

    #[test]
    fn mac_round_trip(p in arb_ping(), kb in any::<[u8; 32]>()) {
        let mk = MacKey::new(kb);
        let maced = cose::mac(&mk, &p);
        prop_assert_eq!(cose::verify_mac::<Ping>(&maced, &mk)?, p);
    }

    /// Arbitrary bytes never panic the verifiers.
    #[test]
    fn arbitrary_bytes_never_panic(b in vec(any::<u8>(), 0..400)) {
        let vk = key(1).verifying_key();
        let mk = MacKey::new([1; 32]);
        prop_assert!(cose::verify_raw(&b, &vk).is_err());
        prop_assert!(cose::verify::<Ping>(&b, &vk).is_err());
        prop_assert!(cose::verify_mac_raw(&b, &mk).is_err());
        let _ = cose::peek_kid(&b);
    }

    /// Arbitrary bytes after a valid COSE prefix never panic either.
    #[test]
    fn mutated_cose_never_verifies(at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let k = key(1);
        let mut signed = cose::sign(&k, &sample_ping());
        let i = at.index(signed.len());
        prop_assume!(signed[i] != v);
        signed[i] = v;
        prop_assert!(cose::verify::<Ping>(&signed, &k.verifying_key()).is_err());
    }
}

#[test]
fn every_flipped_bit_is_rejected() {
    let k = key(1);
    let vk = k.verifying_key();
    let signed = cose::sign(&k, &sample_ping());
    let mk = MacKey::new([5; 32]);
    let maced = cose::mac(&mk, &sample_ping());
    for i in 0..signed.len() {
        for bit in 0..8 {
            let mut b = signed.clone();
            b[i] ^= 1 << bit;
            assert!(
                cose::verify::<Ping>(&b, &vk).is_err(),
                "sign1 byte {i} bit {bit}"
            );
            assert!(
                cose::verify_raw(&b, &vk).is_err(),
                "sign1 raw byte {i} bit {bit}"
            );
        }
    }
    for i in 0..maced.len() {
        for bit in 0..8 {
            let mut b = maced.clone();
            b[i] ^= 1 << bit;
            assert!(
                cose::verify_mac::<Ping>(&b, &mk).is_err(),
                "mac0 byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn bad_signature_and_mac_give_crypto_without_detail() {
    let k = key(1);
    let mut signed = cose::sign(&k, &sample_ping());
    let n = signed.len();
    signed[n - 1] ^= 1; // last byte of the signature
    assert_eq!(
        cose::verify::<Ping>(&signed, &k.verifying_key()),
        Err(Error::Crypto)
    );
    let mk = MacKey::new([5; 32]);
    let mut maced = cose::mac(&mk, &sample_ping());
    let n = maced.len();
    maced[n - 1] ^= 1;
    assert_eq!(cose::verify_mac::<Ping>(&maced, &mk), Err(Error::Crypto));
    let maced = cose::mac(&mk, &sample_ping());
    assert_eq!(
        cose::verify_mac::<Ping>(&maced, &MacKey::new([6; 32])),
        Err(Error::Crypto)
    );
}

#[test]
fn truncated_and_extended_are_rejected() {
    let k = key(1);
    let vk = k.verifying_key();
    let signed = cose::sign(&k, &sample_ping());
    for cut in 0..signed.len() {
        assert!(
            matches!(
                cose::verify::<Ping>(&signed[..cut], &vk),
                Err(Error::Decode(_))
            ),
            "{cut}"
        );
    }
    let mut ext = signed.clone();
    ext.push(0);
    assert!(matches!(
        cose::verify::<Ping>(&ext, &vk),
        Err(Error::Decode(_))
    ));
    let mk = MacKey::new([5; 32]);
    let maced = cose::mac(&mk, &sample_ping());
    for cut in 0..maced.len() {
        assert!(matches!(
            cose::verify_mac::<Ping>(&maced[..cut], &mk),
            Err(Error::Decode(_))
        ));
    }
    let mut ext = maced.clone();
    ext.push(0);
    assert!(matches!(
        cose::verify_mac::<Ping>(&ext, &mk),
        Err(Error::Decode(_))
    ));
}

#[test]
fn hand_assembly_matches_and_verifies() {
    let k = key(1);
    let (prot, payload) = canonical_parts(&k);
    let b = assemble(&k, &[0xd2], &prot, &[0xa0], None, &payload);
    assert_eq!(b, cose::sign(&k, &sample_ping()));
    assert_eq!(
        cose::verify::<Ping>(&b, &k.verifying_key()).unwrap(),
        sample_ping()
    );
}

/// Validly signed, but not the deterministic encoding: rejected.
#[test]
fn non_canonical_cose_is_rejected_even_when_validly_signed() {
    let k = key(1);
    let vk = k.verifying_key();
    let (prot, payload) = canonical_parts(&k);
    let nc = |b: &[u8]| {
        matches!(
            cose::verify::<Ping>(b, &vk),
            Err(Error::Decode(DecodeError::NonCanonical(_)))
        )
    };
    // CBOR tag 18 written in two bytes.
    assert!(nc(&assemble(
        &k,
        &[0xd8, 18],
        &prot,
        &[0xa0],
        None,
        &payload
    )));
    // Payload length head not in shortest form.
    let n = payload.len();
    let mut head = vec![0x5a];
    head.extend_from_slice(&(n as u32).to_be_bytes());
    assert!(nc(&assemble(
        &k,
        &[0xd2],
        &prot,
        &[0xa0],
        Some(&head),
        &payload
    )));
    // Payload as an indefinite-length byte string of one chunk.
    let mut e = Encoder::new();
    e.raw(&[0xd2])
        .array(4)
        .bytes(&prot)
        .raw(&[0xa0, 0x5f])
        .bytes(&payload)
        .raw(&[0xff]);
    e.bytes(&k.sign(&sig_structure(&prot, &payload)).0);
    assert!(matches!(
        cose::verify::<Ping>(&e.into_bytes(), &vk),
        Err(Error::Decode(_))
    ));
    // Protected header with alg -8 in a non-shortest head (0x38 0x07),
    // signed over exactly those bytes.
    let mut p2 = vec![0xa2, 0x01, 0x38, 0x07, 0x04, 0x58, 0x20];
    p2.extend_from_slice(&k.key_id().0);
    assert!(nc(&assemble(&k, &[0xd2], &p2, &[0xa0], None, &payload)));
    // Protected header with keys in non-canonical order (4 before 1).
    let mut p3 = vec![0xa2, 0x04, 0x58, 0x20];
    p3.extend_from_slice(&k.key_id().0);
    p3.extend_from_slice(&[0x01, 0x27]);
    assert!(nc(&assemble(&k, &[0xd2], &p3, &[0xa0], None, &payload)));
    // Indefinite-length outer array.
    let good = cose::sign(&k, &sample_ping());
    let mut b = vec![0xd2, 0x9f];
    b.extend_from_slice(&good[2..]);
    b.push(0xff);
    assert!(matches!(
        cose::verify::<Ping>(&b, &vk),
        Err(Error::Decode(_))
    ));
}

#[test]
fn foreign_headers_are_rejected() {
    let k = key(1);
    let vk = k.verifying_key();
    let (prot, payload) = canonical_parts(&k);
    let dec = |b: &[u8]| matches!(cose::verify::<Ping>(b, &vk), Err(Error::Decode(_)));
    // Non-empty unprotected header (a kid there).
    let mut unprot = Encoder::new();
    unprot.raw(&[0xa1]).uint(4).bytes(&k.key_id().0);
    assert!(dec(&assemble(
        &k,
        &[0xd2],
        &prot,
        unprot.as_bytes(),
        None,
        &payload
    )));
    // Another algorithm (ES256, -7) in the protected header.
    let es = protected(-7, &k.key_id().0);
    assert!(dec(&assemble(&k, &[0xd2], &es, &[0xa0], None, &payload)));
    // An extra protected parameter (content type 3: 0).
    let mut extra = vec![0xa3, 0x01, 0x27, 0x03, 0x00, 0x04, 0x58, 0x20];
    extra.extend_from_slice(&k.key_id().0);
    assert!(dec(&assemble(&k, &[0xd2], &extra, &[0xa0], None, &payload)));
    // A kid that is not 32 bytes.
    let short = protected(-8, &k.key_id().0[..16]);
    assert!(dec(&assemble(&k, &[0xd2], &short, &[0xa0], None, &payload)));
    // Detached payload (null).
    let mut e = Encoder::new();
    e.raw(&[0xd2]).array(4).bytes(&prot).raw(&[0xa0]).null();
    e.bytes(&k.sign(&sig_structure(&prot, &payload)).0);
    assert!(dec(&e.into_bytes()));
    // Untagged COSE_Sign1 and a COSE_Mac0 where a COSE_Sign1 is expected.
    let good = cose::sign(&k, &sample_ping());
    assert!(dec(&good[1..]));
    let maced = cose::mac(&MacKey::new([1; 32]), &sample_ping());
    assert!(dec(&maced));
    assert!(matches!(
        cose::verify_mac::<Ping>(&good, &MacKey::new([1; 32])),
        Err(Error::Decode(_))
    ));
}

#[test]
fn signer_must_be_the_expected_key() {
    let signed = cose::sign(&key(1), &sample_ping());
    assert!(matches!(
        cose::verify::<Ping>(&signed, &key(2).verifying_key()),
        Err(Error::NotAuthorised(_))
    ));
    assert!(matches!(
        cose::verify_with::<Ping>(&signed, |_| None),
        Err(Error::NotAuthorised(_))
    ));
    // A lookup that answers with the wrong key for the kid.
    let other = key(2).verifying_key();
    assert!(matches!(
        cose::verify_with::<Ping>(&signed, |_| Some(other)),
        Err(Error::NotAuthorised(_))
    ));
}

#[test]
fn payload_tag_is_checked_before_the_signature() {
    let k = key(1);
    let pong = wire::encode(&Pong { ping_hash: [0; 32] });
    // Garbage signature: the tag check must fire first.
    let prot = protected(-8, &k.key_id().0);
    let mut e = Encoder::new();
    e.raw(&[0xd2])
        .array(4)
        .bytes(&prot)
        .raw(&[0xa0])
        .bytes(&pong)
        .bytes(&[0; 64]);
    assert_eq!(
        cose::verify::<Ping>(&e.into_bytes(), &k.verifying_key()),
        Err(Error::Decode(DecodeError::WrongTag {
            expected: tags::TEST_PING,
            found: tags::TEST_PONG
        }))
    );
    // Unregistered tag in the payload.
    let mut e = Encoder::new();
    e.array(2).field(&wire::Tag::new(7, 7, 7)).uint(0);
    let signed = cose::sign_raw(&k, e.as_bytes());
    assert_eq!(
        cose::verify::<Ping>(&signed, &k.verifying_key()),
        Err(Error::Decode(DecodeError::UnknownTag(wire::Tag::new(
            7, 7, 7
        ))))
    );
    // Same with MAC.
    let mk = MacKey::new([2; 32]);
    let maced = cose::mac(&mk, &Pong { ping_hash: [0; 32] });
    assert!(matches!(
        cose::verify_mac::<Ping>(&maced, &mk),
        Err(Error::Decode(DecodeError::WrongTag { .. }))
    ));
}

#[test]
fn oversized_is_rejected() {
    let k = key(1);
    let big = cose::sign_raw(&k, &vec![0; Ping::MAX_LEN + 200]);
    assert!(matches!(
        cose::verify::<Ping>(&big, &k.verifying_key()),
        Err(Error::Decode(DecodeError::TooLarge {
            what: "COSE_Sign1",
            ..
        }))
    ));
    let huge = vec![0u8; MAX_SIGN1_LEN + 1];
    assert!(matches!(
        cose::verify_raw(&huge, &k.verifying_key()),
        Err(Error::Decode(DecodeError::TooLarge { .. }))
    ));
    // A payload within the COSE limit but over the message's own limit.
    let mut p = sample_ping();
    p.data = vec![0; Ping::MAX_DATA_LEN + 1];
    let signed = cose::sign(&k, &p);
    assert!(matches!(
        cose::verify::<Ping>(&signed, &k.verifying_key()),
        Err(Error::Decode(DecodeError::TooLarge {
            what: "ping data",
            ..
        }))
    ));
}

const _: () = assert!(Ping::MAX_LEN + cose::SIGN1_OVERHEAD < MAX_SIGN1_LEN);
