//! The trust store: a TOML file pinning well-known parties (agencies,
//! arbiters, servers, brokers, commit authorities, CAs).
//!
//! ```toml
//! version = 1
//!
//! [[party]]
//! name = "First Bonding Agency"
//! role = "agency"                 # agency | arbiter | server | broker |
//!                                 # commit-authority | ca | customer | vendor | evaluator
//! key_id = "<64 hex digits: SHA-256 of the Ed25519 public key>"
//! certificate = """
//! -----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----
//! """                             # optional
//! ed25519 = "<64 hex digits>"     # optional: the raw public key
//! x25519 = "<64 hex digits>"      # optional: the encryption key
//! ```
//!
//! On load every entry is checked: key ids are unique, a certificate or
//! raw key must match `key_id`, and a CA-role party's certificate must be a
//! self-signed CA certificate (so it can serve as a trust anchor).

use crate::cert::{parse_certificate, ParsedCert};
use crate::profile::PartyRole;
use crate::validate::TrustAnchors;
use agora_core::crypto::{VerifyingKey, X25519Public};
use agora_core::{DecodeError, Error, KeyId};
use std::path::Path;

/// Largest trust store file read, in bytes.
pub const MAX_TRUST_STORE_LEN: usize = 4 * 1024 * 1024;
/// Most parties in one trust store.
pub const MAX_PARTIES: usize = 4096;

/// A pinned party.
#[derive(Clone, Debug)]
pub struct Party {
    /// Human-readable name.
    pub name: String,
    /// Role.
    pub role: PartyRole,
    /// SHA-256 of its Ed25519 public key.
    pub key_id: KeyId,
    /// Its certificate, if pinned.
    pub certificate: Option<ParsedCert>,
    /// Its raw Ed25519 key, if pinned without a certificate.
    pub ed25519: Option<VerifyingKey>,
    /// Its encryption key, if any.
    pub x25519: Option<X25519Public>,
}

impl Party {
    /// The party's Ed25519 key: pinned directly or from its certificate.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        self.ed25519
            .or_else(|| self.certificate.as_ref().map(|c| c.public_key))
    }

    /// The party's X25519 key: pinned directly or from its identity
    /// certificate.
    pub fn x25519(&self) -> Option<X25519Public> {
        self.x25519.or_else(|| {
            self.certificate
                .as_ref()
                .and_then(|c| c.identity.as_ref())
                .and_then(|i| i.x25519)
        })
    }

    fn is_ca_role(&self) -> bool {
        matches!(
            self.role,
            // The STP commit authority is an identity with its role (issue
            // 17), not a CA: it signs outcomes and tree heads, not
            // certificates.
            PartyRole::Agency | PartyRole::Ca
        )
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    #[serde(default)]
    party: Vec<PartyEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PartyEntry {
    name: String,
    role: PartyRole,
    key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ed25519: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x25519: Option<String>,
}

fn hex32(s: &str, what: &'static str) -> Result<[u8; 32], Error> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| Error::Decode(DecodeError::Invalid(what)))?;
    Ok(out)
}

/// Pinned well-known parties.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    parties: Vec<Party>,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Pin a party, after the consistency checks of the module doc.
    pub fn add(&mut self, party: Party) -> Result<(), Error> {
        if self.parties.len() >= MAX_PARTIES {
            return Err(Error::Refused("trust store is full".into()));
        }
        if self.by_key_id(&party.key_id).is_some() {
            return Err(Error::ApiMisuse("key id already pinned"));
        }
        if let Some(k) = &party.ed25519 {
            if k.key_id() != party.key_id {
                return Err(Error::Decode(DecodeError::Invalid(
                    "ed25519 key does not match key_id",
                )));
            }
        }
        if let Some(c) = &party.certificate {
            if c.key_id() != party.key_id {
                return Err(Error::Decode(DecodeError::Invalid(
                    "certificate does not match key_id",
                )));
            }
            if party.is_ca_role() {
                TrustAnchors::new().add(c.clone())?;
            }
        }
        self.parties.push(party);
        Ok(())
    }

    /// Pin a CA (agency, SPEED CA) by its certificate.
    pub fn add_ca(&mut self, name: &str, role: PartyRole, cert_der: &[u8]) -> Result<(), Error> {
        let cert = parse_certificate(cert_der)?;
        self.add(Party {
            name: name.to_owned(),
            role,
            key_id: cert.key_id(),
            certificate: Some(cert),
            ed25519: None,
            x25519: None,
        })
    }

    /// All parties.
    pub fn parties(&self) -> &[Party] {
        &self.parties
    }

    /// The party with this key id.
    pub fn by_key_id(&self, id: &KeyId) -> Option<&Party> {
        self.parties.iter().find(|p| &p.key_id == id)
    }

    /// The parties with this role.
    pub fn by_role(&self, role: PartyRole) -> impl Iterator<Item = &Party> {
        self.parties.iter().filter(move |p| p.role == role)
    }

    /// The certificates of the parties with `role` as trust anchors (for
    /// bonds: `PartyRole::Agency`).
    pub fn anchors(&self, role: PartyRole) -> TrustAnchors {
        let mut a = TrustAnchors::new();
        for p in self.by_role(role) {
            if let Some(c) = &p.certificate {
                // Checked on entry; a failure here would only skip the party.
                let _ = a.add(c.clone());
            }
        }
        a
    }

    /// The bonding agencies as trust anchors for [`crate::validate_bond`].
    pub fn agency_anchors(&self) -> TrustAnchors {
        self.anchors(PartyRole::Agency)
    }

    /// Parse the TOML form.
    pub fn from_toml_str(text: &str) -> Result<TrustStore, Error> {
        if text.len() > MAX_TRUST_STORE_LEN {
            return Err(Error::Decode(DecodeError::TooLarge {
                what: "trust store",
                limit: MAX_TRUST_STORE_LEN,
            }));
        }
        let file: FileV1 = toml::from_str(text).map_err(|e| {
            Error::Refused(format!("trust store is not valid TOML: {}", e.message()))
        })?;
        if file.version != 1 {
            return Err(Error::Decode(DecodeError::Invalid(
                "unknown trust store version",
            )));
        }
        let mut store = TrustStore::new();
        for e in file.party {
            let certificate = match &e.certificate {
                Some(pem) => Some(parse_certificate(&crate::pem::decode(pem, "CERTIFICATE")?)?),
                None => None,
            };
            let ed25519 = match &e.ed25519 {
                Some(h) => Some(VerifyingKey::from_bytes(&hex32(
                    h,
                    "ed25519 must be 64 hex digits",
                )?)?),
                None => None,
            };
            let x25519 = match &e.x25519 {
                Some(h) => Some(X25519Public(hex32(h, "x25519 must be 64 hex digits")?)),
                None => None,
            };
            store.add(Party {
                name: e.name,
                role: e.role,
                key_id: KeyId::from_hex(&e.key_id)?,
                certificate,
                ed25519,
                x25519,
            })?;
        }
        Ok(store)
    }

    /// The TOML form.
    pub fn to_toml_string(&self) -> Result<String, Error> {
        let file = FileV1 {
            version: 1,
            party: self
                .parties
                .iter()
                .map(|p| PartyEntry {
                    name: p.name.clone(),
                    role: p.role,
                    key_id: p.key_id.to_string(),
                    certificate: p.certificate.as_ref().map(|c| c.to_pem()),
                    ed25519: p.ed25519.map(|k| hex::encode(k.to_bytes())),
                    x25519: p.x25519.map(|k| hex::encode(k.0)),
                })
                .collect(),
        };
        toml::to_string(&file).map_err(|e| Error::Storage(format!("trust store: {e}")))
    }

    /// Read a trust store file.
    pub fn load(path: &Path) -> Result<TrustStore, Error> {
        let text = crate::keystore::read_limited(path, MAX_TRUST_STORE_LEN)?;
        TrustStore::from_toml_str(&text)
    }

    /// Write a trust store file (atomically: temporary file, then rename),
    /// mode 0600 on Unix whatever the umask: whoever can change it chooses
    /// whom this party trusts, and it says whom she deals with.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        crate::keystore::write_atomic(path, self.to_toml_string()?.as_bytes(), true)
    }
}
