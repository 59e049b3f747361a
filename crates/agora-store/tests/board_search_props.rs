#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! `SqliteBoard::search` (the filters as SQL) agrees with
//! `MemoryBoard::search` (the filters as `agora_cpo::ports::matches`) on
//! random boards and filters, paging included. The generators are agora-cpo's
//! (tests/board_gen), shared with its tests/listing_props.rs.

use agora_core::Timestamp;
use agora_cpo::ports::{Board, BoardEntry, ListFilter, MemoryBoard, MAX_PAGE_LEN};
use agora_store::SqliteStore;
use proptest::prelude::*;

#[path = "../../agora-cpo/tests/board_gen/mod.rs"]
mod board_gen;
use board_gen::*;

fn pages(b: &impl Board, now: Timestamp, f: &ListFilter, k: usize) -> Vec<BoardEntry> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = b.search(now, f, after, k).unwrap();
        assert!(page.len() <= k);
        let Some(last) = page.last() else { break };
        after = Some(last.ccpo.id);
        all.extend(page);
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn sqlite_search_agrees_with_the_memory_board(
        entries in board(),
        queries in prop::collection::vec((filter(), now()), 1..12),
        k in 1usize..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
        let sql = store.board();
        let mem = MemoryBoard::new();
        post_all(&sql, &entries);
        post_all(&mem, &entries);
        for (f, now) in &queries {
            let want = mem.search(*now, f, None, MAX_PAGE_LEN).unwrap();
            prop_assert_eq!(
                &sql.search(*now, f, None, MAX_PAGE_LEN).unwrap(),
                &want,
                "filter {:?} at {:?}", f, now
            );
            prop_assert_eq!(&pages(&sql, *now, f, k), &want, "pages of {}", k);
        }
        prop_assert_eq!(
            sql.list_open(queries[0].1, None, MAX_PAGE_LEN).unwrap(),
            mem.list_open(queries[0].1, None, MAX_PAGE_LEN).unwrap()
        );
    }
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
