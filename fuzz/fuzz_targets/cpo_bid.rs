//! Bidding (protocol 6) on arbitrary bytes, every role:
//! - the server's step 2 -> 3 (`handle_bid`): each run gets a fresh server
//!   with Bob's CPO posted for bidding, Pam's session under the fixed K_p
//!   live and one bid listing sent to her, and fresh bids;
//! - Alice's step 5a -> 5b (`handle_award_request`), after bidding closed;
//! - the server's step 5b -> 5c (`PendingAward::handle_award`): each run
//!   gets a fresh server whose CPO has closed with Pam's bid taken, and the
//!   pending award of its request to Alice;
//! - Pam's side: opening a bid listing (step 1), checking her BID_RECEIPT
//!   (step 3, her bid made afresh with the fixed RNG) and checking a notice.
//!
//! The agency, its CRL, Alice, Pam's session, her bid as the server took it
//! and her receipt are built once.
#![no_main]
use agora_cpo::arbiter::Arbiter;
use agora_cpo::bidding::{self, BidListingOpened, BidRecord, HeldReceipt};
use agora_cpo::seller::SellerSession;
use agora_cpo::Peer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "cpo_fixture.rs"]
mod cpo_fixture;

use cpo_fixture::{end, eur, rng, Market, BID_CENTS, BID_DETAILS, NOW};

struct Fixture {
    market: Market,
    alice: Arbiter,
    alice_peer: Peer,
    server_peer: Peer,
    pam: SellerSession,
    listing: BidListingOpened,
    bid: BidRecord,
    receipt: HeldReceipt,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let market = Market::new();
        let alice = market.arbiter();
        let pam = market.pam_seller_session();
        let (server, m0) = market.bid_server();
        let listing = pam.open_bid_listing(&m0).expect("the fixture's listing");
        let (m1, expect) = pam
            .bid(&mut rng(), &listing, eur(BID_CENTS), BID_DETAILS)
            .expect("bid");
        let taken = server
            .handle_bid(&mut rng(), NOW, &m1)
            .expect("the fixture's bid");
        let receipt = expect.handle(&pam, &taken.reply).expect("BID_RECEIPT");
        let bid = server
            .store()
            .bids()
            .bids(&market.ccpo().id)
            .expect("bids")
            .pop()
            .expect("the bid");
        Fixture {
            alice_peer: market.alice_peer(),
            server_peer: market.server_peer(),
            market,
            alice,
            pam,
            listing,
            bid,
            receipt,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (server, _listing) = f.market.bid_server();
    let _ = server.handle_bid(&mut rng(), NOW, data);

    let _ = f
        .alice
        .handle_award_request(&mut rng(), end(), data, &f.server_peer);
    let (server, _request, pending) = f.market.award_server(&f.bid);
    let _ = pending.handle_award(&server, end(), data);

    let _ = f.pam.open_bid_listing(data);
    if let Ok((_, expect)) = f
        .pam
        .bid(&mut rng(), &f.listing, eur(BID_CENTS), BID_DETAILS)
    {
        let _ = expect.handle(&f.pam, data);
    }
    let _ = bidding::check_notice(data, &f.receipt, &f.server_peer.sign, &f.alice_peer.sign);
});
