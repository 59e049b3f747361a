//! Identity trust: trusted CAs, their CRLs, and a cache of the identity
//! certificates validated under them, shared by every protocol crate whose
//! parties carry identity certificates (SPEED, STP).

use crate::{validate_identity, Crl, PartyRole, TrustAnchors, ValidIdentity};
use agora_core::{Result, Timestamp};

/// What a party needs to judge identity certificates: the trusted
/// certification authorities and their current CRLs (SPEED section 3.2:
/// "every certification authority must be considered trustworthy"; STP's
/// parties and commit authority likewise).
///
/// A server-side party (vendor, broker, commit authority) sees the same customer's
/// certificate on every purchase; [`IdentityTrust::with_cache`] remembers each
/// certificate it validated until the earlier of its notAfter and the
/// nextUpdate of the CRLs it was checked against, so a returning customer
/// costs no certificate validation (two Ed25519 verifications: the
/// certificate's and the CRL's). The cache belongs to this set of CAs and
/// CRLs: a trust reload makes a new `IdentityTrust`, with an empty cache, so a
/// new CRL takes effect at once.
#[derive(Clone, Debug)]
pub struct IdentityTrust {
    /// Trusted CAs.
    pub cas: TrustAnchors,
    /// Their CRLs (a certificate is refused unless its CA's CRL is current).
    pub crls: Vec<Crl>,
    cache: Option<std::sync::Arc<IdentityCache>>,
}

/// Certificates validated, by SHA-256 of their DER and the role asked for:
/// the identity, the time it was validated at, and the time it stops
/// counting as validated.
#[derive(Debug, Default)]
struct IdentityCache(std::sync::Mutex<std::collections::HashMap<CacheKey, Cached>>);

/// SHA-256 of the certificate's DER, and the role's code (255: any role).
type CacheKey = ([u8; 32], u8);
/// The identity, when it was validated, when that stops counting.
type Cached = (ValidIdentity, Timestamp, Timestamp);

/// Most certificates an `IdentityCache` remembers (it starts afresh when
/// full).
pub const MAX_CACHED_IDENTITIES: usize = 65_536;

impl IdentityTrust {
    /// Trust in `cas`, with their `crls`, validating every certificate every
    /// time.
    pub fn new(cas: TrustAnchors, crls: Vec<Crl>) -> IdentityTrust {
        IdentityTrust {
            cas,
            crls,
            cache: None,
        }
    }

    /// The same trust, remembering the certificates it validated (see the
    /// type's documentation).
    pub fn with_cache(mut self) -> IdentityTrust {
        self.cache = Some(std::sync::Arc::default());
        self
    }

    /// Validates `cert` (DER) at `now` as an identity certificate of `role`.
    pub fn identity(&self, cert: &[u8], now: Timestamp, role: PartyRole) -> Result<ValidIdentity> {
        self.validate(cert, now, Some(role))
    }

    /// Validates `cert` (DER) at `now` as an identity certificate of any
    /// role (an STP party may be a customer, a vendor or anyone else a
    /// trusted CA vouches for).
    pub fn identity_of_any_role(&self, cert: &[u8], now: Timestamp) -> Result<ValidIdentity> {
        self.validate(cert, now, None)
    }

    fn validate(
        &self,
        cert: &[u8],
        now: Timestamp,
        role: Option<PartyRole>,
    ) -> Result<ValidIdentity> {
        let Some(cache) = &self.cache else {
            return Ok(validate_identity(cert, &self.cas, &self.crls, now, role)?);
        };
        let key = (
            agora_core::crypto::sha256(cert),
            role.map_or(u8::MAX, |r| r.code() as u8),
        );
        {
            let map = cache.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, from, until)) = map.get(&key) {
                if *from <= now && now < *until {
                    return Ok(id.clone());
                }
            }
        }
        let id = validate_identity(cert, &self.cas, &self.crls, now, role)?;
        let crls_until = self
            .crls
            .iter()
            .filter(|c| c.is_current(now))
            .filter_map(|c| c.next_update)
            .min()
            .unwrap_or(now);
        let until = crls_until.min(id.not_after().plus_secs(1));
        let mut map = cache.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED_IDENTITIES {
            map.clear();
        }
        map.insert(key, (id.clone(), now, until));
        Ok(id)
    }
}
