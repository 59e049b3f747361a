//! Test support shared by this crate's tests and benches, the simulator and
//! the fuzz targets (feature `testkit`): identity certificates from a test
//! CA, and the trust in that CA with a current CRL.
#![allow(clippy::expect_used)] // test support: a failure here is a broken fixture

use crate::{Keys, SpeedTrust};
use agora_core::crypto::Rng;
use agora_core::Timestamp;
use agora_pki::{Agency, CrlParams, IdentityParams, PartyRole, Revocation, TrustAnchors};

/// A day in seconds.
pub const DAY: u64 = 86_400;

/// An identity certificate (DER) from `ca` for `keys` in `role`, valid from
/// a day before `now` for a year, with its X25519 key.
pub fn identity(
    ca: &Agency,
    rng: &mut impl Rng,
    name: &str,
    role: PartyRole,
    keys: &Keys,
    now: Timestamp,
) -> Vec<u8> {
    ca.issue_identity(
        &IdentityParams {
            name: name.into(),
            key: keys.sign.verifying_key(),
            role,
            x25519: Some(keys.enc.public()),
            not_before: now.minus_secs(DAY),
            not_after: now.plus_secs(365 * DAY),
            crl_uri: ca.crl_uri("http://127.0.0.1:7070"),
        },
        rng,
    )
    .expect("the test CA issues identity certificates")
    .der
}

/// Trust in `ca` with a CRL listing `revoked`, current from a minute before
/// `now` for seven days.
pub fn trust_of(ca: &Agency, revoked: Vec<Revocation>, now: Timestamp) -> SpeedTrust {
    let mut cas = TrustAnchors::new();
    cas.add_der(ca.certificate_der())
        .expect("the test CA's own certificate");
    let crl = ca
        .issue_crl(&CrlParams {
            this_update: now.minus_secs(60),
            next_update: now.plus_secs(7 * DAY),
            crl_number: 1,
            revoked,
        })
        .expect("the test CA issues CRLs");
    SpeedTrust::new(cas, vec![crl])
}
