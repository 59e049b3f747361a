#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The cryptographic operations each step of a first-come binding performs,
//! as agora-core counts them (`agora_core::crypto::ops`): what the load
//! tool prices its crypto bound from. A step that gained an operation (one
//! more signature, say) fails here, and the counter sees one added
//! operation exactly. Broken on purpose to check: one more
//! `self.keys.sign.sign(..)` in `Server::prepare_bind_offer` failed
//! `a_binding_costs_one_signature_and_one_verification` with
//! `[(Ed25519Sign, 2)]`; `agora bench cpo-bind` reads the same counters
//! from the node, so its bound would then price two signatures a bind.

mod common;

use agora_core::crypto::ops::{this_thread, Op, OpCounts};
use agora_cpo::{FirstCome, Mode};
use common::*;

/// What `f` counted on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (T, OpCounts) {
    let before = this_thread();
    let out = f();
    (out, this_thread().since(&before))
}

/// The public-key operations of `c`, by kind, leaving out those it did not
/// perform.
fn public_key(c: &OpCounts) -> Vec<(Op, u64)> {
    c.iter()
        .filter(|(op, n, _)| op.is_public_key() && *n > 0)
        .map(|(op, n, _)| (op, n))
        .collect()
}

#[test]
fn a_binding_costs_one_signature_and_one_verification() {
    let mut m = Market::new(71);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    m.post(&acceptance);
    let (pam, bond) = m.seller_keys();
    let session = m.day_session(&pam, &bond);

    let (request, c) = counted(|| session.request_listing(&mut m.rng, ccpo.id, Mode::FirstCome));
    assert_eq!(public_key(&c), vec![], "her listing request: K_p only");
    let (listing, c) = counted(|| {
        m.server
            .handle_listing_request(&mut m.rng, NOW, &request)
            .unwrap()
    });
    assert_eq!(public_key(&c), vec![], "the server's listing: K_p only");
    assert!(
        c.calls(Op::ChaCha20Poly1305) + c.calls(Op::Hmac) > 0,
        "under K_p"
    );
    let ((offer, expect), c) = counted(|| {
        let l = session.open_listing(&listing).unwrap();
        session.offer(&mut m.rng, &l, "ships tomorrow").unwrap()
    });
    assert_eq!(public_key(&c), vec![], "her offer: K_p only");
    let (bound, c) = counted(|| m.server.handle_bind_offer(&mut m.rng, NOW, &offer).unwrap());
    assert_eq!(
        public_key(&c),
        vec![(Op::Ed25519Sign, 1)],
        "the server signs BOUND_CPO, once"
    );
    let (_, c) = counted(|| expect.handle(&session, &bound.reply).unwrap());
    assert_eq!(
        public_key(&c),
        vec![(Op::Ed25519Verify, 1)],
        "she checks the server's signature, once"
    );

    // One more signature in a step is one more counted: what would make the
    // assertions above fail, and the load tool's bound move.
    let (_, plain) = counted(|| m.bob.sign.sign(b"a step"));
    let (_, more) = counted(|| {
        m.bob.sign.sign(b"a step");
        m.bob.sign.sign(b"an operation added to it")
    });
    assert_eq!(
        more.calls(Op::Ed25519Sign),
        plain.calls(Op::Ed25519Sign) + 1
    );
}

#[test]
fn posting_costs_what_protocol_2_says() {
    let mut m = Market::new(72);
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo, "");
    let (m0, bob) =
        agora_cpo::buyer::request_post(&m.bob, &mut m.rng, &acceptance, &m.server_peer).unwrap();
    let ((m1, pending), c) =
        counted(|| m.server.handle_post_request(&mut m.rng, NOW, &m0).unwrap());
    // Opening M_0: HPKE open, Bob's signature; the arbiter's acceptance;
    // the bond (the agency's signature on it and on its CRL); sealing M_1:
    // HPKE seal and the server's signature.
    assert_eq!(c.calls(Op::HpkeOpen), 1);
    assert_eq!(c.calls(Op::HpkeSeal), 1);
    assert_eq!(c.calls(Op::Ed25519Sign), 1);
    assert_eq!(c.calls(Op::Ed25519Verify), 4);
    let (m2, _) = bob.handle(&m.bob, &mut m.rng, &m1).unwrap();
    let (_, c) = counted(|| {
        pending
            .handle_response(&m.server, &mut m.rng, NOW, &m2)
            .unwrap()
    });
    // Opening M_2 (HPKE, Bob's signature); signing the posted CPO and
    // sealing M_3 (HPKE, the server's signature on it).
    assert_eq!(c.calls(Op::HpkeOpen), 1);
    assert_eq!(c.calls(Op::HpkeSeal), 1);
    assert_eq!(c.calls(Op::Ed25519Verify), 1);
    assert_eq!(c.calls(Op::Ed25519Sign), 2);
}
