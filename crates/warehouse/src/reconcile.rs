//! Reconciliation: the same figures computed from the rollups and from
//! `events`, so recovery, reprocess and the tests can prove a rollup agrees
//! with the rows it was fed from.
//!
//! Table names in this SQL are constants; times are bound values.

use serde::Deserialize;

use crate::{Warehouse, WarehouseError};

/// A half-open interval of Unix seconds, UTC: `from <= t < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: u32,
    pub to: u32,
}

impl TimeRange {
    /// Everything a `DateTime` can hold.
    pub const ALL: TimeRange = TimeRange {
        from: 0,
        to: u32::MAX,
    };

    /// Day number (days since 1970-01-01) of `from`. Bound as a `UInt16`,
    /// which `toDate` reads as a day number on 18.16 and current servers
    /// alike; `toDate(toDateTime(x))` is wrong on 18.16 past 2105.
    fn first_day(self) -> u16 {
        day_number(self.from)
    }

    /// Day number of the last second in the range.
    fn last_day(self) -> u16 {
        day_number(self.to.saturating_sub(1))
    }
}

fn day_number(unix_seconds: u32) -> u16 {
    u16::try_from(unix_seconds / 86_400).expect("u32::MAX / 86400 = 49710 fits in u16")
}

/// An hourly rollup fed from `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HourlyRollup {
    /// `site_hourly`: per-site totals.
    Site,
    /// `pages_hourly`: per hostname and pathname.
    Pages,
    /// `sources_hourly`: per source, channel, UTM, country, device, browser, OS.
    Sources,
}

impl HourlyRollup {
    pub const ALL: [HourlyRollup; 3] = [
        HourlyRollup::Site,
        HourlyRollup::Pages,
        HourlyRollup::Sources,
    ];

    pub fn table(self) -> &'static str {
        match self {
            HourlyRollup::Site => "site_hourly",
            HourlyRollup::Pages => "pages_hourly",
            HourlyRollup::Sources => "sources_hourly",
        }
    }
}

/// Totals of one site in one hour.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct HourlyCounts {
    pub site_id: String,
    /// Start of the hour, Unix seconds.
    pub hour: u32,
    pub pageviews: u64,
    pub events: u64,
    /// `uniq(visitor_id)`.
    pub visitors: u64,
    /// `uniq(session_id)`.
    pub visits: u64,
}

/// Session figures of one site.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct SessionCounts {
    pub site_id: String,
    /// Distinct sessions.
    pub sessions: u64,
    pub pageviews: u64,
    /// Sessions with at most one interactive event.
    pub bounces: u64,
    /// Sum over sessions of (last event time − first event time).
    pub duration_seconds: u64,
}

impl Warehouse {
    /// Per (site, hour) totals computed from `events`.
    pub async fn hourly_counts_from_events(
        &self,
        range: TimeRange,
    ) -> Result<Vec<HourlyCounts>, WarehouseError> {
        self.db
            .query(
                "SELECT site_id, toStartOfHour(ts) AS hour, countIf(name = 'pageview'), count(), \
                 uniq(visitor_id), uniq(session_id) \
                 FROM events WHERE ts >= toDateTime(?) AND ts < toDateTime(?) \
                 GROUP BY site_id, hour ORDER BY site_id, hour",
            )
            .bind(range.from)
            .bind(range.to)
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse(
                "computing hourly counts from events",
            ))
    }

    /// Per (site, hour) totals read from `rollup`, merged over its other
    /// dimensions.
    pub async fn hourly_counts_from_rollup(
        &self,
        rollup: HourlyRollup,
        range: TimeRange,
    ) -> Result<Vec<HourlyCounts>, WarehouseError> {
        let sql = format!(
            "SELECT site_id, hour, countIfMerge(pageviews), countMerge(events), \
             uniqMerge(visitors), uniqMerge(visits) \
             FROM {} WHERE hour >= toDateTime(?) AND hour < toDateTime(?) \
             GROUP BY site_id, hour ORDER BY site_id, hour",
            rollup.table()
        );
        self.db
            .query(&sql)
            .bind(range.from)
            .bind(range.to)
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "reading hourly counts from {}",
                rollup.table()
            )))
    }

    /// Per-site session figures computed from `events` with
    /// `from <= ts < to`.
    pub async fn session_counts_from_events(
        &self,
        range: TimeRange,
    ) -> Result<Vec<SessionCounts>, WarehouseError> {
        self.db
            .query(
                "SELECT site_id, count(), sum(pv), countIf(interactions <= 1), sum(duration) FROM ( \
                   SELECT site_id, session_id, countIf(name = 'pageview') AS pv, \
                   countIf(interactive = 1) AS interactions, \
                   toUInt64(max(ts) - min(ts)) AS duration \
                   FROM events WHERE ts >= toDateTime(?) AND ts < toDateTime(?) \
                   GROUP BY site_id, session_id \
                 ) GROUP BY site_id ORDER BY site_id",
            )
            .bind(range.from)
            .bind(range.to)
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse("computing session counts from events"))
    }

    /// Per-site session figures read from the `sessions` rollup, for the
    /// UTC days `range` touches. The rollup is partitioned by day, so this
    /// equals [`Warehouse::session_counts_from_events`] for ranges that are
    /// whole UTC days. A session crossing midnight has one row per day;
    /// they are combined here by grouping on the session.
    pub async fn session_counts_from_rollup(
        &self,
        range: TimeRange,
    ) -> Result<Vec<SessionCounts>, WarehouseError> {
        self.db
            .query(
                "SELECT site_id, count(), sum(pv), countIf(interactions <= 1), sum(duration) FROM ( \
                   SELECT site_id, session_id, countIfMerge(pageviews) AS pv, \
                   countIfMerge(interactive_events) AS interactions, \
                   toUInt64(maxMerge(ended_at) - minMerge(started_at)) AS duration \
                   FROM sessions WHERE day >= toDate(?) AND day <= toDate(?) \
                   GROUP BY site_id, session_id \
                 ) GROUP BY site_id ORDER BY site_id",
            )
            .bind(range.first_day())
            .bind(range.last_day())
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse("reading session counts from sessions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_bounds() {
        let march_1 = 1_772_323_200; // 2026-03-01T00:00:00Z, day 20513
        let r = TimeRange {
            from: march_1,
            to: march_1 + 2 * 86_400,
        };
        assert_eq!((r.first_day(), r.last_day()), (20513, 20514));
        assert_eq!(
            (TimeRange::ALL.first_day(), TimeRange::ALL.last_day()),
            (0, 49710)
        );
        let empty = TimeRange { from: 0, to: 0 };
        assert_eq!((empty.first_day(), empty.last_day()), (0, 0));
    }
}
