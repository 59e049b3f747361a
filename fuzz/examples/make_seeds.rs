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
