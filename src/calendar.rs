//! The programme's calendar. Every date the service keeps or compares (the
//! day a minor comes of age, a day of death, an application's first and
//! last day, when ethics training expires, the day a coming-of-age sweep
//! has reached) is a day in Japan: JST, UTC+9, which has no daylight
//! saving time. Hospitals, committees and patients all count days there,
//! so "today" is JST's today wherever the service's clock runs
//! (decision 0028).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Offset, TimeZone, Utc};

/// JST's offset from UTC.
const UTC_OFFSET_SECONDS: i32 = 9 * 3600;

fn offset() -> FixedOffset {
    // A constant within ±24 h, so always valid.
    FixedOffset::east_opt(UTC_OFFSET_SECONDS).unwrap_or_else(|| Utc.fix())
}

/// The programme's calendar day at the instant `at`.
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&offset()).date_naive()
}

/// The instant the programme's calendar day `day` begins.
pub fn start_of(day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    match offset().from_local_datetime(&midnight).single() {
        Some(local) => local.with_timezone(&Utc),
        // A fixed offset maps every local time to one instant.
        None => midnight.and_utc(),
    }
}

/// The instant the programme's calendar day `day` ends: the start of the
/// next, so the whole of `day` lies before it.
pub fn end_of(day: NaiveDate) -> DateTime<Utc> {
    start_of(day.succ_opt().unwrap_or(day))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_day_turns_at_midnight_in_japan_not_at_midnight_utc() {
        assert_eq!(day_of(at("2026-12-03T14:59:59Z")), day("2026-12-03"));
        assert_eq!(day_of(at("2026-12-03T15:00:00Z")), day("2026-12-04"));
        assert_eq!(day_of(at("2026-12-04T08:00:00Z")), day("2026-12-04"));
    }

    #[test]
    fn a_day_runs_from_its_midnight_to_the_next_in_japan() {
        assert_eq!(start_of(day("2027-01-01")), at("2026-12-31T15:00:00Z"));
        assert_eq!(end_of(day("2027-12-31")), at("2027-12-31T15:00:00Z"));
        for s in [
            "2026-12-31T15:00:00Z",
            "2027-06-01T12:00:00Z",
            "2027-12-31T14:59:59Z",
        ] {
            let d = day_of(at(s));
            assert!(start_of(d) <= at(s) && at(s) < end_of(d), "{s}");
        }
    }
}
