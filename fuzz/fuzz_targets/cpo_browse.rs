//! The server's step 1 of protocol 3 (a seller asks for a browse session)
//! on arbitrary M_0. The agency, its CRL and the trust are built once, from
//! fixed seeds; each run gets a server on fresh in-memory storage, so a
//! seed's R_0 is not "replayed" on the next run.
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
    let server = market().server();
    let _ = server.handle_browse_request(&mut cpo_fixture::rng(), cpo_fixture::NOW, data);
});
