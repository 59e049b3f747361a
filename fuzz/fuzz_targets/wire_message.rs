//! Strict message decoding: no input may panic, and whatever decodes must
//! re-encode to exactly the same bytes (one encoding per value).
#![no_main]
use agora_core::wire::{self, Ping};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::peek_tag(data);
    if let Ok(m) = wire::decode::<Ping>(data) {
        assert_eq!(wire::encode(&m), data, "decoded a non-canonical encoding");
    }
});
