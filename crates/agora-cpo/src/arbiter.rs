//! Alice the Arbiter: protocol 1 (and its bidding variant 5), paper section
//! 3.6.1. She answers Bob's request with a challenge, and issues the
//! ARBITER_ACCEPTANCE only once Bob has answered it: "after step 3, Alice
//! knows she's talking to Bob in real time". She keeps no storage: a run in
//! progress is a [`PendingApproval`] value that the driver holds (bounded,
//! with [`crate::SESSION_TIMEOUT_SECS`]).

use crate::msg::{
    digest, ArbiterAcceptance, ArbiterChallenge, ArbiterRequest, ArbiterResponse, Variant,
};
use crate::policy::ArbiterPolicy;
use crate::{BondTrust, Keys};
use agora_core::crypto::{random_bytes, Rng, VerifyingKey, X25519Public};
use agora_core::wire::envelope;
use agora_core::{Error, KeyId, Result, Timestamp};
use agora_pki::{validate_bond, BondRequirement, Role};
use std::marker::PhantomData;

/// An arbiter: her keys, her policy and whom she trusts to bond buyers.
#[derive(Debug)]
pub struct Arbiter {
    keys: Keys,
    /// What she refuses.
    pub policy: ArbiterPolicy,
    /// Trusted agencies and their CRLs.
    pub trust: BondTrust,
    /// How long she waits for Bob's answer to her challenge; default
    /// [`crate::SESSION_TIMEOUT_SECS`], longer when runs go by e-mail.
    pub session_timeout_secs: u64,
}

/// Step 2 done: Alice waits for Bob's answer to her challenge. `Clone`, so
/// that a driver can keep it when an answer that does not authenticate is
/// refused ([`agora_core::Error::leaves_state_intact`]).
#[derive(Clone, Debug)]
pub struct PendingApproval<V: Variant> {
    request: ArbiterRequest<V>,
    x1_hash: [u8; 32],
    buyer: VerifyingKey,
    buyer_enc: X25519Public,
    started_at: Timestamp,
}

/// What Alice issued: the ARBITER_ACCEPTANCE (signed X_3) and what it says.
#[derive(Clone, Debug)]
pub struct Issued<V: Variant> {
    /// M_3, to send to Bob.
    pub reply: Vec<u8>,
    /// `X_3, Sign_{SK_A}(X_3)`: the acceptance, as evidence.
    pub acceptance: Vec<u8>,
    /// X_3.
    pub message: ArbiterAcceptance<V>,
}

impl Arbiter {
    /// An arbiter with `keys`, `policy` and `trust`.
    pub fn new(keys: Keys, policy: ArbiterPolicy, trust: BondTrust) -> Arbiter {
        Arbiter {
            keys,
            policy,
            trust,
            session_timeout_secs: crate::SESSION_TIMEOUT_SECS,
        }
    }

    /// ArbiterID: her key id.
    pub fn id(&self) -> KeyId {
        self.keys.id()
    }

    pub(crate) fn sign_key(&self) -> &agora_core::crypto::SigningKey {
        &self.keys.sign
    }

    pub(crate) fn enc_key(&self) -> &agora_core::crypto::X25519Secret {
        &self.keys.enc
    }

    /// Step 1 -> 2: Bob's M_0. Checks, in order: the envelope is for her
    /// and of this protocol; Bob's bond (trusted agency, dates, CRL, buyer
    /// role, covers the price, allows her and the server); Bob's signature
    /// with the bond's key; the CCPO names her and the same server as ID_S;
    /// her policy. Then she answers with a fresh challenge R_1.
    pub fn handle_request<V: Variant>(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m0: &[u8],
    ) -> Result<(Vec<u8>, PendingApproval<V>)> {
        let me = self.id();
        let mut bond = None;
        let opened =
            envelope::open_self_certified::<ArbiterRequest<V>>(m0, &self.keys.enc, |x0| {
                let valid = validate_bond(
                    &x0.ccpo.bond,
                    &self.trust.agencies,
                    &self.trust.crls,
                    now,
                    &BondRequirement {
                        price: Some(x0.ccpo.price),
                        role: Role::Buyer,
                        server: Some(x0.server),
                        arbiter: Some(me),
                    },
                )?;
                let key = *valid.holder();
                bond = Some(valid);
                Ok(key)
            })?;
        let bond = bond.ok_or(Error::ApiMisuse("bond checked before the signature"))?;
        let x0 = opened.message;
        if x0.ccpo.arbiter != me {
            return Err(Error::NotAuthorised(
                "the CCPO names another arbiter".into(),
            ));
        }
        if x0.server != x0.ccpo.server {
            return Err(Error::PeerMisbehaved(
                "ID_S differs from the CCPO's ServerID",
            ));
        }
        if x0.ccpo.end <= now {
            return Err(Error::Refused("the CCPO has already expired".into()));
        }
        self.policy.check(&x0, &bond.holder_key_id())?;
        let x1 = ArbiterChallenge::<V> {
            x0_hash: digest(&x0),
            r1: random_bytes(rng),
            variant: PhantomData,
        };
        let m1 = envelope::seal(rng, &self.keys.sign, bond.holder_x25519(), &x1)?;
        Ok((
            m1,
            PendingApproval {
                request: x0,
                x1_hash: digest(&x1),
                buyer: *bond.holder(),
                buyer_enc: *bond.holder_x25519(),
                started_at: now,
            },
        ))
    }
}

impl<V: Variant> PendingApproval<V> {
    /// The CCPO under approval.
    pub fn ccpo(&self) -> &crate::Ccpo {
        &self.request.ccpo
    }

    /// Step 3 -> 4: Bob's M_2 answers the challenge; Alice issues the
    /// ARBITER_ACCEPTANCE `X_3 = U_3, hash(X_2), T_3, CCPO, ID_S`.
    pub fn handle_response(
        self,
        arbiter: &Arbiter,
        rng: &mut impl Rng,
        now: Timestamp,
        m2: &[u8],
    ) -> Result<Issued<V>> {
        let x2 = crate::open_answer_to_challenge::<ArbiterResponse<V>>(
            m2,
            &arbiter.keys.enc,
            &self.buyer,
            self.started_at,
            arbiter.session_timeout_secs,
            now,
            &self.x1_hash,
            |x| x.x1_hash,
        )?;
        let x3 = ArbiterAcceptance::<V> {
            x2_hash: digest(&x2),
            t3: now,
            ccpo: self.request.ccpo,
            server: self.request.server,
            variant: PhantomData,
        };
        let acceptance = agora_core::wire::cose::sign(&arbiter.keys.sign, &x3);
        let reply = envelope::seal(rng, &arbiter.keys.sign, &self.buyer_enc, &x3)?;
        Ok(Issued {
            reply,
            acceptance,
            message: x3,
        })
    }
}

impl<V: Variant> PendingApproval<V> {
    /// The state as bytes (saved state kind 5), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(5, 6);
        e.uint(u64::from(V::APPROVAL_PROTOCOL))
            .bytes(&agora_core::wire::encode(&self.request))
            .field(&self.x1_hash)
            .field(&self.buyer)
            .field(&self.buyer_enc)
            .field(&self.started_at);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 5, 6)?;
        if d.uint()? != u64::from(V::APPROVAL_PROTOCOL) {
            return Err(agora_core::DecodeError::Invalid(
                "saved state of the other approval protocol",
            ));
        }
        let request = agora_core::wire::decode::<ArbiterRequest<V>>(
            d.bytes("saved request", crate::state::MAX_LEN)?,
        )?;
        let s = PendingApproval {
            request,
            x1_hash: d.field()?,
            buyer: d.field()?,
            buyer_enc: d.field()?,
            started_at: d.field()?,
        };
        d.finish()?;
        Ok(s)
    }
}
