//! Alice the arbiter's step 1 (protocols 1 and 5) on arbitrary M_0. The
//! agency, its CRL and Alice are built once, from fixed seeds.
#![no_main]
use agora_cpo::arbiter::Arbiter;
use agora_cpo::{Bidding, FirstCome};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "cpo_fixture.rs"]
mod cpo_fixture;

fn alice() -> &'static Arbiter {
    static ALICE: OnceLock<Arbiter> = OnceLock::new();
    ALICE.get_or_init(|| cpo_fixture::Market::new().arbiter())
}

fuzz_target!(|data: &[u8]| {
    let alice = alice();
    let now = cpo_fixture::NOW;
    let _ = alice.handle_request::<FirstCome>(&mut cpo_fixture::rng(), now, data);
    let _ = alice.handle_request::<Bidding>(&mut cpo_fixture::rng(), now, data);
});
