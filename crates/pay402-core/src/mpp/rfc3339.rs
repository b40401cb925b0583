//! RFC 3339 date-times (`expires`, receipt `timestamp`) to and from [`UnixTime`].
//!
//! Parsing accepts what the peers emit: seconds (`2026-01-01T00:15:00Z`,
//! Aperture), milliseconds (mppx `toISOString`), microseconds (pympp), and a
//! numeric offset. Fractions are dropped (the time is floored to the second,
//! which makes an expiry check at most one second early, never late). `T` and
//! `Z` may be lowercase (RFC 3339 §5.6 NOTE). Emitting writes whole seconds in
//! UTC with `Z`.

use crate::time::UnixTime;

/// Longest date-time accepted (a 9-digit fraction and an offset fit easily).
pub const MAX_RFC3339_LEN: usize = 40;

/// Why a date-time was refused.
///
/// ```
/// use pay402_core::mpp::rfc3339::{parse, Rfc3339Error};
/// assert_eq!(parse("2026-13-01T00:00:00Z"), Err(Rfc3339Error::Invalid));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rfc3339Error {
    /// Not an RFC 3339 date-time, or a field out of range.
    #[error("not an RFC 3339 date-time")]
    Invalid,
    /// Before 1970.
    #[error("date-time before the UNIX epoch")]
    BeforeEpoch,
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, Rfc3339Error> {
    let s = b.get(at..at + n).ok_or(Rfc3339Error::Invalid)?;
    s.iter().try_fold(0u32, |acc, &d| {
        if d.is_ascii_digit() {
            Ok(acc * 10 + u32::from(d - b'0'))
        } else {
            Err(Rfc3339Error::Invalid)
        }
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), Rfc3339Error> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(Rfc3339Error::Invalid)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an RFC 3339 date-time into seconds since the epoch (floored).
///
/// ```
/// use pay402_core::mpp::rfc3339::parse;
/// use pay402_core::time::UnixTime;
/// assert_eq!(parse("2026-01-01T00:15:00Z").unwrap(), UnixTime(1_767_226_500));
/// assert_eq!(parse("2026-01-01T00:15:00.999Z").unwrap(), UnixTime(1_767_226_500));
/// assert_eq!(parse("2026-01-01T01:15:00+01:00").unwrap(), UnixTime(1_767_226_500));
/// ```
pub fn parse(s: &str) -> Result<UnixTime, Rfc3339Error> {
    let b = s.as_bytes();
    if b.len() > MAX_RFC3339_LEN {
        return Err(Rfc3339Error::Invalid);
    }
    let year = i64::from(digits(b, 0, 4)?);
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return Err(Rfc3339Error::Invalid);
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(Rfc3339Error::Invalid);
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(Rfc3339Error::Invalid);
        }
    }
    let offset: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = digits(b, i + 1, 2)?;
            expect(b, i + 3, b':')?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(Rfc3339Error::Invalid);
            }
            let o = i64::from(oh * 3600 + om * 60);
            if sign == b'+' { o } else { -o }
        }
        _ => return Err(Rfc3339Error::Invalid),
    };
    // A leap second (:60) counts as the next second's start, like POSIX time.
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset;
    u64::try_from(secs)
        .map(UnixTime)
        .map_err(|_| Rfc3339Error::BeforeEpoch)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// ```
/// use pay402_core::mpp::rfc3339::format;
/// use pay402_core::time::UnixTime;
/// assert_eq!(format(UnixTime(1_767_226_500)), "2026-01-01T00:15:00Z");
/// assert_eq!(format(UnixTime(0)), "1970-01-01T00:00:00Z");
/// ```
pub fn format(t: UnixTime) -> String {
    // Clamp to year 9999 so the output always has four year digits.
    let secs = t.0.min(253_402_300_799) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    // Fixed width, written digit by digit (a receipt is stamped on every
    // paid request; `format!` costs several times this).
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, v: i64| {
        let mut v = v.clamp(0, 9999);
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, i64::from(m));
    put(8, 2, i64::from(d));
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    // ASCII digits and separators only.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_writes_what_format_macro_writes() {
        for t in [
            0,
            59,
            86_399,
            86_400,
            951_782_400,
            1_767_226_500,
            4_102_444_799,
            253_402_300_799,
            u64::MAX,
        ] {
            let secs = t.min(253_402_300_799) as i64;
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let rem = secs.rem_euclid(86_400);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            assert_eq!(format(UnixTime(t)), want, "{t}");
            assert_eq!(parse(&want).map(|p| p.0), Ok(t.min(253_402_300_799)), "{t}");
        }
    }
}
