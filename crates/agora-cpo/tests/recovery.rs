#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Recovering a binding (agora_cpo::recovery): a seller whose BOUND_CPO was
//! lost asks for it under K_p; only the seller the board binds gets it.

mod common;

use agora_core::Error;
use agora_cpo::seller::SellerSession;
use agora_cpo::{Ccpo, FirstCome, Keys};
use common::*;

struct Seller {
    bond: Vec<u8>,
    session: SellerSession,
    _keys: Keys,
}

fn seller(m: &mut Market) -> Seller {
    let (keys, bond) = m.seller_keys();
    let session = m.day_session(&keys, &bond);
    Seller {
        bond,
        session,
        _keys: keys,
    }
}

fn posted(m: &mut Market) -> Ccpo {
    let ccpo = m.ccpo();
    let (acceptance, _) = m.approve::<FirstCome>(ccpo.clone(), "");
    m.post(&acceptance);
    ccpo
}

/// Pam binds, and her BOUND_CPO is lost on the way.
fn bind_and_lose_reply(m: &mut Market, p: &Seller, ccpo: &Ccpo) -> Vec<u8> {
    let l = m
        .server
        .listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id)
        .unwrap();
    let l = p.session.open_listing(&l).unwrap();
    let (m1, _lost) = p.session.offer(&mut m.rng, &l, "in 3 days").unwrap();
    m.server
        .handle_bind_offer(&mut m.rng, NOW, &m1)
        .unwrap()
        .signed
}

#[test]
fn the_winner_recovers_her_bound_cpo() {
    let mut m = Market::new(60);
    let ccpo = posted(&mut m);
    let p = seller(&mut m);
    let signed = bind_and_lose_reply(&mut m, &p, &ccpo);
    // Her retry of protocol 4 is refused: the CPO is no longer listed.
    assert!(m
        .server
        .listing(&mut m.rng, NOW, &p.session.id(), &ccpo.id)
        .is_err());
    let (q, exp) = p.session.ask_binding(&mut m.rng, &ccpo.id, &p.bond);
    let a = m.server.handle_binding_query(&mut m.rng, NOW, &q).unwrap();
    let r = exp.handle(&p.session, &a).unwrap();
    assert_eq!(r.signed, signed, "exactly the stored evidence");
    assert_eq!(r.message.ccpo, ccpo);
    // Asking again gives it again (no state changes).
    let (q, exp) = p.session.ask_binding(&mut m.rng, &ccpo.id, &p.bond);
    let a = m.server.handle_binding_query(&mut m.rng, NOW, &q).unwrap();
    assert_eq!(exp.handle(&p.session, &a).unwrap().signed, signed);
}

#[test]
fn another_seller_and_an_unbound_cpo_get_one_refusal() {
    let mut m = Market::new(61);
    let ccpo = posted(&mut m);
    let (p, q) = (seller(&mut m), seller(&mut m));
    let (ask, _) = p.session.ask_binding(&mut m.rng, &ccpo.id, &p.bond);
    let unbound = m.server.handle_binding_query(&mut m.rng, NOW, &ask);
    bind_and_lose_reply(&mut m, &p, &ccpo);
    let (ask, _) = q.session.ask_binding(&mut m.rng, &ccpo.id, &q.bond);
    let other = m.server.handle_binding_query(&mut m.rng, NOW, &ask);
    match (unbound, other) {
        (Err(Error::Refused(a)), Err(Error::Refused(b))) => assert_eq!(a, b, "says not which"),
        x => panic!("expected two refusals, got {x:?}"),
    }
}

#[test]
fn a_tampered_query_or_answer_is_rejected() {
    let mut m = Market::new(62);
    let ccpo = posted(&mut m);
    let p = seller(&mut m);
    bind_and_lose_reply(&mut m, &p, &ccpo);
    let (q, exp) = p.session.ask_binding(&mut m.rng, &ccpo.id, &p.bond);
    for i in 0..q.len() {
        let mut bad = q.clone();
        bad[i] ^= 0x01;
        assert!(m
            .server
            .handle_binding_query(&mut m.rng, NOW, &bad)
            .is_err());
    }
    let a = m.server.handle_binding_query(&mut m.rng, NOW, &q).unwrap();
    let mut bad = a.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    assert!(exp.handle(&p.session, &bad).is_err());
    // An answer to another query is refused.
    let (_, exp2) = p.session.ask_binding(&mut m.rng, &ccpo.id, &p.bond);
    assert!(matches!(
        exp2.handle(&p.session, &a),
        Err(Error::PeerMisbehaved(_))
    ));
    // Another seller's bond: the BOUND_CPO is not hers.
    let (q3, exp3) = p.session.ask_binding(&mut m.rng, &ccpo.id, b"not my bond");
    let a3 = m.server.handle_binding_query(&mut m.rng, NOW, &q3).unwrap();
    assert!(exp3.handle(&p.session, &a3).is_err());
}
