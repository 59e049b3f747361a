//! STP transactions (agora-stp) over the simulated network: chains of ST
//! processes and the commit authority, on a network that drops, copies,
//! damages, delays and reorders, with a commit authority that crashes and
//! is rebuilt on its log.
//!
//! # The scenario
//!
//! [`Scenario::transactions`] independent transactions run at once, each a
//! chain of [`Scenario::parties`] processes: p0 begins with p1, and each
//! p_i, once its subtransaction with p_{i-1} has started, brings p_{i+1} in
//! (a Join through that subtransaction). In every subtransaction the
//! holder of the send token sends one or two Data messages and passes the
//! token with the last, for a number of turns drawn from the seed (at most
//! [`Scenario::max_turns`]); the last turn's holder ends it. Each party
//! then decides commit with its final context. A party decides on its
//! subtransaction with p_{i-1} only once the one it brought in has started
//! (otherwise the commit authority may decide the transaction before it
//! registers the Join, which rule 2 then refuses).
//!
//! By seed, one party of a transaction may deviate ([`Fate`]): reject its
//! invitation, abort before the start, abort as soon as it opens, abort
//! instead of committing, or vanish after a few events of its own (a crash
//! for good: the others are left to the deadline).
//!
//! # Addresses and frames
//!
//! The commit authority is [`CA`] (the CPO server's slot of [`Addr`]);
//! party `i` (numbered across all transactions) is [`party_addr`]`(i)`.
//! Parties send each other the signed STP messages as they are (the
//! sender's address tells a party which of its subtransactions a message
//! is for); a party sends the commit authority its signed Vote or Decide,
//! or a Status, as they are; the commit authority answers the sender with
//! one kind byte ([`kind`]) and the answer's bytes, as a request-response
//! transport would.
//!
//! # How each actor copes
//!
//! - **A party** resends on a timeout (doubling from
//!   [`Scenario::timeout_ms`] up to [`Scenario::max_backoff_ms`], back to
//!   the start on progress): its vote (and, if it sent the opening, the
//!   opening) until Started comes; the Data and End it sent since it last
//!   heard from its peer (the peer speaks only once it holds the token,
//!   which it got with the last of them); its Decide until the Outcome
//!   comes. Past the deadline it also asks for the transaction's Status. A
//!   message from its peer that its role cannot take yet (out of order, or
//!   before its own Started) is held back (at most [`MAX_HELD`]) and tried
//!   again after the next one it takes. Everything the commit authority
//!   answers is idempotent, so resending is always safe. A party whose
//!   commit authority says, at or after the deadline, that it never heard
//!   of the transaction, stops: no vote can create it any more.
//! - **The commit authority** answers every message from its log. At
//!   random times ([`Crashes`]) it crashes: the [`CommitAuthority`] is
//!   dropped (its Merkle-tree cache and validated-certificate cache with
//!   it), messages to it are lost while it is down, and it is rebuilt on
//!   the same [`MemoryCommitLog`] with the same key. It also crashes, now
//!   and then, right after a step has been logged and before its answer
//!   leaves. It signs a tree head every [`Scenario::seal_ms`] (and, by
//!   chance, at once when an answer waits for one, as the node does), and
//!   aborts what is past its deadline every [`Scenario::sweep_ms`] and at
//!   each restart.
//!
//! # What [`World::check`] asserts at the end of a run
//!
//! One [`Property`] each: every party that holds an outcome holds one that
//! verifies ([`verify_outcome`]) and whose leaf is the log's leaf for its
//! transaction; a committed transaction has both parties of every
//! subtransaction at the final context its leaf records (their decisions,
//! their transcripts and the data they exchanged agree), and includes every
//! subtransaction that started; no transaction has two leaves; every
//! transaction is decided, and one decided by the deadline sweep was
//! decided within a sweep and a crash of its deadline; no role refused
//! what the commit authority signed, and the commit authority never failed
//! inside; the run finished.
//!
//! A run is reproducible from its seed ([`replay`]): the same seed gives
//! the same [`Summary`], whose transcript hashes every delivered message
//! and its time.

use crate::net::{chance, Addr, NetConfig, NetStats, Outbox, Packet, SimNet};
use crate::{now_of, EPOCH, MAX_EVENTS, MAX_RUN_MS};
use agora_core::crypto::SigningKey;
use agora_core::wire::{self, cose, tags};
use agora_core::{Error, KeyId, Timestamp};
use agora_pki::{Agency, IdentityParams, IdentityTrust, PartyRole};
use agora_stp::ca::{Answer, CommitAuthority};
use agora_stp::ids::{Context, Pair, Tid};
use agora_stp::log::{CommitLog, LogUnit, MemoryCommitLog, TxRecord};
use agora_stp::msg::{OutcomeLeaf, Pending, Started, Status};
use agora_stp::outcome::verify_outcome;
use agora_stp::process::{self, AwaitOutcome, AwaitStarted, Decided, Invitation, Open, Party};
use agora_stp::rules::AbortReason;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeSet;
use std::fmt;

// --------------------------------------------------------------- the world

/// The commit authority on the simulated network.
pub const CA: Addr = Addr::Server;

/// Party `i` (numbered across all transactions) on the simulated network.
pub fn party_addr(i: u8) -> Addr {
    Addr::Buyer(i)
}

/// Most messages a party holds back for one subtransaction (a bound on its
/// memory; a message held back is resent by its sender anyway).
pub const MAX_HELD: usize = 16;

/// Most transactions the deadline sweep aborts at once.
const MAX_EXPIRED_PER_SWEEP: usize = 64;

const DAY: u64 = 86_400;

/// Kinds of the commit authority's answer frames (their first byte).
pub mod kind {
    /// `[STARTED, signed Started]`.
    pub const STARTED: u8 = 0x40;
    /// `[PENDING, signed Pending]`.
    pub const PENDING: u8 = 0x41;
    /// `[OUTCOME, Outcome]`.
    pub const OUTCOME: u8 = 0x42;
    /// `[SEALING, leaf index (u64, big-endian)]`: ask again after the next
    /// tree head.
    pub const SEALING: u8 = 0x43;
    /// `[REFUSED]`: the commit authority refused the message.
    pub const REFUSED: u8 = 0x44;
}

/// How the commit authority crashes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crashes {
    /// Shortest time up between two crashes (ms); 0: no crashes at random
    /// times.
    pub min_up_ms: u64,
    /// Longest time up between two crashes (ms).
    pub max_up_ms: u64,
    /// Shortest time down (ms).
    pub min_down_ms: u64,
    /// Longest time down (ms).
    pub max_down_ms: u64,
    /// Probability that it crashes right after a step was logged, before
    /// its answer leaves.
    pub in_step: f64,
}

impl Crashes {
    /// Never.
    pub fn none() -> Crashes {
        Crashes {
            min_up_ms: 0,
            max_up_ms: 0,
            min_down_ms: 0,
            max_down_ms: 0,
            in_step: 0.0,
        }
    }

    /// Up 2 to 20 s at a time, down 0.1 to 4 s; 3% of the steps crash it
    /// before it answers.
    pub fn often() -> Crashes {
        Crashes {
            min_up_ms: 2_000,
            max_up_ms: 20_000,
            min_down_ms: 100,
            max_down_ms: 4_000,
            in_step: 0.03,
        }
    }
}

/// The chances that one party of a transaction deviates (at most one per
/// transaction; the rest of the time everyone commits).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fates {
    /// An invitee rejects its invitation.
    pub reject: f64,
    /// A party aborts (before the start, as soon as it opens, or instead
    /// of committing: one of the three by seed).
    pub abort: f64,
    /// A party vanishes after a few events of its own.
    pub vanish: f64,
}

impl Fates {
    /// Everyone commits.
    pub fn none() -> Fates {
        Fates {
            reject: 0.0,
            abort: 0.0,
            vanish: 0.0,
        }
    }
}

/// Who takes part, how patient they are, how the commit authority behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scenario {
    /// Independent transactions at once.
    pub transactions: u8,
    /// Parties in each transaction's chain (at least 2).
    pub parties: u8,
    /// Most turns (token holders) in one subtransaction.
    pub max_turns: u8,
    /// A transaction's deadline, after p0 begins it (seconds).
    pub deadline_secs: u64,
    /// A party's first timeout (ms): above twice the network's longest
    /// delay, so that an answer on its way is rarely taken for lost.
    pub timeout_ms: u64,
    /// A party's longest timeout (ms).
    pub max_backoff_ms: u64,
    /// The commit authority signs a tree head this often (ms).
    pub seal_ms: u64,
    /// The commit authority aborts what is past its deadline this often
    /// (ms).
    pub sweep_ms: u64,
    /// Probability that the commit authority, asked for an outcome no tree
    /// head covers yet, signs one at once (as the node does) rather than
    /// answering "sealing" and leaving it to its schedule.
    pub seal_on_demand: f64,
    /// How the commit authority crashes.
    pub crashes: Crashes,
    /// How parties deviate.
    pub fates: Fates,
    /// Breaks [`Property::OneLeafPerTransaction`] on purpose: after the
    /// first tree head, a copy of the first leaf is appended to the log
    /// under another record (as a log that took a second decision for one
    /// transaction would hold it). For the tests of the checks and of the
    /// replay of a failing seed.
    pub second_leaf_for_testing_only: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            transactions: 2,
            parties: 4,
            max_turns: 3,
            deadline_secs: 120,
            timeout_ms: 4_500,
            max_backoff_ms: 20_000,
            seal_ms: 1_000,
            sweep_ms: 5_000,
            seal_on_demand: 0.5,
            crashes: Crashes::often(),
            fates: Fates {
                reject: 0.1,
                abort: 0.2,
                vanish: 0.1,
            },
            second_leaf_for_testing_only: false,
        }
    }
}

impl Scenario {
    /// Everyone commits; the commit authority never crashes.
    pub fn calm() -> Scenario {
        Scenario {
            crashes: Crashes::none(),
            fates: Fates::none(),
            ..Scenario::default()
        }
    }

    /// How long after its deadline the sweep decides a transaction at the
    /// latest: one sweep interval and one crash (a restarted commit
    /// authority sweeps at once), in whole seconds, plus one.
    pub fn expiry_slack_secs(&self) -> u64 {
        (self.sweep_ms + self.crashes.max_down_ms).div_ceil(1000) + 1
    }
}

/// What one party of a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Takes part and commits.
    Commit,
    /// Rejects its invitation (an invitee only).
    Reject,
    /// Votes to accept, then at once sends an abort (before the start).
    AbortBeforeStart,
    /// Aborts as soon as its first subtransaction opens.
    AbortWhenOpen,
    /// Decides abort instead of commit at the end.
    AbortAtEnd,
    /// Handles this many events (messages and timers), then no more.
    Vanish {
        /// Events handled before it vanishes.
        after: u32,
    },
}

// ------------------------------------------------------------- the outbox

fn frame(k: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(1 + body.len());
    f.push(k);
    f.extend_from_slice(body);
    f
}

/// Uniform in `lo..=hi`.
fn between(rng: &mut ChaCha20Rng, lo: u64, hi: u64) -> u64 {
    let hi = hi.max(lo);
    lo + rng.next_u64() % (hi - lo + 1)
}

// ------------------------------------------------------ commit authority

/// What the commit authority went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaStats {
    /// Messages answered.
    pub answered: u64,
    /// Messages it refused (damaged, or refused by its rules).
    pub refused: u64,
    /// Messages lost because it was down.
    pub lost_while_down: u64,
    /// Crashes at random times.
    pub crashes: u64,
    /// Crashes after a step was logged, before its answer left.
    pub crashes_in_step: u64,
    /// Tree heads signed.
    pub heads: u64,
    /// Transactions aborted by the deadline sweep.
    pub expired: u64,
}

/// The commit authority, its log, and its crashes.
#[derive(Debug)]
pub struct CaActor {
    seed: [u8; 32],
    trust: IdentityTrust,
    /// `None` while it is down.
    ca: Option<CommitAuthority>,
    /// Its log, which survives every crash.
    pub log: MemoryCommitLog,
    rng: ChaCha20Rng,
    crashes: Crashes,
    seal_ms: u64,
    sweep_ms: u64,
    seal_on_demand: f64,
    next_crash: Option<u64>,
    restart_at: Option<u64>,
    next_seal: u64,
    next_sweep: u64,
    /// What it went through.
    pub stats: CaStats,
    /// Errors from inside the commit authority (storage, overload, misuse):
    /// none may happen on an in-memory log.
    pub internal_errors: Vec<String>,
}

impl CaActor {
    fn new(seed: [u8; 32], trust: IdentityTrust, rng: ChaCha20Rng, sc: &Scenario) -> CaActor {
        let mut a = CaActor {
            seed,
            ca: None,
            trust,
            log: MemoryCommitLog::new(),
            rng,
            crashes: sc.crashes,
            seal_ms: sc.seal_ms.max(1),
            sweep_ms: sc.sweep_ms.max(1),
            seal_on_demand: sc.seal_on_demand,
            next_crash: None,
            restart_at: None,
            next_seal: sc.seal_ms.max(1),
            next_sweep: sc.sweep_ms.max(1),
            stats: CaStats::default(),
            internal_errors: Vec::new(),
        };
        a.start(0);
        a
    }

    /// Its verification key.
    pub fn verifying_key(&self) -> agora_core::crypto::VerifyingKey {
        SigningKey::from_seed(&self.seed).verifying_key()
    }

    /// Whether it is up.
    pub fn is_up(&self) -> bool {
        self.ca.is_some()
    }

    /// (Re)starts: a new commit authority on the same log with the same
    /// key; it sweeps at once.
    fn start(&mut self, now: u64) {
        self.ca = Some(CommitAuthority::new(
            SigningKey::from_seed(&self.seed),
            self.trust.clone().with_cache(),
        ));
        self.restart_at = None;
        self.next_sweep = now;
        self.next_seal = now + self.seal_ms;
        self.next_crash = (self.crashes.min_up_ms > 0).then(|| {
            now + between(
                &mut self.rng,
                self.crashes.min_up_ms,
                self.crashes.max_up_ms,
            )
        });
    }

    fn crash(&mut self, now: u64) {
        self.ca = None;
        self.next_crash = None;
        self.restart_at = Some(
            now + between(
                &mut self.rng,
                self.crashes.min_down_ms,
                self.crashes.max_down_ms,
            )
            .max(1),
        );
    }

    fn internal(&mut self, what: &str, e: &Error) {
        if matches!(
            e,
            Error::Storage(_) | Error::Overloaded | Error::ApiMisuse(_)
        ) {
            self.internal_errors.push(format!("{what}: {e}"));
        }
    }

    /// Whether anything is left for its timers: an undecided transaction,
    /// or a leaf no tree head covers.
    fn has_work(&self) -> bool {
        let undecided = self
            .log
            .undecided_past(Timestamp(u64::MAX), 1)
            .map_or(true, |v| !v.is_empty());
        let leaves = self.log.leaf_count().unwrap_or(0);
        let covered = self.log.latest_head().ok().flatten().map_or(0, |(s, _)| s);
        undecided || covered < leaves
    }

    fn next_timer(&self) -> u64 {
        match self.restart_at {
            Some(t) => t,
            None => [Some(self.next_seal), Some(self.next_sweep), self.next_crash]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX),
        }
    }

    fn on_timer(&mut self, now: u64) {
        if let Some(t) = self.restart_at {
            if t <= now {
                self.start(now);
            }
            return;
        }
        if self.next_crash.is_some_and(|t| t <= now) {
            self.stats.crashes += 1;
            self.crash(now);
            return;
        }
        let t = now_of(now);
        if self.next_sweep <= now {
            self.next_sweep = now + self.sweep_ms;
            if let Some(ca) = &self.ca {
                match ca.expire_due(t, &self.log, MAX_EXPIRED_PER_SWEEP) {
                    Ok(n) => self.stats.expired += n as u64,
                    Err(e) => self.internal("the deadline sweep", &e),
                }
            }
        }
        if self.next_seal <= now {
            self.next_seal = now + self.seal_ms;
            self.seal(t);
        }
    }

    fn seal(&mut self, t: Timestamp) {
        let Some(ca) = &self.ca else {
            return;
        };
        let before = self.log.latest_head().ok().flatten().map(|(s, _)| s);
        match ca.seal(t, &self.log) {
            Ok(_) => {
                let after = self.log.latest_head().ok().flatten().map(|(s, _)| s);
                if after != before {
                    self.stats.heads += 1;
                }
            }
            Err(e) => self.internal("sealing", &e),
        }
    }

    fn on_message(&mut self, out: &mut Outbox, from: Addr, bytes: &[u8]) {
        let Some(ca) = &self.ca else {
            self.stats.lost_while_down += 1;
            return;
        };
        let now = out.now();
        let mut answer = ca.handle(now, bytes, &self.log);
        if let Ok(Answer::Sealing { .. }) = answer {
            if chance(&mut self.rng, self.seal_on_demand) {
                self.seal(now);
                if let Some(ca) = &self.ca {
                    answer = ca.handle(now, bytes, &self.log);
                }
            }
        }
        let reply = match answer {
            Ok(Answer::Started(b)) => frame(kind::STARTED, &b),
            Ok(Answer::Pending(b)) => frame(kind::PENDING, &b),
            Ok(Answer::Outcome(b)) => frame(kind::OUTCOME, &b),
            Ok(Answer::Sealing { index }) => frame(kind::SEALING, &index.to_be_bytes()),
            Err(e) => {
                self.internal("a step", &e);
                self.stats.refused += 1;
                frame(kind::REFUSED, &[])
            }
        };
        if chance(&mut self.rng, self.crashes.in_step) {
            // Logged, not answered.
            self.stats.crashes_in_step += 1;
            self.crash(out.now_ms);
            return;
        }
        self.stats.answered += 1;
        out.send(from, reply);
    }
}

// ------------------------------------------------------------------ party

/// Where one subtransaction is, seen from one of its parties.
#[derive(Debug)]
enum Phase {
    /// Voted to accept; waiting for Started.
    Starting(AwaitStarted),
    /// Voted, then sent an abort before the start; waiting for the outcome.
    Aborting,
    /// Rejected the invitation; waiting for the outcome.
    Rejected,
    /// Data flows.
    Open(Open),
    /// Decided; waiting for the outcome.
    Deciding(AwaitOutcome),
    /// The outcome, verified by the role.
    Decided(Box<Decided>),
    /// The transaction's outcome came while this subtransaction had not
    /// decided (it aborted), or the party stopped.
    Closed,
}

/// One subtransaction of a party.
#[derive(Debug)]
pub struct Sub {
    /// The other party.
    pub peer: Addr,
    /// Whether this party sent the opening.
    pub initiator: bool,
    /// The transaction.
    pub tid: Tid,
    /// The pair.
    pub pair: Pair,
    /// The deadline.
    pub deadline: Timestamp,
    phase: Phase,
    /// The signed opening (resent by the initiator until Started).
    opening: Vec<u8>,
    /// Messages for the commit authority, resent until the outcome.
    to_ca: Vec<Vec<u8>>,
    /// Data and End sent since the peer last spoke.
    unacked: Vec<Vec<u8>>,
    /// Messages from the peer the role could not take yet.
    held: Vec<Vec<u8>>,
    /// Messages per turn (see [`Scenario::max_turns`]).
    script: Vec<u8>,
    turn: usize,
    /// Whether the commit authority's Started came.
    pub started: bool,
    /// Payloads sent, in order.
    pub sent: Vec<Vec<u8>>,
    /// Payloads received, in order.
    pub received: Vec<Vec<u8>>,
    /// The context this party committed with, if it did.
    pub committed_with: Option<Context>,
    /// Whether this party decided abort.
    pub aborted: bool,
    /// The signed opening, Data and End, as of its decision.
    pub transcript: Vec<Vec<u8>>,
}

impl Sub {
    fn new(
        peer: Addr,
        initiator: bool,
        o: &process::Opening,
        script: Vec<u8>,
        phase: Phase,
    ) -> Sub {
        Sub {
            peer,
            initiator,
            tid: o.tid,
            pair: o.pair,
            deadline: o.deadline,
            phase,
            opening: Vec::new(),
            to_ca: Vec::new(),
            unacked: Vec::new(),
            held: Vec::new(),
            script,
            turn: 0,
            started: false,
            sent: Vec::new(),
            received: Vec::new(),
            committed_with: None,
            aborted: false,
            transcript: Vec::new(),
        }
    }

    /// A word for the step it is in.
    pub fn step(&self) -> &'static str {
        match &self.phase {
            Phase::Starting(_) => "starting",
            Phase::Aborting => "aborting",
            Phase::Rejected => "rejected",
            Phase::Open(o) if o.ended() => "ended",
            Phase::Open(_) => "open",
            Phase::Deciding(_) => "deciding",
            Phase::Decided(_) => "decided",
            Phase::Closed => "closed",
        }
    }

    /// The role's verified outcome, if this subtransaction decided and got
    /// it.
    pub fn decided(&self) -> Option<&Decided> {
        match &self.phase {
            Phase::Decided(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the subtransaction has started (open, or decided since).
    fn past_start(&self) -> bool {
        matches!(
            self.phase,
            Phase::Open(_) | Phase::Deciding(_) | Phase::Decided(_)
        )
    }
}

/// An Outcome a party holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOutcome {
    /// The encoded Outcome, as the commit authority sent it.
    pub bytes: Vec<u8>,
    /// Its leaf.
    pub leaf: OutcomeLeaf,
}

/// Where a party ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartyEnd {
    /// It holds a committed outcome.
    Committed,
    /// It holds an aborted outcome (the [`AbortReason`] code).
    Aborted(u8),
    /// The commit authority, at or after the deadline, had never heard of
    /// the transaction.
    NeverStarted,
    /// It vanished ([`Fate::Vanish`]) without an outcome.
    Vanished,
    /// No one invited it (an earlier party of its chain aborted, rejected
    /// or vanished before the Join, or the Join came too late).
    Uninvited,
    /// Still waiting when the run stopped.
    Unfinished,
}

/// What a party went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyStats {
    /// Timeouts on which it resent something.
    pub resends: u64,
    /// Messages its role refused or that came out of turn (damaged ones
    /// among them).
    pub rejected: u64,
    /// Copies of messages it had taken.
    pub copies: u64,
    /// Messages held back and taken later.
    pub taken_late: u64,
    /// Refusals it got from the commit authority.
    pub refused: u64,
    /// "Sealing" answers it got.
    pub sealing: u64,
    /// Status requests it sent past the deadline.
    pub status: u64,
}

/// An ST process driving one or two subtransactions of its chain.
#[derive(Debug)]
pub struct PartyActor {
    /// Its number across all transactions.
    pub index: u8,
    /// Its transaction (chain).
    pub chain: u8,
    /// Its place in the chain.
    pub pos: u8,
    party: Party,
    rng: ChaCha20Rng,
    prev: Option<(Addr, KeyId)>,
    next: Option<(Addr, KeyId)>,
    /// What it does.
    pub fate: Fate,
    deadline_secs: u64,
    timeout_ms: u64,
    max_backoff_ms: u64,
    seal_retry_ms: u64,
    /// Scripts of its subtransactions with the previous and the next party.
    scripts: [Vec<u8>; 2],
    /// Its subtransactions: with the previous party, with the next.
    pub subs: [Option<Sub>; 2],
    join_failed: bool,
    /// The outcome it holds.
    pub outcome: Option<HeldOutcome>,
    never_started: bool,
    gone: bool,
    events: u32,
    timer: Option<u64>,
    backoff_ms: u64,
    /// What it went through.
    pub stats: PartyStats,
    /// What its role refused that the commit authority signed (none may
    /// be).
    pub anomalies: Vec<String>,
}

impl PartyActor {
    /// Its UID.
    pub fn uid(&self) -> KeyId {
        self.party.uid()
    }

    /// Its identity certificate.
    pub fn cert(&self) -> &[u8] {
        &self.party.cert
    }

    /// The transaction it takes part in, once it does.
    pub fn tid(&self) -> Option<Tid> {
        self.subs.iter().flatten().map(|s| s.tid).next()
    }

    fn deadline(&self) -> Option<Timestamp> {
        self.subs.iter().flatten().map(|s| s.deadline).next()
    }

    /// Where it ended.
    pub fn end(&self) -> PartyEnd {
        if let Some(o) = &self.outcome {
            return if o.leaf.committed() {
                PartyEnd::Committed
            } else {
                PartyEnd::Aborted(o.leaf.outcome)
            };
        }
        if self.never_started {
            PartyEnd::NeverStarted
        } else if self.gone {
            PartyEnd::Vanished
        } else if self.subs.iter().all(Option::is_none) && self.pos > 0 {
            PartyEnd::Uninvited
        } else {
            PartyEnd::Unfinished
        }
    }

    fn done(&self) -> bool {
        self.gone || self.outcome.is_some() || self.never_started
    }

    /// One more event; whether it is still there for it.
    fn tick(&mut self) -> bool {
        if self.gone {
            return false;
        }
        self.events += 1;
        if let Fate::Vanish { after } = self.fate {
            if self.events > after {
                self.gone = true;
                self.timer = None;
                return false;
            }
        }
        true
    }

    fn progress(&mut self, out: &Outbox) {
        if self.done() {
            return;
        }
        self.backoff_ms = self.timeout_ms;
        self.timer = Some(out.now_ms + self.timeout_ms);
    }

    fn anomaly(&mut self, what: String) {
        self.anomalies
            .push(format!("p{} (chain {}): {what}", self.index, self.chain));
    }

    fn on_timer(&mut self, out: &mut Outbox) {
        self.timer = None;
        if !self.tick() || self.done() {
            return;
        }
        if self.pos == 0 && self.subs[1].is_none() {
            self.begin(out);
            return;
        }
        let mut resent = false;
        for s in self.subs.iter_mut().flatten() {
            let (ca, peer) = match &s.phase {
                Phase::Starting(_) => (true, s.initiator),
                Phase::Aborting | Phase::Rejected => (true, false),
                Phase::Open(_) => (false, true),
                Phase::Deciding(_) => (true, true),
                Phase::Decided(_) | Phase::Closed => (false, false),
            };
            if ca {
                for m in &s.to_ca {
                    out.send(CA, m.clone());
                    resent = true;
                }
            }
            if peer {
                if matches!(s.phase, Phase::Starting(_)) {
                    out.send(s.peer, s.opening.clone());
                    resent = true;
                }
                for m in &s.unacked {
                    out.send(s.peer, m.clone());
                    resent = true;
                }
            }
        }
        if let (Some(tid), Some(deadline)) = (self.tid(), self.deadline()) {
            if out.now() >= deadline {
                out.send(CA, wire::encode(&Status { tid }));
                self.stats.status += 1;
            }
        }
        if resent {
            self.stats.resends += 1;
        }
        self.backoff_ms = (self.backoff_ms * 2).min(self.max_backoff_ms);
        self.timer = Some(out.now_ms + self.backoff_ms);
    }

    /// p0 begins the transaction with p1.
    fn begin(&mut self, out: &mut Outbox) {
        let Some((peer, peer_uid)) = self.next else {
            return;
        };
        let now = out.now();
        let tid = Tid::random(&mut self.rng);
        let deadline = now.plus_secs(self.deadline_secs);
        match process::begin(&self.party, &mut self.rng, now, tid, peer_uid, deadline) {
            Ok((wait, opened)) => self.initiated(out, peer, wait, opened),
            Err(e) => self.anomaly(format!("could not begin: {e}")),
        }
    }

    /// Sent an opening (Begin or Join) and voted: the subtransaction with
    /// the next party.
    fn initiated(
        &mut self,
        out: &mut Outbox,
        peer: Addr,
        wait: AwaitStarted,
        opened: process::Opened,
    ) {
        let script = self.scripts[1].clone();
        let mut s = Sub::new(
            peer,
            true,
            &wait.opening().clone(),
            script,
            Phase::Starting(wait),
        );
        out.send(peer, opened.opening.clone());
        out.send(CA, opened.vote.clone());
        s.opening = opened.opening;
        s.to_ca = vec![opened.vote];
        if self.fate == Fate::AbortBeforeStart {
            self.abort_before_start(out, &mut s);
        }
        self.subs[1] = Some(s);
        self.progress(out);
    }

    fn abort_before_start(&mut self, out: &mut Outbox, s: &mut Sub) {
        if let Phase::Starting(wait) = &s.phase {
            let d = wait.abort(&self.party);
            out.send(CA, d.clone());
            s.to_ca.push(d);
            s.aborted = true;
            s.phase = Phase::Aborting;
        }
    }

    fn on_message(&mut self, out: &mut Outbox, from: Addr, bytes: &[u8]) {
        if !self.tick() {
            return;
        }
        if from == CA {
            self.on_ca(out, bytes);
        } else if self.prev.is_some_and(|(a, _)| a == from) {
            self.on_peer(out, 0, bytes);
        } else if self.next.is_some_and(|(a, _)| a == from) {
            self.on_peer(out, 1, bytes);
        } else {
            self.stats.rejected += 1;
        }
    }

    fn on_peer(&mut self, out: &mut Outbox, k: usize, bytes: &[u8]) {
        if self.done() {
            return;
        }
        let tag = cose::peek_tag(bytes).ok();
        if tag == Some(tags::STP_BEGIN) || tag == Some(tags::STP_JOIN) {
            if k == 0 && self.subs[0].is_none() {
                self.invited(out, bytes);
            } else {
                self.stats.copies += 1;
            }
            return;
        }
        let Some(s) = &mut self.subs[k] else {
            self.stats.rejected += 1;
            return;
        };
        match &s.phase {
            Phase::Open(_) => self.take(out, k, bytes),
            Phase::Starting(_) => hold(s, bytes),
            _ => self.stats.copies += 1,
        }
    }

    /// A Begin or Join from the previous party.
    fn invited(&mut self, out: &mut Outbox, bytes: &[u8]) {
        let Some((peer, peer_uid)) = self.prev else {
            return;
        };
        let inv = match Invitation::receive(&self.party, out.now(), bytes) {
            Ok(i) if i.opening().initiator == peer_uid => i,
            _ => {
                self.stats.rejected += 1;
                return;
            }
        };
        let o = inv.opening().clone();
        let script = self.scripts[0].clone();
        let s = if self.fate == Fate::Reject {
            let v = inv.reject(&self.party, &mut self.rng);
            out.send(CA, v.clone());
            let mut s = Sub::new(peer, false, &o, script, Phase::Rejected);
            s.to_ca = vec![v];
            s.aborted = true;
            s
        } else {
            let (wait, v) = inv.accept(&self.party, &mut self.rng);
            out.send(CA, v.clone());
            let mut s = Sub::new(peer, false, &o, script, Phase::Starting(wait));
            s.to_ca = vec![v];
            if self.fate == Fate::AbortBeforeStart {
                self.abort_before_start(out, &mut s);
            }
            s
        };
        self.subs[0] = Some(s);
        self.progress(out);
    }

    fn on_ca(&mut self, out: &mut Outbox, bytes: &[u8]) {
        if self.done() {
            return;
        }
        let Some((&k, body)) = bytes.split_first() else {
            self.stats.rejected += 1;
            return;
        };
        match k {
            kind::STARTED => self.on_started(out, body),
            kind::OUTCOME => self.on_outcome(body),
            kind::PENDING => self.on_pending(body),
            kind::SEALING => {
                self.stats.sealing += 1;
                let soon = out.now_ms + self.seal_retry_ms;
                self.timer = Some(self.timer.map_or(soon, |t| t.min(soon)));
            }
            kind::REFUSED => self.stats.refused += 1,
            _ => self.stats.rejected += 1,
        }
    }

    fn on_started(&mut self, out: &mut Outbox, body: &[u8]) {
        let Ok(st) = cose::verify::<Started>(body, &self.party.ca) else {
            self.stats.rejected += 1;
            return;
        };
        let me = self.uid();
        let Some(k) = (0..2).find(|&k| {
            self.subs[k]
                .as_ref()
                .is_some_and(|s| s.pair == st.pair && s.tid == st.tid)
        }) else {
            self.stats.rejected += 1;
            return;
        };
        let now = out.now();
        let Some(s) = &mut self.subs[k] else {
            return;
        };
        let Phase::Starting(wait) = &s.phase else {
            // Started again (a copy, or the answer to a resent vote).
            self.stats.copies += 1;
            return;
        };
        let open = match wait.on_started(&self.party, now, body) {
            Ok(o) => o,
            Err(e) => {
                if st.to == me {
                    self.anomaly(format!("refused the CA's Started: {e}"));
                } else {
                    self.stats.rejected += 1;
                }
                return;
            }
        };
        s.phase = Phase::Open(open);
        s.started = true;
        self.progress(out);
        if self.fate == Fate::AbortWhenOpen {
            self.decide(out, k, false);
            return;
        }
        if k == 0 && self.subs[1].is_none() {
            self.join(out);
        }
        self.act(out, k);
        self.drain(out, k);
        self.maybe_decide(out, k);
        if k == 1 {
            // The subtransaction it brought in has started: the one it came
            // through may decide now.
            self.maybe_decide(out, 0);
        }
    }

    /// Brings the next party in through the open subtransaction with the
    /// previous one.
    fn join(&mut self, out: &mut Outbox) {
        let Some((peer, peer_uid)) = self.next else {
            return;
        };
        let Some(Sub {
            phase: Phase::Open(via),
            ..
        }) = &self.subs[0]
        else {
            return;
        };
        match process::join(&self.party, &mut self.rng, out.now(), via, peer_uid) {
            Ok((wait, opened)) => self.initiated(out, peer, wait, opened),
            Err(_) => self.join_failed = true,
        }
    }

    /// Sends this party's turn if it holds the token.
    fn act(&mut self, out: &mut Outbox, k: usize) {
        let (index, chain) = (self.index, self.chain);
        let Some(s) = &mut self.subs[k] else {
            return;
        };
        let Phase::Open(open) = &mut s.phase else {
            return;
        };
        if !open.has_token() || s.script.is_empty() {
            return;
        }
        let last = s.turn + 1 >= s.script.len();
        let n = s.script[s.turn.min(s.script.len() - 1)];
        for m in 0..n {
            let pass = !last && m + 1 == n;
            let payload = format!(
                "chain {chain} sub {k} turn {} message {m} from p{index}",
                s.turn
            )
            .into_bytes();
            match open.send(&self.party, &payload, pass) {
                Ok(b) => {
                    out.send(s.peer, b.clone());
                    s.unacked.push(b);
                    s.sent.push(payload);
                }
                Err(e) => {
                    self.anomalies
                        .push(format!("p{index}: could not send: {e}"));
                    return;
                }
            }
        }
        if last {
            match open.end(&self.party) {
                Ok(b) => {
                    out.send(s.peer, b.clone());
                    s.unacked.push(b);
                }
                Err(e) => self.anomalies.push(format!("p{index}: could not end: {e}")),
            }
        } else {
            s.turn += 1;
        }
        self.maybe_decide(out, k);
    }

    /// A Data or End from the peer, for an open subtransaction.
    fn take(&mut self, out: &mut Outbox, k: usize, bytes: &[u8]) {
        if self.receive(k, bytes) {
            self.progress(out);
            self.drain(out, k);
            self.act(out, k);
            self.maybe_decide(out, k);
        }
    }

    /// Hands `bytes` to the role; whether it took them.
    fn receive(&mut self, k: usize, bytes: &[u8]) -> bool {
        let Some(s) = &mut self.subs[k] else {
            return false;
        };
        let Phase::Open(open) = &mut s.phase else {
            return false;
        };
        match open.receive(bytes) {
            Ok(process::Received::Data { payload, token }) => {
                s.received.push(payload);
                s.unacked.clear();
                if token {
                    s.turn += 1;
                }
                true
            }
            Ok(process::Received::End) => {
                s.unacked.clear();
                true
            }
            Err(Error::Replayed) => {
                self.stats.copies += 1;
                false
            }
            Err(_) => {
                // Out of order (or damaged): kept for later.
                self.stats.rejected += 1;
                hold(s, bytes);
                false
            }
        }
    }

    /// Tries the messages held back until none is taken.
    fn drain(&mut self, out: &mut Outbox, k: usize) {
        loop {
            let held = match &mut self.subs[k] {
                Some(s) if matches!(s.phase, Phase::Open(_)) => std::mem::take(&mut s.held),
                _ => return,
            };
            let mut took = false;
            let mut keep = Vec::new();
            for m in held {
                if took {
                    keep.push(m);
                    continue;
                }
                // Refused again, `receive` holds it back again (a copy of
                // one taken meanwhile is dropped).
                if self.receive(k, &m) {
                    took = true;
                    self.stats.taken_late += 1;
                }
            }
            if let Some(s) = &mut self.subs[k] {
                for m in keep {
                    hold(s, &m);
                }
            }
            if !took {
                return;
            }
            self.progress(out);
            self.act(out, k);
        }
    }

    /// Commits (or aborts, by fate) an ended subtransaction, once the one
    /// it brought in has started.
    fn maybe_decide(&mut self, out: &mut Outbox, k: usize) {
        let ended = matches!(&self.subs[k], Some(Sub { phase: Phase::Open(o), .. }) if o.ended());
        if !ended {
            return;
        }
        if k == 0 && self.next.is_some() && !self.join_failed {
            let joined = self.subs[1].as_ref().is_some_and(Sub::past_start);
            if !joined {
                return;
            }
        }
        let commit = self.fate != Fate::AbortAtEnd;
        self.decide(out, k, commit);
    }

    fn decide(&mut self, out: &mut Outbox, k: usize, commit: bool) {
        let index = self.index;
        let Some(s) = &mut self.subs[k] else {
            return;
        };
        let Phase::Open(open) = std::mem::replace(&mut s.phase, Phase::Closed) else {
            return;
        };
        let ctx = open.context();
        s.transcript = open.transcript().to_vec();
        match open.decide(&self.party, commit) {
            Ok((wait, d)) => {
                out.send(CA, d.clone());
                s.to_ca = vec![d];
                s.phase = Phase::Deciding(wait);
                if commit {
                    s.committed_with = Some(ctx);
                } else {
                    s.aborted = true;
                }
            }
            Err(e) => self
                .anomalies
                .push(format!("p{index}: could not decide: {e}")),
        }
        self.progress(out);
    }

    fn on_outcome(&mut self, body: &[u8]) {
        let v = match verify_outcome(body, &self.party.ca) {
            Ok(v) => v,
            Err(_) => {
                self.stats.rejected += 1;
                return;
            }
        };
        if Some(v.leaf.tid) != self.tid() {
            self.stats.rejected += 1;
            return;
        }
        let mut problems = Vec::new();
        for s in self.subs.iter_mut().flatten() {
            match std::mem::replace(&mut s.phase, Phase::Closed) {
                Phase::Deciding(wait) => match wait.on_outcome(&self.party, body) {
                    Ok(d) => s.phase = Phase::Decided(Box::new(d)),
                    Err(e) => problems.push(format!("refused the CA's outcome: {e}")),
                },
                Phase::Open(_) if v.leaf.committed() => {
                    problems.push("an open subtransaction in a committed transaction".into())
                }
                Phase::Decided(d) => s.phase = Phase::Decided(d),
                _ => {}
            }
        }
        for p in problems {
            self.anomaly(p);
        }
        self.outcome = Some(HeldOutcome {
            bytes: body.to_vec(),
            leaf: v.leaf,
        });
        self.timer = None;
    }

    fn on_pending(&mut self, body: &[u8]) {
        let Ok(p) = cose::verify::<Pending>(body, &self.party.ca) else {
            self.stats.rejected += 1;
            return;
        };
        let (Some(tid), Some(deadline)) = (self.tid(), self.deadline()) else {
            return;
        };
        if p.tid == tid && !p.known && p.as_of >= deadline {
            // No vote can create it any more (the CA refuses a new
            // transaction at or past its deadline).
            self.never_started = true;
            self.timer = None;
            for s in self.subs.iter_mut().flatten() {
                s.phase = Phase::Closed;
            }
        }
    }
}

fn hold(s: &mut Sub, bytes: &[u8]) {
    if s.held.len() < MAX_HELD && !s.held.iter().any(|m| m == bytes) {
        s.held.push(bytes.to_vec());
    }
}

// ------------------------------------------------------------------ world

/// One transaction's plan, drawn from the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Its parties' numbers, in chain order.
    pub parties: Vec<u8>,
    /// The deviant party (its place in the chain) and what it does, if any.
    pub deviant: Option<(u8, Fate)>,
    /// Per subtransaction (p_i with p_{i+1}): messages per turn.
    pub scripts: Vec<Vec<u8>>,
}

/// What one transaction came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxEnd {
    /// Committed.
    Committed,
    /// Aborted (the [`AbortReason`] code).
    Aborted(u8),
    /// Known to the commit authority, not decided.
    Undecided,
    /// The commit authority never heard of it.
    Unknown,
}

/// What a run did, for tests and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// SHA-256 over every delivered message and its time.
    pub transcript: [u8; 32],
    /// What the network did.
    pub net: NetStats,
    /// Simulated time at the end (ms).
    pub end_ms: u64,
    /// Events processed (deliveries and timers).
    pub events: u64,
    /// Per transaction: its deviant, if any.
    pub deviants: Vec<Option<Fate>>,
    /// Per transaction: what it came to.
    pub transactions: Vec<TxEnd>,
    /// Per party: where it ended.
    pub parties: Vec<PartyEnd>,
    /// What the commit authority went through.
    pub ca: CaStats,
    /// Leaves in the log.
    pub leaves: u64,
    /// Parties' timeouts on which they resent something.
    pub resends: u64,
    /// Messages parties refused or held back.
    pub rejected: u64,
    /// Messages parties held back and took later.
    pub taken_late: u64,
    /// "Sealing" answers parties got.
    pub sealing: u64,
    /// Status requests parties sent past a deadline.
    pub status: u64,
}

impl Summary {
    /// Transactions that committed.
    pub fn committed(&self) -> usize {
        self.transactions
            .iter()
            .filter(|t| **t == TxEnd::Committed)
            .count()
    }

    /// Transactions that aborted for `reason`.
    pub fn aborted(&self, reason: AbortReason) -> usize {
        self.transactions
            .iter()
            .filter(|t| **t == TxEnd::Aborted(reason.code()))
            .count()
    }
}

/// The invariants of [`World::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Property {
    /// Every party that holds an outcome holds one that verifies, whose
    /// leaf is the log's leaf for its transaction; a party told the
    /// transaction never started finds no record of it in the log.
    OutcomeAgreesWithLog,
    /// A committed transaction has both parties of every subtransaction at
    /// the final context its leaf records, and includes every
    /// subtransaction that started.
    CommittedAtLeafContext,
    /// No transaction has two leaves, and a transaction's record points at
    /// its leaf.
    OneLeafPerTransaction,
    /// Every transaction is decided; one decided by its deadline passing
    /// was decided within [`Scenario::expiry_slack_secs`] of it, and
    /// nothing was decided otherwise at or past its deadline.
    DecidedByDeadline,
    /// No role refused what the commit authority signed; the commit
    /// authority never failed inside.
    RolesAgree,
    /// The run ended with nothing left to do (not at its time or event
    /// limit), every party in a final state.
    RunFinished,
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub property: Property,
    /// What was seen.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.property, self.what)
    }
}

/// A run that broke invariants, with what replays it.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The network.
    pub cfg: NetConfig,
    /// The scenario.
    pub scenario: Scenario,
    /// What broke.
    pub violations: Vec<Violation>,
    /// What the run did.
    pub summary: Summary,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "STP simulation seed {} broke {} invariant(s); replay: \
             agora_sim::stp::replay({}, {:?}, {:?})",
            self.seed,
            self.violations.len(),
            self.seed,
            self.cfg,
            self.scenario
        )?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        write!(f, "{:#?}", self.summary)
    }
}

/// One simulated run of STP transactions and its network.
#[derive(Debug)]
pub struct World {
    /// The seed of the run.
    pub seed: u64,
    /// The scenario.
    pub scenario: Scenario,
    /// The network.
    pub net: SimNet,
    /// The commit authority.
    pub ca: CaActor,
    /// Every party, numbered across transactions.
    pub parties: Vec<PartyActor>,
    /// Each transaction's plan.
    pub plans: Vec<Plan>,
    /// A second leaf still to append (see
    /// [`Scenario::second_leaf_for_testing_only`]).
    second_leaf: bool,
    events: u64,
    hit_limit: bool,
}

/// An identity certificate from the simulation's agency for `key`.
fn identity(agency: &Agency, rng: &mut ChaCha20Rng, name: &str, key: &SigningKey) -> Vec<u8> {
    agency
        .issue_identity(
            &IdentityParams {
                name: name.into(),
                key: key.verifying_key(),
                role: PartyRole::Customer,
                x25519: None,
                not_before: EPOCH.minus_secs(DAY),
                not_after: EPOCH.plus_secs(365 * DAY),
                crl_uri: agency.crl_uri("http://sim.invalid"),
            },
            rng,
        )
        .expect("the simulated agency issues identity certificates")
        .der
}

fn child(rng: &mut ChaCha20Rng) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(rng.next_u64())
}

/// Draws one transaction's deviant.
fn draw_deviant(rng: &mut ChaCha20Rng, f: &Fates, n: u8) -> Option<(u8, Fate)> {
    let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let anyone = (rng.next_u64() % u64::from(n)) as u8;
    let invitee = 1 + (rng.next_u64() % u64::from(n - 1)) as u8;
    let pick = rng.next_u64();
    if x < f.reject {
        Some((invitee, Fate::Reject))
    } else if x < f.reject + f.abort {
        let fate = match pick % 3 {
            0 => Fate::AbortBeforeStart,
            1 => Fate::AbortWhenOpen,
            _ => Fate::AbortAtEnd,
        };
        Some((anyone, fate))
    } else if x < f.reject + f.abort + f.vanish {
        Some((
            anyone,
            Fate::Vanish {
                after: 1 + (pick % 12) as u32,
            },
        ))
    } else {
        None
    }
}

/// Draws one subtransaction's script: 1 to `max_turns` turns of one or two
/// Data messages, the last passing the token; the last turn sends none or
/// one and ends.
fn draw_script(rng: &mut ChaCha20Rng, max_turns: u8) -> Vec<u8> {
    let turns = 1 + rng.next_u64() % u64::from(max_turns.max(1));
    (0..turns)
        .map(|t| {
            if t + 1 == turns {
                (rng.next_u64() % 2) as u8
            } else {
                1 + (rng.next_u64() % 2) as u8
            }
        })
        .collect()
}

impl World {
    /// A run of `scenario` on a network behaving as `cfg`, everything drawn
    /// from `seed`.
    pub fn new(seed: u64, cfg: NetConfig, scenario: Scenario) -> World {
        let n = scenario.parties;
        assert!(n >= 2, "a transaction needs two parties");
        assert!(
            usize::from(n) * usize::from(scenario.transactions) <= usize::from(u8::MAX),
            "at most 255 parties in all"
        );
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let agency = Agency::create(
            "STP Simulated CA",
            SigningKey::generate(&mut rng),
            EPOCH.minus_secs(30 * DAY),
            EPOCH.plus_secs(3650 * DAY),
            &mut rng,
        )
        .expect("the simulated agency");
        let t = crate::trust_of(&agency);
        let trust = IdentityTrust::new(t.agencies, t.crls);
        let mut ca_seed = [0u8; 32];
        rng.fill_bytes(&mut ca_seed);
        let ca_key = SigningKey::from_seed(&ca_seed).verifying_key();

        let mut parties = Vec::new();
        let mut plans = Vec::new();
        for c in 0..scenario.transactions {
            let first = c * n;
            let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate(&mut rng)).collect();
            let deviant = draw_deviant(&mut rng, &scenario.fates, n);
            let scripts: Vec<Vec<u8>> = (1..n)
                .map(|_| draw_script(&mut rng, scenario.max_turns))
                .collect();
            for (pos, sign) in keys.iter().enumerate() {
                let pos = pos as u8;
                let index = first + pos;
                let cert = identity(&agency, &mut rng, &format!("p{index}"), sign);
                let addr_uid = |p: u8| (party_addr(first + p), keys[usize::from(p)].key_id());
                let fate = match deviant {
                    Some((d, f)) if d == pos => f,
                    _ => Fate::Commit,
                };
                let script = |i: Option<u8>| {
                    i.and_then(|i| scripts.get(usize::from(i)).cloned())
                        .unwrap_or_default()
                };
                let start = pos == 0;
                let timer = start.then(|| rng.next_u64() % 100);
                parties.push(PartyActor {
                    index,
                    chain: c,
                    pos,
                    party: Party {
                        sign: SigningKey::from_seed(&sign.to_seed()),
                        cert,
                        trust: trust.clone().with_cache(),
                        ca: ca_key,
                    },
                    rng: child(&mut rng),
                    prev: pos.checked_sub(1).map(addr_uid),
                    next: (pos + 1 < n).then(|| addr_uid(pos + 1)),
                    fate,
                    deadline_secs: scenario.deadline_secs,
                    timeout_ms: scenario.timeout_ms,
                    max_backoff_ms: scenario.max_backoff_ms.max(scenario.timeout_ms),
                    seal_retry_ms: scenario.seal_ms + 50,
                    scripts: [script(pos.checked_sub(1)), script(Some(pos))],
                    subs: [None, None],
                    join_failed: false,
                    outcome: None,
                    never_started: false,
                    gone: false,
                    events: 0,
                    timer,
                    backoff_ms: scenario.timeout_ms,
                    stats: PartyStats::default(),
                    anomalies: Vec::new(),
                });
            }
            plans.push(Plan {
                parties: (first..first + n).collect(),
                deviant,
                scripts,
            });
        }
        let ca = CaActor::new(ca_seed, trust, child(&mut rng), &scenario);
        let net = SimNet::new(cfg, rng.next_u64());
        World {
            seed,
            scenario,
            net,
            ca,
            parties,
            plans,
            second_leaf: scenario.second_leaf_for_testing_only,
            events: 0,
            hit_limit: false,
        }
    }

    fn flush(&mut self, from: Addr, out: Outbox) {
        for (to, bytes) in out.sends {
            self.net.send(from, to, bytes);
        }
    }

    fn deliver(&mut self, p: Packet) {
        let mut out = Outbox::new(self.net.now_ms());
        if p.to == CA {
            self.ca.on_message(&mut out, p.from, &p.bytes);
        } else if let Addr::Buyer(i) = p.to {
            if let Some(a) = self.parties.get_mut(usize::from(i)) {
                a.on_message(&mut out, p.from, &p.bytes);
            }
        }
        self.flush(p.to, out);
    }

    fn party_timer(&self) -> Option<u64> {
        self.parties.iter().filter_map(|p| p.timer).min()
    }

    fn fire_timers(&mut self, now: u64) {
        for i in 0..self.parties.len() {
            if self.parties[i].timer.is_some_and(|t| t <= now) {
                let mut out = Outbox::new(now);
                self.parties[i].on_timer(&mut out);
                self.flush(party_addr(i as u8), out);
            }
        }
        if self.ca.next_timer() <= now {
            let heads = self.ca.stats.heads;
            self.ca.on_timer(now);
            if self.second_leaf && self.ca.stats.heads > heads {
                self.second_leaf = false;
                self.append_second_leaf();
            }
        }
    }

    fn append_second_leaf(&mut self) {
        let Ok(Some(first)) = self.ca.log.leaves(0, 1).map(|mut v| v.pop()) else {
            return;
        };
        let _ = self
            .ca
            .log
            .commit(LogUnit {
                tid: Tid([0xEE; 16]),
                version: 0,
                record: Vec::new(),
                deadline: Timestamp(0),
                leaf: Some(first),
            })
            .wait();
    }

    /// Runs until nothing is in flight, no party waits and the commit
    /// authority has nothing left to decide or seal (or [`MAX_RUN_MS`] /
    /// [`MAX_EVENTS`]).
    pub fn run(&mut self) -> Summary {
        loop {
            if self.events >= MAX_EVENTS {
                self.hit_limit = true;
                break;
            }
            let party = self.party_timer();
            let net = self.net.next_delivery_at();
            if net.is_none() && party.is_none() && !self.ca.has_work() {
                break;
            }
            let t = [net, party, Some(self.ca.next_timer())]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX);
            if t > MAX_RUN_MS {
                self.hit_limit = true;
                break;
            }
            self.events += 1;
            self.net.advance_to(t);
            match self.net.pop_due() {
                Some(p) => self.deliver(p),
                None => self.fire_timers(self.net.now_ms()),
            }
        }
        self.summary()
    }

    fn tid_end(&self, tid: &Tid) -> TxEnd {
        let Ok(Some(stored)) = self.ca.log.get(tid) else {
            return TxEnd::Unknown;
        };
        match stored.leaf_index.and_then(|i| self.leaf_at(i)) {
            Some(l) if l.committed() => TxEnd::Committed,
            Some(l) => TxEnd::Aborted(l.outcome),
            None => TxEnd::Undecided,
        }
    }

    fn leaf_at(&self, index: u64) -> Option<OutcomeLeaf> {
        let bytes = self.ca.log.leaves(index, 1).ok()?.pop()?;
        wire::decode(&bytes).ok()
    }

    /// The transaction of chain `c`, once its first party began it.
    pub fn tid_of(&self, c: usize) -> Option<Tid> {
        self.plans
            .get(c)?
            .parties
            .iter()
            .find_map(|&p| self.parties.get(usize::from(p))?.tid())
    }

    /// What the run did.
    pub fn summary(&self) -> Summary {
        let sum = |f: fn(&PartyStats) -> u64| self.parties.iter().map(|p| f(&p.stats)).sum();
        Summary {
            seed: self.seed,
            transcript: self.net.transcript_hash(),
            net: self.net.stats(),
            end_ms: self.net.now_ms(),
            events: self.events,
            deviants: self.plans.iter().map(|p| p.deviant.map(|d| d.1)).collect(),
            transactions: (0..self.plans.len())
                .map(|c| match self.tid_of(c) {
                    Some(t) => self.tid_end(&t),
                    None => TxEnd::Unknown,
                })
                .collect(),
            parties: self.parties.iter().map(PartyActor::end).collect(),
            ca: self.ca.stats,
            leaves: self.ca.log.leaf_count().unwrap_or(0),
            resends: sum(|s| s.resends),
            rejected: sum(|s| s.rejected),
            taken_late: sum(|s| s.taken_late),
            sealing: sum(|s| s.sealing),
            status: sum(|s| s.status),
        }
    }

    /// Every leaf in the log, decoded (`None` where one does not decode).
    fn leaves(&self) -> Vec<(Vec<u8>, Option<OutcomeLeaf>)> {
        let count = self.ca.log.leaf_count().unwrap_or(0);
        let mut v = Vec::new();
        while (v.len() as u64) < count {
            match self
                .ca
                .log
                .leaves(v.len() as u64, agora_stp::log::MAX_LEAF_PAGE)
            {
                Ok(page) if !page.is_empty() => v.extend(page.into_iter().map(|b| {
                    let l = wire::decode::<OutcomeLeaf>(&b).ok();
                    (b, l)
                })),
                _ => break,
            }
        }
        v
    }

    /// Every invariant the run broke (empty: all hold); see [`Property`].
    pub fn check(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        self.check_outcomes(&mut v);
        self.check_committed(&mut v);
        self.check_leaves(&mut v);
        self.check_deadlines(&mut v);
        self.check_roles(&mut v);
        self.check_finished(&mut v);
        v
    }

    /// [`Property::OutcomeAgreesWithLog`].
    pub fn check_outcomes(&self, v: &mut Vec<Violation>) {
        let mut bad = |what: String| {
            v.push(Violation {
                property: Property::OutcomeAgreesWithLog,
                what,
            })
        };
        let ca = self.ca.verifying_key();
        for p in &self.parties {
            let mut held: Vec<&[u8]> = Vec::new();
            if let Some(o) = &p.outcome {
                held.push(&o.bytes);
            }
            for s in p.subs.iter().flatten() {
                if let Some(d) = s.decided() {
                    held.push(&d.outcome_bytes);
                }
            }
            for bytes in held {
                let o = match verify_outcome(bytes, &ca) {
                    Ok(o) => o,
                    Err(e) => {
                        bad(format!("p{}: its outcome does not verify: {e}", p.index));
                        continue;
                    }
                };
                if Some(o.leaf.tid) != p.tid() {
                    bad(format!(
                        "p{}: it holds the outcome of another transaction",
                        p.index
                    ));
                }
                let logged = self.ca.log.get(&o.leaf.tid).ok().flatten();
                if logged.and_then(|s| s.leaf_index) != Some(o.index) {
                    bad(format!(
                        "p{}: its outcome's leaf {} is not the log's leaf for {}",
                        p.index, o.index, o.leaf.tid
                    ));
                }
                let leaf = self
                    .ca
                    .log
                    .leaves(o.index, 1)
                    .ok()
                    .and_then(|mut l| l.pop());
                if leaf.as_deref() != Some(&o.leaf_bytes[..]) {
                    bad(format!(
                        "p{}: its outcome's leaf differs from the log's leaf {}",
                        p.index, o.index
                    ));
                }
            }
            if p.end() == PartyEnd::NeverStarted {
                if let Some(tid) = p.tid() {
                    if self.ca.log.get(&tid).ok().flatten().is_some() {
                        bad(format!(
                            "p{}: told {tid} never started, which the log holds",
                            p.index
                        ));
                    }
                }
            }
        }
    }

    /// [`Property::CommittedAtLeafContext`].
    pub fn check_committed(&self, v: &mut Vec<Violation>) {
        let mut bad = |what: String| {
            v.push(Violation {
                property: Property::CommittedAtLeafContext,
                what,
            })
        };
        for (_, leaf) in self.leaves() {
            let Some(leaf) = leaf.filter(OutcomeLeaf::committed) else {
                continue;
            };
            let tid = leaf.tid;
            for (pair, ctx) in &leaf.subs {
                let Some(ctx) = ctx else {
                    bad(format!("{tid} committed without a context for {pair:?}"));
                    continue;
                };
                let mut sides = Vec::new();
                for uid in [pair.lo(), pair.hi()] {
                    let sub = self
                        .parties
                        .iter()
                        .filter(|p| p.uid() == uid)
                        .flat_map(|p| p.subs.iter().flatten().map(move |s| (p.index, s)))
                        .find(|(_, s)| s.tid == tid && s.pair == *pair);
                    match sub {
                        Some(x) => sides.push(x),
                        None => bad(format!(
                            "{tid}: a party of {pair:?} holds no such subtransaction"
                        )),
                    }
                }
                for (i, s) in &sides {
                    if s.committed_with != Some(*ctx) {
                        bad(format!(
                            "{tid}: p{i} committed {pair:?} with {:?}, the leaf records {ctx}",
                            s.committed_with
                        ));
                    }
                    let chained = match s.transcript.split_first() {
                        Some((first, rest)) => {
                            rest.iter().fold(Context::initial(first), |c, m| c.next(m))
                        }
                        None => Context([0; 32]),
                    };
                    if chained != *ctx {
                        bad(format!(
                            "{tid}: p{i}'s transcript of {pair:?} chains to {chained}, the leaf records {ctx}"
                        ));
                    }
                }
                if let [(i, a), (j, b)] = sides[..] {
                    if a.transcript != b.transcript {
                        bad(format!("{tid}: p{i} and p{j} hold different transcripts"));
                    }
                    if a.sent != b.received || b.sent != a.received {
                        bad(format!(
                            "{tid}: p{i} and p{j} did not receive what the other sent"
                        ));
                    }
                }
            }
            for p in &self.parties {
                for s in p.subs.iter().flatten() {
                    if s.tid == tid && s.started && !leaf.subs.iter().any(|(q, _)| *q == s.pair) {
                        bad(format!(
                            "{tid} committed without {:?}, which started (p{})",
                            s.pair, p.index
                        ));
                    }
                }
            }
        }
    }

    /// [`Property::OneLeafPerTransaction`].
    pub fn check_leaves(&self, v: &mut Vec<Violation>) {
        let mut bad = |what: String| {
            v.push(Violation {
                property: Property::OneLeafPerTransaction,
                what,
            })
        };
        let mut seen = BTreeSet::new();
        for (i, (_, leaf)) in self.leaves().into_iter().enumerate() {
            let Some(leaf) = leaf else {
                bad(format!("leaf {i} does not decode"));
                continue;
            };
            if !seen.insert(leaf.tid) {
                bad(format!("{} has a second leaf, {i}", leaf.tid));
                continue;
            }
            let at = self
                .ca
                .log
                .get(&leaf.tid)
                .ok()
                .flatten()
                .and_then(|s| s.leaf_index);
            if at != Some(i as u64) {
                bad(format!(
                    "leaf {i} is of {}, whose record points at leaf {at:?}",
                    leaf.tid
                ));
            }
        }
    }

    /// [`Property::DecidedByDeadline`].
    pub fn check_deadlines(&self, v: &mut Vec<Violation>) {
        let mut bad = |what: String| {
            v.push(Violation {
                property: Property::DecidedByDeadline,
                what,
            })
        };
        match self.ca.log.undecided_past(Timestamp(u64::MAX), usize::MAX) {
            Ok(undecided) => {
                for tid in undecided {
                    bad(format!("{tid} is undecided at the end of the run"));
                }
            }
            Err(e) => bad(format!("the log cannot list what is undecided: {e}")),
        }
        let slack = self.scenario.expiry_slack_secs();
        let expired = AbortReason::DeadlinePassed.code();
        for (_, leaf) in self.leaves() {
            let Some(leaf) = leaf else { continue };
            let Some(stored) = self.ca.log.get(&leaf.tid).ok().flatten() else {
                continue;
            };
            let Ok(rec) = TxRecord::decode(&stored.record) else {
                bad(format!("{}: its record does not decode", leaf.tid));
                continue;
            };
            let (deadline, at) = (rec.tx.deadline, leaf.decided_at.secs());
            if leaf.outcome == expired {
                if at > deadline + slack {
                    bad(format!(
                        "{} expired {} s after its deadline (at most {slack})",
                        leaf.tid,
                        at - deadline
                    ));
                }
                if at < deadline {
                    bad(format!("{} expired before its deadline", leaf.tid));
                }
            } else if at >= deadline {
                bad(format!(
                    "{} decided ({}) at or past its deadline",
                    leaf.tid, leaf.outcome
                ));
            }
        }
    }

    /// [`Property::RolesAgree`].
    pub fn check_roles(&self, v: &mut Vec<Violation>) {
        for p in &self.parties {
            for a in &p.anomalies {
                v.push(Violation {
                    property: Property::RolesAgree,
                    what: a.clone(),
                });
            }
        }
        for e in &self.ca.internal_errors {
            v.push(Violation {
                property: Property::RolesAgree,
                what: format!("the commit authority failed inside: {e}"),
            });
        }
    }

    /// [`Property::RunFinished`].
    pub fn check_finished(&self, v: &mut Vec<Violation>) {
        if self.hit_limit {
            v.push(Violation {
                property: Property::RunFinished,
                what: format!(
                    "the run stopped at its limit ({} ms, {} events)",
                    self.net.now_ms(),
                    self.events
                ),
            });
        }
        for p in &self.parties {
            if p.end() == PartyEnd::Unfinished {
                let steps: Vec<&str> = p.subs.iter().flatten().map(Sub::step).collect();
                v.push(Violation {
                    property: Property::RunFinished,
                    what: format!("p{} is unfinished ({steps:?})", p.index),
                });
            }
        }
    }
}

/// Runs `seed` and checks it: its summary, or what it broke and how to
/// replay it.
pub fn check_seed(seed: u64, cfg: NetConfig, scenario: Scenario) -> Result<Summary, Box<Failure>> {
    let mut w = World::new(seed, cfg, scenario);
    let summary = w.run();
    let violations = w.check();
    if violations.is_empty() {
        Ok(summary)
    } else {
        Err(Box::new(Failure {
            seed,
            cfg,
            scenario,
            violations,
            summary,
        }))
    }
}

/// Runs `seed` again as [`check_seed`] did (the line a failure prints).
pub fn replay(seed: u64, cfg: NetConfig, scenario: Scenario) -> (Summary, Vec<Violation>) {
    let mut w = World::new(seed, cfg, scenario);
    let s = w.run();
    (s, w.check())
}
