//! Recovering a binding (agora's addition to protocol 4, found by
//! agora-sim): if Pam's BOUND_CPO is lost on the way, her retry is refused
//! "already bound" and she would never learn that she won. Under
//! `Auth_{K_p}` on her session channel she asks the server for the binding
//! of CPO X ([`BindingQuery`]); the server answers with the stored
//! BOUND_CPO ([`BindingAnswer`]) only if the binding's seller is this
//! session's seller. Nothing changes on the server; the answer is readable
//! only under K_p, and the BOUND_CPO inside is the server-signed evidence,
//! checked by Pam as in step 4.
//!
//! Tags: [`tags::CPO_SELLER_BINDING_QUERY`] (`[1,4,6]`) and
//! [`tags::CPO_SELLER_BINDING_ANSWER`] (`[1,4,7]`).

use crate::msg::{digest, BoundCpo, Mode};
use crate::seller::{BoundReceipt, SellerSession};
use crate::server::Server;
use crate::session::{self, Direction};
use agora_core::crypto::{random_bytes, Rng};
use agora_core::wire::{cose, tags, Decoder, Encoder, Message, Tag};
use agora_core::{DecodeError, Error, Result, Timestamp};

/// Pam to the server, under `Auth_{K_p}`: "the binding of CPO `cpo`, if it
/// is mine".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingQuery {
    /// The session she asks in (must be the channel's).
    pub session: [u8; 32],
    /// The CPO's id.
    pub cpo: [u8; 32],
    /// A fresh nonce, echoed in the answer.
    pub r: [u8; 32],
}

impl Message for BindingQuery {
    const TAG: Tag = tags::CPO_SELLER_BINDING_QUERY;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = 160;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.session).field(&self.cpo).field(&self.r);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BindingQuery {
            session: d.field()?,
            cpo: d.field()?,
            r: d.field()?,
        })
    }
}

/// Largest stored BOUND_CPO an answer carries.
const MAX_BOUND_CPO_LEN: usize = BoundCpo::MAX_LEN + cose::SIGN1_OVERHEAD;

/// The server to Pam, under `Auth_{K_p}`: her BOUND_CPO as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingAnswer {
    /// hash of the query it answers.
    pub query_hash: [u8; 32],
    /// The CPO's id.
    pub cpo: [u8; 32],
    /// BOUND_CPO (COSE_Sign1), as the server signed and stored it.
    pub bound_cpo: Vec<u8>,
}

impl Message for BindingAnswer {
    const TAG: Tag = tags::CPO_SELLER_BINDING_ANSWER;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_BOUND_CPO_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.query_hash)
            .field(&self.cpo)
            .bytes(&self.bound_cpo);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(BindingAnswer {
            query_hash: d.field()?,
            cpo: d.field()?,
            bound_cpo: d.bytes("BOUND_CPO", MAX_BOUND_CPO_LEN)?.to_vec(),
        })
    }
}

/// Pam waits for the answer to her query.
#[derive(Debug)]
pub struct ExpectBinding {
    query_hash: [u8; 32],
    cpo: [u8; 32],
    bond: Vec<u8>,
}

impl SellerSession {
    /// Asks the server for the binding of CPO `cpo`, under K_p. `bond` is
    /// BC_P, the bond she opened the session with: the BOUND_CPO must carry
    /// it.
    pub fn ask_binding(
        &self,
        rng: &mut impl Rng,
        cpo: &[u8; 32],
        bond: &[u8],
    ) -> (Vec<u8>, ExpectBinding) {
        let q = BindingQuery {
            session: self.id(),
            cpo: *cpo,
            r: random_bytes(rng),
        };
        (
            self.channel().seal_authed(rng, Direction::ToServer, &q),
            ExpectBinding {
                query_hash: digest(&q),
                cpo: *cpo,
                bond: bond.to_vec(),
            },
        )
    }
}

impl ExpectBinding {
    /// The answer must be under K_p, answer this query, and carry a
    /// BOUND_CPO signed by the server for this CPO and her bond.
    pub fn handle(self, session: &SellerSession, m: &[u8]) -> Result<BoundReceipt> {
        let a = session
            .channel()
            .open_authed::<BindingAnswer>(Direction::ToSeller, m)?;
        if a.query_hash != self.query_hash || a.cpo != self.cpo {
            return Err(Error::PeerMisbehaved("the answer is for another query"));
        }
        let x2 = cose::verify::<BoundCpo>(&a.bound_cpo, &session.server().sign)?;
        if x2.ccpo.id != self.cpo || x2.seller_bond != self.bond {
            return Err(Error::PeerMisbehaved(
                "the BOUND_CPO is for another CPO or seller",
            ));
        }
        Ok(BoundReceipt {
            signed: a.bound_cpo,
            message: x2,
        })
    }
}

impl Server {
    /// Pam's [`BindingQuery`]: checks the MAC under the session's K_p, that
    /// the session is live and the query names it; answers with the stored
    /// BOUND_CPO of a first-come CPO whose binding is this seller's. Any
    /// other case (not bound, bound to another, bidding) is one refusal
    /// that does not say which.
    pub fn handle_binding_query(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        m: &[u8],
    ) -> Result<Vec<u8>> {
        // The tag before the session lookup: another message gets no lookup.
        let (tag, _) = session::peek(m)?;
        if tag != tags::CPO_SELLER_BINDING_QUERY {
            return Err(DecodeError::WrongTag {
                expected: tags::CPO_SELLER_BINDING_QUERY,
                found: tag,
            }
            .into());
        }
        let (q, s, channel) = self.open_in_live_session::<BindingQuery>(now, m, |q| q.session)?;
        let refused = || Error::Refused("no binding of this CPO to this seller".into());
        let entry = self.store.board().get(&q.cpo)?.ok_or_else(refused)?;
        if entry.mode != Mode::FirstCome {
            return Err(refused());
        }
        let binding = self.store.board().binding(&q.cpo)?.ok_or_else(refused)?;
        if binding.seller != s.seller {
            return Err(refused());
        }
        let a = BindingAnswer {
            query_hash: digest(&q),
            cpo: q.cpo,
            bound_cpo: binding.bound_cpo,
        };
        Ok(channel.seal_authed(rng, Direction::ToSeller, &a))
    }
}
