//! The protocol-endpoint layer: what every service's `POST /v1/<system>/<role>`
//! shares, so that a new system brings its roles and nothing else.
//!
//! - **The message**: an `application/cbor` body ([`crate::Cbor`]: bounded,
//!   typed), the pending step it continues (the [`STEP_HEADER`]), the time it
//!   arrived, and its registered tag, read before anything else is parsed
//!   ([`message_tag`]: an envelope's, a COSE payload's, a bare message's, or
//!   one the endpoint knows how to read, such as CPO's K_p channel).
//! - **Dispatch by tag**: an [`Endpoint`] matches on [`Inbound::tag`]; a tag
//!   it does not take is answered with [`unknown_message`]
//!   (`400 unknown-message`), the same words for every role.
//! - **Pending steps**: the node's bounded table ([`crate::PendingSteps`],
//!   `Core::pending`); a message that continues a step and does not name it
//!   gets [`Inbound::pending_step`]'s `400 missing-step`.
//! - **Trust reload**: [`Reloading`] holds the trust a role checks against
//!   (agencies and CRLs, CAs) and reloads it from its [`TrustSource`] when
//!   housekeeping asks, swapping it whole so steps in flight keep theirs.
//! - **The reply**: [`Outbound::Message`] is `application/cbor` with the
//!   pending step's id when the protocol goes on; [`Outbound::Response`] is
//!   any other response (a SPEED delivery stream). Errors are [`Problem`]s.

use crate::pending::{parse_id, Opening, StepId, STEP_HEADER};
use crate::{cbor_reply, Cbor, Core, Problem};
use agora_core::wire::{self, tags, Tag};
use agora_core::Timestamp;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Extension;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};

/// A protocol message as an endpoint receives it.
#[derive(Debug)]
pub struct Inbound {
    /// Its registered tag (checked before any other parsing).
    pub tag: Tag,
    /// The whole message.
    pub body: Bytes,
    /// The pending step it names, if any.
    pub step: Option<StepId>,
    /// The request's headers, for what a service adds (SPEED's payment order).
    pub headers: HeaderMap,
    /// When it arrived.
    pub now: Timestamp,
    /// The client's address, when it came over the network.
    pub client: Option<IpAddr>,
}

impl Inbound {
    /// A message for an in-process endpoint (no HTTP around it).
    pub fn local(tag: Tag, body: &[u8], step: Option<StepId>, now: Timestamp) -> Inbound {
        Inbound {
            tag,
            body: Bytes::copy_from_slice(body),
            step,
            headers: HeaderMap::new(),
            now,
            client: None,
        }
    }

    /// This message as the opening of a protocol run at `scope` (for
    /// [`crate::PendingSteps::open`]).
    pub fn opening(&self, scope: &'static str) -> Opening<'_> {
        Opening {
            scope,
            message: &self.body,
            client: self.client,
        }
    }

    /// The pending step this message continues: `400 missing-step` if it
    /// names none.
    pub fn pending_step(&self) -> Result<StepId, Problem> {
        self.step.ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "missing-step").with_detail(format!(
                "this message continues a pending step: name it in {STEP_HEADER}"
            ))
        })
    }
}

/// What an endpoint answers.
#[derive(Debug)]
pub enum Outbound {
    /// A protocol reply, `application/cbor`, naming the pending step when the
    /// protocol goes on.
    Message {
        /// The reply message.
        body: Vec<u8>,
        /// The step to name with the next message, if the protocol goes on.
        step: Option<StepId>,
    },
    /// Any other response (a delivery stream).
    Response(Response),
}

impl Outbound {
    /// A reply that ends the protocol run (or needs no pending step).
    pub fn done(body: Vec<u8>) -> Outbound {
        Outbound::Message { body, step: None }
    }

    /// A reply whose protocol goes on under pending step `step`.
    pub fn go_on(body: Vec<u8>, step: StepId) -> Outbound {
        Outbound::Message {
            body,
            step: Some(step),
        }
    }
}

impl IntoResponse for Outbound {
    fn into_response(self) -> Response {
        match self {
            Outbound::Message { body, step } => cbor_reply(body, step),
            Outbound::Response(r) => r,
        }
    }
}

/// A future an endpoint answers with.
pub type Answer = Pin<Box<dyn Future<Output = Result<Outbound, Problem>> + Send>>;

/// One protocol endpoint: a role (or the roles) behind one route.
pub trait Endpoint: Send + Sync + 'static {
    /// The tag of a message in a framing of this endpoint's own that
    /// [`message_tag`] does not read (CPO's K_p channel); `None` if it is
    /// not one.
    fn own_framing_tag(&self, _body: &[u8]) -> Option<Tag> {
        None
    }

    /// Handles one message. Blocking work (storage, signatures) goes to the
    /// blocking pool ([`crate::blocking`]); a step may instead run on the
    /// runtime when it only reads memory and awaits its commit.
    fn handle(self: Arc<Self>, core: Arc<Core>, m: Inbound) -> Answer;
}

/// The tag of a protocol message: an HPKE envelope's, a COSE_Sign1's
/// payload's, a bare message's, or one in the endpoint's own framing.
/// Nothing else is parsed: `400 decode` if it is none of these.
pub fn message_tag(
    body: &[u8],
    own_framing_tag: impl FnOnce(&[u8]) -> Option<Tag>,
) -> Result<Tag, Problem> {
    if let Ok(t) = wire::envelope::peek_tag(body) {
        return Ok(t);
    }
    if let Some(t) = own_framing_tag(body) {
        return Ok(t);
    }
    if let Ok(t) = wire::cose::peek_tag(body) {
        return Ok(t);
    }
    if let Ok(t) = wire::peek_tag(body) {
        return Ok(t);
    }
    Err(Problem::bad_request("not a protocol message"))
}

/// `400 unknown-message`: this endpoint does not take `tag`.
pub fn unknown_message(tag: Tag) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "unknown-message").with_detail(format!(
        "this role does not take {}",
        tags::lookup(tag).unwrap_or("unregistered messages")
    ))
}

/// The pending step a request names in its [`STEP_HEADER`], if any.
pub fn step_header(headers: &HeaderMap) -> Result<Option<StepId>, Problem> {
    match headers.get(STEP_HEADER) {
        None => Ok(None),
        Some(v) => {
            Ok(Some(parse_id(v.to_str().map_err(|_| {
                Problem::bad_request("the step id is not text")
            })?)?))
        }
    }
}

/// The `POST` route of `endpoint`: the body is taken as a bounded
/// [`Cbor`], the step header and the tag are read, and the endpoint handles
/// the message.
pub fn route<E: Endpoint, S: Clone + Send + Sync + 'static>(
    endpoint: Arc<E>,
    core: Arc<Core>,
) -> MethodRouter<S> {
    post(
        move |peer: Option<Extension<ConnectInfo<SocketAddr>>>,
              headers: HeaderMap,
              Cbor(body): Cbor| {
            let (endpoint, core) = (endpoint.clone(), core.clone());
            async move {
                let step = step_header(&headers)?;
                let tag = message_tag(&body, |b| endpoint.own_framing_tag(b))?;
                let m = Inbound {
                    tag,
                    body,
                    step,
                    headers,
                    now: Timestamp::now_from_system_clock(),
                    client: peer.map(|Extension(ConnectInfo(a))| a.ip()),
                };
                endpoint.handle(core, m).await
            }
        },
    )
}

/// Where a role's trust comes from: called at start and by housekeeping, so
/// that new CRLs (and agencies, CAs) take effect without a restart.
pub trait TrustSource<T>: Send + Sync {
    /// The trust as it is now.
    fn load(&self) -> Result<T, String>;
}

/// Trust a service checks against, reloaded whole from its source: steps in
/// flight keep the value they started with.
pub struct Reloading<T> {
    source: Box<dyn TrustSource<T>>,
    current: RwLock<Arc<T>>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// Loads the trust from `source` once.
    pub fn new(source: Box<dyn TrustSource<T>>) -> Result<Reloading<T>, String> {
        let first = source.load()?;
        Ok(Reloading {
            source,
            current: RwLock::new(Arc::new(first)),
        })
    }

    /// The trust now.
    pub fn current(&self) -> Arc<T> {
        // Only whole-Arc swaps happen under the write lock: a poisoned lock
        // still holds a complete value.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the trust again and makes it current; returns it.
    pub fn reload(&self) -> Result<Arc<T>, String> {
        let fresh = Arc::new(self.source.load()?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Plain;
    impl Endpoint for Plain {
        fn handle(self: Arc<Self>, _: Arc<Core>, m: Inbound) -> Answer {
            Box::pin(async move { Err(unknown_message(m.tag)) })
        }
    }

    proptest! {
        /// Whatever the bytes, reading their tag gives a tag or a `400`,
        /// never a panic.
        #[test]
        fn any_body_gets_a_tag_or_a_400(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            match message_tag(&body, |b| Plain.own_framing_tag(b)) {
                Ok(_) => {}
                Err(p) => prop_assert_eq!(p.status, StatusCode::BAD_REQUEST),
            }
        }
    }

    #[test]
    fn a_continued_step_must_be_named() {
        let m = Inbound::local(tags::TEST_PING, b"", None, Timestamp(0));
        let p = m.pending_step().expect_err("no step named");
        assert_eq!(
            (p.status, p.code),
            (StatusCode::BAD_REQUEST, "missing-step")
        );
        let m = Inbound::local(tags::TEST_PING, b"", Some([7; 16]), Timestamp(0));
        assert_eq!(m.pending_step().expect("named"), [7; 16]);
    }

    #[test]
    fn trust_is_swapped_whole_on_reload() {
        struct Counter(std::sync::atomic::AtomicU32);
        impl TrustSource<u32> for Arc<Counter> {
            fn load(&self) -> Result<u32, String> {
                Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
            }
        }
        let c = Arc::new(Counter(0.into()));
        let r = Reloading::new(Box::new(c.clone())).expect("loads");
        let held = r.current();
        assert_eq!(*r.reload().expect("reloads"), 1);
        assert_eq!((*held, *r.current()), (0, 1), "a held value is kept");
    }
}
