//! [`Board`] (agora-cpo's port) on SQLite: the CPOs a server posted and
//! their bindings. "A CPO id is posted at most once" is the primary key of
//! `cpo_board`, and "a CPO is bound at most once" that of `cpo_binding`, so
//! both hold across processes sharing the database.
//!
//! The encoded CCPO (checksum included) is the source of truth of a row; the
//! columns copied from it (price, dates, goods, terms) are for listing and
//! searching in SQL. Reading a row decodes the CCPO again, which re-checks
//! its checksum, and refuses a row whose CCPO does not carry the row's id.

use crate::db::storage;
use crate::Store;
use agora_core::wire::{Decoder, Encoder};
use agora_core::{Error, KeyId, Timestamp};
use agora_cpo::ports::{
    BindOutcome, Binding, Board, BoardEntry, ListFilter, PostOutcome, TakeDownOutcome, MAX_PAGE_LEN,
};
use agora_cpo::{Ccpo, Mode};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row};

/// The board port on a [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteBoard {
    store: Store,
}

impl SqliteBoard {
    /// The board of `store`.
    pub fn new(store: Store) -> Self {
        SqliteBoard { store }
    }
}

/// The columns a [`BoardEntry`] is rebuilt from, in this order.
const ENTRY_COLUMNS: &str = "id, ccpo, mode, buyer, posted_at, acceptance, posted";

/// One row of `cpo_board` as read, before it is checked.
struct RawEntry {
    id: Vec<u8>,
    ccpo: Vec<u8>,
    mode: String,
    buyer: Vec<u8>,
    posted_at: i64,
    acceptance: Vec<u8>,
    posted: Vec<u8>,
}

impl RawEntry {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawEntry> {
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

    fn into_entry(self) -> Result<BoardEntry, Error> {
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

impl Board for SqliteBoard {
    fn post(&self, entry: &BoardEntry) -> Result<PostOutcome, Error> {
        // The posting time is only in this row: refuse one it could not give
        // back (the CCPO's own dates are in the encoded CCPO, so their
        // columns may be clamped, keeping their order).
        let posted_at = i64::try_from(entry.posted_at.secs())
            .map_err(|_| Error::ApiMisuse("board posting time beyond i64::MAX seconds"))?;
        let c = &entry.ccpo;
        let (id, mode, buyer) = (c.id, entry.mode.as_str(), *entry.buyer.as_bytes());
        // Copies for SQL, clamped like the timestamps (ordering kept).
        let price_cents = i64::try_from(c.price.cents).unwrap_or(i64::MAX);
        let currency = c.price.currency.as_str().to_owned();
        let (start_at, end_at) = (crate::ts_ordered(c.start), crate::ts_ordered(c.end));
        let (goods, terms) = (c.goods.clone(), c.terms.clone());
        let ccpo = encode_ccpo(c);
        let (acceptance, posted) = (entry.acceptance.clone(), entry.posted.clone());
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO cpo_board (id, mode, buyer, price_cents, currency, start_at,
                        end_at, goods, terms, posted_at, ccpo, acceptance, posted)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        id.as_slice(),
                        mode,
                        buyer.as_slice(),
                        price_cents,
                        currency,
                        start_at,
                        end_at,
                        goods,
                        terms,
                        posted_at,
                        ccpo,
                        acceptance,
                        posted
                    ])
                })
                .map_err(storage)?;
            Ok(if n == 1 {
                PostOutcome::Posted
            } else {
                PostOutcome::AlreadyPosted
            })
        })
    }

    fn try_bind(&self, id: &[u8; 32], binding: &Binding) -> Result<BindOutcome, Error> {
        // The binding time is only in this row: refuse one it could not give
        // back.
        let bound_at = i64::try_from(binding.bound_at.secs())
            .map_err(|_| Error::ApiMisuse("binding time beyond i64::MAX seconds"))?;
        let (id, seller) = (*id, *binding.seller.as_bytes());
        let bound_cpo = binding.bound_cpo.clone();
        // One request, so one savepoint of one write transaction: the check
        // and the insert see the same state. Across processes the primary
        // key of `cpo_binding` decides (another process's binding committed
        // first makes this insert do nothing).
        self.store.writer().execute(move |conn| {
            let posted = conn
                .prepare_cached("SELECT 1 FROM cpo_board WHERE id = ?1")
                .and_then(|mut st| st.exists([id.as_slice()]))
                .map_err(storage)?;
            if !posted {
                return Ok(BindOutcome::NotPosted);
            }
            let down = conn
                .prepare_cached("SELECT 1 FROM cpo_takedown WHERE id = ?1")
                .and_then(|mut st| st.exists([id.as_slice()]))
                .map_err(storage)?;
            if down {
                return Ok(BindOutcome::TakenDown);
            }
            let n = conn
                .prepare_cached(
                    "INSERT INTO cpo_binding (id, seller, bound_at, bound_cpo)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        id.as_slice(),
                        seller.as_slice(),
                        bound_at,
                        bound_cpo
                    ])
                })
                .map_err(storage)?;
            Ok(if n == 1 {
                BindOutcome::Bound
            } else {
                BindOutcome::AlreadyBound
            })
        })
    }

    fn take_down(&self, id: &[u8; 32], at: Timestamp) -> Result<TakeDownOutcome, Error> {
        let at = i64::try_from(at.secs())
            .map_err(|_| Error::ApiMisuse("take-down time beyond i64::MAX seconds"))?;
        let id = *id;
        self.store.writer().execute(move |conn| {
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
        })
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

    fn search(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BoardEntry>, Error> {
        filter.check()?;
        let limit = limit.min(MAX_PAGE_LEN);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (sql, args) = search_query(now, filter, after, limit);
        let rows = self.store.read(|conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut st| {
                    st.query_map(params_from_iter(args), RawEntry::from_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(storage)
        })?;
        rows.into_iter().map(RawEntry::into_entry).collect()
    }
}

/// The one query of [`SqliteBoard::search`] and its arguments: the clauses
/// of [`agora_cpo::ports::matches`] on the columns copied from the CCPO
/// (numbers saturated at `i64::MAX` on both sides, as `matches` compares
/// them), keyset paging by id. Only the clauses of the filter's fields are
/// there, so the statement cache holds one statement per shape.
fn search_query(
    now: Timestamp,
    filter: &ListFilter,
    after: Option<[u8; 32]>,
    limit: usize,
) -> (String, Vec<Value>) {
    let sat = |x: u64| Value::Integer(i64::try_from(x).unwrap_or(i64::MAX));
    let mut sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM cpo_board WHERE end_at > ?1 AND id > ?2
         AND NOT EXISTS (SELECT 1 FROM cpo_binding b WHERE b.id = cpo_board.id)
         AND NOT EXISTS (SELECT 1 FROM cpo_takedown d WHERE d.id = cpo_board.id)"
    );
    // Blobs compare bytewise, shorter first: the empty blob is below every
    // 32-byte id, so "no `after`" is `id > x''`.
    let mut args = vec![
        sat(now.secs()),
        Value::Blob(after.map(|a| a.to_vec()).unwrap_or_default()),
    ];
    let mut clause = |sql_fmt: &dyn Fn(usize) -> String, v: Value| {
        args.push(v);
        sql.push_str(" AND ");
        sql.push_str(&sql_fmt(args.len()));
    };
    if let Some(m) = filter.min_price_cents {
        clause(&|i| format!("price_cents >= ?{i}"), sat(m));
    }
    if let Some(m) = filter.max_price_cents {
        clause(&|i| format!("price_cents <= ?{i}"), sat(m));
    }
    if let Some(c) = filter.currency {
        clause(
            &|i| format!("currency = ?{i}"),
            Value::Text(c.as_str().into()),
        );
    }
    if let Some(t) = filter.active_at {
        clause(
            &|i| format!("start_at <= ?{i} AND end_at > ?{i}"),
            sat(t.secs()),
        );
    }
    if let Some(m) = filter.mode {
        clause(&|i| format!("mode = ?{i}"), Value::Text(m.as_str().into()));
    }
    // SQLite's built-in lower() folds ASCII letters only, like
    // agora_cpo::ports::fold_case, which folded the words.
    for w in filter.words() {
        clause(
            &|i| format!("(instr(lower(goods), ?{i}) > 0 OR instr(lower(terms), ?{i}) > 0)"),
            Value::Text(w),
        );
    }
    args.push(sat(u64::try_from(limit).unwrap_or(u64::MAX)));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    (sql, args)
}
