//! EDDP: the run end to end with hash-chain acknowledgements and the next
//! challenge riding in each reply, entity authentication of the client by
//! the vendor's single-use challenge, data privacy and integrity, and the
//! attacks (tampering, replay of requests and acks, redirection, a stale
//! unit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agora_core::Error;
use agora_lite::eddp::{
    self, Ack, ChallengeLedger, EddpChallenge, EddpReply, MemoryChallengeLedger, Redeemed,
};
use agora_lite::session::session_key;
use agora_lite::skep::{ClientRecord, SkepMode};
use agora_lite::wire::ChainCommitment;
use agora_lite::{time_unit, HashChain};
use common::*;

fn ledger() -> MemoryChallengeLedger {
    MemoryChallengeLedger::with_capacity(1024)
}

fn setup(chain_len: Option<u32>) -> (ClientRecord, Option<HashChain>) {
    let chain = chain_len.map(|n| HashChain::generate(&mut rng(30), n.into()).unwrap());
    let commitment = chain.as_ref().map(|c| ChainCommitment {
        anchor: c.anchor(),
        n: u32::try_from(c.n()).unwrap(),
    });
    let (rec, _) = skep(
        &vendor(quotes(), 1),
        &alice(),
        subscription(commitment),
        SkepMode::NonRepudiation,
    );
    (rec, chain)
}

fn ack(chain: &HashChain, i: u32) -> Ack {
    Ack {
        index: i,
        w: chain.element(i.into()).unwrap(),
    }
}

const DATA: &[u8] = b"today's quotes for alice";

#[test]
fn eddp_end_to_end_with_hash_chain_acks_accepted_in_order() {
    let (mut rec, chain) = setup(Some(30));
    let chain = chain.unwrap();
    let l = ledger();
    let mut r = rng(31);
    let k = client_key(&alice(), &quotes());
    let (c, hello) = eddp::start(&k, alice(), quotes());
    assert_eq!(eddp::hello_client(&hello).unwrap(), alice());
    let ch = eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap();
    let mut ready = c.on_challenge(&ch).unwrap();
    // Five fetches, one round trip each: each acknowledges the previous
    // delivery, the first none.
    for i in 0u32..5 {
        let now = NOW.plus_secs(u64::from(i) * 10);
        let a = (i > 0).then(|| ack(&chain, i));
        let (await_reply, req) = ready.request(&mut r, now, G, b"GET /quotes", a).unwrap();
        assert_eq!(eddp::request_client(&req).unwrap(), alice());
        let accepted = eddp::accept_request(&mut rec, &quotes(), policy(now), &l, &req).unwrap();
        assert_eq!(accepted.request(), b"GET /quotes");
        assert_eq!(accepted.ack().map(|(idx, _)| idx), a.map(|a| a.index));
        let next = eddp::next_challenge(&mut r, &rec, policy(now), &l).unwrap();
        let reply = accepted.reply(&mut r, DATA, Some(next)).unwrap();
        let d = await_reply.on_reply(&reply).unwrap();
        assert_eq!(d.data, DATA);
        ready = d.next.unwrap();
    }
    assert_eq!(rec.chain.as_ref().unwrap().last_index(), 4);
    // A reply without a next challenge ends the run.
    let (await_reply, req) = ready
        .request(&mut r, NOW, G, b"bye", Some(ack(&chain, 5)))
        .unwrap();
    let reply = eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req)
        .unwrap()
        .reply(&mut r, b"", None)
        .unwrap();
    assert!(await_reply.on_reply(&reply).unwrap().next.is_none());
    assert_eq!(rec.chain.as_ref().unwrap().last_index(), 5);
}

#[test]
fn a_replayed_ack_is_refused_and_leaves_the_challenge_usable() {
    let (mut rec, chain) = setup(Some(10));
    let chain = chain.unwrap();
    let l = ledger();
    let mut r = rng(32);
    let k = client_key(&alice(), &quotes());
    let (c, _) = eddp::start(&k, alice(), quotes());
    let ready = c
        .on_challenge(&eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap())
        .unwrap();
    let (ar, req) = ready
        .request(&mut r, NOW, G, b"1", Some(ack(&chain, 1)))
        .unwrap();
    let next = eddp::next_challenge(&mut r, &rec, policy(NOW), &l).unwrap();
    let reply = eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req)
        .unwrap()
        .reply(&mut r, DATA, Some(next))
        .unwrap();
    let ready = ar.on_reply(&reply).unwrap().next.unwrap();
    // The same ack again, in a fresh, authentic request: refused.
    let before = rec.chain.clone();
    let (_, req) = ready
        .request(&mut r, NOW, G, b"2", Some(ack(&chain, 1)))
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).unwrap_err(),
        Error::Replayed
    );
    assert_eq!(rec.chain, before);
    // A wrong element at the next index: refused as Crypto.
    let n_v = eddp::next_challenge(&mut r, &rec, policy(NOW), &l).unwrap();
    let (c, _) = eddp::start(&k, alice(), quotes());
    let ready = c
        .on_challenge(&agora_core::wire::encode(&EddpChallenge { n_v }))
        .unwrap();
    let (_, req) = ready
        .request(
            &mut r,
            NOW,
            G,
            b"2",
            Some(Ack {
                index: 2,
                w: [0; 32],
            }),
        )
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).unwrap_err(),
        Error::Crypto
    );
    // Neither the verifier nor the challenge was consumed by the refusals.
    assert_eq!(rec.chain, before);
    assert_eq!(l.redeem(&alice(), &n_v, NOW).unwrap(), Redeemed::Redeemed);
}

#[test]
fn entity_authentication_a_request_without_the_issued_challenge_is_refused() {
    let (mut rec, _) = setup(None);
    let l = ledger();
    let mut r = rng(33);
    let k = client_key(&alice(), &quotes());
    // A challenge the vendor never issued (forged in transit or made up).
    let (c, _) = eddp::start(&k, alice(), quotes());
    let forged = agora_core::wire::encode(&EddpChallenge { n_v: [42; 16] });
    let ready = c.on_challenge(&forged).unwrap();
    let (_, req) = ready.request(&mut r, NOW, G, b"x", None).unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).unwrap_err(),
        Error::Replayed
    );
    // A challenge issued to another client does not serve Alice.
    let (mrec, _) = skep(
        &vendor(quotes(), 1),
        &mallory(),
        subscription(None),
        SkepMode::Basic,
    );
    let for_mallory = eddp::challenge(&mut r, &mrec, policy(NOW), &l).unwrap();
    let (c, _) = eddp::start(&k, alice(), quotes());
    let (_, req) = c
        .on_challenge(&for_mallory)
        .unwrap()
        .request(&mut r, NOW, G, b"x", None)
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).unwrap_err(),
        Error::Replayed
    );
}

#[test]
fn entity_authentication_a_reused_challenge_is_refused() {
    let (mut rec, _) = setup(None);
    let l = ledger();
    let mut r = rng(34);
    let k = client_key(&alice(), &quotes());
    let ch = eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap();
    let (c, _) = eddp::start(&k, alice(), quotes());
    let (_, req) = c
        .on_challenge(&ch)
        .unwrap()
        .request(&mut r, NOW, G, b"x", None)
        .unwrap();
    assert!(eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).is_ok());
    // The same request again (a replay), and a new request answering the
    // same challenge: both refused.
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).unwrap_err(),
        Error::Replayed
    );
    let (c, _) = eddp::start(&k, alice(), quotes());
    let (_, req2) = c
        .on_challenge(&ch)
        .unwrap()
        .request(&mut r, NOW, G, b"y", None)
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req2).unwrap_err(),
        Error::Replayed
    );
}

#[test]
fn an_expired_challenge_is_refused() {
    let (mut rec, _) = setup(None);
    let l = ledger();
    let mut r = rng(35);
    let k = client_key(&alice(), &quotes());
    let ch = eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap();
    // Two hours later: the challenge (at most an hour) is gone.
    let later = NOW.plus_secs(7_200);
    let (c, _) = eddp::start(&k, alice(), quotes());
    let (_, req) = c
        .on_challenge(&ch)
        .unwrap()
        .request(&mut r, later, G, b"x", None)
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(later), &l, &req).unwrap_err(),
        Error::Replayed
    );
}

#[test]
fn data_privacy_the_reply_is_not_readable_without_k_t() {
    let (mut rec, _) = setup(None);
    let l = ledger();
    let mut r = rng(36);
    let k = client_key(&alice(), &quotes());
    let (c, _) = eddp::start(&k, alice(), quotes());
    let ready = c
        .on_challenge(&eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap())
        .unwrap();
    let (_, req) = ready.request(&mut r, NOW, G, b"GET /secret", None).unwrap();
    assert!(!req.windows(11).any(|w| w == b"GET /secret"));
    let reply = eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req)
        .unwrap()
        .reply(&mut r, DATA, None)
        .unwrap();
    assert!(!reply.windows(DATA.len()).any(|w| w == DATA));
    let t = time_unit(NOW, G);
    let wrong = session_key(&k, t + 1);
    assert_eq!(
        agora_core::wire::sym::open_mac::<EddpReply>(&reply, wrong.k_enc(), wrong.k_mac()),
        Err(Error::Crypto)
    );
    assert_eq!(
        agora_core::wire::sym::open_mac::<EddpReply>(&reply, k.k_enc(), k.k_mac()),
        Err(Error::Crypto)
    );
}

#[test]
fn data_integrity_tamper_every_bit_flip_of_request_and_reply_is_refused() {
    let (mut rec, chain) = setup(Some(5));
    let chain = chain.unwrap();
    let l = ledger();
    let mut r = rng(37);
    let k = client_key(&alice(), &quotes());
    let (c, _) = eddp::start(&k, alice(), quotes());
    let ready = c
        .on_challenge(&eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap())
        .unwrap();
    let (mut ar, req) = ready
        .request(&mut r, NOW, G, b"GET /", Some(ack(&chain, 1)))
        .unwrap();
    for (i, t) in bit_flips(&req) {
        let e = eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &t).unwrap_err();
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
    // Nothing moved: the genuine request still redeems its challenge and
    // its ack.
    assert_eq!(rec.chain.as_ref().unwrap().last_index(), 0);
    let reply = eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req)
        .unwrap()
        .reply(&mut r, DATA, Some([5; 16]))
        .unwrap();
    for (i, t) in bit_flips(&reply) {
        let rej = ar.on_reply(&t).unwrap_err();
        assert!(
            matches!(rej.error, Error::Crypto | Error::Decode(_)),
            "reply bit {i}: {:?}",
            rej.error
        );
        ar = rej.state;
    }
    assert_eq!(ar.on_reply(&reply).unwrap().data, DATA);
}

#[test]
fn redirection_a_request_for_v1_presented_to_v2_with_another_key_fails() {
    let (mut v2_rec, _) = skep(
        &vendor(news(), 2),
        &alice(),
        subscription(None),
        SkepMode::Basic,
    );
    let l = ledger();
    let mut r = rng(38);
    let k1 = client_key(&alice(), &quotes());
    let n_v = eddp::next_challenge(&mut r, &v2_rec, policy(NOW), &l).unwrap();
    let (c, _) = eddp::start(&k1, alice(), quotes());
    let (_, req) = c
        .on_challenge(&agora_core::wire::encode(&EddpChallenge { n_v }))
        .unwrap()
        .request(&mut r, NOW, G, b"x", None)
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut v2_rec, &news(), policy(NOW), &l, &req).unwrap_err(),
        Error::Crypto
    );
    // The challenge survived the forgery.
    assert_eq!(l.redeem(&alice(), &n_v, NOW).unwrap(), Redeemed::Redeemed);
}

#[test]
fn stale_time_unit_is_refused() {
    let (mut rec, _) = setup(None);
    let l = ledger();
    let mut r = rng(39);
    let k = client_key(&alice(), &quotes());
    let (c, _) = eddp::start(&k, alice(), quotes());
    let ready = c
        .on_challenge(&eddp::challenge(&mut r, &rec, policy(NOW), &l).unwrap())
        .unwrap();
    let (_, req) = ready
        .request(&mut r, NOW.minus_secs(600), G, b"x", None)
        .unwrap();
    assert_eq!(
        eddp::accept_request(&mut rec, &quotes(), policy(NOW), &l, &req).unwrap_err(),
        Error::Replayed
    );
}

#[test]
fn an_expired_subscription_gets_no_challenge() {
    let (rec, _) = setup(None);
    let l = ledger();
    let later = NOW.plus_secs(31 * DAY);
    assert!(matches!(
        eddp::challenge(&mut rng(40), &rec, policy(later), &l),
        Err(Error::Refused(m)) if m.contains("expired")
    ));
}

#[test]
fn the_ledger_keeps_a_bounded_number_of_challenges_per_client() {
    let l = ledger();
    let exp = NOW.plus_secs(60);
    for i in 0..=eddp::MAX_OUTSTANDING_PER_CLIENT {
        l.issue(
            &alice(),
            &[u8::try_from(i).unwrap(); 16],
            exp.plus_secs(i as u64),
            NOW,
        )
        .unwrap();
    }
    // The oldest was dropped; the newest are there.
    assert_eq!(
        l.redeem(&alice(), &[0; 16], NOW).unwrap(),
        Redeemed::Unknown
    );
    assert_eq!(
        l.redeem(&alice(), &[1; 16], NOW).unwrap(),
        Redeemed::Redeemed
    );
    let small = MemoryChallengeLedger::with_capacity(1);
    small.issue(&alice(), &[1; 16], exp, NOW).unwrap();
    assert_eq!(
        small.issue(&mallory(), &[1; 16], exp, NOW).unwrap_err(),
        Error::Overloaded
    );
    // Once Alice's challenge has expired, Mallory's fits.
    small
        .issue(&mallory(), &[1; 16], exp.plus_secs(60), exp)
        .unwrap();
}

mod decoders {
    use super::*;
    use agora_core::wire::decode;
    use agora_lite::eddp::{EddpHello, EddpRequest, EddpRequestBody};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_into_every_eddp_decoder_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let _ = decode::<EddpHello>(&bytes);
            let _ = decode::<EddpChallenge>(&bytes);
            let _ = decode::<EddpRequest>(&bytes);
            let _ = decode::<EddpRequestBody>(&bytes);
            let _ = decode::<EddpReply>(&bytes);
            let _ = eddp::hello_client(&bytes);
            let _ = eddp::request_client(&bytes);
            let (mut rec, _) = setup(None);
            let _ = eddp::accept_request(&mut rec, &quotes(), policy(NOW), &ledger(), &bytes);
            let k = client_key(&alice(), &quotes());
            let (c, _) = eddp::start(&k, alice(), quotes());
            let _ = c.on_challenge(&bytes);
        }
    }
}
