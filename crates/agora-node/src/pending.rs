//! The bounded table of pending protocol steps.
//!
//! A four-message protocol (the arbiter's approval, posting, a browse
//! session) or a SPEED negotiation leaves the role holding a pending step
//! between its reply and the client's next message. The node keeps those
//! states here, under a random step id that travels in the [`STEP_HEADER`]
//! of the reply and of the next message. (Named "pending steps", not
//! "exchanges": the exchange layer is SEMPER's transfers and fair
//! exchanges.) The table is bounded (a full table answers `503`, after
//! dropping what has expired) and every entry expires; a state is taken out
//! exactly once, so an answer cannot be replayed against it.
//!
//! The states live in this process's memory: several nodes behind a load
//! balancer need sticky routing for these steps (the step id is a
//! natural key for it), or this table moved into the shared store.

use crate::problem::Problem;
use axum::http::StatusCode;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The HTTP header that carries a pending step's id (32 hex digits).
pub const STEP_HEADER: &str = "agora-step";

/// A pending step's id: 128 random bits.
pub type StepId = [u8; 16];

struct Entry {
    deadline: Instant,
    state: Box<dyn Any + Send>,
}

/// Pending protocol steps by id.
pub struct PendingSteps {
    capacity: usize,
    ttl: Duration,
    map: Mutex<HashMap<StepId, Entry>>,
}

impl std::fmt::Debug for PendingSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSteps")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("len", &self.len())
            .finish()
    }
}

impl PendingSteps {
    /// A table of at most `capacity` pending steps, each living `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> PendingSteps {
        PendingSteps {
            capacity,
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StepId, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every operation is one HashMap call), so a poisoned lock is safe
        // to keep using.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `state` under a fresh id, unless the table is full of live
    /// pending steps.
    pub fn insert<T: Any + Send>(&self, state: T) -> Result<StepId, Problem> {
        let id: StepId = agora_core::crypto::random_bytes(&mut agora_core::crypto::os_rng());
        let now = Instant::now();
        let mut m = self.lock();
        if m.len() >= self.capacity {
            m.retain(|_, e| e.deadline > now);
            if m.len() >= self.capacity {
                return Err(Problem::overloaded("too many protocol steps pending"));
            }
        }
        m.insert(
            id,
            Entry {
                deadline: now + self.ttl,
                state: Box::new(state),
            },
        );
        Ok(id)
    }

    /// Takes out the state of pending step `id`, if it is live and a `T`. A state
    /// of another type stays (a client cannot destroy another protocol's
    /// pending step by naming it in the wrong message).
    pub fn take<T: Any + Send>(&self, id: &StepId) -> Result<T, Problem> {
        self.take_until(id).map(|(state, _)| state)
    }

    /// Like [`PendingSteps::take`], and also returns the step's deadline,
    /// for [`PendingSteps::restore`].
    fn take_until<T: Any + Send>(&self, id: &StepId) -> Result<(T, Instant), Problem> {
        let unknown = || {
            Problem::new(StatusCode::NOT_FOUND, "unknown-step")
                .with_detail("no such pending step (expired, finished, or another protocol's)")
        };
        let mut m = self.lock();
        match m.get(id) {
            Some(e) if e.deadline > Instant::now() && e.state.is::<T>() => {}
            Some(e) if e.deadline <= Instant::now() => {
                m.remove(id);
                return Err(unknown());
            }
            _ => return Err(unknown()),
        }
        let e = m.remove(id).ok_or_else(unknown)?;
        let deadline = e.deadline;
        e.state
            .downcast::<T>()
            .map(|b| (*b, deadline))
            .map_err(|_| unknown())
    }

    /// Puts back a state taken out by [`PendingSteps::take_until`] under its id
    /// and old deadline: the message that was refused left it as it was (a
    /// damaged or forged message must not end a run). Restoring neither
    /// extends its life nor counts against the capacity twice.
    fn restore<T: Any + Send>(&self, id: StepId, state: T, deadline: Instant) {
        if deadline <= Instant::now() {
            return;
        }
        self.lock().insert(
            id,
            Entry {
                deadline,
                state: Box::new(state),
            },
        );
    }

    /// Runs `step` on the state of pending step `id`. If the step refuses its
    /// message with an error that [`agora_core::Error::leaves_state_intact`]
    /// (the message did not authenticate), the state goes back under `id`
    /// with its old deadline, so the genuine message can still come; any
    /// other outcome uses the state up.
    pub fn step<T: Any + Send + Clone, R>(
        &self,
        id: &StepId,
        step: impl FnOnce(T) -> Result<R, agora_core::Error>,
    ) -> Result<R, Problem> {
        let (state, deadline) = self.take_until::<T>(id)?;
        let kept = state.clone();
        step(state).map_err(|e| {
            if e.leaves_state_intact() {
                self.restore(*id, kept, deadline);
            }
            Problem::from(e)
        })
    }

    /// Drops expired steps; returns how many.
    pub fn purge(&self) -> usize {
        let now = Instant::now();
        let mut m = self.lock();
        let before = m.len();
        m.retain(|_, e| e.deadline > now);
        before - m.len()
    }

    /// Steps in the table (live or not yet purged).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a step id header value.
pub fn parse_id(v: &str) -> Result<StepId, Problem> {
    let bytes =
        hex::decode(v.trim()).map_err(|_| Problem::bad_request("the step id is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| Problem::bad_request("the step id is not 16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_taken_once_and_only_as_its_type() {
        let t = PendingSteps::new(4, Duration::from_secs(60));
        let id = t.insert(7u32).expect("room");
        assert!(t.take::<String>(&id).is_err(), "wrong type");
        assert_eq!(
            t.take::<u32>(&id).expect("live"),
            7,
            "the wrong type left it"
        );
        assert!(t.take::<u32>(&id).is_err(), "taken once");
        assert!(t.is_empty());
    }

    #[test]
    fn a_step_refusing_an_unauthenticated_message_keeps_the_state() {
        use agora_core::Error;
        let t = PendingSteps::new(4, Duration::from_secs(60));
        let id = t.insert(7u32).expect("room");
        // Damaged or forged: the state goes back under the same id.
        for e in [Error::Crypto, Error::Storage("disk".into())] {
            let p = t.step(&id, |_: u32| -> Result<(), Error> { Err(e.clone()) });
            assert!(p.is_err());
            assert_eq!(t.len(), 1, "{e:?} kept it");
        }
        // An authentic protocol break uses it up.
        assert!(t
            .step(&id, |_: u32| -> Result<(), Error> {
                Err(Error::PeerMisbehaved("repeated SeqN"))
            })
            .is_err());
        assert!(t.take::<u32>(&id).is_err(), "gone");
        // A step that succeeds uses it up too, and sees the state.
        let id = t.insert(8u32).expect("room");
        assert_eq!(t.step(&id, |v: u32| Ok::<_, Error>(v + 1)).expect("ok"), 9);
        assert!(t.is_empty());
    }

    #[test]
    fn a_kept_state_keeps_its_deadline() {
        let t = PendingSteps::new(4, Duration::from_millis(60));
        let id = t.insert(1u8).expect("room");
        std::thread::sleep(Duration::from_millis(30));
        let _ = t.step(&id, |_: u8| -> Result<(), agora_core::Error> {
            Err(agora_core::Error::Crypto)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            t.take::<u8>(&id).is_err(),
            "it expired at its first deadline"
        );
    }

    #[test]
    fn a_full_table_refuses_until_entries_expire() {
        let t = PendingSteps::new(2, Duration::from_millis(50));
        t.insert(1u8).expect("room");
        t.insert(2u8).expect("room");
        let p = t.insert(3u8).expect_err("full");
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
        std::thread::sleep(Duration::from_millis(80));
        t.insert(4u8).expect("the expired ones made room");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expired_states_are_gone() {
        let t = PendingSteps::new(2, Duration::from_millis(10));
        let id = t.insert(1u8).expect("room");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.take::<u8>(&id).expect_err("expired").code, "unknown-step");
        assert_eq!(t.purge(), 0);
    }

    #[test]
    fn ids_parse_strictly() {
        assert!(parse_id(&"ab".repeat(16)).is_ok());
        assert!(parse_id("abc").is_err());
        assert!(parse_id(&"ab".repeat(17)).is_err());
    }
}
