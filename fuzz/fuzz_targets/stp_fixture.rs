//! The fixed STP transaction of the `stp_*` targets and of their seeds
//! (`examples/make_seeds.rs` includes this file too, so the seeds are made
//! under the very keys the targets hold). The agency, the parties and the
//! commit authority come from agora-stp's `testkit::World` with a fixed
//! seed; every random choice after that from a fixed ChaCha20 seed.
//!
//! [`Stp::new`] runs one transaction once: P begins with Q, Q brings R in
//! through its subtransaction with P, P and Q exchange one Data each way and
//! P ends, Q ends the subtransaction with R, all four sides commit, the
//! commit authority seals, and P deposits an item for Q with the escrow,
//! which Q claims. It keeps every message, a copy of each step state the
//! targets start from (the step types are `Clone`), and the commit
//! authority's log at each stage ([`Stage`]), in a log twin that can be
//! copied and compared ([`SnapLog`]).
//!
//! The "signed" steps of the targets take the payload of a message: the
//! target signs the fuzz input as its honest sender would
//! (`cose::sign_raw`), so that the checks after the signature are fuzzed
//! too.
#![allow(dead_code)] // each includer uses part of it

use agora_core::crypto::{SigningKey, VerifyingKey, X25519Secret};
use agora_core::wire::{self, cose};
use agora_core::{KeyId, Timestamp};
use agora_pki::IdentityTrust;
use agora_stp::ca::{Answer, CommitAuthority};
use agora_stp::escrow::{Escrow, EscrowStore, Held, MemoryEscrowStore};
use agora_stp::ids::{Context, Tid};
use agora_stp::msg::{Claim, Deposit, Status};
use agora_stp::process::{
    self, AwaitOutcome, AwaitStarted, Decided, Invitation, Open, Party, SubState,
};
use agora_stp::testkit::{World, DAY, NOW};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The seed of the fixture's `testkit::World`.
pub const WORLD_SEED: u64 = 0x5eed_57f0;
/// The parties: P begins, Q accepts and brings R in.
pub const P: usize = 0;
pub const Q: usize = 1;
pub const R: usize = 2;
/// The transaction.
pub const TID: Tid = Tid([0x71; 16]);
/// Its deadline.
pub const DEADLINE: Timestamp = Timestamp(NOW.0 + DAY);
/// A time past the deadline (the commit authority aborts then).
pub const LATE: Timestamp = Timestamp(NOW.0 + 2 * DAY);
/// The escrow's key, and the key Q's claim asks the release to be sealed to.
pub const ESCROW_SEED: [u8; 32] = [0x44; 32];
pub const REPLY_SEED: [u8; 32] = [0x45; 32];
/// The item P deposits for Q.
pub const ITEM: &[u8] = b"the goods: 12 tonnes of cement, grade C30";

/// A fixed RNG.
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5eed_57f1)
}

/// The stages of the commit authority's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Nothing logged.
    Empty = 0,
    /// P's vote on the Begin.
    Voted = 1,
    /// Both votes on the Begin (started), and Q's on the Join.
    Started = 2,
    /// Both subtransactions started; P has decided commit.
    Deciding = 3,
    /// All four decided commit: the leaf is written, no head covers it.
    Decided = 4,
    /// A signed head covers the leaf.
    Sealed = 5,
}

/// How many stages.
pub const STAGES: u8 = 6;

/// What the log holds (copied out and in: a target starts each run from a
/// stage and compares the state after a step with the state before).
pub use agora_stp::log::MemoryLogState as LogState;
/// The commit log, which can start from a saved state.
pub use agora_stp::MemoryCommitLog as SnapLog;

/// The fixture: the world, every message of the run, the step states the
/// targets start from, the log at each stage.
pub struct Stp {
    pub world: World,
    /// Everyone's trust (the agency and its CRL).
    pub trust: IdentityTrust,
    /// The commit authority's key.
    pub ca_key: VerifyingKey,

    // The messages, in the order of the run.
    /// P to Q, and P's vote on it.
    pub begin: Vec<u8>,
    pub vote_p: Vec<u8>,
    /// The CA's answer to P's first vote.
    pub pending: Vec<u8>,
    /// Q's vote (accept) on the Begin, and the reject it could have sent.
    pub vote_q: Vec<u8>,
    pub reject_q: Vec<u8>,
    /// The CA's Started to Q and to P.
    pub started_q: Vec<u8>,
    pub started_p: Vec<u8>,
    /// Q brings R in: the Join, Q's and R's votes, the Starteds.
    pub join: Vec<u8>,
    pub vote_qj: Vec<u8>,
    pub vote_r: Vec<u8>,
    pub started_r: Vec<u8>,
    pub started_qj: Vec<u8>,
    /// P to Q (passing the token), Q to P (passing it back), P's End.
    pub data_p: Vec<u8>,
    pub data_q: Vec<u8>,
    pub end_p: Vec<u8>,
    /// Q's End to R.
    pub end_qj: Vec<u8>,
    /// P's End right after the start (an End as the first message).
    pub end_first: Vec<u8>,
    /// The decisions: P's and Q's on (P, Q), Q's and R's on (Q, R); P's
    /// abort before the start.
    pub decide_p: Vec<u8>,
    pub decide_q: Vec<u8>,
    pub decide_qj: Vec<u8>,
    pub decide_r: Vec<u8>,
    pub abort_p: Vec<u8>,
    /// The signed head and the Outcome.
    pub head: Vec<u8>,
    pub outcome: Vec<u8>,
    pub status: Vec<u8>,
    pub consistency: Vec<u8>,
    /// P's proof bundle of (P, Q).
    pub bundle: Vec<u8>,
    /// The escrow: P's deposit for Q, its receipt, Q's claim, the release.
    pub deposit: Vec<u8>,
    pub receipt: Vec<u8>,
    pub claim: Vec<u8>,
    pub release: Vec<u8>,
    /// The deposit as the escrow holds it (unsettled).
    pub held: Held,

    // The step states, as the targets start from them.
    /// Q's invitation to (P, Q).
    pub invitation_q: Invitation,
    /// P after the Begin, waiting for Started.
    pub await_started_p: AwaitStarted,
    /// Q's and P's (P, Q) just after the start (P holds the token).
    pub open_q: Open,
    pub open_p: Open,
    /// P's (P, Q) after it decided commit, and the context it committed.
    pub await_outcome_p: AwaitOutcome,
    pub final_context: Context,
    /// P's (P, Q), decided.
    pub decided_p: Decided,
    /// Each kind of saved state: (name, bytes).
    pub saved: Vec<(&'static str, Vec<u8>)>,
    /// The log at each stage.
    pub stages: Vec<LogState>,
}

impl Stp {
    pub fn party(&self, i: usize) -> &Party {
        &self.world.parties[i]
    }

    pub fn uid(&self, i: usize) -> KeyId {
        self.world.parties[i].uid()
    }

    /// A commit authority as the fixture's (a fresh one: nothing cached).
    pub fn ca(&self) -> CommitAuthority {
        CommitAuthority::new(
            SigningKey::from_seed(&self.world.ca_key.to_seed()),
            self.trust.clone(),
        )
    }

    /// The escrow of the fixture.
    pub fn escrow(&self) -> Escrow {
        Escrow::new(
            SigningKey::from_seed(&ESCROW_SEED),
            self.trust.clone(),
            self.ca_key,
        )
    }

    /// An escrow store holding the fixture's deposit, unsettled.
    pub fn escrow_store(&self) -> MemoryEscrowStore {
        let s = MemoryEscrowStore::new();
        s.deposit(&self.held)
            .expect("a fresh store holds the deposit");
        s
    }

    /// A log at `stage`.
    pub fn log(&self, stage: u8) -> SnapLog {
        SnapLog::at(&self.stages[usize::from(stage % STAGES)])
    }

    /// The payload of the fixture's signed message `signed`, signed by
    /// `key` (what the signed steps take).
    pub fn payload(signed: &[u8], key: &VerifyingKey) -> Vec<u8> {
        cose::verify_raw(signed, key).expect("one of the fixture's messages")
    }

    pub fn new() -> Stp {
        agora_stp::log::conformance::commit_log_suite(&SnapLog::default());
        let world = World::new(3, WORLD_SEED);
        let trust = world.parties[P].trust.clone();
        let ca_key = world.ca.verifying_key();
        let ca = CommitAuthority::new(
            SigningKey::from_seed(&world.ca_key.to_seed()),
            trust.clone(),
        );
        let log = SnapLog::default();
        let mut stages = vec![log.state()];
        let mut rng = rng();
        let handle = |bytes: &[u8]| ca.handle(NOW, bytes, &log).expect("the fixture's step");
        let started = |a: Answer| match a {
            Answer::Started(b) => b,
            a => panic!("expected Started, got {a:?}"),
        };
        let pending = |a: Answer| match a {
            Answer::Pending(b) => b,
            a => panic!("expected Pending, got {a:?}"),
        };
        let (p, q, r) = (&world.parties[P], &world.parties[Q], &world.parties[R]);

        // P begins with Q.
        let (wait_p, opened) =
            process::begin(p, &mut rng, NOW, TID, q.uid(), DEADLINE).expect("begin");
        let await_started_p = wait_p.clone();
        let abort_p = wait_p.abort(p);
        let pending_p = pending(handle(&opened.vote));
        stages.push(log.state());
        let invitation_q = Invitation::receive(q, NOW, &opened.opening).expect("the invitation");
        let reject_q = invitation_q.clone().reject(q, &mut rng);
        let (wait_q, vote_q) = invitation_q.clone().accept(q, &mut rng);
        let started_q = started(handle(&vote_q));
        let started_p = started(handle(&opened.vote));
        let mut open_p = wait_p.on_started(p, NOW, &started_p).expect("P opens");
        let mut open_q = wait_q.on_started(q, NOW, &started_q).expect("Q opens");
        let (fresh_p, fresh_q) = (open_p.clone(), open_q.clone());
        let end_first = fresh_p.clone().end(p).expect("an End at once");

        // Q brings R in through (P, Q).
        let (wait_qj, joined) = process::join(q, &mut rng, NOW, &open_q, r.uid()).expect("join");
        pending(handle(&joined.vote));
        stages.push(log.state());
        let inv_r = Invitation::receive(r, NOW, &joined.opening).expect("R's invitation");
        let (wait_r, vote_r) = inv_r.accept(r, &mut rng);
        let started_r = started(handle(&vote_r));
        let started_qj = started(handle(&joined.vote));
        let mut open_qj = wait_qj
            .on_started(q, NOW, &started_qj)
            .expect("Q opens (Q, R)");
        let mut open_r = wait_r.on_started(r, NOW, &started_r).expect("R opens");

        // Data, End, decisions.
        let data_p = open_p
            .send(p, b"offer: 12 t at 95 EUR/t", true)
            .expect("data");
        open_q.receive(&data_p).expect("Q takes it");
        let data_q = open_q.send(q, b"accepted", true).expect("data");
        open_p.receive(&data_q).expect("P takes it");
        let end_p = open_p.end(p).expect("end");
        open_q.receive(&end_p).expect("Q takes the End");
        let end_qj = open_qj.end(q).expect("end");
        open_r.receive(&end_qj).expect("R takes the End");
        let final_context = open_p.context();
        let (await_outcome_p, decide_p) = open_p.decide(p, true).expect("P decides");
        pending(handle(&decide_p));
        stages.push(log.state());
        let (await_q, decide_q) = open_q.decide(q, true).expect("Q decides");
        pending(handle(&decide_q));
        let (_, decide_qj) = open_qj.decide(q, true).expect("Q decides (Q, R)");
        pending(handle(&decide_qj));
        let (_, decide_r) = open_r.decide(r, true).expect("R decides");
        match handle(&decide_r) {
            Answer::Sealing { .. } => {}
            a => panic!("expected Sealing, got {a:?}"),
        }
        stages.push(log.state());
        let head = ca.seal(NOW, &log).expect("seal").expect("a head");
        stages.push(log.state());
        let outcome = match handle(&decide_p) {
            Answer::Outcome(o) => o,
            a => panic!("expected the Outcome, got {a:?}"),
        };
        let decided_p = await_outcome_p
            .on_outcome(p, &outcome)
            .expect("P's outcome");
        let decided_q = await_q.on_outcome(q, &outcome).expect("Q's outcome");
        let bundle =
            agora_stp::bundle::prove(&decided_p, decided_p.invitee_cert(&p.uid(), &p.cert))
                .expect("a proof bundle");
        let consistency = wire::encode(&ca.consistency(1, 1, &log).expect("a proof"));

        // The escrow.
        let escrow = Escrow::new(SigningKey::from_seed(&ESCROW_SEED), trust.clone(), ca_key);
        let store = MemoryEscrowStore::new();
        let deposit = cose::sign(
            &p.sign,
            &Deposit {
                tid: TID,
                depositor_cert: p.cert.clone(),
                recipient: q.uid(),
                ca: ca_key.key_id(),
                item: ITEM.to_vec(),
            },
        );
        let receipt = escrow.on_deposit(NOW, &deposit, &store).expect("a receipt");
        let id = agora_core::crypto::sha256(&deposit);
        let held = store.get(&id).expect("store").expect("held");
        let claim = cose::sign(
            &q.sign,
            &Claim {
                deposit: id,
                claimant_cert: q.cert.clone(),
                outcome: outcome.clone(),
                at: NOW,
                reply_to: X25519Secret::from_bytes(REPLY_SEED).public(),
            },
        );
        let release = escrow
            .on_claim(&mut rng, NOW, &claim, &store)
            .expect("a release");

        let saved = vec![
            (
                "invited",
                SubState::Invited(invitation_q.clone()).to_bytes().to_vec(),
            ),
            (
                "awaiting_start",
                SubState::AwaitingStart(await_started_p.clone())
                    .to_bytes()
                    .to_vec(),
            ),
            ("open", SubState::Open(fresh_q.clone()).to_bytes().to_vec()),
            (
                "open_after_data",
                SubState::Open(open_q_after(&fresh_q, &data_p))
                    .to_bytes()
                    .to_vec(),
            ),
            (
                "awaiting_outcome",
                SubState::AwaitingOutcome(await_outcome_p.clone())
                    .to_bytes()
                    .to_vec(),
            ),
            ("decided", SubState::Decided(decided_q).to_bytes().to_vec()),
        ];
        Stp {
            trust,
            ca_key,
            begin: opened.opening,
            vote_p: opened.vote,
            pending: pending_p,
            vote_q,
            reject_q,
            started_q,
            started_p,
            join: joined.opening,
            vote_qj: joined.vote,
            vote_r,
            started_r,
            started_qj,
            data_p,
            data_q,
            end_p,
            end_qj,
            end_first,
            decide_p,
            decide_q,
            decide_qj,
            decide_r,
            abort_p,
            head,
            outcome,
            status: wire::encode(&Status { tid: TID }),
            consistency,
            bundle,
            deposit,
            receipt,
            claim,
            release,
            held,
            invitation_q,
            await_started_p,
            open_q: fresh_q,
            open_p: fresh_p,
            await_outcome_p,
            final_context,
            decided_p,
            saved,
            stages,
            world,
        }
    }
}

/// Q's (P, Q) after it took P's first Data (a state with a transcript).
fn open_q_after(fresh_q: &Open, data_p: &[u8]) -> Open {
    let mut o = fresh_q.clone();
    o.receive(data_p).expect("Q takes P's Data");
    o
}

/// Steps of the role targets (the first byte of an input, modulo `COUNT`).
pub mod steps {
    /// `stp_ca`: the second byte picks the log's stage (modulo
    /// `STAGES`) and the time (even: now; odd: past the deadline).
    pub mod ca {
        pub const RAW: u8 = 0;
        pub const VOTE_SIGNED_P: u8 = 1;
        pub const VOTE_SIGNED_Q: u8 = 2;
        pub const DECIDE_SIGNED_P: u8 = 3;
        pub const DECIDE_SIGNED_R: u8 = 4;
        pub const SWEEP: u8 = 5;
        pub const COUNT: u8 = 6;
    }
    /// `stp_process`.
    pub mod process {
        pub const RECEIVE: u8 = 0;
        pub const RECEIVE_SIGNED: u8 = 1;
        pub const RECEIVE_BY_HOLDER_SIGNED: u8 = 2;
        pub const INVITATION: u8 = 3;
        pub const INVITATION_SIGNED: u8 = 4;
        pub const STARTED: u8 = 5;
        pub const STARTED_SIGNED: u8 = 6;
        pub const OUTCOME: u8 = 7;
        pub const OUTCOME_LEAF: u8 = 8;
        pub const COUNT: u8 = 9;
    }
    /// `stp_escrow`.
    pub mod escrow {
        pub const DEPOSIT: u8 = 0;
        pub const DEPOSIT_SIGNED: u8 = 1;
        pub const CLAIM: u8 = 2;
        pub const CLAIM_SIGNED: u8 = 3;
        pub const COUNT: u8 = 4;
    }
}
