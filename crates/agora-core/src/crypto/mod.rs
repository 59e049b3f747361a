//! The crypto suite (ARCHITECTURE section 2): the papers' primitives replaced
//! by today's. Every function takes its randomness as an argument; nothing
//! here reads the clock or the OS RNG.
//!
//! Secrets live in zeroize-on-drop types whose `Debug` prints nothing secret;
//! MACs and tokens are compared in constant time ([`ct_eq`]).

mod aead;
mod hash;
pub mod hpke;
mod kex;
pub mod ops;
mod sign;
pub mod stream;

pub use aead::{AeadAlg, AeadKey, NONCE_LEN, TAG_LEN};
pub use hash::{
    argon2id, ct_eq, hkdf_expand, hkdf_sha256, hmac_sha256, hmac_sha256_verify, sha256,
    Argon2Params, Digest, MacKey, Sha256, HMAC_LEN,
};
pub use kex::{SharedSecret, X25519Public, X25519Secret};
pub use sign::{verify_batch, Signature, SigningKey, VerifyingKey};

/// A cryptographically secure random number generator, passed in by the
/// caller (the OS RNG in drivers, a seeded one in tests and the simulator).
pub trait Rng: rand_core::RngCore + rand_core::CryptoRng {}
impl<T: rand_core::RngCore + rand_core::CryptoRng> Rng for T {}

/// The operating system's CSPRNG. Only drivers (CLI, node) should use it.
pub fn os_rng() -> rand_core::OsRng {
    rand_core::OsRng
}

/// `N` random bytes from `rng`.
pub fn random_bytes<const N: usize>(rng: &mut impl Rng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// A fixed-size secret that is wiped when dropped and never printed.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Wrap `bytes`.
    pub fn new(bytes: [u8; N]) -> Self {
        Secret(bytes)
    }

    /// A fresh random secret.
    pub fn random(rng: &mut impl Rng) -> Self {
        Secret(random_bytes(rng))
    }

    /// The secret bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> std::fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret<{N}>(..)")
    }
}

impl<const N: usize> PartialEq for Secret<N> {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}
impl<const N: usize> Eq for Secret<N> {}
