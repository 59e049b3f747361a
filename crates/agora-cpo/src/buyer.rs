//! Bob the Buyer: getting the arbiter's approval (protocol 1 / 5, paper
//! section 3.6.1) and posting the CPO (protocol 2, section 3.7.1). Each
//! step is a value consumed by the next, so Bob answers each challenge at
//! most once and only in order.

use crate::msg::{
    digest, ArbiterAcceptance, ArbiterChallenge, ArbiterRequest, ArbiterResponse, Mode,
    PostChallenge, PostRequest, PostResponse, PostedCpo, Variant,
};
use crate::{Ccpo, Keys, Peer};
use agora_core::crypto::{random_bytes, Rng};
use agora_core::wire::envelope;
use agora_core::{Error, Result, Timestamp};
use std::marker::PhantomData;

/// An ARBITER_ACCEPTANCE Bob holds: Alice's signed X_3 and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    /// `X_3, Sign_{SK_A}(X_3)` (COSE_Sign1): what the server will check.
    pub signed: Vec<u8>,
    /// The CCPO Alice accepted.
    pub ccpo: Ccpo,
    /// T_3.
    pub t3: Timestamp,
    /// First-come (protocol 1) or bidding (protocol 5).
    pub mode: Mode,
}

/// Step 1 sent; Bob waits for Alice's challenge M_1.
#[derive(Debug)]
pub struct ExpectArbiterChallenge<V: Variant> {
    arbiter: Peer,
    x0_hash: [u8; 32],
    ccpo: Ccpo,
    variant: PhantomData<V>,
}

/// Step 3 sent; Bob waits for the acceptance M_3.
#[derive(Debug)]
pub struct ExpectArbiterAcceptance<V: Variant> {
    arbiter: Peer,
    x2_hash: [u8; 32],
    ccpo: Ccpo,
    variant: PhantomData<V>,
}

/// Step 1 of protocol 1 (5): `X_0 = U_0, CCPO, ID_S, R_0, Additional
/// Terms`, sealed to the arbiter. `keys` are the keys of Bob's bond (the
/// one inside the CCPO).
pub fn request_approval<V: Variant>(
    keys: &Keys,
    rng: &mut impl Rng,
    ccpo: Ccpo,
    additional_terms: &str,
    arbiter: &Peer,
) -> Result<(Vec<u8>, ExpectArbiterChallenge<V>)> {
    if ccpo.arbiter != arbiter.id() {
        return Err(Error::ApiMisuse("the CCPO names another arbiter"));
    }
    let x0 = ArbiterRequest::<V> {
        server: ccpo.server,
        r0: random_bytes(rng),
        additional_terms: additional_terms.to_owned(),
        ccpo,
        variant: PhantomData,
    };
    let m0 = envelope::seal(rng, &keys.sign, &arbiter.enc, &x0)?;
    Ok((
        m0,
        ExpectArbiterChallenge {
            arbiter: *arbiter,
            x0_hash: digest(&x0),
            ccpo: x0.ccpo,
            variant: PhantomData,
        },
    ))
}

impl<V: Variant> ExpectArbiterChallenge<V> {
    /// Step 2 -> 3: Alice's challenge must answer this very request; Bob
    /// returns `X_2 = U_2, hash(X_1)`. After this, Bob knows he is talking
    /// to Alice in real time.
    pub fn handle(
        self,
        keys: &Keys,
        rng: &mut impl Rng,
        m1: &[u8],
    ) -> Result<(Vec<u8>, ExpectArbiterAcceptance<V>)> {
        let opened =
            envelope::open::<ArbiterChallenge<V>>(m1, &keys.enc, |kid| self.arbiter.key_if(kid))?;
        if opened.message.x0_hash != self.x0_hash {
            return Err(Error::PeerMisbehaved(
                "the challenge answers another request",
            ));
        }
        let x2 = ArbiterResponse::<V> {
            x1_hash: digest(&opened.message),
            variant: PhantomData,
        };
        let m2 = envelope::seal(rng, &keys.sign, &self.arbiter.enc, &x2)?;
        Ok((
            m2,
            ExpectArbiterAcceptance {
                arbiter: self.arbiter,
                x2_hash: digest(&x2),
                ccpo: self.ccpo,
                variant: PhantomData,
            },
        ))
    }
}

impl<V: Variant> ExpectArbiterAcceptance<V> {
    /// Step 4: the acceptance must chain to Bob's response, carry his CCPO
    /// unchanged and the server he named, and be timestamped about now.
    /// Bob stores it (step 5).
    pub fn handle(self, keys: &Keys, now: Timestamp, m3: &[u8]) -> Result<Acceptance> {
        let opened =
            envelope::open::<ArbiterAcceptance<V>>(m3, &keys.enc, |kid| self.arbiter.key_if(kid))?;
        let x3 = opened.message;
        if x3.x2_hash != self.x2_hash {
            return Err(Error::PeerMisbehaved(
                "the acceptance answers another response",
            ));
        }
        if x3.ccpo != self.ccpo || x3.server != self.ccpo.server {
            return Err(Error::PeerMisbehaved(
                "the acceptance is for another CCPO or server",
            ));
        }
        if x3.t3.distance_secs(now) > crate::MAX_CLOCK_SKEW_SECS {
            return Err(Error::PeerMisbehaved(
                "the acceptance's timestamp is not now",
            ));
        }
        Ok(Acceptance {
            signed: opened.signed,
            ccpo: x3.ccpo,
            t3: x3.t3,
            mode: V::MODE,
        })
    }
}

/// Step 1 sent; Bob waits for the server's challenge.
#[derive(Debug)]
pub struct ExpectPostChallenge {
    server: Peer,
    x0_hash: [u8; 32],
    ccpo: Ccpo,
}

/// Step 3 sent; Bob waits for the posted CPO.
#[derive(Debug)]
pub struct ExpectPosted {
    server: Peer,
    x2_hash: [u8; 32],
    ccpo: Ccpo,
}

/// The server's receipt: `CPO, Sign_{SK_S}(CPO)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostReceipt {
    /// The signed CPO (COSE_Sign1), evidence that it is posted.
    pub signed: Vec<u8>,
    /// The CPO.
    pub cpo: PostedCpo,
}

/// Step 1 of protocol 2: `X_0 = U_0, R_0, ARBITER_ACCEPTANCE`, sealed to
/// the server the acceptance names.
pub fn request_post(
    keys: &Keys,
    rng: &mut impl Rng,
    acceptance: &Acceptance,
    server: &Peer,
) -> Result<(Vec<u8>, ExpectPostChallenge)> {
    if acceptance.ccpo.server != server.id() {
        return Err(Error::ApiMisuse("the acceptance names another server"));
    }
    let x0 = PostRequest {
        r0: random_bytes(rng),
        acceptance: acceptance.signed.clone(),
    };
    let m0 = envelope::seal(rng, &keys.sign, &server.enc, &x0)?;
    Ok((
        m0,
        ExpectPostChallenge {
            server: *server,
            x0_hash: digest(&x0),
            ccpo: acceptance.ccpo.clone(),
        },
    ))
}

impl ExpectPostChallenge {
    /// Step 2 -> 3: answer the server's challenge with `X_2 = U_2, hash(X_1)`.
    pub fn handle(
        self,
        keys: &Keys,
        rng: &mut impl Rng,
        m1: &[u8],
    ) -> Result<(Vec<u8>, ExpectPosted)> {
        let opened = envelope::open::<PostChallenge>(m1, &keys.enc, |kid| self.server.key_if(kid))?;
        if opened.message.x0_hash != self.x0_hash {
            return Err(Error::PeerMisbehaved("the challenge answers another post"));
        }
        let x2 = PostResponse {
            x1_hash: digest(&opened.message),
        };
        let m2 = envelope::seal(rng, &keys.sign, &self.server.enc, &x2)?;
        Ok((
            m2,
            ExpectPosted {
                server: self.server,
                x2_hash: digest(&x2),
                ccpo: self.ccpo,
            },
        ))
    }
}

impl ExpectPosted {
    /// Step 4: the posted CPO must chain to Bob's response and carry his
    /// CCPO unchanged. Bob keeps it as his receipt.
    pub fn handle(self, keys: &Keys, m3: &[u8]) -> Result<PostReceipt> {
        let opened = envelope::open::<PostedCpo>(m3, &keys.enc, |kid| self.server.key_if(kid))?;
        if opened.message.x2_hash != self.x2_hash {
            return Err(Error::PeerMisbehaved(
                "the posted CPO answers another response",
            ));
        }
        if opened.message.ccpo != self.ccpo {
            return Err(Error::PeerMisbehaved("the server posted another CCPO"));
        }
        Ok(PostReceipt {
            signed: opened.signed,
            cpo: opened.message,
        })
    }
}

// Saved states (see `crate::state`): kinds 1-4.

fn check_protocol<V: Variant>(p: u64) -> Result<(), agora_core::DecodeError> {
    if p == u64::from(V::APPROVAL_PROTOCOL) {
        Ok(())
    } else {
        Err(agora_core::DecodeError::Invalid(
            "saved state of the other approval protocol",
        ))
    }
}

impl<V: Variant> ExpectArbiterChallenge<V> {
    /// The state as bytes, to resume later with [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(1, 4);
        e.uint(u64::from(V::APPROVAL_PROTOCOL))
            .field(&self.arbiter)
            .field(&self.x0_hash)
            .field(&self.ccpo);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 1, 4)?;
        check_protocol::<V>(d.uint()?)?;
        let s = ExpectArbiterChallenge {
            arbiter: d.field()?,
            x0_hash: d.field()?,
            ccpo: d.field()?,
            variant: PhantomData,
        };
        d.finish()?;
        Ok(s)
    }
}

impl<V: Variant> ExpectArbiterAcceptance<V> {
    /// The state as bytes, to resume later with [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(2, 4);
        e.uint(u64::from(V::APPROVAL_PROTOCOL))
            .field(&self.arbiter)
            .field(&self.x2_hash)
            .field(&self.ccpo);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 2, 4)?;
        check_protocol::<V>(d.uint()?)?;
        let s = ExpectArbiterAcceptance {
            arbiter: d.field()?,
            x2_hash: d.field()?,
            ccpo: d.field()?,
            variant: PhantomData,
        };
        d.finish()?;
        Ok(s)
    }
}

impl ExpectPostChallenge {
    /// The state as bytes, to resume later with [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(3, 3);
        e.field(&self.server).field(&self.x0_hash).field(&self.ccpo);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 3, 3)?;
        let s = ExpectPostChallenge {
            server: d.field()?,
            x0_hash: d.field()?,
            ccpo: d.field()?,
        };
        d.finish()?;
        Ok(s)
    }
}

impl ExpectPosted {
    /// The state as bytes, to resume later with [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(4, 3);
        e.field(&self.server).field(&self.x2_hash).field(&self.ccpo);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 4, 3)?;
        let s = ExpectPosted {
            server: d.field()?,
            x2_hash: d.field()?,
            ccpo: d.field()?,
        };
        d.finish()?;
        Ok(s)
    }
}
