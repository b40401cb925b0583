//! Time as a value: pay402-core never reads a clock.
//!
//! Callers pass the current time in; the I/O crates read the system clock
//! with [`UnixTime::from_system`]-style helpers of their own.

use std::fmt;
use std::time::{Duration, SystemTime};

/// Seconds since the UNIX epoch.
///
/// ```
/// use pay402_core::time::UnixTime;
/// let t = UnixTime(1_700_000_000);
/// assert_eq!(t.saturating_add_secs(60), UnixTime(1_700_000_060));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Converts a [`SystemTime`] (times before the epoch become 0).
    ///
    /// This is a pure conversion; reading the clock is the caller's business.
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// use std::time::{Duration, UNIX_EPOCH};
    /// assert_eq!(UnixTime::from_system(UNIX_EPOCH + Duration::from_secs(5)), UnixTime(5));
    /// ```
    pub fn from_system(t: SystemTime) -> UnixTime {
        UnixTime(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// Adds seconds, saturating at `u64::MAX`.
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// assert_eq!(UnixTime(u64::MAX).saturating_add_secs(1), UnixTime(u64::MAX));
    /// ```
    pub const fn saturating_add_secs(self, secs: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// This time as a duration since the epoch.
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// assert_eq!(UnixTime(3).as_duration().as_secs(), 3);
    /// ```
    pub const fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
