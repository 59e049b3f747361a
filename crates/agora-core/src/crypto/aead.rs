//! Authenticated encryption: ChaCha20-Poly1305 (RFC 8439) for messages,
//! AES-256-GCM as the alternative for bulk data. `E_K(X)` in the papers.

use super::Secret;
use crate::{Error, Result};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};

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
    /// ring, not RustCrypto `aes-gcm`, for AES-256-GCM: the bulk product
    /// encryption of SPEED needs more than 1 GB/s, and ring's assembly (VAES,
    /// AVX2, CLMUL, chosen at run time) runs at ~8 GB/s on the reference
    /// machine against ~1.2 GB/s for `aes-gcm` 0.10. The cost: ring does not
    /// wipe its expanded key schedule on drop. The raw key stays in a
    /// [`Secret`] (wiped), and AES-256-GCM keys here are SPEED product keys,
    /// fresh per sale and released to the customer in the receipt.
    Aes(Box<ring::aead::LessSafeKey>),
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
            AeadAlg::Aes256Gcm => Inner::Aes(Box::new(ring::aead::LessSafeKey::new(
                // A 32-byte key is the only way this fails.
                ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, k)
                    .unwrap_or_else(|_| unreachable!("AES-256 takes a 32-byte key")),
            ))),
        };
        AeadKey { alg, inner }
    }

    /// The algorithm.
    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    /// What a seal or open under this key counts as.
    fn op(&self) -> super::ops::Op {
        match self.alg {
            AeadAlg::ChaCha20Poly1305 => super::ops::Op::ChaCha20Poly1305,
            AeadAlg::Aes256Gcm => super::ops::Op::Aes256Gcm,
        }
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        super::ops::count(self.op(), buf.len());
        let ok = match &self.inner {
            Inner::ChaCha(c) => c.encrypt_in_place(nonce.into(), aad, buf).is_ok(),
            Inner::Aes(c) => c
                .seal_in_place_append_tag(
                    ring::aead::Nonce::assume_unique_for_key(*nonce),
                    ring::aead::Aad::from(aad),
                    buf,
                )
                .is_ok(),
        };
        // Encryption fails only if the buffer cannot grow or the message is
        // over the AEAD's 2^36-byte limit, which agora's limits rule out.
        if !ok {
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
        super::ops::count(self.op(), buf.len());
        let ok = match &self.inner {
            Inner::ChaCha(c) => c.decrypt_in_place(nonce.into(), aad, buf).is_ok(),
            Inner::Aes(c) => {
                let opened = c
                    .open_in_place(
                        ring::aead::Nonce::assume_unique_for_key(*nonce),
                        ring::aead::Aad::from(aad),
                        buf,
                    )
                    .map(|plain| plain.len());
                match opened {
                    Ok(len) => {
                        buf.truncate(len);
                        true
                    }
                    Err(_) => false,
                }
            }
        };
        if ok {
            Ok(())
        } else {
            buf.clear();
            Err(Error::Crypto)
        }
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
