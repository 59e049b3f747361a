//! Cross-check of `agora_stp::merkle` against `rfc9162.py`, an RFC 9162
//! verifier written separately in Python from the RFC's text: the proofs this
//! crate builds must verify there, and tampered copies must not.
//!
//! Python 3 is a requirement of this test, not an option: without it the test
//! fails, so that a machine lacking it cannot pass the suite unchecked.

use agora_stp::merkle::{self, Hash, MerkleTree, MAX_PROOF_LEN};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The largest tree; the trees of every other size are its prefixes.
const LARGEST: u64 = 1025;

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn hexes(path: &[Hash]) -> Vec<String> {
    path.iter().map(hex).collect()
}

/// Flips one bit of one byte, chosen by `seed`, of one hash of `path`.
fn flip_a_byte(path: &[Hash], seed: u64) -> Vec<Hash> {
    let mut wrong = path.to_vec();
    let i = (seed % path.len() as u64) as usize;
    wrong[i][(seed.wrapping_mul(7) % 32) as usize] ^= 1 << (seed % 8);
    wrong
}

fn flip_a_root_byte(root: &Hash, seed: u64) -> Hash {
    let mut wrong = *root;
    wrong[(seed % 32) as usize] ^= 0x40;
    wrong
}

/// The leaf indices whose proofs are checked in a tree of `size` leaves:
/// all of them in small trees, a sample (both ends, the middle, around the
/// powers of two, and a stride) in large ones.
fn sample(size: u64) -> Vec<u64> {
    if size <= 70 {
        return (0..size).collect();
    }
    let mut picks: Vec<u64> = vec![0, 1, 2, 3, size / 2, size - 2, size - 1];
    for p in [64u64, 256, 512, 1024] {
        picks.extend([p - 1, p, p + 1]);
    }
    picks.extend((5..size).step_by(37));
    picks.retain(|&i| i < size);
    picks.sort_unstable();
    picks.dedup();
    picks
}

struct Cases {
    inclusion: Vec<Value>,
    consistency: Vec<Value>,
}

impl Cases {
    /// Adds an inclusion case, after checking that this crate's verifier
    /// gives the verdict the case expects (so that every `expect: false` is
    /// a proof that really must fail).
    fn inclusion(
        &mut self,
        leaf: &Hash,
        index: u64,
        size: u64,
        path: &[Hash],
        root: &Hash,
        expect: bool,
    ) {
        let rust = merkle::verify_inclusion(leaf, index, size, path, root).is_ok();
        assert_eq!(
            rust, expect,
            "agora_stp::merkle on inclusion {index}/{size}"
        );
        self.inclusion.push(json!({
            "leaf_hash": hex(leaf), "index": index, "size": size,
            "path": hexes(path), "root": hex(root), "expect": expect,
        }));
    }

    /// Adds a consistency case, checked with this crate's verifier first.
    fn consistency(
        &mut self,
        old: u64,
        new: u64,
        old_root: &Hash,
        new_root: &Hash,
        path: &[Hash],
        expect: bool,
    ) {
        let rust = merkle::verify_consistency(old, new, old_root, new_root, path).is_ok();
        assert_eq!(
            rust, expect,
            "agora_stp::merkle on consistency {old}->{new}"
        );
        self.consistency.push(json!({
            "old_size": old, "new_size": new, "old_root": hex(old_root),
            "new_root": hex(new_root), "path": hexes(path), "expect": expect,
        }));
    }

    fn document(&self) -> Value {
        json!({ "inclusion": self.inclusion, "consistency": self.consistency })
    }
}

/// Runs the Python verifier on `document`. Panics if python3 cannot be run.
fn run_python_verifier(document: &Value) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rfc9162.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is required by this test and could not be run: {e}"));
    let input = serde_json::to_vec(document).expect("JSON");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written from a thread: a verifier that answered before reading all its
    // input must not deadlock the test.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("python3 ran");
    writer
        .join()
        .expect("writer thread")
        .expect("input written to python3");
    output
}

#[test]
fn inclusion_and_consistency_proofs_verify_with_an_independent_python_rfc9162_verifier() {
    let leaves: Vec<Hash> = (0..LARGEST)
        .map(|i| merkle::leaf_hash(format!("outcome {i}").as_bytes()))
        .collect();
    let mut tree = MerkleTree::new();
    for leaf in &leaves {
        tree.push_leaf_hash(*leaf);
    }
    let sizes: Vec<u64> = (1..=70).chain([1000, LARGEST]).collect();
    let mut cases = Cases {
        inclusion: Vec::new(),
        consistency: Vec::new(),
    };

    for &size in &sizes {
        let root = tree.root_at(size).expect("size in range");
        // The tree that stopped at this size agrees with the prefix.
        let alone = MerkleTree::from_leaf_hashes(leaves[..size as usize].iter().copied());
        assert_eq!(alone.root(), root, "size {size}");

        for index in sample(size) {
            let leaf = tree.leaf_hash_at(index).expect("leaf in range");
            let path = tree.inclusion_proof(index, size).expect("proof in range");
            assert_eq!(
                alone.inclusion_proof(index, size).expect("proof in range"),
                path
            );
            cases.inclusion(&leaf, index, size, &path, &root, true);

            // A flipped byte (of the root when the path is empty).
            if path.is_empty() {
                cases.inclusion(
                    &leaf,
                    index,
                    size,
                    &path,
                    &flip_a_root_byte(&root, index),
                    false,
                );
            } else {
                cases.inclusion(
                    &leaf,
                    index,
                    size,
                    &flip_a_byte(&path, index + size),
                    &root,
                    false,
                );
            }
            // A wrong index (past the end for a tree of one leaf).
            let other = if index + 1 < size {
                index + 1
            } else if index > 0 {
                index - 1
            } else {
                1
            };
            cases.inclusion(&leaf, other, size, &path, &root, false);
            // A truncated path.
            if let Some((_, shorter)) = path.split_last() {
                cases.inclusion(&leaf, index, size, shorter, &root, false);
            }
        }
    }

    for &new in &sizes {
        let new_root = tree.root_at(new).expect("size in range");
        let mut olds: Vec<u64> = if new <= 70 {
            (1..=new).collect()
        } else {
            sample(new)
                .into_iter()
                .filter(|&old| old >= 1)
                .chain([new])
                .collect()
        };
        if new == LARGEST {
            olds.push(1000);
        }
        for old in olds {
            let old_root = tree.root_at(old).expect("size in range");
            let path = tree.consistency_proof(old, new).expect("proof in range");
            cases.consistency(old, new, &old_root, &new_root, &path, true);

            if path.is_empty() {
                let wrong = flip_a_root_byte(&new_root, old);
                cases.consistency(old, new, &old_root, &wrong, &path, false);
            } else {
                let wrong = flip_a_byte(&path, old + new);
                cases.consistency(old, new, &old_root, &new_root, &wrong, false);
            }
            // A wrong old size.
            let other = if old < new { old + 1 } else { old - 1 };
            cases.consistency(other, new, &old_root, &new_root, &path, false);
            if let Some((_, shorter)) = path.split_last() {
                cases.consistency(old, new, &old_root, &new_root, shorter, false);
            }
        }
    }

    // Edge cases: the empty tree, an index past the end, a proof too long.
    let root = tree.root_at(8).expect("size in range");
    let empty = merkle::empty_root();
    cases.consistency(0, 8, &empty, &root, &[], true);
    cases.consistency(0, 8, &root, &root, &[], false);
    cases.consistency(8, 0, &root, &empty, &[], false);
    let leaf = leaves[3];
    cases.inclusion(
        &leaf,
        8,
        8,
        &tree.inclusion_proof(7, 8).expect("in range"),
        &root,
        false,
    );
    let too_long = vec![leaf; MAX_PROOF_LEN + 1];
    cases.inclusion(&leaf, 3, u64::MAX, &too_long, &root, false);

    let (n_inclusion, n_consistency) = (cases.inclusion.len(), cases.consistency.len());
    let output = run_python_verifier(&cases.document());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python RFC 9162 verifier disagrees ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary = format!(
        "{n_inclusion} inclusion and {n_consistency} consistency proofs checked, 0 mismatches"
    );
    assert!(
        stdout.contains(&summary),
        "expected {summary:?}, got:\n{stdout}\n{stderr}"
    );

    // The harness itself: a verifier that accepted everything, or whose
    // verdicts were ignored, would pass the above. Claim one good proof bad
    // and one tampered proof good: the verifier must report both.
    let mut claims = cases.document();
    claims["inclusion"][0]["expect"] = json!(false);
    claims["inclusion"][1]["expect"] = json!(true);
    claims["consistency"] = json!([]);
    claims["inclusion"] = json!([
        claims["inclusion"][0].clone(),
        claims["inclusion"][1].clone()
    ]);
    let output = run_python_verifier(&claims);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.matches("MISMATCH inclusion").count(), 2, "{stdout}");
}
