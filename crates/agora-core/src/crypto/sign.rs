//! Ed25519 (RFC 8032): `SIGN_K(X)` in the papers. Single verification is
//! strict (ed25519-dalek `verify_strict`: non-canonical and small-order keys
//! and R values are refused, so signatures are not malleable).

use crate::{Error, KeyId, Result};
use zeroize::Zeroizing;

/// An Ed25519 private key. Wiped on drop; `Debug` shows only the key id.
pub struct SigningKey(ed25519_dalek::SigningKey);

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl SigningKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl super::Rng) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(rng))
    }

    /// The key with this 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for keystores only.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// The id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.verifying_key().key_id()
    }

    /// Sign `msg` (pure Ed25519, deterministic).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        super::ops::count(super::ops::Op::Ed25519Sign, msg.len());
        Signature(self.0.sign(msg).to_bytes())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {:?})", self.key_id())
    }
}

impl VerifyingKey {
    /// Parse a 32-byte public key. Refuses encodings that are not points and
    /// small-order ("weak") points, which no honest party uses.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<VerifyingKey> {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| crate::DecodeError::Invalid("not an Ed25519 public key"))?;
        if vk.is_weak() {
            return Err(crate::DecodeError::Invalid("small-order Ed25519 public key").into());
        }
        Ok(VerifyingKey(vk))
    }

    /// Parse from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<VerifyingKey> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| crate::DecodeError::Invalid("Ed25519 public key must be 32 bytes"))?;
        Self::from_bytes(&arr)
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// SHA-256 of the raw bytes.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(self.0.as_bytes())
    }

    /// Strict verification of `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<()> {
        super::ops::count(super::ops::Op::Ed25519Verify, msg.len());
        let s = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.0.verify_strict(msg, &s).map_err(|_| Error::Crypto)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({:?})", self.key_id())
    }
}

impl Signature {
    /// Parse from a slice of exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Signature> {
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|_| crate::DecodeError::Invalid("Ed25519 signature must be 64 bytes"))?;
        Ok(Signature(arr))
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

/// Verifies many signatures at once (roughly twice the speed of one by one).
///
/// Each item is `(message, signature, key)`. Returns `Ok` only if every
/// signature is valid. Batch verification checks the cofactored equation, as
/// ed25519-dalek does; it refuses small-order keys (the [`VerifyingKey`]
/// constructor already did) and non-canonical `s`. Where a single signature
/// must be judged on its own, use [`VerifyingKey::verify`].
pub fn verify_batch(items: &[(&[u8], &Signature, &VerifyingKey)]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    super::ops::count_n(
        super::ops::Op::Ed25519BatchItem,
        items.len() as u64,
        items.iter().map(|i| i.0.len()).sum(),
    );
    let msgs: Vec<&[u8]> = items.iter().map(|i| i.0).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|i| ed25519_dalek::Signature::from_bytes(&i.1 .0))
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = items.iter().map(|i| i.2 .0).collect();
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| Error::Crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn sign_verify_and_batch() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let keys: Vec<SigningKey> = (0..8).map(|_| SigningKey::generate(&mut rng)).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
        for i in 0..8 {
            vks[i].verify(&msgs[i], &sigs[i]).unwrap();
            assert_eq!(
                vks[i].verify(&msgs[(i + 1) % 8], &sigs[i]),
                Err(Error::Crypto)
            );
        }
        let items: Vec<_> = (0..8)
            .map(|i| (msgs[i].as_slice(), &sigs[i], &vks[i]))
            .collect();
        verify_batch(&items).unwrap();
        let mut bad = sigs[3];
        bad.0[10] ^= 4;
        let mut items2 = items.clone();
        items2[3].1 = &bad;
        assert_eq!(verify_batch(&items2), Err(Error::Crypto));
        assert!(format!("{:?}", keys[0]).starts_with("SigningKey(public KeyId("));
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point: small order.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert!(VerifyingKey::from_bytes(&id).is_err());
    }
}
