//! Fixtures shared by the protocol tests: a client with her Janus key, a
//! vendor with its keys, a subscription, and a SKEP run between them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_lite::sddp::SessionPolicy;
use agora_lite::skep::{ClientRecord, SkepClient, SkepMode, SkepVendor};
use agora_lite::wire::{ChainCommitment, Subscription};
use agora_lite::{ClientId, Granularity, Janus, JanusParams, VendorId, VendorKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const NOW: Timestamp = Timestamp(1_700_000_000);
/// The unit of session keys in these tests.
pub const G: Granularity = Granularity::MINUTE;

/// The vendor's session-key policy at `now`: units of [`G`], two either side.
pub fn policy(now: Timestamp) -> SessionPolicy {
    SessionPolicy {
        now,
        granularity: G,
        window_units: 2,
    }
}
pub const DAY: u64 = 86_400;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn alice() -> ClientId {
    ClientId::new("alice@example.org").unwrap()
}

pub fn mallory() -> ClientId {
    ClientId::new("mallory@example.org").unwrap()
}

pub fn quotes() -> VendorId {
    VendorId::new("quotes.example").unwrap()
}

pub fn news() -> VendorId {
    VendorId::new("news.example").unwrap()
}

/// The client's Janus key with vendor `v` (cheap parameters).
pub fn client_key(c: &ClientId, v: &VendorId) -> VendorKey {
    Janus::open(
        c.clone(),
        b"correct horse",
        JanusParams::insecure_for_tests(),
    )
    .unwrap()
    .vendor_key(v, 0)
}

pub fn vendor(id: VendorId, seed: u64) -> SkepVendor {
    let mut r = rng(seed);
    SkepVendor::new(
        id,
        X25519Secret::generate(&mut r),
        SigningKey::generate(&mut r),
    )
}

pub fn subscription(chain: Option<ChainCommitment>) -> Subscription {
    Subscription {
        not_before: NOW,
        not_after: NOW.plus_secs(30 * DAY),
        chain,
        payment: b"payment-ref-42".to_vec(),
        counter: 0,
    }
}

/// A complete SKEP run; returns the vendor's record (and the receipt bytes
/// in non-repudiation mode).
pub fn skep(
    v: &SkepVendor,
    c: &ClientId,
    s: Subscription,
    mode: SkepMode,
) -> (ClientRecord, Option<Vec<u8>>) {
    let mut r = rng(99);
    let k = client_key(c, v.id());
    let (await_challenge, hello) =
        SkepClient::start(&mut r, &k, c.clone(), v.id().clone(), &v.x25519_public()).unwrap();
    let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
    let (_confirmed, confirm) = await_challenge.on_challenge(&mut r, &challenge, s).unwrap();
    pending.on_confirm(v, &mut r, NOW, &confirm, mode).unwrap()
}

/// Every single-bit flip of `bytes`.
pub fn bit_flips(bytes: &[u8]) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    (0..bytes.len() * 8).map(move |i| {
        let mut t = bytes.to_vec();
        t[i / 8] ^= 1 << (i % 8);
        (i, t)
    })
}
