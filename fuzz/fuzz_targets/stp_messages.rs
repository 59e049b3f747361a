//! Every STP decoder on arbitrary bytes: the messages of `agora_stp::msg`
//! and the proof bundle (each must re-encode to exactly the input), the
//! signed ones through the `cose::verify`-shaped paths the roles use (under
//! the fixture's keys: the commit authority's for Started, Pending and tree
//! heads; P's for Data, End and Decide; the certificate inside for Begin,
//! Join, Vote, Deposit and Claim), `verify_outcome` and `verify_head`, the
//! Merkle proof checks on arbitrary sizes and paths, the saved
//! subtransaction (`SubState::from_bytes`, which must save to the same
//! bytes), the commit authority's record (`TxRecord::decode`, likewise),
//! `verify_bundle`, and TIDs read from text. No input may panic.
#![no_main]
use agora_core::crypto::VerifyingKey;
use agora_core::wire::{self, cose, Message};
use agora_stp::bundle::{verify_bundle, ProofBundle};
use agora_stp::ids::Tid;
use agora_stp::log::TxRecord;
use agora_stp::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use agora_stp::msg::{
    Begin, Claim, Consistency, Data, Decide, Deposit, DepositReceipt, End, Join, Outcome,
    OutcomeLeaf, Pending, Release, Started, Status, TreeHead, Vote,
};
use agora_stp::outcome::{check_consistency, convict, verify_head, verify_outcome};
use agora_stp::process::{open_opening, SubState};
use agora_stp::testkit::NOW;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "stp_fixture.rs"]
mod stp_fixture;

use stp_fixture::{Stp, P};

fn stp() -> &'static Stp {
    static STP: OnceLock<Stp> = OnceLock::new();
    STP.get_or_init(Stp::new)
}

fn roundtrip<M: Message>(data: &[u8]) {
    if let Ok(m) = wire::decode::<M>(data) {
        assert_eq!(wire::encode(&m), data, "decoded a non-canonical encoding");
    }
}

/// `Sign(X)` checked with the key that would have signed it: what verifies
/// carries its payload, which re-encodes to bytes found in the input. The
/// unverified read (`peek_unverified`, which the commit authority uses to
/// find a Decide's key) must not panic either.
fn signed<M: Message>(data: &[u8], key: &VerifyingKey) {
    if let Ok(m) = cose::verify::<M>(data, key) {
        let payload = wire::encode(&m);
        assert!(
            data.windows(payload.len()).any(|w| w == payload),
            "verified something that is not the payload"
        );
    }
    let _ = cose::peek_unverified::<M>(data);
}

fuzz_target!(|data: &[u8]| {
    let f = stp();
    roundtrip::<Begin>(data);
    roundtrip::<Join>(data);
    roundtrip::<Vote>(data);
    roundtrip::<Started>(data);
    roundtrip::<Data>(data);
    roundtrip::<End>(data);
    roundtrip::<Decide>(data);
    roundtrip::<OutcomeLeaf>(data);
    roundtrip::<TreeHead>(data);
    roundtrip::<Outcome>(data);
    roundtrip::<Status>(data);
    roundtrip::<Pending>(data);
    roundtrip::<Consistency>(data);
    roundtrip::<Deposit>(data);
    roundtrip::<DepositReceipt>(data);
    roundtrip::<Claim>(data);
    roundtrip::<Release>(data);
    roundtrip::<ProofBundle>(data);

    let ca = &f.ca_key;
    let p = f.party(P).sign.verifying_key();
    signed::<Started>(data, ca);
    signed::<Pending>(data, ca);
    signed::<TreeHead>(data, ca);
    signed::<Data>(data, &p);
    signed::<End>(data, &p);
    signed::<Decide>(data, &p);
    let _ = open_opening(data, &f.trust, NOW);
    let certified = |cert: &[u8]| Ok(*f.trust.identity_of_any_role(cert, NOW)?.key());
    let _ = cose::verify_self_certified::<Vote>(data, |v| certified(&v.voter_cert));
    let _ = cose::verify_self_certified::<Deposit>(data, |d| certified(&d.depositor_cert));
    let _ = cose::verify_self_certified::<Claim>(data, |c| certified(&c.claimant_cert));

    let fixture = verify_outcome(&f.outcome, ca).expect("the fixture's outcome");
    if let Ok(h) = verify_head(data, ca) {
        assert_eq!(h.ca, ca.key_id());
    }
    if let Ok(o) = verify_outcome(data, ca) {
        // The commit authority signed one head, over one leaf: whatever
        // verifies is that leaf.
        assert_eq!(
            o.leaf_bytes, fixture.leaf_bytes,
            "an outcome the CA never decided"
        );
        assert_eq!(convict(&o, &fixture, None), None);
    }
    if let Ok(c) = wire::decode::<Consistency>(data) {
        let root = fixture.head.root;
        let _ = check_consistency(&fixture.head, &fixture.head, &c);
        let _ = verify_consistency(c.old_size, c.new_size, &root, &root, &c.path);
        let _ = verify_inclusion(&leaf_hash(data), c.old_size, c.new_size, &c.path, &root);
    }

    if let Ok(s) = SubState::from_bytes(data, ca) {
        assert_eq!(&s.to_bytes()[..], data, "read a non-canonical saved state");
    }
    if let Ok(r) = TxRecord::decode(data) {
        assert_eq!(r.encode(), data, "read a non-canonical record");
    }
    let _ = verify_bundle(data, &f.trust, ca, NOW);

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = Tid::from_hex(text) {
            assert_eq!(t.to_string(), text.to_ascii_lowercase());
        }
    }
});
