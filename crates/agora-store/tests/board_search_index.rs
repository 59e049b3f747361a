#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The search index of `SqliteBoard` (migration 6, "How search finds its
//! rows" in src/board.rs):
//!
//! * the trigram index offers, for any search word, a superset of the CPOs
//!   whose goods or terms contain it as `agora_cpo::ports::matches` folds
//!   them (ASCII letters only), on texts with non-ASCII letters in both
//!   cases, combining marks, NUL, U+0001 (the filler of the indexed text),
//!   `char::MAX`, quotes and FTS5 syntax, for words of every length; rows
//!   not yet indexed (fewer than a batch) included;
//! * both plans (walk, candidates) and the automatic choice answer exactly
//!   like `MemoryBoard` (the definition), paging included;
//! * a database of schema 5 migrates (the index is backfilled), and the
//!   index follows deletes and updates of `cpo_board`;
//! * on a larger board the automatic choice walks for common words and
//!   takes the candidates for rare ones.

use agora_core::wire::Encoder;
use agora_core::{Currency, Error, KeyId, Money, Timestamp};
use agora_cpo::msg::Mode;
use agora_cpo::ports::{
    fold_case, BindOutcome, Binding, Board, BoardEntry, ListFilter, MemoryBoard, MAX_PAGE_LEN,
};
use agora_cpo::{Ccpo, CcpoDraft};
use agora_store::{migrate, open_connection, SqliteBoard, SqliteStore, MIGRATIONS};
use proptest::prelude::*;

/// Pieces of goods and terms: ASCII in both cases, non-ASCII letters whose
/// case only Unicode folds (and some that fold to several characters or to
/// ASCII), combining marks, NUL, U+0001, char::MAX, quotes, FTS5 syntax.
const PIECES: &[&str] = &[
    "bike",
    "Bicycle",
    "RED",
    "red",
    "camera",
    "Crème",
    "CRÈME",
    "é",
    "É",
    "ab",
    "b",
    "Straße",
    "STRASSE",
    "ẞ",
    "İstanbul",
    "ıi",
    "KELVIN \u{212A}",
    "ΣΊΣΥΦΟΣ",
    "σίσυφος",
    "e\u{301}te\u{301}",
    "日本語",
    "🚲🚲",
    "a\0b",
    "\0",
    "x\u{1}y",
    "\u{1}",
    "\u{10FFFF}",
    "say \"hi\"",
    "AND",
    "NEAR(",
    "col:x",
    "*",
    "^st",
    "'",
    "ab\"c",
    "back\\slash",
    "del\u{7f}",
    "unit\u{1f}sep",
];

/// A text: pieces joined by nothing or by whitespace (so that words run
/// into each other too).
fn text(pieces: std::ops::Range<usize>) -> BoxedStrategy<String> {
    prop::collection::vec(
        (
            prop::sample::select(PIECES),
            prop::sample::select(&["", " ", "\t", "\n", "-"][..]),
        ),
        pieces,
    )
    .prop_map(|ps| ps.iter().map(|(p, sep)| format!("{sep}{p}")).collect())
    .boxed()
}

/// A search word: a piece of a text (or of the pieces), 1 to 6 characters,
/// in some case.
fn word() -> impl Strategy<Value = String> {
    (prop::sample::select(PIECES), 0usize..8, 1usize..7, 0u8..4).prop_filter_map(
        "no word there",
        |(p, at, len, case)| {
            let chars: Vec<char> = p.chars().collect();
            let at = at.min(chars.len().saturating_sub(1));
            let w: String = chars.iter().skip(at).take(len).collect();
            let w = match case {
                0 => w,
                1 => w.to_ascii_uppercase(),
                2 => w.to_uppercase(),
                _ => w.to_lowercase(),
            };
            let w: String = w.split_whitespace().next()?.to_owned();
            Some(w)
        },
    )
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["EUR", "USD"]).prop_map(|c| Currency::new(c).unwrap())
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::FirstCome), Just(Mode::Bidding)]
}

/// What becomes of a posted entry.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Open,
    Bound,
    Down,
}

fn entry(n: u16) -> impl Strategy<Value = (BoardEntry, Fate)> {
    (
        any::<u8>(),
        text(1..5).prop_filter("goods not blank", |g| !g.trim().is_empty()),
        text(0..5),
        1u64..500,
        currency(),
        0u64..400,
        1u64..400,
        mode(),
        prop_oneof![6 => Just(Fate::Open), 1 => Just(Fate::Bound), 1 => Just(Fate::Down)],
    )
        .prop_map(
            move |(lead, goods, terms, cents, cur, start, len, mode, fate)| {
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
                        start: Timestamp(start),
                        end: Timestamp(start + len),
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
                (e, fate)
            },
        )
}

fn board(max: usize) -> impl Strategy<Value = Vec<(BoardEntry, Fate)>> {
    (0..max).prop_flat_map(|len| {
        (0..len)
            .map(|n| entry(u16::try_from(n).unwrap()))
            .collect::<Vec<_>>()
    })
}

fn filter() -> impl Strategy<Value = ListFilter> {
    (
        prop::option::weighted(0.8, prop::collection::vec(word(), 0..3)),
        prop::option::weighted(0.2, 0u64..600),
        prop::option::weighted(0.2, 0u64..600),
        prop::option::weighted(0.2, currency()),
        prop::option::weighted(0.2, (0u64..800).prop_map(Timestamp)),
        prop::option::weighted(0.2, mode()),
    )
        .prop_map(
            |(words, min_price_cents, max_price_cents, currency, active_at, mode)| ListFilter {
                text: words.map(|ws| ws.join(" ")),
                min_price_cents,
                max_price_cents,
                currency,
                active_at,
                mode,
            },
        )
}

/// A store whose index takes `batch` rows at a time (1: every row is
/// indexed at once; more: the last rows wait, and the search takes them
/// all as candidates).
fn store(dir: &std::path::Path, batch: i64) -> SqliteStore {
    let store = SqliteStore::open_dir(dir, key()).unwrap();
    store
        .writer()
        .execute(move |c| {
            c.execute("UPDATE cpo_search_indexed SET batch = ?1", [batch])
                .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    store
}

fn post_all(b: &impl Board, entries: &[(BoardEntry, Fate)]) {
    for (e, fate) in entries {
        b.post(e).unwrap();
        match fate {
            Fate::Open => {}
            Fate::Bound => {
                let binding = Binding {
                    seller: KeyId([4; 32]),
                    bound_at: Timestamp(2),
                    bound_cpo: vec![3],
                };
                b.try_bind(&e.ccpo.id, &binding).unwrap();
            }
            Fate::Down => {
                b.take_down(&e.ccpo.id, Timestamp(2)).unwrap();
            }
        }
    }
}

/// The ids of the entries whose goods or terms contain `w` as `matches`
/// folds them.
fn containing(entries: &[(BoardEntry, Fate)], w: &str) -> Vec<[u8; 32]> {
    let w = fold_case(w);
    let mut ids: Vec<[u8; 32]> = entries
        .iter()
        .map(|(e, _)| &e.ccpo)
        .filter(|c| fold_case(&c.goods).contains(&w) || fold_case(&c.terms).contains(&w))
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

type Search = fn(
    &SqliteBoard,
    Timestamp,
    &ListFilter,
    Option<[u8; 32]>,
    usize,
) -> Result<Vec<BoardEntry>, Error>;

const PLANS: [(&str, Search); 5] = [
    ("auto", |b, now, f, after, k| b.search(now, f, after, k)),
    ("walk", SqliteBoard::search_by_walk),
    ("index", SqliteBoard::search_by_index),
    ("walk 1 then index", |b, now, f, after, k| {
        b.search_by_bounded_walk(1, now, f, after, k)
    }),
    ("walk 4 then index", |b, now, f, after, k| {
        b.search_by_bounded_walk(4, now, f, after, k)
    }),
];

fn pages(
    search: Search,
    b: &SqliteBoard,
    now: Timestamp,
    f: &ListFilter,
    k: usize,
) -> Vec<BoardEntry> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = search(b, now, f, after, k).unwrap();
        assert!(page.len() <= k);
        let Some(last) = page.last() else { break };
        after = Some(last.ccpo.id);
        all.extend(page);
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The rows the index offers for a word include every row containing
    /// it (as folded for ASCII letters only), whatever the text.
    #[test]
    fn the_index_offers_every_row_containing_a_word(
        entries in board(40),
        words in prop::collection::vec(word(), 1..24),
        batch in prop_oneof![Just(1i64), Just(3), Just(128)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), batch);
        let b = store.board();
        post_all(&b, &entries);
        for (w, phrase) in words.iter().flat_map(|w| [(w, false), (w, true)]) {
            let want = containing(&entries, w);
            match b.index_candidates(w, phrase).unwrap() {
                Some(offered) => {
                    let missing: Vec<_> = want.iter().filter(|id| !offered.contains(id)).collect();
                    prop_assert!(
                        missing.is_empty(),
                        "{:?} (phrase: {}, batch {}): missing {:?}", w, phrase, batch, missing
                    );
                }
                // Only words with a character json_quote() rewrites are not.
                None => prop_assert!(
                    w.chars().any(|c| c < ' ' || c == '"' || c == '\\'),
                    "{:?} not indexable", w
                ),
            }
        }
    }

    /// Every plan answers like the definition, by pages too.
    #[test]
    fn every_plan_agrees_with_the_memory_board(
        entries in board(40),
        queries in prop::collection::vec((filter(), (0u64..800).prop_map(Timestamp)), 1..10),
        k in 1usize..5,
        batch in prop_oneof![Just(1i64), Just(3), Just(128)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), batch);
        let sql = store.board();
        let mem = MemoryBoard::new();
        post_all(&sql, &entries);
        post_all(&mem, &entries);
        for (f, now) in &queries {
            let want = mem.search(*now, f, None, MAX_PAGE_LEN).unwrap();
            for (plan, search) in PLANS {
                prop_assert_eq!(
                    &search(&sql, *now, f, None, MAX_PAGE_LEN).unwrap(),
                    &want,
                    "{} plan, filter {:?} at {:?}, batch {}", plan, f, now, batch
                );
                prop_assert_eq!(&pages(search, &sql, *now, f, k), &want, "{} plan, pages of {}", plan, k);
            }
        }
    }
}

fn entry_with(n: u32, goods: &str, terms: &str) -> BoardEntry {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    BoardEntry {
        ccpo: Ccpo::with_id(
            id,
            CcpoDraft {
                arbiter: KeyId([1; 32]),
                server: KeyId([2; 32]),
                goods: goods.into(),
                price: Money::new(100 + u64::from(n), Currency::new("EUR").unwrap()),
                start: Timestamp(0),
                end: Timestamp(1_000),
                terms: terms.into(),
                bond: vec![0x30, 0x03, 1, 2, 3],
            },
        )
        .unwrap(),
        mode: Mode::FirstCome,
        buyer: KeyId([3; 32]),
        posted_at: Timestamp(10),
        acceptance: vec![1, 2, 3],
        posted: vec![4, 5, 6],
    }
}

fn text_filter(t: &str) -> ListFilter {
    ListFilter {
        text: Some(t.into()),
        ..ListFilter::default()
    }
}

/// A database left by migration 5, with CPOs on its board (some bound,
/// one taken down), is migrated: the index is backfilled and searches
/// answer as before.
#[test]
fn a_schema_5_board_is_indexed_by_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(agora_store::DB_FILE_NAME);
    let entries: Vec<BoardEntry> = (0..300)
        .map(|n| {
            entry_with(
                n,
                &format!(
                    "Item{n} bicycle CRÈME {}",
                    ["red", "Blue", "GREEN"][n as usize % 3]
                ),
                if n % 7 == 0 {
                    "pickup\0only in Paris"
                } else {
                    ""
                },
            )
        })
        .collect();
    {
        let mut conn = open_connection(&path, 1_000).unwrap();
        assert_eq!(migrate(&mut conn, &MIGRATIONS[..5], &key()).unwrap(), 5);
        for e in &entries {
            let c = &e.ccpo;
            let mut enc = Encoder::new();
            enc.field(c);
            conn.execute(
                "INSERT INTO cpo_board (id, mode, buyer, price_cents, currency, start_at,
                    end_at, goods, terms, posted_at, ccpo, acceptance, posted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                rusqlite::params![
                    c.id.as_slice(),
                    e.mode.as_str(),
                    e.buyer.as_bytes().as_slice(),
                    c.price.cents as i64,
                    c.price.currency.as_str(),
                    c.start.secs() as i64,
                    c.end.secs() as i64,
                    c.goods,
                    c.terms,
                    e.posted_at.secs() as i64,
                    enc.into_bytes(),
                    e.acceptance,
                    e.posted
                ],
            )
            .unwrap();
        }
        for e in entries.iter().step_by(10) {
            conn.execute(
                "INSERT INTO cpo_binding (id, seller, bound_at, bound_cpo) VALUES (?1, ?2, 5, x'01')",
                rusqlite::params![e.ccpo.id.as_slice(), [4u8; 32].as_slice()],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO cpo_takedown (id, at) VALUES (?1, 6)",
            [entries[1].ccpo.id.as_slice()],
        )
        .unwrap();
    }
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
    let indexed: (i64, i64) = store
        .read(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM cpo_search), (SELECT upto FROM cpo_search_indexed)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    assert_eq!(indexed, (300, 300), "every row copied and indexed");
    let sql = store.board();
    let mem = MemoryBoard::new();
    for e in &entries {
        mem.post(e).unwrap();
    }
    for e in entries.iter().step_by(10) {
        let binding = Binding {
            seller: KeyId([4; 32]),
            bound_at: Timestamp(5),
            bound_cpo: vec![1],
        };
        mem.try_bind(&e.ccpo.id, &binding).unwrap();
    }
    mem.take_down(&entries[1].ccpo.id, Timestamp(6)).unwrap();
    // The bindings came through migration 10 (keyed by posting number).
    for (n, e) in entries.iter().enumerate() {
        let id = &e.ccpo.id;
        assert_eq!(
            sql.binding(id).unwrap(),
            mem.binding(id).unwrap(),
            "CPO {n}"
        );
        assert_eq!(
            sql.state(id).unwrap().map(|s| s.bound),
            Some(n % 10 == 0),
            "CPO {n}"
        );
    }
    let again = Binding {
        seller: KeyId([5; 32]),
        bound_at: Timestamp(7),
        bound_cpo: vec![2],
    };
    assert_eq!(
        sql.try_bind(&entries[0].ccpo.id, &again).unwrap(),
        BindOutcome::AlreadyBound
    );
    assert_eq!(
        sql.try_bind(&entries[3].ccpo.id, &again).unwrap(),
        BindOutcome::Bound
    );
    mem.try_bind(&entries[3].ccpo.id, &again).unwrap();
    for t in [
        "",
        "item1",
        "ITEM12",
        "bicycle red",
        "crème",
        "CRÈME",
        "paris",
        "only",
        "\0only",
        "m2",
        "e",
        "n\0",
        "zebra",
    ] {
        let f = text_filter(t);
        let want = mem.search(Timestamp(100), &f, None, MAX_PAGE_LEN).unwrap();
        for (plan, search) in PLANS {
            assert_eq!(
                search(&sql, Timestamp(100), &f, None, MAX_PAGE_LEN).unwrap(),
                want,
                "{plan} plan, {t:?}"
            );
        }
    }
    // Posting goes on from there.
    sql.post(&entry_with(1_000, "Item1000 tandem", "")).unwrap();
    assert_eq!(
        sql.search(Timestamp(100), &text_filter("tandem"), None, 10)
            .unwrap()
            .len(),
        1
    );
}

/// Deleting or changing a `cpo_board` row (no port does it; an operator
/// might) changes what the index offers accordingly.
#[test]
fn the_index_follows_deletes_and_updates_of_the_board() {
    let dir = tempfile::tempdir().unwrap();
    for batch in [1, 128] {
        let store = store(&dir.path().join(batch.to_string()), batch);
        let b = store.board();
        let (x, y) = (
            entry_with(1, "walnut desk", ""),
            entry_with(2, "oak desk", ""),
        );
        b.post(&x).unwrap();
        b.post(&y).unwrap();
        let ids = |w: &str| {
            let found: Vec<[u8; 32]> = b
                .search_by_index(Timestamp(100), &text_filter(w), None, 10)
                .unwrap()
                .iter()
                .map(|e| e.ccpo.id)
                .collect();
            found
        };
        assert_eq!(ids("desk"), vec![x.ccpo.id, y.ccpo.id]);
        let (xid, yid) = (x.ccpo.id, y.ccpo.id);
        store
            .writer()
            .execute(move |c| {
                let storage = |e: rusqlite::Error| Error::Storage(e.to_string());
                c.execute("DELETE FROM cpo_board WHERE id = ?1", [xid.as_slice()])
                    .map_err(storage)?;
                c.execute(
                    "UPDATE cpo_board SET goods = 'OAK TABLE' WHERE id = ?1",
                    [yid.as_slice()],
                )
                .map_err(storage)
            })
            .unwrap();
        assert_eq!(ids("desk"), Vec::<[u8; 32]>::new(), "batch {batch}");
        assert_eq!(ids("walnut"), Vec::<[u8; 32]>::new(), "batch {batch}");
        assert_eq!(ids("table"), vec![yid], "batch {batch}");
        assert_eq!(b.index_candidates("table", false).unwrap(), Some(vec![yid]));
    }
}

/// On a board of a few thousand CPOs the automatic choice walks for a word
/// every CPO has and takes the candidates for a rare word or a rare pair;
/// both answer like the walk.
#[test]
fn the_plan_follows_the_number_of_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let b = store.board();
    let posters = 8u32;
    std::thread::scope(|s| {
        for t in 0..posters {
            let b = &b;
            s.spawn(move || {
                for n in (t..4_000).step_by(posters as usize) {
                    let goods = format!(
                        "common thing{} {} {}",
                        n % 1_000,
                        if n % 2 == 0 { "even" } else { "odd" },
                        if n % 3 == 0 { "third" } else { "" }
                    );
                    b.post(&entry_with(n, &goods, "terms")).unwrap();
                }
            });
        }
    });
    let plan = |t: &str| {
        b.search_explained(Timestamp(100), &text_filter(t), None, 50)
            .unwrap()
            .1
    };
    assert_eq!(plan("common"), "walk (first rows)");
    assert_eq!(plan("e"), "walk (first rows)");
    assert_eq!(plan("even third"), "walk (bounded)", "in 1 row of 6");
    assert_eq!(plan("thing123"), "candidates (trigrams)");
    assert_eq!(plan("COMMON thing999 odd"), "candidates (trigrams)");
    assert_eq!(plan("xq"), "candidates (trigram prefix)");
    assert_eq!(plan(""), "walk");
    assert_eq!(plan("thing1\u{1}"), "walk", "no word the index can serve");
    for t in [
        "common",
        "even third",
        "thing123",
        "thing12",
        "COMMON thing999 odd",
        "e",
        "th",
        "xq",
    ] {
        let f = text_filter(t);
        let walk = b.search_by_walk(Timestamp(100), &f, None, 50).unwrap();
        assert_eq!(b.search(Timestamp(100), &f, None, 50).unwrap(), walk, "{t}");
        assert_eq!(
            b.search_by_index(Timestamp(100), &f, None, 50).unwrap(),
            walk,
            "{t}"
        );
    }
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
