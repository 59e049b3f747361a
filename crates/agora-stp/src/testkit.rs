//! Test support shared by this crate's tests and benches and the simulator
//! (feature `testkit`): an agency that issues the parties' identity
//! certificates, parties, a commit authority on an in-memory log, and
//! drivers that carry a subtransaction from Begin to Outcome.
#![allow(clippy::expect_used)] // test support: a failure here is a broken fixture

use crate::ca::{Answer, CommitAuthority};
use crate::ids::Tid;
use crate::log::{CommitLog, MemoryCommitLog};
use crate::process::{self, AwaitOutcome, AwaitStarted, Decided, Invitation, Open, Party};
use agora_core::crypto::{Rng, SigningKey};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::{
    Agency, CrlParams, IdentityParams, IdentityTrust, PartyRole, Revocation, TrustAnchors,
};
use rand_core::SeedableRng;

/// A day in seconds.
pub const DAY: u64 = 86_400;
/// The tests' "now".
pub const NOW: Timestamp = Timestamp(1_800_000_000);

/// Everyone a test needs: the agency, its trust, the CA and its log, the
/// parties, a seeded RNG and a clock.
#[derive(Debug)]
pub struct World {
    /// Issues every identity certificate.
    pub agency: Agency,
    /// The commit authority.
    pub ca: CommitAuthority,
    /// Its key (to build another CA on the same log: a restart).
    pub ca_key: SigningKey,
    /// Its log.
    pub log: MemoryCommitLog,
    /// The parties, in the order created.
    pub parties: Vec<Party>,
    /// Seeded randomness.
    pub rng: rand_chacha::ChaCha20Rng,
    /// The clock.
    pub now: Timestamp,
    /// Every message sent to the CA through [`Self::to_ca`], in order.
    pub sent_to_ca: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Trust in `agency` with a CRL listing `revoked`.
pub fn trust_of(agency: &Agency, revoked: Vec<Revocation>, now: Timestamp) -> IdentityTrust {
    let mut cas = TrustAnchors::new();
    cas.add_der(agency.certificate_der())
        .expect("the agency's own certificate");
    let crl = agency
        .issue_crl(&CrlParams {
            this_update: now.minus_secs(60),
            next_update: now.plus_secs(30 * DAY),
            crl_number: 1,
            revoked,
        })
        .expect("the agency issues CRLs");
    IdentityTrust::new(cas, vec![crl])
}

/// An identity certificate from `agency` for `key`.
pub fn identity(
    agency: &Agency,
    rng: &mut impl Rng,
    name: &str,
    role: PartyRole,
    key: &SigningKey,
    now: Timestamp,
) -> Vec<u8> {
    agency
        .issue_identity(
            &IdentityParams {
                name: name.into(),
                key: key.verifying_key(),
                role,
                x25519: None,
                not_before: now.minus_secs(DAY),
                not_after: now.plus_secs(365 * DAY),
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            rng,
        )
        .expect("the agency issues identity certificates")
        .der
}

impl World {
    /// A world with `n` parties named p0, p1, ... from `seed`, at [`NOW`].
    pub fn new(n: usize, seed: u64) -> World {
        World::at(n, seed, NOW)
    }

    /// A world with `n` parties from `seed` whose clock starts at `now` (a
    /// node's tests use the system clock, which the node reads).
    pub fn at(n: usize, seed: u64, now: Timestamp) -> World {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let agency = Agency::create(
            "STP test agency",
            SigningKey::generate(&mut rng),
            now.minus_secs(DAY),
            now.plus_secs(3650 * DAY),
            &mut rng,
        )
        .expect("a test agency");
        let trust = trust_of(&agency, vec![], now);
        let ca_key = SigningKey::generate(&mut rng);
        let ca = CommitAuthority::new(SigningKey::from_seed(&ca_key.to_seed()), trust.clone());
        let mut w = World {
            agency,
            ca,
            ca_key,
            log: MemoryCommitLog::new(),
            parties: Vec::new(),
            rng,
            now,
            sent_to_ca: std::sync::Mutex::default(),
        };
        for i in 0..n {
            w.add_party(&format!("p{i}"));
        }
        w
    }

    /// Adds a party named `name`; returns its index.
    pub fn add_party(&mut self, name: &str) -> usize {
        let sign = SigningKey::generate(&mut self.rng);
        let cert = identity(
            &self.agency,
            &mut self.rng,
            name,
            PartyRole::Customer,
            &sign,
            self.now,
        );
        self.parties.push(Party {
            sign,
            cert,
            trust: trust_of(&self.agency, vec![], self.now),
            ca: self.ca.verifying_key(),
        });
        self.parties.len() - 1
    }

    /// Party `i`'s UID.
    pub fn uid(&self, i: usize) -> KeyId {
        self.parties[i].uid()
    }

    /// The CA restarted on the same log (a crash loses nothing else).
    pub fn restart_ca(&mut self) {
        let trust = self.parties[0].trust.clone();
        self.ca = CommitAuthority::new(SigningKey::from_seed(&self.ca_key.to_seed()), trust);
    }

    /// Sends `bytes` to the CA.
    pub fn to_ca(&self, bytes: &[u8]) -> Result<Answer> {
        self.sent_to_ca
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes.to_vec());
        self.ca.handle(self.now, bytes, &self.log)
    }

    /// Sends `bytes` to the CA, sealing a tree head if the answer waits
    /// for one.
    pub fn to_ca_sealed(&self, bytes: &[u8]) -> Result<Answer> {
        match self.to_ca(bytes)? {
            Answer::Sealing { .. } => {
                self.ca.seal(self.now, &self.log)?;
                self.to_ca(bytes)
            }
            a => Ok(a),
        }
    }

    /// Party `p` begins a new transaction with party `q`, and `q` accepts:
    /// both open, `p` with the token. The deadline is a day ahead.
    pub fn begin(&mut self, p: usize, q: usize) -> Result<(Open, Open)> {
        let tid = Tid::random(&mut self.rng);
        let peer = self.uid(q);
        let (wait_p, opened) = process::begin(
            &self.parties[p],
            &mut self.rng,
            self.now,
            tid,
            peer,
            self.now.plus_secs(DAY),
        )?;
        self.start(p, q, wait_p, opened)
    }

    /// Party `p` brings party `r` in through `via` (p's own open
    /// subtransaction); `r` accepts.
    pub fn join(&mut self, p: usize, via: &Open, r: usize) -> Result<(Open, Open)> {
        let peer = self.uid(r);
        let (wait_p, opened) = process::join(&self.parties[p], &mut self.rng, self.now, via, peer)?;
        self.start(p, r, wait_p, opened)
    }

    fn start(
        &mut self,
        p: usize,
        q: usize,
        wait_p: AwaitStarted,
        opened: process::Opened,
    ) -> Result<(Open, Open)> {
        let first = self.to_ca(&opened.vote)?;
        if !matches!(first, Answer::Pending(_)) {
            return Err(Error::PeerMisbehaved(
                "the CA started a half-voted subtransaction",
            ));
        }
        let inv = Invitation::receive(&self.parties[q], self.now, &opened.opening)?;
        let (wait_q, vote_q) = inv.accept(&self.parties[q], &mut self.rng);
        let Answer::Started(started_q) = self.to_ca(&vote_q)? else {
            return Err(Error::PeerMisbehaved("no Started for the second vote"));
        };
        let Answer::Started(started_p) = self.to_ca(wait_p.vote())? else {
            return Err(Error::PeerMisbehaved("no Started for the first vote"));
        };
        let open_p = wait_p.on_started(&self.parties[p], self.now, &started_p)?;
        let open_q = wait_q.on_started(&self.parties[q], self.now, &started_q)?;
        Ok((open_p, open_q))
    }

    /// `a` (holding the token) and `b` exchange `rounds` Data messages each
    /// way, passing the token each time, then `a` ends: both contexts agree.
    pub fn converse(
        &self,
        a: (usize, &mut Open),
        b: (usize, &mut Open),
        rounds: usize,
    ) -> Result<()> {
        let (ia, oa) = a;
        let (ib, ob) = b;
        for r in 0..rounds {
            let m = oa.send(&self.parties[ia], format!("offer {r}").as_bytes(), true)?;
            ob.receive(&m)?;
            let m = ob.send(&self.parties[ib], format!("answer {r}").as_bytes(), true)?;
            oa.receive(&m)?;
        }
        let end = oa.end(&self.parties[ia])?;
        ob.receive(&end)?;
        Ok(())
    }

    /// Party `i` decides on `open` (commit or abort) and hands the Decide
    /// to the CA; returns the state awaiting the outcome and the CA's answer.
    pub fn decide(&self, i: usize, open: Open, commit: bool) -> Result<(AwaitOutcome, Answer)> {
        let (wait, bytes) = open.decide(&self.parties[i], commit)?;
        let answer = self.to_ca(&bytes)?;
        Ok((wait, answer))
    }

    /// Party `i`'s view of the outcome: asks the CA (sealing a head if
    /// needed) and verifies what it gets.
    pub fn outcome(&self, i: usize, wait: &AwaitOutcome) -> Result<Decided> {
        match self.to_ca_sealed(wait.decide())? {
            Answer::Outcome(o) => wait.on_outcome(&self.parties[i], &o),
            _ => Err(Error::Refused("not decided".into())),
        }
    }

    /// The CA's log, as a port.
    pub fn log(&self) -> &dyn CommitLog {
        &self.log
    }
}
