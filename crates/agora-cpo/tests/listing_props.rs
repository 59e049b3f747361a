#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Properties of the public listing's filters: on random boards and random
//! filters, `MemoryBoard::search` returns exactly the open (unbound) entries
//! that the pure `ports::matches` selects, in id order, and paging through
//! them (limit k, continuing after the last id) gives the same list.

use agora_core::Timestamp;
use agora_cpo::ports::{matches, Board, BoardEntry, ListFilter, MemoryBoard, MAX_PAGE_LEN};
use proptest::prelude::*;

mod board_gen;
use board_gen::*;

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
