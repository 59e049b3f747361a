#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `PKE(X, Sign(X))`: round trips and named rejections: every bit flipped,
//! truncated, extended, re-tagged, sent to another party, redirected, inner
//! tag different from the outer one, unknown sender, oversized.

mod common;

use agora_core::crypto::{hpke, SigningKey, VerifyingKey, X25519Secret};
use agora_core::wire::envelope::{self, Opened};
use agora_core::wire::{self, cose, tags, Encoder, Message, Ping, Pong, Tag};
use agora_core::{DecodeError, Error, KeyId};
use common::{arb_ping, key, sample_ping};
use proptest::collection::vec;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct World {
    rng: ChaCha20Rng,
    sender: SigningKey,
    bob: X25519Secret,
    carol: X25519Secret,
}

fn world(seed: u64) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let bob = X25519Secret::generate(&mut rng);
    let carol = X25519Secret::generate(&mut rng);
    World {
        rng,
        sender: key(1),
        bob,
        carol,
    }
}

fn lookup(vk: VerifyingKey) -> impl Fn(&KeyId) -> Option<VerifyingKey> {
    move |id| (*id == vk.key_id()).then_some(vk)
}

fn sealed_ping(w: &mut World) -> Vec<u8> {
    envelope::seal(&mut w.rng, &w.sender, &w.bob.public(), &sample_ping()).unwrap()
}

fn open_ping(w: &World, b: &[u8]) -> Result<Opened<Ping>, Error> {
    envelope::open::<Ping>(b, &w.bob, lookup(w.sender.verifying_key()))
}

/// An envelope built by hand: outer tag `outer`, addressed to `rid`, sealed
/// to `to` with `info`/`aad` for `outer`, carrying `signed`.
fn hand_sealed(
    rng: &mut ChaCha20Rng,
    outer: Tag,
    rid: KeyId,
    to: &X25519Secret,
    signed: &[u8],
) -> Vec<u8> {
    let mut info = b"agora/1".to_vec();
    info.extend_from_slice(&outer.to_cbor());
    let mut aad = outer.to_cbor();
    aad.extend_from_slice(&rid.0);
    let (enc, ct) = hpke::seal(rng, &to.public(), &info, &aad, signed).unwrap();
    let mut e = Encoder::new();
    e.array(4).field(&outer).field(&rid).bytes(&enc).bytes(&ct);
    e.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_open_round_trip(p in arb_ping(), seed in any::<u64>()) {
        let mut w = world(seed);
        let b = envelope::seal(&mut w.rng, &w.sender, &w.bob.public(), &p).unwrap();
        prop_assert!(b.len() <= envelope::max_len::<Ping>());
        prop_assert_eq!(envelope::peek_tag(&b)?, tags::TEST_PING);
        let o = open_ping(&w, &b)?;
        prop_assert_eq!(&o.message, &p);
        prop_assert_eq!(o.signer, w.sender.key_id());
        // The inner signed message is evidence a third party can verify.
        prop_assert_eq!(cose::verify::<Ping>(&o.signed, &w.sender.verifying_key())?, p);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in vec(any::<u8>(), 0..400)) {
        let w = world(1);
        prop_assert!(open_ping(&w, &b).is_err());
        let _ = envelope::peek_tag(&b);
    }

    #[test]
    fn mutated_envelopes_never_open(at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut w = world(2);
        let mut b = sealed_ping(&mut w);
        let i = at.index(b.len());
        prop_assume!(b[i] != v);
        b[i] = v;
        prop_assert!(open_ping(&w, &b).is_err());
    }
}

#[test]
fn seals_are_randomised() {
    let mut w = world(3);
    assert_ne!(sealed_ping(&mut w), sealed_ping(&mut w));
}

#[test]
fn every_flipped_bit_is_rejected() {
    let mut w = world(4);
    let b = sealed_ping(&mut w);
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut t = b.clone();
            t[i] ^= 1 << bit;
            assert!(open_ping(&w, &t).is_err(), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn truncated_and_extended_are_rejected() {
    let mut w = world(5);
    let b = sealed_ping(&mut w);
    for cut in 0..b.len() {
        assert!(
            matches!(open_ping(&w, &b[..cut]), Err(Error::Decode(_))),
            "cut {cut}"
        );
    }
    let mut ext = b.clone();
    ext.push(0);
    assert_eq!(
        open_ping(&w, &ext).unwrap_err(),
        Error::Decode(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn sent_to_another_party_is_rejected() {
    let mut w = world(6);
    let b = sealed_ping(&mut w);
    // Carol receives Bob's envelope.
    assert_eq!(
        envelope::open::<Ping>(&b, &w.carol, lookup(w.sender.verifying_key())).unwrap_err(),
        Error::NotAuthorised("envelope addressed to another party".into())
    );
    // Redirected: the recipient id rewritten to Carol's. Carol cannot open
    // it (sealed to Bob), and the aad binds the original recipient.
    let mut e = Encoder::new();
    let rid_at = 1 + tags::TEST_PING.to_cbor().len() + 2; // array, tag, bstr head
    e.raw(&b[..rid_at]);
    let redirected = [
        e.as_bytes(),
        &w.carol.public().key_id().0,
        &b[rid_at + 32..],
    ]
    .concat();
    assert_eq!(
        envelope::open::<Ping>(&redirected, &w.carol, lookup(w.sender.verifying_key()))
            .unwrap_err(),
        Error::Crypto
    );
}

#[test]
fn inner_tag_must_equal_the_outer_tag() {
    let mut w = world(7);
    let bob_id = w.bob.public().key_id();
    // Outer says TEST_PING, inner signed message is a Pong.
    let inner = cose::sign(&w.sender, &Pong { ping_hash: [3; 32] });
    let b = hand_sealed(&mut w.rng, tags::TEST_PING, bob_id, &w.bob, &inner);
    assert_eq!(
        open_ping(&w, &b).unwrap_err(),
        Error::Decode(DecodeError::WrongTag {
            expected: tags::TEST_PING,
            found: tags::TEST_PONG
        })
    );
    // The same construction with matching tags opens: the test is sound.
    let inner = cose::sign(&w.sender, &sample_ping());
    let b = hand_sealed(&mut w.rng, tags::TEST_PING, bob_id, &w.bob, &inner);
    assert_eq!(open_ping(&w, &b).unwrap().message, sample_ping());
}

#[test]
fn retagged_envelopes_are_rejected_first() {
    let mut w = world(8);
    let bob_id = w.bob.public().key_id();
    // A Pong envelope offered as a Ping: WrongTag, whatever follows.
    let pong = envelope::seal(
        &mut w.rng,
        &w.sender,
        &w.bob.public(),
        &Pong { ping_hash: [0; 32] },
    )
    .unwrap();
    assert!(matches!(
        open_ping(&w, &pong).unwrap_err(),
        Error::Decode(DecodeError::WrongTag { .. })
    ));
    let mut e = Encoder::new();
    e.array(2).field(&tags::CPO_BOUND_CPO).raw(&[0xff]);
    assert_eq!(
        open_ping(&w, e.as_bytes()).unwrap_err(),
        Error::Decode(DecodeError::WrongTag {
            expected: tags::TEST_PING,
            found: tags::CPO_BOUND_CPO
        })
    );
    let mut e = Encoder::new();
    e.array(4).field(&Tag::new(0, 9, 9));
    assert_eq!(
        open_ping(&w, e.as_bytes()).unwrap_err(),
        Error::Decode(DecodeError::UnknownTag(Tag::new(0, 9, 9)))
    );
    // The outer tag rewritten on a valid envelope: HPKE info and aad bind
    // the tag, so it fails even though the inner message matches the new
    // outer tag.
    let inner = cose::sign(&w.sender, &Pong { ping_hash: [4; 32] });
    let b = hand_sealed(&mut w.rng, tags::TEST_PING, bob_id, &w.bob, &inner);
    let pong_tag = tags::TEST_PONG.to_cbor();
    let swapped = [&b[..1], &pong_tag[..], &b[1 + pong_tag.len()..]].concat();
    assert_eq!(
        envelope::open::<Pong>(&swapped, &w.bob, lookup(w.sender.verifying_key())).unwrap_err(),
        Error::Crypto
    );
    // Control: sealed for TEST_PONG it opens.
    let good = hand_sealed(&mut w.rng, tags::TEST_PONG, bob_id, &w.bob, &inner);
    assert!(envelope::open::<Pong>(&good, &w.bob, lookup(w.sender.verifying_key())).is_ok());
}

#[test]
fn unknown_sender_is_not_authorised() {
    let mut w = world(9);
    let b = sealed_ping(&mut w);
    assert!(matches!(
        envelope::open::<Ping>(&b, &w.bob, |_| None),
        Err(Error::NotAuthorised(_))
    ));
    // A lookup that returns another key for the signer's id.
    let other = key(2).verifying_key();
    assert!(matches!(
        envelope::open::<Ping>(&b, &w.bob, move |_| Some(other)),
        Err(Error::NotAuthorised(_))
    ));
}

#[test]
fn oversized_is_rejected() {
    let w = world(10);
    let huge = vec![0u8; envelope::max_len::<Ping>() + 1];
    assert_eq!(
        open_ping(&w, &huge).unwrap_err(),
        Error::Decode(DecodeError::TooLarge {
            what: "envelope",
            limit: envelope::max_len::<Ping>()
        })
    );
    // An envelope whose ciphertext field is over its own limit.
    let mut e = Encoder::new();
    e.array(4)
        .field(&Ping::TAG)
        .field(&w.bob.public().key_id())
        .bytes(&[0; 32])
        .bytes(&vec![
            0;
            Ping::MAX_LEN
                + cose::SIGN1_OVERHEAD
                + hpke::OVERHEAD
                + 1
        ]);
    assert!(matches!(
        open_ping(&w, e.as_bytes()).unwrap_err(),
        Error::Decode(DecodeError::TooLarge {
            what: "envelope ciphertext",
            ..
        })
    ));
    let _ = wire::MAX_MESSAGE_LEN;
}
