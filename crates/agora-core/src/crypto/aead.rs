//! Authenticated encryption: ChaCha20-Poly1305 (RFC 8439) for messages,
//! AES-256-GCM as the alternative for bulk data. `E_K(X)` in the papers.

use super::Secret;
use crate::{Error, Result};
use aes_gcm::aead::{AeadInPlace, KeyInit};

/// Nonce length of both AEADs.
pub const NONCE_LEN: usize = 12;
/// Tag length of both AEADs.
pub const TAG_LEN: usize = 16;

/// Which AEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadAlg {
    /// ChaCha20-Poly1305 (RFC 8439): agora's default.
    ChaCha20Poly1305,
    /// AES-256-GCM (NIST SP 800-38D), 96-bit nonces, 128-bit tags.
    Aes256Gcm,
}

enum Inner {
    ChaCha(chacha20poly1305::ChaCha20Poly1305),
    Aes(Box<aes_gcm::Aes256Gcm>),
}

/// A 256-bit AEAD key bound to its algorithm, ready for many operations.
/// Wiped on drop; `Debug` names only the algorithm.
pub struct AeadKey {
    alg: AeadAlg,
    inner: Inner,
}

impl AeadKey {
    /// The key `bytes` for `alg`.
    pub fn new(alg: AeadAlg, bytes: &Secret<32>) -> AeadKey {
        let k = bytes.expose();
        let inner = match alg {
            AeadAlg::ChaCha20Poly1305 => {
                Inner::ChaCha(chacha20poly1305::ChaCha20Poly1305::new(k.into()))
            }
            AeadAlg::Aes256Gcm => Inner::Aes(Box::new(aes_gcm::Aes256Gcm::new(k.into()))),
        };
        AeadKey { alg, inner }
    }

    /// The algorithm.
    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        let r = match &self.inner {
            Inner::ChaCha(c) => c.encrypt_in_place(nonce.into(), aad, buf),
            Inner::Aes(c) => c.encrypt_in_place(nonce.into(), aad, buf),
        };
        // Encryption fails only if the buffer cannot grow or the message is
        // over the AEAD's 2^36-byte limit, which agora's limits rule out.
        if r.is_err() {
            unreachable!("AEAD encryption of a bounded message cannot fail");
        }
    }

    /// Checks the tag at the end of `buf` and decrypts in place (the tag is
    /// removed). On failure `buf` is cleared: no unauthenticated plaintext.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let r = match &self.inner {
            Inner::ChaCha(c) => c.decrypt_in_place(nonce.into(), aad, buf),
            Inner::Aes(c) => c.decrypt_in_place(nonce.into(), aad, buf),
        };
        r.map_err(|_| {
            buf.clear();
            Error::Crypto
        })
    }

    /// Encrypts `plaintext`; returns ciphertext ‖ tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, &mut buf);
        buf
    }

    /// Decrypts ciphertext ‖ tag.
    pub fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
        let mut buf = ciphertext.to_vec();
        self.open_in_place(nonce, aad, &mut buf)?;
        Ok(buf)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AeadKey({:?}, ..)", self.alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_both_algorithms() {
        for alg in [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm] {
            let k = AeadKey::new(alg, &Secret::new([9u8; 32]));
            let n = [1u8; 12];
            let ct = k.seal(&n, b"aad", b"hello");
            assert_eq!(ct.len(), 5 + TAG_LEN);
            assert_eq!(k.open(&n, b"aad", &ct).unwrap(), b"hello");
            assert_eq!(k.open(&n, b"aaD", &ct), Err(Error::Crypto));
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(k.open(&n, b"aad", &bad), Err(Error::Crypto));
            assert_eq!(k.open(&[2u8; 12], b"aad", &ct), Err(Error::Crypto));
            assert_eq!(k.open(&n, b"aad", &ct[..3]), Err(Error::Crypto));
        }
    }
}
