//! What this process knows of posted CPOs, so that a listing or an offer
//! reads nothing from the database when the CPO was read before.
//!
//! A CPO's CCPO and mode never change once posted, and its two other facts
//! only ever go one way: open, then bound or taken down, for good. So the
//! cache keeps the decoded CCPO by id, and the two flags as this process
//! last learned them; every binding and take-down made through a
//! [`crate::SqliteBoard`] of this [`crate::SqliteStore`] sets them once it has
//! committed, and every read of the database adds what it saw.
//!
//! The one way it can be wrong is to show open a CPO that **another
//! process** sharing the database has since bound or taken down. That is
//! safe: `try_bind` decides in its write transaction, and its answer sets
//! the flag here. It never shows closed a CPO that is open, since a flag is
//! only set by a committed change or a read of one.
//!
//! A CPO this process posts is known from the start. The table is bounded
//! ([`MAX_CACHED_CPOS`]); when it is full the oldest entry makes room, and
//! the next read of that CPO goes to the database.

use agora_cpo::ports::CpoState;
use agora_cpo::{Ccpo, Mode};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Most CPOs kept: a CCPO with its bond certificate is one to two KiB, so
/// the table stays under about 32 MiB.
pub const MAX_CACHED_CPOS: usize = 16_384;

#[derive(Default)]
struct Known {
    /// The CCPO and mode, once read from the database or posted here.
    posted: Option<(Ccpo, Mode)>,
    bound: bool,
    taken_down: bool,
}

/// The table, shared by every board of one store.
#[derive(Default)]
pub(crate) struct StateCache {
    table: Mutex<Table>,
}

/// The entries, and their ids in the order they came, oldest first: the
/// oldest makes room when the table is full.
#[derive(Default)]
struct Table {
    map: HashMap<[u8; 32], Known>,
    order: VecDeque<[u8; 32]>,
}

impl Table {
    fn entry(&mut self, id: &[u8; 32]) -> &mut Known {
        if !self.map.contains_key(id) {
            while self.map.len() >= MAX_CACHED_CPOS {
                match self.order.pop_front() {
                    Some(oldest) => {
                        self.map.remove(&oldest);
                    }
                    None => break,
                }
            }
            self.order.push_back(*id);
        }
        self.map.entry(*id).or_default()
    }

    /// The entry of `ccpo`, with its CCPO and mode kept (the first ones
    /// stand: they never change).
    fn remember(&mut self, ccpo: &Ccpo, mode: Mode) -> &mut Known {
        let k = self.entry(&ccpo.id);
        k.posted.get_or_insert_with(|| (ccpo.clone(), mode));
        k
    }
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCache")
            .field("len", &self.lock().map.len())
            .finish()
    }
}

impl StateCache {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every operation leaves the table whole (an id is in `order` iff it
        // is in `map`, each changed by one call before the other can fail),
        // so a poisoned lock is safe to keep using.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state of CPO `id`, if its CCPO was read before.
    pub(crate) fn get(&self, id: &[u8; 32]) -> Option<CpoState> {
        let table = self.lock();
        let k = table.map.get(id)?;
        let posted = k.posted.as_ref()?;
        Some(CpoState {
            ccpo: posted.0.clone(),
            mode: posted.1,
            bound: k.bound,
            taken_down: k.taken_down,
        })
    }

    /// Adds what a read of the database found, and returns the state with
    /// what this process learned since the read began (a flag set by a
    /// change committed meanwhile stays set).
    pub(crate) fn learn(&self, mut read: CpoState) -> CpoState {
        let mut table = self.lock();
        let k = table.remember(&read.ccpo, read.mode);
        k.bound |= read.bound;
        k.taken_down |= read.taken_down;
        read.bound = k.bound;
        read.taken_down = k.taken_down;
        read
    }

    /// CPO `id` is bound (a committed binding, this process's or another's).
    pub(crate) fn set_bound(&self, id: &[u8; 32]) {
        self.lock().entry(id).bound = true;
    }

    /// CPO `id` is taken down (committed).
    pub(crate) fn set_taken_down(&self, id: &[u8; 32]) {
        self.lock().entry(id).taken_down = true;
    }

    /// CPO `id` was just posted by this process: open, with this CCPO.
    pub(crate) fn posted(&self, ccpo: &Ccpo, mode: Mode) {
        self.lock().remember(ccpo, mode);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let table = self.lock();
        assert_eq!(table.map.len(), table.order.len());
        table.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{Currency, KeyId, Money, Timestamp};
    use agora_cpo::CcpoDraft;

    fn sample_ccpo(n: u8) -> Ccpo {
        Ccpo::with_id(
            [n; 32],
            CcpoDraft {
                arbiter: KeyId([1; 32]),
                server: KeyId([2; 32]),
                goods: "goods".into(),
                price: Money::new(100, Currency::new("EUR").expect("EUR")),
                start: Timestamp(0),
                end: Timestamp(100),
                terms: "terms".into(),
                bond: vec![0x30, 0x03, 1, 2, 3],
            },
        )
        .expect("valid CCPO")
    }

    fn state(ccpo: Ccpo) -> CpoState {
        CpoState {
            ccpo,
            mode: Mode::FirstCome,
            bound: false,
            taken_down: false,
        }
    }

    #[test]
    fn a_flag_set_while_a_read_was_under_way_stays_set() {
        let c = StateCache::default();
        let ccpo = sample_ccpo(1);
        assert!(c.get(&ccpo.id).is_none(), "nothing read yet");
        // The binding committed after the read saw the CPO open.
        c.set_bound(&ccpo.id);
        assert!(c.get(&ccpo.id).is_none(), "a flag alone is not a state");
        let s = c.learn(state(ccpo.clone()));
        assert!(s.bound, "the read's open does not undo the binding");
        let again = c.get(&ccpo.id).expect("cached");
        assert!(again.bound && !again.taken_down);
        assert_eq!(again.ccpo, ccpo);
        c.set_taken_down(&ccpo.id);
        assert!(c.get(&ccpo.id).expect("cached").taken_down);
    }

    #[test]
    fn a_read_that_saw_a_closed_cpo_closes_it_here() {
        let c = StateCache::default();
        let ccpo = sample_ccpo(2);
        let mut s = state(ccpo.clone());
        s.taken_down = true;
        assert!(c.learn(s).taken_down);
        // A later, older read cannot reopen it.
        assert!(c.learn(state(ccpo.clone())).taken_down);
        assert!(c.get(&ccpo.id).expect("cached").taken_down);
    }

    #[test]
    fn the_table_stays_bounded_and_the_oldest_make_room() {
        let c = StateCache::default();
        let first = sample_ccpo(9);
        c.posted(&first, Mode::Bidding);
        assert_eq!(c.get(&first.id).expect("cached").mode, Mode::Bidding);
        for i in 0..MAX_CACHED_CPOS + 10 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            c.set_bound(&id);
        }
        assert_eq!(c.len(), MAX_CACHED_CPOS);
        assert!(c.get(&first.id).is_none(), "the oldest went first");
    }
}
