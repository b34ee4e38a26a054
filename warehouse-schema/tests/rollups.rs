//! The reconciliation test: 100,000 deterministic synthetic events loaded
//! through `Warehouse::insert_events`, then every rollup must agree
//! *exactly* with `events` for every (site, hour) and every site's sessions,
//! before and after background merges are forced.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use hourglass_model::{BatchId, Event, Prop};
use hourglass_warehouse::{HourlyCounts, HourlyRollup, SessionCounts, TimeRange};

const SITES: u64 = 20;
const HOURS: u64 = 48;
const EVENTS: usize = 100_000;
const BATCHES: usize = 4;
/// 2026-03-01T00:00:00Z: the 48 hours span two UTC days.
const START_S: i64 = 1_772_323_200;

/// SplitMix64: a tiny deterministic generator, so the data (and any
/// failure) is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn id(parts: &[u64]) -> u64 {
    let mut m = SplitMix(
        parts
            .iter()
            .fold(0xC0FFEE, |acc, p| acc.rotate_left(17) ^ p),
    );
    m.next()
}

const PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/docs",
    "/docs/install",
    "/docs/api",
    "/blog",
    "/blog/launch",
    "/blog/q1",
    "/about",
    "/contact",
    "/signup",
    "/login",
    "/features",
    "/careers",
    "/privacy",
    "/terms",
];
const SOURCES: &[(&str, &str, &str)] = &[
    ("", "Direct", ""),
    ("Google", "Organic Search", "https://www.google.com/"),
    ("Bing", "Organic Search", "https://www.bing.com/"),
    ("Twitter", "Organic Social", "https://t.co/abc"),
    ("Newsletter", "Email", ""),
    ("Hacker News", "Referral", "https://news.ycombinator.com/"),
];
const UTM_SOURCES: &[&str] = &["", "", "", "newsletter", "twitter", "partner"];
const UTM_MEDIUMS: &[&str] = &["", "email", "social", "cpc"];
const UTM_CAMPAIGNS: &[&str] = &["", "", "spring", "launch"];
const COUNTRIES: &[&str] = &["US", "DE", "FR", "GB", "JP", "BR", "IN", ""];
const DEVICES: &[&str] = &["Desktop", "Mobile", "Tablet"];
const BROWSERS: &[&str] = &["Chrome", "Firefox", "Safari", "Edge"];
const OSES: &[&str] = &["Windows", "macOS", "Linux", "iOS", "Android"];

/// Event `i` belongs to site `i % 20` and hour `(i / 20) % 48`, so every
/// (site, hour) gets 104 or 105 events. A visitor's session lasts a
/// two-hour block `hour.div_ceil(2)`, so the block of hours 23 and 24
/// crosses midnight.
fn synthetic_events() -> Vec<Event> {
    let mut rng = SplitMix(0x5EED);
    (0..EVENTS)
        .map(|i| {
            let site = i as u64 % SITES;
            let hour = (i as u64 / SITES) % HOURS;
            let visitor = rng.next() % 120;
            let ts_s = START_S + (hour * 3600 + rng.next() % 3600) as i64;
            let (referrer_source, channel, referrer) =
                SOURCES[(rng.next() % SOURCES.len() as u64) as usize];
            let kind = rng.next() % 100;
            let (name, interactive) = match kind {
                0..75 => ("pageview", true),
                75..85 => ("click", true),
                85..95 => ("signup", true),
                _ => ("scroll", false),
            };
            let props = if name == "signup" {
                vec![
                    Prop {
                        key: "plan".into(),
                        value: rng.pick(&["free", "pro", "team"]).into(),
                    },
                    Prop {
                        key: "seats".into(),
                        value: (rng.next() % 20).to_string(),
                    },
                ]
            } else {
                Vec::new()
            };
            Event {
                ts_ms: ts_s * 1000 + (rng.next() % 1000) as i64,
                received_at_ms: ts_s * 1000 + 1500,
                site_id: format!("site-{site:02}"),
                name: name.into(),
                visitor_id: id(&[site, visitor]),
                session_id: id(&[site, visitor, hour.div_ceil(2)]),
                hostname: if rng.next().is_multiple_of(10) {
                    "blog.example.com"
                } else {
                    "www.example.com"
                }
                .into(),
                pathname: rng.pick(PAGES).into(),
                referrer: referrer.into(),
                referrer_source: referrer_source.into(),
                channel: channel.into(),
                utm_source: rng.pick(UTM_SOURCES).into(),
                utm_medium: rng.pick(UTM_MEDIUMS).into(),
                utm_campaign: rng.pick(UTM_CAMPAIGNS).into(),
                country: rng.pick(COUNTRIES).into(),
                device: rng.pick(DEVICES).into(),
                browser: rng.pick(BROWSERS).into(),
                os: rng.pick(OSES).into(),
                props,
                revenue_micros: if name == "signup" { 9_990_000 } else { 0 },
                revenue_currency: if name == "signup" { "EUR" } else { "" }.into(),
                interactive,
                hit_index: (i % 1000) as u32,
                ..Default::default()
            }
        })
        .collect()
}

#[derive(Default)]
struct Expected {
    pageviews: u64,
    events: u64,
    visitors: BTreeSet<u64>,
    sessions: BTreeSet<u64>,
}

#[test]
fn rollups_agree_exactly_with_events_for_100k_events() {
    let events = synthetic_events();

    // What the data holds, computed here without any ClickHouse function.
    let mut per_hour: BTreeMap<(String, u32), Expected> = BTreeMap::new();
    let mut per_site: BTreeMap<String, Expected> = BTreeMap::new();
    let mut session_days: BTreeMap<(String, u64), BTreeSet<i64>> = BTreeMap::new();
    for e in &events {
        let ts = e.ts_ms / 1000;
        let hour = u32::try_from(ts - ts % 3600).unwrap();
        let pageview = u64::from(e.name == "pageview");
        for x in [
            per_hour.entry((e.site_id.clone(), hour)).or_default(),
            per_site.entry(e.site_id.clone()).or_default(),
        ] {
            x.pageviews += pageview;
            x.events += 1;
            x.visitors.insert(e.visitor_id);
            x.sessions.insert(e.session_id);
        }
        session_days
            .entry((e.site_id.clone(), e.session_id))
            .or_default()
            .insert(ts / 86_400);
    }
    let expected_hourly: Vec<HourlyCounts> = per_hour
        .iter()
        .map(|((site_id, hour), x)| HourlyCounts {
            site_id: site_id.clone(),
            hour: *hour,
            pageviews: x.pageviews,
            events: x.events,
            visitors: x.visitors.len() as u64,
            visits: x.sessions.len() as u64,
        })
        .collect();
    let crossing_midnight = session_days.values().filter(|days| days.len() == 2).count();
    assert_eq!(
        expected_hourly.len(),
        (SITES * HOURS) as usize,
        "every (site, hour) has events"
    );
    assert!(
        crossing_midnight > 100,
        "the data must have sessions crossing midnight"
    );

    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);

    // Load in batches, each touching both day partitions.
    let per_batch = EVENTS.div_ceil(BATCHES);
    for (n, chunk) in events.chunks(per_batch).enumerate() {
        let batch = BatchId {
            edge_id: "edge-test".into(),
            seq: n as u64 + 1,
        };
        let rows = rt
            .block_on(wh.insert_events(&batch, "ps-test-1", chunk))
            .unwrap();
        assert_eq!(rows, chunk.len() as u64);
    }
    let by_batch = db
        .query(
            "SELECT batch_id, count() FROM events GROUP BY batch_id ORDER BY batch_id FORMAT TSV",
        )
        .unwrap();
    assert_eq!(
        by_batch,
        "edge-test-00000000000000000001\t25000\nedge-test-00000000000000000002\t25000\n\
         edge-test-00000000000000000003\t25000\nedge-test-00000000000000000004\t25000\n"
    );

    // `events` itself holds exactly the generated data (uniq is exact at
    // these cardinalities, far below its 65,536-element exact mode).
    let from_events = rt
        .block_on(wh.hourly_counts_from_events(TimeRange::ALL))
        .unwrap();
    assert_eq!(from_events.len(), expected_hourly.len());
    assert_eq!(from_events, expected_hourly);

    let expected_sessions: Vec<(String, u64, u64)> = per_site
        .iter()
        .map(|(site, x)| (site.clone(), x.sessions.len() as u64, x.pageviews))
        .collect();
    let brief = |v: &[SessionCounts]| -> Vec<(String, u64, u64)> {
        v.iter()
            .map(|s| (s.site_id.clone(), s.sessions, s.pageviews))
            .collect()
    };
    let sessions_from_events = rt
        .block_on(wh.session_counts_from_events(TimeRange::ALL))
        .unwrap();
    assert_eq!(brief(&sessions_from_events), expected_sessions);

    let compare = |when: &str| {
        let mut compared = 0;
        for rollup in HourlyRollup::ALL {
            let from_rollup = rt
                .block_on(wh.hourly_counts_from_rollup(rollup, TimeRange::ALL))
                .unwrap();
            assert_eq!(
                from_rollup.len(),
                from_events.len(),
                "{} {when}",
                rollup.table()
            );
            for (r, e) in from_rollup.iter().zip(&from_events) {
                assert_eq!(r, e, "{} {when}", rollup.table());
            }
            compared += from_rollup.len();
        }
        let from_sessions = rt
            .block_on(wh.session_counts_from_rollup(TimeRange::ALL))
            .unwrap();
        assert_eq!(from_sessions, sessions_from_events, "sessions {when}");
        assert_eq!(brief(&from_sessions), expected_sessions, "sessions {when}");
        compared
    };

    let compared = compare("as inserted");
    assert_eq!(compared, 3 * (SITES * HOURS) as usize);

    // A session crossing midnight is one row per day partition.
    let split = db
        .query(
            "SELECT count() FROM (SELECT site_id, session_id FROM sessions \
             GROUP BY site_id, session_id HAVING uniqExact(day) = 2) FORMAT TSV",
        )
        .unwrap();
    assert_eq!(split.trim(), crossing_midnight.to_string());

    // Merged states give the same answers as unmerged ones.
    for table in ["site_hourly", "pages_hourly", "sources_hourly", "sessions"] {
        db.query(&format!("OPTIMIZE TABLE {table} FINAL")).unwrap();
    }
    assert_eq!(compare("after OPTIMIZE FINAL"), compared);

    let totals = |v: &[HourlyCounts]| {
        (
            v.iter().map(|h| h.pageviews).sum::<u64>(),
            v.iter().map(|h| h.events).sum::<u64>(),
        )
    };
    let (pageviews, all) = totals(&from_events);
    let sessions: u64 = sessions_from_events.iter().map(|s| s.sessions).sum();
    println!(
        "compared {compared} (site, hour) rows over {} rollups: {pageviews} pageviews, {all} events; \
         {} sites' sessions ({sessions} sessions, {crossing_midnight} crossing midnight)",
        HourlyRollup::ALL.len(),
        sessions_from_events.len(),
    );
    assert_eq!(all, EVENTS as u64);
}

/// The loader's recovery rebuilds a day's rollups from `events` with
/// `REPLACE PARTITION` from staging: afterwards they agree with `events`
/// again, and a reader polling meanwhile never sees the day empty.
#[test]
fn replace_rollups_rebuilds_days_and_readers_never_see_them_empty() {
    let events = synthetic_events();
    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);
    let batch = BatchId {
        edge_id: "edge-test".into(),
        seq: 1,
    };
    rt.block_on(wh.insert_events(&batch, "ps-test-1", &events))
        .unwrap();
    // Rows the rollups counted but `events` no longer holds (a mutation
    // does not reach the views), as after an interrupted load's delete.
    db.query("ALTER TABLE events DELETE WHERE hit_index < 100")
        .unwrap();
    while rt.block_on(wh.events_mutations_running()).unwrap() > 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let rows = |table: &str| -> u64 {
        let sql = if table == "events" {
            "SELECT count() FROM events FORMAT TSV".to_string()
        } else {
            format!("SELECT countMerge(events) FROM {table} FORMAT TSV")
        };
        db.query(&sql).unwrap().trim().parse().unwrap()
    };
    assert!(rows("site_hourly") > rows("events"));

    let done = std::sync::atomic::AtomicBool::new(false);
    let days = [20_260_301u32, 20_260_302];
    let (polls, emptied) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut polls, mut emptied) = (0, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for day in days {
                    for table in ["site_hourly", "pages_hourly", "sources_hourly"] {
                        let sql = format!(
                            "SELECT countMerge(events) FROM {table} \
                             WHERE toYYYYMMDD(hour) = {day} FORMAT TSV"
                        );
                        let n: u64 = db.query(&sql).unwrap().trim().parse().unwrap();
                        polls += 1;
                        if n == 0 {
                            emptied.push((table, day));
                        }
                    }
                }
            }
            (polls, emptied)
        });
        for day in days {
            rt.block_on(wh.replace_rollups(day)).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(
        emptied.is_empty(),
        "a reader saw a day's rollup empty during the rebuild: {emptied:?}"
    );
    assert!(polls > 0);

    let from_events = rt
        .block_on(wh.hourly_counts_from_events(TimeRange::ALL))
        .unwrap();
    for rollup in HourlyRollup::ALL {
        let from_rollup = rt
            .block_on(wh.hourly_counts_from_rollup(rollup, TimeRange::ALL))
            .unwrap();
        assert_eq!(from_rollup, from_events, "{}", rollup.table());
    }
    assert_eq!(
        rt.block_on(wh.session_counts_from_rollup(TimeRange::ALL))
            .unwrap(),
        rt.block_on(wh.session_counts_from_events(TimeRange::ALL))
            .unwrap()
    );
    let staging = db
        .query("SELECT count() FROM system.databases WHERE position(name, '_rb_') > 0 FORMAT TSV")
        .unwrap();
    assert_eq!(staging.trim(), "0", "staging databases are dropped");
    println!("rollups of {days:?} rebuilt; {polls} reads meanwhile, none saw a day empty");
}
