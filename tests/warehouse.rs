//! Reading a test warehouse back: a day's rows of `events` and of every
//! rollup, finalized, to compare two warehouses.

use std::collections::BTreeMap;

use hourglass_testkit::TestDb;

/// The result rows of `sql` as TSV lines, sorted.
pub fn rows(db: &TestDb, sql: &str) -> Vec<String> {
    let text = db
        .query(&format!("{sql} FORMAT TSV"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Everything of day `day` (`cond` further restricts it, in terms of the
/// table's own time column `t`): events rows and each rollup, finalized.
pub fn dump(db: &TestDb, day: u32, cond: &str) -> BTreeMap<&'static str, Vec<String>> {
    let events = format!(
        "SELECT * FROM events WHERE toYYYYMMDD(ts) = {day} AND ({})",
        cond.replace("{t}", "ts")
    );
    let hourly = |table: &str, dims: &str| {
        format!(
            "SELECT site_id, hour, {dims} countIfMerge(pageviews), countMerge(events), \
             uniqMerge(visitors), uniqMerge(visits) FROM {table} \
             WHERE toYYYYMMDD(hour) = {day} AND ({}) GROUP BY site_id, hour {}",
            cond.replace("{t}", "hour"),
            if dims.is_empty() {
                String::new()
            } else {
                format!(", {}", dims.trim_end_matches(", "))
            }
        )
    };
    // A daily row covers the whole day: `cond` applies to its start.
    let daily = |table: &str, keys: &str| {
        format!(
            "SELECT {keys}, countIfMerge(pageviews), countMerge(events), \
             uniqHLL12Merge(visitors), uniqHLL12Merge(visits) FROM {table} \
             WHERE toYYYYMMDD(day) = {day} AND ({}) GROUP BY {keys}",
            cond.replace("{t}", "day")
        )
    };
    let sessions = format!(
        "SELECT site_id, session_id, day, anyMerge(visitor), minMerge(started_at), \
         maxMerge(ended_at), argMinMerge(entry_page), argMaxMerge(exit_page), \
         countIfMerge(pageviews), countMerge(events), countIfMerge(interactive_events), \
         argMinMerge(entry_referrer_source), argMinMerge(entry_channel), \
         argMinMerge(entry_utm_source), argMinMerge(entry_country), argMinMerge(entry_device), \
         argMinMerge(entry_browser), argMinMerge(entry_os) FROM sessions \
         WHERE toYYYYMMDD(day) = {day} AND ({}) GROUP BY site_id, session_id, day",
        cond.replace("{t}", "toDateTime(day)")
    );
    BTreeMap::from([
        ("events", rows(db, &events)),
        ("site_hourly", rows(db, &hourly("site_hourly", ""))),
        (
            "pages_hourly",
            rows(db, &hourly("pages_hourly", "hostname, pathname, ")),
        ),
        (
            "sources_hourly",
            rows(
                db,
                &hourly(
                    "sources_hourly",
                    "referrer_source, channel, utm_source, utm_medium, utm_campaign, country, device, browser, os, ",
                ),
            ),
        ),
        ("sessions", rows(db, &sessions)),
        ("site_daily", rows(db, &daily("site_daily", "site_id, day"))),
        (
            "dimensions_daily",
            rows(
                db,
                &daily("dimensions_daily", "site_id, day, dimension, value"),
            ),
        ),
    ])
}
