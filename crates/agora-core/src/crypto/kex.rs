//! X25519 (RFC 7748) key agreement. The shared secret of a low-order public
//! key is all zeros; agora refuses it (RFC 7748 section 6.1 "check").

use crate::{Error, KeyId, Result};
use zeroize::Zeroizing;

/// An X25519 private key. Wiped on drop; `Debug` shows only the public id.
#[derive(Clone)]
pub struct X25519Secret(x25519_dalek::StaticSecret);

/// An X25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519Public(pub [u8; 32]);

/// The output of X25519, wiped on drop.
pub type SharedSecret = Zeroizing<[u8; 32]>;

impl X25519Secret {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl super::Rng) -> X25519Secret {
        X25519Secret(x25519_dalek::StaticSecret::from(super::random_bytes::<32>(
            rng,
        )))
    }

    /// The key with these 32 bytes (clamped as RFC 7748 says).
    pub fn from_bytes(bytes: [u8; 32]) -> X25519Secret {
        X25519Secret(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The 32 bytes, for keystores and HPKE only.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> X25519Public {
        X25519Public(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 with `peer`; refuses the all-zero output of low-order points.
    pub fn diffie_hellman(&self, peer: &X25519Public) -> Result<SharedSecret> {
        super::ops::count(super::ops::Op::X25519, 0);
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(Error::Crypto);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

impl std::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519Secret(public {:?})", self.public().key_id())
    }
}

impl X25519Public {
    /// Parse from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<X25519Public> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| crate::DecodeError::Invalid("X25519 public key must be 32 bytes"))?;
        Ok(X25519Public(arr))
    }

    /// SHA-256 of the raw bytes.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl std::fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519Public({:?})", self.key_id())
    }
}
