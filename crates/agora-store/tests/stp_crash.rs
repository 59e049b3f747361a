#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![cfg(unix)] // SIGKILL and ExitStatusExt::signal
//! Crash test of the STP commit authority's log on SQLite: a child process
//! runs a commit authority over [`agora_store::SqliteCommitLog`] (threads
//! carrying transactions from Begin to decision, both parties deciding at
//! once, so their steps race on one record; a thread abandoning
//! transactions and a sweeper aborting them past their deadline; a sealer
//! signing tree heads) and is SIGKILLed at a random moment. Reopened, the
//! log holds every step the CA answered, its leaf indices are dense from 0,
//! no transaction has two leaves, every leaf agrees with its record, and a
//! restarted CA gives every acknowledged decided transaction its verified
//! Outcome at the index it said.
//!
//! The child is this test binary re-executed with `--exact
//! stp_crash_child`; the env var [`DB_ENV`] carries the database path
//! (without it, the child test returns at once, so a normal run passes it).

use agora_core::crypto::{os_rng, Secret, SigningKey};
use agora_core::wire::decode;
use agora_core::Timestamp;
use agora_store::{AtRestKey, SqliteStore, StoreConfig};
use agora_stp::ca::{Answer, CommitAuthority};
use agora_stp::log::{CommitLog, TxRecord};
use agora_stp::msg::{Outcome, OutcomeLeaf};
use agora_stp::outcome::verify_outcome;
use agora_stp::process::{self, Invitation};
use agora_stp::testkit::{World, DAY, NOW};
use agora_stp::Tid;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const DB_ENV: &str = "AGORA_STP_CRASH_TEST_DB";
/// The world's seed: the parent builds the same parties and CA key.
const SEED: u64 = 2024;
/// Threads carrying transactions to a decision, each with its own pair.
const PAIRS: usize = 4;
/// Transactions per thread, so that a child never killed still ends (the
/// parent then fails: it must kill it mid-stream).
const CHILD_TRANSACTIONS: usize = 100_000;
/// The abandoned transactions' deadline, and the sweeper's clock past it
/// (and before the other transactions' deadline, a day ahead).
const SHORT_DEADLINE: Timestamp = Timestamp(NOW.0 + 60);
const SWEEP_AT: Timestamp = Timestamp(NOW.0 + 120);

fn key() -> AtRestKey {
    AtRestKey::new(&Secret::new([7; 32]))
}

/// Parties 0..2*PAIRS decide; the last two abandon.
fn world() -> World {
    World::new(2 * PAIRS + 2, SEED)
}

/// The world's CA, on whatever log it is handed.
fn ca_of(w: &World) -> CommitAuthority {
    CommitAuthority::new(
        SigningKey::from_seed(&w.ca_key.to_seed()),
        w.parties[0].trust.clone(),
    )
}

/// One line to the parent, flushed at once.
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The leaf index an answer to a decided transaction names.
fn decided_index(a: &Answer) -> Option<u64> {
    match a {
        Answer::Sealing { index } => Some(*index),
        Answer::Outcome(o) => Some(decode::<Outcome>(o).unwrap().index),
        _ => None,
    }
}

/// Pair `t` (parties 2t and 2t+1): transactions begun, both voting, ended,
/// then both decisions sent at once. Says STARTED once both votes are
/// answered, DECIDED with the leaf index once decided.
fn deciding(w: &World, ca: &CommitAuthority, log: &dyn CommitLog, t: usize) {
    let (p, q) = (2 * t, 2 * t + 1);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(os_rng().next_u64());
    for i in 0..CHILD_TRANSACTIONS {
        let tid = Tid::random(&mut rng);
        let deadline = NOW.plus_secs(DAY);
        let (wait_p, opened) =
            process::begin(&w.parties[p], &mut rng, NOW, tid, w.uid(q), deadline).unwrap();
        let first = ca.handle(NOW, &opened.vote, log).unwrap();
        assert!(matches!(first, Answer::Pending(_)), "{first:?}");
        let inv = Invitation::receive(&w.parties[q], NOW, &opened.opening).unwrap();
        let (wait_q, vote_q) = inv.accept(&w.parties[q], &mut rng);
        let Answer::Started(started_q) = ca.handle(NOW, &vote_q, log).unwrap() else {
            panic!("no Started for the second vote");
        };
        let Answer::Started(started_p) = ca.handle(NOW, wait_p.vote(), log).unwrap() else {
            panic!("no Started for the first vote");
        };
        say(format!("STARTED {tid}"));
        let mut open_p = wait_p.on_started(&w.parties[p], NOW, &started_p).unwrap();
        let mut open_q = wait_q.on_started(&w.parties[q], NOW, &started_q).unwrap();
        let end = open_p.end(&w.parties[p]).unwrap();
        open_q.receive(&end).unwrap();
        let commit = i % 3 != 2;
        let answers = std::thread::scope(|s| {
            let dp = s.spawn(|| {
                let (_, bytes) = open_p.decide(&w.parties[p], commit).unwrap();
                ca.handle(NOW, &bytes, log).unwrap()
            });
            let dq = s.spawn(|| {
                let (_, bytes) = open_q.decide(&w.parties[q], true).unwrap();
                ca.handle(NOW, &bytes, log).unwrap()
            });
            [dp.join().unwrap(), dq.join().unwrap()]
        });
        let index = answers
            .iter()
            .find_map(decided_index)
            .unwrap_or_else(|| panic!("undecided after both decisions: {answers:?}"));
        say(format!("DECIDED {tid} {index}"));
    }
}

/// Transactions voted by their initiator only, with a short deadline: the
/// sweeper aborts them. Says OPENED once the vote is answered.
fn abandoning(w: &World, ca: &CommitAuthority, log: &dyn CommitLog) {
    let (p, q) = (2 * PAIRS, 2 * PAIRS + 1);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(os_rng().next_u64());
    for _ in 0..CHILD_TRANSACTIONS {
        let tid = Tid::random(&mut rng);
        let (_, opened) =
            process::begin(&w.parties[p], &mut rng, NOW, tid, w.uid(q), SHORT_DEADLINE).unwrap();
        let a = ca.handle(NOW, &opened.vote, log).unwrap();
        assert!(matches!(a, Answer::Pending(_)), "{a:?}");
        say(format!("OPENED {tid}"));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The deadline sweep, at a clock past the abandoned transactions'
/// deadline: says DECIDED for each it aborts.
fn sweeping(ca: &CommitAuthority, log: &dyn CommitLog, running: &AtomicUsize) {
    while running.load(Ordering::Relaxed) > 0 {
        for tid in log.undecided_past(SWEEP_AT, 16).unwrap() {
            let a = ca.expire(SWEEP_AT, &tid, log).unwrap();
            let index = decided_index(&a).unwrap_or_else(|| panic!("not aborted: {a:?}"));
            say(format!("DECIDED {tid} {index}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
}

/// Signs a tree head over what is logged, again and again: says HEAD with
/// the size of the latest head once recorded.
fn sealing(ca: &CommitAuthority, log: &dyn CommitLog, running: &AtomicUsize) {
    while running.load(Ordering::Relaxed) > 0 {
        ca.seal(NOW, log).unwrap();
        if let Some((size, _)) = log.latest_head().unwrap() {
            say(format!("HEAD {size}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The child: a commit authority at work until killed (bounded).
#[test]
fn stp_crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return; // not re-executed by the parent: nothing to do
    };
    let w = world();
    let store = SqliteStore::open(Path::new(&path), StoreConfig::default(), key()).unwrap();
    let log = store.commit_log();
    let ca = ca_of(&w);
    let running = AtomicUsize::new(PAIRS + 1);
    std::thread::scope(|s| {
        for t in 0..PAIRS {
            let (w, ca, log, running) = (&w, &ca, &log, &running);
            s.spawn(move || {
                deciding(w, ca, log, t);
                running.fetch_sub(1, Ordering::Relaxed);
            });
        }
        s.spawn(|| {
            abandoning(&w, &ca, &log);
            running.fetch_sub(1, Ordering::Relaxed);
        });
        s.spawn(|| sweeping(&ca, &log, &running));
        s.spawn(|| sealing(&ca, &log, &running));
    });
}

/// What the child said before it was killed.
#[derive(Default)]
struct Acked {
    started: BTreeSet<String>,
    opened: BTreeSet<String>,
    decided: BTreeMap<String, u64>,
    head: u64,
}

fn tid_of(hex: &str) -> Tid {
    Tid::from_hex(hex).unwrap()
}

fn run_and_kill(kill_after_decided: usize, then_sleep_us: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stp_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Acked::default();
    // Keep the pipe open until the kill: a closed pipe would make the child
    // fail on its next line and exit by itself, not by SIGKILL.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["STARTED", tid] => {
                acked.started.insert(tid.to_string());
            }
            ["OPENED", tid] => {
                acked.opened.insert(tid.to_string());
            }
            ["DECIDED", tid, index] => {
                let index: u64 = index.parse().unwrap();
                let before = acked.decided.insert(tid.to_string(), index);
                assert!(before.is_none_or(|b| b == index), "{tid}: two indices");
            }
            ["HEAD", size] => acked.head = acked.head.max(size.parse().unwrap()),
            _ => {} // the test harness's own lines
        }
        if acked.decided.len() >= kill_after_decided {
            break;
        }
    }
    assert!(
        acked.decided.len() >= kill_after_decided,
        "the child ended before it was killed"
    );
    // A moment more, so that the kill lands anywhere in a step.
    std::thread::sleep(std::time::Duration::from_micros(then_sleep_us));
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no checkpoint
    let status = child.wait().unwrap();
    drop(lines);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was still working when SIGKILLed: {status:?}"
    );
    check_after_crash(&path, &acked);
}

fn check_after_crash(path: &Path, acked: &Acked) {
    let store = SqliteStore::open(path, StoreConfig::default(), key()).unwrap();
    let log = store.commit_log();

    // The leaves: dense from 0, one per transaction, each agreeing with its
    // record, each the outcome of the transaction it is filed under.
    let c = rusqlite::Connection::open(path).unwrap();
    let one = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let count = one("SELECT COUNT(*) FROM stp_leaf");
    assert_eq!(
        count,
        one("SELECT COALESCE(MAX(idx), -1) + 1 FROM stp_leaf")
    );
    assert_eq!(one("SELECT COALESCE(MIN(idx), 0) FROM stp_leaf"), 0);
    assert_eq!(count as u64, log.leaf_count().unwrap());
    assert_eq!(
        one("SELECT COUNT(*) FROM (SELECT tid FROM stp_leaf GROUP BY tid HAVING COUNT(*) > 1)"),
        0,
        "a transaction with two leaves"
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM stp_tx t WHERE leaf_index IS NOT NULL AND NOT EXISTS
             (SELECT 1 FROM stp_leaf l WHERE l.idx = t.leaf_index AND l.tid = t.tid)"
        ),
        0,
        "a record naming a leaf that is not its own"
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM stp_leaf l WHERE NOT EXISTS
             (SELECT 1 FROM stp_tx t WHERE t.leaf_index = l.idx AND t.tid = l.tid)"),
        0,
        "a leaf its record does not name"
    );
    let leaves: Vec<(Vec<u8>, Vec<u8>)> = c
        .prepare("SELECT tid, leaf FROM stp_leaf ORDER BY idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (tid, leaf) in &leaves {
        assert_eq!(&decode::<OutcomeLeaf>(leaf).unwrap().tid.0[..], &tid[..]);
    }
    // Every record is whole.
    let records: Vec<Vec<u8>> = c
        .prepare("SELECT record FROM stp_tx")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for r in &records {
        TxRecord::decode(r).unwrap();
    }

    // Every step the CA answered is there.
    for tid in &acked.opened {
        assert!(
            log.get(&tid_of(tid)).unwrap().is_some(),
            "vote of {tid} lost"
        );
    }
    for tid in &acked.started {
        let stored = log
            .get(&tid_of(tid))
            .unwrap()
            .expect("a started transaction");
        let rec = TxRecord::decode(&stored.record).unwrap();
        assert!(
            rec.tx.subs[0].votes.iter().all(Option::is_some),
            "a vote of started {tid} lost"
        );
    }
    for (tid, index) in &acked.decided {
        let stored = log
            .get(&tid_of(tid))
            .unwrap()
            .expect("a decided transaction");
        assert_eq!(stored.leaf_index, Some(*index), "the leaf of {tid}");
    }
    let (head_size, _) = log.latest_head().unwrap().unwrap_or((0, Vec::new()));
    assert!(head_size >= acked.head, "a recorded tree head lost");
    assert!(head_size <= log.leaf_count().unwrap());

    // A CA restarted on the log gives each acknowledged decided transaction
    // its Outcome, verified, at the index it said.
    let w = world();
    let ca = ca_of(&w);
    ca.seal(NOW, &log).unwrap();
    for (tid, index) in &acked.decided {
        let Answer::Outcome(o) = ca.status(NOW, &tid_of(tid), &log).unwrap() else {
            panic!("{tid} undecided after the restart");
        };
        let v = verify_outcome(&o, &ca.verifying_key()).unwrap();
        assert_eq!((v.leaf.tid, v.index), (tid_of(tid), *index));
    }
    eprintln!(
        "killed after {} decided ({} started, {} abandoned, head {}): {} leaves, {} records durable",
        acked.decided.len(),
        acked.started.len(),
        acked.opened.len(),
        acked.head,
        leaves.len(),
        records.len()
    );
}

#[test]
fn a_commit_authority_killed_at_random_loses_no_answered_step_and_keeps_its_leaves_dense() {
    let mut rng = os_rng();
    for _ in 0..4 {
        let kill_after = 10 + (rng.next_u64() % 290) as usize;
        let sleep_us = rng.next_u64() % 3_000;
        eprintln!("kill after {kill_after} decided transactions and {sleep_us} µs");
        run_and_kill(kill_after, sleep_us);
    }
}
