//! The drivers of the client flows over a transport.

use super::flow::{Conversation, Next, Outgoing, To};
use crate::transport::{AsyncCpoTransport, ClientError, CpoTransport};
use agora_core::crypto::Rng;
use agora_core::Timestamp;
use agora_node::cpo::{Reply, Role};

/// Why a flow stopped.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A role refused one of her messages, or could not be reached.
    #[error("{0}")]
    Node(#[from] ClientError),
    /// A reply failed her checks (or she could not make her message).
    #[error("{0}")]
    Protocol(#[from] agora_core::Error),
}

impl FlowError {
    /// A stable code: the role's problem code, or the check's.
    pub fn code(&self) -> &str {
        match self {
            FlowError::Node(e) => e.code(),
            FlowError::Protocol(e) => e.code(),
        }
    }
}

/// The route of a message's recipient.
pub fn role_of(to: To) -> Role {
    match to {
        To::Arbiter => Role::Arbiter,
        To::Server => Role::Server,
    }
}

/// Carries `conv` (which made `first`) to its end over `t`: each message to
/// the role it names, each reply to the conversation. `now` is read at each
/// reply.
pub fn run<C: Conversation>(
    t: &dyn CpoTransport,
    party: &C::Party,
    first: Outgoing,
    conv: C,
    rng: &mut impl Rng,
    now: impl Fn() -> Timestamp,
) -> Result<C::Done, FlowError> {
    let (mut out, mut conv, mut step) = (first, conv, None);
    loop {
        let Reply { body, step: next } = t.call(role_of(out.to), &out.body, step)?;
        match conv.on_reply(party, rng, now(), &body)? {
            Next::Done(done) => return Ok(done),
            Next::Send(o, c) => (out, conv, step) = (o, c, next),
        }
    }
}

/// [`run`] on an event loop: no thread waits while the node answers (the
/// load tool's many sellers share a thread).
pub async fn run_async<C: Conversation>(
    t: &impl AsyncCpoTransport,
    party: &C::Party,
    first: Outgoing,
    conv: C,
    rng: &mut impl Rng,
    now: impl Fn() -> Timestamp,
) -> Result<C::Done, FlowError> {
    let (mut out, mut conv, mut step) = (first, conv, None);
    loop {
        let Reply { body, step: next } = t.call(role_of(out.to), &out.body, step).await?;
        match conv.on_reply(party, rng, now(), &body)? {
            Next::Done(done) => return Ok(done),
            Next::Send(o, c) => (out, conv, step) = (o, c, next),
        }
    }
}
