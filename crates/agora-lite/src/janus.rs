//! The Janus function: the client proxy's per-vendor keys (paper section 2).
//!
//! A client gives her proxy her identity `id_C` and one secret; the proxy
//! then computes, for every vendor `V`, the persistent key `K_{C,V}` she
//! shares with it, and stores nothing. The paper's formula was lost; agora's
//! (ARCHITECTURE section 6) is
//!
//! ```text
//! S       = Argon2id(secret, salt = SHA-256("agora/janus/salt" ‖ id_C))   once per proxy session
//! K_{C,V} = HMAC-SHA-256(S, "agora/janus/v1" ‖ len(id_C) ‖ id_C ‖ len(id_V) ‖ id_V ‖ counter_V)
//! K_enc   = HKDF-Expand(K_{C,V}, "agora/janus/enc", 32)
//! K_mac   = HKDF-Expand(K_{C,V}, "agora/janus/mac", 32)
//! ```
//!
//! where each `len` is one byte (ids are 1 to 255 bytes, [`crate::ids`]) and
//! `counter_V` is 4 bytes big-endian ([`janus_input`] builds these bytes).
//! The paper's five properties, and what gives each:
//!
//! 1. *Secrecy*: `K_{C,V}` is HMAC-SHA-256 (a PRF) under `S`, itself a
//!    32-byte Argon2id output that only the secret's holder can compute.
//! 2. *Consistency*: everything is deterministic, so two proxies given the
//!    same id, secret and [`JanusParams`] compute byte-identical keys.
//! 3. *Efficiency*: the expensive step (Argon2id) is paid once, in
//!    [`Janus::open`]; each vendor's key is then one HMAC and two
//!    HKDF-Expands ([`Janus::vendor_key`]).
//! 4. *Modular security*: keys of different vendors (or counters) are PRF
//!    outputs on different inputs, so knowing some says nothing about the
//!    others -- short of recovering `S`, or guessing the secret offline:
//!    a vendor holding `K_{C,V}` can test guesses of a weak secret, each
//!    guess costing one Argon2id, which is why [`JanusParams::DEFAULT`] is
//!    expensive.
//! 5. *Impersonation resistance*: `id_C` enters twice, in the salt of `S`
//!    and in the HMAC input, so another client's id gives unrelated keys
//!    even with the same secret.
//!
//! `counter_V` (0 unless the client says otherwise) lets a client rotate one
//! vendor's key without changing her secret, and so without changing every
//! other vendor's key.
//!
//! The [`JanusParams`] are part of the derivation: a proxy with other
//! parameters computes other keys. agora's proxies use
//! [`JanusParams::DEFAULT`].

use crate::ids::{ClientId, VendorId};
use agora_core::crypto::{
    argon2id, hkdf_expand, hmac_sha256, sha256, Argon2Params, MacKey, Secret,
};
use agora_core::{Error, Result};
use std::fmt;

/// The label hashed before `id_C` into the salt of `S`.
pub const SALT_LABEL: &[u8] = b"agora/janus/salt";
/// The label that starts the HMAC input of `K_{C,V}`, naming this version of
/// the formula.
pub const KEY_LABEL: &[u8] = b"agora/janus/v1";
/// The HKDF-Expand info of `K_enc`.
pub const ENC_INFO: &[u8] = b"agora/janus/enc";
/// The HKDF-Expand info of `K_mac`.
pub const MAC_INFO: &[u8] = b"agora/janus/mac";
/// The label hashed before `K` into [`VendorKey::key_id`].
pub const KEY_ID_LABEL: &[u8] = b"agora/janus/key-id";

/// The longest secret [`Janus::open`] takes, in bytes: a passphrase or a
/// machine-generated key is far shorter, and a longer input is a mistake
/// (a file given instead of a secret) rather than more security.
pub const MAX_SECRET_LEN: usize = 1024;

/// The Argon2id cost of `S`.
///
/// These parameters are part of the key derivation: every proxy of a client
/// must use the same ones, or her vendors will not recognise her keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JanusParams {
    argon2: Argon2Params,
}

impl JanusParams {
    /// agora's parameters: m = 64 MiB, t = 3 passes, p = 1 lane.
    ///
    /// Why this much: every vendor holds a `K_{C,V}` and knows `id_C`,
    /// `id_V` and (nearly always) the counter, so any vendor -- or whoever
    /// steals a vendor's client records -- can test guesses of the client's
    /// secret offline, and a right guess yields her keys with every other
    /// vendor. The salt is derived from `id_C`, which is public, so it stops
    /// precomputation across clients but not a search aimed at one. The
    /// cost of each guess is therefore all that protects a human-chosen
    /// secret, and the proxy pays it only once per session
    /// ([`Janus::open`]), not per vendor or request, so it can afford RFC
    /// 9106's second recommended setting in memory and passes (64 MiB,
    /// t = 3) -- twice the memory of agora's keystore
    /// ([`Argon2Params::INTERACTIVE`], kept at 32 MiB because the keystore
    /// is unlocked inside processes that must stay under 64 MiB of resident
    /// memory; a proxy session does no bulk work besides). It is above
    /// every setting OWASP's password-storage guidance lists.
    ///
    /// Why one lane: the Argon2 implementation agora uses (RustCrypto
    /// `argon2` 0.5) computes lanes one after the other, so more lanes would
    /// not make `open` any faster here, while they would let an attacker's
    /// hardware fill the same memory in parallel.
    ///
    /// Cost: about 0.15 s and 64 MiB per [`Janus::open`] on the shared
    /// 2-core development machine (the test
    /// `known_answer_with_the_default_parameters` runs two).
    pub const DEFAULT: JanusParams = JanusParams {
        argon2: Argon2Params {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        },
    };

    /// The most lanes [`Self::new`] accepts. More would buy nothing with a
    /// sequential implementation (see [`Self::DEFAULT`]).
    pub const MAX_PARALLELISM: u32 = 16;

    /// Parameters of your own, checked: memory at least 8 KiB per lane
    /// (RFC 9106) and at most [`Argon2Params::MAX_MEMORY_KIB`], 1 to
    /// [`Argon2Params::MAX_ITERATIONS`] passes, 1 to
    /// [`Self::MAX_PARALLELISM`] lanes. Refused otherwise.
    ///
    /// Keys computed with other parameters than [`Self::DEFAULT`] differ
    /// from those of every agora proxy.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<JanusParams> {
        if !(1..=Self::MAX_PARALLELISM).contains(&parallelism) {
            return Err(Error::Refused(format!(
                "Janus parameters: {parallelism} lanes, expected 1 to {}",
                Self::MAX_PARALLELISM
            )));
        }
        if !(1..=Argon2Params::MAX_ITERATIONS).contains(&iterations) {
            return Err(Error::Refused(format!(
                "Janus parameters: {iterations} passes, expected 1 to {}",
                Argon2Params::MAX_ITERATIONS
            )));
        }
        // parallelism <= 16, so 8 * parallelism cannot overflow.
        let min_memory_kib = 8 * parallelism;
        if !(min_memory_kib..=Argon2Params::MAX_MEMORY_KIB).contains(&memory_kib) {
            return Err(Error::Refused(format!(
                "Janus parameters: {memory_kib} KiB of memory, expected {min_memory_kib} to {} \
                 for {parallelism} lanes",
                Argon2Params::MAX_MEMORY_KIB
            )));
        }
        Ok(JanusParams {
            argon2: Argon2Params {
                memory_kib,
                iterations,
                parallelism,
            },
        })
    }

    /// Cheap parameters for tests only (64 KiB, one pass, one lane): they
    /// make [`Janus::open`] take well under a millisecond, and make a
    /// client's secret as easy to guess as a password hashed once. Never
    /// use them for real keys (and no agora proxy does: its keys would not
    /// match).
    pub fn insecure_for_tests() -> JanusParams {
        JanusParams {
            argon2: Argon2Params {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        }
    }

    /// The Argon2id parameters.
    pub fn argon2(&self) -> Argon2Params {
        self.argon2
    }
}

impl Default for JanusParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The bytes HMAC'd into `K_{C,V}`:
/// `"agora/janus/v1" ‖ len(id_C) ‖ id_C ‖ len(id_V) ‖ id_V ‖ counter`, each
/// length one byte and the counter 4 bytes big-endian. Prefixing each id
/// with its length makes the encoding injective: no two (client, vendor,
/// counter) triples give the same bytes.
pub fn janus_input(id_c: &ClientId, id_v: &VendorId, counter: u32) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(KEY_LABEL.len() + 2 + id_c.as_bytes().len() + id_v.as_bytes().len() + 4);
    m.extend_from_slice(KEY_LABEL);
    m.push(id_c.len_byte());
    m.extend_from_slice(id_c.as_bytes());
    m.push(id_v.len_byte());
    m.extend_from_slice(id_v.as_bytes());
    m.extend_from_slice(&counter.to_be_bytes());
    m
}

/// The salt of `S`: `SHA-256("agora/janus/salt" ‖ id_C)`.
fn salt(id_c: &ClientId) -> [u8; 32] {
    let mut m = Vec::with_capacity(SALT_LABEL.len() + id_c.as_bytes().len());
    m.extend_from_slice(SALT_LABEL);
    m.extend_from_slice(id_c.as_bytes());
    sha256(&m)
}

/// A 32-byte key and the encryption and MAC keys expanded from it: the shape
/// of both `K_{C,V}` ([`VendorKey`]) and `K_t` ([`crate::SessionKey`]).
pub(crate) struct KeySet {
    k: Secret<32>,
    k_enc: Secret<32>,
    k_mac: MacKey,
}

impl KeySet {
    /// `k` with `K_enc = HKDF-Expand(k, "agora/janus/enc", 32)` and
    /// `K_mac = HKDF-Expand(k, "agora/janus/mac", 32)`.
    pub(crate) fn from_key(k: Secret<32>) -> KeySet {
        let k_enc = Secret::new(expand32(k.expose(), ENC_INFO));
        let k_mac = MacKey::new(expand32(k.expose(), MAC_INFO));
        KeySet { k, k_enc, k_mac }
    }

    pub(crate) fn k(&self) -> &Secret<32> {
        &self.k
    }
    pub(crate) fn k_enc(&self) -> &Secret<32> {
        &self.k_enc
    }
    pub(crate) fn k_mac(&self) -> &MacKey {
        &self.k_mac
    }
}

/// HKDF-Expand (RFC 5869) of the 32-byte pseudorandom key `prk` into 32
/// bytes. `prk` is always a uniformly random 32-byte key here (an HMAC or
/// HKDF output), so no Extract step is needed (RFC 5869 section 3.3).
pub(crate) fn expand32(prk: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // hkdf_expand fails only for a PRK under 32 bytes or an output over
    // 255 * 32 bytes; this one has 32 and 32.
    hkdf_expand(prk, info, &mut out)
        .expect("HKDF-Expand of a 32-byte PRK into 32 bytes cannot fail");
    out
}

/// The proxy's Janus state for one client: her id and `S`, computed once by
/// [`Janus::open`]. It does not keep her secret. `S` is wiped when this is
/// dropped and is never printed.
pub struct Janus {
    client: ClientId,
    s: Secret<32>,
}

impl Janus {
    /// Computes `S = Argon2id(secret, SHA-256("agora/janus/salt" ‖ id_C))`
    /// with `params` ([`JanusParams::DEFAULT`] for real keys): the one
    /// expensive step, done once per proxy session.
    ///
    /// `secret` is only borrowed; keep it in a zeroizing type
    /// (`zeroize::Zeroizing<Vec<u8>>` derefs to `&[u8]`) and drop it after
    /// this call. An empty secret, or one over [`MAX_SECRET_LEN`] bytes, is
    /// refused.
    pub fn open(id_c: ClientId, secret: &[u8], params: JanusParams) -> Result<Janus> {
        if secret.is_empty() {
            return Err(Error::Refused("the Janus secret is empty".into()));
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(Error::Refused(format!(
                "the Janus secret is {} bytes, over the limit of {MAX_SECRET_LEN}",
                secret.len()
            )));
        }
        let s = argon2id(secret, &salt(&id_c), params.argon2)?;
        Ok(Janus {
            client: id_c,
            s: Secret::new(*s),
        })
    }

    /// The client this proxy state is for.
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    /// The key shared with vendor `id_v`:
    /// `K_{C,V} = HMAC-SHA-256(S, janus_input(id_C, id_V, counter))` (see
    /// [`janus_input`]), with its `K_enc` and `K_mac`. `counter` is 0 until
    /// the client rotates this vendor's key; rotating changes no other
    /// vendor's key. Cheap: one HMAC and two HKDF-Expands.
    pub fn vendor_key(&self, id_v: &VendorId, counter: u32) -> VendorKey {
        let k = hmac_sha256(self.s.expose(), &janus_input(&self.client, id_v, counter));
        VendorKey(KeySet::from_key(Secret::new(k)))
    }
}

impl fmt::Debug for Janus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Janus")
            .field("client", &self.client)
            .field("s", &format_args!("<redacted>"))
            .finish()
    }
}

/// The persistent key a client shares with one vendor: `K_{C,V}` (what SKEP
/// hands the vendor) and the `K_enc` and `K_mac` expanded from it. All three
/// are wiped when this is dropped and never printed.
pub struct VendorKey(KeySet);

impl VendorKey {
    /// A name for the key that does not reveal it: the first 16 hex digits
    /// of `SHA-256("agora/janus/key-id" ‖ K)`. Two proxies that derive the
    /// same key print the same id (`agora lite derive`).
    pub fn key_id(&self) -> String {
        let mut m = zeroize::Zeroizing::new(Vec::with_capacity(KEY_ID_LABEL.len() + 32));
        m.extend_from_slice(KEY_ID_LABEL);
        m.extend_from_slice(self.k().expose());
        let h = agora_core::crypto::sha256(&m);
        h[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The vendor's side: rebuilds the key from the `K_{C,V}` it received in
    /// SKEP and filed under the client's id, expanding `K_enc` and `K_mac`
    /// exactly as the client's proxy does.
    pub fn from_shared_key(k: Secret<32>) -> VendorKey {
        VendorKey(KeySet::from_key(k))
    }

    /// `K_{C,V}`, the key the vendor stores. Keep the borrow short.
    pub fn k(&self) -> &Secret<32> {
        self.0.k()
    }

    /// `K_enc = HKDF-Expand(K_{C,V}, "agora/janus/enc", 32)`, for the
    /// `E_K` of the data delivery protocols.
    pub fn k_enc(&self) -> &Secret<32> {
        self.0.k_enc()
    }

    /// `K_mac = HKDF-Expand(K_{C,V}, "agora/janus/mac", 32)`, for the
    /// `Auth_K` of the data delivery protocols.
    pub fn k_mac(&self) -> &MacKey {
        self.0.k_mac()
    }
}

impl fmt::Debug for VendorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VendorKey { k: <redacted>, k_enc: <redacted>, k_mac: <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_input_is_the_documented_bytes() {
        let m = janus_input(
            &ClientId::new("ab").unwrap_or_else(|e| panic!("{e}")),
            &VendorId::new("c").unwrap_or_else(|e| panic!("{e}")),
            0x0102_0304,
        );
        assert_eq!(m, b"agora/janus/v1\x02ab\x01c\x01\x02\x03\x04");
    }

    #[test]
    fn params_out_of_bounds_are_refused() {
        assert!(JanusParams::new(64, 1, 1).is_ok());
        assert!(JanusParams::new(7, 1, 1).is_err());
        assert!(JanusParams::new(64, 1, 9).is_err()); // under 8 KiB per lane
        assert!(JanusParams::new(64, 0, 1).is_err());
        assert!(JanusParams::new(64, 65, 1).is_err());
        assert!(JanusParams::new(64, 1, 0).is_err());
        assert!(JanusParams::new(1024, 1, 17).is_err());
        assert!(JanusParams::new(u32::MAX, 1, 1).is_err());
        assert_eq!(JanusParams::new(64 * 1024, 3, 1), Ok(JanusParams::DEFAULT));
    }
}
