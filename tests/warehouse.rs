//! Reading a test warehouse back: a day's rows of `events` and of every
//! rollup, finalized, to compare two warehouses or a warehouse with its own
//! rollups recomputed from `events`.

use std::collections::BTreeMap;

use hourglass_testkit::TestDb;
use hourglass_warehouse::{Warehouse, WarehouseConfig};

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
    ])
}

/// Asserts that every rollup of `day` equals the rollup rebuilt from the
/// day's `events` with the views' own SELECTs (in a scratch copy).
pub fn assert_rollups_match_events(db: &TestDb, day: u32) {
    let config = WarehouseConfig {
        url: db.url.clone(),
        database: db.name.clone(),
        ..WarehouseConfig::default()
    };
    let scratch = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async {
            let live = Warehouse::new(&config).expect("a warehouse");
            let scratch = live.create_day_staging(day).await.expect("scratch tables");
            let copy = format!(
                "INSERT INTO `{}`.events SELECT * FROM `{}`.events WHERE toYYYYMMDD(ts) = {day}",
                scratch.database(),
                db.name
            );
            db.query(&copy).expect("copy events");
            scratch.rebuild_rollups(day).await.expect("rebuild rollups");
            scratch.database().to_owned()
        });
    let rebuilt = TestDb {
        url: db.url.clone(),
        name: scratch,
    };
    let (live, expected) = (dump(db, day, "1"), dump(&rebuilt, day, "1"));
    db.query(&format!("DROP DATABASE `{}`", rebuilt.name))
        .expect("drop scratch");
    for table in ["site_hourly", "pages_hourly", "sources_hourly", "sessions"] {
        assert_eq!(
            live[table], expected[table],
            "{table} of day {day} differs from the rollup recomputed from events"
        );
    }
    assert!(!live["events"].is_empty() || expected["site_hourly"].is_empty());
}
