#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The e-purse card and the broker's SAM: the three-pass debit and the
//! load, each named failure (replay, out of order, forged SAM, forged card,
//! another card's command, tampering, insufficient balance, limits), the
//! strict codecs of the card file and of pending commands, a model-based
//! property over random sequences of commands, and random input to every
//! decoder and handler.

use agora_core::crypto::Secret;
use agora_core::wire::{self, cose, Message};
use agora_core::{Currency, DecodeError, Error, KeyId, Money};
use agora_speed::purse::{
    read_unverified, Card, CardAuth, DebitCommand, DebitConfirmation, DebitProof, LoadCommand,
    LoadConfirmation, LoadProof, PendingDebit, PendingLoad, Sam, MAX_CARD_BALANCE_CENTS,
    MAX_CARD_FILE_LEN, MAX_PENDING_LEN, MAX_PURSE_MAC0_LEN,
};
use agora_speed::{CardId, Nid, PaymentOrderId};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn eur_currency() -> Currency {
    Currency::new("EUR").unwrap()
}

fn eur(cents: u64) -> Money {
    Money::new(cents, eur_currency())
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn master(b: u8) -> Secret<32> {
    Secret::new([b; 32])
}

fn card_id(b: u8) -> CardId {
    CardId([b; 16])
}

fn order(b: u8) -> PaymentOrderId {
    PaymentOrderId {
        vendor: KeyId([b; 32]),
        nid: Nid([b; 16]),
    }
}

/// Flips bit `bit` (counted over the whole message) of `bytes`.
fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// A copy of the card, through its file (as restoring a backup would).
fn copy(card: &Card) -> Card {
    Card::from_bytes(&card.to_bytes()).unwrap()
}

/// The genuine SAM and a card of its issued with `cents` loaded.
fn setup(cents: u64, r: &mut ChaCha20Rng) -> (Sam, Card) {
    let sam = Sam::new(master(1));
    let mut card = sam.issue(card_id(7), eur_currency());
    if cents > 0 {
        load(&sam, &mut card, cents, r);
    }
    (sam, card)
}

fn load(sam: &Sam, card: &mut Card, cents: u64, r: &mut ChaCha20Rng) -> LoadProof {
    let s1 = card.authenticate(r);
    let (cmd, pending) = sam.load(&s1, eur(cents), r).unwrap();
    let conf = card.load(&cmd).unwrap();
    sam.confirm_load(&pending, &conf).unwrap()
}

fn pay(
    sam: &Sam,
    card: &mut Card,
    cents: u64,
    o: &PaymentOrderId,
    r: &mut ChaCha20Rng,
) -> DebitProof {
    let s1 = card.authenticate(r);
    let (s2, pending) = sam.debit(&s1, eur(cents), o, r).unwrap();
    let s3 = card.debit(&s2).unwrap();
    sam.confirm(&pending, &s3).unwrap()
}

// ---- The honest runs -------------------------------------------------------

#[test]
fn full_load_and_decrement() {
    let r = &mut rng(1);
    let sam = Sam::new(master(1));
    let mut card = sam.issue(card_id(7), eur_currency());
    assert_eq!(card.balance(), eur(0));
    assert_eq!(card.counter(), 0);
    assert!(!card.has_open_session());

    // Load 50.00.
    let s1 = card.authenticate(r);
    assert!(card.has_open_session());
    let auth = sam.verify_card_auth(&s1).unwrap();
    assert_eq!(auth.card_id, card_id(7));
    assert_eq!(auth.balance, eur(0));
    assert_eq!(auth.counter, 0);
    let (cmd, pending) = sam.load(&s1, eur(5000), r).unwrap();
    let pending = PendingLoad::from_bytes(&pending.to_bytes()).unwrap();
    assert_eq!(pending.amount(), eur(5000));
    assert_eq!(pending.counter_after(), 1);
    let conf = card.load(&cmd).unwrap();
    assert!(!card.has_open_session());
    assert_eq!(card.last_confirmation(), Some(&conf[..]));
    let proof = sam.confirm_load(&pending, &conf).unwrap();
    assert_eq!(proof.card_id(), card_id(7));
    assert_eq!(proof.amount(), eur(5000));
    assert_eq!(proof.counter(), 1);
    assert_eq!(proof.balance_after(), eur(5000));
    assert_eq!(proof.confirmation(), &conf[..]);
    assert_eq!(card.balance(), eur(5000));

    // Pay 12.34 for an order: S1, S2, S3.
    let s1 = card.authenticate(r);
    let (s2, pending) = sam.debit(&s1, eur(1234), &order(3), r).unwrap();
    // The broker stores the pending debit and reads it back after a crash.
    let stored = pending.to_bytes();
    let pending = PendingDebit::from_bytes(&stored).unwrap();
    assert_eq!(pending.card_id(), card_id(7));
    assert_eq!(pending.amount(), eur(1234));
    assert_eq!(pending.order(), &order(3));
    assert_eq!(pending.counter_after(), 2);
    // The holder's software can read what it relays (not verified).
    let cmd: DebitCommand = read_unverified(&s2).unwrap();
    assert_eq!(cmd.amount, eur(1234));
    assert_eq!(cmd.order, order(3));
    assert_eq!(&cmd.sam_nonce, pending.sam_nonce());
    let s3 = card.debit(&s2).unwrap();
    let conf: DebitConfirmation = read_unverified(&s3).unwrap();
    assert_eq!(conf.balance, eur(5000 - 1234));
    let proof = sam.confirm(&pending, &s3).unwrap();
    assert_eq!(proof.card_id(), card_id(7));
    assert_eq!(proof.order(), &order(3));
    assert_eq!(proof.amount(), eur(1234));
    assert_eq!(proof.counter(), 2);
    assert_eq!(proof.balance_after(), eur(5000 - 1234));
    assert_eq!(proof.confirmation(), &s3[..]);
    assert_eq!(card.balance(), eur(5000 - 1234));
    assert_eq!(card.counter(), 2);
    // Confirming again is idempotent: the broker settles it once.
    assert_eq!(sam.confirm(&pending, &s3).unwrap(), proof);
}

#[test]
fn the_whole_balance_can_be_spent() {
    let r = &mut rng(2);
    let (sam, mut card) = setup(700, r);
    pay(&sam, &mut card, 700, &order(1), r);
    assert_eq!(card.balance(), eur(0));
}

#[test]
fn card_file_round_trip() {
    let r = &mut rng(3);
    let (sam, mut card) = setup(9000, r);
    pay(&sam, &mut card, 100, &order(1), r);
    let file = card.to_bytes();
    assert!(file.len() <= MAX_CARD_FILE_LEN);
    let back = Card::from_bytes(&file).unwrap();
    assert_eq!(back.card_id(), card.card_id());
    assert_eq!(back.balance(), card.balance());
    assert_eq!(back.counter(), card.counter());
    assert_eq!(back.last_confirmation(), card.last_confirmation());
    assert_eq!(*back.to_bytes(), *file, "deterministic encoding");

    // A session opened before a save is completed after the restore (the
    // CLI runs S1 and S3 in separate processes).
    let s1 = card.authenticate(r);
    let mut restored = copy(&card);
    assert!(restored.has_open_session());
    let (s2, pending) = sam.debit(&s1, eur(250), &order(2), r).unwrap();
    let s3 = restored.debit(&s2).unwrap();
    sam.confirm(&pending, &s3).unwrap();
    assert_eq!(restored.balance(), eur(9000 - 350));

    // A fresh card (no session, no last confirmation) round-trips too.
    let fresh = sam.issue(card_id(9), Currency::new("USD").unwrap());
    let back = Card::from_bytes(&fresh.to_bytes()).unwrap();
    assert_eq!(back.currency(), Currency::new("USD").unwrap());
    assert_eq!(*back.to_bytes(), *fresh.to_bytes());
}

#[test]
fn debug_prints_no_key() {
    let r = &mut rng(4);
    let (sam, card) = setup(100, r);
    let file = card.to_bytes();
    let printed = format!("{card:?} {sam:?}");
    assert!(printed.contains("key: \"..\""), "{printed}");
    assert!(printed.contains("Sam(..)"), "{printed}");
    // No byte string in the debug output at all.
    assert!(!printed.contains('['), "{printed}");
    // The key is in the file (the file is the card).
    assert!(file.len() > 32);
}

#[test]
fn lost_s3_is_recovered_from_the_card() {
    let r = &mut rng(5);
    let (sam, mut card) = setup(1000, r);
    let s1 = card.authenticate(r);
    let (s2, pending) = sam.debit(&s1, eur(300), &order(1), r).unwrap();
    let _lost = card.debit(&s2).unwrap();
    // The holder resends the card's last confirmation.
    let again = card.last_confirmation().unwrap().to_vec();
    let proof = sam.confirm(&pending, &again).unwrap();
    assert_eq!(proof.balance_after(), eur(700));
    assert_eq!(
        Card::from_bytes(&card.to_bytes())
            .unwrap()
            .last_confirmation(),
        Some(&again[..])
    );
}

// ---- Replay and order ------------------------------------------------------

#[test]
fn s2_replayed_to_the_card_is_refused() {
    let r = &mut rng(6);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (s2, _) = sam.debit(&s1, eur(1000), &order(1), r).unwrap();
    card.debit(&s2).unwrap();
    assert_eq!(card.balance(), eur(4000));

    // Straight replay: no open session.
    assert_eq!(card.debit(&s2), Err(Error::Replayed));
    assert_eq!(card.balance(), eur(4000));
    assert_eq!(card.counter(), 2);

    // Replay into a new session: answers another nonce and counter.
    let _s1 = card.authenticate(r);
    assert_eq!(card.debit(&s2), Err(Error::Replayed));
    assert_eq!(card.balance(), eur(4000));
    assert_eq!(card.counter(), 2);
    assert!(
        !card.has_open_session(),
        "the refused command closed the session"
    );
}

#[test]
fn a_second_s2_for_one_s1_is_refused() {
    let r = &mut rng(7);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (s2a, _) = sam.debit(&s1, eur(1000), &order(1), r).unwrap();
    let (s2b, pb) = sam.debit(&s1, eur(1000), &order(2), r).unwrap();
    card.debit(&s2a).unwrap();
    assert_eq!(card.debit(&s2b), Err(Error::Replayed));
    assert_eq!(card.balance(), eur(4000));
    // The second pending debit never confirms with the first S3.
    let s3a = card.last_confirmation().unwrap().to_vec();
    assert_eq!(sam.confirm(&pb, &s3a), Err(Error::Replayed));
}

#[test]
fn s2_from_an_abandoned_session_is_refused() {
    let r = &mut rng(8);
    let (sam, mut card) = setup(5000, r);
    let s1_old = card.authenticate(r);
    let _s1_new = card.authenticate(r);
    let (s2, _) = sam.debit(&s1_old, eur(1000), &order(1), r).unwrap();
    assert_eq!(card.debit(&s2), Err(Error::Replayed));
    assert_eq!(card.balance(), eur(5000));
    assert_eq!(card.counter(), 1);
}

#[test]
fn s2_before_any_s1_is_refused() {
    let r = &mut rng(9);
    let (sam, mut card) = setup(5000, r);
    // A copy of the card taken before it authenticated: no session.
    let mut before = copy(&card);
    let s1 = card.authenticate(r);
    let (s2, _) = sam.debit(&s1, eur(1000), &order(1), r).unwrap();
    assert!(!before.has_open_session());
    assert_eq!(before.debit(&s2), Err(Error::Replayed));
    assert_eq!(before.balance(), eur(5000));
    assert_eq!(before.counter(), 1);
    // Likewise a load command.
    let s1 = card.authenticate(r);
    let (cmd, _) = sam.load(&s1, eur(1), r).unwrap();
    let mut before = copy(&before);
    assert_eq!(before.load(&cmd), Err(Error::Replayed));
    // And a brand-new card.
    let mut fresh = sam.issue(card_id(8), eur_currency());
    assert_eq!(fresh.debit(&s2), Err(Error::Replayed));
    assert_eq!(fresh.load(&cmd), Err(Error::Replayed));
}

#[test]
fn load_command_replayed_is_refused() {
    let r = &mut rng(10);
    let (sam, mut card) = setup(0, r);
    let s1 = card.authenticate(r);
    let (cmd, _) = sam.load(&s1, eur(2000), r).unwrap();
    card.load(&cmd).unwrap();
    assert_eq!(card.load(&cmd), Err(Error::Replayed));
    let _ = card.authenticate(r);
    assert_eq!(card.load(&cmd), Err(Error::Replayed));
    assert_eq!(card.balance(), eur(2000));
    assert_eq!(card.counter(), 1);
}

#[test]
fn a_load_command_is_no_debit_command() {
    let r = &mut rng(11);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (cmd, _) = sam.load(&s1, eur(100), r).unwrap();
    assert!(matches!(
        card.debit(&cmd),
        Err(Error::Decode(DecodeError::WrongTag { .. }))
    ));
    let s1 = card.authenticate(r);
    let (s2, _) = sam.debit(&s1, eur(100), &order(1), r).unwrap();
    assert!(matches!(
        card.load(&s2),
        Err(Error::Decode(DecodeError::WrongTag { .. }))
    ));
    // An S1 is no command, nor an S3.
    let s1 = card.authenticate(r);
    assert!(card.debit(&s1).is_err());
    assert_eq!(card.balance(), eur(5000));
}

// ---- Forgeries ---------------------------------------------------------------

#[test]
fn s2_from_a_forged_sam_is_refused() {
    let r = &mut rng(12);
    let (_, mut card) = setup(5000, r);
    // The forger issues a card of the same id under its own master key, in
    // the same state, so that its S1 has the genuine card's fields and nonce.
    let forged_sam = Sam::new(master(2));
    let mut twin = forged_sam.issue(card_id(7), eur_currency());
    load(&forged_sam, &mut twin, 5000, r);
    let s1_genuine = card.authenticate(&mut rng(99));
    let s1_twin = twin.authenticate(&mut rng(99));
    assert_eq!(
        read_unverified::<CardAuth>(&s1_genuine).unwrap(),
        read_unverified::<CardAuth>(&s1_twin).unwrap()
    );
    let (s2, _) = forged_sam.debit(&s1_twin, eur(1000), &order(1), r).unwrap();
    assert_eq!(
        read_unverified::<DebitCommand>(&s2).unwrap().card_nonce,
        read_unverified::<CardAuth>(&s1_genuine).unwrap().card_nonce
    );
    assert_eq!(card.debit(&s2), Err(Error::Crypto));
    assert_eq!(card.balance(), eur(5000));
    assert_eq!(card.counter(), 1);
    // The forger's SAM cannot even read the genuine card's S1.
    assert_eq!(
        forged_sam
            .debit(&s1_genuine, eur(1), &order(1), r)
            .map(|_| ()),
        Err(Error::Crypto)
    );
}

#[test]
fn s1_from_a_forged_card_is_refused() {
    let r = &mut rng(13);
    let sam = Sam::new(master(1));
    let mut forged = Card::issue(&master(3), card_id(7), eur_currency());
    let s1 = forged.authenticate(r);
    assert_eq!(sam.verify_card_auth(&s1), Err(Error::Crypto));
    assert_eq!(
        sam.debit(&s1, eur(1), &order(1), r).map(|_| ()),
        Err(Error::Crypto)
    );
    assert_eq!(sam.load(&s1, eur(1), r).map(|_| ()), Err(Error::Crypto));
}

#[test]
fn s2_made_for_another_card_is_refused() {
    let r = &mut rng(14);
    let sam = Sam::new(master(1));
    let mut a = sam.issue(card_id(1), eur_currency());
    let mut b = sam.issue(card_id(2), eur_currency());
    load(&sam, &mut a, 5000, r);
    load(&sam, &mut b, 5000, r);
    let s1a = a.authenticate(r);
    let _s1b = b.authenticate(r);
    let (s2a, _) = sam.debit(&s1a, eur(1000), &order(1), r).unwrap();
    assert_eq!(b.debit(&s2a), Err(Error::Crypto));
    assert_eq!(b.balance(), eur(5000));
    assert_eq!(b.counter(), 1);
    // Card a still takes its own command.
    a.debit(&s2a).unwrap();
    assert_eq!(a.balance(), eur(4000));
}

#[test]
fn s3_against_another_pending_debit_is_refused() {
    let r = &mut rng(15);
    let sam = Sam::new(master(1));
    let mut a = sam.issue(card_id(1), eur_currency());
    let mut b = sam.issue(card_id(2), eur_currency());
    load(&sam, &mut a, 5000, r);
    load(&sam, &mut b, 5000, r);

    let s1 = a.authenticate(r);
    let (s2, p1) = sam.debit(&s1, eur(100), &order(1), r).unwrap();
    let s3_first = a.debit(&s2).unwrap();
    let s1 = a.authenticate(r);
    let (s2, p2) = sam.debit(&s1, eur(100), &order(2), r).unwrap();
    let s3_second = a.debit(&s2).unwrap();
    // Same card, the other command: a replayed confirmation.
    assert_eq!(
        sam.confirm(&p2, &s3_first).map(|_| ()),
        Err(Error::Replayed)
    );
    assert_eq!(
        sam.confirm(&p1, &s3_second).map(|_| ()),
        Err(Error::Replayed)
    );
    // Another card's S3: not under this card's key.
    let s1 = b.authenticate(r);
    let (s2, _) = sam.debit(&s1, eur(100), &order(1), r).unwrap();
    let s3_b = b.debit(&s2).unwrap();
    assert_eq!(sam.confirm(&p1, &s3_b).map(|_| ()), Err(Error::Crypto));
    // A load confirmation is no S3.
    let s1 = a.authenticate(r);
    let (cmd, pl) = sam.load(&s1, eur(1), r).unwrap();
    let lc = a.load(&cmd).unwrap();
    assert!(matches!(
        sam.confirm(&p1, &lc),
        Err(Error::Decode(DecodeError::WrongTag { .. }))
    ));
    assert!(matches!(
        sam.confirm_load(&pl, &s3_first),
        Err(Error::Decode(DecodeError::WrongTag { .. }))
    ));
    // The right pairs still confirm.
    sam.confirm(&p1, &s3_first).unwrap();
    sam.confirm(&p2, &s3_second).unwrap();
    sam.confirm_load(&pl, &lc).unwrap();
}

// ---- Tampering ---------------------------------------------------------------

#[test]
fn a_flipped_bit_in_s1_is_refused() {
    let r = &mut rng(16);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    for bit in 0..s1.len() * 8 {
        let bad = flip(&s1, bit);
        assert!(sam.debit(&bad, eur(1), &order(1), r).is_err(), "bit {bit}");
        assert!(sam.load(&bad, eur(1), r).is_err(), "bit {bit}");
    }
    sam.debit(&s1, eur(1), &order(1), r).unwrap();
}

#[test]
fn a_flipped_bit_in_s2_is_refused() {
    let r = &mut rng(17);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (s2, _) = sam.debit(&s1, eur(1000), &order(1), r).unwrap();
    let (cmd, _) = sam.load(&s1, eur(1000), r).unwrap();
    for bit in 0..s2.len() * 8 {
        let mut c = copy(&card);
        assert!(c.debit(&flip(&s2, bit)).is_err(), "bit {bit}");
        assert_eq!(c.balance(), eur(5000));
        assert_eq!(c.counter(), 1);
        assert!(!c.has_open_session());
    }
    for bit in 0..cmd.len() * 8 {
        let mut c = copy(&card);
        assert!(c.load(&flip(&cmd, bit)).is_err(), "bit {bit}");
        assert_eq!(c.balance(), eur(5000));
    }
    card.debit(&s2).unwrap();
    assert_eq!(card.balance(), eur(4000));
}

#[test]
fn a_flipped_bit_in_s3_is_refused() {
    let r = &mut rng(18);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (s2, pending) = sam.debit(&s1, eur(1000), &order(1), r).unwrap();
    let s3 = card.debit(&s2).unwrap();
    for bit in 0..s3.len() * 8 {
        assert!(sam.confirm(&pending, &flip(&s3, bit)).is_err(), "bit {bit}");
    }
    sam.confirm(&pending, &s3).unwrap();

    let s1 = card.authenticate(r);
    let (cmd, pl) = sam.load(&s1, eur(1000), r).unwrap();
    let conf = card.load(&cmd).unwrap();
    for bit in 0..conf.len() * 8 {
        assert!(
            sam.confirm_load(&pl, &flip(&conf, bit)).is_err(),
            "bit {bit}"
        );
    }
    sam.confirm_load(&pl, &conf).unwrap();
}

#[test]
fn a_pending_debit_edited_in_storage_does_not_confirm() {
    let r = &mut rng(19);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (s2, pending) = sam.debit(&s1, eur(1000), &order(1), r).unwrap();
    let s3 = card.debit(&s2).unwrap();
    let bytes = pending.to_bytes();
    for bit in 0..bytes.len() * 8 {
        if let Ok(p) = PendingDebit::from_bytes(&flip(&bytes, bit)) {
            assert_ne!(p, pending);
            assert!(sam.confirm(&p, &s3).is_err(), "bit {bit}");
        }
    }
}

// ---- Balance and limits ------------------------------------------------------

#[test]
fn insufficient_balance_is_refused_by_the_sam() {
    let r = &mut rng(20);
    let (sam, mut card) = setup(500, r);
    let s1 = card.authenticate(r);
    assert_eq!(
        sam.debit(&s1, eur(501), &order(1), r).map(|_| ()),
        Err(Error::Refused("insufficient balance".into()))
    );
    // Zero and another currency are refused too.
    assert!(matches!(
        sam.debit(&s1, eur(0), &order(1), r),
        Err(Error::Refused(_))
    ));
    let usd = Money::new(1, Currency::new("USD").unwrap());
    assert!(matches!(
        sam.debit(&s1, usd, &order(1), r),
        Err(Error::Refused(_))
    ));
    assert!(matches!(sam.load(&s1, usd, r), Err(Error::Refused(_))));
    assert_eq!(card.balance(), eur(500));
}

#[test]
fn insufficient_balance_is_refused_by_the_card() {
    let r = &mut rng(21);
    let (sam, mut card) = setup(500, r);
    let s1 = card.authenticate(r);
    let (s2, _) = sam
        .debit_for_testing_only(&s1, eur(501), &order(1), r)
        .unwrap();
    assert_eq!(
        card.debit(&s2),
        Err(Error::Refused("insufficient balance".into()))
    );
    assert_eq!(card.balance(), eur(500));
    assert_eq!(card.counter(), 1);
    assert!(!card.has_open_session());
    // The card still works.
    pay(&sam, &mut card, 500, &order(2), r);
    assert_eq!(card.balance(), eur(0));
}

#[test]
fn loads_over_the_limit_are_refused() {
    let r = &mut rng(22);
    let (sam, mut card) = setup(MAX_CARD_BALANCE_CENTS - 10, r);
    let s1 = card.authenticate(r);
    assert!(matches!(sam.load(&s1, eur(11), r), Err(Error::Refused(_))));
    assert!(matches!(
        sam.load(&s1, eur(u64::MAX), r),
        Err(Error::Refused(_))
    ));
    for cents in [11, u64::MAX] {
        let s1 = card.authenticate(r);
        let (cmd, _) = sam.load_for_testing_only(&s1, eur(cents), r).unwrap();
        assert!(matches!(card.load(&cmd), Err(Error::Refused(_))));
        assert_eq!(card.balance(), eur(MAX_CARD_BALANCE_CENTS - 10));
    }
    // Up to the limit is fine.
    load(&sam, &mut card, 10, r);
    assert_eq!(card.balance(), eur(MAX_CARD_BALANCE_CENTS));
}

#[test]
fn the_counter_strictly_increases() {
    let r = &mut rng(23);
    let (sam, mut card) = setup(0, r);
    let mut last = card.counter();
    for i in 0..20u8 {
        let counter = if i % 3 == 0 {
            load(&sam, &mut card, 1000, r).counter()
        } else {
            pay(&sam, &mut card, 100, &order(i), r).counter()
        };
        assert!(counter > last);
        assert_eq!(counter, card.counter());
        let s1 = card.authenticate(r);
        assert_eq!(sam.verify_card_auth(&s1).unwrap().counter, counter);
        last = counter;
    }
    assert_eq!(card.counter(), 20);
}

// ---- Strict codecs -------------------------------------------------------------

fn assert_strict<T: std::fmt::Debug>(
    bytes: &[u8],
    limit: usize,
    parse: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    parse(bytes).unwrap();
    for n in 0..bytes.len() {
        assert!(parse(&bytes[..n]).is_err(), "truncated to {n}");
    }
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert_eq!(
        parse(&trailing).map(|_| ()),
        Err(DecodeError::TrailingBytes(1))
    );
    let mut oversized = bytes.to_vec();
    oversized.resize(limit + 1, 0);
    assert!(matches!(
        parse(&oversized),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn saved_states_are_decoded_strictly() {
    let r = &mut rng(24);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    let (_, pd) = sam.debit(&s1, eur(1), &order(1), r).unwrap();
    let (_, pl) = sam.load(&s1, eur(1), r).unwrap();
    assert_strict(&card.to_bytes(), MAX_CARD_FILE_LEN, Card::from_bytes);
    assert_strict(&pd.to_bytes(), MAX_PENDING_LEN, PendingDebit::from_bytes);
    assert_strict(&pl.to_bytes(), MAX_PENDING_LEN, PendingLoad::from_bytes);
    // One kind is not the other.
    assert!(PendingLoad::from_bytes(&pd.to_bytes()).is_err());
    assert!(PendingDebit::from_bytes(&pl.to_bytes()).is_err());
    assert!(Card::from_bytes(&pd.to_bytes()).is_err());
}

#[test]
fn purse_messages_are_decoded_strictly() {
    let r = &mut rng(25);
    let (sam, mut card) = setup(5000, r);
    let s1 = card.authenticate(r);
    assert!(s1.len() <= MAX_PURSE_MAC0_LEN);
    for n in 0..s1.len() {
        assert!(sam.verify_card_auth(&s1[..n]).is_err(), "truncated to {n}");
    }
    let mut trailing = s1.clone();
    trailing.push(0);
    assert!(sam.verify_card_auth(&trailing).is_err());
    let mut oversized = s1.clone();
    oversized.resize(MAX_PURSE_MAC0_LEN + 1, 0);
    assert!(matches!(
        sam.verify_card_auth(&oversized),
        Err(Error::Decode(DecodeError::TooLarge { .. }))
    ));
    // A message that is not MAC'd at all is refused.
    let bare = wire::encode(&read_unverified::<CardAuth>(&s1).unwrap());
    assert!(matches!(sam.verify_card_auth(&bare), Err(Error::Decode(_))));
    // A MAC under some other key over a well-formed S1: refused.
    let other = agora_core::crypto::MacKey::new([5; 32]);
    let forged = cose::mac(&other, &read_unverified::<CardAuth>(&s1).unwrap());
    assert_eq!(sam.verify_card_auth(&forged), Err(Error::Crypto));
}

#[test]
fn tags_are_registered() {
    use agora_core::wire::tags;
    for (tag, name) in [
        (CardAuth::TAG, "SPEED_PURSE_CARD_AUTH"),
        (DebitCommand::TAG, "SPEED_PURSE_DEBIT_COMMAND"),
        (DebitConfirmation::TAG, "SPEED_PURSE_DEBIT_CONFIRMATION"),
        (LoadCommand::TAG, "SPEED_PURSE_LOAD_COMMAND"),
        (LoadConfirmation::TAG, "SPEED_PURSE_LOAD_CONFIRMATION"),
    ] {
        assert_eq!(tags::lookup(tag), Some(name));
        assert_eq!((tag.system, tag.protocol), (tags::SYSTEM_SPEED, 6));
    }
}

// ---- Properties ----------------------------------------------------------------

/// One step of a random run.
#[derive(Clone, Debug)]
enum Op {
    /// An honest load.
    Load(u64),
    /// An honest debit.
    Debit(u64),
    /// A debit whose S2 is tampered with on the way to the card.
    TamperedS2(u64, usize),
    /// A debit whose S1 is tampered with on the way to the SAM.
    TamperedS1(u64, usize),
    /// A debit whose S3 is tampered with on the way to the SAM; the
    /// genuine one then arrives from the card's last confirmation.
    TamperedS3(u64, usize),
    /// The last accepted S2 is replayed, after a fresh S1 or not.
    ReplayS2(bool),
    /// A debit answering an S1 that a newer one replaced.
    Stale(u64),
    /// The card is saved to its file and read back.
    SaveRestore,
}

fn op() -> impl Strategy<Value = Op> {
    let amount = prop_oneof![1u64..=2_000, 1u64..=MAX_CARD_BALANCE_CENTS + 10];
    prop_oneof![
        3 => amount.clone().prop_map(Op::Load),
        3 => amount.clone().prop_map(Op::Debit),
        1 => (amount.clone(), any::<usize>()).prop_map(|(a, b)| Op::TamperedS2(a, b)),
        1 => (amount.clone(), any::<usize>()).prop_map(|(a, b)| Op::TamperedS1(a, b)),
        1 => (amount.clone(), any::<usize>()).prop_map(|(a, b)| Op::TamperedS3(a, b)),
        1 => any::<bool>().prop_map(Op::ReplayS2),
        1 => amount.prop_map(Op::Stale),
        1 => Just(Op::SaveRestore),
    ]
}

/// The model: what the broker has confirmed.
struct Model {
    balance_cents: u64,
    counter: u64,
}

impl Model {
    fn debit_ok(&self, cents: u64) -> bool {
        cents <= self.balance_cents
    }
    fn load_ok(&self, cents: u64) -> bool {
        self.balance_cents + cents <= MAX_CARD_BALANCE_CENTS
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn balance_is_loads_minus_confirmed_debits(seed: u64, ops in prop::collection::vec(op(), 1..40)) {
        let r = &mut rng(seed);
        let sam = Sam::new(master(1));
        let mut card = sam.issue(card_id(7), eur_currency());
        let mut m = Model { balance_cents: 0, counter: 0 };
        let mut last_s2: Option<Vec<u8>> = None;
        for (i, op) in ops.into_iter().enumerate() {
            let o = order(i as u8);
            match op {
                Op::Load(c) => {
                    let s1 = card.authenticate(r);
                    match sam.load(&s1, eur(c), r) {
                        Ok((cmd, p)) => {
                            prop_assert!(m.load_ok(c));
                            let conf = card.load(&cmd).unwrap();
                            let proof = sam.confirm_load(&p, &conf).unwrap();
                            m.balance_cents += c;
                            m.counter += 1;
                            prop_assert_eq!(proof.balance_after(), eur(m.balance_cents));
                            prop_assert_eq!(proof.counter(), m.counter);
                        }
                        Err(e) => {
                            prop_assert!(!m.load_ok(c));
                            prop_assert!(matches!(e, Error::Refused(_)));
                        }
                    }
                }
                Op::Debit(c) => {
                    let s1 = card.authenticate(r);
                    match sam.debit(&s1, eur(c), &o, r) {
                        Ok((s2, p)) => {
                            prop_assert!(m.debit_ok(c));
                            let s3 = card.debit(&s2).unwrap();
                            let proof = sam.confirm(&p, &s3).unwrap();
                            m.balance_cents -= c;
                            m.counter += 1;
                            prop_assert_eq!(proof.balance_after(), eur(m.balance_cents));
                            prop_assert_eq!(proof.counter(), m.counter);
                            last_s2 = Some(s2);
                        }
                        Err(e) => {
                            prop_assert!(!m.debit_ok(c));
                            prop_assert_eq!(e, Error::Refused("insufficient balance".into()));
                        }
                    }
                }
                Op::TamperedS2(c, bit) => {
                    let s1 = card.authenticate(r);
                    if let Ok((s2, _)) = sam.debit(&s1, eur(c), &o, r) {
                        let bad = flip(&s2, bit % (s2.len() * 8));
                        prop_assert!(card.debit(&bad).is_err());
                        // The session is gone: the genuine S2 comes too late.
                        prop_assert_eq!(card.debit(&s2), Err(Error::Replayed));
                    }
                }
                Op::TamperedS1(c, bit) => {
                    let s1 = card.authenticate(r);
                    let bad = flip(&s1, bit % (s1.len() * 8));
                    prop_assert!(sam.debit(&bad, eur(c), &o, r).is_err());
                }
                Op::TamperedS3(c, bit) => {
                    let s1 = card.authenticate(r);
                    if let Ok((s2, p)) = sam.debit(&s1, eur(c), &o, r) {
                        let s3 = card.debit(&s2).unwrap();
                        let bad = flip(&s3, bit % (s3.len() * 8));
                        prop_assert!(sam.confirm(&p, &bad).is_err());
                        let again = card.last_confirmation().unwrap().to_vec();
                        let proof = sam.confirm(&p, &again).unwrap();
                        m.balance_cents -= c;
                        m.counter += 1;
                        prop_assert_eq!(proof.balance_after(), eur(m.balance_cents));
                        last_s2 = Some(s2);
                    }
                }
                Op::ReplayS2(fresh_s1) => {
                    if let Some(s2) = &last_s2 {
                        if fresh_s1 {
                            let _ = card.authenticate(r);
                        }
                        prop_assert_eq!(card.debit(s2), Err(Error::Replayed));
                    }
                }
                Op::Stale(c) => {
                    let old = card.authenticate(r);
                    let _new = card.authenticate(r);
                    if let Ok((s2, _)) = sam.debit(&old, eur(c), &o, r) {
                        prop_assert_eq!(card.debit(&s2), Err(Error::Replayed));
                    }
                }
                Op::SaveRestore => card = copy(&card),
            }
            prop_assert_eq!(card.balance(), eur(m.balance_cents));
            prop_assert_eq!(card.counter(), m.counter);
        }
    }

    /// Random bytes to every decoder and every handler: an error, never a
    /// panic.
    #[test]
    fn random_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let r = &mut rng(1);
        let (sam, mut card) = setup(5000, r);
        let s1 = card.authenticate(r);
        let (_, pd) = sam.debit(&s1, eur(1), &order(1), r).unwrap();
        let (_, pl) = sam.load(&s1, eur(1), r).unwrap();
        let _ = Card::from_bytes(&bytes);
        let _ = PendingDebit::from_bytes(&bytes);
        let _ = PendingLoad::from_bytes(&bytes);
        let _ = read_unverified::<CardAuth>(&bytes);
        let _ = read_unverified::<DebitCommand>(&bytes);
        let _ = read_unverified::<DebitConfirmation>(&bytes);
        let _ = read_unverified::<LoadCommand>(&bytes);
        let _ = read_unverified::<LoadConfirmation>(&bytes);
        let _ = wire::decode::<CardAuth>(&bytes);
        let _ = wire::decode::<DebitCommand>(&bytes);
        let _ = wire::decode::<DebitConfirmation>(&bytes);
        let _ = wire::decode::<LoadCommand>(&bytes);
        let _ = wire::decode::<LoadConfirmation>(&bytes);
        prop_assert!(sam.verify_card_auth(&bytes).is_err());
        prop_assert!(sam.debit(&bytes, eur(1), &order(1), r).is_err());
        prop_assert!(sam.load(&bytes, eur(1), r).is_err());
        prop_assert!(sam.confirm(&pd, &bytes).is_err());
        prop_assert!(sam.confirm_load(&pl, &bytes).is_err());
        prop_assert!(copy(&card).debit(&bytes).is_err());
        prop_assert!(copy(&card).load(&bytes).is_err());
    }

    /// Valid messages with random bytes overwritten: reaches the checks
    /// past the COSE structure. Refused, never a panic.
    #[test]
    fn mutated_messages_are_refused(pos: usize, val: u8, which in 0usize..5) {
        let r = &mut rng(2);
        let (sam, mut card) = setup(5000, r);
        let s1 = card.authenticate(r);
        let (s2, pd) = sam.debit(&s1, eur(100), &order(1), r).unwrap();
        let (lc_cmd, _) = sam.load(&s1, eur(100), r).unwrap();
        let saved = copy(&card);
        let s3 = card.debit(&s2).unwrap();
        let msgs = [&s1, &s2, &s3, &lc_cmd, &s3];
        let mut bad = msgs[which].clone();
        let i = pos % bad.len();
        prop_assume!(bad[i] != val);
        bad[i] = val;
        match which {
            0 => prop_assert!(sam.debit(&bad, eur(1), &order(1), r).is_err()),
            1 => prop_assert!(copy(&saved).debit(&bad).is_err()),
            2 => prop_assert!(sam.confirm(&pd, &bad).is_err()),
            3 => prop_assert!(copy(&saved).load(&bad).is_err()),
            _ => {
                let _ = Card::from_bytes(&bad);
                prop_assert!(copy(&card).debit(&bad).is_err());
            }
        }
    }
}

#[test]
fn largest_messages_fit_their_limits() {
    let big = eur(u64::MAX);
    let n = [0xff; 32];
    let sizes = [
        wire::encode(&CardAuth {
            card_id: card_id(1),
            balance: big,
            counter: u64::MAX,
            card_nonce: n,
        })
        .len(),
        wire::encode(&DebitCommand {
            card_id: card_id(1),
            counter: u64::MAX,
            card_nonce: n,
            amount: big,
            order: order(1),
            sam_nonce: n,
        })
        .len(),
        wire::encode(&DebitConfirmation {
            card_id: card_id(1),
            counter: u64::MAX,
            amount: big,
            balance: big,
            order: order(1),
            card_nonce: n,
            sam_nonce: n,
        })
        .len(),
        wire::encode(&LoadCommand {
            card_id: card_id(1),
            counter: u64::MAX,
            card_nonce: n,
            amount: big,
            sam_nonce: n,
        })
        .len(),
        wire::encode(&LoadConfirmation {
            card_id: card_id(1),
            counter: u64::MAX,
            amount: big,
            balance: big,
            card_nonce: n,
            sam_nonce: n,
        })
        .len(),
    ];
    assert_eq!(sizes.iter().max(), Some(&179));
    assert!(sizes.iter().all(|&s| s <= CardAuth::MAX_LEN));
}
