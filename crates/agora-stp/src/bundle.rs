//! Verifiable causality (paper section 2): a self-contained proof bundle of
//! one subtransaction, and its offline check by an arbiter.
//!
//! The paper: verifiable causality "allows the order in which messages
//! were sent or received during a transaction to be proven", to the
//! receiver and "by independent arbiters, in order to settle disputes";
//! a *causal assertion* "may be verified by having the causal information
//! (e.g. logical clock) authenticated by its originator and by having the
//! message sender authenticate the association of this information with
//! the message". STP's context is that information:
//! every [`Data`] and [`End`] carries `prev`, the context of everything
//! before it (`context_n = SHA-256(context_{n-1} ‖ message_n)` over signed
//! bytes, context 0 over the signed opening), and its sender signs `prev`
//! together with the message. So message `j` names, under its sender's
//! signature, a hash chain that runs through the signed bytes of every
//! message `i < j`: whoever signed `j` held `i` first.
//!
//! A [`ProofBundle`] carries what an arbiter needs to check that offline,
//! with no party and no CA online:
//!
//! | field | what | vouched for by |
//! |---|---|---|
//! | `messages` | the signed opening (Begin or Join), then every signed Data and End, in order | each sender's signature; the initiator's certificate inside the opening |
//! | `invitee_cert` | the certificate of the other party of the pair (it travelled in its Vote) | the agency the arbiter trusts |
//! | `outcome` | the CA's [`Outcome`]: the leaf, its index, its inclusion path, the signed tree head | the pinned CA's signature on the head, RFC 9162 inclusion |
//!
//! [`verify_bundle`] checks all of it and yields a [`VerifiedBundle`], the
//! ordered list of messages an arbiter may cite, and
//! [`VerifiedBundle::preceded`]. The bundle proves causal *assertion* only
//! (message `i` preceded message `j`); causal denial is out of scope, as
//! the paper says. Payloads stay sealed: an arbiter learns order, senders
//! and hashes, not contents (a party may reveal a payload separately, and
//! its hash binds to the signed message).
//!
//! [`Data`]: crate::msg::Data
//! [`End`]: crate::msg::End
//! [`Outcome`]: crate::msg::Outcome

use crate::ids::{Context, Pair, Tid};
use crate::msg::{Data, End, MAX_CERT_LEN, MAX_OPENING_LEN, MAX_OUTCOME_LEN};
use crate::outcome::{verify_outcome, VerifiedOutcome};
use crate::process::{open_opening, Decided};
use agora_core::crypto::{sha256, VerifyingKey};
use agora_core::wire::{cose, encode, tags, Decoder, Encoder, Message, Tag, MAX_MESSAGE_LEN};
use agora_core::{DecodeError, Error, KeyId, Result, Timestamp};
use agora_pki::IdentityTrust;

/// Most signed messages in a bundle: the opening and at most 4095 Data and
/// End after it. A bound on the arbiter's work and memory; the bundle's
/// byte limit ([`MAX_BUNDLE_LEN`]) usually binds first.
pub const MAX_BUNDLE_MESSAGES: usize = 4096;

/// Longest signed message in a bundle: the larger of a signed opening and
/// a signed Data with a full payload.
pub const MAX_SIGNED_LEN: usize = max(MAX_OPENING_LEN, Data::MAX_LEN + cose::SIGN1_OVERHEAD);

/// Longest encoded bundle: agora's limit on any message (1 MiB). A
/// subtransaction whose messages do not fit cannot be bundled ([`prove`]
/// says so).
pub const MAX_BUNDLE_LEN: usize = MAX_MESSAGE_LEN;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// A proof bundle (tag `STP_PROOF_BUNDLE`, `[3, 4, 1]`): one
/// subtransaction's signed messages, the other party's certificate and the
/// CA's outcome. Not signed itself: every part carries its own signature
/// or proof, which [`verify_bundle`] checks.
///
/// On the wire: `[tag, [message...], invitee_cert, outcome]`, each message
/// and the certificate and the outcome a byte string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofBundle {
    /// The signed opening (Begin or Join, which carries the initiator's
    /// certificate), then every signed Data and End, in order. At least
    /// one, at most [`MAX_BUNDLE_MESSAGES`], each at most
    /// [`MAX_SIGNED_LEN`] bytes.
    pub messages: Vec<Vec<u8>>,
    /// The identity certificate (DER) of the pair's other party, the one
    /// the opening invited (it travelled in that party's Vote).
    pub invitee_cert: Vec<u8>,
    /// The encoded [`crate::msg::Outcome`] of the transaction, as the CA
    /// sent it: leaf, index, inclusion path and signed tree head.
    pub outcome: Vec<u8>,
}

impl Message for ProofBundle {
    const TAG: Tag = tags::STP_PROOF_BUNDLE;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_BUNDLE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.array(self.messages.len());
        for m in &self.messages {
            e.bytes(m);
        }
        e.bytes(&self.invitee_cert).bytes(&self.outcome);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.array_max("bundle messages", MAX_BUNDLE_MESSAGES)?;
        if n == 0 {
            return Err(DecodeError::Invalid("a proof bundle without its opening"));
        }
        let messages = (0..n)
            .map(|_| Ok(d.bytes("signed message", MAX_SIGNED_LEN)?.to_vec()))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(ProofBundle {
            messages,
            invitee_cert: d.bytes("invitee certificate", MAX_CERT_LEN)?.to_vec(),
            outcome: d.bytes("outcome", MAX_OUTCOME_LEN)?.to_vec(),
        })
    }
}

/// `agora stp prove`: the encoded [`ProofBundle`] of a decided
/// subtransaction. `invitee_cert` is the certificate of the party the
/// opening invited: for the initiator, the peer's
/// ([`crate::process::Open::peer_cert`], kept before deciding); for the
/// invitee, its own ([`crate::process::Party::cert`]).
///
/// Refused if the transaction aborted (an aborted transaction proves no
/// order an arbiter would act on) or if the subtransaction does not fit
/// in a bundle ([`MAX_BUNDLE_MESSAGES`], [`MAX_BUNDLE_LEN`]).
pub fn prove(decided: &Decided, invitee_cert: &[u8]) -> Result<Vec<u8>> {
    if !decided.committed() {
        return Err(Error::Refused(
            "the transaction aborted: there is no committed order to prove".into(),
        ));
    }
    let b = ProofBundle {
        messages: decided.transcript.clone(),
        invitee_cert: invitee_cert.to_vec(),
        outcome: decided.outcome_bytes.clone(),
    };
    if b.messages.is_empty() {
        return Err(Error::ApiMisuse(
            "a decided subtransaction without its opening",
        ));
    }
    if b.messages.len() > MAX_BUNDLE_MESSAGES
        || b.messages.iter().any(|m| m.len() > MAX_SIGNED_LEN)
        || b.invitee_cert.len() > MAX_CERT_LEN
        || b.outcome.len() > MAX_OUTCOME_LEN
    {
        return Err(Error::Refused(format!(
            "a subtransaction over a proof bundle's limits ({MAX_BUNDLE_MESSAGES} messages)"
        )));
    }
    let bytes = encode(&b);
    if bytes.len() > MAX_BUNDLE_LEN {
        return Err(Error::Refused(format!(
            "a subtransaction over a proof bundle's limit of {MAX_BUNDLE_LEN} bytes"
        )));
    }
    Ok(bytes)
}

/// One party of a verified bundle's pair, as its certificate names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleParty {
    /// Its UID (the key id of its signing key).
    pub uid: KeyId,
    /// Its name in its identity certificate.
    pub name: String,
    /// Its verification key, from that certificate.
    pub key: VerifyingKey,
}

/// One message of a verified bundle: what an arbiter cites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleMessage {
    /// Its place in the bundle: 0 for the opening.
    pub index: usize,
    /// Its sender's UID (the signer).
    pub sender: KeyId,
    /// Its tag's registered name (`STP_BEGIN`, `STP_JOIN`, `STP_DATA`,
    /// `STP_END`).
    pub tag: &'static str,
    /// Its sequence number (0 for the opening, which has none).
    pub seq: u64,
    /// SHA-256 of its signed bytes.
    pub hash: [u8; 32],
    /// The context after it (the one the next message names as `prev`).
    pub context: Context,
}

/// A bundle [`verify_bundle`] accepted: a committed subtransaction's
/// messages in an order their senders' signatures vouch for. Only
/// [`verify_bundle`] makes one (STYLE 3: a proof value).
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    tid: Tid,
    pair: Pair,
    initiator: BundleParty,
    invitee: BundleParty,
    messages: Vec<BundleMessage>,
    outcome: VerifiedOutcome,
}

impl VerifiedBundle {
    /// The transaction.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// The subtransaction's pair.
    pub fn pair(&self) -> Pair {
        self.pair
    }

    /// The party that sent the opening (and held the send token first).
    pub fn initiator(&self) -> &BundleParty {
        &self.initiator
    }

    /// The party the opening invited.
    pub fn invitee(&self) -> &BundleParty {
        &self.invitee
    }

    /// The messages, in order: the opening, then every Data, then End.
    pub fn messages(&self) -> &[BundleMessage] {
        &self.messages
    }

    /// The final context, the one the CA's leaf records for this pair.
    pub fn final_context(&self) -> Context {
        self.messages.last().map_or(Context([0; 32]), |m| m.context)
    }

    /// The CA's verified outcome (committed).
    pub fn outcome(&self) -> &VerifiedOutcome {
        &self.outcome
    }

    /// Whether message `i` preceded message `j` (a causal assertion, paper
    /// section 2): `j`'s sender signed, with `j`, a context that chains
    /// over the signed bytes of `i`, so it held `i` when it sent `j`. A
    /// message does not precede itself. [`Error::ApiMisuse`] for an index
    /// not in the bundle.
    pub fn preceded(&self, i: usize, j: usize) -> Result<bool> {
        let n = self.messages.len();
        if i >= n || j >= n {
            return Err(Error::ApiMisuse("no message with that index in the bundle"));
        }
        Ok(i < j)
    }
}

/// The registered name of a tag a bundle may hold.
fn tag_name(tag: Tag) -> &'static str {
    tags::lookup(tag).unwrap_or("unregistered")
}

/// `agora stp verify-proof`: checks a [`ProofBundle`] offline, trusting
/// the agencies of `trust` for the parties' certificates (valid at `now`:
/// the arbiter's clock, or the leaf's `decided_at` to judge them as they
/// were at the decision) and the pinned commit authority `ca`:
///
/// 1. the Outcome: the tree head signed by `ca`, the leaf included in it
///    and naming `ca` ([`verify_outcome`]); the transaction committed;
/// 2. the opening: its signature and the initiator's certificate
///    ([`open_opening`]), of the outcome's transaction, naming `ca`; the
///    invitee's certificate, for the pair's other UID;
/// 3. every later message: a Data or End signed by one of the pair (found
///    by key id) and sent by the holder of the send token (the initiator
///    first, then whoever a Data passed it to), of the opening's TID and
///    pair, numbered 1, 2, 3, ..., naming as `prev` the context chained so
///    far; End last and only last;
/// 4. the final context equal to the one the leaf records for this pair.
///
/// Errors: [`Error::Decode`] for a malformed bundle or message,
/// [`Error::Crypto`] for a signature or inclusion proof that does not hold
/// (an outcome the pinned CA did not sign included), [`Error::Refused`]
/// for an aborted transaction or a certificate the arbiter does not trust,
/// [`Error::PeerMisbehaved`] for a broken chain or order.
pub fn verify_bundle(
    bytes: &[u8],
    trust: &IdentityTrust,
    ca: &VerifyingKey,
    now: Timestamp,
) -> Result<VerifiedBundle> {
    let b: ProofBundle = agora_core::wire::decode(bytes)?;

    // 1. The outcome, from the pinned CA.
    let outcome = verify_outcome(&b.outcome, ca).map_err(|e| match e {
        // Signed by another key than the pinned CA's: its signature does
        // not verify under the key the arbiter trusts.
        Error::NotAuthorised(_) => Error::Crypto,
        e => e,
    })?;

    // 2. The opening and the two certificates.
    let (opening_bytes, later) =
        b.messages
            .split_first()
            .ok_or(Error::Decode(DecodeError::Invalid(
                "a proof bundle without its opening",
            )))?;
    let opening_tag = cose::peek_tag(opening_bytes)?;
    let o = open_opening(opening_bytes, trust, now)?;
    if o.tid != outcome.leaf.tid {
        return Err(Error::PeerMisbehaved(
            "the outcome is of another transaction",
        ));
    }
    if o.ca != ca.key_id() {
        return Err(Error::PeerMisbehaved(
            "the transaction names another commit authority",
        ));
    }
    if !outcome.leaf.committed() {
        return Err(Error::Refused(
            "the transaction aborted: its messages prove no committed order".into(),
        ));
    }
    let agreed = outcome
        .leaf
        .context_of(&o.pair)
        .ok_or(Error::PeerMisbehaved(
            "the outcome records no committed context for this pair",
        ))?;
    let invitee_uid = o.pair.other(&o.initiator).ok_or(Error::PeerMisbehaved(
        "the initiator is not one of the pair",
    ))?;
    let invitee_id = trust.identity_of_any_role(&b.invitee_cert, now)?;
    if invitee_id.key().key_id() != invitee_uid {
        return Err(Error::PeerMisbehaved(
            "the invitee's certificate is for a key outside the pair",
        ));
    }
    let initiator_key = opening_key(opening_bytes, &o.initiator, trust, now)?;
    let initiator = BundleParty {
        uid: o.initiator,
        name: o.initiator_name.clone(),
        key: initiator_key,
    };
    let invitee = BundleParty {
        uid: invitee_uid,
        name: invitee_id.name().to_owned(),
        key: *invitee_id.key(),
    };

    let mut ctx = Context::initial(opening_bytes);
    let mut messages = Vec::with_capacity(b.messages.len());
    messages.push(BundleMessage {
        index: 0,
        sender: o.initiator,
        tag: tag_name(opening_tag),
        seq: 0,
        hash: sha256(opening_bytes),
        context: ctx,
    });

    // 3. The chain.
    let mut token = o.initiator;
    let mut ended = false;
    for (k, m) in later.iter().enumerate() {
        let index = k + 1;
        if ended {
            return Err(Error::PeerMisbehaved("a message after End"));
        }
        let tag = cose::peek_tag(m)?;
        let sender = cose::peek_kid(m)?;
        let key = if sender == initiator.uid {
            &initiator.key
        } else if sender == invitee.uid {
            &invitee.key
        } else {
            return Err(Error::PeerMisbehaved(
                "a message signed by neither party of the pair",
            ));
        };
        let (tid, pair, seq, prev, pass) = if tag == tags::STP_DATA {
            let d: Data = cose::verify(m, key)?;
            (d.tid, d.pair, d.seq, d.prev, d.pass_token)
        } else if tag == tags::STP_END {
            let e: End = cose::verify(m, key)?;
            ended = true;
            (e.tid, e.pair, e.seq, e.prev, false)
        } else {
            return Err(Error::PeerMisbehaved(
                "a bundle's later messages are Data and End",
            ));
        };
        if tid != o.tid || pair != o.pair {
            return Err(Error::PeerMisbehaved("a message of another subtransaction"));
        }
        if seq != index as u64 {
            return Err(Error::PeerMisbehaved(
                "a message out of order: wrong number",
            ));
        }
        if prev != ctx {
            return Err(Error::PeerMisbehaved(
                "a message out of order: it names another context",
            ));
        }
        if sender != token {
            return Err(Error::PeerMisbehaved(
                "a message from the party without the send token",
            ));
        }
        if pass {
            token = if token == initiator.uid {
                invitee.uid
            } else {
                initiator.uid
            };
        }
        ctx = ctx.next(m);
        messages.push(BundleMessage {
            index,
            sender,
            tag: tag_name(tag),
            seq,
            hash: sha256(m),
            context: ctx,
        });
    }
    if !ended {
        return Err(Error::PeerMisbehaved(
            "a committed subtransaction's messages end with End",
        ));
    }

    // 4. The chain ends where both parties committed.
    if ctx != agreed {
        return Err(Error::PeerMisbehaved(
            "the messages chain to a context other than the committed one",
        ));
    }
    Ok(VerifiedBundle {
        tid: o.tid,
        pair: o.pair,
        initiator,
        invitee,
        messages,
        outcome,
    })
}

/// The initiator's verification key, from the certificate inside the
/// (already verified) opening.
fn opening_key(
    opening: &[u8],
    initiator: &KeyId,
    trust: &IdentityTrust,
    now: Timestamp,
) -> Result<VerifyingKey> {
    let tag = cose::peek_tag(opening)?;
    let cert = if tag == tags::STP_BEGIN {
        cose::peek_unverified::<crate::msg::Begin>(opening)?.initiator_cert
    } else {
        cose::peek_unverified::<crate::msg::Join>(opening)?.initiator_cert
    };
    let key = *trust.identity_of_any_role(&cert, now)?.key();
    if key.key_id() != *initiator {
        return Err(Error::PeerMisbehaved(
            "the opening's certificate is not its signer's",
        ));
    }
    Ok(key)
}
