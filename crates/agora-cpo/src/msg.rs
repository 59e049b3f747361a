//! The messages X_i of the CPO protocols, with the paper's fields (section
//! 3). Each is an agora wire [`Message`] whose tag is the paper's U_i =
//! [1, protocol, step]; on the wire it travels as `PKE(X, Sign(X))`
//! ([`agora_core::wire::envelope`]). `hash(X)` is SHA-256 of X's canonical
//! encoding ([`digest`]).

use crate::ccpo::{Ccpo, MAX_CCPO_LEN};
use agora_core::crypto::sha256;
use agora_core::wire::{self, tags, Decoder, Encoder, Message, Tag};
use agora_core::{DecodeError, KeyId, Timestamp};
use std::fmt::Debug;
use std::marker::PhantomData;

/// Longest "Additional Terms" text a buyer sends the arbiter, in bytes.
pub const MAX_ADDITIONAL_TERMS_LEN: usize = 1024;
/// Largest ARBITER_ACCEPTANCE (a `COSE_Sign1` of [`ArbiterAcceptance`]).
pub const MAX_ACCEPTANCE_LEN: usize = MAX_CCPO_LEN + 512 + wire::cose::SIGN1_OVERHEAD;

/// `hash(X)`: SHA-256 of the canonical encoding of `m`.
pub fn digest<M: Message>(m: &M) -> [u8; 32] {
    sha256(&wire::encode(m))
}

/// Which CPO market a protocol run belongs to: first-come binding
/// (protocol 1 approves, protocol 4 binds) or bidding (protocol 5 approves,
/// protocol 6 takes bids). Paper section 3.7: "The protocol ID goes from
/// being 1 to being 5."
pub trait Variant: Copy + Clone + Debug + Default + PartialEq + Eq + Send + Sync + 'static {
    /// The protocol number of the arbiter's approval.
    const APPROVAL_PROTOCOL: u8;
    /// The market this variant gives.
    const MODE: Mode;
}

/// Arbiter approval for a first-come CPO (protocol 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstCome;
/// Arbiter approval for a CPO that takes bids (protocol 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bidding;

impl Variant for FirstCome {
    const APPROVAL_PROTOCOL: u8 = 1;
    const MODE: Mode = Mode::FirstCome;
}
impl Variant for Bidding {
    const APPROVAL_PROTOCOL: u8 = 5;
    const MODE: Mode = Mode::Bidding;
}

/// How a posted CPO is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The first valid binding wins (protocol 4).
    FirstCome,
    /// Sellers bid until a deadline; the arbiter picks the winner (protocol 6).
    Bidding,
}

impl Mode {
    /// Stable name for storage and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::FirstCome => "first-come",
            Mode::Bidding => "bidding",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn from_name(s: &str) -> Option<Mode> {
        match s {
            "first-come" => Some(Mode::FirstCome),
            "bidding" => Some(Mode::Bidding),
            _ => None,
        }
    }
}

const fn cpo(protocol: u8, step: u8) -> Tag {
    Tag::new(tags::SYSTEM_CPO, protocol, step)
}

/// Protocol 1 (5), step 1: `X_0 = U_0, CCPO, ID_S, R_0, Additional Terms`,
/// Bob to Alice, signed by Bob's bond key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArbiterRequest<V: Variant> {
    /// The candidate CPO.
    pub ccpo: Ccpo,
    /// ID_S: the server Bob will post to.
    pub server: KeyId,
    /// R_0.
    pub r0: [u8; 32],
    /// Anything else Bob agrees to, e.g. `arbiter-fee: 2.50 EUR`.
    pub additional_terms: String,
    /// The variant (protocol 1 or 5).
    pub variant: PhantomData<V>,
}

impl<V: Variant> Message for ArbiterRequest<V> {
    const TAG: Tag = cpo(V::APPROVAL_PROTOCOL, 1);
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_CCPO_LEN + MAX_ADDITIONAL_TERMS_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.ccpo)
            .field(&self.server)
            .field(&self.r0)
            .text(&self.additional_terms);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ArbiterRequest {
            ccpo: d.field()?,
            server: d.field()?,
            r0: d.field()?,
            additional_terms: d
                .text("additional terms", MAX_ADDITIONAL_TERMS_LEN)?
                .to_owned(),
            variant: PhantomData,
        })
    }
}

/// Protocol 1 (5), step 2: `X_1 = U_1, hash(X_0), R_1`, Alice to Bob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArbiterChallenge<V: Variant> {
    /// hash(X_0).
    pub x0_hash: [u8; 32],
    /// R_1.
    pub r1: [u8; 32],
    /// The variant.
    pub variant: PhantomData<V>,
}

impl<V: Variant> Message for ArbiterChallenge<V> {
    const TAG: Tag = cpo(V::APPROVAL_PROTOCOL, 2);
    const FIELDS: usize = 2;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x0_hash).field(&self.r1);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ArbiterChallenge {
            x0_hash: d.field()?,
            r1: d.field()?,
            variant: PhantomData,
        })
    }
}

/// Protocol 1 (5), step 3: `X_2 = U_2, hash(X_1)`, Bob to Alice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArbiterResponse<V: Variant> {
    /// hash(X_1).
    pub x1_hash: [u8; 32],
    /// The variant.
    pub variant: PhantomData<V>,
}

impl<V: Variant> Message for ArbiterResponse<V> {
    const TAG: Tag = cpo(V::APPROVAL_PROTOCOL, 3);
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x1_hash);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ArbiterResponse {
            x1_hash: d.field()?,
            variant: PhantomData,
        })
    }
}

/// Protocol 1 (5), step 4: `X_3 = U_3, hash(X_2), T_3, CCPO, ID_S`, Alice to
/// Bob. Signed, it is the ARBITER_ACCEPTANCE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArbiterAcceptance<V: Variant> {
    /// hash(X_2).
    pub x2_hash: [u8; 32],
    /// T_3: when Alice accepted.
    pub t3: Timestamp,
    /// The CCPO she accepted.
    pub ccpo: Ccpo,
    /// ID_S: the one server it may be posted to.
    pub server: KeyId,
    /// The variant.
    pub variant: PhantomData<V>,
}

impl<V: Variant> Message for ArbiterAcceptance<V> {
    const TAG: Tag = cpo(V::APPROVAL_PROTOCOL, 4);
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_CCPO_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x2_hash)
            .field(&self.t3)
            .field(&self.ccpo)
            .field(&self.server);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ArbiterAcceptance {
            x2_hash: d.field()?,
            t3: d.field()?,
            ccpo: d.field()?,
            server: d.field()?,
            variant: PhantomData,
        })
    }
}

/// Protocol 2, step 1: `X_0 = U_0, R_0, ARBITER_ACCEPTANCE`, Bob to the
/// server. The acceptance is Alice's `COSE_Sign1` of [`ArbiterAcceptance`]
/// (protocol 1 or 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostRequest {
    /// R_0.
    pub r0: [u8; 32],
    /// The ARBITER_ACCEPTANCE, as Alice signed it.
    pub acceptance: Vec<u8>,
}

impl Message for PostRequest {
    const TAG: Tag = tags::CPO_POST_REQUEST;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_ACCEPTANCE_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.r0).bytes(&self.acceptance);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PostRequest {
            r0: d.field()?,
            acceptance: d.bytes("arbiter acceptance", MAX_ACCEPTANCE_LEN)?.to_vec(),
        })
    }
}

/// Protocol 2, step 2: `X_1 = U_1, hash(X_0), R_1`, server to Bob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostChallenge {
    /// hash(X_0).
    pub x0_hash: [u8; 32],
    /// R_1.
    pub r1: [u8; 32],
}

impl Message for PostChallenge {
    const TAG: Tag = tags::CPO_POST_CHALLENGE;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x0_hash).field(&self.r1);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PostChallenge {
            x0_hash: d.field()?,
            r1: d.field()?,
        })
    }
}

/// Protocol 2, step 3: `X_2 = U_2, hash(X_1)`, Bob to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostResponse {
    /// hash(X_1).
    pub x1_hash: [u8; 32],
}

impl Message for PostResponse {
    const TAG: Tag = tags::CPO_POST_RESPONSE;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x1_hash);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PostResponse {
            x1_hash: d.field()?,
        })
    }
}

/// Protocol 2, step 4: `CPO = U_3, hash(X_2), CCPO`, signed by the server:
/// Bob's receipt that his CPO is posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedCpo {
    /// hash(X_2).
    pub x2_hash: [u8; 32],
    /// The CCPO, now a CPO.
    pub ccpo: Ccpo,
}

impl Message for PostedCpo {
    const TAG: Tag = tags::CPO_POSTED;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_CCPO_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x2_hash).field(&self.ccpo);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PostedCpo {
            x2_hash: d.field()?,
            ccpo: d.field()?,
        })
    }
}

/// Longest "Offer Details" text, in bytes.
pub const MAX_OFFER_LEN: usize = 2048;

/// Protocol 3, step 1: `X_0 = U_0, R_0, T, BC_P`, Pam to the server,
/// signed with her bond key (self-certified: BC_P is in the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowseRequest {
    /// R_0.
    pub r0: [u8; 32],
    /// T: the time range she asks to browse in (start).
    pub from: Timestamp,
    /// T (end).
    pub until: Timestamp,
    /// BC_P, DER.
    pub bond: Vec<u8>,
}

impl Message for BrowseRequest {
    const TAG: Tag = tags::CPO_BROWSE_REQUEST;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = agora_pki::MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.r0)
            .field(&self.from)
            .field(&self.until)
            .bytes(&self.bond);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BrowseRequest {
            r0: d.field()?,
            from: d.field()?,
            until: d.field()?,
            bond: d.bytes("BC_P", agora_pki::MAX_CERT_LEN)?.to_vec(),
        })
    }
}

/// Protocol 3, step 2: `X_1 = U_1, hash(X_0), R_1`, server to Pam.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowseChallenge {
    /// hash(X_0).
    pub x0_hash: [u8; 32],
    /// R_1.
    pub r1: [u8; 32],
}

impl Message for BrowseChallenge {
    const TAG: Tag = tags::CPO_BROWSE_CHALLENGE;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x0_hash).field(&self.r1);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BrowseChallenge {
            x0_hash: d.field()?,
            r1: d.field()?,
        })
    }
}

/// Protocol 3, step 3: `X_2 = U_2, hash(X_1)`, Pam to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowseResponse {
    /// hash(X_1).
    pub x1_hash: [u8; 32],
}

impl Message for BrowseResponse {
    const TAG: Tag = tags::CPO_BROWSE_RESPONSE;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x1_hash);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BrowseResponse {
            x1_hash: d.field()?,
        })
    }
}

/// Protocol 3, step 4: `X_3 = U_3, hash(X_2), T, K_p`, server to Pam. It
/// carries the secret K_p: it only ever travels sealed to Pam, and compares
/// in constant time over K_p.
#[derive(Clone)]
pub struct BrowseGrant {
    /// hash(X_2).
    pub x2_hash: [u8; 32],
    /// T (start), as Pam asked.
    pub from: Timestamp,
    /// T (end).
    pub until: Timestamp,
    /// K_p.
    pub k_p: [u8; 32],
}

impl Debug for BrowseGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowseGrant")
            .field("from", &self.from)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

impl Drop for BrowseGrant {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.k_p);
    }
}

impl subtle::ConstantTimeEq for BrowseGrant {
    /// K_p in constant time; then the public fields.
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let public =
            self.x2_hash == other.x2_hash && self.from == other.from && self.until == other.until;
        self.k_p[..].ct_eq(&other.k_p[..]) & subtle::Choice::from(u8::from(public))
    }
}

impl PartialEq for BrowseGrant {
    /// [`subtle::ConstantTimeEq::ct_eq`].
    fn eq(&self, other: &Self) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self, other))
    }
}

impl Eq for BrowseGrant {}

impl Message for BrowseGrant {
    const TAG: Tag = tags::CPO_BROWSE_GRANT;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 160;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x2_hash)
            .field(&self.from)
            .field(&self.until)
            .field(&self.k_p);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BrowseGrant {
            x2_hash: d.field()?,
            from: d.field()?,
            until: d.field()?,
            k_p: d.field()?,
        })
    }
}

/// Protocol 3, step 5 (agora's; paper section 4.3, attack 4 suggests it):
/// `U, session id`, under `Auth_{K_p}`: Pam ends her session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndSession {
    /// The session she ends.
    pub session: [u8; 32],
}

impl Message for EndSession {
    const TAG: Tag = tags::CPO_BROWSE_END;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.session);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(EndSession {
            session: d.field()?,
        })
    }
}

/// agora's pull for protocols 4 and 6 over the network: `session id, CPO id,
/// mode`, Pam to the server under `Auth_{K_p}`, asking for the step-1
/// listing of one CPO. The answer is a [`BindListing`] or a
/// `BidListing`, each with a fresh R_0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingRequest {
    /// Her session (repeated inside the MAC so that it cannot be swapped).
    pub session: [u8; 32],
    /// The CPO she wants to bind or bid on.
    pub cpo: [u8; 32],
    /// First-come (protocol 4) or bidding (protocol 6).
    pub mode: Mode,
}

impl Message for ListingRequest {
    const TAG: Tag = tags::CPO_LISTING_REQUEST;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.session)
            .field(&self.cpo)
            .text(self.mode.as_str());
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let session = d.field()?;
        let cpo = d.field()?;
        let mode =
            Mode::from_name(d.text("mode", 16)?).ok_or(DecodeError::Invalid("listing mode"))?;
        Ok(ListingRequest { session, cpo, mode })
    }
}

/// Most CPOs one [`ListingsRequest`] asks for: a page of listings (each at
/// most [`BindListing::MAX_LEN`] and its channel framing) stays within one
/// message.
pub const MAX_LISTINGS_PER_REQUEST: usize = 32;

/// agora's paged pull for protocols 4 and 6: `session id, CPO ids, mode`,
/// Pam to the server under `Auth_{K_p}`, asking for the step-1 listings of
/// up to [`MAX_LISTINGS_PER_REQUEST`] CPOs (a page of the board she reads)
/// in one round trip. The answer is a [`Listings`]. Each CPO at most once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingsRequest {
    /// Her session (repeated inside the MAC so that it cannot be swapped).
    pub session: [u8; 32],
    /// The CPOs, 1 to [`MAX_LISTINGS_PER_REQUEST`], none twice.
    pub cpos: Vec<[u8; 32]>,
    /// First-come (protocol 4) or bidding (protocol 6).
    pub mode: Mode,
}

impl Message for ListingsRequest {
    const TAG: Tag = tags::CPO_LISTINGS_REQUEST;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 64 + MAX_LISTINGS_PER_REQUEST * 34;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.session);
        e.array(self.cpos.len());
        for c in &self.cpos {
            e.field(c);
        }
        e.text(self.mode.as_str());
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let session = d.field()?;
        let n = d.array_max("listed CPOs", MAX_LISTINGS_PER_REQUEST)?;
        if n == 0 {
            return Err(DecodeError::Invalid("a listings request names no CPO"));
        }
        let mut cpos: Vec<[u8; 32]> = Vec::with_capacity(n);
        for _ in 0..n {
            let c = d.field()?;
            if cpos.contains(&c) {
                return Err(DecodeError::Invalid("a listings request names a CPO twice"));
            }
            cpos.push(c);
        }
        let mode =
            Mode::from_name(d.text("mode", 16)?).ok_or(DecodeError::Invalid("listing mode"))?;
        Ok(ListingsRequest {
            session,
            cpos,
            mode,
        })
    }
}

/// Longest refusal text in a [`Listings`] entry.
pub const MAX_LISTING_REFUSAL_LEN: usize = 256;

/// The server's answer to a [`ListingsRequest`], under `Auth_{K_p}`:
/// `hash(request)`, then per CPO asked for, in the order asked, its sealed
/// step-1 listing (exactly as a [`ListingRequest`] gets it: a
/// [`BindListing`] or a `BidListing` with its own fresh R_0) or the
/// server's refusal of it ("already bound", "not active now", ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listings {
    /// hash of the request it answers.
    pub request_hash: [u8; 32],
    /// Per CPO asked for: the sealed listing, or why there is none.
    pub entries: Vec<std::result::Result<Vec<u8>, String>>,
}

/// Longest sealed listing inside a [`Listings`]: a listing of the largest
/// CCPO with the K_p channel's framing (what the channel itself accepts).
pub const MAX_SEALED_LISTING_LEN: usize = BindListing::MAX_LEN + 256;

impl Message for Listings {
    const TAG: Tag = tags::CPO_LISTINGS;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = 64 + MAX_LISTINGS_PER_REQUEST * (MAX_SEALED_LISTING_LEN + 16);

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.request_hash);
        e.array(self.entries.len());
        for entry in &self.entries {
            match entry {
                Ok(listing) => e.array(2).uint(1).bytes(listing),
                Err(why) => e.array(2).uint(0).text(why),
            };
        }
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let request_hash = d.field()?;
        let n = d.array_max("listings", MAX_LISTINGS_PER_REQUEST)?;
        let entries = (0..n)
            .map(|_| match d.array(2).and_then(|()| d.uint())? {
                1 => Ok(Ok(d
                    .bytes("sealed listing", MAX_SEALED_LISTING_LEN)?
                    .to_vec())),
                0 => Ok(Err(d
                    .text("listing refusal", MAX_LISTING_REFUSAL_LEN)?
                    .to_owned())),
                _ => Err(DecodeError::Invalid("listing entry kind")),
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Listings {
            request_hash,
            entries,
        })
    }
}

// A full page fits in one message.
const _: () = assert!(Listings::MAX_LEN <= agora_core::wire::MAX_MESSAGE_LEN);

/// Protocol 4, step 1: `X_0 = U_0, R_0, CPO description`, server to Pam
/// under `Auth_{K_p}`; one per CPO she browses, each with a fresh R_0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindListing {
    /// R_0.
    pub r0: [u8; 32],
    /// The CPO.
    pub ccpo: Ccpo,
}

impl Message for BindListing {
    const TAG: Tag = tags::CPO_BIND_LISTING;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_CCPO_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.r0).field(&self.ccpo);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BindListing {
            r0: d.field()?,
            ccpo: d.field()?,
        })
    }
}

/// Protocol 4, step 2: `X_1 = U_1, hash(X_0), R_1, Offer Details`, Pam to
/// the server under `Auth_{K_p}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindOffer {
    /// hash(X_0): the listing she binds.
    pub x0_hash: [u8; 32],
    /// R_1.
    pub r1: [u8; 32],
    /// How Pam and Bob are to finish the deal (section 3.11).
    pub offer: String,
}

impl Message for BindOffer {
    const TAG: Tag = tags::CPO_BIND_OFFER;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_OFFER_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x0_hash).field(&self.r1).text(&self.offer);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BindOffer {
            x0_hash: d.field()?,
            r1: d.field()?,
            offer: d.text("offer details", MAX_OFFER_LEN)?.to_owned(),
        })
    }
}

/// Protocol 4, step 3: `X_2 = U_2, hash(X_1), BC_P, T, CPO, Offer Details`,
/// signed by the server: BOUND_CPO, the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundCpo {
    /// hash(X_1).
    pub x1_hash: [u8; 32],
    /// BC_P, DER: who bound it.
    pub seller_bond: Vec<u8>,
    /// T: when.
    pub t: Timestamp,
    /// The CPO.
    pub ccpo: Ccpo,
    /// Pam's offer details.
    pub offer: String,
}

impl Message for BoundCpo {
    const TAG: Tag = tags::CPO_BOUND_CPO;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_CCPO_LEN + agora_pki::MAX_CERT_LEN + MAX_OFFER_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.x1_hash)
            .bytes(&self.seller_bond)
            .field(&self.t)
            .field(&self.ccpo)
            .text(&self.offer);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BoundCpo {
            x1_hash: d.field()?,
            seller_bond: d.bytes("BC_P", agora_pki::MAX_CERT_LEN)?.to_vec(),
            t: d.field()?,
            ccpo: d.field()?,
            offer: d.text("offer details", MAX_OFFER_LEN)?.to_owned(),
        })
    }
}
