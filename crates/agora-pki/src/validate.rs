//! Validation of bond and identity certificates against trust anchors and
//! CRLs. The result of a successful check is a proof value ([`ValidBond`],
//! [`ValidIdentity`]) that only these functions can build.

use crate::cert::{parse_certificate, Crl, ParsedCert, Serial};
use crate::profile::{Conditions, PartyRole, Role};
use crate::Refusal;
use agora_core::crypto::{VerifyingKey, X25519Public};
use agora_core::{KeyId, Money, Timestamp};

/// Trusted CA certificates (for bonds: the bonding agencies), indexed by
/// key id. Each was checked on entry to be a self-signed Ed25519 CA
/// certificate allowed to sign certificates and CRLs.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    anchors: Vec<ParsedCert>,
}

impl TrustAnchors {
    /// No anchors.
    pub fn new() -> TrustAnchors {
        TrustAnchors::default()
    }

    /// Add a CA certificate (DER) as an anchor; returns its key id.
    pub fn add_der(&mut self, der: &[u8]) -> Result<KeyId, Refusal> {
        let cert = parse_certificate(der)?;
        self.add(cert)
    }

    /// Add a parsed CA certificate as an anchor; returns its key id.
    pub fn add(&mut self, cert: ParsedCert) -> Result<KeyId, Refusal> {
        let ku = cert.key_usage.unwrap_or(0);
        let needed = crate::cert::key_usage::KEY_CERT_SIGN | crate::cert::key_usage::CRL_SIGN;
        if !cert.is_ca || ku & needed != needed {
            return Err(Refusal::Malformed("trust anchor is not a CA certificate"));
        }
        if cert.issuer_dn != cert.subject_dn {
            return Err(Refusal::Malformed("trust anchor is not self-issued"));
        }
        cert.verify_signature(&cert.public_key)?;
        let id = cert.key_id();
        if self.get(&id).is_none() {
            self.anchors.push(cert);
        }
        Ok(id)
    }

    /// The anchor with this key id.
    pub fn get(&self, id: &KeyId) -> Option<&ParsedCert> {
        self.anchors.iter().find(|c| &c.key_id() == id)
    }

    /// How many anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// What a relying party needs a bond to cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondRequirement {
    /// The price the bond must cover (same currency, at least as much), if
    /// any.
    pub price: Option<Money>,
    /// The role the holder acts in.
    pub role: Role,
    /// The server the bond is used with, if known: must be allowed.
    pub server: Option<KeyId>,
    /// The arbiter the bond is used with, if known: must be allowed.
    pub arbiter: Option<KeyId>,
}

/// Proof that a bond certificate was valid, trusted, unrevoked and covered a
/// [`BondRequirement`] at the time given. Only [`validate_bond`] builds it.
#[derive(Clone, Debug)]
pub struct ValidBond {
    holder: VerifyingKey,
    holder_x25519: X25519Public,
    amount: Money,
    roles: Vec<Role>,
    conditions: Conditions,
    serial: Serial,
    not_after: Timestamp,
    agency: KeyId,
}

impl ValidBond {
    /// The holder's Ed25519 key (PK_B / PK_P in the CPO paper).
    pub fn holder(&self) -> &VerifyingKey {
        &self.holder
    }
    /// The holder's key id (the certificate's subject CN).
    pub fn holder_key_id(&self) -> KeyId {
        self.holder.key_id()
    }
    /// The holder's X25519 encryption key.
    pub fn holder_x25519(&self) -> &X25519Public {
        &self.holder_x25519
    }
    /// The amount covered.
    pub fn amount(&self) -> Money {
        self.amount
    }
    /// The roles covered.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }
    /// Allowed servers and arbiters.
    pub fn conditions(&self) -> &Conditions {
        &self.conditions
    }
    /// The serial (what a CRL lists).
    pub fn serial(&self) -> &Serial {
        &self.serial
    }
    /// The end of validity.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }
    /// The key id of the issuing agency.
    pub fn agency(&self) -> KeyId {
        self.agency
    }
}

/// Proof that an identity certificate was valid, trusted and unrevoked.
/// Only [`validate_identity`] builds it.
#[derive(Clone, Debug)]
pub struct ValidIdentity {
    name: String,
    key: VerifyingKey,
    role: PartyRole,
    x25519: Option<X25519Public>,
    serial: Serial,
    not_after: Timestamp,
    issuer: KeyId,
}

impl ValidIdentity {
    /// The subject's name (CN).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The subject's Ed25519 key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
    /// The subject's role.
    pub fn role(&self) -> PartyRole {
        self.role
    }
    /// The subject's X25519 key, if any.
    pub fn x25519(&self) -> Option<&X25519Public> {
        self.x25519.as_ref()
    }
    /// The serial.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }
    /// The end of validity.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }
    /// The issuing CA's key id.
    pub fn issuer(&self) -> KeyId {
        self.issuer
    }
}

/// The issuer checks: a trusted anchor found by authorityKeyIdentifier
/// whose subject is the certificate's issuer name (UnknownIssuer), and its
/// signature (BadSignature). Returns the anchor.
fn check_issuer<'a>(
    cert: &ParsedCert,
    anchors: &'a TrustAnchors,
) -> Result<&'a ParsedCert, Refusal> {
    if cert.is_ca {
        return Err(Refusal::Malformed("a CA certificate is not an end entity"));
    }
    let aki = cert
        .authority_key_id
        .as_deref()
        .ok_or(Refusal::UnknownIssuer)?;
    let issuer_id = KeyId::from_slice(aki).map_err(|_| Refusal::UnknownIssuer)?;
    let anchor = anchors.get(&issuer_id).ok_or(Refusal::UnknownIssuer)?;
    if anchor.subject_dn != cert.issuer_dn {
        return Err(Refusal::UnknownIssuer);
    }
    cert.verify_signature(&anchor.public_key)?;
    Ok(anchor)
}

/// Validity of the certificate and of its issuer at `now` (NotYetValid,
/// Expired).
fn check_dates(cert: &ParsedCert, anchor: &ParsedCert, now: Timestamp) -> Result<(), Refusal> {
    cert.check_validity(now)?;
    anchor.check_validity(now)
}

/// Revocation against the issuer's CRLs: only CRLs that name the issuer (by
/// authorityKeyIdentifier and issuer name), verify under its key and are
/// current (thisUpdate <= now < nextUpdate) count; others are ignored. If
/// none counts: [`Refusal::NoCurrentCrl`] (fail closed). Listed in any
/// counting CRL: [`Refusal::Revoked`].
fn check_revocation(
    serial: &Serial,
    anchor: &ParsedCert,
    crls: &[Crl],
    now: Timestamp,
) -> Result<(), Refusal> {
    let issuer_id = anchor.key_id();
    let mut current = 0usize;
    for crl in crls {
        let by_issuer = crl.authority_key_id.as_deref() == Some(issuer_id.as_bytes().as_slice())
            && crl.issuer_dn == anchor.subject_dn;
        if !by_issuer || !crl.is_current(now) {
            continue;
        }
        if crl.verify_signature(&anchor.public_key).is_err() {
            continue;
        }
        current += 1;
        if crl.is_revoked(serial) {
            return Err(Refusal::Revoked);
        }
    }
    if current == 0 {
        return Err(Refusal::NoCurrentCrl);
    }
    Ok(())
}

/// Validate a bond certificate (DER) for `req` at `now`.
///
/// Order of checks: [`Refusal::Malformed`], [`Refusal::UnknownIssuer`],
/// [`Refusal::BadSignature`], [`Refusal::NotABond`],
/// [`Refusal::NotYetValid`] / [`Refusal::Expired`] (the bond's or the
/// agency's), [`Refusal::NoCurrentCrl`], [`Refusal::Revoked`],
/// [`Refusal::RoleNotAllowed`], [`Refusal::CurrencyMismatch`],
/// [`Refusal::AmountTooLow`] (with both amounts), [`Refusal::ServerNotAllowed`],
/// [`Refusal::ArbiterNotAllowed`]. The subject CN must be the holder's key
/// id in hex (else Malformed).
pub fn validate_bond(
    cert_der: &[u8],
    anchors: &TrustAnchors,
    crls: &[Crl],
    now: Timestamp,
    req: &BondRequirement,
) -> Result<ValidBond, Refusal> {
    // Signature before "is it a bond", so that NotABond speaks of an
    // authentic certificate; validity after, so that the dates are trusted.
    let cert = parse_certificate(cert_der)?;
    let anchor = check_issuer(&cert, anchors)?;
    let bond = cert.bond.clone().ok_or(Refusal::NotABond)?;
    check_dates(&cert, anchor, now)?;
    if cert.common_name.as_deref() != Some(cert.key_id().to_string().as_str()) {
        return Err(Refusal::Malformed(
            "bond subject must be the holder's key id",
        ));
    }
    check_revocation(&cert.serial, anchor, crls, now)?;
    if !bond.roles.contains(&req.role) {
        return Err(Refusal::RoleNotAllowed);
    }
    if let Some(price) = &req.price {
        if bond.amount.currency != price.currency {
            return Err(Refusal::CurrencyMismatch);
        }
        if !bond.amount.covers(price) {
            return Err(Refusal::AmountTooLow {
                bond: bond.amount,
                price: *price,
            });
        }
    }
    if let Some(server) = &req.server {
        let allowed = &bond.conditions.servers;
        if !allowed.is_empty() && !allowed.contains(server) {
            return Err(Refusal::ServerNotAllowed);
        }
    }
    if let Some(arbiter) = &req.arbiter {
        let allowed = &bond.conditions.arbiters;
        if !allowed.is_empty() && !allowed.contains(arbiter) {
            return Err(Refusal::ArbiterNotAllowed);
        }
    }
    Ok(ValidBond {
        holder: cert.public_key,
        holder_x25519: bond.holder_x25519,
        amount: bond.amount,
        roles: bond.roles,
        conditions: bond.conditions,
        serial: cert.serial,
        not_after: cert.not_after,
        agency: anchor.key_id(),
    })
}

/// Validate an identity certificate (DER) at `now`; if `role` is given, the
/// certificate must be for that role ([`Refusal::RoleNotAllowed`]). Same
/// chain and revocation checks as [`validate_bond`]; a certificate without
/// the identity extension is [`Refusal::NotAnIdentity`].
pub fn validate_identity(
    cert_der: &[u8],
    anchors: &TrustAnchors,
    crls: &[Crl],
    now: Timestamp,
    role: Option<PartyRole>,
) -> Result<ValidIdentity, Refusal> {
    let cert = parse_certificate(cert_der)?;
    let anchor = check_issuer(&cert, anchors)?;
    let ident = cert.identity.clone().ok_or(Refusal::NotAnIdentity)?;
    check_dates(&cert, anchor, now)?;
    let name = cert
        .common_name
        .clone()
        .ok_or(Refusal::Malformed("identity certificate without a name"))?;
    check_revocation(&cert.serial, anchor, crls, now)?;
    if role.is_some_and(|r| r != ident.role) {
        return Err(Refusal::RoleNotAllowed);
    }
    Ok(ValidIdentity {
        name,
        key: cert.public_key,
        role: ident.role,
        x25519: ident.x25519,
        serial: cert.serial,
        not_after: cert.not_after,
        issuer: anchor.key_id(),
    })
}
