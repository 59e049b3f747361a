//! EDDP, the Extended Data Delivery Protocol (paper section 3, figure 4),
//! under session keys by unit of time, with hash-chain acknowledgements
//! (paper section 5).
//!
//! ```text
//! 1. C -> V  EddpHello      id_C
//! 2. V -> C  EddpChallenge  N_V
//! 3. C -> V  EddpRequest    id_C, t, |id_C, id_V, N_V, N_C, request, ack|_{K_t}
//! 4. V -> C  reply          |N_C, data, next N_V|_{K_t}
//! ```
//!
//! Unlike SDDP, the vendor answers only a request that proves the client
//! holds `K_t` *and* answers a challenge the vendor issued and has not seen
//! answered ([`ChallengeLedger`]): entity authentication of the client
//! before any data is sent, so that nobody else can make the vendor use the
//! client's key. The next challenge rides in the reply ([`Delivery::next`]),
//! so a client that fetches repeatedly pays one round trip per fetch.
//!
//! `ack` is the client's receipt for her previous delivery: `(i, w_i)` of
//! the hash chain committed in her subscription, checked by the record's
//! [`ChainVerifier`] (under the MAC, so a forged ack cannot cost the vendor
//! `n` hashes). Whether to require one before delivering is the vendor's
//! policy ([`AcceptedRequest::ack`] says what was acknowledged).

use crate::chain::ChainVerifier;
use crate::ids::{ClientId, VendorId};
use crate::janus::VendorKey;
use crate::sddp::{SessionPolicy, MAX_DATA_LEN, MAX_REQUEST_LEN};
use crate::session::{accept_unit, session_key, time_unit, Granularity, SessionKey};
use crate::skep::ClientRecord;
use crate::wire::{copy_key, Nonce, Rejected};
use agora_core::crypto::{ct_eq, random_bytes, Rng};
use agora_core::wire::{sym, tags, Decoder, Encoder, Field, Message, Tag, MAX_MESSAGE_LEN};
use agora_core::{DecodeError, Error, Result, Timestamp};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// Bytes of an id field with its head.
const ID_FIELD_LEN: usize = 257;

/// Step 1, client to vendor: her id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddpHello {
    /// The client.
    pub id_c: ClientId,
}

impl Message for EddpHello {
    const TAG: Tag = tags::LITE_EDDP_HELLO;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = ID_FIELD_LEN + 16;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(EddpHello { id_c: d.field()? })
    }
}

/// Step 2, vendor to client: the challenge `N_V`, in clear (a forged one
/// only makes the client's request fail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddpChallenge {
    /// The vendor's fresh nonce.
    pub n_v: Nonce,
}

impl Message for EddpChallenge {
    const TAG: Tag = tags::LITE_EDDP_CHALLENGE;
    const FIELDS: usize = 1;
    const MAX_LEN: usize = 32;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.n_v);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(EddpChallenge { n_v: d.field()? })
    }
}

/// A hash-chain acknowledgement: `w_index`, the client's receipt for her
/// `index`-th delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// `i`, from 1.
    pub index: u32,
    /// `w_i`.
    pub w: [u8; 32],
}

/// `[index (uint < 2^32), w (bstr 32)]`.
impl Field for Ack {
    fn encode(&self, e: &mut Encoder) {
        e.array(2).uint(self.index.into()).bytes(&self.w);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array(2)?;
        let index = u32::try_from(d.uint_max("ack index", u32::MAX.into())?)
            .map_err(|_| DecodeError::Invalid("ack index over 32 bits"))?;
        let w = d.bytes_exact::<32>("hash chain element")?;
        Ok(Ack { index, w })
    }
}

/// Step 3's body, sealed under `K_t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddpRequestBody {
    /// The client.
    pub id_c: ClientId,
    /// The vendor.
    pub id_v: VendorId,
    /// The vendor's challenge being answered.
    pub n_v: Nonce,
    /// The client's fresh nonce.
    pub n_c: Nonce,
    /// The request, at most [`MAX_REQUEST_LEN`] bytes.
    pub request: Vec<u8>,
    /// The acknowledgement of the previous delivery, if any.
    pub ack: Option<Ack>,
}

impl Message for EddpRequestBody {
    const TAG: Tag = tags::LITE_EDDP_REQUEST;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = 2 * ID_FIELD_LEN + MAX_REQUEST_LEN + 128;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c)
            .field(&self.id_v)
            .field(&self.n_v)
            .field(&self.n_c)
            .bytes(&self.request)
            .field(&self.ack);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(EddpRequestBody {
            id_c: d.field()?,
            id_v: d.field()?,
            n_v: d.field()?,
            n_c: d.field()?,
            request: d.bytes("request", MAX_REQUEST_LEN)?.to_vec(),
            ack: d.field()?,
        })
    }
}

/// Step 3, client to vendor: `id_C` and `t` in clear, and the sealed
/// [`EddpRequestBody`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddpRequest {
    /// The client.
    pub id_c: ClientId,
    /// The unit of time of `K_t`.
    pub t: u64,
    /// The sealed body.
    pub sealed: Vec<u8>,
}

impl Message for EddpRequest {
    const TAG: Tag = tags::LITE_EDDP_REQUEST;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = EddpRequestBody::MAX_LEN + 1024;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c).uint(self.t).bytes(&self.sealed);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(EddpRequest {
            id_c: d.field()?,
            t: d.uint()?,
            sealed: d
                .bytes("sealed EDDP request", sym::max_mac_len::<EddpRequestBody>())?
                .to_vec(),
        })
    }
}

/// Step 4's body, vendor to client, sealed under `K_t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddpReply {
    /// The client's nonce from the request.
    pub n_c: Nonce,
    /// The data, at most [`MAX_DATA_LEN`] bytes.
    pub data: Vec<u8>,
    /// The next challenge, for the client's next request.
    pub next_n_v: Option<Nonce>,
}

impl Message for EddpReply {
    const TAG: Tag = tags::LITE_EDDP_REPLY;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = MAX_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.n_c).bytes(&self.data).field(&self.next_n_v);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(EddpReply {
            n_c: d.field()?,
            data: d.bytes("data", MAX_EDDP_DATA_LEN)?.to_vec(),
            next_n_v: d.field()?,
        })
    }
}

/// The longest data of an EDDP reply: SDDP's [`MAX_DATA_LEN`] less room
/// for the next challenge (17 bytes), so that the reply still fits
/// [`MAX_MESSAGE_LEN`].
pub const MAX_EDDP_DATA_LEN: usize = MAX_DATA_LEN - 32;

// ---- The vendor's memory of issued challenges -----------------------------

/// Whether a challenge was outstanding when redeemed (an enum, not a bool).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// It was issued to this client, not yet used, not expired: now used.
    Redeemed,
    /// It was never issued to this client, or was used, or has expired.
    Unknown,
}

/// The vendor's store of the challenges it issued and that are not yet
/// answered: each is redeemed at most once.
pub trait ChallengeLedger: Send + Sync {
    /// Records `n_v` as issued to `id_c` until `expires_at`; `now` is the
    /// caller's clock, used only to forget expired challenges.
    fn issue(
        &self,
        id_c: &ClientId,
        n_v: &Nonce,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()>;
    /// Removes `n_v` from `id_c`'s outstanding challenges, if it is there
    /// and has not expired at `now`. Atomic: of two concurrent calls with
    /// the same challenge, at most one gets [`Redeemed::Redeemed`].
    fn redeem(&self, id_c: &ClientId, n_v: &Nonce, now: Timestamp) -> Result<Redeemed>;
}

/// Outstanding challenges kept per client in [`MemoryChallengeLedger`]: a
/// client with more open requests than this is not a person at a browser;
/// issuing one more drops the oldest, so that nobody can lock a client out
/// by asking for challenges in her name.
pub const MAX_OUTSTANDING_PER_CLIENT: usize = 16;

/// Outstanding challenges per client, as [`MemoryChallengeLedger`] keeps
/// them: each with its expiry.
type Outstanding = HashMap<ClientId, Vec<(Nonce, Timestamp)>>;

/// The in-memory twin of [`ChallengeLedger`], for tests and single-process
/// vendors. At most `capacity` clients with outstanding challenges (then
/// expired entries are purged, and if none were, [`Error::Overloaded`]).
#[derive(Debug)]
pub struct MemoryChallengeLedger {
    entries: Mutex<Outstanding>,
    capacity: usize,
}

impl MemoryChallengeLedger {
    /// An empty ledger for at most `capacity` clients.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryChallengeLedger {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Outstanding>> {
        self.entries
            .lock()
            .map_err(|_| Error::Storage("challenge ledger lock poisoned".into()))
    }
}

impl ChallengeLedger for MemoryChallengeLedger {
    fn issue(
        &self,
        id_c: &ClientId,
        n_v: &Nonce,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let mut m = self.lock()?;
        if !m.contains_key(id_c) && m.len() >= self.capacity {
            // Forget the clients whose challenges have all expired.
            m.retain(|_, v| v.iter().any(|(_, e)| *e > now));
            if m.len() >= self.capacity {
                return Err(Error::Overloaded);
            }
        }
        let v = m.entry(id_c.clone()).or_default();
        v.retain(|(_, e)| *e > now);
        if v.len() >= MAX_OUTSTANDING_PER_CLIENT {
            // Drop the one that expires first.
            if let Some(i) = (0..v.len()).min_by_key(|&i| v[i].1) {
                v.swap_remove(i);
            }
        }
        v.push((*n_v, expires_at));
        Ok(())
    }

    fn redeem(&self, id_c: &ClientId, n_v: &Nonce, now: Timestamp) -> Result<Redeemed> {
        let mut m = self.lock()?;
        let Some(v) = m.get_mut(id_c) else {
            return Ok(Redeemed::Unknown);
        };
        let found = v.iter().position(|(n, _)| ct_eq(n, n_v));
        let out = match found {
            Some(i) => {
                let (_, expires_at) = v.swap_remove(i);
                if expires_at > now {
                    Redeemed::Redeemed
                } else {
                    Redeemed::Unknown
                }
            }
            None => Redeemed::Unknown,
        };
        v.retain(|(_, e)| *e > now);
        if v.is_empty() {
            m.remove(id_c);
        }
        Ok(out)
    }
}

/// The longest a challenge stays valid, in seconds: one hour. A session
/// window may be far longer (up to 60 units of a day), but a challenge is
/// answered within seconds, and each outstanding one takes the vendor's
/// memory.
pub const MAX_CHALLENGE_TTL_SECS: u64 = 3_600;

/// When a challenge issued under `policy` expires: at the end of the
/// session window, at most [`MAX_CHALLENGE_TTL_SECS`] from now.
fn challenge_expiry(policy: &SessionPolicy) -> Timestamp {
    let window_end = policy.unit_expiry(time_unit(policy.now, policy.granularity));
    let cap = policy.now.plus_secs(MAX_CHALLENGE_TTL_SECS);
    window_end.min(cap)
}

// ---- Vendor ---------------------------------------------------------------

/// Step 1, vendor side: the client a hello is from, for the caller to find
/// her [`ClientRecord`].
pub fn hello_client(bytes: &[u8]) -> Result<ClientId> {
    Ok(agora_core::wire::decode::<EddpHello>(bytes)?.id_c)
}

/// The client a request is from, read from its clear part.
pub fn request_client(bytes: &[u8]) -> Result<ClientId> {
    Ok(agora_core::wire::decode::<EddpRequest>(bytes)?.id_c)
}

/// A fresh challenge for `record`'s client, recorded in `ledger`: the
/// nonce, for the caller to put in a reply ([`AcceptedRequest::reply`]).
/// Refused if the subscription is not valid now.
pub fn next_challenge(
    rng: &mut impl Rng,
    record: &ClientRecord,
    policy: SessionPolicy,
    ledger: &dyn ChallengeLedger,
) -> Result<Nonce> {
    record.subscription.check_valid_at(policy.now)?;
    let n_v: Nonce = random_bytes(rng);
    ledger.issue(&record.id_c, &n_v, challenge_expiry(&policy), policy.now)?;
    Ok(n_v)
}

/// Step 2: the challenge message for `record`'s client ("if V accepts
/// `id_C` as a client and `S_C` in the stored record assures validity"),
/// recorded in `ledger`.
pub fn challenge(
    rng: &mut impl Rng,
    record: &ClientRecord,
    policy: SessionPolicy,
    ledger: &dyn ChallengeLedger,
) -> Result<Vec<u8>> {
    let n_v = next_challenge(rng, record, policy, ledger)?;
    Ok(agora_core::wire::encode(&EddpChallenge { n_v }))
}

/// A request the vendor accepted: the request, the acknowledgement it
/// carried, and what it needs to answer ([`Self::reply`]). Holds `K_t`.
pub struct AcceptedRequest {
    request: Vec<u8>,
    ack: Option<(u32, u64)>,
    n_c: Nonce,
    k_t: SessionKey,
}

impl fmt::Debug for AcceptedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedRequest")
            .field("request_len", &self.request.len())
            .field("ack", &self.ack)
            .field("k_t", &self.k_t)
            .finish_non_exhaustive()
    }
}

impl AcceptedRequest {
    /// The client's request.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The acknowledgement accepted with the request: the index and the
    /// number of hashes it took; `None` if the request carried none.
    pub fn ack(&self) -> Option<(u32, u64)> {
        self.ack
    }

    /// Step 4: the reply with `data` (at most [`MAX_EDDP_DATA_LEN`] bytes,
    /// else [`Error::ApiMisuse`]) and the next challenge, if the vendor
    /// issued one ([`next_challenge`]).
    pub fn reply(
        self,
        rng: &mut impl Rng,
        data: &[u8],
        next_n_v: Option<Nonce>,
    ) -> Result<Vec<u8>> {
        if data.len() > MAX_EDDP_DATA_LEN {
            return Err(Error::ApiMisuse("EDDP reply data over MAX_EDDP_DATA_LEN"));
        }
        Ok(sym::seal_mac(
            self.k_t.k_enc(),
            self.k_t.k_mac(),
            rng,
            &EddpReply {
                n_c: self.n_c,
                data: data.to_vec(),
                next_n_v,
            },
        ))
    }
}

/// Step 3, vendor side: the request `bytes` from `record`'s client to
/// vendor `id_v`. Checks, in order:
///
/// 1. it decodes and is from `record`'s client ([`Error::ApiMisuse`]);
/// 2. its unit `t` is within the window ([`Error::Replayed`] if stale,
///    [`Error::Refused`] if in the future);
/// 3. it opens under `K_t` ([`Error::Crypto`]);
/// 4. it names this client and vendor ([`Error::PeerMisbehaved`]);
/// 5. the subscription is valid now ([`Error::Refused`]);
/// 6. its ack, if any, is on the chain after the last one accepted
///    ([`Error::Replayed`] for an old one, [`Error::Crypto`] for a wrong
///    element, [`Error::PeerMisbehaved`] for an ack without a chain);
/// 7. `N_V` was issued to this client and is redeemed now
///    ([`Error::Replayed`] if it was not issued, was used or expired).
///
/// Only then does the record's chain verifier move forward; a refused
/// request changes neither the record nor the ledger (except that an
/// unknown challenge stays unknown).
pub fn accept_request(
    record: &mut ClientRecord,
    id_v: &VendorId,
    policy: SessionPolicy,
    ledger: &dyn ChallengeLedger,
    bytes: &[u8],
) -> Result<AcceptedRequest> {
    let req: EddpRequest = agora_core::wire::decode(bytes)?;
    if req.id_c != record.id_c {
        return Err(Error::ApiMisuse(
            "EDDP request checked against another client's record",
        ));
    }
    accept_unit(req.t, policy.now, policy.granularity, policy.window_units)?;
    let k_t = session_key(&record.k, req.t);
    let body: EddpRequestBody = sym::open_mac(&req.sealed, k_t.k_enc(), k_t.k_mac())?;
    if body.id_c != record.id_c || &body.id_v != id_v {
        return Err(Error::PeerMisbehaved("EDDP request names other parties"));
    }
    record.subscription.check_valid_at(policy.now)?;
    let advanced: Option<(ChainVerifier, (u32, u64))> = match (body.ack, &record.chain) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Error::PeerMisbehaved(
                "EDDP acknowledgement without a hash chain in the subscription",
            ))
        }
        (Some(a), Some(v)) => {
            let mut v = v.clone();
            let steps = v.accept(a.index.into(), &a.w)?;
            Some((v, (a.index, steps)))
        }
    };
    match ledger.redeem(&record.id_c, &body.n_v, policy.now)? {
        Redeemed::Redeemed => {}
        Redeemed::Unknown => return Err(Error::Replayed),
    }
    let ack = advanced.map(|(v, a)| {
        record.chain = Some(v);
        a
    });
    Ok(AcceptedRequest {
        request: body.request,
        ack,
        n_c: body.n_c,
        k_t,
    })
}

// ---- Client ---------------------------------------------------------------

/// Step 1, client side: her hello, and the state awaiting the challenge.
pub fn start(key: &VendorKey, id_c: ClientId, id_v: VendorId) -> (AwaitChallenge, Vec<u8>) {
    let hello = agora_core::wire::encode(&EddpHello { id_c: id_c.clone() });
    (
        AwaitChallenge {
            key: copy_key(key),
            id_c,
            id_v,
        },
        hello,
    )
}

/// The client after her hello, awaiting a challenge.
#[derive(Debug)]
pub struct AwaitChallenge {
    key: VendorKey,
    id_c: ClientId,
    id_v: VendorId,
}

impl AwaitChallenge {
    /// Step 2, client side: the challenge decodes (else a decode error and
    /// this state back). Returns the state ready to request.
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn on_challenge(self, bytes: &[u8]) -> Result<Ready, Rejected<Self>> {
        match agora_core::wire::decode::<EddpChallenge>(bytes) {
            Ok(c) => Ok(Ready {
                key: self.key,
                id_c: self.id_c,
                id_v: self.id_v,
                n_v: c.n_v,
            }),
            Err(e) => Err(Rejected::new(self, e)),
        }
    }
}

/// The client holding a challenge, ready to make one request.
#[derive(Debug)]
pub struct Ready {
    key: VendorKey,
    id_c: ClientId,
    id_v: VendorId,
    n_v: Nonce,
}

impl Ready {
    /// Step 3: the request for `request` under the session key of `now`'s
    /// unit at granularity `g`, answering the challenge held, with `ack`.
    /// A request over [`MAX_REQUEST_LEN`] is [`Error::ApiMisuse`] (and the
    /// state is given back).
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn request(
        self,
        rng: &mut impl Rng,
        now: Timestamp,
        g: Granularity,
        request: &[u8],
        ack: Option<Ack>,
    ) -> Result<(AwaitReply, Vec<u8>), Rejected<Self>> {
        if request.len() > MAX_REQUEST_LEN {
            return Err(Rejected::new(
                self,
                Error::ApiMisuse("EDDP request over MAX_REQUEST_LEN"),
            ));
        }
        let t = time_unit(now, g);
        let k_t = session_key(&self.key, t);
        let n_c: Nonce = random_bytes(rng);
        let sealed = sym::seal_mac(
            k_t.k_enc(),
            k_t.k_mac(),
            rng,
            &EddpRequestBody {
                id_c: self.id_c.clone(),
                id_v: self.id_v.clone(),
                n_v: self.n_v,
                n_c,
                request: request.to_vec(),
                ack,
            },
        );
        let bytes = agora_core::wire::encode(&EddpRequest {
            id_c: self.id_c.clone(),
            t,
            sealed,
        });
        Ok((
            AwaitReply {
                key: self.key,
                id_c: self.id_c,
                id_v: self.id_v,
                k_t,
                n_c,
            },
            bytes,
        ))
    }
}

/// The client after her request, awaiting the reply.
#[derive(Debug)]
pub struct AwaitReply {
    key: VendorKey,
    id_c: ClientId,
    id_v: VendorId,
    k_t: SessionKey,
    n_c: Nonce,
}

/// What a reply delivered: the data, and the client ready for her next
/// request if the vendor sent a next challenge.
#[derive(Debug)]
pub struct Delivery {
    /// The data.
    pub data: Vec<u8>,
    /// The next request's state, if the reply carried a challenge.
    pub next: Option<Ready>,
}

impl AwaitReply {
    /// Step 4, client side: opens the reply under `K_t` ([`Error::Crypto`])
    /// and checks it echoes `N_C` ([`Error::PeerMisbehaved`]). On refusal,
    /// this state.
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn on_reply(self, bytes: &[u8]) -> Result<Delivery, Rejected<Self>> {
        let r = match sym::open_mac::<EddpReply>(bytes, self.k_t.k_enc(), self.k_t.k_mac()) {
            Ok(r) => r,
            Err(e) => return Err(Rejected::new(self, e)),
        };
        if !ct_eq(&r.n_c, &self.n_c) {
            return Err(Rejected::new(
                self,
                Error::PeerMisbehaved("EDDP reply answers another request"),
            ));
        }
        let next = r.next_n_v.map(|n_v| Ready {
            key: self.key,
            id_c: self.id_c,
            id_v: self.id_v,
            n_v,
        });
        Ok(Delivery { data: r.data, next })
    }
}
