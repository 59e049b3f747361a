//! A party's keys and what others know of it: an Ed25519 signing key and an
//! X25519 key for the envelopes sent to it. Shared by every protocol crate.

use crate::crypto::{SigningKey, VerifyingKey, X25519Public, X25519Secret};
use crate::KeyId;

/// A party's own keys: Ed25519 for signing, X25519 for the envelopes sent to
/// it. For a buyer or seller the public halves are in its bond certificate,
/// for a SPEED party in its identity certificate.
#[derive(Debug)]
pub struct Keys {
    /// SK (signing).
    pub sign: SigningKey,
    /// The decryption key of `PKE_{PK}`.
    pub enc: X25519Secret,
}

impl Keys {
    /// The party's key id (of its signing key).
    pub fn id(&self) -> KeyId {
        self.sign.key_id()
    }

    /// What others need to know of this party.
    pub fn peer(&self) -> Peer {
        Peer {
            sign: self.sign.verifying_key(),
            enc: self.enc.public(),
        }
    }
}

/// A well-known party (arbiter, server) as everyone knows it: its public
/// signing and encryption keys (paper section 3.2, assumption 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its Ed25519 key.
    pub sign: VerifyingKey,
    /// Its X25519 key.
    pub enc: X25519Public,
}

impl Peer {
    /// Its key id: ArbiterID / ServerID in a CCPO.
    pub fn id(&self) -> KeyId {
        self.sign.key_id()
    }

    /// `Some(key)` if `kid` is this party's, for envelope sender lookups.
    pub fn key_if(&self, kid: &KeyId) -> Option<VerifyingKey> {
        (*kid == self.id()).then_some(self.sign)
    }
}

impl crate::wire::Field for Peer {
    fn encode(&self, e: &mut crate::wire::Encoder) {
        e.array(2).field(&self.sign).field(&self.enc);
    }
    fn decode(d: &mut crate::wire::Decoder<'_>) -> Result<Self, crate::DecodeError> {
        d.array(2)?;
        Ok(Peer {
            sign: d.field()?,
            enc: d.field()?,
        })
    }
}
