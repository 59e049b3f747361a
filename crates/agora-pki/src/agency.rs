//! Certification authorities (bonding agencies, SPEED CAs, the commit
//! authority): self-signed CA certificate, bond and identity certificates,
//! v2 CRLs. Everything is written by rcgen and signed with agora's own
//! Ed25519 key; every issued certificate is parsed and verified once more
//! before it is handed out.

use crate::cert::{parse_certificate, Crl, ParsedCert, Serial};
use crate::profile::{BondExtension, Conditions, IdentityExtension, PartyRole, Role};
use crate::signer::{self, Ed25519Public, Signer};
use agora_core::crypto::{Rng, SigningKey, VerifyingKey, X25519Public};
use agora_core::{Error, KeyId, Money, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};

/// Longest name (CN) accepted for a CA or a party, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest CRL distribution point URI, in bytes.
pub const MAX_URI_LEN: usize = 512;

/// CRLReason codes (RFC 5280 5.3.1) an agency may give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationReason {
    /// No reason given (the entry then carries no reason extension).
    Unspecified,
    /// The holder's private key was compromised.
    KeyCompromise,
    /// The holder's affiliation changed (e.g. the bond was cancelled).
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// The holder stopped operating.
    CessationOfOperation,
    /// The privilege (the bond) was withdrawn.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// What a bond certificate says (ARCHITECTURE section 4).
#[derive(Clone, Debug)]
pub struct BondParams {
    /// The holder's Ed25519 key (the agency never sees the private half).
    pub holder: VerifyingKey,
    /// The holder's X25519 encryption key.
    pub holder_x25519: X25519Public,
    /// The amount covered.
    pub amount: Money,
    /// The roles covered (at least one).
    pub roles: Vec<Role>,
    /// Allowed servers and arbiters (empty = any).
    pub conditions: Conditions,
    /// First second of validity.
    pub not_before: Timestamp,
    /// Last second of validity.
    pub not_after: Timestamp,
    /// Where the agency publishes its CRL, e.g.
    /// `http://127.0.0.1:7070/v1/pki/<agency-keyid>/crl`.
    pub crl_uri: String,
}

/// What an identity certificate says.
#[derive(Clone, Debug)]
pub struct IdentityParams {
    /// The party's name (subject CN).
    pub name: String,
    /// The party's Ed25519 key.
    pub key: VerifyingKey,
    /// The party's role.
    pub role: PartyRole,
    /// The party's X25519 encryption key, if any.
    pub x25519: Option<X25519Public>,
    /// First second of validity.
    pub not_before: Timestamp,
    /// Last second of validity.
    pub not_after: Timestamp,
    /// Where the CA publishes its CRL.
    pub crl_uri: String,
}

/// One revocation to list in a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked certificate's serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: Timestamp,
    /// Why.
    pub reason: RevocationReason,
}

/// What a CRL says.
#[derive(Clone, Debug)]
pub struct CrlParams {
    /// thisUpdate.
    pub this_update: Timestamp,
    /// nextUpdate: relying parties refuse the agency's certificates after
    /// it unless a newer CRL is at hand.
    pub next_update: Timestamp,
    /// cRLNumber, increasing with each CRL.
    pub crl_number: u64,
    /// The revoked certificates.
    pub revoked: Vec<Revocation>,
}

/// A freshly issued certificate.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// Its serial number (random, 16 bytes).
    pub serial: Serial,
    /// Its DER.
    pub der: Vec<u8>,
}

impl IssuedCert {
    /// PEM ("CERTIFICATE").
    pub fn to_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.der)
    }
}

/// A certification authority with an Ed25519 key: a bonding agency, a SPEED
/// CA or the commit authority.
#[derive(Debug)]
pub struct Agency {
    name: String,
    key: SigningKey,
    cert: ParsedCert,
}

fn odt(t: Timestamp) -> Result<time::OffsetDateTime, Error> {
    i64::try_from(t.0)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(Error::ApiMisuse("timestamp outside the X.509 date range"))
}

fn rc(e: rcgen::Error) -> Error {
    Error::Refused(format!("certificate could not be written: {e}"))
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::ApiMisuse(
            "name must be 1..=64 bytes without control characters",
        ));
    }
    Ok(())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

/// The parameters of a CA certificate: also what rcgen needs to issue under
/// it (issuer name, key identifier, key usages), so they are rebuilt the
/// same way on reload.
fn ca_params(
    name: &str,
    key_id: KeyId,
    not_before: Timestamp,
    not_after: Timestamp,
    serial: &Serial,
) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(name);
    p.not_before = odt(not_before)?;
    p.not_after = odt(not_after)?;
    p.serial_number = Some(SerialNumber::from_slice(&serial.0));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.key_identifier_method = KeyIdMethod::PreSpecified(key_id.0.to_vec());
    Ok(p)
}

fn end_entity_params(
    cn: &str,
    key_id: KeyId,
    not_before: Timestamp,
    not_after: Timestamp,
    serial: &Serial,
    crl_uri: &str,
) -> Result<CertificateParams, Error> {
    if not_after < not_before {
        return Err(Error::ApiMisuse("notAfter before notBefore"));
    }
    if crl_uri.is_empty() || crl_uri.len() > MAX_URI_LEN || !crl_uri.is_ascii() {
        return Err(Error::ApiMisuse("CRL URI must be 1..=512 ASCII bytes"));
    }
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = odt(not_before)?;
    p.not_after = odt(not_after)?;
    p.serial_number = Some(SerialNumber::from_slice(&serial.0));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::PreSpecified(key_id.0.to_vec());
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![crl_uri.to_owned()],
    }];
    Ok(p)
}

impl Agency {
    /// A new CA named `name` with key `key`, valid from `not_before` to
    /// `not_after`: a self-signed X.509 v3 certificate with basicConstraints
    /// cA (path length 0), keyUsage keyCertSign + cRLSign, and subject key
    /// identifier = the key's [`KeyId`].
    pub fn create(
        name: &str,
        key: SigningKey,
        not_before: Timestamp,
        not_after: Timestamp,
        rng: &mut impl Rng,
    ) -> Result<Agency, Error> {
        check_name(name)?;
        if not_after < not_before {
            return Err(Error::ApiMisuse("notAfter before notBefore"));
        }
        let params = ca_params(
            name,
            key.key_id(),
            not_before,
            not_after,
            &Serial::random(rng),
        )?;
        let cert = params.self_signed(&Signer::new(&key)).map_err(rc)?;
        let der = signer::finish(cert.der()).map_err(rc)?;
        Agency::from_parts(key, &der)
    }

    /// An agency from its key (from a keystore) and its CA certificate (DER).
    /// Checks that the certificate is a self-signed CA certificate for this
    /// key whose subject is the name agora writes.
    pub fn from_parts(key: SigningKey, cert_der: &[u8]) -> Result<Agency, Error> {
        let cert = parse_certificate(cert_der)?;
        if cert.public_key != key.verifying_key() {
            return Err(Error::ApiMisuse("certificate is not for this key"));
        }
        cert.verify_signature(&key.verifying_key())?;
        let name = cert
            .common_name
            .clone()
            .ok_or(Error::ApiMisuse("CA certificate has no common name"))?;
        let expected_dn = yasna_dn(&name);
        if !cert.is_ca || cert.subject_dn != expected_dn || cert.issuer_dn != expected_dn {
            return Err(Error::ApiMisuse("not an agora CA certificate"));
        }
        Ok(Agency { name, key, cert })
    }

    /// The CA's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA's key id.
    pub fn key_id(&self) -> KeyId {
        self.key.key_id()
    }

    /// The CA's public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        self.cert.der()
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        self.cert.to_pem()
    }

    /// The CA certificate, parsed.
    pub fn certificate(&self) -> &ParsedCert {
        &self.cert
    }

    /// The conventional CRL distribution point of this agency on an agora
    /// node at `base` (e.g. `http://127.0.0.1:7070`):
    /// `<base>/v1/pki/<agency-keyid>/crl`.
    pub fn crl_uri(&self, base: &str) -> String {
        format!(
            "{}/v1/pki/{}/crl",
            base.trim_end_matches('/'),
            self.key_id()
        )
    }

    fn issuer(&self) -> Result<rcgen::Issuer<'static, Signer<'_>>, Error> {
        let params = ca_params(
            &self.name,
            self.key_id(),
            self.cert.not_before,
            self.cert.not_after,
            &self.cert.serial,
        )?;
        Ok(rcgen::Issuer::new(params, Signer::new(&self.key)))
    }

    fn issue(
        &self,
        params: &CertificateParams,
        subject: &VerifyingKey,
        serial: Serial,
    ) -> Result<IssuedCert, Error> {
        let cert = params
            .signed_by(&Ed25519Public(subject.to_bytes()), &self.issuer()?)
            .map_err(rc)?;
        let der = signer::finish(cert.der()).map_err(rc)?;
        // Belt and braces: what we hand out parses and verifies.
        let parsed = parse_certificate(&der)?;
        parsed.verify_signature(&self.verifying_key())?;
        Ok(IssuedCert { serial, der })
    }

    /// Issue a bond certificate (see the crate documentation for the
    /// profile). The serial is 16 random bytes.
    pub fn issue_bond(&self, p: &BondParams, rng: &mut impl Rng) -> Result<IssuedCert, Error> {
        let ext = BondExtension {
            holder_x25519: p.holder_x25519,
            amount: p.amount,
            roles: {
                let mut r = p.roles.clone();
                r.sort();
                r.dedup();
                r
            },
            conditions: p.conditions.clone(),
        };
        if ext.roles.is_empty() {
            return Err(Error::ApiMisuse("a bond covers at least one role"));
        }
        if ext.conditions.servers.len() > crate::profile::MAX_CONDITION_KEYS
            || ext.conditions.arbiters.len() > crate::profile::MAX_CONDITION_KEYS
        {
            return Err(Error::ApiMisuse("too many allowed servers or arbiters"));
        }
        let serial = Serial::random(rng);
        let holder_id = p.holder.key_id();
        let mut params = end_entity_params(
            &holder_id.to_string(),
            holder_id,
            p.not_before,
            p.not_after,
            &serial,
            &p.crl_uri,
        )?;
        let mut ce =
            CustomExtension::from_oid_content(&signer::bond_placeholder_arcs(), ext.to_der());
        ce.set_criticality(false);
        params.custom_extensions = vec![ce];
        self.issue(&params, &p.holder, serial)
    }

    /// Issue an identity certificate for a well-known party.
    pub fn issue_identity(
        &self,
        p: &IdentityParams,
        rng: &mut impl Rng,
    ) -> Result<IssuedCert, Error> {
        check_name(&p.name)?;
        let serial = Serial::random(rng);
        let mut params = end_entity_params(
            &p.name,
            p.key.key_id(),
            p.not_before,
            p.not_after,
            &serial,
            &p.crl_uri,
        )?;
        let ext = IdentityExtension {
            role: p.role,
            x25519: p.x25519,
        };
        let mut ce =
            CustomExtension::from_oid_content(&signer::identity_placeholder_arcs(), ext.to_der());
        ce.set_criticality(false);
        params.custom_extensions = vec![ce];
        self.issue(&params, &p.key, serial)
    }

    /// Issue a v2 CRL (authorityKeyIdentifier = this CA's key id, cRLNumber,
    /// one entry per revocation with its time and reason).
    pub fn issue_crl(&self, p: &CrlParams) -> Result<Crl, Error> {
        if p.next_update <= p.this_update {
            return Err(Error::ApiMisuse("nextUpdate must follow thisUpdate"));
        }
        let mut revoked_certs = Vec::with_capacity(p.revoked.len());
        for r in &p.revoked {
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial.0),
                revocation_time: odt(r.revoked_at)?,
                reason_code: Some(r.reason.to_rcgen()),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: odt(p.this_update)?,
            next_update: odt(p.next_update)?,
            crl_number: SerialNumber::from(p.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id().0.to_vec()),
        };
        let crl = params.signed_by(&self.issuer()?).map_err(rc)?;
        let der = signer::finish(crl.der()).map_err(rc)?;
        let parsed = Crl::parse(&der)?;
        parsed.verify_signature(&self.verifying_key())?;
        Ok(parsed)
    }
}

/// The DER of the Name `CN=<cn>` exactly as rcgen writes it.
fn yasna_dn(cn: &str) -> Vec<u8> {
    // rcgen writes a single RDN with a UTF8String CN.
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_set(|w| {
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[2, 5, 4, 3]));
                    w.next().write_utf8_string(cn);
                });
            });
        })
    })
}
