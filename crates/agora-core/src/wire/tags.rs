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
/// CPO protocol 2, agora's addition (found by agora-sim): the buyer whose
/// posted CPO was lost on the way asks the server for it, signed with his
/// bond key.
pub const CPO_POSTED_REQUEST: Tag = Tag::new(SYSTEM_CPO, 2, 5);
/// CPO protocol 2, agora's addition: the server's answer, sealed to the
/// buyer: the posted CPO as the server signed it.
pub const CPO_POSTED_REPLY: Tag = Tag::new(SYSTEM_CPO, 2, 6);

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
/// CPO protocols 4 and 6, agora's addition for the network: a seller asks,
/// under `Auth_{K_p}`, for the step-1 listings of a page of CPOs at once.
pub const CPO_LISTINGS_REQUEST: Tag = Tag::new(SYSTEM_CPO, 4, 9);
/// CPO protocols 4 and 6, agora's addition: the server's answer, under
/// `Auth_{K_p}`: per CPO asked for, its listing or why there is none.
pub const CPO_LISTINGS: Tag = Tag::new(SYSTEM_CPO, 4, 10);

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
/// CPO protocol 6, agora's addition (found by agora-sim): a bidder whose
/// BID_RECEIPT was lost on the way asks the server for her receipts on one
/// CPO, signed with the key of her bond.
pub const CPO_BIDS_REQUEST: Tag = Tag::new(SYSTEM_CPO, 6, 7);
/// CPO protocol 6, agora's addition: the server's answer, sealed to the
/// bidder: every BID_RECEIPT of hers on that CPO, as the server signed them.
pub const CPO_BIDS_REPLY: Tag = Tag::new(SYSTEM_CPO, 6, 8);

/// CPO delivery (paper section 3.11; agora numbers it protocol 7), step 1:
/// the buyer's (or an intermediary's) challenge to the seller of a
/// BOUND_CPO.
pub const CPO_PROOF_CHALLENGE: Tag = Tag::new(SYSTEM_CPO, 7, 1);
/// CPO delivery, step 2: the seller's answer, signed with the key of BC_P.
pub const CPO_PROOF: Tag = Tag::new(SYSTEM_CPO, 7, 2);

/// SPEED normal mode (paper section 4.2), message 1: the customer's signed
/// NegotiationRequest, sealed to the vendor.
pub const SPEED_NEGOTIATION_REQUEST: Tag = Tag::new(SYSTEM_SPEED, 1, 1);
/// SPEED normal mode, message 2: a NegotiationStep, MAC'd under SignKey and
/// encrypted under EnKey (either party).
pub const SPEED_NEGOTIATION_STEP: Tag = Tag::new(SYSTEM_SPEED, 1, 2);
/// SPEED normal mode, message 3: the customer's signed Handshake under EnKey.
pub const SPEED_HANDSHAKE: Tag = Tag::new(SYSTEM_SPEED, 1, 3);
/// SPEED normal mode, message 4: CipheredProductDelivery (the signed bill
/// under EnKey; the product follows as a STREAM).
pub const SPEED_PRODUCT_DELIVERY: Tag = Tag::new(SYSTEM_SPEED, 1, 4);
/// SPEED, message 5 (both modes): the customer's signed PaymentOrder, sealed
/// to the broker: the point of no return.
pub const SPEED_PAYMENT_ORDER: Tag = Tag::new(SYSTEM_SPEED, 1, 5);
/// SPEED, message 6 (both modes): the broker's signed PurchaseReceipt under
/// RecKey.
pub const SPEED_PURCHASE_RECEIPT: Tag = Tag::new(SYSTEM_SPEED, 1, 6);
/// SPEED e-purse payment, message a: the broker's S2 under BEncKey/BSignKey.
pub const SPEED_PURSE_DEBIT: Tag = Tag::new(SYSTEM_SPEED, 1, 7);
/// SPEED e-purse payment, message b: the card's S3 under BEncKey/BSignKey.
pub const SPEED_PURSE_CONFIRM: Tag = Tag::new(SYSTEM_SPEED, 1, 8);
/// SPEED: the Bill, signed by the vendor (inside messages 4 and 5).
pub const SPEED_BILL: Tag = Tag::new(SYSTEM_SPEED, 1, 9);
/// SPEED: {AccountNumber, K}_B, the part of the bill sealed to the broker.
pub const SPEED_BILL_SECRET: Tag = Tag::new(SYSTEM_SPEED, 1, 10);
/// SPEED aggressive mode (paper section 4.3), message 1: the customer's
/// signed ProductRequest, sealed to the vendor.
pub const SPEED_PRODUCT_REQUEST: Tag = Tag::new(SYSTEM_SPEED, 2, 1);
/// SPEED aggressive mode, message 2: CipheredProductDelivery with the signed
/// bill sealed to the customer.
pub const SPEED_AGGRESSIVE_DELIVERY: Tag = Tag::new(SYSTEM_SPEED, 2, 2);
/// SPEED e-purse loading: the customer's signed request, sealed to the
/// broker, to move value from her account onto her card (with the card's
/// S1); the broker answers with the SAM's load command.
pub const SPEED_CARD_LOAD_REQUEST: Tag = Tag::new(SYSTEM_SPEED, 4, 1);
/// SPEED receipts (paper section 5.7): anyone's request for the receipt of a
/// PaymentOrderID; the broker resends the sealed receipt.
pub const SPEED_RECEIPT_REQUEST: Tag = Tag::new(SYSTEM_SPEED, 5, 1);
/// SPEED complaints (paper section 5.7): the customer's signed complaint.
pub const SPEED_COMPLAINT: Tag = Tag::new(SYSTEM_SPEED, 5, 2);
/// SPEED complaints: the broker's signed ruling.
pub const SPEED_RULING: Tag = Tag::new(SYSTEM_SPEED, 5, 3);
/// SPEED balance: the customer's signed question for the balance of her
/// account, sealed to the broker, with the key for the answer.
pub const SPEED_BALANCE_REQUEST: Tag = Tag::new(SYSTEM_SPEED, 5, 4);
/// SPEED balance: the broker's signed answer, sealed under the request's
/// reply key.
pub const SPEED_BALANCE: Tag = Tag::new(SYSTEM_SPEED, 5, 5);

// ---- System 2, protocol 6: the e-purse card and the broker's SAM ---------
// (paper section 2, CEN WG10; ARCHITECTURE section 2). These travel MAC'd
// under the card's diversified key, S1 inside the PaymentOrder, S2 and S3
// inside messages a and b.

/// SPEED e-purse, S1: the card authenticates itself (card id, currency,
/// balance, transaction counter, fresh card nonce), MAC'd by the card.
pub const SPEED_PURSE_CARD_AUTH: Tag = Tag::new(SYSTEM_SPEED, 6, 1);
/// SPEED e-purse, S2: the SAM's debit command (answers one S1: card nonce,
/// counter, amount, PaymentOrderID, SAM nonce), MAC'd by the SAM.
pub const SPEED_PURSE_DEBIT_COMMAND: Tag = Tag::new(SYSTEM_SPEED, 6, 2);
/// SPEED e-purse, S3: the card's confirmation of a debit (new counter, new
/// balance, amount, PaymentOrderID, SAM nonce), MAC'd by the card.
pub const SPEED_PURSE_DEBIT_CONFIRMATION: Tag = Tag::new(SYSTEM_SPEED, 6, 3);
/// SPEED e-purse, load: the SAM's command to add value to the card.
pub const SPEED_PURSE_LOAD_COMMAND: Tag = Tag::new(SYSTEM_SPEED, 6, 4);
/// SPEED e-purse, load: the card's confirmation of a load.
pub const SPEED_PURSE_LOAD_CONFIRMATION: Tag = Tag::new(SYSTEM_SPEED, 6, 5);

// ---- System 3: STP (paper 002; the message set of ARCHITECTURE section 6) --

/// STP protocol 1 (a subtransaction), step 1, P to Q: Begin, signed by P:
/// the TID, the pair, P's certificate, the transaction's deadline and the
/// commit authority. Opens a new transaction.
pub const STP_BEGIN: Tag = Tag::new(SYSTEM_STP, 1, 1);
/// STP protocol 1, step 1 of a later subtransaction, P to R: Join, signed by
/// P, who brings R into a transaction in which P's own subtransaction `via`
/// is undecided.
pub const STP_JOIN: Tag = Tag::new(SYSTEM_STP, 1, 2);
/// STP protocol 1, step 2, each of the pair to the CA: Vote, signed: accept
/// or reject the subtransaction the Begin or Join opens.
pub const STP_VOTE: Tag = Tag::new(SYSTEM_STP, 1, 3);
/// STP protocol 1, step 3, CA to each of the pair: Started, signed by the
/// CA: the status, the other's signed vote (its certificate and key share)
/// and who holds the send token.
pub const STP_STARTED: Tag = Tag::new(SYSTEM_STP, 1, 4);
/// STP protocol 1, step 4, token holder to peer: Data, signed over the TID,
/// the pair, the sequence number, the previous context, the sealed payload
/// and the token flag.
pub const STP_DATA: Tag = Tag::new(SYSTEM_STP, 1, 5);
/// STP protocol 1, step 5, token holder to peer: End, signed: no more data.
pub const STP_END: Tag = Tag::new(SYSTEM_STP, 1, 6);
/// STP protocol 1, step 6, each of the pair to the CA: Decide, signed:
/// commit with the final context, or abort.
pub const STP_DECIDE: Tag = Tag::new(SYSTEM_STP, 1, 7);
/// STP protocol 1, step 7, CA to all: Outcome: the decided transaction's
/// leaf in the CA's log, its inclusion proof and the signed tree head.
pub const STP_OUTCOME: Tag = Tag::new(SYSTEM_STP, 1, 8);
/// STP protocol 1, anyone to the CA: Status of a transaction.
pub const STP_STATUS: Tag = Tag::new(SYSTEM_STP, 1, 9);
/// STP protocol 1, CA to whoever asked: Pending, signed by the CA: the
/// transaction is not decided yet (an answer to a Status, a Vote or a
/// Decide that decides nothing yet).
pub const STP_PENDING: Tag = Tag::new(SYSTEM_STP, 1, 10);

/// STP protocol 2 (the CA's transparency log), a leaf: a decided
/// transaction's outcome record.
pub const STP_OUTCOME_LEAF: Tag = Tag::new(SYSTEM_STP, 2, 1);
/// STP protocol 2: a tree head (size, RFC 9162 root, time), signed by the CA.
pub const STP_TREE_HEAD: Tag = Tag::new(SYSTEM_STP, 2, 2);
/// STP protocol 2: a consistency proof between two tree heads.
pub const STP_CONSISTENCY: Tag = Tag::new(SYSTEM_STP, 2, 3);

/// STP protocol 3 (escrow), step 1, depositor to the escrow: Deposit, signed:
/// an item held for a transaction, to be released to a named party.
pub const STP_ESCROW_DEPOSIT: Tag = Tag::new(SYSTEM_STP, 3, 1);
/// STP protocol 3, step 2, escrow to depositor: the signed receipt of a
/// deposit.
pub const STP_ESCROW_RECEIPT: Tag = Tag::new(SYSTEM_STP, 3, 2);
/// STP protocol 3, step 3, recipient or depositor to the escrow: Claim,
/// signed, with the transaction's Outcome.
pub const STP_ESCROW_CLAIM: Tag = Tag::new(SYSTEM_STP, 3, 3);
/// STP protocol 3, step 4, escrow to claimant: Release, signed: the item,
/// released against a committed outcome or returned on abort.
pub const STP_ESCROW_RELEASE: Tag = Tag::new(SYSTEM_STP, 3, 4);

/// STP protocol 4 (verifiable causality): a proof bundle: a subtransaction's
/// signed messages, the CA's outcome, its inclusion proof and tree head.
pub const STP_PROOF_BUNDLE: Tag = Tag::new(SYSTEM_STP, 4, 1);

// ---- System 4: lightweight primitives (paper 004, section 3) ------------
// The body sealed inside a step (under K or K_t) carries the step's own tag:
// the AEAD's associated data and the MAC'd payload bind it, so no body can be
// moved to another step.

/// Lightweight protocol 1 (SKEP), step 1, client to vendor: the client's ids
/// and `K ‖ N_C`, HPKE-sealed to the vendor's X25519 key.
pub const LITE_SKEP_HELLO: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 1, 1);
/// SKEP, step 2, vendor to client: `{id_C, id_V, N_C, N_V}`, encrypted and
/// MAC'd under K.
pub const LITE_SKEP_CHALLENGE: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 1, 2);
/// SKEP, step 3, client to vendor: `id_C` and `{id_C, id_V, N_V, S_C}`
/// encrypted and MAC'd under K.
pub const LITE_SKEP_CONFIRM: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 1, 3);
/// SKEP with non-repudiation, step 4, vendor to client: the vendor's signed
/// receipt of the subscription, encrypted under K.
pub const LITE_SKEP_RECEIPT: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 1, 4);
/// Lightweight protocol 2 (SDDP), step 1, client to vendor: `id_C`, the
/// time unit and the request, encrypted and MAC'd under `K_t`.
pub const LITE_SDDP_REQUEST: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 2, 1);
/// SDDP, step 2, vendor to client: `{N_C, data}` encrypted and MAC'd under
/// `K_t`.
pub const LITE_SDDP_REPLY: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 2, 2);
/// Lightweight protocol 3 (EDDP), step 1, client to vendor: `id_C`.
pub const LITE_EDDP_HELLO: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 3, 1);
/// EDDP, step 2, vendor to client: the challenge `N_V`.
pub const LITE_EDDP_CHALLENGE: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 3, 2);
/// EDDP, step 3, client to vendor: `id_C`, the time unit and
/// `{id_C, id_V, N_V, N_C, request, ack}` encrypted and MAC'd under `K_t`.
pub const LITE_EDDP_REQUEST: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 3, 3);
/// EDDP, step 4, vendor to client: `{N_C, data, next N_V}` encrypted and
/// MAC'd under `K_t`.
pub const LITE_EDDP_REPLY: Tag = Tag::new(SYSTEM_LIGHTWEIGHT, 3, 4);

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
    (CPO_POSTED_REQUEST, "CPO_POSTED_REQUEST"),
    (CPO_POSTED_REPLY, "CPO_POSTED_REPLY"),
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
    (CPO_LISTINGS_REQUEST, "CPO_LISTINGS_REQUEST"),
    (CPO_LISTINGS, "CPO_LISTINGS"),
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
    (CPO_BIDS_REQUEST, "CPO_BIDS_REQUEST"),
    (CPO_BIDS_REPLY, "CPO_BIDS_REPLY"),
    (CPO_PROOF_CHALLENGE, "CPO_PROOF_CHALLENGE"),
    (CPO_PROOF, "CPO_PROOF"),
    (SPEED_NEGOTIATION_REQUEST, "SPEED_NEGOTIATION_REQUEST"),
    (SPEED_NEGOTIATION_STEP, "SPEED_NEGOTIATION_STEP"),
    (SPEED_HANDSHAKE, "SPEED_HANDSHAKE"),
    (SPEED_PRODUCT_DELIVERY, "SPEED_PRODUCT_DELIVERY"),
    (SPEED_PAYMENT_ORDER, "SPEED_PAYMENT_ORDER"),
    (SPEED_PURCHASE_RECEIPT, "SPEED_PURCHASE_RECEIPT"),
    (SPEED_PURSE_DEBIT, "SPEED_PURSE_DEBIT"),
    (SPEED_PURSE_CONFIRM, "SPEED_PURSE_CONFIRM"),
    (SPEED_BILL, "SPEED_BILL"),
    (SPEED_BILL_SECRET, "SPEED_BILL_SECRET"),
    (SPEED_PRODUCT_REQUEST, "SPEED_PRODUCT_REQUEST"),
    (SPEED_AGGRESSIVE_DELIVERY, "SPEED_AGGRESSIVE_DELIVERY"),
    (SPEED_CARD_LOAD_REQUEST, "SPEED_CARD_LOAD_REQUEST"),
    (SPEED_RECEIPT_REQUEST, "SPEED_RECEIPT_REQUEST"),
    (SPEED_COMPLAINT, "SPEED_COMPLAINT"),
    (SPEED_RULING, "SPEED_RULING"),
    (SPEED_BALANCE_REQUEST, "SPEED_BALANCE_REQUEST"),
    (SPEED_BALANCE, "SPEED_BALANCE"),
    (SPEED_PURSE_CARD_AUTH, "SPEED_PURSE_CARD_AUTH"),
    (SPEED_PURSE_DEBIT_COMMAND, "SPEED_PURSE_DEBIT_COMMAND"),
    (
        SPEED_PURSE_DEBIT_CONFIRMATION,
        "SPEED_PURSE_DEBIT_CONFIRMATION",
    ),
    (SPEED_PURSE_LOAD_COMMAND, "SPEED_PURSE_LOAD_COMMAND"),
    (
        SPEED_PURSE_LOAD_CONFIRMATION,
        "SPEED_PURSE_LOAD_CONFIRMATION",
    ),
    (STP_BEGIN, "STP_BEGIN"),
    (STP_JOIN, "STP_JOIN"),
    (STP_VOTE, "STP_VOTE"),
    (STP_STARTED, "STP_STARTED"),
    (STP_DATA, "STP_DATA"),
    (STP_END, "STP_END"),
    (STP_DECIDE, "STP_DECIDE"),
    (STP_OUTCOME, "STP_OUTCOME"),
    (STP_STATUS, "STP_STATUS"),
    (STP_PENDING, "STP_PENDING"),
    (STP_OUTCOME_LEAF, "STP_OUTCOME_LEAF"),
    (STP_TREE_HEAD, "STP_TREE_HEAD"),
    (STP_CONSISTENCY, "STP_CONSISTENCY"),
    (STP_ESCROW_DEPOSIT, "STP_ESCROW_DEPOSIT"),
    (STP_ESCROW_RECEIPT, "STP_ESCROW_RECEIPT"),
    (STP_ESCROW_CLAIM, "STP_ESCROW_CLAIM"),
    (STP_ESCROW_RELEASE, "STP_ESCROW_RELEASE"),
    (STP_PROOF_BUNDLE, "STP_PROOF_BUNDLE"),
    (LITE_SKEP_HELLO, "LITE_SKEP_HELLO"),
    (LITE_SKEP_CHALLENGE, "LITE_SKEP_CHALLENGE"),
    (LITE_SKEP_CONFIRM, "LITE_SKEP_CONFIRM"),
    (LITE_SKEP_RECEIPT, "LITE_SKEP_RECEIPT"),
    (LITE_SDDP_REQUEST, "LITE_SDDP_REQUEST"),
    (LITE_SDDP_REPLY, "LITE_SDDP_REPLY"),
    (LITE_EDDP_HELLO, "LITE_EDDP_HELLO"),
    (LITE_EDDP_CHALLENGE, "LITE_EDDP_CHALLENGE"),
    (LITE_EDDP_REQUEST, "LITE_EDDP_REQUEST"),
    (LITE_EDDP_REPLY, "LITE_EDDP_REPLY"),
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
        for (t, n) in ALL.iter().filter(|(t, _)| t.system == SYSTEM_LIGHTWEIGHT) {
            assert!(n.starts_with("LITE_"), "{n}");
            // SKEP 1 (steps 1-4), SDDP 2 (steps 1-2), EDDP 3 (steps 1-4).
            let steps = match t.protocol {
                1 | 3 => 4,
                2 => 2,
                _ => 0,
            };
            assert!((1..=steps).contains(&t.step), "{n}");
        }
    }
}
