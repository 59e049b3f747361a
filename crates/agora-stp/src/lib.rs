//! agora-stp: the Secure Transaction Protocol (Steves, Edmondson-Yurkanan,
//! Gouda; the paper is `../shared/papers/002_0e3ec93436e7f44d.txt`, whose
//! figures and state tables were lost: the message set is ARCHITECTURE
//! section 6) as sans-IO roles.
//!
//! - [`process`]: the ST process, one subtransaction as a chain of step
//!   types; [`ca`]: the commit authority over its [`log::CommitLog`];
//!   [`rules`]: the CA's commit rules as a pure state machine (model
//!   checked in `tests/model.rs`); [`escrow`]: the exchange authority that
//!   releases an item only against a committed outcome.
//! - [`msg`]: the messages (system tag 3); [`ids`]: TID, pair, context.
//! - [`merkle`]: RFC 9162 hashing, inclusion and consistency proofs: the
//!   commit authority's transparency log; [`outcome`]: checking an Outcome
//!   and convicting a CA that said two things; [`bundle`]: proof bundles for
//!   verifiable causality.
//!
//! Nothing here reads the clock, the OS RNG, a file or a socket: `now` and
//! `rng` come in as arguments, bytes go out as return values.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod ca;
pub mod escrow;
pub mod ids;
pub mod log;
pub mod merkle;
pub mod msg;
pub mod outcome;
pub mod process;
pub mod rules;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use ca::{Answer, CommitAuthority};
pub use escrow::{Escrow, EscrowStore, MemoryEscrowStore};
pub use ids::{Context, Pair, Tid};
pub use log::{CommitLog, MemoryCommitLog};
pub use process::Party;
