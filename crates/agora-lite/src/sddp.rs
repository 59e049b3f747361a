//! SDDP, the Simple Data Delivery Protocol (paper section 3, figure 3),
//! under session keys by unit of time (paper section 4).
//!
//! ```text
//! 1. C -> V  SddpRequest  id_C, t, |id_C, id_V, N_C, request|_{K_t}
//! 2. V -> C  reply        |N_C, data|_{K_t}
//! ```
//!
//! `K_t` is [`session_key`]`(K, t)`, `t` the client's unit of time, and
//! `|X|_{K_t}` is [`agora_core::wire::sym::seal_mac`] under its `K_enc` and
//! `K_mac`. The vendor finds `K` by `id_C` ([`request_client`] reads it),
//! checks `t` against its clock ([`accept_unit`]), opens the request,
//! checks the ids, that the subscription is valid now, and that `N_C` is
//! new for this client within the window ([`ReplayCache`]). The client
//! accepts a reply only under `K_t` and echoing her `N_C`.
//!
//! SDDP gives data privacy, data integrity and entity authentication *for
//! the client*; it does not authenticate the client to the vendor before
//! the vendor answers: anyone can send the vendor a request in the client's
//! name, and the vendor spends a MAC check before refusing it. A replayed
//! genuine request is refused by the replay cache within the window and by
//! the unit check after it. EDDP authenticates the client first.

use crate::ids::{ClientId, VendorId};
use crate::janus::VendorKey;
use crate::session::{accept_unit, session_key, time_unit, Granularity, SessionKey};
use crate::skep::ClientRecord;
use crate::wire::{Nonce, Rejected};
use agora_core::crypto::{ct_eq, random_bytes, sha256, Rng};
use agora_core::ports::replay::{Freshness, ReplayCache};
use agora_core::wire::{sym, tags, Decoder, Encoder, Message, Tag, MAX_MESSAGE_LEN};
use agora_core::{DecodeError, Error, Result, Timestamp};
use std::fmt;

/// The longest request, in bytes: 64 KiB (a page's parameters, a query;
/// bulk uploads are not what SDDP is for).
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// The longest reply data, in bytes: just under 1 MiB, so that the sealed
/// reply fits agora's [`MAX_MESSAGE_LEN`]. Larger data travels in STREAM
/// chunks, not in one message.
pub const MAX_DATA_LEN: usize = MAX_MESSAGE_LEN - 64;

/// The replay cache scope of SDDP requests.
pub const REPLAY_SCOPE: &str = "agora/lite/sddp";

/// Bytes of an id field with its head.
const ID_FIELD_LEN: usize = 257;

/// Step 1's body, sealed under `K_t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SddpRequestBody {
    /// The client.
    pub id_c: ClientId,
    /// The vendor.
    pub id_v: VendorId,
    /// The client's fresh nonce.
    pub n_c: Nonce,
    /// The request, at most [`MAX_REQUEST_LEN`] bytes.
    pub request: Vec<u8>,
}

impl Message for SddpRequestBody {
    const TAG: Tag = tags::LITE_SDDP_REQUEST;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = 2 * ID_FIELD_LEN + MAX_REQUEST_LEN + 64;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c)
            .field(&self.id_v)
            .field(&self.n_c)
            .bytes(&self.request);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SddpRequestBody {
            id_c: d.field()?,
            id_v: d.field()?,
            n_c: d.field()?,
            request: d.bytes("request", MAX_REQUEST_LEN)?.to_vec(),
        })
    }
}

/// Step 1, client to vendor: `id_C` and `t` in clear (the vendor needs them
/// to find `K` and compute `K_t`), and the sealed [`SddpRequestBody`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SddpRequest {
    /// The client.
    pub id_c: ClientId,
    /// The unit of time the client's `K_t` is for.
    pub t: u64,
    /// The sealed body.
    pub sealed: Vec<u8>,
}

impl Message for SddpRequest {
    const TAG: Tag = tags::LITE_SDDP_REQUEST;
    const FIELDS: usize = 3;
    const MAX_LEN: usize = SddpRequestBody::MAX_LEN + 1024;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.id_c).uint(self.t).bytes(&self.sealed);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SddpRequest {
            id_c: d.field()?,
            t: d.uint()?,
            sealed: d
                .bytes("sealed SDDP request", sym::max_mac_len::<SddpRequestBody>())?
                .to_vec(),
        })
    }
}

/// Step 2's body, vendor to client, sealed under `K_t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SddpReply {
    /// The client's nonce from the request.
    pub n_c: Nonce,
    /// The data, at most [`MAX_DATA_LEN`] bytes.
    pub data: Vec<u8>,
}

impl Message for SddpReply {
    const TAG: Tag = tags::LITE_SDDP_REPLY;
    const FIELDS: usize = 2;
    const MAX_LEN: usize = MAX_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.n_c).bytes(&self.data);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SddpReply {
            n_c: d.field()?,
            data: d.bytes("data", MAX_DATA_LEN)?.to_vec(),
        })
    }
}

/// Step 1, client side: a request for `request` to vendor `id_v` under the
/// session key of `now`'s unit at granularity `g`. Returns the state
/// awaiting the reply and the request's bytes. A request over
/// [`MAX_REQUEST_LEN`] is [`Error::ApiMisuse`].
pub fn request(
    rng: &mut impl Rng,
    key: &VendorKey,
    id_c: ClientId,
    id_v: VendorId,
    now: Timestamp,
    g: Granularity,
    request: &[u8],
) -> Result<(AwaitReply, Vec<u8>)> {
    if request.len() > MAX_REQUEST_LEN {
        return Err(Error::ApiMisuse("SDDP request over MAX_REQUEST_LEN"));
    }
    let t = time_unit(now, g);
    let k_t = session_key(key, t);
    let n_c: Nonce = random_bytes(rng);
    let sealed = sym::seal_mac(
        k_t.k_enc(),
        k_t.k_mac(),
        rng,
        &SddpRequestBody {
            id_c: id_c.clone(),
            id_v,
            n_c,
            request: request.to_vec(),
        },
    );
    let bytes = agora_core::wire::encode(&SddpRequest { id_c, t, sealed });
    Ok((AwaitReply { k_t, n_c }, bytes))
}

/// The client after step 1, awaiting the reply.
#[derive(Debug)]
pub struct AwaitReply {
    k_t: SessionKey,
    n_c: Nonce,
}

impl AwaitReply {
    /// Step 2, client side: opens the reply under `K_t` ([`Error::Crypto`]
    /// if it does not open) and checks it echoes `N_C`
    /// ([`Error::PeerMisbehaved`] otherwise). Returns the data; on refusal,
    /// this state.
    #[allow(clippy::result_large_err)] // the Err gives the state back on purpose
    pub fn on_reply(self, bytes: &[u8]) -> Result<Vec<u8>, Rejected<Self>> {
        match open_reply(&self.k_t, &self.n_c, bytes) {
            Ok(data) => Ok(data),
            Err(e) => Err(Rejected::new(self, e)),
        }
    }
}

fn open_reply(k_t: &SessionKey, n_c: &Nonce, bytes: &[u8]) -> Result<Vec<u8>> {
    let r: SddpReply = sym::open_mac(bytes, k_t.k_enc(), k_t.k_mac())?;
    if !ct_eq(&r.n_c, n_c) {
        return Err(Error::PeerMisbehaved("SDDP reply answers another request"));
    }
    Ok(r.data)
}

/// The client a request is from, read from its clear part: what the vendor
/// finds the [`ClientRecord`] by.
pub fn request_client(bytes: &[u8]) -> Result<ClientId> {
    Ok(agora_core::wire::decode::<SddpRequest>(bytes)?.id_c)
}

/// The vendor's clock and policy for session keys: its time, the unit
/// length agreed with clients and the window it accepts either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// The vendor's clock.
    pub now: Timestamp,
    /// The length of a unit of time.
    pub granularity: Granularity,
    /// Units accepted either side of the current one
    /// (at most [`crate::session::MAX_WINDOW_UNITS`]).
    pub window_units: u32,
}

impl SessionPolicy {
    /// The first second at which unit `t` is no longer accepted: the end of
    /// unit `t + window`. A nonce received under `t` need not be remembered
    /// longer.
    pub(crate) fn unit_expiry(&self, t: u64) -> Timestamp {
        let end_unit = t
            .saturating_add(u64::from(self.window_units))
            .saturating_add(1);
        Timestamp(end_unit.saturating_mul(self.granularity.secs()))
    }
}

/// The key of `(id_V, id_C, N_C)` in the replay cache: SHA-256 over their
/// length-prefixed bytes (the cache keys are 32 bytes; the ids are up to
/// 255). `label` separates the protocols.
pub(crate) fn replay_key(label: &[u8], id_v: &VendorId, id_c: &ClientId, n: &[u8]) -> [u8; 32] {
    let mut m = Vec::with_capacity(label.len() + 2 + 2 * 255 + n.len());
    m.extend_from_slice(label);
    for id in [id_v.as_bytes(), id_c.as_bytes()] {
        // Ids are 1 to 255 bytes (crate::ids).
        m.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        m.extend_from_slice(id);
    }
    m.extend_from_slice(n);
    sha256(&m)
}

/// A request the vendor accepted: the request, and what it needs to answer
/// it ([`Self::reply`]). Holds `K_t`, wiped when dropped.
pub struct AcceptedRequest {
    request: Vec<u8>,
    n_c: Nonce,
    k_t: SessionKey,
}

impl fmt::Debug for AcceptedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedRequest")
            .field("request_len", &self.request.len())
            .field("k_t", &self.k_t)
            .finish_non_exhaustive()
    }
}

impl AcceptedRequest {
    /// The client's request.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Step 2: the reply carrying `data` (at most [`MAX_DATA_LEN`] bytes,
    /// else [`Error::ApiMisuse`]), sealed under `K_t`.
    pub fn reply(self, rng: &mut impl Rng, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() > MAX_DATA_LEN {
            return Err(Error::ApiMisuse("SDDP reply data over MAX_DATA_LEN"));
        }
        Ok(sym::seal_mac(
            self.k_t.k_enc(),
            self.k_t.k_mac(),
            rng,
            &SddpReply {
                n_c: self.n_c,
                data: data.to_vec(),
            },
        ))
    }
}

/// Step 1, vendor side: the request `bytes` from the client of `record`,
/// to vendor `id_v`. Checks, in order (the cheap and unauthenticated
/// first, the replay cache last so that forgeries cannot fill it):
///
/// 1. the request decodes and is from `record`'s client
///    ([`Error::ApiMisuse`]: the caller looked up the wrong record);
/// 2. its unit `t` is within the window ([`Error::Replayed`] if stale,
///    [`Error::Refused`] if in the future);
/// 3. it opens under `K_t` ([`Error::Crypto`]);
/// 4. it names this client and vendor ([`Error::PeerMisbehaved`]);
/// 5. the subscription is valid now ([`Error::Refused`]);
/// 6. `N_C` is new for this client and vendor in `replay` until the end of
///    the window ([`Error::Replayed`]).
pub fn accept_request(
    record: &ClientRecord,
    id_v: &VendorId,
    policy: SessionPolicy,
    replay: &dyn ReplayCache,
    bytes: &[u8],
) -> Result<AcceptedRequest> {
    let req: SddpRequest = agora_core::wire::decode(bytes)?;
    if req.id_c != record.id_c {
        return Err(Error::ApiMisuse(
            "SDDP request checked against another client's record",
        ));
    }
    accept_unit(req.t, policy.now, policy.granularity, policy.window_units)?;
    let k_t = session_key(&record.k, req.t);
    let body: SddpRequestBody = sym::open_mac(&req.sealed, k_t.k_enc(), k_t.k_mac())?;
    if body.id_c != record.id_c || &body.id_v != id_v {
        return Err(Error::PeerMisbehaved("SDDP request names other parties"));
    }
    record.subscription.check_valid_at(policy.now)?;
    let key = replay_key(REPLAY_SCOPE.as_bytes(), id_v, &record.id_c, &body.n_c);
    match replay.check_and_insert(REPLAY_SCOPE, &key, policy.unit_expiry(req.t), policy.now)? {
        Freshness::Fresh => {}
        Freshness::Replayed => return Err(Error::Replayed),
    }
    Ok(AcceptedRequest {
        request: body.request,
        n_c: body.n_c,
        k_t,
    })
}
