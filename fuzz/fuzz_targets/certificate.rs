//! X.509 certificate and CRL parsing of the agora profile.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = agora_pki::parse_certificate(data) {
        let _ = c.verify_signature(&c.public_key);
        let _ = c.key_id();
    }
    if let Ok(crl) = agora_pki::parse_crl(data) {
        let _ = crl.is_revoked(&agora_pki::Serial(vec![1]));
    }
});
