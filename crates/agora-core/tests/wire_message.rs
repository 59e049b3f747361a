#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Messages on the wire: `[tag, fields...]`. Round trips of every field type
//! and named rejections: truncated, extended, non-canonical, re-tagged,
//! oversized.

mod common;

use agora_core::crypto::{Signature, VerifyingKey, X25519Public};
use agora_core::wire::{self, tags, Decoder, Encoder, Field, Message, Ping, Pong, Tag};
use agora_core::{DecodeError, KeyId, Money, Timestamp};
use common::{arb_money, arb_ping, key, sample_ping};
use proptest::collection::vec;
use proptest::prelude::*;

fn field_round_trip<T: Field + PartialEq + std::fmt::Debug>(v: &T) -> T {
    let mut e = Encoder::new();
    e.field(v);
    let b = e.into_bytes();
    let mut d = Decoder::new(&b);
    let out = d.field::<T>().unwrap();
    d.finish().unwrap();
    out
}

fn retag(bytes: &[u8], tag: Tag) -> Vec<u8> {
    // Array head (1 byte), then the tag (4 bytes for parts below 24).
    assert_eq!(&bytes[1..5], &tags::TEST_PING.to_cbor()[..]);
    let mut out = bytes[..1].to_vec();
    out.extend_from_slice(&tag.to_cbor());
    out.extend_from_slice(&bytes[5..]);
    out
}

proptest! {
    #[test]
    fn ping_round_trip(p in arb_ping()) {
        let b = wire::encode(&p);
        prop_assert!(b.len() <= Ping::MAX_LEN);
        prop_assert_eq!(wire::peek_tag(&b)?, tags::TEST_PING);
        prop_assert_eq!(wire::decode::<Ping>(&b)?, p);
    }

    #[test]
    fn tag_round_trip(s in any::<u8>(), p in any::<u8>(), st in any::<u8>()) {
        let t = Tag::new(s, p, st);
        prop_assert_eq!(field_round_trip(&t), t);
        prop_assert_eq!(t.to_cbor(), {
            let mut e = Encoder::new();
            e.array(3).uint(s.into()).uint(p.into()).uint(st.into());
            e.into_bytes()
        });
    }

    #[test]
    fn money_round_trip(m in arb_money()) {
        prop_assert_eq!(field_round_trip(&m), m);
    }

    #[test]
    fn fixed_fields_round_trip(
        k in any::<[u8; 32]>(),
        t in any::<u64>(),
        sig in proptest::array::uniform32(any::<u8>()),
        n in any::<[u8; 12]>(),
        seed in any::<[u8; 32]>(),
        i in any::<i64>(),
        b in any::<bool>(),
    ) {
        prop_assert_eq!(field_round_trip(&KeyId(k)), KeyId(k));
        prop_assert_eq!(field_round_trip(&Timestamp(t)), Timestamp(t));
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&sig);
        prop_assert_eq!(field_round_trip(&Signature(s)), Signature(s));
        prop_assert_eq!(field_round_trip(&n), n);
        prop_assert_eq!(field_round_trip(&X25519Public(k)), X25519Public(k));
        let vk = agora_core::crypto::SigningKey::from_seed(&seed).verifying_key();
        prop_assert_eq!(field_round_trip(&vk), vk);
        prop_assert_eq!(field_round_trip(&Some(vk)), Some(vk));
        prop_assert_eq!(field_round_trip(&None::<VerifyingKey>), None);
        prop_assert_eq!(field_round_trip(&i), i);
        prop_assert_eq!(field_round_trip(&b), b);
    }

    /// Arbitrary input never panics the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(b in vec(any::<u8>(), 0..300)) {
        let _ = wire::decode::<Ping>(&b);
        let _ = wire::decode::<Pong>(&b);
        let _ = wire::peek_tag(&b);
    }

    /// A mutated message either fails or is the unique encoding of what it
    /// decodes to (canonical: one value, one encoding).
    #[test]
    fn mutations_fail_or_stay_canonical(p in arb_ping(), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut b = wire::encode(&p);
        let i = at.index(b.len());
        b[i] = v;
        if let Ok(q) = wire::decode::<Ping>(&b) {
            prop_assert_eq!(wire::encode(&q), b);
        }
    }
}

#[test]
fn truncated_at_every_length() {
    let b = wire::encode(&sample_ping());
    for cut in 0..b.len() {
        assert_eq!(
            wire::decode::<Ping>(&b[..cut]),
            Err(DecodeError::Truncated),
            "cut at {cut}"
        );
    }
}

#[test]
fn extended_by_a_trailing_byte() {
    let mut b = wire::encode(&sample_ping());
    b.push(0);
    assert_eq!(wire::decode::<Ping>(&b), Err(DecodeError::TrailingBytes(1)));
    // A whole second message after the first.
    let mut two = wire::encode(&sample_ping());
    let n = two.len();
    two.extend_from_slice(&wire::encode(&sample_ping()));
    assert_eq!(
        wire::decode::<Ping>(&two),
        Err(DecodeError::TrailingBytes(n))
    );
}

/// A ping written field by field, so that one field can be written wrongly.
fn ping_with_raw_timestamp(raw_ts: &[u8]) -> Vec<u8> {
    let p = sample_ping();
    let mut e = Encoder::new();
    e.array(7)
        .field(&Ping::TAG)
        .field(&p.nonce)
        .raw(raw_ts)
        .field(&p.sender)
        .field(&p.amount)
        .text(&p.note)
        .bytes(&p.data);
    e.into_bytes()
}

#[test]
fn non_canonical_is_rejected() {
    // The same message with the shortest head decodes.
    let ok = ping_with_raw_timestamp(&[0x05]);
    assert_eq!(wire::decode::<Ping>(&ok).unwrap().sent_at, Timestamp(5));
    // 5 written in two, three, five and nine bytes.
    for raw in [
        &[0x18, 5][..],
        &[0x19, 0, 5],
        &[0x1a, 0, 0, 0, 5],
        &[0x1b, 0, 0, 0, 0, 0, 0, 0, 5],
    ] {
        assert_eq!(
            wire::decode::<Ping>(&ping_with_raw_timestamp(raw)),
            Err(DecodeError::NonCanonical(
                "integer head not in shortest form"
            )),
            "{raw:02x?}"
        );
    }
    // Indefinite-length message array.
    let mut b = wire::encode(&sample_ping());
    assert_eq!(b[0], 0x87);
    b[0] = 0x9f;
    b.push(0xff);
    assert_eq!(
        wire::decode::<Ping>(&b),
        Err(DecodeError::NonCanonical("indefinite-length item"))
    );
    // Non-shortest array head of the message.
    let mut b = wire::encode(&sample_ping());
    b.splice(0..1, [0x98, 7]);
    assert!(matches!(
        wire::decode::<Ping>(&b),
        Err(DecodeError::NonCanonical(_))
    ));
    // A map or a CBOR tag where the timestamp goes.
    assert!(matches!(
        wire::decode::<Ping>(&ping_with_raw_timestamp(&[0xa0])),
        Err(DecodeError::Unexpected(_))
    ));
    assert!(matches!(
        wire::decode::<Ping>(&ping_with_raw_timestamp(&[0xc1, 0x05])),
        Err(DecodeError::Unexpected(_))
    ));
    // A float where the timestamp goes.
    assert!(matches!(
        wire::decode::<Ping>(&ping_with_raw_timestamp(&[0xf9, 0x45, 0x00])),
        Err(DecodeError::Unexpected(_))
    ));
}

#[test]
fn retagged_messages_are_rejected_before_their_fields() {
    let b = wire::encode(&sample_ping());
    // Registered but different.
    assert_eq!(
        wire::decode::<Ping>(&retag(&b, tags::TEST_PONG)),
        Err(DecodeError::WrongTag {
            expected: tags::TEST_PING,
            found: tags::TEST_PONG
        })
    );
    assert_eq!(
        wire::decode::<Ping>(&retag(&b, tags::CPO_ARBITER_ACCEPTANCE)),
        Err(DecodeError::WrongTag {
            expected: tags::TEST_PING,
            found: tags::CPO_ARBITER_ACCEPTANCE
        })
    );
    // Not in the registry.
    let unknown = Tag::new(9, 9, 9);
    assert_eq!(
        wire::decode::<Ping>(&retag(&b, unknown)),
        Err(DecodeError::UnknownTag(unknown))
    );
    assert_eq!(
        wire::peek_tag(&retag(&b, unknown)),
        Err(DecodeError::UnknownTag(unknown))
    );
    // The tag is judged before the field count and the fields: garbage
    // after another tag still gives WrongTag.
    let mut e = Encoder::new();
    e.array(2).field(&tags::TEST_PONG).raw(&[0xff, 0x1c]);
    assert_eq!(
        wire::decode::<Ping>(&e.into_bytes()),
        Err(DecodeError::WrongTag {
            expected: tags::TEST_PING,
            found: tags::TEST_PONG
        })
    );
    // A valid Pong is not a Ping, and the other way round.
    let pong = wire::encode(&Pong { ping_hash: [1; 32] });
    assert!(matches!(
        wire::decode::<Ping>(&pong),
        Err(DecodeError::WrongTag { .. })
    ));
    // A tag part over 255.
    let mut e = Encoder::new();
    e.array(7).array(3).uint(0).uint(0).uint(257);
    assert_eq!(
        wire::decode::<Ping>(&e.into_bytes()),
        Err(DecodeError::Invalid("tag part over 255"))
    );
    // Right tag, wrong field count.
    let mut b = wire::encode(&sample_ping());
    b[0] = 0x86;
    assert!(matches!(
        wire::decode::<Ping>(&b),
        Err(DecodeError::Unexpected(_))
    ));
    // Empty array: no tag at all.
    assert!(matches!(
        wire::decode::<Ping>(&[0x80]),
        Err(DecodeError::Unexpected(_))
    ));
}

#[test]
fn oversized_is_rejected() {
    let huge = vec![0u8; Ping::MAX_LEN + 1];
    assert_eq!(
        wire::decode::<Ping>(&huge),
        Err(DecodeError::TooLarge {
            what: "message",
            limit: Ping::MAX_LEN
        })
    );
    // A field over its own limit, in a message under the message limit.
    let mut p = sample_ping();
    p.data = vec![0; Ping::MAX_DATA_LEN + 1];
    assert_eq!(
        wire::decode::<Ping>(&wire::encode(&p)),
        Err(DecodeError::TooLarge {
            what: "ping data",
            limit: Ping::MAX_DATA_LEN
        })
    );
    let mut p = sample_ping();
    p.note = "x".repeat(Ping::MAX_NOTE_LEN + 1);
    assert_eq!(
        wire::decode::<Ping>(&wire::encode(&p)),
        Err(DecodeError::TooLarge {
            what: "ping note",
            limit: Ping::MAX_NOTE_LEN
        })
    );
    let too_big = vec![0u8; wire::MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        wire::peek_tag(&too_big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn field_values_are_validated() {
    // Money: the currency must be three capital letters.
    for bad in ["eur", "EU", "EURO", "E1R"] {
        let mut e = Encoder::new();
        e.array(2).uint(5).text(bad);
        let b = e.into_bytes();
        assert!(Decoder::new(&b).field::<Money>().is_err(), "{bad}");
    }
    // Verifying keys are parsed strictly: the identity point is small-order.
    let mut id = [0u8; 32];
    id[0] = 1;
    let mut e = Encoder::new();
    e.bytes(&id);
    let b = e.into_bytes();
    assert!(matches!(
        Decoder::new(&b).field::<VerifyingKey>(),
        Err(DecodeError::Invalid(_))
    ));
    // Fixed sizes are exact.
    let mut e = Encoder::new();
    e.bytes(&[0; 31]);
    let b = e.into_bytes();
    assert!(Decoder::new(&b).field::<KeyId>().is_err());
    let mut e = Encoder::new();
    e.bytes(&[0; 65]);
    let b = e.into_bytes();
    assert!(matches!(
        Decoder::new(&b).field::<Signature>(),
        Err(DecodeError::TooLarge { .. })
    ));
    // Option: null or the value, nothing else.
    let b = [0xf4];
    assert!(Decoder::new(&b).field::<Option<Timestamp>>().is_err());
    let _ = key(1);
}
