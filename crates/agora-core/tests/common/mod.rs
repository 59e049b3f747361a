//! Helpers shared by the wire tests.
#![allow(dead_code)] // each test binary uses a subset of the helpers

use agora_core::crypto::SigningKey;
use agora_core::wire::Ping;
use agora_core::{Currency, KeyId, Money, Timestamp};
use proptest::collection::vec;
use proptest::prelude::*;

/// A deterministic signing key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

/// Any currency code (three capital letters).
pub fn arb_currency() -> impl Strategy<Value = Currency> {
    "[A-Z]{3}".prop_map(|s| Currency::new(&s).expect("three capitals"))
}

/// Any amount.
pub fn arb_money() -> impl Strategy<Value = Money> {
    (any::<u64>(), arb_currency()).prop_map(|(c, cur)| Money::new(c, cur))
}

/// Any ping within its limits.
pub fn arb_ping() -> impl Strategy<Value = Ping> {
    (
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        proptest::option::of(arb_money()),
        // Up to 64 chars of up to 4 bytes each: within the 256-byte limit.
        "\\PC{0,64}",
        vec(any::<u8>(), 0..=Ping::MAX_DATA_LEN),
    )
        .prop_map(|(nonce, t, sender, amount, note, data)| Ping {
            nonce,
            sent_at: Timestamp(t),
            sender: KeyId(sender),
            amount,
            note,
            data,
        })
}

/// A fixed ping.
pub fn sample_ping() -> Ping {
    Ping {
        nonce: [7; 32],
        sent_at: Timestamp(1_700_000_000),
        sender: key(1).key_id(),
        amount: Some(Money::new(1234, Currency::new("EUR").expect("EUR"))),
        note: "hello, agora".into(),
        data: vec![0xab; 100],
    }
}
