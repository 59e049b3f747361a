//! The commit authority's rules (ARCHITECTURE section 6; the paper's
//! section 3, "Commit authority"), as a pure state machine with no crypto,
//! no storage and no clock: the [`crate::ca`] role applies them to verified
//! messages, and the stateright model (`tests/model.rs`) checks them over
//! every interleaving of a bounded run. Generic over the party id `P` and
//! the context `C` so that the model can use small values.
//!
//! The rules:
//!
//! 1. A subtransaction starts when both of its parties accept; a reject
//!    aborts the whole transaction (it cannot commit without it).
//! 2. A process brings a new party into a transaction (a Join) only while
//!    its own subtransaction `via` in it is undecided: neither decided at
//!    the CA nor decided by the inviter. The CA registers the new
//!    subtransaction at its first vote and refuses it otherwise.
//! 3. A subtransaction commits when both parties commit with the same final
//!    context; two different contexts abort the whole transaction, and so
//!    does any abort.
//! 4. The transaction commits when all its subtransactions have committed.
//! 5. The CA aborts whatever is undecided at or past the deadline named at
//!    Begin.
//! 6. A decided transaction never changes: every later vote or decision is
//!    answered with its outcome. A party's first vote and first decision
//!    stand; the same one again changes nothing, a different one is refused.

/// A party's vote on a subtransaction (paper: "accept or reject").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vote {
    /// Take part.
    Accept,
    /// Do not.
    Reject,
}

/// A party's decision at the end of a subtransaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision<C> {
    /// Commit, with the party's final context.
    Commit(C),
    /// Abort (the whole transaction).
    Abort,
}

/// Why a transaction was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbortReason {
    /// A party rejected a subtransaction.
    Rejected,
    /// A party decided to abort.
    PartyAborted,
    /// The two parties of a subtransaction committed with different
    /// contexts.
    ContextsDiffer,
    /// The deadline passed with the transaction undecided.
    DeadlinePassed,
}

impl AbortReason {
    /// A stable code (wire, logs, `--json`).
    pub fn code(self) -> u8 {
        match self {
            AbortReason::Rejected => 1,
            AbortReason::PartyAborted => 2,
            AbortReason::ContextsDiffer => 3,
            AbortReason::DeadlinePassed => 4,
        }
    }

    /// The reason of a [`Self::code`].
    pub fn from_code(code: u8) -> Option<AbortReason> {
        [
            AbortReason::Rejected,
            AbortReason::PartyAborted,
            AbortReason::ContextsDiffer,
            AbortReason::DeadlinePassed,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    /// Words for people.
    pub fn as_str(self) -> &'static str {
        match self {
            AbortReason::Rejected => "a party rejected a subtransaction",
            AbortReason::PartyAborted => "a party aborted",
            AbortReason::ContextsDiffer => {
                "the parties of a subtransaction reported different contexts"
            }
            AbortReason::DeadlinePassed => "the deadline passed",
        }
    }
}

/// A transaction's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxOutcome {
    /// Every subtransaction committed.
    Committed,
    /// Aborted, and why.
    Aborted(AbortReason),
}

/// Why the CA refuses a vote or a decision. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleError {
    /// The voter or decider is not one of the subtransaction's pair.
    NotAParty,
    /// No such subtransaction in this transaction (a decision on a pair that
    /// never voted).
    UnknownSubtransaction,
    /// A Begin for a transaction that exists already with another first
    /// subtransaction.
    TransactionExists,
    /// A Join whose `via` is not a subtransaction of the inviter's, or is
    /// decided (rule 2).
    JoinNotAllowed,
    /// A Join naming another deadline than the transaction's.
    WrongDeadline,
    /// The party voted otherwise before (rule 6).
    VotedDifferently,
    /// The party decided otherwise before (rule 6).
    DecidedDifferently,
    /// A commit on a subtransaction that has not started (both must accept
    /// first).
    NotStarted,
}

impl RuleError {
    /// Words for people.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleError::NotAParty => "not a party to this subtransaction",
            RuleError::UnknownSubtransaction => "no such subtransaction in this transaction",
            RuleError::TransactionExists => "a transaction with this TID exists",
            RuleError::JoinNotAllowed => {
                "the inviter's own subtransaction in this transaction is decided or unknown"
            }
            RuleError::WrongDeadline => "the deadline is not the transaction's",
            RuleError::VotedDifferently => "this party voted otherwise before",
            RuleError::DecidedDifferently => "this party decided otherwise before",
            RuleError::NotStarted => "the subtransaction has not started",
        }
    }
}

/// One subtransaction at the CA: the unordered pair, who opened it, through
/// which subtransaction of the opener's (for a Join), and what each party
/// said. Index 0 is `pair.0`, the smaller id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sub<P, C> {
    /// The pair, smaller id first.
    pub pair: (P, P),
    /// The party that sent the Begin or Join.
    pub initiator: P,
    /// For a Join: the initiator's subtransaction it came through.
    pub via: Option<(P, P)>,
    /// Each party's vote.
    pub votes: [Option<Vote>; 2],
    /// Each party's decision.
    pub decisions: [Option<Decision<C>>; 2],
}

impl<P: Ord + Clone, C: Eq + Clone> Sub<P, C> {
    fn index_of(&self, party: &P) -> Option<usize> {
        if *party == self.pair.0 {
            Some(0)
        } else if *party == self.pair.1 {
            Some(1)
        } else {
            None
        }
    }

    /// Both parties accepted.
    pub fn started(&self) -> bool {
        self.votes == [Some(Vote::Accept), Some(Vote::Accept)]
    }

    /// Both parties committed with the same context.
    pub fn committed(&self) -> bool {
        matches!(&self.decisions, [Some(Decision::Commit(a)), Some(Decision::Commit(b))] if a == b)
    }

    /// Whether `party` has decided on this subtransaction.
    pub fn decided_by(&self, party: &P) -> bool {
        self.index_of(party)
            .is_some_and(|i| self.decisions[i].is_some())
    }
}

/// The canonical (unordered) pair of two party ids: smaller first. `None`
/// if they are the same party.
pub fn pair_of<P: Ord + Clone>(a: &P, b: &P) -> Option<(P, P)> {
    match a.cmp(b) {
        std::cmp::Ordering::Less => Some((a.clone(), b.clone())),
        std::cmp::Ordering::Greater => Some((b.clone(), a.clone())),
        std::cmp::Ordering::Equal => None,
    }
}

/// What a vote or a decision did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Recorded; the transaction is still undecided (and the subtransaction
    /// waits for its other party, or is open).
    Recorded,
    /// Recorded, and the subtransaction has started: both accepted.
    Started,
    /// Recorded, and the transaction is decided now.
    Decided(TxOutcome),
    /// The same vote or decision as before: nothing changed.
    Unchanged,
    /// The transaction was decided before: nothing changed.
    AlreadyDecided(TxOutcome),
}

impl Effect {
    /// Whether the CA must log something new.
    pub fn changed(&self) -> bool {
        matches!(
            self,
            Effect::Recorded | Effect::Started | Effect::Decided(_)
        )
    }
}

/// How a subtransaction came to be: the first vote on it carries this.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Opening<P> {
    /// The pair, smaller id first.
    pub pair: (P, P),
    /// Who sent the Begin or Join.
    pub initiator: P,
    /// For a Join: the initiator's subtransaction it came through.
    pub via: Option<(P, P)>,
    /// The transaction's deadline as the Begin or Join names it.
    pub deadline: u64,
}

impl<P: Ord> Opening<P> {
    /// The pair is two different parties, smaller first, and the initiator
    /// is one of them.
    fn check(&self) -> Result<(), RuleError> {
        if self.pair.0 >= self.pair.1 {
            return Err(RuleError::NotAParty);
        }
        if self.initiator != self.pair.0 && self.initiator != self.pair.1 {
            return Err(RuleError::NotAParty);
        }
        Ok(())
    }

    /// Whether `party` is one of the pair.
    fn has(&self, party: &P) -> bool {
        *party == self.pair.0 || *party == self.pair.1
    }
}

/// One transaction at the CA.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tx<P, C> {
    /// The deadline named at Begin (Unix seconds).
    pub deadline: u64,
    /// Its subtransactions, in the order they were registered.
    pub subs: Vec<Sub<P, C>>,
    /// Its outcome, once decided, and when (Unix seconds).
    pub outcome: Option<(TxOutcome, u64)>,
}

impl<P: Ord + Clone, C: Eq + Clone> Tx<P, C> {
    /// A new transaction, opened by the first vote on its Begin.
    pub fn begin(opening: &Opening<P>) -> Result<Tx<P, C>, RuleError> {
        if opening.via.is_some() {
            // A Join cannot open a transaction the CA has never seen.
            return Err(RuleError::JoinNotAllowed);
        }
        opening.check()?;
        Ok(Tx {
            deadline: opening.deadline,
            subs: vec![Sub {
                pair: opening.pair.clone(),
                initiator: opening.initiator.clone(),
                via: None,
                votes: [None, None],
                decisions: [None, None],
            }],
            outcome: None,
        })
    }

    /// The subtransaction of `pair`.
    pub fn sub(&self, pair: &(P, P)) -> Option<&Sub<P, C>> {
        self.subs.iter().find(|s| s.pair == *pair)
    }

    fn sub_index(&self, pair: &(P, P)) -> Option<usize> {
        self.subs.iter().position(|s| s.pair == *pair)
    }

    /// Rule 5: aborts the transaction if it is undecided at or past its
    /// deadline. Returns the outcome if this call decided it.
    pub fn expire(&mut self, now: u64) -> Option<TxOutcome> {
        if self.outcome.is_none() && now >= self.deadline {
            let o = TxOutcome::Aborted(AbortReason::DeadlinePassed);
            self.outcome = Some((o, now));
            return Some(o);
        }
        None
    }

    fn abort(&mut self, reason: AbortReason, now: u64) -> Effect {
        let o = TxOutcome::Aborted(reason);
        self.outcome = Some((o, now));
        Effect::Decided(o)
    }

    /// `voter`'s vote on the subtransaction `opening` describes, at `now`.
    pub fn vote(
        &mut self,
        now: u64,
        opening: &Opening<P>,
        voter: &P,
        vote: Vote,
    ) -> Result<Effect, RuleError> {
        if let Some((o, _)) = self.outcome {
            return Ok(Effect::AlreadyDecided(o));
        }
        // Nothing is registered for a vote that could not stand: the
        // opening well formed, the voter one of its pair, its deadline the
        // transaction's.
        opening.check()?;
        if !opening.has(voter) {
            return Err(RuleError::NotAParty);
        }
        if opening.deadline != self.deadline {
            return Err(RuleError::WrongDeadline);
        }
        if let Some(o) = self.expire(now) {
            return Ok(Effect::Decided(o));
        }
        let i = match self.sub_index(&opening.pair) {
            Some(i) => {
                let s = &self.subs[i];
                if s.initiator != opening.initiator || s.via != opening.via {
                    return Err(if opening.via.is_none() {
                        RuleError::TransactionExists
                    } else {
                        RuleError::JoinNotAllowed
                    });
                }
                i
            }
            None => {
                // Rule 2: a new subtransaction only through an undecided one
                // of the initiator's.
                let Some(via) = &opening.via else {
                    return Err(RuleError::TransactionExists);
                };
                let through = self.sub(via).ok_or(RuleError::JoinNotAllowed)?;
                if through.index_of(&opening.initiator).is_none()
                    || through.decided_by(&opening.initiator)
                {
                    return Err(RuleError::JoinNotAllowed);
                }
                self.subs.push(Sub {
                    pair: opening.pair.clone(),
                    initiator: opening.initiator.clone(),
                    via: Some(via.clone()),
                    votes: [None, None],
                    decisions: [None, None],
                });
                self.subs.len() - 1
            }
        };
        let sub = &mut self.subs[i];
        let k = sub.index_of(voter).ok_or(RuleError::NotAParty)?;
        match sub.votes[k] {
            Some(v) if v == vote => return Ok(Effect::Unchanged),
            Some(_) => return Err(RuleError::VotedDifferently),
            None => sub.votes[k] = Some(vote),
        }
        if vote == Vote::Reject {
            return Ok(self.abort(AbortReason::Rejected, now));
        }
        Ok(if sub.started() {
            Effect::Started
        } else {
            Effect::Recorded
        })
    }

    /// `party`'s decision on the subtransaction `pair`, at `now`.
    pub fn decide(
        &mut self,
        now: u64,
        pair: &(P, P),
        party: &P,
        decision: Decision<C>,
    ) -> Result<Effect, RuleError> {
        if let Some((o, _)) = self.outcome {
            return Ok(Effect::AlreadyDecided(o));
        }
        if let Some(o) = self.expire(now) {
            return Ok(Effect::Decided(o));
        }
        let i = self
            .sub_index(pair)
            .ok_or(RuleError::UnknownSubtransaction)?;
        let sub = &mut self.subs[i];
        let k = sub.index_of(party).ok_or(RuleError::NotAParty)?;
        match &sub.decisions[k] {
            Some(d) if *d == decision => return Ok(Effect::Unchanged),
            Some(_) => return Err(RuleError::DecidedDifferently),
            None => {}
        }
        if matches!(decision, Decision::Commit(_)) && !sub.started() {
            return Err(RuleError::NotStarted);
        }
        sub.decisions[k] = Some(decision);
        let aborted = sub
            .decisions
            .iter()
            .any(|d| matches!(d, Some(Decision::Abort)));
        let differ = matches!(
            &sub.decisions,
            [Some(Decision::Commit(a)), Some(Decision::Commit(b))] if a != b
        );
        if aborted {
            return Ok(self.abort(AbortReason::PartyAborted, now));
        }
        if differ {
            return Ok(self.abort(AbortReason::ContextsDiffer, now));
        }
        if self.subs.iter().all(Sub::committed) {
            self.outcome = Some((TxOutcome::Committed, now));
            return Ok(Effect::Decided(TxOutcome::Committed));
        }
        Ok(Effect::Recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Tx<u8, u32>;

    fn begin(p: u8, q: u8, deadline: u64) -> Opening<u8> {
        Opening {
            pair: pair_of(&p, &q).unwrap_or((0, 0)),
            initiator: p,
            via: None,
            deadline,
        }
    }

    fn join(p: u8, r: u8, via: (u8, u8), deadline: u64) -> Opening<u8> {
        Opening {
            pair: pair_of(&p, &r).unwrap_or((0, 0)),
            initiator: p,
            via: Some(via),
            deadline,
        }
    }

    fn started(o: &Opening<u8>) -> T {
        let mut tx = T::begin(o).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(tx.vote(1, o, &o.pair.0, Vote::Accept), Ok(Effect::Recorded));
        assert_eq!(tx.vote(1, o, &o.pair.1, Vote::Accept), Ok(Effect::Started));
        tx
    }

    #[test]
    fn a_subtransaction_commits_only_when_both_commit_with_the_same_context() {
        let o = begin(1, 2, 100);
        let mut tx = started(&o);
        assert_eq!(
            tx.decide(2, &o.pair, &1, Decision::Commit(7)),
            Ok(Effect::Recorded)
        );
        assert_eq!(
            tx.decide(2, &o.pair, &2, Decision::Commit(7)),
            Ok(Effect::Decided(TxOutcome::Committed))
        );
        let mut tx = started(&o);
        tx.decide(2, &o.pair, &1, Decision::Commit(7)).ok();
        assert_eq!(
            tx.decide(2, &o.pair, &2, Decision::Commit(8)),
            Ok(Effect::Decided(TxOutcome::Aborted(
                AbortReason::ContextsDiffer
            )))
        );
    }

    #[test]
    fn a_reject_or_an_abort_aborts_the_whole_transaction() {
        let o = begin(1, 2, 100);
        let mut tx = T::begin(&o).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            tx.vote(1, &o, &2, Vote::Reject),
            Ok(Effect::Decided(TxOutcome::Aborted(AbortReason::Rejected)))
        );
        let mut tx = started(&o);
        let j = join(2, 3, o.pair, 100);
        tx.vote(1, &j, &3, Vote::Accept).ok();
        tx.vote(1, &j, &2, Vote::Accept).ok();
        tx.decide(2, &o.pair, &1, Decision::Commit(7)).ok();
        tx.decide(2, &o.pair, &2, Decision::Commit(7)).ok();
        assert_eq!(tx.outcome, None, "the joined subtransaction is undecided");
        assert_eq!(
            tx.decide(3, &j.pair, &3, Decision::Abort),
            Ok(Effect::Decided(TxOutcome::Aborted(
                AbortReason::PartyAborted
            )))
        );
    }

    #[test]
    fn the_transaction_commits_when_all_its_subtransactions_have() {
        let o = begin(1, 2, 100);
        let mut tx = started(&o);
        let j = join(2, 3, o.pair, 100);
        assert_eq!(tx.vote(1, &j, &2, Vote::Accept), Ok(Effect::Recorded));
        assert_eq!(tx.vote(1, &j, &3, Vote::Accept), Ok(Effect::Started));
        for (pair, ctx) in [(o.pair, 5), (j.pair, 6)] {
            tx.decide(2, &pair, &pair.0, Decision::Commit(ctx)).ok();
        }
        assert_eq!(
            tx.decide(2, &o.pair, &2, Decision::Commit(5)),
            Ok(Effect::Recorded)
        );
        assert_eq!(
            tx.decide(2, &j.pair, &3, Decision::Commit(6)),
            Ok(Effect::Decided(TxOutcome::Committed))
        );
    }

    #[test]
    fn a_party_joins_others_only_while_its_own_subtransaction_is_undecided() {
        let o = begin(1, 2, 100);
        let mut tx = started(&o);
        tx.decide(2, &o.pair, &2, Decision::Commit(5)).ok();
        let late = join(2, 3, o.pair, 100);
        assert_eq!(
            tx.vote(2, &late, &3, Vote::Accept),
            Err(RuleError::JoinNotAllowed)
        );
        let stranger = join(4, 3, o.pair, 100);
        assert_eq!(
            tx.vote(2, &stranger, &3, Vote::Accept),
            Err(RuleError::JoinNotAllowed)
        );
        let early = join(1, 3, o.pair, 99);
        assert_eq!(
            tx.vote(2, &early, &3, Vote::Accept),
            Err(RuleError::WrongDeadline)
        );
        let ok = join(1, 3, o.pair, 100);
        assert_eq!(tx.vote(2, &ok, &3, Vote::Accept), Ok(Effect::Recorded));
    }

    #[test]
    fn votes_and_decisions_stand_and_a_decided_transaction_never_changes() {
        let o = begin(1, 2, 100);
        let mut tx = T::begin(&o).unwrap_or_else(|e| panic!("{e:?}"));
        tx.vote(1, &o, &1, Vote::Accept).ok();
        assert_eq!(tx.vote(1, &o, &1, Vote::Accept), Ok(Effect::Unchanged));
        assert_eq!(
            tx.vote(1, &o, &1, Vote::Reject),
            Err(RuleError::VotedDifferently)
        );
        assert_eq!(tx.vote(1, &o, &3, Vote::Accept), Err(RuleError::NotAParty));
        assert_eq!(
            tx.decide(1, &o.pair, &1, Decision::Commit(1)),
            Err(RuleError::NotStarted)
        );
        tx.vote(1, &o, &2, Vote::Accept).ok();
        tx.decide(1, &o.pair, &1, Decision::Commit(1)).ok();
        assert_eq!(
            tx.decide(1, &o.pair, &1, Decision::Commit(2)),
            Err(RuleError::DecidedDifferently)
        );
        tx.decide(1, &o.pair, &2, Decision::Commit(1)).ok();
        let done = Ok(Effect::AlreadyDecided(TxOutcome::Committed));
        assert_eq!(tx.decide(5, &o.pair, &2, Decision::Abort), done);
        assert_eq!(tx.vote(5, &o, &2, Vote::Reject), done);
        assert_eq!(tx.expire(1_000), None);
    }

    #[test]
    fn a_vote_that_cannot_stand_registers_nothing() {
        let o = begin(1, 2, 100);
        let mut tx = started(&o);
        let before = tx.clone();
        // A stranger's vote on a new Join, a Join whose initiator is not of
        // its pair, a malformed pair, another deadline on the Begin.
        assert_eq!(
            tx.vote(1, &join(1, 3, o.pair, 100), &4, Vote::Accept),
            Err(RuleError::NotAParty)
        );
        let mut foreign = join(1, 3, o.pair, 100);
        foreign.initiator = 5;
        assert_eq!(
            tx.vote(1, &foreign, &3, Vote::Accept),
            Err(RuleError::NotAParty)
        );
        let mut same = join(1, 3, o.pair, 100);
        same.pair = (3, 3);
        assert_eq!(
            tx.vote(1, &same, &3, Vote::Accept),
            Err(RuleError::NotAParty)
        );
        assert_eq!(
            tx.vote(1, &begin(1, 2, 99), &2, Vote::Accept),
            Err(RuleError::WrongDeadline)
        );
        assert_eq!(tx, before);
        let mut bad = begin(2, 2, 100);
        bad.pair = (2, 2);
        assert!(T::begin(&bad).is_err());
    }

    #[test]
    fn the_deadline_aborts_what_is_undecided() {
        let o = begin(1, 2, 100);
        let mut tx = started(&o);
        tx.decide(2, &o.pair, &1, Decision::Commit(1)).ok();
        assert_eq!(tx.expire(99), None);
        assert_eq!(
            tx.decide(100, &o.pair, &2, Decision::Commit(1)),
            Ok(Effect::Decided(TxOutcome::Aborted(
                AbortReason::DeadlinePassed
            )))
        );
        let mut tx = started(&o);
        assert_eq!(
            tx.expire(100),
            Some(TxOutcome::Aborted(AbortReason::DeadlinePassed))
        );
        assert!(T::begin(&join(1, 2, (1, 2), 100)).is_err());
    }
}
