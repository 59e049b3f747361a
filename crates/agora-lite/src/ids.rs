//! The identities the Janus function takes: the client's (`id_C`, "e.g.
//! email address" in the paper) and the vendor's (`id_V`, "e.g. the domain
//! name in the vendor's URL").
//!
//! Both are UTF-8 strings of 1 to [`MAX_ID_LEN`] bytes. The limit is what
//! lets the Janus encoding prefix each id with a single length byte, which is
//! what makes that encoding injective (`("ab", "c")` and `("a", "bc")` give
//! different bytes). Ids are compared and hashed byte for byte, without any
//! normalisation: `Alice@example.org` and `alice@example.org` are two clients
//! with unrelated keys, so a client proxy that wants case-insensitive e-mail
//! addresses must fold them itself before building a [`ClientId`].

use agora_core::{DecodeError, Result};
use std::fmt;

/// The longest id, in bytes: what one length byte can say. Longer than any
/// e-mail address (RFC 5321 allows 254 bytes) or DNS name (253 bytes).
pub const MAX_ID_LEN: usize = 255;

/// Checks `s` as an id named `what`: not empty (else the error says
/// `empty`), at most [`MAX_ID_LEN`] bytes.
fn check(s: &str, what: &'static str, empty: &'static str) -> Result<()> {
    if s.is_empty() {
        return Err(DecodeError::Invalid(empty).into());
    }
    if s.len() > MAX_ID_LEN {
        return Err(DecodeError::TooLarge {
            what,
            limit: MAX_ID_LEN,
        }
        .into());
    }
    Ok(())
}

macro_rules! bounded_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps `s`. Refuses, as a
            /// [`DecodeError`](agora_core::DecodeError), an empty id and
            /// one longer than [`MAX_ID_LEN`] bytes.
            pub fn new(s: &str) -> Result<Self> {
                check(s, $what, concat!($what, " is empty"))?;
                Ok($name(s.to_owned()))
            }

            /// Checks and wraps raw bytes, e.g. from the wire: they must be
            /// UTF-8, besides what [`Self::new`] checks.
            pub fn from_bytes(b: &[u8]) -> Result<Self> {
                // Check the length first: no need to validate the UTF-8 of
                // a megabyte that is refused anyway.
                if b.len() > MAX_ID_LEN {
                    return Err(DecodeError::TooLarge {
                        what: $what,
                        limit: MAX_ID_LEN,
                    }
                    .into());
                }
                let s = std::str::from_utf8(b)
                    .map_err(|_| DecodeError::Invalid(concat!($what, " is not UTF-8")))?;
                Self::new(s)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's UTF-8 bytes (1 to [`MAX_ID_LEN`] of them).
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }

            /// The id's length as the one byte the Janus encoding puts
            /// before it.
            pub(crate) fn len_byte(&self) -> u8 {
                // new() refuses ids over MAX_ID_LEN (255) bytes.
                u8::try_from(self.0.len()).expect("an id is at most 255 bytes (checked in new)")
            }
        }

        impl TryFrom<&str> for $name {
            type Error = agora_core::Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = agora_core::Error;
            fn try_from(s: String) -> Result<Self> {
                check(&s, $what, concat!($what, " is empty"))?;
                Ok($name(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }
    };
}

bounded_id!(
    /// The client's identity `id_C`: what she tells her proxy along with her
    /// secret, and what vendors file her shared key under. Not secret.
    ClientId,
    "client id"
);

bounded_id!(
    /// The vendor's identity `id_V`, e.g. the host name of its URL. Not
    /// secret.
    VendorId,
    "vendor id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Error;

    #[test]
    fn ids_of_1_to_255_bytes_are_accepted_and_others_refused() {
        assert!(ClientId::new("a").is_ok());
        assert!(VendorId::new(&"v".repeat(255)).is_ok());
        assert_eq!(
            ClientId::new(""),
            Err(Error::Decode(DecodeError::Invalid("client id is empty")))
        );
        assert_eq!(
            VendorId::new(""),
            Err(Error::Decode(DecodeError::Invalid("vendor id is empty")))
        );
        assert_eq!(
            VendorId::new(&"v".repeat(256)),
            Err(Error::Decode(DecodeError::TooLarge {
                what: "vendor id",
                limit: 255
            }))
        );
        assert_eq!(
            ClientId::try_from("é".repeat(128)),
            Err(Error::Decode(DecodeError::TooLarge {
                what: "client id",
                limit: 255
            }))
        );
        assert_eq!(
            ClientId::from_bytes(&[0x61, 0xff]),
            Err(Error::Decode(DecodeError::Invalid(
                "client id is not UTF-8"
            )))
        );
        assert_eq!(
            ClientId::from_bytes(b"alice@example.org").map(|c| c.len_byte()),
            Ok(17)
        );
    }
}
