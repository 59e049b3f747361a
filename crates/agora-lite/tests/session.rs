//! Session keys by unit of time: the same unit gives the same key on both
//! sides, adjacent units give different keys, the formula is the documented
//! one, and the vendor accepts a unit only within its window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_core::crypto::Secret;
use agora_core::{Error, Timestamp};
use agora_lite::{
    accept_unit, session_key, time_unit, ClientId, Granularity, Janus, JanusParams, VendorId,
    VendorKey,
};

fn vendor_key() -> VendorKey {
    let j = Janus::open(
        ClientId::new("alice@example.org").unwrap(),
        b"secret",
        JanusParams::insecure_for_tests(),
    )
    .unwrap();
    j.vendor_key(&VendorId::new("quotes.example").unwrap(), 0)
}

#[test]
fn the_same_unit_gives_the_same_key_to_client_and_vendor() {
    let client_side = vendor_key();
    let vendor_side = VendorKey::from_shared_key(Secret::new(*client_side.k().expose()));
    let t = time_unit(Timestamp(1_700_000_000), Granularity::HOUR);
    let a = session_key(&client_side, t);
    let b = session_key(&vendor_side, t);
    assert_eq!(a.unit(), t);
    assert_eq!(a.k().expose(), b.k().expose());
    assert_eq!(a.k_enc().expose(), b.k_enc().expose());
    assert_eq!(a.k_mac().expose(), b.k_mac().expose());
}

#[test]
fn adjacent_units_give_different_keys_and_none_is_the_persistent_key() {
    let k = vendor_key();
    let t = 472_222;
    let before = session_key(&k, t - 1);
    let now = session_key(&k, t);
    let after = session_key(&k, t + 1);
    assert_ne!(before.k().expose(), now.k().expose());
    assert_ne!(now.k().expose(), after.k().expose());
    assert_ne!(before.k().expose(), after.k().expose());
    for s in [&before, &now, &after] {
        for persistent in [k.k().expose(), k.k_enc().expose(), k.k_mac().expose()] {
            assert_ne!(s.k().expose(), persistent);
            assert_ne!(s.k_enc().expose(), persistent);
            assert_ne!(s.k_mac().expose(), persistent);
        }
        assert_ne!(s.k_enc().expose(), s.k_mac().expose());
    }
}

#[test]
fn known_answer_k_t_is_hkdf_expand_of_k_with_session_and_t_big_endian() {
    let k = vendor_key();
    let t: u64 = 0x0102_0304_0506_0708;
    // Computed with the hkdf crate directly, from the documented bytes.
    let hk = hkdf::Hkdf::<sha2::Sha256>::from_prk(k.k().expose()).unwrap();
    let mut expected = [0u8; 32];
    hk.expand(b"session\x01\x02\x03\x04\x05\x06\x07\x08", &mut expected)
        .unwrap();
    let s = session_key(&k, t);
    assert_eq!(s.k().expose(), &expected);
    // Pinned: computed with Python's hmac from RFC 5869 (T(1) =
    // HMAC(K, info ‖ 0x01)) over K of ("alice@example.org", "secret",
    // "quotes.example", 0) at the test cost.
    assert_eq!(
        hex::encode(expected),
        "6bacb373d0e56c03b1343084bafe39884702a51b85e97995cc6b372bb1e7e4b5"
    );
    let hk_t = hkdf::Hkdf::<sha2::Sha256>::from_prk(&expected).unwrap();
    let mut enc = [0u8; 32];
    hk_t.expand(b"agora/janus/enc", &mut enc).unwrap();
    let mut mac = [0u8; 32];
    hk_t.expand(b"agora/janus/mac", &mut mac).unwrap();
    assert_eq!(s.k_enc().expose(), &enc);
    assert_eq!(s.k_mac().expose(), &mac);
}

#[test]
fn time_unit_is_unix_seconds_floored_by_the_granularity() {
    let g = Granularity::HOUR;
    assert_eq!(time_unit(Timestamp(0), g), 0);
    assert_eq!(time_unit(Timestamp(3_599), g), 0);
    assert_eq!(time_unit(Timestamp(3_600), g), 1);
    assert_eq!(
        time_unit(Timestamp(u64::MAX), Granularity::from_secs(1).unwrap()),
        u64::MAX
    );
    assert!(Granularity::from_secs(0).is_err());
    assert!(Granularity::from_secs(86_401).is_err());
}

#[test]
fn accept_unit_accepts_within_the_window_and_refuses_outside_it_both_ways() {
    let g = Granularity::MINUTE;
    let now = Timestamp(1_700_000_030);
    let current = time_unit(now, g);
    let w = 2;
    for t in current - 2..=current + 2 {
        assert_eq!(accept_unit(t, now, g, w), Ok(()), "unit {t}");
    }
    // Stale: one unit too old, and far too old.
    assert_eq!(accept_unit(current - 3, now, g, w), Err(Error::Replayed));
    assert_eq!(accept_unit(0, now, g, w), Err(Error::Replayed));
    // Future: one unit too far ahead, and far ahead.
    for t in [current + 3, u64::MAX] {
        match accept_unit(t, now, g, w) {
            Err(Error::Refused(m)) => assert!(m.contains("in the future"), "{m}"),
            other => panic!("unit {t}: {other:?}"),
        }
    }
    // A window of 0: the vendor's own unit only.
    assert_eq!(accept_unit(current, now, g, 0), Ok(()));
    assert_eq!(accept_unit(current - 1, now, g, 0), Err(Error::Replayed));
    assert!(accept_unit(current + 1, now, g, 0).is_err());
    // A window wider than the limit is the caller's mistake.
    assert!(matches!(
        accept_unit(current, now, g, 61),
        Err(Error::ApiMisuse(_))
    ));
}

#[test]
fn debug_output_hides_the_session_keys() {
    let s = session_key(&vendor_key(), 42);
    let shown = format!("{s:?} {s:#?}");
    for secret in [s.k().expose(), s.k_enc().expose(), s.k_mac().expose()] {
        assert!(!shown.contains(&hex::encode(secret)), "{shown}");
        assert!(!shown.contains(&hex::encode_upper(secret)), "{shown}");
        assert!(
            !shown.contains(format!("{:?}", &secret[..8]).trim_end_matches(']')),
            "{shown}"
        );
    }
    assert!(
        shown.contains("redacted") && shown.contains("42"),
        "{shown}"
    );
}
