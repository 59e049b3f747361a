#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! A customer's balance (`agora speed balance`): only the account's holder
//! learns it, from the broker, for her own request, at the broker's time;
//! every other request is refused with its reason and changes nothing.

mod common;

use agora_core::crypto::SigningKey;
use agora_core::Error;
use agora_pki::{Agency, PartyRole};
use agora_speed::customer::{self, Identity};
use common::*;

fn ask(m: &mut Market, who: &Identity, account: &str, at: agora_core::Timestamp) -> Vec<u8> {
    customer::balance_request(&mut m.rng, who, &m.broker_peer, num(account), at)
        .unwrap()
        .1
}

#[test]
fn the_holder_reads_her_balance_as_the_broker_signs_it() {
    let mut m = Market::new(61);
    let carol = m.carol_identity();
    let (expect, req) =
        customer::balance_request(&mut m.rng, &carol, &m.broker_peer, num(CAROL), NOW).unwrap();
    let answer = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &req, &m.ledger)
        .unwrap();
    let b = expect.on_balance(&answer).unwrap();
    assert_eq!(b.account, num(CAROL));
    assert_eq!(b.balance.cents as i64, m.cents(CAROL));
    assert_eq!(b.at, NOW);
}

#[test]
fn another_customer_is_not_told_her_balance() {
    let mut m = Market::new(62);
    let dave_keys = keys(&mut m.rng);
    let dave = Identity {
        cert: identity(&m.ca, &mut m.rng, "dave", PartyRole::Customer, &dave_keys),
        keys: dave_keys,
    };
    let req = ask(&mut m, &dave, CAROL, NOW);
    let e = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &req, &m.ledger)
        .unwrap_err();
    assert!(matches!(e, Error::NotAuthorised(_)), "{e:?}");
    // Nor of an account that is not a customer's, hers or not.
    let carol = m.carol_identity();
    let req = ask(&mut m, &carol, SHOP, NOW);
    let e = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &req, &m.ledger)
        .unwrap_err();
    assert!(matches!(e, Error::NotAuthorised(_)), "{e:?}");
}

#[test]
fn a_stale_tampered_or_uncertified_request_is_refused() {
    let mut m = Market::new(63);
    let carol = m.carol_identity();
    // Made an hour ago (a replay of an old request), or an hour ahead.
    for at in [NOW.minus_secs(3600), NOW.plus_secs(3600)] {
        let req = ask(&mut m, &carol, CAROL, at);
        let e = m
            .broker
            .on_balance_request(NOW, &mut m.rng, &req, &m.ledger)
            .unwrap_err();
        assert!(matches!(e, Error::Replayed), "{e:?}");
    }
    // A byte changed on the way.
    let mut req = ask(&mut m, &carol, CAROL, NOW);
    let last = req.len() - 1;
    req[last] ^= 1;
    let e = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &req, &m.ledger)
        .unwrap_err();
    assert!(matches!(e, Error::Crypto), "{e:?}");
    // Carol's key, certified by a CA the broker does not trust.
    let other_ca = Agency::create(
        "another CA",
        SigningKey::generate(&mut m.rng),
        NOW.minus_secs(DAY),
        NOW.plus_secs(DAY),
        &mut m.rng,
    )
    .unwrap();
    let forged = Identity {
        cert: identity(
            &other_ca,
            &mut m.rng,
            "carol",
            PartyRole::Customer,
            &carol.keys,
        ),
        keys: m.carol_identity().keys,
    };
    let req = ask(&mut m, &forged, CAROL, NOW);
    let e = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &req, &m.ledger)
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e:?}");
}

#[test]
fn an_answer_to_another_request_or_from_another_key_is_refused() {
    let mut m = Market::new(64);
    let carol = m.carol_identity();
    let (first, req1) =
        customer::balance_request(&mut m.rng, &carol, &m.broker_peer, num(CAROL), NOW).unwrap();
    let (second, _) =
        customer::balance_request(&mut m.rng, &carol, &m.broker_peer, num(CAROL), NOW).unwrap();
    let answer = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &req1, &m.ledger)
        .unwrap();
    // Sealed under the first request's key: the second cannot read it.
    assert!(matches!(second.on_balance(&answer), Err(Error::Crypto)));
    assert!(first.on_balance(&answer).is_ok());
    // A broker key the customer does not know: refused.
    let someone = SigningKey::generate(&mut m.rng).verifying_key();
    let impostor = agora_speed::customer::balance_request(
        &mut m.rng,
        &carol,
        &agora_speed::Peer {
            sign: someone,
            enc: m.broker_peer.enc,
        },
        num(CAROL),
        NOW,
    )
    .unwrap();
    let answer = m
        .broker
        .on_balance_request(NOW, &mut m.rng, &impostor.1, &m.ledger)
        .unwrap();
    let e = impostor.0.on_balance(&answer).unwrap_err();
    assert!(matches!(e, Error::NotAuthorised(_)), "{e:?}");
}
