#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report
//! A stateright model of the Secure Transaction Protocol's commit rules
//! (ARCHITECTURE sections 6 and 8; `src/rules.rs`), checked over every
//! interleaving of a bounded run with message loss and duplication.
//!
//! # What is modelled
//!
//! Four actors: the commit authority (CA, actor 0) and three ST processes
//! P, Q and R (actors 1, 2, 3; a party's id in the rules is its actor
//! index). One transaction, one deadline:
//!
//! - P begins the subtransaction A = (P, Q): it sends `Begin` to Q and votes
//!   Accept. Q votes Accept or Reject (a nondeterministic choice).
//! - The inviter (P or Q: a parameter of the model; the full check runs
//!   both) may, while it has not decided A (the process side of rule 2),
//!   join R through its own subtransaction: `Opening { via: Some(A) }`,
//!   subtransaction B = (inviter, R), a `Begin` to R and an Accept vote.
//!   R votes Accept or Reject.
//! - Once a party hears `Started` from the CA, the subtransaction's data
//!   exchange runs: [`DATA_PER_SUB`] data messages, odd ones from the
//!   initiator, even ones from its peer. Each advances the context, on the
//!   sender when it is sent and on the peer when it is received (in
//!   sequence; a duplicate is ignored). A lost data message therefore leaves
//!   the two with different contexts.
//! - Each party then decides, at a point of its choosing (a timer that may
//!   fire before the data has arrived): Commit with its context, or, for R
//!   only (to keep the state space small), Abort. The decision goes to the
//!   CA in `Decide`. Nobody retransmits: the network's duplication is the
//!   only resending.
//! - The CA keeps a real [`Tx`] of `agora_stp::rules`: it opens it at the
//!   first vote (`Tx::begin`), applies every vote and decision with
//!   `Tx::vote` and `Tx::decide` (an error is a refusal: nothing is sent),
//!   sends `Started` to both parties when a subtransaction starts, the
//!   `Outcome` to every party of the transaction when it is decided, and
//!   the outcome to whoever votes or decides after that (rule 6). A copy of
//!   a vote or decision it has recorded (the network duplicated it) changes
//!   nothing in the rules and gets no answer: its answer went out when it
//!   was recorded. Time is abstracted to "before the deadline" and "at it":
//!   the CA's deadline timer may fire at any point of the run; it moves the
//!   CA's clock and calls `Tx::expire`.
//! - A process holds every outcome it receives; after the first, the
//!   transaction is over for it (it cancels its timers and ignores the rest
//!   but outcomes).
//!
//! Every message may be lost, delivered any number of times and in any
//! order: stateright's unordered duplicating network (a delivered message
//! stays deliverable until it is dropped), made lossy.
//!
//! # What is abstracted
//!
//! Signatures, certificates, the send token, `End`, Merkle proofs, the log
//! and the wire are not modelled: the rules are, with the messages reduced
//! to what the rules read. A context is a small integer and its hash a
//! deterministic mix of it and the message's sequence number. Status
//! queries and crashes are not modelled: a party that lost its `Outcome`
//! stays without one (unless a late vote or decision of its own brings it).
//!
//! # Bounds and reduction
//!
//! One transaction, three processes, at most two subtransactions,
//! [`DATA_PER_SUB`] = 2 data messages each, one deadline. Nothing is
//! retransmitted, so every run is finite and the checker explores all of
//! them to the end, with no depth bound. Unreduced, the duplicating network
//! blows the space up (a delivered message stays in the network, so each
//! later drop of it makes a new state: the plain breadth-first run ran out
//! of 20 GB of memory in three minutes). The checker therefore runs
//! depth-first with stateright's symmetry hook ([`representative`]): an
//! envelope whose delivery is a no-op now and for ever ([`dead`]) and the
//! network's memory of the last delivery are forgotten when states are
//! compared. For the CA as it should be, neither changes what can happen
//! next nor anything a property reads, so no behaviour is lost. Measured
//! (debug build, 2 cores): about 490,000 unique states when P joins R and
//! 460,000 when Q does, some 10 to 15 s each; the tests print the counts.
//!
//! # Properties, and the broken rule that makes each fail
//!
//! 1. [`NO_CONTRADICTION`] (always): every outcome a process holds is the
//!    CA's, so no two processes hold different ones. Broken by
//!    [`Mutant::CommitsEachSubtransactionAlone`] (rule 4: a CA that tells a
//!    subtransaction's parties "committed" as soon as that subtransaction
//!    commits; the deadline then aborts the transaction, and P holds
//!    Committed while R holds Aborted) and by
//!    [`Mutant::LateCommitBeatsDeadline`] (rules 5 and 6: a CA that lets a
//!    decision arriving after the deadline's abort commit the transaction
//!    after all, while a party holds the abort).
//! 2. [`SAME_CONTEXT`] (always): when the CA has committed, both parties of
//!    each of its subtransactions reported Commit with the same context.
//!    What each party reported is the model's history, recorded from the
//!    `Decide` messages sent, not the CA's copy. Broken by
//!    [`Mutant::IgnoresContexts`] (rule 3: a CA that maps every
//!    `Commit(c)` to `Commit(0)`; a lost data message then commits A with
//!    P and Q at different contexts).
//! 3. [`ENDS`]: once nothing more can happen (no timer pending, every
//!    message left in the network a no-op: every run ends so), the
//!    deadline has passed and the transaction the CA knows is decided. It
//!    is checked as an `always` over those final states rather than with
//!    stateright's `eventually`, which looks only at states with no
//!    successor (there are none under the reduction: forgetting a dead
//!    message leads back to a known state) and may miss a violation at a
//!    join of paths. Broken by [`Mutant::NoDeadline`] (rule 5: a CA that
//!    never calls `expire`; a lost vote then leaves the transaction
//!    undecided for ever).
//!
//! The `sometimes` properties show that the model is not vacuous: a commit
//! with R joined and held by all three, an abort, an abort because a lost
//! data message made the contexts differ, and an abort by the deadline are
//! all reached.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use agora_stp::rules::{pair_of, AbortReason, Decision, Effect, Opening, Sub, Tx, TxOutcome, Vote};
use stateright::actor::{
    model_timeout, Actor, ActorModel, ActorModelAction, ActorModelState, Envelope, Id,
    LossyNetwork, Network, Out,
};
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// A party's id in the rules: its actor index.
type Party = usize;
/// A subtransaction's pair, smaller id first.
type Pair = (Party, Party);

const CA: Party = 0;
const P: Party = 1;
const Q: Party = 2;
const R: Party = 3;
/// The subtransaction P begins with Q.
const PAIR_A: Pair = (P, Q);

/// The transaction's deadline. The CA's clock reads [`BEFORE`] until its
/// deadline step and `DEADLINE` after it.
const DEADLINE: u64 = 1;
const BEFORE: u64 = 0;

/// Data messages per subtransaction (odd ones from the initiator, even ones
/// from its peer). One is enough for a loss to make the contexts differ;
/// each more multiplies the state space.
const DATA_PER_SUB: u8 = 2;

const NO_CONTRADICTION: &str = "no two parties ever hold contradictory outcomes";
const SAME_CONTEXT: &str =
    "both parties of every committed subtransaction reported the same context";
const ENDS: &str = "every transaction ends, committed or aborted, once its deadline has passed";
const COMMIT_REACHABLE: &str = "a committed outcome is reachable";
const ABORT_REACHABLE: &str = "an aborted outcome is reachable";
const CONTEXTS_DIFFER_REACHABLE: &str =
    "a lost data message makes the contexts differ and the transaction abort";
const DEADLINE_ABORT_REACHABLE: &str = "the deadline aborts an undecided transaction";

/// A deliberately broken CA, wrapped around the real rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mutant {
    /// The CA as it should be.
    None,
    /// Maps every `Commit(c)` to `Commit(0)` before `Tx::decide` (rule 3).
    IgnoresContexts,
    /// Tells a subtransaction's two parties "committed" as soon as both
    /// committed it with the same context, before the transaction has
    /// (rule 4).
    CommitsEachSubtransactionAlone,
    /// A decision that arrives after the deadline aborted the transaction is
    /// applied as if it had come in time, and if that commits the
    /// transaction, the commit replaces the deadline's abort (rules 5 and 6).
    LateCommitBeatsDeadline,
    /// Never calls `Tx::expire` (rule 5).
    NoDeadline,
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    mutant: Mutant,
    /// Who joins R: P or Q.
    inviter: Party,
}

/// The model's history: what each party sent in its `Decide`, by
/// (subtransaction, party). Recorded from the messages sent, not from the
/// CA's state.
type Reported = BTreeMap<(Pair, Party), Decision<u32>>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Msg {
    /// Begin or Join: the initiator to its peer.
    Begin(Opening<Party>),
    /// A party to the CA.
    Vote(Opening<Party>, Vote),
    /// The CA to both parties: the subtransaction has started.
    Started(Pair),
    /// Data number `seq` of a subtransaction, to the peer.
    Data(Pair, u8),
    /// A party to the CA.
    Decide(Pair, Decision<u32>),
    /// The CA to a party.
    Outcome(TxOutcome),
}

/// Timers, the model's nondeterministic choices: whichever of a process's
/// timers fires first is what it does next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Timer {
    /// The CA: the deadline passes.
    Deadline,
    /// Vote on the subtransaction.
    Vote(Pair, Vote),
    /// The inviter joins R through A.
    Join,
    /// Decide Commit with the current context.
    End(Pair),
    /// Decide Abort.
    Abort(Pair),
}

/// The context both parties start a subtransaction with.
fn initial_context(pair: Pair) -> u32 {
    u32::try_from(pair.0 * 10 + pair.1).expect("small ids")
}

/// The context after data message `seq` (the real one hashes the message).
fn advance(context: u32, seq: u8) -> u32 {
    context.wrapping_mul(31).wrapping_add(u32::from(seq))
}

fn opening_a() -> Opening<Party> {
    Opening {
        pair: PAIR_A,
        initiator: P,
        via: None,
        deadline: DEADLINE,
    }
}

fn other(vote: Vote) -> Vote {
    match vote {
        Vote::Accept => Vote::Reject,
        Vote::Reject => Vote::Accept,
    }
}

/// One process's view of one of its subtransactions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SubView {
    opening: Opening<Party>,
    vote: Option<Vote>,
    started: bool,
    context: u32,
    /// Data messages sent or received so far.
    seq: u8,
    decision: Option<Decision<u32>>,
}

impl SubView {
    fn new(opening: Opening<Party>) -> SubView {
        SubView {
            context: initial_context(opening.pair),
            opening,
            vote: None,
            started: false,
            seq: 0,
            decision: None,
        }
    }

    fn pair(&self) -> Pair {
        self.opening.pair
    }

    fn peer(&self, me: Party) -> Party {
        if self.opening.pair.0 == me {
            self.opening.pair.1
        } else {
            self.opening.pair.0
        }
    }

    /// Whether data message `seq` is `me`'s to send.
    fn sends(&self, me: Party, seq: u8) -> bool {
        (seq % 2 == 1) == (self.opening.initiator == me)
    }

    /// Sends the next data message if it is `me`'s turn.
    fn send_data(&mut self, me: Party, o: &mut Out<Node>) {
        let next = self.seq + 1;
        if next <= DATA_PER_SUB && self.sends(me, next) {
            self.context = advance(self.context, next);
            self.seq = next;
            o.send(Id::from(self.peer(me)), Msg::Data(self.pair(), next));
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct ProcessState {
    subs: Vec<SubView>,
    /// Every outcome received from the CA.
    held: BTreeSet<TxOutcome>,
}

impl ProcessState {
    fn sub_mut(&mut self, pair: Pair) -> Option<&mut SubView> {
        self.subs.iter_mut().find(|s| s.pair() == pair)
    }

    fn start(me: Party, inviter: Party, o: &mut Out<Node>) -> ProcessState {
        let mut state = ProcessState::default();
        if me == P {
            let mut a = SubView::new(opening_a());
            a.vote = Some(Vote::Accept);
            o.send(Id::from(Q), Msg::Begin(opening_a()));
            o.send(Id::from(CA), Msg::Vote(opening_a(), Vote::Accept));
            if inviter == P {
                o.set_timer(Timer::Join, model_timeout());
            }
            state.subs.push(a);
        }
        state
    }

    fn on_msg(&mut self, me: Party, from: Party, msg: Msg, o: &mut Out<Node>) {
        if !self.held.is_empty() && !matches!(msg, Msg::Outcome(_)) {
            return; // The transaction is over for this process.
        }
        match msg {
            Msg::Begin(opening) => {
                let pair = opening.pair;
                let mine = pair.0 == me || pair.1 == me;
                if from != opening.initiator || !mine || self.sub_mut(pair).is_some() {
                    return;
                }
                self.subs.push(SubView::new(opening));
                o.set_timer(Timer::Vote(pair, Vote::Accept), model_timeout());
                o.set_timer(Timer::Vote(pair, Vote::Reject), model_timeout());
            }
            Msg::Started(pair) if from == CA => {
                let Some(s) = self.sub_mut(pair) else { return };
                if s.vote != Some(Vote::Accept) || s.started || s.decision.is_some() {
                    return;
                }
                s.started = true;
                o.set_timer(Timer::End(pair), model_timeout());
                if me == R {
                    o.set_timer(Timer::Abort(pair), model_timeout());
                }
                s.send_data(me, o);
            }
            Msg::Data(pair, seq) => {
                let Some(s) = self.sub_mut(pair) else { return };
                if from != s.peer(me)
                    || s.vote != Some(Vote::Accept)
                    || s.decision.is_some()
                    || seq != s.seq + 1
                    || s.sends(me, seq)
                {
                    return;
                }
                s.context = advance(s.context, seq);
                s.seq = seq;
                s.send_data(me, o);
            }
            Msg::Outcome(outcome) if from == CA => {
                let first = self.held.is_empty();
                if self.held.insert(outcome) && first {
                    // The transaction is over for this process.
                    o.cancel_timer(Timer::Join);
                    for s in &self.subs {
                        let pair = s.pair();
                        for t in [
                            Timer::Vote(pair, Vote::Accept),
                            Timer::Vote(pair, Vote::Reject),
                            Timer::End(pair),
                            Timer::Abort(pair),
                        ] {
                            o.cancel_timer(t);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_timeout(&mut self, me: Party, inviter: Party, timer: &Timer, o: &mut Out<Node>) {
        match *timer {
            Timer::Vote(pair, vote) => {
                let Some(s) = self.sub_mut(pair) else { return };
                if s.vote.is_some() {
                    return;
                }
                s.vote = Some(vote);
                o.send(Id::from(CA), Msg::Vote(s.opening.clone(), vote));
                o.cancel_timer(Timer::Vote(pair, other(vote)));
                if vote == Vote::Accept && me == inviter && pair == PAIR_A {
                    o.set_timer(Timer::Join, model_timeout());
                }
            }
            Timer::Join => {
                let pair = pair_of(&me, &R).expect("the inviter is not R");
                // Rule 2, the process side: only through an accepted and
                // undecided subtransaction of its own.
                let through_open = self.subs.iter().any(|s| {
                    s.pair() == PAIR_A && s.vote == Some(Vote::Accept) && s.decision.is_none()
                });
                if me != inviter || !through_open || self.sub_mut(pair).is_some() {
                    return;
                }
                let opening = Opening {
                    pair,
                    initiator: me,
                    via: Some(PAIR_A),
                    deadline: DEADLINE,
                };
                let mut b = SubView::new(opening.clone());
                b.vote = Some(Vote::Accept);
                o.send(Id::from(R), Msg::Begin(opening.clone()));
                o.send(Id::from(CA), Msg::Vote(opening, Vote::Accept));
                self.subs.push(b);
            }
            Timer::End(pair) => {
                let Some(s) = self.sub_mut(pair) else { return };
                if s.decision.is_some() || !s.started {
                    return;
                }
                let decision = Decision::Commit(s.context);
                self.decide(pair, decision, o);
                o.cancel_timer(Timer::Abort(pair));
            }
            Timer::Abort(pair) => {
                let Some(s) = self.sub_mut(pair) else { return };
                if s.decision.is_some() {
                    return;
                }
                self.decide(pair, Decision::Abort, o);
                o.cancel_timer(Timer::End(pair));
            }
            Timer::Deadline => {}
        }
    }

    fn decide(&mut self, pair: Pair, decision: Decision<u32>, o: &mut Out<Node>) {
        if let Some(s) = self.sub_mut(pair) {
            s.decision = Some(decision.clone());
            o.send(Id::from(CA), Msg::Decide(pair, decision));
        }
        if pair == PAIR_A {
            // Decided its own subtransaction: it may no longer join anyone.
            o.cancel_timer(Timer::Join);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CaState {
    tx: Option<Tx<Party, u32>>,
    /// [`BEFORE`] or [`DEADLINE`].
    now: u64,
}

impl CaState {
    fn outcome(&self) -> Option<TxOutcome> {
        self.tx.as_ref().and_then(|t| t.outcome.map(|(o, _)| o))
    }

    /// Sends `outcome` to every party of the transaction.
    fn announce(tx: &Tx<Party, u32>, outcome: TxOutcome, o: &mut Out<Node>) {
        let parties: BTreeSet<Party> = tx.subs.iter().flat_map(|s| [s.pair.0, s.pair.1]).collect();
        for p in parties {
            o.send(Id::from(p), Msg::Outcome(outcome));
        }
    }

    fn on_msg(&mut self, mutant: Mutant, from: Party, msg: Msg, o: &mut Out<Node>) {
        // A copy of a vote or decision the CA recorded (the network
        // duplicated it) changes nothing, and is not answered: its answer
        // went out when it was recorded, and no process retransmits.
        let copy = self.tx.as_ref().is_some_and(|tx| recorded(tx, from, &msg));
        match msg {
            Msg::Vote(opening, vote) => {
                if self.tx.is_none() {
                    // The first vote opens the transaction (a Join cannot).
                    self.tx = Tx::begin(&opening).ok();
                }
                let Some(tx) = &mut self.tx else { return };
                match tx.vote(self.now, &opening, &from, vote) {
                    Ok(Effect::Started) => {
                        for p in [opening.pair.0, opening.pair.1] {
                            o.send(Id::from(p), Msg::Started(opening.pair));
                        }
                    }
                    Ok(Effect::Decided(outcome)) => CaState::announce(tx, outcome, o),
                    Ok(Effect::AlreadyDecided(outcome)) if !copy => {
                        // Rule 6: a late vote is answered with the outcome.
                        o.send(Id::from(from), Msg::Outcome(outcome));
                    }
                    _ => {}
                }
            }
            Msg::Decide(pair, decision) => {
                let Some(tx) = &mut self.tx else { return };
                let decision = match (mutant, decision) {
                    (Mutant::IgnoresContexts, Decision::Commit(_)) => Decision::Commit(0),
                    (_, d) => d,
                };
                if mutant == Mutant::LateCommitBeatsDeadline
                    && !copy
                    && matches!(
                        tx.outcome,
                        Some((TxOutcome::Aborted(AbortReason::DeadlinePassed), _))
                    )
                {
                    // Replays the late decision on the transaction as it was
                    // before the deadline, and keeps the commit if that
                    // commits it.
                    let mut on_time = tx.clone();
                    on_time.outcome = None;
                    if let Ok(Effect::Decided(TxOutcome::Committed)) =
                        on_time.decide(BEFORE, &pair, &from, decision.clone())
                    {
                        *tx = on_time;
                        CaState::announce(tx, TxOutcome::Committed, o);
                        return;
                    }
                }
                match tx.decide(self.now, &pair, &from, decision) {
                    Ok(Effect::Decided(outcome)) => CaState::announce(tx, outcome, o),
                    Ok(Effect::AlreadyDecided(outcome)) if !copy => {
                        o.send(Id::from(from), Msg::Outcome(outcome));
                    }
                    Ok(Effect::Recorded)
                        if mutant == Mutant::CommitsEachSubtransactionAlone
                            && tx.sub(&pair).is_some_and(Sub::committed) =>
                    {
                        for p in [pair.0, pair.1] {
                            o.send(Id::from(p), Msg::Outcome(TxOutcome::Committed));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn on_deadline(&mut self, mutant: Mutant, o: &mut Out<Node>) {
        self.now = DEADLINE;
        if mutant == Mutant::NoDeadline {
            return;
        }
        if let Some(tx) = &mut self.tx {
            if let Some(outcome) = tx.expire(self.now) {
                CaState::announce(tx, outcome, o);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Ca { mutant: Mutant },
    Process { inviter: Party },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NodeState {
    Ca(CaState),
    Process(ProcessState),
}

impl Actor for Node {
    type Msg = Msg;
    type Timer = Timer;
    type State = NodeState;

    fn on_start(&self, id: Id, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Ca { .. } => {
                o.set_timer(Timer::Deadline, model_timeout());
                NodeState::Ca(CaState {
                    tx: None,
                    now: BEFORE,
                })
            }
            Node::Process { inviter } => {
                NodeState::Process(ProcessState::start(usize::from(id), *inviter, o))
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        let mut next = (**state).clone();
        match (self, &mut next) {
            (Node::Ca { mutant }, NodeState::Ca(ca)) => {
                ca.on_msg(*mutant, usize::from(src), msg, o);
            }
            (Node::Process { .. }, NodeState::Process(p)) => {
                p.on_msg(usize::from(id), usize::from(src), msg, o);
            }
            _ => panic!("actor and state disagree"),
        }
        if next != **state {
            *state = Cow::Owned(next);
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        let mut next = (**state).clone();
        match (self, &mut next) {
            (Node::Ca { mutant }, NodeState::Ca(ca)) => ca.on_deadline(*mutant, o),
            (Node::Process { inviter }, NodeState::Process(p)) => {
                p.on_timeout(usize::from(id), *inviter, timer, o);
            }
            _ => panic!("actor and state disagree"),
        }
        if next != **state {
            *state = Cow::Owned(next);
        }
    }
}

type StpModel = ActorModel<Node, Cfg, Reported>;
type State = ActorModelState<Node, Reported>;

fn ca(state: &State) -> &CaState {
    match &*state.actor_states[CA] {
        NodeState::Ca(ca) => ca,
        NodeState::Process(_) => panic!("actor 0 is the CA"),
    }
}

fn processes(state: &State) -> impl Iterator<Item = &ProcessState> {
    state.actor_states.iter().filter_map(|s| match &**s {
        NodeState::Process(p) => Some(p),
        NodeState::Ca(_) => None,
    })
}

/// Records each party's `Decide` as it is sent.
fn record_decide(_: &Cfg, reported: &Reported, env: Envelope<&Msg>) -> Option<Reported> {
    let Msg::Decide(pair, decision) = env.msg else {
        return None;
    };
    let key = (*pair, usize::from(env.src));
    if reported.contains_key(&key) {
        return None;
    }
    let mut next = reported.clone();
    next.insert(key, decision.clone());
    Some(next)
}

/// Property 1: every outcome any process holds is the CA's (so no two
/// processes hold different ones).
fn no_contradiction(_: &StpModel, state: &State) -> bool {
    let at_ca = ca(state).outcome();
    processes(state).all(|p| p.held.iter().all(|o| Some(*o) == at_ca))
}

/// Property 2: a committed transaction's every subtransaction was reported
/// Commit by both parties, with the same context.
fn same_context(_: &StpModel, state: &State) -> bool {
    let Some(tx) = &ca(state).tx else { return true };
    if !matches!(tx.outcome, Some((TxOutcome::Committed, _))) {
        return true;
    }
    tx.subs.iter().all(|sub| {
        let reported = |party: Party| state.history.get(&(sub.pair, party));
        matches!(
            (reported(sub.pair.0), reported(sub.pair.1)),
            (Some(Decision::Commit(a)), Some(Decision::Commit(b))) if a == b
        )
    })
}

/// Property 3, at the end of every run: once nothing more can happen, the
/// CA has had its deadline step and the transaction it knows is decided.
fn ended(model: &StpModel, state: &State) -> bool {
    let ca = ca(state);
    !quiescent(model, state)
        || (ca.now >= DEADLINE && ca.tx.as_ref().is_none_or(|t| t.outcome.is_some()))
}

/// Nothing more can happen but losses: no timer is pending and delivering
/// any message in the network changes nothing. (Then it never will: the
/// deliveries change no state, so they stay no-ops.)
fn quiescent(model: &StpModel, state: &State) -> bool {
    state.timers_set.iter().all(|t| t.iter().next().is_none())
        && state.network.iter_all().all(|e| {
            let deliver = ActorModelAction::Deliver {
                src: e.src,
                dst: e.dst,
                msg: e.msg.clone(),
            };
            model.next_state(state, deliver).is_none()
        })
}

fn model(cfg: Cfg) -> StpModel {
    ActorModel::new(cfg, Reported::new())
        .actor(Node::Ca { mutant: cfg.mutant })
        .actors([P, Q, R].map(|_| Node::Process {
            inviter: cfg.inviter,
        }))
        .init_network(Network::new_unordered_duplicating([]))
        .lossy_network(LossyNetwork::Yes)
        .record_msg_out(record_decide)
        .property(Expectation::Always, NO_CONTRADICTION, no_contradiction)
        .property(Expectation::Always, SAME_CONTEXT, same_context)
        .property(Expectation::Always, ENDS, ended)
        .property(Expectation::Sometimes, COMMIT_REACHABLE, |_, s| {
            let tx = ca(s).tx.as_ref();
            ca(s).outcome() == Some(TxOutcome::Committed)
                && tx.is_some_and(|t| t.subs.len() == 2)
                && processes(s).all(|p| p.held.contains(&TxOutcome::Committed))
        })
        .property(Expectation::Sometimes, ABORT_REACHABLE, |_, s| {
            matches!(ca(s).outcome(), Some(TxOutcome::Aborted(_)))
        })
        .property(Expectation::Sometimes, CONTEXTS_DIFFER_REACHABLE, |_, s| {
            ca(s).outcome() == Some(TxOutcome::Aborted(AbortReason::ContextsDiffer))
        })
        .property(Expectation::Sometimes, DEADLINE_ABORT_REACHABLE, |_, s| {
            ca(s).outcome() == Some(TxOutcome::Aborted(AbortReason::DeadlinePassed))
        })
}

/// Whether delivering `env` is, in `state` and in every state after it, a
/// no-op, so that the envelope can be forgotten (the symmetry reduction,
/// [`representative`]):
///
/// - to a process: it ignores the message now, and what makes it ignore it
///   never changes (its subtransactions, votes, decisions, data sequence
///   and held outcomes only grow);
/// - to the CA: a copy of a vote or decision it recorded. Rule 6 answers it
///   with `Unchanged` or `AlreadyDecided`, and the model's CA answers a copy
///   with nothing. One thing could still make it matter: the rules expire
///   an undecided transaction inside `vote` and `decide` once the clock is
///   past the deadline. So the copy is dead only while the transaction is
///   decided (it stays so) or the clock is before the deadline (and the CA
///   expires the transaction at its deadline step: true of the correct CA;
///   a mutant that does not may lose some of its behaviours to the
///   reduction, which only makes its counterexamples harder to find, never
///   false).
fn dead(state: &State, env: &Envelope<&Msg>) -> bool {
    let p = match &*state.actor_states[usize::from(env.dst)] {
        NodeState::Process(p) => p,
        NodeState::Ca(ca) => {
            return ca.tx.as_ref().is_some_and(|tx| {
                recorded(tx, usize::from(env.src), env.msg)
                    && (tx.outcome.is_some() || ca.now < DEADLINE)
            })
        }
    };
    let sub = |pair: &Pair| p.subs.iter().find(|s| s.pair() == *pair);
    if !p.held.is_empty() && !matches!(env.msg, Msg::Outcome(_)) {
        return true;
    }
    match env.msg {
        Msg::Begin(opening) => sub(&opening.pair).is_some(),
        Msg::Started(pair) => sub(pair)
            .is_some_and(|s| s.started || s.decision.is_some() || s.vote == Some(Vote::Reject)),
        Msg::Data(pair, seq) => sub(pair)
            .is_some_and(|s| s.seq >= *seq || s.decision.is_some() || s.vote == Some(Vote::Reject)),
        Msg::Outcome(o) => p.held.contains(o),
        Msg::Vote(..) | Msg::Decide(..) => false,
    }
}

/// Whether the CA's transaction holds this very vote or decision of
/// `from`'s: a copy of it changes nothing at the CA.
fn recorded(tx: &Tx<Party, u32>, from: Party, msg: &Msg) -> bool {
    match msg {
        Msg::Vote(opening, vote) => tx.sub(&opening.pair).is_some_and(|s| {
            (s.pair.0 == from && s.votes[0] == Some(*vote))
                || (s.pair.1 == from && s.votes[1] == Some(*vote))
        }),
        Msg::Decide(pair, _) => tx.sub(pair).is_some_and(|s| s.decided_by(&from)),
        _ => false,
    }
}

/// The state with its dead envelopes and the network's memory of the last
/// delivered message forgotten: neither changes what can happen next, nor
/// anything a property reads.
fn representative(state: &State) -> State {
    let mut r = state.clone();
    if let Network::UnorderedDuplicating(envelopes, last) = &mut r.network {
        envelopes.retain(|e| {
            let e = Envelope {
                src: e.src,
                dst: e.dst,
                msg: &e.msg,
            };
            !dead(state, &e)
        });
        *last = None;
    }
    r
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The whole state space, for one inviter. Measured (debug build, 2 cores):
/// see the printed counts.
#[test]
fn the_commit_rules_hold_over_every_interleaving_with_loss_and_duplication() {
    for inviter in [P, Q] {
        let start = Instant::now();
        let checker = model(Cfg {
            mutant: Mutant::None,
            inviter,
        })
        .checker()
        .threads(threads())
        .symmetry_fn(representative)
        .spawn_dfs()
        .join();
        eprintln!(
            "inviter {inviter}: {} unique states ({} generated), max depth {}, {:.1?}",
            checker.unique_state_count(),
            checker.state_count(),
            checker.max_depth(),
            start.elapsed()
        );
        assert!(checker.is_done());
        checker.assert_properties();
    }
}

/// Runs the model with `mutant` until the checker finds a counterexample
/// to `property`, and prints it; panics if there is none.
fn counterexample(mutant: Mutant, inviter: Party, property: &'static str) {
    let start = Instant::now();
    let checker = model(Cfg { mutant, inviter })
        .checker()
        .threads(threads())
        .symmetry_fn(representative)
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_dfs()
        .join();
    let found = checker.discovery(property);
    eprintln!(
        "{mutant:?}: \"{property}\" {} after {} unique states, {:.1?}",
        if found.is_some() { "fails" } else { "holds" },
        checker.unique_state_count(),
        start.elapsed()
    );
    let path = found.unwrap_or_else(|| panic!("{mutant:?} was not caught by \"{property}\""));
    for action in path.into_actions() {
        eprintln!("    {action:?}");
    }
}

#[test]
fn a_ca_that_ignores_contexts_is_caught() {
    counterexample(Mutant::IgnoresContexts, P, SAME_CONTEXT);
}

#[test]
fn a_ca_that_commits_each_subtransaction_on_its_own_is_caught() {
    counterexample(Mutant::CommitsEachSubtransactionAlone, P, NO_CONTRADICTION);
}

#[test]
fn a_ca_that_lets_a_second_vote_or_decision_change_the_outcome_is_caught() {
    counterexample(Mutant::LateCommitBeatsDeadline, P, NO_CONTRADICTION);
}

#[test]
fn a_ca_without_a_deadline_is_caught() {
    counterexample(Mutant::NoDeadline, P, ENDS);
}
