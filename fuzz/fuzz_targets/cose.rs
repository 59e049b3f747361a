//! COSE_Sign1 / COSE_Mac0 decoding and verification on arbitrary bytes.
#![no_main]
use agora_core::crypto::{MacKey, SigningKey};
use agora_core::wire::{self, cose};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_seed(&[7u8; 32]);
    let vk = key.verifying_key();
    let _ = cose::peek_kid(data);
    if let Ok(payload) = cose::verify_raw(data, &vk) {
        // Only our own key signs, so only our own encodings can verify.
        assert_eq!(cose::sign_raw(&key, &payload), data);
    }
    let _ = cose::verify::<wire::Ping>(data, &vk);
    let mac = MacKey::new([9u8; 32]);
    let _ = cose::verify_mac_raw(data, &mac);
    let _ = cose::verify_mac::<wire::Ping>(data, &mac);
});
