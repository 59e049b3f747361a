//! Hash-chain receipts: the client's chain is a chain, the vendor accepts
//! receipts in order and with gaps (paying one hash per index), and refuses
//! replays, receipts beyond the chain and wrong elements without changing
//! its state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_core::crypto::{ops, sha256};
use agora_core::{DecodeError, Error};
use agora_lite::{ChainVerifier, HashChain, MAX_CHAIN_LEN};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn chain(seed: u64, n: u64) -> HashChain {
    HashChain::generate(&mut ChaCha20Rng::seed_from_u64(seed), n).unwrap()
}

/// Runs `f` and returns what it returned with the SHA-256s this thread did.
fn counting_hashes<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ops::this_thread();
    let out = f();
    (
        out,
        ops::this_thread().since(&before).calls(ops::Op::Sha256),
    )
}

#[test]
fn every_element_hashes_to_the_one_before_for_short_and_square_lengths() {
    for n in [1, 2, 3, 4, 5, 8, 9, 10, 15, 16, 17, 100, 101] {
        let c = chain(n, n);
        assert_eq!(c.n(), n);
        assert_eq!(c.element(0).unwrap(), c.anchor());
        for i in 1..=n {
            assert_eq!(
                sha256(&c.element(i).unwrap()),
                c.element(i - 1).unwrap(),
                "n {n} i {i}"
            );
        }
        assert!(matches!(c.element(n + 1), Err(Error::ApiMisuse(_))));
        assert!(c.element(u64::MAX).is_err());
    }
}

#[test]
fn chains_from_different_randomness_differ() {
    assert_ne!(chain(1, 10).anchor(), chain(2, 10).anchor());
    assert_eq!(chain(1, 10).anchor(), chain(1, 10).anchor());
}

#[test]
fn lengths_out_of_bounds_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    assert!(matches!(
        HashChain::generate(&mut rng, 0),
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        HashChain::generate(&mut rng, MAX_CHAIN_LEN + 1),
        Err(Error::Refused(_))
    ));
    assert!(ChainVerifier::new([0; 32], 0).is_err());
    assert!(ChainVerifier::new([0; 32], MAX_CHAIN_LEN + 1).is_err());
}

#[test]
fn receipts_accepted_in_order_cost_one_hash_each() {
    let c = chain(7, 10);
    let mut v = ChainVerifier::new(c.anchor(), 10).unwrap();
    for i in 1..=10 {
        let w = c.element(i).unwrap();
        let (done, counted) = counting_hashes(|| v.accept(i, &w));
        assert_eq!(done, Ok(1));
        assert_eq!(counted, 1, "the hashes reported are the hashes done");
        assert_eq!((v.last_index(), v.last_value()), (i, w));
    }
    assert_eq!(v.remaining(), 0);
}

#[test]
fn receipts_with_gaps_cost_one_hash_per_index_skipped() {
    let c = chain(7, 20);
    let mut v = ChainVerifier::new(c.anchor(), 20).unwrap();
    for (i, expected) in [(3, 3), (4, 1), (11, 7), (20, 9)] {
        let w = c.element(i).unwrap();
        let (done, counted) = counting_hashes(|| v.accept(i, &w));
        assert_eq!(done, Ok(expected), "receipt {i}");
        assert_eq!(counted, expected);
        assert_eq!(v.last_index(), i);
    }
}

#[test]
fn a_replayed_or_older_receipt_is_refused_and_changes_nothing() {
    let c = chain(7, 10);
    let mut v = ChainVerifier::new(c.anchor(), 10).unwrap();
    v.accept(5, &c.element(5).unwrap()).unwrap();
    let kept = v.clone();
    for i in [5, 4, 1, 0] {
        let w = c.element(i).unwrap();
        let (done, counted) = counting_hashes(|| v.accept(i, &w));
        assert_eq!(done, Err(Error::Replayed), "receipt {i}");
        assert_eq!(counted, 0, "a replay is refused before any hashing");
        assert_eq!(v, kept);
    }
}

#[test]
fn a_receipt_beyond_the_chain_is_refused_without_hashing_and_changes_nothing() {
    let c = chain(7, 10);
    let mut v = ChainVerifier::new(c.anchor(), 10).unwrap();
    let kept = v.clone();
    for i in [11, 1 << 40, u64::MAX] {
        let (done, counted) = counting_hashes(|| v.accept(i, &[0xab; 32]));
        assert!(
            matches!(&done, Err(Error::Refused(m)) if m.contains("beyond")),
            "{done:?}"
        );
        assert_eq!(counted, 0);
        assert_eq!(v, kept);
    }
}

#[test]
fn a_wrong_element_is_refused_and_changes_nothing() {
    let c = chain(7, 10);
    let other = chain(8, 10);
    let mut v = ChainVerifier::new(c.anchor(), 10).unwrap();
    v.accept(2, &c.element(2).unwrap()).unwrap();
    let kept = v.clone();
    let wrong = [
        (4, c.element(5).unwrap()),     // the right chain, the wrong index
        (4, c.element(3).unwrap()),     // an older element presented as newer
        (4, other.element(4).unwrap()), // another chain's element 4
        (4, [0u8; 32]),
        (10, c.element(9).unwrap()),
        (3, c.element(2).unwrap()), // the last accepted, one index on
    ];
    for (i, w) in wrong {
        assert_eq!(v.accept(i, &w), Err(Error::Crypto), "receipt {i}");
        assert_eq!(v, kept);
    }
    // The right one is still accepted afterwards.
    assert_eq!(v.accept(4, &c.element(4).unwrap()), Ok(2));
}

#[test]
fn the_longest_chain_is_verified_with_at_most_n_hashes() {
    let n = MAX_CHAIN_LEN;
    let c = chain(3, n);
    let (w, counted) = counting_hashes(|| c.element(1).unwrap());
    assert!(counted < 1024, "element() hashed {counted} times");
    let mut v = ChainVerifier::new(c.anchor(), n).unwrap();
    assert_eq!(v.accept(1, &w), Ok(1));
    let last = c.element(n).unwrap();
    let (done, counted) = counting_hashes(|| v.accept(n, &last));
    assert_eq!(done, Ok(n - 1));
    assert_eq!(counted, n - 1);
}

#[test]
fn verifier_state_round_trips_through_its_parts() {
    let c = chain(7, 10);
    let mut v = ChainVerifier::new(c.anchor(), 10).unwrap();
    v.accept(3, &c.element(3).unwrap()).unwrap();
    let mut restored =
        ChainVerifier::from_parts(v.anchor(), v.n(), v.last_index(), v.last_value()).unwrap();
    assert_eq!(restored, v);
    assert_eq!(
        restored.accept(3, &c.element(3).unwrap()),
        Err(Error::Replayed)
    );
    assert_eq!(restored.accept(6, &c.element(6).unwrap()), Ok(3));

    let a = c.anchor();
    let w3 = c.element(3).unwrap();
    for (n, last, value, why) in [
        (0, 0, a, "hash chain length out of bounds"),
        (MAX_CHAIN_LEN + 1, 0, a, "hash chain length out of bounds"),
        (10, 11, w3, "hash chain index beyond the chain's end"),
        (10, 0, w3, "hash chain element 0 is not the anchor"),
    ] {
        assert_eq!(
            ChainVerifier::from_parts(a, n, last, value),
            Err(Error::Decode(DecodeError::Invalid(why)))
        );
    }
}

#[test]
fn debug_output_hides_the_chains_secret_elements() {
    let c = chain(7, 50);
    let shown = format!("{c:?} {c:#?}");
    for i in 1..=50 {
        let w = c.element(i).unwrap();
        assert!(!shown.contains(&hex::encode(w)), "{shown}");
        assert!(!shown.contains(&hex::encode_upper(w)), "{shown}");
        assert!(
            !shown.contains(format!("{:?}", &w[..8]).trim_end_matches(']')),
            "{shown}"
        );
    }
    assert!(
        shown.contains("redacted") && shown.contains("50"),
        "{shown}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any chain length and any increasing run of indices (the client
    /// acknowledging some deliveries and losing others), every receipt is
    /// accepted and the hashes done add up to the last index.
    #[test]
    fn increasing_receipts_all_verify_and_hashes_sum_to_the_last_index(
        seed in any::<u64>(),
        n in 1u64..=2_000,
        picks in proptest::collection::vec(any::<u64>(), 1..40),
    ) {
        let c = chain(seed, n);
        let mut indices: Vec<u64> = picks.iter().map(|p| 1 + p % n).collect();
        indices.sort_unstable();
        indices.dedup();
        let mut v = ChainVerifier::new(c.anchor(), n).unwrap();
        let mut total = 0;
        for &i in &indices {
            let done = v.accept(i, &c.element(i).unwrap());
            prop_assert!(done.is_ok(), "receipt {} of {}: {:?}", i, n, done);
            total += done.unwrap();
        }
        let last = *indices.last().unwrap();
        prop_assert_eq!(total, last);
        prop_assert_eq!(v.last_index(), last);
        prop_assert!(total <= n);
    }
}
