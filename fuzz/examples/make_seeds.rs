//! Writes one valid input per fuzz target into fuzz/seeds/<target>/ (the
//! seeds are committed; run again only when a format changes):
//!   cargo run --example make_seeds
//! Keys are the fixed ones the targets use, so seeds reach the deep paths.
use agora_core::crypto::{MacKey, SigningKey, X25519Secret};
use agora_core::wire::{self, cose, envelope, Ping};
use agora_core::{Currency, KeyId, Money, Timestamp};
use rand_chacha::rand_core::SeedableRng;
use std::path::Path;

#[path = "../fuzz_targets/cpo_fixture.rs"]
mod cpo_fixture;
#[path = "../fuzz_targets/lite_fixture.rs"]
mod lite_fixture;
#[path = "../fuzz_targets/speed_fixture.rs"]
mod speed_fixture;
#[path = "../fuzz_targets/stp_fixture.rs"]
mod stp_fixture;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(dir.join(target)).expect("seed directory");
        std::fs::write(dir.join(target).join(name), bytes).expect("write seed");
    };
    let ping = Ping {
        nonce: [1; 32],
        sent_at: Timestamp(1_790_000_000),
        sender: KeyId([2; 32]),
        amount: Some(Money::new(12_345, Currency::new("EUR").expect("EUR"))),
        note: "seed".into(),
        data: vec![0, 1, 2, 3],
    };
    put("wire_message", "ping", &wire::encode(&ping));
    let signer = SigningKey::from_seed(&[7; 32]);
    put("cose", "sign1_ping", &cose::sign(&signer, &ping));
    put(
        "cose",
        "mac0_ping",
        &cose::mac(&MacKey::new([9; 32]), &ping),
    );
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let sender = SigningKey::from_seed(&[5; 32]);
    let recipient = X25519Secret::from_bytes([3; 32]).public();
    let sealed = envelope::seal(&mut rng, &sender, &recipient, &ping).expect("seal");
    put("envelope", "ping", &sealed);

    let now = Timestamp(1_790_000_000);
    let agency = agora_pki::Agency::create(
        "seed agency",
        SigningKey::from_seed(&[11; 32]),
        now,
        now.plus_secs(86_400),
        &mut rng,
    )
    .expect("agency");
    let holder = SigningKey::from_seed(&[12; 32]);
    let bond = agency
        .issue_bond(
            &agora_pki::BondParams {
                holder: holder.verifying_key(),
                holder_x25519: X25519Secret::from_bytes([13; 32]).public(),
                amount: Money::new(50_000, Currency::new("EUR").expect("EUR")),
                roles: vec![agora_pki::Role::Buyer],
                conditions: agora_pki::Conditions {
                    servers: vec![KeyId([14; 32])],
                    arbiters: vec![],
                },
                not_before: now,
                not_after: now.plus_secs(3_600),
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            &mut rng,
        )
        .expect("bond");
    put("certificate", "agency", agency.certificate_der());
    put("certificate", "bond", &bond.der);
    let crl = agency
        .issue_crl(&agora_pki::CrlParams {
            this_update: now,
            next_update: now.plus_secs(600),
            crl_number: 1,
            revoked: vec![agora_pki::Revocation {
                serial: bond.serial.clone(),
                revoked_at: now,
                reason: agora_pki::RevocationReason::KeyCompromise,
            }],
        })
        .expect("crl");
    put("certificate", "crl", crl.der());
    cpo_seeds(&put);
    session_seeds(&put);
    state_seeds(&put);
    bid_seeds(&put);
    delivery_seeds(&put);
    speed_seeds(&put);
    stp_seeds(&put);
    lite_seeds(&put);
    println!("seeds written to {}", dir.display());
}

/// Valid M_0 for the CPO targets, sealed to their fixed keys, and one of
/// each CPO message for the decoder target.
fn cpo_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_cpo::buyer;
    use agora_cpo::msg::{ArbiterRequest, PostChallenge, PostResponse, PostedCpo};
    use agora_cpo::{Bidding, FirstCome};
    use cpo_fixture::{keys, Market, BOB, NOW};
    let market = Market::new();
    let alice = market.arbiter();
    let server = market.server();
    let bob = keys(BOB);
    let mut rng = cpo_fixture::rng();
    let (m0, _) =
        buyer::request_approval::<Bidding>(&bob, &mut rng, market.ccpo(), "", &market.alice_peer())
            .expect("request");
    alice
        .handle_request::<Bidding>(&mut rng, NOW, &m0)
        .expect("the arbiter target accepts its seed");
    put("cpo_arbiter", "m0_bidding", &m0);
    // The full protocol 1 run, for an acceptance to post.
    let (m0, bob1) = buyer::request_approval::<FirstCome>(
        &bob,
        &mut rng,
        market.ccpo(),
        "arbiter-fee: 2.50 EUR",
        &market.alice_peer(),
    )
    .expect("request");
    put("cpo_arbiter", "m0_first_come", &m0);
    let (m1, pending) = alice
        .handle_request::<FirstCome>(&mut rng, NOW, &m0)
        .expect("the arbiter target accepts its seed");
    let (m2, bob1) = bob1.handle(&bob, &mut rng, &m1).expect("challenge");
    let issued = pending
        .handle_response(&alice, &mut rng, NOW, &m2)
        .expect("response");
    let acceptance = bob1.handle(&bob, NOW, &issued.reply).expect("acceptance");
    let (p0, _) = buyer::request_post(&bob, &mut rng, &acceptance, &market.server_peer())
        .expect("post request");
    server
        .handle_post_request(&mut rng, NOW, &p0)
        .expect("the server target accepts its seed");
    put("cpo_server", "m0", &p0);

    // The decoder target: one X of each shape.
    let x0 = ArbiterRequest::<FirstCome> {
        ccpo: market.ccpo(),
        server: market.server_peer().id(),
        r0: [1; 32],
        additional_terms: "arbiter-fee: 2.50 EUR".into(),
        variant: std::marker::PhantomData,
    };
    put("cpo_messages", "arbiter_request", &wire::encode(&x0));
    put(
        "cpo_messages",
        "arbiter_acceptance",
        &wire::encode(&issued.message),
    );
    let post = agora_cpo::msg::PostRequest {
        r0: [2; 32],
        acceptance: acceptance.signed.clone(),
    };
    put("cpo_messages", "post_request", &wire::encode(&post));
    let challenge = PostChallenge {
        x0_hash: [3; 32],
        r1: [4; 32],
    };
    put("cpo_messages", "post_challenge", &wire::encode(&challenge));
    put(
        "cpo_messages",
        "post_response",
        &wire::encode(&PostResponse { x1_hash: [5; 32] }),
    );
    let posted = PostedCpo {
        x2_hash: [6; 32],
        ccpo: market.ccpo(),
    };
    put("cpo_messages", "posted_cpo", &wire::encode(&posted));
}

/// Valid inputs for the protocol 3 and 4 targets (`cpo_browse`,
/// `cpo_bind`, `cpo_seller`): sealed to the server's fixed keys, or under the
/// fixture's fixed K_p; and one of each protocol 3 and 4 message for the
/// decoder target.
fn session_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_cpo::msg::{BrowseChallenge, BrowseGrant, BrowseRequest, BrowseResponse, EndSession};
    use agora_cpo::ports::EndOutcome;
    use agora_cpo::seller;
    use cpo_fixture::{keys, rng, Market, NOW, OFFER, PAM};
    let market = Market::new();
    let (from, until) = market.session_range();

    // Protocol 3, step 1.
    let (m0, _) = seller::request_session(
        &keys(PAM),
        &mut rng(),
        market.pam_bond.clone(),
        from,
        until,
        &market.server_peer(),
    )
    .expect("browse request");
    market
        .server()
        .handle_browse_request(&mut rng(), NOW, &m0)
        .expect("the browse target accepts its seed");
    put("cpo_browse", "m0", &m0);

    // Protocol 4 as the targets replay it: the fixture's listing, Pam's
    // offer made with a fresh fixed RNG, the server's BOUND_CPO.
    let (server, listing_m0) = market.bind_server();
    let pam = market.pam_seller_session();
    let listing = pam
        .open_listing(&listing_m0)
        .expect("the seller target accepts its listing");
    put("cpo_seller", "listing", &listing_m0);
    let (offer, expect) = pam.offer(&mut rng(), &listing, OFFER).expect("offer");
    let bound = server
        .handle_bind_offer(&mut rng(), NOW, &offer)
        .expect("the bind target accepts its seed");
    put("cpo_bind", "offer", &offer);
    let receipt = expect
        .handle(&pam, &bound.reply)
        .expect("the seller target accepts its BOUND_CPO");
    assert_eq!(receipt.signed, bound.signed);
    put("cpo_seller", "bound_cpo", &bound.reply);
    let end = pam.end(&mut rng());
    let (fresh, _) = market.bind_server();
    assert_eq!(
        fresh.handle_end_session(NOW, &end).expect("end"),
        EndOutcome::Ended,
        "the bind target accepts its end-session seed"
    );
    put("cpo_bind", "end_session", &end);

    // The decoder target.
    let x0 = BrowseRequest {
        r0: [8; 32],
        from,
        until,
        bond: market.pam_bond.clone(),
    };
    put("cpo_messages", "browse_request", &wire::encode(&x0));
    let x1 = BrowseChallenge {
        x0_hash: [9; 32],
        r1: [10; 32],
    };
    put("cpo_messages", "browse_challenge", &wire::encode(&x1));
    let x2 = BrowseResponse { x1_hash: [11; 32] };
    put("cpo_messages", "browse_response", &wire::encode(&x2));
    let x3 = BrowseGrant {
        x2_hash: [12; 32],
        from,
        until,
        k_p: [13; 32],
    };
    put("cpo_messages", "browse_grant", &wire::encode(&x3));
    let end = EndSession { session: pam.id() };
    put("cpo_messages", "end_session", &wire::encode(&end));
    put(
        "cpo_messages",
        "bind_listing",
        &wire::encode(&listing.message),
    );
    let x1 = agora_cpo::msg::BindOffer {
        x0_hash: [14; 32],
        r1: [15; 32],
        offer: OFFER.into(),
    };
    put("cpo_messages", "bind_offer", &wire::encode(&x1));
    put("cpo_messages", "bound_cpo", &wire::encode(&bound.message));
}

/// One approval run of variant `V` (protocol 1 or 5) for the saved-state
/// target: the buyer's and the arbiter's states on the way, each checked to
/// load and save again unchanged; returns Bob's acceptance.
fn approval_states<V: agora_cpo::Variant>(
    put: &impl Fn(&str, &str, &[u8]),
    name: &str,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> agora_cpo::buyer::Acceptance {
    use agora_cpo::arbiter::PendingApproval;
    use agora_cpo::buyer::{self, ExpectArbiterAcceptance, ExpectArbiterChallenge};
    use cpo_fixture::{keys, Market, BOB, NOW};
    let market = Market::new();
    let alice = market.arbiter();
    let bob = keys(BOB);
    let (m0, s1) = buyer::request_approval::<V>(&bob, rng, market.ccpo(), "", &market.alice_peer())
        .expect("request");
    let b = s1.to_bytes();
    let loaded = ExpectArbiterChallenge::<V>::from_bytes(&b).expect("the states target loads it");
    assert_eq!(loaded.to_bytes(), b);
    put(
        "cpo_states",
        &format!("expect_arbiter_challenge_{name}"),
        &b,
    );
    let (m1, pending) = alice.handle_request::<V>(rng, NOW, &m0).expect("request");
    let b = pending.to_bytes();
    let loaded = PendingApproval::<V>::from_bytes(&b).expect("the states target loads it");
    assert_eq!(loaded.to_bytes(), b);
    put("cpo_states", &format!("pending_approval_{name}"), &b);
    let (m2, s2) = s1.handle(&bob, rng, &m1).expect("challenge");
    let b = s2.to_bytes();
    let loaded = ExpectArbiterAcceptance::<V>::from_bytes(&b).expect("the states target loads it");
    assert_eq!(loaded.to_bytes(), b);
    put(
        "cpo_states",
        &format!("expect_arbiter_acceptance_{name}"),
        &b,
    );
    let issued = pending
        .handle_response(&alice, rng, NOW, &m2)
        .expect("response");
    s2.handle(&bob, NOW, &issued.reply).expect("acceptance")
}

/// One of each saved state (kinds 1-6) for `cpo_states`, from real runs of
/// protocols 1, 5 and 2.
fn state_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_cpo::buyer::{self, ExpectPostChallenge, ExpectPosted};
    use agora_cpo::server::PendingPost;
    use agora_cpo::{Bidding, FirstCome};
    use cpo_fixture::{keys, Market, BOB, NOW};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
    let first_come = approval_states::<FirstCome>(put, "first_come", &mut rng);
    let bidding = approval_states::<Bidding>(put, "bidding", &mut rng);
    let market = Market::new();
    let server = market.server();
    let bob = keys(BOB);
    for (name, acceptance) in [("first_come", &first_come), ("bidding", &bidding)] {
        let (p0, s3) = buyer::request_post(&bob, &mut rng, acceptance, &market.server_peer())
            .expect("post request");
        let b = s3.to_bytes();
        let loaded = ExpectPostChallenge::from_bytes(&b).expect("the states target loads it");
        assert_eq!(loaded.to_bytes(), b);
        put("cpo_states", &format!("expect_post_challenge_{name}"), &b);
        let (p1, pending) = server
            .handle_post_request(&mut rng, NOW, &p0)
            .expect("post request");
        let b = pending.to_bytes();
        let loaded = PendingPost::from_bytes(&b).expect("the states target loads it");
        assert_eq!(loaded.to_bytes(), b);
        put("cpo_states", &format!("pending_post_{name}"), &b);
        let (_, s4) = s3.handle(&bob, &mut rng, &p1).expect("post challenge");
        let b = s4.to_bytes();
        let loaded = ExpectPosted::from_bytes(&b).expect("the states target loads it");
        assert_eq!(loaded.to_bytes(), b);
        put("cpo_states", &format!("expect_posted_{name}"), &b);
    }
}

/// Valid inputs for `cpo_bid` (protocol 6 as the target replays it: the
/// fixture's bid listing, Pam's bid made with a fresh fixed RNG, the award
/// of the fixture's closed CPO), and one of each protocol 6 message for the
/// decoder target.
fn bid_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_core::wire::cose;
    use agora_cpo::bidding::{self, Award, AwardRequest, Bid, Notice, Outcome};
    use agora_cpo::msg::Mode;

    use cpo_fixture::{end, eur, rng, Market, BID_CENTS, BID_DETAILS, NOW};
    let market = Market::new();
    let (server_peer, alice_peer) = (market.server_peer(), market.alice_peer());
    let id = market.ccpo().id;
    let pam = market.pam_seller_session();
    let (server, m0) = market.bid_server();
    let listing = pam
        .open_bid_listing(&m0)
        .expect("the bid target accepts its listing");
    put("cpo_bid", "bid_listing", &m0);
    let (m1, expect) = pam
        .bid(&mut rng(), &listing, eur(BID_CENTS), BID_DETAILS)
        .expect("bid");
    let taken = server
        .handle_bid(&mut rng(), NOW, &m1)
        .expect("the bid target accepts its bid");
    put("cpo_bid", "bid", &m1);
    let receipt = expect
        .handle(&pam, &taken.reply)
        .expect("the bid target accepts its BID_RECEIPT");
    assert_eq!(receipt.signed, taken.signed);
    put("cpo_bid", "bid_receipt", &taken.reply);
    let record = server
        .store()
        .bids()
        .bids(&id)
        .expect("bids")
        .pop()
        .expect("the bid");
    let (server, request, pending) = market.award_server(&record);
    assert_eq!(
        server.board().get(&id).expect("get").expect("posted").mode,
        Mode::Bidding
    );
    let (reply, signed) = market
        .arbiter()
        .handle_award_request(&mut rng(), end(), &request, &server_peer)
        .expect("the bid target accepts its award request");
    put("cpo_bid", "award_request", &request);
    let awarded = pending
        .handle_award(&server, end(), &reply)
        .expect("the bid target accepts its award");
    assert_eq!(awarded.award, signed);
    assert_eq!(awarded.winner, Some(record.summary.seller));
    put("cpo_bid", "award", &reply);
    let notice = &awarded.notices[0].2;
    assert_eq!(
        bidding::check_notice(notice, &receipt, &server_peer.sign, &alice_peer.sign)
            .expect("the bid target accepts its notice"),
        Outcome::Won
    );
    put("cpo_bid", "notice", notice);

    // The decoder target.
    put(
        "cpo_messages",
        "bid_listing",
        &wire::encode(&listing.message),
    );
    let bid = Bid {
        x0_hash: [16; 32],
        r1: [17; 32],
        price: eur(BID_CENTS),
        details: BID_DETAILS.into(),
    };
    put("cpo_messages", "bid", &wire::encode(&bid));
    put("cpo_messages", "bid_receipt", &wire::encode(&taken.message));
    let x = AwardRequest {
        cpo: id,
        checksum: *market.ccpo().checksum(),
        price: market.ccpo().price,
        closed_at: end(),
        bids: vec![record.summary.clone()],
    };
    put("cpo_messages", "award_request", &wire::encode(&x));
    let award = cose::verify::<Award>(&awarded.award, &alice_peer.sign).expect("award");
    put("cpo_messages", "award", &wire::encode(&award));
    let n = cose::verify::<Notice>(notice, &server_peer.sign).expect("notice");
    put("cpo_messages", "notice", &wire::encode(&n));
}

/// Valid inputs for `cpo_delivery` (the fixture's binding, Bob's request
/// and Pam's query made with a fresh fixed RNG, the fixed challenge and its
/// proof), and one of each delivery and recovery message for the decoder
/// target.
fn delivery_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_cpo::bidding::{self, BidsReply};
    use agora_cpo::delivery::{self, BindingReply, Proof};

    use agora_cpo::recovery::{BindingAnswer, BindingQuery};
    use cpo_fixture::{keys, rng, Market, BOB, NOW, OFFER, PAM, VERIFIER};
    let market = Market::new();
    let server_peer = market.server_peer();
    let id = market.ccpo().id;
    let pam = market.pam_seller_session();
    let (server, m0) = market.bind_server();
    let listing = pam.open_listing(&m0).expect("listing");
    let (offer, expect_bound) = pam.offer(&mut rng(), &listing, OFFER).expect("offer");
    put("cpo_states", "expect_bound", &expect_bound.to_bytes());
    server
        .handle_bind_offer(&mut rng(), NOW, &offer)
        .expect("binding");
    // The saved states of protocol 3 (kinds 7, 8 and 10), from a run on a
    // fresh server, and a saved listing (kind 11).
    {
        let fresh = market.server();
        let (from, until) = market.session_range();
        let (m0, expect_challenge) = agora_cpo::seller::request_session(
            &keys(PAM),
            &mut rng(),
            market.pam_bond.clone(),
            from,
            until,
            &server_peer,
        )
        .expect("browse request");
        put(
            "cpo_states",
            "expect_browse_challenge",
            &expect_challenge.to_bytes(),
        );
        let (m1, pending) = fresh
            .handle_browse_request(&mut rng(), NOW, &m0)
            .expect("the fixture's browse request");
        put("cpo_states", "pending_browse", &pending.to_bytes());
        let (_, expect_grant) = expect_challenge
            .handle(&keys(PAM), &mut rng(), &m1)
            .expect("the fixture's challenge");
        put(
            "cpo_states",
            "expect_browse_grant",
            &expect_grant.to_bytes(),
        );
        let (_, saved_listing) = market
            .bind_server()
            .0
            .handle_listing_request_saved(
                &mut rng(),
                NOW,
                &pam.request_listing(&mut rng(), id, agora_cpo::Mode::FirstCome),
            )
            .expect("the fixture's listing request");
        put("cpo_states", "pending_listing", &saved_listing.to_bytes());
    }
    let binding = server
        .board()
        .binding(&id)
        .expect("binding")
        .expect("bound");

    let server = market.bound_server(&binding);
    let bob = keys(BOB);
    let (request, req) = delivery::request_binding(&bob, &mut rng(), NOW, id);
    let reply = server
        .binding_for_buyer(&mut rng(), NOW, &request)
        .expect("the delivery target accepts its binding request");
    put("cpo_delivery", "binding_request", &request);
    let evidence = delivery::open_binding_reply(&bob, &server_peer.sign, &req, &reply)
        .expect("the delivery target accepts its binding reply");
    assert_eq!(evidence, binding.bound_cpo);
    put("cpo_delivery", "binding_reply", &reply);
    let (posted_request, preq) = delivery::request_posted(&bob, &mut rng(), NOW, id);
    let posted_reply = server
        .posted_for_buyer(&mut rng(), NOW, &posted_request)
        .expect("the delivery target accepts its posted request");
    put("cpo_delivery", "posted_request", &posted_request);
    // The fixture's board entry holds no real posted CPO, so Bob's check of
    // the one inside stops there; the seed still reaches it.
    put("cpo_delivery", "posted_reply", &posted_reply);
    // Pam's request for her receipts, over the store the target holds (her
    // bid on Bob's CPO, taken by a server with the same keys).
    let (bid_server, taken) = market.pam_bid(&pam);
    let (bids_request, breq) = bidding::request_bids(&keys(PAM), &mut rng(), NOW, id, 0);
    let bids_reply = bid_server
        .bids_for_seller(&mut rng(), NOW, &bids_request)
        .expect("the delivery target accepts its bids request");
    put("cpo_delivery", "bids_request", &bids_request);
    let got = bidding::open_bids_reply(&keys(PAM), &server_peer.sign, &breq, &bids_reply)
        .expect("the delivery target accepts its bids reply");
    assert_eq!(got.receipts.len(), 1);
    assert_eq!(got.receipts[0].signed, taken.signed);
    put("cpo_delivery", "bids_reply", &bids_reply);
    let (query, expect) = pam.ask_binding(&mut rng(), &id, &market.pam_bond);
    let answer = server
        .handle_binding_query(&mut rng(), NOW, &query)
        .expect("the delivery target accepts its binding query");
    put("cpo_delivery", "binding_query", &query);
    let receipt = expect
        .handle(&pam, &answer)
        .expect("the delivery target accepts its binding answer");
    assert_eq!(receipt.signed, binding.bound_cpo);
    put("cpo_delivery", "binding_answer", &answer);
    let challenge =
        delivery::challenge(&mut rng(), NOW, &binding.bound_cpo, VERIFIER).expect("challenge");
    let proof = delivery::prove(&keys(PAM), &challenge, &binding.bound_cpo).expect("proof");
    assert_eq!(
        delivery::check_proof(
            &proof,
            &challenge,
            &binding.bound_cpo,
            &server_peer.sign,
            NOW
        )
        .expect("the delivery target accepts its proof"),
        keys(PAM).sign.verifying_key().key_id()
    );
    put("cpo_delivery", "proof", &proof);
    put("cpo_delivery", "bound_cpo", &binding.bound_cpo);

    // The decoder target.
    put("cpo_messages", "binding_request", &wire::encode(&req));
    let x = BindingReply {
        request_hash: [18; 32],
        evidence: binding.bound_cpo.clone(),
    };
    put("cpo_messages", "binding_reply", &wire::encode(&x));
    put("cpo_messages", "posted_request", &wire::encode(&preq));
    let x = delivery::PostedReply {
        request_hash: [22; 32],
        posted: binding.bound_cpo.clone(),
    };
    put("cpo_messages", "posted_reply", &wire::encode(&x));
    put("cpo_messages", "bids_request", &wire::encode(&breq));
    let x = BidsReply {
        request_hash: [23; 32],
        total: 1,
        receipts: vec![taken.signed.clone()],
    };
    put("cpo_messages", "bids_reply", &wire::encode(&x));
    put("cpo_messages", "proof_challenge", &wire::encode(&challenge));
    let x = Proof {
        challenge_hash: [19; 32],
    };
    put("cpo_messages", "proof", &wire::encode(&x));
    let x = BindingQuery {
        session: pam.id(),
        cpo: id,
        r: [20; 32],
    };
    put("cpo_messages", "binding_query", &wire::encode(&x));
    let x = BindingAnswer {
        query_hash: [21; 32],
        cpo: id,
        bound_cpo: binding.bound_cpo.clone(),
    };
    put("cpo_messages", "binding_answer", &wire::encode(&x));
}

/// The SPEED targets' seeds, from the fixture's purchases
/// (`speed_fixture.rs`): for each handler target, one input per step (the
/// step byte, then the message as it arrives or the plaintext the target
/// seals), each checked to pass the step it is for; and one of each
/// message, purse command and saved state for `speed_messages`.
fn speed_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_core::wire::{cose, tags, Message};
    use agora_speed::broker::BrokerReply;
    use agora_speed::customer::{self, CustomerNext};
    use agora_speed::msg::{
        Bill, BillSecret, CardLoadRequest, NegotiationRequest, PaymentOrder, ProductRequest,
    };
    use agora_speed::purse::Card;
    use agora_speed::vendor::{MemoryHandshakes, VendorNext};
    use speed_fixture::steps::{broker, customer as carol, purse, vendor};
    use speed_fixture::{
        eur, haggler, num, rng, Speed, CARD, CAROL_ACCOUNT, NOW, PRODUCT, R_BROKER, R_DEBIT,
        R_HANDSHAKE, R_REQUEST, R_VENDOR_STEP, SONG,
    };
    let f = Speed::new();
    let step = |target: &str, name: &str, step: u8, input: &[u8]| {
        let mut v = vec![step];
        v.extend_from_slice(input);
        put(target, name, &v);
    };

    // Plaintexts, as the targets' sealed steps take them.
    let request = f.envelope_payload::<NegotiationRequest>(
        &f.negotiation_request,
        &f.vendor.keys.enc,
        &f.carol_peer,
    );
    let vendor_step = f.mac_payload(
        &f.vendor_step,
        &f.en_key,
        &f.sign_key,
        tags::SPEED_NEGOTIATION_STEP,
    );
    let handshake = f.signed_sealed_payload(
        &f.handshake,
        &f.en_key,
        &f.carol_peer,
        tags::SPEED_HANDSHAKE,
    );
    let bill = f.signed_payload(&f.signed_bill, &f.vendor_peer);
    let aggressive_bill = f.signed_payload(&f.aggressive_signed_bill, &f.vendor_peer);
    let product_request =
        f.envelope_payload::<ProductRequest>(&f.product_request, &f.vendor.keys.enc, &f.carol_peer);
    let account_order =
        f.envelope_payload::<PaymentOrder>(&f.account_order, &f.broker_keys.enc, &f.carol_peer);
    let card_order =
        f.envelope_payload::<PaymentOrder>(&f.card_order, &f.broker_keys.enc, &f.carol_peer);
    let purse_debit = f.mac_payload(
        &f.purse_debit,
        &f.b_enc_key,
        &f.b_sign_key,
        tags::SPEED_PURSE_DEBIT,
    );
    let purse_confirm = f.mac_payload(
        &f.purse_confirm,
        &f.b_enc_key,
        &f.b_sign_key,
        tags::SPEED_PURSE_CONFIRM,
    );
    let receipt = f.signed_sealed_payload(
        &f.receipt,
        &f.rec_key,
        &f.broker_peer,
        tags::SPEED_PURCHASE_RECEIPT,
    );
    let keys = &f.purse_keys;
    let s1 = cose::verify_mac_raw(&f.s1, &keys.to_sam).expect("S1");
    let debit_cmd = cose::verify_mac_raw(&f.debit_cmd, &keys.to_card).expect("S2");
    let debit_conf = cose::verify_mac_raw(&f.debit_conf, &keys.to_sam).expect("S3");
    let load_cmd = cose::verify_mac_raw(&f.load_cmd, &keys.to_card).expect("load command");
    let load_conf = cose::verify_mac_raw(&f.load_conf, &keys.to_sam).expect("load confirmation");
    let secret = agora_core::wire::decode::<Bill>(&bill)
        .expect("bill")
        .secret;
    let bill_secret = BillSecret::open(&secret, &f.broker_keys.enc, &f.order).expect("secret");
    let card_load = customer::card_load_request(
        &mut rng(R_REQUEST),
        &f.carol,
        &f.broker_peer,
        num(CAROL_ACCOUNT),
        eur(1_000),
        f.s1.clone(),
        NOW,
    )
    .expect("card load request");
    f.broker
        .on_card_load(NOW, &card_load, &f.ledger())
        .expect("the broker target accepts its card load seed");
    let card_load_plain =
        f.envelope_payload::<CardLoadRequest>(&card_load, &f.broker_keys.enc, &f.carol_peer);
    let (_, balance) = customer::balance_request(
        &mut rng(R_REQUEST),
        &f.carol,
        &f.broker_peer,
        num(CAROL_ACCOUNT),
        NOW,
    )
    .expect("balance request");
    f.broker
        .on_balance_request(NOW, &mut rng(R_REQUEST), &balance, &f.ledger())
        .expect("the broker target answers its balance seed");
    let balance_plain = f.envelope_payload::<agora_speed::msg::BalanceRequest>(
        &balance,
        &f.broker_keys.enc,
        &f.carol_peer,
    );

    // speed_customer. The fixture's run already checked the raw messages
    // (and its seal helpers are the targets'); the sealed steps are checked
    // here.
    let t = "speed_customer";
    step(t, "vendor_step", carol::STEP, &f.vendor_step);
    step(t, "vendor_step_plain", carol::STEP_SEALED, &vendor_step);
    let m = f.seal_mac(
        &f.en_key,
        &f.sign_key,
        tags::SPEED_NEGOTIATION_STEP,
        &vendor_step,
    );
    f.negotiate()
        .0
        .on_step(&mut rng(R_HANDSHAKE), &f.carol, &m, &haggler())
        .expect("the customer target accepts its step seed");
    step(t, "delivery", carol::DELIVERY, &f.delivery);
    step(t, "bill_plain", carol::DELIVERY_SEALED, &bill);
    step(
        t,
        "aggressive_delivery",
        carol::AGGRESSIVE_DELIVERY,
        &f.aggressive_delivery,
    );
    step(
        t,
        "aggressive_bill_plain",
        carol::AGGRESSIVE_DELIVERY_SEALED,
        &aggressive_bill,
    );
    let mut product = PRODUCT.len.to_be_bytes().to_vec();
    product.extend_from_slice(&PRODUCT.hash);
    step(t, "product", carol::PRODUCT, &product);
    step(t, "receipt", carol::RECEIPT, &f.receipt);
    step(t, "receipt_plain", carol::RECEIPT_SEALED, &receipt);
    let m = f.seal_signed(
        &f.rec_key,
        &f.broker_keys.sign,
        tags::SPEED_PURCHASE_RECEIPT,
        &receipt,
    );
    f.expect_receipt()
        .on_receipt(&m)
        .expect("the customer target accepts its receipt seed");
    step(t, "purse_debit", carol::PURSE_DEBIT, &f.purse_debit);
    step(
        t,
        "purse_debit_plain",
        carol::PURSE_DEBIT_SEALED,
        &purse_debit,
    );
    let m = f.seal_mac(
        &f.b_enc_key,
        &f.b_sign_key,
        tags::SPEED_PURSE_DEBIT,
        &purse_debit,
    );
    let mut card = f.card();
    f.expect_purse_debit()
        .on_debit(&mut rng(R_DEBIT), &m, |s2| card.debit(s2))
        .expect("the customer target accepts its message a seed");
    step(t, "s1", carol::PAY_BY_CARD, &f.s1);

    // speed_vendor.
    let t = "speed_vendor";
    step(
        t,
        "negotiation_request",
        vendor::REQUEST,
        &f.negotiation_request,
    );
    step(
        t,
        "negotiation_request_plain",
        vendor::REQUEST_SEALED,
        &request,
    );
    step(
        t,
        "product_request",
        vendor::PRODUCT_REQUEST,
        &f.product_request,
    );
    step(
        t,
        "product_request_plain",
        vendor::PRODUCT_REQUEST_SEALED,
        &product_request,
    );
    let m = f.envelope(
        &f.carol.keys.sign,
        &f.vendor_peer.enc,
        ProductRequest::TAG,
        &product_request,
    );
    f.vendor
        .on_product_request(NOW, &m, &f.shelf, &MemoryHandshakes::default())
        .expect("the vendor target accepts its product request seed");
    // Carol's counter-offer to the vendor's first step.
    let CustomerNext::Counter(_, counter) = f
        .negotiate()
        .0
        .on_step(&mut rng(R_HANDSHAKE), &f.carol, &f.vendor_step, &haggler())
        .expect("step")
    else {
        panic!("the haggler counters the list price")
    };
    let VendorNext::Counter(..) = f
        .vendor_negotiation()
        .on_step(&mut rng(R_VENDOR_STEP), &counter)
        .expect("the vendor target accepts its step seed")
    else {
        panic!("the vendor counters")
    };
    step(t, "customer_step", vendor::STEP, &counter);
    let counter_plain = f.mac_payload(
        &counter,
        &f.en_key,
        &f.sign_key,
        tags::SPEED_NEGOTIATION_STEP,
    );
    step(
        t,
        "customer_step_plain",
        vendor::STEP_SEALED,
        &counter_plain,
    );
    step(t, "handshake", vendor::HANDSHAKE, &f.handshake);
    step(t, "handshake_plain", vendor::HANDSHAKE_SEALED, &handshake);
    let m = f.seal_signed(
        &f.en_key,
        &f.carol.keys.sign,
        tags::SPEED_HANDSHAKE,
        &handshake,
    );
    f.vendor_negotiation()
        .on_handshake(NOW, &m, &MemoryHandshakes::default())
        .expect("the vendor target accepts its handshake seed");
    step(t, "receipt", vendor::RECEIPT, &f.receipt);
    step(t, "receipt_plain", vendor::RECEIPT_SEALED, &receipt);
    f.vendor
        .open_receipt(&f.receipt, &f.sale())
        .expect("the vendor target accepts its receipt seed");

    // speed_broker.
    let t = "speed_broker";
    step(t, "order_account", broker::ORDER, &f.account_order);
    step(t, "order_card", broker::ORDER, &f.card_order);
    step(
        t,
        "order_account_plain",
        broker::ORDER_SEALED,
        &account_order,
    );
    step(t, "order_card_plain", broker::ORDER_SEALED, &card_order);
    let m = f.envelope(
        &f.carol.keys.sign,
        &f.broker_peer.enc,
        PaymentOrder::TAG,
        &card_order,
    );
    let Ok(BrokerReply::PurseDebit(_)) =
        f.broker
            .on_payment_order(NOW, &mut rng(R_BROKER), &m, &f.ledger())
    else {
        panic!("the broker target accepts its card order seed")
    };
    step(t, "bill_plain", broker::BILL_SEALED, &bill);
    step(t, "purse_confirm", broker::CONFIRM, &f.purse_confirm);
    step(
        t,
        "purse_confirm_plain",
        broker::CONFIRM_SEALED,
        &purse_confirm,
    );
    let m = f.seal_mac(
        &f.b_enc_key,
        &f.b_sign_key,
        tags::SPEED_PURSE_CONFIRM,
        &purse_confirm,
    );
    f.broker
        .on_purse_confirm(NOW, &f.order, &m, &f.held_ledger(&f.held))
        .expect("the broker target accepts its message b seed");
    step(t, "held", broker::HELD, &f.held);
    let receipt_request = customer::receipt_request(f.order);
    assert_eq!(
        f.broker
            .on_receipt_request(&receipt_request, &f.paid_ledger)
            .expect("the broker target accepts its receipt request seed"),
        f.receipt
    );
    step(
        t,
        "receipt_request",
        broker::RECEIPT_REQUEST,
        &receipt_request,
    );
    step(t, "bill_secret", broker::BILL_SECRET, &secret);
    step(t, "card_load", broker::CARD_LOAD, &card_load);
    step(
        t,
        "card_load_plain",
        broker::CARD_LOAD_SEALED,
        &card_load_plain,
    );
    step(t, "balance", broker::BALANCE, &balance);
    step(t, "balance_plain", broker::BALANCE_SEALED, &balance_plain);

    // speed_purse. The fixture's SAM run checked the raw commands.
    let t = "speed_purse";
    step(t, "s2", purse::DEBIT, &f.debit_cmd);
    step(t, "s2_plain", purse::DEBIT_SEALED, &debit_cmd);
    step(t, "load_command", purse::LOAD, &f.load_cmd);
    step(t, "load_command_plain", purse::LOAD_SEALED, &load_cmd);
    step(t, "s1", purse::AUTH, &f.s1);
    step(t, "s1_plain", purse::AUTH_SEALED, &s1);
    step(t, "s3", purse::CONFIRM, &f.debit_conf);
    step(t, "load_confirmation", purse::CONFIRM, &f.load_conf);
    step(t, "s3_plain", purse::CONFIRM_SEALED, &debit_conf);
    step(
        t,
        "load_confirmation_plain",
        purse::CONFIRM_SEALED,
        &load_conf,
    );
    step(t, "card_open", purse::CARD_FILE, &f.card_open);
    let fresh = f.sam.issue(CARD, eur(0).currency).to_bytes();
    step(t, "card_new", purse::CARD_FILE, &fresh);
    step(
        t,
        "pending_debit",
        purse::PENDING,
        &f.pending_debit.to_bytes(),
    );
    step(
        t,
        "pending_load",
        purse::PENDING,
        &f.pending_load.to_bytes(),
    );

    // speed_messages.
    let t = "speed_messages";
    put(t, "negotiation_request", &request);
    put(t, "negotiation_step", &vendor_step);
    put(t, "handshake", &handshake);
    put(t, "bill", &bill);
    put(t, "bill_secret", &agora_core::wire::encode(&bill_secret));
    put(t, "product_delivery", &f.delivery);
    put(t, "product_request", &product_request);
    put(t, "aggressive_delivery", &f.aggressive_delivery);
    put(t, "payment_order_account", &account_order);
    put(t, "payment_order_card", &card_order);
    put(t, "purse_debit", &purse_debit);
    put(t, "purse_confirm", &purse_confirm);
    put(t, "receipt", &receipt);
    put(t, "card_load_request", &card_load_plain);
    put(t, "receipt_request", &receipt_request);
    put(t, "card_auth", &s1);
    put(t, "debit_command", &debit_cmd);
    put(t, "debit_confirmation", &debit_conf);
    put(t, "load_command", &load_cmd);
    put(t, "load_confirmation", &load_conf);
    put(t, "card_auth_mac0", &f.s1);
    put(t, "debit_command_mac0", &f.debit_cmd);
    put(t, "debit_confirmation_mac0", &f.debit_conf);
    put(t, "load_command_mac0", &f.load_cmd);
    put(t, "load_confirmation_mac0", &f.load_conf);
    put(t, "saved_ready_to_pay", &f.saved_ready);
    put(t, "saved_expect_receipt", &f.saved_receipt);
    put(t, "saved_expect_purse_debit", &f.saved_purse);
    put(t, "card_file", &f.card_open);
    let card = Card::from_bytes(&f.card_open).expect("card");
    assert_eq!(&card.to_bytes()[..], &f.card_open[..]);
    put(t, "pending_debit", &f.pending_debit.to_bytes());
    put(t, "pending_load", &f.pending_load.to_bytes());
    put(t, "payment_order_id", &f.order.to_bytes());
    put(t, "payment_order_id_hex", f.order.to_hex().as_bytes());
    put(t, "account_number", CAROL_ACCOUNT.as_bytes());
    put(t, "product_id", SONG.as_bytes());
}

/// The STP targets: each message of the fixture's transaction raw and as
/// the payload the signed steps take, at the stage of the commit
/// authority's log where it is taken.
fn stp_seeds(put: &impl Fn(&str, &str, &[u8])) {
    use agora_core::wire;
    use agora_stp::escrow::open_release;
    use agora_stp::log::TxRecord;
    use agora_stp::msg::{Outcome, Release};
    use stp_fixture::steps::{ca, escrow, process};
    use stp_fixture::{Stage, Stp, P, Q, R, REPLY_SEED, TID};
    let f = Stp::new();
    let key = |i: usize| f.party(i).sign.verifying_key();
    let payload = |signed: &[u8], i: usize| Stp::payload(signed, &key(i));
    let step = |target: &str, name: &str, prefix: &[u8], input: &[u8]| {
        let mut v = prefix.to_vec();
        v.extend_from_slice(input);
        put(target, name, &v);
    };
    // Each role seed is taken by its handler as the target calls it (so
    // the seeds reach past the checks).
    let ca_takes = |stage: stp_fixture::Stage, late: bool, m: &[u8]| {
        let now = if late {
            stp_fixture::LATE
        } else {
            agora_stp::testkit::NOW
        };
        f.ca()
            .handle(now, m, &f.log(stage as u8))
            .expect("the stp_ca target takes its seed");
    };

    // stp_messages: every message, signed and as its payload, the states.
    let m = "stp_messages";
    for (name, bytes, signer) in [
        ("begin", &f.begin, Some(P)),
        ("join", &f.join, Some(Q)),
        ("vote", &f.vote_q, Some(Q)),
        ("vote_reject", &f.reject_q, Some(Q)),
        ("data", &f.data_p, Some(P)),
        ("end", &f.end_p, Some(P)),
        ("decide", &f.decide_p, Some(P)),
        ("decide_abort", &f.abort_p, Some(P)),
        ("deposit", &f.deposit, Some(P)),
        ("claim", &f.claim, Some(Q)),
    ] {
        put(m, name, bytes);
        if let Some(i) = signer {
            put(m, &format!("{name}_payload"), &payload(bytes, i));
        }
    }
    for (name, bytes) in [
        ("started", &f.started_p),
        ("pending", &f.pending),
        ("tree_head", &f.head),
    ] {
        put(m, name, bytes);
        put(
            m,
            &format!("{name}_payload"),
            &Stp::payload(bytes, &f.ca_key),
        );
    }
    put(m, "deposit_receipt", &f.receipt);
    put(
        m,
        "deposit_receipt_payload",
        &Stp::payload(&f.receipt, &f.escrow().verifying_key()),
    );
    put(m, "outcome", &f.outcome);
    let o: Outcome = wire::decode(&f.outcome).expect("the outcome");
    put(m, "outcome_leaf", &o.leaf);
    put(m, "status", &f.status);
    put(m, "consistency", &f.consistency);
    put(m, "proof_bundle", &f.bundle);
    let release = open_release(
        &f.release,
        &X25519Secret::from_bytes(REPLY_SEED),
        &f.escrow().verifying_key(),
    )
    .expect("the release opens");
    put(m, "release", &wire::encode::<Release>(&release));
    for (name, bytes) in &f.saved {
        put(m, &format!("saved_{name}"), bytes);
    }
    let stage = |s: Stage| SnapLogRecord::of(&f, s);
    put(m, "tx_record_started", &stage(Stage::Started));
    put(m, "tx_record_decided", &stage(Stage::Decided));
    let rec = TxRecord::decode(&stage(Stage::Decided)).expect("the record");
    assert_eq!(rec.encode(), stage(Stage::Decided));
    put(m, "tid_hex", TID.to_string().as_bytes());

    // stp_ca: [step, stage << 1 | late, message].
    let c = "stp_ca";
    let at = |s: Stage, late: bool| ((s as u8) << 1) | u8::from(late);
    for (name, s, late, bytes) in [
        ("vote_p_empty", Stage::Empty, false, &f.vote_p),
        ("vote_q_voted", Stage::Voted, false, &f.vote_q),
        ("reject_q_voted", Stage::Voted, false, &f.reject_q),
        ("abort_p_voted", Stage::Voted, false, &f.abort_p),
        ("vote_r_started", Stage::Started, false, &f.vote_r),
        ("decide_q_deciding", Stage::Deciding, false, &f.decide_q),
        ("decide_r_deciding", Stage::Deciding, false, &f.decide_r),
        ("decide_p_decided", Stage::Decided, false, &f.decide_p),
        ("decide_p_sealed", Stage::Sealed, false, &f.decide_p),
        ("status_sealed", Stage::Sealed, false, &f.status),
        ("status_late", Stage::Voted, true, &f.status),
        ("vote_q_late", Stage::Voted, true, &f.vote_q),
    ] {
        ca_takes(s, late, bytes);
        step(c, name, &[ca::RAW, at(s, late)], bytes);
    }
    step(
        c,
        "vote_p_signed",
        &[ca::VOTE_SIGNED_P, at(Stage::Empty, false)],
        &payload(&f.vote_p, P),
    );
    step(
        c,
        "vote_q_signed",
        &[ca::VOTE_SIGNED_Q, at(Stage::Voted, false)],
        &payload(&f.vote_q, Q),
    );
    step(
        c,
        "decide_p_signed",
        &[ca::DECIDE_SIGNED_P, at(Stage::Started, false)],
        &payload(&f.decide_p, P),
    );
    step(
        c,
        "decide_r_signed",
        &[ca::DECIDE_SIGNED_R, at(Stage::Deciding, false)],
        &payload(&f.decide_r, R),
    );
    step(
        c,
        "sweep_late",
        &[ca::SWEEP, at(Stage::Deciding, true)],
        &TID.0,
    );

    ca_takes(Stage::Started, false, &f.decide_p);
    ca_takes(Stage::Deciding, false, &f.decide_r);
    {
        use agora_stp::process::Invitation;
        use agora_stp::testkit::NOW;
        let taken = "the stp_process target takes its seed";
        f.open_q.clone().receive(&f.data_p).expect(taken);
        f.open_q.clone().receive(&f.end_first).expect(taken);
        Invitation::receive(f.party(Q), NOW, &f.begin).expect(taken);
        f.await_started_p
            .on_started(f.party(P), NOW, &f.started_p)
            .expect(taken);
        f.await_outcome_p
            .on_outcome(f.party(P), &f.outcome)
            .expect(taken);
        let escrow = f.escrow();
        escrow
            .on_deposit(NOW, &f.deposit, &agora_stp::MemoryEscrowStore::new())
            .expect("the stp_escrow target takes its seed");
        escrow
            .on_claim(&mut stp_fixture::rng(), NOW, &f.claim, &f.escrow_store())
            .expect("the stp_escrow target takes its seed");
    }

    // stp_process: [step, message].
    let p = "stp_process";
    step(p, "data", &[process::RECEIVE], &f.data_p);
    step(p, "end_first", &[process::RECEIVE], &f.end_first);
    step(
        p,
        "data_signed",
        &[process::RECEIVE_SIGNED],
        &payload(&f.data_p, P),
    );
    step(
        p,
        "end_first_signed",
        &[process::RECEIVE_SIGNED],
        &payload(&f.end_first, P),
    );
    step(
        p,
        "data_by_holder_signed",
        &[process::RECEIVE_BY_HOLDER_SIGNED],
        &payload(&f.data_q, Q),
    );
    step(p, "begin", &[process::INVITATION], &f.begin);
    step(
        p,
        "begin_signed",
        &[process::INVITATION_SIGNED],
        &payload(&f.begin, P),
    );
    step(p, "started", &[process::STARTED], &f.started_p);
    step(
        p,
        "started_signed",
        &[process::STARTED_SIGNED],
        &Stp::payload(&f.started_p, &f.ca_key),
    );
    step(p, "outcome", &[process::OUTCOME], &f.outcome);
    step(p, "outcome_leaf", &[process::OUTCOME_LEAF], &o.leaf);

    // stp_escrow: [step, message].
    let e = "stp_escrow";
    step(e, "deposit", &[escrow::DEPOSIT], &f.deposit);
    step(
        e,
        "deposit_signed",
        &[escrow::DEPOSIT_SIGNED],
        &payload(&f.deposit, P),
    );
    step(e, "claim", &[escrow::CLAIM], &f.claim);
    step(
        e,
        "claim_signed",
        &[escrow::CLAIM_SIGNED],
        &payload(&f.claim, Q),
    );
}

/// lite_vendor: `[step, message]`, each genuine message at the step that
/// takes it (`step % 12`, see the target), and every message for the
/// decoders (step 0).
fn lite_seeds(put: &impl Fn(&str, &str, &[u8])) {
    let f = lite_fixture::Lite::new();
    let t = "lite_vendor";
    let step = |name: &str, step: u8, input: &[u8]| {
        let mut v = vec![step];
        v.extend_from_slice(input);
        put(t, name, &v);
    };
    for (name, bytes) in [
        ("hello", &f.hello),
        ("challenge", &f.challenge),
        ("confirm", &f.confirm),
        ("receipt", &f.receipt),
        ("sddp_request", &f.sddp_request),
        ("sddp_reply", &f.sddp_reply),
        ("eddp_hello", &f.eddp_hello),
        ("eddp_challenge", &f.eddp_challenge),
        ("eddp_request", &f.eddp_request),
        ("eddp_reply", &f.eddp_reply),
    ] {
        step(&format!("decode_{name}"), 0, bytes);
    }
    step("vendor_hello", 1, &f.hello);
    step("vendor_confirm", 2, &f.confirm);
    step("vendor_sddp_request", 3, &f.sddp_request);
    step("vendor_eddp_request", 4, &f.eddp_request);
    step("receipt", 5, &f.receipt);
    step("client_challenge", 6, &f.challenge);
    step("client_sddp_reply", 7, &f.sddp_reply);
    step("client_eddp_challenge", 8, &f.eddp_challenge);
    step("client_eddp_reply", 9, &f.eddp_reply);
    step("vendor_http_request", 10, &f.http_request);
    step("client_http_reply", 11, &f.http_reply);
}

/// The fixture's transaction record at a stage of the log.
struct SnapLogRecord;

impl SnapLogRecord {
    fn of(f: &stp_fixture::Stp, s: stp_fixture::Stage) -> Vec<u8> {
        use agora_stp::log::CommitLog;
        f.log(s as u8)
            .get(&stp_fixture::TID)
            .expect("the log")
            .expect("the record")
            .record
    }
}
