//! PEM in and out, and SubjectPublicKeyInfo export of public keys.

use crate::Refusal;
use agora_core::crypto::{VerifyingKey, X25519Public};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) } before the
/// 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The same for X25519 (OID 1.3.101.110).
const X25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// Largest PEM text accepted: the DER limit of a CRL, base64-expanded.
pub const MAX_PEM_LEN: usize = 2 * crate::MAX_CRL_LEN;

/// PEM-encode `der` under `label` (LF line endings).
pub fn encode(label: &str, der: &[u8]) -> String {
    let p = ::pem::Pem::new(label, der.to_vec());
    ::pem::encode_config(
        &p,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// Decode one PEM block labelled `label`; nothing but whitespace may follow.
pub fn decode(text: &str, label: &str) -> Result<Vec<u8>, Refusal> {
    if text.len() > MAX_PEM_LEN {
        return Err(Refusal::Malformed("PEM over the size limit"));
    }
    let all = ::pem::parse_many(text).map_err(|_| Refusal::Malformed("not PEM"))?;
    let mut it = all.into_iter();
    match (it.next(), it.next()) {
        (Some(p), None) if p.tag() == label => Ok(p.into_contents()),
        (Some(_), None) => Err(Refusal::Malformed("unexpected PEM label")),
        _ => Err(Refusal::Malformed("expected exactly one PEM block")),
    }
}

/// An Ed25519 public key as SPKI DER.
pub fn ed25519_spki_der(key: &VerifyingKey) -> Vec<u8> {
    let mut v = ED25519_SPKI_PREFIX.to_vec();
    v.extend_from_slice(&key.to_bytes());
    v
}

/// An X25519 public key as SPKI DER.
pub fn x25519_spki_der(key: &X25519Public) -> Vec<u8> {
    let mut v = X25519_SPKI_PREFIX.to_vec();
    v.extend_from_slice(&key.0);
    v
}

/// An Ed25519 public key as PEM "PUBLIC KEY" (what `openssl pkey -pubin` reads).
pub fn ed25519_public_pem(key: &VerifyingKey) -> String {
    encode("PUBLIC KEY", &ed25519_spki_der(key))
}

/// An X25519 public key as PEM "PUBLIC KEY" (SPKI, OID 1.3.101.110).
pub fn x25519_public_pem(key: &X25519Public) -> String {
    encode("PUBLIC KEY", &x25519_spki_der(key))
}

/// Read an Ed25519 "PUBLIC KEY" PEM back.
pub fn ed25519_from_public_pem(text: &str) -> Result<VerifyingKey, Refusal> {
    let der = decode(text, "PUBLIC KEY")?;
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(k) => {
            VerifyingKey::from_slice(k).map_err(|_| Refusal::Malformed("not a valid Ed25519 key"))
        }
        None => Err(Refusal::Malformed("not an Ed25519 SubjectPublicKeyInfo")),
    }
}

/// Read an X25519 "PUBLIC KEY" PEM back.
pub fn x25519_from_public_pem(text: &str) -> Result<X25519Public, Refusal> {
    let der = decode(text, "PUBLIC KEY")?;
    match der.strip_prefix(&X25519_SPKI_PREFIX[..]) {
        Some(k) => X25519Public::from_slice(k)
            .map_err(|_| Refusal::Malformed("X25519 key must be 32 bytes")),
        None => Err(Refusal::Malformed("not an X25519 SubjectPublicKeyInfo")),
    }
}
