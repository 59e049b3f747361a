//! Verifiable causality (paper section 2): `agora stp prove` bundles a
//! committed subtransaction's signed messages with the CA's outcome, and an
//! arbiter checks offline, with only the agency and the CA pinned, that
//! message i preceded message j. Every way of rearranging, trimming,
//! padding or forging a bundle is refused with the error that says who is
//! at fault; every signature in a bundle verifies with pycose.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use agora_core::crypto::{sha256, VerifyingKey};
use agora_core::wire::{cose, decode, encode, tags};
use agora_core::{DecodeError, Error};
use agora_pki::IdentityTrust;
use agora_stp::bundle::{prove, verify_bundle, ProofBundle, VerifiedBundle, MAX_BUNDLE_MESSAGES};
use agora_stp::merkle::leaf_hash;
use agora_stp::msg::{Data, Outcome, OutcomeLeaf, TreeHead};
use agora_stp::process::{Decided, Open};
use agora_stp::testkit::{World, NOW};
use agora_stp::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A committed transaction of three parties: p0 begins with p1 (sub A),
/// p1 brings in p2 through it (sub B, a Join). Sub A converses with the
/// token held over two messages, passed back and forth, and is ended by
/// the invitee; sub B converses one round each way.
struct Three {
    w: World,
    /// Sub A as p0 (its initiator) and p1 decided it.
    a0: Decided,
    a1: Decided,
    /// Sub B as p1 (its initiator) decided it.
    b1: Decided,
    /// p0's copy of p1's certificate, kept from p0's Open before deciding.
    a_invitee_cert: Vec<u8>,
    /// p1's copy of p2's certificate.
    b_invitee_cert: Vec<u8>,
}

fn send(w: &World, (i, from): (usize, &mut Open), to: &mut Open, text: &str, pass: bool) {
    let m = from.send(&w.parties[i], text.as_bytes(), pass).unwrap();
    to.receive(&m).unwrap();
}

fn three(seed: u64) -> Three {
    let mut w = World::new(3, seed);
    let (mut a, mut b) = w.begin(0, 1).unwrap();
    let (mut c, mut d) = w.join(1, &b, 2).unwrap();
    // Sub A: p0, p0 (passes), p1 (passes), p0 (passes), then p1 ends.
    send(&w, (0, &mut a), &mut b, "10 t of cement C30", false);
    send(&w, (0, &mut a), &mut b, "at 95 EUR/t", true);
    send(&w, (1, &mut b), &mut a, "90 EUR/t", true);
    send(&w, (0, &mut a), &mut b, "92 EUR/t, final", true);
    let end = b.end(&w.parties[1]).unwrap();
    a.receive(&end).unwrap();
    w.converse((1, &mut c), (2, &mut d), 1).unwrap();
    assert_eq!(a.context(), b.context());

    let a_invitee_cert = a.peer_cert().to_vec();
    assert_eq!(a_invitee_cert, w.parties[1].cert);
    let b_invitee_cert = c.peer_cert().to_vec();
    assert_eq!(b_invitee_cert, w.parties[2].cert);

    let (wa, _) = w.decide(0, a, true).unwrap();
    let (wb, _) = w.decide(1, b, true).unwrap();
    let (wc, _) = w.decide(1, c, true).unwrap();
    w.decide(2, d, true).unwrap();
    let a0 = w.outcome(0, &wa).unwrap();
    let a1 = w.outcome(1, &wb).unwrap();
    let b1 = w.outcome(1, &wc).unwrap();
    assert!(a0.committed() && a1.committed() && b1.committed());
    Three {
        w,
        a0,
        a1,
        b1,
        a_invitee_cert,
        b_invitee_cert,
    }
}

impl Three {
    fn trust(&self) -> IdentityTrust {
        agora_stp::testkit::trust_of(&self.w.agency, vec![], NOW)
    }

    fn ca(&self) -> VerifyingKey {
        self.w.ca.verifying_key()
    }

    fn bundle_a(&self) -> ProofBundle {
        decode(&prove(&self.a0, &self.a_invitee_cert).unwrap()).unwrap()
    }

    fn verify(&self, b: &ProofBundle) -> agora_core::Result<VerifiedBundle> {
        verify_bundle(&encode(b), &self.trust(), &self.ca(), NOW)
    }
}

fn check_listing(
    v: &VerifiedBundle,
    d: &Decided,
    tags_expected: &[&str],
    senders: &[usize],
    w: &World,
) {
    let ms = v.messages();
    assert_eq!(ms.len(), d.transcript.len());
    assert_eq!(ms.len(), tags_expected.len());
    let mut ctx = Context::initial(&d.transcript[0]);
    for (k, m) in ms.iter().enumerate() {
        assert_eq!(m.index, k);
        assert_eq!(m.seq, k as u64);
        assert_eq!(m.tag, tags_expected[k]);
        assert_eq!(m.sender, w.uid(senders[k]));
        assert_eq!(m.hash, sha256(&d.transcript[k]));
        if k > 0 {
            ctx = ctx.next(&d.transcript[k]);
        }
        assert_eq!(m.context, ctx);
    }
    assert_eq!(Some(v.final_context()), d.outcome.leaf.context_of(&d.pair));
    assert_eq!(v.pair(), d.pair);
    assert_eq!(v.tid(), d.outcome.leaf.tid);
    assert_eq!(v.outcome().leaf_bytes, d.outcome.leaf_bytes);
    // Every ordered pair, both ways, and the diagonal.
    for i in 0..ms.len() {
        for j in 0..ms.len() {
            assert_eq!(v.preceded(i, j).unwrap(), i < j, "preceded({i}, {j})");
        }
    }
    assert!(matches!(v.preceded(ms.len(), 0), Err(Error::ApiMisuse(_))));
    assert!(matches!(v.preceded(0, ms.len()), Err(Error::ApiMisuse(_))));
}

#[test]
fn a_committed_subtransactions_bundle_verifies_and_orders_every_pair_of_messages() {
    let t = three(1);
    let bytes = prove(&t.a0, &t.a_invitee_cert).unwrap();
    let v = verify_bundle(&bytes, &t.trust(), &t.ca(), NOW).unwrap();
    check_listing(
        &v,
        &t.a0,
        &[
            "STP_BEGIN",
            "STP_DATA",
            "STP_DATA",
            "STP_DATA",
            "STP_DATA",
            "STP_END",
        ],
        &[0, 0, 0, 1, 0, 1],
        &t.w,
    );
    assert_eq!(v.initiator().uid, t.w.uid(0));
    assert_eq!(v.initiator().name, "p0");
    assert_eq!(v.invitee().uid, t.w.uid(1));
    assert_eq!(v.invitee().name, "p1");

    // The Join's subtransaction, proved by its initiator p1.
    let bytes = prove(&t.b1, &t.b_invitee_cert).unwrap();
    let v = verify_bundle(&bytes, &t.trust(), &t.ca(), NOW).unwrap();
    check_listing(
        &v,
        &t.b1,
        &["STP_JOIN", "STP_DATA", "STP_DATA", "STP_END"],
        &[1, 1, 2, 1],
        &t.w,
    );
}

#[test]
fn either_party_of_a_subtransaction_proves_the_same_bundle() {
    let t = three(2);
    let by_initiator = prove(&t.a0, &t.a_invitee_cert).unwrap();
    // p1 is sub A's invitee: the invitee certificate is its own.
    let by_invitee = prove(&t.a1, &t.w.parties[1].cert).unwrap();
    assert_eq!(by_initiator, by_invitee);
}

#[test]
fn a_bundle_round_trips_exactly_and_refuses_trailing_or_non_canonical_bytes() {
    let t = three(3);
    let bytes = prove(&t.a0, &t.a_invitee_cert).unwrap();
    let b: ProofBundle = decode(&bytes).unwrap();
    assert_eq!(encode(&b), bytes);
    assert_eq!(b.messages, t.a0.transcript);
    assert_eq!(b.outcome, t.a0.outcome_bytes);
    assert_eq!(decode::<ProofBundle>(&encode(&b)).unwrap(), b);
    assert_eq!(bytes[0], 0x84, "[tag, messages, invitee_cert, outcome]");

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        decode::<ProofBundle>(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
    assert!(matches!(
        verify_bundle(&trailing, &t.trust(), &t.ca(), NOW),
        Err(Error::Decode(DecodeError::TrailingBytes(1)))
    ));

    // The array head 4 written in two bytes (0x98 0x04) instead of one.
    let mut long_head = vec![0x98, 0x04];
    long_head.extend_from_slice(&bytes[1..]);
    assert!(matches!(
        decode::<ProofBundle>(&long_head),
        Err(DecodeError::NonCanonical(_))
    ));
    assert!(matches!(
        verify_bundle(&long_head, &t.trust(), &t.ca(), NOW),
        Err(Error::Decode(DecodeError::NonCanonical(_)))
    ));

    // No opening at all.
    let empty = ProofBundle {
        messages: vec![],
        ..b.clone()
    };
    assert!(matches!(
        decode::<ProofBundle>(&encode(&empty)),
        Err(DecodeError::Invalid(_))
    ));

    // More messages than a bundle holds: refused at the count.
    let many = ProofBundle {
        messages: vec![vec![0]; MAX_BUNDLE_MESSAGES + 1],
        ..b.clone()
    };
    assert!(matches!(
        decode::<ProofBundle>(&encode(&many)),
        Err(DecodeError::TooLarge { .. })
    ));

    // Another message is not a bundle.
    assert!(matches!(
        verify_bundle(&t.a0.outcome_bytes, &t.trust(), &t.ca(), NOW),
        Err(Error::Decode(DecodeError::WrongTag { .. }))
    ));
    assert_eq!(
        agora_core::wire::peek_tag(&bytes).unwrap(),
        tags::STP_PROOF_BUNDLE
    );
}

#[test]
fn a_bundle_with_two_messages_swapped_is_refused() {
    let t = three(4);
    for (i, j) in [(1, 2), (2, 3), (3, 5), (1, 4)] {
        let mut b = t.bundle_a();
        b.messages.swap(i, j);
        assert!(
            matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))),
            "swap {i} {j}: {:?}",
            t.verify(&b)
        );
    }
    // The opening swapped with a Data: the bundle no longer opens.
    let mut b = t.bundle_a();
    b.messages.swap(0, 1);
    assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_bundle_with_one_message_removed_is_refused() {
    let t = three(5);
    let n = t.bundle_a().messages.len();
    for k in 0..n {
        let mut b = t.bundle_a();
        b.messages.remove(k);
        assert!(
            matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))),
            "removed {k}: {:?}",
            t.verify(&b)
        );
    }
    // Every message after the opening removed.
    let mut b = t.bundle_a();
    b.messages.truncate(1);
    assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_bundle_with_a_message_of_another_subtransaction_inserted_is_refused() {
    let t = three(6);
    // Sub B's messages: p1's Data (p1 is in sub A's pair too), p2's Data
    // (not in it) and p1's End, each inserted or substituted anywhere.
    for foreign in &t.b1.transcript[1..] {
        for k in 1..=t.a0.transcript.len() {
            let mut b = t.bundle_a();
            b.messages.insert(k, foreign.clone());
            assert!(
                matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))),
                "inserted at {k}: {:?}",
                t.verify(&b)
            );
        }
        for k in 1..t.a0.transcript.len() {
            let mut b = t.bundle_a();
            b.messages[k] = foreign.clone();
            assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));
        }
    }
    // Sub B's opening (the Join) in place of sub A's Begin.
    let mut b = t.bundle_a();
    b.messages[0] = t.b1.transcript[0].clone();
    assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_bundle_with_a_tampered_message_is_refused() {
    let t = three(7);
    // A byte of a Data's sealed payload changed: its sender's signature
    // no longer holds.
    for k in 1..t.a0.transcript.len() - 1 {
        let mut b = t.bundle_a();
        let payload = cose::peek_unverified::<Data>(&b.messages[k])
            .unwrap()
            .payload;
        let at = b.messages[k]
            .windows(payload.len())
            .position(|w| w == payload)
            .unwrap();
        b.messages[k][at + payload.len() / 2] ^= 1;
        assert_eq!(t.verify(&b).unwrap_err(), Error::Crypto, "message {k}");
    }
    // The last byte of each message's signature, opening and End included.
    for k in 0..t.a0.transcript.len() {
        let mut b = t.bundle_a();
        *b.messages[k].last_mut().unwrap() ^= 0x80;
        assert_eq!(t.verify(&b).unwrap_err(), Error::Crypto, "message {k}");
    }
}

#[test]
fn a_bundle_with_a_tampered_outcome_is_refused() {
    let t = three(8);
    let o: Outcome = decode(&t.a0.outcome_bytes).unwrap();
    let mut leaf: OutcomeLeaf = decode(&o.leaf).unwrap();

    // The leaf altered to record another context for sub A.
    let pair = t.a0.pair;
    for s in leaf.subs.iter_mut().filter(|(p, _)| *p == pair) {
        s.1 = Some(Context([7; 32]));
    }
    let forged = Outcome {
        leaf: encode(&leaf),
        ..o.clone()
    };
    let mut b = t.bundle_a();
    b.outcome = encode(&forged);
    assert_eq!(t.verify(&b).unwrap_err(), Error::Crypto);

    // The inclusion path or the index altered.
    let mut bad_path = o.clone();
    bad_path.index += 1;
    b.outcome = encode(&bad_path);
    assert_eq!(t.verify(&b).unwrap_err(), Error::Crypto);

    // The tree head's signature altered.
    let mut bad_head = o.clone();
    *bad_head.head.last_mut().unwrap() ^= 1;
    b.outcome = encode(&bad_head);
    assert_eq!(t.verify(&b).unwrap_err(), Error::Crypto);

    // Not an Outcome at all.
    b.outcome = vec![0x80];
    assert!(matches!(t.verify(&b), Err(Error::Decode(_))));

    // A bundle whose invitee certificate is another party's.
    let mut b = t.bundle_a();
    b.invitee_cert = t.w.parties[2].cert.clone();
    assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));
}

/// An Outcome the pinned CA signed for `leaf` alone: a tree of one leaf
/// (a CA that logs what it likes still signs what it logs).
fn ca_signed_outcome(w: &World, leaf: &OutcomeLeaf) -> Vec<u8> {
    let leaf = encode(leaf);
    let head = TreeHead {
        ca: w.ca.verifying_key().key_id(),
        size: 1,
        root: leaf_hash(&leaf),
        timestamp: NOW,
    };
    encode(&Outcome {
        leaf,
        index: 0,
        path: vec![],
        head: cose::sign(&w.ca_key, &head),
    })
}

#[test]
fn a_bundle_whose_messages_do_not_chain_to_the_committed_context_is_refused() {
    let t = three(14);
    let leaf = t.a0.outcome.leaf.clone();
    // The signing is genuine: the CA's own leaf, re-logged alone, passes.
    let mut b = t.bundle_a();
    b.outcome = ca_signed_outcome(&t.w, &leaf);
    t.verify(&b).unwrap();

    // The CA records another context for sub A than its messages chain to.
    let mut other = leaf.clone();
    for s in other.subs.iter_mut().filter(|(p, _)| *p == t.a0.pair) {
        s.1 = Some(Context([7; 32]));
    }
    b.outcome = ca_signed_outcome(&t.w, &other);
    assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));

    // The CA records no subtransaction of this pair.
    let mut without = leaf.clone();
    without.subs.retain(|(p, _)| *p != t.a0.pair);
    b.outcome = ca_signed_outcome(&t.w, &without);
    assert!(matches!(t.verify(&b), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn an_aborted_transactions_bundle_is_refused() {
    // A second transaction under the same CA, p0 with p2, that p2 aborts
    // after a whole conversation.
    let mut t = three(9);
    let (mut a, mut b) = t.w.begin(0, 2).unwrap();
    t.w.converse((0, &mut a), (2, &mut b), 2).unwrap();
    let invitee_cert = a.peer_cert().to_vec();
    let (wa, _) = t.w.decide(0, a, true).unwrap();
    t.w.decide(2, b, false).unwrap();
    let d = t.w.outcome(0, &wa).unwrap();
    assert!(!d.committed());
    // `prove` refuses to bundle it...
    assert!(matches!(prove(&d, &invitee_cert), Err(Error::Refused(_))));
    // ...and an arbiter refuses a bundle of it made by hand.
    let b = ProofBundle {
        messages: d.transcript.clone(),
        invitee_cert,
        outcome: d.outcome_bytes.clone(),
    };
    assert!(matches!(t.verify(&b), Err(Error::Refused(_))));

    // The aborted outcome in place of a committed bundle's: of another
    // transaction.
    let mut c = t.bundle_a();
    c.outcome = d.outcome_bytes.clone();
    assert!(matches!(t.verify(&c), Err(Error::PeerMisbehaved(_))));
}

#[test]
fn a_bundle_whose_outcome_comes_from_another_ca_is_refused() {
    let t = three(11);
    let other = three(12);
    // The arbiter pins another CA than the one that decided.
    let bytes = prove(&t.a0, &t.a_invitee_cert).unwrap();
    assert_eq!(
        verify_bundle(&bytes, &t.trust(), &other.ca(), NOW).unwrap_err(),
        Error::Crypto
    );
    // Another CA's (valid, committed) outcome in place of the pinned CA's.
    let mut b = t.bundle_a();
    b.outcome = other.a0.outcome_bytes.clone();
    assert_eq!(t.verify(&b).unwrap_err(), Error::Crypto);
}

// ---- pycose ---------------------------------------------------------------

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundle_pycose.py")
}

/// python3 with pycose, or a panic that says what to install: this test
/// fails rather than skips (CI installs pycose==1.1.0 and cbor2).
fn require_pycose() {
    let probe = Command::new("python3")
        .args(["-c", "import pycose, cbor2"])
        .output();
    match probe {
        Err(e) => panic!("cannot run python3: {e}; install Python 3 with pycose and cbor2"),
        Ok(o) if !o.status.success() => panic!(
            "python3 cannot import pycose and cbor2 ({}); install them with \
             `pip install pycose==1.1.0 cbor2`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("agora-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every COSE_Sign1 of a verified bundle with its signer's raw key: the
/// messages, then the CA's tree head.
fn sign1_items(
    label: &str,
    bytes: &[u8],
    v: &VerifiedBundle,
    ca: &VerifyingKey,
) -> Vec<serde_json::Value> {
    let b: ProofBundle = decode(bytes).unwrap();
    let key_of = |uid| {
        if uid == v.initiator().uid {
            v.initiator().key
        } else {
            assert_eq!(uid, v.invitee().uid);
            v.invitee().key
        }
    };
    let mut items: Vec<serde_json::Value> = b
        .messages
        .iter()
        .zip(v.messages())
        .map(|(m, listed)| {
            serde_json::json!({
                "what": format!("{label} message {} ({})", listed.index, listed.tag),
                "cose": hex::encode(m),
                "key": hex::encode(key_of(listed.sender).to_bytes()),
            })
        })
        .collect();
    items.push(serde_json::json!({
        "what": format!("{label} tree head"),
        "cose": hex::encode(&v.outcome().head_bytes),
        "key": hex::encode(ca.to_bytes()),
    }));
    items
}

#[test]
fn every_signature_in_a_proof_bundle_verifies_with_pycose() {
    require_pycose();
    let t = three(13);
    let mut items = Vec::new();
    for (label, d, cert) in [
        ("sub A", &t.a0, &t.a_invitee_cert),
        ("sub B", &t.b1, &t.b_invitee_cert),
    ] {
        let bytes = prove(d, cert).unwrap();
        let v = verify_bundle(&bytes, &t.trust(), &t.ca(), NOW).unwrap();
        items.extend(sign1_items(label, &bytes, &v, &t.ca()));
    }
    // 6 messages of sub A, 4 of sub B, a tree head each.
    assert_eq!(items.len(), 12);
    let dir = TempDir::new("stp-bundle-pycose");
    let json = dir.0.join("bundle.json");
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(&serde_json::json!({ "items": items })).unwrap(),
    )
    .unwrap();

    let script = script();
    assert!(script.is_file(), "missing {}", script.display());
    let out = Command::new("python3")
        .arg(&script)
        .arg(&json)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "bundle_pycose.py failed ({:?}):\n{stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("12 of 12 signatures verified"),
        "pycose did not check every item: {stdout}"
    );
}
