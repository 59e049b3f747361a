//! The one registry of message tags U = [system, protocol, step]
//! (ARCHITECTURE section 3). The CPO paper puts a unique tuple at the start
//! of every message "to make it impossible for an attacker to ever get an
//! identical message from different protocols"; agora extends it with the
//! system number, so that no message of one system is a message of another.
//!
//! Systems: 0 core (tests, evidence), 1 CPO, 2 SPEED, 3 STP, 4 lightweight
//! primitives, 5 exchange layer. Protocols and steps are numbered as in each
//! system's paper, from 1. A tag not listed in [`ALL`] is refused by every
//! decoder ([`crate::DecodeError::UnknownTag`]).

use super::Tag;

/// System 0: agora's own core messages (tests, evidence archive).
pub const SYSTEM_CORE: u8 = 0;
/// System 1: Contingent Purchase Orders.
pub const SYSTEM_CPO: u8 = 1;
/// System 2: SPEED.
pub const SYSTEM_SPEED: u8 = 2;
/// System 3: STP.
pub const SYSTEM_STP: u8 = 3;
/// System 4: lightweight primitives.
pub const SYSTEM_LIGHTWEIGHT: u8 = 4;
/// System 5: the exchange layer.
pub const SYSTEM_EXCHANGE: u8 = 5;

// ---- System 0: core -------------------------------------------------------

/// Core protocol 0 (tests and connectivity), step 1: a ping.
pub const TEST_PING: Tag = Tag::new(SYSTEM_CORE, 0, 1);
/// Core protocol 0, step 2: the answer to a ping.
pub const TEST_PONG: Tag = Tag::new(SYSTEM_CORE, 0, 2);
/// Core protocol 1 (evidence archive), step 1: an archived piece of evidence.
pub const EVIDENCE_ENTRY: Tag = Tag::new(SYSTEM_CORE, 1, 1);

// ---- System 1: CPO (paper 000, protocols 1-6 as numbered there) ------------

/// CPO protocol 1 (arbiter's approval), step 1, Bob to Alice:
/// `X_0 = U_0, CCPO, ID_S, R_0, Additional Terms`.
pub const CPO_ARBITER_REQUEST: Tag = Tag::new(SYSTEM_CPO, 1, 1);
/// CPO protocol 1, step 2, Alice to Bob: `X_1 = U_1, hash(X_0), R_1`.
pub const CPO_ARBITER_CHALLENGE: Tag = Tag::new(SYSTEM_CPO, 1, 2);
/// CPO protocol 1, step 3, Bob to Alice: `X_2 = U_2, hash(X_1)`.
pub const CPO_ARBITER_RESPONSE: Tag = Tag::new(SYSTEM_CPO, 1, 3);
/// CPO protocol 1, step 4, Alice to Bob:
/// `X_3 = U_3, hash(X_2), T_3, CCPO, ID_S`, kept as ARBITER_ACCEPTANCE.
pub const CPO_ARBITER_ACCEPTANCE: Tag = Tag::new(SYSTEM_CPO, 1, 4);

/// CPO protocol 2 (posting), step 1, Bob to the Server:
/// `X_0 = U_0, R_0, ARBITER_ACCEPTANCE`.
pub const CPO_POST_REQUEST: Tag = Tag::new(SYSTEM_CPO, 2, 1);
/// CPO protocol 2, step 2, Server to Bob: `X_1 = U_1, hash(X_0), R_1`.
pub const CPO_POST_CHALLENGE: Tag = Tag::new(SYSTEM_CPO, 2, 2);
/// CPO protocol 2, step 3, Bob to the Server: `X_2 = U_2, hash(X_1)`.
pub const CPO_POST_RESPONSE: Tag = Tag::new(SYSTEM_CPO, 2, 3);
/// CPO protocol 2, step 4, Server to Bob: `CPO = U_3, hash(X_2), CCPO`, the
/// posted CPO (Bob's receipt).
pub const CPO_POSTED: Tag = Tag::new(SYSTEM_CPO, 2, 4);

/// CPO protocol 3 (browsing), step 1, Pam to the Server:
/// `X_0 = U_0, R_0, T, BC_P`.
pub const CPO_BROWSE_REQUEST: Tag = Tag::new(SYSTEM_CPO, 3, 1);
/// CPO protocol 3, step 2, Server to Pam: `X_1 = U_1, hash(X_0), R_1`.
pub const CPO_BROWSE_CHALLENGE: Tag = Tag::new(SYSTEM_CPO, 3, 2);
/// CPO protocol 3, step 3, Pam to the Server: `X_2 = U_2, hash(X_1)`.
pub const CPO_BROWSE_RESPONSE: Tag = Tag::new(SYSTEM_CPO, 3, 3);
/// CPO protocol 3, step 4, Server to Pam: `X_3 = U_3, hash(X_2), T, K_p`,
/// the binding key for the session.
pub const CPO_BROWSE_GRANT: Tag = Tag::new(SYSTEM_CPO, 3, 4);
/// CPO protocol 3, step 5 (not numbered in the paper, which suggests it in
/// section 4.3, attack 4): Pam ends her session under `Auth_{K_p}`, which
/// takes K_p out of action.
pub const CPO_BROWSE_END: Tag = Tag::new(SYSTEM_CPO, 3, 5);

/// CPO protocol 4 (binding), step 1, Server to Pam, under `Auth_{K_p}`:
/// `X_0 = U_0, R_0, CPO description`.
pub const CPO_BIND_LISTING: Tag = Tag::new(SYSTEM_CPO, 4, 1);
/// CPO protocol 4, step 2, Pam to the Server, under `Auth_{K_p}`:
/// `X_1 = U_1, hash(X_0), R_1, Offer Details`.
pub const CPO_BIND_OFFER: Tag = Tag::new(SYSTEM_CPO, 4, 2);
/// CPO protocol 4, step 3, Server to Pam:
/// `X_2 = U_2, hash(X_1), BC_P, T, CPO, Offer Details`, kept as BOUND_CPO.
pub const CPO_BOUND_CPO: Tag = Tag::new(SYSTEM_CPO, 4, 3);
/// CPO protocol 4, agora's addition: the buyer asks the server for the
/// binding of his CPO, signed with his bond key.
pub const CPO_BINDING_REQUEST: Tag = Tag::new(SYSTEM_CPO, 4, 4);
/// CPO protocol 4, agora's addition: the server's answer, sealed to the
/// buyer: the BOUND_CPO (or, for bidding, the winner's notice).
pub const CPO_BINDING_REPLY: Tag = Tag::new(SYSTEM_CPO, 4, 5);
/// CPO protocol 4, agora's addition: a seller asks, under `Auth_{K_p}`, for
/// the BOUND_CPO of a binding she won but whose reply she lost.
pub const CPO_SELLER_BINDING_QUERY: Tag = Tag::new(SYSTEM_CPO, 4, 6);
/// CPO protocol 4, agora's addition: the server's answer to it, on the
/// session's channel.
pub const CPO_SELLER_BINDING_ANSWER: Tag = Tag::new(SYSTEM_CPO, 4, 7);
/// CPO protocols 4 and 6, agora's addition for the network: a seller asks,
/// under `Auth_{K_p}`, for the step-1 listing of one CPO (the paper's server
/// "sends" it while she browses; over HTTP she pulls it).
pub const CPO_LISTING_REQUEST: Tag = Tag::new(SYSTEM_CPO, 4, 8);

/// CPO protocol 5 (arbiter's approval for bidding), step 1: as
/// [`CPO_ARBITER_REQUEST`] with protocol 5.
pub const CPO_BID_ARBITER_REQUEST: Tag = Tag::new(SYSTEM_CPO, 5, 1);
/// CPO protocol 5, step 2: as [`CPO_ARBITER_CHALLENGE`].
pub const CPO_BID_ARBITER_CHALLENGE: Tag = Tag::new(SYSTEM_CPO, 5, 2);
/// CPO protocol 5, step 3: as [`CPO_ARBITER_RESPONSE`].
pub const CPO_BID_ARBITER_RESPONSE: Tag = Tag::new(SYSTEM_CPO, 5, 3);
/// CPO protocol 5, step 4: as [`CPO_ARBITER_ACCEPTANCE`], for a CPO that
/// takes bids.
pub const CPO_BID_ARBITER_ACCEPTANCE: Tag = Tag::new(SYSTEM_CPO, 5, 4);

/// CPO protocol 6 (bidding), step 1, Server to Pam, under `Auth_{K_p}`:
/// `X_0 = U_0, R_0, CPO description`.
pub const CPO_BID_LISTING: Tag = Tag::new(SYSTEM_CPO, 6, 1);
/// CPO protocol 6, step 2, Pam to the Server, under `Auth_{K_p}`:
/// `X_1 = U_1, hash(X_0), R_1, Bid Details`.
pub const CPO_BID: Tag = Tag::new(SYSTEM_CPO, 6, 2);
/// CPO protocol 6, step 3, Server to Pam:
/// `X_2 = U_2, hash(X_1), BC_P, T, T_Response, CPO, Bid Details`, kept as
/// BID_RECEIPT.
pub const CPO_BID_RECEIPT: Tag = Tag::new(SYSTEM_CPO, 6, 3);
/// CPO protocol 6, step 5 (paper 3.10: "the Server presents these to the
/// Arbiter"): the server hands the bids of a closed CPO to the arbiter.
pub const CPO_BID_AWARD_REQUEST: Tag = Tag::new(SYSTEM_CPO, 6, 4);
/// CPO protocol 6, step 5: the arbiter's signed choice of the best bid.
pub const CPO_BID_AWARD: Tag = Tag::new(SYSTEM_CPO, 6, 5);
/// CPO protocol 6, step 5: "The winning bid is notified, as are all losing
/// bids": the server's signed notice to each bidder.
pub const CPO_BID_NOTICE: Tag = Tag::new(SYSTEM_CPO, 6, 6);

/// CPO delivery (paper section 3.11; agora numbers it protocol 7), step 1:
/// the buyer's (or an intermediary's) challenge to the seller of a
/// BOUND_CPO.
pub const CPO_PROOF_CHALLENGE: Tag = Tag::new(SYSTEM_CPO, 7, 1);
/// CPO delivery, step 2: the seller's answer, signed with the key of BC_P.
pub const CPO_PROOF: Tag = Tag::new(SYSTEM_CPO, 7, 2);

/// Every registered tag with its name. The one place a tag is defined.
pub const ALL: &[(Tag, &str)] = &[
    (TEST_PING, "TEST_PING"),
    (TEST_PONG, "TEST_PONG"),
    (EVIDENCE_ENTRY, "EVIDENCE_ENTRY"),
    (CPO_ARBITER_REQUEST, "CPO_ARBITER_REQUEST"),
    (CPO_ARBITER_CHALLENGE, "CPO_ARBITER_CHALLENGE"),
    (CPO_ARBITER_RESPONSE, "CPO_ARBITER_RESPONSE"),
    (CPO_ARBITER_ACCEPTANCE, "CPO_ARBITER_ACCEPTANCE"),
    (CPO_POST_REQUEST, "CPO_POST_REQUEST"),
    (CPO_POST_CHALLENGE, "CPO_POST_CHALLENGE"),
    (CPO_POST_RESPONSE, "CPO_POST_RESPONSE"),
    (CPO_POSTED, "CPO_POSTED"),
    (CPO_BROWSE_REQUEST, "CPO_BROWSE_REQUEST"),
    (CPO_BROWSE_CHALLENGE, "CPO_BROWSE_CHALLENGE"),
    (CPO_BROWSE_RESPONSE, "CPO_BROWSE_RESPONSE"),
    (CPO_BROWSE_GRANT, "CPO_BROWSE_GRANT"),
    (CPO_BROWSE_END, "CPO_BROWSE_END"),
    (CPO_BIND_LISTING, "CPO_BIND_LISTING"),
    (CPO_BIND_OFFER, "CPO_BIND_OFFER"),
    (CPO_BOUND_CPO, "CPO_BOUND_CPO"),
    (CPO_BINDING_REQUEST, "CPO_BINDING_REQUEST"),
    (CPO_BINDING_REPLY, "CPO_BINDING_REPLY"),
    (CPO_SELLER_BINDING_QUERY, "CPO_SELLER_BINDING_QUERY"),
    (CPO_SELLER_BINDING_ANSWER, "CPO_SELLER_BINDING_ANSWER"),
    (CPO_LISTING_REQUEST, "CPO_LISTING_REQUEST"),
    (CPO_BID_ARBITER_REQUEST, "CPO_BID_ARBITER_REQUEST"),
    (CPO_BID_ARBITER_CHALLENGE, "CPO_BID_ARBITER_CHALLENGE"),
    (CPO_BID_ARBITER_RESPONSE, "CPO_BID_ARBITER_RESPONSE"),
    (CPO_BID_ARBITER_ACCEPTANCE, "CPO_BID_ARBITER_ACCEPTANCE"),
    (CPO_BID_LISTING, "CPO_BID_LISTING"),
    (CPO_BID, "CPO_BID"),
    (CPO_BID_RECEIPT, "CPO_BID_RECEIPT"),
    (CPO_BID_AWARD_REQUEST, "CPO_BID_AWARD_REQUEST"),
    (CPO_BID_AWARD, "CPO_BID_AWARD"),
    (CPO_BID_NOTICE, "CPO_BID_NOTICE"),
    (CPO_PROOF_CHALLENGE, "CPO_PROOF_CHALLENGE"),
    (CPO_PROOF, "CPO_PROOF"),
];

/// The registered name of `tag`, if any.
pub fn lookup(tag: Tag) -> Option<&'static str> {
    ALL.iter().find(|(t, _)| *t == tag).map(|(_, n)| *n)
}

/// Whether `tag` is in the registry.
pub fn is_registered(tag: Tag) -> bool {
    lookup(tag).is_some()
}

/// The registered tag named `name`, if any (for tools and logs).
pub fn by_name(name: &str) -> Option<Tag> {
    ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tags_and_names_are_unique() {
        let tags: HashSet<Tag> = ALL.iter().map(|(t, _)| *t).collect();
        let names: HashSet<&str> = ALL.iter().map(|(_, n)| *n).collect();
        assert_eq!(tags.len(), ALL.len(), "a tag is registered twice");
        assert_eq!(names.len(), ALL.len(), "a name is registered twice");
    }

    #[test]
    fn numbering_follows_the_papers() {
        for (t, n) in ALL {
            assert!(t.system <= SYSTEM_EXCHANGE, "{n}");
            assert!(t.step >= 1, "{n}: steps count from 1");
            if t.system == SYSTEM_CPO {
                assert!(n.starts_with("CPO_"), "{n}");
                // Protocols 1-6 as the paper numbers them; 7 is agora's
                // delivery proof (paper section 3.11 gives it no number).
                assert!((1..=7).contains(&t.protocol), "{n}: CPO protocols are 1-7");
            }
            assert_eq!(lookup(*t), Some(*n));
            assert_eq!(by_name(n), Some(*t));
        }
        assert_eq!(CPO_ARBITER_ACCEPTANCE, Tag::new(1, 1, 4));
        assert_eq!(CPO_BID_RECEIPT, Tag::new(1, 6, 3));
        assert_eq!(CPO_PROOF, Tag::new(1, 7, 2));
        assert!(!is_registered(Tag::new(1, 8, 1)));
        assert!(!is_registered(Tag::new(9, 9, 9)));
    }
}
