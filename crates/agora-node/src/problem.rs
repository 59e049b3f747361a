//! Errors on the wire: RFC 9457 `application/problem+json`.
//!
//! Every error the node answers is a [`Problem`] with a stable `code` (the
//! same codes as [`agora_core::Error::code`], plus the node's own), a short
//! title, and a detail only where it carries no cryptographic information: a
//! failed signature, MAC or AEAD check is reported as `crypto` and nothing
//! more, and storage failures are logged, not told.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The code of the problem a response carries, kept in the response's
/// extensions (never sent): what the node counts its refusals by and logs
/// (`crate::guard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

/// An HTTP error as RFC 9457 describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, short code (`decode`, `crypto`, `refused`, `overloaded`...).
    pub code: &'static str,
    /// What went wrong, for a person; never cryptographic detail.
    pub detail: Option<String>,
    /// Seconds after which the client may retry (for `503`/`429`).
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status` and `code` and no detail.
    pub fn new(status: StatusCode, code: &'static str) -> Problem {
        Problem {
            status,
            code,
            detail: None,
            retry_after: None,
        }
    }

    /// Adds a detail for a person.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    /// `400 decode`: the body is not what the route takes.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "decode").with_detail(detail)
    }

    /// `404 not-found`.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found").with_detail(detail)
    }

    /// `503 overloaded` with `Retry-After`.
    pub fn overloaded(detail: impl Into<String>) -> Problem {
        Problem {
            retry_after: Some(1),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded").with_detail(detail)
        }
    }

    /// `500 internal`: logged with `what`, told as nothing more.
    pub fn internal(what: &str) -> Problem {
        tracing::error!(error = what, "internal error");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
    }

    fn title(&self) -> &'static str {
        match self.code {
            "decode" => "Malformed request",
            "crypto" => "A cryptographic check failed",
            "peer-misbehaved" => "The message breaks the protocol",
            "replayed" => "Stale or replayed message",
            "not-authorised" => "Not authorised",
            "refused" => "Refused",
            "overloaded" => "Overloaded; retry later",
            "rate-limited" => "Too many requests; retry later",
            "too-many-pending" => "Too many protocol steps pending; retry later",
            "request-timeout" => "The request body did not arrive in time",
            "timed-out" => "The request was not answered in time",
            "not-found" => "Not found",
            "too-large" => "Request too large",
            "unsupported-media-type" => "Unsupported media type",
            "unknown-step" => "Unknown or expired pending step",
            "missing-step" => "This message continues a pending step: name it",
            "unknown-message" => "This role does not take that message",
            "already-subscribed" => "This client is already subscribed",
            "lite-unauthenticated" => "This route is served over SDDP: sign the request",
            "lite-unknown-client" => "No subscription for this client: run SKEP first",
            "proxy-authentication" => "Give your client id and secret to the proxy",
            "not-implemented" => "Not implemented",
            "upstream" => "The vendor refused the request, or could not be reached",
            _ => "Internal error",
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "type": format!("https://agora.invalid/problems/{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "code": self.code,
        });
        if let Some(d) = &self.detail {
            v["detail"] = d.clone().into();
        }
        v
    }
}

impl From<agora_core::Error> for Problem {
    fn from(e: agora_core::Error) -> Problem {
        use agora_core::Error as E;
        let code = e.code();
        match e {
            E::Decode(d) => Problem::new(StatusCode::BAD_REQUEST, code).with_detail(d.to_string()),
            // No detail: which check failed is an oracle.
            E::Crypto => Problem::new(StatusCode::BAD_REQUEST, code),
            E::PeerMisbehaved(why) => Problem::new(StatusCode::BAD_REQUEST, code).with_detail(why),
            E::Replayed => Problem::new(StatusCode::CONFLICT, code),
            E::NotAuthorised(why) => Problem::new(StatusCode::FORBIDDEN, code).with_detail(why),
            E::Refused(why) => Problem::new(StatusCode::CONFLICT, code).with_detail(why),
            E::Overloaded => Problem::overloaded("the store's write queue is full"),
            E::Storage(why) => Problem::internal(&format!("storage: {why}")),
            E::ApiMisuse(why) => Problem::internal(&format!("api misuse: {why}")),
        }
    }
}

impl From<agora_core::DecodeError> for Problem {
    fn from(e: agora_core::DecodeError) -> Problem {
        Problem::from(agora_core::Error::Decode(e))
    }
}

/// A route's path segments, or `400 decode` when they cannot be read (not
/// UTF-8 once percent-decoded): a problem document, as every error is,
/// rather than axum's plain-text rejection.
pub fn path_of<T>(
    p: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
) -> Result<T, Problem> {
    p.map(|axum::extract::Path(t)| t)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        let mut r = (self.status, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        r.extensions_mut().insert(ProblemCode(self.code));
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Error;

    #[test]
    fn crypto_failures_carry_no_detail() {
        let p = Problem::from(Error::Crypto);
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert_eq!(p.detail, None);
        assert_eq!(p.to_json()["code"], "crypto");
    }

    #[test]
    fn storage_failures_are_not_told() {
        let p = Problem::from(Error::Storage("disk I/O error at /secret/path".into()));
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.to_json().to_string().contains("secret"));
    }

    #[test]
    fn overload_says_when_to_retry() {
        let r = Problem::from(Error::Overloaded).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            r.extensions().get::<ProblemCode>(),
            Some(&ProblemCode("overloaded"))
        );
    }

    #[test]
    fn refusals_keep_their_reason() {
        let p = Problem::from(Error::Refused("this CPO is already bound".into()));
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert_eq!(p.to_json()["detail"], "this CPO is already bound");
        assert_eq!(
            p.to_json()["type"],
            "https://agora.invalid/problems/refused"
        );
    }
}
