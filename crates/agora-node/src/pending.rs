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
//! A run is opened with [`PendingSteps::open`], which takes room *before*
//! the role sees the message (a refusal for room changes nothing), holds
//! one client address to `max_pending_per_client` steps, and answers the
//! same opening message, sent again while its step is pending, with the
//! same reply and step: a replayed request costs no slot.
//!
//! The states live in this process's memory: several nodes behind a load
//! balancer need sticky routing for these steps (the step id is a
//! natural key for it), or this table moved into the shared store.

use crate::problem::Problem;
use axum::http::StatusCode;
use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The HTTP header that carries a pending step's id (32 hex digits).
pub const STEP_HEADER: &str = "agora-step";

/// A pending step's id: 128 random bits.
pub type StepId = [u8; 16];

/// The message that opens a protocol run (an approval request, a post or
/// browse request, a SPEED negotiation request): what the table knows of
/// it before the role has seen it.
#[derive(Clone, Copy, Debug)]
pub struct Opening<'a> {
    /// Which endpoint it came to (a message's bytes are only compared with
    /// others sent to the same one).
    pub scope: &'static str,
    /// The whole message.
    pub message: &'a [u8],
    /// The client's address, when it came over the network (for the
    /// per-client quota).
    pub client: Option<IpAddr>,
}

struct Entry {
    deadline: Instant,
    state: Box<dyn Any + Send>,
    meta: Meta,
}

/// What the table keeps of a step besides its state.
#[derive(Clone, Debug)]
struct Meta {
    client: Option<IpAddr>,
    /// The opening message's digest and the reply it got, so that the same
    /// message sent again while the step is pending gets the same answer
    /// instead of a second step.
    opened_by: Option<([u8; 32], Vec<u8>)>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<StepId, Entry>,
    by_opening: HashMap<[u8; 32], StepId>,
    by_client: HashMap<IpAddr, usize>,
    /// Openings admitted whose role is still working on them.
    reserved: usize,
}

impl Table {
    fn count(&mut self, client: Option<IpAddr>) {
        if let Some(c) = client {
            *self.by_client.entry(c).or_insert(0) += 1;
        }
    }

    fn uncount(&mut self, client: Option<IpAddr>) {
        if let Some(c) = client {
            if let Some(n) = self.by_client.get_mut(&c) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.by_client.remove(&c);
                }
            }
        }
    }

    fn put(&mut self, id: StepId, e: Entry) {
        self.count(e.meta.client);
        if let Some((digest, _)) = &e.meta.opened_by {
            self.by_opening.insert(*digest, id);
        }
        if let Some(old) = self.entries.insert(id, e) {
            // Ids are 128 random bits: this does not happen; if it did, the
            // counts still hold.
            self.forget(id, &old.meta);
        }
    }

    fn forget(&mut self, id: StepId, meta: &Meta) {
        self.uncount(meta.client);
        if let Some((digest, _)) = &meta.opened_by {
            if self.by_opening.get(digest) == Some(&id) {
                self.by_opening.remove(digest);
            }
        }
    }

    fn remove(&mut self, id: &StepId) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        self.forget(*id, &e.meta);
        Some(e)
    }

    fn purge(&mut self, now: Instant) -> usize {
        let dead: Vec<StepId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            self.remove(id);
        }
        dead.len()
    }

    fn held(&self) -> usize {
        self.entries.len() + self.reserved
    }
}

/// Pending protocol steps by id.
pub struct PendingSteps {
    capacity: usize,
    per_client: usize,
    ttl: Duration,
    table: Mutex<Table>,
}

impl std::fmt::Debug for PendingSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSteps")
            .field("capacity", &self.capacity)
            .field("per_client", &self.per_client)
            .field("ttl", &self.ttl)
            .field("len", &self.len())
            .finish()
    }
}

fn full() -> Problem {
    Problem::overloaded("too many protocol steps pending")
}

impl PendingSteps {
    /// A table of at most `capacity` pending steps, each living `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> PendingSteps {
        PendingSteps {
            capacity,
            per_client: capacity,
            ttl,
            table: Mutex::new(Table::default()),
        }
    }

    /// The same, and at most `per_client` steps opened from one client
    /// address at once.
    pub fn with_quotas(mut self, per_client: usize) -> PendingSteps {
        self.per_client = per_client.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every operation keeps the entries and their indexes consistent
        // before it can panic (only allocation can), so a poisoned lock is
        // safe to keep using.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one more step for `client`, or says why not; purges expired
    /// steps when the table looks full.
    fn admit(&self, t: &mut Table, client: Option<IpAddr>) -> Result<(), Problem> {
        if t.held() >= self.capacity {
            t.purge(Instant::now());
            if t.held() >= self.capacity {
                return Err(full());
            }
        }
        if let Some(c) = client {
            if t.by_client.get(&c).copied().unwrap_or(0) >= self.per_client {
                t.purge(Instant::now());
                if t.by_client.get(&c).copied().unwrap_or(0) >= self.per_client {
                    let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-pending")
                        .with_detail("this client has too many protocol steps pending");
                    p.retry_after = Some(1);
                    return Err(p);
                }
            }
        }
        Ok(())
    }

    fn fresh_id() -> StepId {
        agora_core::crypto::random_bytes(&mut agora_core::crypto::os_rng())
    }

    /// Keeps `state` under a fresh id, unless the table is full of live
    /// pending steps. (A step that continues a run: the one it continues
    /// was taken out.)
    pub fn insert<T: Any + Send>(&self, state: T) -> Result<StepId, Problem> {
        let id = Self::fresh_id();
        let mut t = self.lock();
        self.admit(&mut t, None)?;
        t.put(
            id,
            Entry {
                deadline: Instant::now() + self.ttl,
                state: Box::new(state),
                meta: Meta {
                    client: None,
                    opened_by: None,
                },
            },
        );
        Ok(id)
    }

    /// Opens a protocol run with the message `o`: `begin` (the role's
    /// first step) makes the reply and the state to keep.
    ///
    /// Room is taken *before* `begin` runs, so a full table (`503`) or a
    /// client past its quota (`429 too-many-pending`) has changed nothing:
    /// the role never saw the message (it has not, say, entered R_0 in its
    /// replay cache). The same message sent again while its step is pending
    /// gets the same reply and step id, and costs nothing: replaying a
    /// recorded request cannot fill the table.
    pub fn open<T: Any + Send>(
        &self,
        o: Opening<'_>,
        begin: impl FnOnce() -> Result<(Vec<u8>, T), Problem>,
    ) -> Result<(Vec<u8>, StepId), Problem> {
        let mut keyed = Vec::with_capacity(o.scope.len() + 1 + o.message.len());
        keyed.extend_from_slice(o.scope.as_bytes());
        keyed.push(0);
        keyed.extend_from_slice(o.message);
        let digest = agora_core::crypto::sha256(&keyed);
        {
            let mut t = self.lock();
            let now = Instant::now();
            if let Some(id) = t.by_opening.get(&digest).copied() {
                match t.entries.get(&id) {
                    Some(e) if e.deadline > now => {
                        if let Some((_, reply)) = &e.meta.opened_by {
                            return Ok((reply.clone(), id));
                        }
                    }
                    _ => {
                        t.remove(&id);
                    }
                }
            }
            self.admit(&mut t, o.client)?;
            t.reserved += 1;
            t.count(o.client);
        }
        let reservation = Reservation {
            table: self,
            client: o.client,
            settled: false,
        };
        let (reply, state) = begin()?;
        let id = Self::fresh_id();
        let mut t = self.lock();
        reservation.settle(&mut t);
        t.put(
            id,
            Entry {
                deadline: Instant::now() + self.ttl,
                state: Box::new(state),
                meta: Meta {
                    client: o.client,
                    opened_by: Some((digest, reply.clone())),
                },
            },
        );
        Ok((reply, id))
    }

    /// Takes out the state of pending step `id`, if it is live and a `T`. A state
    /// of another type stays (a client cannot destroy another protocol's
    /// pending step by naming it in the wrong message).
    pub fn take<T: Any + Send>(&self, id: &StepId) -> Result<T, Problem> {
        self.take_until(id).map(|(state, _, _)| state)
    }

    /// Like [`PendingSteps::take`], and also returns the step's deadline and
    /// what the table knew of it, for [`PendingSteps::restore`].
    fn take_until<T: Any + Send>(&self, id: &StepId) -> Result<(T, Instant, Meta), Problem> {
        let unknown = || {
            Problem::new(StatusCode::NOT_FOUND, "unknown-step")
                .with_detail("no such pending step (expired, finished, or another protocol's)")
        };
        let mut t = self.lock();
        match t.entries.get(id) {
            Some(e) if e.deadline > Instant::now() && e.state.is::<T>() => {}
            Some(e) if e.deadline <= Instant::now() => {
                t.remove(id);
                return Err(unknown());
            }
            _ => return Err(unknown()),
        }
        let e = t.remove(id).ok_or_else(unknown)?;
        let (deadline, meta) = (e.deadline, e.meta);
        e.state
            .downcast::<T>()
            .map(|b| (*b, deadline, meta))
            .map_err(|_| unknown())
    }

    /// Puts back a state taken out by [`PendingSteps::take_until`] under its id
    /// and old deadline: the message that was refused left it as it was (a
    /// damaged or forged message must not end a run). Restoring neither
    /// extends its life nor counts against the capacity twice.
    fn restore<T: Any + Send>(&self, id: StepId, state: T, deadline: Instant, meta: Meta) {
        if deadline <= Instant::now() {
            return;
        }
        self.lock().put(
            id,
            Entry {
                deadline,
                state: Box::new(state),
                meta,
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
        let (state, deadline, meta) = self.take_until::<T>(id)?;
        let kept = state.clone();
        step(state).map_err(|e| {
            if e.leaves_state_intact() {
                self.restore(*id, kept, deadline, meta);
            }
            Problem::from(e)
        })
    }

    /// Drops expired steps; returns how many.
    pub fn purge(&self) -> usize {
        self.lock().purge(Instant::now())
    }

    /// Steps in the table (live or not yet purged).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the table holds as many steps as it takes (for readiness).
    pub fn is_full(&self) -> bool {
        let mut t = self.lock();
        t.held() >= self.capacity && {
            t.purge(Instant::now());
            t.held() >= self.capacity
        }
    }
}

/// Room taken for an opening whose role is working: given back when the
/// role refuses the message (or panics), turned into the step otherwise.
struct Reservation<'a> {
    table: &'a PendingSteps,
    client: Option<IpAddr>,
    settled: bool,
}

impl Reservation<'_> {
    /// Gives the room back under the lock the caller holds (the step is
    /// about to be put in its place).
    fn settle(mut self, t: &mut Table) {
        t.reserved -= 1;
        t.uncount(self.client);
        self.settled = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut t = self.table.lock();
            t.reserved -= 1;
            t.uncount(self.client);
        }
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

    fn opening(message: &[u8], client: [u8; 4]) -> Opening<'_> {
        Opening {
            scope: "test",
            message,
            client: Some(IpAddr::from(client)),
        }
    }

    #[test]
    fn a_replayed_opening_gets_the_same_step_and_costs_no_slot() {
        let t = PendingSteps::new(4, Duration::from_secs(60));
        let mut began = 0;
        let first = t
            .open(opening(b"request", [192, 0, 2, 1]), || {
                began += 1;
                Ok((b"challenge".to_vec(), 1u8))
            })
            .expect("room");
        for _ in 0..10_000 {
            let again = t
                .open(opening(b"request", [192, 0, 2, 9]), || {
                    began += 1;
                    Ok((b"another".to_vec(), 2u8))
                })
                .expect("the same step");
            assert_eq!(again, first);
        }
        assert_eq!((began, t.len()), (1, 1), "one step, begun once");
        // Others still find room.
        t.open(opening(b"other", [192, 0, 2, 2]), || Ok((vec![], 3u8)))
            .expect("room for another request");
        // Once its step is taken, the opening is a new one (the role decides
        // whether it is a replay).
        let (_, id) = first;
        assert_eq!(t.take::<u8>(&id).expect("live"), 1);
        let fresh = t
            .open(opening(b"request", [192, 0, 2, 1]), || Ok((vec![], 4u8)))
            .expect("room");
        assert_ne!(fresh.1, id);
    }

    #[test]
    fn a_refusal_for_room_happens_before_the_role_sees_the_message() {
        let t = PendingSteps::new(1, Duration::from_secs(60));
        t.open(opening(b"first", [192, 0, 2, 1]), || Ok((vec![], 1u8)))
            .expect("room");
        let p = t
            .open(
                opening(b"second", [192, 0, 2, 2]),
                || -> Result<(Vec<u8>, u8), Problem> {
                    panic!("the role ran although the table was full")
                },
            )
            .expect_err("full");
        assert_eq!(
            (p.status, p.code),
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
        );
    }

    #[test]
    fn one_client_holds_at_most_its_quota_and_a_refused_opening_gives_its_room_back() {
        let t = PendingSteps::new(100, Duration::from_secs(60)).with_quotas(2);
        let me = [192, 0, 2, 1];
        for m in [b"a", b"b"] {
            t.open(opening(m, me), || Ok((vec![], 0u8)))
                .expect("within quota");
        }
        let p = t
            .open(opening(b"c", me), || -> Result<(Vec<u8>, u8), Problem> {
                panic!("the role ran past the quota")
            })
            .expect_err("past quota");
        assert_eq!(
            (p.status, p.code),
            (StatusCode::TOO_MANY_REQUESTS, "too-many-pending")
        );
        assert_eq!(p.retry_after, Some(1));
        t.open(opening(b"c", [192, 0, 2, 2]), || Ok((vec![], 0u8)))
            .expect("another client has its own quota");
        // A role that refuses its message leaves no room taken.
        let t = PendingSteps::new(1, Duration::from_secs(60)).with_quotas(1);
        for _ in 0..3 {
            let r = t.open(
                opening(b"forged", me),
                || -> Result<(Vec<u8>, u8), Problem> {
                    Err(Problem::from(agora_core::Error::Crypto))
                },
            );
            assert_eq!(r.expect_err("refused").code, "crypto");
        }
        t.open(opening(b"genuine", me), || Ok((vec![], 0u8)))
            .expect("the refusals took no room");
    }

    #[test]
    fn ids_parse_strictly() {
        assert!(parse_id(&"ab".repeat(16)).is_ok());
        assert!(parse_id("abc").is_err());
        assert!(parse_id(&"ab".repeat(17)).is_err());
    }
}
