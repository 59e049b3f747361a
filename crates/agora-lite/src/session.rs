//! Session keys by unit of time (paper section 4): what the data delivery
//! protocols use in lieu of the persistent key `K`, so that a session key
//! that leaks exposes one unit of time and not the whole relationship.
//!
//! The paper replaces SKIP's counter (state on both sides) by "a strictly
//! monotonic increasing function of the time" with a granularity agreed in
//! advance. Here the unit is `t = floor(unix seconds / granularity)`
//! ([`time_unit`]); the client announces the `t` it used and the vendor
//! accepts it if it lies within a window of its own unit ([`accept_unit`]),
//! which absorbs clock skew and requests that straddle a unit's end. The key
//! is `K_t = HKDF-Expand(K, "session" ‖ t)` ([`session_key`]).

use crate::janus::{expand32, KeySet, VendorKey};
use agora_core::crypto::{MacKey, Secret};
use agora_core::{Error, Result, Timestamp};
use std::fmt;

/// The HKDF-Expand info's prefix of a session key, before the unit.
pub const SESSION_INFO: &[u8] = b"session";

/// The length of a session unit, in seconds: 1 second to one day.
///
/// The paper's examples are a day, an hour or a minute, "depend\[ing\] on
/// the accuracy of the time of the client and server". A day is the bound:
/// a session key exists to limit what one leaked key exposes, and a unit
/// longer than a day would keep it in use longer than the paper contemplates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Granularity(u32);

impl Granularity {
    /// One minute.
    pub const MINUTE: Granularity = Granularity(60);
    /// One hour.
    pub const HOUR: Granularity = Granularity(3_600);
    /// One day: the longest granularity.
    pub const DAY: Granularity = Granularity(86_400);

    /// The longest granularity, in seconds (one day).
    pub const MAX_SECS: u64 = 86_400;

    /// A granularity of `secs` seconds; refused unless 1 to
    /// [`Self::MAX_SECS`].
    pub fn from_secs(secs: u64) -> Result<Granularity> {
        match u32::try_from(secs) {
            Ok(s) if s > 0 && u64::from(s) <= Self::MAX_SECS => Ok(Granularity(s)),
            _ => Err(Error::Refused(format!(
                "session granularity of {secs} s, expected 1 to {} s",
                Self::MAX_SECS
            ))),
        }
    }

    /// The granularity in seconds (1 to [`Self::MAX_SECS`]).
    pub fn secs(self) -> u64 {
        u64::from(self.0)
    }
}

/// The unit of time `now` falls in: `floor(now's unix seconds / g)`.
pub fn time_unit(now: Timestamp, g: Granularity) -> u64 {
    // g.secs() >= 1 by construction.
    now.secs() / g.secs()
}

/// The widest window [`accept_unit`] allows, in units either side: 60, the
/// paper's "within an hour" at a granularity of one minute. A wider window
/// would let a key announced long ago (or far ahead) be used.
pub const MAX_WINDOW_UNITS: u32 = 60;

/// The vendor's check of the unit `announced` by a client, at `now`: accepted
/// if it lies within `window_units` units either side of `now`'s unit.
///
/// Refused otherwise: a unit too far in the past as [`Error::Replayed`]
/// (stale: an old session key, or a client clock that is behind); a unit too
/// far ahead as [`Error::Refused`] whose text says it is in the future (a
/// client clock that is ahead). A window over [`MAX_WINDOW_UNITS`] is the
/// caller's mistake, [`Error::ApiMisuse`].
pub fn accept_unit(
    announced: u64,
    now: Timestamp,
    g: Granularity,
    window_units: u32,
) -> Result<()> {
    if window_units > MAX_WINDOW_UNITS {
        return Err(Error::ApiMisuse(
            "session window over MAX_WINDOW_UNITS units",
        ));
    }
    let current = time_unit(now, g);
    let window = u64::from(window_units);
    if announced < current && current - announced > window {
        return Err(Error::Replayed);
    }
    if announced > current && announced - current > window {
        return Err(Error::Refused(format!(
            "session time unit {announced} is in the future: the vendor is in unit {current} \
             (granularity {} s) and accepts {window} unit(s) ahead",
            g.secs()
        )));
    }
    Ok(())
}

/// The session key of unit `t`: `K_t` and the `K_enc` and `K_mac` expanded
/// from it. Wiped when dropped, never printed.
pub struct SessionKey {
    unit: u64,
    keys: KeySet,
}

/// The session key of unit `t` under the persistent key `k` (client and
/// vendor compute the same):
///
/// `K_t = HKDF-Expand(PRK = K_{C,V}, info = "session" ‖ t, L = 32)`, where
/// `K_{C,V}` is [`VendorKey::k`] (not its `K_enc` or `K_mac`), "session" is
/// its 7 ASCII bytes (`73 65 73 73 69 6f 6e`) and `t` is 8 bytes big-endian:
/// an info of exactly 15 bytes. ARCHITECTURE writes `HKDF(K, ...)`; since
/// `K_{C,V}` is already a uniformly random 32-byte key (an HMAC output) the
/// Extract step is skipped (RFC 5869 section 3.3). The info cannot equal
/// the `"agora/janus/enc"` or `"agora/janus/mac"` of `K_enc` and `K_mac`
/// (also 15 bytes), which begin otherwise.
///
/// The session key's own `K_enc` and `K_mac` are expanded from `K_t` as
/// those of `K_{C,V}` are from it: `HKDF-Expand(K_t, "agora/janus/enc", 32)`
/// and `HKDF-Expand(K_t, "agora/janus/mac", 32)`.
pub fn session_key(k: &VendorKey, t: u64) -> SessionKey {
    let mut info = [0u8; 15];
    info[..7].copy_from_slice(SESSION_INFO);
    info[7..].copy_from_slice(&t.to_be_bytes());
    let k_t = expand32(k.k().expose(), &info);
    SessionKey {
        unit: t,
        keys: KeySet::from_key(Secret::new(k_t)),
    }
}

impl SessionKey {
    /// The unit of time this key is for.
    pub fn unit(&self) -> u64 {
        self.unit
    }

    /// `K_t`. Keep the borrow short.
    pub fn k(&self) -> &Secret<32> {
        self.keys.k()
    }

    /// `HKDF-Expand(K_t, "agora/janus/enc", 32)`.
    pub fn k_enc(&self) -> &Secret<32> {
        self.keys.k_enc()
    }

    /// `HKDF-Expand(K_t, "agora/janus/mac", 32)`.
    pub fn k_mac(&self) -> &MacKey {
        self.keys.k_mac()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("unit", &self.unit)
            .field("k", &format_args!("<redacted>"))
            .field("k_enc", &format_args!("<redacted>"))
            .field("k_mac", &format_args!("<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_is_bounded() {
        assert!(Granularity::from_secs(0).is_err());
        assert!(Granularity::from_secs(86_401).is_err());
        assert!(Granularity::from_secs(u64::MAX).is_err());
        assert_eq!(Granularity::from_secs(1).map(Granularity::secs), Ok(1));
        assert_eq!(Granularity::from_secs(86_400), Ok(Granularity::DAY));
    }

    #[test]
    fn accept_unit_does_not_overflow_at_the_ends_of_time() {
        let g = Granularity::from_secs(1).unwrap_or(Granularity::MINUTE);
        assert!(accept_unit(u64::MAX, Timestamp(u64::MAX), g, 60).is_ok());
        assert!(accept_unit(0, Timestamp(0), g, 60).is_ok());
        assert_eq!(
            accept_unit(0, Timestamp(u64::MAX), g, 60),
            Err(Error::Replayed)
        );
        assert!(matches!(
            accept_unit(u64::MAX, Timestamp(0), g, 60),
            Err(Error::Refused(m)) if m.contains("future")
        ));
        assert!(matches!(
            accept_unit(0, Timestamp(0), g, 61),
            Err(Error::ApiMisuse(_))
        ));
    }
}
