//! agora-core: the supporting layer every other agora crate stands on.
//!
//! - [`crypto`]: the crypto suite (Ed25519, X25519, HPKE, AEADs, STREAM, HMAC,
//!   SHA-256, HKDF, Argon2id). Randomness and time are always passed in.
//! - [`wire`]: deterministic CBOR, the registry of message tags, COSE
//!   `Sign(X)` / `Auth_K(X)` and the HPKE envelope `PKE(X, Sign(X))`.
//! - [`id`], [`money`], [`time`]: key ids, amounts of money, timestamps.
//! - [`ports`]: storage traits of the supporting layer (replay cache, evidence
//!   archive) with in-memory twins; agora-store implements them on SQL.
//! - [`error`]: errors typed by who is at fault.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod error;
pub mod id;
pub mod money;
pub mod party;
pub mod ports;
pub mod time;
pub mod wire;

pub use error::{DecodeError, Error, Result};
pub use id::KeyId;
pub use money::{Currency, Money};
pub use time::Timestamp;
