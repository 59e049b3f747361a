//! After binding (paper section 3.11): the buyer fetches his binding from
//! the server with a request signed by his bond key (and, agora's addition
//! found by agora-sim, his posted CPO the same way, if M_3 of protocol 2 was
//! lost: a retry of the post is refused "already posted"), and anyone holding a
//! BOUND_CPO (the buyer, or an intermediary acting for him) checks that the
//! party delivering is the seller who bound it: "since that also includes
//! BC_P, she can prove her identity to Bob or an intermediary with a simple
//! challenge-response protocol".
//!
//! Delivery is agora's protocol 7: [`ProofChallenge`] (`[1,7,1]`) (a fresh
//! nonce bound to one BOUND_CPO) and [`Proof`] (`[1,7,2]`) (the seller's
//! signature over it with the key BC_P certifies).

use crate::buyer::PostReceipt;
use crate::msg::{digest, BoundCpo, PostedCpo};
use crate::ports::BoardEntry;
use crate::server::Server;
use crate::Keys;
use agora_core::crypto::{random_bytes, sha256, Rng, VerifyingKey, X25519Public};
use agora_core::ports::Freshness;
use agora_core::wire::{cose, envelope, tags, Decoder, Encoder, Message, Tag};
use agora_core::{DecodeError, Error, KeyId, Result, Timestamp};
use std::marker::PhantomData;

/// Replay-cache scope of binding requests.
pub const BINDING_REQUEST_SCOPE: &str = "cpo/binding-request";
/// Replay-cache scope of posted-CPO requests.
pub const POSTED_REQUEST_SCOPE: &str = "cpo/posted-request";
/// Largest stored posted CPO a reply carries.
const MAX_POSTED_LEN: usize = PostedCpo::MAX_LEN + cose::SIGN1_OVERHEAD;

/// How long a delivery challenge may be answered (seconds).
pub const CHALLENGE_TTL_SECS: u64 = 300;
/// Longest verifier name in a challenge, in bytes.
pub const MAX_VERIFIER_LEN: usize = 128;
/// Largest stored binding evidence a reply carries.
const MAX_EVIDENCE_LEN: usize = 64 * 1024;

/// What a buyer's signed request asks the server for: his binding
/// ([`ForBinding`]) or his posted CPO ([`ForPosted`]).
pub trait BuyerAsks {
    /// The request's tag.
    const TAG: Tag;
}

/// A [`BuyerRequest`] for the buyer's binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForBinding;

/// A [`BuyerRequest`] for the buyer's posted CPO (its M_3 was lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForPosted;

impl BuyerAsks for ForBinding {
    const TAG: Tag = tags::CPO_BINDING_REQUEST;
}

impl BuyerAsks for ForPosted {
    const TAG: Tag = tags::CPO_POSTED_REQUEST;
}

/// The buyer's request to the server, signed with his bond key: one layout,
/// a tag for each thing he asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuyerRequest<K> {
    /// The CPO id.
    pub cpo: [u8; 32],
    /// A fresh nonce.
    pub nonce: [u8; 32],
    /// When he asks.
    pub t: Timestamp,
    asks: PhantomData<K>,
}

/// The buyer's request for his binding.
pub type BindingRequest = BuyerRequest<ForBinding>;
/// The buyer's request for his posted CPO.
pub type PostedRequest = BuyerRequest<ForPosted>;

impl<K: BuyerAsks> Message for BuyerRequest<K> {
    const TAG: Tag = K::TAG;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 128;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.cpo).field(&self.nonce).field(&self.t);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BuyerRequest {
            cpo: d.field()?,
            nonce: d.field()?,
            t: d.field()?,
            asks: PhantomData,
        })
    }
}

/// Bob signs a request for `K` about CPO `cpo`.
fn request<K: BuyerAsks>(
    keys: &Keys,
    rng: &mut impl Rng,
    now: Timestamp,
    cpo: [u8; 32],
) -> (Vec<u8>, BuyerRequest<K>) {
    let req = BuyerRequest {
        cpo,
        nonce: random_bytes(rng),
        t: now,
        asks: PhantomData,
    };
    (cose::sign(&keys.sign, &req), req)
}

/// Opens a reply sealed to Bob (or, for [`crate::bidding::BidsRequest`], to
/// a bidder) by `server` and checks that it answers the request whose hash
/// it names.
pub(crate) fn open_reply<M: Message>(
    keys: &Keys,
    server: &VerifyingKey,
    request: &impl Message,
    reply: &[u8],
    request_hash: impl Fn(&M) -> [u8; 32],
) -> Result<M> {
    let opened = envelope::open::<M>(reply, &keys.enc, |kid| {
        (*kid == server.key_id()).then_some(*server)
    })?;
    if request_hash(&opened.message) != digest(request) {
        return Err(Error::PeerMisbehaved("the reply answers another request"));
    }
    Ok(opened.message)
}

/// The server's reply to a [`PostedRequest`], sealed to the buyer: the
/// posted CPO as the server signed and stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedReply {
    /// hash of the request it answers.
    pub request_hash: [u8; 32],
    /// The posted CPO (COSE_Sign1 of [`PostedCpo`]).
    pub posted: Vec<u8>,
}

impl Message for PostedReply {
    const TAG: Tag = tags::CPO_POSTED_REPLY;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_POSTED_LEN + 128;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.request_hash).bytes(&self.posted);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PostedReply {
            request_hash: d.field()?,
            posted: d.bytes("posted CPO", MAX_POSTED_LEN)?.to_vec(),
        })
    }
}

/// Bob signs a request for his posted CPO `cpo` (its M_3 was lost).
pub fn request_posted(
    keys: &Keys,
    rng: &mut impl Rng,
    now: Timestamp,
    cpo: [u8; 32],
) -> (Vec<u8>, PostedRequest) {
    request(keys, rng, now, cpo)
}

/// Bob opens the reply: sealed to him, from `server`, answering `req`, and
/// holding a posted CPO that `server` signed for the CPO he asked about. He
/// keeps it as the receipt step 4 would have given him.
pub fn open_posted_reply(
    keys: &Keys,
    server: &VerifyingKey,
    req: &PostedRequest,
    reply: &[u8],
) -> Result<PostReceipt> {
    let posted = open_reply::<PostedReply>(keys, server, req, reply, |r| r.request_hash)?.posted;
    let cpo = cose::verify::<PostedCpo>(&posted, server)?;
    if cpo.ccpo.id != req.cpo {
        return Err(Error::PeerMisbehaved("the reply holds another CPO"));
    }
    Ok(PostReceipt {
        signed: posted,
        cpo,
    })
}

/// The server's reply, sealed to the buyer: the stored binding evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingReply {
    /// hash of the request it answers.
    pub request_hash: [u8; 32],
    /// BOUND_CPO as the server signed it (first-come), or the winner's
    /// notice (bidding).
    pub evidence: Vec<u8>,
}

impl Message for BindingReply {
    const TAG: Tag = tags::CPO_BINDING_REPLY;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_EVIDENCE_LEN + 128;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.request_hash).bytes(&self.evidence);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BindingReply {
            request_hash: d.field()?,
            evidence: d.bytes("binding evidence", MAX_EVIDENCE_LEN)?.to_vec(),
        })
    }
}

/// Bob signs a request for the binding of `cpo`.
pub fn request_binding(
    keys: &Keys,
    rng: &mut impl Rng,
    now: Timestamp,
    cpo: [u8; 32],
) -> (Vec<u8>, BindingRequest) {
    request(keys, rng, now, cpo)
}

/// Bob opens the reply: sealed to him, signed by `server`, answering `req`.
pub fn open_binding_reply(
    keys: &Keys,
    server: &VerifyingKey,
    req: &BindingRequest,
    reply: &[u8],
) -> Result<Vec<u8>> {
    Ok(open_reply::<BindingReply>(keys, server, req, reply, |r| r.request_hash)?.evidence)
}

impl Server {
    /// Answers a buyer's signed request for his binding: the signature must
    /// be by the key of the bond in the CPO (only the buyer may ask), the
    /// request fresh (within the clock skew) and not seen before. The reply
    /// is sealed to the buyer's encryption key from his bond.
    pub fn binding_for_buyer(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        request: &[u8],
    ) -> Result<Vec<u8>> {
        let (req, _, enc) =
            self.buyer_request::<ForBinding>(now, request, BINDING_REQUEST_SCOPE)?;
        let binding = self
            .store
            .board()
            .binding(&req.cpo)?
            .ok_or_else(|| Error::Refused("this CPO is not bound yet".into()))?;
        envelope::seal(
            rng,
            &self.keys.sign,
            &enc,
            &BindingReply {
                request_hash: digest(&req),
                evidence: binding.bound_cpo,
            },
        )
    }

    /// Answers a buyer's signed request for his posted CPO, under the same
    /// rules as [`Server::binding_for_buyer`]: the posted CPO as stored,
    /// sealed to him. Nothing changes on the server.
    pub fn posted_for_buyer(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        request: &[u8],
    ) -> Result<Vec<u8>> {
        let (req, entry, enc) =
            self.buyer_request::<ForPosted>(now, request, POSTED_REQUEST_SCOPE)?;
        envelope::seal(
            rng,
            &self.keys.sign,
            &enc,
            &PostedReply {
                request_hash: digest(&req),
                posted: entry.posted,
            },
        )
    }

    /// The checks of a buyer's signed request: signed by the key of the
    /// bond in the CPO (only the buyer may ask), fresh (within the clock
    /// skew) and not seen before in `scope`. Returns the request, the board
    /// entry and the buyer's encryption key from his bond.
    fn buyer_request<K: BuyerAsks>(
        &self,
        now: Timestamp,
        request: &[u8],
        scope: &str,
    ) -> Result<(BuyerRequest<K>, BoardEntry, X25519Public)> {
        let mut found: Option<(BoardEntry, Option<X25519Public>)> = None;
        let (req, _) = cose::verify_self_certified::<BuyerRequest<K>>(request, |x| {
            let entry = self
                .store
                .board()
                .get(&x.cpo)?
                .ok_or_else(|| Error::Refused("no such CPO on this board".into()))?;
            let cert = agora_pki::parse_certificate(&entry.ccpo.bond)?;
            let key = cert.public_key;
            found = Some((entry, cert.bond.as_ref().map(|b| b.holder_x25519)));
            Ok(key)
        })?;
        let (entry, enc) = found.ok_or(Error::ApiMisuse("the signer was not looked up"))?;
        let enc = enc.ok_or(Error::ApiMisuse("a posted CPO carries a bond"))?;
        if req.t.distance_secs(now) > crate::MAX_CLOCK_SKEW_SECS {
            return Err(Error::Replayed);
        }
        let expires = now.plus_secs(2 * crate::MAX_CLOCK_SKEW_SECS + 1);
        if self
            .replay_cache()
            .check_and_insert(scope, &req.nonce, expires, now)?
            == Freshness::Replayed
        {
            return Err(Error::Replayed);
        }
        Ok((req, entry, enc))
    }
}

/// Delivery, step 1: a challenge for the seller of one BOUND_CPO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofChallenge {
    /// SHA-256 of the BOUND_CPO (as signed) it is about.
    pub bound_hash: [u8; 32],
    /// A fresh nonce.
    pub nonce: [u8; 32],
    /// Who asks (the buyer, or an intermediary's name).
    pub verifier: String,
    /// When.
    pub t: Timestamp,
}

impl Message for ProofChallenge {
    const TAG: Tag = tags::CPO_PROOF_CHALLENGE;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_VERIFIER_LEN + 128;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.bound_hash)
            .field(&self.nonce)
            .text(&self.verifier)
            .field(&self.t);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ProofChallenge {
            bound_hash: d.field()?,
            nonce: d.field()?,
            verifier: d.text("verifier", MAX_VERIFIER_LEN)?.to_owned(),
            t: d.field()?,
        })
    }
}

/// Delivery, step 2: the seller's answer, signed with BC_P's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// hash of the challenge it answers.
    pub challenge_hash: [u8; 32],
}

impl Message for Proof {
    const TAG: Tag = tags::CPO_PROOF;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 64;
    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.challenge_hash);
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Proof {
            challenge_hash: d.field()?,
        })
    }
}

/// The verifier makes a challenge about `bound_cpo` (the signed bytes).
pub fn challenge(
    rng: &mut impl Rng,
    now: Timestamp,
    bound_cpo: &[u8],
    verifier: &str,
) -> Result<ProofChallenge> {
    if verifier.len() > MAX_VERIFIER_LEN {
        return Err(Error::ApiMisuse("verifier name over its limit"));
    }
    Ok(ProofChallenge {
        bound_hash: sha256(bound_cpo),
        nonce: random_bytes(rng),
        verifier: verifier.to_owned(),
        t: now,
    })
}

/// The seller answers a challenge about her `bound_cpo`; she refuses one
/// about another binding (she would otherwise sign for anything).
pub fn prove(keys: &Keys, challenge: &ProofChallenge, bound_cpo: &[u8]) -> Result<Vec<u8>> {
    if sha256(bound_cpo) != challenge.bound_hash {
        return Err(Error::PeerMisbehaved(
            "the challenge is about another binding",
        ));
    }
    Ok(cose::sign(
        &keys.sign,
        &Proof {
            challenge_hash: digest(challenge),
        },
    ))
}

/// The verifier checks: BOUND_CPO is signed by `server`; the challenge is
/// about it and not older than [`CHALLENGE_TTL_SECS`]; the proof is signed
/// by the key of the BC_P inside it and answers this challenge. Returns the
/// seller's key id.
pub fn check_proof(
    proof: &[u8],
    challenge: &ProofChallenge,
    bound_cpo: &[u8],
    server: &VerifyingKey,
    now: Timestamp,
) -> Result<KeyId> {
    let x2: BoundCpo = cose::verify(bound_cpo, server)?;
    if sha256(bound_cpo) != challenge.bound_hash {
        return Err(Error::PeerMisbehaved(
            "the challenge is about another binding",
        ));
    }
    if now.secs() > challenge.t.secs() + CHALLENGE_TTL_SECS
        || challenge.t.secs() > now.secs() + crate::MAX_CLOCK_SKEW_SECS
    {
        return Err(Error::Replayed);
    }
    let seller = agora_pki::parse_certificate(&x2.seller_bond)?.public_key;
    let p: Proof = cose::verify(proof, &seller)?;
    if p.challenge_hash != digest(challenge) {
        return Err(Error::PeerMisbehaved("the proof answers another challenge"));
    }
    Ok(seller.key_id())
}
