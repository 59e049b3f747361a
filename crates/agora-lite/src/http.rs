//! SDDP over HTTP: the binding the client proxy and the vendor's tower
//! layer speak. The paper (section 6) says a proxy should authenticate HTTP
//! headers and never encrypt them, and encrypt bodies; ARCHITECTURE section
//! 6 has the MAC travel as an RFC 9421 HTTP Message Signature with
//! `hmac-sha256`, so that any RFC 9421 implementation holding the key can
//! check it (the tests check ours with an independent Python one).
//!
//! One request is SDDP's two steps ([`crate::sddp`]) with the same fields,
//! laid out as HTTP:
//!
//! ```text
//! 1. C -> V  GET /quotes?symbol=ACME                 (method, path, query: clear)
//!            Host: vendor.example                    (clear)
//!            Agora-Lite-Vendor: "vendor.example"     id_V (clear)
//!            Agora-Lite-Unit: 20523                  t (clear)
//!            Content-Encoding: agora-lite            (only with a body)
//!            Content-Digest: sha-256=:...:           of the sealed body (RFC 9530)
//!            Signature-Input: lite=("@method" "@authority" "@path" "@query"
//!                "agora-lite-vendor" "agora-lite-unit" "content-digest");
//!                created=...;keyid="alice@example.org";nonce="<N_C>";
//!                alg="hmac-sha256";tag="agora-lite-sddp"
//!            Signature: lite=:HMAC(K_sig, signature base):
//!            body: AEAD(K_body, N_C, request body)
//! 2. V -> C  200, Content-Digest, Content-Encoding (with a body),
//!            Signature-Input: lite=("@status" "content-digest" ...);created=...;
//!                keyid="vendor.example";nonce="<N_C>";alg=...;tag="agora-lite-sddp-reply"
//!            Signature: lite=:HMAC(K_sig, signature base):
//!            body: AEAD(K_body, N_C, data)
//! ```
//!
//! `keyid` is `id_C` in the request (the vendor finds `K` by it) and `id_V`
//! in the reply; `nonce` is `N_C` (16 bytes, base64url without padding) in
//! both, so the reply is bound to its request. The keys are expanded from
//! the session key `K_t` ([`session_key`]): `K_sig = HKDF-Expand(K_t,
//! "agora/lite/http/sig", 32)`, `K_body = HKDF-Expand(K_t,
//! "agora/lite/http/body", 32)`, apart from the `K_enc` and `K_mac` that
//! the CBOR messages use. A body is `nonce (12) ‖ ChaCha20-Poly1305(K_body,
//! nonce, aad, body)` with `aad = "agora/lite/http/request" ‖ N_C` or
//! `".../reply" ‖ N_C`, and an empty body stays empty (its digest is still
//! covered, so nothing can be added to it).
//!
//! What a signature must cover: the request's `@method`, `@authority`,
//! `@path`, `@query`, `agora-lite-vendor`, `agora-lite-unit` and
//! `content-digest`, and the reply's `@status` and `content-digest`; both
//! also `content-type` and `content-encoding` whenever the message has
//! them (headers the recipient acts on cannot travel unauthenticated). A
//! signature may cover more fields; it may not cover components with
//! parameters (`;req`, `;sf`, `;bs`, `;key`, `@query-param`): this binding
//! has no use for them and refuses them rather than half-support them.
//! Ids must be printable ASCII here (RFC 9421 signature bases are ASCII).
//!
//! The signature bases are built here, over `sfv` (RFC 9651 structured
//! fields), rather than with an RFC 9421 crate: httpsig 0.0.24, the one
//! that offers `hmac-sha256`, rebuilds `@signature-params` in its own
//! parameter order instead of as received (so it cannot verify a signer
//! that orders them otherwise: the interop test with the Python
//! implementation failed on exactly that) and reads the system clock. This
//! binding needs six derived components and plain fields, about sixty lines.
//!
//! The vendor's checks run in SDDP's order ([`accept_request`]): the cheap
//! and unauthenticated first, the replay cache last so that forgeries
//! cannot fill it.

use crate::ids::{ClientId, VendorId};
use crate::janus::{expand32, VendorKey};
use crate::sddp::{replay_key, SessionPolicy, MAX_DATA_LEN, MAX_REQUEST_LEN};
use crate::session::{accept_unit, session_key, time_unit, Granularity, SessionKey};
use crate::skep::ClientRecord;
use crate::wire::{Nonce, NONCE_LEN};
use agora_core::crypto::{
    ct_eq, random_bytes, sha256, AeadAlg, AeadKey, MacKey, Rng, Secret,
    NONCE_LEN as AEAD_NONCE_LEN, TAG_LEN,
};
use agora_core::ports::replay::{Freshness, ReplayCache};
use agora_core::{DecodeError, Error, Result, Timestamp};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::{CONTENT_ENCODING, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use sfv::{BareItem, DictSerializer, Dictionary, Integer, KeyRef, ListEntry, Parser, StringRef};
use std::fmt;

/// The label of agora's signature in `Signature` and `Signature-Input`.
pub const LABEL: &str = "lite";
/// The `alg` parameter: RFC 9421 section 3.3.3.
pub const ALG: &str = "hmac-sha256";
/// The `tag` of a request's signature.
pub const REQUEST_TAG: &str = "agora-lite-sddp";
/// The `tag` of a reply's signature.
pub const REPLY_TAG: &str = "agora-lite-sddp-reply";
/// The content coding of a sealed body.
pub const CODING: &str = "agora-lite";
/// The replay cache scope of requests over HTTP.
pub const REPLAY_SCOPE: &str = "agora/lite/sddp-http";

/// `Agora-Lite-Vendor`: `id_V`, as a structured-field string.
pub const VENDOR_HEADER: HeaderName = HeaderName::from_static("agora-lite-vendor");
/// `Agora-Lite-Unit`: `t`, as a structured-field integer.
pub const UNIT_HEADER: HeaderName = HeaderName::from_static("agora-lite-unit");
/// `Content-Digest` (RFC 9530).
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// `Signature` (RFC 9421).
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");
/// `Signature-Input` (RFC 9421).
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");

const SIG_INFO: &[u8] = b"agora/lite/http/sig";
const BODY_INFO: &[u8] = b"agora/lite/http/body";
const REQUEST_AAD: &[u8] = b"agora/lite/http/request";
const REPLY_AAD: &[u8] = b"agora/lite/http/reply";

/// The longest `Signature` or `Signature-Input` value read, in bytes.
const MAX_SIGNATURE_FIELD: usize = 4096;
/// The most components a signature may cover.
const MAX_COMPONENTS: usize = 32;

/// The components a request's signature must cover.
pub const REQUEST_COVERS: [&str; 7] = [
    "@method",
    "@authority",
    "@path",
    "@query",
    "agora-lite-vendor",
    "agora-lite-unit",
    "content-digest",
];
/// The components a reply's signature must cover.
pub const REPLY_COVERS: [&str; 2] = ["@status", "content-digest"];
/// Fields that must be covered whenever a message has them.
const COVERED_IF_PRESENT: [&str; 2] = ["content-type", "content-encoding"];

/// The keys of one unit of time, expanded from `K_t`: the signature's MAC
/// key and the bodies' AEAD key. Wiped when dropped.
struct HttpKeys {
    sig: MacKey,
    body: AeadKey,
}

impl HttpKeys {
    fn of(k_t: &SessionKey) -> HttpKeys {
        let k = k_t.k().expose();
        HttpKeys {
            sig: MacKey::new(expand32(k, SIG_INFO)),
            body: AeadKey::new(
                AeadAlg::ChaCha20Poly1305,
                &Secret::new(expand32(k, BODY_INFO)),
            ),
        }
    }

    fn seal(&self, rng: &mut impl Rng, aad_label: &[u8], n_c: &Nonce, body: &[u8]) -> Vec<u8> {
        if body.is_empty() {
            return Vec::new();
        }
        let nonce: [u8; AEAD_NONCE_LEN] = random_bytes(rng);
        let mut out = Vec::with_capacity(AEAD_NONCE_LEN + body.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&self.body.seal(&nonce, &aad(aad_label, n_c), body));
        out
    }

    fn open(&self, aad_label: &[u8], n_c: &Nonce, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.is_empty() {
            return Ok(Vec::new());
        }
        if sealed.len() < AEAD_NONCE_LEN + TAG_LEN {
            return Err(DecodeError::Invalid("sealed body shorter than its nonce and tag").into());
        }
        let (nonce, ct) = sealed.split_at(AEAD_NONCE_LEN);
        let nonce: [u8; AEAD_NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| DecodeError::Invalid("sealed body nonce"))?;
        self.body.open(&nonce, &aad(aad_label, n_c), ct)
    }
}

/// `K_sig` of unit `t`: the `hmac-sha256` key of the signatures of
/// client `key`'s requests and their replies in that unit. What an
/// independent RFC 9421 implementation needs to check them (the client
/// and the vendor both have it; no one else does).
pub fn signature_key(key: &VendorKey, t: u64) -> MacKey {
    HttpKeys::of(&session_key(key, t)).sig
}

fn aad(label: &[u8], n_c: &Nonce) -> Vec<u8> {
    let mut a = Vec::with_capacity(label.len() + NONCE_LEN);
    a.extend_from_slice(label);
    a.extend_from_slice(n_c);
    a
}

/// The `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(sha256(body)))
}

/// Checks that `headers` carry exactly one `Content-Digest` whose `sha-256`
/// member is the digest of `body` ([`Error::Crypto`] if not: the body was
/// changed). Other members (other algorithms) are ignored, as RFC 9530
/// allows; a digest without `sha-256` is refused.
fn check_content_digest(headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let value = one_header(headers, &CONTENT_DIGEST)?
        .ok_or(Error::Decode(DecodeError::Invalid("no Content-Digest")))?;
    let dict = sfv::Parser::new(value)
        .parse::<sfv::Dictionary>()
        .map_err(|_| DecodeError::Invalid("Content-Digest is not a structured dictionary"))?;
    let want = sha256(body);
    match dict.get("sha-256") {
        Some(sfv::ListEntry::Item(sfv::Item {
            bare_item: sfv::BareItem::ByteSequence(got),
            ..
        })) => {
            if ct_eq(got, &want) {
                Ok(())
            } else {
                Err(Error::Crypto)
            }
        }
        _ => Err(DecodeError::Invalid("Content-Digest has no sha-256 byte sequence").into()),
    }
}

/// The one value of header `name` as text, `None` if absent. Refuses a
/// repeated header or a value that is not visible ASCII.
fn one_header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DecodeError::Invalid("a lite header is repeated").into());
    }
    let s = first
        .to_str()
        .map_err(|_| DecodeError::Invalid("a lite header is not ASCII"))?;
    Ok(Some(s))
}

/// An sf-string of `s` (RFC 9651 section 3.3.3), serialised by `sfv`:
/// printable ASCII only, `"` and `\` escaped. Refuses other characters.
fn sf_string(s: &str, what: &'static str) -> Result<String> {
    let s = StringRef::from_str(s)
        .map_err(|_| Error::Refused(format!("{what} is not printable ASCII")))?;
    Ok(sfv::ItemSerializer::new().bare_item(s).finish())
}

fn parse_sf_string(value: &str, what: &'static str) -> Result<String> {
    match sfv::Parser::new(value).parse::<sfv::Item>() {
        Ok(sfv::Item {
            bare_item: sfv::BareItem::String(s),
            params,
        }) if params.is_empty() => Ok(s.as_str().to_owned()),
        _ => Err(DecodeError::Invalid(what).into()),
    }
}

fn nonce_param(n_c: &Nonce) -> String {
    URL_SAFE_NO_PAD.encode(n_c)
}

fn parse_nonce_param(s: &str) -> Result<Nonce> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| DecodeError::Invalid("signature nonce is not base64url"))?;
    bytes
        .try_into()
        .map_err(|_| DecodeError::Invalid("signature nonce is not 16 bytes").into())
}

/// What a signature can cover of a message: its derived components and its
/// header fields.
struct View<'a> {
    method: Option<&'a Method>,
    authority: Option<String>,
    uri: Option<&'a Uri>,
    status: Option<StatusCode>,
    headers: &'a HeaderMap,
}

impl<'a> View<'a> {
    fn of_request<B>(req: &'a Request<B>) -> Result<View<'a>> {
        Ok(View {
            method: Some(req.method()),
            authority: Some(authority_of(req)?),
            uri: Some(req.uri()),
            status: None,
            headers: req.headers(),
        })
    }

    fn of_response<B>(resp: &'a Response<B>) -> View<'a> {
        View {
            method: None,
            authority: None,
            uri: None,
            status: Some(resp.status()),
            headers: resp.headers(),
        }
    }

    /// The value of component `name` (RFC 9421 section 2.1 for fields,
    /// 2.2 for derived components).
    fn value(&self, name: &str) -> Result<String> {
        let missing = || {
            Error::Refused(format!(
                "signature covers {name}, which the message has not"
            ))
        };
        match name {
            "@method" => Ok(self.method.ok_or_else(missing)?.as_str().to_owned()),
            "@authority" => self.authority.clone().ok_or_else(missing),
            "@path" => {
                let p = self.uri.ok_or_else(missing)?.path();
                Ok(if p.is_empty() {
                    "/".to_owned()
                } else {
                    p.to_owned()
                })
            }
            "@query" => Ok(format!(
                "?{}",
                self.uri.ok_or_else(missing)?.query().unwrap_or("")
            )),
            "@status" => Ok(self.status.ok_or_else(missing)?.as_u16().to_string()),
            _ if name.starts_with('@') => Err(Error::Refused(format!(
                "signature covers {name}, which this binding does not use"
            ))),
            _ => {
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| DecodeError::Invalid("covered field name"))?;
                let mut values = Vec::new();
                for v in self.headers.get_all(&header) {
                    let v = v
                        .to_str()
                        .map_err(|_| DecodeError::Invalid("a covered field is not ASCII"))?;
                    values.push(v.trim());
                }
                if values.is_empty() {
                    return Err(missing());
                }
                Ok(values.join(", "))
            }
        }
    }

    /// The signature base (RFC 9421 section 2.5) of a signature covering
    /// `components`, whose `@signature-params` serialise as `params`.
    fn base(&self, components: &[String], params: &str) -> Result<Vec<u8>> {
        let mut base = String::new();
        for c in components {
            let v = self.value(c)?;
            base.push_str(&format!("\"{c}\": {v}\n"));
        }
        base.push_str(&format!("\"@signature-params\": {params}"));
        Ok(base.into_bytes())
    }
}

/// The parameters of a signature that this binding reads.
struct SigParams {
    created: Option<i64>,
    keyid: Option<String>,
    nonce: Option<String>,
    alg: Option<String>,
    tag: Option<String>,
}

/// A signature as received: the components it covers, its
/// `@signature-params` serialised (RFC 8941 canonical form, with the
/// parameters in the order they came), its parameters and its MAC.
struct Received {
    components: Vec<String>,
    params_text: String,
    params: SigParams,
    mac: Vec<u8>,
}

/// Serialises `Signature-Input`'s member [`LABEL`]: an inner list of the
/// component names with `params`, in that order. Returns the field value
/// (`lite=(...)...`) and the `@signature-params` value (the part after
/// `lite=`).
fn serialize_input<'b>(
    components: impl IntoIterator<Item = &'b str>,
    params: impl IntoIterator<Item = (&'b KeyRef, BareItem)>,
) -> Result<(String, String)> {
    let mut ser = DictSerializer::new();
    {
        let mut list = ser.inner_list(label_key());
        for c in components {
            let c = StringRef::from_str(c).map_err(|_| Error::ApiMisuse("component name"))?;
            let _ = list.bare_item(c);
        }
        let mut p = list.finish();
        for (k, v) in params {
            p = p.parameter(k, &v);
        }
    }
    let input = ser
        .finish()
        .ok_or(Error::ApiMisuse("empty signature input"))?;
    let params_text = input
        .strip_prefix(&format!("{LABEL}="))
        .ok_or(Error::ApiMisuse("signature input label"))?
        .to_owned();
    Ok((input, params_text))
}

fn label_key() -> &'static KeyRef {
    KeyRef::constant(LABEL)
}

/// The `@authority` of a request: its URI's authority (absolute form, as a
/// proxy sends it to the origin's address) without the scheme's default
/// port, else its `Host` header, lowercased (RFC 9421 section 2.2.3).
fn authority_of<B>(req: &Request<B>) -> Result<String> {
    let uri = req.uri();
    if let Some(a) = uri.authority() {
        let default_port = match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let a = match (a.port_u16(), default_port) {
            (Some(p), Some(d)) if p == d => a.host(),
            _ => a.as_str(),
        };
        return Ok(a.to_ascii_lowercase());
    }
    let host = one_header(req.headers(), &HOST)?.ok_or(Error::Decode(DecodeError::Invalid(
        "request has no authority",
    )))?;
    Ok(host.to_ascii_lowercase())
}

/// The covered components for a message with `headers`: `required`, then
/// those of [`COVERED_IF_PRESENT`] it has.
fn covered(required: &[&str], headers: &HeaderMap) -> Vec<String> {
    required
        .iter()
        .copied()
        .chain(
            COVERED_IF_PRESENT
                .iter()
                .copied()
                .filter(|h| headers.contains_key(*h)),
        )
        .map(str::to_owned)
        .collect()
}

/// Signs `view`'s message: the `Signature-Input` and `Signature` values
/// (label [`LABEL`]) to set on it.
#[allow(clippy::too_many_arguments)] // each is one signature parameter
fn sign(
    view: &View<'_>,
    components: &[String],
    created: Timestamp,
    keyid: &str,
    n_c: &Nonce,
    tag: &str,
    key: &MacKey,
) -> Result<[HeaderValue; 2]> {
    let created =
        Integer::try_from(created.0).map_err(|_| Error::ApiMisuse("created out of range"))?;
    let text = |s: &str, what: &'static str| -> Result<BareItem> {
        Ok(BareItem::String(
            sfv::String::from_string(s.to_owned())
                .map_err(|_| Error::Refused(format!("{what} is not printable ASCII")))?,
        ))
    };
    let params = [
        (KeyRef::constant("created"), BareItem::Integer(created)),
        (KeyRef::constant("keyid"), text(keyid, "an id")?),
        (KeyRef::constant("nonce"), text(&nonce_param(n_c), "nonce")?),
        (KeyRef::constant("alg"), text(ALG, "alg")?),
        (KeyRef::constant("tag"), text(tag, "tag")?),
    ];
    let (input, params_text) = serialize_input(components.iter().map(String::as_str), params)?;
    let base = view.base(components, &params_text)?;
    let sig = format!("{LABEL}=:{}:", STANDARD.encode(key.tag(&base)));
    Ok([header_value(&input)?, header_value(&sig)?])
}

/// Sets the values [`sign`] made.
fn set_signature(headers: &mut HeaderMap, [input, sig]: [HeaderValue; 2]) {
    headers.insert(SIGNATURE_INPUT, input);
    headers.insert(SIGNATURE, sig);
}

fn header_value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| Error::ApiMisuse("a lite header is not a valid value"))
}

/// The signature labelled [`LABEL`] in `headers`. Other labels are ignored
/// (a message may carry others' signatures). Covered components must be
/// plain lowercase names: components with parameters are refused.
fn read_signature(headers: &HeaderMap) -> Result<Received> {
    let sig = one_header(headers, &SIGNATURE)?
        .ok_or(Error::Decode(DecodeError::Invalid("no Signature header")))?;
    let input = one_header(headers, &SIGNATURE_INPUT)?.ok_or(Error::Decode(
        DecodeError::Invalid("no Signature-Input header"),
    ))?;
    if sig.len() > MAX_SIGNATURE_FIELD || input.len() > MAX_SIGNATURE_FIELD {
        return Err(DecodeError::TooLarge {
            what: "signature header",
            limit: MAX_SIGNATURE_FIELD,
        }
        .into());
    }
    let sigs = Parser::new(sig)
        .parse::<Dictionary>()
        .map_err(|_| DecodeError::Invalid("Signature is not a structured dictionary"))?;
    let inputs = Parser::new(input)
        .parse::<Dictionary>()
        .map_err(|_| DecodeError::Invalid("Signature-Input is not a structured dictionary"))?;
    let mac = match sigs.get(LABEL) {
        Some(ListEntry::Item(sfv::Item {
            bare_item: BareItem::ByteSequence(b),
            ..
        })) => b.clone(),
        _ => return Err(DecodeError::Invalid("no signature labelled lite").into()),
    };
    let Some(ListEntry::InnerList(list)) = inputs.get(LABEL) else {
        return Err(DecodeError::Invalid("no signature input labelled lite").into());
    };
    if list.items.len() > MAX_COMPONENTS {
        return Err(DecodeError::TooLarge {
            what: "covered components",
            limit: MAX_COMPONENTS,
        }
        .into());
    }
    let mut components: Vec<String> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let BareItem::String(name) = &item.bare_item else {
            return Err(DecodeError::Invalid("a covered component is not a string").into());
        };
        let name = name.as_str();
        if !item.params.is_empty() {
            return Err(Error::Refused(format!(
                "signature covers {name} with parameters, which this binding does not use"
            )));
        }
        if name.is_empty() || name != name.to_ascii_lowercase() || name == "@signature-params" {
            return Err(DecodeError::Invalid("a covered component name").into());
        }
        if components.iter().any(|c| c == name) {
            return Err(DecodeError::Invalid("signature covers a component twice").into());
        }
        components.push(name.to_owned());
    }
    let mut params = SigParams {
        created: None,
        keyid: None,
        nonce: None,
        alg: None,
        tag: None,
    };
    for (k, v) in &list.params {
        let as_text = || -> Result<String> {
            match v {
                BareItem::String(s) => Ok(s.as_str().to_owned()),
                _ => Err(DecodeError::Invalid("a signature parameter is not a string").into()),
            }
        };
        match k.as_str() {
            "created" => match v {
                BareItem::Integer(i) => params.created = Some(i64::from(*i)),
                _ => return Err(DecodeError::Invalid("created is not an integer").into()),
            },
            "keyid" => params.keyid = Some(as_text()?),
            "nonce" => params.nonce = Some(as_text()?),
            "alg" => params.alg = Some(as_text()?),
            "tag" => params.tag = Some(as_text()?),
            // expires and extension parameters are covered by the MAC
            // through @signature-params; this binding does not act on them.
            _ => {}
        }
    }
    let (_, params_text) = serialize_input(
        components.iter().map(String::as_str),
        list.params.iter().map(|(k, v)| (k.as_ref(), v.clone())),
    )?;
    Ok(Received {
        components,
        params_text,
        params,
        mac,
    })
}

/// Checks a received signature's parameters: `alg` (if given) is
/// [`ALG`], `tag` is `tag`, `created` and `nonce` are present, it covers
/// every component of `required` and every field of [`COVERED_IF_PRESENT`]
/// the message has. Returns the nonce and keyid.
fn check_params(
    r: &Received,
    tag: &str,
    required: &[&str],
    headers: &HeaderMap,
) -> Result<(Nonce, String)> {
    let p = &r.params;
    if p.alg.as_deref().is_some_and(|a| a != ALG) {
        return Err(Error::Refused(
            "signature algorithm is not hmac-sha256".into(),
        ));
    }
    if p.tag.as_deref() != Some(tag) {
        return Err(Error::PeerMisbehaved("signature tag is not this binding's"));
    }
    if p.created.is_none() {
        return Err(DecodeError::Invalid("signature has no created parameter").into());
    }
    let n_c = parse_nonce_param(
        p.nonce
            .as_deref()
            .ok_or(Error::Decode(DecodeError::Invalid(
                "signature has no nonce",
            )))?,
    )?;
    let keyid = p.keyid.clone().ok_or(Error::Decode(DecodeError::Invalid(
        "signature has no keyid",
    )))?;
    let covers = |c: &str| r.components.iter().any(|n| n == c);
    for c in required {
        if !covers(c) {
            return Err(Error::Refused(format!("signature does not cover {c}")));
        }
    }
    for c in COVERED_IF_PRESENT {
        if headers.contains_key(c) && !covers(c) {
            return Err(Error::Refused(format!("signature does not cover {c}")));
        }
    }
    Ok((n_c, keyid))
}

/// Removes what the binding added, once it is checked.
fn strip(headers: &mut HeaderMap) {
    for h in [SIGNATURE, SIGNATURE_INPUT, CONTENT_DIGEST] {
        headers.remove(h);
    }
    if headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == CODING.as_bytes())
    {
        headers.remove(CONTENT_ENCODING);
    }
}

/// Checks `Content-Encoding` against the body: a non-empty body must be
/// sealed (`Content-Encoding: agora-lite`, nothing else), an empty one
/// carries no coding.
fn check_coding(headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let coding = one_header(headers, &CONTENT_ENCODING)?;
    match (body.is_empty(), coding) {
        (true, None) => Ok(()),
        (false, Some(c)) if c.trim() == CODING => Ok(()),
        (true, Some(_)) => Err(DecodeError::Invalid("content coding on an empty body").into()),
        (false, _) => Err(DecodeError::Invalid("body is not agora-lite sealed").into()),
    }
}

// ---- client (the proxy) ------------------------------------------------

/// Step 1, client side: turns `req` (absolute URI, plain body) into the
/// SDDP request to vendor `id_v` under the session key of `now`'s unit:
/// the body sealed, `Agora-Lite-*`, `Content-Digest` and the signature
/// added. Returns the state awaiting the reply. Refuses
/// ([`Error::ApiMisuse`]) a body over [`MAX_REQUEST_LEN`], a relative URI,
/// and ids that are not printable ASCII ([`Error::Refused`]).
pub fn seal_request(
    rng: &mut impl Rng,
    key: &VendorKey,
    id_c: &ClientId,
    id_v: &VendorId,
    now: Timestamp,
    g: Granularity,
    req: &mut Request<Vec<u8>>,
) -> Result<AwaitReply> {
    if req.body().len() > MAX_REQUEST_LEN {
        return Err(Error::ApiMisuse("SDDP request body over MAX_REQUEST_LEN"));
    }
    if req.uri().authority().is_none() {
        return Err(Error::ApiMisuse("an SDDP request needs an absolute URI"));
    }
    let t = time_unit(now, g);
    let k_t = session_key(key, t);
    let keys = HttpKeys::of(&k_t);
    let n_c: Nonce = random_bytes(rng);

    let sealed = keys.seal(rng, REQUEST_AAD, &n_c, req.body());
    let headers = req.headers_mut();
    strip(headers);
    headers.remove(CONTENT_ENCODING);
    // The length is the sealed body's; the HTTP client sets it.
    headers.remove(http::header::CONTENT_LENGTH);
    if !sealed.is_empty() {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(CODING));
    }
    headers.insert(
        VENDOR_HEADER,
        header_value(&sf_string(id_v.as_str(), "vendor id")?)?,
    );
    headers.insert(UNIT_HEADER, HeaderValue::from(t));
    headers.insert(CONTENT_DIGEST, header_value(&content_digest(&sealed))?);
    *req.body_mut() = sealed;

    let comps = covered(&REQUEST_COVERS, req.headers());
    let view = View::of_request(req)?;
    let signature = sign(
        &view,
        &comps,
        now,
        id_c.as_str(),
        &n_c,
        REQUEST_TAG,
        &keys.sig,
    )?;
    set_signature(req.headers_mut(), signature);
    Ok(AwaitReply {
        keys,
        n_c,
        id_v: id_v.clone(),
    })
}

/// The client after step 1, awaiting the vendor's reply. Holds the unit's
/// keys, wiped when dropped.
pub struct AwaitReply {
    keys: HttpKeys,
    n_c: Nonce,
    id_v: VendorId,
}

impl fmt::Debug for AwaitReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitReply")
            .field("id_v", &self.id_v)
            .finish_non_exhaustive()
    }
}

impl AwaitReply {
    /// Step 2, client side: checks `resp`'s signature (tag, `keyid = id_V`,
    /// `nonce = N_C`, coverage, MAC: [`Error::Crypto`] if it fails), its
    /// digest and coding, then opens the body and removes the binding's
    /// headers, leaving the vendor's plain reply in `resp`. A reply the
    /// vendor did not sign (a refusal before it knew the client, say) is
    /// refused with a decode error: the caller reports its status.
    pub fn open_response(&self, resp: &mut Response<Vec<u8>>) -> Result<()> {
        let received = read_signature(resp.headers())?;
        let (n_c, keyid) = check_params(&received, REPLY_TAG, &REPLY_COVERS, resp.headers())?;
        let view = View::of_response(resp);
        let base = view.base(&received.components, &received.params_text)?;
        self.keys.sig.verify(&base, &received.mac)?;
        if !ct_eq(&n_c, &self.n_c) {
            return Err(Error::PeerMisbehaved("reply answers another request"));
        }
        if keyid != self.id_v.as_str() {
            return Err(Error::PeerMisbehaved(
                "reply is signed in another vendor's name",
            ));
        }
        check_content_digest(resp.headers(), resp.body())?;
        check_coding(resp.headers(), resp.body())?;
        let plain = self.keys.open(REPLY_AAD, &self.n_c, resp.body())?;
        if plain.len() > MAX_DATA_LEN {
            return Err(DecodeError::TooLarge {
                what: "reply body",
                limit: MAX_DATA_LEN,
            }
            .into());
        }
        strip(resp.headers_mut());
        *resp.body_mut() = plain;
        Ok(())
    }
}

// ---- vendor (the tower layer) ----------------------------------------

/// The client and unit a request claims, read from its clear headers
/// before anything is checked: what the vendor finds the
/// [`ClientRecord`] by. Nothing here is authenticated yet.
pub fn request_client(headers: &HeaderMap) -> Result<ClientId> {
    let keyid =
        read_signature(headers)?
            .params
            .keyid
            .ok_or(Error::Decode(DecodeError::Invalid(
                "signature has no keyid",
            )))?;
    ClientId::new(&keyid)
}

/// Whether `headers` carry an agora-lite signature at all: a request
/// without one is not SDDP (the layer refuses it as unauthenticated).
pub fn is_lite_request(headers: &HeaderMap) -> bool {
    headers.contains_key(&SIGNATURE_INPUT) && headers.contains_key(&UNIT_HEADER)
}

/// A request the vendor accepted: `N_C` and the unit's keys, to seal the
/// reply with ([`Self::seal_response`]). Wiped when dropped.
pub struct Accepted {
    keys: HttpKeys,
    n_c: Nonce,
    id_c: ClientId,
    id_v: VendorId,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("id_c", &self.id_c)
            .field("id_v", &self.id_v)
            .finish_non_exhaustive()
    }
}

impl Accepted {
    /// The authenticated client.
    pub fn client(&self) -> &ClientId {
        &self.id_c
    }

    /// Step 2, vendor side: seals `resp`'s body (at most [`MAX_DATA_LEN`]
    /// bytes, else [`Error::ApiMisuse`]) and signs its status, digest and
    /// content headers, `now` as `created`.
    pub fn seal_response(
        &self,
        rng: &mut impl Rng,
        now: Timestamp,
        resp: &mut Response<Vec<u8>>,
    ) -> Result<()> {
        if resp.body().len() > MAX_DATA_LEN {
            return Err(Error::ApiMisuse("SDDP reply body over MAX_DATA_LEN"));
        }
        let sealed = self.keys.seal(rng, REPLY_AAD, &self.n_c, resp.body());
        let headers = resp.headers_mut();
        strip(headers);
        headers.remove(CONTENT_ENCODING);
        if !sealed.is_empty() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(CODING));
        }
        headers.insert(CONTENT_DIGEST, header_value(&content_digest(&sealed))?);
        // The length is the sealed body's; a layer above sets it again.
        headers.remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = sealed;
        let comps = covered(&REPLY_COVERS, resp.headers());
        let view = View::of_response(resp);
        let id_v = self.id_v.as_str();
        let signature = sign(
            &view,
            &comps,
            now,
            id_v,
            &self.n_c,
            REPLY_TAG,
            &self.keys.sig,
        )?;
        set_signature(resp.headers_mut(), signature);
        Ok(())
    }
}

/// Step 1, vendor side: the request `req` (origin form, as the vendor
/// receives it) from the client of `record`, to vendor `id_v`. Checks, in
/// order:
///
/// 1. the signature's headers parse and name `record`'s client
///    ([`Error::ApiMisuse`] if not: the caller looked up the wrong record);
///    its tag and coverage are this binding's ([`Error::Refused`] /
///    [`Error::PeerMisbehaved`]);
/// 2. the unit `t` is within the window ([`Error::Replayed`] if stale,
///    [`Error::Refused`] if in the future);
/// 3. the MAC verifies under `K_t` ([`Error::Crypto`]);
/// 4. `Agora-Lite-Vendor` names this vendor ([`Error::PeerMisbehaved`]);
/// 5. the body matches its digest ([`Error::Crypto`]) and its coding, and
///    opens under `K_t` ([`Error::Crypto`]);
/// 6. the subscription is valid now ([`Error::Refused`]);
/// 7. `N_C` is new for this client and vendor in `replay` until the end of
///    the window ([`Error::Replayed`]).
///
/// On success the request holds the plain body and none of the binding's
/// headers, ready for the vendor's service.
pub fn accept_request(
    record: &ClientRecord,
    id_v: &VendorId,
    policy: SessionPolicy,
    replay: &dyn ReplayCache,
    req: &mut Request<Vec<u8>>,
) -> Result<Accepted> {
    let received = read_signature(req.headers())?;
    let (n_c, keyid) = check_params(&received, REQUEST_TAG, &REQUEST_COVERS, req.headers())?;
    if keyid != record.id_c.as_str() {
        return Err(Error::ApiMisuse(
            "SDDP request checked against another client's record",
        ));
    }
    let t: u64 = one_header(req.headers(), &UNIT_HEADER)?
        .ok_or(Error::Decode(DecodeError::Invalid("no Agora-Lite-Unit")))?
        .trim()
        .parse()
        .map_err(|_| DecodeError::Invalid("Agora-Lite-Unit is not an integer"))?;
    accept_unit(t, policy.now, policy.granularity, policy.window_units)?;
    let keys = HttpKeys::of(&session_key(&record.k, t));
    let view = View::of_request(req)?;
    let base = view.base(&received.components, &received.params_text)?;
    keys.sig.verify(&base, &received.mac)?;
    let vendor = one_header(req.headers(), &VENDOR_HEADER)?
        .ok_or(Error::Decode(DecodeError::Invalid("no Agora-Lite-Vendor")))?;
    if parse_sf_string(vendor, "Agora-Lite-Vendor is not a string")? != id_v.as_str() {
        return Err(Error::PeerMisbehaved("SDDP request is for another vendor"));
    }
    check_content_digest(req.headers(), req.body())?;
    check_coding(req.headers(), req.body())?;
    let plain = keys.open(REQUEST_AAD, &n_c, req.body())?;
    if plain.len() > MAX_REQUEST_LEN {
        return Err(DecodeError::TooLarge {
            what: "request body",
            limit: MAX_REQUEST_LEN,
        }
        .into());
    }
    record.subscription.check_valid_at(policy.now)?;
    let key = replay_key(REPLAY_SCOPE.as_bytes(), id_v, &record.id_c, &n_c);
    match replay.check_and_insert(REPLAY_SCOPE, &key, policy.unit_expiry(t), policy.now)? {
        Freshness::Fresh => {}
        Freshness::Replayed => return Err(Error::Replayed),
    }
    strip(req.headers_mut());
    req.headers_mut().remove(UNIT_HEADER);
    req.headers_mut().remove(VENDOR_HEADER);
    *req.body_mut() = plain;
    Ok(Accepted {
        keys,
        n_c,
        id_c: record.id_c.clone(),
        id_v: id_v.clone(),
    })
}
