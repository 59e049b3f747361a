#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! One named test per `Refusal` variant, plus the happy paths.

mod common;

use agora_core::crypto::SigningKey;
use agora_core::{Currency, Money, Timestamp};
use agora_pki::{
    parse_certificate, validate_bond, validate_identity, Agency, BondRequirement, Conditions,
    CrlParams, PartyRole, Refusal, Role, BOND_EXT_OID_DER, MAX_CERT_LEN,
};
use common::*;

const NOW: Timestamp = Timestamp(1_800_000_000);

fn buyer_req() -> BondRequirement {
    BondRequirement {
        price: Some(eur(50_000)),
        role: Role::Buyer,
        server: None,
        arbiter: None,
    }
}

#[test]
fn valid_bond_yields_its_fields() {
    let mut w = World::new(1, NOW);
    let mut p = w.bond_params();
    p.conditions = Conditions {
        servers: vec![w.server],
        arbiters: vec![w.arbiter],
    };
    let bond = w.issue(&p);
    let crl = w.crl(&[]);
    let req = BondRequirement {
        server: Some(w.server),
        arbiter: Some(w.arbiter),
        ..buyer_req()
    };
    let v = validate_bond(&bond.der, &w.anchors(), &[crl], NOW, &req).unwrap();
    assert_eq!(*v.holder(), w.holder.verifying_key());
    assert_eq!(v.holder_key_id(), w.holder.key_id());
    assert_eq!(*v.holder_x25519(), w.holder_x.public());
    assert_eq!(v.amount(), eur(100_000));
    assert_eq!(v.roles(), &[Role::Buyer, Role::Seller]);
    assert_eq!(v.conditions().servers, vec![w.server]);
    assert_eq!(v.serial(), &bond.serial);
    assert_eq!(v.not_after(), p.not_after);
    assert_eq!(v.agency(), w.agency.key_id());

    let parsed = parse_certificate(&bond.der).unwrap();
    assert_eq!(parsed.common_name, Some(w.holder.key_id().to_string()));
    assert_eq!(
        parsed.crl_uris,
        vec![format!(
            "http://127.0.0.1:7070/v1/pki/{}/crl",
            w.agency.key_id()
        )]
    );
    assert_eq!(bond.serial.0.len(), 16);
}

#[test]
fn empty_conditions_allow_any_server_and_arbiter_and_no_price_is_fine() {
    let mut w = World::new(2, NOW);
    let bond = w.bond();
    let req = BondRequirement {
        price: None,
        role: Role::Seller,
        server: Some(w.server),
        arbiter: Some(w.arbiter),
    };
    validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req).unwrap();
}

#[test]
fn malformed() {
    let mut w = World::new(3, NOW);
    let bond = w.bond();
    let crls = [w.crl(&[])];
    let a = w.anchors();
    let go = |der: &[u8]| validate_bond(der, &a, &crls, NOW, &buyer_req()).unwrap_err();
    assert!(matches!(go(b"not a certificate"), Refusal::Malformed(_)));
    assert!(matches!(go(&[]), Refusal::Malformed(_)));
    let mut trailing = bond.der.clone();
    trailing.push(0);
    assert!(matches!(go(&trailing), Refusal::Malformed(_)));
    assert!(matches!(
        go(&bond.der[..bond.der.len() - 1]),
        Refusal::Malformed(_)
    ));
    assert!(matches!(
        go(&vec![0x30; MAX_CERT_LEN + 1]),
        Refusal::Malformed(_)
    ));
}

#[test]
fn parse_certificate_never_panics_on_mutations() {
    let mut w = World::new(4, NOW);
    let der = w.bond().der;
    for cut in 0..der.len() {
        let _ = parse_certificate(&der[..cut]);
    }
    for i in 0..der.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut d = der.clone();
            d[i] ^= x;
            let _ = parse_certificate(&d);
        }
    }
}

#[test]
fn unknown_issuer() {
    let mut w = World::new(5, NOW);
    // Same name, different key: a rogue agency nobody trusts.
    let mut rng = rng(55);
    let rogue = Agency::create(
        "First Bonding Agency",
        SigningKey::generate(&mut rng),
        NOW.minus_secs(DAY),
        NOW.plus_secs(YEAR),
        &mut rng,
    )
    .unwrap();
    let bond = rogue.issue_bond(&w.bond_params(), &mut rng).unwrap();
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::UnknownIssuer);
    // And with no anchors at all.
    let own = w.bond();
    let err = validate_bond(
        &own.der,
        &agora_pki::TrustAnchors::new(),
        &[],
        NOW,
        &buyer_req(),
    );
    assert_eq!(err.unwrap_err(), Refusal::UnknownIssuer);
}

/// The CPO paper: "extending a previously-valid certificate to cover another
/// few days is equivalent to defeating the signature scheme".
#[test]
fn bad_signature_when_validity_extended_by_editing_the_der() {
    let mut w = World::new(6, NOW);
    let mut p = w.bond_params();
    p.not_after = NOW.minus_secs(DAY / 2); // expired...
    let bond = w.issue(&p);
    // The second UTCTime (tag 0x17, length 13) is notAfter: YYMMDDHHMMSSZ.
    let times: Vec<usize> = bond
        .der
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == &[0x17, 0x0d])
        .map(|(i, _)| i)
        .collect();
    assert!(times.len() >= 2);
    let year_units = times[1] + 3;
    let mut forged = bond.der.clone();
    assert!(forged[year_units] < b'9');
    forged[year_units] += 1; // ... one more year
    let parsed = parse_certificate(&forged).unwrap();
    assert!(parsed.not_after > NOW, "the edit extended the validity");
    let err = validate_bond(&forged, &w.anchors(), &[w.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::BadSignature);
}

#[test]
fn bad_signature_when_the_bond_extension_is_edited() {
    let mut w = World::new(7, NOW);
    let bond = w.bond();
    // Raise the amount: the cents INTEGER follows the 32-byte X25519 key.
    let x = w.holder_x.public().0;
    let at = bond.der.windows(32).position(|s| s == x).unwrap();
    let mut forged = bond.der.clone();
    // SEQUENCE (amount) 30 len, INTEGER 02 len value...: bump the first value byte.
    let int_at = at + 32 + 2;
    assert_eq!(forged[int_at], 0x02);
    forged[int_at + 2] = forged[int_at + 2].wrapping_add(1) & 0x7f;
    let err = validate_bond(&forged, &w.anchors(), &[w.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::BadSignature);
}

#[test]
fn not_yet_valid() {
    let mut w = World::new(8, NOW);
    let mut p = w.bond_params();
    p.not_before = NOW.plus_secs(DAY);
    let bond = w.issue(&p);
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::NotYetValid);
}

#[test]
fn expired() {
    let mut w = World::new(9, NOW);
    let mut p = w.bond_params();
    p.not_before = NOW.minus_secs(YEAR);
    p.not_after = NOW.minus_secs(1);
    let bond = w.issue(&p);
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::Expired);
    // The last second is still valid (RFC 5280: inclusive).
    let crl = w.crl(&[]);
    validate_bond(
        &bond.der,
        &w.anchors(),
        &[crl],
        NOW.minus_secs(1),
        &buyer_req(),
    )
    .unwrap();
}

#[test]
fn revoked() {
    let mut w = World::new(10, NOW);
    let bond = w.bond();
    let other = w.bond();
    let crl = w.crl(&[&bond]);
    assert!(crl.is_revoked(&bond.serial));
    assert!(!crl.is_revoked(&other.serial));
    assert_eq!(crl.crl_number, Some(1));
    assert_eq!(crl.revoked[0].reason, Some(1)); // keyCompromise
    let a = w.anchors();
    let err = validate_bond(&bond.der, &a, std::slice::from_ref(&crl), NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::Revoked);
    validate_bond(&other.der, &a, &[crl], NOW, &buyer_req()).unwrap();
}

#[test]
fn no_current_crl() {
    let mut w = World::new(11, NOW);
    let bond = w.bond();
    let a = w.anchors();
    // No CRL at all.
    let err = validate_bond(&bond.der, &a, &[], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::NoCurrentCrl);
    // A CRL past its nextUpdate.
    let stale = w
        .agency
        .issue_crl(&CrlParams {
            this_update: NOW.minus_secs(8 * DAY),
            next_update: NOW.minus_secs(DAY),
            crl_number: 1,
            revoked: vec![],
        })
        .unwrap();
    let err = validate_bond(&bond.der, &a, &[stale], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::NoCurrentCrl);
    // A current CRL from another agency does not count.
    let other = World::new(111, NOW);
    let err = validate_bond(&bond.der, &a, &[other.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::NoCurrentCrl);
    // A CRL whose signature was tampered with does not count either.
    let good = w.crl(&[]);
    let mut der = good.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 1;
    let tampered = agora_pki::Crl::parse(&der).unwrap();
    let err = validate_bond(&bond.der, &a, &[tampered], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::NoCurrentCrl);
}

#[test]
fn amount_too_low() {
    let mut w = World::new(12, NOW);
    let bond = w.bond();
    let req = BondRequirement {
        price: Some(eur(100_001)),
        ..buyer_req()
    };
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req);
    let refusal = err.unwrap_err();
    assert_eq!(
        refusal,
        Refusal::AmountTooLow {
            bond: eur(100_000),
            price: eur(100_001)
        }
    );
    // The refusal gives both numbers.
    assert_eq!(
        refusal.to_string(),
        "the bond covers 1000.00 EUR, the price is 1000.01 EUR"
    );
    // Exactly the amount is covered.
    let req = BondRequirement {
        price: Some(eur(100_000)),
        ..buyer_req()
    };
    validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req).unwrap();
}

#[test]
fn currency_mismatch() {
    let mut w = World::new(13, NOW);
    let bond = w.bond();
    let req = BondRequirement {
        price: Some(Money::new(1, Currency::new("USD").unwrap())),
        ..buyer_req()
    };
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req);
    assert_eq!(err.unwrap_err(), Refusal::CurrencyMismatch);
}

#[test]
fn role_not_allowed() {
    let mut w = World::new(14, NOW);
    let mut p = w.bond_params();
    p.roles = vec![Role::Buyer];
    let bond = w.issue(&p);
    let req = BondRequirement {
        role: Role::Seller,
        ..buyer_req()
    };
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req);
    assert_eq!(err.unwrap_err(), Refusal::RoleNotAllowed);
}

#[test]
fn server_not_allowed() {
    let mut w = World::new(15, NOW);
    let mut p = w.bond_params();
    p.conditions.servers = vec![w.server];
    let bond = w.issue(&p);
    let req = BondRequirement {
        server: Some(w.arbiter), // some other key id
        ..buyer_req()
    };
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req);
    assert_eq!(err.unwrap_err(), Refusal::ServerNotAllowed);
}

#[test]
fn arbiter_not_allowed() {
    let mut w = World::new(16, NOW);
    let mut p = w.bond_params();
    p.conditions.arbiters = vec![w.arbiter];
    let bond = w.issue(&p);
    let req = BondRequirement {
        arbiter: Some(w.server),
        ..buyer_req()
    };
    let err = validate_bond(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, &req);
    assert_eq!(err.unwrap_err(), Refusal::ArbiterNotAllowed);
}

#[test]
fn not_a_bond() {
    let mut w = World::new(17, NOW);
    let ident = w.identity("Alice the arbiter", PartyRole::Arbiter);
    let err = validate_bond(&ident.der, &w.anchors(), &[w.crl(&[])], NOW, &buyer_req());
    assert_eq!(err.unwrap_err(), Refusal::NotABond);
    // The agency's own CA certificate is no bond either.
    let err = validate_bond(
        w.agency.certificate_der(),
        &w.anchors(),
        &[w.crl(&[])],
        NOW,
        &buyer_req(),
    );
    assert!(matches!(err.unwrap_err(), Refusal::Malformed(_)));
}

#[test]
fn not_an_identity() {
    let mut w = World::new(18, NOW);
    let bond = w.bond();
    let err = validate_identity(&bond.der, &w.anchors(), &[w.crl(&[])], NOW, None);
    assert_eq!(err.unwrap_err(), Refusal::NotAnIdentity);
}

#[test]
fn identity_certificates_validate_with_role() {
    let mut w = World::new(19, NOW);
    let ident = w.identity("Alice the arbiter", PartyRole::Arbiter);
    let crls = [w.crl(&[])];
    let v = validate_identity(
        &ident.der,
        &w.anchors(),
        &crls,
        NOW,
        Some(PartyRole::Arbiter),
    )
    .unwrap();
    assert_eq!(v.name(), "Alice the arbiter");
    assert_eq!(v.role(), PartyRole::Arbiter);
    assert!(v.x25519().is_some());
    assert_eq!(v.issuer(), w.agency.key_id());
    let err = validate_identity(
        &ident.der,
        &w.anchors(),
        &crls,
        NOW,
        Some(PartyRole::Server),
    );
    assert_eq!(err.unwrap_err(), Refusal::RoleNotAllowed);
    let revoked = [w.crl(&[&ident])];
    let err = validate_identity(&ident.der, &w.anchors(), &revoked, NOW, None);
    assert_eq!(err.unwrap_err(), Refusal::Revoked);
}

#[test]
fn bond_extension_is_under_the_uuid_oid() {
    let mut w = World::new(20, NOW);
    let bond = w.bond();
    let mut tlv = vec![0x06, BOND_EXT_OID_DER.len() as u8];
    tlv.extend_from_slice(&BOND_EXT_OID_DER);
    assert_eq!(bond.der.windows(tlv.len()).filter(|s| *s == tlv).count(), 1);
}

#[test]
fn refusal_maps_to_core_error() {
    let e: agora_core::Error = Refusal::Revoked.into();
    assert_eq!(e.code(), "refused");
    assert!(e.to_string().contains("revoked"));
    let e: agora_core::Error = Refusal::Malformed("x").into();
    assert_eq!(e.code(), "decode");
}

#[test]
fn agency_reloads_from_key_and_certificate() {
    let mut w = World::new(21, NOW);
    let seed = {
        // Rebuild the same agency from its parts, as a node does at start.
        let mut rng = rng(2100);
        let key = SigningKey::generate(&mut rng);
        let seed = key.to_seed();
        let a = Agency::create("Agency B", key, NOW, NOW.plus_secs(YEAR), &mut rng).unwrap();
        let b = Agency::from_parts(SigningKey::from_seed(&seed), a.certificate_der()).unwrap();
        assert_eq!(b.name(), "Agency B");
        assert_eq!(b.key_id(), a.key_id());
        seed
    };
    // A certificate for another key is refused.
    let err = Agency::from_parts(SigningKey::from_seed(&seed), w.agency.certificate_der());
    assert!(err.is_err());
    let _ = w.bond();
}
