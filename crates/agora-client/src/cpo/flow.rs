//! The CPO client flows as sans-IO conversations: each is the buyer's or
//! the seller's side of one protocol run, from the first message she sends
//! to what she holds at the end, and exists here once. A driver moves
//! messages: [`super::run`] over a [`crate::transport::CpoTransport`]
//! (in process or HTTP), the load tool's event loops, the e-mail mode (one
//! step per program run: a conversation saves itself with `to_bytes`), and
//! the simulator (a seeded, lossy network).
//!
//! A conversation is consumed by each reply ([`Conversation::on_reply`]),
//! like the role steps it wraps; [`Conversation::expects`] names the reply
//! it waits for, so an event-driven driver can leave other messages (late,
//! duplicated) to others without using the conversation up. Nothing here
//! reads a clock, a socket or the OS RNG: `now` and `rng` come in.

use agora_core::crypto::{Rng, VerifyingKey};
use agora_core::wire::{saved, Message, Tag};
use agora_core::{DecodeError, Error, Money, Result, Timestamp};
use agora_cpo::bidding::{
    self, BidListing, BidsRequest, ExpectBidReceipt, HeldReceipt, RecoveredBids,
};
use agora_cpo::buyer::{
    self, Acceptance, ExpectArbiterAcceptance, ExpectArbiterChallenge, ExpectPostChallenge,
    ExpectPosted, PostReceipt,
};
use agora_cpo::delivery::{self, BindingRequest, PostedRequest};
use agora_cpo::msg::{
    ArbiterAcceptance, ArbiterChallenge, BindListing, BoundCpo, BrowseChallenge, BrowseGrant,
    PostChallenge, PostedCpo,
};
use agora_cpo::ports::EndOutcome;
use agora_cpo::recovery::ExpectBinding;
use agora_cpo::seller::{
    self, BoundReceipt, ExpectBound, ExpectBrowseChallenge, ExpectBrowseGrant, ExpectListings,
    ListingOrRefusal, SellerSession,
};
use agora_cpo::{Bidding, Ccpo, FirstCome, Keys, Mode, Peer, Variant};

/// Which of the CPO roles a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// The arbiter (protocols 1 and 5).
    Arbiter,
    /// The CPO server (every other protocol).
    Server,
}

/// A message a conversation sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Its recipient.
    pub to: To,
    /// The message.
    pub body: Vec<u8>,
}

impl Outgoing {
    fn arbiter(body: Vec<u8>) -> Outgoing {
        Outgoing {
            to: To::Arbiter,
            body,
        }
    }

    fn server(body: Vec<u8>) -> Outgoing {
        Outgoing {
            to: To::Server,
            body,
        }
    }
}

/// What a conversation does with a reply.
#[derive(Debug)]
pub enum Next<C: Conversation> {
    /// Send this and wait for its reply.
    Send(Outgoing, C),
    /// The run is over: what the party holds.
    Done(C::Done),
}

/// One client side of a protocol run, waiting for a reply.
pub trait Conversation: Sized {
    /// What the party brings to each step: her keys, or her browse session.
    type Party: ?Sized;
    /// What she holds at the end.
    type Done;

    /// The registered tag of the reply it waits for (`None`: the reply is
    /// not a tagged message, e.g. the end of a session's one word).
    fn expects(&self) -> Option<Tag>;

    /// Takes the reply: checks it, and sends the next message or ends.
    fn on_reply(
        self,
        party: &Self::Party,
        rng: &mut impl Rng,
        now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>>;
}

// ---------------------------------------------------------------- approval

/// Protocol 1 (first-come) or 5 (bidding): the buyer has the arbiter accept
/// his CCPO.
#[derive(Debug)]
pub enum Approval<V: Variant> {
    /// Waiting for the arbiter's challenge.
    Challenge(ExpectArbiterChallenge<V>),
    /// His answer sent: waiting for the ARBITER_ACCEPTANCE.
    Acceptance(ExpectArbiterAcceptance<V>),
}

impl<V: Variant> Approval<V> {
    /// Asks `arbiter` to accept `ccpo` (with `terms` added).
    pub fn start(
        bob: &Keys,
        rng: &mut impl Rng,
        ccpo: Ccpo,
        terms: &str,
        arbiter: &Peer,
    ) -> Result<(Outgoing, Approval<V>)> {
        let (m0, s) = buyer::request_approval::<V>(bob, rng, ccpo, terms, arbiter)?;
        Ok((Outgoing::arbiter(m0), Approval::Challenge(s)))
    }

    /// The conversation as saved bytes (its role state's).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Approval::Challenge(s) => s.to_bytes(),
            Approval::Acceptance(s) => s.to_bytes(),
        }
    }

    /// A conversation saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        ExpectArbiterChallenge::from_bytes(b)
            .map(Approval::Challenge)
            .or_else(|_| ExpectArbiterAcceptance::from_bytes(b).map(Approval::Acceptance))
    }
}

impl<V: Variant> Conversation for Approval<V> {
    type Party = Keys;
    type Done = Acceptance;

    fn expects(&self) -> Option<Tag> {
        Some(match self {
            Approval::Challenge(_) => ArbiterChallenge::<V>::TAG,
            Approval::Acceptance(_) => ArbiterAcceptance::<V>::TAG,
        })
    }

    fn on_reply(
        self,
        bob: &Keys,
        rng: &mut impl Rng,
        now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(match self {
            Approval::Challenge(s) => {
                let (m2, s) = s.handle(bob, rng, reply)?;
                Next::Send(Outgoing::arbiter(m2), Approval::Acceptance(s))
            }
            Approval::Acceptance(s) => Next::Done(s.handle(bob, now, reply)?),
        })
    }
}

/// [`Approval`] of either mode, chosen at run time.
#[derive(Debug)]
pub enum AnyApproval {
    /// Protocol 1.
    FirstCome(Approval<FirstCome>),
    /// Protocol 5.
    Bidding(Approval<Bidding>),
}

impl AnyApproval {
    /// [`Approval::start`] for a CPO of `mode`.
    pub fn start(
        mode: Mode,
        bob: &Keys,
        rng: &mut impl Rng,
        ccpo: Ccpo,
        terms: &str,
        arbiter: &Peer,
    ) -> Result<(Outgoing, AnyApproval)> {
        Ok(match mode {
            Mode::FirstCome => {
                let (m, a) = Approval::start(bob, rng, ccpo, terms, arbiter)?;
                (m, AnyApproval::FirstCome(a))
            }
            Mode::Bidding => {
                let (m, a) = Approval::start(bob, rng, ccpo, terms, arbiter)?;
                (m, AnyApproval::Bidding(a))
            }
        })
    }

    /// The conversation as saved bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            AnyApproval::FirstCome(a) => a.to_bytes(),
            AnyApproval::Bidding(a) => a.to_bytes(),
        }
    }

    /// A conversation saved by [`Self::to_bytes`] (either mode).
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        Approval::from_bytes(b)
            .map(AnyApproval::FirstCome)
            .or_else(|_| Approval::from_bytes(b).map(AnyApproval::Bidding))
    }
}

impl Conversation for AnyApproval {
    type Party = Keys;
    type Done = Acceptance;

    fn expects(&self) -> Option<Tag> {
        match self {
            AnyApproval::FirstCome(a) => a.expects(),
            AnyApproval::Bidding(a) => a.expects(),
        }
    }

    fn on_reply(
        self,
        bob: &Keys,
        rng: &mut impl Rng,
        now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(match self {
            AnyApproval::FirstCome(a) => match a.on_reply(bob, rng, now, reply)? {
                Next::Send(m, a) => Next::Send(m, AnyApproval::FirstCome(a)),
                Next::Done(d) => Next::Done(d),
            },
            AnyApproval::Bidding(a) => match a.on_reply(bob, rng, now, reply)? {
                Next::Send(m, a) => Next::Send(m, AnyApproval::Bidding(a)),
                Next::Done(d) => Next::Done(d),
            },
        })
    }
}

// ---------------------------------------------------------------- posting

/// Protocol 2: the buyer posts his accepted CPO.
#[derive(Debug)]
pub enum Posting {
    /// Waiting for the server's challenge.
    Challenge(ExpectPostChallenge),
    /// His answer sent: waiting for the posted CPO.
    Posted(ExpectPosted),
}

impl Posting {
    /// Posts the CPO `acceptance` accepts at `server`.
    pub fn start(
        bob: &Keys,
        rng: &mut impl Rng,
        acceptance: &Acceptance,
        server: &Peer,
    ) -> Result<(Outgoing, Posting)> {
        let (m0, s) = buyer::request_post(bob, rng, acceptance, server)?;
        Ok((Outgoing::server(m0), Posting::Challenge(s)))
    }

    /// The conversation as saved bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Posting::Challenge(s) => s.to_bytes(),
            Posting::Posted(s) => s.to_bytes(),
        }
    }

    /// A conversation saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        ExpectPostChallenge::from_bytes(b)
            .map(Posting::Challenge)
            .or_else(|_| ExpectPosted::from_bytes(b).map(Posting::Posted))
    }

    /// Whether his answer to the challenge went out: from then on the CPO
    /// may be on the board without his knowing (see [`FetchPosted`]).
    pub fn answered(&self) -> bool {
        matches!(self, Posting::Posted(_))
    }
}

impl Conversation for Posting {
    type Party = Keys;
    type Done = PostReceipt;

    fn expects(&self) -> Option<Tag> {
        Some(match self {
            Posting::Challenge(_) => PostChallenge::TAG,
            Posting::Posted(_) => PostedCpo::TAG,
        })
    }

    fn on_reply(
        self,
        bob: &Keys,
        rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(match self {
            Posting::Challenge(s) => {
                let (m2, s) = s.handle(bob, rng, reply)?;
                Next::Send(Outgoing::server(m2), Posting::Posted(s))
            }
            Posting::Posted(s) => Next::Done(s.handle(bob, reply)?),
        })
    }
}

/// The buyer asks for his posted CPO (lost on the way): a request signed
/// with his bond key, answered sealed to him.
#[derive(Clone, Debug)]
pub struct FetchPosted {
    request: PostedRequest,
    server: VerifyingKey,
}

impl FetchPosted {
    /// Asks `server` for the posted CPO `cpo`.
    pub fn start(
        bob: &Keys,
        rng: &mut impl Rng,
        now: Timestamp,
        cpo: [u8; 32],
        server: &Peer,
    ) -> (Outgoing, FetchPosted) {
        let (m, request) = delivery::request_posted(bob, rng, now, cpo);
        (
            Outgoing::server(m),
            FetchPosted {
                request,
                server: server.sign,
            },
        )
    }
}

impl Conversation for FetchPosted {
    type Party = Keys;
    type Done = PostReceipt;

    fn expects(&self) -> Option<Tag> {
        Some(agora_core::wire::tags::CPO_POSTED_REPLY)
    }

    fn on_reply(
        self,
        bob: &Keys,
        _rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(Next::Done(delivery::open_posted_reply(
            bob,
            &self.server,
            &self.request,
            reply,
        )?))
    }
}

/// The buyer asks for the binding of his CPO: the BOUND_CPO (or, for a
/// bidding CPO, the winner's notice) as the server signed it.
#[derive(Clone, Debug)]
pub struct FetchBinding {
    request: BindingRequest,
    server: VerifyingKey,
}

impl FetchBinding {
    /// Asks `server` for the binding of `cpo`.
    pub fn start(
        bob: &Keys,
        rng: &mut impl Rng,
        now: Timestamp,
        cpo: [u8; 32],
        server: &Peer,
    ) -> (Outgoing, FetchBinding) {
        let (m, request) = delivery::request_binding(bob, rng, now, cpo);
        (
            Outgoing::server(m),
            FetchBinding {
                request,
                server: server.sign,
            },
        )
    }
}

impl Conversation for FetchBinding {
    type Party = Keys;
    type Done = Vec<u8>;

    fn expects(&self) -> Option<Tag> {
        Some(agora_core::wire::tags::CPO_BINDING_REPLY)
    }

    fn on_reply(
        self,
        bob: &Keys,
        _rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(Next::Done(delivery::open_binding_reply(
            bob,
            &self.server,
            &self.request,
            reply,
        )?))
    }
}

// ---------------------------------------------------------------- sessions

/// Protocol 3: a seller opens a browse session (and gets K_p).
#[derive(Debug)]
pub enum Browse {
    /// Waiting for the server's challenge.
    Challenge(ExpectBrowseChallenge),
    /// Her answer sent: waiting for the grant.
    Grant(ExpectBrowseGrant),
}

impl Browse {
    /// Asks `server` for a session from `from` to `until` under `bond`.
    pub fn start(
        pam: &Keys,
        rng: &mut impl Rng,
        bond: Vec<u8>,
        from: Timestamp,
        until: Timestamp,
        server: &Peer,
    ) -> Result<(Outgoing, Browse)> {
        let (m0, s) = seller::request_session(pam, rng, bond, from, until, server)?;
        Ok((Outgoing::server(m0), Browse::Challenge(s)))
    }

    /// The conversation as saved bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Browse::Challenge(s) => s.to_bytes(),
            Browse::Grant(s) => s.to_bytes(),
        }
    }

    /// A conversation saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        ExpectBrowseChallenge::from_bytes(b)
            .map(Browse::Challenge)
            .or_else(|_| ExpectBrowseGrant::from_bytes(b).map(Browse::Grant))
    }
}

impl Conversation for Browse {
    type Party = Keys;
    type Done = SellerSession;

    fn expects(&self) -> Option<Tag> {
        Some(match self {
            Browse::Challenge(_) => BrowseChallenge::TAG,
            Browse::Grant(_) => BrowseGrant::TAG,
        })
    }

    fn on_reply(
        self,
        pam: &Keys,
        rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(match self {
            Browse::Challenge(s) => {
                let (m2, s) = s.handle(pam, rng, reply)?;
                Next::Send(Outgoing::server(m2), Browse::Grant(s))
            }
            Browse::Grant(s) => Next::Done(s.handle(pam, reply)?),
        })
    }
}

/// The seller ends her browse session: K_p binds nothing more.
#[derive(Debug)]
pub struct EndSession;

impl EndSession {
    /// The end of `session`.
    pub fn start(session: &SellerSession, rng: &mut impl Rng) -> (Outgoing, EndSession) {
        (Outgoing::server(session.end(rng)), EndSession)
    }
}

impl Conversation for EndSession {
    type Party = SellerSession;
    /// The server's answer, read from its stable code
    /// ([`EndOutcome::code`]: `ended`, `already-ended`, `unknown-session`).
    type Done = EndOutcome;

    fn expects(&self) -> Option<Tag> {
        None
    }

    fn on_reply(
        self,
        _session: &SellerSession,
        _rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        let mut d = agora_core::wire::Decoder::new(reply);
        let code = d.text("the end of a session", 32)?;
        let outcome = EndOutcome::from_code(code).ok_or(Error::Decode(DecodeError::Invalid(
            "not a code of the end of a session",
        )))?;
        d.finish()?;
        Ok(Next::Done(outcome))
    }
}

// ---------------------------------------------------------------- binding

/// Saved state kind of a [`Bind`] waiting for its listing (agora-client's
/// numbering of [`saved`] states: 1 and 2, as the e-mail mode wrote them).
const BIND_REQUEST_KIND: u64 = 1;
/// Saved state kind of a [`Bid`] waiting for its listing.
const BID_REQUEST_KIND: u64 = 2;
/// Largest saved request of a listing.
const MAX_SAVED_REQUEST: usize = 64 * 1024;

/// Protocol 4: a seller binds a first-come CPO: she asks for its listing,
/// checks it is of the CPO she asked for, and offers.
#[derive(Debug)]
pub enum Bind {
    /// Waiting for the listing of `cpo` in session `session`.
    Listing {
        /// The CPO she asked for.
        cpo: [u8; 32],
        /// The session she asked in.
        session: [u8; 32],
        /// Her offer.
        offer: String,
    },
    /// Her offer sent: waiting for BOUND_CPO.
    Bound(ExpectBound),
}

impl Bind {
    /// Asks for the listing of `cpo`, to offer `offer` on it.
    pub fn start(
        session: &SellerSession,
        rng: &mut impl Rng,
        cpo: [u8; 32],
        offer: &str,
    ) -> Result<(Outgoing, Bind)> {
        if offer.len() > agora_cpo::msg::MAX_OFFER_LEN {
            return Err(Error::Refused(format!(
                "the offer is {} bytes; at most {} are allowed",
                offer.len(),
                agora_cpo::msg::MAX_OFFER_LEN
            )));
        }
        let m0 = session.request_listing(rng, cpo, Mode::FirstCome);
        Ok((Outgoing::server(m0), Bind::awaiting(session, cpo, offer)))
    }

    /// Waiting for a listing of `cpo` that comes without a request (pushed
    /// by a driver's server, or one of a page of listings).
    pub fn awaiting(session: &SellerSession, cpo: [u8; 32], offer: &str) -> Bind {
        Bind::Listing {
            cpo,
            session: session.id(),
            offer: offer.to_owned(),
        }
    }

    /// The conversation as saved bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Bind::Listing {
                cpo,
                session,
                offer,
            } => {
                let mut e = saved::start(BIND_REQUEST_KIND, 3);
                e.field(cpo).field(session).text(offer);
                e.into_bytes()
            }
            Bind::Bound(s) => s.to_bytes(),
        }
    }

    /// A conversation saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        if let Ok(s) = ExpectBound::from_bytes(b) {
            return Ok(Bind::Bound(s));
        }
        let mut d = saved::open(b, BIND_REQUEST_KIND, 3, MAX_SAVED_REQUEST)?;
        let r = Bind::Listing {
            cpo: d.field()?,
            session: d.field()?,
            offer: d
                .text("saved offer", agora_cpo::msg::MAX_OFFER_LEN)?
                .to_owned(),
        };
        d.finish()?;
        Ok(r)
    }
}

/// Checks a listing came in the session it was asked in and is of the CPO
/// asked for (a server must not make her offer on another CPO).
fn check_listing(
    session: &SellerSession,
    asked_in: &[u8; 32],
    asked: &[u8; 32],
    got: &[u8; 32],
) -> Result<()> {
    if session.id() != *asked_in {
        return Err(Error::Refused(
            "the listing was asked for under another browse session".into(),
        ));
    }
    if got != asked {
        return Err(Error::PeerMisbehaved(
            "the listing is of another CPO than the one asked for",
        ));
    }
    Ok(())
}

impl Conversation for Bind {
    type Party = SellerSession;
    type Done = BoundReceipt;

    fn expects(&self) -> Option<Tag> {
        Some(match self {
            Bind::Listing { .. } => BindListing::TAG,
            Bind::Bound(_) => BoundCpo::TAG,
        })
    }

    fn on_reply(
        self,
        session: &SellerSession,
        rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(match self {
            Bind::Listing {
                cpo,
                session: asked_in,
                offer,
            } => {
                let listing = session.open_listing(reply)?;
                check_listing(session, &asked_in, &cpo, &listing.ccpo().id)?;
                let (m1, s) = session.offer(rng, &listing, &offer)?;
                Next::Send(Outgoing::server(m1), Bind::Bound(s))
            }
            Bind::Bound(s) => Next::Done(s.handle(session, reply)?),
        })
    }
}

/// Protocol 6: a seller bids on a bidding CPO: she asks for its listing,
/// checks it, and bids.
#[derive(Debug)]
pub enum Bid {
    /// Waiting for the bidding listing of `cpo` in session `session`.
    Listing {
        /// The CPO she asked for.
        cpo: [u8; 32],
        /// The session she asked in.
        session: [u8; 32],
        /// Her price.
        price: Money,
        /// Her bid's details.
        details: String,
    },
    /// Her bid sent: waiting for the BID_RECEIPT.
    Receipt(ExpectBidReceipt),
}

impl Bid {
    /// hash(X_1) of the bid she sent, once she has sent it.
    pub fn bid_hash(&self) -> Option<[u8; 32]> {
        match self {
            Bid::Listing { .. } => None,
            Bid::Receipt(s) => Some(s.bid_hash()),
        }
    }

    /// Asks for the bidding listing of `cpo`, to bid `price` on it.
    pub fn start(
        session: &SellerSession,
        rng: &mut impl Rng,
        cpo: [u8; 32],
        price: Money,
        details: &str,
    ) -> Result<(Outgoing, Bid)> {
        if details.len() > bidding::MAX_BID_DETAILS_LEN {
            return Err(Error::Refused(format!(
                "the bid details are {} bytes; at most {} are allowed",
                details.len(),
                bidding::MAX_BID_DETAILS_LEN
            )));
        }
        let m0 = session.request_listing(rng, cpo, Mode::Bidding);
        Ok((
            Outgoing::server(m0),
            Bid::awaiting(session, cpo, price, details),
        ))
    }

    /// Waiting for a bidding listing of `cpo` that comes without a request.
    pub fn awaiting(session: &SellerSession, cpo: [u8; 32], price: Money, details: &str) -> Bid {
        Bid::Listing {
            cpo,
            session: session.id(),
            price,
            details: details.to_owned(),
        }
    }

    /// The conversation as saved bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Bid::Listing {
                cpo,
                session,
                price,
                details,
            } => {
                let mut e = saved::start(BID_REQUEST_KIND, 4);
                e.field(cpo).field(session).field(price).text(details);
                e.into_bytes()
            }
            Bid::Receipt(s) => s.to_bytes(),
        }
    }

    /// A conversation saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        if let Ok(s) = ExpectBidReceipt::from_bytes(b) {
            return Ok(Bid::Receipt(s));
        }
        let mut d = saved::open(b, BID_REQUEST_KIND, 4, MAX_SAVED_REQUEST)?;
        let r = Bid::Listing {
            cpo: d.field()?,
            session: d.field()?,
            price: d.field()?,
            details: d
                .text("saved bid details", bidding::MAX_BID_DETAILS_LEN)?
                .to_owned(),
        };
        d.finish()?;
        Ok(r)
    }
}

impl Conversation for Bid {
    type Party = SellerSession;
    type Done = HeldReceipt;

    fn expects(&self) -> Option<Tag> {
        Some(match self {
            Bid::Listing { .. } => BidListing::TAG,
            Bid::Receipt(_) => agora_cpo::bidding::BidReceipt::TAG,
        })
    }

    fn on_reply(
        self,
        session: &SellerSession,
        rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(match self {
            Bid::Listing {
                cpo,
                session: asked_in,
                price,
                details,
            } => {
                let listing = session.open_bid_listing(reply)?;
                check_listing(session, &asked_in, &cpo, &listing.message.ccpo.id)?;
                let (m1, s) = session.bid(rng, &listing, price, &details)?;
                Next::Send(Outgoing::server(m1), Bid::Receipt(s))
            }
            Bid::Receipt(s) => Next::Done(s.handle(session, reply)?),
        })
    }
}

/// A seller asks for the listings of a page of CPOs in one round trip
/// (LISTINGS_REQUEST): per CPO, in the order asked, its sealed listing or
/// the server's refusal. Each listing then goes to a [`Bind::awaiting`] (or
/// [`Bid::awaiting`]), which checks it.
#[derive(Debug)]
pub struct Listings(ExpectListings);

impl Listings {
    /// Asks for the listings of `cpos` (1 to
    /// [`agora_cpo::msg::MAX_LISTINGS_PER_REQUEST`], none twice) of `mode`.
    pub fn start(
        session: &SellerSession,
        rng: &mut impl Rng,
        cpos: &[[u8; 32]],
        mode: Mode,
    ) -> Result<(Outgoing, Listings)> {
        let (m, s) = session.request_listings(rng, cpos, mode)?;
        Ok((Outgoing::server(m), Listings(s)))
    }
}

impl Conversation for Listings {
    type Party = SellerSession;
    type Done = Vec<([u8; 32], ListingOrRefusal)>;

    fn expects(&self) -> Option<Tag> {
        Some(agora_core::wire::tags::CPO_LISTINGS)
    }

    fn on_reply(
        self,
        session: &SellerSession,
        _rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(Next::Done(self.0.handle(session, reply)?))
    }
}

/// A bidder asks for her receipts on a CPO (one lost on the way): a request
/// signed with her bond key, answered sealed to her, a page at a time.
#[derive(Clone, Debug)]
pub struct FetchBids {
    request: BidsRequest,
    server: VerifyingKey,
}

impl FetchBids {
    /// Asks `server` for her receipts on `cpo` from her `from`-th bid on.
    pub fn start(
        pam: &Keys,
        rng: &mut impl Rng,
        now: Timestamp,
        cpo: [u8; 32],
        from: u64,
        server: &Peer,
    ) -> (Outgoing, FetchBids) {
        let (m, request) = bidding::request_bids(pam, rng, now, cpo, from);
        (
            Outgoing::server(m),
            FetchBids {
                request,
                server: server.sign,
            },
        )
    }

    /// The request this conversation sent.
    pub fn request(&self) -> &BidsRequest {
        &self.request
    }
}

impl Conversation for FetchBids {
    type Party = Keys;
    /// One page; ask again from [`RecoveredBids::next`] for the rest.
    type Done = RecoveredBids;

    fn expects(&self) -> Option<Tag> {
        Some(agora_core::wire::tags::CPO_BIDS_REPLY)
    }

    fn on_reply(
        self,
        pam: &Keys,
        _rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(Next::Done(bidding::open_bids_reply(
            pam,
            &self.server,
            &self.request,
            reply,
        )?))
    }
}

/// A seller whose BOUND_CPO was lost asks for the binding of a CPO under
/// K_p (the server answers only the binding's own seller).
#[derive(Debug)]
pub struct AskBinding(ExpectBinding);

impl AskBinding {
    /// Asks for the binding of `cpo`, made under her bond `bond`.
    pub fn start(
        session: &SellerSession,
        rng: &mut impl Rng,
        cpo: &[u8; 32],
        bond: &[u8],
    ) -> (Outgoing, AskBinding) {
        let (m, s) = session.ask_binding(rng, cpo, bond);
        (Outgoing::server(m), AskBinding(s))
    }
}

impl Conversation for AskBinding {
    type Party = SellerSession;
    type Done = BoundReceipt;

    fn expects(&self) -> Option<Tag> {
        Some(agora_core::wire::tags::CPO_SELLER_BINDING_ANSWER)
    }

    fn on_reply(
        self,
        session: &SellerSession,
        _rng: &mut impl Rng,
        _now: Timestamp,
        reply: &[u8],
    ) -> Result<Next<Self>> {
        Ok(Next::Done(self.0.handle(session, reply)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_session_is_read_from_the_servers_stable_code() {
        let rng = &mut agora_core::crypto::os_rng();
        let server = Keys {
            sign: agora_core::crypto::SigningKey::generate(rng),
            enc: agora_core::crypto::X25519Secret::generate(rng),
        };
        let session = SellerSession::from_parts(
            agora_cpo::session::BindingKey::random(rng),
            server.peer(),
            b"bond".to_vec(),
            Timestamp(1_000),
            Timestamp(2_000),
        );
        // The reply as the node writes it: one CBOR text string.
        let reply = |word: &str| {
            let mut e = agora_core::wire::Encoder::new();
            e.text(word);
            e.as_bytes().to_vec()
        };
        for o in EndOutcome::ALL {
            match EndSession.on_reply(&session, rng, Timestamp(1_500), &reply(o.code())) {
                Ok(Next::Done(got)) => assert_eq!(got, o),
                Ok(_) => panic!("{o:?}: not done"),
                Err(e) => panic!("{o:?}: {e:?}"),
            }
        }
        // Rust's Debug names, as nodes answered before the codes, are not
        // codes.
        for word in ["Ended", "AlreadyEnded", "Unknown", ""] {
            assert!(
                matches!(
                    EndSession.on_reply(&session, rng, Timestamp(1_500), &reply(word)),
                    Err(Error::Decode(_))
                ),
                "{word:?}"
            );
        }
    }
}
