//! SKEP and non-repudiation SKEP: the runs end to end, the paper's
//! properties (key authentication, entity authentication, key
//! confirmation) as named tests, and the attacks (tampering, replay,
//! reflection, redirection).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::wire::sym;
use agora_core::{DecodeError, Error};
use agora_lite::skep::{
    confirm_client, verify_receipt, SkepChallenge, SkepClient, SkepConfirmBody, SkepHello,
    SkepMode, SkepVendor,
};
use agora_lite::wire::ChainCommitment;
use agora_lite::{ChainVerifier, HashChain};
use common::*;

#[test]
fn skep_end_to_end_gives_the_vendor_the_clients_key_and_subscription() {
    let v = vendor(quotes(), 1);
    let mut r = rng(2);
    let k = client_key(&alice(), &quotes());
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    assert_eq!(pending.client(), &alice());
    let (confirmed, confirm) = c1
        .on_challenge(&mut r, &challenge, subscription(None))
        .unwrap();
    assert_eq!(confirm_client(&confirm).unwrap(), alice());
    let (record, receipt) = pending
        .on_confirm(&v, &mut r, NOW, &confirm, SkepMode::Basic)
        .unwrap();
    assert!(receipt.is_none());
    assert_eq!(record.id_c, alice());
    assert_eq!(record.k.k().expose(), k.k().expose());
    assert_eq!(record.k.k_mac().expose(), k.k_mac().expose());
    assert_eq!(record.subscription, subscription(None));
    assert_eq!(confirmed.subscription(), &subscription(None));
    assert!(record.chain.is_none());
    // Secrets are not printed.
    let printed = format!("{record:?} {confirmed:?} {v:?}");
    assert!(printed.contains("redacted"));
    assert!(!printed.contains(&format!("{:?}", k.k().expose())));
}

#[test]
fn non_repudiation_skep_gives_a_receipt_a_third_party_verifies_with_the_vendors_key() {
    let v = vendor(quotes(), 1);
    let mut r = rng(3);
    let chain = HashChain::generate(&mut r, 30).unwrap();
    let commitment = ChainCommitment {
        anchor: chain.anchor(),
        n: 30,
    };
    let s = subscription(Some(commitment));
    let k = client_key(&alice(), &quotes());
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let (confirmed, confirm) = c1.on_challenge(&mut r, &challenge, s.clone()).unwrap();
    let (record, receipt) = pending
        .on_confirm(&v, &mut r, NOW, &confirm, SkepMode::NonRepudiation)
        .unwrap();
    assert_eq!(
        record.chain,
        Some(ChainVerifier::new(chain.anchor(), 30).unwrap())
    );
    let signed = confirmed
        .on_receipt(&receipt.unwrap(), &v.verifying_key())
        .unwrap();
    assert_eq!(signed.receipt.subscription, s);
    assert_eq!(signed.receipt.issued_at, NOW);

    // A third party, with the vendor's key alone.
    let seen = verify_receipt(&signed.cose_sign1, &v.verifying_key()).unwrap();
    assert_eq!(seen, signed.receipt);
    assert_eq!(seen.subscription.chain.unwrap().anchor, chain.anchor());
    // Not with another key.
    let other = SigningKey::generate(&mut r).verifying_key();
    assert!(matches!(
        verify_receipt(&signed.cose_sign1, &other),
        Err(Error::NotAuthorised(_) | Error::Crypto)
    ));
    // A receipt with any byte changed does not verify.
    for i in 0..signed.cose_sign1.len() {
        for delta in [1u8, 0x80] {
            let mut t = signed.cose_sign1.clone();
            t[i] ^= delta;
            assert!(
                verify_receipt(&t, &v.verifying_key()).is_err(),
                "byte {i} ^ {delta:#x}"
            );
        }
    }
}

#[test]
fn a_receipt_for_other_terms_or_by_another_key_is_refused_by_the_client() {
    let mut r = rng(4);
    let signing = SigningKey::generate(&mut r);
    let v = SkepVendor::new(
        quotes(),
        X25519Secret::generate(&mut r),
        SigningKey::from_seed(&signing.to_seed()),
    );
    let k = client_key(&alice(), &quotes());
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (_, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let (confirmed, _) = c1
        .on_challenge(&mut r, &challenge, subscription(None))
        .unwrap();
    // The vendor signs other terms than she sent.
    let mut other_terms = subscription(None);
    other_terms.not_after = NOW.plus_secs(DAY);
    let receipt = |terms, key: &SigningKey, r: &mut rand_chacha::ChaCha20Rng| {
        sym::seal_signed(
            k.k_enc(),
            key,
            r,
            &agora_lite::skep::Receipt {
                id_c: alice(),
                id_v: quotes(),
                subscription: terms,
                issued_at: NOW,
            },
        )
    };
    let rej = confirmed
        .on_receipt(&receipt(other_terms, &signing, &mut r), &v.verifying_key())
        .unwrap_err();
    assert_eq!(
        rej.error,
        Error::PeerMisbehaved("SKEP receipt is for another subscription")
    );
    // Signed by someone else than the vendor.
    let stranger = SigningKey::generate(&mut r);
    let rej = rej
        .state
        .on_receipt(
            &receipt(subscription(None), &stranger, &mut r),
            &v.verifying_key(),
        )
        .unwrap_err();
    assert!(
        matches!(rej.error, Error::NotAuthorised(_) | Error::Crypto),
        "{:?}",
        rej.error
    );
    // The genuine terms, signed by the vendor.
    assert!(rej
        .state
        .on_receipt(
            &receipt(subscription(None), &signing, &mut r),
            &v.verifying_key()
        )
        .is_ok());
}

#[test]
fn key_authentication_only_the_vendors_x25519_secret_opens_the_hello() {
    let v = vendor(quotes(), 1);
    // Another vendor with the same id but another key (a rogue server).
    let impostor = vendor(quotes(), 7);
    let mut r = rng(5);
    let k = client_key(&alice(), &quotes());
    let (_, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    assert_eq!(
        impostor.on_hello(&mut r, &hello).unwrap_err(),
        Error::Crypto
    );
    assert!(v.on_hello(&mut r, &hello).is_ok());
    // The hello's bytes do not contain K.
    assert!(!hello.windows(32).any(|w| w == k.k().expose()));
}

#[test]
fn entity_authentication_a_confirm_without_k_is_refused() {
    let v = vendor(quotes(), 1);
    let mut r = rng(6);
    let k = client_key(&alice(), &quotes());
    let (_, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (pending, _challenge) = v.on_hello(&mut r, &hello).unwrap();
    // Mallory saw the hello and the challenge but has no K: she seals a
    // confirm under a key of her own.
    let guess = client_key(&mallory(), &quotes());
    let body = SkepConfirmBody {
        id_c: alice(),
        id_v: quotes(),
        n_v: [0; 16],
        subscription: subscription(None),
    };
    let sealed = sym::seal_mac(guess.k_enc(), guess.k_mac(), &mut r, &body);
    let forged = agora_core::wire::encode(&agora_lite::skep::SkepConfirm {
        id_c: alice(),
        sealed,
    });
    let rej = pending
        .on_confirm(&v, &mut r, NOW, &forged, SkepMode::Basic)
        .unwrap_err();
    assert_eq!(rej.error, Error::Crypto);
    // The state came back unchanged: the genuine run can still finish.
    assert_eq!(rej.state.client(), &alice());
}

#[test]
fn entity_authentication_a_challenge_from_someone_without_k_is_refused() {
    let v = vendor(quotes(), 1);
    let mut r = rng(7);
    let k = client_key(&alice(), &quotes());
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    // An impostor answers the hello he cannot open, under a key of his own.
    let guess = client_key(&mallory(), &quotes());
    let forged = sym::seal_mac(
        guess.k_enc(),
        guess.k_mac(),
        &mut r,
        &SkepChallenge {
            id_c: alice(),
            id_v: quotes(),
            n_c: [0; 16],
            n_v: [1; 16],
        },
    );
    let rej = c1
        .on_challenge(&mut r, &forged, subscription(None))
        .unwrap_err();
    assert_eq!(rej.error, Error::Crypto);
    // The state is intact: the vendor's genuine challenge is still accepted.
    let (_, challenge) = v.on_hello(&mut r, &hello).unwrap();
    assert!(rej
        .state
        .on_challenge(&mut r, &challenge, subscription(None))
        .is_ok());
}

#[test]
fn key_confirmation_the_client_accepts_a_challenge_only_if_the_vendor_recovered_k() {
    let v = vendor(quotes(), 1);
    let mut r = rng(8);
    let k = client_key(&alice(), &quotes());
    // Two runs: the challenge of one does not confirm the other (another
    // N_C), and a challenge under K that does not echo N_C is refused.
    let (c1, hello1) =
        SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (c2, hello2) =
        SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (_, ch1) = v.on_hello(&mut r, &hello1).unwrap();
    let (_, ch2) = v.on_hello(&mut r, &hello2).unwrap();
    let rej = c1
        .on_challenge(&mut r, &ch2, subscription(None))
        .unwrap_err();
    assert_eq!(
        rej.error,
        Error::PeerMisbehaved("SKEP challenge answers another hello")
    );
    assert!(rej
        .state
        .on_challenge(&mut r, &ch1, subscription(None))
        .is_ok());
    assert!(c2.on_challenge(&mut r, &ch2, subscription(None)).is_ok());
}

#[test]
fn tamper_every_bit_flip_of_hello_challenge_and_confirm_is_refused() {
    let v = vendor(quotes(), 1);
    let mut r = rng(9);
    let k = client_key(&alice(), &quotes());
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    for (i, t) in bit_flips(&hello) {
        assert!(v.on_hello(&mut r, &t).is_err(), "hello bit {i}");
    }
    let (mut pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let mut c1 = c1;
    for (i, t) in bit_flips(&challenge) {
        let rej = c1.on_challenge(&mut r, &t, subscription(None)).unwrap_err();
        assert!(
            rej.error.leaves_state_intact(),
            "challenge bit {i}: {:?}",
            rej.error
        );
        c1 = rej.state;
    }
    let (_, confirm) = c1
        .on_challenge(&mut r, &challenge, subscription(None))
        .unwrap();
    for (i, t) in bit_flips(&confirm) {
        let rej = pending
            .on_confirm(&v, &mut r, NOW, &t, SkepMode::Basic)
            .unwrap_err();
        // A flip in the clear id_c names another client (refused before
        // any cryptography); every other flip fails to decode or open.
        assert!(
            rej.error.leaves_state_intact() || matches!(rej.error, Error::Refused(_)),
            "confirm bit {i}: {:?}",
            rej.error
        );
        pending = rej.state;
    }
    assert!(pending
        .on_confirm(&v, &mut r, NOW, &confirm, SkepMode::Basic)
        .is_ok());
}

#[test]
fn replay_a_confirm_replayed_to_a_new_pending_state_is_refused() {
    let v = vendor(quotes(), 1);
    let mut r = rng(10);
    let k = client_key(&alice(), &quotes());
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let (_, confirm) = c1
        .on_challenge(&mut r, &challenge, subscription(None))
        .unwrap();
    // The genuine run consumes the pending state (it is moved: it cannot be
    // used again).
    assert!(pending
        .on_confirm(&v, &mut r, NOW, &confirm, SkepMode::Basic)
        .is_ok());
    // The attacker replays the hello (the vendor cannot tell) and then the
    // old confirm: the new pending state has a new N_V.
    let (pending2, _) = v.on_hello(&mut r, &hello).unwrap();
    let rej = pending2
        .on_confirm(&v, &mut r, NOW, &confirm, SkepMode::Basic)
        .unwrap_err();
    assert_eq!(rej.error, Error::Replayed);
}

#[test]
fn reflection_a_vendors_challenge_sent_back_as_a_confirm_is_refused_by_its_tag() {
    let v = vendor(quotes(), 1);
    let mut r = rng(11);
    let k = client_key(&alice(), &quotes());
    let (_, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    // As the whole confirm.
    let rej = pending
        .on_confirm(&v, &mut r, NOW, &challenge, SkepMode::Basic)
        .unwrap_err();
    assert!(
        matches!(rej.error, Error::Decode(DecodeError::WrongTag { .. })),
        "{:?}",
        rej.error
    );
    // As the sealed part of a confirm.
    let reflected = agora_core::wire::encode(&agora_lite::skep::SkepConfirm {
        id_c: alice(),
        sealed: challenge,
    });
    let rej = rej
        .state
        .on_confirm(&v, &mut r, NOW, &reflected, SkepMode::Basic)
        .unwrap_err();
    assert!(
        matches!(rej.error, Error::Decode(DecodeError::WrongTag { .. })),
        "{:?}",
        rej.error
    );
}

#[test]
fn redirection_a_hello_for_v1_sent_to_v2_is_refused() {
    let v1 = vendor(quotes(), 1);
    let v2 = vendor(news(), 2);
    let mut r = rng(12);
    let k = client_key(&alice(), &quotes());
    let (_, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v1.x25519_public()).unwrap();
    assert!(matches!(
        v2.on_hello(&mut r, &hello),
        Err(Error::Refused(_))
    ));
    // Rewriting the vendor id in the clear breaks the HPKE associated data,
    // even for a vendor holding the same X25519 key.
    let shared = X25519Secret::generate(&mut r);
    let v1b = SkepVendor::new(quotes(), shared.clone(), SigningKey::generate(&mut r));
    let v2b = SkepVendor::new(news(), shared, SigningKey::generate(&mut r));
    let (_, hello) =
        SkepClient::start(&mut r, &k, alice(), quotes(), &v1b.x25519_public()).unwrap();
    let mut h: SkepHello = agora_core::wire::decode(&hello).unwrap();
    h.id_v = news();
    assert_eq!(
        v2b.on_hello(&mut r, &agora_core::wire::encode(&h))
            .unwrap_err(),
        Error::Crypto
    );
    // So does re-attributing it to another client.
    let mut h: SkepHello = agora_core::wire::decode(&hello).unwrap();
    h.id_c = mallory();
    assert_eq!(
        v1b.on_hello(&mut r, &agora_core::wire::encode(&h))
            .unwrap_err(),
        Error::Crypto
    );
}

#[test]
fn an_expired_or_inverted_subscription_is_refused_by_the_vendor() {
    let v = vendor(quotes(), 1);
    let mut r = rng(13);
    let k = client_key(&alice(), &quotes());
    let mut expired = subscription(None);
    expired.not_before = NOW.minus_secs(30 * DAY);
    expired.not_after = NOW;
    let mut inverted = subscription(None);
    inverted.not_after = inverted.not_before;

    // The client's own check refuses an inverted period before sending.
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let rej = c1
        .on_challenge(&mut r, &challenge, inverted.clone())
        .unwrap_err();
    assert!(matches!(rej.error, Error::Refused(_)), "{:?}", rej.error);

    // A client that skips it, or sends an expired period (she has no
    // clock here), is refused by the vendor.
    let n_v = sym::open_mac::<SkepChallenge>(&challenge, k.k_enc(), k.k_mac())
        .unwrap()
        .n_v;
    let confirm = |s| {
        agora_core::wire::encode(&agora_lite::skep::SkepConfirm {
            id_c: alice(),
            sealed: sym::seal_mac(
                k.k_enc(),
                k.k_mac(),
                &mut rng(1),
                &SkepConfirmBody {
                    id_c: alice(),
                    id_v: quotes(),
                    n_v,
                    subscription: s,
                },
            ),
        })
    };
    let rej = pending
        .on_confirm(&v, &mut r, NOW, &confirm(inverted), SkepMode::Basic)
        .unwrap_err();
    assert!(
        matches!(&rej.error, Error::Refused(m) if m.contains("inverted")),
        "{:?}",
        rej.error
    );
    let rej = rej
        .state
        .on_confirm(&v, &mut r, NOW, &confirm(expired), SkepMode::Basic)
        .unwrap_err();
    assert!(
        matches!(&rej.error, Error::Refused(m) if m.contains("expired")),
        "{:?}",
        rej.error
    );
    // The state survived both: a valid subscription is accepted.
    assert!(rej
        .state
        .on_confirm(
            &v,
            &mut r,
            NOW,
            &confirm(subscription(None)),
            SkepMode::Basic
        )
        .is_ok());
}

mod decoders {
    use super::*;
    use agora_core::wire::{decode, Decoder, Field};
    use agora_lite::skep::{Receipt, SkepConfirm};
    use agora_lite::wire::Subscription;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_into_every_skep_decoder_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let _ = decode::<SkepHello>(&bytes);
            let _ = decode::<SkepChallenge>(&bytes);
            let _ = decode::<SkepConfirm>(&bytes);
            let _ = decode::<SkepConfirmBody>(&bytes);
            let _ = decode::<Receipt>(&bytes);
            let _ = Subscription::decode(&mut Decoder::new(&bytes));
            let _ = confirm_client(&bytes);
            let v = vendor(quotes(), 1);
            let mut r = rng(1);
            let _ = v.on_hello(&mut r, &bytes);
            let _ = verify_receipt(&bytes, &v.verifying_key());
        }

        #[test]
        fn arbitrary_bytes_into_every_skep_state_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let v = vendor(quotes(), 1);
            let mut r = rng(2);
            let k = client_key(&alice(), &quotes());
            let (c1, hello) =
                SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
            let (pending, _) = v.on_hello(&mut r, &hello).unwrap();
            prop_assert!(c1.on_challenge(&mut r, &bytes, subscription(None)).is_err());
            prop_assert!(pending.on_confirm(&v, &mut r, NOW, &bytes, SkepMode::Basic).is_err());
        }
    }
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    /// Applies `edits` (position, new byte) and a truncation to `bytes`.
    fn mutate(bytes: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut t = bytes.to_vec();
        for (i, b) in edits {
            let i = i % t.len();
            t[i] = *b;
        }
        // Cut 0 to 7 bytes, never the whole message.
        t.truncate(t.len() - cut % t.len().clamp(1, 8));
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Mutated genuine messages (deeper into the decoders than random
        /// bytes reach) never panic and are never accepted.
        #[test]
        fn mutated_skep_messages_never_panic_and_are_refused(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let v = vendor(quotes(), 1);
            let mut r = rng(3);
            let k = client_key(&alice(), &quotes());
            let (c1, hello) =
                SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
            let h = mutate(&hello, &edits, cut);
            if h != hello {
                prop_assert!(v.on_hello(&mut r, &h).is_err());
            }
            let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
            let ch = mutate(&challenge, &edits, cut);
            if ch != challenge {
                prop_assert!(c1.on_challenge(&mut r, &ch, subscription(None)).is_err());
            }
            let body = SkepConfirmBody {
                id_c: alice(),
                id_v: quotes(),
                n_v: [0; 16],
                subscription: subscription(None),
            };
            let confirm = agora_core::wire::encode(&agora_lite::skep::SkepConfirm {
                id_c: alice(),
                sealed: sym::seal_mac(k.k_enc(), k.k_mac(), &mut r, &body),
            });
            let cf = mutate(&confirm, &edits, cut);
            prop_assert!(pending.on_confirm(&v, &mut r, NOW, &cf, SkepMode::Basic).is_err());
        }
    }
}

#[test]
fn the_largest_ids_and_subscription_fit_every_skep_message_and_larger_payment_is_refused() {
    let id_c = agora_lite::ClientId::new(&"c".repeat(255)).unwrap();
    let id_v = agora_lite::VendorId::new(&"v".repeat(255)).unwrap();
    let v = vendor(id_v.clone(), 1);
    let mut r = rng(14);
    let mut s = subscription(Some(ChainCommitment {
        anchor: [0xff; 32],
        n: u32::try_from(agora_lite::MAX_CHAIN_LEN).unwrap(),
    }));
    s.payment = vec![0xab; agora_lite::wire::MAX_PAYMENT_LEN];
    s.counter = u32::MAX;
    s.not_after = agora_core::Timestamp(u64::MAX);
    let k = client_key(&id_c, &id_v);
    let (c1, hello) =
        SkepClient::start(&mut r, &k, id_c.clone(), id_v.clone(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let (confirmed, confirm) = c1.on_challenge(&mut r, &challenge, s.clone()).unwrap();
    let (record, receipt) = pending
        .on_confirm(&v, &mut r, NOW, &confirm, SkepMode::NonRepudiation)
        .unwrap();
    assert_eq!(record.subscription, s);
    let signed = confirmed
        .on_receipt(&receipt.unwrap(), &v.verifying_key())
        .unwrap();
    assert_eq!(
        verify_receipt(&signed.cose_sign1, &v.verifying_key())
            .unwrap()
            .subscription,
        s
    );

    // One byte more of payment data: the client refuses to send it.
    let k = client_key(&alice(), &quotes());
    let v = vendor(quotes(), 1);
    let (c1, hello) = SkepClient::start(&mut r, &k, alice(), quotes(), &v.x25519_public()).unwrap();
    let (_, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let mut big = subscription(None);
    big.payment = vec![0; agora_lite::wire::MAX_PAYMENT_LEN + 1];
    assert!(matches!(
        c1.on_challenge(&mut r, &challenge, big).unwrap_err().error,
        Error::Refused(_)
    ));
    // Debug does not print the payment data.
    assert!(!format!("{s:?}").contains("171, 171"));
}
