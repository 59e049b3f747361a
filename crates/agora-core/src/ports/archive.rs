//! The evidence archive: an append-only, hash-chained log of the signed
//! messages a role received or sent (acceptances, receipts, bound CPOs,
//! bills, commit records), kept as proof for disputes (ARCHITECTURE 5, 8).
//!
//! Each entry carries the hash of the one before, so that changing, removing
//! or reordering a stored entry breaks the chain ([`verify_chain`]). Cutting
//! off the newest entries leaves a valid, shorter chain; that is detected by
//! comparing with a head remembered elsewhere ([`verify_against_head`]), for
//! instance one published, signed or sent to a counterparty.
//!
//! Entry hash (SHA-256), over a length-prefixed, domain-separated encoding so
//! that no two different entries share an encoding:
//!
//! ```text
//! hash = SHA-256( u64be(len(D)) || D                   D = "agora/archive/v1"
//!              || u64be(seq) || u64be(recorded_at)
//!              || u64be(len(kind)) || kind
//!              || u64be(len(payload)) || payload
//!              || prev_hash )                          32 bytes
//! ```
//!
//! Fixed-width fields need no prefix. The genesis entry (seq 1) has
//! `prev_hash` = 32 zero bytes ([`GENESIS_PREV_HASH`]).

use crate::crypto::{ct_eq, Sha256};
use crate::ports::unit::{Commit, Evidence};
use crate::{Error, Timestamp};
use std::sync::Mutex;

/// Domain separation tag of the entry hash, version 1.
pub const HASH_DOMAIN: &[u8] = b"agora/archive/v1";

/// `prev_hash` of the first entry.
pub const GENESIS_PREV_HASH: [u8; 32] = [0u8; 32];

/// Longest `kind`, in bytes. Kinds are message names (`"cpo/bound"`), not data.
pub const MAX_KIND_LEN: usize = 64;

/// Largest payload, in bytes: 1 MiB, well above any protocol message (which
/// have their own, smaller limits), so evidence is never refused for size
/// while a runaway caller still cannot fill the disk with one entry.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

/// Most entries returned by one [`EvidenceArchive::entries`] call; larger
/// `limit`s are clamped. Bounds the memory of one read.
pub const MAX_PAGE_LEN: usize = 1024;

/// One archived item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// Position in the archive, from 1, without gaps.
    pub seq: u64,
    /// When it was archived (the caller's `now`).
    pub recorded_at: Timestamp,
    /// What it is: a message name such as `"cpo/bound"`.
    pub kind: String,
    /// The evidence itself, for instance COSE_Sign1 bytes.
    pub payload: Vec<u8>,
    /// `hash` of entry `seq - 1`, or [`GENESIS_PREV_HASH`] for seq 1.
    pub prev_hash: [u8; 32],
    /// [`entry_hash`] of this entry's fields.
    pub hash: [u8; 32],
}

impl ArchiveEntry {
    /// Builds entry `seq` after `prev_hash`, computing its hash.
    pub fn new(
        seq: u64,
        recorded_at: Timestamp,
        kind: String,
        payload: Vec<u8>,
        prev_hash: [u8; 32],
    ) -> ArchiveEntry {
        let hash = entry_hash(seq, recorded_at, &kind, &payload, &prev_hash);
        ArchiveEntry {
            seq,
            recorded_at,
            kind,
            payload,
            prev_hash,
            hash,
        }
    }
}

/// The hash of an entry (see the module documentation for the encoding).
pub fn entry_hash(
    seq: u64,
    recorded_at: Timestamp,
    kind: &str,
    payload: &[u8],
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update((HASH_DOMAIN.len() as u64).to_be_bytes());
    h.update(HASH_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(recorded_at.secs().to_be_bytes());
    h.update((kind.len() as u64).to_be_bytes());
    h.update(kind.as_bytes());
    h.update((payload.len() as u64).to_be_bytes());
    h.update(payload);
    h.update(prev_hash);
    h.finalize().into()
}

/// Checks the arguments of [`EvidenceArchive::append`] shared by every
/// implementation, so that all of them refuse the same inputs.
pub fn check_append_args(kind: &str, payload: &[u8]) -> Result<(), Error> {
    if kind.is_empty() {
        return Err(Error::ApiMisuse("archive entry kind is empty"));
    }
    if kind.len() > MAX_KIND_LEN {
        return Err(Error::ApiMisuse("archive entry kind is too long"));
    }
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(Error::ApiMisuse("archive entry payload is too large"));
    }
    Ok(())
}

/// What is wrong with an archive, and at which entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The entry's fields do not hash to its stored hash: it was changed.
    #[error("archive entry {seq}: contents do not match its hash (entry changed)")]
    HashMismatch {
        /// The entry.
        seq: u64,
    },
    /// An entry appears where another was expected: one was removed
    /// (a gap) or entries were reordered or duplicated.
    #[error("archive entry {seq} found where entry {expected} was expected (entry removed or reordered)")]
    SeqMismatch {
        /// The seq found.
        seq: u64,
        /// The seq that should have come next.
        expected: u64,
    },
    /// The entry's `prev_hash` is not the hash of the entry before it: an
    /// entry before it was removed or replaced and the rest renumbered.
    #[error("archive entry {seq}: prev_hash does not match the previous entry")]
    PrevHashMismatch {
        /// The entry.
        seq: u64,
    },
    /// The archive ends before a head remembered earlier: entries were cut
    /// off the end.
    #[error(
        "archive ends at entry {last_seq}, before the remembered head {head_seq} (tail removed)"
    )]
    TailMissing {
        /// The remembered head's seq.
        head_seq: u64,
        /// The last seq actually present (0 for none).
        last_seq: u64,
    },
    /// The entry at the remembered head's seq has another hash: the history
    /// was rewritten.
    #[error("archive entry {seq} differs from the remembered head (history rewritten)")]
    HeadMismatch {
        /// The head's seq.
        seq: u64,
    },
    /// An entry could not be read (storage failure or a corrupt row).
    #[error("archive entry {seq} could not be read: {reason}")]
    Unreadable {
        /// Where reading failed: the first seq of the page that could not be
        /// read.
        seq: u64,
        /// Why.
        reason: String,
    },
}

impl ChainError {
    /// The seq of the entry at fault.
    pub fn seq(&self) -> u64 {
        match self {
            ChainError::HashMismatch { seq }
            | ChainError::SeqMismatch { seq, .. }
            | ChainError::PrevHashMismatch { seq }
            | ChainError::HeadMismatch { seq }
            | ChainError::Unreadable { seq, .. } => *seq,
            ChainError::TailMissing { head_seq, .. } => *head_seq,
        }
    }
}

/// Streaming chain verifier: feed entries in order with [`Self::push`]. Lets
/// an implementation verify an archive page by page in bounded memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: [u8; 32],
    head: Option<(u64, [u8; 32])>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting entry 1 after the genesis hash.
    pub fn new() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS_PREV_HASH,
            head: None,
        }
    }

    /// Checks the next entry: its seq, its link to the previous entry and its
    /// own hash. Hashes are compared in constant time out of habit; they are
    /// not secret, but it costs nothing.
    pub fn push(&mut self, e: &ArchiveEntry) -> Result<(), ChainError> {
        if e.seq != self.next_seq {
            return Err(ChainError::SeqMismatch {
                seq: e.seq,
                expected: self.next_seq,
            });
        }
        if !ct_eq(&e.prev_hash, &self.prev_hash) {
            return Err(ChainError::PrevHashMismatch { seq: e.seq });
        }
        let computed = entry_hash(e.seq, e.recorded_at, &e.kind, &e.payload, &e.prev_hash);
        if !ct_eq(&computed, &e.hash) {
            return Err(ChainError::HashMismatch { seq: e.seq });
        }
        self.next_seq = self.next_seq.saturating_add(1);
        self.prev_hash = e.hash;
        self.head = Some((e.seq, e.hash));
        Ok(())
    }

    /// Number of entries checked so far.
    pub fn checked(&self) -> u64 {
        self.next_seq - 1
    }

    /// The last entry checked, as `(seq, hash)`.
    pub fn head(&self) -> Option<(u64, [u8; 32])> {
        self.head
    }
}

/// Verifies a whole archive given in order from seq 1; returns the number of
/// entries checked. Detects a changed entry ([`ChainError::HashMismatch`]), a
/// removed or reordered entry ([`ChainError::SeqMismatch`], or
/// [`ChainError::PrevHashMismatch`] if the rest was renumbered). A removed
/// tail is only visible against a remembered head: [`verify_against_head`].
pub fn verify_chain(entries: impl Iterator<Item = ArchiveEntry>) -> Result<u64, ChainError> {
    let mut v = ChainVerifier::new();
    for e in entries {
        v.push(&e)?;
    }
    Ok(v.checked())
}

/// [`verify_chain`], and also checks that the archive still contains `head`
/// = `(seq, hash)` remembered earlier: detects a removed tail
/// ([`ChainError::TailMissing`]) and a rewritten history
/// ([`ChainError::HeadMismatch`]). The archive may have grown since.
pub fn verify_against_head(
    entries: impl Iterator<Item = ArchiveEntry>,
    head: (u64, [u8; 32]),
) -> Result<u64, ChainError> {
    let (head_seq, head_hash) = head;
    let mut v = ChainVerifier::new();
    for e in entries {
        v.push(&e)?;
        if e.seq == head_seq && !ct_eq(&e.hash, &head_hash) {
            return Err(ChainError::HeadMismatch { seq: head_seq });
        }
    }
    if v.checked() < head_seq {
        return Err(ChainError::TailMissing {
            head_seq,
            last_seq: v.checked(),
        });
    }
    Ok(v.checked())
}

/// The evidence archive port.
///
/// Contract (checked by [`crate::ports::conformance::archive_suite`]):
/// - `append` assigns the next seq (from 1, no gaps) and chains to the
///   current head atomically, even under concurrent appends; the entry is
///   durable when the call returns (for a durable implementation);
/// - entries are never changed or removed through this port;
/// - `verify` re-checks the whole chain.
pub trait EvidenceArchive: Send + Sync {
    /// Appends an entry recorded at `now`; returns it with its seq and hashes.
    /// Errors: [`Error::ApiMisuse`] for an empty or over-long kind or an
    /// over-large payload (see [`check_append_args`]).
    fn append(&self, kind: &str, payload: &[u8], now: Timestamp) -> Result<ArchiveEntry, Error>;

    /// Archives `evidence`, in order, as one unit of work (a step whose
    /// only write is its evidence: an arbiter's acceptance, a broker's
    /// ruling): all entries or none, durable when the [`Commit`] resolves.
    /// Refuses the whole unit, archiving nothing, if any entry breaks
    /// [`check_append_args`].
    fn record(&self, evidence: Vec<Evidence>, now: Timestamp) -> Commit<Vec<ArchiveEntry>>;

    /// The entry `seq`, if present.
    fn get(&self, seq: u64) -> Result<Option<ArchiveEntry>, Error>;

    /// Up to `limit` (clamped to [`MAX_PAGE_LEN`]) entries from `from_seq`
    /// on, in order. `from_seq` 0 reads from the start.
    fn entries(&self, from_seq: u64, limit: usize) -> Result<Vec<ArchiveEntry>, Error>;

    /// The newest entry as `(seq, hash)`, or `None` for an empty archive.
    fn head(&self) -> Result<Option<(u64, [u8; 32])>, Error>;

    /// Verifies the whole chain page by page; returns the entries checked.
    /// Cost: one hash per entry, memory of one page.
    fn verify(&self) -> Result<u64, ChainError> {
        let mut v = ChainVerifier::new();
        loop {
            let from = v.checked() + 1;
            let page = self
                .entries(from, MAX_PAGE_LEN)
                .map_err(|e| ChainError::Unreadable {
                    seq: from,
                    reason: e.to_string(),
                })?;
            let n = page.len();
            for e in &page {
                v.push(e)?;
            }
            if n < MAX_PAGE_LEN {
                return Ok(v.checked());
            }
        }
    }
}

/// In-memory twin of [`EvidenceArchive`] for tests and the simulator.
/// Bounded by `capacity` entries; beyond that, `append` fails with
/// [`Error::Storage`] (the archive is full, as a disk would be).
#[derive(Debug)]
pub struct MemoryArchive {
    entries: Mutex<Vec<ArchiveEntry>>,
    capacity: usize,
}

impl MemoryArchive {
    /// Default capacity: one million entries.
    pub const DEFAULT_CAPACITY: usize = 1 << 20;

    /// An empty archive with [`Self::DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty archive holding at most `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryArchive {
            entries: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// Direct access to the stored entries, to simulate tampering in tests.
    pub fn entries_mut_for_testing_only(&self) -> std::sync::MutexGuard<'_, Vec<ArchiveEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<ArchiveEntry>>, Error> {
        self.entries
            .lock()
            .map_err(|_| Error::Storage("memory archive lock poisoned".into()))
    }
}

impl MemoryArchive {
    /// [`EvidenceArchive::record`] at once: every entry is checked, and the
    /// room for all of them, before the first is appended.
    pub fn record_now(
        &self,
        evidence: &[Evidence],
        now: Timestamp,
    ) -> Result<Vec<ArchiveEntry>, Error> {
        for e in evidence {
            e.check()?;
        }
        let mut v = self.lock()?;
        if v.len() + evidence.len() > self.capacity {
            return Err(Error::Storage("memory archive is full".into()));
        }
        Ok(evidence
            .iter()
            .map(|e| push_entry(&mut v, e.kind, &e.payload, now))
            .collect())
    }
}

/// Appends the next entry to `v`, chained to its last.
fn push_entry(
    v: &mut Vec<ArchiveEntry>,
    kind: &str,
    payload: &[u8],
    now: Timestamp,
) -> ArchiveEntry {
    let (seq, prev) = match v.last() {
        Some(last) => (last.seq + 1, last.hash),
        None => (1, GENESIS_PREV_HASH),
    };
    let e = ArchiveEntry::new(seq, now, kind.to_owned(), payload.to_vec(), prev);
    v.push(e.clone());
    e
}

impl Default for MemoryArchive {
    fn default() -> Self {
        Self::new()
    }
}

impl EvidenceArchive for MemoryArchive {
    fn append(&self, kind: &str, payload: &[u8], now: Timestamp) -> Result<ArchiveEntry, Error> {
        check_append_args(kind, payload)?;
        let mut v = self.lock()?;
        if v.len() >= self.capacity {
            return Err(Error::Storage("memory archive is full".into()));
        }
        Ok(push_entry(&mut v, kind, payload, now))
    }

    fn record(&self, evidence: Vec<Evidence>, now: Timestamp) -> Commit<Vec<ArchiveEntry>> {
        Commit::ready(self.record_now(&evidence, now))
    }

    fn get(&self, seq: u64) -> Result<Option<ArchiveEntry>, Error> {
        let v = self.lock()?;
        Ok(v.iter().find(|e| e.seq == seq).cloned())
    }

    fn entries(&self, from_seq: u64, limit: usize) -> Result<Vec<ArchiveEntry>, Error> {
        let v = self.lock()?;
        let from_seq = from_seq.max(1);
        Ok(v.iter()
            .filter(|e| e.seq >= from_seq)
            .take(limit.min(MAX_PAGE_LEN))
            .cloned()
            .collect())
    }

    fn head(&self) -> Result<Option<(u64, [u8; 32])>, Error> {
        Ok(self.lock()?.last().map(|e| (e.seq, e.hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<ArchiveEntry> {
        let a = MemoryArchive::new();
        for i in 1..=n {
            a.append("test/kind", &i.to_be_bytes(), Timestamp(1000 + i))
                .unwrap();
        }
        a.entries(1, MAX_PAGE_LEN).unwrap()
    }

    #[test]
    fn memory_archive_passes_conformance_suite() {
        crate::ports::conformance::archive_suite(MemoryArchive::new);
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(chain(5).into_iter()), Ok(5));
        assert_eq!(verify_chain(std::iter::empty()), Ok(0));
        let c = chain(5);
        let head = (c[2].seq, c[2].hash);
        assert_eq!(verify_against_head(c.into_iter(), head), Ok(5));
    }

    #[test]
    fn changed_entry_is_detected() {
        for field in 0..3 {
            let mut c = chain(5);
            match field {
                0 => c[2].payload.push(0),
                1 => c[2].kind.push('x'),
                _ => c[2].recorded_at = Timestamp(1),
            }
            assert_eq!(
                verify_chain(c.into_iter()),
                Err(ChainError::HashMismatch { seq: 3 })
            );
        }
    }

    #[test]
    fn changed_entry_with_recomputed_hash_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].payload = b"forged".to_vec();
        c[2].hash = entry_hash(
            3,
            c[2].recorded_at,
            &c[2].kind,
            &c[2].payload,
            &c[2].prev_hash,
        );
        assert_eq!(
            verify_chain(c.into_iter()),
            Err(ChainError::PrevHashMismatch { seq: 4 })
        );
    }

    #[test]
    fn removed_entry_is_detected() {
        let mut c = chain(5);
        c.remove(2);
        assert_eq!(
            verify_chain(c.clone().into_iter()),
            Err(ChainError::SeqMismatch {
                seq: 4,
                expected: 3
            })
        );
        // Renumbering the rest does not help: the link is broken.
        for e in c.iter_mut().skip(2) {
            e.seq -= 1;
        }
        assert!(matches!(
            verify_chain(c.into_iter()),
            Err(ChainError::PrevHashMismatch { seq: 3 }) | Err(ChainError::HashMismatch { seq: 3 })
        ));
        let mut c = chain(3);
        c.remove(0);
        assert_eq!(
            verify_chain(c.into_iter()),
            Err(ChainError::SeqMismatch {
                seq: 2,
                expected: 1
            })
        );
    }

    #[test]
    fn reordered_entries_are_detected() {
        let mut c = chain(5);
        c.swap(1, 3);
        assert_eq!(
            verify_chain(c.into_iter()),
            Err(ChainError::SeqMismatch {
                seq: 4,
                expected: 2
            })
        );
    }

    #[test]
    fn removed_tail_is_detected_against_head() {
        let c = chain(5);
        let head = (c[4].seq, c[4].hash);
        let cut: Vec<_> = c[..3].to_vec();
        assert_eq!(verify_chain(cut.clone().into_iter()), Ok(3));
        assert_eq!(
            verify_against_head(cut.into_iter(), head),
            Err(ChainError::TailMissing {
                head_seq: 5,
                last_seq: 3
            })
        );
        assert_eq!(
            verify_against_head(std::iter::empty(), head),
            Err(ChainError::TailMissing {
                head_seq: 5,
                last_seq: 0
            })
        );
    }

    #[test]
    fn rewritten_history_is_detected_against_head() {
        let c = chain(5);
        let head = (c[2].seq, c[2].hash);
        // Another, internally valid archive of the same length.
        let other: Vec<_> = {
            let a = MemoryArchive::new();
            for i in 1..=5u64 {
                a.append("other", &i.to_be_bytes(), Timestamp(i)).unwrap();
            }
            a.entries(1, 10).unwrap()
        };
        assert_eq!(verify_chain(other.clone().into_iter()), Ok(5));
        assert_eq!(
            verify_against_head(other.into_iter(), head),
            Err(ChainError::HeadMismatch { seq: 3 })
        );
    }

    #[test]
    fn hash_is_domain_separated_and_length_prefixed() {
        let p = GENESIS_PREV_HASH;
        // Moving a byte between kind and payload changes the hash.
        assert_ne!(
            entry_hash(1, Timestamp(0), "ab", b"c", &p),
            entry_hash(1, Timestamp(0), "a", b"bc", &p)
        );
        assert_ne!(
            entry_hash(1, Timestamp(0), "k", b"", &p),
            entry_hash(2, Timestamp(0), "k", b"", &p)
        );
        // Pin the encoding: a change of format must be a new domain tag.
        let mut enc = Vec::new();
        enc.extend_from_slice(&(HASH_DOMAIN.len() as u64).to_be_bytes());
        enc.extend_from_slice(HASH_DOMAIN);
        enc.extend_from_slice(&7u64.to_be_bytes());
        enc.extend_from_slice(&9u64.to_be_bytes());
        enc.extend_from_slice(&1u64.to_be_bytes());
        enc.extend_from_slice(b"k");
        enc.extend_from_slice(&2u64.to_be_bytes());
        enc.extend_from_slice(b"pl");
        enc.extend_from_slice(&[0xAB; 32]);
        assert_eq!(
            entry_hash(7, Timestamp(9), "k", b"pl", &[0xAB; 32]),
            crate::crypto::sha256(&enc)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any single-byte change anywhere in any entry breaks verification.
        #[test]
        fn any_byte_flip_is_detected(entry in 0usize..6, pos in 0usize..200, bit in 0u8..8) {
            let mut c = chain(6);
            let e = &mut c[entry];
            let bit = 1u8 << bit;
            // Flip a bit in one of the byte-carrying fields, chosen by pos.
            match pos % 4 {
                0 => { let n = e.payload.len(); e.payload[pos % n] ^= bit; }
                1 => e.prev_hash[pos % 32] ^= bit,
                2 => e.hash[pos % 32] ^= bit,
                _ => e.recorded_at = Timestamp(e.recorded_at.secs() ^ u64::from(bit)),
            }
            proptest::prop_assert!(verify_chain(c.into_iter()).is_err());
        }
    }
}
