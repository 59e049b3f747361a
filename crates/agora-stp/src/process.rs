//! The ST process role (paper section 3): one subtransaction seen from one
//! of its two parties, as a chain of step types.
//!
//! ```text
//! initiator:  begin / join ─┐
//!                           ├─> AwaitStarted ──Started──> Open ──decide──> AwaitOutcome ──Outcome──> Decided
//! invitee:    Invitation ───┘ (accept)          (Data, End)
//! ```
//!
//! A step that refuses a message leaves its state as it was (the methods
//! take `&self` or `&mut self` and change nothing before every check has
//! passed), so a forged, replayed or misdirected message cannot end a run;
//! a decision consumes the [`Open`] state, so nothing is sent after it and
//! a decided subtransaction cannot bring in new parties (rule 2).

use crate::ids::{Context, Pair, Tid};
use crate::msg::{Begin, Data, Decide, End, Join, Started, Vote};
use crate::outcome::{verify_outcome, VerifiedOutcome};
use agora_core::crypto::{
    hkdf_sha256, AeadAlg, AeadKey, Rng, Secret, SigningKey, VerifyingKey, X25519Secret, NONCE_LEN,
};
use agora_core::wire::{cose, tags};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::IdentityTrust;

/// Longest a transaction may run: its deadline at most this far ahead
/// (seconds; 30 days).
pub const MAX_LIFETIME_SECS: u64 = 30 * 86_400;

/// What a process is: its signing key, its identity certificate, the CAs it
/// trusts for the other parties' certificates, and the commit authority it
/// pins.
#[derive(Debug)]
pub struct Party {
    /// Its signing key; its UID is this key's id.
    pub sign: SigningKey,
    /// Its identity certificate (DER), for the key above.
    pub cert: Vec<u8>,
    /// Trusted CAs and their CRLs.
    pub trust: IdentityTrust,
    /// The commit authority's key (pinned: role `commitAuthority` in the
    /// trust store).
    pub ca: VerifyingKey,
}

impl Party {
    /// Its UID.
    pub fn uid(&self) -> KeyId {
        self.sign.key_id()
    }

    /// The commit authority's UID.
    pub fn ca_uid(&self) -> KeyId {
        self.ca.key_id()
    }
}

/// A subtransaction's opening (a Begin or a Join), decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The transaction.
    pub tid: Tid,
    /// The pair.
    pub pair: Pair,
    /// Who sent it.
    pub initiator: KeyId,
    /// Its name in the initiator's certificate.
    pub initiator_name: String,
    /// The transaction's deadline.
    pub deadline: Timestamp,
    /// The commit authority.
    pub ca: KeyId,
    /// For a Join: the initiator's subtransaction it comes through.
    pub via: Option<Pair>,
}

/// Verifies a signed Begin or Join at `now`: the initiator's certificate
/// valid under `trust`, the signature by its key, the initiator one of the
/// pair. Returns it decoded. (The addressee's own checks, that it is for
/// her and names her CA, are [`Invitation::receive`]'s.)
pub fn open_opening(bytes: &[u8], trust: &IdentityTrust, now: Timestamp) -> Result<Opening> {
    opening(bytes, trust, now, Signature::Check)
}

/// [`open_opening`] of bytes whose signature this very caller verified
/// before (a commit authority that remembers the digests of what it
/// verified): every other check, in the same order, on the same fields (the
/// initiator's certificate judged at `now`, the key it certifies the
/// signer's, a Join through one of the initiator's own subtransactions, the
/// initiator one of the pair). On any other bytes this would accept a
/// forged signature.
pub(crate) fn open_verified_opening(
    bytes: &[u8],
    trust: &IdentityTrust,
    now: Timestamp,
) -> Result<Opening> {
    opening(bytes, trust, now, Signature::VerifiedBefore)
}

/// Whether an opening's signature is to be checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signature {
    Check,
    VerifiedBefore,
}

/// `M`, signed by the key of the certificate `cert_of` names in it (valid
/// under `trust` at `now`): the message, the signer's UID and the
/// certificate's name.
fn self_certified<M: agora_core::wire::Message>(
    bytes: &[u8],
    trust: &IdentityTrust,
    now: Timestamp,
    sig: Signature,
    cert_of: impl Fn(&M) -> &[u8],
) -> Result<(M, KeyId, String)> {
    if sig == Signature::VerifiedBefore {
        let m: M = cose::peek_unverified(bytes)?;
        let kid = cose::peek_kid(bytes)?;
        let id = trust.identity_of_any_role(cert_of(&m), now)?;
        if id.key().key_id() != kid {
            return Err(Error::NotAuthorised(
                "signed by a key other than the one the message certifies".into(),
            ));
        }
        return Ok((m, kid, id.name().to_owned()));
    }
    let mut name = String::new();
    let (m, kid) = cose::verify_self_certified::<M>(bytes, |m| {
        let id = trust.identity_of_any_role(cert_of(m), now)?;
        name = id.name().to_owned();
        Ok(*id.key())
    })?;
    Ok((m, kid, name))
}

fn opening(bytes: &[u8], trust: &IdentityTrust, now: Timestamp, sig: Signature) -> Result<Opening> {
    let tag = cose::peek_tag(bytes)?;
    let o = if tag == tags::STP_BEGIN {
        let (b, kid, name) =
            self_certified::<Begin>(bytes, trust, now, sig, |b| &b.initiator_cert)?;
        Opening {
            tid: b.tid,
            pair: b.pair,
            initiator: kid,
            initiator_name: name,
            deadline: b.deadline,
            ca: b.ca,
            via: None,
        }
    } else if tag == tags::STP_JOIN {
        let (j, kid, name) = self_certified::<Join>(bytes, trust, now, sig, |j| &j.initiator_cert)?;
        if !j.via.contains(&kid) || j.via == j.pair {
            return Err(Error::PeerMisbehaved(
                "a Join must come through a subtransaction of the initiator's own",
            ));
        }
        Opening {
            tid: j.tid,
            pair: j.pair,
            initiator: kid,
            initiator_name: name,
            deadline: j.deadline,
            ca: j.ca,
            via: Some(j.via),
        }
    } else {
        return Err(Error::PeerMisbehaved("expected a Begin or a Join"));
    };
    if !o.pair.contains(&o.initiator) {
        return Err(Error::PeerMisbehaved(
            "the initiator is not one of the subtransaction's pair",
        ));
    }
    Ok(o)
}

/// Signs a Vote on `opening` (its signed bytes) with a fresh key share.
fn vote(
    party: &Party,
    rng: &mut impl Rng,
    o: &Opening,
    opening: &[u8],
    accept: bool,
) -> (Secret<32>, Vec<u8>) {
    let share = X25519Secret::generate(rng);
    let v = Vote {
        tid: o.tid,
        pair: o.pair,
        opening: opening.to_vec(),
        accept,
        voter_cert: party.cert.clone(),
        share: share.public(),
    };
    (Secret::new(*share.to_bytes()), cose::sign(&party.sign, &v))
}

/// What an initiator sends: the opening to the peer, its own vote to the CA.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The signed Begin or Join, for the peer.
    pub opening: Vec<u8>,
    /// The initiator's signed Vote (accept), for the CA.
    pub vote: Vec<u8>,
}

fn check_deadline(now: Timestamp, deadline: Timestamp) -> Result<()> {
    if deadline <= now {
        return Err(Error::Refused(
            "the transaction's deadline has passed".into(),
        ));
    }
    if deadline.secs() > now.secs().saturating_add(MAX_LIFETIME_SECS) {
        return Err(Error::Refused(format!(
            "a deadline more than {} days ahead",
            MAX_LIFETIME_SECS / 86_400
        )));
    }
    Ok(())
}

/// P begins the new transaction `tid` with `peer`, to be decided by P's
/// commit authority by `deadline`.
pub fn begin(
    party: &Party,
    rng: &mut impl Rng,
    now: Timestamp,
    tid: Tid,
    peer: KeyId,
    deadline: Timestamp,
) -> Result<(AwaitStarted, Opened)> {
    check_deadline(now, deadline)?;
    let pair =
        Pair::new(party.uid(), peer).ok_or(Error::ApiMisuse("a transaction with oneself"))?;
    let b = Begin {
        tid,
        pair,
        initiator_cert: party.cert.clone(),
        deadline,
        ca: party.ca_uid(),
    };
    let opening = cose::sign(&party.sign, &b);
    let o = Opening {
        tid,
        pair,
        initiator: party.uid(),
        initiator_name: String::new(),
        deadline,
        ca: party.ca_uid(),
        via: None,
    };
    Ok(initiated(party, rng, o, opening))
}

/// P brings `peer` into the transaction of `via`, P's own open
/// subtransaction (rule 2: only while it is undecided, which holding it as
/// [`Open`] proves).
pub fn join(
    party: &Party,
    rng: &mut impl Rng,
    now: Timestamp,
    via: &Open,
    peer: KeyId,
) -> Result<(AwaitStarted, Opened)> {
    check_deadline(now, via.deadline)?;
    let pair =
        Pair::new(party.uid(), peer).ok_or(Error::ApiMisuse("a subtransaction with oneself"))?;
    if pair == via.pair {
        return Err(Error::ApiMisuse(
            "the peer is already in this subtransaction",
        ));
    }
    let j = Join {
        tid: via.tid,
        pair,
        initiator_cert: party.cert.clone(),
        deadline: via.deadline,
        ca: party.ca_uid(),
        via: via.pair,
    };
    let opening = cose::sign(&party.sign, &j);
    let o = Opening {
        tid: via.tid,
        pair,
        initiator: party.uid(),
        initiator_name: String::new(),
        deadline: via.deadline,
        ca: party.ca_uid(),
        via: Some(via.pair),
    };
    Ok(initiated(party, rng, o, opening))
}

fn initiated(
    party: &Party,
    rng: &mut impl Rng,
    o: Opening,
    opening: Vec<u8>,
) -> (AwaitStarted, Opened) {
    let (share, vote) = vote(party, rng, &o, &opening, true);
    let next = AwaitStarted {
        me: party.uid(),
        opening: o,
        opening_bytes: opening.clone(),
        share,
        vote: vote.clone(),
    };
    (next, Opened { opening, vote })
}

/// Q has received a Begin or Join addressed to her: she may accept or
/// reject it.
#[derive(Clone, Debug)]
pub struct Invitation {
    me: KeyId,
    opening: Opening,
    opening_bytes: Vec<u8>,
}

impl Invitation {
    /// Checks a signed Begin or Join received at `now`: the initiator's
    /// certificate and signature, that it is for this party, names this
    /// party's commit authority and a deadline still ahead.
    pub fn receive(party: &Party, now: Timestamp, bytes: &[u8]) -> Result<Invitation> {
        let o = open_opening(bytes, &party.trust, now)?;
        let me = party.uid();
        if !o.pair.contains(&me) || o.initiator == me {
            return Err(Error::NotAuthorised(
                "this Begin or Join is addressed to another party".into(),
            ));
        }
        if o.ca != party.ca_uid() {
            return Err(Error::Refused(
                "the transaction names a commit authority this party does not trust".into(),
            ));
        }
        check_deadline(now, o.deadline)?;
        Ok(Invitation {
            me,
            opening: o,
            opening_bytes: bytes.to_vec(),
        })
    }

    /// What it says.
    pub fn opening(&self) -> &Opening {
        &self.opening
    }

    /// Accept: the Vote for the CA, and the state awaiting Started.
    pub fn accept(self, party: &Party, rng: &mut impl Rng) -> (AwaitStarted, Vec<u8>) {
        let (share, v) = vote(party, rng, &self.opening, &self.opening_bytes, true);
        (
            AwaitStarted {
                me: self.me,
                opening: self.opening,
                opening_bytes: self.opening_bytes,
                share,
                vote: v.clone(),
            },
            v,
        )
    }

    /// Reject: the Vote for the CA (which aborts the transaction).
    pub fn reject(self, party: &Party, rng: &mut impl Rng) -> Vec<u8> {
        vote(party, rng, &self.opening, &self.opening_bytes, false).1
    }
}

/// A party has voted to accept and waits for the CA's Started.
#[derive(Clone, Debug)]
pub struct AwaitStarted {
    me: KeyId,
    opening: Opening,
    opening_bytes: Vec<u8>,
    share: Secret<32>,
    vote: Vec<u8>,
}

impl AwaitStarted {
    /// The signed vote (to send again if the CA's answer was lost).
    pub fn vote(&self) -> &[u8] {
        &self.vote
    }

    /// The opening.
    pub fn opening(&self) -> &Opening {
        &self.opening
    }

    /// A Decide to abort the whole transaction before it starts.
    pub fn abort(&self, party: &Party) -> Vec<u8> {
        cose::sign(
            &party.sign,
            &Decide {
                tid: self.opening.tid,
                pair: self.opening.pair,
                commit: None,
            },
        )
    }

    /// The CA's Started: checks the CA's signature, that it is for this
    /// party's subtransaction, and the other party's vote in it (its
    /// certificate, its signature, its acceptance of this very opening);
    /// derives the pair's data keys from the two key shares.
    pub fn on_started(&self, party: &Party, now: Timestamp, bytes: &[u8]) -> Result<Open> {
        let s: Started = cose::verify(bytes, &party.ca)?;
        let o = &self.opening;
        if s.tid != o.tid || s.pair != o.pair || s.to != self.me {
            return Err(Error::NotAuthorised(
                "a Started for another subtransaction or party".into(),
            ));
        }
        if s.deadline != o.deadline || !o.pair.contains(&s.token) {
            return Err(Error::PeerMisbehaved(
                "a Started that does not match the opening",
            ));
        }
        let peer = o
            .pair
            .other(&self.me)
            .ok_or(Error::ApiMisuse("not one of the pair"))?;
        let mut peer_key = None;
        let (v, kid) = cose::verify_self_certified::<Vote>(&s.peer_vote, |v| {
            let key = *party.trust.identity_of_any_role(&v.voter_cert, now)?.key();
            peer_key = Some(key);
            Ok(key)
        })?;
        let peer_key = peer_key.ok_or(Error::ApiMisuse("verified without a key"))?;
        if kid != peer || v.tid != o.tid || v.pair != o.pair || v.opening != self.opening_bytes {
            return Err(Error::PeerMisbehaved(
                "the other party's vote is not on this subtransaction",
            ));
        }
        if !v.accept {
            return Err(Error::PeerMisbehaved("a Started with a rejecting vote"));
        }
        let ctx = Context::initial(&self.opening_bytes);
        let shared = X25519Secret::from_bytes(*self.share.expose()).diffie_hellman(&v.share)?;
        let key_for = |sender: &KeyId| -> Result<Secret<32>> {
            let mut info = b"agora/stp/v1/data".to_vec();
            info.extend_from_slice(&sender.0);
            let mut k = [0u8; 32];
            hkdf_sha256(&ctx.0, &shared[..], &info, &mut k)?;
            let s = Secret::new(k);
            zeroize::Zeroize::zeroize(&mut k);
            Ok(s)
        };
        Ok(Open {
            tid: o.tid,
            pair: o.pair,
            me: self.me,
            peer,
            peer_key,
            peer_cert: v.voter_cert,
            deadline: o.deadline,
            send_key: key_for(&self.me)?,
            recv_key: key_for(&peer)?,
            ctx,
            seq: 0,
            token: s.token == self.me,
            ended: false,
            transcript: vec![self.opening_bytes.clone()],
        })
    }
}

/// What a received message was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Data: the payload, and whether this party holds the token now.
    Data {
        /// The opened payload.
        payload: Vec<u8>,
        /// Whether the token passed to this party with it.
        token: bool,
    },
    /// The peer ended the subtransaction.
    End,
}

/// An open subtransaction: data flows half duplex under the send token
/// until its holder ends it.
#[derive(Clone, Debug)]
pub struct Open {
    tid: Tid,
    pair: Pair,
    me: KeyId,
    peer: KeyId,
    peer_key: VerifyingKey,
    peer_cert: Vec<u8>,
    deadline: Timestamp,
    send_key: Secret<32>,
    recv_key: Secret<32>,
    ctx: Context,
    seq: u64,
    token: bool,
    ended: bool,
    transcript: Vec<Vec<u8>>,
}

/// The AEAD nonce of message `seq`: its number, big-endian, in the last
/// eight bytes. Each direction has its own key, and a number is used once.
fn nonce(seq: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// The AEAD's associated data: TID, pair, number, previous context.
fn aad(tid: &Tid, pair: &Pair, seq: u64, prev: &Context) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + 64 + 8 + 32);
    a.extend_from_slice(&tid.0);
    a.extend_from_slice(&pair.lo().0);
    a.extend_from_slice(&pair.hi().0);
    a.extend_from_slice(&seq.to_be_bytes());
    a.extend_from_slice(&prev.0);
    a
}

impl Open {
    /// The transaction.
    pub fn tid(&self) -> Tid {
        self.tid
    }
    /// The pair.
    pub fn pair(&self) -> Pair {
        self.pair
    }
    /// This party's UID.
    pub fn me(&self) -> KeyId {
        self.me
    }
    /// The other party's UID.
    pub fn peer(&self) -> KeyId {
        self.peer
    }
    /// The other party's certificate.
    pub fn peer_cert(&self) -> &[u8] {
        &self.peer_cert
    }
    /// The context so far.
    pub fn context(&self) -> Context {
        self.ctx
    }
    /// Whether this party holds the send token.
    pub fn has_token(&self) -> bool {
        self.token && !self.ended
    }
    /// Whether the subtransaction has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }
    /// The signed messages so far: the opening, then every Data and End.
    pub fn transcript(&self) -> &[Vec<u8>] {
        &self.transcript
    }
    /// The deadline.
    pub fn deadline(&self) -> Timestamp {
        self.deadline
    }

    fn may_send(&self) -> Result<u64> {
        if self.ended {
            return Err(Error::Refused("the subtransaction has ended".into()));
        }
        if !self.token {
            return Err(Error::Refused(
                "only the holder of the send token sends or ends".into(),
            ));
        }
        self.seq
            .checked_add(1)
            .ok_or(Error::ApiMisuse("sequence numbers exhausted"))
    }

    /// Data: `payload` sealed to the peer; `pass_token` hands the send
    /// token over with it.
    pub fn send(&mut self, party: &Party, payload: &[u8], pass_token: bool) -> Result<Vec<u8>> {
        let seq = self.may_send()?;
        if payload.len() + agora_core::crypto::TAG_LEN > crate::msg::MAX_PAYLOAD_LEN {
            return Err(Error::ApiMisuse("payload over 64 KiB"));
        }
        let sealed = AeadKey::new(AeadAlg::ChaCha20Poly1305, &self.send_key).seal(
            &nonce(seq),
            &aad(&self.tid, &self.pair, seq, &self.ctx),
            payload,
        );
        let d = Data {
            tid: self.tid,
            pair: self.pair,
            seq,
            prev: self.ctx,
            payload: sealed,
            pass_token,
        };
        let bytes = cose::sign(&party.sign, &d);
        self.advance(seq, &bytes);
        if pass_token {
            self.token = false;
        }
        Ok(bytes)
    }

    /// End: the token holder closes the subtransaction.
    pub fn end(&mut self, party: &Party) -> Result<Vec<u8>> {
        let seq = self.may_send()?;
        let e = End {
            tid: self.tid,
            pair: self.pair,
            seq,
            prev: self.ctx,
        };
        let bytes = cose::sign(&party.sign, &e);
        self.advance(seq, &bytes);
        self.ended = true;
        Ok(bytes)
    }

    fn advance(&mut self, seq: u64, bytes: &[u8]) {
        self.seq = seq;
        self.ctx = self.ctx.next(bytes);
        self.transcript.push(bytes.to_vec());
    }

    /// A Data or End from the peer: signed by the peer, for this
    /// subtransaction, the next number, on this very context, sent by the
    /// token holder (the peer) and not after End. Nothing changes unless
    /// every check passes.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Received> {
        let tag = cose::peek_tag(bytes)?;
        if tag != tags::STP_DATA && tag != tags::STP_END {
            return Err(Error::PeerMisbehaved("expected Data or End"));
        }
        if cose::peek_kid(bytes)? != self.peer {
            return Err(Error::NotAuthorised(
                "not signed by the other party of this subtransaction".into(),
            ));
        }
        let (tid, pair, seq, prev, data) = if tag == tags::STP_DATA {
            let d: Data = cose::verify(bytes, &self.peer_key)?;
            (d.tid, d.pair, d.seq, d.prev, Some(d))
        } else {
            let e: End = cose::verify(bytes, &self.peer_key)?;
            (e.tid, e.pair, e.seq, e.prev, None)
        };
        if tid != self.tid || pair != self.pair {
            return Err(Error::NotAuthorised(
                "a message of another subtransaction".into(),
            ));
        }
        if seq <= self.seq {
            return Err(Error::Replayed);
        }
        if self.ended {
            return Err(Error::PeerMisbehaved("a message after End"));
        }
        if self.token {
            return Err(Error::PeerMisbehaved(
                "a message from a party without the send token",
            ));
        }
        if Some(seq) != self.seq.checked_add(1) || prev != self.ctx {
            return Err(Error::PeerMisbehaved(
                "a message out of order: wrong number or context",
            ));
        }
        let received = match data {
            Some(d) => {
                let payload = AeadKey::new(AeadAlg::ChaCha20Poly1305, &self.recv_key).open(
                    &nonce(seq),
                    &aad(&self.tid, &self.pair, seq, &prev),
                    &d.payload,
                )?;
                if d.pass_token {
                    self.token = true;
                }
                Received::Data {
                    payload,
                    token: d.pass_token,
                }
            }
            None => {
                self.ended = true;
                Received::End
            }
        };
        self.advance(seq, bytes);
        Ok(received)
    }

    /// Decide: commit with the final context (only after End), or abort
    /// (at any time). Consumes the subtransaction: nothing is sent in it
    /// afterwards, and no one can join through it.
    pub fn decide(self, party: &Party, commit: bool) -> Result<(AwaitOutcome, Vec<u8>)> {
        if commit && !self.ended {
            return Err(Error::ApiMisuse("commit only after End"));
        }
        let d = Decide {
            tid: self.tid,
            pair: self.pair,
            commit: commit.then_some(self.ctx),
        };
        let bytes = cose::sign(&party.sign, &d);
        Ok((
            AwaitOutcome {
                tid: self.tid,
                pair: self.pair,
                peer_cert: self.peer_cert,
                committed_with: commit.then_some(self.ctx),
                decide: bytes.clone(),
                transcript: self.transcript,
            },
            bytes,
        ))
    }
}

/// A party has decided and waits for the CA's Outcome.
#[derive(Clone, Debug)]
pub struct AwaitOutcome {
    tid: Tid,
    pair: Pair,
    peer_cert: Vec<u8>,
    committed_with: Option<Context>,
    decide: Vec<u8>,
    transcript: Vec<Vec<u8>>,
}

impl AwaitOutcome {
    /// The signed Decide (to send again if the CA's answer was lost).
    pub fn decide(&self) -> &[u8] {
        &self.decide
    }

    /// The transaction.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// The CA's Outcome: its tree head signed by the pinned CA, the leaf
    /// included in it, for this transaction; and, if it committed, with
    /// this party's own final context for its subtransaction (a CA that
    /// committed another context is caught here).
    pub fn on_outcome(&self, party: &Party, bytes: &[u8]) -> Result<Decided> {
        let v = verify_outcome(bytes, &party.ca)?;
        if v.leaf.tid != self.tid {
            return Err(Error::NotAuthorised(
                "an outcome of another transaction".into(),
            ));
        }
        if v.leaf.committed() {
            let agreed = v.leaf.context_of(&self.pair);
            if agreed.is_none() || agreed != self.committed_with {
                return Err(Error::PeerMisbehaved(
                    "the CA committed a context other than this party's",
                ));
            }
        }
        Ok(Decided {
            outcome: v,
            outcome_bytes: bytes.to_vec(),
            transcript: self.transcript.clone(),
            pair: self.pair,
            peer_cert: self.peer_cert.clone(),
        })
    }
}

/// A decided subtransaction: the CA's verified outcome, and the signed
/// messages that led to it (for `agora stp prove`).
#[derive(Clone, Debug)]
pub struct Decided {
    /// The verified outcome.
    pub outcome: VerifiedOutcome,
    /// The Outcome as received.
    pub outcome_bytes: Vec<u8>,
    /// The signed opening, Data and End messages, in order.
    pub transcript: Vec<Vec<u8>>,
    /// The subtransaction's pair.
    pub pair: Pair,
    /// The other party's identity certificate (DER).
    pub peer_cert: Vec<u8>,
}

impl Decided {
    /// The certificate of the party the opening invited: the other party's
    /// if this one sent the opening, else `own_cert` (for a proof bundle).
    pub fn invitee_cert<'a>(&'a self, me: &KeyId, own_cert: &'a [u8]) -> &'a [u8] {
        let initiator = self.transcript.first().and_then(|o| cose::peek_kid(o).ok());
        if initiator == Some(*me) {
            &self.peer_cert
        } else {
            own_cert
        }
    }

    /// Whether the transaction committed.
    pub fn committed(&self) -> bool {
        self.outcome.leaf.committed()
    }
}

/// A subtransaction in whichever step it is, saved between program runs
/// (the CLI keeps one file per subtransaction). Local data, read as
/// strictly as peer input ([`agora_core::wire::saved`]); it holds the pair's
/// data keys, so its file is the owner's only (mode 0600), as a SPEED
/// customer's saved purchase is.
#[derive(Clone, Debug)]
pub enum SubState {
    /// A Begin or Join received, not answered yet.
    Invited(Invitation),
    /// Voted to accept; waiting for the CA's Started.
    AwaitingStart(AwaitStarted),
    /// Open: data flows.
    Open(Open),
    /// Decided; waiting for the CA's Outcome.
    AwaitingOutcome(AwaitOutcome),
    /// The CA's Outcome, verified.
    Decided(Decided),
}

/// Largest saved subtransaction (its transcript included).
pub const MAX_SAVED_LEN: usize = 64 * 1024 * 1024;

mod saved_kinds {
    pub const INVITED: u64 = 1;
    pub const AWAITING_START: u64 = 2;
    pub const OPEN: u64 = 3;
    pub const AWAITING_OUTCOME: u64 = 4;
    pub const DECIDED: u64 = 5;
}

fn put_opening(e: &mut agora_core::wire::Encoder, o: &Opening) {
    e.array(7)
        .field(&o.tid)
        .field(&o.pair)
        .field(&o.initiator)
        .text(&o.initiator_name)
        .field(&o.deadline)
        .field(&o.ca)
        .field(&o.via);
}

fn read_opening(
    d: &mut agora_core::wire::Decoder<'_>,
) -> std::result::Result<Opening, agora_core::DecodeError> {
    d.array(7)?;
    Ok(Opening {
        tid: d.field()?,
        pair: d.field()?,
        initiator: d.field()?,
        initiator_name: d
            .text("initiator name", agora_pki::MAX_NAME_LEN)?
            .to_owned(),
        deadline: d.field()?,
        ca: d.field()?,
        via: d.field()?,
    })
}

fn put_list(e: &mut agora_core::wire::Encoder, items: &[Vec<u8>]) {
    e.array(items.len());
    for i in items {
        e.bytes(i);
    }
}

/// Most messages one saved subtransaction holds.
pub const MAX_TRANSCRIPT: usize = 1 << 16;

fn read_list(
    d: &mut agora_core::wire::Decoder<'_>,
) -> std::result::Result<Vec<Vec<u8>>, agora_core::DecodeError> {
    let n = d.array_max("transcript", MAX_TRANSCRIPT)?;
    (0..n)
        .map(|_| {
            Ok(d.bytes("message", crate::msg::MAX_PAYLOAD_LEN + 1024)?
                .to_vec())
        })
        .collect()
}

fn read_secret(
    d: &mut agora_core::wire::Decoder<'_>,
    what: &'static str,
) -> std::result::Result<Secret<32>, agora_core::DecodeError> {
    let mut b: [u8; 32] = d.bytes_exact(what)?;
    let s = Secret::new(b);
    zeroize::Zeroize::zeroize(&mut b);
    Ok(s)
}

impl SubState {
    /// The transaction.
    pub fn tid(&self) -> Tid {
        match self {
            SubState::Invited(i) => i.opening.tid,
            SubState::AwaitingStart(a) => a.opening.tid,
            SubState::Open(o) => o.tid,
            SubState::AwaitingOutcome(a) => a.tid,
            SubState::Decided(d) => d.outcome.leaf.tid,
        }
    }

    /// The subtransaction's pair.
    pub fn pair(&self) -> Pair {
        match self {
            SubState::Invited(i) => i.opening.pair,
            SubState::AwaitingStart(a) => a.opening.pair,
            SubState::Open(o) => o.pair,
            SubState::AwaitingOutcome(a) => a.pair,
            SubState::Decided(d) => d.pair,
        }
    }

    /// A word for the step it is in.
    pub fn step(&self) -> &'static str {
        match self {
            SubState::Invited(_) => "invited",
            SubState::AwaitingStart(_) => "awaiting start",
            SubState::Open(o) if o.ended => "ended",
            SubState::Open(_) => "open",
            SubState::AwaitingOutcome(_) => "awaiting outcome",
            SubState::Decided(d) if d.committed() => "committed",
            SubState::Decided(_) => "aborted",
        }
    }

    /// The state as bytes ([`SubState::from_bytes`] reads them).
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        use agora_core::wire::saved::start;
        use saved_kinds::*;
        let e = match self {
            SubState::Invited(i) => {
                let mut e = start(INVITED, 3);
                e.field(&i.me);
                put_opening(&mut e, &i.opening);
                e.bytes(&i.opening_bytes);
                e
            }
            SubState::AwaitingStart(a) => {
                let mut e = start(AWAITING_START, 5);
                e.field(&a.me);
                put_opening(&mut e, &a.opening);
                e.bytes(&a.opening_bytes)
                    .bytes(a.share.expose())
                    .bytes(&a.vote);
                e
            }
            SubState::Open(o) => {
                let mut e = start(OPEN, 14);
                e.field(&o.tid)
                    .field(&o.pair)
                    .field(&o.me)
                    .field(&o.peer)
                    .field(&o.peer_key)
                    .bytes(&o.peer_cert)
                    .field(&o.deadline)
                    .bytes(o.send_key.expose())
                    .bytes(o.recv_key.expose())
                    .field(&o.ctx)
                    .uint(o.seq)
                    .bool(o.token)
                    .bool(o.ended);
                put_list(&mut e, &o.transcript);
                e
            }
            SubState::AwaitingOutcome(a) => {
                let mut e = start(AWAITING_OUTCOME, 6);
                e.field(&a.tid)
                    .field(&a.pair)
                    .bytes(&a.peer_cert)
                    .field(&a.committed_with)
                    .bytes(&a.decide);
                put_list(&mut e, &a.transcript);
                e
            }
            SubState::Decided(d) => {
                let mut e = start(DECIDED, 4);
                e.bytes(&d.outcome_bytes).field(&d.pair).bytes(&d.peer_cert);
                put_list(&mut e, &d.transcript);
                e
            }
        };
        zeroize::Zeroizing::new(e.into_bytes())
    }

    /// A state saved by [`SubState::to_bytes`]; a decided one's outcome is
    /// verified again against the commit authority `ca`.
    pub fn from_bytes(bytes: &[u8], ca: &VerifyingKey) -> Result<SubState> {
        use agora_core::wire::saved::open;
        use saved_kinds::*;
        let kind = {
            let mut d = agora_core::wire::Decoder::new(bytes);
            d.array_any()?;
            d.uint()?;
            d.uint()?
        };
        let state = match kind {
            INVITED => {
                let mut d = open(bytes, INVITED, 3, MAX_SAVED_LEN)?;
                let s = SubState::Invited(Invitation {
                    me: d.field()?,
                    opening: read_opening(&mut d)?,
                    opening_bytes: d.bytes("opening", crate::msg::MAX_OPENING_LEN)?.to_vec(),
                });
                d.finish()?;
                s
            }
            AWAITING_START => {
                let mut d = open(bytes, AWAITING_START, 5, MAX_SAVED_LEN)?;
                let s = SubState::AwaitingStart(AwaitStarted {
                    me: d.field()?,
                    opening: read_opening(&mut d)?,
                    opening_bytes: d.bytes("opening", crate::msg::MAX_OPENING_LEN)?.to_vec(),
                    share: read_secret(&mut d, "key share")?,
                    vote: d.bytes("vote", crate::msg::MAX_VOTE_LEN)?.to_vec(),
                });
                d.finish()?;
                s
            }
            OPEN => {
                let mut d = open(bytes, OPEN, 14, MAX_SAVED_LEN)?;
                let s = SubState::Open(Open {
                    tid: d.field()?,
                    pair: d.field()?,
                    me: d.field()?,
                    peer: d.field()?,
                    peer_key: d.field()?,
                    peer_cert: d
                        .bytes("peer certificate", crate::msg::MAX_CERT_LEN)?
                        .to_vec(),
                    deadline: d.field()?,
                    send_key: read_secret(&mut d, "send key")?,
                    recv_key: read_secret(&mut d, "receive key")?,
                    ctx: d.field()?,
                    seq: d.uint()?,
                    token: d.bool()?,
                    ended: d.bool()?,
                    transcript: read_list(&mut d)?,
                });
                d.finish()?;
                s
            }
            AWAITING_OUTCOME => {
                let mut d = open(bytes, AWAITING_OUTCOME, 6, MAX_SAVED_LEN)?;
                let s = SubState::AwaitingOutcome(AwaitOutcome {
                    tid: d.field()?,
                    pair: d.field()?,
                    peer_cert: d
                        .bytes("peer certificate", crate::msg::MAX_CERT_LEN)?
                        .to_vec(),
                    committed_with: d.field()?,
                    decide: d.bytes("decide", 1024)?.to_vec(),
                    transcript: read_list(&mut d)?,
                });
                d.finish()?;
                s
            }
            DECIDED => {
                let mut d = open(bytes, DECIDED, 4, MAX_SAVED_LEN)?;
                let outcome_bytes = d.bytes("outcome", crate::msg::MAX_OUTCOME_LEN)?.to_vec();
                let pair = d.field()?;
                let peer_cert = d
                    .bytes("peer certificate", crate::msg::MAX_CERT_LEN)?
                    .to_vec();
                let transcript = read_list(&mut d)?;
                d.finish()?;
                SubState::Decided(Decided {
                    outcome: verify_outcome(&outcome_bytes, ca)?,
                    outcome_bytes,
                    transcript,
                    pair,
                    peer_cert,
                })
            }
            _ => {
                return Err(Error::Decode(agora_core::DecodeError::Invalid(
                    "saved subtransaction of an unknown kind",
                )))
            }
        };
        Ok(state)
    }
}
