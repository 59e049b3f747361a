//! [`Board`] (agora-cpo's port) on SQLite: the CPOs a server posted and
//! their bindings. "A CPO id is posted at most once" is the primary key of
//! `cpo_board`, and "a CPO is bound at most once" the unique posting number
//! (`cpo_posting.seq`) of `cpo_bound`, so both hold across processes sharing
//! the database. Bindings are read through the view `cpo_binding`, by CPO
//! id (migration 10 says why they are stored by posting number).
//!
//! The encoded CCPO (checksum included) is the source of truth of a row; the
//! columns copied from it (price, dates, goods, terms) are for listing and
//! searching in SQL. Reading a row decodes the CCPO again, which re-checks
//! its checksum, and refuses a row whose CCPO does not carry the row's id.
//!
//! Search reads a compact copy of those columns (`cpo_search`, kept in step
//! by triggers) and a trigram index of the goods and terms, choosing per
//! query between walking the board in id order and testing the rows the
//! index offers: see "How search finds its rows" below.

use crate::db::storage;
use crate::SqliteStore;
use agora_core::wire::{Decoder, Encoder};
use agora_core::{Error, KeyId, Timestamp};
use agora_cpo::ports::{
    BindOutcome, Binding, Board, BoardEntry, CpoState, ListFilter, PostOutcome, TakeDownOutcome,
    MAX_PAGE_LEN,
};
use agora_cpo::{Ccpo, Mode};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

/// The board port on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteBoard {
    store: SqliteStore,
}

impl SqliteBoard {
    /// The board of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteBoard { store }
    }

    /// The database it reads.
    pub(crate) fn store(&self) -> &SqliteStore {
        &self.store
    }
}

/// The columns a [`BoardEntry`] is rebuilt from, in this order.
pub(crate) const ENTRY_COLUMNS: &str = "id, ccpo, mode, buyer, posted_at, acceptance, posted";

/// One row of `cpo_board` as read, before it is checked.
pub(crate) struct RawEntry {
    id: Vec<u8>,
    ccpo: Vec<u8>,
    mode: String,
    buyer: Vec<u8>,
    posted_at: i64,
    acceptance: Vec<u8>,
    posted: Vec<u8>,
}

impl RawEntry {
    pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<RawEntry> {
        Ok(RawEntry {
            id: r.get(0)?,
            ccpo: r.get(1)?,
            mode: r.get(2)?,
            buyer: r.get(3)?,
            posted_at: r.get(4)?,
            acceptance: r.get(5)?,
            posted: r.get(6)?,
        })
    }

    pub(crate) fn into_entry(self) -> Result<BoardEntry, Error> {
        let ccpo = decode_ccpo(&self.ccpo)?;
        if ccpo.id.as_slice() != self.id.as_slice() {
            return Err(corrupt("CCPO id differs from the row id"));
        }
        Ok(BoardEntry {
            ccpo,
            mode: Mode::from_name(&self.mode).ok_or_else(|| {
                Error::Storage(format!("corrupt board row: mode {:?}", self.mode))
            })?,
            buyer: KeyId::from_slice(&self.buyer).map_err(|_| corrupt("buyer"))?,
            posted_at: u64::try_from(self.posted_at)
                .map(Timestamp)
                .map_err(|_| corrupt("negative posting time"))?,
            acceptance: self.acceptance,
            posted: self.posted,
        })
    }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt board row: {what}"))
}

fn encode_ccpo(ccpo: &Ccpo) -> Vec<u8> {
    let mut e = Encoder::new();
    e.field(ccpo);
    e.into_bytes()
}

fn decode_ccpo(bytes: &[u8]) -> Result<Ccpo, Error> {
    let mut d = Decoder::new(bytes);
    let c: Ccpo = d
        .field()
        .map_err(|e| Error::Storage(format!("corrupt board row: CCPO: {e}")))?;
    d.finish()
        .map_err(|e| Error::Storage(format!("corrupt board row: CCPO: {e}")))?;
    Ok(c)
}

impl SqliteBoard {
    /// [`Board::try_bind`]: queued, waited for, and learnt by this process.
    fn bind(&self, id: &[u8; 32], binding: &Binding) -> Result<BindOutcome, Error> {
        let row = BindRow::of(id, binding, None)?;
        let outcome = self.store.writer().execute(move |conn| row.insert(conn))?;
        self.learn_bind(id, outcome);
        Ok(outcome)
    }

    /// What a committed binding transaction showed is final: this process's
    /// reads see it from now on.
    pub(crate) fn learn_bind(&self, id: &[u8; 32], outcome: BindOutcome) {
        let states = self.store.cpo_states();
        match outcome {
            BindOutcome::Bound | BindOutcome::AlreadyBound => states.set_bound(id),
            BindOutcome::TakenDown => states.set_taken_down(id),
            BindOutcome::NotPosted | BindOutcome::SessionEnded => {}
        }
    }

    /// A post this process made: its reads see the CPO open from now on.
    pub(crate) fn learn_post(&self, entry: &BoardEntry) {
        self.store.cpo_states().posted(&entry.ccpo, entry.mode);
    }
}

/// A binding as written inside a write request: owned, checked for what
/// SQL can hold.
#[derive(Debug)]
pub(crate) struct BindRow {
    id: [u8; 32],
    seller: [u8; 32],
    bound_at: i64,
    bound_cpo: Vec<u8>,
    session: Option<[u8; 32]>,
}

impl BindRow {
    /// The binding of `id` to `binding`, in browse session `session` if
    /// given.
    pub(crate) fn of(
        id: &[u8; 32],
        binding: &Binding,
        session: Option<[u8; 32]>,
    ) -> Result<BindRow, Error> {
        // The binding time is only in this row: refuse one it could not give
        // back.
        let bound_at = i64::try_from(binding.bound_at.secs())
            .map_err(|_| Error::ApiMisuse("binding time beyond i64::MAX seconds"))?;
        Ok(BindRow {
            id: *id,
            seller: *binding.seller.as_bytes(),
            bound_at,
            bound_cpo: binding.bound_cpo.clone(),
            session,
        })
    }

    /// Binds inside the caller's write request: the check and the insert see
    /// the same state. Across processes the primary key of `cpo_bound`
    /// decides (another process's binding committed first makes this insert
    /// do nothing). Writes nothing unless the outcome is `Bound`.
    pub(crate) fn insert(&self, conn: &Connection) -> Result<BindOutcome, Error> {
        // The checks in one statement (each statement costs the writer,
        // which every request of the batch waits for): the CPO's posting
        // number (none: not posted), taken down, session open.
        let found = conn
            .prepare_cached(
                "SELECT seq,
                        EXISTS (SELECT 1 FROM cpo_takedown WHERE id = ?1),
                        ?2 IS NULL OR EXISTS (
                            SELECT 1 FROM cpo_session WHERE id = ?2 AND ended_at IS NULL)
                 FROM cpo_posting WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![
                        self.id.as_slice(),
                        self.session.as_ref().map(|s| s.as_slice())
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, bool>(2)?,
                        ))
                    },
                )
                .optional()
            })
            .map_err(storage)?;
        let Some((seq, down, open)) = found else {
            return Ok(BindOutcome::NotPosted);
        };
        if down {
            return Ok(BindOutcome::TakenDown);
        }
        if !open {
            return Ok(BindOutcome::SessionEnded);
        }
        let n = conn
            .prepare_cached(
                "INSERT INTO cpo_bound (seq, seller, bound_at, bound_cpo)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (seq) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    seq,
                    self.seller.as_slice(),
                    self.bound_at,
                    self.bound_cpo
                ])
            })
            .map_err(storage)?;
        Ok(if n == 1 {
            BindOutcome::Bound
        } else {
            BindOutcome::AlreadyBound
        })
    }
}

/// A board entry as written inside a write request: owned, with the columns
/// copied from its CCPO for listing and search.
#[derive(Debug)]
pub(crate) struct PostRow {
    id: [u8; 32],
    mode: &'static str,
    buyer: [u8; 32],
    price_cents: i64,
    currency: String,
    start_at: i64,
    end_at: i64,
    goods: String,
    terms: String,
    posted_at: i64,
    ccpo: Vec<u8>,
    acceptance: Vec<u8>,
    posted: Vec<u8>,
}

impl PostRow {
    /// The row of `entry`.
    pub(crate) fn of(entry: &BoardEntry) -> Result<PostRow, Error> {
        // The posting time is only in this row: refuse one it could not give
        // back (the CCPO's own dates are in the encoded CCPO, so their
        // columns may be clamped, keeping their order).
        let posted_at = i64::try_from(entry.posted_at.secs())
            .map_err(|_| Error::ApiMisuse("board posting time beyond i64::MAX seconds"))?;
        let c = &entry.ccpo;
        Ok(PostRow {
            id: c.id,
            mode: entry.mode.as_str(),
            buyer: *entry.buyer.as_bytes(),
            // Copies for SQL, clamped like the timestamps (ordering kept).
            price_cents: i64::try_from(c.price.cents).unwrap_or(i64::MAX),
            currency: c.price.currency.as_str().to_owned(),
            start_at: crate::ts_ordered(c.start),
            end_at: crate::ts_ordered(c.end),
            goods: c.goods.clone(),
            terms: c.terms.clone(),
            posted_at,
            ccpo: encode_ccpo(c),
            acceptance: entry.acceptance.clone(),
            posted: entry.posted.clone(),
        })
    }

    /// Posts inside the caller's write request, unless the id is posted.
    pub(crate) fn insert(&self, conn: &Connection) -> Result<PostOutcome, Error> {
        let n = conn
            .prepare_cached(
                "INSERT INTO cpo_board (id, mode, buyer, price_cents, currency, start_at,
                    end_at, goods, terms, posted_at, ccpo, acceptance, posted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.id.as_slice(),
                    self.mode,
                    self.buyer.as_slice(),
                    self.price_cents,
                    self.currency,
                    self.start_at,
                    self.end_at,
                    self.goods,
                    self.terms,
                    self.posted_at,
                    self.ccpo,
                    self.acceptance,
                    self.posted
                ])
            })
            .map_err(storage)?;
        Ok(if n == 1 {
            PostOutcome::Posted
        } else {
            PostOutcome::AlreadyPosted
        })
    }
}

impl Board for SqliteBoard {
    fn post(&self, entry: &BoardEntry) -> Result<PostOutcome, Error> {
        let row = PostRow::of(entry)?;
        let outcome = self.store.writer().execute(move |conn| row.insert(conn))?;
        if outcome == PostOutcome::Posted {
            self.learn_post(entry);
        }
        Ok(outcome)
    }

    fn try_bind(&self, id: &[u8; 32], binding: &Binding) -> Result<BindOutcome, Error> {
        self.bind(id, binding)
    }

    fn take_down(&self, id: &[u8; 32], at: Timestamp) -> Result<TakeDownOutcome, Error> {
        let at = i64::try_from(at.secs())
            .map_err(|_| Error::ApiMisuse("take-down time beyond i64::MAX seconds"))?;
        let id = *id;
        let outcome = self.store.writer().execute(move |conn| {
            let exists = |sql: &str| {
                conn.prepare_cached(sql)
                    .and_then(|mut st| st.exists([id.as_slice()]))
                    .map_err(storage)
            };
            if !exists("SELECT 1 FROM cpo_board WHERE id = ?1")? {
                return Ok(TakeDownOutcome::NotPosted);
            }
            if exists("SELECT 1 FROM cpo_binding WHERE id = ?1")? {
                return Ok(TakeDownOutcome::AlreadyBound);
            }
            let n = conn
                .prepare_cached(
                    "INSERT INTO cpo_takedown (id, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![id.as_slice(), at]))
                .map_err(storage)?;
            Ok(if n == 1 {
                TakeDownOutcome::TakenDown
            } else {
                TakeDownOutcome::AlreadyTakenDown
            })
        })?;
        let states = self.store.cpo_states();
        match outcome {
            TakeDownOutcome::TakenDown | TakeDownOutcome::AlreadyTakenDown => {
                states.set_taken_down(&id)
            }
            TakeDownOutcome::AlreadyBound => states.set_bound(&id),
            TakeDownOutcome::NotPosted => {}
        }
        Ok(outcome)
    }

    fn taken_down(&self, id: &[u8; 32]) -> Result<Option<Timestamp>, Error> {
        let at: Option<i64> = self.store.read(|conn| {
            conn.prepare_cached("SELECT at FROM cpo_takedown WHERE id = ?1")
                .and_then(|mut st| st.query_row([id.as_slice()], |r| r.get(0)).optional())
                .map_err(storage)
        })?;
        at.map(|v| {
            u64::try_from(v)
                .map(Timestamp)
                .map_err(|_| Error::Storage("corrupt take-down row: negative time".into()))
        })
        .transpose()
    }

    fn binding(&self, id: &[u8; 32]) -> Result<Option<Binding>, Error> {
        let row = self.store.read(|conn| {
            conn.prepare_cached("SELECT seller, bound_at, bound_cpo FROM cpo_binding WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([id.as_slice()], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    })
                    .optional()
                })
                .map_err(storage)
        })?;
        let Some((seller, bound_at, bound_cpo)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str| Error::Storage(format!("corrupt binding row: {what}"));
        Ok(Some(Binding {
            seller: KeyId::from_slice(&seller).map_err(|_| corrupt("seller"))?,
            bound_at: u64::try_from(bound_at)
                .map(Timestamp)
                .map_err(|_| corrupt("negative binding time"))?,
            bound_cpo,
        }))
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<BoardEntry>, Error> {
        let raw = self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM cpo_board WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row([id.as_slice()], RawEntry::from_row).optional())
            .map_err(storage)
        })?;
        raw.map(RawEntry::into_entry).transpose()
    }

    fn state(&self, id: &[u8; 32]) -> Result<Option<CpoState>, Error> {
        if let Some(known) = self.store.cpo_states().get(id) {
            return Ok(Some(known));
        }
        // One query, and none of the evidence columns: they come last in the
        // row, so SQLite stops reading it (and its overflow pages) at `ccpo`.
        let raw = self.store.read(|conn| {
            conn.prepare_cached(
                "SELECT ccpo, mode,
                        EXISTS (SELECT 1 FROM cpo_binding b WHERE b.id = ?1),
                        EXISTS (SELECT 1 FROM cpo_takedown t WHERE t.id = ?1)
                 FROM cpo_board WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id.as_slice()], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })
                .optional()
            })
            .map_err(storage)
        })?;
        let Some((ccpo, mode, bound, taken_down)) = raw else {
            return Ok(None);
        };
        let ccpo = decode_ccpo(&ccpo)?;
        if ccpo.id != *id {
            return Err(corrupt("CCPO id differs from the row id"));
        }
        let mode = Mode::from_name(&mode)
            .ok_or_else(|| Error::Storage(format!("corrupt board row: mode {mode:?}")))?;
        Ok(Some(self.store.cpo_states().learn(CpoState {
            ccpo,
            mode,
            bound,
            taken_down,
        })))
    }

    fn search(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        Ok(self.search_with(Force::Auto, now, filter, after, limit)?.0)
    }
}

// How search finds its rows
// =========================
//
// What a search returns is defined by `agora_cpo::ports::matches` (plus:
// not bound, not taken down), in id order, after `after`, at most `limit`.
// Every query below has ALL the exact clauses of `matches` in its WHERE
// (those of the single query this replaced: `instr` on the ASCII-folded
// text, the saturated numbers, NOT EXISTS for bindings and take-downs), on
// `cpo_search`, the compact copy of `cpo_board` that migration 6 made (its
// rows are a few hundred bytes; those of `cpo_board` 1-2 KiB). So an index
// can make a plan faster but never change its answer, as long as the rows
// it offers are a superset of the matching ones. The plans:
//
// * Walk: `cpo_search` in id order through `cpo_search_walk`, from `after`,
//   testing each row, stopping at `limit`. Every filter but the words is
//   tested on the index entry; only rows passing them are read for the
//   words (`instr`), and the correlated NOT EXISTS come last (SQLite codes
//   correlated subqueries after the other terms). Cost: about `limit /
//   density` rows. Fast when the filter is not selective (no filter,
//   common words, one currency, ...); when it is, a full scan, but a scan
//   of the walk index alone (8 MiB for 110,000 CPOs) is cheap: only the
//   words need an index, and this is the plan when none can use it.
//
// * Candidates: the rows the trigram index (`cpo_search_fts`) offers for
//   the words, plus the rows not yet indexed (fewer than a batch, see
//   `cpo_search_indexed` in db.rs), each looked up by `doc` and tested with
//   every clause, then sorted by id and cut at `limit`. Cost: the number of
//   candidates, whatever the page, and the lookup's. Fast when the words
//   are selective.
//
// * Bounded walk: the walk over at most `budget` rows passing the filters
//   other than the words; if the page is not full by then, the candidates
//   after the last row read.
//
// Choosing. A walk reads about `limit * n / k` rows to find `limit` matches
// at density `k / n`, the candidate plan reads `k`: candidates win below
// `k = cap = sqrt(limit * n)` (about 2,300 for 50 of 110,000). So each
// lookup is run for at most `cap + 1` rows (which bounds its cost), and the
// smallest one under the cap gives the candidates. If none is, the words
// are in at least `cap` rows and a bounded walk of `2 * cap` rows should
// fill the page (in the benchmark, common words fill it within a few
// hundred); if the other filters exclude the rows holding the words, the
// walk stops there and the candidates finish the page.
//
// The lookups. The trigram index holds the folded text (what `instr`
// searches) as `json_quote()` writes it, followed by U+0001, case
// sensitive: no other folding. `json_quote()` rewrites each control
// character (NUL included, where the trigram tokenizer would stop), `"` and
// `\` on its own and keeps every other character, so a folded word without
// those ("indexable") that occurs in a text occurs in the indexed text, and
// at least two characters (the closing quote, U+0001) follow it there. So:
//
// * an indexable word of 3 characters or more: every trigram (3 consecutive
//   characters) of it is a token of the text. The rows of a rare trigram
//   (in at most `cap` rows, found by counting the rows of each trigram up
//   to the cap: cheap) are a superset of those containing the word, and
//   the AND of a few rare trigrams is cheap and selective. If all its
//   trigrams are common, its phrase (its trigrams at consecutive
//   positions) offers exactly the rows containing it, but costs a few
//   milliseconds: FTS5 reads the positions of each trigram in every row
//   holding them all. (The AND of common trigrams would be no cheaper and
//   far from exact: "dear" is in 91 rows of the benchmark, "dea" AND "ear"
//   in 20,589.) The long words of a filter make one lookup;
// * an indexable word of 1 or 2 characters has no trigram, but each of its
//   occurrences begins one: the rows holding a token in the prefix range of
//   the word (`cpo_search_terms`, the fts5vocab view of the index) are a
//   superset of the rows containing it;
// * other words are tested exactly, never looked up.
//
// tests/board_search_index.rs checks these claims on random texts (ASCII
// and non-ASCII letters in both cases, NUL and other control characters,
// quotes, words of every length), and every plan, with rows indexed or not,
// against `MemoryBoard`.

/// Which plan [`SqliteBoard::search_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Force {
    /// The cheaper, by the count of candidates.
    Auto,
    /// The walk, always.
    Walk,
    /// Candidates from the index whenever a word can use it.
    Index,
    /// The walk over this many rows, then candidates from the index,
    /// whenever a word can use it.
    BoundedWalk(usize),
}

/// Fewest candidates the candidate plan takes whatever the estimate (on
/// small boards, or with small limits, both plans are cheap).
const MIN_CANDIDATES: usize = 256;

/// Most trigrams of a word whose rows are counted (up to the cap) to find
/// the rare ones.
const MAX_PROBES_PER_WORD: usize = 8;

/// Most rare trigrams ANDed in a lookup.
const MAX_RARE_TRIGRAMS: usize = 3;

/// A lookup in the trigram index for some words of a filter: it offers a
/// superset of the indexed rows containing them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Lookup {
    /// An FTS5 query on `cpo_search_fts`: trigrams of the long words.
    Match(String),
    /// A range of tokens in `cpo_search_terms`: those beginning with a short
    /// word (from the word to the word followed by two `char::MAX`).
    Prefix { lo: String, hi: String },
}

impl Lookup {
    /// The lookup of one word: its phrase if long, else its prefix.
    fn of(w: &str) -> Lookup {
        if is_long(w) {
            Lookup::Match(phrases(&[w]))
        } else {
            Lookup::Prefix {
                lo: w.to_owned(),
                hi: format!("{w}{}{}", char::MAX, char::MAX),
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Lookup::Match(_) => "candidates (trigrams)",
            Lookup::Prefix { .. } => "candidates (trigram prefix)",
        }
    }

    /// How many indexed rows a match offers, counted up to `cap + 1` only
    /// (so reading at most that many entries of the index).
    fn count(expr: String, conn: &Connection, cap: usize) -> Result<usize, Error> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX - 1);
        let n: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM cpo_search_fts
                 WHERE cpo_search_fts MATCH ?1 LIMIT ?2)",
            )
            .and_then(|mut st| st.query_row(params![expr, cap + 1], |r| r.get(0)))
            .map_err(storage)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The `doc`s of the indexed rows offered, in order, or `None` if there
    /// are more than `max`. For a prefix, also `None` beyond `4 * max`
    /// occurrences of its tokens (each row holds a few).
    fn docs(&self, conn: &Connection, max: Option<usize>) -> Result<Option<Vec<i64>>, Error> {
        let max = max.map(|m| i64::try_from(m).unwrap_or(i64::MAX / 8));
        let (sql, args, read) = match self {
            Lookup::Match(expr) => (
                "SELECT rowid FROM cpo_search_fts WHERE cpo_search_fts MATCH ?1 LIMIT ?2",
                vec![Value::Text(expr.clone())],
                max.map_or(-1, |m| m + 1),
            ),
            Lookup::Prefix { lo, hi } => (
                "SELECT doc FROM cpo_search_terms WHERE term >= ?1 AND term <= ?2 LIMIT ?3",
                vec![Value::Text(lo.clone()), Value::Text(hi.clone())],
                max.map_or(-1, |m| 4 * m + 1),
            ),
        };
        let mut args = args;
        args.push(Value::Integer(read));
        let mut docs = conn
            .prepare_cached(sql)
            .and_then(|mut st| {
                st.query_map(params_from_iter(args), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)?;
        if read >= 0 && docs.len() >= usize::try_from(read).unwrap_or(usize::MAX) {
            return Ok(None);
        }
        docs.sort_unstable();
        docs.dedup();
        Ok(match max {
            Some(m) if docs.len() > usize::try_from(m).unwrap_or(usize::MAX) => None,
            _ => Some(docs),
        })
    }
}

/// Whether the trigram index can offer the rows containing `w`, a folded
/// search word: not empty, and no character that `json_quote()` rewrites
/// (control characters, `"`, `\`), so that the word is in the indexed text
/// as it is.
fn indexable(w: &str) -> bool {
    !w.is_empty() && !w.chars().any(|c| c < ' ' || c == '"' || c == '\\')
}

/// Whether `w` has a trigram.
fn is_long(w: &str) -> bool {
    w.chars().nth(2).is_some()
}

/// Distinct trigrams of `words`: for each word, at most `most` of them,
/// first those covering it without overlap (at characters 0, 3, 6, ... and
/// the last three), spread along it, then the others.
fn trigrams(words: &[&str], most: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words {
        let chars: Vec<char> = w.chars().collect();
        let Some(last) = chars.len().checked_sub(3) else {
            continue;
        };
        let cover: Vec<usize> = (0..last).step_by(3).chain([last]).collect();
        let at: Vec<usize> = if cover.len() >= most {
            // `most` of the cover, spread along it, its ends included.
            let (n, k) = (cover.len() - 1, most.max(2) - 1);
            (0..=k).map(|i| cover[i * n / k]).collect()
        } else {
            let rest = (0..=last).filter(|i| !cover.contains(i));
            cover.iter().copied().chain(rest).take(most).collect()
        };
        for i in at {
            let t: String = chars[i..i + 3].iter().collect();
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The FTS5 query of `trigrams`: each as a string (quotes doubled; the
/// tokenizer makes it exactly one token), all ANDed. Positions unused.
fn match_all(trigrams: &[String]) -> String {
    phrases(trigrams)
}

/// The FTS5 query of `words` (of 3 characters or more): each as a string
/// (quotes doubled), which the tokenizer makes a phrase of its trigrams,
/// all ANDed. A phrase matches where its trigrams are consecutive: exactly
/// the rows containing the word (a superset when `json_quote()` rewrote
/// characters of the word, which indexable words do not have).
fn phrases<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.as_ref().replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub(crate) fn sat(x: u64) -> Value {
    Value::Integer(i64::try_from(x).unwrap_or(i64::MAX))
}

/// The plan of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Plan {
    /// The walk, to the end if need be (no word can use the index).
    Walk,
    /// The candidates: the `doc`s a lookup offered, in order (the rows not
    /// yet indexed are added by the query).
    Candidates(&'static str, Vec<i64>),
    /// The walk over the first `budget` rows passing the filters other than
    /// the words; if they hold fewer matches than the page needs, the
    /// candidates of `fallback` after them.
    WalkThen { budget: usize, fallback: Lookup },
}

impl Plan {
    fn name(&self) -> &'static str {
        match self {
            Plan::Walk => "walk",
            Plan::Candidates(name, _) => name,
            Plan::WalkThen { .. } => "walk (bounded)",
        }
    }
}

/// The plan for the folded `words`: see "How search finds its rows".
fn choose(conn: &Connection, force: Force, words: &[String], limit: usize) -> Result<Plan, Error> {
    let long: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| indexable(w) && is_long(w))
        .collect();
    let short: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| indexable(w) && !is_long(w))
        .collect();
    if force == Force::Walk || (long.is_empty() && short.is_empty()) {
        return Ok(Plan::Walk);
    }
    // The phrases of the long words, else the first short word.
    let exact = if long.is_empty() {
        Lookup::of(short[0])
    } else {
        Lookup::Match(phrases(&long))
    };
    match force {
        Force::Index => {
            let docs = exact.docs(conn, None)?.unwrap_or_default();
            return Ok(Plan::Candidates(exact.name(), docs));
        }
        Force::BoundedWalk(budget) => {
            return Ok(Plan::WalkThen {
                budget,
                fallback: exact,
            })
        }
        Force::Auto | Force::Walk => {}
    }
    // The rows of the board, about (docs only grow; deletes are rare).
    let rows: i64 = conn
        .prepare_cached("SELECT coalesce(max(doc), 0) FROM cpo_search")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(storage)?;
    let cap = (((limit as f64) * (rows.max(0) as f64)).sqrt() as usize).max(MIN_CANDIDATES);
    let mut best: Option<(&'static str, Vec<i64>)> = None;
    let mut fallback = None;
    if !long.is_empty() {
        // The rare trigrams (in at most `cap` rows), by counting the rows
        // of each up to the cap: their lists are short, so ANDing a few
        // (positions unused) is cheap and selective. If all are common, the
        // phrases: exact, but FTS5 reads the positions of each trigram in
        // every row holding them all (a few milliseconds).
        let mut counted = Vec::new();
        for t in trigrams(&long, MAX_PROBES_PER_WORD) {
            let n = Lookup::count(match_all(std::slice::from_ref(&t)), conn, cap)?;
            counted.push((n, t));
        }
        counted.sort();
        let rare: Vec<String> = counted
            .into_iter()
            .take_while(|(n, _)| *n <= cap)
            .take(MAX_RARE_TRIGRAMS)
            .map(|(_, t)| t)
            .collect();
        let lookup = if rare.is_empty() {
            exact
        } else {
            Lookup::Match(match_all(&rare))
        };
        match lookup.docs(conn, Some(cap))? {
            Some(docs) => best = Some((lookup.name(), docs)),
            None => fallback = Some(lookup),
        }
    }
    for w in short {
        let l = Lookup::of(w);
        let max = best
            .as_ref()
            .map_or(cap, |(_, docs)| docs.len().saturating_sub(1));
        match l.docs(conn, Some(max))? {
            Some(docs) => best = Some((l.name(), docs)),
            None => {
                fallback.get_or_insert(l);
            }
        }
    }
    Ok(match (best, fallback) {
        (Some((name, docs)), _) => Plan::Candidates(name, docs),
        // Every lookup offers more than `cap` rows (phrases and prefixes:
        // rows containing the words, or nearly).
        (None, Some(fallback)) => Plan::WalkThen {
            budget: 2 * cap,
            fallback,
        },
        (None, None) => Plan::Walk,
    })
}

impl SqliteBoard {
    fn search_with(
        &self,
        force: Force,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<(Vec<BoardEntry>, &'static str), Error> {
        filter.check()?;
        let limit = limit.min(MAX_PAGE_LEN);
        if limit == 0 {
            return Ok((Vec::new(), "none"));
        }
        let words = filter.words();
        let after = after.map(|a| a.to_vec()).unwrap_or_default();
        let (rows, plan) = self.store.read(|conn| {
            // One read transaction: the lookups and the queries must see the
            // same rows indexed (rows indexed in between would be offered by
            // neither, as not yet indexed for a lookup and indexed for the
            // query).
            let tx = conn.unchecked_transaction().map_err(storage)?;
            let found = search_in(&tx, force, now, filter, &words, after, limit)?;
            tx.finish().map_err(storage)?;
            Ok(found)
        })?;
        let entries = rows
            .into_iter()
            .map(RawEntry::into_entry)
            .collect::<Result<_, _>>()?;
        Ok((entries, plan))
    }

    /// [`Board::search`] by the walk in id order, whatever the filter: for
    /// tests and benchmarks of the plans (the answers are the same).
    #[doc(hidden)]
    pub fn search_by_walk(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        Ok(self.search_with(Force::Walk, now, filter, after, limit)?.0)
    }

    /// [`Board::search`] from the trigram index's candidates whenever a word
    /// can use it, however many they are: for tests and benchmarks of the
    /// plans (the answers are the same).
    #[doc(hidden)]
    pub fn search_by_index(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        Ok(self.search_with(Force::Index, now, filter, after, limit)?.0)
    }

    /// [`Board::search`] by a walk over `budget` rows then the index's
    /// candidates whenever a word can use the index: for tests of the plans
    /// (the answers are the same).
    #[doc(hidden)]
    pub fn search_by_bounded_walk(
        &self,
        budget: usize,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        Ok(self
            .search_with(Force::BoundedWalk(budget), now, filter, after, limit)?
            .0)
    }

    /// [`Board::search`], and the name of the plan that found the page: for
    /// benchmarks and diagnostics.
    #[doc(hidden)]
    pub fn search_explained(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<(Vec<BoardEntry>, &'static str), Error> {
        self.search_with(Force::Auto, now, filter, after, limit)
    }

    /// The ids of the rows the trigram index offers for `word` (folded with
    /// `fold_case` here; a long word by its phrase if `phrase`, else by the
    /// AND of its trigrams), the rows not yet indexed included: a superset
    /// of the ids of the CPOs whose goods or terms contain the word (bound,
    /// taken-down and expired ones included), which tests check. `None` if
    /// the word cannot use the index.
    #[doc(hidden)]
    pub fn index_candidates(
        &self,
        word: &str,
        phrase: bool,
    ) -> Result<Option<Vec<[u8; 32]>>, Error> {
        let w = agora_cpo::ports::fold_case(word);
        if !indexable(&w) {
            return Ok(None);
        }
        let lookup = if is_long(&w) && !phrase {
            Lookup::Match(match_all(&trigrams(&[&w], usize::MAX)))
        } else {
            Lookup::of(&w)
        };
        let ids = self.store.read(|conn| {
            let tx = conn.unchecked_transaction().map_err(storage)?;
            let docs = lookup.docs(&tx, None)?.unwrap_or_default();
            let mut q = Query::default();
            let docs = q.candidate_docs(&docs);
            q.sql = format!(
                "SELECT s.id FROM ({docs}) c CROSS JOIN cpo_search s WHERE s.doc = c.doc ORDER BY s.id"
            );
            let ids = q.run(&tx, |r| r.get::<_, Vec<u8>>(0))?;
            tx.finish().map_err(storage)?;
            Ok(ids)
        })?;
        ids.into_iter()
            .map(|id| <[u8; 32]>::try_from(id.as_slice()).map_err(|_| corrupt("id")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// How many rows the first walk reads, before any lookup, per entry of the
/// page: common words (in a quarter of the rows or more) fill the page
/// within them, for less than their lookups would cost (the trigrams of a
/// common word are common: counting and reading them takes milliseconds).
const FIRST_WALK_ROWS_PER_ENTRY: usize = 4;

/// The search in the read transaction `tx`: the page's rows and the name
/// of the plan that found them.
fn search_in(
    tx: &Connection,
    force: Force,
    now: Timestamp,
    filter: &ListFilter,
    words: &[String],
    after: Vec<u8>,
    limit: usize,
) -> Result<(Vec<RawEntry>, &'static str), Error> {
    let page = |candidates: Option<&[i64]>, after: &[u8], limit| {
        Query::page(now, filter, words, candidates, after, limit).run(tx, RawEntry::from_row)
    };
    let (mut rows, mut after, mut limit) = (Vec::new(), after, limit);
    if force == Force::Auto && words.iter().any(|w| indexable(w)) {
        // A first short walk (see FIRST_WALK_ROWS_PER_ENTRY); the plan
        // chosen then goes on after it.
        let budget = FIRST_WALK_ROWS_PER_ENTRY * limit;
        let (ids, end) = bounded_walk(tx, now, filter, words, &after, budget, limit)?;
        rows = board_rows(tx, &ids)?;
        match end {
            None => return Ok((rows, "walk (first rows)")),
            Some(end) => (after, limit) = (end, limit - rows.len()),
        }
    }
    let plan = choose(tx, force, words, limit)?;
    match &plan {
        Plan::Walk => rows.extend(page(None, &after, limit)?),
        Plan::Candidates(_, docs) => rows.extend(page(Some(docs), &after, limit)?),
        Plan::WalkThen { budget, fallback } => {
            let (ids, end) = bounded_walk(tx, now, filter, words, &after, *budget, limit)?;
            let found = board_rows(tx, &ids)?;
            let missing = limit - found.len();
            rows.extend(found);
            if let (Some(end), true) = (end, missing > 0) {
                let docs = fallback.docs(tx, None)?.unwrap_or_default();
                rows.extend(page(Some(&docs), &end, missing)?);
            }
        }
    }
    Ok((rows, plan.name()))
}

/// The `cpo_board` rows of `ids`, in order.
fn board_rows(tx: &Connection, ids: &[Vec<u8>]) -> Result<Vec<RawEntry>, Error> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let mut row = Query {
            sql: format!("SELECT {ENTRY_COLUMNS} FROM cpo_board WHERE id = ?1"),
            args: vec![Value::Blob(id.clone())],
        }
        .run(tx, RawEntry::from_row)?;
        rows.push(
            row.pop()
                .ok_or_else(|| corrupt("search row without board row"))?,
        );
    }
    Ok(rows)
}

/// What a bounded walk found: the ids of the matches, and the id of the
/// last row read if the budget ran out before the page was full.
type WalkFound = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// The walk over at most `budget` rows passing the filters other than the
/// words: the ids of the first `limit` matches among them, and the id of
/// the last row read if the budget ran out first (the walk is then to go on
/// after it by other means).
fn bounded_walk(
    conn: &Connection,
    now: Timestamp,
    filter: &ListFilter,
    words: &[String],
    after: &[u8],
    budget: usize,
    limit: usize,
) -> Result<WalkFound, Error> {
    let q = Query::walk_stream(now, filter, words, after);
    let mut st = conn.prepare_cached(&q.sql).map_err(storage)?;
    let mut rows = st.query(params_from_iter(q.args)).map_err(storage)?;
    let (mut ids, mut read) = (Vec::new(), 0usize);
    while let Some(r) = rows.next().map_err(storage)? {
        let id: Vec<u8> = r.get(0).map_err(storage)?;
        let hit: bool = r.get(1).map_err(storage)?;
        read += 1;
        if hit {
            ids.push(id.clone());
            if ids.len() == limit {
                break;
            }
        }
        if read >= budget {
            return Ok((ids, Some(id)));
        }
    }
    Ok((ids, None))
}

/// A statement of [`SqliteBoard::search`] and its arguments. Only the
/// clauses of the filter's fields are there, so the statement cache holds
/// one statement per shape.
#[derive(Default)]
pub(crate) struct Query {
    pub(crate) sql: String,
    pub(crate) args: Vec<Value>,
}

impl Query {
    /// A new argument: its placeholder.
    pub(crate) fn arg(&mut self, v: Value) -> String {
        self.args.push(v);
        format!("?{}", self.args.len())
    }

    /// The `doc`s `docs` (in order) and those of the rows not yet indexed
    /// (disjoint: the index holds docs up to `upto` only), as a subquery.
    fn candidate_docs(&mut self, docs: &[i64]) -> String {
        let mut json = String::with_capacity(docs.len() * 7 + 2);
        json.push('[');
        for (i, d) in docs.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&d.to_string());
        }
        json.push(']');
        format!(
            "SELECT value AS doc FROM json_each({})
             UNION ALL SELECT doc FROM cpo_search WHERE doc > (SELECT upto FROM cpo_search_indexed)",
            self.arg(Value::Text(json))
        )
    }

    /// `AND` the clauses of [`agora_cpo::ports::matches`] but the words on
    /// `cpo_search s`, on the columns copied from the CCPO (numbers
    /// saturated at `i64::MAX` on both sides, as `matches` compares them),
    /// and keyset paging by id, after `after`.
    pub(crate) fn filters(&mut self, now: Timestamp, filter: &ListFilter, after: &[u8]) {
        // Blobs compare bytewise, shorter first: the empty blob is below
        // every 32-byte id, so "no `after`" is `id > x''`.
        let now = self.arg(sat(now.secs()));
        let after = self.arg(Value::Blob(after.to_vec()));
        let mut sql = format!(" AND s.end_at > {now} AND s.id > {after}");
        if let Some(m) = filter.min_price_cents {
            sql.push_str(&format!(" AND s.price_cents >= {}", self.arg(sat(m))));
        }
        if let Some(m) = filter.max_price_cents {
            sql.push_str(&format!(" AND s.price_cents <= {}", self.arg(sat(m))));
        }
        if let Some(c) = filter.currency {
            let a = self.arg(Value::Text(c.as_str().into()));
            sql.push_str(&format!(" AND s.currency = {a}"));
        }
        if let Some(t) = filter.active_at {
            let a = self.arg(sat(t.secs()));
            sql.push_str(&format!(" AND s.start_at <= {a} AND s.end_at > {a}"));
        }
        if let Some(m) = filter.mode {
            let a = self.arg(Value::Text(m.as_str().into()));
            sql.push_str(&format!(" AND s.mode = {a}"));
        }
        self.sql.push_str(&sql);
    }

    /// A page: the `cpo_board` rows of the ids, in `cpo_search` and after
    /// `after`, that match the filter and are open, at most `limit`, found
    /// by the walk or among `candidates` (see "How search finds its rows").
    fn page(
        now: Timestamp,
        filter: &ListFilter,
        words: &[String],
        candidates: Option<&[i64]>,
        after: &[u8],
        limit: usize,
    ) -> Query {
        let mut q = Query::default();
        q.sql = match candidates {
            None => "SELECT s.id FROM cpo_search s INDEXED BY cpo_search_walk WHERE 1".to_owned(),
            // CROSS JOIN: SQLite keeps the candidates as the outer loop.
            Some(docs) => format!(
                "SELECT s.id FROM ({}) c CROSS JOIN cpo_search s WHERE s.doc = c.doc",
                q.candidate_docs(docs)
            ),
        };
        q.filters(now, filter, after);
        // The text of cpo_search is folded by SQLite's built-in lower(),
        // which folds ASCII letters only, like agora_cpo::ports::fold_case,
        // which folded the words.
        for w in words {
            let a = q.arg(Value::Text(w.clone()));
            q.sql.push_str(&format!(
                " AND (instr(s.goods, {a}) > 0 OR instr(s.terms, {a}) > 0)"
            ));
        }
        let limit = q.arg(sat(u64::try_from(limit).unwrap_or(u64::MAX)));
        q.sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM cpo_board WHERE id IN ({}
             AND NOT EXISTS (SELECT 1 FROM cpo_binding b WHERE b.id = s.id)
             AND NOT EXISTS (SELECT 1 FROM cpo_takedown d WHERE d.id = s.id)
             ORDER BY s.id LIMIT {limit}) ORDER BY id",
            q.sql
        );
        q
    }

    /// The walk as a stream: the ids, in order, of the rows after `after`
    /// that pass the filters other than the words, each with whether it
    /// matches the words and is open (tested row by row, as read).
    fn walk_stream(now: Timestamp, filter: &ListFilter, words: &[String], after: &[u8]) -> Query {
        let mut q = Query {
            sql: String::new(),
            args: Vec::new(),
        };
        let mut hit = String::from("1");
        for w in words {
            let a = q.arg(Value::Text(w.clone()));
            hit.push_str(&format!(
                " AND (instr(s.goods, {a}) > 0 OR instr(s.terms, {a}) > 0)"
            ));
        }
        q.sql = format!(
            "SELECT s.id, CASE WHEN {hit} THEN
                 NOT EXISTS (SELECT 1 FROM cpo_binding b WHERE b.id = s.id)
                 AND NOT EXISTS (SELECT 1 FROM cpo_takedown d WHERE d.id = s.id)
             ELSE 0 END
             FROM cpo_search s INDEXED BY cpo_search_walk WHERE 1"
        );
        q.filters(now, filter, after);
        q.sql.push_str(" ORDER BY s.id");
        q
    }

    pub(crate) fn run<T>(
        self,
        conn: &Connection,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, Error> {
        conn.prepare_cached(&self.sql)
            .and_then(|mut st| {
                st.query_map(params_from_iter(self.args), row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)
    }
}
