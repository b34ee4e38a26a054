//! Resolving a `date_range` to a half-open UTC interval, and deciding
//! whether hourly rollups answer it exactly in the query's time zone.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;

use super::validate::{QueryError, invalid};

/// The resolved range: `from <= ts < to`, Unix seconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: u32,
    pub to: u32,
    /// Whether every bucket of this range in this zone is a union of whole
    /// UTC hours: both ends fall on UTC hours and the zone's offset is a
    /// whole number of hours at every instant of the range. Only then can
    /// an hourly rollup (keyed by UTC hour) answer exactly.
    pub hour_aligned: bool,
}

impl Window {
    /// Whether both ends are UTC midnights: then the days of the
    /// `sessions` table (UTC day partitions) hold exactly the range.
    pub fn utc_days(&self) -> bool {
        self.from.is_multiple_of(86_400) && self.to.is_multiple_of(86_400)
    }

    /// The UTC day numbers (days since 1970-01-01) `[first, end)` of a
    /// [`utc_days`](Self::utc_days) range.
    pub fn day_numbers(&self) -> (u16, u16) {
        let day = |s: u32| u16::try_from(s / 86_400).expect("u32::MAX / 86400 = 49710 fits in u16");
        (day(self.from), day(self.to))
    }
}

const PRESETS: &str = "\"day\", \"7d\", \"30d\", \"month\", \"all\" or [start, end]";

/// Resolves `date_range` (see [`Query::date_range`](super::Query)) in `tz`
/// at `now`. Presets: `day` is today; `7d`/`30d` are the 7/30 days ending
/// with today (today included); `month` is the whole current month; `all`
/// is everything up to the end of today.
pub fn resolve_window(value: &Value, tz: &TimeZone, now: SystemTime) -> Result<Window, QueryError> {
    let now_s = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let now = Timestamp::from_second(now_s)
        .map_err(|_| invalid("date_range", "the current time is out of range"))?;
    let today = now.to_zoned_datetime(tz.clone()).date();
    let day_start = |d: Date, path: &str| -> Result<i64, QueryError> {
        d.to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp().as_second())
            .map_err(|_| invalid(path, "date out of range"))
    };
    let days_back = |n: i64| -> Result<Date, QueryError> {
        today
            .checked_sub(n.days())
            .map_err(|_| invalid("date_range", "date out of range"))
    };
    let tomorrow = today
        .tomorrow()
        .map_err(|_| invalid("date_range", "date out of range"))?;

    let (from, to) = match value {
        Value::String(preset) => {
            let p = "date_range";
            let first = match preset.as_str() {
                "day" => today,
                "7d" => days_back(6)?,
                "30d" => days_back(29)?,
                "month" => today.first_of_month(),
                "all" => {
                    return finish(0, day_start(tomorrow, p)?, tz);
                }
                other => {
                    return Err(invalid(
                        p,
                        format!("unknown range {other:?}; allowed: {PRESETS}"),
                    ));
                }
            };
            let end = if preset == "month" {
                today
                    .last_of_month()
                    .tomorrow()
                    .map_err(|_| invalid(p, "date out of range"))?
            } else {
                tomorrow
            };
            (day_start(first, p)?, day_start(end, p)?)
        }
        Value::Array(items) if items.len() == 2 => {
            let from = bound(&items[0], "date_range[0]", tz, false)?;
            let to = bound(&items[1], "date_range[1]", tz, true)?;
            if from >= to {
                return Err(invalid("date_range", "the start must come before the end"));
            }
            (from, to)
        }
        _ => {
            return Err(invalid(
                "date_range",
                format!("must be {PRESETS} with ISO dates or datetimes"),
            ));
        }
    };
    finish(from, to, tz)
}

/// One end of a custom range, as Unix seconds; `end` is exclusive (the
/// day after an end date, the second after an end datetime).
fn bound(value: &Value, path: &str, tz: &TimeZone, end: bool) -> Result<i64, QueryError> {
    let s = value
        .as_str()
        .ok_or_else(|| invalid(path, "must be an ISO date or datetime string"))?;
    let bad = || {
        invalid(
            path,
            format!(
                "{s:?} is not an ISO date (2026-03-01) or datetime (2026-03-01T10:00:00, \
                 optionally with Z or an offset)"
            ),
        )
    };
    let seconds = if !s.contains(['T', 't', ' ']) {
        let date: Date = s.parse().map_err(|_| bad())?;
        let date = if end {
            date.tomorrow().map_err(|_| bad())?
        } else {
            date
        };
        date.to_zoned_datetime(tz.clone())
            .map_err(|_| bad())?
            .timestamp()
            .as_second()
    } else {
        let instant = match s.parse::<Timestamp>() {
            Ok(t) => t,
            Err(_) => {
                let civil: DateTime = s.parse().map_err(|_| bad())?;
                civil
                    .to_zoned_datetime(tz.clone())
                    .map_err(|_| bad())?
                    .timestamp()
            }
        };
        instant.as_second() + i64::from(end)
    };
    Ok(seconds)
}

fn finish(from: i64, to: i64, tz: &TimeZone) -> Result<Window, QueryError> {
    let in_range = |s: i64| u32::try_from(s).ok();
    let (Some(from), Some(to)) = (in_range(from.max(0)), in_range(to)) else {
        return Err(invalid(
            "date_range",
            "must end by 2106-02-07 (the warehouse stores times as 32-bit Unix seconds)",
        ));
    };
    if to == 0 {
        return Err(invalid("date_range", "must end after 1970-01-01T00:00:00Z"));
    }
    Ok(Window {
        from,
        to,
        hour_aligned: from.is_multiple_of(3600)
            && to.is_multiple_of(3600)
            && whole_hour_offsets(tz, from, to),
    })
}

/// Whether `tz`'s offset is a whole number of hours at every instant of
/// `[from, to)`.
fn whole_hour_offsets(tz: &TimeZone, from: u32, to: u32) -> bool {
    let Ok(start) = Timestamp::from_second(i64::from(from)) else {
        return false;
    };
    if tz.to_offset(start).seconds() % 3600 != 0 {
        return false;
    }
    tz.following(start)
        .take_while(|t| t.timestamp().as_second() < i64::from(to))
        .all(|t| t.offset().seconds() % 3600 == 0)
}

/// `unix_seconds` as `YYYY-MM-DD HH:MM:SS` in `tz`.
pub(crate) fn format_local(unix_seconds: i64, tz: &TimeZone) -> Option<String> {
    let t = Timestamp::from_second(unix_seconds).ok()?;
    Some(
        t.to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    /// 2026-03-10T15:30:00Z, a Tuesday.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_773_156_600)
    }

    fn window(range: Value, zone: &str) -> Result<Window, QueryError> {
        resolve_window(&range, &TimeZone::get(zone).unwrap(), now())
    }

    #[test]
    fn presets_in_utc() {
        let day = 1_773_100_800; // 2026-03-10T00:00:00Z
        assert_eq!(
            window(json!("day"), "UTC").unwrap(),
            Window {
                from: day,
                to: day + 86_400,
                hour_aligned: true
            }
        );
        let w = window(json!("7d"), "UTC").unwrap();
        assert_eq!((w.from, w.to), (day - 6 * 86_400, day + 86_400));
        let w = window(json!("30d"), "UTC").unwrap();
        assert_eq!((w.from, w.to), (day - 29 * 86_400, day + 86_400));
        let w = window(json!("month"), "UTC").unwrap();
        assert_eq!((w.from, w.to), (day - 9 * 86_400, day + 22 * 86_400));
        let w = window(json!("all"), "UTC").unwrap();
        assert_eq!((w.from, w.to), (0, day + 86_400));
    }

    #[test]
    fn zones_decide_hour_alignment() {
        // Berlin is +01:00 in March before the switch on the 29th.
        let w = window(json!("day"), "Europe/Berlin").unwrap();
        assert_eq!((w.from, w.to), (1_773_097_200, 1_773_097_200 + 86_400));
        assert!(w.hour_aligned);
        // A range over the DST switch stays aligned: both offsets are whole hours.
        let w = window(json!(["2026-03-28", "2026-03-30"]), "Europe/Berlin").unwrap();
        assert_eq!(w.to - w.from, 3 * 86_400 - 3600);
        assert!(w.hour_aligned);
        // +05:30 and +05:45 never are.
        assert!(!window(json!("day"), "Asia/Kolkata").unwrap().hour_aligned);
        assert!(!window(json!("7d"), "Asia/Kathmandu").unwrap().hour_aligned);
        // Lord Howe moves by half an hour in April: aligned before, not across.
        assert!(
            window(json!(["2026-03-01", "2026-03-02"]), "Australia/Lord_Howe")
                .unwrap()
                .hour_aligned
        );
        assert!(
            !window(json!(["2026-03-01", "2026-04-30"]), "Australia/Lord_Howe")
                .unwrap()
                .hour_aligned
        );
    }

    #[test]
    fn custom_datetimes() {
        let w = window(json!(["2026-03-01T10:00:00", "2026-03-01T11:59:59"]), "UTC").unwrap();
        assert_eq!((w.from, w.to), (1_772_359_200, 1_772_359_200 + 7200));
        assert!(w.hour_aligned);
        let w = window(
            json!(["2026-03-01T10:30:00Z", "2026-03-01T14:00:00+02:00"]),
            "Asia/Tokyo",
        )
        .unwrap();
        assert_eq!((w.from, w.to), (1_772_361_000, 1_772_366_401));
        assert!(!w.hour_aligned);
    }

    #[test]
    fn errors_name_the_path() {
        let path = |r: Value| match window(r, "UTC") {
            Err(QueryError::Invalid { path, .. }) => path,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(path(json!("week")), "date_range");
        assert_eq!(path(json!(7)), "date_range");
        assert_eq!(path(json!(["2026-03-01"])), "date_range");
        assert_eq!(path(json!(["2026-13-01", "2026-03-02"])), "date_range[0]");
        assert_eq!(path(json!(["2026-03-01", 5])), "date_range[1]");
        assert_eq!(path(json!(["2026-03-02", "2026-03-01"])), "date_range");
        assert_eq!(path(json!(["2026-03-01", "2200-01-01"])), "date_range");
    }
}
