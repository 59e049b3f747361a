//! The STP messages (ARCHITECTURE section 6, system tag 3), as agora wire
//! messages ([`agora_core::wire::Message`]).
//!
//! | step | message | travels as |
//! |---|---|---|
//! | P to Q | [`Begin`] | `Sign(X)` by P, P's certificate inside |
//! | P to R | [`Join`] | `Sign(X)` by P, P's certificate inside |
//! | each of the pair to the CA | [`Vote`] | `Sign(X)` by the voter, its certificate inside |
//! | CA to each of the pair | [`Started`] | `Sign(X)` by the CA, the other's signed vote inside |
//! | token holder to peer | [`Data`] | `Sign(X)` by the sender; payload sealed to the pair |
//! | token holder to peer | [`End`] | `Sign(X)` by the sender |
//! | each of the pair to the CA | [`Decide`] | `Sign(X)` by the decider |
//! | CA to all | [`Outcome`] | the leaf, its inclusion proof and a `Sign(X)` tree head |
//! | anyone to the CA | [`Status`] | plain |
//! | CA to whoever asked | [`Pending`] | `Sign(X)` by the CA |
//!
//! The CA's log: [`OutcomeLeaf`] (a leaf), [`TreeHead`] (signed),
//! [`Consistency`]. The escrow: [`Deposit`], [`DepositReceipt`], [`Claim`],
//! [`Release`].
//!
//! Every signed message names the TID and the pair, so that no message of
//! one subtransaction verifies as one of another; each message type has its
//! own tag, so that no message verifies as a message of another step.

use crate::ids::{Context, Pair, Tid};
use agora_core::crypto::X25519Public;
use agora_core::wire::{tags, Decoder, Encoder, Message, Tag};
use agora_core::{DecodeError, KeyId, Timestamp};

/// Longest X.509 certificate carried in a message (agora-pki's limit).
pub const MAX_CERT_LEN: usize = agora_pki::MAX_CERT_LEN;
/// Longest signed Begin or Join (the certificate and a few fields).
pub const MAX_OPENING_LEN: usize = MAX_CERT_LEN + 512;
/// Longest signed Vote (the opening, the voter's certificate, a few fields).
pub const MAX_VOTE_LEN: usize = MAX_OPENING_LEN + MAX_CERT_LEN + 512;
/// Longest Data payload, sealed (64 KiB of application data and its tag).
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024 + 16;
/// Most subtransactions in one transaction (so that every outcome leaf and
/// every CA record is bounded).
pub const MAX_SUBTRANSACTIONS: usize = 64;
/// Longest item held in escrow.
pub const MAX_ITEM_LEN: usize = 256 * 1024;
/// Longest encoded outcome leaf.
pub const MAX_LEAF_LEN: usize = 128 + MAX_SUBTRANSACTIONS * 112;
/// Longest inclusion or consistency proof (hashes).
pub const MAX_PROOF_LEN: usize = crate::merkle::MAX_PROOF_LEN;
/// Longest signed tree head.
pub const MAX_HEAD_LEN: usize = 256;
/// Longest encoded Outcome.
pub const MAX_OUTCOME_LEN: usize = MAX_LEAF_LEN + MAX_PROOF_LEN * 34 + MAX_HEAD_LEN + 64;

fn cert(d: &mut Decoder<'_>, what: &'static str) -> Result<Vec<u8>, DecodeError> {
    Ok(d.bytes(what, MAX_CERT_LEN)?.to_vec())
}

fn hashes(d: &mut Decoder<'_>, what: &'static str) -> Result<Vec<[u8; 32]>, DecodeError> {
    let n = d.array_max(what, MAX_PROOF_LEN)?;
    (0..n).map(|_| d.field()).collect()
}

fn put_hashes(e: &mut Encoder, hs: &[[u8; 32]]) {
    e.array(hs.len());
    for h in hs {
        e.field(h);
    }
}

/// Begin (P to Q): P opens a new transaction `tid` with a subtransaction
/// between P and Q, to be decided by the commit authority `ca` no later
/// than `deadline`. Signed by P, whose certificate it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Begin {
    /// The new transaction.
    pub tid: Tid,
    /// P and Q.
    pub pair: Pair,
    /// P's identity certificate (DER).
    pub initiator_cert: Vec<u8>,
    /// The transaction's deadline: the CA aborts it if it is undecided then.
    pub deadline: Timestamp,
    /// The commit authority's UID.
    pub ca: KeyId,
}

impl Message for Begin {
    const TAG: Tag = tags::STP_BEGIN;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .field(&self.pair)
            .bytes(&self.initiator_cert)
            .field(&self.deadline)
            .field(&self.ca);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Begin {
            tid: d.field()?,
            pair: d.field()?,
            initiator_cert: cert(d, "initiator certificate")?,
            deadline: d.field()?,
            ca: d.field()?,
        })
    }
}

/// Join (P to R): P brings R into the transaction `tid`, in which P's own
/// subtransaction `via` is undecided. Signed by P, whose certificate it
/// carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The transaction.
    pub tid: Tid,
    /// P and R.
    pub pair: Pair,
    /// P's identity certificate (DER).
    pub initiator_cert: Vec<u8>,
    /// The transaction's deadline, as its Begin named it.
    pub deadline: Timestamp,
    /// The commit authority's UID.
    pub ca: KeyId,
    /// P's undecided subtransaction in `tid`.
    pub via: Pair,
}

impl Message for Join {
    const TAG: Tag = tags::STP_JOIN;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_CERT_LEN + 320;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .field(&self.pair)
            .bytes(&self.initiator_cert)
            .field(&self.deadline)
            .field(&self.ca)
            .field(&self.via);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Join {
            tid: d.field()?,
            pair: d.field()?,
            initiator_cert: cert(d, "initiator certificate")?,
            deadline: d.field()?,
            ca: d.field()?,
            via: d.field()?,
        })
    }
}

/// Vote (each of the pair to the CA): accept or reject the subtransaction
/// that `opening` (the signed Begin or Join) opens. Carries the voter's
/// certificate and a fresh X25519 key share for the pair's data key, which
/// the CA relays to the other party inside [`Started`] but cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The transaction.
    pub tid: Tid,
    /// The subtransaction's pair.
    pub pair: Pair,
    /// The signed Begin or Join.
    pub opening: Vec<u8>,
    /// Accept (`true`) or reject.
    pub accept: bool,
    /// The voter's identity certificate (DER).
    pub voter_cert: Vec<u8>,
    /// The voter's key share for the data key of this subtransaction.
    pub share: X25519Public,
}

impl Message for Vote {
    const TAG: Tag = tags::STP_VOTE;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_VOTE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .field(&self.pair)
            .bytes(&self.opening)
            .bool(self.accept)
            .bytes(&self.voter_cert)
            .field(&self.share);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            tid: d.field()?,
            pair: d.field()?,
            opening: d.bytes("opening", MAX_OPENING_LEN)?.to_vec(),
            accept: d.bool()?,
            voter_cert: cert(d, "voter certificate")?,
            share: d.field()?,
        })
    }
}

/// Started (CA to each of the pair): both accepted; here is the other's
/// signed vote (its certificate, hence its verification key, and its key
/// share), and who holds the send token. Signed by the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The transaction.
    pub tid: Tid,
    /// The subtransaction's pair.
    pub pair: Pair,
    /// The addressee: the party this Started is for.
    pub to: KeyId,
    /// The other party's signed vote.
    pub peer_vote: Vec<u8>,
    /// Who holds the send token first (the initiator).
    pub token: KeyId,
    /// The transaction's deadline.
    pub deadline: Timestamp,
}

impl Message for Started {
    const TAG: Tag = tags::STP_STARTED;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_VOTE_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .field(&self.pair)
            .field(&self.to)
            .bytes(&self.peer_vote)
            .field(&self.token)
            .field(&self.deadline);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Started {
            tid: d.field()?,
            pair: d.field()?,
            to: d.field()?,
            peer_vote: d.bytes("peer vote", MAX_VOTE_LEN)?.to_vec(),
            token: d.field()?,
            deadline: d.field()?,
        })
    }
}

/// Data (token holder to peer): message `seq` of the subtransaction, bound
/// to the context `prev` of everything before it, with a payload sealed
/// under the pair's key, and whether the send token passes to the peer
/// with it. Signed by the sender over all of these: the association of the
/// message and its context is authenticated (paper section 2, against the
/// causality protocols of its references 8 and 12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    /// The transaction.
    pub tid: Tid,
    /// The subtransaction's pair.
    pub pair: Pair,
    /// The message's number in the subtransaction, from 1.
    pub seq: u64,
    /// The context before this message.
    pub prev: Context,
    /// The payload, sealed under the sender's direction key.
    pub payload: Vec<u8>,
    /// Whether the send token passes to the peer.
    pub pass_token: bool,
}

impl Message for Data {
    const TAG: Tag = tags::STP_DATA;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_PAYLOAD_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .field(&self.pair)
            .uint(self.seq)
            .field(&self.prev)
            .bytes(&self.payload)
            .bool(self.pass_token);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Data {
            tid: d.field()?,
            pair: d.field()?,
            seq: d.uint()?,
            prev: d.field()?,
            payload: d.bytes("payload", MAX_PAYLOAD_LEN)?.to_vec(),
            pass_token: d.bool()?,
        })
    }
}

/// End (token holder to peer): the subtransaction's last message. Signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// The transaction.
    pub tid: Tid,
    /// The subtransaction's pair.
    pub pair: Pair,
    /// The message's number.
    pub seq: u64,
    /// The context before this message.
    pub prev: Context,
}

impl Message for End {
    const TAG: Tag = tags::STP_END;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 160;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .field(&self.pair)
            .uint(self.seq)
            .field(&self.prev);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(End {
            tid: d.field()?,
            pair: d.field()?,
            seq: d.uint()?,
            prev: d.field()?,
        })
    }
}

/// Decide (each of the pair to the CA): commit, with the final context
/// ("which defines the state of the subtransaction"), or abort. Signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decide {
    /// The transaction.
    pub tid: Tid,
    /// The subtransaction's pair.
    pub pair: Pair,
    /// `Some(final context)` to commit, `None` to abort.
    pub commit: Option<Context>,
}

impl Message for Decide {
    const TAG: Tag = tags::STP_DECIDE;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 160;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid).field(&self.pair).field(&self.commit);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Decide {
            tid: d.field()?,
            pair: d.field()?,
            commit: d.field()?,
        })
    }
}

/// A decided transaction, as a leaf of the CA's log: the outcome and, per
/// subtransaction in the order the CA registered them, its pair and the
/// context both parties committed with (`None` where they did not both
/// commit with one context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeLeaf {
    /// The commit authority.
    pub ca: KeyId,
    /// The transaction.
    pub tid: Tid,
    /// 0: committed; otherwise the [`crate::rules::AbortReason`] code.
    pub outcome: u8,
    /// The subtransactions.
    pub subs: Vec<(Pair, Option<Context>)>,
    /// When the CA decided.
    pub decided_at: Timestamp,
}

impl OutcomeLeaf {
    /// Whether the transaction committed.
    pub fn committed(&self) -> bool {
        self.outcome == 0
    }

    /// The agreed context of the subtransaction `pair`, if it committed.
    pub fn context_of(&self, pair: &Pair) -> Option<Context> {
        self.subs
            .iter()
            .find(|(p, _)| p == pair)
            .and_then(|(_, c)| *c)
    }
}

impl Message for OutcomeLeaf {
    const TAG: Tag = tags::STP_OUTCOME_LEAF;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_LEAF_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.ca).field(&self.tid).uint(self.outcome.into());
        e.array(self.subs.len());
        for (p, c) in &self.subs {
            e.array(2).field(p).field(c);
        }
        e.field(&self.decided_at);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let ca = d.field()?;
        let tid = d.field()?;
        let outcome = d.uint_max("outcome", 4)? as u8;
        let n = d.array_max("subtransactions", MAX_SUBTRANSACTIONS)?;
        if n == 0 {
            return Err(DecodeError::Invalid("an outcome without subtransactions"));
        }
        let mut subs = Vec::with_capacity(n);
        for _ in 0..n {
            d.array(2)?;
            subs.push((d.field()?, d.field()?));
        }
        Ok(OutcomeLeaf {
            ca,
            tid,
            outcome,
            subs,
            decided_at: d.field()?,
        })
    }
}

/// A tree head of the CA's log: its size and RFC 9162 root at a time.
/// Signed by the CA, once per batch of outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// The commit authority.
    pub ca: KeyId,
    /// Leaves in the tree.
    pub size: u64,
    /// Its root (RFC 9162 section 2.1.1).
    pub root: [u8; 32],
    /// When the CA signed it.
    pub timestamp: Timestamp,
}

impl Message for TreeHead {
    const TAG: Tag = tags::STP_TREE_HEAD;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.ca)
            .uint(self.size)
            .field(&self.root)
            .field(&self.timestamp);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(TreeHead {
            ca: d.field()?,
            size: d.uint()?,
            root: d.field()?,
            timestamp: d.field()?,
        })
    }
}

/// Outcome (CA to all): a decided transaction's leaf, the leaf's index and
/// inclusion proof, and the signed tree head it is proved against. Not
/// signed itself: the tree head's signature and the proof vouch for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The encoded [`OutcomeLeaf`].
    pub leaf: Vec<u8>,
    /// Its index in the log.
    pub index: u64,
    /// Its inclusion proof in the tree of `head` (RFC 9162 section 2.1.3).
    pub path: Vec<[u8; 32]>,
    /// The signed [`TreeHead`].
    pub head: Vec<u8>,
}

impl Message for Outcome {
    const TAG: Tag = tags::STP_OUTCOME;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_OUTCOME_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.bytes(&self.leaf).uint(self.index);
        put_hashes(e, &self.path);
        e.bytes(&self.head);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Outcome {
            leaf: d.bytes("outcome leaf", MAX_LEAF_LEN)?.to_vec(),
            index: d.uint()?,
            path: hashes(d, "inclusion proof")?,
            head: d.bytes("tree head", MAX_HEAD_LEN)?.to_vec(),
        })
    }
}

/// Status (anyone to the CA): what became of `tid`?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The transaction.
    pub tid: Tid,
}

impl Message for Status {
    const TAG: Tag = tags::STP_STATUS;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 32;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Status { tid: d.field()? })
    }
}

/// Pending (CA to whoever asked): `tid` is not decided as of `as_of`.
/// Signed by the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The transaction.
    pub tid: Tid,
    /// Whether the CA has heard of it (a vote on it).
    pub known: bool,
    /// Its deadline (0 if unknown).
    pub deadline: Timestamp,
    /// When the CA said so.
    pub as_of: Timestamp,
}

impl Message for Pending {
    const TAG: Tag = tags::STP_PENDING;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .bool(self.known)
            .field(&self.deadline)
            .field(&self.as_of);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Pending {
            tid: d.field()?,
            known: d.bool()?,
            deadline: d.field()?,
            as_of: d.field()?,
        })
    }
}

/// A consistency proof between the CA's trees of `old_size` and
/// `new_size` leaves (RFC 9162 section 2.1.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consistency {
    /// The older tree's size.
    pub old_size: u64,
    /// The newer tree's size.
    pub new_size: u64,
    /// The proof.
    pub path: Vec<[u8; 32]>,
}

impl Message for Consistency {
    const TAG: Tag = tags::STP_CONSISTENCY;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_PROOF_LEN * 34 + 32;

    fn encode_fields(&self, e: &mut Encoder) {
        e.uint(self.old_size).uint(self.new_size);
        put_hashes(e, &self.path);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Consistency {
            old_size: d.uint()?,
            new_size: d.uint()?,
            path: hashes(d, "consistency proof")?,
        })
    }
}

/// Deposit (depositor to the escrow): hold `item` for the transaction
/// `tid`; release it to `recipient` if the CA `ca` commits the
/// transaction, give it back to the depositor if it aborts. Signed by the
/// depositor, whose certificate it carries. The item is opaque to the
/// escrow (a depositor who wants it confidential seals it to the
/// recipient first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    /// The transaction.
    pub tid: Tid,
    /// The depositor's identity certificate (DER).
    pub depositor_cert: Vec<u8>,
    /// Who gets the item on commit.
    pub recipient: KeyId,
    /// The commit authority whose outcome decides.
    pub ca: KeyId,
    /// The item.
    pub item: Vec<u8>,
}

impl Message for Deposit {
    const TAG: Tag = tags::STP_ESCROW_DEPOSIT;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_ITEM_LEN + MAX_CERT_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.tid)
            .bytes(&self.depositor_cert)
            .field(&self.recipient)
            .field(&self.ca)
            .bytes(&self.item);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Deposit {
            tid: d.field()?,
            depositor_cert: cert(d, "depositor certificate")?,
            recipient: d.field()?,
            ca: d.field()?,
            item: d.bytes("item", MAX_ITEM_LEN)?.to_vec(),
        })
    }
}

/// The escrow's signed receipt of a deposit: the deposit's id (SHA-256 of
/// the signed Deposit) and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositReceipt {
    /// SHA-256 of the signed Deposit.
    pub deposit: [u8; 32],
    /// The transaction.
    pub tid: Tid,
    /// The depositor's UID.
    pub depositor: KeyId,
    /// Who gets the item on commit.
    pub recipient: KeyId,
    /// SHA-256 of the item.
    pub item_hash: [u8; 32],
    /// When the escrow took it.
    pub at: Timestamp,
}

impl Message for DepositReceipt {
    const TAG: Tag = tags::STP_ESCROW_RECEIPT;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.deposit)
            .field(&self.tid)
            .field(&self.depositor)
            .field(&self.recipient)
            .field(&self.item_hash)
            .field(&self.at);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DepositReceipt {
            deposit: d.field()?,
            tid: d.field()?,
            depositor: d.field()?,
            recipient: d.field()?,
            item_hash: d.field()?,
            at: d.field()?,
        })
    }
}

/// Claim (recipient or depositor to the escrow): the deposit `deposit`,
/// against the transaction's `outcome`. Signed by the claimant, whose
/// certificate it carries, with a fresh key the [`Release`] is sealed to:
/// whoever replays the claim gets only a release they cannot open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// SHA-256 of the signed Deposit.
    pub deposit: [u8; 32],
    /// The claimant's identity certificate (DER).
    pub claimant_cert: Vec<u8>,
    /// The encoded [`Outcome`] of the deposit's transaction.
    pub outcome: Vec<u8>,
    /// When the claimant asked (the escrow refuses stale claims).
    pub at: Timestamp,
    /// The key the Release is sealed to (HPKE).
    pub reply_to: X25519Public,
}

impl Message for Claim {
    const TAG: Tag = tags::STP_ESCROW_CLAIM;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_OUTCOME_LEN + MAX_CERT_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.deposit)
            .bytes(&self.claimant_cert)
            .bytes(&self.outcome)
            .field(&self.at)
            .field(&self.reply_to);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Claim {
            deposit: d.field()?,
            claimant_cert: cert(d, "claimant certificate")?,
            outcome: d.bytes("outcome", MAX_OUTCOME_LEN)?.to_vec(),
            at: d.field()?,
            reply_to: d.field()?,
        })
    }
}

/// Release (escrow to claimant): the item of `deposit`, released to the
/// recipient against a committed outcome (`returned` false) or returned to
/// the depositor on abort (`returned` true). Signed by the escrow and
/// sealed to the claim's `reply_to` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// SHA-256 of the signed Deposit.
    pub deposit: [u8; 32],
    /// The transaction.
    pub tid: Tid,
    /// Who it goes to.
    pub to: KeyId,
    /// Whether it goes back to its depositor (the transaction aborted).
    pub returned: bool,
    /// The item.
    pub item: Vec<u8>,
}

impl Message for Release {
    const TAG: Tag = tags::STP_ESCROW_RELEASE;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_ITEM_LEN + 256;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.deposit)
            .field(&self.tid)
            .field(&self.to)
            .bool(self.returned)
            .bytes(&self.item);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Release {
            deposit: d.field()?,
            tid: d.field()?,
            to: d.field()?,
            returned: d.bool()?,
            item: d.bytes("item", MAX_ITEM_LEN)?.to_vec(),
        })
    }
}
