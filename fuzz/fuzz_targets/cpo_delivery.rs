//! After binding, on arbitrary bytes: the server's answer to the buyer's
//! request for his binding (`binding_for_buyer`) or his posted CPO
//! (`posted_for_buyer`), to the bidder's request for her BID_RECEIPTs
//! (`bids_for_seller`, over the fixed store holding Pam's bid) and to the
//! seller's query
//! for hers (`handle_binding_query`, recovery), each on a fresh server with
//! Bob's first-come CPO bound to Pam and her session under the fixed K_p
//! live (so a seed's nonce is not "replayed" on the next run); Bob opening
//! the reply, and Pam opening the reply to her request for her receipts;
//! Pam checking the answer to her query (made afresh with the
//! fixed RNG); and the delivery proof check (`check_proof`) with a fixed
//! challenge about the fixed BOUND_CPO. The binding, Pam's bid, the
//! challenge and the keys are built once.
#![no_main]
use agora_cpo::bidding::{self, BidRecord, BidsRequest};
use agora_cpo::delivery::{self, BindingRequest, PostedRequest, ProofChallenge};
use agora_cpo::ports::Binding;
use agora_cpo::seller::SellerSession;
use agora_cpo::{Keys, Peer};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "cpo_fixture.rs"]
mod cpo_fixture;

use cpo_fixture::{keys, rng, Market, BOB, NOW, OFFER, PAM, VERIFIER};

struct Fixture {
    market: Market,
    bob: Keys,
    server_peer: Peer,
    pam: SellerSession,
    cpo: [u8; 32],
    binding: Binding,
    /// Bob's request of the seeds (what his reply answers).
    request: BindingRequest,
    /// Bob's request for his posted CPO (what a posted reply answers).
    posted_request: PostedRequest,
    /// Pam's bid on Bob's CPO, as the server took it.
    bid: BidRecord,
    /// Pam's request for her receipts (what a bids reply answers).
    bids_request: BidsRequest,
    challenge: ProofChallenge,
    proof: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let market = Market::new();
        let pam = market.pam_seller_session();
        let (server, m0) = market.bind_server();
        let listing = pam.open_listing(&m0).expect("the fixture's listing");
        let (offer, _) = pam.offer(&mut rng(), &listing, OFFER).expect("offer");
        server
            .handle_bind_offer(&mut rng(), NOW, &offer)
            .expect("the fixture's binding");
        let binding = server
            .board()
            .binding(&market.ccpo().id)
            .expect("binding")
            .expect("bound");
        let bob = keys(BOB);
        let (_, request) = delivery::request_binding(&bob, &mut rng(), NOW, market.ccpo().id);
        let (_, posted_request) = delivery::request_posted(&bob, &mut rng(), NOW, market.ccpo().id);
        let (bid_server, _) = market.pam_bid(&pam);
        let bid = bid_server
            .store()
            .bids()
            .bids(&market.ccpo().id)
            .expect("bids")
            .pop()
            .expect("Pam's bid");
        let (_, bids_request) =
            bidding::request_bids(&keys(PAM), &mut rng(), NOW, market.ccpo().id, 0);
        let challenge =
            delivery::challenge(&mut rng(), NOW, &binding.bound_cpo, VERIFIER).expect("challenge");
        let proof = delivery::prove(
            &cpo_fixture::keys(cpo_fixture::PAM),
            &challenge,
            &binding.bound_cpo,
        )
        .expect("proof");
        Fixture {
            server_peer: market.server_peer(),
            cpo: market.ccpo().id,
            market,
            bob,
            pam,
            binding,
            request,
            posted_request,
            bid,
            bids_request,
            challenge,
            proof,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let server = f.market.bound_server(&f.binding);
    let _ = server.binding_for_buyer(&mut rng(), NOW, data);
    let _ = server.posted_for_buyer(&mut rng(), NOW, data);
    let _ = f
        .market
        .server_with_bid(&f.bid)
        .bids_for_seller(&mut rng(), NOW, data);
    let _ = server.handle_binding_query(&mut rng(), NOW, data);
    let _ = delivery::open_binding_reply(&f.bob, &f.server_peer.sign, &f.request, data);
    let _ = delivery::open_posted_reply(&f.bob, &f.server_peer.sign, &f.posted_request, data);
    let _ = bidding::open_bids_reply(&keys(PAM), &f.server_peer.sign, &f.bids_request, data);
    let (_, expect) = f.pam.ask_binding(&mut rng(), &f.cpo, &f.market.pam_bond);
    let _ = expect.handle(&f.pam, data);
    let _ = delivery::check_proof(
        data,
        &f.challenge,
        &f.binding.bound_cpo,
        &f.server_peer.sign,
        NOW,
    );
    let _ = delivery::check_proof(&f.proof, &f.challenge, data, &f.server_peer.sign, NOW);
});
