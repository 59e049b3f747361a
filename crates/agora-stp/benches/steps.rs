#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! The CPU cost of each STP step per role (ARCHITECTURE section 6), one
//! thread, with the commit authority on the in-memory log
//! (`MemoryCommitLog`): no storage cost, only the role's own work. The
//! parties and the CA come from `agora_stp::testkit::World`; the CA is built
//! as the World builds it (`IdentityTrust` without the validation cache),
//! and the two steps that validate identity certificates (the votes) are
//! also measured on a CA whose trust has `IdentityTrust::with_cache()`
//! (`*_cached`: the parties are returning ones, their certificates in the
//! cache).
//!
//! - `stp_process`: one ST process, p0 beginning a transaction with p1.
//!   `begin` (signs the Begin and p0's Vote, draws an X25519 share),
//!   `invitation_receive` (p1 validates p0's certificate and checks the
//!   Begin's signature), `invitation_accept` (p1's Vote), `on_started`
//!   (p0: the CA's signature, p1's vote and certificate, X25519 and HKDF),
//!   `send_1kib` and `receive_1kib` (a 1 KiB payload: AEAD and signature),
//!   `end`, `decide` (commit), `on_outcome` (the tree head's signature and
//!   an inclusion proof of 17 hashes: leaf 50,000 of 100,000).
//! - `stp_ca`: the commit authority. `on_vote_first` (a new transaction:
//!   the voter's certificate, the opening's, both signatures, the first
//!   record, a signed Pending), `on_vote_second` (the other party's vote:
//!   answers a signed Started), `on_decide_first` (a signed Pending),
//!   `on_decide_deciding` (the decision that decides: appends the outcome
//!   leaf), `outcome_100k` (the Outcome of leaf 50,000 with its inclusion
//!   proof against the head of a 100,000-leaf log), `status_pending`.
//! - `stp_ca_seal`: `seal` of a batch of 1 and of 256 outcome leaves: one
//!   tree-head signature per batch, the leaves hashed into the CA's tree;
//!   criterion reports the cost per outcome (`Throughput::Elements`).
//!
//! Each bench measures its step only. A step that consumes or changes its
//! state gets a fresh copy per iteration from `iter_batched`, built outside
//! the measurement: a clone of the process state, or, for the CA, a fresh
//! log holding the transaction's record as the real run left it before
//! that step (a vote replayed into the same log would be a no-op) and a
//! fresh CA (one remembers the signatures it verified). The
//! 100,000-leaf log holds one real transaction at leaf 50,000 and
//! synthetic two-party outcome leaves around it (only leaves are read);
//! it is built once, the first time a bench that needs it runs.
//!
//! `cargo bench -p agora-stp --bench steps -- --warm-up-time 1
//! --measurement-time 2` (about a minute and a half); smoke mode:
//! `cargo bench -p agora-stp --bench steps -- --test`.

use agora_core::crypto::SigningKey;
use agora_core::Timestamp;
use agora_pki::IdentityTrust;
use agora_stp::ca::{Answer, CommitAuthority};
use agora_stp::log::{CommitLog, LogUnit, LogWritten, MemoryCommitLog};
use agora_stp::msg::{Outcome, OutcomeLeaf};
use agora_stp::process::{self, AwaitOutcome, AwaitStarted, Invitation, Open};
use agora_stp::testkit::{World, DAY, NOW};
use agora_stp::{Context, Pair, Tid};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::OnceLock;

/// The payload of the measured Data message.
const PAYLOAD_LEN: usize = 1024;
/// Leaves in the large log, and the real transaction's leaf in it.
const BIG_LOG_LEAVES: u64 = 100_000;
const BIG_LOG_INDEX: u64 = 50_000;
/// The hashes in that leaf's inclusion proof.
const BIG_LOG_PROOF_LEN: usize = 17;
/// The batch sizes of `seal`.
const SEAL_BATCHES: [u64; 2] = [1, 256];

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One two-party transaction, p0 (the initiator, index 0) with p1, run to
/// its outcome leaf through the World's CA on the World's log: the state
/// before each measured step and the message it takes.
struct Run {
    tid: Tid,
    deadline: Timestamp,
    /// p0's signed Begin.
    opening: Vec<u8>,
    /// p1's view of it, received.
    invitation: Invitation,
    /// p0 after `begin`, and the CA's Started for it.
    wait_p: AwaitStarted,
    started_p: Vec<u8>,
    /// The two votes, in the order the CA got them.
    vote_p: Vec<u8>,
    vote_q: Vec<u8>,
    /// Both parties just started; p0 holds the token.
    open_p: Open,
    open_q: Open,
    /// p0's 1 KiB Data (keeping the token), sent from `open_p`.
    data: Vec<u8>,
    /// p0 after the Data and its End.
    ended_p: Open,
    /// The two commits, in the order the CA got them, and p0 awaiting the
    /// outcome.
    decide_p: Vec<u8>,
    decide_q: Vec<u8>,
    wait_outcome_p: AwaitOutcome,
    /// The CA's record after the first vote, both votes, the first
    /// decision.
    after_vote_p: Vec<u8>,
    after_votes: Vec<u8>,
    after_decide_p: Vec<u8>,
}

fn record(w: &World, tid: &Tid) -> Vec<u8> {
    w.log.get(tid).unwrap().unwrap().record
}

impl Run {
    fn new(w: &mut World) -> Run {
        let tid = Tid::random(&mut w.rng);
        let deadline = w.now.plus_secs(DAY);
        let (p, q) = (&w.parties[0], &w.parties[1]);
        let (wait_p, opened) =
            process::begin(p, &mut w.rng, w.now, tid, q.uid(), deadline).unwrap();
        let a = w.ca.on_vote(w.now, &opened.vote, &w.log).unwrap();
        assert!(matches!(a, Answer::Pending(_)));
        let after_vote_p = record(w, &tid);
        let invitation = Invitation::receive(q, w.now, &opened.opening).unwrap();
        let (wait_q, vote_q) = invitation.clone().accept(q, &mut w.rng);
        let Answer::Started(started_q) = w.ca.on_vote(w.now, &vote_q, &w.log).unwrap() else {
            panic!("the second vote starts the subtransaction")
        };
        let after_votes = record(w, &tid);
        let Answer::Started(started_p) = w.ca.on_vote(w.now, wait_p.vote(), &w.log).unwrap() else {
            panic!("the first vote, again, is answered Started")
        };
        let open_p = wait_p.on_started(p, w.now, &started_p).unwrap();
        let open_q = wait_q.on_started(q, w.now, &started_q).unwrap();

        let (mut sp, mut sq) = (open_p.clone(), open_q.clone());
        let data = sp.send(p, &[0x44; PAYLOAD_LEN], false).unwrap();
        sq.receive(&data).unwrap();
        let end = sp.end(p).unwrap();
        sq.receive(&end).unwrap();
        let ended_p = sp.clone();
        let (wait_outcome_p, decide_p) = sp.decide(p, true).unwrap();
        let (_, decide_q) = sq.decide(q, true).unwrap();
        let a = w.ca.on_decide(w.now, &decide_p, &w.log).unwrap();
        assert!(matches!(a, Answer::Pending(_)));
        let after_decide_p = record(w, &tid);
        let a = w.ca.on_decide(w.now, &decide_q, &w.log).unwrap();
        assert!(matches!(a, Answer::Sealing { .. }), "{a:?}");
        Run {
            tid,
            deadline,
            opening: opened.opening,
            invitation,
            wait_p,
            started_p,
            vote_p: opened.vote,
            vote_q,
            open_p,
            open_q,
            data,
            ended_p,
            decide_p,
            decide_q,
            wait_outcome_p,
            after_vote_p,
            after_votes,
            after_decide_p,
        }
    }

    /// A fresh log holding only this transaction's `record`.
    fn log_at(&self, record: &[u8]) -> MemoryCommitLog {
        let log = MemoryCommitLog::new();
        let written = log
            .commit(LogUnit {
                tid: self.tid,
                version: 0,
                record: record.to_vec(),
                deadline: self.deadline,
                leaf: None,
            })
            .wait()
            .unwrap();
        assert!(matches!(written, LogWritten::Written { .. }));
        log
    }
}

/// The `i`-th synthetic outcome leaf: a committed two-party transaction of
/// the World's CA, shaped like a real one.
fn synthetic_leaf(w: &World, i: u64) -> (Tid, Vec<u8>) {
    let mut t = [0xa5; 16];
    t[..8].copy_from_slice(&i.to_be_bytes());
    let tid = Tid(t);
    let pair = Pair::new(w.uid(0), w.uid(1)).unwrap();
    let leaf = agora_core::wire::encode(&OutcomeLeaf {
        ca: w.ca.uid(),
        tid,
        outcome: 0,
        subs: vec![(pair, Some(Context([i as u8; 32])))],
        decided_at: w.now,
    });
    (tid, leaf)
}

/// Appends synthetic leaves `from..to` to `log` (with an empty record: no
/// measured step reads theirs).
fn fill(w: &World, log: &dyn CommitLog, from: u64, to: u64) {
    for i in from..to {
        let (tid, leaf) = synthetic_leaf(w, i);
        let written = log
            .commit(LogUnit {
                tid,
                version: 0,
                record: Vec::new(),
                deadline: w.now,
                leaf: Some(leaf),
            })
            .wait()
            .unwrap();
        assert!(matches!(written, LogWritten::Written { .. }));
    }
}

/// A log of 100,000 leaves under a signed head, one real transaction's at
/// leaf 50,000: its p0 awaiting the outcome, and the Outcome.
struct BigLog {
    w: World,
    run: Run,
    outcome: Vec<u8>,
}

fn big_log() -> &'static BigLog {
    static BIG: OnceLock<BigLog> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut w = World::new(2, 7);
        fill(&w, &w.log, 0, BIG_LOG_INDEX);
        let run = Run::new(&mut w);
        let index = w.log.get(&run.tid).unwrap().unwrap().leaf_index;
        assert_eq!(index, Some(BIG_LOG_INDEX));
        fill(&w, &w.log, BIG_LOG_INDEX + 1, BIG_LOG_LEAVES);
        w.ca.seal(w.now, &w.log).unwrap().unwrap();
        let outcome = w.ca.outcome(&run.tid, &w.log).unwrap().unwrap();
        let d = run
            .wait_outcome_p
            .on_outcome(&w.parties[0], &outcome)
            .unwrap();
        assert!(d.committed());
        assert_eq!(d.outcome.head.size, BIG_LOG_LEAVES);
        let proof: Outcome = agora_core::wire::decode(&outcome).unwrap();
        assert_eq!(proof.path.len(), BIG_LOG_PROOF_LEN);
        BigLog { w, run, outcome }
    })
}

fn process_steps(c: &mut Criterion) {
    let mut w = World::new(2, 1);
    let run = Run::new(&mut w);
    let (p, q) = (&w.parties[0], &w.parties[1]);
    let mut rng = rng(11);
    let payload = [0x44; PAYLOAD_LEN];
    let mut g = c.benchmark_group("stp_process");

    g.bench_function("begin", |b| {
        b.iter(|| process::begin(p, &mut rng, NOW, run.tid, q.uid(), run.deadline).unwrap())
    });
    g.bench_function("invitation_receive", |b| {
        b.iter(|| Invitation::receive(q, NOW, &run.opening).unwrap())
    });
    g.bench_function("invitation_accept", |b| {
        b.iter_batched(
            || run.invitation.clone(),
            |inv| inv.accept(q, &mut rng),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("on_started", |b| {
        b.iter(|| run.wait_p.on_started(p, NOW, &run.started_p).unwrap())
    });
    g.bench_function("send_1kib", |b| {
        b.iter_batched(
            || run.open_p.clone(),
            |mut open| {
                let m = open.send(p, &payload, false).unwrap();
                (open, m)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("receive_1kib", |b| {
        b.iter_batched(
            || run.open_q.clone(),
            |mut open| {
                let r = open.receive(&run.data).unwrap();
                (open, r)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("end", |b| {
        b.iter_batched(
            || run.open_p.clone(),
            |mut open| {
                let m = open.end(p).unwrap();
                (open, m)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decide", |b| {
        b.iter_batched(
            || run.ended_p.clone(),
            |open| open.decide(p, true).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("on_outcome", |b| {
        let big = big_log();
        let p = &big.w.parties[0];
        b.iter(|| big.run.wait_outcome_p.on_outcome(p, &big.outcome).unwrap())
    });
    g.finish();
}

fn ca_steps(c: &mut Criterion) {
    let mut w = World::new(2, 2);
    let run = Run::new(&mut w);
    // A CA remembers the signatures it verified: each iteration gets a
    // fresh one (built outside the measurement), so that every measured
    // step verifies what a first sight of its message verifies. The
    // `_cached` variants share a certificate cache that the first
    // iteration warms, as the node's commit authority has (a returning
    // party's certificate is not validated again).
    let plain = w.parties[0].trust.clone();
    let warm = w.parties[0].trust.clone().with_cache();
    let fresh = |trust: &IdentityTrust| {
        CommitAuthority::new(SigningKey::from_seed(&w.ca_key.to_seed()), trust.clone())
    };
    let mut g = c.benchmark_group("stp_ca");

    for (name, trust) in [("on_vote_first", &plain), ("on_vote_first_cached", &warm)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || (fresh(trust), MemoryCommitLog::new()),
                |(ca, log)| {
                    let a = ca.on_vote(NOW, &run.vote_p, &log).unwrap();
                    debug_assert!(matches!(a, Answer::Pending(_)));
                    (ca, log, a)
                },
                BatchSize::SmallInput,
            )
        });
    }
    for (name, trust) in [("on_vote_second", &plain), ("on_vote_second_cached", &warm)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || (fresh(trust), run.log_at(&run.after_vote_p)),
                |(ca, log)| {
                    let a = ca.on_vote(NOW, &run.vote_q, &log).unwrap();
                    debug_assert!(matches!(a, Answer::Started(_)));
                    (ca, log, a)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("on_decide_first", |b| {
        b.iter_batched(
            || (fresh(&plain), run.log_at(&run.after_votes)),
            |(ca, log)| {
                let a = ca.on_decide(NOW, &run.decide_p, &log).unwrap();
                debug_assert!(matches!(a, Answer::Pending(_)));
                (ca, log, a)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("on_decide_deciding", |b| {
        b.iter_batched(
            || (fresh(&plain), run.log_at(&run.after_decide_p)),
            |(ca, log)| {
                let a = ca.on_decide(NOW, &run.decide_q, &log).unwrap();
                debug_assert!(matches!(a, Answer::Sealing { index: 0 }));
                (ca, log, a)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("outcome_100k", |b| {
        let big = big_log();
        b.iter(|| big.w.ca.outcome(&big.run.tid, &big.w.log).unwrap().unwrap())
    });
    let pending = run.log_at(&run.after_votes);
    g.bench_function("status_pending", |b| {
        b.iter(|| {
            let a = w.ca.status(NOW, &run.tid, &pending).unwrap();
            debug_assert!(matches!(a, Answer::Pending(_)));
            a
        })
    });
    g.finish();

    // Seal: a fresh CA (its tree empty) over a fresh log of `n` outcome
    // leaves per iteration, so that every measured seal hashes the whole
    // batch into the tree and signs one head.
    let trust = w.parties[0].trust.clone();
    let mut g = c.benchmark_group("stp_ca_seal");
    for n in SEAL_BATCHES {
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    let ca = CommitAuthority::new(
                        SigningKey::from_seed(&w.ca_key.to_seed()),
                        trust.clone(),
                    );
                    let log = MemoryCommitLog::new();
                    fill(&w, &log, 0, n);
                    (ca, log)
                },
                |(ca, log)| {
                    let head = ca.seal(NOW, &log).unwrap();
                    debug_assert!(head.is_some());
                    (ca, log, head)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, process_steps, ca_steps);
criterion_main!(benches);
