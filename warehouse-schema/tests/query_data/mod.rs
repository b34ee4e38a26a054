//! The generated dataset and the random query generator shared by the
//! planner tests (`query_planner.rs` on 18.16, `query_planner_chdb.rs` on
//! current ClickHouse).
#![allow(dead_code)] // each test file uses a different part

use hourglass_model::{BatchId, Event, Prop};
use hourglass_warehouse::Query;
use proptest::prelude::*;
use serde_json::{Value, json};

/// 2026-03-01T00:00:00Z.
pub const MARCH_1: i64 = 1_772_323_200;

/// A batch id for test loads.
pub fn batch(seq: u64) -> BatchId {
    BatchId {
        edge_id: "edge-query".into(),
        seq,
    }
}

/// A query from JSON the test wrote.
pub fn query(v: Value) -> Query {
    serde_json::from_value(v).expect("a well-formed query")
}

/// SplitMix64, so the dataset is the same on every run.
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

pub const SITES: &[&str] = &["s0", "s1", "s2", "s3"];
/// Events of the property test on 18.16.
pub const EVENTS: usize = 20_000;
/// Three UTC days from March 1.
pub const HOURS: u64 = 72;
/// "now" for the property test: 2026-03-03T12:00:00Z.
pub const NOW_S: i64 = MARCH_1 + 2 * 86_400 + 12 * 3600;

const PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/docs",
    "/docs/api",
    "/blog",
    "/blog/launch",
    "/about",
];
const NAMES: &[&str] = &["pageview", "pageview", "pageview", "click", "signup"];
const SOURCES: &[(&str, &str, &str)] = &[
    ("", "Direct", ""),
    ("Google", "Organic Search", "https://www.google.com/"),
    ("Bing", "Organic Search", "https://www.bing.com/"),
    ("Twitter", "Organic Social", "https://t.co/x"),
    ("Newsletter", "Email", ""),
];
const UTM_SOURCES: &[&str] = &["", "", "newsletter", "partner"];
const UTM_MEDIUMS: &[&str] = &["", "email", "cpc"];
const UTM_CAMPAIGNS: &[&str] = &["", "spring", "launch"];
const PLACES: &[(&str, &str, &str)] = &[
    ("DE", "Berlin", "Berlin"),
    ("DE", "Bavaria", "Munich"),
    ("FR", "Ile-de-France", "Paris"),
    ("US", "California", "San Francisco"),
    ("JP", "Tokyo", "Tokyo"),
    ("", "", ""),
];
const DEVICES: &[&str] = &["Desktop", "Mobile", "Tablet"];
const BROWSERS: &[&str] = &["Chrome", "Firefox", "Safari"];
const OSES: &[&str] = &["Windows", "macOS", "iOS", "Android"];
const PLANS: &[&str] = &["free", "pro", "team"];

/// `count` (at most 259,200) deterministic events over four sites and
/// three UTC days. No two events share a second, so a session's first
/// and last event (entry/exit page, entry attributes) are never a tie.
pub fn generated_events(count: usize) -> Vec<Event> {
    let seconds = HOURS * 3600;
    assert!(count as u64 <= seconds, "one event per second at most");
    let mut rng = SplitMix(0xDA7A);
    (0..count as u64)
        .map(|i| {
            let site = rng.next() % SITES.len() as u64;
            // 104,729 is prime, so coprime to the 259,200 seconds:
            // i -> second is one-to-one and spreads events evenly.
            let second = (i * 104_729) % seconds;
            let hour = second / 3600;
            let visitor = rng.next() % 400;
            let ts_s = MARCH_1 + second as i64;
            let (source, channel, referrer) = SOURCES[(rng.next() % SOURCES.len() as u64) as usize];
            let (country, region, city) = PLACES[(rng.next() % PLACES.len() as u64) as usize];
            let name = rng.pick(NAMES);
            let props = if name == "signup" {
                vec![Prop {
                    key: "plan".into(),
                    value: rng.pick(PLANS).into(),
                }]
            } else {
                Vec::new()
            };
            Event {
                ts_ms: ts_s * 1000,
                received_at_ms: ts_s * 1000,
                site_id: SITES[site as usize].into(),
                name: name.into(),
                visitor_id: 1_000 * site + visitor,
                // A visitor's session lasts a three-hour block.
                session_id: 1_000_000 * site + 1_000 * (hour / 3) + visitor,
                hostname: "example.com".into(),
                pathname: rng.pick(PAGES).into(),
                referrer: referrer.into(),
                referrer_source: source.into(),
                channel: channel.into(),
                utm_source: rng.pick(UTM_SOURCES).into(),
                utm_medium: rng.pick(UTM_MEDIUMS).into(),
                utm_campaign: rng.pick(UTM_CAMPAIGNS).into(),
                country: country.into(),
                region: region.into(),
                city: city.into(),
                device: rng.pick(DEVICES).into(),
                browser: rng.pick(BROWSERS).into(),
                os: rng.pick(OSES).into(),
                props,
                interactive: true,
                ..Default::default()
            }
        })
        .collect()
}

/// Attributes a query may use, with values to filter on ("zzz" matches
/// nothing), grouped by the rollup that has them.
pub fn attribute_values(name: &str) -> Vec<&'static str> {
    let mut v: Vec<&str> = match name {
        "event:page" | "visit:entry_page" | "visit:exit_page" => PAGES.to_vec(),
        "event:name" => NAMES.to_vec(),
        "visit:source" => SOURCES.iter().map(|s| s.0).collect(),
        "visit:channel" => SOURCES.iter().map(|s| s.1).collect(),
        "visit:referrer" => SOURCES.iter().map(|s| s.2).collect(),
        "visit:utm_source" => UTM_SOURCES.to_vec(),
        "visit:utm_medium" => UTM_MEDIUMS.to_vec(),
        "visit:utm_campaign" => UTM_CAMPAIGNS.to_vec(),
        "visit:country" => PLACES.iter().map(|p| p.0).collect(),
        "visit:region" => PLACES.iter().map(|p| p.1).collect(),
        "visit:city" => PLACES.iter().map(|p| p.2).collect(),
        "visit:device" => DEVICES.to_vec(),
        "visit:browser" => BROWSERS.to_vec(),
        "visit:os" => OSES.to_vec(),
        "event:props:plan" => PLANS.to_vec(),
        other => panic!("no values for {other}"),
    };
    v.push("zzz");
    v
}

const PAGES_FAMILY: &[&str] = &["event:page"];
const SOURCES_FAMILY: &[&str] = &[
    "visit:source",
    "visit:channel",
    "visit:utm_source",
    "visit:utm_medium",
    "visit:utm_campaign",
    "visit:country",
    "visit:device",
    "visit:browser",
    "visit:os",
];
const EVENTS_ONLY: &[&str] = &[
    "event:name",
    "visit:referrer",
    "visit:region",
    "visit:city",
    "event:props:plan",
];
const METRICS: &[&str] = &[
    "visitors",
    "visits",
    "pageviews",
    "events",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
];
const SESSION_METRICS: &[&str] = &["bounce_rate", "visit_duration"];
/// What a session query may group and filter on.
const SESSION_FAMILY: &[&str] = &[
    "visit:entry_page",
    "visit:exit_page",
    "visit:source",
    "visit:channel",
    "visit:utm_source",
    "visit:utm_medium",
    "visit:utm_campaign",
    "visit:country",
    "visit:device",
    "visit:browser",
    "visit:os",
];
const TIMES: &[&str] = &["time:hour", "time:day", "time:week", "time:month"];
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Asia/Kolkata",
];

fn ranges() -> Vec<Value> {
    vec![
        json!("day"),
        json!("7d"),
        json!("30d"),
        json!("month"),
        json!("all"),
        json!(["2026-03-01", "2026-03-02"]),
        json!(["2026-03-02", "2026-03-02"]),
        json!(["2026-03-01T06:00:00", "2026-03-02T17:59:59"]),
        json!(["2026-03-01T06:30:00", "2026-03-02T18:15:00"]),
        json!(["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"]),
        // Whole UTC days in any zone.
        json!(["2026-03-01T00:00:00Z", "2026-03-02T23:59:59Z"]),
    ]
}

/// One leaf filter: (op, attribute index, value indices).
type Leaf = (usize, usize, Vec<usize>);

/// The random choices a query is made of; [`to_query`] turns them into
/// a valid query. Plain indices, so proptest shrinks them toward 0.
#[derive(Debug, Clone)]
pub struct Choices {
    /// 0: time only, 1: pages attributes, 2: one sources attribute, 3:
    /// any per-event attributes; 4 and 5: a session query.
    family: usize,
    site: usize,
    metrics: Vec<&'static str>,
    time: usize,
    dimensions: Vec<usize>,
    /// (shape, first leaf, second leaf): shape 0 leaf, 1 not, 2 and, 3 or.
    filters: Vec<(usize, Leaf, Leaf)>,
    range: usize,
    zone: usize,
    order: Option<(usize, bool)>,
    limit: u64,
    offset: u64,
}

fn leaf() -> impl Strategy<Value = Leaf> {
    (
        0..4usize,
        any::<usize>(),
        prop::collection::vec(any::<usize>(), 1..3),
    )
}

pub fn choices() -> impl Strategy<Value = Choices> {
    (
        0..6usize,
        0..SITES.len() + 1,
        prop::sample::subsequence(METRICS.to_vec(), 1..=METRICS.len()),
        0..TIMES.len() + 1,
        prop::collection::vec(any::<usize>(), 0..3),
        prop::collection::vec((0..4usize, leaf(), leaf()), 0..3),
        0..ranges().len(),
        0..ZONES.len(),
        prop::option::of((any::<usize>(), any::<bool>())),
        1..30u64,
        0..4u64,
    )
        .prop_map(
            |(
                family,
                site,
                metrics,
                time,
                dimensions,
                filters,
                range,
                zone,
                order,
                limit,
                offset,
            )| {
                Choices {
                    family,
                    site,
                    metrics,
                    time,
                    dimensions,
                    filters,
                    range,
                    zone,
                    order,
                    limit,
                    offset,
                }
            },
        )
}

pub fn to_query(c: &Choices) -> Query {
    let per_session = c.family >= 4;
    let pool: Vec<&str> = match c.family {
        0 => vec![],
        1 => PAGES_FAMILY.to_vec(),
        // One attribute (what `dimensions_daily` answers).
        2 => vec![SOURCES_FAMILY[c.limit as usize % SOURCES_FAMILY.len()]],
        3 => [PAGES_FAMILY, SOURCES_FAMILY, EVENTS_ONLY].concat(),
        _ => SESSION_FAMILY.to_vec(),
    };
    let mut metrics: Vec<&str> = c
        .metrics
        .iter()
        .copied()
        .filter(|m| per_session || !SESSION_METRICS.contains(m))
        .collect();
    if per_session && !metrics.iter().any(|m| SESSION_METRICS.contains(m)) {
        metrics.push("visit_duration");
    }
    if metrics.is_empty() {
        metrics.push("visitors");
    }
    // Session queries and the daily rollups need whole UTC days (and
    // rollups UTC buckets): favour UTC.
    let zone = if c.family != 3 && c.zone.is_multiple_of(2) {
        "UTC"
    } else {
        ZONES[c.zone]
    };
    let mut dimensions: Vec<&str> = Vec::new();
    if c.time > 0 {
        dimensions.push(TIMES[c.time - 1]);
    }
    if !pool.is_empty() {
        for i in &c.dimensions {
            let d = pool[i % pool.len()];
            if !dimensions.contains(&d) {
                dimensions.push(d);
            }
        }
    }
    let leaf_json = |(op, attr, values): &Leaf| -> Value {
        let name = pool[attr % pool.len()];
        let all = attribute_values(name);
        let picked: Vec<&str> = values.iter().map(|v| all[v % all.len()]).collect();
        match op {
            0 => json!(["is", name, picked]),
            1 => json!(["is_not", name, picked]),
            // A prefix of a real value (can be empty: matches everything).
            2 => json!([
                "contains",
                name,
                picked
                    .iter()
                    .map(|v| &v[..v.len().min(2)])
                    .collect::<Vec<_>>()
            ]),
            _ => json!([
                "matches",
                name,
                picked
                    .iter()
                    .map(|v| format!("^{}", &v[..v.len().min(3)]))
                    .collect::<Vec<_>>()
            ]),
        }
    };
    let filters: Vec<Value> = if pool.is_empty() {
        Vec::new()
    } else {
        c.filters
            .iter()
            .map(|(shape, a, b)| match shape {
                0 => leaf_json(a),
                1 => json!(["not", leaf_json(a)]),
                2 => json!(["and", [leaf_json(a), leaf_json(b)]]),
                _ => json!(["or", [leaf_json(a), leaf_json(b)]]),
            })
            .collect()
    };
    let order_by: Vec<Value> = match c.order {
        Some((i, asc)) => {
            let names: Vec<&str> = metrics
                .iter()
                .copied()
                .chain(dimensions.iter().copied())
                .collect();
            vec![json!([
                names[i % names.len()],
                if asc { "asc" } else { "desc" }
            ])]
        }
        None => Vec::new(),
    };
    query(json!({
        "site_id": SITES.get(c.site).copied().unwrap_or("no-such-site"),
        "metrics": metrics,
        "date_range": ranges()[c.range],
        "dimensions": dimensions,
        "filters": filters,
        "order_by": order_by,
        "pagination": {"limit": c.limit, "offset": c.offset},
        "timezone": zone,
    }))
}
