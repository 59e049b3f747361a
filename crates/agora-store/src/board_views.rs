//! Reads of the board for people (the node's web pages and the board's
//! JSON), beside agora-cpo's [`Board`] port: the open CPOs in an order a
//! person chooses, a page at a time behind a cursor; how many bids each
//! bidding CPO has taken; and the CPOs bound (or awarded to a winner)
//! lately, which leave the open listing when they are.
//!
//! Only reads: nothing here changes the board, and what the protocols
//! decide on is read through [`Board`] alone. The orders other than the id
//! order read every row the filter passes and sort them (no index serves
//! them): at the board sizes of docs/BENCHMARKS.md that is a scan of the
//! compact `cpo_search` copy, and the id order, the JSON's default, keeps
//! the search plans of [`Board::search`].

use crate::board::{sat, Query, RawEntry, ENTRY_COLUMNS};
use crate::db::storage;
use crate::SqliteBoard;
use agora_core::{Error, Timestamp};
use agora_cpo::ports::{Board, BoardEntry, ListFilter, MAX_PAGE_LEN};
use agora_cpo::Mode;
use rusqlite::types::Value;

/// The order of a listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BoardOrder {
    /// By CPO id (the order of [`Board::search`]): stable, and the cheapest.
    #[default]
    Id,
    /// The most recently posted first.
    Newest,
    /// The soonest to end first.
    EndingSoonest,
    /// The lowest price first (in cents, whatever the currency: filter by
    /// currency to compare prices).
    PriceLow,
    /// The highest price first.
    PriceHigh,
}

impl BoardOrder {
    /// Every order, in the order a page offers them.
    pub const ALL: [BoardOrder; 5] = [
        BoardOrder::Newest,
        BoardOrder::EndingSoonest,
        BoardOrder::PriceLow,
        BoardOrder::PriceHigh,
        BoardOrder::Id,
    ];

    /// The order's name in a query string (`sort=`).
    pub fn name(self) -> &'static str {
        match self {
            BoardOrder::Id => "id",
            BoardOrder::Newest => "newest",
            BoardOrder::EndingSoonest => "ending",
            BoardOrder::PriceLow => "price",
            BoardOrder::PriceHigh => "price-desc",
        }
    }

    /// The order named `name` ([`Self::name`]).
    pub fn from_name(name: &str) -> Option<BoardOrder> {
        BoardOrder::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The SQL of its key on `cpo_search s` and `cpo_posting p`, and
    /// whether it descends.
    fn key(self) -> (&'static str, bool) {
        match self {
            BoardOrder::Id => ("0", false),
            BoardOrder::Newest => ("p.seq", true),
            BoardOrder::EndingSoonest => ("s.end_at", false),
            BoardOrder::PriceLow => ("s.price_cents", false),
            BoardOrder::PriceHigh => ("s.price_cents", true),
        }
    }
}

/// Where a page of a listing ends: the last entry's sort key and CPO id.
/// The next page starts after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BoardCursor {
    /// The sort key of the entry (posting number, end date or price in
    /// cents; 0 in the id order).
    pub key: i64,
    /// Its CPO id.
    pub id: [u8; 32],
}

/// An entry of a listing and the cursor that ends a page at it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The entry.
    pub entry: BoardEntry,
    /// A page that ends here goes on after this.
    pub cursor: BoardCursor,
}

/// A CPO that left the open listing because a seller bound it (or the
/// arbiter awarded it to a winning bid, whose binding the server records).
#[derive(Clone, Debug)]
pub struct Closed {
    /// The entry.
    pub entry: BoardEntry,
    /// When it was bound.
    pub bound_at: Timestamp,
}

impl Closed {
    /// Whether it was awarded (a bidding CPO) rather than bound first-come.
    pub fn awarded(&self) -> bool {
        self.entry.mode == Mode::Bidding
    }
}

/// Most CPOs [`BoardViews::recently_bound`] returns.
pub const MAX_RECENT: usize = 100;

/// Reads of the board for people: see the module's documentation.
pub trait BoardViews: Send + Sync {
    /// The open CPOs at `now` that `filter` selects (the same ones as
    /// [`Board::search`]), in `order` (ties by CPO id), after `after`, at
    /// most `limit` (capped at [`MAX_PAGE_LEN`]).
    fn list(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        order: BoardOrder,
        after: Option<&BoardCursor>,
        limit: usize,
    ) -> Result<Vec<Listed>, Error>;

    /// How many bids each of `ids` has taken, in the same order.
    fn bid_counts(&self, ids: &[[u8; 32]]) -> Result<Vec<u64>, Error>;

    /// The CPOs bound most recently (awarded ones included), the latest
    /// first, at most `limit` (capped at [`MAX_RECENT`]).
    fn recently_bound(&self, limit: usize) -> Result<Vec<Closed>, Error>;
}

impl BoardViews for SqliteBoard {
    fn list(
        &self,
        now: Timestamp,
        filter: &ListFilter,
        order: BoardOrder,
        after: Option<&BoardCursor>,
        limit: usize,
    ) -> Result<Vec<Listed>, Error> {
        filter.check()?;
        let limit = limit.min(MAX_PAGE_LEN);
        if limit == 0 {
            return Ok(Vec::new());
        }
        if order == BoardOrder::Id {
            let found = self.search(now, filter, after.map(|c| c.id), limit)?;
            return Ok(found
                .into_iter()
                .map(|entry| Listed {
                    cursor: BoardCursor {
                        key: 0,
                        id: entry.ccpo.id,
                    },
                    entry,
                })
                .collect());
        }
        let (key, desc) = order.key();
        // Newest first walks the postings from the last one; the other
        // orders read the rows the filter passes and sort them.
        let sql = if order == BoardOrder::Newest {
            "SELECT s.id AS sid, p.seq AS k FROM cpo_posting p CROSS JOIN cpo_search s \
             ON s.id = p.id WHERE 1"
                .to_owned()
        } else {
            format!(
                "SELECT s.id AS sid, {key} AS k FROM cpo_search s \
                 JOIN cpo_posting p ON p.id = s.id WHERE 1"
            )
        };
        let mut q = Query {
            sql,
            args: Vec::new(),
        };
        q.filters(now, filter, &[]);
        for w in filter.words() {
            let a = q.arg(Value::Text(w));
            q.sql.push_str(&format!(
                " AND (instr(s.goods, {a}) > 0 OR instr(s.terms, {a}) > 0)"
            ));
        }
        q.sql.push_str(
            " AND NOT EXISTS (SELECT 1 FROM cpo_binding b WHERE b.id = s.id) \
             AND NOT EXISTS (SELECT 1 FROM cpo_takedown d WHERE d.id = s.id)",
        );
        let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
        if let Some(c) = after {
            let k = q.arg(Value::Integer(c.key));
            let id = q.arg(Value::Blob(c.id.to_vec()));
            q.sql.push_str(&format!(
                " AND ({key} {cmp} {k} OR ({key} = {k} AND s.id {cmp} {id}))"
            ));
        }
        let n = q.arg(sat(u64::try_from(limit).unwrap_or(u64::MAX)));
        q.sql = format!(
            "SELECT {ENTRY_COLUMNS}, k FROM cpo_board JOIN ({} ORDER BY k {dir}, s.id {dir} LIMIT {n}) \
             ON id = sid ORDER BY k {dir}, id {dir}",
            q.sql
        );
        let rows = self
            .store()
            .read(|conn| q.run(conn, |r| Ok((RawEntry::from_row(r)?, r.get::<_, i64>(7)?))))?;
        rows.into_iter()
            .map(|(raw, key)| {
                let entry = raw.into_entry()?;
                Ok(Listed {
                    cursor: BoardCursor {
                        key,
                        id: entry.ccpo.id,
                    },
                    entry,
                })
            })
            .collect()
    }

    fn bid_counts(&self, ids: &[[u8; 32]]) -> Result<Vec<u64>, Error> {
        self.store().read(|conn| {
            let mut st = conn
                .prepare_cached("SELECT count(*) FROM cpo_bid WHERE cpo = ?1")
                .map_err(storage)?;
            ids.iter()
                .map(|id| {
                    st.query_row([id.as_slice()], |r| r.get::<_, i64>(0))
                        .map(|n| u64::try_from(n).unwrap_or(0))
                        .map_err(storage)
                })
                .collect()
        })
    }

    fn recently_bound(&self, limit: usize) -> Result<Vec<Closed>, Error> {
        let limit = limit.min(MAX_RECENT);
        let q = Query {
            sql: format!(
                "SELECT {ENTRY_COLUMNS}, bound_at FROM cpo_board JOIN (\
                 SELECT p.id AS bid, k.bound_at AS bound_at, k.n AS n \
                 FROM cpo_bound k JOIN cpo_posting p ON p.seq = k.seq ORDER BY k.n DESC LIMIT ?1) \
                 ON id = bid ORDER BY n DESC"
            ),
            args: vec![sat(u64::try_from(limit).unwrap_or(u64::MAX))],
        };
        let rows = self
            .store()
            .read(|conn| q.run(conn, |r| Ok((RawEntry::from_row(r)?, r.get::<_, i64>(7)?))))?;
        rows.into_iter()
            .map(|(raw, at)| {
                Ok(Closed {
                    entry: raw.into_entry()?,
                    bound_at: Timestamp(u64::try_from(at).unwrap_or(0)),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_names_round_trip() {
        for o in BoardOrder::ALL {
            assert_eq!(BoardOrder::from_name(o.name()), Some(o));
        }
        assert_eq!(BoardOrder::from_name("cheapest"), None);
    }
}
