//! The server's side of protocol 4 (an offer to bind, under K_p; a request
//! for one listing or a page of them) and of ending a session, on arbitrary
//! bytes. The agency, its CRL and Pam's bond
//! are built once; each run gets a fresh server (cheap: in-memory storage)
//! with Bob's first-come CPO posted, Pam's session under the fixed K_p live
//! and one listing sent to her, so a seed that binds the CPO (first come)
//! or ends the session does not change the next run.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "cpo_fixture.rs"]
mod cpo_fixture;

fn market() -> &'static cpo_fixture::Market {
    static MARKET: OnceLock<cpo_fixture::Market> = OnceLock::new();
    MARKET.get_or_init(cpo_fixture::Market::new)
}

fuzz_target!(|data: &[u8]| {
    let (server, _listing) = market().bind_server();
    let now = cpo_fixture::NOW;
    let _ = server.handle_bind_offer(&mut cpo_fixture::rng(), now, data);
    let _ = server.handle_listing_request(&mut cpo_fixture::rng(), now, data);
    let _ = server.handle_listings_request(&mut cpo_fixture::rng(), now, data);
    let _ = server.handle_end_session(now, data);
});
