//! Bidding (protocol 6, paper section 3.10), for CPOs whose arbiter
//! approved them with protocol 5.
//!
//! Steps 1-4 mirror binding: the server lists the CPO under K_p (BidListing),
//! Pam answers with a Bid (her price and details) under K_p, and the server
//! signs a BID_RECEIPT `X_2 = U_2, hash(X_1), BC_P, T, T_Response, CPO, Bid
//! Details`. Bids are taken while the CPO is active (StartDate <= now <
//! EndDate); T_Response is EndDate + [`AWARD_GRACE_SECS`].
//!
//! Step 5, which the paper describes without messages: "When the time for
//! accepting bids is over, the Server presents these to the Arbiter, who
//! selects one as being the best bid. The winning bid is notified, as are all
//! losing bids." agora's messages for it:
//!
//! - [`AwardRequest`] (`[1,6,4]`), server to arbiter, `PKE(X, Sign(X))`: the
//!   CPO and a summary of every bid (receipt hash, seller, price, time). The
//!   server vouches for the list with its signature; a seller whose receipt
//!   hash is missing from the award holds the server-signed receipt that
//!   proves the omission.
//! - [`Award`] (`[1,6,5]`), arbiter's signature: the winner under the stated
//!   rule ([`AWARD_RULE`]: the lowest price at or under the CPO's price, ties
//!   to the earliest bid, then the smaller receipt hash) and every receipt
//!   hash she considered.
//! - [`Notice`] (`[1,6,6]`), server's signature, one per bid: won or lost, with
//!   the arbiter's award inside so the seller can check it herself.
//!   Notices are not stored: Ed25519 is deterministic, so the server signs
//!   the same notice again whenever a bidder asks.
//!
//! A bidder whose BID_RECEIPT was lost on the way (found by agora-sim: she
//! bids again, and if her first bid wins she never learns it) asks for her
//! receipts on the CPO: [`BidsRequest`] (`[1,6,7]`), signed with the key of her
//! bond, and [`BidsReply`] (`[1,6,8]`), every receipt of hers sealed to her
//! ([`request_bids`], [`Server::bids_for_seller`], [`open_bids_reply`]).

use crate::arbiter::Arbiter;
use crate::ccpo::{Ccpo, MAX_CCPO_LEN};
use crate::msg::{digest, Mode};
use crate::ports::{BindOutcome, Binding};
use crate::seller::SellerSession;
use crate::server::{Answer, Server};
use crate::session::Direction;
use crate::store::{AwardWritten, CpoUnit, CpoWrite, CpoWritten};
use crate::Peer;
use agora_core::crypto::{random_bytes, Rng, VerifyingKey};
use agora_core::ports::Evidence;
use agora_core::wire::{cose, envelope, tags, Decoder, Encoder, Field, Message, Tag};
use agora_core::{DecodeError, Error, KeyId, Money, Result, Timestamp};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The refusal of a seller's request for her bids on a CPO she has not bid
/// on: an answer, not a failure, to a client looking for a bid whose
/// receipt was lost.
pub const NO_BIDS_OF_YOURS: &str = "the server holds no bid of yours on this CPO";

/// How long after EndDate bidders wait for the award at most (T_Response).
pub const AWARD_GRACE_SECS: u64 = 24 * 3600;
/// Most bids one CPO takes.
pub const MAX_BIDS_PER_CPO: usize = 1000;
/// Longest bid details text, in bytes.
pub const MAX_BID_DETAILS_LEN: usize = 2048;
/// The rule the arbiter states in every award.
pub const AWARD_RULE: &str =
    "lowest price at or under the CPO price; ties to the earliest bid, then the smaller receipt hash";

/// Protocol 6, step 1: `X_0 = U_0, R_0, CPO description`, under K_p.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidListing {
    /// R_0.
    pub r0: [u8; 32],
    /// The CPO.
    pub ccpo: Ccpo,
}

impl Message for BidListing {
    const TAG: Tag = tags::CPO_BID_LISTING;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_CCPO_LEN + 128;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.r0).field(&self.ccpo);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BidListing {
            r0: d.field()?,
            ccpo: d.field()?,
        })
    }
}

/// Protocol 6, step 2: `X_1 = U_1, hash(X_0), R_1, Bid Details`, under K_p.
/// The details are her price and her text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    /// hash(X_0).
    pub x0_hash: [u8; 32],
    /// R_1.
    pub r1: [u8; 32],
    /// What she asks.
    pub price: Money,
    /// How she would deliver.
    pub details: String,
}

impl Message for Bid {
    const TAG: Tag = tags::CPO_BID;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_BID_DETAILS_LEN + 160;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x0_hash)
            .field(&self.r1)
            .field(&self.price)
            .text(&self.details);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Bid {
            x0_hash: d.field()?,
            r1: d.field()?,
            price: d.field()?,
            details: d.text("bid details", MAX_BID_DETAILS_LEN)?.to_owned(),
        })
    }
}

/// Protocol 6, step 3: `X_2 = U_2, hash(X_1), BC_P, T, T_Response, CPO,
/// Bid Details`, signed by the server: BID_RECEIPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidReceipt {
    /// hash(X_1).
    pub x1_hash: [u8; 32],
    /// BC_P, DER.
    pub seller_bond: Vec<u8>,
    /// T: when the bid was taken.
    pub t: Timestamp,
    /// T_Response: the time by which the bid gets a response.
    pub t_response: Timestamp,
    /// The CPO.
    pub ccpo: Ccpo,
    /// Her price.
    pub price: Money,
    /// Her details.
    pub details: String,
}

impl Message for BidReceipt {
    const TAG: Tag = tags::CPO_BID_RECEIPT;
    const FIELDS: usize = 7;
    const MAX_LEN: usize = MAX_CCPO_LEN + agora_pki::MAX_CERT_LEN + MAX_BID_DETAILS_LEN + 256;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x1_hash)
            .bytes(&self.seller_bond)
            .field(&self.t)
            .field(&self.t_response)
            .field(&self.ccpo)
            .field(&self.price)
            .text(&self.details);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BidReceipt {
            x1_hash: d.field()?,
            seller_bond: d.bytes("BC_P", agora_pki::MAX_CERT_LEN)?.to_vec(),
            t: d.field()?,
            t_response: d.field()?,
            ccpo: d.field()?,
            price: d.field()?,
            details: d.text("bid details", MAX_BID_DETAILS_LEN)?.to_owned(),
        })
    }
}

/// One bid as the server summarises it for the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidSummary {
    /// hash(X_2) of its BID_RECEIPT.
    pub receipt_hash: [u8; 32],
    /// The bidder's bond key id.
    pub seller: KeyId,
    /// Her price.
    pub price: Money,
    /// When the server took it.
    pub t: Timestamp,
}

impl Field for BidSummary {
    fn encode(&self, e: &mut Encoder) {
        e.array(4)
            .field(&self.receipt_hash)
            .field(&self.seller)
            .field(&self.price)
            .field(&self.t);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(4)?;
        Ok(BidSummary {
            receipt_hash: d.field()?,
            seller: d.field()?,
            price: d.field()?,
            t: d.field()?,
        })
    }
}

/// Protocol 6, step 5a: the server hands a closed CPO's bids to the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwardRequest {
    /// The CPO's id.
    pub cpo: [u8; 32],
    /// Its checksum (which CCPO exactly).
    pub checksum: [u8; 32],
    /// Its price: no winning bid may ask more.
    pub price: Money,
    /// When bidding closed (EndDate).
    pub closed_at: Timestamp,
    /// Every bid taken, in the order taken.
    pub bids: Vec<BidSummary>,
}

fn encode_list<T: Field>(e: &mut Encoder, items: &[T]) {
    e.array(items.len());
    for i in items {
        e.field(i);
    }
}

fn decode_list<T: Field>(d: &mut Decoder<'_>, what: &'static str) -> Result<Vec<T>, DecodeError> {
    let n = d.array_max(what, MAX_BIDS_PER_CPO)?;
    (0..n).map(|_| d.field()).collect()
}

impl Message for AwardRequest {
    const TAG: Tag = tags::CPO_BID_AWARD_REQUEST;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = 256 + MAX_BIDS_PER_CPO * 128;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.cpo)
            .field(&self.checksum)
            .field(&self.price)
            .field(&self.closed_at);
        encode_list(e, &self.bids);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(AwardRequest {
            cpo: d.field()?,
            checksum: d.field()?,
            price: d.field()?,
            closed_at: d.field()?,
            bids: decode_list(d, "bids")?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may panic
    use super::*;
    use crate::CcpoDraft;
    use agora_core::crypto::{SigningKey, X25519Secret};
    use agora_core::Currency;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn memory_bids_pass_the_conformance_suite() {
        super::conformance::bids_suite(super::MemoryBids::new);
    }

    fn peer(rng: &mut ChaCha20Rng) -> Peer {
        crate::Keys {
            sign: SigningKey::generate(rng),
            enc: X25519Secret::generate(rng),
        }
        .peer()
    }

    fn state(rng: &mut ChaCha20Rng) -> ExpectBidReceipt {
        let now = Timestamp(1_800_000_000);
        let ccpo = Ccpo::new(
            CcpoDraft {
                arbiter: peer(rng).id(),
                server: peer(rng).id(),
                goods: "A tea set for six".into(),
                price: Money::new(8_000, Currency::new("EUR").unwrap()),
                start: now,
                end: now.plus_secs(86_400),
                terms: "".into(),
                bond: vec![0x30, 0x03, 1, 2, 3],
            },
            rng,
        )
        .unwrap();
        ExpectBidReceipt {
            x1_hash: [7; 32],
            ccpo,
            price: Money::new(7_500, Currency::new("EUR").unwrap()),
        }
    }

    /// Round trip; every truncation, a trailing byte, every flipped bit,
    /// another kind of state and an oversized input are refused (a flipped
    /// bit never loads back as this state).
    #[test]
    fn expect_bid_receipt_saved_state_is_strict() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let s = state(&mut rng);
        let bytes = s.to_bytes();
        let back = ExpectBidReceipt::from_bytes(&bytes).unwrap();
        assert_eq!(back.x1_hash, s.x1_hash);
        assert_eq!(back.ccpo, s.ccpo);
        assert_eq!(back.price, s.price);
        assert_eq!(back.to_bytes(), bytes, "round trip");
        for i in 0..bytes.len() {
            assert!(
                ExpectBidReceipt::from_bytes(&bytes[..i]).is_err(),
                "truncated at {i}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            ExpectBidReceipt::from_bytes(&longer).is_err(),
            "a trailing byte"
        );
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                if let Ok(t) = ExpectBidReceipt::from_bytes(&bad) {
                    assert_ne!(t.to_bytes(), bytes, "bit {bit} flipped at {i}");
                }
            }
        }
        // Another kind of state (the seller's ExpectBound, kind 9, has the
        // same number of fields) and the same fields under kind 11.
        let mut other = crate::state::start(9, 3);
        other.field(&s.x1_hash).field(&s.ccpo).text("an offer");
        assert!(ExpectBidReceipt::from_bytes(&other.into_bytes()).is_err());
        let mut wrong_kind = crate::state::start(11, 3);
        wrong_kind.field(&s.x1_hash).field(&s.ccpo).field(&s.price);
        assert!(
            ExpectBidReceipt::from_bytes(&wrong_kind.into_bytes()).is_err(),
            "wrong kind"
        );
        let mut wrong_count = crate::state::start(12, 2);
        wrong_count.field(&s.x1_hash).field(&s.ccpo);
        assert!(
            ExpectBidReceipt::from_bytes(&wrong_count.into_bytes()).is_err(),
            "wrong field count"
        );
        assert!(
            ExpectBidReceipt::from_bytes(&vec![0u8; crate::state::MAX_LEN + 1]).is_err(),
            "over the size limit"
        );
        assert!(ExpectBidReceipt::from_bytes(&[]).is_err(), "empty");
    }
}

/// Protocol 6, step 5b: the arbiter's award, signed by her.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Award {
    /// hash of the [`AwardRequest`] she answers.
    pub request_hash: [u8; 32],
    /// The CPO's id.
    pub cpo: [u8; 32],
    /// The winning receipt's hash; none if no bid qualified.
    pub winner: Option<[u8; 32]>,
    /// The rule she applied ([`AWARD_RULE`]).
    pub rule: String,
    /// Every receipt hash she considered, in the request's order.
    pub considered: Vec<[u8; 32]>,
    /// When she decided.
    pub t: Timestamp,
}

impl Message for Award {
    const TAG: Tag = tags::CPO_BID_AWARD;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = 512 + MAX_BIDS_PER_CPO * 40;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.request_hash)
            .field(&self.cpo)
            .field(&self.winner)
            .text(&self.rule);
        encode_list(e, &self.considered);
        e.field(&self.t);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Award {
            request_hash: d.field()?,
            cpo: d.field()?,
            winner: d.field()?,
            rule: d.text("award rule", 256)?.to_owned(),
            considered: decode_list(d, "considered bids")?,
            t: d.field()?,
        })
    }
}

/// Protocol 6, step 5c: the server's notice to one bidder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The CPO's id.
    pub cpo: [u8; 32],
    /// The bidder's receipt hash.
    pub receipt_hash: [u8; 32],
    /// Whether this bid won.
    pub won: bool,
    /// The arbiter's signed [`Award`] (COSE_Sign1).
    pub award: Vec<u8>,
}

impl Message for Notice {
    const TAG: Tag = tags::CPO_BID_NOTICE;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = Award::MAX_LEN + cose::SIGN1_OVERHEAD + 256;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.cpo)
            .field(&self.receipt_hash)
            .field(&self.won)
            .bytes(&self.award);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Notice {
            cpo: d.field()?,
            receipt_hash: d.field()?,
            won: d.field()?,
            award: d
                .bytes("award", Award::MAX_LEN + cose::SIGN1_OVERHEAD)?
                .to_vec(),
        })
    }
}

/// The arbiter's rule, as a pure function: the winner among `bids` for a
/// CPO of `price` (see [`AWARD_RULE`]).
pub fn choose_winner(bids: &[BidSummary], price: &Money) -> Option<[u8; 32]> {
    bids.iter()
        .filter(|b| b.price.currency == price.currency && b.price.cents <= price.cents)
        .min_by_key(|b| (b.price.cents, b.t, b.receipt_hash))
        .map(|b| b.receipt_hash)
}

// ---------------------------------------------------------------- storage

/// A bid as the server keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidRecord {
    /// The summary the arbiter will see.
    pub summary: BidSummary,
    /// The signed BID_RECEIPT (evidence).
    pub receipt: Vec<u8>,
}

/// The result of recording an award.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwardOutcome {
    /// Recorded now.
    Recorded,
    /// An award was recorded before; it stands (here it is).
    AlreadyAwarded(Vec<u8>),
}

/// The bids port: what the server keeps of protocol 6.
pub trait Bids: Send + Sync {
    /// Record a bid on CPO `cpo` (durably), unless the CPO already has
    /// [`MAX_BIDS_PER_CPO`] bids or an award (`Error::Refused`).
    fn record_bid(&self, cpo: &[u8; 32], bid: &BidRecord) -> Result<()>;
    /// [`Self::record_bid`] for a bid made in browse session `session`,
    /// refused (`Error::NotAuthorised`) unless that session is stored and
    /// not ended when the bid commits, as a binding's unit ([`crate::store::CpoWrite::Bind`])
    /// does for bindings. The default (a store that does not hold the
    /// sessions) is [`Self::record_bid`].
    fn record_bid_in_session(
        &self,
        cpo: &[u8; 32],
        bid: &BidRecord,
        session: &[u8; 32],
    ) -> Result<()> {
        let _ = session;
        self.record_bid(cpo, bid)
    }
    /// The bids on `cpo`, in the order taken.
    fn bids(&self, cpo: &[u8; 32]) -> Result<Vec<BidRecord>>;
    /// Record the signed award of `cpo`; the first award stands.
    fn record_award(&self, cpo: &[u8; 32], award: &[u8]) -> Result<AwardOutcome>;
    /// The signed award of `cpo`, if any.
    fn award(&self, cpo: &[u8; 32]) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` CPOs that have bids and no award yet, in id order: what
    /// a node's housekeeping hands to the arbiter once bidding closes.
    fn awaiting_award(&self, limit: usize) -> Result<Vec<[u8; 32]>>;
}

/// The in-memory twin of [`Bids`].
#[derive(Debug, Default)]
pub struct MemoryBids(Mutex<BidsMap>);

/// Bids by CPO id, in the order taken, with the signed award if any.
type BidsMap = BTreeMap<[u8; 32], (Vec<BidRecord>, Option<Vec<u8>>)>;

impl MemoryBids {
    /// No bids.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bids for MemoryBids {
    fn record_bid(&self, cpo: &[u8; 32], bid: &BidRecord) -> Result<()> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("bids lock poisoned".into()))?;
        let (bids, award) = m.entry(*cpo).or_default();
        if award.is_some() {
            return Err(Error::Refused("bidding on this CPO is over".into()));
        }
        if bids.len() >= MAX_BIDS_PER_CPO {
            return Err(Error::Refused(
                "this CPO has taken all the bids it can".into(),
            ));
        }
        bids.push(bid.clone());
        Ok(())
    }

    fn bids(&self, cpo: &[u8; 32]) -> Result<Vec<BidRecord>> {
        let m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("bids lock poisoned".into()))?;
        Ok(m.get(cpo).map(|(b, _)| b.clone()).unwrap_or_default())
    }

    fn record_award(&self, cpo: &[u8; 32], award: &[u8]) -> Result<AwardOutcome> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("bids lock poisoned".into()))?;
        let (_, a) = m.entry(*cpo).or_default();
        match a {
            Some(prev) => Ok(AwardOutcome::AlreadyAwarded(prev.clone())),
            None => {
                *a = Some(award.to_vec());
                Ok(AwardOutcome::Recorded)
            }
        }
    }

    fn award(&self, cpo: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        let m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("bids lock poisoned".into()))?;
        Ok(m.get(cpo).and_then(|(_, a)| a.clone()))
    }

    fn awaiting_award(&self, limit: usize) -> Result<Vec<[u8; 32]>> {
        let m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("bids lock poisoned".into()))?;
        Ok(m.iter()
            .filter(|(_, (bids, award))| !bids.is_empty() && award.is_none())
            .map(|(id, _)| *id)
            .take(limit)
            .collect())
    }
}

/// The conformance suite of [`Bids`].
#[cfg(any(test, feature = "testkit"))]
pub mod conformance {
    use super::*;

    fn bid(n: u8, cents: u64) -> BidRecord {
        BidRecord {
            summary: BidSummary {
                receipt_hash: [n; 32],
                seller: KeyId([n; 32]),
                price: Money::new(cents, agora_core::Currency::new("EUR").expect("EUR")),
                t: Timestamp(100 + u64::from(n)),
            },
            receipt: vec![n; 3],
        }
    }

    /// Every check, on fresh stores from `make`.
    pub fn bids_suite<D: Bids>(make: impl Fn() -> D) {
        let d = make();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert!(d.bids(&a).expect("bids").is_empty());
        assert!(d.awaiting_award(10).expect("awaiting").is_empty());
        d.record_bid(&a, &bid(1, 500)).expect("bid");
        d.record_bid(&a, &bid(2, 400)).expect("bid");
        d.record_bid(&b, &bid(3, 300)).expect("bid");
        assert_eq!(
            d.bids(&a).expect("bids"),
            vec![bid(1, 500), bid(2, 400)],
            "in order taken"
        );
        assert_eq!(d.award(&a).expect("award"), None);
        assert_eq!(d.awaiting_award(10).expect("awaiting"), vec![a, b]);
        assert_eq!(d.awaiting_award(1).expect("awaiting"), vec![a], "limit");
        assert_eq!(
            d.record_award(&a, b"first").expect("award"),
            AwardOutcome::Recorded
        );
        assert_eq!(
            d.record_award(&a, b"second").expect("award"),
            AwardOutcome::AlreadyAwarded(b"first".to_vec())
        );
        assert_eq!(d.award(&a).expect("award"), Some(b"first".to_vec()));
        assert!(
            matches!(d.record_bid(&a, &bid(4, 1)), Err(Error::Refused(_))),
            "closed after award"
        );
        assert_eq!(d.bids(&a).expect("bids").len(), 2, "nothing changed");
        assert_eq!(d.awaiting_award(10).expect("awaiting"), vec![b]);
        assert_eq!(d.award(&b).expect("award"), None);
    }
}

// ---------------------------------------------------------------- roles

/// A bid the server has just taken.
#[derive(Clone, Debug)]
pub struct BidTaken {
    /// M_2, to send to Pam.
    pub reply: Vec<u8>,
    /// BID_RECEIPT as signed.
    pub signed: Vec<u8>,
    /// X_2.
    pub message: BidReceipt,
}

/// Step 5a sent: the server waits for the arbiter's award.
#[derive(Debug)]
pub struct PendingAward {
    request: AwardRequest,
    arbiter: Peer,
}

/// What the server has after an award: the signed award, the binding to
/// the winner (if any), and a notice for every bidder.
#[derive(Clone, Debug)]
pub struct Awarded {
    /// The arbiter's signed award.
    pub award: Vec<u8>,
    /// The winner's bond key id, if a bid won.
    pub winner: Option<KeyId>,
    /// `(seller, receipt hash, signed notice)` for every bid.
    pub notices: Vec<(KeyId, [u8; 32], Vec<u8>)>,
}

impl Server {
    /// Protocol 6, step 1: the listing of bidding CPO `cpo` for session `id`.
    pub fn bid_listing(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        id: &[u8; 32],
        cpo: &[u8; 32],
    ) -> Result<Vec<u8>> {
        let (_, channel) = self.live_session(id, now)?;
        self.listing_on(rng, now, &channel, cpo, Mode::Bidding)
    }

    /// Protocol 6, step 2 -> 3: Pam's bid under K_p. The same session and
    /// listing checks as a binding; her price must be in the CPO's currency,
    /// above zero and at most the CPO's price. The bid is stored before the
    /// BID_RECEIPT is sent.
    pub fn handle_bid(&self, rng: &mut impl Rng, now: Timestamp, m1: &[u8]) -> Result<BidTaken> {
        let Answer {
            message: x1,
            session: s,
            channel,
            cpo,
            entry,
        } = self.open_answer::<Bid>(now, m1, Mode::Bidding, |x| x.x0_hash)?;
        let cap = entry.ccpo.price;
        if x1.price.currency != cap.currency || x1.price.cents == 0 || x1.price.cents > cap.cents {
            return Err(Error::Refused(format!(
                "a bid must ask between 0.01 and {cap}"
            )));
        }
        let x2 = BidReceipt {
            x1_hash: digest(&x1),
            seller_bond: s.bond.clone(),
            t: now,
            t_response: entry.ccpo.end.plus_secs(AWARD_GRACE_SECS),
            ccpo: entry.ccpo,
            price: x1.price,
            details: x1.details,
        };
        let (reply, signed) = channel.seal_signed(rng, Direction::ToSeller, &self.keys.sign, &x2);
        self.store
            .bids()
            .record_bid_in_session(
                &cpo,
                &BidRecord {
                    summary: BidSummary {
                        receipt_hash: digest(&x2),
                        seller: s.seller,
                        price: x2.price,
                        t: now,
                    },
                    receipt: signed.clone(),
                },
                &s.id,
            )
            .inspect_err(|e| {
                // Ended by another process since this server read it.
                if matches!(e, Error::NotAuthorised(_)) {
                    self.forget(|k| k.id == s.id);
                }
            })?;
        Ok(BidTaken {
            reply,
            signed,
            message: x2,
        })
    }

    /// Protocol 6, step 5a: bidding on `cpo` is over (now >= EndDate); the
    /// server seals every bid's summary to the arbiter the CPO names.
    pub fn request_award(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        cpo: &[u8; 32],
        arbiter: &Peer,
    ) -> Result<(Vec<u8>, PendingAward)> {
        let bids = self.store.bids();
        let entry = self
            .store
            .board()
            .get(cpo)?
            .ok_or_else(|| Error::Refused("no such CPO on this board".into()))?;
        if entry.mode != Mode::Bidding {
            return Err(Error::Refused("this CPO does not take bids".into()));
        }
        if now < entry.ccpo.end {
            return Err(Error::Refused("bidding on this CPO is still open".into()));
        }
        if arbiter.id() != entry.ccpo.arbiter {
            return Err(Error::ApiMisuse("the CPO names another arbiter"));
        }
        if bids.award(cpo)?.is_some() {
            return Err(Error::Refused("this CPO has been awarded already".into()));
        }
        let request = AwardRequest {
            cpo: *cpo,
            checksum: *entry.ccpo.checksum(),
            price: entry.ccpo.price,
            closed_at: entry.ccpo.end,
            bids: bids.bids(cpo)?.into_iter().map(|b| b.summary).collect(),
        };
        let m = envelope::seal(rng, &self.keys.sign, &arbiter.enc, &request)?;
        Ok((
            m,
            PendingAward {
                request,
                arbiter: *arbiter,
            },
        ))
    }

    /// The server's signed notice for the bid with `receipt_hash` on `cpo`,
    /// once awarded. Deterministic: asking again gives the same bytes.
    pub fn notice(&self, cpo: &[u8; 32], receipt_hash: &[u8; 32]) -> Result<Vec<u8>> {
        let award_bytes = self
            .store
            .bids()
            .award(cpo)?
            .ok_or_else(|| Error::Refused("this CPO has not been awarded yet".into()))?;
        let award = self.stored_award(&award_bytes)?;
        self.sign_notice(&award_bytes, &award, receipt_hash)
    }

    /// An award read back from storage. It was stored only after it
    /// verified; it is checked again because a notice vouches for it.
    fn stored_award(&self, award_bytes: &[u8]) -> Result<Award> {
        let (a, _) = cose::verify_with::<Award>(award_bytes, |kid| {
            self.arbiters.iter().find(|k| k.key_id() == *kid).copied()
        })?;
        Ok(a)
    }

    /// The notice for the bid `receipt_hash` under a verified `award`.
    fn sign_notice(
        &self,
        award_bytes: &[u8],
        award: &Award,
        receipt_hash: &[u8; 32],
    ) -> Result<Vec<u8>> {
        if !award.considered.contains(receipt_hash) {
            return Err(Error::Refused("no such bid on this CPO".into()));
        }
        Ok(cose::sign(
            &self.keys.sign,
            &Notice {
                cpo: award.cpo,
                receipt_hash: *receipt_hash,
                won: award.winner.as_ref() == Some(receipt_hash),
                award: award_bytes.to_vec(),
            },
        ))
    }
}

impl PendingAward {
    /// Step 5b -> 5c: the arbiter's award. It must answer this request,
    /// consider exactly its bids, and name the winner the rule gives. The
    /// award is stored (the first one stands), the CPO is bound to the
    /// winner, and a notice is signed for every bidder. For blocking
    /// drivers: [`Self::prepare_award`], the unit committed and waited for,
    /// then [`PreparedAward::finish`].
    pub fn handle_award(self, server: &Server, now: Timestamp, m: &[u8]) -> Result<Awarded> {
        let (unit, prepared) = self.prepare_award(server, now, m)?;
        let written = server.store.commit(unit, now).wait()?;
        prepared.finish(server, written)
    }

    /// Step 5b -> 5c up to its unit of work: the award checked, and the
    /// winner's notice signed as her contract. The unit records the award,
    /// binds the CPO to the winner and archives the award (`cpo/award`) in
    /// one transaction; commit it, then [`PreparedAward::finish`].
    pub fn prepare_award(
        self,
        server: &Server,
        now: Timestamp,
        m: &[u8],
    ) -> Result<(CpoUnit, PreparedAward)> {
        let opened = envelope::open::<Award>(m, &server.keys.enc, |kid| self.arbiter.key_if(kid))?;
        let a = opened.message;
        let hashes: Vec<[u8; 32]> = self.request.bids.iter().map(|b| b.receipt_hash).collect();
        if a.request_hash != digest(&self.request)
            || a.cpo != self.request.cpo
            || a.considered != hashes
        {
            return Err(Error::PeerMisbehaved("the award answers another request"));
        }
        if a.winner != choose_winner(&self.request.bids, &self.request.price) {
            return Err(Error::PeerMisbehaved(
                "the award does not follow the stated rule",
            ));
        }
        let winner = a
            .winner
            .and_then(|w| self.request.bids.iter().find(|b| b.receipt_hash == w))
            .map(|b| (b.seller, b.receipt_hash));
        let binding = match winner {
            None => None,
            Some((seller, receipt_hash)) => Some(Binding {
                seller,
                bound_at: now,
                bound_cpo: server.sign_notice(&opened.signed, &a, &receipt_hash)?,
            }),
        };
        let unit = CpoUnit {
            write: CpoWrite::Award {
                cpo: self.request.cpo,
                award: opened.signed.clone(),
                winner: binding,
            },
            evidence: vec![Evidence::new(AWARD_EVIDENCE, opened.signed.clone())],
        };
        Ok((
            unit,
            PreparedAward {
                request: self.request,
                award: opened.signed,
                message: a,
            },
        ))
    }
}

/// The evidence kind of an arbiter's award in the server's archive.
pub const AWARD_EVIDENCE: &str = "cpo/award";

/// An award whose unit of work ([`PendingAward::prepare_award`]) is to be
/// committed; [`Self::finish`] signs the notices from its outcome.
#[derive(Debug)]
#[must_use = "nothing is awarded until the unit commits"]
pub struct PreparedAward {
    request: AwardRequest,
    award: Vec<u8>,
    message: Award,
}

impl PreparedAward {
    /// The notices, once the unit committed with `written`: of this award,
    /// or of the one recorded before it (read back and checked, so that
    /// every notice agrees with storage).
    pub fn finish(self, server: &Server, written: CpoWritten) -> Result<Awarded> {
        let (award_bytes, award) = match written.award()? {
            AwardWritten::Recorded => (self.award, self.message),
            AwardWritten::AlreadyAwarded(prev) => {
                let stored = server.stored_award(&prev)?;
                (prev, stored)
            }
            AwardWritten::NotBound(BindOutcome::NotPosted) => {
                return Err(Error::Refused("no such CPO on this board".into()))
            }
            AwardWritten::NotBound(BindOutcome::TakenDown) => {
                return Err(Error::Refused("this CPO was taken down".into()))
            }
            AwardWritten::NotBound(_) => {
                return Err(Error::Refused("this CPO is already bound".into()))
            }
        };
        if award.cpo != self.request.cpo {
            return Err(Error::Refused("the stored award is for another CPO".into()));
        }
        let winner = award
            .winner
            .and_then(|w| self.request.bids.iter().find(|b| b.receipt_hash == w))
            .map(|b| b.seller);
        let notices = self
            .request
            .bids
            .iter()
            .map(|b| {
                Ok((
                    b.seller,
                    b.receipt_hash,
                    server.sign_notice(&award_bytes, &award, &b.receipt_hash)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Awarded {
            award: award_bytes,
            winner,
            notices,
        })
    }
}

impl Arbiter {
    /// Protocol 6, step 5a -> 5b: the server's bids for a closed CPO; Alice
    /// signs the winner under [`AWARD_RULE`]. She checks the request comes
    /// from `server` and that the CPO names her; she does not need to keep
    /// any state.
    pub fn handle_award_request(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m: &[u8],
        server: &Peer,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let opened = envelope::open::<AwardRequest>(m, self.enc_key(), |kid| server.key_if(kid))?;
        let req = opened.message;
        let award = Award {
            request_hash: digest(&req),
            cpo: req.cpo,
            winner: choose_winner(&req.bids, &req.price),
            rule: AWARD_RULE.to_owned(),
            considered: req.bids.iter().map(|b| b.receipt_hash).collect(),
            t: now,
        };
        let signed = cose::sign(self.sign_key(), &award);
        let reply = envelope::seal(rng, self.sign_key(), &server.enc, &award)?;
        Ok((reply, signed))
    }
}

/// A bidding listing Pam received.
#[derive(Clone, Debug)]
pub struct BidListingOpened {
    /// X_0.
    pub message: BidListing,
    hash: [u8; 32],
}

/// Step 2 sent: Pam waits for her BID_RECEIPT.
#[derive(Debug)]
pub struct ExpectBidReceipt {
    x1_hash: [u8; 32],
    ccpo: Ccpo,
    price: Money,
}

/// BID_RECEIPT as Pam stores it (step 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldReceipt {
    /// The signed receipt.
    pub signed: Vec<u8>,
    /// X_2.
    pub message: BidReceipt,
}

impl HeldReceipt {
    /// hash(X_2): how the award names this bid.
    pub fn hash(&self) -> [u8; 32] {
        digest(&self.message)
    }
}

/// What a notice told a bidder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Her bid won: the CPO is hers.
    Won,
    /// Another bid won, or none.
    Lost,
}

impl SellerSession {
    /// Opens a bidding listing (protocol 6, step 1).
    pub fn open_bid_listing(&self, m0: &[u8]) -> Result<BidListingOpened> {
        let message = self
            .channel()
            .open_authed::<BidListing>(Direction::ToSeller, m0)?;
        Ok(BidListingOpened {
            hash: digest(&message),
            message,
        })
    }

    /// Step 2: her bid on `listing`.
    pub fn bid(
        &self,
        rng: &mut impl Rng,
        listing: &BidListingOpened,
        price: Money,
        details: &str,
    ) -> Result<(Vec<u8>, ExpectBidReceipt)> {
        if details.len() > MAX_BID_DETAILS_LEN {
            return Err(Error::ApiMisuse("bid details over their limit"));
        }
        let x1 = Bid {
            x0_hash: listing.hash,
            r1: random_bytes(rng),
            price,
            details: details.to_owned(),
        };
        Ok((
            self.channel().seal_authed(rng, Direction::ToServer, &x1),
            ExpectBidReceipt {
                x1_hash: digest(&x1),
                ccpo: listing.message.ccpo.clone(),
                price,
            },
        ))
    }
}

impl ExpectBidReceipt {
    /// Step 3 -> 4: the receipt must be signed by the server and answer
    /// this bid, with the CPO and price unchanged and T_Response after the
    /// CPO's EndDate.
    pub fn handle(self, session: &SellerSession, m2: &[u8]) -> Result<HeldReceipt> {
        let (x2, signed) = session.channel().open_signed::<BidReceipt>(
            Direction::ToSeller,
            m2,
            &session.server().sign,
        )?;
        if x2.x1_hash != self.x1_hash || x2.ccpo != self.ccpo || x2.price != self.price {
            return Err(Error::PeerMisbehaved("BID_RECEIPT differs from the bid"));
        }
        if x2.t_response < x2.ccpo.end {
            return Err(Error::PeerMisbehaved("T_Response before bidding closes"));
        }
        Ok(HeldReceipt {
            signed,
            message: x2,
        })
    }
}

// Saved state (see `crate::state`): kind 13, the server waiting for the
// arbiter's award. It holds no secret: the award request (the bids' receipt
// hashes and prices) and the arbiter's public keys.

impl PendingAward {
    /// The state as bytes (saved state kind 13), to resume later with
    /// [`Self::from_bytes`] (the award then arrives by mail, say).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(13, 2);
        e.bytes(&agora_core::wire::encode(&self.request))
            .field(&self.arbiter);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = crate::state::open(b, 13, 2)?;
        let request = agora_core::wire::decode::<AwardRequest>(
            d.bytes("saved award request", AwardRequest::MAX_LEN)?,
        )?;
        let s = PendingAward {
            request,
            arbiter: d.field()?,
        };
        d.finish()?;
        Ok(s)
    }
}

// Saved state (see `crate::state`): kind 12. It holds no secret: hash(X_1),
// the CPO (public on the board) and her price; K_p stays in her keystore.

impl ExpectBidReceipt {
    /// The state as bytes (saved state kind 12), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(12, 3);
        e.field(&self.x1_hash).field(&self.ccpo).field(&self.price);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut d = crate::state::open(b, 12, 3)?;
        let s = ExpectBidReceipt {
            x1_hash: d.field()?,
            ccpo: d.field()?,
            price: d.field()?,
        };
        d.finish()?;
        Ok(s)
    }

    /// The CPO the bid is for.
    pub fn ccpo(&self) -> &Ccpo {
        &self.ccpo
    }

    /// The price she bid.
    pub fn price(&self) -> Money {
        self.price
    }

    /// hash(X_1): the bid, as the receipt that answers it names it
    /// ([`BidReceipt::x1_hash`]).
    pub fn bid_hash(&self) -> [u8; 32] {
        self.x1_hash
    }
}

/// Checks a notice for `receipt`: signed by `server`, its award signed by
/// `arbiter` (the one the CPO names) and considering this bid; returns
/// whether it won. A notice claiming a win the award does not give is
/// refused.
pub fn check_notice(
    notice: &[u8],
    receipt: &HeldReceipt,
    server: &VerifyingKey,
    arbiter: &VerifyingKey,
) -> Result<Outcome> {
    let n = cose::verify::<Notice>(notice, server)?;
    if arbiter.key_id() != receipt.message.ccpo.arbiter {
        return Err(Error::NotAuthorised("not the arbiter the CPO names".into()));
    }
    let a = cose::verify::<Award>(&n.award, arbiter)?;
    let mine = receipt.hash();
    if n.cpo != receipt.message.ccpo.id || a.cpo != n.cpo || n.receipt_hash != mine {
        return Err(Error::PeerMisbehaved("the notice is for another bid"));
    }
    if !a.considered.contains(&mine) {
        return Err(Error::PeerMisbehaved("the award leaves out this bid"));
    }
    let won = a.winner == Some(mine);
    if won != n.won {
        return Err(Error::PeerMisbehaved("the notice contradicts the award"));
    }
    Ok(if won { Outcome::Won } else { Outcome::Lost })
}

// ------------------------------------------------- recovery of lost receipts

/// Replay-cache scope of a bidder's requests for her receipts.
pub const BIDS_REQUEST_SCOPE: &str = "cpo/bids-request";
/// Largest signed BID_RECEIPT (COSE_Sign1 of [`BidReceipt`]).
pub const MAX_SIGNED_RECEIPT_LEN: usize = BidReceipt::MAX_LEN + cose::SIGN1_OVERHEAD;
/// Most receipts one [`BidsReply`] carries: sixteen of the largest
/// receipts fit in a message. A bidder with more asks again from where the
/// reply ended ([`RecoveredBids::next`]).
pub const MAX_RECEIPTS_PER_REPLY: usize = 16;

/// agora's addition to protocol 6 (found by agora-sim): a bidder whose
/// BID_RECEIPT was lost on the way asks the server for her receipts on one
/// CPO, with this request signed by the key of her bond. She would
/// otherwise bid again and might never learn that her first bid won.
///
/// The request carries her bond's public key, so the server checks the
/// signature before it looks anything up; it then answers with the receipts
/// whose BC_P certifies that key, and no others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidsRequest {
    /// The CPO id.
    pub cpo: [u8; 32],
    /// Her bond's key, which signs the request.
    pub seller: VerifyingKey,
    /// The first of her receipts she asks for (0: from her first bid), in
    /// the order the server took the bids.
    pub from: u64,
    /// A fresh nonce.
    pub nonce: [u8; 32],
    /// When she asks.
    pub t: Timestamp,
}

impl Message for BidsRequest {
    const TAG: Tag = tags::CPO_BIDS_REQUEST;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = 192;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.cpo)
            .field(&self.seller)
            .field(&self.from)
            .field(&self.nonce)
            .field(&self.t);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BidsRequest {
            cpo: d.field()?,
            seller: d.field()?,
            from: d.uint_max("first receipt", MAX_BIDS_PER_CPO as u64)?,
            nonce: d.field()?,
            t: d.field()?,
        })
    }
}

/// The server's reply to a [`BidsRequest`], sealed to the bidder's
/// encryption key from her bond: how many bids of hers it holds on the CPO,
/// and her receipts from the one she asked for on, as the server signed
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidsReply {
    /// hash of the request it answers.
    pub request_hash: [u8; 32],
    /// How many bids of hers the server holds on the CPO.
    pub total: u64,
    /// Her signed BID_RECEIPTs from the request's `from` on, in the order
    /// taken: `min(total - from, MAX_RECEIPTS_PER_REPLY)` of them.
    pub receipts: Vec<Vec<u8>>,
}

impl Message for BidsReply {
    const TAG: Tag = tags::CPO_BIDS_REPLY;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 128 + MAX_RECEIPTS_PER_REPLY * (MAX_SIGNED_RECEIPT_LEN + 8);
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.request_hash).field(&self.total);
        e.array(self.receipts.len());
        for r in &self.receipts {
            e.bytes(r);
        }
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let request_hash = d.field()?;
        let total = d.uint_max("bid count", MAX_BIDS_PER_CPO as u64)?;
        let n = d.array_max("bid receipts", MAX_RECEIPTS_PER_REPLY)?;
        let receipts = (0..n)
            .map(|_| Ok(d.bytes("BID_RECEIPT", MAX_SIGNED_RECEIPT_LEN)?.to_vec()))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(BidsReply {
            request_hash,
            total,
            receipts,
        })
    }
}

// A full reply fits in one message (and so in one envelope).
const _: () = assert!(BidsReply::MAX_LEN <= agora_core::wire::MAX_MESSAGE_LEN);

/// What a bidder recovered with one [`BidsRequest`]: checked receipts she
/// keeps as step 4 would have given them to her.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredBids {
    /// Her receipts from the request's `from` on, in the order taken.
    pub receipts: Vec<HeldReceipt>,
    /// How many bids of hers the server holds on the CPO.
    pub total: u64,
    from: u64,
}

impl RecoveredBids {
    /// Where to ask from next, if the server holds receipts of hers after
    /// these (more than [`MAX_RECEIPTS_PER_REPLY`] bids).
    pub fn next(&self) -> Option<u64> {
        let end = self.from + self.receipts.len() as u64;
        (end < self.total).then_some(end)
    }
}

/// Pam signs a request for her receipts on CPO `cpo`, from her `from`-th
/// bid on (0 for all of them), with the key of her bond.
pub fn request_bids(
    keys: &crate::Keys,
    rng: &mut impl Rng,
    now: Timestamp,
    cpo: [u8; 32],
    from: u64,
) -> (Vec<u8>, BidsRequest) {
    let req = BidsRequest {
        cpo,
        seller: keys.sign.verifying_key(),
        from,
        nonce: random_bytes(rng),
        t: now,
    };
    (cose::sign(&keys.sign, &req), req)
}

/// Pam opens the reply: sealed to her, from `server`, answering `req`, with
/// as many receipts as the count and `req.from` call for, each signed by
/// `server`, for the CPO she asked about, with her bond (its key is hers)
/// and T_Response after the CPO's EndDate, no receipt twice.
pub fn open_bids_reply(
    keys: &crate::Keys,
    server: &VerifyingKey,
    req: &BidsRequest,
    reply: &[u8],
) -> Result<RecoveredBids> {
    let r = crate::delivery::open_reply::<BidsReply>(keys, server, req, reply, |r| r.request_hash)?;
    let expected = r
        .total
        .saturating_sub(req.from)
        .min(MAX_RECEIPTS_PER_REPLY as u64);
    if r.receipts.len() as u64 != expected {
        return Err(Error::PeerMisbehaved(
            "the reply holds another number of receipts than it counts",
        ));
    }
    let mine = keys.sign.verifying_key();
    let mut receipts: Vec<HeldReceipt> = Vec::with_capacity(r.receipts.len());
    let mut seen: Vec<[u8; 32]> = Vec::with_capacity(r.receipts.len());
    for signed in r.receipts {
        let message = cose::verify::<BidReceipt>(&signed, server)?;
        if message.ccpo.id != req.cpo {
            return Err(Error::PeerMisbehaved(
                "the reply holds a bid on another CPO",
            ));
        }
        if agora_pki::parse_certificate(&message.seller_bond)?.public_key != mine {
            return Err(Error::PeerMisbehaved(
                "the reply holds another seller's bid",
            ));
        }
        if message.t_response < message.ccpo.end {
            return Err(Error::PeerMisbehaved("T_Response before bidding closes"));
        }
        let held = HeldReceipt { signed, message };
        let hash = held.hash();
        if seen.contains(&hash) {
            return Err(Error::PeerMisbehaved("the reply holds a receipt twice"));
        }
        seen.push(hash);
        receipts.push(held);
    }
    Ok(RecoveredBids {
        receipts,
        total: r.total,
        from: req.from,
    })
}

impl Server {
    /// Answers a bidder's signed [`BidsRequest`]: the signature must be by
    /// the key the request names, the request fresh (within the clock skew)
    /// and not seen before. The reply holds only receipts whose BC_P
    /// certifies that key (so only the bidder herself gets her receipts),
    /// up to [`MAX_RECEIPTS_PER_REPLY`] from her `from`-th bid on, and is
    /// sealed to the encryption key of the bond in her latest receipt.
    /// Nothing changes on the server but the replay cache. Refused if it
    /// holds no bid of hers on the CPO.
    pub fn bids_for_seller(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        request: &[u8],
    ) -> Result<Vec<u8>> {
        let (req, kid) = cose::verify_self_certified::<BidsRequest>(request, |x| Ok(x.seller))?;
        if req.t.distance_secs(now) > crate::MAX_CLOCK_SKEW_SECS {
            return Err(Error::Replayed);
        }
        let expires = now.plus_secs(2 * crate::MAX_CLOCK_SKEW_SECS + 1);
        if self
            .replay_cache()
            .check_and_insert(BIDS_REQUEST_SCOPE, &req.nonce, expires, now)?
            == agora_core::ports::Freshness::Replayed
        {
            return Err(Error::Replayed);
        }
        let mine: Vec<BidRecord> = self
            .store
            .bids()
            .bids(&req.cpo)?
            .into_iter()
            .filter(|b| b.summary.seller == kid)
            .collect();
        let latest = mine
            .last()
            .ok_or_else(|| Error::Refused(NO_BIDS_OF_YOURS.into()))?;
        let from = usize::try_from(req.from).unwrap_or(usize::MAX);
        if from > mine.len() {
            return Err(Error::Refused(format!(
                "the server holds {} bids of yours on this CPO",
                mine.len()
            )));
        }
        let end = mine.len().min(from.saturating_add(MAX_RECEIPTS_PER_REPLY));
        let mut receipts = Vec::with_capacity(end - from);
        let mut page_enc = None;
        for b in &mine[from..end] {
            page_enc = Some(self.stored_receipt_bond(b, &req.seller)?);
            receipts.push(b.receipt.clone());
        }
        // Sealed to the bond of her latest receipt: the page's last, checked
        // above, when the page reaches it.
        let enc = match page_enc {
            Some(enc) if end == mine.len() => enc,
            _ => self.stored_receipt_bond(latest, &req.seller)?,
        };
        envelope::seal(
            rng,
            &self.keys.sign,
            &enc,
            &BidsReply {
                request_hash: digest(&req),
                total: mine.len() as u64,
                receipts,
            },
        )
    }

    /// A stored BID_RECEIPT, checked before it is handed out: signed by this
    /// server, and its BC_P certifies `seller`. Returns the encryption key
    /// of that bond.
    fn stored_receipt_bond(
        &self,
        record: &BidRecord,
        seller: &VerifyingKey,
    ) -> Result<agora_core::crypto::X25519Public> {
        let mismatch = || Error::Storage("a stored BID_RECEIPT does not match its record".into());
        let receipt = cose::verify::<BidReceipt>(&record.receipt, &self.keys.sign.verifying_key())
            .map_err(|_| mismatch())?;
        let cert = agora_pki::parse_certificate(&receipt.seller_bond).map_err(|_| mismatch())?;
        if cert.public_key != *seller {
            return Err(mismatch());
        }
        cert.bond.map(|b| b.holder_x25519).ok_or_else(mismatch)
    }
}
