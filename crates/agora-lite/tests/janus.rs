//! The Janus function: the paper's five properties as far as tests can show
//! them, the injective encoding, refused inputs, and known answers computed
//! from the formula with the `argon2`, `hmac`, `sha2` and `hkdf` crates
//! directly (not through agora-lite), so that a change of formula fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_core::crypto::Secret;
use agora_core::{DecodeError, Error};
use agora_lite::janus::janus_input;
use agora_lite::{ClientId, Janus, JanusParams, VendorId, VendorKey};
use hmac::Mac;
use sha2::Digest;
use std::collections::HashSet;

fn client(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

fn vendor(s: &str) -> VendorId {
    VendorId::new(s).unwrap()
}

fn open(id: &str, secret: &[u8]) -> Janus {
    Janus::open(client(id), secret, JanusParams::insecure_for_tests()).unwrap()
}

/// `(K, K_enc, K_mac)` as bytes.
fn bytes(k: &VendorKey) -> [[u8; 32]; 3] {
    [*k.k().expose(), *k.k_enc().expose(), *k.k_mac().expose()]
}

/// S, K, K_enc and K_mac straight from ARCHITECTURE section 6, with the
/// primitive crates and nothing of agora.
fn by_formula(
    id_c: &str,
    secret: &[u8],
    id_v: &str,
    counter: u32,
    (m, t, p): (u32, u32, u32),
) -> ([u8; 32], [[u8; 32]; 3]) {
    let mut salt_input = b"agora/janus/salt".to_vec();
    salt_input.extend_from_slice(id_c.as_bytes());
    let salt = sha2::Sha256::digest(&salt_input);

    let params = argon2::Params::new(m, t, p, Some(32)).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut s = [0u8; 32];
    argon.hash_password_into(secret, &salt, &mut s).unwrap();

    let mut msg = b"agora/janus/v1".to_vec();
    msg.push(u8::try_from(id_c.len()).unwrap());
    msg.extend_from_slice(id_c.as_bytes());
    msg.push(u8::try_from(id_v.len()).unwrap());
    msg.extend_from_slice(id_v.as_bytes());
    msg.extend_from_slice(&counter.to_be_bytes());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&s).unwrap();
    mac.update(&msg);
    let k: [u8; 32] = mac.finalize().into_bytes().into();

    let hk = hkdf::Hkdf::<sha2::Sha256>::from_prk(&k).unwrap();
    let mut k_enc = [0u8; 32];
    hk.expand(b"agora/janus/enc", &mut k_enc).unwrap();
    let mut k_mac = [0u8; 32];
    hk.expand(b"agora/janus/mac", &mut k_mac).unwrap();
    (s, [k, k_enc, k_mac])
}

const TEST_COST: (u32, u32, u32) = (64, 1, 1);

#[test]
fn consistency_two_proxies_with_the_same_id_and_secret_compute_identical_vendor_keys() {
    // Two independent proxy sessions (the office PC and the laptop).
    let office = open("alice@example.org", b"correct horse battery staple");
    let laptop = open("alice@example.org", b"correct horse battery staple");
    for (v, counter) in [
        ("quotes.example", 0),
        ("news.example", 0),
        ("quotes.example", 7),
    ] {
        assert_eq!(
            bytes(&office.vendor_key(&vendor(v), counter)),
            bytes(&laptop.vendor_key(&vendor(v), counter))
        );
    }
    // And the same proxy asked twice.
    assert_eq!(
        bytes(&office.vendor_key(&vendor("quotes.example"), 0)),
        bytes(&office.vendor_key(&vendor("quotes.example"), 0))
    );
}

#[test]
fn modular_security_keys_of_different_vendors_and_counters_are_all_distinct() {
    let j = open("alice@example.org", b"secret");
    let mut seen = HashSet::new();
    for i in 0..50 {
        for counter in [0, 1, u32::MAX] {
            let k = j.vendor_key(&vendor(&format!("v{i}.example")), counter);
            let [k, k_enc, k_mac] = bytes(&k);
            assert_ne!(k_enc, k_mac, "K_enc and K_mac must differ");
            // Every K, K_enc and K_mac of every (vendor, counter) differs from
            // every other: no key of one vendor appears as another's.
            assert!(seen.insert(k));
            assert!(seen.insert(k_enc));
            assert!(seen.insert(k_mac));
        }
    }
    assert_eq!(seen.len(), 50 * 3 * 3);
}

#[test]
fn secrecy_the_keys_are_keyed_by_the_secret_through_s() {
    // Same client, same vendor, another secret: other keys. What a vendor
    // knows (ids, counter) does not determine the key; S does.
    let a = open("alice@example.org", b"secret one");
    let b = open("alice@example.org", b"secret two");
    let v = vendor("quotes.example");
    let ka = bytes(&a.vendor_key(&v, 0));
    let kb = bytes(&b.vendor_key(&v, 0));
    for i in 0..3 {
        assert_ne!(ka[i], kb[i]);
    }
}

#[test]
fn rotation_counter_1_changes_that_vendors_key_and_no_other() {
    let j = open("alice@example.org", b"secret");
    let v1 = vendor("quotes.example");
    let v2 = vendor("news.example");
    let before_v1 = bytes(&j.vendor_key(&v1, 0));
    let before_v2 = bytes(&j.vendor_key(&v2, 0));
    // Rotating V1 means asking for counter 1 for V1; V2 stays at 0.
    let after_v1 = bytes(&j.vendor_key(&v1, 1));
    let after_v2 = bytes(&j.vendor_key(&v2, 0));
    for i in 0..3 {
        assert_ne!(before_v1[i], after_v1[i]);
    }
    assert_eq!(before_v2, after_v2);
    // The secret did not change: a fresh proxy agrees on both.
    let again = open("alice@example.org", b"secret");
    assert_eq!(bytes(&again.vendor_key(&v1, 1)), after_v1);
    assert_eq!(bytes(&again.vendor_key(&v2, 0)), before_v2);
}

#[test]
fn impersonation_resistance_another_client_id_with_the_same_secret_gets_other_keys() {
    let (s_alice, k_alice) = by_formula("alice@example.org", b"same", "v.example", 0, TEST_COST);
    let (s_mallory, _) = by_formula("mallory@example.org", b"same", "v.example", 0, TEST_COST);
    // The id salts S itself...
    assert_ne!(s_alice, s_mallory);
    // ...and the keys differ, from agora-lite too.
    let alice = open("alice@example.org", b"same");
    let mallory = open("mallory@example.org", b"same");
    let v = vendor("v.example");
    assert_eq!(bytes(&alice.vendor_key(&v, 0)), k_alice);
    let ka = bytes(&alice.vendor_key(&v, 0));
    let km = bytes(&mallory.vendor_key(&v, 0));
    for i in 0..3 {
        assert_ne!(ka[i], km[i]);
    }
}

#[test]
fn the_encoding_is_injective_ab_c_and_a_bc_differ() {
    let ab_c = janus_input(&client("ab"), &vendor("c"), 0);
    let a_bc = janus_input(&client("a"), &vendor("bc"), 0);
    assert_ne!(ab_c, a_bc);
    assert_eq!(ab_c, b"agora/janus/v1\x02ab\x01c\x00\x00\x00\x00");
    assert_eq!(a_bc, b"agora/janus/v1\x01a\x02bc\x00\x00\x00\x00");
    // Without the length bytes both would be "agora/janus/v1abc" ‖ 0: the
    // HMAC input alone (S aside) tells them apart. Under one S, vendors
    // "bc" and "b" + counter bytes cannot collide either.
    let j = open("x", b"secret");
    assert_ne!(
        janus_input(j.client(), &vendor("b"), 0x6300_0000),
        janus_input(j.client(), &vendor("bc"), 0)
    );
    assert_ne!(
        bytes(&j.vendor_key(&vendor("b"), 0x6300_0000)),
        bytes(&j.vendor_key(&vendor("bc"), 0))
    );
}

#[test]
fn bad_ids_and_secrets_are_refused() {
    assert_eq!(
        ClientId::new(""),
        Err(Error::Decode(DecodeError::Invalid("client id is empty")))
    );
    assert!(matches!(
        ClientId::new(&"x".repeat(256)),
        Err(Error::Decode(DecodeError::TooLarge {
            what: "client id",
            limit: 255
        }))
    ));
    assert!(matches!(
        VendorId::from_bytes(&[b'v'; 300]),
        Err(Error::Decode(DecodeError::TooLarge {
            what: "vendor id",
            limit: 255
        }))
    ));
    assert_eq!(
        VendorId::from_bytes(b"\xc3\x28"),
        Err(Error::Decode(DecodeError::Invalid(
            "vendor id is not UTF-8"
        )))
    );
    // 255 bytes is the most, multi-byte characters counted in bytes.
    assert!(ClientId::new(&"é".repeat(127)).is_ok()); // 254 bytes
    assert!(ClientId::new(&"é".repeat(128)).is_err()); // 256 bytes
    let params = JanusParams::insecure_for_tests();
    assert!(matches!(
        Janus::open(client("alice"), b"", params),
        Err(Error::Refused(m)) if m.contains("empty")
    ));
    assert!(matches!(
        Janus::open(client("alice"), &[0u8; 1025], params),
        Err(Error::Refused(m)) if m.contains("over the limit")
    ));
    assert!(Janus::open(client("alice"), &[0u8; 1024], params).is_ok());
}

#[test]
fn the_vendor_rebuilds_k_enc_and_k_mac_from_the_k_it_received() {
    let j = open("alice@example.org", b"secret");
    let client_side = j.vendor_key(&vendor("quotes.example"), 0);
    let vendor_side = VendorKey::from_shared_key(Secret::new(*client_side.k().expose()));
    assert_eq!(bytes(&vendor_side), bytes(&client_side));
    // The keys work as a MAC key pair: one side tags, the other verifies.
    let tag = client_side.k_mac().tag(b"request");
    assert!(vendor_side.k_mac().verify(b"request", &tag).is_ok());
}

#[test]
fn known_answers_match_the_formula_computed_with_argon2_hmac_sha2_directly() {
    for (id_c, secret, id_v, counter) in [
        (
            "alice@example.org",
            &b"correct horse battery staple"[..],
            "quotes.example",
            0,
        ),
        (
            "alice@example.org",
            &b"correct horse battery staple"[..],
            "quotes.example",
            1,
        ),
        ("bob", &b"\x00\x01\x02"[..], "v", u32::MAX),
        ("é", &[0xffu8; 1024][..], &"v".repeat(255), 0x0102_0304),
    ] {
        let (_, expected) = by_formula(id_c, secret, id_v, counter, TEST_COST);
        let j = Janus::open(client(id_c), secret, JanusParams::insecure_for_tests()).unwrap();
        assert_eq!(
            bytes(&j.vendor_key(&vendor(id_v), counter)),
            expected,
            "{id_c} {id_v} {counter}"
        );
    }
    // Pinned, so that a change in a dependency fails too.
    let j = Janus::open(
        client("alice@example.org"),
        b"correct horse battery staple",
        JanusParams::insecure_for_tests(),
    )
    .unwrap();
    assert_eq!(
        bytes(&j.vendor_key(&vendor("quotes.example"), 0)).map(hex::encode),
        PINNED_TEST_COST
    );
}

#[test]
fn known_answer_with_the_default_parameters() {
    let p = JanusParams::DEFAULT.argon2();
    assert_eq!((p.memory_kib, p.iterations, p.parallelism), (65_536, 3, 1));
    let (_, expected) = by_formula(
        "alice@example.org",
        b"correct horse battery staple",
        "quotes.example",
        0,
        (p.memory_kib, p.iterations, p.parallelism),
    );
    let j = Janus::open(
        client("alice@example.org"),
        b"correct horse battery staple",
        JanusParams::DEFAULT,
    )
    .unwrap();
    assert_eq!(bytes(&j.vendor_key(&vendor("quotes.example"), 0)), expected);
    assert_eq!(expected.map(hex::encode), PINNED_DEFAULT);
}

// K, K_enc and K_mac of ("alice@example.org", "correct horse battery
// staple", "quotes.example", counter 0), computed a third way: the reference
// C Argon2 (libargon2, `argon2id_hash_raw`) and Python's hashlib and hmac,
// from the formula of ARCHITECTURE section 6.
const PINNED_TEST_COST: [&str; 3] = [
    "9b7ce10d4575219c1f534aaaf361b77bc3e98b2cd4290c736b066b11fe7a54c3",
    "a5842d1c6a3cbf2de369d284dda9f0fbc362e8e23109ad9e00321032e2edc779",
    "3ebd8b0e05b11e0c7fd8f680e98b317bcc43b071d69631a0f3e97a854ee66239",
];
const PINNED_DEFAULT: [&str; 3] = [
    "f8b3d86c48c3d3d5625a5f3244311241c9c2b31ae49ad16319fadb133b039c4b",
    "0f874c494fc5f3ad75a678405bc2570d63202d42118378de379f088e7582286b",
    "89db5b424548c9dd55c9251f71694dc7b74bdb60bc098c7483fda6eefc95b92c",
];

#[test]
fn debug_output_hides_s_and_every_key() {
    let (s, _) = by_formula(
        "alice@example.org",
        b"secret",
        "quotes.example",
        0,
        TEST_COST,
    );
    let j = open("alice@example.org", b"secret");
    let k = j.vendor_key(&vendor("quotes.example"), 0);
    for shown in [
        format!("{j:?}"),
        format!("{j:#?}"),
        format!("{k:?}"),
        format!("{k:#?}"),
    ] {
        for secret in [s].iter().chain(bytes(&k).iter()) {
            assert!(!shown.contains(&hex::encode(secret)), "{shown}");
            assert!(!shown.contains(&hex::encode_upper(secret)), "{shown}");
            // The form a derived Debug of [u8; 32] would print.
            assert!(
                !shown.contains(format!("{:?}", &secret[..8]).trim_end_matches(']')),
                "{shown}"
            );
        }
        assert!(shown.contains("redacted"), "{shown}");
    }
    assert!(format!("{j:?}").contains("alice@example.org"));
}
