//! The `--range` argument: UTC hours `A..B`, end exclusive, and the day
//! partitions it touches.

use time::{Date, Month, OffsetDateTime};

const HOUR_S: i64 = 3_600;
const DAY_S: i64 = 86_400;

/// `[from_s, to_s)` in seconds since the epoch, both on hour boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_s: i64,
    pub to_s: i64,
}

/// One UTC day partition touched by a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    /// `YYYYMMDD`: the partition id of every day-partitioned table.
    pub id: u32,
    pub start_s: i64,
    pub end_s: i64,
}

impl Range {
    /// Parses `YYYY-MM-DDTHH..YYYY-MM-DDTHH` (`THH` may be left out: 00).
    pub fn parse(text: &str) -> Result<Range, String> {
        let (a, b) = text.split_once("..").ok_or_else(|| {
            format!("--range `{text}`: expected START..END, e.g. 2026-11-01T00..2026-11-03T00")
        })?;
        let range = Range {
            from_s: parse_hour(a)?,
            to_s: parse_hour(b)?,
        };
        if range.from_s >= range.to_s {
            return Err(format!("--range `{text}`: the end must be after the start"));
        }
        if range.from_s < 0 || range.to_s > i64::from(u32::MAX) {
            return Err(format!(
                "--range `{text}`: outside what the warehouse can hold (1970..2106)"
            ));
        }
        Ok(range)
    }

    /// The UTC days the range touches, in order.
    pub fn days(&self) -> Vec<Day> {
        let mut days = Vec::new();
        let mut start = self.from_s.div_euclid(DAY_S) * DAY_S;
        while start < self.to_s {
            days.push(Day {
                id: day_id(start),
                start_s: start,
                end_s: start + DAY_S,
            });
            start += DAY_S;
        }
        days
    }
}

/// `YYYYMMDD` of the UTC day holding `seconds`.
pub fn day_id(seconds: i64) -> u32 {
    let date = OffsetDateTime::from_unix_timestamp(seconds)
        .map_or(OffsetDateTime::UNIX_EPOCH.date(), |t| t.date());
    (date.year() as u32) * 10_000 + u32::from(u8::from(date.month())) * 100 + u32::from(date.day())
}

fn parse_hour(text: &str) -> Result<i64, String> {
    if text.contains(':') {
        return parse_rfc3339_hour(text);
    }
    let bad = || format!("`{text}` is not a UTC hour like 2026-11-01T00 or 2026-11-01T00:00:00Z");
    let (date, hour) = match text.split_once('T') {
        Some((d, h)) => (d, h.parse::<u8>().map_err(|_| bad())?),
        None => (text, 0),
    };
    if hour > 23 {
        return Err(bad());
    }
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = Month::try_from(month).map_err(|_| bad())?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(date.midnight().assume_utc().unix_timestamp() + i64::from(hour) * HOUR_S)
}

/// `2026-11-01T05:00:00Z` or with an offset (`…+01:00`); must fall on a
/// whole UTC hour.
fn parse_rfc3339_hour(text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))?;
    let seconds = t.unix_timestamp();
    if seconds % HOUR_S != 0 || t.nanosecond() != 0 {
        return Err(format!(
            "`{text}` is not on a whole UTC hour: reprocessing works on hours"
        ));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hours_and_lists_days() {
        let r = Range::parse("2026-11-01T00..2026-11-03T00").unwrap();
        assert_eq!(r.to_s - r.from_s, 2 * DAY_S);
        let days: Vec<u32> = r.days().iter().map(|d| d.id).collect();
        assert_eq!(days, vec![20261101, 20261102]);
        let r = Range::parse("2026-11-01T22..2026-11-02T01").unwrap();
        let days: Vec<u32> = r.days().iter().map(|d| d.id).collect();
        assert_eq!(days, vec![20261101, 20261102]);
        assert_eq!(
            Range::parse("2026-11-01..2026-11-02").unwrap().days().len(),
            1
        );
        let rfc = Range::parse("2026-11-01T05:00:00Z..2026-11-01T08:00:00+01:00").unwrap();
        assert_eq!(rfc, Range::parse("2026-11-01T05..2026-11-01T07").unwrap());
    }

    #[test]
    fn refuses_bad_ranges() {
        for bad in [
            "2026-11-01T00",
            "2026-11-03T00..2026-11-01T00",
            "2026-11-01T00..2026-11-01T00",
            "2026-11-01T24..2026-11-02T00",
            "2026-13-01T00..2026-11-02T00",
            "yesterday..today",
            "2026-11-01T00:30:00Z..2026-11-02T00:00:00Z",
            "2026-11-01T00:00:00..2026-11-02T00:00:00Z",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
    }
}
