//! The agora certificate profile: OIDs, and the DER codecs of the two agora
//! extensions (bond and identity). See the crate documentation for the ASN.1.
//!
//! Decoding is strict DER (yasna in DER mode): trailing bytes, non-minimal
//! integers, unknown versions, duplicate or unsorted roles and over-long
//! lists are refused.

use agora_core::crypto::X25519Public;
use agora_core::{Currency, KeyId, Money};

/// The agora arc, `2.25.311462703466912000384127807773296554420` (a UUID OID,
/// ITU-T X.667). The bond extension is identified by the arc itself.
pub const AGORA_ARC: u128 = 311_462_703_466_912_000_384_127_807_773_296_554_420;

/// Content octets (no tag, no length) of the bond extension's OID,
/// `2.25.311462703466912000384127807773296554420`.
pub const BOND_EXT_OID_DER: [u8; 20] = oid_content::<20>(None);

/// Content octets of the identity extension's OID,
/// `2.25.311462703466912000384127807773296554420.1`.
pub const IDENTITY_EXT_OID_DER: [u8; 21] = oid_content::<21>(Some(1));

/// Dotted form of the bond extension OID.
pub const BOND_EXT_OID: &str = "2.25.311462703466912000384127807773296554420";
/// Dotted form of the identity extension OID.
pub const IDENTITY_EXT_OID: &str = "2.25.311462703466912000384127807773296554420.1";

/// Version of both extensions' value.
const EXT_VERSION: u8 = 1;

/// At most this many allowed servers and arbiters each in a bond: a bond
/// names a few well-known parties, and the cap bounds decoding work.
pub const MAX_CONDITION_KEYS: usize = 64;

/// Encodes `2.25.AGORA_ARC[.sub]` as OID content octets (base-128 arcs).
/// `N` must be the exact length; a unit test checks both constants.
const fn oid_content<const N: usize>(sub: Option<u8>) -> [u8; N] {
    let mut out = [0u8; N];
    out[0] = 2 * 40 + 25;
    // The arc needs 19 base-128 digits (128 bits).
    let mut i = 0;
    while i < 19 {
        let shift = 7 * (18 - i);
        let digit = ((AGORA_ARC >> shift) & 0x7f) as u8;
        out[1 + i] = if i < 18 { digit | 0x80 } else { digit };
        i += 1;
    }
    if let Some(s) = sub {
        out[20] = s;
    }
    out
}

/// A role a bond covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May post CPOs (the buyer, Bob).
    Buyer,
    /// May browse and bind CPOs (the seller, Pam).
    Seller,
}

impl Role {
    fn code(self) -> i64 {
        match self {
            Role::Buyer => 0,
            Role::Seller => 1,
        }
    }
    fn from_code(c: i64) -> Option<Role> {
        match c {
            0 => Some(Role::Buyer),
            1 => Some(Role::Seller),
            _ => None,
        }
    }
}

/// The role of a well-known party (identity certificates, trust store).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PartyRole {
    /// A bonding agency (a CA issuing bond certificates).
    Agency,
    /// A CPO arbiter.
    Arbiter,
    /// A CPO server.
    Server,
    /// A SPEED broker.
    Broker,
    /// The STP commit authority (an identity: it signs outcomes and tree
    /// heads).
    CommitAuthority,
    /// Another certification authority (e.g. SPEED's).
    Ca,
    /// A SPEED customer.
    Customer,
    /// A SPEED vendor.
    Vendor,
    /// A trusted evaluator of commerce services (SEMPER).
    Evaluator,
    /// An exchange authority that holds items in escrow for STP
    /// transactions.
    Escrow,
}

impl PartyRole {
    /// All roles, in code order.
    pub const ALL: [PartyRole; 10] = [
        PartyRole::Agency,
        PartyRole::Arbiter,
        PartyRole::Server,
        PartyRole::Broker,
        PartyRole::CommitAuthority,
        PartyRole::Ca,
        PartyRole::Customer,
        PartyRole::Vendor,
        PartyRole::Evaluator,
        PartyRole::Escrow,
    ];

    /// The ENUMERATED value in the identity extension.
    pub fn code(self) -> i64 {
        match self {
            PartyRole::Agency => 0,
            PartyRole::Arbiter => 1,
            PartyRole::Server => 2,
            PartyRole::Broker => 3,
            PartyRole::CommitAuthority => 4,
            PartyRole::Ca => 5,
            PartyRole::Customer => 6,
            PartyRole::Vendor => 7,
            PartyRole::Evaluator => 8,
            PartyRole::Escrow => 9,
        }
    }

    fn from_code(c: i64) -> Option<PartyRole> {
        PartyRole::ALL.into_iter().find(|r| r.code() == c)
    }
}

/// Who may act on a bond: empty lists mean "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Key ids of the CPO servers the bond may be used with.
    pub servers: Vec<KeyId>,
    /// Key ids of the arbiters the bond may be used with.
    pub arbiters: Vec<KeyId>,
}

/// The value of the bond extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondExtension {
    /// The holder's encryption key (HPKE recipient key).
    pub holder_x25519: X25519Public,
    /// The amount covered.
    pub amount: Money,
    /// Roles covered, sorted, without duplicates, at least one.
    pub roles: Vec<Role>,
    /// Allowed servers and arbiters.
    pub conditions: Conditions,
}

/// The value of the identity extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityExtension {
    /// The party's role.
    pub role: PartyRole,
    /// The party's encryption key, if it receives encrypted messages.
    pub x25519: Option<X25519Public>,
}

/// Why an extension value could not be decoded.
pub(crate) type CodecError = &'static str;

impl BondExtension {
    /// DER encoding of the extension value.
    pub fn to_der(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(EXT_VERSION);
                w.next().write_bytes(&self.holder_x25519.0);
                w.next().write_sequence(|w| {
                    w.next().write_u64(self.amount.cents);
                    w.next()
                        .write_printable_string(self.amount.currency.as_str());
                });
                w.next().write_sequence_of(|w| {
                    for r in &self.roles {
                        w.next().write_enum(r.code());
                    }
                });
                w.next().write_sequence(|w| {
                    for list in [&self.conditions.servers, &self.conditions.arbiters] {
                        w.next().write_sequence_of(|w| {
                            for k in list {
                                w.next().write_bytes(k.as_bytes());
                            }
                        });
                    }
                });
            })
        })
    }

    /// Strict DER decoding of the extension value.
    pub fn from_der(der: &[u8]) -> Result<BondExtension, CodecError> {
        let raw = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let version = r.next().read_u8()?;
                let x = r.next().read_bytes()?;
                let (cents, cur) = r.next().read_sequence(|r| {
                    let cents = r.next().read_u64()?;
                    let cur = r.next().read_printable_string()?;
                    Ok((cents, cur))
                })?;
                let mut roles = Vec::new();
                r.next().read_sequence_of(|r| {
                    if roles.len() >= 2 {
                        return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
                    }
                    roles.push(r.read_enum()?);
                    Ok(())
                })?;
                let (servers, arbiters) = r.next().read_sequence(|r| {
                    let s = read_key_list(r.next())?;
                    let a = read_key_list(r.next())?;
                    Ok((s, a))
                })?;
                Ok((version, x, cents, cur, roles, servers, arbiters))
            })
        })
        .map_err(|_| "bond extension is not valid DER of the agora profile")?;
        let (version, x, cents, cur, role_codes, servers, arbiters) = raw;
        if version != EXT_VERSION {
            return Err("unknown bond extension version");
        }
        let holder_x25519 =
            X25519Public::from_slice(&x).map_err(|_| "holder X25519 key must be 32 bytes")?;
        let currency = Currency::new(&cur).map_err(|_| "currency must be 3 capital letters")?;
        let mut roles = Vec::with_capacity(role_codes.len());
        for c in role_codes {
            roles.push(Role::from_code(c).ok_or("unknown bond role")?);
        }
        if roles.is_empty() || roles.windows(2).any(|w| w[0] >= w[1]) {
            return Err("bond roles must be non-empty, sorted and distinct");
        }
        Ok(BondExtension {
            holder_x25519,
            amount: Money::new(cents, currency),
            roles,
            conditions: Conditions { servers, arbiters },
        })
    }
}

fn read_key_list(r: yasna::BERReader<'_, '_>) -> yasna::ASN1Result<Vec<KeyId>> {
    let mut out = Vec::new();
    r.read_sequence_of(|r| {
        if out.len() >= MAX_CONDITION_KEYS {
            return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
        }
        let b = r.read_bytes()?;
        let id = KeyId::from_slice(&b)
            .map_err(|_| yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid))?;
        out.push(id);
        Ok(())
    })?;
    Ok(out)
}

impl IdentityExtension {
    /// DER encoding of the extension value.
    pub fn to_der(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(EXT_VERSION);
                w.next().write_enum(self.role.code());
                if let Some(x) = &self.x25519 {
                    w.next().write_bytes(&x.0);
                }
            })
        })
    }

    /// Strict DER decoding of the extension value.
    pub fn from_der(der: &[u8]) -> Result<IdentityExtension, CodecError> {
        let (version, role, x) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let version = r.next().read_u8()?;
                let role = r.next().read_enum()?;
                let x = r.read_optional(|r| r.read_bytes())?;
                Ok((version, role, x))
            })
        })
        .map_err(|_| "identity extension is not valid DER of the agora profile")?;
        if version != EXT_VERSION {
            return Err("unknown identity extension version");
        }
        let role = PartyRole::from_code(role).ok_or("unknown party role")?;
        let x25519 = match x {
            Some(b) => {
                Some(X25519Public::from_slice(&b).map_err(|_| "X25519 key must be 32 bytes")?)
            }
            None => None,
        };
        Ok(IdentityExtension { role, x25519 })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
    use super::*;

    /// Base-128 encoding computed the slow way, against the const fn.
    #[test]
    fn oid_constants_match_their_dotted_form() {
        let mut digits = Vec::new();
        let mut v = AGORA_ARC;
        loop {
            digits.push((v & 0x7f) as u8);
            v >>= 7;
            if v == 0 {
                break;
            }
        }
        digits.reverse();
        let n = digits.len();
        for d in digits.iter_mut().take(n - 1) {
            *d |= 0x80;
        }
        let mut expect = vec![0x69];
        expect.extend_from_slice(&digits);
        assert_eq!(BOND_EXT_OID_DER.to_vec(), expect);
        expect.push(1);
        assert_eq!(IDENTITY_EXT_OID_DER.to_vec(), expect);
        assert_eq!(
            BOND_EXT_OID,
            format!("2.25.{AGORA_ARC}"),
            "dotted form matches"
        );
    }

    #[test]
    fn bond_extension_round_trip_and_trailing_bytes() {
        let ext = BondExtension {
            holder_x25519: X25519Public([7; 32]),
            amount: Money::new(12_345, Currency::new("EUR").unwrap()),
            roles: vec![Role::Buyer, Role::Seller],
            conditions: Conditions {
                servers: vec![KeyId([1; 32])],
                arbiters: vec![],
            },
        };
        let der = ext.to_der();
        assert_eq!(BondExtension::from_der(&der).unwrap(), ext);
        let mut longer = der.clone();
        longer.push(0);
        assert!(BondExtension::from_der(&longer).is_err());
    }

    #[test]
    fn identity_extension_round_trip() {
        for x in [None, Some(X25519Public([9; 32]))] {
            let ext = IdentityExtension {
                role: PartyRole::Arbiter,
                x25519: x,
            };
            assert_eq!(IdentityExtension::from_der(&ext.to_der()).unwrap(), ext);
        }
    }
}
