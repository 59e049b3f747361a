#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Deterministic CBOR: round trips, agreement with ciborium, and rejection of
//! non-canonical, truncated and extended input.

use agora_core::wire::cbor::{Decoder, Encoder};
use agora_core::DecodeError;
use ciborium::value::Value;
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Uint(u64),
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Item>),
    Bool(bool),
    Null,
}

const BOUNDARIES: &[u64] = &[
    0,
    23,
    24,
    255,
    256,
    65_535,
    65_536,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    u64::MAX,
];

fn arb_uint() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), proptest::sample::select(BOUNDARIES)]
}

fn arb_item() -> impl Strategy<Value = Item> {
    let leaf = prop_oneof![
        arb_uint().prop_map(Item::Uint),
        any::<i64>().prop_map(Item::Int),
        arb_uint().prop_map(|u| Item::Int(-1 - (u >> 1) as i64)),
        vec(any::<u8>(), 0..300).prop_map(Item::Bytes),
        "\\PC{0,40}".prop_map(Item::Text),
        any::<bool>().prop_map(Item::Bool),
        Just(Item::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| vec(inner, 0..8).prop_map(Item::Array))
}

fn encode(item: &Item, e: &mut Encoder) {
    match item {
        Item::Uint(v) => {
            e.uint(*v);
        }
        Item::Int(v) => {
            e.int(*v);
        }
        Item::Bytes(b) => {
            e.bytes(b);
        }
        Item::Text(s) => {
            e.text(s);
        }
        Item::Array(items) => {
            e.array(items.len());
            for i in items {
                encode(i, e);
            }
        }
        Item::Bool(b) => {
            e.bool(*b);
        }
        Item::Null => {
            e.null();
        }
    }
}

fn to_bytes(item: &Item) -> Vec<u8> {
    let mut e = Encoder::new();
    encode(item, &mut e);
    e.into_bytes()
}

/// Decode guided by the expected shape.
fn decode_like(shape: &Item, d: &mut Decoder<'_>) -> Result<Item, DecodeError> {
    Ok(match shape {
        Item::Uint(_) => Item::Uint(d.uint()?),
        Item::Int(_) => Item::Int(d.int()?),
        Item::Bytes(_) => Item::Bytes(d.bytes("bytes", 1 << 16)?.to_vec()),
        Item::Text(_) => Item::Text(d.text("text", 1 << 16)?.to_owned()),
        Item::Array(items) => {
            d.array(items.len())?;
            let mut out = Vec::new();
            for i in items {
                out.push(decode_like(i, d)?);
            }
            Item::Array(out)
        }
        Item::Bool(_) => Item::Bool(d.bool()?),
        Item::Null => {
            d.null()?;
            Item::Null
        }
    })
}

fn decode_all(shape: &Item, bytes: &[u8]) -> Result<Item, DecodeError> {
    let mut d = Decoder::new(bytes);
    let item = decode_like(shape, &mut d)?;
    d.finish()?;
    Ok(item)
}

fn to_value(item: &Item) -> Value {
    match item {
        Item::Uint(v) => Value::Integer((*v).into()),
        Item::Int(v) => Value::Integer((*v).into()),
        Item::Bytes(b) => Value::Bytes(b.clone()),
        Item::Text(s) => Value::Text(s.clone()),
        Item::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Item::Bool(b) => Value::Bool(*b),
        Item::Null => Value::Null,
    }
}

/// The head of major type `major` with argument `arg` in `width` extra bytes
/// (0 = in the initial byte).
fn long_head(major: u8, arg: u64, width: usize) -> Vec<u8> {
    let ai = match width {
        1 => 24,
        2 => 25,
        4 => 26,
        _ => 27,
    };
    let mut v = vec![(major << 5) | ai];
    v.extend_from_slice(&arg.to_be_bytes()[8 - width..]);
    v
}

fn min_width(v: u64) -> usize {
    match v {
        0..=23 => 0,
        24..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

proptest! {
    #[test]
    fn round_trip(item in arb_item()) {
        let bytes = to_bytes(&item);
        prop_assert_eq!(decode_all(&item, &bytes)?, item);
    }

    #[test]
    fn ciborium_reads_the_same_value_and_writes_the_same_bytes(item in arb_item()) {
        let bytes = to_bytes(&item);
        let v: Value = ciborium::de::from_reader(&bytes[..]).unwrap();
        prop_assert_eq!(&v, &to_value(&item));
        let mut theirs = Vec::new();
        ciborium::ser::into_writer(&to_value(&item), &mut theirs).unwrap();
        prop_assert_eq!(theirs, bytes);
    }

    #[test]
    fn truncated_at_every_length(item in arb_item()) {
        let bytes = to_bytes(&item);
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_all(&item, &bytes[..cut]), Err(DecodeError::Truncated));
        }
    }

    #[test]
    fn extended_by_a_byte(item in arb_item(), extra in any::<u8>()) {
        let mut bytes = to_bytes(&item);
        bytes.push(extra);
        prop_assert_eq!(decode_all(&item, &bytes), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn non_shortest_heads_are_rejected(v in arb_uint(), major in 0u8..=4) {
        for width in [1usize, 2, 4, 8] {
            if width <= min_width(v) {
                continue;
            }
            let mut bytes = long_head(major, v, width);
            let mut d = Decoder::new(&bytes);
            let r = match major {
                0 => d.uint().map(|_| ()),
                1 => d.int().map(|_| ()),
                2 => d.bytes("b", usize::MAX).map(|_| ()),
                3 => d.text("t", usize::MAX).map(|_| ()),
                _ => d.array_any().map(|_| ()),
            };
            prop_assert_eq!(
                r,
                Err(DecodeError::NonCanonical("integer head not in shortest form"))
            );
            bytes.clear();
        }
    }

    /// Any input, any sequence of reads: errors, never a panic.
    #[test]
    fn arbitrary_input_never_panics(bytes in vec(any::<u8>(), 0..64), ops in vec(0u8..9, 1..12)) {
        let mut d = Decoder::new(&bytes);
        for op in ops {
            let r = match op {
                0 => d.uint().map(|_| ()),
                1 => d.int().map(|_| ()),
                2 => d.bytes("b", 16).map(|_| ()),
                3 => d.text("t", 16).map(|_| ()),
                4 => d.array_max("a", 4).map(|_| ()),
                5 => d.bool().map(|_| ()),
                6 => d.null().map(|_| ()),
                7 => d.array(2),
                _ => d.bytes_exact::<4>("fixed").map(|_| ()),
            };
            if r.is_err() {
                break;
            }
        }
        let _ = d.finish();
    }
}

#[test]
fn indefinite_lengths_are_rejected() {
    // (_ h'01'), (_ "a"), [_ 1], {_ }: RFC 8949 section 3.2.
    for (h, what) in [("5f4101ff", 2), ("7f6161ff", 3), ("9f01ff", 4)] {
        let b = hex::decode(h).unwrap();
        let mut d = Decoder::new(&b);
        let r = match what {
            2 => d.bytes("b", 8).map(|_| ()),
            3 => d.text("t", 8).map(|_| ()),
            _ => d.array_any().map(|_| ()),
        };
        assert_eq!(
            r,
            Err(DecodeError::NonCanonical("indefinite-length item")),
            "{h}"
        );
    }
}

#[test]
fn foreign_items_are_rejected() {
    // map, tag, half float, single float, double float, undefined, simple(32)
    for h in [
        "a10102",
        "d818420101",
        "f93c00",
        "fa3f800000",
        "fb3ff0000000000000",
        "f7",
        "f820",
    ] {
        let b = hex::decode(h).unwrap();
        let r = Decoder::new(&b).uint();
        assert!(matches!(r, Err(DecodeError::Unexpected(_))), "{h}: {r:?}");
    }
    // Reserved additional information 28-30 in every major type.
    for major in 0u8..8 {
        for ai in 28u8..=30 {
            let b = [(major << 5) | ai, 0, 0, 0, 0, 0, 0, 0, 0];
            let r = Decoder::new(&b).uint();
            assert_eq!(
                r,
                Err(DecodeError::Invalid("reserved additional information"))
            );
        }
    }
    // Integers outside i64.
    let b = hex::decode("1b8000000000000000").unwrap();
    assert!(matches!(
        Decoder::new(&b).int(),
        Err(DecodeError::Invalid(_))
    ));
    let b = hex::decode("3b8000000000000000").unwrap();
    assert!(matches!(
        Decoder::new(&b).int(),
        Err(DecodeError::Invalid(_))
    ));
    assert_eq!(
        Decoder::new(&hex::decode("3b7fffffffffffffff").unwrap()).int(),
        Ok(i64::MIN)
    );
}

#[test]
fn invalid_utf8_is_rejected() {
    for h in ["61ff", "62c328", "63eda080"] {
        let b = hex::decode(h).unwrap();
        assert_eq!(
            Decoder::new(&b).text("t", 8),
            Err(DecodeError::Invalid("text string is not UTF-8")),
            "{h}"
        );
    }
}

#[test]
fn every_string_read_is_bounded() {
    let mut e = Encoder::new();
    e.bytes(&[1; 33]).text("abcd");
    let b = e.into_bytes();
    let mut d = Decoder::new(&b);
    assert_eq!(
        d.bytes("key", 32),
        Err(DecodeError::TooLarge {
            what: "key",
            limit: 32
        })
    );
    let mut d = Decoder::new(&b);
    d.bytes("key", 33).unwrap();
    assert_eq!(
        d.text("name", 3),
        Err(DecodeError::TooLarge {
            what: "name",
            limit: 3
        })
    );
    let mut e = Encoder::new();
    e.array(5);
    let b = e.into_bytes();
    assert_eq!(
        Decoder::new(&b).array_max("list", 4),
        Err(DecodeError::TooLarge {
            what: "list",
            limit: 4
        })
    );
    assert_eq!(
        Decoder::new(&b).array(4),
        Err(DecodeError::Unexpected("array of another length"))
    );
}
