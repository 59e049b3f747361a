#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![allow(dead_code)] // each test file uses a part of the helpers

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_pki::{
    Agency, BondParams, Conditions, Crl, CrlParams, IdentityParams, IssuedCert, PartyRole,
    Revocation, RevocationReason, Role, TrustAnchors,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const DAY: u64 = 86_400;
pub const YEAR: u64 = 365 * DAY;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

/// An agency, a holder and the usual parties, around `now`.
pub struct World {
    pub rng: ChaCha20Rng,
    pub now: Timestamp,
    pub agency: Agency,
    pub holder: SigningKey,
    pub holder_x: X25519Secret,
    pub server: KeyId,
    pub arbiter: KeyId,
}

impl World {
    pub fn new(seed: u64, now: Timestamp) -> World {
        let mut rng = rng(seed);
        let key = SigningKey::generate(&mut rng);
        let agency = Agency::create(
            "First Bonding Agency",
            key,
            now.minus_secs(DAY),
            now.plus_secs(10 * YEAR),
            &mut rng,
        )
        .unwrap();
        let holder = SigningKey::generate(&mut rng);
        let holder_x = X25519Secret::generate(&mut rng);
        let server = SigningKey::generate(&mut rng).key_id();
        let arbiter = SigningKey::generate(&mut rng).key_id();
        World {
            rng,
            now,
            agency,
            holder,
            holder_x,
            server,
            arbiter,
        }
    }

    pub fn anchors(&self) -> TrustAnchors {
        let mut a = TrustAnchors::new();
        a.add_der(self.agency.certificate_der()).unwrap();
        a
    }

    /// Bond params: 1000.00 EUR, buyer + seller, any server/arbiter, valid
    /// from a day ago for a year.
    pub fn bond_params(&self) -> BondParams {
        BondParams {
            holder: self.holder.verifying_key(),
            holder_x25519: self.holder_x.public(),
            amount: eur(100_000),
            roles: vec![Role::Buyer, Role::Seller],
            conditions: Conditions::default(),
            not_before: self.now.minus_secs(DAY),
            not_after: self.now.plus_secs(YEAR),
            crl_uri: self.agency.crl_uri("http://127.0.0.1:7070"),
        }
    }

    pub fn issue(&mut self, p: &BondParams) -> IssuedCert {
        self.agency.issue_bond(p, &mut self.rng).unwrap()
    }

    pub fn bond(&mut self) -> IssuedCert {
        let p = self.bond_params();
        self.issue(&p)
    }

    pub fn identity(&mut self, name: &str, role: PartyRole) -> IssuedCert {
        let key = SigningKey::generate(&mut self.rng);
        let p = IdentityParams {
            name: name.to_owned(),
            key: key.verifying_key(),
            role,
            x25519: Some(X25519Secret::generate(&mut self.rng).public()),
            not_before: self.now.minus_secs(DAY),
            not_after: self.now.plus_secs(YEAR),
            crl_uri: self.agency.crl_uri("http://127.0.0.1:7070"),
        };
        self.agency.issue_identity(&p, &mut self.rng).unwrap()
    }

    /// A CRL current at `now` (from an hour ago, for a week).
    pub fn crl(&self, revoked: &[&IssuedCert]) -> Crl {
        self.agency
            .issue_crl(&CrlParams {
                this_update: self.now.minus_secs(3600),
                next_update: self.now.plus_secs(7 * DAY),
                crl_number: 1,
                revoked: revoked
                    .iter()
                    .map(|c| Revocation {
                        serial: c.serial.clone(),
                        revoked_at: self.now.minus_secs(60),
                        reason: RevocationReason::KeyCompromise,
                    })
                    .collect(),
            })
            .unwrap()
    }
}
