//! Parsing of certificates and CRLs of the agora profile (x509-parser), and
//! their signature checks (agora-core's strict Ed25519 over the raw
//! to-be-signed bytes). Parsing never panics and never verifies: a
//! [`ParsedCert`] or [`Crl`] is *not* trusted until validated.

use crate::profile::{BondExtension, IdentityExtension, BOND_EXT_OID_DER, IDENTITY_EXT_OID_DER};
use crate::Refusal;
use agora_core::crypto::{Signature, VerifyingKey};
use agora_core::{KeyId, Timestamp};
use std::fmt;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate, X509Extension};
use x509_parser::revocation_list::CertificateRevocationList;

/// Largest certificate accepted, in bytes. An agora certificate is under
/// 1.5 KiB even with 64 allowed servers and arbiters each (about 4.5 KiB);
/// the limit leaves room and bounds the parser's work.
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// Largest CRL accepted, in bytes (about 25 000 revoked serials).
pub const MAX_CRL_LEN: usize = 1024 * 1024;
/// RFC 5280 4.1.2.2: serial numbers are at most 20 octets.
pub const MAX_SERIAL_LEN: usize = 20;

/// OID 1.3.101.112 (id-Ed25519, RFC 8410), content octets.
const ED25519_OID: [u8; 3] = [0x2b, 0x65, 0x70];

/// A certificate serial number: the content octets of its DER INTEGER (so
/// two serials are equal exactly when their bytes are). agora agencies use
/// 16 random bytes, first byte in 0x01..=0x7f (positive, minimal).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(pub Vec<u8>);

impl Serial {
    /// A fresh random serial: 16 bytes, positive, minimally encoded.
    pub fn random(rng: &mut impl agora_core::crypto::Rng) -> Serial {
        let mut b: [u8; 16] = agora_core::crypto::random_bytes(rng);
        b[0] = (b[0] & 0x7f).max(1);
        Serial(b.to_vec())
    }

    /// Parse from hex (as printed by `Display`).
    pub fn from_hex(s: &str) -> Result<Serial, agora_core::DecodeError> {
        let b =
            hex::decode(s).map_err(|_| agora_core::DecodeError::Invalid("serial must be hex"))?;
        if b.is_empty() || b.len() > MAX_SERIAL_LEN {
            return Err(agora_core::DecodeError::Invalid(
                "serial must be 1..=20 bytes",
            ));
        }
        Ok(Serial(b))
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// keyUsage bits (RFC 5280 4.2.1.3) as x509-parser numbers them.
pub mod key_usage {
    /// digitalSignature.
    pub const DIGITAL_SIGNATURE: u16 = 1 << 0;
    /// keyCertSign.
    pub const KEY_CERT_SIGN: u16 = 1 << 5;
    /// cRLSign.
    pub const CRL_SIGN: u16 = 1 << 6;
}

/// A certificate of the agora profile, parsed but **not verified**.
#[derive(Clone, Debug)]
pub struct ParsedCert {
    der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Signature,
    /// Serial number.
    pub serial: Serial,
    /// The issuer Name, raw DER.
    pub issuer_dn: Vec<u8>,
    /// The subject Name, raw DER.
    pub subject_dn: Vec<u8>,
    /// The subject's first common name, if any.
    pub common_name: Option<String>,
    /// The subject's Ed25519 key.
    pub public_key: VerifyingKey,
    /// notBefore.
    pub not_before: Timestamp,
    /// notAfter.
    pub not_after: Timestamp,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// keyUsage bits ([`key_usage`]), if the extension is present.
    pub key_usage: Option<u16>,
    /// subjectKeyIdentifier (agora: the subject's [`KeyId`]).
    pub subject_key_id: Option<Vec<u8>>,
    /// authorityKeyIdentifier keyIdentifier (agora: the issuer's [`KeyId`]).
    pub authority_key_id: Option<Vec<u8>>,
    /// URIs of the CRL distribution points.
    pub crl_uris: Vec<String>,
    /// The bond extension, if present.
    pub bond: Option<BondExtension>,
    /// The identity extension, if present.
    pub identity: Option<IdentityExtension>,
}

fn ts(secs: i64) -> Result<Timestamp, Refusal> {
    u64::try_from(secs)
        .map(Timestamp)
        .map_err(|_| Refusal::Malformed("date before 1970"))
}

fn ed25519_sig(
    alg_oid: &[u8],
    has_params: bool,
    bits: &[u8],
    unused: u8,
) -> Result<Signature, Refusal> {
    if alg_oid != ED25519_OID || has_params {
        return Err(Refusal::Malformed("signature algorithm is not Ed25519"));
    }
    if unused != 0 {
        return Err(Refusal::Malformed("signature BIT STRING has unused bits"));
    }
    Signature::from_slice(bits)
        .map_err(|_| Refusal::Malformed("Ed25519 signature must be 64 bytes"))
}

/// Parse a DER certificate of the agora profile: X.509 v3, Ed25519 subject
/// key and signature, no trailing bytes, no duplicate or unknown critical
/// extensions, well-formed agora extensions. Never panics (fuzzed).
pub fn parse_certificate(der: &[u8]) -> Result<ParsedCert, Refusal> {
    if der.len() > MAX_CERT_LEN {
        return Err(Refusal::Malformed("certificate over the size limit"));
    }
    let (rest, x509) = X509Certificate::from_der(der)
        .map_err(|_| Refusal::Malformed("not a DER X.509 certificate"))?;
    if !rest.is_empty() {
        return Err(Refusal::Malformed("trailing bytes after the certificate"));
    }
    let tbs = &x509.tbs_certificate;
    if tbs.version.0 != 2 {
        return Err(Refusal::Malformed("not an X.509 v3 certificate"));
    }
    if x509.signature_algorithm != tbs.signature {
        return Err(Refusal::Malformed("signature algorithms differ"));
    }
    let signature = ed25519_sig(
        x509.signature_algorithm.algorithm.as_bytes(),
        x509.signature_algorithm.parameters.is_some(),
        &x509.signature_value.data,
        x509.signature_value.unused_bits,
    )?;
    let spki = &tbs.subject_pki;
    if spki.algorithm.algorithm.as_bytes() != ED25519_OID || spki.algorithm.parameters.is_some() {
        return Err(Refusal::Malformed("subject key is not Ed25519"));
    }
    if spki.subject_public_key.unused_bits != 0 {
        return Err(Refusal::Malformed("subject key BIT STRING has unused bits"));
    }
    let public_key = VerifyingKey::from_slice(&spki.subject_public_key.data)
        .map_err(|_| Refusal::Malformed("subject key is not a valid Ed25519 key"))?;
    let raw_serial = tbs.raw_serial();
    if raw_serial.is_empty() || raw_serial.len() > MAX_SERIAL_LEN {
        return Err(Refusal::Malformed("serial must be 1..=20 bytes"));
    }
    let common_name = match tbs.subject.iter_common_name().next() {
        Some(cn) => Some(
            cn.as_str()
                .map_err(|_| Refusal::Malformed("common name is not a string"))?
                .to_owned(),
        ),
        None => None,
    };
    let mut out = ParsedCert {
        der: der.to_vec(),
        tbs: tbs.as_ref().to_vec(),
        signature,
        serial: Serial(raw_serial.to_vec()),
        issuer_dn: tbs.issuer.as_raw().to_vec(),
        subject_dn: tbs.subject.as_raw().to_vec(),
        common_name,
        public_key,
        not_before: ts(tbs.validity.not_before.timestamp())?,
        not_after: ts(tbs.validity.not_after.timestamp())?,
        is_ca: false,
        key_usage: None,
        subject_key_id: None,
        authority_key_id: None,
        crl_uris: Vec::new(),
        bond: None,
        identity: None,
    };
    if out.not_after < out.not_before {
        return Err(Refusal::Malformed("notAfter before notBefore"));
    }
    let exts = tbs.extensions();
    check_unique(exts)?;
    for ext in exts {
        let oid = ext.oid.as_bytes();
        if oid == BOND_EXT_OID_DER {
            out.bond = Some(BondExtension::from_der(ext.value).map_err(Refusal::Malformed)?);
            continue;
        }
        if oid == IDENTITY_EXT_OID_DER {
            out.identity =
                Some(IdentityExtension::from_der(ext.value).map_err(Refusal::Malformed)?);
            continue;
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => out.is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => out.key_usage = Some(ku.flags),
            ParsedExtension::SubjectKeyIdentifier(k) => out.subject_key_id = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                out.authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for p in points.iter() {
                    if let Some(x509_parser::extensions::DistributionPointName::FullName(names)) =
                        &p.distribution_point
                    {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                out.crl_uris.push((*u).to_owned());
                            }
                        }
                    }
                }
            }
            ParsedExtension::ParseError { .. } => {
                return Err(Refusal::Malformed("malformed standard extension"));
            }
            _ if ext.critical => {
                return Err(Refusal::Malformed("unknown critical extension"));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn check_unique(exts: &[X509Extension<'_>]) -> Result<(), Refusal> {
    for (i, a) in exts.iter().enumerate() {
        if exts[..i].iter().any(|b| b.oid == a.oid) {
            return Err(Refusal::Malformed("duplicate extension"));
        }
    }
    Ok(())
}

impl ParsedCert {
    /// The DER this was parsed from.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The raw to-be-signed bytes (what the issuer signed).
    pub fn tbs_bytes(&self) -> &[u8] {
        &self.tbs
    }

    /// The [`KeyId`] of the subject's Ed25519 key.
    pub fn key_id(&self) -> KeyId {
        self.public_key.key_id()
    }

    /// Whether `issuer` signed this certificate.
    pub fn verify_signature(&self, issuer: &VerifyingKey) -> Result<(), Refusal> {
        issuer
            .verify(&self.tbs, &self.signature)
            .map_err(|_| Refusal::BadSignature)
    }

    /// `now` within [notBefore, notAfter] (both inclusive, RFC 5280).
    pub fn check_validity(&self, now: Timestamp) -> Result<(), Refusal> {
        if now < self.not_before {
            return Err(Refusal::NotYetValid);
        }
        if now > self.not_after {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    /// PEM ("CERTIFICATE").
    pub fn to_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.der)
    }
}

/// One entry of a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The revoked certificate's serial.
    pub serial: Serial,
    /// When the agency revoked it.
    pub revoked_at: Timestamp,
    /// The CRLReason code (RFC 5280 5.3.1), if given.
    pub reason: Option<u8>,
}

/// A v2 CRL, parsed but **not verified** (see [`Crl::verify_signature`]).
#[derive(Clone, Debug)]
pub struct Crl {
    der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Signature,
    /// The issuer Name, raw DER.
    pub issuer_dn: Vec<u8>,
    /// authorityKeyIdentifier keyIdentifier (agora: the agency's [`KeyId`]).
    pub authority_key_id: Option<Vec<u8>>,
    /// thisUpdate.
    pub this_update: Timestamp,
    /// nextUpdate (agora CRLs always carry it).
    pub next_update: Option<Timestamp>,
    /// cRLNumber, if present and at most 64 bits.
    pub crl_number: Option<u64>,
    /// The revoked certificates.
    pub revoked: Vec<RevokedEntry>,
}

impl Crl {
    /// Parse a DER CRL: v2, Ed25519, no trailing bytes. Never panics.
    pub fn parse(der: &[u8]) -> Result<Crl, Refusal> {
        if der.len() > MAX_CRL_LEN {
            return Err(Refusal::Malformed("CRL over the size limit"));
        }
        let (rest, crl) = CertificateRevocationList::from_der(der)
            .map_err(|_| Refusal::Malformed("not a DER CRL"))?;
        if !rest.is_empty() {
            return Err(Refusal::Malformed("trailing bytes after the CRL"));
        }
        let tbs = &crl.tbs_cert_list;
        if tbs.version.map(|v| v.0) != Some(1) {
            return Err(Refusal::Malformed("not a v2 CRL"));
        }
        if crl.signature_algorithm != tbs.signature {
            return Err(Refusal::Malformed("signature algorithms differ"));
        }
        let signature = ed25519_sig(
            crl.signature_algorithm.algorithm.as_bytes(),
            crl.signature_algorithm.parameters.is_some(),
            &crl.signature_value.data,
            crl.signature_value.unused_bits,
        )?;
        let mut authority_key_id = None;
        let mut crl_number = None;
        check_unique(tbs.extensions())?;
        for ext in tbs.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::CRLNumber(n) => {
                    let b = n.to_bytes_be();
                    if b.len() <= 8 {
                        let mut arr = [0u8; 8];
                        arr[8 - b.len()..].copy_from_slice(&b);
                        crl_number = Some(u64::from_be_bytes(arr));
                    }
                }
                ParsedExtension::ParseError { .. } => {
                    return Err(Refusal::Malformed("malformed CRL extension"));
                }
                _ if ext.critical => {
                    return Err(Refusal::Malformed("unknown critical CRL extension"));
                }
                _ => {}
            }
        }
        let mut revoked = Vec::with_capacity(tbs.revoked_certificates.len());
        for rc in &tbs.revoked_certificates {
            let s = rc.raw_serial();
            if s.is_empty() || s.len() > MAX_SERIAL_LEN {
                return Err(Refusal::Malformed("serial must be 1..=20 bytes"));
            }
            revoked.push(RevokedEntry {
                serial: Serial(s.to_vec()),
                revoked_at: ts(rc.revocation_date.timestamp())?,
                reason: rc.reason_code().map(|(_, r)| r.0),
            });
        }
        Ok(Crl {
            der: der.to_vec(),
            tbs: tbs.as_ref().to_vec(),
            signature,
            issuer_dn: tbs.issuer.as_raw().to_vec(),
            authority_key_id,
            this_update: ts(tbs.this_update.timestamp())?,
            next_update: match tbs.next_update {
                Some(t) => Some(ts(t.timestamp())?),
                None => None,
            },
            crl_number,
            revoked,
        })
    }

    /// The DER this was parsed from.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM ("X509 CRL").
    pub fn to_pem(&self) -> String {
        crate::pem::encode("X509 CRL", &self.der)
    }

    /// Whether `issuer` signed this CRL.
    pub fn verify_signature(&self, issuer: &VerifyingKey) -> Result<(), Refusal> {
        issuer
            .verify(&self.tbs, &self.signature)
            .map_err(|_| Refusal::BadSignature)
    }

    /// Whether the CRL is current at `now`: thisUpdate <= now < nextUpdate.
    /// A CRL without nextUpdate is never current.
    pub fn is_current(&self, now: Timestamp) -> bool {
        self.this_update <= now && self.next_update.is_some_and(|n| now < n)
    }

    /// Whether `serial` is listed.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.revoked.iter().any(|e| &e.serial == serial)
    }
}
