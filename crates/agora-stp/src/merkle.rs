//! RFC 9162 (Certificate Transparency version 2.0) Merkle trees: the hashing
//! of the commit authority's transparency log of outcomes, and the two proofs
//! a reader of that log checks.
//!
//! - Hashing (RFC 9162 section 2.1.1): a leaf is `SHA-256(0x00 || data)`, an
//!   interior node `SHA-256(0x01 || left || right)`, and the tree of no
//!   leaves hashes to `SHA-256("")`. For `n > 1` leaves, with `k` the largest
//!   power of two smaller than `n`,
//!   `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`.
//! - Inclusion proofs (section 2.1.3): [`MerkleTree::inclusion_proof`] builds
//!   `PATH(m, D[n])` (2.1.3.1), [`verify_inclusion`] runs the verification
//!   algorithm of 2.1.3.2 step by step.
//! - Consistency proofs (section 2.1.4): [`MerkleTree::consistency_proof`]
//!   builds `PROOF(m, D[n])` (2.1.4.1), [`verify_consistency`] runs the
//!   verification algorithm of 2.1.4.2 step by step.
//!
//! The 0x00 / 0x01 prefixes keep a leaf from ever being taken for an interior
//! node (second-preimage resistance). An inclusion proof shows that a leaf is
//! in the tree whose root the caller holds; it does not by itself pin the tree
//! size (index 0 has the same path in trees of 3 and 4 leaves): the size
//! comes from the signed tree head, next to the root.
//!
//! Errors say who is at fault: a proof that does not verify is
//! [`Error::Crypto`] (no detail); a proof of more than [`MAX_PROOF_LEN`]
//! hashes is refused as [`DecodeError::TooLarge`] before any hashing; asking
//! this tree for a leaf, size or proof it does not hold is
//! [`Error::ApiMisuse`].

use agora_core::crypto::sha256;
use agora_core::{DecodeError, Error};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The most hashes a proof may hold; a longer one is refused.
///
/// Why 64: an inclusion path has one hash per level of the tree, and a tree
/// with a `u64` size has at most 64 levels. A consistency proof can hold one
/// hash more (its seed) only towards a tree of more than 2^63 leaves, which
/// no log reaches (this in-memory tree would need more than 2^68 bytes).
pub const MAX_PROOF_LEN: usize = 64;

/// Domain separation prefix of a leaf hash (RFC 9162 section 2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain separation prefix of an interior node hash (RFC 9162 section 2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// The hash of a leaf, RFC 9162 section 2.1.1:
/// `MTH({d(0)}) = SHA-256(0x00 || d(0))`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut input = Vec::with_capacity(1 + data.len());
    input.push(LEAF_PREFIX);
    input.extend_from_slice(data);
    sha256(&input)
}

/// The hash of an interior node, RFC 9162 section 2.1.1:
/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0u8; 1 + 2 * 32];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    sha256(&input)
}

/// The root of the tree of no leaves, RFC 9162 section 2.1.1:
/// `MTH({}) = SHA-256()`, the hash of the empty string.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The largest power of two smaller than `n` (the `k` of RFC 9162 section
/// 2.1.1). `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "a tree of one leaf or none has no split");
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only RFC 9162 Merkle tree held in memory.
///
/// It keeps every leaf hash and the hash of every complete, aligned subtree:
/// level `k` holds, in order, the hashes of the subtrees of leaves
/// `[i * 2^k, (i + 1) * 2^k)` that are complete. About `2n` hashes in all.
/// With them:
///
/// - [`push`](Self::push) is amortised O(1) hashes (one per subtree it
///   completes: 1 on average);
/// - the root of any size `<= len` is O(log n) hashes (one per set bit of the
///   size), and an inclusion or consistency proof O(log^2 n): one such
///   subtree root per proof hash.
#[derive(Clone, Debug, Default)]
pub struct MerkleTree {
    /// `levels[k][i]`: the hash of leaves `[i * 2^k, (i + 1) * 2^k)`;
    /// `levels[0]` are the leaf hashes. Invariant: every complete, aligned
    /// subtree of the leaves is here, and nothing else.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree (its root is [`empty_root`]).
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// A tree of these leaf hashes, in order.
    pub fn from_leaf_hashes(hashes: impl IntoIterator<Item = Hash>) -> MerkleTree {
        let mut tree = MerkleTree::new();
        for hash in hashes {
            tree.push_leaf_hash(hash);
        }
        tree
    }

    /// Appends a leaf by its hash (see [`leaf_hash`]) and returns its index.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        let index = self.len();
        let mut carry = hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(carry);
            // An odd count: the new hash is a left child, whose sibling is
            // still to come. An even one: it completes its parent.
            if !row.len().is_multiple_of(2) {
                break;
            }
            let [.., left, right] = row.as_slice() else {
                break;
            };
            carry = node_hash(left, right);
            level += 1;
        }
        index
    }

    /// Appends a leaf holding `data` (hashed with [`leaf_hash`]) and returns
    /// its index.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(data))
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash of leaf `index`, if the tree has that many leaves.
    pub fn leaf_hash_at(&self, index: u64) -> Option<Hash> {
        self.complete_subtree(0, index).ok()
    }

    /// The root of the whole tree, `MTH(D[len])` (RFC 9162 section 2.1.1).
    pub fn root(&self) -> Hash {
        match self.root_at(self.len()) {
            Ok(root) => root,
            Err(_) => unreachable!("the tree's own size is always in range"),
        }
    }

    /// The root the tree had when it held its first `size` leaves,
    /// `MTH(D[0:size])` (RFC 9162 section 2.1.1); [`empty_root`] for 0.
    ///
    /// [`Error::ApiMisuse`] if `size > len`.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        if size > self.len() {
            return Err(Error::ApiMisuse("merkle: root of a size beyond the tree"));
        }
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves: `PATH(index, D[size])` of RFC 9162 section 2.1.3.1, deepest
    /// hash first.
    ///
    /// [`Error::ApiMisuse`] unless `index < size <= len`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        if size > self.len() {
            return Err(Error::ApiMisuse("merkle: proof for a size beyond the tree"));
        }
        if index >= size {
            return Err(Error::ApiMisuse("merkle: leaf index not below the size"));
        }
        // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])      if m < k
        //               = PATH(m - k, D[k:n]) : MTH(D[0:k])  if m >= k
        // Walked from the root down, so the hashes come out last first.
        let (mut start, mut n, mut m) = (0u64, size, index);
        let mut path = Vec::new();
        while n > 1 {
            let k = split_point(n);
            if m < k {
                path.push(self.subtree(start + k, n - k)?);
                n = k;
            } else {
                path.push(self.subtree(start, k)?);
                start += k;
                m -= k;
                n -= k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The consistency proof between the tree of the first `old_size`
    /// leaves and that of the first `new_size`: `PROOF(old_size,
    /// D[new_size])` of RFC 9162 section 2.1.4.1, deepest hash first. Empty
    /// when the sizes are equal (`SUBPROOF(m, D[m], true) = {}`).
    ///
    /// [`Error::ApiMisuse`] unless `0 < old_size <= new_size <= len` (the
    /// RFC defines no proof from the empty tree: every tree extends it).
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, Error> {
        if new_size > self.len() {
            return Err(Error::ApiMisuse("merkle: proof for a size beyond the tree"));
        }
        if old_size == 0 || old_size > new_size {
            return Err(Error::ApiMisuse(
                "merkle: consistency needs 0 < old size <= new size",
            ));
        }
        // SUBPROOF(m, D[m], true)  = {}
        // SUBPROOF(m, D[m], false) = {MTH(D[m])}
        // SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          if m <= k
        //                      = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  if m > k
        // Walked from the root down, so the hashes come out last first.
        let (mut start, mut n, mut m) = (0u64, new_size, old_size);
        let mut whole_old_tree = true; // the `b` of SUBPROOF
        let mut proof = Vec::new();
        while m != n {
            let k = split_point(n);
            if m <= k {
                proof.push(self.subtree(start + k, n - k)?);
                n = k;
            } else {
                proof.push(self.subtree(start, k)?);
                start += k;
                m -= k;
                n -= k;
                whole_old_tree = false;
            }
        }
        if !whole_old_tree {
            proof.push(self.subtree(start, n)?);
        }
        proof.reverse();
        Ok(proof)
    }

    /// The cached hash of the complete subtree of leaves
    /// `[index * 2^level, (index + 1) * 2^level)`.
    fn complete_subtree(&self, level: u32, index: u64) -> Result<Hash, Error> {
        let missing = Error::ApiMisuse("merkle: subtree beyond the tree");
        let row = usize::try_from(level)
            .ok()
            .and_then(|level| self.levels.get(level))
            .ok_or(missing.clone())?;
        usize::try_from(index)
            .ok()
            .and_then(|index| row.get(index))
            .copied()
            .ok_or(missing)
    }

    /// `MTH(D[start:start + n])`, for a range the RFC's recursion visits:
    /// `n >= 1`, and `start` a multiple of the smallest power of two not
    /// below `n`. Such a range splits into complete, aligned subtrees, one
    /// per set bit of `n`, largest first, and its hash is
    /// `node(P1, node(P2, ... node(Pj-1, Pj)))`: folded here from the right.
    fn subtree(&self, start: u64, n: u64) -> Result<Hash, Error> {
        let mut end = start
            .checked_add(n)
            .filter(|&end| n > 0 && end <= self.len())
            .ok_or(Error::ApiMisuse("merkle: subtree beyond the tree"))?;
        let mut rest = n;
        let mut acc: Option<Hash> = None;
        while rest != 0 {
            let level = rest.trailing_zeros();
            let piece_len = 1u64 << level;
            let piece_start = end - piece_len;
            if !piece_start.is_multiple_of(piece_len) {
                return Err(Error::ApiMisuse("merkle: unaligned subtree"));
            }
            let piece = self.complete_subtree(level, piece_start >> level)?;
            acc = Some(match acc {
                None => piece,
                Some(right) => node_hash(&piece, &right),
            });
            end = piece_start;
            rest -= piece_len;
        }
        acc.ok_or(Error::ApiMisuse("merkle: empty subtree"))
    }
}

/// Refuses a proof over [`MAX_PROOF_LEN`] hashes before any work on it.
fn check_proof_len(path: &[Hash]) -> Result<(), Error> {
    if path.len() > MAX_PROOF_LEN {
        return Err(Error::Decode(DecodeError::TooLarge {
            what: "merkle proof",
            limit: MAX_PROOF_LEN,
        }));
    }
    Ok(())
}

/// Right-shifts `f_n` and `s_n` equally until `LSB(f_n)` is set or `f_n` is
/// 0 (RFC 9162 sections 2.1.3.2 and 2.1.4.2, step "If LSB(fn) is not
/// set...").
fn shift_until_odd_or_zero(f_n: &mut u64, s_n: &mut u64) {
    while *f_n != 0 && *f_n & 1 == 0 {
        *f_n >>= 1;
        *s_n >>= 1;
    }
}

/// Verifies that the leaf of hash `leaf_hash` is at `index` in the tree of
/// `size` leaves whose root is `root`, given the inclusion path `path`: the
/// algorithm of RFC 9162 section 2.1.3.2, step by step.
///
/// [`Error::Crypto`] if it does not verify (among others: `index >= size`,
/// a path too short, or one with hashes left over); [`DecodeError::TooLarge`]
/// for a path of more than [`MAX_PROOF_LEN`] hashes.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    check_proof_len(path)?;
    // 1. If leaf_index is greater than or equal to tree_size, fail.
    if index >= size {
        return Err(Error::Crypto);
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let mut f_n = index;
    let mut s_n = size - 1;
    // 3. Set r to hash.
    let mut r = *leaf_hash;
    // 4. For each value p in the inclusion_path array:
    for p in path {
        // If sn is 0, then stop the iteration and fail.
        if s_n == 0 {
            return Err(Error::Crypto);
        }
        if f_n & 1 == 1 || f_n == s_n {
            // Set r to HASH(0x01 || p || r); if LSB(fn) is not set,
            // right-shift fn and sn until LSB(fn) is set or fn is 0.
            r = node_hash(p, &r);
            shift_until_odd_or_zero(&mut f_n, &mut s_n);
        } else {
            // Set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. Succeed only if sn is 0 and r equals root_hash.
    if s_n == 0 && r == *root {
        Ok(())
    } else {
        Err(Error::Crypto)
    }
}

/// Verifies that the tree of `new_size` leaves and root `new_root` extends
/// the tree of `old_size` leaves and root `old_root`, given the consistency
/// proof `path`: the algorithm of RFC 9162 section 2.1.4.2, step by step, for
/// `0 < old_size < new_size`.
///
/// The RFC's algorithm covers only `0 < first < second`; the other cases are
/// decided here as follows (any other answer is [`Error::Crypto`]):
///
/// - `old_size > new_size`: never consistent (a log does not shrink).
/// - `old_size == new_size`: consistent iff the path is empty and the two
///   roots are equal (the proof `SUBPROOF(m, D[m], true)` is empty).
/// - `old_size == 0`: every tree extends the empty tree, with an empty proof;
///   consistent iff the path is empty and `old_root` is [`empty_root`], the
///   only root a tree of no leaves has. (This is stricter than ignoring the
///   old root: a caller that holds another root for size 0 is confused.)
///
/// [`DecodeError::TooLarge`] for a path of more than [`MAX_PROOF_LEN`]
/// hashes.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), Error> {
    check_proof_len(path)?;
    if old_size > new_size {
        return Err(Error::Crypto);
    }
    if old_size == 0 && *old_root != empty_root() {
        return Err(Error::Crypto);
    }
    if old_size == new_size {
        return if path.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(Error::Crypto)
        };
    }
    if old_size == 0 {
        return if path.is_empty() {
            Ok(())
        } else {
            Err(Error::Crypto)
        };
    }
    // 1. If consistency_path is an empty array, fail.
    let Some((first, rest)) = path.split_first() else {
        return Err(Error::Crypto);
    };
    // 2. If first is an exact power of 2, prepend first_hash to the array:
    //    the seed is first_hash and every hash of the path follows it.
    //    Otherwise the seed is the path's first hash.
    let (seed, following) = if old_size.is_power_of_two() {
        (old_root, path)
    } else {
        (first, rest)
    };
    // 3. Set fn to first - 1 and sn to second - 1.
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    // 4. If LSB(fn) is set, right-shift fn and sn until LSB(fn) is not set.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. Set both fr and sr to the first value of the array.
    let mut fr = *seed;
    let mut sr = *seed;
    // 6. For each subsequent value c in the array:
    for c in following {
        // If sn is 0, then stop the iteration and fail.
        if s_n == 0 {
            return Err(Error::Crypto);
        }
        if f_n & 1 == 1 || f_n == s_n {
            // fr = HASH(0x01 || c || fr), sr = HASH(0x01 || c || sr); if
            // LSB(fn) is not set, right-shift fn and sn until LSB(fn) is
            // set or fn is 0.
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            shift_until_odd_or_zero(&mut f_n, &mut s_n);
        } else {
            // sr = HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7. Succeed only if fr equals first_hash, sr equals second_hash and sn
    //    is 0.
    if fr == *old_root && sr == *new_root && s_n == 0 {
        Ok(())
    } else {
        Err(Error::Crypto)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure is a panic with its line
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(hex: &str) -> Hash {
        assert_eq!(hex.len(), 64, "a hash is 32 bytes: {hex}");
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn hs(hexes: &[&str]) -> Vec<Hash> {
        hexes.iter().map(|x| h(x)).collect()
    }

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    // The reference tree of RFC 6962 implementations: the eight leaves and
    // the hashes of `testonly/constants.go` and `proof/verify_test.go` in
    // github.com/transparency-dev/merkle (formerly in google/trillian and
    // google/certificate-transparency-go).
    const LEAF_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// `LEVELS[k][i]`: the hash of leaves `[i * 2^k, (i + 1) * 2^k)`.
    const LEVELS: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// `ROOTS[n]`: the root of the first `n` reference leaves.
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// (index, size, path), 0-based indices: `proof/verify_test.go`
    /// `inclusionProofs` (which counts leaves from 1) and
    /// `testonly/reference_test.go` `TestRefInclusionProof`.
    const INCLUSION: [(u64, u64, &[&str]); 7] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            0,
            2,
            &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
        ),
        (
            1,
            2,
            &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
        ),
    ];

    /// (old size, new size, proof): `proof/verify_test.go`
    /// `consistencyProofs`.
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    /// Roots of larger trees whose leaf `i` holds the two bytes
    /// `[i & 0xff, (i >> 8) & 0xff]`: `compact/range_test.go`
    /// `TestGetRootHashGolden` (there in base64).
    const GOLDEN_ROOTS: [(u64, &str); 11] = [
        (
            10,
            "56358c3d260db42b8236517f44b9d0cba1dcc1293a0888a97f19be85eb6d03ee",
        ),
        (
            15,
            "8f84ae9589a8705bb175eca9d76c5708880ae8f7a405cc730088f8cdb4333442",
        ),
        (
            16,
            "73ee1473a04230e65ffefdcd64ad64a935097be6c1a05b4e84ff8fdd26b22911",
        ),
        (
            100,
            "75487d8581fcf29d023281e476bd700b6b336e170b01739e8d6a48348a282946",
        ),
        (
            255,
            "4a676cb8a52a8a8777457da3c85d8ce899db744e10b93c308a97c0a30238fe2d",
        ),
        (
            256,
            "a85234b7fb59d4c74e620c8fa4fcc7162655c3cea4a12717cbdab7154e5c6ac0",
        ),
        (
            1000,
            "457ae06fcc47779e58e3c15b7e8b49c026d5f362b1db62d97c46e604602fc254",
        ),
        (
            4095,
            "71644575084f7239fd5b205713faf57f4e1e8f1226e65be0e340c4a510554b4c",
        ),
        (
            4096,
            "eae53fa617c78359ff1a4b184fa4cef5a37c11ab8c0822519777482b41c3b363",
        ),
        (
            10000,
            "55971abfae45f61687551937c2b7b66b116805744d79487fd5df5de4541fc488",
        ),
        (
            65535,
            "88fb9560984fe92104e20505a7ca9b69f776ad8bfd61308362a0310a3f0774b3",
        ),
    ];

    /// (tree size, level, index, hash): the right-border subtrees
    /// `MTH(D[index * 2^level : min(size, (index + 1) * 2^level)])` of the
    /// same test, for the golden trees of 100, 255 and 1000 leaves.
    const GOLDEN_BORDER: [(u64, u32, u64, &str); 13] = [
        (
            100,
            6,
            1,
            "fcae48ddb43a5b3fdb7958bd2052a2cd9d3bdd6a88f241aab2d7646e631c4d72",
        ),
        (
            255,
            2,
            63,
            "12986b1eb014d84f87eb9096d68d92c2225503574dada81586c32c3a4c81759e",
        ),
        (
            255,
            3,
            31,
            "7f07a7f5e18d28e746602ecbd464b030a065ca320864196c2959263c6b6c6446",
        ),
        (
            255,
            4,
            15,
            "22ae5b960e5f765f77a9b114cc10448863283fbcf2cdbc1fd7826e07960189d3",
        ),
        (
            255,
            5,
            7,
            "0fab3e827efdc0db2099dbc1bf47d52180a8ba0b14f8f51276d2c6ad61a6c8ee",
        ),
        (
            255,
            6,
            3,
            "b304aea33a04d84ee24d5f5c9cd19c9e36cb11e0eafb97a9da1449b88d294ed2",
        ),
        (
            255,
            7,
            1,
            "c6fd51719dc9a50bac52396c190cec57d916b884e8dda2cda44b0aca66c585a9",
        ),
        (
            255,
            8,
            0,
            "4a676cb8a52a8a8777457da3c85d8ce899db744e10b93c308a97c0a30238fe2d",
        ),
        (
            1000,
            6,
            15,
            "0816e237f95ef82a593711260952207d04a5fd94daa58c543ac74a4e48958ed7",
        ),
        (
            1000,
            7,
            7,
            "9e97c278e7659542592cb45bbc493197063b7a74baa5194284a5532631dc7af2",
        ),
        (
            1000,
            8,
            3,
            "e4c5431c85a12c4ae470b81c7929f16563931b4e109612249b769410e40ba56c",
        ),
        (
            1000,
            9,
            1,
            "e84a0dd9285e325e68037ab2997c352ed729d64bbf20d53eac1a847b6fa32232",
        ),
        (
            1000,
            10,
            0,
            "457ae06fcc47779e58e3c15b7e8b49c026d5f362b1db62d97c46e604602fc254",
        ),
    ];

    fn reference_tree() -> MerkleTree {
        let mut tree = MerkleTree::new();
        for input in LEAF_INPUTS {
            tree.push(&bytes(input));
        }
        tree
    }

    fn golden_tree(size: u64) -> MerkleTree {
        MerkleTree::from_leaf_hashes((0..size).map(|i| leaf_hash(&[i as u8, (i >> 8) as u8])))
    }

    // ---- The RFC's definitions, written out naively (O(n) per call). ----

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[n]), RFC 9162 section 2.1.1.
    fn naive_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&naive_mth(&d[..k]), &naive_mth(&d[k..]))
            }
        }
    }

    /// PATH(m, D[n]), RFC 9162 section 2.1.3.1.
    fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len());
        let (mut path, sibling) = if m < k {
            (naive_path(m, &d[..k]), naive_mth(&d[k..]))
        } else {
            (naive_path(m - k, &d[k..]), naive_mth(&d[..k]))
        };
        path.push(sibling);
        path
    }

    /// SUBPROOF(m, D[n], b), RFC 9162 section 2.1.4.1.
    fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { Vec::new() } else { vec![naive_mth(d)] };
        }
        let k = split(d.len());
        let (mut proof, sibling) = if m <= k {
            (naive_subproof(m, &d[..k], b), naive_mth(&d[k..]))
        } else {
            (naive_subproof(m - k, &d[k..], false), naive_mth(&d[..k]))
        };
        proof.push(sibling);
        proof
    }

    // ---- Reference vectors. ----

    #[test]
    fn hashes_match_the_rfc6962_hasher_vectors() {
        assert_eq!(
            empty_root(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(
            leaf_hash(b""),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            leaf_hash(b"L123456"),
            h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
        assert_eq!(MerkleTree::new().root(), empty_root());
    }

    #[test]
    fn reference_tree_has_the_published_leaf_node_and_root_hashes() {
        let tree = reference_tree();
        assert_eq!(tree.len(), 8);
        for (level, row) in LEVELS.iter().enumerate() {
            assert_eq!(tree.levels[level], hs(row), "level {level}");
        }
        for (index, hash) in LEVELS[0].iter().enumerate() {
            assert_eq!(tree.leaf_hash_at(index as u64), Some(h(hash)));
        }
        assert_eq!(tree.leaf_hash_at(8), None);
        for (size, root) in ROOTS.iter().enumerate() {
            assert_eq!(tree.root_at(size as u64).unwrap(), h(root), "size {size}");
            // A tree that stopped at that size has the same root.
            let prefix = MerkleTree::from_leaf_hashes(hs(&LEVELS[0][..size]));
            assert_eq!(prefix.root(), h(root), "size {size}");
        }
        assert_eq!(tree.root(), h(ROOTS[8]));
    }

    #[test]
    fn reference_inclusion_proofs_are_built_and_verify() {
        let tree = reference_tree();
        for (index, size, path) in INCLUSION {
            let path = hs(path);
            assert_eq!(
                tree.inclusion_proof(index, size).unwrap(),
                path,
                "{index}/{size}"
            );
            let leaf = h(LEVELS[0][index as usize]);
            let root = h(ROOTS[size as usize]);
            verify_inclusion(&leaf, index, size, &path, &root).unwrap();
        }
    }

    #[test]
    fn reference_consistency_proofs_are_built_and_verify() {
        let tree = reference_tree();
        for (old, new, proof) in CONSISTENCY {
            let proof = hs(proof);
            assert_eq!(
                tree.consistency_proof(old, new).unwrap(),
                proof,
                "{old}->{new}"
            );
            let (old_root, new_root) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
        }
    }

    #[test]
    fn golden_roots_of_larger_trees() {
        let tree = golden_tree(65535);
        for (size, root) in GOLDEN_ROOTS {
            assert_eq!(tree.root_at(size).unwrap(), h(root), "size {size}");
        }
        assert_eq!(tree.root(), h(GOLDEN_ROOTS[10].1));
        for (size, level, index, hash) in GOLDEN_BORDER {
            let start = index << level;
            let n = (size - start).min(1 << level);
            assert_eq!(
                tree.subtree(start, n).unwrap(),
                h(hash),
                "{size}: {level}/{index}"
            );
        }
    }

    // ---- Named failure cases. ----

    /// The corruptions of `proof/verify_test.go`'s `corruptInclusionProof`,
    /// over every reference inclusion proof.
    #[test]
    fn corrupted_reference_inclusion_proofs_fail() {
        let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        for (index, size, path) in INCLUSION {
            let path = hs(path);
            let leaf = h(LEVELS[0][index as usize]);
            let root = h(ROOTS[size as usize]);
            let fails = |leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash| {
                verify_inclusion(leaf, index, size, path, root) == Err(Error::Crypto)
            };
            assert!(fails(&leaf, index.wrapping_sub(1), size, &path, &root));
            assert!(fails(&leaf, index + 1, size, &path, &root));
            assert!(fails(&leaf, index ^ 2, size, &path, &root));
            assert!(fails(&leaf, index, size * 2, &path, &root));
            assert!(fails(&leaf, index, size / 2, &path, &root));
            assert!(fails(&leaf_hash(b"WrongLeaf"), index, size, &path, &root));
            assert!(fails(&leaf, index, size, &path, &empty_root()));
            assert!(fails(&leaf, index, size, &path, &some_hash));
            for extra in [root, some_hash] {
                let mut longer = path.clone();
                longer.push(extra);
                assert!(fails(&leaf, index, size, &longer, &root));
                longer.pop();
                longer.insert(0, extra);
                assert!(fails(&leaf, index, size, &longer, &root));
            }
            for i in 0..path.len() {
                let mut wrong = path.clone();
                wrong[i][0] ^= 8;
                assert!(
                    fails(&leaf, index, size, &wrong, &root),
                    "{index}/{size} [{i}]"
                );
            }
            if let Some((_, shorter)) = path.split_last() {
                assert!(fails(&leaf, index, size, shorter, &root));
            }
            if path.len() > 1 {
                let mut inserted = path.clone();
                inserted.insert(1, some_hash);
                assert!(fails(&leaf, index, size, &inserted, &root));
            }
        }
    }

    /// The corruptions of `proof/verify_test.go`'s `corruptConsistencyProof`,
    /// over every non-empty reference consistency proof.
    #[test]
    fn corrupted_reference_consistency_proofs_fail() {
        let wrong_root = leaf_hash(b"WrongRoot");
        for (old, new, proof) in CONSISTENCY.into_iter().filter(|c| !c.2.is_empty()) {
            let proof = hs(proof);
            let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            let fails = |old: u64, new: u64, r1: &Hash, r2: &Hash, proof: &[Hash]| {
                verify_consistency(old, new, r1, r2, proof) == Err(Error::Crypto)
            };
            assert!(fails(old - 1, new, &r1, &r2, &proof));
            assert!(fails(old + 1, new, &r1, &r2, &proof));
            assert!(fails(old ^ 2, new, &r1, &r2, &proof));
            assert!(fails(old, new * 2, &r1, &r2, &proof));
            assert!(fails(old, new / 2, &r1, &r2, &proof));
            assert!(fails(old, new, &wrong_root, &r2, &proof));
            assert!(fails(old, new, &r1, &wrong_root, &proof));
            assert!(fails(old, new, &r2, &r1, &proof));
            assert!(fails(old, new, &r1, &r2, &[]));
            for extra in [r1, r2, proof[0]] {
                let mut longer = proof.clone();
                longer.push(extra);
                assert!(fails(old, new, &r1, &r2, &longer));
                longer.pop();
                longer.insert(0, extra);
                assert!(fails(old, new, &r1, &r2, &longer));
            }
            if let Some((_, shorter)) = proof.split_last() {
                assert!(fails(old, new, &r1, &r2, shorter));
            }
            for i in 0..proof.len() {
                let mut wrong = proof.clone();
                wrong[i][0] ^= 16;
                assert!(fails(old, new, &r1, &r2, &wrong), "{old}->{new} [{i}]");
            }
        }
    }

    /// `TestVerifyConsistency`'s edge cases, with this module's answer for
    /// the empty tree: its root must be `empty_root()`.
    #[test]
    fn consistency_edge_cases() {
        let (a, b) = (leaf_hash(b"don't care 1"), leaf_hash(b"don't care 2"));
        let e = empty_root();
        let ok = |old, new, r1: &Hash, r2: &Hash, proof: &[Hash]| {
            verify_consistency(old, new, r1, r2, proof).is_ok()
        };
        assert!(!ok(0, 0, &a, &b, &[]));
        assert!(!ok(1, 1, &a, &b, &[]));
        assert!(ok(0, 0, &e, &e, &[]));
        assert!(ok(0, 1, &e, &b, &[]));
        assert!(ok(1, 1, &b, &b, &[]));
        assert!(!ok(1, 0, &a, &b, &[]), "time travel to the past");
        assert!(!ok(2, 1, &a, &b, &[]), "time travel to the past");
        assert!(!ok(1, 2, &a, &b, &[]), "empty proof");
        assert!(!ok(0, 0, &e, &b, &[]), "roots differ");
        assert!(!ok(1, 1, &e, &b, &[]), "roots differ");
        assert!(!ok(0, 0, &e, &e, &[e]), "roots match, proof not empty");
        assert!(!ok(0, 1, &e, &e, &[e]), "roots match, proof not empty");
        assert!(!ok(1, 1, &e, &e, &[e]), "roots match, proof not empty");
        assert!(!ok(0, 1, &a, &b, &[]), "a tree of no leaves has one root");
    }

    #[test]
    fn inclusion_edge_cases() {
        let some = leaf_hash(b"data");
        // A one-leaf tree: the root is the leaf hash, the path is empty.
        verify_inclusion(&some, 0, 1, &[], &some).unwrap();
        for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1)] {
            assert_eq!(
                verify_inclusion(&some, index, size, &[], &some),
                Err(Error::Crypto)
            );
        }
        assert_eq!(
            verify_inclusion(&some, u64::MAX, u64::MAX, &[], &some),
            Err(Error::Crypto)
        );
    }

    /// RFC 9162 inclusion proofs do not commit to the tree size: leaf 0 has
    /// the same path in the trees of 3 and 4 leaves, so a path for size 3
    /// also "verifies" for size 4 against the size-3 root. The signed tree
    /// head, which pairs each root with its size, is what pins the size.
    #[test]
    fn an_inclusion_proof_does_not_pin_the_tree_size_the_tree_head_does() {
        let tree = reference_tree();
        let path = tree.inclusion_proof(0, 3).unwrap();
        let root3 = tree.root_at(3).unwrap();
        let leaf = tree.leaf_hash_at(0).unwrap();
        verify_inclusion(&leaf, 0, 3, &path, &root3).unwrap();
        verify_inclusion(&leaf, 0, 4, &path, &root3).unwrap();
        assert_eq!(
            verify_inclusion(&leaf, 0, 4, &path, &tree.root_at(4).unwrap()),
            Err(Error::Crypto)
        );
    }

    #[test]
    fn a_proof_over_the_length_limit_is_refused_before_hashing() {
        let long = vec![[0u8; 32]; MAX_PROOF_LEN + 1];
        let too_large = Error::Decode(DecodeError::TooLarge {
            what: "merkle proof",
            limit: MAX_PROOF_LEN,
        });
        let x = empty_root();
        assert_eq!(
            verify_inclusion(&x, 0, u64::MAX, &long, &x),
            Err(too_large.clone())
        );
        assert_eq!(
            verify_consistency(1, u64::MAX, &x, &x, &long),
            Err(too_large)
        );
        // At the limit the proof is looked at (and here fails on its hashes).
        let at_limit = &long[..MAX_PROOF_LEN];
        assert_eq!(
            verify_inclusion(&x, 0, u64::MAX, at_limit, &x),
            Err(Error::Crypto)
        );
    }

    #[test]
    fn out_of_range_requests_are_api_misuse() {
        let tree = reference_tree();
        let misuse = |r: Result<Vec<Hash>, Error>| matches!(r, Err(Error::ApiMisuse(_)));
        assert!(matches!(tree.root_at(9), Err(Error::ApiMisuse(_))));
        assert!(misuse(tree.inclusion_proof(0, 9)));
        assert!(misuse(tree.inclusion_proof(3, 3)));
        assert!(misuse(tree.inclusion_proof(0, 0)));
        assert!(misuse(tree.consistency_proof(0, 3)));
        assert!(misuse(tree.consistency_proof(4, 3)));
        assert!(misuse(tree.consistency_proof(3, 9)));
        assert!(misuse(MerkleTree::new().inclusion_proof(0, 0)));
        assert_eq!(tree.consistency_proof(8, 8).unwrap(), Vec::<Hash>::new());
        assert_eq!(MerkleTree::new().root_at(0).unwrap(), empty_root());
        assert!(MerkleTree::new().is_empty() && !tree.is_empty());
    }

    #[test]
    fn push_returns_consecutive_indices() {
        let mut tree = MerkleTree::new();
        for i in 0..100u64 {
            assert_eq!(tree.push(&i.to_be_bytes()), i);
            assert_eq!(tree.len(), i + 1);
        }
    }

    /// Every single-byte change of every proof hash, over all small trees.
    #[test]
    fn every_flipped_byte_of_every_small_proof_fails() {
        let tree = MerkleTree::from_leaf_hashes((0..20u64).map(|i| leaf_hash(&i.to_le_bytes())));
        for size in 1..=tree.len() {
            let root = tree.root_at(size).unwrap();
            for index in 0..size {
                let leaf = tree.leaf_hash_at(index).unwrap();
                let path = tree.inclusion_proof(index, size).unwrap();
                for i in 0..path.len() {
                    for byte in 0..32 {
                        let mut wrong = path.clone();
                        wrong[i][byte] ^= 0x01;
                        assert!(verify_inclusion(&leaf, index, size, &wrong, &root).is_err());
                    }
                }
            }
            for old in 1..=size {
                let old_root = tree.root_at(old).unwrap();
                let proof = tree.consistency_proof(old, size).unwrap();
                for i in 0..proof.len() {
                    for byte in 0..32 {
                        let mut wrong = proof.clone();
                        wrong[i][byte] ^= 0x80;
                        assert!(verify_consistency(old, size, &old_root, &root, &wrong).is_err());
                    }
                }
            }
        }
    }

    // ---- Properties over random trees. ----

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Over a random tree of up to 200 leaves: roots agree with the naive
        /// MTH; every inclusion proof for every (index, size) and every
        /// consistency proof for every (old, new) is the naive PATH / PROOF,
        /// verifies against `root_at`, and fails once a byte of any of its
        /// hashes is flipped, or with another index or size.
        #[test]
        fn every_proof_of_a_random_tree_verifies_and_no_tampered_one_does(
            len in 1u64..=200,
            salt in any::<u64>(),
            pick in any::<usize>(),
        ) {
            let leaves: Vec<Hash> = (0..len)
                .map(|i| leaf_hash(&[salt.to_le_bytes(), i.to_le_bytes()].concat()))
                .collect();
            let mut pushed = MerkleTree::new();
            for leaf in &leaves {
                pushed.push_leaf_hash(*leaf);
            }
            let tree = MerkleTree::from_leaf_hashes(leaves.clone());
            prop_assert_eq!(&pushed.levels, &tree.levels);

            let roots: Vec<Hash> = (0..=len).map(|n| tree.root_at(n).unwrap()).collect();
            for (n, root) in roots.iter().enumerate() {
                prop_assert_eq!(*root, naive_mth(&leaves[..n]), "size {}", n);
            }
            prop_assert_eq!(tree.root(), roots[len as usize]);

            // A byte to flip in each hash of a proof: a different one for
            // each (case, proof, hash).
            let mut flips = pick;
            let mut flip = |path: &[Hash], i: usize| {
                flips = flips.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut wrong = path.to_vec();
                wrong[i][(flips >> 33) % 32] ^= 1 << ((flips >> 40) % 8);
                wrong
            };

            for size in 1..=len {
                let root = &roots[size as usize];
                for index in 0..size {
                    let leaf = &leaves[index as usize];
                    let path = tree.inclusion_proof(index, size).unwrap();
                    prop_assert!(path.len() <= MAX_PROOF_LEN);
                    if size <= 64 {
                        prop_assert_eq!(&path, &naive_path(index as usize, &leaves[..size as usize]));
                    }
                    prop_assert!(verify_inclusion(leaf, index, size, &path, root).is_ok());
                    for i in 0..path.len() {
                        let wrong = flip(&path, i);
                        prop_assert!(verify_inclusion(leaf, index, size, &wrong, root).is_err());
                    }
                    for other in [index ^ 1, index.wrapping_sub(1), index + 1, size] {
                        if other != index {
                            prop_assert!(verify_inclusion(leaf, other, size, &path, root).is_err());
                        }
                    }
                    prop_assert!(verify_inclusion(leaf, index, size * 2, &path, root).is_err());
                    if index < size / 2 {
                        prop_assert!(verify_inclusion(leaf, index, size / 2, &path, root).is_err());
                    }
                    if let Some((_, shorter)) = path.split_last() {
                        prop_assert!(verify_inclusion(leaf, index, size, shorter, root).is_err());
                    }
                }
            }

            for new in 1..=len {
                let new_root = &roots[new as usize];
                for old in 1..=new {
                    let old_root = &roots[old as usize];
                    let proof = tree.consistency_proof(old, new).unwrap();
                    prop_assert!(proof.len() <= MAX_PROOF_LEN);
                    if new <= 64 {
                        prop_assert_eq!(
                            &proof,
                            &naive_subproof(old as usize, &leaves[..new as usize], true)
                        );
                    }
                    prop_assert!(verify_consistency(old, new, old_root, new_root, &proof).is_ok());
                    for i in 0..proof.len() {
                        let wrong = flip(&proof, i);
                        prop_assert!(
                            verify_consistency(old, new, old_root, new_root, &wrong).is_err()
                        );
                    }
                    for other in [old - 1, old + 1] {
                        prop_assert!(
                            verify_consistency(other, new, old_root, new_root, &proof).is_err()
                        );
                    }
                    prop_assert!(
                        verify_consistency(old, new * 2, old_root, new_root, &proof).is_err()
                    );
                    if old < new {
                        prop_assert!(
                            verify_consistency(old, new, new_root, old_root, &proof).is_err()
                        );
                    }
                    if let Some((_, shorter)) = proof.split_last() {
                        prop_assert!(
                            verify_consistency(old, new, old_root, new_root, shorter).is_err()
                        );
                    }
                }
            }
        }
    }
}
