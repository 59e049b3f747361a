//! The CPO server: posting (protocol 2, paper section 3.7.1). The server
//! posts a CPO only when "it is convinced that the CPO has a fresh
//! ARBITER_ACCEPTANCE, and that it is guaranteed by a bonding agency", and
//! after Bob answered its challenge in real time.
//!
//! State: the [`Board`] port (posted CPOs) and the [`ReplayCache`] port
//! (R_0 of every post request, so that a replayed M_0 is refused). A run in
//! progress is a [`PendingPost`] held by the driver.

use crate::msg::{
    digest, ArbiterAcceptance, Bidding, FirstCome, Mode, PostChallenge, PostRequest, PostResponse,
    PostedCpo,
};
use crate::ports::{Board, BoardEntry, PostOutcome};
use crate::{BondTrust, Ccpo, Keys};
use agora_core::crypto::{random_bytes, Rng, VerifyingKey, X25519Public};
use agora_core::ports::{Freshness, ReplayCache};
use agora_core::wire::{self, cose, envelope, tags};
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::{validate_bond, BondRequirement, Role};

/// Replay-cache scope of post requests' R_0.
pub const POST_NONCE_SCOPE: &str = "cpo/post/r0";

/// A CPO server: its keys, whom it trusts, and its storage.
#[derive(Debug)]
pub struct Server<B, R> {
    keys: Keys,
    /// Trusted bonding agencies and their CRLs.
    pub trust: BondTrust,
    /// The arbiters it works with (the well-known parties of assumption 4).
    pub arbiters: Vec<VerifyingKey>,
    board: B,
    replay: R,
}

/// A checked ARBITER_ACCEPTANCE.
#[derive(Clone, Debug)]
pub struct CheckedAcceptance {
    /// The CCPO it accepts.
    pub ccpo: Ccpo,
    /// First-come (protocol 1) or bidding (protocol 5).
    pub mode: Mode,
    /// T_3.
    pub t3: Timestamp,
    /// ID_S.
    pub server: KeyId,
    /// The arbiter who signed it.
    pub arbiter: KeyId,
}

/// Verifies an ARBITER_ACCEPTANCE (a `COSE_Sign1` of X_3 of protocol 1 or
/// 5) against the known `arbiters`: the signer must be one of them **and**
/// the arbiter its CCPO names.
pub fn check_acceptance(bytes: &[u8], arbiters: &[VerifyingKey]) -> Result<CheckedAcceptance> {
    let kid = cose::peek_kid(bytes)?;
    let key = arbiters.iter().find(|k| k.key_id() == kid).ok_or_else(|| {
        Error::NotAuthorised("the acceptance is not signed by a known arbiter".into())
    })?;
    let payload = cose::verify_raw(bytes, key)?;
    let (ccpo, t3, server, mode) = match wire::peek_tag(&payload)? {
        t if t == tags::CPO_ARBITER_ACCEPTANCE => {
            let x3 = wire::decode::<ArbiterAcceptance<FirstCome>>(&payload)?;
            (x3.ccpo, x3.t3, x3.server, Mode::FirstCome)
        }
        t if t == tags::CPO_BID_ARBITER_ACCEPTANCE => {
            let x3 = wire::decode::<ArbiterAcceptance<Bidding>>(&payload)?;
            (x3.ccpo, x3.t3, x3.server, Mode::Bidding)
        }
        other => {
            return Err(agora_core::DecodeError::WrongTag {
                expected: tags::CPO_ARBITER_ACCEPTANCE,
                found: other,
            }
            .into())
        }
    };
    if ccpo.arbiter != kid {
        return Err(Error::NotAuthorised(
            "the acceptance is not signed by the arbiter the CCPO names".into(),
        ));
    }
    Ok(CheckedAcceptance {
        ccpo,
        mode,
        t3,
        server,
        arbiter: kid,
    })
}

/// Step 2 sent: the server waits for Bob's answer.
#[derive(Debug)]
pub struct PendingPost {
    acceptance: Vec<u8>,
    checked: CheckedAcceptance,
    x1_hash: [u8; 32],
    buyer: VerifyingKey,
    buyer_enc: X25519Public,
    started_at: Timestamp,
}

/// A CPO the server has just posted.
#[derive(Clone, Debug)]
pub struct Posted {
    /// M_3, to send to Bob.
    pub reply: Vec<u8>,
    /// What is now on the board.
    pub entry: BoardEntry,
}

impl<B: Board, R: ReplayCache> Server<B, R> {
    /// A server with `keys`, trusting `trust` and `arbiters`, storing in
    /// `board` and `replay`.
    pub fn new(
        keys: Keys,
        trust: BondTrust,
        arbiters: Vec<VerifyingKey>,
        board: B,
        replay: R,
    ) -> Self {
        Server {
            keys,
            trust,
            arbiters,
            board,
            replay,
        }
    }

    /// ServerID.
    pub fn id(&self) -> KeyId {
        self.keys.id()
    }

    /// The board.
    pub fn board(&self) -> &B {
        &self.board
    }

    /// Step 1 -> 2 of protocol 2. Checks, in order: the envelope is for this
    /// server; the acceptance is signed by a known arbiter who is the one the
    /// CCPO names, names this server (in ID_S and in the CCPO), and is fresh
    /// (T_3 within [`crate::ACCEPTANCE_MAX_AGE_SECS`], not in the future);
    /// the bond (trusted agency, dates, CRL, buyer role, covers the price,
    /// allows this server and that arbiter); Bob's signature with the bond
    /// key; the CPO has not expired and is not posted yet; R_0 was never
    /// seen (a replayed M_0 is refused). Then a fresh challenge.
    pub fn handle_post_request(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m0: &[u8],
    ) -> Result<(Vec<u8>, PendingPost)> {
        let me = self.id();
        let mut checked = None;
        let mut bond = None;
        let opened = envelope::open_self_certified::<PostRequest>(m0, &self.keys.enc, |x0| {
            let acc = check_acceptance(&x0.acceptance, &self.arbiters)?;
            if acc.server != me || acc.ccpo.server != me {
                return Err(Error::NotAuthorised(
                    "the acceptance names another server".into(),
                ));
            }
            if acc.t3.secs() > now.secs() + crate::MAX_CLOCK_SKEW_SECS
                || now.secs() > acc.t3.secs() + crate::ACCEPTANCE_MAX_AGE_SECS
            {
                return Err(Error::Replayed);
            }
            let valid = validate_bond(
                &acc.ccpo.bond,
                &self.trust.agencies,
                &self.trust.crls,
                now,
                &BondRequirement {
                    price: Some(acc.ccpo.price),
                    role: Role::Buyer,
                    server: Some(me),
                    arbiter: Some(acc.arbiter),
                },
            )?;
            let key = *valid.holder();
            bond = Some(valid);
            checked = Some(acc);
            Ok(key)
        })?;
        let (Some(acc), Some(bond)) = (checked, bond) else {
            return Err(Error::ApiMisuse("acceptance checked before the signature"));
        };
        let x0 = opened.message;
        if acc.ccpo.end <= now {
            return Err(Error::Refused("the CPO has already expired".into()));
        }
        if self.board.get(&acc.ccpo.id)?.is_some() {
            return Err(Error::Refused("this CPO is already posted".into()));
        }
        let expires = now.plus_secs(crate::ACCEPTANCE_MAX_AGE_SECS + crate::MAX_CLOCK_SKEW_SECS);
        if self
            .replay
            .check_and_insert(POST_NONCE_SCOPE, &x0.r0, expires, now)?
            == Freshness::Replayed
        {
            return Err(Error::Replayed);
        }
        let x1 = PostChallenge {
            x0_hash: digest(&x0),
            r1: random_bytes(rng),
        };
        let m1 = envelope::seal(rng, &self.keys.sign, bond.holder_x25519(), &x1)?;
        Ok((
            m1,
            PendingPost {
                acceptance: x0.acceptance,
                checked: acc,
                x1_hash: digest(&x1),
                buyer: *bond.holder(),
                buyer_enc: *bond.holder_x25519(),
                started_at: now,
            },
        ))
    }
}

impl PendingPost {
    /// The CCPO being posted.
    pub fn ccpo(&self) -> &Ccpo {
        &self.checked.ccpo
    }

    /// Step 3 -> 4: Bob answered the challenge; the server posts the CPO
    /// (durably, before replying) and signs `CPO = U_3, hash(X_2), CCPO`.
    pub fn handle_response<B: Board, R: ReplayCache>(
        self,
        server: &Server<B, R>,
        rng: &mut impl Rng,
        now: Timestamp,
        m2: &[u8],
    ) -> Result<Posted> {
        if now.secs() > self.started_at.secs() + crate::SESSION_TIMEOUT_SECS {
            return Err(Error::Replayed);
        }
        let opened = envelope::open::<PostResponse>(m2, &server.keys.enc, |kid| {
            (*kid == self.buyer.key_id()).then_some(self.buyer)
        })?;
        if opened.message.x1_hash != self.x1_hash {
            return Err(Error::PeerMisbehaved(
                "the response answers another challenge",
            ));
        }
        let cpo = PostedCpo {
            x2_hash: digest(&opened.message),
            ccpo: self.checked.ccpo,
        };
        let entry = BoardEntry {
            mode: self.checked.mode,
            buyer: self.buyer.key_id(),
            posted_at: now,
            acceptance: self.acceptance,
            posted: cose::sign(&server.keys.sign, &cpo),
            ccpo: cpo.ccpo.clone(),
        };
        if server.board.post(&entry)? == PostOutcome::AlreadyPosted {
            return Err(Error::Refused("this CPO is already posted".into()));
        }
        let reply = envelope::seal(rng, &server.keys.sign, &self.buyer_enc, &cpo)?;
        Ok(Posted { reply, entry })
    }
}
