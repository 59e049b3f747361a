//! Storage ports of the CPO server (ARCHITECTURE section 5): what it must
//! remember, as narrow traits with in-memory twins. agora-store implements
//! them on SQLite; [`conformance`] holds the suite every implementation runs.

use crate::msg::Mode;
use crate::Ccpo;
use agora_core::{Error, KeyId, Timestamp};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most entries one listing call returns.
pub const MAX_PAGE_LEN: usize = 500;

/// A posted CPO as the server keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardEntry {
    /// The CPO.
    pub ccpo: Ccpo,
    /// First-come or bidding (from the acceptance's protocol number).
    pub mode: Mode,
    /// The key id of the buyer's bond key. Never shown in public listings.
    pub buyer: KeyId,
    /// When the server posted it.
    pub posted_at: Timestamp,
    /// The ARBITER_ACCEPTANCE it was posted with (evidence).
    pub acceptance: Vec<u8>,
    /// The server's signed CPO sent to the buyer (evidence).
    pub posted: Vec<u8>,
}

/// The result of posting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// Now on the board.
    Posted,
    /// A CPO with this id is already on the board; nothing changed.
    AlreadyPosted,
}

/// The board of posted CPOs. `post` is one durable transaction; a CPO id is
/// posted at most once, across processes sharing the store.
pub trait Board: Send + Sync {
    /// Put `entry` on the board unless its CPO id is there already.
    fn post(&self, entry: &BoardEntry) -> Result<PostOutcome, Error>;
    /// The entry with CPO id `id`.
    fn get(&self, id: &[u8; 32]) -> Result<Option<BoardEntry>, Error>;
    /// CPOs not yet expired at `now` (EndDate > now), ordered by CPO id,
    /// starting after `after`, at most `limit` (capped at [`MAX_PAGE_LEN`]).
    fn list_open(
        &self,
        now: Timestamp,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error>;
}

/// The in-memory twin of [`Board`].
#[derive(Debug, Default)]
pub struct MemoryBoard(Mutex<BTreeMap<[u8; 32], BoardEntry>>);

impl MemoryBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<[u8; 32], BoardEntry>>, Error> {
        self.0
            .lock()
            .map_err(|_| Error::Storage("board lock poisoned".into()))
    }
}

impl Board for MemoryBoard {
    fn post(&self, entry: &BoardEntry) -> Result<PostOutcome, Error> {
        let mut m = self.lock()?;
        if m.contains_key(&entry.ccpo.id) {
            return Ok(PostOutcome::AlreadyPosted);
        }
        m.insert(entry.ccpo.id, entry.clone());
        Ok(PostOutcome::Posted)
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<BoardEntry>, Error> {
        Ok(self.lock()?.get(id).cloned())
    }

    fn list_open(
        &self,
        now: Timestamp,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        let m = self.lock()?;
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        Ok(m.range((start, std::ops::Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| e.ccpo.end > now)
            .take(limit.min(MAX_PAGE_LEN))
            .cloned()
            .collect())
    }
}

/// The conformance suite of [`Board`].
#[cfg(any(test, feature = "testkit"))]
pub mod conformance {
    use super::*;
    use crate::CcpoDraft;
    use agora_core::{Currency, Money};

    fn entry(n: u64, end: u64) -> BoardEntry {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        let ccpo = Ccpo::with_id(
            id,
            CcpoDraft {
                arbiter: KeyId([1; 32]),
                server: KeyId([2; 32]),
                goods: format!("goods {n}"),
                price: Money::new(100 + n, Currency::new("EUR").expect("EUR")),
                start: Timestamp(0),
                end: Timestamp(end),
                terms: "terms".into(),
                bond: vec![0x30, 0x03, 1, 2, 3],
            },
        )
        .expect("valid CCPO");
        BoardEntry {
            ccpo,
            mode: if n.is_multiple_of(2) {
                Mode::FirstCome
            } else {
                Mode::Bidding
            },
            buyer: KeyId([3; 32]),
            posted_at: Timestamp(10),
            acceptance: vec![1, 2, 3],
            posted: vec![4, 5, 6],
        }
    }

    /// Runs every check on fresh boards from `make`.
    pub fn board_suite<B: Board + Sync>(make: impl Fn() -> B) {
        post_then_get(&make());
        list_open_pages_and_skips_expired(&make());
        concurrent_posts_of_one_id_post_once(&make());
    }

    /// An entry comes back as it went in; a second post of its id changes nothing.
    pub fn post_then_get<B: Board>(b: &B) {
        let e = entry(1, 1_000);
        assert_eq!(b.post(&e).expect("post"), PostOutcome::Posted);
        assert_eq!(b.get(&e.ccpo.id).expect("get"), Some(e.clone()));
        let mut other = entry(1, 5_000);
        other.buyer = KeyId([9; 32]);
        assert_eq!(b.post(&other).expect("post"), PostOutcome::AlreadyPosted);
        assert_eq!(b.get(&e.ccpo.id).expect("get"), Some(e));
        assert_eq!(b.get(&[0xEE; 32]).expect("get"), None);
    }

    /// Listing skips expired CPOs and pages by id.
    pub fn list_open_pages_and_skips_expired<B: Board>(b: &B) {
        for n in 1..=10u64 {
            let end = if n.is_multiple_of(3) { 50 } else { 1_000 };
            b.post(&entry(n, end)).expect("post");
        }
        let open = b.list_open(Timestamp(100), None, 100).expect("list");
        let ids: Vec<u64> = open
            .iter()
            .map(|e| u64::from_be_bytes(e.ccpo.id[..8].try_into().expect("8")))
            .collect();
        assert_eq!(ids, vec![1, 2, 4, 5, 7, 8, 10]);
        let first = b.list_open(Timestamp(100), None, 3).expect("list");
        assert_eq!(first.len(), 3);
        let rest = b
            .list_open(Timestamp(100), Some(first[2].ccpo.id), 100)
            .expect("list");
        assert_eq!(rest.len(), 4);
        assert!(b
            .list_open(Timestamp(2_000), None, 100)
            .expect("list")
            .is_empty());
    }

    /// Many posts of one id race: exactly one wins.
    pub fn concurrent_posts_of_one_id_post_once<B: Board + Sync>(b: &B) {
        let outcomes: Vec<PostOutcome> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16)
                .map(|_| s.spawn(|| b.post(&entry(77, 1_000)).expect("post")))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == PostOutcome::Posted)
                .count(),
            1
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_board_passes_the_conformance_suite() {
        super::conformance::board_suite(super::MemoryBoard::new);
    }
}
