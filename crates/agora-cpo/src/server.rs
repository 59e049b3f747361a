//! The CPO server: posting (protocol 2, paper section 3.7.1), browse
//! sessions (protocol 3, section 3.8) and first-come binding (protocol 4,
//! section 3.9). The server posts a CPO only when "it is convinced that the
//! CPO has a fresh ARBITER_ACCEPTANCE, and that it is guaranteed by a
//! bonding agency", and after Bob answered its challenge in real time; it
//! binds a CPO exactly once, for the first valid offer under a live K_p.
//!
//! State: a [`CpoStore`]: the [`Board`] port (posted CPOs and their
//! bindings), the [`Sessions`] port (browse sessions and their K_p), the
//! [`ReplayCache`] port (R_0 of post and browse requests) and the evidence
//! archive. A step that writes returns its unit of work ([`CpoUnit`]: the
//! write and its evidence, one transaction) for the driver to commit, and
//! is finished with what the unit wrote (`prepare_*` / `finish*`); the
//! `handle_*` methods do all three for blocking drivers. Runs in progress
//! are values ([`PendingPost`], [`PendingBrowse`]) held by the driver;
//! listings awaiting an offer are a bounded in-memory table.

use crate::msg::{
    digest, ArbiterAcceptance, Bidding, BindListing, BindOffer, BoundCpo, BrowseChallenge,
    BrowseGrant, BrowseRequest, BrowseResponse, EndSession, FirstCome, ListingRequest, Listings,
    ListingsRequest, Mode, PostChallenge, PostRequest, PostResponse, PostedCpo,
};
use crate::ports::{
    BindOutcome, Binding, Board, BoardEntry, CpoState, EndOutcome, PostOutcome, Session, Sessions,
    TakeDownOutcome,
};
use crate::session::{self, BindingKey, Channel, Direction};
use crate::store::{CpoStore, CpoUnit, CpoWrite, CpoWritten};
use crate::{BondTrust, Ccpo, Keys};
use agora_core::crypto::{random_bytes, Rng, VerifyingKey, X25519Public};
use agora_core::ports::{Evidence, Freshness, ReplayCache};
use agora_core::wire::{self, cose, envelope, tags};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::{validate_bond, BondRequirement, Role};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroize;

/// The refusal of a post whose CPO is on the board already: its buyer, whose
/// answer was lost, asks for the posted CPO instead
/// (`agora_client::cpo::flow::FetchPosted`).
pub const ALREADY_POSTED: &str = "this CPO is already posted";

/// The refusal of a bind whose CPO is bound already: the seller who bound
/// it, whose answer was lost, asks for her binding instead
/// ([`crate::recovery`]).
pub const ALREADY_BOUND: &str = "this CPO is already bound";

/// Replay-cache scope of post requests' R_0.
pub const POST_NONCE_SCOPE: &str = "cpo/post/r0";
/// Replay-cache scope of browse requests' R_0.
pub const BROWSE_NONCE_SCOPE: &str = "cpo/browse/r0";

/// An answer to a listing (an offer or a bid) that passed
/// [`Server::open_answer`].
pub(crate) struct Answer<M> {
    pub(crate) message: M,
    pub(crate) session: Session,
    pub(crate) channel: Arc<Channel>,
    pub(crate) cpo: [u8; 32],
    pub(crate) entry: CpoState,
}

/// A CPO that is bound or taken down takes no listing, binding or bid.
fn refuse_closed(entry: &CpoState) -> Result<()> {
    if entry.bound {
        return Err(Error::Refused(ALREADY_BOUND.into()));
    }
    if entry.taken_down {
        return Err(Error::Refused("this CPO was taken down".into()));
    }
    Ok(())
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A session binds only if not ended and `now` is within its T.
fn check_live(s: &Session, now: Timestamp) -> Result<()> {
    if s.ended_at.is_some() {
        return Err(Error::NotAuthorised("the browse session has ended".into()));
    }
    if now < s.from || now >= s.until {
        return Err(Error::Refused(
            "outside the browse session's time range".into(),
        ));
    }
    Ok(())
}

/// A listing sent to a seller and not yet answered (protocol 4, step 1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IssuedListing {
    pub(crate) session: [u8; 32],
    pub(crate) cpo: [u8; 32],
    pub(crate) issued_at: Timestamp,
    /// First-come listings (protocol 4) answer offers; bidding listings
    /// (protocol 6) answer bids. One cannot stand for the other.
    pub(crate) mode: Mode,
}

/// A CPO server: its keys, whom it trusts, and its storage.
pub struct Server {
    pub(crate) keys: Keys,
    /// Trusted bonding agencies and their CRLs; replaced whole (a node
    /// reloads CRLs on a schedule) without disturbing listings in flight.
    trust: RwLock<Arc<BondTrust>>,
    /// The arbiters it works with (the well-known parties of assumption 4).
    pub arbiters: Vec<VerifyingKey>,
    /// Everything it keeps, on one backend; a step's writes and evidence
    /// commit there as one unit ([`CpoStore::commit`]).
    pub(crate) store: Arc<dyn CpoStore>,
    /// Listings waiting for an offer, by hash(X_0), bounded in all and per
    /// session (see [`crate::issued`]). Kept in memory: losing them (a
    /// restart) only means the seller asks for the listing again.
    pub(crate) issued: Mutex<crate::issued::Issued>,
    /// Sessions this server read and found not ended, by id, each with its
    /// derived K_p channel (deriving one costs three HKDFs) and without K_p
    /// itself (wiped in the copy kept here). A session never changes but for
    /// its end: an end made by this server forgets it here at once; one made
    /// by another process sharing the store is caught where it matters, in
    /// the transaction of a binding or bid ([`crate::store::CpoWrite::Bind`],
    /// [`crate::bidding::Bids::record_bid_in_session`]). Bounded (cleared
    /// when full).
    known: Mutex<HashMap<[u8; 32], Known>>,
    /// How long the server waits for the answer to its challenge in
    /// protocols 2 and 3; default [`crate::SESSION_TIMEOUT_SECS`], longer
    /// when posting goes by e-mail.
    pub session_timeout_secs: u64,
    /// How long a listing may be answered with an offer or a bid; default
    /// [`crate::LISTING_TTL_SECS`], longer when binding goes by e-mail.
    pub listing_ttl_secs: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.keys.id())
            .field("arbiters", &self.arbiters.len())
            .finish_non_exhaustive()
    }
}

/// A session as [`Server`] remembers it: K_p wiped, its channel derived.
type Known = (Session, Arc<Channel>);

/// A checked ARBITER_ACCEPTANCE.
#[derive(Clone, Debug)]
pub struct CheckedAcceptance {
    /// The CCPO it accepts.
    pub ccpo: Ccpo,
    /// First-come (protocol 1) or bidding (protocol 5).
    pub mode: Mode,
    /// T_3.
    pub t3: Timestamp,
    /// ID_S.
    pub server: KeyId,
    /// The arbiter who signed it.
    pub arbiter: KeyId,
}

/// Verifies an ARBITER_ACCEPTANCE (a `COSE_Sign1` of X_3 of protocol 1 or
/// 5) against the known `arbiters`: the signer must be one of them **and**
/// the arbiter its CCPO names.
pub fn check_acceptance(bytes: &[u8], arbiters: &[VerifyingKey]) -> Result<CheckedAcceptance> {
    let kid = cose::peek_kid(bytes)?;
    let key = arbiters.iter().find(|k| k.key_id() == kid).ok_or_else(|| {
        Error::NotAuthorised("the acceptance is not signed by a known arbiter".into())
    })?;
    let payload = cose::verify_raw(bytes, key)?;
    let (ccpo, t3, server, mode) = match wire::peek_tag(&payload)? {
        t if t == tags::CPO_ARBITER_ACCEPTANCE => {
            let x3 = wire::decode::<ArbiterAcceptance<FirstCome>>(&payload)?;
            (x3.ccpo, x3.t3, x3.server, Mode::FirstCome)
        }
        t if t == tags::CPO_BID_ARBITER_ACCEPTANCE => {
            let x3 = wire::decode::<ArbiterAcceptance<Bidding>>(&payload)?;
            (x3.ccpo, x3.t3, x3.server, Mode::Bidding)
        }
        other => {
            return Err(agora_core::DecodeError::WrongTag {
                expected: tags::CPO_ARBITER_ACCEPTANCE,
                found: other,
            }
            .into())
        }
    };
    if ccpo.arbiter != kid {
        return Err(Error::NotAuthorised(
            "the acceptance is not signed by the arbiter the CCPO names".into(),
        ));
    }
    Ok(CheckedAcceptance {
        ccpo,
        mode,
        t3,
        server,
        arbiter: kid,
    })
}

/// Step 2 sent: the server waits for Bob's answer. `Clone`, so that a driver
/// can keep it when an answer that does not authenticate is refused
/// ([`agora_core::Error::leaves_state_intact`]).
#[derive(Clone, Debug)]
pub struct PendingPost {
    acceptance: Vec<u8>,
    checked: CheckedAcceptance,
    x1_hash: [u8; 32],
    buyer: VerifyingKey,
    buyer_enc: X25519Public,
    started_at: Timestamp,
}

/// A CPO the server has just posted.
#[derive(Clone, Debug)]
pub struct Posted {
    /// M_3, to send to Bob.
    pub reply: Vec<u8>,
    /// What is now on the board.
    pub entry: BoardEntry,
}

impl Server {
    /// A server with `keys`, trusting `trust` and `arbiters`, keeping its
    /// state in `store`.
    pub fn new(
        keys: Keys,
        trust: BondTrust,
        arbiters: Vec<VerifyingKey>,
        store: Arc<dyn CpoStore>,
    ) -> Self {
        Server {
            keys,
            trust: RwLock::new(Arc::new(trust)),
            arbiters,
            store,
            issued: Mutex::new(crate::issued::Issued::default()),
            known: Mutex::new(HashMap::new()),
            session_timeout_secs: crate::SESSION_TIMEOUT_SECS,
            listing_ttl_secs: crate::LISTING_TTL_SECS,
        }
    }

    /// The trusted bonding agencies and their CRLs, as now.
    pub fn trust(&self) -> Arc<BondTrust> {
        // Only whole values are stored under the lock: a poisoned lock still
        // holds a complete one.
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the trusted agencies and CRLs (a node's CRL refresh). Issued
    /// listings, sessions and everything stored stay as they are.
    pub fn set_trust(&self, trust: BondTrust) {
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(trust);
    }

    /// Everything the server keeps: commit a step's unit here.
    pub fn store(&self) -> &Arc<dyn CpoStore> {
        &self.store
    }

    /// The browse sessions.
    pub fn sessions(&self) -> &dyn Sessions {
        self.store.sessions()
    }

    /// The replay cache.
    pub fn replay_cache(&self) -> &dyn ReplayCache {
        self.store.replay()
    }

    /// ServerID.
    pub fn id(&self) -> KeyId {
        self.keys.id()
    }

    /// The board.
    pub fn board(&self) -> &dyn Board {
        self.store.board()
    }

    /// Step 1 -> 2 of protocol 2. Checks, in order: the envelope is for this
    /// server; the acceptance is signed by a known arbiter who is the one the
    /// CCPO names, names this server (in ID_S and in the CCPO), and is fresh
    /// (T_3 within [`crate::ACCEPTANCE_MAX_AGE_SECS`], not in the future);
    /// the bond (trusted agency, dates, CRL, buyer role, covers the price,
    /// allows this server and that arbiter); Bob's signature with the bond
    /// key; the CPO has not expired and is not posted yet; R_0 was never
    /// seen (a replayed M_0 is refused). Then a fresh challenge.
    pub fn handle_post_request(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m0: &[u8],
    ) -> Result<(Vec<u8>, PendingPost)> {
        let me = self.id();
        let mut checked = None;
        let mut bond = None;
        let opened = envelope::open_self_certified::<PostRequest>(m0, &self.keys.enc, |x0| {
            let acc = check_acceptance(&x0.acceptance, &self.arbiters)?;
            if acc.server != me || acc.ccpo.server != me {
                return Err(Error::NotAuthorised(
                    "the acceptance names another server".into(),
                ));
            }
            if acc.t3.secs() > now.secs() + crate::MAX_CLOCK_SKEW_SECS
                || now.secs() > acc.t3.secs() + crate::ACCEPTANCE_MAX_AGE_SECS
            {
                return Err(Error::Replayed);
            }
            let trust = self.trust();
            let valid = validate_bond(
                &acc.ccpo.bond,
                &trust.agencies,
                &trust.crls,
                now,
                &BondRequirement {
                    price: Some(acc.ccpo.price),
                    role: Role::Buyer,
                    server: Some(me),
                    arbiter: Some(acc.arbiter),
                },
            )?;
            let key = *valid.holder();
            bond = Some(valid);
            checked = Some(acc);
            Ok(key)
        })?;
        let (Some(acc), Some(bond)) = (checked, bond) else {
            return Err(Error::ApiMisuse("acceptance checked before the signature"));
        };
        let x0 = opened.message;
        if acc.ccpo.end <= now {
            return Err(Error::Refused("the CPO has already expired".into()));
        }
        if self.store.board().get(&acc.ccpo.id)?.is_some() {
            return Err(Error::Refused(ALREADY_POSTED.into()));
        }
        let expires = now.plus_secs(
            (crate::ACCEPTANCE_MAX_AGE_SECS + crate::MAX_CLOCK_SKEW_SECS)
                .max(self.session_timeout_secs),
        );
        if self
            .store
            .replay()
            .check_and_insert(POST_NONCE_SCOPE, &x0.r0, expires, now)?
            == Freshness::Replayed
        {
            return Err(Error::Replayed);
        }
        let x1 = PostChallenge {
            x0_hash: digest(&x0),
            r1: random_bytes(rng),
        };
        let m1 = envelope::seal(rng, &self.keys.sign, bond.holder_x25519(), &x1)?;
        Ok((
            m1,
            PendingPost {
                acceptance: x0.acceptance,
                checked: acc,
                x1_hash: digest(&x1),
                buyer: *bond.holder(),
                buyer_enc: *bond.holder_x25519(),
                started_at: now,
            },
        ))
    }
}

impl PendingPost {
    /// The CCPO being posted.
    pub fn ccpo(&self) -> &Ccpo {
        &self.checked.ccpo
    }

    /// Step 3 -> 4: Bob answered the challenge; the server posts the CPO
    /// (durably, before replying) and signs `CPO = U_3, hash(X_2), CCPO`.
    /// For blocking drivers: [`Self::prepare_response`], the unit committed
    /// and waited for, then [`PreparedPost::finish`].
    pub fn handle_response(
        self,
        server: &Server,
        rng: &mut impl Rng,
        now: Timestamp,
        m2: &[u8],
    ) -> Result<Posted> {
        let (unit, prepared) = self.prepare_response(server, now, m2)?;
        let written = server.store.commit(unit, now).wait()?;
        prepared.finish(server, rng, written)
    }

    /// Step 3 -> 4 up to its unit of work: Bob's answer checked and the
    /// posted CPO signed. The unit puts it on the board and archives it
    /// (`cpo/posted`) in one transaction; commit it, then
    /// [`PreparedPost::finish`] with what it wrote.
    pub fn prepare_response(
        self,
        server: &Server,
        now: Timestamp,
        m2: &[u8],
    ) -> Result<(CpoUnit, PreparedPost)> {
        let x2 = crate::open_answer_to_challenge::<PostResponse>(
            m2,
            &server.keys.enc,
            &self.buyer,
            self.started_at,
            server.session_timeout_secs,
            now,
            &self.x1_hash,
            |x| x.x1_hash,
        )?;
        let cpo = PostedCpo {
            x2_hash: digest(&x2),
            ccpo: self.checked.ccpo,
        };
        let entry = BoardEntry {
            mode: self.checked.mode,
            buyer: self.buyer.key_id(),
            posted_at: now,
            acceptance: self.acceptance,
            posted: cose::sign(&server.keys.sign, &cpo),
            ccpo: cpo.ccpo.clone(),
        };
        let unit = CpoUnit {
            evidence: vec![Evidence::new(POSTED_EVIDENCE, entry.posted.clone())],
            write: CpoWrite::Post(entry.clone()),
        };
        Ok((
            unit,
            PreparedPost {
                cpo,
                entry,
                buyer_enc: self.buyer_enc,
            },
        ))
    }
}

/// The evidence kind of a posted CPO in the server's archive.
pub const POSTED_EVIDENCE: &str = "cpo/posted";

/// A posting whose unit of work ([`PendingPost::prepare_response`]) is to
/// be committed; [`Self::finish`] makes Bob's reply from its outcome.
#[derive(Debug)]
#[must_use = "nothing is posted until the unit commits"]
pub struct PreparedPost {
    cpo: PostedCpo,
    entry: BoardEntry,
    buyer_enc: X25519Public,
}

impl PreparedPost {
    /// Bob's reply, M_3, once the unit committed with `written`: the CPO is
    /// on the board (else "already posted").
    pub fn finish(
        self,
        server: &Server,
        rng: &mut impl Rng,
        written: CpoWritten,
    ) -> Result<Posted> {
        match written.post()? {
            PostOutcome::Posted => {}
            PostOutcome::AlreadyPosted => return Err(Error::Refused(ALREADY_POSTED.into())),
        }
        let reply = envelope::seal(rng, &server.keys.sign, &self.buyer_enc, &self.cpo)?;
        Ok(Posted {
            reply,
            entry: self.entry,
        })
    }
}

/// Step 2 of protocol 3 sent: the server waits for Pam's answer. `Clone`
/// for the same reason as [`PendingPost`].
#[derive(Clone, Debug)]
pub struct PendingBrowse {
    x1_hash: [u8; 32],
    seller: VerifyingKey,
    seller_enc: X25519Public,
    bond: Vec<u8>,
    bond_serial: Vec<u8>,
    agency: KeyId,
    from: Timestamp,
    until: Timestamp,
    started_at: Timestamp,
}

/// A session the server has just granted.
#[derive(Debug)]
pub struct Granted {
    /// M_3, to send to Pam.
    pub reply: Vec<u8>,
    /// The session id.
    pub session: [u8; 32],
}

/// An offer that passed every check, with BOUND_CPO signed: what is left
/// is its unit of work (the binding of `cpo` in `session`), then
/// [`Server::finish_bind`] with what the unit wrote.
/// [`Server::handle_bind_offer`] does all three; a driver that awaits the
/// store asynchronously does them itself, so that no thread waits for the
/// commit.
#[derive(Debug)]
#[must_use = "nothing is bound until the unit commits"]
pub struct PreparedBind {
    /// The CPO to bind.
    pub cpo: [u8; 32],
    /// The browse session the offer came in.
    pub session: [u8; 32],
    bound: Bound,
}

/// A binding the server has just made.
#[derive(Clone, Debug)]
pub struct Bound {
    /// M_2, to send to Pam.
    pub reply: Vec<u8>,
    /// BOUND_CPO as signed (evidence; also stored with the binding).
    pub signed: Vec<u8>,
    /// X_2.
    pub message: BoundCpo,
}

impl Server {
    /// Step 1 -> 2 of protocol 3: Pam asks to browse with the right to
    /// bind. Checks her bond (trusted agency, dates, CRL, seller role, allows
    /// this server), her signature with the bond key, the time range T
    /// (ends in the future, at most [`crate::MAX_SESSION_SECS`] long) and
    /// that R_0 is new; answers with a challenge.
    pub fn handle_browse_request(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m0: &[u8],
    ) -> Result<(Vec<u8>, PendingBrowse)> {
        let me = self.id();
        let mut bond = None;
        let opened = envelope::open_self_certified::<BrowseRequest>(m0, &self.keys.enc, |x0| {
            let trust = self.trust();
            let valid = validate_bond(
                &x0.bond,
                &trust.agencies,
                &trust.crls,
                now,
                &BondRequirement {
                    price: None,
                    role: Role::Seller,
                    server: Some(me),
                    arbiter: None,
                },
            )?;
            let key = *valid.holder();
            bond = Some(valid);
            Ok(key)
        })?;
        let bond = bond.ok_or(Error::ApiMisuse("bond checked before the signature"))?;
        let x0 = opened.message;
        if x0.until <= x0.from || x0.until <= now {
            return Err(Error::Refused(
                "the session's time range is empty or over".into(),
            ));
        }
        if x0.until.secs() - x0.from.secs() > crate::MAX_SESSION_SECS {
            return Err(Error::Refused(format!(
                "a session lasts at most {} seconds",
                crate::MAX_SESSION_SECS
            )));
        }
        // R_0 is remembered at least as long as the run may wait for Pam's
        // answer (a week when the session is opened by e-mail).
        let expires = now.plus_secs(
            (crate::SESSION_TIMEOUT_SECS + crate::MAX_CLOCK_SKEW_SECS)
                .max(self.session_timeout_secs),
        );
        if self
            .store
            .replay()
            .check_and_insert(BROWSE_NONCE_SCOPE, &x0.r0, expires, now)?
            == Freshness::Replayed
        {
            return Err(Error::Replayed);
        }
        let x1 = BrowseChallenge {
            x0_hash: digest(&x0),
            r1: random_bytes(rng),
        };
        let m1 = envelope::seal(rng, &self.keys.sign, bond.holder_x25519(), &x1)?;
        Ok((
            m1,
            PendingBrowse {
                x1_hash: digest(&x1),
                seller: *bond.holder(),
                seller_enc: *bond.holder_x25519(),
                bond_serial: bond.serial().0.clone(),
                agency: bond.agency(),
                bond: x0.bond,
                from: x0.from,
                until: x0.until,
                started_at: now,
            },
        ))
    }

    /// What a listing (protocol 4 or 6, step 1) needs of the CPO (the
    /// session's half is [`Self::live_session`]): on the board, of `mode`,
    /// neither bound nor taken down ([`refuse_closed`]), and active
    /// (StartDate <= now < EndDate).
    pub(crate) fn listable_for(
        &self,
        cpo: &[u8; 32],
        mode: Mode,
        now: Timestamp,
    ) -> Result<CpoState> {
        let entry = self
            .store
            .board()
            .state(cpo)?
            .ok_or_else(|| Error::Refused("no such CPO on this board".into()))?;
        if entry.mode != mode {
            return Err(Error::Refused(match mode {
                Mode::FirstCome => "this CPO takes bids (protocol 6), not bindings".into(),
                Mode::Bidding => "this CPO is bound first-come (protocol 4), not by bids".into(),
            }));
        }
        refuse_closed(&entry)?;
        if !entry.ccpo.is_active(now) {
            return Err(Error::Refused("this CPO is not active now".into()));
        }
        Ok(entry)
    }

    /// Remembers a listing sent to session `id` (bounded: expired listings
    /// are dropped when the table is full; still full means overload).
    pub(crate) fn issue_listing(
        &self,
        id: &[u8; 32],
        cpo: &[u8; 32],
        mode: Mode,
        x0_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<()> {
        let mut issued = self
            .issued
            .lock()
            .map_err(|_| Error::Storage("listing table lock poisoned".into()))?;
        if issued.len() >= crate::MAX_ISSUED_LISTINGS {
            issued.drop_expired(now, self.listing_ttl_secs);
        }
        if issued.len() >= crate::MAX_ISSUED_LISTINGS {
            return Err(Error::Overloaded);
        }
        issued.insert(
            x0_hash,
            IssuedListing {
                session: *id,
                cpo: *cpo,
                issued_at: now,
                mode,
            },
            crate::MAX_LISTINGS_PER_SESSION,
        );
        Ok(())
    }

    /// Uses up the listing an offer or bid answers: it must exist (else the
    /// message is stale or replayed), have been sent to session `id`, be of
    /// `mode`, and be younger than [`Self::listing_ttl_secs`].
    pub(crate) fn take_listing(
        &self,
        x0_hash: &[u8; 32],
        id: &[u8; 32],
        mode: Mode,
        now: Timestamp,
    ) -> Result<IssuedListing> {
        let listing = self
            .issued
            .lock()
            .map_err(|_| Error::Storage("listing table lock poisoned".into()))?
            .remove(x0_hash)
            .ok_or(Error::Replayed)?;
        if listing.session != *id {
            return Err(Error::NotAuthorised(
                "the listing was sent to another session".into(),
            ));
        }
        if listing.mode != mode {
            return Err(Error::PeerMisbehaved(
                "the answer is for another kind of listing",
            ));
        }
        if now.secs()
            > listing
                .issued_at
                .secs()
                .saturating_add(self.listing_ttl_secs)
        {
            return Err(Error::Replayed);
        }
        Ok(listing)
    }

    /// Session `id` (its K_p wiped) and its K_p channel: remembered if this
    /// server found it not ended before (see the `known` field), else read
    /// from the store. Unknown sessions are `NotAuthorised`.
    pub(crate) fn session(&self, id: &[u8; 32]) -> Result<Known> {
        if let Some(k) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(k.clone());
        }
        let mut s = self
            .store
            .sessions()
            .get(id)?
            .ok_or_else(|| Error::NotAuthorised("unknown browse session".into()))?;
        let channel = Arc::new(Channel::new(&BindingKey::from_bytes(s.k_p)));
        s.k_p.zeroize();
        if s.ended_at.is_none() {
            let mut m = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() >= crate::MAX_CACHED_CHANNELS {
                m.clear();
            }
            m.insert(s.id, (s.clone(), channel.clone()));
        }
        Ok((s, channel))
    }

    /// Whether the session message `m` names is one this server holds in
    /// memory (its K_p channel ready), so that a step on it reads no
    /// storage. A driver uses this to keep a message naming an unknown
    /// session, which anyone can send, off a thread that must not block.
    pub fn has_in_memory(&self, m: &[u8]) -> bool {
        match session::peek(m) {
            Ok((_, id)) => self
                .known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&id),
            Err(_) => false,
        }
    }

    /// Forgets the remembered sessions `ended` says have ended.
    pub(crate) fn forget(&self, ended: impl Fn(&Session) -> bool) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (s, _)| !ended(s));
    }

    /// A live session: it exists, was not ended, and `now` is within T.
    pub(crate) fn live_session(&self, id: &[u8; 32], now: Timestamp) -> Result<Known> {
        let k = self.session(id)?;
        check_live(&k.0, now)?;
        Ok(k)
    }

    /// The checks every answer to a listing goes through, in this order
    /// (binding offers, protocol 4, and bids, protocol 6): the message is of
    /// type `M` for a known session and authentic under its K_p; the session
    /// is live and the seller not revoked; it answers a listing of `mode`
    /// sent to this session, unused and not stale; the CPO is active.
    pub(crate) fn open_answer<M: agora_core::wire::Message>(
        &self,
        now: Timestamp,
        m: &[u8],
        mode: Mode,
        x0_hash: impl FnOnce(&M) -> [u8; 32],
    ) -> Result<Answer<M>> {
        let (tag, id) = session::peek(m)?;
        if tag != M::TAG {
            return Err(agora_core::DecodeError::WrongTag {
                expected: M::TAG,
                found: tag,
            }
            .into());
        }
        let (session, channel) = self.session(&id)?;
        let message = channel.open_authed::<M>(Direction::ToServer, m)?;
        check_live(&session, now)?;
        self.check_seller_not_revoked(&session, now)?;
        let listing = self.take_listing(&x0_hash(&message), &id, mode, now)?;
        let entry = self
            .store
            .board()
            .state(&listing.cpo)?
            .ok_or_else(|| Error::Refused("no such CPO on this board".into()))?;
        if !entry.ccpo.is_active(now) {
            return Err(Error::Refused("the CPO is not active now".into()));
        }
        Ok(Answer {
            message,
            session,
            channel,
            cpo: listing.cpo,
            entry,
        })
    }

    /// Fails closed unless a current CRL of the seller's agency is at hand
    /// and does not list her bond (paper section 4.2, attack 3). A revoked
    /// seller's sessions all end.
    pub(crate) fn check_seller_not_revoked(&self, s: &Session, now: Timestamp) -> Result<()> {
        let serial = agora_pki::Serial(s.bond_serial.clone());
        let trust = self.trust();
        let current: Vec<_> = trust
            .crls
            .iter()
            .filter(|c| c.authority_key_id.as_deref() == Some(s.agency.as_bytes().as_slice()))
            .filter(|c| c.is_current(now))
            .collect();
        if current.is_empty() {
            return Err(Error::Refused(
                "no current CRL of the seller's bonding agency".into(),
            ));
        }
        if current.iter().any(|c| c.is_revoked(&serial)) {
            self.store.sessions().end_all_of(&s.seller, now)?;
            self.forget(|k| k.seller == s.seller);
            return Err(Error::NotAuthorised("the seller's bond is revoked".into()));
        }
        Ok(())
    }

    /// Protocol 4, step 1: the listing of CPO `cpo` for the session `id`,
    /// under `Auth_{K_p}`, with a fresh R_0. Only open, unbound,
    /// first-come CPOs are listed for binding.
    pub fn listing(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        id: &[u8; 32],
        cpo: &[u8; 32],
    ) -> Result<Vec<u8>> {
        let (_, channel) = self.live_session(id, now)?;
        self.listing_on(rng, now, &channel, cpo, Mode::FirstCome)
    }

    /// A listing of `cpo` (protocol 4 or 6, step 1) on `channel`, whose
    /// session the caller found live; the CPO's checks are made here.
    pub(crate) fn listing_on(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        channel: &Channel,
        cpo: &[u8; 32],
        mode: Mode,
    ) -> Result<Vec<u8>> {
        self.issue_listing_on(rng, now, channel, cpo, mode)
            .map(|(sealed, _)| sealed)
    }

    /// [`Self::listing_on`], also returning hash(X_0), under which the
    /// listing waits for its answer.
    fn issue_listing_on(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        channel: &Channel,
        cpo: &[u8; 32],
        mode: Mode,
    ) -> Result<(Vec<u8>, [u8; 32])> {
        let ccpo = self.listable_for(cpo, mode, now)?.ccpo;
        let r0 = random_bytes(rng);
        match mode {
            Mode::FirstCome => {
                self.issue_sealed(rng, now, channel, cpo, mode, &BindListing { r0, ccpo })
            }
            Mode::Bidding => self.issue_sealed(
                rng,
                now,
                channel,
                cpo,
                mode,
                &crate::bidding::BidListing { r0, ccpo },
            ),
        }
    }

    /// Remembers listing `x0` of `cpo` as sent on `channel`, then seals it.
    fn issue_sealed<M: wire::Message>(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        channel: &Channel,
        cpo: &[u8; 32],
        mode: Mode,
        x0: &M,
    ) -> Result<(Vec<u8>, [u8; 32])> {
        let x0_hash = digest(x0);
        self.issue_listing(channel.id(), cpo, mode, x0_hash, now)?;
        Ok((channel.seal_authed(rng, Direction::ToSeller, x0), x0_hash))
    }

    /// Protocol 4, step 2 -> 3: Pam's offer under `Auth_{K_p}`. Checks, in
    /// order: the session exists and the offer's MAC is K_p's; the session is
    /// live and her bond not revoked; the offer answers a listing this
    /// session received and has not used, within [`Self::listing_ttl_secs`];
    /// the CPO is active (StartDate <= now < EndDate). Then the server signs
    /// BOUND_CPO and binds: the first valid binding wins, exactly once;
    /// every later one is refused "already bound". The binding (with the
    /// signed BOUND_CPO) is durable before the reply exists.
    pub fn handle_bind_offer(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m1: &[u8],
    ) -> Result<Bound> {
        let (unit, prepared) = self.prepare_bind_offer(rng, now, m1)?;
        let written = self.store.commit(unit, now).wait()?;
        self.finish_bind(prepared, written)
    }

    /// [`Self::handle_bind_offer`] up to its unit of work: every check of
    /// the offer, and BOUND_CPO signed. Reads only (and on a revoked seller,
    /// ends her sessions). The unit binds the CPO in the offer's session;
    /// commit it, then [`Self::finish_bind`] with what it wrote.
    pub fn prepare_bind_offer(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m1: &[u8],
    ) -> Result<(CpoUnit, PreparedBind)> {
        let Answer {
            message: x1,
            session: s,
            channel,
            cpo,
            entry,
        } = self.open_answer::<BindOffer>(now, m1, Mode::FirstCome, |x| x.x0_hash)?;
        // Refused before signing when the board already says so; the bind
        // transaction below decides all the same (a binding or take-down
        // may land after this read).
        refuse_closed(&entry)?;
        let x2 = BoundCpo {
            x1_hash: digest(&x1),
            seller_bond: s.bond.clone(),
            t: now,
            ccpo: entry.ccpo,
            offer: x1.offer,
        };
        let (reply, signed) = channel.seal_signed(rng, Direction::ToSeller, &self.keys.sign, &x2);
        let binding = Binding {
            seller: s.seller,
            bound_at: now,
            bound_cpo: signed.clone(),
        };
        let unit = CpoUnit {
            write: CpoWrite::Bind {
                cpo,
                binding,
                session: s.id,
            },
            evidence: Vec::new(),
        };
        Ok((
            unit,
            PreparedBind {
                cpo,
                session: s.id,
                bound: Bound {
                    reply,
                    signed,
                    message: x2,
                },
            },
        ))
    }

    /// The end of [`Self::handle_bind_offer`]: the binding unit of
    /// `prepared` committed with `written`, and this is what Pam hears.
    pub fn finish_bind(&self, prepared: PreparedBind, written: CpoWritten) -> Result<Bound> {
        match written.bind()? {
            BindOutcome::Bound => Ok(prepared.bound),
            BindOutcome::AlreadyBound => Err(Error::Refused(ALREADY_BOUND.into())),
            BindOutcome::NotPosted => Err(Error::Refused("no such CPO on this board".into())),
            BindOutcome::TakenDown => Err(Error::Refused("this CPO was taken down".into())),
            BindOutcome::SessionEnded => {
                self.forget(|k| k.id == prepared.session);
                Err(Error::NotAuthorised("the browse session has ended".into()))
            }
        }
    }

    /// Pam's [`ListingRequest`] (under `Auth_{K_p}`): the step-1 listing of
    /// protocol 4 or 6 for one CPO, with every check of [`Self::listing`].
    pub fn handle_listing_request(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m: &[u8],
    ) -> Result<Vec<u8>> {
        self.handle_listing_request_saved(rng, now, m)
            .map(|(reply, _)| reply)
    }

    /// Opens a request Pam sends under `Auth_{K_p}` naming her session
    /// inside the MAC (`named`): the session is known, the message authentic
    /// under its K_p, and names that same session.
    fn open_in_session<M: wire::Message>(
        &self,
        m: &[u8],
        named: impl FnOnce(&M) -> [u8; 32],
    ) -> Result<(M, Session, Arc<Channel>)> {
        let (_, id) = session::peek(m)?;
        let (s, channel) = self.session(&id)?;
        let x = channel.open_authed::<M>(Direction::ToServer, m)?;
        if named(&x) != id {
            return Err(Error::PeerMisbehaved("the request names another session"));
        }
        Ok((x, s, channel))
    }

    /// [`Self::open_in_session`], and the session is live.
    pub(crate) fn open_in_live_session<M: wire::Message>(
        &self,
        now: Timestamp,
        m: &[u8],
        named: impl FnOnce(&M) -> [u8; 32],
    ) -> Result<(M, Session, Arc<Channel>)> {
        let (x, s, channel) = self.open_in_session(m, named)?;
        check_live(&s, now)?;
        Ok((x, s, channel))
    }

    /// Pam's [`ListingsRequest`] (under `Auth_{K_p}`): the step-1 listings
    /// of a page of CPOs in one answer, each with every check of
    /// [`Self::listing`] and its own fresh R_0. A CPO that cannot be listed
    /// (unknown, bound, taken down, not active, of the other mode) gets its
    /// refusal in its place; a failure of the server itself (storage, a
    /// full listing table) fails the whole request.
    pub fn handle_listings_request(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m: &[u8],
    ) -> Result<Vec<u8>> {
        let (x, _, channel) =
            self.open_in_live_session::<ListingsRequest>(now, m, |x| x.session)?;
        let entries = x
            .cpos
            .iter()
            .map(
                |cpo| match self.listing_on(rng, now, &channel, cpo, x.mode) {
                    Ok(listing) => Ok(Ok(listing)),
                    Err(Error::Refused(why)) => {
                        Ok(Err(clip(why, crate::msg::MAX_LISTING_REFUSAL_LEN)))
                    }
                    Err(other) => Err(other),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let reply = Listings {
            request_hash: digest(&x),
            entries,
        };
        Ok(channel.seal_authed(rng, Direction::ToSeller, &reply))
    }

    /// Pam ends her session (under `Auth_{K_p}`): K_p binds nothing more.
    pub fn handle_end_session(&self, now: Timestamp, m: &[u8]) -> Result<EndOutcome> {
        let (x, _, _) = self.open_in_session::<EndSession>(m, |x| x.session)?;
        let id = x.session;
        let outcome = self.store.sessions().end(&id, now)?;
        self.forget(|k| k.id == id);
        Ok(outcome)
    }
}

impl PendingBrowse {
    /// Step 3 -> 4 of protocol 3: Pam answered; the server makes K_p,
    /// stores the session (durably, before replying) and sends
    /// `X_3 = U_3, hash(X_2), T, K_p`.
    pub fn handle_response(
        self,
        server: &Server,
        rng: &mut impl Rng,
        now: Timestamp,
        m2: &[u8],
    ) -> Result<Granted> {
        let x2 = crate::open_answer_to_challenge::<BrowseResponse>(
            m2,
            &server.keys.enc,
            &self.seller,
            self.started_at,
            server.session_timeout_secs,
            now,
            &self.x1_hash,
            |x| x.x1_hash,
        )?;
        let k_p = BindingKey::random(rng);
        let session = Session {
            id: k_p.session_id(),
            k_p: *k_p.expose(),
            seller: self.seller.key_id(),
            bond: self.bond,
            bond_serial: self.bond_serial,
            agency: self.agency,
            from: self.from,
            until: self.until,
            ended_at: None,
        };
        server.store.sessions().create(&session)?;
        let x3 = BrowseGrant {
            x2_hash: digest(&x2),
            from: self.from,
            until: self.until,
            k_p: *k_p.expose(),
        };
        let reply = envelope::seal(rng, &server.keys.sign, &self.seller_enc, &x3)?;
        Ok(Granted {
            reply,
            session: session.id,
        })
    }
}

/// What a revocation sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationReport {
    /// Open CPOs taken down because their buyer's bond is revoked.
    pub cpos_taken_down: usize,
    /// Sessions ended because their seller's bond is revoked.
    pub sessions_ended: usize,
}

impl Server {
    /// Whether a current CRL of `agency` lists `serial`.
    fn revoked(&self, agency: &[u8], serial: &agora_pki::Serial, now: Timestamp) -> bool {
        self.trust()
            .crls
            .iter()
            .filter(|c| c.authority_key_id.as_deref() == Some(agency))
            .filter(|c| c.is_current(now))
            .any(|c| c.is_revoked(serial))
    }

    /// Applies the CRLs now in [`Self::trust`] (paper 4.2, attack 3: "the
    /// CPO server checks CRLs each day ... If so, then the CPO is taken down
    /// immediately"): every open CPO whose buyer's bond is revoked is taken
    /// down, and every live session of a seller whose bond is revoked ends.
    /// The driver calls it after loading fresh CRLs.
    pub fn apply_revocations(&self, now: Timestamp) -> Result<RevocationReport> {
        let mut report = RevocationReport::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .board()
                .list_open(now, after, crate::ports::MAX_PAGE_LEN)?;
            let Some(last) = page.last() else { break };
            after = Some(last.ccpo.id);
            for e in &page {
                let cert = agora_pki::parse_certificate(&e.ccpo.bond)?;
                let agency = cert.authority_key_id.clone().unwrap_or_default();
                if self.revoked(&agency, &cert.serial, now)
                    && self.store.board().take_down(&e.ccpo.id, now)? == TakeDownOutcome::TakenDown
                {
                    report.cpos_taken_down += 1;
                }
            }
        }
        let mut after = None;
        loop {
            let page = self.store.sessions().live(now, after)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for s in &page {
                let serial = agora_pki::Serial(s.bond_serial.clone());
                if self.revoked(s.agency.as_bytes(), &serial, now) {
                    report.sessions_ended += self.store.sessions().end_all_of(&s.seller, now)?;
                    self.forget(|k| k.seller == s.seller);
                }
            }
        }
        Ok(report)
    }
}

impl PendingPost {
    /// The state as bytes (saved state kind 6), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let c = &self.checked;
        let mode = match c.mode {
            Mode::FirstCome => 1u64,
            Mode::Bidding => 5,
        };
        let mut e = crate::state::start(6, 10);
        e.bytes(&self.acceptance)
            .field(&c.ccpo)
            .uint(mode)
            .field(&c.t3)
            .field(&c.server)
            .field(&c.arbiter)
            .field(&self.x1_hash)
            .field(&self.buyer)
            .field(&self.buyer_enc)
            .field(&self.started_at);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 6, 10)?;
        let acceptance = d
            .bytes("saved acceptance", crate::msg::MAX_ACCEPTANCE_LEN)?
            .to_vec();
        let ccpo = d.field()?;
        let mode = match d.uint()? {
            1 => Mode::FirstCome,
            5 => Mode::Bidding,
            _ => return Err(agora_core::DecodeError::Invalid("saved mode")),
        };
        let s = PendingPost {
            acceptance,
            checked: CheckedAcceptance {
                ccpo,
                mode,
                t3: d.field()?,
                server: d.field()?,
                arbiter: d.field()?,
            },
            x1_hash: d.field()?,
            buyer: d.field()?,
            buyer_enc: d.field()?,
            started_at: d.field()?,
        };
        d.finish()?;
        Ok(s)
    }
}

impl PendingBrowse {
    /// The state as bytes (saved state kind 10), to resume later with
    /// [`Self::from_bytes`]. It holds no secret: K_p is made in step 4.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(10, 9);
        e.field(&self.x1_hash)
            .field(&self.seller)
            .field(&self.seller_enc)
            .bytes(&self.bond)
            .bytes(&self.bond_serial)
            .field(&self.agency)
            .field(&self.from)
            .field(&self.until)
            .field(&self.started_at);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`]. Loading re-checks what the
    /// state says of the bond against the bond itself: it parses, certifies
    /// the seller's key, and has the serial and agency saved with it (the
    /// bond's validity was checked in step 1; the session's liveness and
    /// revocation are checked again on every use of K_p).
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 10, 9)?;
        let s = PendingBrowse {
            x1_hash: d.field()?,
            seller: d.field()?,
            seller_enc: d.field()?,
            bond: d.bytes("saved BC_P", agora_pki::MAX_CERT_LEN)?.to_vec(),
            bond_serial: d.bytes("saved bond serial", 64)?.to_vec(),
            agency: d.field()?,
            from: d.field()?,
            until: d.field()?,
            started_at: d.field()?,
        };
        d.finish()?;
        let bad = agora_core::DecodeError::Invalid("saved bond differs from the saved state");
        let cert = agora_pki::parse_certificate(&s.bond).map_err(|_| bad.clone())?;
        if cert.public_key != s.seller
            || cert.serial.0 != s.bond_serial
            || cert.authority_key_id.as_deref() != Some(s.agency.as_bytes().as_slice())
        {
            return Err(bad);
        }
        if s.until <= s.from {
            return Err(agora_core::DecodeError::Invalid(
                "saved session time range is empty",
            ));
        }
        Ok(s)
    }
}

/// A listing the server sent (protocol 4 or 6, step 1) and keeps waiting
/// for its offer or bid, as a value: for a driver whose messages come by
/// e-mail, where the in-memory table of listings does not outlive one
/// program run. Saved state kind 11; put back with
/// [`Server::restore_listing`] before the answer is handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingListing {
    x0_hash: [u8; 32],
    session: [u8; 32],
    cpo: [u8; 32],
    issued_at: Timestamp,
    mode: Mode,
}

impl PendingListing {
    /// The session it was sent to.
    pub fn session(&self) -> &[u8; 32] {
        &self.session
    }

    /// The CPO listed.
    pub fn cpo(&self) -> &[u8; 32] {
        &self.cpo
    }

    /// First-come (protocol 4) or bidding (protocol 6).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The state as bytes (saved state kind 11), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mode = match self.mode {
            Mode::FirstCome => 4u64,
            Mode::Bidding => 6,
        };
        let mut e = crate::state::start(11, 5);
        e.field(&self.x0_hash)
            .field(&self.session)
            .field(&self.cpo)
            .field(&self.issued_at)
            .uint(mode);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 11, 5)?;
        let s = PendingListing {
            x0_hash: d.field()?,
            session: d.field()?,
            cpo: d.field()?,
            issued_at: d.field()?,
            mode: match d.uint()? {
                4 => Mode::FirstCome,
                6 => Mode::Bidding,
                _ => return Err(agora_core::DecodeError::Invalid("saved mode")),
            },
        };
        d.finish()?;
        Ok(s)
    }
}

impl Server {
    /// [`Self::handle_listing_request`], also returning the listing issued
    /// as a [`PendingListing`] for a driver that saves it between messages.
    pub fn handle_listing_request_saved(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m: &[u8],
    ) -> Result<(Vec<u8>, PendingListing)> {
        let (x, _, channel) = self.open_in_live_session::<ListingRequest>(now, m, |x| x.session)?;
        let (reply, x0_hash) = self.issue_listing_on(rng, now, &channel, &x.cpo, x.mode)?;
        Ok((
            reply,
            PendingListing {
                x0_hash,
                session: x.session,
                cpo: x.cpo,
                issued_at: now,
                mode: x.mode,
            },
        ))
    }

    /// Puts a saved listing back among those waiting for an answer (as it
    /// was issued: its age still counts from then). Nothing else changes;
    /// the answer's checks are all made when it is handled.
    pub fn restore_listing(&self, p: &PendingListing) -> Result<()> {
        let mut issued = self
            .issued
            .lock()
            .map_err(|_| Error::Storage("listing table lock poisoned".into()))?;
        if issued.len() >= crate::MAX_ISSUED_LISTINGS && issued.get(&p.x0_hash).is_none() {
            return Err(Error::Overloaded);
        }
        issued.insert(
            p.x0_hash,
            IssuedListing {
                session: p.session,
                cpo: p.cpo,
                issued_at: p.issued_at,
                mode: p.mode,
            },
            crate::MAX_LISTINGS_PER_SESSION,
        );
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)] // tests may panic
    use super::*;
    use agora_core::crypto::{SigningKey, X25519Secret};
    use agora_pki::{Agency, BondParams, Conditions, CrlParams, TrustAnchors};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: Timestamp = Timestamp(1_800_000_000);
    const DAY: u64 = 86_400;

    type MemServer = Server;

    fn keys(rng: &mut ChaCha20Rng) -> Keys {
        Keys {
            sign: SigningKey::generate(rng),
            enc: X25519Secret::generate(rng),
        }
    }

    /// A server on memory ports, Pam's keys and her seller bond.
    fn market(rng: &mut ChaCha20Rng) -> (MemServer, Keys, Vec<u8>) {
        let agency = Agency::create(
            "Test Bonding Agency",
            SigningKey::generate(rng),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(365 * DAY),
            rng,
        )
        .unwrap();
        let mut agencies = TrustAnchors::new();
        agencies.add_der(agency.certificate_der()).unwrap();
        let crl = agency
            .issue_crl(&CrlParams {
                this_update: NOW.minus_secs(60),
                next_update: NOW.plus_secs(7 * DAY),
                crl_number: 1,
                revoked: vec![],
            })
            .unwrap();
        let pam = keys(rng);
        let bond = agency
            .issue_bond(
                &BondParams {
                    holder: pam.sign.verifying_key(),
                    holder_x25519: pam.enc.public(),
                    amount: agora_core::Money::new(
                        100_000,
                        agora_core::Currency::new("EUR").unwrap(),
                    ),
                    roles: vec![Role::Seller],
                    conditions: Conditions::default(),
                    not_before: NOW.minus_secs(DAY),
                    not_after: NOW.plus_secs(300 * DAY),
                    crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
                },
                rng,
            )
            .unwrap()
            .der;
        let server = Server::new(
            keys(rng),
            BondTrust {
                agencies,
                crls: vec![crl],
            },
            vec![],
            Arc::new(crate::store::MemoryCpoStore::new()),
        );
        (server, pam, bond)
    }

    fn refused_everywhere<T>(
        bytes: &[u8],
        load: impl Fn(&[u8]) -> Result<T, agora_core::DecodeError>,
    ) {
        for i in 0..bytes.len() {
            assert!(load(&bytes[..i]).is_err(), "truncated at {i}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(load(&longer).is_err(), "a trailing byte");
    }

    #[test]
    fn pending_browse_saved_state_round_trips_and_is_strict() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let (server, pam, bond) = market(&mut rng);
        let peer = server.keys.peer();
        let (m0, p) =
            crate::seller::request_session(&pam, &mut rng, bond, NOW, NOW.plus_secs(DAY), &peer)
                .unwrap();
        let (m1, pending) = server.handle_browse_request(&mut rng, NOW, &m0).unwrap();
        let bytes = pending.to_bytes();
        let pending = PendingBrowse::from_bytes(&bytes).unwrap();
        assert_eq!(pending.to_bytes(), bytes, "round trip");
        refused_everywhere(&bytes, PendingBrowse::from_bytes);
        // A state whose saved serial, agency or seller no longer matches
        // its bond is refused; so is another kind of state.
        let mut other = PendingBrowse::from_bytes(&bytes).unwrap();
        other.bond_serial.push(1);
        assert!(PendingBrowse::from_bytes(&other.to_bytes()).is_err());
        let mut other = PendingBrowse::from_bytes(&bytes).unwrap();
        other.agency = KeyId([7; 32]);
        assert!(PendingBrowse::from_bytes(&other.to_bytes()).is_err());
        let mut other = PendingBrowse::from_bytes(&bytes).unwrap();
        other.seller = server.keys.sign.verifying_key();
        assert!(PendingBrowse::from_bytes(&other.to_bytes()).is_err());
        let mut other = PendingBrowse::from_bytes(&bytes).unwrap();
        other.bond.truncate(other.bond.len() - 1);
        assert!(PendingBrowse::from_bytes(&other.to_bytes()).is_err());
        let listing = PendingListing {
            x0_hash: [1; 32],
            session: [2; 32],
            cpo: [3; 32],
            issued_at: NOW,
            mode: Mode::FirstCome,
        };
        assert!(PendingBrowse::from_bytes(&listing.to_bytes()).is_err());
        // The reloaded state finishes the run.
        let (m2, p) = p.handle(&pam, &mut rng, &m1).unwrap();
        let granted = pending
            .handle_response(&server, &mut rng, NOW.plus_secs(10), &m2)
            .unwrap();
        let session = p.handle(&pam, &granted.reply).unwrap();
        assert_eq!(session.id(), granted.session);
    }

    #[test]
    fn pending_listing_saved_state_round_trips_and_is_restored() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (server, pam, bond) = market(&mut rng);
        let peer = server.keys.peer();
        let (m0, p) = crate::seller::request_session(
            &pam,
            &mut rng,
            bond.clone(),
            NOW,
            NOW.plus_secs(DAY),
            &peer,
        )
        .unwrap();
        let (m1, pending) = server.handle_browse_request(&mut rng, NOW, &m0).unwrap();
        let (m2, p) = p.handle(&pam, &mut rng, &m1).unwrap();
        let granted = pending
            .handle_response(&server, &mut rng, NOW, &m2)
            .unwrap();
        let session = p.handle(&pam, &granted.reply).unwrap();
        // No CPO on the board: the request is refused and nothing is saved.
        let req = session.request_listing(&mut rng, [9; 32], Mode::FirstCome);
        assert!(server
            .handle_listing_request_saved(&mut rng, NOW, &req)
            .is_err());
        // A listing saved, reloaded and put back into a fresh server's table.
        let l = PendingListing {
            x0_hash: [1; 32],
            session: session.id(),
            cpo: [3; 32],
            issued_at: NOW,
            mode: Mode::Bidding,
        };
        let bytes = l.to_bytes();
        assert_eq!(PendingListing::from_bytes(&bytes).unwrap(), l);
        refused_everywhere(&bytes, PendingListing::from_bytes);
        let mut bad_mode = bytes.clone();
        let last = bad_mode.len() - 1;
        bad_mode[last] = 5;
        assert!(PendingListing::from_bytes(&bad_mode).is_err(), "mode 5");
        let (other, _, _) = market(&mut rng);
        other.restore_listing(&l).unwrap();
        let taken = other
            .take_listing(&[1; 32], &session.id(), Mode::Bidding, NOW.plus_secs(60))
            .unwrap();
        assert_eq!(taken.cpo, [3; 32]);
        // Its age counts from when it was issued.
        other.restore_listing(&l).unwrap();
        let late = NOW.plus_secs(crate::LISTING_TTL_SECS + 1);
        assert_eq!(
            other
                .take_listing(&[1; 32], &session.id(), Mode::Bidding, late)
                .unwrap_err(),
            Error::Replayed
        );
    }
}
