//! rcgen signs with agora's own Ed25519 key, and the UUID-arc OIDs.
//!
//! rcgen stores OID arcs as `u64`, but the agora arc is a 128-bit UUID. So
//! the extensions are written under a *placeholder* OID of exactly the same
//! encoded length (`2.25` followed by single-byte arcs), and the signer
//! replaces the placeholder with the real OID in the to-be-signed bytes
//! before signing; [`finish`] makes the same replacement in the finished
//! DER. Lengths are equal, so no enclosing length changes. A placeholder
//! found more than once (in the signed bytes or the finished DER) fails the
//! issuance rather than guess; and every issued certificate and CRL is
//! parsed and verified again before it is handed out (agency.rs), so a
//! stray match could only cause an error, never a wrong certificate.

use crate::profile::{BOND_EXT_OID_DER, IDENTITY_EXT_OID_DER};
use agora_core::crypto::SigningKey;

/// Single-byte arcs after `2.25` of the bond placeholder (19 of them, same
/// length as the real arc), fixed arbitrary values below 128.
const PLACEHOLDER_ARCS: [u64; 20] = [
    113, 7, 91, 58, 122, 19, 66, 101, 3, 87, 44, 125, 29, 70, 11, 97, 52, 118, 36, 81,
];

/// The placeholder OID (rcgen arcs) written in place of the bond OID.
pub(crate) fn bond_placeholder_arcs() -> Vec<u64> {
    let mut v = vec![2, 25];
    v.extend_from_slice(&PLACEHOLDER_ARCS[..19]);
    v
}

/// The placeholder OID written in place of the identity OID.
pub(crate) fn identity_placeholder_arcs() -> Vec<u64> {
    let mut v = vec![2, 25];
    v.extend_from_slice(&PLACEHOLDER_ARCS[..20]);
    v
}

/// `06 len 69 arcs..` of a placeholder (tag, length and content).
fn placeholder_tlv(n_arcs: usize) -> Vec<u8> {
    let mut v = vec![0x06, (1 + n_arcs) as u8, 0x69];
    v.extend(PLACEHOLDER_ARCS[..n_arcs].iter().map(|a| *a as u8));
    v
}

fn real_tlv(content: &[u8]) -> Vec<u8> {
    let mut v = vec![0x06, content.len() as u8];
    v.extend_from_slice(content);
    v
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Replaces the placeholders by the real OIDs; returns the patched bytes and
/// how many replacements were made per placeholder.
fn patch(bytes: &[u8]) -> Result<(Vec<u8>, [usize; 2]), rcgen::Error> {
    let mut out = bytes.to_vec();
    let mut counts = [0usize; 2];
    let pairs = [
        (placeholder_tlv(19), real_tlv(&BOND_EXT_OID_DER)),
        (placeholder_tlv(20), real_tlv(&IDENTITY_EXT_OID_DER)),
    ];
    for (i, (from, to)) in pairs.iter().enumerate() {
        let at = find_all(&out, from);
        if at.len() > 1 {
            return Err(rcgen::Error::RemoteKeyError);
        }
        for pos in &at {
            out[*pos..*pos + to.len()].copy_from_slice(to);
        }
        counts[i] = at.len();
    }
    Ok((out, counts))
}

/// An Ed25519 public key as rcgen wants it.
#[derive(Debug)]
pub(crate) struct Ed25519Public(pub [u8; 32]);

impl rcgen::PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// agora's Ed25519 key as an rcgen signer, patching placeholder OIDs.
#[derive(Debug)]
pub(crate) struct Signer<'a> {
    key: &'a SigningKey,
    public: Ed25519Public,
}

impl<'a> Signer<'a> {
    pub(crate) fn new(key: &'a SigningKey) -> Self {
        Signer {
            key,
            public: Ed25519Public(key.verifying_key().to_bytes()),
        }
    }
}

impl rcgen::PublicKeyData for Signer<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for Signer<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let (tbs, _) = patch(msg)?;
        Ok(self.key.sign(&tbs).0.to_vec())
    }
}

/// Applies the placeholder replacement to rcgen's finished DER (certificate
/// or CRL), so that it carries exactly the bytes that were signed.
pub(crate) fn finish(der: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
    Ok(patch(der)?.0)
}
