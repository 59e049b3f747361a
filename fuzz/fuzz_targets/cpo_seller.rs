//! Pam the seller's side of protocol 4 on arbitrary bytes: opening a
//! listing (step 1), the answer to a request for a page of listings, and
//! checking BOUND_CPO (step 3) in her session under the fixed K_p. Her session and the listing she answers are built once; each
//! run makes her offer afresh (with the fixed RNG, so always the same
//! offer) and hands the input to its `ExpectBound`.
#![no_main]
use agora_cpo::seller::{Listing, SellerSession};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "cpo_fixture.rs"]
mod cpo_fixture;

fn pam() -> &'static (SellerSession, Listing) {
    static PAM: OnceLock<(SellerSession, Listing)> = OnceLock::new();
    PAM.get_or_init(|| {
        let market = cpo_fixture::Market::new();
        let session = market.pam_seller_session();
        let (_, m0) = market.bind_server();
        let listing = session.open_listing(&m0).expect("the fixture's listing");
        (session, listing)
    })
}

fuzz_target!(|data: &[u8]| {
    let (session, listing) = pam();
    let _ = session.open_listing(data);
    let page = [listing.ccpo().id, [7; 32]];
    if let Ok((_, expect)) =
        session.request_listings(&mut cpo_fixture::rng(), &page, agora_cpo::Mode::FirstCome)
    {
        let _ = expect.handle(session, data);
    }
    if let Ok((_, expect)) = session.offer(&mut cpo_fixture::rng(), listing, cpo_fixture::OFFER) {
        let _ = expect.handle(session, data);
    }
});
