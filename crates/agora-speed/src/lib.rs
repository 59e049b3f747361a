//! agora-speed: SPEED purchases with encrypted electronic delivery (Ruiz,
//! Martínez, Cánovas, Gómez; the paper is
//! `../shared/papers/001_26fdd69feb1dcb57.txt`) as sans-IO roles.
//!
//! - [`customer`], [`vendor`], [`broker`]: the three roles, each a chain of
//!   step types consumed by value (`customer::Negotiating` ->
//!   `customer::ExpectDelivery` -> `customer::ExpectProduct` ->
//!   `customer::ReadyToPay` -> `customer::ExpectReceipt`), so a step cannot
//!   be skipped or replayed from the same state.
//! - [`msg`]: the paper's messages, normal mode (1-6, a, b) and aggressive
//!   mode (1-2, then 5-6).
//! - [`product`]: `|Product|_K` as a STREAM, in constant memory.
//! - [`strategy`]: vendor price rules and customer strategies, pluggable.
//! - [`purse`]: the simulated e-purse card and the broker's SAM (S1/S2/S3).
//! - [`ledger`]: the broker's double-entry ledger and payment register, a
//!   storage port with an in-memory twin (agora-store implements it).
//!
//! Nothing here reads the clock, the OS RNG, a file or a socket: `now` and
//! `rng` come in as arguments, bytes go out as return values.
#![forbid(unsafe_code)]

pub mod broker;
pub mod customer;
pub mod delivery;
pub mod ids;
pub mod ledger;
pub mod msg;
pub mod product;
pub mod purse;
pub mod strategy;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vendor;

pub use agora_core::party::{Keys, Peer};
pub use ids::{AccountNumber, CardId, Nid, PaymentOrderId};

/// How long a party waits for the next message of a purchase before it
/// forgets the run (seconds).
pub const SESSION_TIMEOUT_SECS: u64 = 600;

/// Most rounds of NegotiationStep a party takes part in before it breaks the
/// negotiation off (a bound on the work a stubborn peer can cause).
pub const MAX_ROUNDS: u32 = 64;

/// What a SPEED party needs to judge identity certificates: the trusted
/// certification authorities and their current CRLs (section 3.2: "every
/// certification authority must be considered trustworthy"). The type is
/// agora-pki's, shared with STP's parties and commit authority.
pub use agora_pki::IdentityTrust as SpeedTrust;
