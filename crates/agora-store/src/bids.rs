//! [`Bids`] (agora-cpo's port for protocol 6) on SQLite: the bids taken on
//! a CPO and the arbiter's award. Recording a bid checks the award and the
//! count in the same write request, and an award is a conditional insert
//! (its primary key is the CPO id), so "no bid after the award" and "the
//! first award stands" hold across processes sharing the database.

use crate::db::storage;
use crate::SqliteStore;
use agora_core::{Currency, Error, KeyId, Money, Timestamp};
use agora_cpo::bidding::{AwardOutcome, BidRecord, BidSummary, Bids, MAX_BIDS_PER_CPO};
use rusqlite::{params, OptionalExtension};

/// The bids port on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteBids {
    store: SqliteStore,
}

impl SqliteBids {
    /// The bids of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteBids { store }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("corrupt bid row: {what}"))
}

fn exact(v: u64, what: &'static str) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::ApiMisuse(what))
}

impl SqliteBids {
    /// [`Bids::record_bid`], and with `session`,
    /// [`Bids::record_bid_in_session`].
    fn record(
        &self,
        cpo: &[u8; 32],
        bid: &BidRecord,
        session: Option<[u8; 32]>,
    ) -> Result<(), Error> {
        let cpo = *cpo;
        let s = bid.summary.clone();
        let receipt = bid.receipt.clone();
        let cents = exact(s.price.cents, "bid price over i64")?;
        let t = exact(s.t.secs(), "bid time over i64")?;
        self.store.writer().execute(move |conn| {
            if let Some(session) = session {
                if !crate::sessions::session_open(conn, &session)? {
                    return Err(Error::NotAuthorised("the browse session has ended".into()));
                }
            }
            let awarded: bool = conn
                .prepare_cached("SELECT 1 FROM cpo_award WHERE cpo = ?1")
                .and_then(|mut st| st.exists([cpo.as_slice()]))
                .map_err(storage)?;
            if awarded {
                return Err(Error::Refused("bidding on this CPO is over".into()));
            }
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM cpo_bid WHERE cpo = ?1")
                .and_then(|mut st| st.query_row([cpo.as_slice()], |r| r.get(0)))
                .map_err(storage)?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= MAX_BIDS_PER_CPO {
                return Err(Error::Refused(
                    "this CPO has taken all the bids it can".into(),
                ));
            }
            conn.prepare_cached(
                "INSERT INTO cpo_bid (cpo, receipt_hash, seller, price_cents, currency, t, receipt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    cpo.as_slice(),
                    s.receipt_hash.as_slice(),
                    s.seller.as_bytes().as_slice(),
                    cents,
                    s.price.currency.as_str(),
                    t,
                    receipt
                ])
            })
            .map_err(storage)?;
            Ok(())
        })
    }
}

impl Bids for SqliteBids {
    fn record_bid(&self, cpo: &[u8; 32], bid: &BidRecord) -> Result<(), Error> {
        self.record(cpo, bid, None)
    }

    fn record_bid_in_session(
        &self,
        cpo: &[u8; 32],
        bid: &BidRecord,
        session: &[u8; 32],
    ) -> Result<(), Error> {
        self.record(cpo, bid, Some(*session))
    }

    fn bids(&self, cpo: &[u8; 32]) -> Result<Vec<BidRecord>, Error> {
        type Row = (Vec<u8>, Vec<u8>, i64, String, i64, Vec<u8>);
        let rows: Vec<Row> = self.store.read(|conn| {
            conn.prepare_cached(
                "SELECT receipt_hash, seller, price_cents, currency, t, receipt FROM cpo_bid
                 WHERE cpo = ?1 ORDER BY seq",
            )
            .and_then(|mut st| {
                st.query_map([cpo.as_slice()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)
        })?;
        rows.into_iter()
            .map(|(hash, seller, cents, currency, t, receipt)| {
                Ok(BidRecord {
                    summary: BidSummary {
                        receipt_hash: hash.try_into().map_err(|_| corrupt("receipt hash"))?,
                        seller: KeyId::from_slice(&seller).map_err(|_| corrupt("seller"))?,
                        price: Money::new(
                            u64::try_from(cents).map_err(|_| corrupt("price"))?,
                            Currency::new(&currency).map_err(|_| corrupt("currency"))?,
                        ),
                        t: Timestamp(u64::try_from(t).map_err(|_| corrupt("time"))?),
                    },
                    receipt,
                })
            })
            .collect()
    }

    fn record_award(&self, cpo: &[u8; 32], award: &[u8]) -> Result<AwardOutcome, Error> {
        let (cpo, award) = (*cpo, award.to_vec());
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO cpo_award (cpo, award) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![cpo.as_slice(), award]))
                .map_err(storage)?;
            if n == 1 {
                return Ok(AwardOutcome::Recorded);
            }
            let prev: Vec<u8> = conn
                .prepare_cached("SELECT award FROM cpo_award WHERE cpo = ?1")
                .and_then(|mut st| st.query_row([cpo.as_slice()], |r| r.get(0)))
                .map_err(storage)?;
            Ok(AwardOutcome::AlreadyAwarded(prev))
        })
    }

    fn award(&self, cpo: &[u8; 32]) -> Result<Option<Vec<u8>>, Error> {
        self.store.read(|conn| {
            conn.prepare_cached("SELECT award FROM cpo_award WHERE cpo = ?1")
                .and_then(|mut st| st.query_row([cpo.as_slice()], |r| r.get(0)).optional())
                .map_err(storage)
        })
    }

    fn awaiting_award(&self, limit: usize) -> Result<Vec<[u8; 32]>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store.read(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT DISTINCT b.cpo FROM cpo_bid b \
                     WHERE NOT EXISTS (SELECT 1 FROM cpo_award a WHERE a.cpo = b.cpo) \
                     ORDER BY b.cpo LIMIT ?1",
                )
                .map_err(storage)?;
            let rows = st
                .query_map([limit], |r| r.get::<_, Vec<u8>>(0))
                .map_err(storage)?;
            rows.map(|r| {
                r.map_err(storage)?
                    .try_into()
                    .map_err(|_| corrupt("cpo id"))
            })
            .collect()
        })
    }
}
