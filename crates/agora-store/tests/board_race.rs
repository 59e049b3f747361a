#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! First-come posting under contention: many threads post the same CPO id
//! to one SQLite board at once; the database lets exactly one win, and only
//! the winner's entry is on disk afterwards.

use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_cpo::ports::{Board, BoardEntry, PostOutcome};
use agora_cpo::{Ccpo, CcpoDraft, Mode};
use agora_store::SqliteStore;

const THREADS: usize = 64;
const ID: [u8; 32] = [0x5A; 32];

/// An entry with the contested id; everything else depends on `n`, so the
/// row on disk shows which thread won.
fn entry(n: usize) -> BoardEntry {
    let n8 = u8::try_from(n).unwrap();
    BoardEntry {
        ccpo: Ccpo::with_id(
            ID,
            CcpoDraft {
                arbiter: KeyId([1; 32]),
                server: KeyId([2; 32]),
                goods: format!("goods of thread {n}"),
                price: Money::new(100 + n as u64, Currency::new("EUR").unwrap()),
                start: Timestamp(0),
                end: Timestamp(1_000 + n as u64),
                terms: format!("terms of thread {n}"),
                bond: vec![0x30, 0x03, 1, 2, n8],
            },
        )
        .unwrap(),
        mode: if n.is_multiple_of(2) {
            Mode::FirstCome
        } else {
            Mode::Bidding
        },
        buyer: KeyId([n8; 32]),
        posted_at: Timestamp(10 + n as u64),
        acceptance: vec![n8; 3],
        posted: vec![n8; 4],
    }
}

#[test]
fn concurrent_posts_of_one_id_post_exactly_once_and_persist_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let winner = {
        let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
        let board = store.board();
        let barrier = std::sync::Barrier::new(THREADS);
        let outcomes: Vec<(usize, PostOutcome)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|n| {
                    let (board, barrier) = (&board, &barrier);
                    s.spawn(move || {
                        let e = entry(n);
                        barrier.wait();
                        (n, board.post(&e).expect("post"))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let winners: Vec<usize> = outcomes
            .iter()
            .filter(|(_, o)| *o == PostOutcome::Posted)
            .map(|(n, _)| *n)
            .collect();
        let losers = outcomes
            .iter()
            .filter(|(_, o)| *o == PostOutcome::AlreadyPosted)
            .count();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        assert_eq!(losers, THREADS - 1);
        assert_eq!(board.get(&ID).unwrap(), Some(entry(winners[0])));
        winners[0]
    }; // store and board dropped: the writer stops, the file is closed

    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let rows: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM cpo_board WHERE id = ?1",
                [ID.as_slice()],
                |r| r.get(0),
            )
            .unwrap())
        })
        .unwrap();
    assert_eq!(rows, 1);
    let board = store.board();
    assert_eq!(board.get(&ID).unwrap(), Some(entry(winner)));
    assert_eq!(
        board.list_open(Timestamp(500), None, 100).unwrap(),
        vec![entry(winner)]
    );
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
