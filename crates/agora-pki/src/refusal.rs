//! Why a certificate or CRL is refused: one variant per reason.

/// Why [`crate::validate_bond`] or [`crate::validate_identity`] (or a parser)
/// refused a certificate. Each variant is one reason, so callers and tests
/// can tell them apart; none carries cryptographic detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Not DER of the agora certificate profile (or over the size limit,
    /// trailing bytes, not Ed25519, unknown critical extension...).
    #[error("malformed certificate or CRL: {0}")]
    Malformed(&'static str),
    /// The issuer is not one of the trusted CAs (agencies, for bonds).
    #[error("issuer is not trusted")]
    UnknownIssuer,
    /// The issuer's signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `now` is before notBefore (of the certificate or of its issuer's).
    #[error("certificate is not yet valid")]
    NotYetValid,
    /// `now` is after notAfter (of the certificate or of its issuer's).
    #[error("certificate has expired")]
    Expired,
    /// A current CRL of the issuer lists the certificate's serial.
    #[error("certificate is revoked")]
    Revoked,
    /// No CRL of the issuer that verifies and is current at `now`
    /// (thisUpdate <= now < nextUpdate): revocation cannot be checked, so
    /// the certificate is refused ("fail closed").
    #[error("no current CRL from the issuer")]
    NoCurrentCrl,
    /// The bond covers less than the price.
    #[error("the bond covers {bond}, the price is {price}")]
    AmountTooLow {
        /// What the bond covers.
        bond: agora_core::Money,
        /// The price it was asked to cover.
        price: agora_core::Money,
    },
    /// The bond is in another currency than the price.
    #[error("bond currency differs from the price's")]
    CurrencyMismatch,
    /// The bond does not cover the role (buyer/seller), or an identity
    /// certificate is for another party role.
    #[error("role not allowed by the certificate")]
    RoleNotAllowed,
    /// The bond names allowed servers, and this one is not among them.
    #[error("server not allowed by the bond")]
    ServerNotAllowed,
    /// The bond names allowed arbiters, and this one is not among them.
    #[error("arbiter not allowed by the bond")]
    ArbiterNotAllowed,
    /// A valid certificate without the bond extension.
    #[error("certificate is not a bond certificate")]
    NotABond,
    /// A valid certificate without the identity extension.
    #[error("certificate is not an agora identity certificate")]
    NotAnIdentity,
}

impl Refusal {
    /// A stable short code, for the wire and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::UnknownIssuer => "unknown-issuer",
            Refusal::BadSignature => "bad-signature",
            Refusal::NotYetValid => "not-yet-valid",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::NoCurrentCrl => "no-current-crl",
            Refusal::AmountTooLow { .. } => "amount-too-low",
            Refusal::CurrencyMismatch => "currency-mismatch",
            Refusal::RoleNotAllowed => "role-not-allowed",
            Refusal::ServerNotAllowed => "server-not-allowed",
            Refusal::ArbiterNotAllowed => "arbiter-not-allowed",
            Refusal::NotABond => "not-a-bond",
            Refusal::NotAnIdentity => "not-an-identity",
        }
    }
}

impl From<Refusal> for agora_core::Error {
    /// Malformed input is the sender's decode error; every other refusal is
    /// a policy refusal ([`agora_core::Error::Refused`]) with the refusal's
    /// stable code in the message.
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Malformed(why) => {
                agora_core::Error::Decode(agora_core::DecodeError::Invalid(why))
            }
            other => agora_core::Error::Refused(format!("certificate {}: {other}", other.code())),
        }
    }
}
