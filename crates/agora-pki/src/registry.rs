//! The agency's register (a storage port, ARCHITECTURE section 5): which
//! certificates an agency issued, which it revoked, and the number of its
//! last CRL. The agency role needs exactly this to answer "revoke serial S"
//! and "issue the next CRL"; agora-store implements it on SQLite and
//! [`MemoryAgencyRegistry`] is the in-memory twin. The conformance suite in
//! `conformance` (feature `testkit`) runs against both.

use crate::Serial;
use crate::{Revocation, RevocationReason};
use agora_core::{Error, KeyId, Timestamp};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// Largest certificate the register keeps, in bytes.
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// What kind of certificate was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuedKind {
    /// A bond certificate.
    Bond,
    /// An identity certificate.
    Identity,
}

impl IssuedKind {
    /// Stable name, for storage and output.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuedKind::Bond => "bond",
            IssuedKind::Identity => "identity",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn from_name(s: &str) -> Option<IssuedKind> {
        match s {
            "bond" => Some(IssuedKind::Bond),
            "identity" => Some(IssuedKind::Identity),
            _ => None,
        }
    }
}

/// A certificate an agency issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedRecord {
    /// Its serial.
    pub serial: Serial,
    /// Bond or identity.
    pub kind: IssuedKind,
    /// The key id of the subject's Ed25519 key.
    pub subject: KeyId,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Its notAfter.
    pub not_after: Timestamp,
    /// Its DER.
    pub der: Vec<u8>,
}

/// The result of a revocation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Newly revoked.
    Revoked,
    /// It was revoked before; the first revocation stands.
    AlreadyRevoked,
}

impl RevocationReason {
    /// The CRLReason name in the kebab case the CLI uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// Every reason, for help texts.
    pub const ALL: [RevocationReason; 6] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = agora_core::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(agora_core::DecodeError::Invalid(
                "unknown revocation reason (key-compromise, superseded, affiliation-changed, \
                 cessation-of-operation, privilege-withdrawn, unspecified)",
            ))
    }
}

/// The port: what an agency must remember. Every method is one storage
/// transaction; a write is durable when it returns.
pub trait AgencyRegistry: Send + Sync {
    /// Record a certificate `agency` issued. A serial is recorded once:
    /// recording it again is refused.
    fn record_issued(&self, agency: &KeyId, rec: &IssuedRecord) -> Result<(), Error>;

    /// The certificate `agency` issued with `serial`, if any.
    fn issued(&self, agency: &KeyId, serial: &Serial) -> Result<Option<IssuedRecord>, Error>;

    /// Revoke `serial`, which `agency` must have issued (else
    /// `Error::Refused`). Revoking twice keeps the first time and reason.
    fn revoke(
        &self,
        agency: &KeyId,
        serial: &Serial,
        reason: RevocationReason,
        at: Timestamp,
    ) -> Result<RevokeOutcome, Error>;

    /// Every revocation of `agency`, oldest first.
    fn revocations(&self, agency: &KeyId) -> Result<Vec<Revocation>, Error>;

    /// The next cRLNumber of `agency`: 1, 2, 3, ... each call a new one.
    fn next_crl_number(&self, agency: &KeyId) -> Result<u64, Error>;
}

#[derive(Default)]
struct MemoryInner {
    issued: BTreeMap<(KeyId, Vec<u8>), IssuedRecord>,
    revoked: Vec<(KeyId, Revocation)>,
    crl_numbers: BTreeMap<KeyId, u64>,
}

/// The in-memory twin of [`AgencyRegistry`].
#[derive(Default)]
pub struct MemoryAgencyRegistry(Mutex<MemoryInner>);

impl MemoryAgencyRegistry {
    /// An empty register.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, Error> {
        self.0
            .lock()
            .map_err(|_| Error::Storage("agency register lock poisoned".into()))
    }
}

impl fmt::Debug for MemoryAgencyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryAgencyRegistry")
    }
}

/// Checks shared by every implementation.
pub fn check_record(rec: &IssuedRecord) -> Result<(), Error> {
    if rec.der.is_empty() || rec.der.len() > MAX_CERT_LEN {
        return Err(Error::ApiMisuse("certificate empty or over the size limit"));
    }
    if rec.serial.0.is_empty() || rec.serial.0.len() > 20 {
        return Err(Error::ApiMisuse("serial must be 1 to 20 bytes (RFC 5280)"));
    }
    Ok(())
}

impl AgencyRegistry for MemoryAgencyRegistry {
    fn record_issued(&self, agency: &KeyId, rec: &IssuedRecord) -> Result<(), Error> {
        check_record(rec)?;
        let mut g = self.lock()?;
        let key = (*agency, rec.serial.0.clone());
        if g.issued.contains_key(&key) {
            return Err(Error::Refused(format!(
                "serial {} already issued",
                rec.serial
            )));
        }
        g.issued.insert(key, rec.clone());
        Ok(())
    }

    fn issued(&self, agency: &KeyId, serial: &Serial) -> Result<Option<IssuedRecord>, Error> {
        Ok(self
            .lock()?
            .issued
            .get(&(*agency, serial.0.clone()))
            .cloned())
    }

    fn revoke(
        &self,
        agency: &KeyId,
        serial: &Serial,
        reason: RevocationReason,
        at: Timestamp,
    ) -> Result<RevokeOutcome, Error> {
        let mut g = self.lock()?;
        if !g.issued.contains_key(&(*agency, serial.0.clone())) {
            return Err(Error::Refused(format!(
                "serial {serial} was not issued by this agency"
            )));
        }
        if g.revoked
            .iter()
            .any(|(a, r)| a == agency && &r.serial == serial)
        {
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        g.revoked.push((
            *agency,
            Revocation {
                serial: serial.clone(),
                revoked_at: at,
                reason,
            },
        ));
        Ok(RevokeOutcome::Revoked)
    }

    fn revocations(&self, agency: &KeyId) -> Result<Vec<Revocation>, Error> {
        Ok(self
            .lock()?
            .revoked
            .iter()
            .filter(|(a, _)| a == agency)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn next_crl_number(&self, agency: &KeyId) -> Result<u64, Error> {
        let mut g = self.lock()?;
        let n = g.crl_numbers.entry(*agency).or_insert(0);
        *n += 1;
        Ok(*n)
    }
}

/// The conformance suite of [`AgencyRegistry`]: every implementation must
/// pass it (agora-store runs it on SQLite).
#[cfg(any(test, feature = "testkit"))]
pub mod conformance {
    use super::*;

    fn rec(serial: u8, kind: IssuedKind) -> IssuedRecord {
        IssuedRecord {
            serial: Serial(vec![serial, 0xAA]),
            kind,
            subject: KeyId([serial; 32]),
            issued_at: Timestamp(1_000),
            not_after: Timestamp(2_000),
            der: vec![0x30, serial, 1, 2, 3],
        }
    }

    /// Runs every check on fresh registers made by `make`.
    pub fn agency_registry_suite<R: AgencyRegistry>(make: impl Fn() -> R) {
        issue_then_lookup(&make());
        revoke_rules(&make());
        crl_numbers_increase_per_agency(&make());
        concurrent_crl_numbers_are_distinct(&make());
    }

    /// Issued records are found by agency and serial, only once.
    pub fn issue_then_lookup<R: AgencyRegistry>(r: &R) {
        let a = KeyId([1; 32]);
        let b = KeyId([2; 32]);
        let x = rec(5, IssuedKind::Bond);
        r.record_issued(&a, &x).expect("record");
        assert_eq!(r.issued(&a, &x.serial).expect("get"), Some(x.clone()));
        assert_eq!(r.issued(&b, &x.serial).expect("get"), None, "per agency");
        assert!(matches!(r.record_issued(&a, &x), Err(Error::Refused(_))));
        let y = rec(6, IssuedKind::Identity);
        r.record_issued(&b, &y).expect("record");
        assert_eq!(r.issued(&b, &y.serial).expect("get"), Some(y));
        let mut empty = rec(7, IssuedKind::Bond);
        empty.der.clear();
        assert!(r.record_issued(&a, &empty).is_err());
    }

    /// Only issued serials are revoked; the first revocation stands.
    pub fn revoke_rules<R: AgencyRegistry>(r: &R) {
        let a = KeyId([1; 32]);
        let b = KeyId([2; 32]);
        let x = rec(5, IssuedKind::Bond);
        r.record_issued(&a, &x).expect("record");
        assert!(matches!(
            r.revoke(
                &b,
                &x.serial,
                RevocationReason::KeyCompromise,
                Timestamp(1_500)
            ),
            Err(Error::Refused(_))
        ));
        assert_eq!(
            r.revoke(
                &a,
                &x.serial,
                RevocationReason::KeyCompromise,
                Timestamp(1_500)
            )
            .expect("revoke"),
            RevokeOutcome::Revoked
        );
        assert_eq!(
            r.revoke(
                &a,
                &x.serial,
                RevocationReason::Superseded,
                Timestamp(1_600)
            )
            .expect("revoke"),
            RevokeOutcome::AlreadyRevoked
        );
        let list = r.revocations(&a).expect("list");
        assert_eq!(
            list,
            vec![Revocation {
                serial: x.serial.clone(),
                revoked_at: Timestamp(1_500),
                reason: RevocationReason::KeyCompromise
            }]
        );
        assert!(r.revocations(&b).expect("list").is_empty());
    }

    /// cRLNumbers count from 1, separately per agency.
    pub fn crl_numbers_increase_per_agency<R: AgencyRegistry>(r: &R) {
        let a = KeyId([1; 32]);
        let b = KeyId([2; 32]);
        assert_eq!(r.next_crl_number(&a).expect("n"), 1);
        assert_eq!(r.next_crl_number(&a).expect("n"), 2);
        assert_eq!(r.next_crl_number(&b).expect("n"), 1);
        assert_eq!(r.next_crl_number(&a).expect("n"), 3);
    }

    /// Concurrent callers never get the same cRLNumber.
    pub fn concurrent_crl_numbers_are_distinct<R: AgencyRegistry>(r: &R) {
        let a = KeyId([9; 32]);
        let mut all: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..16)
                            .map(|_| r.next_crl_number(&a).expect("n"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        all.sort_unstable();
        assert_eq!(all, (1..=128).collect::<Vec<u64>>());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_twin_passes_the_conformance_suite() {
        super::conformance::agency_registry_suite(super::MemoryAgencyRegistry::new);
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for r in super::RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<super::RevocationReason>().unwrap(), r);
        }
        assert!("nope".parse::<super::RevocationReason>().is_err());
    }
}
