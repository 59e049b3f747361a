//! Key ids: SHA-256 of a public key's raw bytes (ARCHITECTURE section 3:
//! `kid` = SHA-256 of the key).

use std::fmt;

/// The id of a public key: SHA-256 of its 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The id of the public key `key` (raw bytes).
    pub fn of(key: &[u8]) -> KeyId {
        KeyId(crate::crypto::sha256(key))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parse from 64 hex digits.
    pub fn from_hex(s: &str) -> Result<KeyId, crate::DecodeError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| crate::DecodeError::Invalid("key id must be 64 hex digits"))?;
        Ok(KeyId(out))
    }

    /// Parse from a byte slice of exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<KeyId, crate::DecodeError> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| crate::DecodeError::Invalid("key id must be 32 bytes"))?;
        Ok(KeyId(arr))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", &hex::encode(&self.0[..8]))
    }
}
