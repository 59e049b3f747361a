#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Properties of the public listing's filters: on random boards and random
//! filters, `MemoryBoard::search` returns exactly the open (unbound) entries
//! that the pure `ports::matches` selects, in id order, and paging through
//! them (limit k, continuing after the last id) gives the same list.

use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_cpo::msg::Mode;
use agora_cpo::ports::{
    matches, Binding, Board, BoardEntry, ListFilter, MemoryBoard, MAX_PAGE_LEN,
};
use agora_cpo::{Ccpo, CcpoDraft};
use proptest::prelude::*;

/// Words of goods and terms: mixed ASCII case, non-ASCII letters in both
/// cases (folded by nobody), words inside words.
const VOCAB: &[&str] = &[
    "bike", "Bicycle", "RED", "red", "Lens", "camera", "Crème", "CRÈME", "Paris", "wine", "é",
    "ab", "b",
];

/// Search words: the vocabulary, its other cases, and fragments.
const QUERY_WORDS: &[&str] = &[
    "bike", "BIKE", "bicycle", "red", "Red", "lens", "cam", "crème", "CRÈME", "crÈme", "È", "é",
    "paris", "ine", "ab", "b", "zebra", "e",
];

const BIG: u64 = i64::MAX as u64;

fn text(vocab: &'static [&'static str], words: std::ops::Range<usize>) -> BoxedStrategy<String> {
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
fn number(small: u64) -> BoxedStrategy<u64> {
    prop_oneof![
        8 => 0..small,
        1 => (BIG - 2)..=(BIG + 2),
        1 => Just(u64::MAX),
    ]
    .boxed()
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["EUR", "USD"]).prop_map(|c| Currency::new(c).unwrap())
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::FirstCome), Just(Mode::Bidding)]
}

/// One board entry (its id from `n` and a random leading byte, so ids are
/// unique but not in posting order) and whether it is bound.
fn entry(n: u16) -> impl Strategy<Value = (BoardEntry, bool)> {
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

fn board() -> impl Strategy<Value = Vec<(BoardEntry, bool)>> {
    (0usize..40).prop_flat_map(|len| {
        (0..len)
            .map(|n| entry(u16::try_from(n).unwrap()))
            .collect::<Vec<_>>()
    })
}

fn filter() -> impl Strategy<Value = ListFilter> {
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

fn now() -> impl Strategy<Value = Timestamp> {
    number(800).prop_map(Timestamp)
}

fn post_all(b: &MemoryBoard, entries: &[(BoardEntry, bool)]) {
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

/// The listing's semantics written again, independently of `matches`:
/// words AND, each in the goods or the terms, ASCII case-insensitively;
/// numbers compared saturated at `i64::MAX`.
fn oracle(f: &ListFilter, e: &BoardEntry, now: Timestamp) -> bool {
    let sat = |x: u64| x.min(BIG);
    let c = &e.ccpo;
    let has = |hay: &str, w: &str| {
        hay.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    };
    let words: Vec<&str> = f.text.as_deref().unwrap_or("").split_whitespace().collect();
    sat(c.end.0) > sat(now.0)
        && f.min_price_cents
            .is_none_or(|m| sat(c.price.cents) >= sat(m))
        && f.max_price_cents
            .is_none_or(|m| sat(c.price.cents) <= sat(m))
        && f.currency.is_none_or(|x| x == c.price.currency)
        && f.mode.is_none_or(|m| m == e.mode)
        && f.active_at
            .is_none_or(|t| sat(c.start.0) <= sat(t.0) && sat(t.0) < sat(c.end.0))
        && words.iter().all(|w| has(&c.goods, w) || has(&c.terms, w))
}

fn expected(entries: &[(BoardEntry, bool)], f: &ListFilter, now: Timestamp) -> Vec<[u8; 32]> {
    let mut ids: Vec<[u8; 32]> = entries
        .iter()
        .filter(|(e, bound)| !bound && matches(f, e, now))
        .map(|(e, _)| e.ccpo.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn ids(es: &[BoardEntry]) -> Vec<[u8; 32]> {
    es.iter().map(|e| e.ccpo.id).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn search_returns_exactly_the_matching_open_entries_in_id_order(
        entries in board(),
        filters in prop::collection::vec(filter(), 1..6),
        now in now(),
    ) {
        let b = MemoryBoard::new();
        post_all(&b, &entries);
        for f in &filters {
            for (e, _) in &entries {
                prop_assert_eq!(matches(f, e, now), oracle(f, e, now), "{:?} on {:?}", f, e.ccpo);
            }
            let got = b.search(now, f, None, MAX_PAGE_LEN).unwrap();
            prop_assert_eq!(ids(&got), expected(&entries, f, now), "filter {:?}", f);
            // What is returned is the entry as posted.
            for e in &got {
                prop_assert!(entries.iter().any(|(p, _)| p == e));
            }
        }
        // The default filter is list_open.
        prop_assert_eq!(
            b.list_open(now, None, MAX_PAGE_LEN).unwrap(),
            b.search(now, &ListFilter::default(), None, MAX_PAGE_LEN).unwrap()
        );
    }

    #[test]
    fn paging_concatenates_to_the_full_result(
        entries in board(),
        f in filter(),
        now in now(),
        k in 1usize..7,
    ) {
        let b = MemoryBoard::new();
        post_all(&b, &entries);
        let all = b.search(now, &f, None, MAX_PAGE_LEN).unwrap();
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = b.search(now, &f, after, k).unwrap();
            prop_assert!(page.len() <= k);
            let Some(last) = page.last() else { break };
            after = Some(last.ccpo.id);
            paged.extend(page);
        }
        prop_assert_eq!(paged, all);
    }

    /// Whatever the search text, case changes of ASCII letters do not
    /// change the result.
    #[test]
    fn ascii_case_of_the_search_text_does_not_matter(
        entries in board(),
        f in filter(),
        now in now(),
    ) {
        let b = MemoryBoard::new();
        post_all(&b, &entries);
        let upper = ListFilter { text: f.text.as_ref().map(|t| t.to_ascii_uppercase()), ..f.clone() };
        prop_assert_eq!(
            b.search(now, &f, None, MAX_PAGE_LEN).unwrap(),
            b.search(now, &upper, None, MAX_PAGE_LEN).unwrap()
        );
    }
}
