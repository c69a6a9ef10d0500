//! Wall-clock time as Hermes stamps it: Unix nanoseconds (`i64`), UTC civil dates, and
//! RFC 3339 text. One home for what the engine, the persister, the simulator and the
//! viewers all need.
//!
//! ```
//! use hermes_book::clock::{civil_from_days, day_of_ns, rfc3339};
//! assert_eq!(civil_from_days(day_of_ns(86_400_000_000_000)), (1970, 1, 2));
//! assert_eq!(rfc3339(1_500_000_000), "1970-01-01T00:00:01.500000000Z");
//! ```

/// Nanoseconds in a day.
pub const NS_PER_DAY: i64 = 86_400_000_000_000;

/// Now, as Unix nanoseconds (0 if the clock is before 1970).
#[inline]
pub fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Days since the Unix epoch of a Unix-nanosecond time (UTC).
#[inline]
pub fn day_of_ns(unix_ns: i64) -> i32 {
    unix_ns.div_euclid(NS_PER_DAY) as i32
}

/// `(year, month, day)` of a day number (days since 1970-01-01), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

/// `YYYY-MM-DD` of a day number.
pub fn date_text(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 text of Unix ns, UTC with nine fractional digits
/// (`2026-08-09T21:05:48.505350477Z`).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let sod = secs.rem_euclid(86_400);
    let date = date_text(secs.div_euclid(86_400) as i32);
    format!(
        "{date}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            civil_from_days(day_of_ns(1_786_316_748_505_350_477)),
            (2026, 8, 9)
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(day_of_ns(-1), -1);
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339(1_786_316_748_505_350_477),
            "2026-08-09T23:05:48.505350477Z"
        );
    }
}
