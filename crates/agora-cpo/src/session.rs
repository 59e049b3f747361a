//! The browse session's channel (paper sections 3.8 and 3.9).
//!
//! Protocol 3 ends with the server sending Pam K_p, under PKE and its
//! signature. From then on, the paper authenticates browse and bind
//! messages with `Auth_{K_p}` "to decrease the computational load on the
//! server". agora also takes their *encryption* off public keys: the
//! messages the paper writes `PKE_{PK}(X, Auth_{K_p}(X))` travel as
//! `E_{K_dir}(X, Auth_{K_mac}(X))`, where K_dir and K_mac are derived from
//! K_p with HKDF. Only Pam and the server know K_p (it reached Pam inside an
//! HPKE envelope), so the messages stay readable only by them, at symmetric
//! cost (ARCHITECTURE section 3: a long exchange may "use its AEAD for later
//! messages"). BOUND_CPO keeps the server's signature: it is evidence.
//!
//! On the wire a channel message is `[tag, session id, nonce, ciphertext]`
//! with `aad = cbor(tag) || session id`; the session id is SHA-256 of a
//! label and K_p, so the server finds the session without anything else.
//! Nonces are 96 random bits: a session lasts at most
//! [`crate::MAX_SESSION_SECS`] and carries far fewer than 2^32 messages.

use agora_core::crypto::{
    hkdf_sha256, random_bytes, sha256, AeadAlg, AeadKey, MacKey, Rng, Secret, SigningKey,
    VerifyingKey, NONCE_LEN,
};
use agora_core::wire::{self, cose, Decoder, Encoder, Field, Message, Tag};
use agora_core::{DecodeError, Error, Result};

/// Which way a message goes: each direction has its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Server to seller (listings, BOUND_CPO).
    ToSeller,
    /// Seller to server (offers, end of session).
    ToServer,
}

/// K_p: the secret binding key of one browse session. Wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct BindingKey(Secret<32>);

impl std::fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindingKey(..)")
    }
}

impl BindingKey {
    /// A fresh K_p.
    pub fn random(rng: &mut impl Rng) -> BindingKey {
        BindingKey(Secret::random(rng))
    }

    /// K_p from its bytes (as received in X_3, or read from storage).
    pub fn from_bytes(bytes: [u8; 32]) -> BindingKey {
        BindingKey(Secret::new(bytes))
    }

    /// The bytes, for X_3 and for storage only.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// The session id: SHA-256("agora/cpo/session/v1" || K_p).
    pub fn session_id(&self) -> [u8; 32] {
        let mut v = b"agora/cpo/session/v1".to_vec();
        v.extend_from_slice(self.0.expose());
        sha256(&v)
    }
}

/// The keys of one session, derived from K_p.
pub struct Channel {
    id: [u8; 32],
    mac: MacKey,
    to_seller: AeadKey,
    to_server: AeadKey,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({}..)", hex::encode(&self.id[..8]))
    }
}

/// Largest channel message accepted for `M`.
fn max_len<M: Message>() -> usize {
    M::MAX_LEN.min(wire::MAX_MESSAGE_LEN) + cose::SIGN1_OVERHEAD + 128
}

fn aad(tag: Tag, id: &[u8; 32]) -> Vec<u8> {
    let mut v = tag.to_cbor();
    v.extend_from_slice(id);
    v
}

/// The tag and session id of a channel message, without opening it: for
/// the server to find the session.
pub fn peek(bytes: &[u8]) -> Result<(Tag, [u8; 32]), DecodeError> {
    if bytes.len() > wire::MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge {
            what: "session message",
            limit: wire::MAX_MESSAGE_LEN,
        });
    }
    let mut d = Decoder::new(bytes);
    d.array(4)?;
    let tag = Tag::decode(&mut d)?;
    let id: [u8; 32] = d.field()?;
    Ok((tag, id))
}

impl Channel {
    /// The channel of the session whose key is `k_p`.
    pub fn new(k_p: &BindingKey) -> Channel {
        let id = k_p.session_id();
        let derive = |label: &[u8]| -> Secret<32> {
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF's limit of 255 * 32.
            if hkdf_sha256(&id, k_p.expose(), label, &mut out).is_err() {
                unreachable!("HKDF output of 32 bytes");
            }
            Secret::new(out)
        };
        Channel {
            id,
            mac: MacKey::new(*derive(b"agora/cpo/k_p/mac").expose()),
            to_seller: AeadKey::new(
                AeadAlg::ChaCha20Poly1305,
                &derive(b"agora/cpo/k_p/to-seller"),
            ),
            to_server: AeadKey::new(
                AeadAlg::ChaCha20Poly1305,
                &derive(b"agora/cpo/k_p/to-server"),
            ),
        }
    }

    /// The session id.
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    fn key(&self, dir: Direction) -> &AeadKey {
        match dir {
            Direction::ToSeller => &self.to_seller,
            Direction::ToServer => &self.to_server,
        }
    }

    fn seal_inner(&self, rng: &mut impl Rng, dir: Direction, tag: Tag, inner: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random_bytes(rng);
        let ct = self.key(dir).seal(&nonce, &aad(tag, &self.id), inner);
        let mut e = Encoder::with_capacity(ct.len() + 96);
        e.array(4)
            .field(&tag)
            .field(&self.id)
            .field(&nonce)
            .bytes(&ct);
        e.into_bytes()
    }

    /// Checks the outer frame (size, tag first, this session) and decrypts.
    fn open_inner<M: Message>(&self, dir: Direction, bytes: &[u8]) -> Result<Vec<u8>> {
        let limit = max_len::<M>();
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                what: "session message",
                limit,
            }
            .into());
        }
        let mut d = Decoder::new(bytes);
        d.array(4)?;
        let tag = Tag::decode(&mut d)?;
        if tag != M::TAG {
            return Err(DecodeError::WrongTag {
                expected: M::TAG,
                found: tag,
            }
            .into());
        }
        let id: [u8; 32] = d.field()?;
        if id != self.id {
            return Err(Error::NotAuthorised("message of another session".into()));
        }
        let nonce: [u8; NONCE_LEN] = d.field()?;
        let ct = d.bytes("session ciphertext", limit)?;
        d.finish()?;
        self.key(dir).open(&nonce, &aad(tag, &self.id), ct)
    }

    /// `E(X, Auth_{K_p}(X))`.
    pub fn seal_authed<M: Message>(&self, rng: &mut impl Rng, dir: Direction, m: &M) -> Vec<u8> {
        self.seal_inner(rng, dir, M::TAG, &cose::mac(&self.mac, m))
    }

    /// Opens and checks an `E(X, Auth_{K_p}(X))`.
    pub fn open_authed<M: Message>(&self, dir: Direction, bytes: &[u8]) -> Result<M> {
        let inner = self.open_inner::<M>(dir, bytes)?;
        cose::verify_mac::<M>(&inner, &self.mac)
    }

    /// `E(X, Sign_{SK}(X))`; returns the message and the signed bytes
    /// (evidence).
    pub fn seal_signed<M: Message>(
        &self,
        rng: &mut impl Rng,
        dir: Direction,
        key: &SigningKey,
        m: &M,
    ) -> (Vec<u8>, Vec<u8>) {
        let signed = cose::sign(key, m);
        (self.seal_inner(rng, dir, M::TAG, &signed), signed)
    }

    /// Opens an `E(X, Sign_{SK}(X))` signed by `key`; returns X and the
    /// signed bytes.
    pub fn open_signed<M: Message>(
        &self,
        dir: Direction,
        bytes: &[u8],
        key: &VerifyingKey,
    ) -> Result<(M, Vec<u8>)> {
        let inner = self.open_inner::<M>(dir, bytes)?;
        let m = cose::verify::<M>(&inner, key)?;
        Ok((m, inner))
    }
}
