//! The listings a server has sent and not yet seen answered (protocol 4 or
//! 6, step 1), by hash(X_0).
//!
//! Bounded twice: at most [`crate::MAX_ISSUED_LISTINGS`] in all (expired
//! ones are dropped when it is full; still full is overload), and at most
//! [`crate::MAX_LISTINGS_PER_SESSION`] per browse session, where a new one
//! retires that session's oldest. So one seller who asks for listings
//! faster than she answers them (a page at a time, say) retires her own,
//! and never fills the table against the others.

use crate::server::IssuedListing;
use agora_core::Timestamp;
use std::collections::{HashMap, VecDeque};

/// One session's listings, oldest first. `order` may still hold hashes
/// already answered (they are skipped when they come up); `live` counts
/// those still waiting, and the entry goes once it is zero.
#[derive(Debug, Default)]
struct PerSession {
    order: VecDeque<[u8; 32]>,
    live: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Issued {
    by_hash: HashMap<[u8; 32], IssuedListing>,
    by_session: HashMap<[u8; 32], PerSession>,
}

impl Issued {
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub(crate) fn get(&self, x0_hash: &[u8; 32]) -> Option<&IssuedListing> {
        self.by_hash.get(x0_hash)
    }

    /// Keeps `listing` under `x0_hash`; if its session then holds more than
    /// `per_session`, its oldest goes.
    pub(crate) fn insert(&mut self, x0_hash: [u8; 32], listing: IssuedListing, per_session: usize) {
        let session = listing.session;
        if let Some(old) = self.by_hash.insert(x0_hash, listing) {
            // The same X_0 again (a restore): counted once.
            self.forget(&old.session);
        }
        let by_hash = &mut self.by_hash;
        let waiting = |h: &[u8; 32], m: &HashMap<[u8; 32], IssuedListing>| {
            m.get(h).is_some_and(|l| l.session == session)
        };
        let s = self.by_session.entry(session).or_default();
        s.order.push_back(x0_hash);
        s.live += 1;
        let cap = per_session.max(1);
        while s.live > cap {
            let Some(oldest) = s.order.pop_front() else {
                break;
            };
            if waiting(&oldest, by_hash) {
                by_hash.remove(&oldest);
                s.live -= 1;
            }
        }
        // Hashes already answered cost only memory; drop those in front,
        // and all of them whenever they make up most of `order`.
        while s.order.front().is_some_and(|h| !waiting(h, by_hash)) {
            s.order.pop_front();
        }
        if s.order.len() > 2 * cap {
            s.order.retain(|h| waiting(h, by_hash));
        }
    }

    /// Takes out the listing `x0_hash`.
    pub(crate) fn remove(&mut self, x0_hash: &[u8; 32]) -> Option<IssuedListing> {
        let l = self.by_hash.remove(x0_hash)?;
        self.forget(&l.session);
        Some(l)
    }

    /// Drops the listings older than `ttl_secs` at `now`.
    pub(crate) fn drop_expired(&mut self, now: Timestamp, ttl_secs: u64) {
        let by_session = &mut self.by_session;
        self.by_hash.retain(|_, l| {
            let live = now.secs() <= l.issued_at.secs().saturating_add(ttl_secs);
            if !live {
                if let Some(s) = by_session.get_mut(&l.session) {
                    s.live -= 1;
                }
            }
            live
        });
        by_session.retain(|_, s| s.live > 0);
    }

    /// One listing of `session` is gone from `by_hash`.
    fn forget(&mut self, session: &[u8; 32]) {
        if let Some(s) = self.by_session.get_mut(session) {
            s.live -= 1;
            if s.live == 0 {
                self.by_session.remove(session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    fn listing(session: u8, at: u64) -> IssuedListing {
        IssuedListing {
            session: [session; 32],
            cpo: [0; 32],
            issued_at: Timestamp(at),
            mode: Mode::FirstCome,
        }
    }

    fn h(i: u32) -> [u8; 32] {
        let mut x = [0u8; 32];
        x[..4].copy_from_slice(&i.to_le_bytes());
        x
    }

    #[test]
    fn a_session_over_its_share_retires_its_own_oldest() {
        let mut t = Issued::default();
        t.insert(h(1000), listing(2, 0), 3);
        for i in 0..5 {
            t.insert(h(i), listing(1, i.into()), 3);
        }
        assert_eq!(t.len(), 4, "three of session 1 and one of session 2");
        assert!(t.get(&h(0)).is_none() && t.get(&h(1)).is_none());
        assert!(t.get(&h(2)).is_some() && t.get(&h(4)).is_some());
        assert!(t.get(&h(1000)).is_some(), "the other session keeps hers");
        // Answering frees a place: the next one retires nothing.
        assert!(t.remove(&h(3)).is_some());
        t.insert(h(5), listing(1, 5), 3);
        assert!(t.get(&h(2)).is_some());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn answered_and_expired_listings_leave_no_trace() {
        let mut t = Issued::default();
        for i in 0..100 {
            t.insert(h(i), listing(1, 0), 8);
            assert!(t.remove(&h(i)).is_some());
        }
        assert!(t.by_session.is_empty());
        for i in 0..4 {
            t.insert(h(i), listing(i as u8, i.into()), 8);
        }
        t.drop_expired(Timestamp(12), 10);
        assert_eq!(t.len(), 2, "issued at 2 and 3 are still live at 12");
        assert_eq!(t.by_session.len(), 2);
        for s in t.by_session.values() {
            assert_eq!(s.order.len(), s.live);
        }
    }

    #[test]
    fn a_listing_kept_for_long_does_not_let_answered_ones_pile_up() {
        let mut t = Issued::default();
        t.insert(h(0), listing(1, 0), 4);
        for i in 1..1000 {
            t.insert(h(i), listing(1, 0), 4);
            assert!(t.remove(&h(i)).is_some());
            assert!(t.by_session[&[1; 32]].order.len() <= 8);
        }
        assert!(t.get(&h(0)).is_some(), "still waiting");
    }

    #[test]
    fn restoring_a_listing_counts_it_once() {
        let mut t = Issued::default();
        t.insert(h(1), listing(1, 0), 2);
        t.insert(h(1), listing(1, 0), 2);
        assert_eq!(t.by_session[&[1; 32]].live, 1);
        assert!(t.remove(&h(1)).is_some());
        assert!(t.by_session.is_empty());
    }
}
