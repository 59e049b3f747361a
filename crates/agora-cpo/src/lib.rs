//! agora-cpo: Conditional Purchase Orders (Kelsey & Schneier; the paper is
//! `../shared/papers/000_94df241e33b2a658.txt`) as sans-IO roles.
//!
//! Built so far: the CCPO (section 3.4), arbiter approval (protocol 1, and
//! its bidding variant 5, sections 3.6.1 and 3.7) with a configurable
//! arbiter policy, posting (protocol 2, section 3.7.1), browse sessions that
//! give a seller K_p (protocol 3, section 3.8; a seller may end hers), and
//! first-come binding (protocol 4, section 3.9), and bidding (protocol 6,
//! section 3.10) with the arbiter's award and signed notices, delivery with
//! challenge-response on the key of BC_P ([`delivery`]), the take-down of a
//! revoked buyer's CPOs and the end of a revoked seller's sessions
//! ([`server::Server::apply_revocations`]), and the recovery of lost replies
//! ([`recovery`]). The board, the sessions and the bids are storage ports.
//!
//! Every message X_i travels as `PKE(X_i, Sign(X_i))`
//! ([`agora_core::wire::envelope`]); each role is a chain of step types
//! consumed by value (`buyer::ExpectArbiterChallenge` ->
//! `buyer::ExpectArbiterAcceptance` -> ...), so a step cannot be skipped or
//! replayed from the same state. Nothing here reads the clock, the OS RNG
//! or a socket: `now` and `rng` come in as arguments, bytes go out as
//! return values.
#![forbid(unsafe_code)]

pub mod arbiter;
pub mod bidding;
pub mod buyer;
pub mod ccpo;
pub mod delivery;
mod issued;
pub mod msg;
pub mod policy;
pub mod ports;
pub mod recovery;
pub mod seller;
pub mod server;
pub mod session;
pub mod store;

use agora_core::crypto::{VerifyingKey, X25519Secret};
use agora_pki::{Crl, TrustAnchors};

pub use agora_core::party::{Keys, Peer};
pub use ccpo::{Ccpo, CcpoDraft};
pub use msg::{Bidding, FirstCome, Mode, Variant};

/// How long a party waits for the next message of a protocol run before it
/// forgets the run (seconds). The paper's challenge-response steps are
/// meant to happen "in real time".
pub const SESSION_TIMEOUT_SECS: u64 = 300;
/// How far apart two honest parties' clocks may be (seconds).
pub const MAX_CLOCK_SKEW_SECS: u64 = 120;
/// How long after T_3 an ARBITER_ACCEPTANCE may be used to post (seconds):
/// the server refuses older ones as stale (section 3.7.1, "If it's not
/// stale").
pub const ACCEPTANCE_MAX_AGE_SECS: u64 = 24 * 3600;
/// The longest browse session a seller may ask for (T in protocol 3).
pub const MAX_SESSION_SECS: u64 = 7 * 24 * 3600;
/// Sessions a server remembers, each with its derived K_p channel (about
/// 1.5 KiB each with the seller's bond).
pub const MAX_CACHED_CHANNELS: usize = 16_384;
/// How long a listing (protocol 4, step 1) may be answered with an offer.
pub const LISTING_TTL_SECS: u64 = 600;
/// Most listings a server keeps waiting for an offer, across all sessions.
pub const MAX_ISSUED_LISTINGS: usize = 100_000;
/// Most listings one browse session has waiting: a new one retires her
/// oldest, so that no seller can fill the table against the others.
pub const MAX_LISTINGS_PER_SESSION: usize = 1024;

/// Saved protocol states (for runs that span program runs, e.g. over
/// e-mail: paper 3.6, "this part of the protocol really ought to be
/// possible with nothing more than encrypted e-mail"). A state is the CBOR
/// array `[version, kind, fields...]`; it is local data, but decoded as
/// strictly as peer input.
pub(crate) mod state {
    use agora_core::wire::{saved, Decoder, Encoder};
    use agora_core::DecodeError;

    /// Largest saved state, in bytes.
    pub const MAX_LEN: usize = 256 * 1024;

    /// Starts a state of `kind` with `fields` fields after the header.
    pub fn start(kind: u64, fields: usize) -> Encoder {
        saved::start(kind, fields)
    }

    /// Opens a state of `kind` with `fields` fields; the caller reads them
    /// and then calls `finish`.
    pub fn open(bytes: &[u8], kind: u64, fields: usize) -> Result<Decoder<'_>, DecodeError> {
        saved::open(bytes, kind, fields, MAX_LEN)
    }
}

/// Step 3 of the challenge-response openings (protocols 1, 2 and 3): the
/// answer must arrive within `timeout_secs` of the challenge, be sealed to
/// `enc` and signed by `from`, and name the challenge (`hash(X_1)`) this run
/// sent. A late answer is stale ([`agora_core::Error::Replayed`]).
#[allow(clippy::too_many_arguments)] // each is one of the step's checks
pub(crate) fn open_answer_to_challenge<M: agora_core::wire::Message>(
    m: &[u8],
    enc: &X25519Secret,
    from: &VerifyingKey,
    started_at: agora_core::Timestamp,
    timeout_secs: u64,
    now: agora_core::Timestamp,
    x1_hash: &[u8; 32],
    answered: impl FnOnce(&M) -> [u8; 32],
) -> agora_core::Result<M> {
    if now.secs() > started_at.secs().saturating_add(timeout_secs) {
        return Err(agora_core::Error::Replayed);
    }
    let opened = agora_core::wire::envelope::open::<M>(m, enc, |kid| {
        (*kid == from.key_id()).then_some(*from)
    })?;
    if answered(&opened.message) != *x1_hash {
        return Err(agora_core::Error::PeerMisbehaved(
            "the response answers another challenge",
        ));
    }
    Ok(opened.message)
}

/// What a role needs to judge bond certificates: the trusted bonding
/// agencies and their current CRLs.
#[derive(Clone, Debug)]
pub struct BondTrust {
    /// Trusted bonding agencies.
    pub agencies: TrustAnchors,
    /// Their CRLs (a bond is refused unless its agency's CRL is current).
    pub crls: Vec<Crl>,
}
