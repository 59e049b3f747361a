//! agora-stp: the Secure Transaction Protocol (Steves, Edmondson-Yurkanan,
//! Gouda; the paper is `../shared/papers/002_0e3ec93436e7f44d.txt`, whose
//! figures and state tables were lost: the message set is ARCHITECTURE
//! section 6) as sans-IO roles.
//!
//! - [`merkle`]: RFC 9162 hashing, inclusion and consistency proofs: the
//!   commit authority's transparency log.
//!
//! Nothing here reads the clock, the OS RNG, a file or a socket: `now` and
//! `rng` come in as arguments, bytes go out as return values.
#![forbid(unsafe_code)]

pub mod ca;
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
pub use ids::{Context, Pair, Tid};
pub use log::{CommitLog, MemoryCommitLog};
pub use process::Party;
