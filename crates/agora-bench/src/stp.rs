//! `stp-ca`, `stp-e2e`: the Secure Transaction Protocol against the node's
//! commit authority (`POST /v1/stp/ca`, its log durable in the node's
//! SQLite database with group commit), two-party transactions that commit.
//!
//! - `stp-ca`, the commit authority alone: before the measured phase the
//!   parties make and sign everything the CA will hear of `--transactions`
//!   transactions through agora-stp's own process steps (`process::begin`,
//!   `Invitation::receive` and `accept`: the initiator's Begin and Vote, the
//!   invitee's Vote) and each party's Decide (commit, both with the same
//!   final context: the CA compares the two and never sees the data, so the
//!   transactions carry none). The measured phase only sends them, over
//!   `--concurrency` connections, each transaction in order: the first vote
//!   (answered Pending), the second (Started), the first decision (Pending)
//!   and the second (the Outcome, which the node answers once a signed tree
//!   head covers the transaction's leaf: it seals one head per batch). The
//!   answers' kinds are checked as they come; every Outcome is verified
//!   after the measured phase (the head's signature by the pinned CA, the
//!   inclusion proof, the transaction, committed).
//! - `stp-e2e`, every role live: `--concurrency` pairs of parties, each pair
//!   carrying transaction after transaction through the process steps in
//!   this process: begin (vote: Pending), accept (vote: Started), the
//!   initiator's vote again (Started), one Data each way, End, both decide
//!   commit (Pending, then the Outcome), the first decider asks again (the
//!   Outcome), and both verify the Outcome as `AwaitOutcome::on_outcome`
//!   does. The crypto bound prices what both parties and the node did.
//!
//! The parties are registered as `agora stp register` would: an identity
//! certificate of the data directory's SPEED CA, recorded in its register
//! (so that it can be revoked), valid for the run's length plus an hour;
//! their keys live only in this process. They trust what the node trusts
//! (the trust store's CAs and the data directory's CRLs) and pin the commit
//! authority of the trust store, which must be the one the node serves.
//! Their transactions' deadlines are an hour past the run: one a run leaves
//! undecided is aborted by the node's housekeeping after that.
//!
//! The connections (stp-ca) and the pairs (stp-e2e) are futures, [`LOOPS`]
//! event loops driving their share each ([`race_loops`], agora-client's
//! [`AsyncStpTransport`]): a thread per pair with a blocking client slept
//! while the node answered and was woken for every reply, on the two cores
//! the node under test runs on.

use crate::bound::Window;
use crate::race::{race_loops, Limits, LOOPS};
use crate::report::{Outcome, Setup};
use crate::stats::{merge_all, OpError, Tally};
use crate::{in_parallel, now, BenchArgs, Scenario, REGISTRARS};
use agora_client::datadir::names::SPEED_CA;
use agora_client::datadir::{issue_identity, DataDir};
use agora_client::stp::AsyncStpTransport;
use agora_client::transport::NodeClient;
use agora_core::crypto::{os_rng, Rng, SigningKey, VerifyingKey};
use agora_core::wire::{cose, tags, Tag};
use agora_pki::{Agency, IdentityParams, IdentityTrust, PartyRole, TrustStore};
use agora_stp::msg::Decide;
use agora_stp::outcome::verify_outcome;
use agora_stp::process::{self, Invitation, Party};
use agora_stp::{Context as StpContext, Tid};
use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The payload of each Data message of `stp-e2e` (the size `cargo bench -p
/// agora-stp --bench steps` measures `send` and `receive` at).
const PAYLOAD_LEN: usize = 1024;
/// Seconds past the run that a transaction's deadline lies.
const DEADLINE_MARGIN_SECS: u64 = 3600;

/// Which STP measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StpMode {
    /// The commit authority alone: messages signed before, only sent.
    CaAlone,
    /// Every role live.
    EndToEnd,
}

impl StpMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StpMode::CaAlone => "commit authority alone (votes and decisions signed before)",
            StpMode::EndToEnd => "end to end (both parties' process steps live)",
        }
    }
}

/// What the STP scenarios work with: the node's commit authority as the
/// trust store pins it, the SPEED CA that certifies the parties, and the
/// trust the parties judge each other's certificates under.
pub(crate) struct StpEnv {
    url: String,
    /// The commit authority (pinned in the trust store, served by the node).
    ca: VerifyingKey,
    agency: Agency,
    crl_uri: String,
    store: agora_store::Stores,
    trust: IdentityTrust,
    life_secs: u64,
}

impl StpEnv {
    pub(crate) fn load(dir: &DataDir, a: &BenchArgs, url: String) -> anyhow::Result<StpEnv> {
        let pinned = dir.load_trust()?;
        let ca = pinned
            .by_role(PartyRole::CommitAuthority)
            .find_map(agora_pki::Party::verifying_key)
            .context("the trust store pins no STP commit authority (run `agora up` on it)")?;
        let client = NodeClient::new(&url)?;
        let node: serde_json::Value = client
            .get_json("/v1/node")
            .with_context(|| format!("is a node running at {url}? (agora up)"))?;
        let served = node["services"]["stp"]["commit_authority"]["key_id"].as_str();
        if served != Some(ca.key_id().to_string().as_str()) {
            bail!(
                "the node at {url} does not serve the STP commit authority of data directory {} \
                 (start it with `agora up` on the same --data-dir, with role stp)",
                dir.dir().display()
            );
        }
        let agency = dir
            .agency(SPEED_CA)
            .context("this data directory runs no SPEED CA (it is made by `agora up`)")?;
        let crl_uri = agency.crl_uri(&dir.crl_base(SPEED_CA));
        let anchors = TrustStore::load(&dir.trust_path())?.anchors(PartyRole::Ca);
        // A party who meets the same peer again remembers its validated
        // certificate, as the node's commit authority does.
        let crls = agora_node::pki::current_crls(&dir.crl_dir()).map_err(anyhow::Error::msg)?;
        let trust = IdentityTrust::new(anchors, crls).with_cache();
        Ok(StpEnv {
            url,
            ca,
            agency,
            crl_uri,
            store: dir.store()?,
            trust,
            life_secs: a.duration + DEADLINE_MARGIN_SECS,
        })
    }

    fn say(&self, what: &str) {
        eprintln!("{what}");
    }

    /// A new party, as `agora stp register` makes one.
    fn register(&self, rng: &mut impl Rng) -> anyhow::Result<Party> {
        let sign = SigningKey::generate(rng);
        let now = now();
        let short = sign.key_id().to_string()[..16].to_owned();
        let issued = issue_identity(
            &self.store,
            &self.agency,
            &IdentityParams {
                name: format!("agora bench STP party {short}"),
                key: sign.verifying_key(),
                role: PartyRole::Customer,
                x25519: None,
                not_before: now.minus_secs(60),
                not_after: now.plus_secs(self.life_secs),
                crl_uri: self.crl_uri.clone(),
            },
            now,
            rng,
        )?;
        Ok(Party {
            sign,
            cert: issued.der,
            trust: self.trust.clone(),
            ca: self.ca,
        })
    }

    /// Registers `n` parties, [`REGISTRARS`] at a time (setup).
    fn register_many(&self, n: usize) -> anyhow::Result<(Vec<Party>, Duration)> {
        self.say(&format!(
            "setup: registering {n} STP parties (identity certificates of the SPEED CA)..."
        ));
        let t0 = Instant::now();
        let made = in_parallel(n, REGISTRARS, |_| self.register(&mut os_rng()))
            .context("setup: registering an STP party")?;
        Ok((made, t0.elapsed()))
    }
}

/// What a CA's answer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Pending,
    Started,
    Outcome,
}

impl Expect {
    fn tag(self) -> Tag {
        match self {
            Expect::Pending => tags::STP_PENDING,
            Expect::Started => tags::STP_STARTED,
            Expect::Outcome => tags::STP_OUTCOME,
        }
    }

    fn wrong(self) -> OpError {
        OpError::Check {
            kind: "wrong-answer",
            what: match self {
                Expect::Pending => "the CA did not answer Pending",
                Expect::Started => "the CA did not answer Started",
                Expect::Outcome => "the CA did not answer the Outcome",
            },
        }
    }

    /// Whether `answer` is of this kind (its message tag; the signatures
    /// are checked where the protocol checks them).
    fn check(self, answer: &[u8]) -> Result<(), OpError> {
        let tag = match self {
            Expect::Outcome => agora_core::wire::peek_tag(answer).ok(),
            _ => cose::peek_tag(answer).ok(),
        };
        if tag == Some(self.tag()) {
            Ok(())
        } else {
            Err(self.wrong())
        }
    }
}

/// One message to the CA, timed into `t` under `step`; its answer, of the
/// kind expected. The scenarios send it over HTTP (`AsyncNodeClient`); the
/// tests through the node's service in process (`LocalStp`).
async fn to_ca(
    client: &impl AsyncStpTransport,
    t: &mut Tally,
    step: &str,
    body: &[u8],
    expect: Expect,
) -> Result<Vec<u8>, OpError> {
    let t0 = Instant::now();
    let r = client.to_ca(body).await;
    t.took(step, t0.elapsed(), &r);
    let answer = r?;
    expect.check(&answer)?;
    Ok(answer)
}

// ------------------------------------------------------------ stp-ca

/// One transaction's messages for the CA, made and signed in the setup.
struct Prepared {
    tid: Tid,
    /// The initiator's vote, then the invitee's.
    votes: [Vec<u8>; 2],
    /// The initiator's Decide, then the invitee's (both commit).
    decides: [Vec<u8>; 2],
}

/// The messages of `stp-ca`, in the order the CA hears them.
const CA_STEPS: [(&str, Expect); 4] = [
    ("vote-1", Expect::Pending),
    ("vote-2", Expect::Started),
    ("decide-1", Expect::Pending),
    ("decide-2", Expect::Outcome),
];

/// `p` begins a transaction with `q` (its deadline `life_secs` ahead), who
/// accepts; both commit.
fn prepare(p: &Party, q: &Party, life_secs: u64, rng: &mut impl Rng) -> Result<Prepared, OpError> {
    let now = now();
    let tid = Tid::random(rng);
    let deadline = now.plus_secs(life_secs);
    let (wait_p, opened) = process::begin(p, rng, now, tid, q.uid(), deadline)?;
    let invitation = Invitation::receive(q, now, &opened.opening)?;
    let (_, vote_q) = invitation.accept(q, rng);
    let pair = wait_p.opening().pair;
    let ctx = StpContext::initial(&opened.opening);
    let decide = |who: &Party| {
        cose::sign(
            &who.sign,
            &Decide {
                tid,
                pair,
                commit: Some(ctx),
            },
        )
    };
    Ok(Prepared {
        tid,
        votes: [opened.vote, vote_q],
        decides: [decide(p), decide(q)],
    })
}

/// An Outcome the CA answered, kept to be verified after the run.
struct Answered {
    tid: Tid,
    outcome: Vec<u8>,
}

async fn ca_transaction(
    client: &impl AsyncStpTransport,
    tx: &Prepared,
    t: &mut Tally,
) -> Result<Answered, OpError> {
    let bodies = [&tx.votes[0], &tx.votes[1], &tx.decides[0], &tx.decides[1]];
    let mut last = Vec::new();
    for ((step, expect), body) in CA_STEPS.iter().zip(bodies) {
        last = to_ca(client, t, step, body, *expect).await?;
    }
    Ok(Answered {
        tid: tx.tid,
        outcome: last,
    })
}

/// What the Outcomes of a run showed, checked after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OutcomeCheck {
    /// Outcomes verified: the pinned CA's head, the inclusion proof, this
    /// transaction, committed.
    pub(crate) verified: u64,
    /// Outcomes that failed any of it.
    pub(crate) failed: u64,
    /// Distinct signed tree heads they were proved against (one per batch
    /// the node sealed).
    pub(crate) heads: u64,
}

impl OutcomeCheck {
    pub(crate) fn ok(&self) -> bool {
        self.failed == 0
    }
}

/// Verifies every outcome as a party would (on `threads` threads).
fn check_outcomes(ca: &VerifyingKey, answered: &[Answered], threads: usize) -> OutcomeCheck {
    let heads = Mutex::new(BTreeSet::new());
    let failed = AtomicUsize::new(0);
    let chunk = answered.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for part in answered.chunks(chunk) {
            let (heads, failed) = (&heads, &failed);
            s.spawn(move || {
                let mut mine = BTreeSet::new();
                for a in part {
                    match verify_outcome(&a.outcome, ca) {
                        Ok(v) if v.leaf.tid == a.tid && v.leaf.committed() => {
                            mine.insert(v.head.size);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                heads.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    let failed = failed.into_inner() as u64;
    OutcomeCheck {
        verified: answered.len() as u64 - failed,
        failed,
        heads: heads.into_inner().unwrap_or_else(|p| p.into_inner()).len() as u64,
    }
}

/// What an STP run reports besides the common figures.
#[derive(Debug)]
pub(crate) struct StpOutcome {
    pub(crate) mode: StpMode,
    /// stp-ca: transactions prepared, and in how long.
    pub(crate) prepared: Option<(usize, f64)>,
    pub(crate) check: OutcomeCheck,
}

impl StpOutcome {
    fn per_head(&self, committed: u64) -> f64 {
        committed as f64 / self.check.heads.max(1) as f64
    }

    fn how_checked(&self) -> &'static str {
        match self.mode {
            StpMode::CaAlone => {
                "after the measured phase, each Outcome: the pinned CA's signed tree head, \
                 the inclusion proof, this transaction, committed"
            }
            StpMode::EndToEnd => {
                "in the measured phase, by both parties (AwaitOutcome::on_outcome), and the \
                 two leaves compared"
            }
        }
    }

    pub(crate) fn json(&self, committed: u64) -> serde_json::Value {
        serde_json::json!({
            "mode": match self.mode {
                StpMode::CaAlone => "ca-alone",
                StpMode::EndToEnd => "end-to-end",
            },
            "what": self.mode.name(),
            "transactions_prepared": self.prepared.map(|(n, _)| n),
            "outcomes": {
                "ok": self.check.ok(),
                "checked": self.how_checked(),
                "verified": self.check.verified,
                "failed": self.check.failed,
                "signed_tree_heads": self.check.heads,
                "transactions_per_head": self.per_head(committed),
            },
        })
    }

    pub(crate) fn text(&self, committed: u64) -> String {
        format!(
            "  stp          {}{}\n  outcomes     {}: {} verified, {} failed ({});\n               \
             proved against {} signed tree heads ({:.1} transactions per head)",
            self.mode.name(),
            self.prepared.map_or(String::new(), |(n, _)| format!(
                ", {n} transactions prepared"
            )),
            if self.check.ok() { "ok" } else { "FAILED" },
            self.check.verified,
            self.check.failed,
            self.how_checked(),
            self.check.heads,
            self.per_head(committed)
        )
    }
}

/// `stp-ca`: setup (parties, the transactions' messages), the measured
/// phase, the outcomes' check.
pub(crate) fn run_ca(
    env: &StpEnv,
    n: usize,
    transactions: usize,
    limits: &Limits,
    window: &Window,
) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let pairs = n;
    let (parties, reg_time) = env.register_many(2 * pairs)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    env.say(&format!(
        "setup: signing the votes and decisions of {transactions} transactions ({} pairs)...",
        pairs
    ));
    let t1 = Instant::now();
    let prepared = in_parallel(transactions, cores, |i| {
        let k = 2 * (i % pairs);
        prepare(&parties[k], &parties[k + 1], env.life_secs, &mut os_rng())
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
    .context("setup: preparing a transaction")?;
    let prep_secs = t1.elapsed().as_secs_f64();
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        parties: Some((parties.len(), reg_time.as_secs_f64())),
        ..Setup::default()
    };
    env.say(&format!(
        "measuring: {n} connections sending the CA {transactions} transactions' votes and decisions..."
    ));
    let per_op = Scenario::StpCa.requests_per_op();
    let next = AtomicUsize::new(0);
    let (prepared_ref, next) = (&prepared, &next);
    let connections: Vec<usize> = (0..n).collect();
    let (results, wall) = race_loops(
        &connections,
        LOOPS,
        &env.url,
        limits,
        window,
        |_, _, client| async move {
            let mut t = Tally::default();
            let mut answered = Vec::new();
            while limits.reserve(per_op) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(tx) = prepared_ref.get(i) else {
                    limits.release(per_op);
                    limits.stop("all-sent");
                    break;
                };
                let before = t.requests;
                let start = Instant::now();
                match ca_transaction(&client, tx, &mut t).await {
                    Ok(a) => {
                        t.successes += 1;
                        t.record("transaction", start.elapsed());
                        answered.push(a);
                    }
                    Err(e) => t.error(e.kind()),
                }
                limits.release(per_op - (t.requests - before).min(per_op));
            }
            (t, answered)
        },
    )?;
    let mut answered = Vec::new();
    let tally = merge_all(results.into_iter().map(|(t, a)| {
        answered.extend(a);
        t
    }));
    env.say(&format!(
        "checking the {} outcomes (not measured)...",
        answered.len()
    ));
    let check = check_outcomes(&env.ca, &answered, cores);
    Ok((
        setup,
        Outcome {
            stp: Some(StpOutcome {
                mode: StpMode::CaAlone,
                prepared: Some((prepared.len(), prep_secs)),
                check,
            }),
            ..Outcome::new(tally, wall)
        },
    ))
}

// ------------------------------------------------------------ stp-e2e

/// One transaction of the pair `(p, q)` from Begin to both verified
/// Outcomes; the size of the tree head that proved it.
async fn e2e_transaction(
    client: &impl AsyncStpTransport,
    (p, q): (&Party, &Party),
    life_secs: u64,
    payload: &[u8],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<u64, OpError> {
    let now = now();
    let tid = Tid::random(rng);
    let deadline = now.plus_secs(life_secs);
    let (wait_p, opened) = process::begin(p, rng, now, tid, q.uid(), deadline)?;
    to_ca(client, t, "vote-begin", &opened.vote, Expect::Pending).await?;
    let invitation = Invitation::receive(q, now, &opened.opening)?;
    let (wait_q, vote_q) = invitation.accept(q, rng);
    let started_q = to_ca(client, t, "vote-accept", &vote_q, Expect::Started).await?;
    let mut open_q = wait_q.on_started(q, now, &started_q)?;
    let started_p = to_ca(client, t, "vote-started", wait_p.vote(), Expect::Started).await?;
    let mut open_p = wait_p.on_started(p, now, &started_p)?;
    // One Data each way, the token passed with each; the initiator ends.
    let m = open_p.send(p, payload, true)?;
    open_q.receive(&m)?;
    let m = open_q.send(q, payload, true)?;
    open_p.receive(&m)?;
    let end = open_p.end(p)?;
    open_q.receive(&end)?;
    if open_p.context() != open_q.context() {
        return Err(OpError::Check {
            kind: "contexts-differ",
            what: "the two parties' final contexts differ",
        });
    }
    let (await_p, decide_p) = open_p.decide(p, true)?;
    to_ca(client, t, "decide-1", &decide_p, Expect::Pending).await?;
    let (await_q, decide_q) = open_q.decide(q, true)?;
    let outcome_q = to_ca(client, t, "decide-2", &decide_q, Expect::Outcome).await?;
    let decided_q = await_q
        .on_outcome(q, &outcome_q)
        .map_err(|_| OUTCOME_REFUSED)?;
    let outcome_p = to_ca(client, t, "decide-again", await_p.decide(), Expect::Outcome).await?;
    let decided_p = await_p
        .on_outcome(p, &outcome_p)
        .map_err(|_| OUTCOME_REFUSED)?;
    if !decided_p.committed()
        || !decided_q.committed()
        || decided_p.outcome.leaf_bytes != decided_q.outcome.leaf_bytes
    {
        return Err(OpError::Check {
            kind: NOT_COMMITTED,
            what: "the parties do not both hold the same committed outcome",
        });
    }
    Ok(decided_q.outcome.head.size)
}

/// A party refused the CA's Outcome (`AwaitOutcome::on_outcome`).
const OUTCOME_REFUSED: OpError = OpError::Check {
    kind: "outcome-refused",
    what: "a party refused the commit authority's Outcome",
};
/// The error kind of two parties that do not hold one committed outcome.
const NOT_COMMITTED: &str = "not-committed";

/// `stp-e2e`: setup (parties), the measured phase.
pub(crate) fn run_e2e(
    env: &StpEnv,
    n: usize,
    limits: &Limits,
    window: &Window,
) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let (parties, reg_time) = env.register_many(2 * n)?;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        parties: Some((parties.len(), reg_time.as_secs_f64())),
        ..Setup::default()
    };
    env.say(&format!(
        "measuring: {n} pairs of parties committing transactions (begin, accept, started, \
         Data each way, End, decide, outcome)..."
    ));
    let per_op = Scenario::StpE2e.requests_per_op();
    let payload = vec![0x5a_u8; PAYLOAD_LEN];
    let pairs: Vec<(&Party, &Party)> = parties.chunks_exact(2).map(|c| (&c[0], &c[1])).collect();
    let (payload, life_secs) = (&payload, env.life_secs);
    let (results, wall) = race_loops(
        &pairs,
        LOOPS,
        &env.url,
        limits,
        window,
        |_, &(p, q), client| async move {
            let mut rng = os_rng();
            let mut t = Tally::default();
            let mut heads = BTreeSet::new();
            while limits.reserve(per_op) {
                let before = t.requests;
                let start = Instant::now();
                let done =
                    e2e_transaction(&client, (p, q), life_secs, payload, &mut rng, &mut t).await;
                match done {
                    Ok(size) => {
                        t.successes += 1;
                        t.record("transaction", start.elapsed());
                        heads.insert(size);
                    }
                    Err(e) => t.error(e.kind()),
                }
                limits.release(per_op - (t.requests - before).min(per_op));
            }
            (t, heads)
        },
    )?;
    let mut heads = BTreeSet::new();
    let tally = merge_all(results.into_iter().map(|(t, h)| {
        heads.extend(h);
        t
    }));
    let refused = |kind: &str| tally.errors.get(kind).copied().unwrap_or(0);
    let check = OutcomeCheck {
        verified: 2 * tally.successes,
        failed: refused(OUTCOME_REFUSED.kind().as_str()) + refused(NOT_COMMITTED),
        heads: heads.len() as u64,
    };
    Ok((
        setup,
        Outcome {
            stp: Some(StpOutcome {
                mode: StpMode::EndToEnd,
                prepared: None,
                check,
            }),
            ..Outcome::new(tally, wall)
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_client::stp::{LocalStp, StpTransport};
    use agora_client::transport::ClientError;
    use agora_node::stp::{StpService, StpSpec, TrustSource};
    use agora_stp::testkit::{trust_of, World};
    use std::sync::Arc;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The node's STP service in this process, reached from a future: each
    /// step (which waits for its log unit's commit) on tokio's blocking
    /// pool, as the node runs its blocking steps.
    struct InProcess(Arc<LocalStp>);

    impl AsyncStpTransport for InProcess {
        async fn to_ca(&self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
            let (ca, body) = (self.0.clone(), body.to_vec());
            tokio::task::spawn_blocking(move || StpTransport::to_ca(ca.as_ref(), &body))
                .await
                .unwrap()
        }
    }

    struct Fixed(IdentityTrust);

    impl TrustSource<IdentityTrust> for Fixed {
        fn load(&self) -> Result<IdentityTrust, String> {
            Ok(self.0.clone())
        }
    }

    /// The node's STP service in this process, on a SQLite log in `dir`
    /// (group commit, as `agora up` runs it), with the commit authority of
    /// `w`, which its parties pin.
    fn node(w: &World, dir: &std::path::Path) -> InProcess {
        let store = agora_store::SqliteStore::open_dir(
            dir,
            agora_store::AtRestKey::generate(&mut os_rng()),
        )
        .unwrap();
        InProcess(Arc::new(LocalStp::new(
            StpService::new(StpSpec {
                ca_key: SigningKey::from_seed(&w.ca_key.to_seed()),
                escrow_key: None,
                trust: Box::new(Fixed(trust_of(&w.agency, vec![], w.now))),
                log: Arc::new(store.commit_log()),
                escrow: Arc::new(agora_stp::MemoryEscrowStore::new()),
            })
            .unwrap(),
        )))
    }

    /// `stp-ca`'s transactions, prepared as the setup prepares them, are
    /// answered Pending, Started, Pending and the Outcome by the node's
    /// commit authority, and their outcomes check; a forged one does not.
    #[test]
    fn the_ca_answers_prepared_transactions_as_the_scenario_expects() {
        let w = World::at(4, 7, now());
        let dir = tempfile::tempdir().unwrap();
        let ca = node(&w, dir.path());
        let mut t = Tally::default();
        let mut answered = Vec::new();
        for k in [0usize, 2, 0] {
            let tx = prepare(&w.parties[k], &w.parties[k + 1], 3600, &mut os_rng()).unwrap();
            answered.push(block_on(ca_transaction(&ca, &tx, &mut t)).unwrap());
        }
        assert_eq!(t.requests, 12);
        for (step, _) in CA_STEPS {
            assert_eq!(t.steps[step].len(), 3, "{step}");
        }
        let c = check_outcomes(&w.ca.verifying_key(), &answered, 2);
        assert_eq!((c.verified, c.failed), (3, 0));
        assert!(c.ok() && (1..=3).contains(&c.heads), "{c:?}");
        // Sent again, a transaction's messages are answered as decided:
        // the second vote with the Outcome, not Started.
        let tx = prepare(&w.parties[0], &w.parties[1], 3600, &mut os_rng()).unwrap();
        block_on(ca_transaction(&ca, &tx, &mut t)).unwrap();
        assert!(matches!(
            block_on(ca_transaction(&ca, &tx, &mut t)),
            Err(OpError::Check {
                kind: "wrong-answer",
                ..
            })
        ));
        // An outcome shown for another transaction fails the check.
        answered[1].tid = answered[0].tid;
        let c = check_outcomes(&w.ca.verifying_key(), &answered, 1);
        assert_eq!((c.verified, c.failed), (2, 1));
        assert!(!c.ok());
    }

    /// `stp-e2e`'s transaction: every step of both parties, six messages to
    /// the CA, both outcomes verified and the same.
    #[test]
    fn a_pair_commits_end_to_end_through_the_nodes_commit_authority() {
        let w = World::at(2, 8, now());
        let dir = tempfile::tempdir().unwrap();
        let ca = node(&w, dir.path());
        let mut t = Tally::default();
        let pair = (&w.parties[0], &w.parties[1]);
        let payload = [7u8; PAYLOAD_LEN];
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut rng = os_rng();
            let done = e2e_transaction(&ca, pair, 3600, &payload, &mut rng, &mut t);
            sizes.push(block_on(done).unwrap());
        }
        assert_eq!(t.requests, 3 * Scenario::StpE2e.requests_per_op());
        assert_eq!(t.steps.len(), 6, "{:?}", t.steps.keys());
        assert!(sizes.windows(2).all(|s| s[0] < s[1]), "{sizes:?}");
    }
}
