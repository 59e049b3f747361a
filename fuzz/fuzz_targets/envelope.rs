//! The HPKE envelope PKE(X, Sign(X)) opened on arbitrary bytes.
#![no_main]
use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::wire::{envelope, Ping};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let recipient = X25519Secret::from_bytes([3u8; 32]);
    let sender = SigningKey::from_seed(&[5u8; 32]).verifying_key();
    let _ = envelope::peek_tag(data);
    let _ = envelope::open::<Ping>(data, &recipient, |kid| {
        (*kid == sender.key_id()).then_some(sender)
    });
});
