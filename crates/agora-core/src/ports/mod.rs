//! Storage ports of the supporting layer (ARCHITECTURE section 5).
//!
//! This module is the pattern every protocol crate copies for its own ports:
//!
//! - a **narrow trait** per concern, saying what a role must remember and
//!   nothing about how ([`ReplayCache`], [`EvidenceArchive`]); every method
//!   takes `&self` so one instance can be shared by many sessions and threads;
//! - an **in-memory twin** ([`MemoryReplayCache`], [`MemoryArchive`]) for unit
//!   tests and the simulator;
//! - **one conformance suite** per trait ([`conformance`], behind the
//!   `testkit` feature) that runs unchanged against every implementation:
//!   the twin here, SQLite in agora-store, PostgreSQL later. A behaviour is
//!   part of the port only if the suite checks it.
//!
//! Time is always passed in (`now`), never read from a clock, so the same code
//! runs under the simulator.

pub mod archive;
pub mod replay;
pub mod unit;

// Documented always, compiled for use only with `testkit` (or in our tests).
#[cfg(any(test, feature = "testkit", doc))]
pub mod conformance;

pub use archive::{
    check_append_args, entry_hash, verify_against_head, verify_chain, ArchiveEntry, ChainError,
    ChainVerifier, EvidenceArchive, MemoryArchive, GENESIS_PREV_HASH, MAX_KIND_LEN, MAX_PAGE_LEN,
    MAX_PAYLOAD_LEN,
};
pub use replay::{
    check_insert_args, check_scope, Freshness, MemoryReplayCache, ReplayCache, MAX_SCOPE_LEN,
};
pub use unit::{Commit, Evidence};
