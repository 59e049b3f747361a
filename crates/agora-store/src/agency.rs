//! [`AgencyRegistry`] (agora-pki's port) on SQLite: the certificates an
//! agency issued, its revocations and its CRL numbers. Uniqueness of a
//! serial and "the first revocation stands" are enforced by primary keys, so
//! they hold across processes sharing the database.

use crate::db::storage;
use crate::SqliteStore;
use agora_core::{Error, KeyId, Timestamp};
use agora_pki::registry::{check_record, AgencyRegistry, IssuedKind, IssuedRecord, RevokeOutcome};
use agora_pki::{Revocation, RevocationReason, Serial};
use rusqlite::{params, OptionalExtension};

/// Most revocations one agency may list (a CRL of this many entries is a few
/// MiB, past which a relying party's size limit refuses it).
pub const MAX_REVOCATIONS: usize = 20_000;

/// The agency register port on a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteAgencyRegistry {
    store: SqliteStore,
}

impl SqliteAgencyRegistry {
    /// The agency register of `store`.
    pub fn new(store: SqliteStore) -> Self {
        SqliteAgencyRegistry { store }
    }
}

fn ts(t: Timestamp) -> i64 {
    crate::ts_ordered(t)
}

fn ts_back(v: i64) -> Result<Timestamp, Error> {
    u64::try_from(v)
        .map(Timestamp)
        .map_err(|_| Error::Storage("corrupt agency row: negative time".into()))
}

fn reason_code(r: RevocationReason) -> i64 {
    match r {
        RevocationReason::Unspecified => 0,
        RevocationReason::KeyCompromise => 1,
        RevocationReason::AffiliationChanged => 3,
        RevocationReason::Superseded => 4,
        RevocationReason::CessationOfOperation => 5,
        RevocationReason::PrivilegeWithdrawn => 9,
    }
}

fn reason_from_code(c: i64) -> Result<RevocationReason, Error> {
    RevocationReason::ALL
        .into_iter()
        .find(|r| reason_code(*r) == c)
        .ok_or_else(|| Error::Storage(format!("corrupt agency row: reason code {c}")))
}

impl AgencyRegistry for SqliteAgencyRegistry {
    fn record_issued(&self, agency: &KeyId, rec: &IssuedRecord) -> Result<(), Error> {
        check_record(rec)?;
        let (agency, rec) = (*agency, rec.clone());
        self.store.writer().execute(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO agency_issued (agency, serial, kind, subject, issued_at, not_after, der)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        agency.as_bytes().as_slice(),
                        rec.serial.0,
                        rec.kind.as_str(),
                        rec.subject.as_bytes().as_slice(),
                        ts(rec.issued_at),
                        ts(rec.not_after),
                        rec.der
                    ])
                })
                .map_err(storage)?;
            if n == 0 {
                return Err(Error::Refused(format!("serial {} already issued", rec.serial)));
            }
            Ok(())
        })
    }

    fn issued(&self, agency: &KeyId, serial: &Serial) -> Result<Option<IssuedRecord>, Error> {
        let row = self.store.read(|conn| {
            conn.prepare_cached(
                "SELECT kind, subject, issued_at, not_after, der FROM agency_issued
                 WHERE agency = ?1 AND serial = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![agency.as_bytes().as_slice(), serial.0], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .optional()
            })
            .map_err(storage)
        })?;
        let Some((kind, subject, issued_at, not_after, der)) = row else {
            return Ok(None);
        };
        Ok(Some(IssuedRecord {
            serial: serial.clone(),
            kind: IssuedKind::from_name(&kind)
                .ok_or_else(|| Error::Storage(format!("corrupt agency row: kind {kind:?}")))?,
            subject: KeyId::from_slice(&subject)
                .map_err(|_| Error::Storage("corrupt agency row: subject".into()))?,
            issued_at: ts_back(issued_at)?,
            not_after: ts_back(not_after)?,
            der,
        }))
    }

    fn revoke(
        &self,
        agency: &KeyId,
        serial: &Serial,
        reason: RevocationReason,
        at: Timestamp,
    ) -> Result<RevokeOutcome, Error> {
        let (agency, serial) = (*agency, serial.clone());
        self.store.writer().execute(move |conn| {
            let issued: bool = conn
                .prepare_cached("SELECT 1 FROM agency_issued WHERE agency = ?1 AND serial = ?2")
                .and_then(|mut st| st.exists(params![agency.as_bytes().as_slice(), serial.0]))
                .map_err(storage)?;
            if !issued {
                return Err(Error::Refused(format!(
                    "serial {serial} was not issued by this agency"
                )));
            }
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM agency_revoked WHERE agency = ?1")
                .and_then(|mut st| st.query_row([agency.as_bytes().as_slice()], |r| r.get(0)))
                .map_err(storage)?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_REVOCATIONS {
                return Err(Error::Refused("the agency's CRL is full".into()));
            }
            let n = conn
                .prepare_cached(
                    "INSERT INTO agency_revoked (agency, serial, revoked_at, reason)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        agency.as_bytes().as_slice(),
                        serial.0,
                        ts(at),
                        reason_code(reason)
                    ])
                })
                .map_err(storage)?;
            Ok(if n == 1 {
                RevokeOutcome::Revoked
            } else {
                RevokeOutcome::AlreadyRevoked
            })
        })
    }

    fn revocations(&self, agency: &KeyId) -> Result<Vec<Revocation>, Error> {
        let rows = self.store.read(|conn| {
            conn.prepare_cached(
                "SELECT serial, revoked_at, reason FROM agency_revoked WHERE agency = ?1
                 ORDER BY revoked_at, rowid LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![agency.as_bytes().as_slice(), MAX_REVOCATIONS as i64],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(storage)
        })?;
        rows.into_iter()
            .map(|(serial, at, reason)| {
                Ok(Revocation {
                    serial: Serial(serial),
                    revoked_at: ts_back(at)?,
                    reason: reason_from_code(reason)?,
                })
            })
            .collect()
    }

    fn next_crl_number(&self, agency: &KeyId) -> Result<u64, Error> {
        let agency = *agency;
        self.store.writer().execute(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "INSERT INTO agency_crl_number (agency, last) VALUES (?1, 1)
                     ON CONFLICT (agency) DO UPDATE SET last = last + 1
                     RETURNING last",
                )
                .and_then(|mut st| st.query_row([agency.as_bytes().as_slice()], |r| r.get(0)))
                .map_err(storage)?;
            u64::try_from(n).map_err(|_| Error::Storage("corrupt CRL number".into()))
        })
    }
}
