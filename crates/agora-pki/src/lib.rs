//! agora-pki: X.509 certification authorities (bonding agencies, SPEED CAs,
//! the commit authority), bond and identity certificates, CRLs, the trust
//! store and encrypted keystores (ARCHITECTURE section 4).
//!
//! Certificates and CRLs are written with rcgen and signed with agora's own
//! Ed25519 keys; they are parsed with x509-parser and their signatures are
//! checked with agora-core's strict Ed25519 over the raw to-be-signed bytes.
//! Nothing here reads the clock or the OS RNG: `now` and `rng` are passed in.
//!
//! # Certificate profile
//!
//! Every certificate is X.509 v3, signed with Ed25519 (RFC 8410, algorithm
//! 1.3.101.112 without parameters), with an Ed25519 SubjectPublicKeyInfo.
//! Key identifiers are agora [`KeyId`](agora_core::KeyId)s: the
//! subjectKeyIdentifier is SHA-256 of the subject's raw 32-byte key, and the
//! authorityKeyIdentifier is the issuer's. Serial numbers are 16 random bytes
//! (first byte 0x01..=0x7f: positive and minimally encoded).
//!
//! - **CA certificate** (agency, SPEED CA, commit authority): self-signed,
//!   subject `CN=<name>`, basicConstraints critical `cA=TRUE,
//!   pathLenConstraint=0`, keyUsage critical `keyCertSign, cRLSign`.
//! - **Bond certificate**: end entity; subject `CN=<hex KeyId of the
//!   holder's Ed25519 key>` (pseudonymous); the holder's Ed25519 key;
//!   basicConstraints critical `cA=FALSE`; keyUsage critical
//!   `digitalSignature`; cRLDistributionPoints with the agency's URI
//!   (`http://<node>/v1/pki/<agency-keyid>/crl`); and the non-critical
//!   **bond extension**, OID `2.25.311462703466912000384127807773296554420`:
//!
//!   ```asn1
//!   AgoraBond ::= SEQUENCE {
//!       version       INTEGER (1),
//!       holderX25519  OCTET STRING (SIZE (32)),   -- HPKE recipient key
//!       amount        SEQUENCE {
//!           cents     INTEGER (0..18446744073709551615),
//!           currency  PrintableString (SIZE (3))  -- ISO 4217, capitals
//!       },
//!       roles         SEQUENCE (SIZE (1..2)) OF ENUMERATED { buyer(0), seller(1) },
//!                                                 -- sorted, distinct
//!       conditions    SEQUENCE {
//!           allowedServers   SEQUENCE (SIZE (0..64)) OF OCTET STRING (SIZE (32)),
//!           allowedArbiters  SEQUENCE (SIZE (0..64)) OF OCTET STRING (SIZE (32))
//!       }                                         -- KeyIds; empty = any
//!   }
//!   ```
//! - **Identity certificate** (arbiter, server, broker, customer, vendor...):
//!   end entity as above, subject `CN=<name>`, and the non-critical
//!   **identity extension**, OID
//!   `2.25.311462703466912000384127807773296554420.1`:
//!
//!   ```asn1
//!   AgoraIdentity ::= SEQUENCE {
//!       version  INTEGER (1),
//!       role     ENUMERATED { agency(0), arbiter(1), server(2), broker(3),
//!                             commitAuthority(4), ca(5), customer(6),
//!                             vendor(7), evaluator(8) },
//!       x25519   OCTET STRING (SIZE (32)) OPTIONAL
//!   }
//!   ```
//! - **CRL**: v2, Ed25519, thisUpdate and nextUpdate, authorityKeyIdentifier
//!   and cRLNumber; each entry has its revocation time and (unless
//!   unspecified) a reasonCode.
//!
//! `openssl verify -CAfile agency.pem -CRLfile crl.pem -crl_check bond.pem`
//! accepts a valid bond and refuses an expired or revoked one (tested).
//!
//! # Validation policy
//!
//! [`validate_bond`] and [`validate_identity`] return a proof value or a
//! [`Refusal`]. Revocation fails closed: a certificate is refused with
//! [`Refusal::NoCurrentCrl`] unless at least one CRL of its issuer verifies
//! and is current (thisUpdate <= now < nextUpdate); CRLs that do not verify
//! are ignored. Input is bounded ([`MAX_CERT_LEN`], [`MAX_CRL_LEN`]) and
//! parsed strictly (trailing bytes, unknown critical extensions, duplicate
//! extensions, non-Ed25519 keys refused); [`parse_certificate`] never
//! panics and is the fuzz target's entry point.
//!
//! Implementation note: rcgen writes OID arcs as `u64`, and the UUID arc is
//! 128 bits, so the extensions are written under a placeholder OID of the
//! same length that the signer replaces before signing (module `signer`).
#![forbid(unsafe_code)]

mod agency;
mod cert;
mod identity;
mod keystore;
pub mod pem;
mod profile;
mod refusal;
pub mod registry;
mod signer;
mod trust;
mod validate;

pub use agency::{
    Agency, BondParams, CrlParams, IdentityParams, IssuedCert, Revocation, RevocationReason,
    MAX_NAME_LEN, MAX_URI_LEN,
};
pub use cert::{
    key_usage, parse_certificate, Crl, ParsedCert, RevokedEntry, Serial, MAX_CERT_LEN, MAX_CRL_LEN,
    MAX_SERIAL_LEN,
};
pub use identity::{IdentityTrust, MAX_CACHED_IDENTITIES};
pub use keystore::{
    KeyKind, Keystore, KeystoreError, ARGON2_PARAMS_FOR_TESTING_ONLY, MAX_KEYS, MAX_KEYSTORE_LEN,
    MAX_KEY_NAME_LEN,
};
pub use profile::{
    BondExtension, Conditions, IdentityExtension, PartyRole, Role, AGORA_ARC, BOND_EXT_OID,
    BOND_EXT_OID_DER, IDENTITY_EXT_OID, IDENTITY_EXT_OID_DER, MAX_CONDITION_KEYS,
};
pub use refusal::Refusal;
pub use trust::{Party, TrustStore, MAX_PARTIES, MAX_TRUST_STORE_LEN};
pub use validate::{
    validate_bond, validate_identity, BondRequirement, TrustAnchors, ValidBond, ValidIdentity,
};

/// Parse a DER CRL (same as [`Crl::parse`]).
pub fn parse_crl(der: &[u8]) -> Result<Crl, Refusal> {
    Crl::parse(der)
}
