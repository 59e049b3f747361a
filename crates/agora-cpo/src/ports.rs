//! Storage ports of the CPO server (ARCHITECTURE section 5): what it must
//! remember, as narrow traits with in-memory twins. agora-store implements
//! them on SQLite; `conformance` (feature `testkit`) holds the suite every implementation runs.

use crate::msg::Mode;
use crate::Ccpo;
use agora_core::{Currency, Error, KeyId, Timestamp};
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

/// What a listing, and an answer to one, need of a posted CPO: its CCPO and
/// mode, and whether it is bound or taken down. Less than a [`BoardEntry`]
/// (none of the evidence), and read in one go ([`Board::state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpoState {
    /// The CPO.
    pub ccpo: Ccpo,
    /// First-come or bidding.
    pub mode: Mode,
    /// Whether it is bound.
    pub bound: bool,
    /// Whether it was taken down.
    pub taken_down: bool,
}

/// Who bound a CPO, when, and the contract the server signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The key id of the seller's bond key.
    pub seller: KeyId,
    /// When.
    pub bound_at: Timestamp,
    /// BOUND_CPO as the server signed it (COSE_Sign1): the evidence.
    pub bound_cpo: Vec<u8>,
}

/// The result of a binding attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// This binding won.
    Bound,
    /// Someone bound it first; nothing changed.
    AlreadyBound,
    /// No such CPO on the board; nothing changed.
    NotPosted,
    /// The CPO was taken down (its buyer's bond was revoked); nothing changed.
    TakenDown,
    /// The browse session the binding was made in has ended (or is not
    /// stored); nothing changed. Only a binding made in a session
    /// ([`crate::store::CpoWrite::Bind`]).
    SessionEnded,
}

/// The result of taking a CPO down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeDownOutcome {
    /// Taken down now: it leaves the listing and can no longer be bound.
    TakenDown,
    /// It was taken down before.
    AlreadyTakenDown,
    /// It is bound: a contract stands; nothing changed.
    AlreadyBound,
    /// No such CPO; nothing changed.
    NotPosted,
}

/// A browse session (protocol 3) as the server keeps it. Compared in
/// constant time over its id and K_p ([`subtle::ConstantTimeEq`]; `==` is
/// the same comparison): how long a comparison takes says nothing of where
/// two sessions' secrets differ.
#[derive(Clone)]
pub struct Session {
    /// The session id (SHA-256 of a label and K_p).
    pub id: [u8; 32],
    /// K_p.
    pub k_p: [u8; 32],
    /// The key id of the seller's bond key.
    pub seller: KeyId,
    /// BC_P, DER (it goes into every BOUND_CPO of the session).
    pub bond: Vec<u8>,
    /// The bond's serial, to check the agency's CRL at each bind.
    pub bond_serial: Vec<u8>,
    /// The bonding agency's key id.
    pub agency: KeyId,
    /// T: the session's time range (start).
    pub from: Timestamp,
    /// T (end).
    pub until: Timestamp,
    /// When the seller ended it, if she did (K_p is then out of action).
    pub ended_at: Option<Timestamp>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &hex::encode(&self.id[..8]))
            .field("seller", &self.seller)
            .field("from", &self.from)
            .field("until", &self.until)
            .field("ended_at", &self.ended_at)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.k_p);
    }
}

impl subtle::ConstantTimeEq for Session {
    /// The id and K_p in constant time, without stopping at the first
    /// difference; then the public fields.
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let public = self.seller == other.seller
            && self.bond == other.bond
            && self.bond_serial == other.bond_serial
            && self.agency == other.agency
            && self.from == other.from
            && self.until == other.until
            && self.ended_at == other.ended_at;
        self.id[..].ct_eq(&other.id[..])
            & self.k_p[..].ct_eq(&other.k_p[..])
            & subtle::Choice::from(u8::from(public))
    }
}

impl PartialEq for Session {
    /// [`subtle::ConstantTimeEq::ct_eq`].
    fn eq(&self, other: &Self) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self, other))
    }
}

impl Eq for Session {}

/// The result of ending a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndOutcome {
    /// Ended now.
    Ended,
    /// It had ended before.
    AlreadyEnded,
    /// No such session.
    Unknown,
}

impl EndOutcome {
    /// Every outcome, in the order of [`EndOutcome::code`]'s table.
    pub const ALL: [EndOutcome; 3] = [
        EndOutcome::Ended,
        EndOutcome::AlreadyEnded,
        EndOutcome::Unknown,
    ];

    /// The outcome's stable code: the server's answer to CPO_BROWSE_END
    /// (a CBOR text string), what the seller's client reads back and what
    /// `agora cpo end-session` prints. Part of the protocol: never changed,
    /// only added to.
    ///
    /// | outcome | code |
    /// |---|---|
    /// | [`EndOutcome::Ended`] | `ended` |
    /// | [`EndOutcome::AlreadyEnded`] | `already-ended` |
    /// | [`EndOutcome::Unknown`] | `unknown-session` |
    pub fn code(self) -> &'static str {
        match self {
            EndOutcome::Ended => "ended",
            EndOutcome::AlreadyEnded => "already-ended",
            EndOutcome::Unknown => "unknown-session",
        }
    }

    /// The outcome of `code` ([`EndOutcome::code`]), or `None` for a code
    /// this version does not know.
    pub fn from_code(code: &str) -> Option<EndOutcome> {
        EndOutcome::ALL.into_iter().find(|o| o.code() == code)
    }
}

impl std::fmt::Display for EndOutcome {
    /// [`EndOutcome::code`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The browse sessions of a server.
pub trait Sessions: Send + Sync {
    /// Store a new session (durably; refused if its id exists).
    fn create(&self, s: &Session) -> Result<(), Error>;
    /// The session `id`.
    fn get(&self, id: &[u8; 32]) -> Result<Option<Session>, Error>;
    /// End session `id` at `at`: its K_p binds nothing afterwards.
    fn end(&self, id: &[u8; 32], at: Timestamp) -> Result<EndOutcome, Error>;
    /// End every live session of `seller` (her bond was revoked); returns
    /// how many ended.
    fn end_all_of(&self, seller: &KeyId, at: Timestamp) -> Result<usize, Error>;
    /// Sessions not ended and not over at `now` (until > now), at most
    /// [`MAX_PAGE_LEN`] after session id `after`, ordered by id: for the
    /// revocation sweep.
    fn live(&self, now: Timestamp, after: Option<[u8; 32]>) -> Result<Vec<Session>, Error>;
}

/// The in-memory twin of [`Sessions`].
#[derive(Debug, Default)]
pub struct MemorySessions(Mutex<BTreeMap<[u8; 32], Session>>);

impl MemorySessions {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<[u8; 32], Session>>, Error> {
        self.0
            .lock()
            .map_err(|_| Error::Storage("sessions lock poisoned".into()))
    }
}

impl Sessions for MemorySessions {
    fn create(&self, s: &Session) -> Result<(), Error> {
        let mut m = self.lock()?;
        if m.contains_key(&s.id) {
            return Err(Error::Refused("session id exists".into()));
        }
        m.insert(s.id, s.clone());
        Ok(())
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<Session>, Error> {
        Ok(self.lock()?.get(id).cloned())
    }

    fn end(&self, id: &[u8; 32], at: Timestamp) -> Result<EndOutcome, Error> {
        let mut m = self.lock()?;
        Ok(match m.get_mut(id) {
            None => EndOutcome::Unknown,
            Some(s) if s.ended_at.is_some() => EndOutcome::AlreadyEnded,
            Some(s) => {
                s.ended_at = Some(at);
                EndOutcome::Ended
            }
        })
    }

    fn live(&self, now: Timestamp, after: Option<[u8; 32]>) -> Result<Vec<Session>, Error> {
        let m = self.lock()?;
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        Ok(m.range((start, std::ops::Bound::Unbounded))
            .map(|(_, s)| s)
            .filter(|s| s.ended_at.is_none() && s.until > now)
            .take(MAX_PAGE_LEN)
            .cloned()
            .collect())
    }

    fn end_all_of(&self, seller: &KeyId, at: Timestamp) -> Result<usize, Error> {
        let mut m = self.lock()?;
        let mut n = 0;
        for s in m.values_mut() {
            if &s.seller == seller && s.ended_at.is_none() {
                s.ended_at = Some(at);
                n += 1;
            }
        }
        Ok(n)
    }
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
    /// Bind the CPO `id` to `binding` unless it is bound already: the first
    /// valid binding wins, exactly once, across processes sharing the store.
    fn try_bind(&self, id: &[u8; 32], binding: &Binding) -> Result<BindOutcome, Error>;
    /// The binding of CPO `id`, if it is bound.
    fn binding(&self, id: &[u8; 32]) -> Result<Option<Binding>, Error>;
    /// Take CPO `id` down at `at` (paper 4.2, attack 3: its buyer's key is
    /// on a CRL): it leaves the listing and can no longer be bound. A bound
    /// CPO stays bound.
    fn take_down(&self, id: &[u8; 32], at: Timestamp) -> Result<TakeDownOutcome, Error>;
    /// When CPO `id` was taken down, if it was.
    fn taken_down(&self, id: &[u8; 32]) -> Result<Option<Timestamp>, Error>;
    /// The [`CpoState`] of CPO `id`, if it is posted: what [`Self::get`],
    /// [`Self::binding`] and [`Self::taken_down`] say of it, which an
    /// implementation may read at once (one query, no evidence read) or keep
    /// from an earlier read. Bound and taken down are final, so a kept state
    /// may show open a CPO that another process sharing the store has closed
    /// since (never the reverse): callers decide nothing on "open" alone,
    /// [`Self::try_bind`] does.
    fn state(&self, id: &[u8; 32]) -> Result<Option<CpoState>, Error> {
        let Some(entry) = self.get(id)? else {
            return Ok(None);
        };
        Ok(Some(CpoState {
            ccpo: entry.ccpo,
            mode: entry.mode,
            bound: self.binding(id)?.is_some(),
            taken_down: self.taken_down(id)?.is_some(),
        }))
    }
    /// The open CPOs at `now` that `filter` selects, ordered by CPO id,
    /// starting after `after`, at most `limit` (capped at [`MAX_PAGE_LEN`]).
    /// Open: not bound, not taken down, and not expired (EndDate > now). Which entries the
    /// filter selects is defined by [`matches()`]; refuses a filter over its
    /// limits ([`ListFilter::check`]) with [`Error::Refused`].
    fn search(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error>;

    /// CPOs not yet expired at `now` (EndDate > now) and not bound, ordered
    /// by CPO id, starting after `after`, at most `limit` (capped at
    /// [`MAX_PAGE_LEN`]): [`Self::search`] with the default (empty) filter.
    fn list_open(
        &self,
        now: Timestamp,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        self.search(now, &ListFilter::default(), after, limit)
    }
}

/// Longest search text of a [`ListFilter`], in bytes.
pub const MAX_SEARCH_LEN: usize = 200;
/// Most words in the search text of a [`ListFilter`].
pub const MAX_SEARCH_WORDS: usize = 8;

/// What a public listing of the board selects (every field optional; the
/// default selects every open CPO). Nothing here concerns the buyer: the
/// listing never shows nor filters by him. [`matches()`] defines the meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Words that must each occur (AND), as substrings, in the goods or the
    /// terms; case folded for ASCII letters only. Split at whitespace; at
    /// most [`MAX_SEARCH_LEN`] bytes and [`MAX_SEARCH_WORDS`] words. Empty
    /// or blank selects everything.
    pub text: Option<String>,
    /// Lowest price, in cents, inclusive.
    pub min_price_cents: Option<u64>,
    /// Highest price, in cents, inclusive.
    pub max_price_cents: Option<u64>,
    /// Only CPOs priced in this currency. (The price bounds compare cents
    /// whatever the currency: set this with them.)
    pub currency: Option<Currency>,
    /// Only CPOs active at this time: StartDate <= t < EndDate.
    pub active_at: Option<Timestamp>,
    /// Only first-come or only bidding CPOs.
    pub mode: Option<Mode>,
}

impl ListFilter {
    /// Refuses a search text longer than [`MAX_SEARCH_LEN`] bytes or of
    /// more than [`MAX_SEARCH_WORDS`] words.
    pub fn check(&self) -> Result<(), Error> {
        let Some(t) = &self.text else {
            return Ok(());
        };
        if t.len() > MAX_SEARCH_LEN {
            return Err(Error::Refused(format!(
                "search text longer than {MAX_SEARCH_LEN} bytes"
            )));
        }
        if t.split_whitespace().nth(MAX_SEARCH_WORDS).is_some() {
            return Err(Error::Refused(format!(
                "search text of more than {MAX_SEARCH_WORDS} words"
            )));
        }
        Ok(())
    }

    /// The search words, case folded ([`fold_case`]): what must each occur
    /// in the folded goods or terms. Does not check the limits.
    pub fn words(&self) -> Vec<String> {
        self.text
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(fold_case)
            .collect()
    }
}

/// The case folding of searches: ASCII letters to lower case, every other
/// character unchanged (so "CAFÉ" finds "café" only through "caf"). This
/// is exactly what SQLite's built-in `lower()` does, so a board searching in
/// SQL and [`matches()`] agree.
pub fn fold_case(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Numbers (cents, seconds) as the SQL store compares them: saturated at
/// `i64::MAX`, the range of an SQLite integer. Only values beyond it (92
/// quadrillion cents, the year 292 billion) are affected, and their order
/// among real values is kept.
fn sat(x: u64) -> u64 {
    x.min(i64::MAX.unsigned_abs())
}

/// Whether a listing at `now` with `filter` shows `entry`, bindings aside
/// (a bound CPO is never listed; the board knows which are): the one
/// definition of the listing's semantics, which every [`Board`] follows.
///
/// - not expired: EndDate > now;
/// - every word of [`ListFilter::text`] occurs in the goods or in the terms
///   (substring, ASCII case folded: [`fold_case`]);
/// - min <= price <= max (cents), the currency and the mode equal, when given;
/// - StartDate <= active_at < EndDate, when given.
///
/// Prices and times compare saturated at `i64::MAX` (see the store).
pub fn matches(filter: &ListFilter, entry: &BoardEntry, now: Timestamp) -> bool {
    let c = &entry.ccpo;
    let (start, end, price) = (sat(c.start.secs()), sat(c.end.secs()), sat(c.price.cents));
    if end <= sat(now.secs()) {
        return false;
    }
    if filter.min_price_cents.is_some_and(|m| price < sat(m))
        || filter.max_price_cents.is_some_and(|m| price > sat(m))
        || filter.currency.is_some_and(|cur| c.price.currency != cur)
        || filter.mode.is_some_and(|m| entry.mode != m)
    {
        return false;
    }
    if let Some(t) = filter.active_at {
        let t = sat(t.secs());
        if !(start <= t && t < end) {
            return false;
        }
    }
    let words = filter.words();
    if words.is_empty() {
        return true;
    }
    let (goods, terms) = (fold_case(&c.goods), fold_case(&c.terms));
    words
        .iter()
        .all(|w| goods.contains(w.as_str()) || terms.contains(w.as_str()))
}

/// The in-memory twin of [`Board`].
#[derive(Debug, Default)]
pub struct MemoryBoard(Mutex<BoardMap>);

/// What became of a posted CPO.
#[derive(Clone, Debug)]
enum Fate {
    Open,
    Bound(Binding),
    TakenDown(Timestamp),
}

/// Posted CPOs by id, each with what became of it.
type BoardMap = BTreeMap<[u8; 32], (BoardEntry, Fate)>;

impl MemoryBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BoardMap>, Error> {
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
        m.insert(entry.ccpo.id, (entry.clone(), Fate::Open));
        Ok(PostOutcome::Posted)
    }

    fn get(&self, id: &[u8; 32]) -> Result<Option<BoardEntry>, Error> {
        Ok(self.lock()?.get(id).map(|(e, _)| e.clone()))
    }

    fn try_bind(&self, id: &[u8; 32], binding: &Binding) -> Result<BindOutcome, Error> {
        let mut m = self.lock()?;
        Ok(match m.get_mut(id) {
            None => BindOutcome::NotPosted,
            Some((_, Fate::Bound(_))) => BindOutcome::AlreadyBound,
            Some((_, Fate::TakenDown(_))) => BindOutcome::TakenDown,
            Some((_, f)) => {
                *f = Fate::Bound(binding.clone());
                BindOutcome::Bound
            }
        })
    }

    fn binding(&self, id: &[u8; 32]) -> Result<Option<Binding>, Error> {
        Ok(self.lock()?.get(id).and_then(|(_, f)| match f {
            Fate::Bound(b) => Some(b.clone()),
            _ => None,
        }))
    }

    fn take_down(&self, id: &[u8; 32], at: Timestamp) -> Result<TakeDownOutcome, Error> {
        let mut m = self.lock()?;
        Ok(match m.get_mut(id) {
            None => TakeDownOutcome::NotPosted,
            Some((_, Fate::Bound(_))) => TakeDownOutcome::AlreadyBound,
            Some((_, Fate::TakenDown(_))) => TakeDownOutcome::AlreadyTakenDown,
            Some((_, f)) => {
                *f = Fate::TakenDown(at);
                TakeDownOutcome::TakenDown
            }
        })
    }

    fn taken_down(&self, id: &[u8; 32]) -> Result<Option<Timestamp>, Error> {
        Ok(self.lock()?.get(id).and_then(|(_, f)| match f {
            Fate::TakenDown(t) => Some(*t),
            _ => None,
        }))
    }

    fn search(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        filter.check()?;
        let m = self.lock()?;
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        Ok(m.range((start, std::ops::Bound::Unbounded))
            .filter(|(_, (_, f))| matches!(f, Fate::Open))
            .map(|(_, (e, _))| e)
            .filter(|e| matches(filter, e, now))
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

    /// A board entry for CPO number `n`, ending at `end` (first-come for
    /// even `n`, bidding for odd).
    pub fn entry(n: u64, end: u64) -> BoardEntry {
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
        bind_once_and_leave_the_listing(&make());
        concurrent_binds_of_one_cpo_bind_once(&make());
        search_filters_alone_and_combined(&make());
        search_pages_through_filtered_results(&make());
        search_never_lists_bound_or_expired(&make());
        search_refuses_oversized_text(&make());
        take_down_rules(&make());
        state_follows_the_entry(&make());
    }

    /// [`Board::state`] agrees with `get`, `binding` and `taken_down`
    /// through posting, binding and take-down.
    pub fn state_follows_the_entry<B: Board>(b: &B) {
        let (x, y) = (entry(31, 1_000), entry(32, 1_000));
        assert_eq!(b.state(&x.ccpo.id).expect("state"), None, "not posted");
        b.post(&x).expect("post");
        b.post(&y).expect("post");
        let open = |e: &BoardEntry, bound, taken_down| CpoState {
            ccpo: e.ccpo.clone(),
            mode: e.mode,
            bound,
            taken_down,
        };
        assert_eq!(
            b.state(&x.ccpo.id).expect("state"),
            Some(open(&x, false, false))
        );
        b.try_bind(&x.ccpo.id, &binding(1)).expect("bind");
        b.take_down(&y.ccpo.id, Timestamp(300)).expect("take down");
        assert_eq!(
            b.state(&x.ccpo.id).expect("state"),
            Some(open(&x, true, false))
        );
        assert_eq!(
            b.state(&y.ccpo.id).expect("state"),
            Some(open(&y, false, true))
        );
    }

    /// A taken-down CPO leaves the listing and cannot be bound; a bound one
    /// is not taken down; unknown ids change nothing.
    pub fn take_down_rules<B: Board>(b: &B) {
        let (x, y) = (entry(21, 1_000), entry(22, 1_000));
        b.post(&x).expect("post");
        b.post(&y).expect("post");
        assert_eq!(b.taken_down(&x.ccpo.id).expect("taken_down"), None);
        assert_eq!(
            b.take_down(&x.ccpo.id, Timestamp(300)).expect("take down"),
            TakeDownOutcome::TakenDown
        );
        assert_eq!(
            b.take_down(&x.ccpo.id, Timestamp(400)).expect("take down"),
            TakeDownOutcome::AlreadyTakenDown
        );
        assert_eq!(
            b.taken_down(&x.ccpo.id).expect("taken_down"),
            Some(Timestamp(300))
        );
        assert_eq!(
            b.try_bind(&x.ccpo.id, &binding(1)).expect("bind"),
            BindOutcome::TakenDown
        );
        assert_eq!(b.binding(&x.ccpo.id).expect("binding"), None);
        let open = b.list_open(Timestamp(100), None, 10).expect("list");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].ccpo.id, y.ccpo.id);
        assert_eq!(b.get(&x.ccpo.id).expect("get"), Some(x), "still readable");
        b.try_bind(&y.ccpo.id, &binding(2)).expect("bind");
        assert_eq!(
            b.take_down(&y.ccpo.id, Timestamp(300)).expect("take down"),
            TakeDownOutcome::AlreadyBound
        );
        assert_eq!(b.taken_down(&y.ccpo.id).expect("taken_down"), None);
        assert_eq!(
            b.take_down(&[0xCD; 32], Timestamp(300)).expect("take down"),
            TakeDownOutcome::NotPosted
        );
    }

    /// An entry with the given public fields (id `n`).
    fn item(
        n: u64,
        goods: &str,
        terms: &str,
        price: &str,
        start: u64,
        end: u64,
        mode: Mode,
    ) -> BoardEntry {
        let mut e = entry(n, end);
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        e.ccpo = Ccpo::with_id(
            id,
            CcpoDraft {
                arbiter: KeyId([1; 32]),
                server: KeyId([2; 32]),
                goods: goods.into(),
                price: price.parse().expect("price"),
                start: Timestamp(start),
                end: Timestamp(end),
                terms: terms.into(),
                bond: vec![0x30, 0x03, 1, 2, 3],
            },
        )
        .expect("valid CCPO");
        e.mode = mode;
        e
    }

    /// The board the search checks run on, at `SEARCH_NOW`: 1-4 and 7 are
    /// open, 5 is bound, 6 expired.
    fn search_board<B: Board>(b: &B) {
        use Mode::{Bidding as B_, FirstCome as F};
        let items = [
            item(1, "Red bicycle", "Pickup in Paris", "150 EUR", 0, 1_000, F),
            item(
                2,
                "Blue bicycle helmet",
                "ships worldwide",
                "40 EUR",
                0,
                1_000,
                B_,
            ),
            item(
                3,
                "Vintage camera",
                "Bicycle courier only",
                "300 USD",
                200,
                1_000,
                F,
            ),
            item(4, "Camera lens", "", "90 USD", 0, 150, B_),
            item(5, "RED wine", "case of 6 bicycle", "60 EUR", 0, 1_000, B_),
            item(6, "red bicycle", "", "120 EUR", 0, 50, F),
            item(7, "Crème brûlée torch", "", "25 EUR", 0, 1_000, F),
        ];
        for e in &items {
            assert_eq!(b.post(e).expect("post"), PostOutcome::Posted);
        }
        assert_eq!(
            b.try_bind(&items[4].ccpo.id, &binding(1)).expect("bind"),
            BindOutcome::Bound
        );
    }

    const SEARCH_NOW: Timestamp = Timestamp(100);

    fn ids(es: &[BoardEntry]) -> Vec<u64> {
        es.iter()
            .map(|e| u64::from_be_bytes(e.ccpo.id[..8].try_into().expect("8")))
            .collect()
    }

    fn found<B: Board>(b: &B, now: Timestamp, f: &ListFilter) -> Vec<u64> {
        ids(&b.search(now, f, None, MAX_PAGE_LEN).expect("search"))
    }

    fn text(t: &str) -> ListFilter {
        ListFilter {
            text: Some(t.into()),
            ..ListFilter::default()
        }
    }

    /// Each filter alone, then together.
    pub fn search_filters_alone_and_combined<B: Board>(b: &B) {
        search_board(b);
        let eur = Currency::new("EUR").expect("EUR");
        let usd = Currency::new("USD").expect("USD");
        let f = |f: ListFilter| found(b, SEARCH_NOW, &f);
        assert_eq!(f(ListFilter::default()), vec![1, 2, 3, 4, 7]);
        // Text: words AND, goods or terms, ASCII case folded.
        assert_eq!(f(text("")), vec![1, 2, 3, 4, 7]);
        assert_eq!(f(text("  \t ")), vec![1, 2, 3, 4, 7]);
        assert_eq!(f(text("bicycle")), vec![1, 2, 3], "3 by its terms");
        assert_eq!(f(text("BICYCLE red")), vec![1]);
        assert_eq!(f(text("red bicycle")), vec![1]);
        assert_eq!(f(text("camera LENS")), vec![4]);
        assert_eq!(f(text("cam")), vec![3, 4], "substrings match");
        assert_eq!(f(text("bicycle zebra")), Vec::<u64>::new());
        assert_eq!(
            f(text("paris red")),
            vec![1],
            "one word each in goods and terms"
        );
        assert_eq!(f(text("CRème")), vec![7], "ASCII letters fold");
        assert_eq!(f(text("CRÈME")), Vec::<u64>::new(), "other letters do not");
        // Price range, inclusive, in cents.
        let price = |min: Option<u64>, max: Option<u64>| ListFilter {
            min_price_cents: min,
            max_price_cents: max,
            ..ListFilter::default()
        };
        assert_eq!(f(price(Some(10_000), None)), vec![1, 3]);
        assert_eq!(f(price(None, Some(10_000))), vec![2, 4, 7]);
        assert_eq!(
            f(price(Some(9_000), Some(15_000))),
            vec![1, 4],
            "bounds inclusive"
        );
        assert_eq!(f(price(Some(20_000), Some(10_000))), Vec::<u64>::new());
        // Currency.
        let cur = |c| ListFilter {
            currency: Some(c),
            ..ListFilter::default()
        };
        assert_eq!(f(cur(eur)), vec![1, 2, 7]);
        assert_eq!(f(cur(usd)), vec![3, 4]);
        // Active dates: start <= t < end.
        let at = |t| ListFilter {
            active_at: Some(Timestamp(t)),
            ..ListFilter::default()
        };
        assert_eq!(f(at(120)), vec![1, 2, 4, 7], "3 starts at 200");
        assert_eq!(
            f(at(200)),
            vec![1, 2, 3, 7],
            "start inclusive, 4 ended at 150"
        );
        assert_eq!(f(at(150)), vec![1, 2, 7], "end exclusive");
        assert_eq!(f(at(1_000)), Vec::<u64>::new());
        // Mode.
        let mode = |m| ListFilter {
            mode: Some(m),
            ..ListFilter::default()
        };
        assert_eq!(f(mode(Mode::Bidding)), vec![2, 4]);
        assert_eq!(f(mode(Mode::FirstCome)), vec![1, 3, 7]);
        // Combined.
        assert_eq!(
            f(ListFilter {
                currency: Some(eur),
                max_price_cents: Some(10_000),
                ..text("bicycle")
            }),
            vec![2]
        );
        assert_eq!(
            f(ListFilter {
                mode: Some(Mode::Bidding),
                active_at: Some(Timestamp(120)),
                ..text("camera")
            }),
            vec![4]
        );
        assert_eq!(
            f(ListFilter {
                min_price_cents: Some(10_000),
                active_at: Some(Timestamp(120)),
                ..text("bicycle")
            }),
            vec![1]
        );
        assert_eq!(
            f(ListFilter {
                text: Some("bicycle".into()),
                min_price_cents: Some(1),
                max_price_cents: Some(1_000_000),
                currency: Some(usd),
                active_at: Some(Timestamp(500)),
                mode: Some(Mode::FirstCome),
            }),
            vec![3]
        );
    }

    /// Paging (keyset, by id) through filtered results gives them all, once.
    pub fn search_pages_through_filtered_results<B: Board>(b: &B) {
        search_board(b);
        let filters = [
            ListFilter::default(),
            text("bicycle"),
            ListFilter {
                currency: Some(Currency::new("EUR").expect("EUR")),
                ..ListFilter::default()
            },
            ListFilter {
                mode: Some(Mode::FirstCome),
                ..text("e")
            },
        ];
        for filter in &filters {
            let all = found(b, SEARCH_NOW, filter);
            for k in 1..=3 {
                let mut paged = Vec::new();
                let mut after = None;
                loop {
                    let page = b.search(SEARCH_NOW, filter, after, k).expect("search");
                    assert!(page.len() <= k);
                    let Some(last) = page.last() else { break };
                    after = Some(last.ccpo.id);
                    paged.extend(ids(&page));
                }
                assert_eq!(paged, all, "{filter:?} by pages of {k}");
            }
            // After an id that is not on the board: the ids above it.
            let mut gap = [0u8; 32];
            gap[..8].copy_from_slice(&2u64.to_be_bytes());
            gap[31] = 1;
            let above: Vec<u64> = all.iter().copied().filter(|n| *n > 2).collect();
            assert_eq!(
                ids(&b
                    .search(SEARCH_NOW, filter, Some(gap), 100)
                    .expect("search")),
                above
            );
        }
        assert!(b
            .search(SEARCH_NOW, &ListFilter::default(), None, 0)
            .expect("search")
            .is_empty());
    }

    /// Whatever the filter, a bound CPO is never listed, nor an expired one.
    pub fn search_never_lists_bound_or_expired<B: Board>(b: &B) {
        search_board(b);
        assert_eq!(
            found(b, SEARCH_NOW, &text("red")),
            vec![1],
            "5 bound, 6 expired"
        );
        assert_eq!(found(b, SEARCH_NOW, &text("wine")), Vec::<u64>::new());
        // Before 6 expired it is listed; 5 stays bound.
        assert_eq!(found(b, Timestamp(10), &text("red")), vec![1, 6]);
        assert_eq!(
            found(
                b,
                Timestamp(10),
                &ListFilter {
                    active_at: Some(Timestamp(20)),
                    ..text("red")
                }
            ),
            vec![1, 6]
        );
        // A filter on the past does not bring back what expired.
        assert_eq!(
            found(
                b,
                SEARCH_NOW,
                &ListFilter {
                    active_at: Some(Timestamp(20)),
                    ..text("red")
                }
            ),
            vec![1]
        );
        assert!(found(b, Timestamp(1_000), &ListFilter::default()).is_empty());
    }

    /// Search texts over the limits are refused; at the limits they run.
    pub fn search_refuses_oversized_text<B: Board>(b: &B) {
        search_board(b);
        let run = |t: String| b.search(SEARCH_NOW, &text(&t), None, 10);
        assert!(run("a".repeat(MAX_SEARCH_LEN)).is_ok());
        assert!(matches!(
            run("a".repeat(MAX_SEARCH_LEN + 1)),
            Err(Error::Refused(_))
        ));
        assert!(run(["e"; MAX_SEARCH_WORDS].join(" ")).is_ok());
        assert!(matches!(
            run(["e"; MAX_SEARCH_WORDS + 1].join(" ")),
            Err(Error::Refused(_))
        ));
        assert_eq!(
            ids(&run(["e"; MAX_SEARCH_WORDS].join(" ")).expect("search")),
            found(b, SEARCH_NOW, &text("e"))
        );
    }

    fn binding(n: u8) -> Binding {
        Binding {
            seller: KeyId([n; 32]),
            bound_at: Timestamp(500 + u64::from(n)),
            bound_cpo: vec![n, n, n],
        }
    }

    /// The first binding wins; later ones change nothing; a bound CPO is no
    /// longer listed; an unknown id is NotPosted.
    pub fn bind_once_and_leave_the_listing<B: Board>(b: &B) {
        let e = entry(5, 1_000);
        b.post(&e).expect("post");
        b.post(&entry(6, 1_000)).expect("post");
        assert_eq!(b.binding(&e.ccpo.id).expect("binding"), None);
        assert_eq!(
            b.try_bind(&e.ccpo.id, &binding(1)).expect("bind"),
            BindOutcome::Bound
        );
        assert_eq!(
            b.try_bind(&e.ccpo.id, &binding(2)).expect("bind"),
            BindOutcome::AlreadyBound
        );
        assert_eq!(b.binding(&e.ccpo.id).expect("binding"), Some(binding(1)));
        assert_eq!(
            b.try_bind(&[0xAB; 32], &binding(3)).expect("bind"),
            BindOutcome::NotPosted
        );
        let open = b.list_open(Timestamp(100), None, 10).expect("list");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].ccpo.id, entry(6, 1_000).ccpo.id);
        assert_eq!(b.get(&e.ccpo.id).expect("get"), Some(e), "still readable");
    }

    /// Many sellers race to bind one CPO: exactly one wins.
    pub fn concurrent_binds_of_one_cpo_bind_once<B: Board + Sync>(b: &B) {
        let e = entry(9, 1_000);
        b.post(&e).expect("post");
        let outcomes: Vec<BindOutcome> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16u8)
                .map(|i| {
                    let id = e.ccpo.id;
                    s.spawn(move || b.try_bind(&id, &binding(i)).expect("bind"))
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == BindOutcome::Bound)
                .count(),
            1
        );
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == BindOutcome::AlreadyBound)
                .count(),
            15
        );
    }

    /// Session number `n` of seller number `seller`, from 100 to 200.
    pub fn session(n: u8, seller: u8) -> Session {
        Session {
            id: [n; 32],
            k_p: [n.wrapping_add(100); 32],
            seller: KeyId([seller; 32]),
            bond: vec![0x30, n],
            bond_serial: vec![n, 1],
            agency: KeyId([7; 32]),
            from: Timestamp(100),
            until: Timestamp(200),
            ended_at: None,
        }
    }

    /// Runs every check of [`Sessions`] on fresh stores from `make`.
    pub fn sessions_suite<S: Sessions>(make: impl Fn() -> S) {
        let s = make();
        // live(): not ended and not over, by id, paged.
        for (n, seller) in [(5, 1), (6, 1), (7, 2)] {
            s.create(&session(n, seller)).expect("create");
        }
        s.end(&[6; 32], Timestamp(110)).expect("end");
        let ids = |v: Vec<Session>| v.iter().map(|x| x.id[0]).collect::<Vec<u8>>();
        assert_eq!(ids(s.live(Timestamp(150), None).expect("live")), vec![5, 7]);
        assert_eq!(
            ids(s.live(Timestamp(150), Some([5; 32])).expect("live")),
            vec![7]
        );
        assert!(
            s.live(Timestamp(200), None).expect("live").is_empty(),
            "over at until"
        );
        let s = make();
        s.create(&session(1, 1)).expect("create");
        assert!(s.create(&session(1, 1)).is_err(), "ids are unique");
        assert_eq!(s.get(&[1; 32]).expect("get"), Some(session(1, 1)));
        assert_eq!(s.get(&[2; 32]).expect("get"), None);
        assert_eq!(
            s.end(&[1; 32], Timestamp(150)).expect("end"),
            EndOutcome::Ended
        );
        assert_eq!(
            s.end(&[1; 32], Timestamp(160)).expect("end"),
            EndOutcome::AlreadyEnded
        );
        assert_eq!(
            s.end(&[2; 32], Timestamp(160)).expect("end"),
            EndOutcome::Unknown
        );
        assert_eq!(
            s.get(&[1; 32]).expect("get").and_then(|x| x.ended_at),
            Some(Timestamp(150)),
            "the first end stands"
        );
        let s = make();
        for (n, seller) in [(1, 1), (2, 1), (3, 2)] {
            s.create(&session(n, seller)).expect("create");
        }
        s.end(&[2; 32], Timestamp(120)).expect("end");
        assert_eq!(
            s.end_all_of(&KeyId([1; 32]), Timestamp(130))
                .expect("end all"),
            1
        );
        assert_eq!(
            s.get(&[1; 32]).expect("get").and_then(|x| x.ended_at),
            Some(Timestamp(130))
        );
        assert_eq!(
            s.get(&[2; 32]).expect("get").and_then(|x| x.ended_at),
            Some(Timestamp(120))
        );
        assert_eq!(s.get(&[3; 32]).expect("get").and_then(|x| x.ended_at), None);
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

    #[test]
    fn memory_sessions_pass_the_conformance_suite() {
        super::conformance::sessions_suite(super::MemorySessions::new);
    }

    #[test]
    fn end_outcomes_have_stable_kebab_case_codes() {
        use super::EndOutcome;
        // The wire answer to CPO_BROWSE_END: fixed, whatever Debug prints.
        assert_eq!(
            EndOutcome::ALL.map(EndOutcome::code),
            ["ended", "already-ended", "unknown-session"]
        );
        for o in EndOutcome::ALL {
            assert_eq!(EndOutcome::from_code(o.code()), Some(o));
            assert_eq!(o.to_string(), o.code());
            assert!(o
                .code()
                .split('-')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())));
            assert_ne!(o.code(), format!("{o:?}"), "not the Debug name");
        }
        for unknown in ["", "Ended", "AlreadyEnded", "Unknown", "ENDED", "ended "] {
            assert_eq!(EndOutcome::from_code(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn sessions_and_grants_compare_in_constant_time_over_their_secrets() {
        use subtle::ConstantTimeEq;
        let a = super::conformance::session(1, 1);
        let same = |s: &super::Session, t: &super::Session| {
            let ct = bool::from(s.ct_eq(t));
            assert_eq!(ct, s == t, "== is ct_eq");
            ct
        };
        assert!(same(&a, &a.clone()));
        let mut b = a.clone();
        b.k_p[31] ^= 1;
        assert!(!same(&a, &b), "K_p differs");
        let mut b = a.clone();
        b.id[0] ^= 1;
        assert!(!same(&a, &b), "the id differs");
        let mut b = a.clone();
        b.ended_at = Some(agora_core::Timestamp(150));
        assert!(!same(&a, &b), "a public field differs");

        let grant = crate::msg::BrowseGrant {
            x2_hash: [1; 32],
            from: agora_core::Timestamp(1),
            until: agora_core::Timestamp(2),
            k_p: [9; 32],
        };
        assert!(bool::from(grant.ct_eq(&grant.clone())));
        let mut other = grant.clone();
        other.k_p[0] ^= 1;
        assert!(!bool::from(grant.ct_eq(&other)));
        assert_ne!(grant, other);
    }
}
