//! Errors typed by who is at fault (STYLE 4). One mapping from error to a
//! stable wire code ([`Error::code`]). Cryptographic failures carry no detail
//! an attacker could use.

/// Result with agora's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an input could not be decoded. The input's sender is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the item it announced.
    #[error("input is truncated")]
    Truncated,
    /// Bytes follow the end of the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The encoding is valid CBOR but not the deterministic encoding.
    #[error("encoding is not canonical: {0}")]
    NonCanonical(&'static str),
    /// A field or message is over its size limit.
    #[error("{what} is too large (limit {limit})")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit it went over.
        limit: usize,
    },
    /// The message carries a tag other than the one expected here.
    #[error("unexpected message tag {found}, expected {expected}")]
    WrongTag {
        /// The tag the decoder expected.
        expected: crate::wire::Tag,
        /// The tag found in the input.
        found: crate::wire::Tag,
    },
    /// The tag is not in the registry.
    #[error("unknown message tag {0}")]
    UnknownTag(crate::wire::Tag),
    /// An item of the wrong CBOR major type or wrong shape.
    #[error("unexpected item: expected {0}")]
    Unexpected(&'static str),
    /// A well-formed item whose value is not allowed here.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// An agora error, typed by who is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Malformed input: the sender is at fault.
    #[error("malformed input: {0}")]
    Decode(#[from] DecodeError),
    /// A signature, MAC or AEAD check failed. Deliberately without detail.
    #[error("cryptographic check failed")]
    Crypto,
    /// A well-formed, authentic message that breaks the protocol.
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(&'static str),
    /// A message seen before, or outside its freshness window.
    #[error("stale or replayed message")]
    Replayed,
    /// The sender is not allowed to do this.
    #[error("not authorised: {0}")]
    NotAuthorised(String),
    /// Refused by a policy (trust, revocation, limits of a certificate...).
    #[error("refused: {0}")]
    Refused(String),
    /// The storage layer failed; the caller is not at fault.
    #[error("storage failure: {0}")]
    Storage(String),
    /// Too much load; try again later.
    #[error("overloaded")]
    Overloaded,
    /// The caller used an API in a way it does not allow (a local bug).
    #[error("API misuse: {0}")]
    ApiMisuse(&'static str),
}

impl Error {
    /// Whether a protocol run that refused a message with this error is
    /// still as it was, so a driver should keep its state: the message did
    /// not authenticate (it could not be decrypted, a MAC or signature
    /// failed, or it did not decode), or storage or load failed before
    /// anything was recorded. The other errors come from a message its
    /// sender's keys vouch for (a protocol break, a replay, a refusal) and
    /// end the run.
    pub fn leaves_state_intact(&self) -> bool {
        matches!(
            self,
            Error::Crypto | Error::Decode(_) | Error::Storage(_) | Error::Overloaded
        )
    }

    /// A stable, short code for the wire and for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Decode(_) => "decode",
            Error::Crypto => "crypto",
            Error::PeerMisbehaved(_) => "peer-misbehaved",
            Error::Replayed => "replayed",
            Error::NotAuthorised(_) => "not-authorised",
            Error::Refused(_) => "refused",
            Error::Storage(_) => "storage",
            Error::Overloaded => "overloaded",
            Error::ApiMisuse(_) => "api-misuse",
        }
    }
}
