//! Checking what the commit authority says, by anyone who holds it (a
//! party, an escrow, an arbiter), and convicting a CA that said two things.
//!
//! An [`Outcome`] is not signed by itself: it is a leaf of the CA's log,
//! an RFC 9162 inclusion proof, and a tree head the CA signed for a whole
//! batch. A CA that tells one party "committed" and another "aborted" must
//! therefore sign two tree heads that include two leaves for one TID (its
//! log has one leaf per TID), or two heads that are not consistent with
//! each other: either way the two parties' Outcomes, and a consistency
//! proof the CA cannot produce, convict it ([`convict`]).

use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use crate::msg::{Consistency, Outcome, OutcomeLeaf, TreeHead};
use agora_core::crypto::VerifyingKey;
use agora_core::wire::{cose, decode};
use agora_core::{Error, Result};

/// An Outcome whose tree head the CA signed and whose leaf is included in
/// that tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedOutcome {
    /// The decided transaction.
    pub leaf: OutcomeLeaf,
    /// The leaf as logged.
    pub leaf_bytes: Vec<u8>,
    /// Its index in the log.
    pub index: u64,
    /// The signed tree head it is included in.
    pub head: TreeHead,
    /// The head as signed.
    pub head_bytes: Vec<u8>,
}

/// Verifies a signed tree head of the CA `ca`.
pub fn verify_head(bytes: &[u8], ca: &VerifyingKey) -> Result<TreeHead> {
    let h: TreeHead = cose::verify(bytes, ca)?;
    if h.ca != ca.key_id() {
        return Err(Error::PeerMisbehaved("a tree head naming another CA"));
    }
    Ok(h)
}

/// Verifies an encoded [`Outcome`] from the CA `ca`: the head's signature,
/// the leaf's inclusion in the head's tree, the leaf naming this CA.
pub fn verify_outcome(bytes: &[u8], ca: &VerifyingKey) -> Result<VerifiedOutcome> {
    let o: Outcome = decode(bytes)?;
    let head = verify_head(&o.head, ca)?;
    verify_inclusion(&leaf_hash(&o.leaf), o.index, head.size, &o.path, &head.root)?;
    let leaf: OutcomeLeaf = decode(&o.leaf)?;
    if leaf.ca != ca.key_id() {
        return Err(Error::PeerMisbehaved("an outcome naming another CA"));
    }
    Ok(VerifiedOutcome {
        leaf,
        leaf_bytes: o.leaf,
        index: o.index,
        head,
        head_bytes: o.head,
    })
}

/// Checks that the tree of head `old` is a prefix of the tree of head
/// `new` (both verified), by the CA's consistency proof.
pub fn check_consistency(old: &TreeHead, new: &TreeHead, proof: &Consistency) -> Result<()> {
    if proof.old_size != old.size || proof.new_size != new.size {
        return Err(Error::PeerMisbehaved(
            "a consistency proof between other tree sizes",
        ));
    }
    verify_consistency(old.size, new.size, &old.root, &new.root, &proof.path)
}

/// What two Outcomes of one CA prove against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conviction {
    /// Two different leaves for one transaction, each in a tree head the CA
    /// signed: it decided the transaction twice (or differently).
    TwoOutcomes,
    /// Two signed tree heads of the same size with different roots: the CA
    /// keeps two logs.
    ForkedLog,
    /// The consistency proof offered between the two heads does not hold:
    /// the older tree is not a prefix of the newer.
    InconsistentHeads,
}

/// Compares two verified Outcomes of the same CA for the same transaction.
/// `proof`: the CA's consistency proof from the smaller head to the larger,
/// if the heads differ (a CA that cannot produce one when asked is
/// convicted by that refusal, which is the caller's to record).
/// `None`: nothing against the CA.
pub fn convict(
    a: &VerifiedOutcome,
    b: &VerifiedOutcome,
    proof: Option<&Consistency>,
) -> Option<Conviction> {
    if a.leaf.tid == b.leaf.tid && a.leaf_bytes != b.leaf_bytes {
        return Some(Conviction::TwoOutcomes);
    }
    if a.head.size == b.head.size {
        return (a.head.root != b.head.root).then_some(Conviction::ForkedLog);
    }
    let (old, new) = if a.head.size < b.head.size {
        (&a.head, &b.head)
    } else {
        (&b.head, &a.head)
    };
    match proof {
        Some(p) if check_consistency(old, new, p).is_err() => Some(Conviction::InconsistentHeads),
        _ => None,
    }
}
