//! SHA-256, HMAC-SHA-256, HKDF-SHA256, Argon2id and constant-time equality.

use crate::{Error, Result};
use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use sha2::{Digest, Sha256};

/// Length of an HMAC-SHA-256 tag.
pub const HMAC_LEN: usize = 32;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    super::ops::count(super::ops::Op::Sha256, data.len());
    Sha256::digest(data).into()
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// HMAC-SHA-256 of `data` under `key` (any length, RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; HMAC_LEN] {
    super::ops::count(super::ops::Op::Hmac, data.len());
    // new_from_slice never fails for HMAC: any key length is allowed.
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Checks a full 32-byte HMAC-SHA-256 tag in constant time. Truncated tags
/// are refused: agora never sends them.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8]) -> Result<()> {
    if tag.len() != HMAC_LEN {
        return Err(Error::Crypto);
    }
    let expected = hmac_sha256(key, data);
    if ct_eq(&expected, tag) {
        Ok(())
    } else {
        Err(Error::Crypto)
    }
}

/// A 256-bit HMAC key: `Auth_K` in the papers.
#[derive(Clone, PartialEq, Eq)]
pub struct MacKey(super::Secret<32>);

impl MacKey {
    /// Wrap 32 key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        MacKey(super::Secret::new(bytes))
    }
    /// A fresh random key.
    pub fn random(rng: &mut impl super::Rng) -> Self {
        MacKey(super::Secret::random(rng))
    }
    /// The tag of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; HMAC_LEN] {
        hmac_sha256(self.0.expose(), data)
    }
    /// Check `tag` over `data` in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> Result<()> {
        hmac_sha256_verify(self.0.expose(), data, tag)
    }
    /// The key bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// HKDF-SHA256 extract-and-expand (RFC 5869) into `out`. Fails if `out` is
/// longer than 255 * 32 bytes.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    super::ops::count(super::ops::Op::Hkdf, out.len());
    let salt = if salt.is_empty() { None } else { Some(salt) };
    hkdf::Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, out)
        .map_err(|_| Error::ApiMisuse("HKDF output longer than 255 * 32 bytes"))
}

/// HKDF-Expand (RFC 5869 section 2.3) from a 32-byte pseudorandom key.
pub fn hkdf_expand(prk: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    super::ops::count(super::ops::Op::Hkdf, out.len());
    hkdf::Hkdf::<Sha256>::from_prk(prk)
        .map_err(|_| Error::ApiMisuse("HKDF PRK shorter than 32 bytes"))?
        .expand(info, out)
        .map_err(|_| Error::ApiMisuse("HKDF output longer than 255 * 32 bytes"))
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Argon2Params {
    /// For keystore passphrases: 32 MiB, 3 passes, 4 lanes. Half the memory
    /// of RFC 9106's second recommended option, because every party unlocks
    /// its keystore in the process that then does its work, and a party
    /// buying or selling a 1 GiB SPEED product must stay under 64 MiB of
    /// resident memory in all; still above every setting OWASP's password
    /// storage guidance lists as equivalent (46 MiB x 1 pass, 19 MiB x 2,
    /// 12 MiB x 3). A keystore records its own parameters, so older files
    /// (64 MiB) still open.
    pub const INTERACTIVE: Argon2Params = Argon2Params {
        memory_kib: 32 * 1024,
        iterations: 3,
        parallelism: 4,
    };
    /// Upper bounds accepted from a file, so that a hostile keystore cannot
    /// make us allocate without limit.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// See [`Self::MAX_MEMORY_KIB`].
    pub const MAX_ITERATIONS: u32 = 64;
}

/// Argon2id (RFC 9106) of `passphrase` with `salt`, giving a 32-byte key.
pub fn argon2id(
    passphrase: &[u8],
    salt: &[u8],
    params: Argon2Params,
) -> Result<Zeroizing<[u8; 32]>> {
    super::ops::count(super::ops::Op::Argon2id, passphrase.len());
    if params.memory_kib > Argon2Params::MAX_MEMORY_KIB
        || params.iterations > Argon2Params::MAX_ITERATIONS
    {
        return Err(Error::Refused(
            "Argon2 parameters over agora's limits".into(),
        ));
    }
    let p = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|_| Error::Refused("invalid Argon2 parameters".into()))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|_| Error::Refused("invalid Argon2 input (salt too short?)".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_sha256_verify(b"Jefe", b"what do ya want for nothing?", &tag).is_ok());
        let mut bad = tag;
        bad[31] ^= 1;
        assert_eq!(
            hmac_sha256_verify(b"Jefe", b"what do ya want for nothing?", &bad),
            Err(Error::Crypto)
        );
        assert!(hmac_sha256_verify(b"Jefe", b"x", &tag[..16]).is_err());
    }

    #[test]
    fn argon2id_is_deterministic_and_salted() {
        let p = Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = argon2id(b"pw", b"saltsaltsalt", p).unwrap();
        let b = argon2id(b"pw", b"saltsaltsalt", p).unwrap();
        let c = argon2id(b"pw", b"othersaltsalt", p).unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, *c);
        let huge = Argon2Params {
            memory_kib: u32::MAX,
            ..p
        };
        assert!(argon2id(b"pw", b"saltsaltsalt", huge).is_err());
    }

    #[test]
    fn mac_key_debug_hides_the_key() {
        let k = MacKey::new([7u8; 32]);
        assert_eq!(format!("{k:?}"), "MacKey(..)");
    }
}
