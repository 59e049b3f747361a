//! SDDP under session keys: the run end to end, data privacy, data
//! integrity, and the attacks (tampering, replay, redirection, a stale
//! unit of time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agora_core::ports::replay::MemoryReplayCache;
use agora_core::{DecodeError, Error};
use agora_lite::sddp::{self, request_client, SddpReply, SddpRequest};
use agora_lite::session::session_key;
use agora_lite::skep::{ClientRecord, SkepMode};
use agora_lite::time_unit;
use common::*;

fn record() -> ClientRecord {
    skep(
        &vendor(quotes(), 1),
        &alice(),
        subscription(None),
        SkepMode::Basic,
    )
    .0
}

const SECRET_DATA: &[u8] = b"ACME 123.45 +0.6% -- your personal quotes";

#[test]
fn sddp_end_to_end_delivers_the_data_to_the_client() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(20);
    let k = client_key(&alice(), &quotes());
    let (await_reply, req) =
        sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"GET /quotes").unwrap();
    assert_eq!(request_client(&req).unwrap(), alice());
    let accepted = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req).unwrap();
    assert_eq!(accepted.request(), b"GET /quotes");
    let reply = accepted.reply(&mut r, SECRET_DATA).unwrap();
    assert_eq!(await_reply.on_reply(&reply).unwrap(), SECRET_DATA);
}

#[test]
fn data_privacy_the_reply_is_not_readable_without_k_t() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(21);
    let k = client_key(&alice(), &quotes());
    let (_, req) = sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"GET /quotes").unwrap();
    assert!(!req.windows(11).any(|w| w == b"GET /quotes"));
    let reply = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req)
        .unwrap()
        .reply(&mut r, SECRET_DATA)
        .unwrap();
    assert!(!reply.windows(SECRET_DATA.len()).any(|w| w == SECRET_DATA));
    // Under the persistent K, another unit's K_t, or another client's key:
    // nothing opens.
    let t = time_unit(NOW, G);
    for (what, enc, mac) in [
        ("K", k.k_enc().clone(), k.k_mac().expose().to_owned()),
        (
            "K_(t+1)",
            session_key(&k, t + 1).k_enc().clone(),
            session_key(&k, t + 1).k_mac().expose().to_owned(),
        ),
        (
            "another client's K_t",
            session_key(&client_key(&mallory(), &quotes()), t)
                .k_enc()
                .clone(),
            session_key(&client_key(&mallory(), &quotes()), t)
                .k_mac()
                .expose()
                .to_owned(),
        ),
    ] {
        let mac = agora_core::crypto::MacKey::new(mac);
        assert_eq!(
            agora_core::wire::sym::open_mac::<SddpReply>(&reply, &enc, &mac),
            Err(Error::Crypto),
            "{what}"
        );
    }
    // The right K_t opens it.
    let k_t = session_key(&k, t);
    assert_eq!(
        agora_core::wire::sym::open_mac::<SddpReply>(&reply, k_t.k_enc(), k_t.k_mac())
            .unwrap()
            .data,
        SECRET_DATA
    );
}

#[test]
fn data_integrity_tamper_every_bit_flip_of_request_and_reply_is_refused() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(22);
    let k = client_key(&alice(), &quotes());
    let (mut await_reply, req) =
        sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"GET /quotes").unwrap();
    for (i, t) in bit_flips(&req) {
        let e = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &t).unwrap_err();
        // Flips in the clear id give another client (ApiMisuse: the wrong
        // record) or bad UTF-8; in t, a stale or future unit; elsewhere the
        // wrapper does not decode or open.
        assert!(
            matches!(
                e,
                Error::Crypto
                    | Error::Decode(_)
                    | Error::ApiMisuse(_)
                    | Error::Replayed
                    | Error::Refused(_)
            ),
            "request bit {i}: {e:?}"
        );
    }
    // None of the flips reached the cache: the genuine request is fresh.
    let reply = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req)
        .unwrap()
        .reply(&mut r, SECRET_DATA)
        .unwrap();
    for (i, t) in bit_flips(&reply) {
        let rej = await_reply.on_reply(&t).unwrap_err();
        assert!(
            matches!(rej.error, Error::Crypto | Error::Decode(_)),
            "reply bit {i}: {:?}",
            rej.error
        );
        await_reply = rej.state;
    }
    assert_eq!(await_reply.on_reply(&reply).unwrap(), SECRET_DATA);
}

#[test]
fn replay_a_replayed_request_is_refused_by_the_replay_cache() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(23);
    let k = client_key(&alice(), &quotes());
    let (_, req) = sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"GET /quotes").unwrap();
    assert!(sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req).is_ok());
    assert_eq!(
        sddp::accept_request(&rec, &quotes(), policy(NOW.plus_secs(30)), &cache, &req).unwrap_err(),
        Error::Replayed
    );
    // A new request of the same client with a new N_C is fresh.
    let (_, req2) = sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"GET /quotes").unwrap();
    assert!(sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req2).is_ok());
}

#[test]
fn stale_time_unit_is_refused_and_a_future_one_too() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(24);
    let k = client_key(&alice(), &quotes());
    // A request made 10 minutes ago: outside a window of 2 minutes.
    let (_, old) =
        sddp::request(&mut r, &k, alice(), quotes(), NOW.minus_secs(600), G, b"x").unwrap();
    assert_eq!(
        sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &old).unwrap_err(),
        Error::Replayed
    );
    // Within the window it is accepted (clock skew of one unit).
    let (_, skewed) =
        sddp::request(&mut r, &k, alice(), quotes(), NOW.minus_secs(60), G, b"x").unwrap();
    assert!(sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &skewed).is_ok());
    let (_, future) =
        sddp::request(&mut r, &k, alice(), quotes(), NOW.plus_secs(600), G, b"x").unwrap();
    assert!(matches!(
        sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &future),
        Err(Error::Refused(m)) if m.contains("future")
    ));
}

#[test]
fn redirection_a_request_for_v1_presented_to_v2_with_another_key_fails() {
    // Alice has a key with each vendor (Janus gives them unrelated keys).
    let v2_record = skep(
        &vendor(news(), 2),
        &alice(),
        subscription(None),
        SkepMode::Basic,
    )
    .0;
    let cache = MemoryReplayCache::new();
    let mut r = rng(25);
    let k1 = client_key(&alice(), &quotes());
    let (_, req) = sddp::request(&mut r, &k1, alice(), quotes(), NOW, G, b"GET /").unwrap();
    assert_eq!(
        sddp::accept_request(&v2_record, &news(), policy(NOW), &cache, &req).unwrap_err(),
        Error::Crypto
    );
    // Even a vendor that held the same key refuses a request naming
    // another vendor.
    let v1_record = record();
    assert_eq!(
        sddp::accept_request(&v1_record, &news(), policy(NOW), &cache, &req).unwrap_err(),
        Error::PeerMisbehaved("SDDP request names other parties")
    );
}

#[test]
fn an_expired_subscription_gets_no_data() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(26);
    let k = client_key(&alice(), &quotes());
    let later = NOW.plus_secs(31 * DAY);
    let (_, req) = sddp::request(&mut r, &k, alice(), quotes(), later, G, b"x").unwrap();
    assert!(matches!(
        sddp::accept_request(&rec, &quotes(), policy(later), &cache, &req),
        Err(Error::Refused(m)) if m.contains("expired")
    ));
}

#[test]
fn a_reply_for_another_request_is_refused_and_sizes_are_bounded() {
    let rec = record();
    let cache = MemoryReplayCache::new();
    let mut r = rng(27);
    let k = client_key(&alice(), &quotes());
    let (a1, req1) = sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"1").unwrap();
    let (_a2, req2) = sddp::request(&mut r, &k, alice(), quotes(), NOW, G, b"2").unwrap();
    let _ = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req1).unwrap();
    let reply2 = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req2)
        .unwrap()
        .reply(&mut r, b"two")
        .unwrap();
    assert_eq!(
        a1.on_reply(&reply2).unwrap_err().error,
        Error::PeerMisbehaved("SDDP reply answers another request")
    );
    assert!(matches!(
        sddp::request(
            &mut r,
            &k,
            alice(),
            quotes(),
            NOW,
            G,
            &vec![0; sddp::MAX_REQUEST_LEN + 1]
        ),
        Err(Error::ApiMisuse(_))
    ));
    // A request with the largest body is accepted; a reply with the largest
    // data is delivered.
    let (a3, req3) = sddp::request(
        &mut r,
        &k,
        alice(),
        quotes(),
        NOW,
        G,
        &vec![7; sddp::MAX_REQUEST_LEN],
    )
    .unwrap();
    let acc = sddp::accept_request(&rec, &quotes(), policy(NOW), &cache, &req3).unwrap();
    let big = vec![9; sddp::MAX_DATA_LEN];
    let reply = acc.reply(&mut r, &big).unwrap();
    assert_eq!(a3.on_reply(&reply).unwrap(), big);
    let d: Result<SddpRequest, DecodeError> = agora_core::wire::decode(&reply);
    assert!(d.is_err());
}

mod decoders {
    use super::*;
    use agora_core::wire::decode;
    use agora_lite::sddp::SddpRequestBody;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_into_every_sddp_decoder_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let _ = decode::<SddpRequest>(&bytes);
            let _ = decode::<SddpRequestBody>(&bytes);
            let _ = decode::<SddpReply>(&bytes);
            let _ = request_client(&bytes);
            let rec = record();
            let _ = sddp::accept_request(&rec, &quotes(), policy(NOW), &MemoryReplayCache::new(), &bytes);
            let k = client_key(&alice(), &quotes());
            let (a, _) = sddp::request(&mut rng(1), &k, alice(), quotes(), NOW, G, b"x").unwrap();
            let _ = a.on_reply(&bytes);
        }
    }
}
