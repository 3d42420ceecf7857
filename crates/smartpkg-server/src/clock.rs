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
}
