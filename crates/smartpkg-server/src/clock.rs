//! Time as the wire shows it: `commit_time` in the platform's local time with slashes, and the
//! Monday-to-Sunday week the audit quota counts in.

use chrono::{DateTime, FixedOffset};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const DAY_MS: i64 = 86_400_000;

/// The start (in UTC milliseconds) of the local week holding `now_ms`, weeks starting Monday.
pub fn week_start_ms(now_ms: i64, offset: FixedOffset) -> i64 {
    let shift = offset.local_minus_utc() as i64 * 1000;
    let local = now_ms + shift;
    let day = local.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
    let since_monday = (day + 3).rem_euclid(7);
    (day - since_monday) * DAY_MS - shift
}

/// The start (in UTC milliseconds) of the local day holding `now_ms`.
pub fn day_start_ms(now_ms: i64, offset: FixedOffset) -> i64 {
    let shift = offset.local_minus_utc() as i64 * 1000;
    (now_ms + shift).div_euclid(DAY_MS) * DAY_MS - shift
}

/// The start (in UTC milliseconds) of the local calendar month holding `now_ms`: WeChat's
/// quotas count per month.
pub fn month_start_ms(now_ms: i64, offset: FixedOffset) -> i64 {
    use chrono::{Datelike, NaiveDate};
    let shift = offset.local_minus_utc() as i64 * 1000;
    let local_day = (now_ms + shift).div_euclid(DAY_MS);
    let first = DateTime::from_timestamp_millis(local_day * DAY_MS)
        .map(|t| t.date_naive())
        .and_then(|d| NaiveDate::from_ymd_opt(d.year(), d.month(), 1));
    match first {
        Some(first) => {
            let days = (first - DateTime::UNIX_EPOCH.date_naive()).num_days();
            days * DAY_MS - shift
        }
        // Outside chrono's calendar (hundreds of thousands of years away): the day will do.
        None => local_day * DAY_MS - shift,
    }
}

/// `2018/09/04 17:13:59`. Written field by field: `get` formats one per listed package, and
/// this is several times cheaper than interpreting a strftime pattern each time.
pub fn commit_time(ms: i64, offset: FixedOffset) -> String {
    stamp(ms, offset, '/')
}

/// `2019-01-14 12:45:10`, the `eventTime` of pushes.
pub fn event_time(ms: i64, offset: FixedOffset) -> String {
    stamp(ms, offset, '-')
}

fn stamp(ms: i64, offset: FixedOffset, sep: char) -> String {
    use chrono::{Datelike, Timelike};
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            let t = t.with_timezone(&offset);
            format!(
                "{:04}{sep}{:02}{sep}{:02} {:02}:{:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beijing() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).expect("offset")
    }

    #[test]
    fn commit_time_is_local_with_slashes() {
        // 2018-09-04 09:13:59 UTC is 17:13:59 in Beijing.
        assert_eq!(
            commit_time(1_536_052_439_000, beijing()),
            "2018/09/04 17:13:59"
        );
    }

    #[test]
    fn the_quota_week_starts_on_local_monday_midnight() {
        // Wednesday 2026-11-25 12:00 Beijing → Monday 2026-11-23 00:00 Beijing = Sunday 16:00 UTC.
        let wed_noon_beijing = 1_795_579_200_000;
        let start = week_start_ms(wed_noon_beijing, beijing());
        assert_eq!(commit_time(start, beijing()), "2026/11/23 00:00:00");
        // Sunday 23:59 Beijing still belongs to that week; Monday 00:00 starts the next.
        let next = start + 7 * DAY_MS;
        assert_eq!(week_start_ms(next - 60_000, beijing()), start);
        assert_eq!(week_start_ms(next, beijing()), next);
    }

    #[test]
    fn days_and_months_start_at_local_midnight() {
        // 2024-03-15 01:00 in Beijing is 2024-03-14 17:00 UTC.
        let t = 1_710_435_600_000;
        assert_eq!(day_start_ms(t, beijing()), 1_710_432_000_000); // 03-15 00:00 +08:00
        assert_eq!(month_start_ms(t, beijing()), 1_709_222_400_000); // 03-01 00:00 +08:00
        assert_eq!(
            month_start_ms(1_709_222_400_000, beijing()),
            1_709_222_400_000
        );
        assert_eq!(
            month_start_ms(1_709_222_400_000 - 1, beijing()),
            1_706_716_800_000 // 02-01 00:00 +08:00
        );
    }
}
