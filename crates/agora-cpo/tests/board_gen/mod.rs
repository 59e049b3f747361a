//! Random CPO boards and listing filters, shared by agora-cpo's
//! tests/listing_props.rs (the filters against an oracle) and agora-store's
//! tests/board_search_props.rs (SQLite against the in-memory board).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_cpo::msg::Mode;
use agora_cpo::ports::{Binding, Board, BoardEntry, ListFilter};
use agora_cpo::{Ccpo, CcpoDraft};
use proptest::prelude::*;

/// Words of goods and terms: mixed ASCII case, non-ASCII letters in both
/// cases (folded by nobody), words inside words.
pub const VOCAB: &[&str] = &[
    "bike", "Bicycle", "RED", "red", "Lens", "camera", "Crème", "CRÈME", "Paris", "wine", "é",
    "ab", "b",
];

/// Search words: the vocabulary, its other cases, and fragments.
pub const QUERY_WORDS: &[&str] = &[
    "bike", "BIKE", "bicycle", "red", "Red", "lens", "cam", "crème", "CRÈME", "crÈme", "È", "é",
    "paris", "ine", "ab", "b", "zebra", "e",
];

pub const BIG: u64 = i64::MAX as u64;

pub fn text(
    vocab: &'static [&'static str],
    words: std::ops::Range<usize>,
) -> BoxedStrategy<String> {
    prop::collection::vec(
        (
            prop::sample::select(vocab),
            prop::sample::select(&[" ", "  ", "\t", "\n"][..]),
        ),
        words,
    )
    .prop_map(|ws| {
        ws.iter()
            .enumerate()
            .map(|(i, (w, sep))| {
                if i == 0 {
                    w.to_string()
                } else {
                    format!("{sep}{w}")
                }
            })
            .collect()
    })
    .boxed()
}

/// Cents or seconds: mostly small, sometimes around and beyond `i64::MAX`
/// (where the store saturates).
pub fn number(small: u64) -> BoxedStrategy<u64> {
    prop_oneof![
        8 => 0..small,
        1 => (BIG - 2)..=(BIG + 2),
        1 => Just(u64::MAX),
    ]
    .boxed()
}

pub fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["EUR", "USD"]).prop_map(|c| Currency::new(c).unwrap())
}

pub fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::FirstCome), Just(Mode::Bidding)]
}

/// One board entry (its id from `n` and a random leading byte, so ids are
/// unique but not in posting order) and whether it is bound.
pub fn entry(n: u16) -> impl Strategy<Value = (BoardEntry, bool)> {
    (
        any::<u8>(),
        text(VOCAB, 1..4),
        text(VOCAB, 0..4),
        number(500).prop_map(|c| c.max(1)),
        currency(),
        number(400),
        prop_oneof![4 => 1..400u64, 1 => Just(u64::MAX)],
        mode(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            move |(lead, goods, terms, cents, cur, start, len, mode, bound)| {
                let mut id = [0u8; 32];
                id[0] = lead;
                id[1..3].copy_from_slice(&n.to_be_bytes());
                let ccpo = Ccpo::with_id(
                    id,
                    CcpoDraft {
                        arbiter: KeyId([1; 32]),
                        server: KeyId([2; 32]),
                        goods,
                        price: Money::new(cents, cur),
                        start: Timestamp(start.min(u64::MAX - 1)),
                        end: Timestamp(start.min(u64::MAX - 1).saturating_add(len)),
                        terms,
                        bond: vec![0x30, 0x03, 1, 2, 3],
                    },
                )
                .unwrap();
                let e = BoardEntry {
                    ccpo,
                    mode,
                    buyer: KeyId([3; 32]),
                    posted_at: Timestamp(1),
                    acceptance: vec![1],
                    posted: vec![2],
                };
                (e, bound)
            },
        )
}

pub fn board() -> impl Strategy<Value = Vec<(BoardEntry, bool)>> {
    (0usize..40).prop_flat_map(|len| {
        (0..len)
            .map(|n| entry(u16::try_from(n).unwrap()))
            .collect::<Vec<_>>()
    })
}

pub fn filter() -> impl Strategy<Value = ListFilter> {
    (
        prop::option::weighted(0.6, text(QUERY_WORDS, 0..4)),
        prop::option::of(number(600)),
        prop::option::of(number(600)),
        prop::option::of(currency()),
        prop::option::of(number(800).prop_map(Timestamp)),
        prop::option::of(mode()),
    )
        .prop_map(
            |(text, min_price_cents, max_price_cents, currency, active_at, mode)| ListFilter {
                text,
                min_price_cents,
                max_price_cents,
                currency,
                active_at,
                mode,
            },
        )
}

pub fn now() -> impl Strategy<Value = Timestamp> {
    number(800).prop_map(Timestamp)
}

pub fn post_all(b: &impl Board, entries: &[(BoardEntry, bool)]) {
    for (e, bound) in entries {
        b.post(e).unwrap();
        if *bound {
            let binding = Binding {
                seller: KeyId([4; 32]),
                bound_at: Timestamp(2),
                bound_cpo: vec![3],
            };
            b.try_bind(&e.ccpo.id, &binding).unwrap();
        }
    }
}
