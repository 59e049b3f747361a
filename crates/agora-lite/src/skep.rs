//! SKEP, the Simple Key Establishment Protocol, and its non-repudiation
//! extension (paper section 3, figures 1 and 2).
//!
//! ```text
//! 1. C -> V  SkepHello    id_C, id_V, HPKE(pk_V, info, aad; K ‖ N_C)
//! 2. V -> C  challenge    |id_C, id_V, N_C, N_V|_K          (encrypted and MAC'd under K)
//! 3. C -> V  SkepConfirm  id_C, |id_C, id_V, N_V, S_C|_K
//! 4. V -> C  receipt      |Sign_V(id_C, id_V, S_C, issued_at)|_K   (non-repudiation SKEP only)
//! ```
//!
//! with HPKE in base mode, `info = "agora/lite/skep/1"` and
//! `aad = cbor(tag) ‖ cbor(id_C) ‖ cbor(id_V)` ([`hello_aad`]): a hello
//! opens only under the vendor's X25519 key and only with the ids it
//! names, so it can be neither redirected to another vendor (who could not
//! open it, and whose id it does not name) nor re-attributed to another
//! client. `|X|_K` is [`agora_core::wire::sym::seal_mac`] under `K_enc` and
//! `K_mac` of `K`; each step's tag is in the AEAD's associated data and in
//! the MAC'd payload, so that no message of one step is accepted as
//! another's (a challenge reflected as a confirm is refused).
//!
//! The paper's properties and what gives them here:
//! - *key authentication*: only the holder of the vendor's X25519 secret
//!   recovers `K` from a hello;
//! - *entity authentication*: the client accepts step 2 only under `K` and
//!   with her `N_C`; the vendor accepts step 3 only under `K` and with its
//!   fresh `N_V`;
//! - *key confirmation*: a challenge that opens under `K` and echoes `N_C`
//!   shows the vendor recovered `K` from this hello.
//!
//! States are consumed when a message moves them forward; a refused
//! message gives the state back, unchanged ([`Rejected`]).

use crate::chain::ChainVerifier;
use crate::ids::{ClientId, VendorId};
use crate::janus::VendorKey;
use crate::wire::{copy_key, Nonce, Rejected, Subscription, MAX_SUBSCRIPTION_LEN, NONCE_LEN};
use agora_core::crypto::{
    ct_eq, hpke, random_bytes, Rng, Secret, SigningKey, VerifyingKey, X25519Public, X25519Secret,
};
use agora_core::wire::{cose, sym, tags, Decoder, Encoder, Message, Tag};
use agora_core::{DecodeError, Error, Result, Timestamp};
use zeroize::Zeroizing;

/// The HPKE `info` of a SKEP hello.
pub const HELLO_INFO: &[u8] = b"agora/lite/skep/1";

/// The HPKE plaintext of a hello: `K` (32 bytes) then `N_C` (16 bytes).
const HELLO_PLAINTEXT_LEN: usize = 32 + NONCE_LEN;

/// Bytes of an id field, its head included (at most 255 bytes and a
/// 2-byte head).
const ID_FIELD_LEN: usize = 257;

/// The HPKE associated data of a hello for `id_c` to `id_v`: the
/// deterministic CBOR of the tag, then of each id (a text string with its
/// length in its head, so that the concatenation is injective).
pub fn hello_aad(id_c: &ClientId, id_v: &VendorId) -> Vec<u8> {
    let mut e = Encoder::with_capacity(2 * ID_FIELD_LEN + 8);
    e.field(&tags::LITE_SKEP_HELLO).field(id_c).field(id_v);
    e.into_bytes()
}

/// Step 1, client to vendor: her ids and `K ‖ N_C` sealed to the vendor's
/// X25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkepHello {
    /// The client.
    pub id_c: ClientId,
    /// The vendor the hello is for.
    pub id_v: VendorId,
    /// HPKE's encapsulated key.
    pub enc: hpke::Encapped,
    /// HPKE's ciphertext of `K ‖ N_C`.
    pub ct: Vec<u8>,
}

impl Message for SkepHello {
    const TAG: Tag = tags::LITE_SKEP_HELLO;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 2 * ID_FIELD_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c)
            .field(&self.id_v)
            .field(&self.enc)
            .bytes(&self.ct);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let id_c = d.field()?;
        let id_v = d.field()?;
        let enc = d.bytes_exact::<{ hpke::ENC_LEN }>("HPKE encapsulated key")?;
        let ct = d.bytes("HPKE ciphertext", HELLO_PLAINTEXT_LEN + hpke::OVERHEAD)?;
        if ct.len() != HELLO_PLAINTEXT_LEN + hpke::OVERHEAD {
            return Err(DecodeError::Invalid(
                "SKEP hello ciphertext of the wrong length",
            ));
        }
        Ok(SkepHello {
            id_c,
            id_v,
            enc,
            ct: ct.to_vec(),
        })
    }
}

/// Step 2's body, vendor to client, sealed under `K`: the ids, the client's
/// nonce back and the vendor's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkepChallenge {
    /// The client.
    pub id_c: ClientId,
    /// The vendor.
    pub id_v: VendorId,
    /// The client's nonce from the hello.
    pub n_c: Nonce,
    /// The vendor's fresh nonce.
    pub n_v: Nonce,
}

impl Message for SkepChallenge {
    const TAG: Tag = tags::LITE_SKEP_CHALLENGE;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 2 * ID_FIELD_LEN + 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c)
            .field(&self.id_v)
            .field(&self.n_c)
            .field(&self.n_v);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SkepChallenge {
            id_c: d.field()?,
            id_v: d.field()?,
            n_c: d.field()?,
            n_v: d.field()?,
        })
    }
}

/// Step 3's body, client to vendor, sealed under `K`: the ids, the
/// vendor's nonce back and the subscription data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkepConfirmBody {
    /// The client.
    pub id_c: ClientId,
    /// The vendor.
    pub id_v: VendorId,
    /// The vendor's nonce from the challenge.
    pub n_v: Nonce,
    /// `S_C`.
    pub subscription: Subscription,
}

impl Message for SkepConfirmBody {
    const TAG: Tag = tags::LITE_SKEP_CONFIRM;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 2 * ID_FIELD_LEN + MAX_SUBSCRIPTION_LEN + 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c)
            .field(&self.id_v)
            .field(&self.n_v)
            .field(&self.subscription);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SkepConfirmBody {
            id_c: d.field()?,
            id_v: d.field()?,
            n_v: d.field()?,
            subscription: d.field()?,
        })
    }
}

/// Step 3, client to vendor: `id_C` in clear, for the vendor to find its
/// pending state, and the [`SkepConfirmBody`] sealed under `K`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkepConfirm {
    /// The client.
    pub id_c: ClientId,
    /// The sealed [`SkepConfirmBody`].
    pub sealed: Vec<u8>,
}

/// The longest sealed confirm body.
fn max_sealed_confirm() -> usize {
    sym::max_mac_len::<SkepConfirmBody>()
}

impl Message for SkepConfirm {
    const TAG: Tag = tags::LITE_SKEP_CONFIRM;
    const FIELDS: usize = 2;
    // The sealed body (2 * 257 + 1152 + 64 + MAC0_OVERHEAD + SYM_OVERHEAD,
    // under 2 KiB) with the id and the heads.
    const MAX_LEN: usize = 4096;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c).bytes(&self.sealed);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SkepConfirm {
            id_c: d.field()?,
            sealed: d
                .bytes("sealed SKEP confirm", max_sealed_confirm())?
                .to_vec(),
        })
    }
}

/// Step 4's signed content (non-repudiation SKEP): the vendor's receipt of
/// a client's subscription, which any third party can check with the
/// vendor's Ed25519 key ([`verify_receipt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The client.
    pub id_c: ClientId,
    /// The vendor.
    pub id_v: VendorId,
    /// The subscription the vendor accepted, hash-chain anchor included.
    pub subscription: Subscription,
    /// When the vendor accepted it.
    pub issued_at: Timestamp,
}

impl Message for Receipt {
    const TAG: Tag = tags::LITE_SKEP_RECEIPT;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 2 * ID_FIELD_LEN + MAX_SUBSCRIPTION_LEN + 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c)
            .field(&self.id_v)
            .field(&self.subscription)
            .field(&self.issued_at);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Receipt {
            id_c: d.field()?,
            id_v: d.field()?,
            subscription: d.field()?,
            issued_at: d.field()?,
        })
    }
}

/// A third party's check of a receipt: `cose_sign1` (what
/// [`SkepConfirmed::on_receipt`] returns) must be a `COSE_Sign1` of a
/// [`Receipt`] by `vendor`. Refused with [`Error::NotAuthorised`] if it
/// names another signer, [`Error::Crypto`] if the signature fails, a decode
/// error if the bytes are malformed.
pub fn verify_receipt(cose_sign1: &[u8], vendor: &VerifyingKey) -> Result<Receipt> {
    cose::verify::<Receipt>(cose_sign1, vendor)
}

/// The client's side of SKEP; [`SkepClient::start`] begins a run.
#[derive(Debug)]
pub struct SkepClient;

impl SkepClient {
    /// Step 1: seals `K ‖ N_C` to the vendor's X25519 key `vendor` (which
    /// the caller has checked is `id_v`'s, e.g. from its certificate).
    /// Returns the state awaiting the challenge and the hello's bytes.
    /// Fails with [`Error::Crypto`] only for an unusable public key.
    pub fn start(
        rng: &mut impl Rng,
        key: &VendorKey,
        id_c: ClientId,
        id_v: VendorId,
        vendor: &X25519Public,
    ) -> Result<(AwaitChallenge, Vec<u8>)> {
        let n_c: Nonce = random_bytes(rng);
        let mut plain = Zeroizing::new([0u8; HELLO_PLAINTEXT_LEN]);
        plain[..32].copy_from_slice(key.k().expose());
        plain[32..].copy_from_slice(&n_c);
        let (enc, ct) = hpke::seal(rng, vendor, HELLO_INFO, &hello_aad(&id_c, &id_v), &*plain)?;
        let hello = agora_core::wire::encode(&SkepHello {
            id_c: id_c.clone(),
            id_v: id_v.clone(),
            enc,
            ct,
        });
        Ok((
            AwaitChallenge {
                id_c,
                id_v,
                key: copy_key(key),
                n_c,
            },
            hello,
        ))
    }
}

/// The client after step 1, awaiting the vendor's challenge.
#[derive(Debug)]
pub struct AwaitChallenge {
    id_c: ClientId,
    id_v: VendorId,
    key: VendorKey,
    n_c: Nonce,
}

impl AwaitChallenge {
    /// Step 2 then 3: opens the challenge under `K` ([`Error::Crypto`] if it
    /// does not open: the sender does not hold `K`), checks that it names
    /// this client and vendor and echoes `N_C` ([`Error::PeerMisbehaved`]
    /// otherwise), and answers with `subscription` (refused with
    /// [`Error::Refused`] if it fails [`Subscription::check`]). Returns the
    /// confirmed state and the confirm's bytes; on refusal, this state.
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn on_challenge(
        self,
        rng: &mut impl Rng,
        bytes: &[u8],
        subscription: Subscription,
    ) -> Result<(SkepConfirmed, Vec<u8>), Rejected<Self>> {
        let challenge = match self.check_challenge(bytes, &subscription) {
            Ok(c) => c,
            Err(e) => return Err(Rejected::new(self, e)),
        };
        let body = SkepConfirmBody {
            id_c: self.id_c.clone(),
            id_v: self.id_v.clone(),
            n_v: challenge.n_v,
            subscription: subscription.clone(),
        };
        let sealed = sym::seal_mac(self.key.k_enc(), self.key.k_mac(), rng, &body);
        let confirm = agora_core::wire::encode(&SkepConfirm {
            id_c: self.id_c.clone(),
            sealed,
        });
        Ok((
            SkepConfirmed {
                id_c: self.id_c,
                id_v: self.id_v,
                key: self.key,
                subscription,
            },
            confirm,
        ))
    }

    fn check_challenge(&self, bytes: &[u8], subscription: &Subscription) -> Result<SkepChallenge> {
        subscription.check()?;
        let c: SkepChallenge = sym::open_mac(bytes, self.key.k_enc(), self.key.k_mac())?;
        if c.id_c != self.id_c || c.id_v != self.id_v {
            return Err(Error::PeerMisbehaved("SKEP challenge names other parties"));
        }
        if !ct_eq(&c.n_c, &self.n_c) {
            return Err(Error::PeerMisbehaved(
                "SKEP challenge answers another hello",
            ));
        }
        Ok(c)
    }
}

/// The client after step 3: the vendor has shown it holds `K` (key
/// confirmation). In non-repudiation SKEP she awaits the receipt
/// ([`Self::on_receipt`]); otherwise the run is over.
#[derive(Debug)]
pub struct SkepConfirmed {
    id_c: ClientId,
    id_v: VendorId,
    key: VendorKey,
    subscription: Subscription,
}

/// A receipt the client keeps: the [`Receipt`] and the vendor's
/// `COSE_Sign1` of it, which [`verify_receipt`] checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReceipt {
    /// What the vendor signed.
    pub receipt: Receipt,
    /// The `COSE_Sign1`: the evidence to show a third party.
    pub cose_sign1: Vec<u8>,
}

impl SkepConfirmed {
    /// The subscription sent in step 3.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// The key established with the vendor.
    pub fn key(&self) -> &VendorKey {
        &self.key
    }

    /// Step 4: opens the receipt under `K`, checks the vendor's signature
    /// with `vendor` ([`Error::Crypto`] if either fails) and that it is a
    /// receipt of exactly this client, vendor and subscription
    /// ([`Error::PeerMisbehaved`] otherwise).
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn on_receipt(
        self,
        bytes: &[u8],
        vendor: &VerifyingKey,
    ) -> Result<SignedReceipt, Rejected<Self>> {
        match self.check_receipt(bytes, vendor) {
            Ok(r) => Ok(r),
            Err(e) => Err(Rejected::new(self, e)),
        }
    }

    fn check_receipt(&self, bytes: &[u8], vendor: &VerifyingKey) -> Result<SignedReceipt> {
        let (receipt, cose_sign1) = sym::open_signed::<Receipt>(bytes, self.key.k_enc(), vendor)?;
        if receipt.id_c != self.id_c || receipt.id_v != self.id_v {
            return Err(Error::PeerMisbehaved("SKEP receipt names other parties"));
        }
        if receipt.subscription != self.subscription {
            return Err(Error::PeerMisbehaved(
                "SKEP receipt is for another subscription",
            ));
        }
        Ok(SignedReceipt {
            receipt,
            cose_sign1,
        })
    }
}

/// Whether the vendor signs a receipt in step 4 (an enum, not a `bool`, so
/// that call sites say which SKEP they run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkepMode {
    /// SKEP (figure 1): three messages, no receipt.
    Basic,
    /// Non-repudiation SKEP (figure 2): the vendor signs a receipt.
    NonRepudiation,
}

/// The vendor's side of SKEP: its id, its X25519 secret (for hellos) and
/// its Ed25519 signing key (for receipts). Debug prints only their public
/// key ids.
#[derive(Debug)]
pub struct SkepVendor {
    id_v: VendorId,
    x25519: X25519Secret,
    signing: SigningKey,
}

impl SkepVendor {
    /// The vendor `id_v` with its keys.
    pub fn new(id_v: VendorId, x25519: X25519Secret, signing: SigningKey) -> SkepVendor {
        SkepVendor {
            id_v,
            x25519,
            signing,
        }
    }

    /// The vendor's id.
    pub fn id(&self) -> &VendorId {
        &self.id_v
    }

    /// The X25519 public key clients seal hellos to.
    pub fn x25519_public(&self) -> X25519Public {
        self.x25519.public()
    }

    /// The Ed25519 key receipts verify with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Step 1 then 2: decodes the hello, refuses one for another vendor
    /// ([`Error::Refused`], before any public-key work), opens it
    /// ([`Error::Crypto`] if it does not open under this vendor's key and
    /// ids) and answers with a challenge under the recovered `K`. Returns
    /// the pending state (to keep under `id_C` until the confirm) and the
    /// challenge's bytes.
    ///
    /// A hello is not fresh: anyone can replay one, and gets a challenge he
    /// cannot read. Each call draws a new `N_V`, so a confirm answers only
    /// the challenge it was made for.
    pub fn on_hello(
        &self,
        rng: &mut impl Rng,
        bytes: &[u8],
    ) -> Result<(VendorAwaitConfirm, Vec<u8>)> {
        let hello: SkepHello = agora_core::wire::decode(bytes)?;
        if hello.id_v != self.id_v {
            return Err(Error::Refused(format!(
                "SKEP hello for vendor {:?}, this is {:?}",
                hello.id_v.as_str(),
                self.id_v.as_str()
            )));
        }
        let plain = Zeroizing::new(hpke::open(
            &self.x25519,
            &hello.enc,
            HELLO_INFO,
            &hello_aad(&hello.id_c, &hello.id_v),
            &hello.ct,
        )?);
        if plain.len() != HELLO_PLAINTEXT_LEN {
            return Err(Error::PeerMisbehaved("SKEP hello of the wrong length"));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&plain[..32]);
        let key = VendorKey::from_shared_key(Secret::new(k));
        zeroize::Zeroize::zeroize(&mut k);
        let mut n_c: Nonce = [0; NONCE_LEN];
        n_c.copy_from_slice(&plain[32..]);
        let n_v: Nonce = random_bytes(rng);
        let challenge = sym::seal_mac(
            key.k_enc(),
            key.k_mac(),
            rng,
            &SkepChallenge {
                id_c: hello.id_c.clone(),
                id_v: self.id_v.clone(),
                n_c,
                n_v,
            },
        );
        Ok((
            VendorAwaitConfirm {
                id_c: hello.id_c,
                id_v: self.id_v.clone(),
                key,
                n_v,
            },
            challenge,
        ))
    }
}

/// The client id a confirm is from, read from its clear part without
/// opening it: what the vendor looks its pending state up by.
pub fn confirm_client(bytes: &[u8]) -> Result<ClientId> {
    Ok(agora_core::wire::decode::<SkepConfirm>(bytes)?.id_c)
}

/// The vendor after step 2, awaiting the client's confirm.
#[derive(Debug)]
pub struct VendorAwaitConfirm {
    id_c: ClientId,
    id_v: VendorId,
    key: VendorKey,
    n_v: Nonce,
}

/// A copy for a driver that must keep the state while it tries a message
/// that may not authenticate (`K` is copied into a new zeroize-on-drop
/// key; both copies are wiped when dropped).
impl Clone for VendorAwaitConfirm {
    fn clone(&self) -> Self {
        VendorAwaitConfirm {
            id_c: self.id_c.clone(),
            id_v: self.id_v.clone(),
            key: crate::wire::copy_key(&self.key),
            n_v: self.n_v,
        }
    }
}

/// What the vendor stores for a client after SKEP: the key, the
/// subscription, and the hash-chain verifier if the subscription commits to
/// a chain. `K` is wiped when this is dropped and never printed.
#[derive(Debug)]
pub struct ClientRecord {
    /// The client.
    pub id_c: ClientId,
    /// `K_{C,V}` with its `K_enc` and `K_mac`.
    pub k: VendorKey,
    /// `S_C`.
    pub subscription: Subscription,
    /// The verifier of the client's acknowledgements, if `S_C` has a chain.
    pub chain: Option<ChainVerifier>,
}

impl VendorAwaitConfirm {
    /// The client this state waits for.
    pub fn client(&self) -> &ClientId {
        &self.id_c
    }

    /// Step 3 (then 4 in [`SkepMode::NonRepudiation`]): opens the confirm
    /// under `K` ([`Error::Crypto`] if it does not open), checks that it
    /// names this client and vendor ([`Error::PeerMisbehaved`]), that it
    /// answers this state's `N_V` ([`Error::Replayed`]: an authentic confirm
    /// for another challenge is an old one), and that the subscription is
    /// neither inverted nor expired at `now` ([`Error::Refused`]). Returns
    /// the client's record and, in non-repudiation mode, the receipt's
    /// bytes (signed with `vendor`'s key, then sealed under `K`); on
    /// refusal, this state.
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn on_confirm(
        self,
        vendor: &SkepVendor,
        rng: &mut impl Rng,
        now: Timestamp,
        bytes: &[u8],
        mode: SkepMode,
    ) -> Result<(ClientRecord, Option<Vec<u8>>), Rejected<Self>> {
        let (subscription, chain) = match self.check_confirm(vendor, now, bytes) {
            Ok(x) => x,
            Err(e) => return Err(Rejected::new(self, e)),
        };
        let receipt = match mode {
            SkepMode::Basic => None,
            SkepMode::NonRepudiation => Some(sym::seal_signed(
                self.key.k_enc(),
                &vendor.signing,
                rng,
                &Receipt {
                    id_c: self.id_c.clone(),
                    id_v: self.id_v.clone(),
                    subscription: subscription.clone(),
                    issued_at: now,
                },
            )),
        };
        Ok((
            ClientRecord {
                id_c: self.id_c,
                k: self.key,
                subscription,
                chain,
            },
            receipt,
        ))
    }

    fn check_confirm(
        &self,
        vendor: &SkepVendor,
        now: Timestamp,
        bytes: &[u8],
    ) -> Result<(Subscription, Option<ChainVerifier>)> {
        if vendor.id_v != self.id_v {
            return Err(Error::ApiMisuse(
                "SKEP confirm given to another vendor's state",
            ));
        }
        let confirm: SkepConfirm = agora_core::wire::decode(bytes)?;
        if confirm.id_c != self.id_c {
            return Err(Error::Refused(format!(
                "SKEP confirm from client {:?}, this state is for {:?}",
                confirm.id_c.as_str(),
                self.id_c.as_str()
            )));
        }
        let body: SkepConfirmBody =
            sym::open_mac(&confirm.sealed, self.key.k_enc(), self.key.k_mac())?;
        if body.id_c != self.id_c || body.id_v != self.id_v {
            return Err(Error::PeerMisbehaved("SKEP confirm names other parties"));
        }
        if !ct_eq(&body.n_v, &self.n_v) {
            return Err(Error::Replayed);
        }
        let s = body.subscription;
        s.check()?;
        if now >= s.not_after {
            return Err(Error::Refused("subscription expired".into()));
        }
        let chain = match s.chain {
            Some(c) => Some(ChainVerifier::new(c.anchor, c.n.into())?),
            None => None,
        };
        Ok((s, chain))
    }
}
