//! agora-speed: SPEED purchases with encrypted electronic delivery (Ruiz,
//! Martínez, Cánovas, Gómez; the paper is
//! `../shared/papers/001_26fdd69feb1dcb57.txt`) as sans-IO roles.
//!
//! - [`customer`], [`vendor`], [`broker`]: the three roles, each a chain of
//!   step types consumed by value (`customer::Negotiating` ->
//!   `customer::ExpectDelivery` -> `customer::ExpectProduct` ->
//!   `customer::ReadyToPay` -> `customer::ExpectReceipt`), so a step cannot
//!   be skipped or replayed from the same state.
//! - [`msg`]: the paper's messages, normal mode (1-6, a, b) and aggressive
//!   mode (1-2, then 5-6).
//! - [`product`]: `|Product|_K` as a STREAM, in constant memory.
//! - [`strategy`]: vendor price rules and customer strategies, pluggable.
//! - [`purse`]: the simulated e-purse card and the broker's SAM (S1/S2/S3).
//! - [`ledger`]: the broker's double-entry ledger and payment register, a
//!   storage port with an in-memory twin (agora-store implements it).
//!
//! Nothing here reads the clock, the OS RNG, a file or a socket: `now` and
//! `rng` come in as arguments, bytes go out as return values.
#![forbid(unsafe_code)]

pub mod broker;
pub mod customer;
pub mod delivery;
pub mod ids;
pub mod ledger;
pub mod msg;
pub mod product;
pub mod purse;
pub mod strategy;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vendor;

pub use agora_core::party::{Keys, Peer};
pub use ids::{AccountNumber, CardId, Nid, PaymentOrderId};

use agora_core::{Result, Timestamp};
use agora_pki::{validate_identity, Crl, PartyRole, TrustAnchors, ValidIdentity};

/// How long a party waits for the next message of a purchase before it
/// forgets the run (seconds).
pub const SESSION_TIMEOUT_SECS: u64 = 600;

/// Most rounds of NegotiationStep a party takes part in before it breaks the
/// negotiation off (a bound on the work a stubborn peer can cause).
pub const MAX_ROUNDS: u32 = 64;

/// What a SPEED party needs to judge identity certificates: the trusted
/// certification authorities and their current CRLs (section 3.2: "every
/// certification authority must be considered trustworthy").
///
/// A server-side party (vendor, broker) sees the same customer's
/// certificate on every purchase; [`SpeedTrust::with_cache`] remembers each
/// certificate it validated until the earlier of its notAfter and the
/// nextUpdate of the CRLs it was checked against, so a returning customer
/// costs no certificate validation (two Ed25519 verifications: the
/// certificate's and the CRL's). The cache belongs to this set of CAs and
/// CRLs: a trust reload makes a new `SpeedTrust`, with an empty cache, so a
/// new CRL takes effect at once.
#[derive(Clone, Debug)]
pub struct SpeedTrust {
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

/// SHA-256 of the certificate's DER, and the role's code.
type CacheKey = ([u8; 32], u8);
/// The identity, when it was validated, when that stops counting.
type Cached = (ValidIdentity, Timestamp, Timestamp);

/// Most certificates an `IdentityCache` remembers (it starts afresh when
/// full).
pub const MAX_CACHED_IDENTITIES: usize = 65_536;

impl SpeedTrust {
    /// Trust in `cas`, with their `crls`, validating every certificate every
    /// time.
    pub fn new(cas: TrustAnchors, crls: Vec<Crl>) -> SpeedTrust {
        SpeedTrust {
            cas,
            crls,
            cache: None,
        }
    }

    /// The same trust, remembering the certificates it validated (see the
    /// type's documentation).
    pub fn with_cache(mut self) -> SpeedTrust {
        self.cache = Some(std::sync::Arc::default());
        self
    }

    /// Validates `cert` (DER) at `now` as an identity certificate of `role`.
    pub fn identity(&self, cert: &[u8], now: Timestamp, role: PartyRole) -> Result<ValidIdentity> {
        let Some(cache) = &self.cache else {
            return Ok(validate_identity(
                cert,
                &self.cas,
                &self.crls,
                now,
                Some(role),
            )?);
        };
        let key = (agora_core::crypto::sha256(cert), role.code() as u8);
        {
            let map = cache.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, from, until)) = map.get(&key) {
                if *from <= now && now < *until {
                    return Ok(id.clone());
                }
            }
        }
        let id = validate_identity(cert, &self.cas, &self.crls, now, Some(role))?;
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
