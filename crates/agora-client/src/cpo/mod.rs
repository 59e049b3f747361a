//! The CPO buyer's and seller's side: the flows ([`flow`]: one sans-IO
//! conversation per protocol run) and the drivers that carry them over a
//! transport, blocking ([`run`]) or on an event loop ([`run_async`]).
//!
//! A driver sends each message a conversation makes to the role it names,
//! with the pending step its previous reply named (the second message of
//! protocols 1, 2, 3 and 5 continues one), and hands it the reply, until
//! the conversation is done.

pub mod flow;

#[cfg(feature = "transport")]
mod drive;
#[cfg(feature = "transport")]
pub use drive::{role_of, run, run_async, FlowError};
