//! HPKE, RFC 9180 base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305. `PKE_K(X)` in the papers (ARCHITECTURE section 2).
//!
//! One-shot [`seal`] / [`open`] for single messages, and a sender / receiver
//! context for long exchanges whose [`SenderContext::export`] gives a
//! symmetric secret both sides share (RFC 9180 section 5.3), so that later
//! messages cost an AEAD, not a key encapsulation.

use super::{X25519Public, X25519Secret};
use crate::{Error, Result};
use hpke::{Deserializable, Serializable};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// Length of the encapsulated key (`enc`).
pub const ENC_LEN: usize = 32;
/// Ciphertext expansion of one HPKE seal (the AEAD tag).
pub const OVERHEAD: usize = 16;

/// The encapsulated key that travels with an HPKE ciphertext.
pub type Encapped = [u8; ENC_LEN];

fn public_key(pk: &X25519Public) -> Result<<Kem as hpke::Kem>::PublicKey> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(&pk.0).map_err(|_| Error::Crypto)
}

fn private_key(sk: &X25519Secret) -> Result<<Kem as hpke::Kem>::PrivateKey> {
    <Kem as hpke::Kem>::PrivateKey::from_bytes(sk.to_bytes().as_ref()).map_err(|_| Error::Crypto)
}

fn encapped(enc: &Encapped) -> Result<<Kem as hpke::Kem>::EncappedKey> {
    <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| Error::Crypto)
}

fn enc_bytes(e: &<Kem as hpke::Kem>::EncappedKey) -> Encapped {
    let mut out = [0u8; ENC_LEN];
    out.copy_from_slice(&e.to_bytes());
    out
}

/// Seal `plaintext` to `recipient` in one shot.
pub fn seal(
    rng: &mut impl super::Rng,
    recipient: &X25519Public,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Encapped, Vec<u8>)> {
    super::ops::count(super::ops::Op::HpkeSeal, plaintext.len());
    let pk = public_key(recipient)?;
    let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
        &hpke::OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        rng,
    )
    .map_err(|_| Error::Crypto)?;
    Ok((enc_bytes(&enc), ct))
}

/// Open a one-shot HPKE ciphertext with the recipient's key.
pub fn open(
    recipient: &X25519Secret,
    enc: &Encapped,
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>> {
    super::ops::count(super::ops::Op::HpkeOpen, ciphertext.len());
    let sk = private_key(recipient)?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(
        &hpke::OpModeR::Base,
        &sk,
        &encapped(enc)?,
        info,
        ciphertext,
        aad,
    )
    .map_err(|_| Error::Crypto)
}

/// The sending side of an HPKE context.
pub struct SenderContext(hpke::aead::AeadCtxS<Aead, Kdf, Kem>);

/// The receiving side of an HPKE context.
pub struct ReceiverContext(hpke::aead::AeadCtxR<Aead, Kdf, Kem>);

/// Set up a context to `recipient`; send the returned `enc` with the first
/// message.
pub fn setup_sender(
    rng: &mut impl super::Rng,
    recipient: &X25519Public,
    info: &[u8],
) -> Result<(Encapped, SenderContext)> {
    super::ops::count(super::ops::Op::HpkeSeal, 0);
    let pk = public_key(recipient)?;
    let (enc, ctx) = hpke::setup_sender::<Aead, Kdf, Kem, _>(&hpke::OpModeS::Base, &pk, info, rng)
        .map_err(|_| Error::Crypto)?;
    Ok((enc_bytes(&enc), SenderContext(ctx)))
}

/// Set up the receiving context from the sender's `enc`.
pub fn setup_receiver(
    recipient: &X25519Secret,
    enc: &Encapped,
    info: &[u8],
) -> Result<ReceiverContext> {
    super::ops::count(super::ops::Op::HpkeOpen, 0);
    let sk = private_key(recipient)?;
    let ctx =
        hpke::setup_receiver::<Aead, Kdf, Kem>(&hpke::OpModeR::Base, &sk, &encapped(enc)?, info)
            .map_err(|_| Error::Crypto)?;
    Ok(ReceiverContext(ctx))
}

impl SenderContext {
    /// Seal the next message of the context (the sequence number is
    /// implicit: the receiver must open messages in order).
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        super::ops::count(super::ops::Op::ChaCha20Poly1305, plaintext.len());
        self.0.seal(plaintext, aad).map_err(|_| Error::Crypto)
    }

    /// Export a secret of `out.len()` bytes bound to `label` (RFC 9180
    /// section 5.3); the receiver exports the same.
    pub fn export(&self, label: &[u8], out: &mut [u8]) -> Result<()> {
        self.0
            .export(label, out)
            .map_err(|_| Error::ApiMisuse("HPKE export longer than allowed"))
    }
}

impl ReceiverContext {
    /// Open the next message of the context.
    pub fn open(&mut self, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
        super::ops::count(super::ops::Op::ChaCha20Poly1305, ciphertext.len());
        self.0.open(ciphertext, aad).map_err(|_| Error::Crypto)
    }

    /// See [`SenderContext::export`].
    pub fn export(&self, label: &[u8], out: &mut [u8]) -> Result<()> {
        self.0
            .export(label, out)
            .map_err(|_| Error::ApiMisuse("HPKE export longer than allowed"))
    }
}

impl std::fmt::Debug for SenderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hpke::SenderContext(..)")
    }
}

impl std::fmt::Debug for ReceiverContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hpke::ReceiverContext(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn one_shot_round_trip_and_binding() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let sk = X25519Secret::generate(&mut rng);
        let other = X25519Secret::generate(&mut rng);
        let (enc, ct) = seal(&mut rng, &sk.public(), b"info", b"aad", b"secret").unwrap();
        assert_eq!(open(&sk, &enc, b"info", b"aad", &ct).unwrap(), b"secret");
        assert_eq!(open(&other, &enc, b"info", b"aad", &ct), Err(Error::Crypto));
        assert_eq!(open(&sk, &enc, b"infO", b"aad", &ct), Err(Error::Crypto));
        assert_eq!(open(&sk, &enc, b"info", b"aaD", &ct), Err(Error::Crypto));
        // Two seals of the same message differ (fresh ephemeral key).
        let (enc2, ct2) = seal(&mut rng, &sk.public(), b"info", b"aad", b"secret").unwrap();
        assert_ne!((enc, ct), (enc2, ct2));
    }

    #[test]
    fn context_messages_in_order_and_export_agrees() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let sk = X25519Secret::generate(&mut rng);
        let (enc, mut s) = setup_sender(&mut rng, &sk.public(), b"info").unwrap();
        let mut r = setup_receiver(&sk, &enc, b"info").unwrap();
        let c1 = s.seal(b"", b"one").unwrap();
        let c2 = s.seal(b"", b"two").unwrap();
        assert_eq!(r.open(b"", &c1).unwrap(), b"one");
        assert_eq!(r.open(b"", &c2).unwrap(), b"two");
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        s.export(b"label", &mut a).unwrap();
        r.export(b"label", &mut b).unwrap();
        assert_eq!(a, b);
        let mut c = [0u8; 32];
        r.export(b"other", &mut c).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn out_of_order_context_message_fails() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let sk = X25519Secret::generate(&mut rng);
        let (enc, mut s) = setup_sender(&mut rng, &sk.public(), b"i").unwrap();
        let mut r = setup_receiver(&sk, &enc, b"i").unwrap();
        let _c1 = s.seal(b"", b"one").unwrap();
        let c2 = s.seal(b"", b"two").unwrap();
        assert_eq!(r.open(b"", &c2), Err(Error::Crypto));
    }
}
