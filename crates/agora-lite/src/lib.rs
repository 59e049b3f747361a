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
//! -- and the protocols that use it (paper section 3, "Basic protocols";
//! system tag 4, `tags::LITE_*`), as state machines consumed by value, a
//! refused message giving the state back unchanged ([`wire::Rejected`]):
//!
//! - [`skep`]: SKEP (protocol 1, steps 1-3) and its non-repudiation
//!   extension (step 4): `K ‖ N_C` HPKE-sealed to the vendor's X25519 key,
//!   the challenge and confirm under `K`, and the vendor's signed receipt of
//!   the subscription ([`wire::Subscription`], hash-chain anchor included),
//!   which a third party checks with [`skep::verify_receipt`]. The vendor
//!   keeps a [`skep::ClientRecord`].
//! - [`sddp`]: SDDP (protocol 2) under `K_t`, the vendor refusing stale
//!   units and, through agora-core's `ReplayCache`, replayed requests.
//! - [`eddp`]: EDDP (protocol 3) under `K_t`: a single-use challenge the
//!   vendor records ([`eddp::ChallengeLedger`], with an in-memory twin),
//!   hash-chain acknowledgements fed to the record's [`ChainVerifier`], and
//!   the next challenge riding in each reply.
//! - [`records`]: the vendor's client records (`id_C -> K`, `S_C`, the
//!   chain verifier) behind the port [`records::ClientRecords`], keyed by
//!   vendor and client: the first SKEP for an id wins, and the chain
//!   advances by compare-and-set; an in-memory twin here, SQLite (`K`
//!   sealed at rest) in agora-store.
//! - [`wire`]: what they share: ids as message fields, the subscription,
//!   [`wire::Rejected`].
//! - [`http`]: SDDP over HTTP, what the client proxy and the vendor's tower
//!   layer speak: headers authenticated, never encrypted, by an RFC 9421
//!   signature (`hmac-sha256` under a key from `K_t`), bodies sealed.
//! - [`dispute`]: what the vendor's signed chain and a shown `w_i` prove
//!   (paper section 5).
//!
//! Not built yet, and to come in later increments: EDDP over HTTP, durable
//! storage of issued EDDP challenges (only the in-memory challenge ledger
//! exists; client records are stored through [`records::ClientRecords`],
//! on SQLite in agora-store). The vendor's side on the network is
//! `agora_node::lite`; the client's, and the proxy's work,
//! `agora_client::lite`. Nothing here reads the clock, the OS RNG, a file or
//! a socket: `now` and `rng` come in as arguments.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod dispute;
pub mod eddp;
pub mod http;
pub mod ids;
pub mod janus;
pub mod records;
pub mod sddp;
pub mod session;
pub mod skep;
pub mod wire;

pub use chain::{ChainVerifier, HashChain, MAX_CHAIN_LEN};
pub use ids::{ClientId, VendorId, MAX_ID_LEN};
pub use janus::{Janus, JanusParams, VendorKey};
pub use session::{accept_unit, session_key, time_unit, Granularity, SessionKey};
