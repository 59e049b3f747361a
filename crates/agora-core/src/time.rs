//! Timestamps: unsigned 64-bit Unix seconds, UTC (ARCHITECTURE section 2).
//! Protocol code never reads the clock; `now` is passed in.

use std::fmt;

/// Seconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The wall clock. Only drivers (CLI, node, tests) call this.
    pub fn now_from_system_clock() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(secs)
    }

    /// Seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0
    }

    /// `self + secs`, saturating at the end of time.
    pub fn plus_secs(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }

    /// `self - secs`, saturating at the epoch.
    pub fn minus_secs(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_sub(secs))
    }

    /// How far `self` lies from `other`, in seconds, either way.
    pub fn distance_secs(self, other: Timestamp) -> u64 {
        self.0.abs_diff(other.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
