#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! STP transactions end to end through the simulation harness: chains of
//! ST processes and a commit authority that crashes and restarts on its log,
//! over networks that lose, copy, damage, delay and reorder. A calm run
//! commits every transaction; lossy and hostile ones keep every invariant of
//! `stp::World::check` on every seed; each invariant has a test that shows
//! it is exercised and that its check sees it broken; a seed replays a run
//! exactly, and the seed a failure prints replays that failure.

use agora_sim::stp::{
    check_seed, replay, Crashes, Fate, Fates, PartyEnd, Property, Scenario, Summary, TxEnd,
    Violation, World,
};
use agora_sim::NetConfig;
use agora_stp::ids::Tid;
use agora_stp::log::{CommitLog, LogUnit};
use agora_stp::rules::AbortReason;
use agora_stp::Context;
use std::collections::BTreeSet;

/// Seeds per test: a few seconds in all in a debug build.
const SEEDS: u64 = 24;

fn run(seed: u64, cfg: NetConfig, sc: Scenario) -> (World, Summary) {
    let mut w = World::new(seed, cfg, sc);
    let s = w.run();
    let broken = w.check();
    assert!(
        broken.is_empty(),
        "seed {seed} broke invariants (replay: agora_sim::stp::replay({seed}, {cfg:?}, {sc:?})): \
         {broken:#?}\n{s:#?}"
    );
    (w, s)
}

/// Runs `seeds` from `first`, every invariant holding on each.
fn many(first: u64, seeds: u64, cfg: NetConfig, sc: Scenario) -> Vec<(World, Summary)> {
    (first..first + seeds).map(|s| run(s, cfg, sc)).collect()
}

/// 20% lost, 10% copied, 10% damaged, delays of 1 ms to 2 s.
fn hostile() -> NetConfig {
    NetConfig {
        drop: 0.20,
        duplicate: 0.10,
        tamper: 0.10,
        min_delay_ms: 1,
        max_delay_ms: 2_000,
    }
}

fn only(v: Vec<Violation>, p: Property) -> Vec<Violation> {
    v.into_iter().filter(|x| x.property == p).collect()
}

fn property(w: &World, p: Property) -> Vec<Violation> {
    only(w.check(), p)
}

#[test]
fn a_calm_network_commits_every_transaction() {
    for (w, s) in many(1, 8, NetConfig::ideal(), Scenario::calm()) {
        assert_eq!(s.transactions, vec![TxEnd::Committed; 2], "{s:#?}");
        assert_eq!(s.parties, vec![PartyEnd::Committed; 8], "{s:#?}");
        assert_eq!(s.leaves, 2);
        assert_eq!(s.net.dropped + s.net.duplicated + s.net.tampered, 0);
        assert_eq!(
            s.ca.crashes + s.ca.crashes_in_step + s.ca.lost_while_down,
            0
        );
        assert_eq!(s.ca.refused + s.ca.expired + s.rejected, 0, "{s:#?}");
        // Every party's outcome verifies and is the log's leaf: the two
        // parties of a subtransaction hold the same leaf.
        for p in &w.parties {
            let o = p.outcome.as_ref().expect("an outcome");
            assert!(o.leaf.committed());
            assert_eq!(o.leaf.subs.len(), 3, "a chain of four: three pairs");
        }
    }
}

#[test]
fn a_lossy_network_and_a_crashing_commit_authority_keep_every_invariant() {
    let runs = many(10_000, 2 * SEEDS, NetConfig::lossy(), Scenario::default());
    let sum = |f: fn(&Summary) -> u64| runs.iter().map(|(_, s)| f(s)).sum::<u64>();
    let ends: Vec<TxEnd> = runs
        .iter()
        .flat_map(|(_, s)| s.transactions.clone())
        .collect();
    let committed = ends.iter().filter(|e| **e == TxEnd::Committed).count();
    eprintln!(
        "lossy: {committed}/{} committed; crashes {} + {} in a step, {} messages lost at a \
         down CA, {} expired, {} resends, {} taken late, {} sealing",
        ends.len(),
        sum(|s| s.ca.crashes),
        sum(|s| s.ca.crashes_in_step),
        sum(|s| s.ca.lost_while_down),
        sum(|s| s.ca.expired),
        sum(|s| s.resends),
        sum(|s| s.taken_late),
        sum(|s| s.sealing),
    );
    assert!(sum(|s| s.net.dropped + s.net.duplicated + s.net.tampered) > 1_000);
    assert!(sum(|s| s.ca.crashes) > 0 && sum(|s| s.ca.crashes_in_step) > 0);
    assert!(sum(|s| s.ca.lost_while_down) > 0 && sum(|s| s.resends) > 0);
    assert!(sum(|s| s.sealing) > 0, "some answers waited for a head");
    assert!(committed * 2 >= ends.len(), "most transactions commit");
    // Every way of deviating came up, and every kind of abort.
    let fates: BTreeSet<String> = runs
        .iter()
        .flat_map(|(_, s)| s.deviants.iter().flatten())
        .map(|f| match f {
            Fate::Vanish { .. } => "Vanish".to_string(),
            f => format!("{f:?}"),
        })
        .collect();
    assert_eq!(fates.len(), 5, "{fates:?}");
    for r in [
        AbortReason::Rejected,
        AbortReason::PartyAborted,
        AbortReason::DeadlinePassed,
    ] {
        assert!(ends.contains(&TxEnd::Aborted(r.code())), "{r:?}: {ends:?}");
    }
}

#[test]
fn a_hostile_network_and_long_chains_keep_every_invariant() {
    let sc = Scenario {
        parties: 6,
        transactions: 2,
        deadline_secs: 240,
        crashes: Crashes {
            in_step: 0.2,
            ..Crashes::often()
        },
        ..Scenario::default()
    };
    let runs = many(20_000, SEEDS / 2, hostile(), sc);
    let committed: usize = runs.iter().map(|(_, s)| s.committed()).sum();
    eprintln!("hostile: {committed} of {} committed", 2 * runs.len());
    assert!(committed > 0);
}

#[test]
fn every_party_holding_an_outcome_holds_the_log_s_leaf() {
    let runs = many(30_000, SEEDS, NetConfig::lossy(), Scenario::default());
    let held = runs
        .iter()
        .flat_map(|(w, _)| &w.parties)
        .filter(|p| p.outcome.is_some())
        .count();
    assert!(held > 100, "{held} parties hold an outcome");
    // Broken: a party holds the outcome of the other transaction (which
    // verifies: the CA signed it).
    let (mut w, _) = runs
        .into_iter()
        .find(|(w, _)| w.parties[0].outcome.is_some() && w.parties[4].outcome.is_some())
        .expect("a run where p0 and p4 hold outcomes");
    w.parties[0].outcome = w.parties[4].outcome.clone();
    let broken = property(&w, Property::OutcomeAgreesWithLog);
    assert!(
        broken
            .iter()
            .any(|v| v.what.contains("outcome of another transaction")),
        "{broken:#?}"
    );
}

#[test]
fn a_committed_transaction_has_both_parties_at_its_leaf_context() {
    let runs = many(40_000, SEEDS, NetConfig::lossy(), Scenario::default());
    let pairs: usize = runs
        .iter()
        .flat_map(|(w, _)| &w.parties)
        .filter(|p| p.end() == PartyEnd::Committed)
        .flat_map(|p| p.subs.iter().flatten())
        .filter(|s| s.committed_with.is_some())
        .count();
    assert!(pairs > 100, "{pairs} committed sides checked");
    let (w, _) = runs
        .iter()
        .find(|(_, s)| s.transactions[0] == TxEnd::Committed)
        .expect("a committed first transaction");
    assert!(property(w, Property::CommittedAtLeafContext).is_empty());
    // Broken three ways on a fresh copy of that run: another context, a
    // transcript that chains elsewhere, data that did not arrive.
    let seed = w.seed;
    let fresh = || run(seed, NetConfig::lossy(), Scenario::default()).0;
    let mut w = fresh();
    let sub = w.parties[1].subs[0].as_mut().expect("p1's first");
    sub.committed_with = Some(Context([7; 32]));
    assert!(property(&w, Property::CommittedAtLeafContext)
        .iter()
        .any(|v| v.what.contains("the leaf records")));
    let mut w = fresh();
    let sub = w.parties[1].subs[0].as_mut().expect("p1's first");
    sub.transcript.push(b"one message more".to_vec());
    let broken = property(&w, Property::CommittedAtLeafContext);
    assert!(broken.iter().any(|v| v.what.contains("chains to")));
    assert!(broken
        .iter()
        .any(|v| v.what.contains("different transcripts")));
    let mut w = fresh();
    let sub = w.parties[2].subs[0].as_mut().expect("p2's first");
    sub.received.pop();
    assert!(property(&w, Property::CommittedAtLeafContext)
        .iter()
        .any(|v| v.what.contains("did not receive")));
}

#[test]
fn no_transaction_has_two_leaves() {
    for (w, s) in many(50_000, SEEDS / 2, NetConfig::lossy(), Scenario::default()) {
        let known = s
            .transactions
            .iter()
            .filter(|t| !matches!(t, TxEnd::Unknown))
            .count();
        assert_eq!(s.leaves, known as u64, "one leaf per transaction");
        assert!(property(&w, Property::OneLeafPerTransaction).is_empty());
    }
    // Broken: the log holds a copy of a leaf under another record.
    let sc = Scenario {
        second_leaf_for_testing_only: true,
        ..Scenario::default()
    };
    let mut w = World::new(50_000, NetConfig::lossy(), sc);
    w.run();
    let broken = property(&w, Property::OneLeafPerTransaction);
    assert!(
        broken.iter().any(|v| v.what.contains("has a second leaf")),
        "{broken:#?}"
    );
}

#[test]
fn every_transaction_is_decided_once_its_deadline_passes() {
    // Someone vanishes in every transaction: most are left to the sweep.
    let sc = Scenario {
        fates: Fates {
            reject: 0.0,
            abort: 0.0,
            vanish: 1.0,
        },
        deadline_secs: 60,
        ..Scenario::default()
    };
    let runs = many(60_000, SEEDS / 2, NetConfig::lossy(), sc);
    let expired: usize = runs
        .iter()
        .map(|(_, s)| s.aborted(AbortReason::DeadlinePassed))
        .sum();
    let swept: u64 = runs.iter().map(|(_, s)| s.ca.expired).sum();
    eprintln!("deadlines: {expired} expired, {swept} by the sweep");
    assert!(expired >= runs.len(), "{expired} expired");
    assert!(swept > 0, "the sweep aborted some");
    for (w, s) in &runs {
        assert!(s.transactions.iter().all(|t| *t != TxEnd::Undecided));
        assert!(property(w, Property::DecidedByDeadline).is_empty());
    }
    // Broken: an undecided record past its deadline in the log.
    let (w, _) = &runs[0];
    w.ca.log
        .commit(LogUnit {
            tid: Tid([0xDD; 16]),
            version: 0,
            record: Vec::new(),
            deadline: agora_sim::EPOCH,
            leaf: None,
        })
        .wait()
        .unwrap();
    assert!(property(w, Property::DecidedByDeadline)
        .iter()
        .any(|v| v.what.contains("undecided at the end of the run")));
}

#[test]
fn no_role_refuses_what_the_commit_authority_signed_and_every_run_finishes() {
    // Copies alone (no loss, no damage) and a CA that crashes in one step
    // of five: every answer arrives many times and late.
    let copying = NetConfig {
        drop: 0.0,
        duplicate: 0.33,
        tamper: 0.0,
        min_delay_ms: 1,
        max_delay_ms: 2_000,
    };
    let sc = Scenario {
        crashes: Crashes {
            in_step: 0.2,
            ..Crashes::often()
        },
        ..Scenario::default()
    };
    for (w, s) in many(70_000, SEEDS / 2, copying, sc) {
        assert!(property(&w, Property::RolesAgree).is_empty());
        assert!(property(&w, Property::RunFinished).is_empty());
        assert!(s.end_ms < agora_sim::MAX_RUN_MS);
        assert!(!s.parties.contains(&PartyEnd::Unfinished));
    }
}

#[test]
fn a_seed_replays_exactly_and_seeds_differ() {
    let sc = Scenario::default();
    let a = run(77, NetConfig::lossy(), sc).1;
    let b = run(77, NetConfig::lossy(), sc).1;
    assert_eq!(a, b, "same seed, same run");
    let c = run(78, NetConfig::lossy(), sc).1;
    assert_ne!(a.transcript, c.transcript);
    let (r, v) = replay(77, NetConfig::lossy(), sc);
    assert_eq!((r, v), (a, vec![]));
}

#[test]
fn a_printed_failing_seed_replays() {
    let sc = Scenario {
        second_leaf_for_testing_only: true,
        ..Scenario::default()
    };
    let cfg = NetConfig::lossy();
    let failure = (90_000..90_010)
        .find_map(|seed| check_seed(seed, cfg, sc).err())
        .expect("a broken log fails a seed");
    // What a failing test prints, and the seed read back from it.
    let printed = failure.to_string();
    let marker = "replay: agora_sim::stp::replay(";
    let at = printed.find(marker).expect("the replay line") + marker.len();
    let seed: u64 = printed[at..]
        .split(',')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .expect("the seed");
    assert_eq!(seed, failure.seed);
    assert!(printed.contains("second_leaf_for_testing_only: true"));
    let (summary, violations) = replay(seed, cfg, sc);
    assert_eq!(summary, failure.summary, "the same run");
    assert_eq!(violations, failure.violations, "the same failure");
    assert!(violations
        .iter()
        .all(|v| v.property == Property::OneLeafPerTransaction));
}
