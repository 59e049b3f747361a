//! agora-lite: the lightweight security primitives for e-commerce (Matias,
//! Mayer, Silberschatz; the paper is `../shared/papers/004_f098d38b32046f38.txt`,
//! whose Janus formula was lost: agora's is ARCHITECTURE section 6) as
//! sans-IO code. A client keeps one persistent key per vendor that her proxy
//! recomputes on demand from her id and one secret, so she stores nothing
//! and can move between machines.
//!
//! Built so far -- the key material:
//!
//! - [`janus`]: the Janus function. [`Janus::open`] computes the client's
//!   `S` once per proxy session (Argon2id); [`Janus::vendor_key`] gives the
//!   persistent key `K_{C,V}` of one vendor with its `K_enc` and `K_mac`,
//!   and a counter that rotates one vendor's key alone.
//! - [`session`]: session keys by unit of time, `K_t = HKDF-Expand(K,
//!   "session" ‖ t)`, and the vendor's check of the unit a client announces.
//! - [`chain`]: hash-chain receipts: the client's chain and the vendor's
//!   verifier, whose state a store can persist.
//! - [`ids`]: the client's and the vendor's identities.
//!
//! Not built yet, and to come in later increments: the protocols that use
//! these keys -- SKEP and its non-repudiation extension (where the vendor
//! signs the chain's anchor), SDDP and EDDP --, the client proxy (`agora
//! proxy`, HTTP Message Signatures over headers, encrypted bodies), the
//! vendor's tower layer, storage of the vendor's client records and chain
//! verifiers, and the CLI and node wiring. Nothing here reads the clock,
//! the OS RNG, a file or a socket: `now` and `rng` come in as arguments.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod ids;
pub mod janus;
pub mod session;

pub use chain::{ChainVerifier, HashChain, MAX_CHAIN_LEN};
pub use ids::{ClientId, VendorId, MAX_ID_LEN};
pub use janus::{Janus, JanusParams, VendorKey};
pub use session::{accept_unit, session_key, time_unit, Granularity, SessionKey};
