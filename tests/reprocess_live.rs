//! `reprocess` while live traffic flows into the same day, through a real
//! edge and a real central (receiver, archive, loader) on one ClickHouse
//! database: every live hit is in the warehouse exactly once afterwards,
//! the hits archived before the run are reprocessed with the new plugins,
//! and every rollup equals the rollup recomputed from `events`.
//!
//! The run is held just before its swap (the `HOURGLASS_REPROCESS_BARRIER_DIR`
//! hook) until the loader has loaded more live batches into the day, so
//! the race the run must survive happens every time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hourglass_e2e::binary;
use hourglass_e2e::central::{
    Central, ca_with_server_cert, count, loaded_batches, migrate, rollups_match_events, text,
};
use hourglass_e2e::edge::{DOMAIN, Edge};
use hourglass_testkit::TestDb;

const PER_REQUEST: usize = 10;
const EARLY_REQUESTS: usize = 100;
/// Every fifth early event is a custom event, which v2 drops.
const CUSTOM_EVERY: usize = 5;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

/// Posts events `first..first + PER_REQUEST` under `/{prefix}/`; true on 202.
fn post(agent: &ureq::Agent, url: &str, prefix: &str, first: usize) -> bool {
    let events: Vec<String> = (first..first + PER_REQUEST)
        .map(|i| {
            let name = if prefix == "early" && i % CUSTOM_EVERY == 0 {
                "signup"
            } else {
                "pageview"
            };
            format!(r#"{{"n":"{name}","u":"https://{DOMAIN}/{prefix}/{i}","d":"{DOMAIN}"}}"#)
        })
        .collect();
    agent
        .post(&format!("{url}/api/batch"))
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        )
        .send(format!("[{}]", events.join(",")))
        .is_ok_and(|r| r.status() == 202)
}

/// Polls `what` until it holds, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `YYYY-MM-DD` and `YYYYMMDD` of the UTC day `days` after today.
fn utc_day(days: i64) -> (String, u32) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let date = time::OffsetDateTime::from_unix_timestamp(now + days * 86_400)
        .expect("a time")
        .date();
    (
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        date.year() as u32 * 10_000
            + u32::from(u8::from(date.month())) * 100
            + u32::from(date.day()),
    )
}

fn write_configs(dir: &Path, central: &Central, edge_dir: &Path, db: &TestDb) {
    let plugin = hourglass_testkit::state_dir().join("plugins/validate.wasm");
    std::fs::write(
        dir.join("v2.toml"),
        format!(
            "plugin_set = \"v2\"\n[[plugins]]\nname = \"validate\"\npath = {:?}\n\
             config = \"allowed_names = pageview\"\n",
            plugin.display().to_string()
        ),
    )
    .expect("write v2");
    std::fs::write(
        dir.join("reprocess.toml"),
        format!(
            "archive_dir = {:?}\nsites_file = {:?}\nmaster_secret_file = {:?}\nstate_dir = {:?}\n\
             wait_for_loads_secs = 60\n[warehouse]\nurl = {:?}\ndatabase = {:?}\n",
            central.archive_dir().display().to_string(),
            edge_dir.join("sites.json").display().to_string(),
            edge_dir.join("master.key").display().to_string(),
            dir.join("state").display().to_string(),
            db.url,
            db.name
        ),
    )
    .expect("write reprocess config");
}

#[test]
fn live_hits_during_a_reprocess_of_their_day_are_kept_exactly_once() {
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let tmp = tempfile::tempdir().expect("a temp dir");
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start(&tmp.path().join("central"), &certs, Some(&db), "");
    let edge_dir = tmp.path().join("edge");
    let edge = Edge::start(
        &edge_dir,
        &certs,
        central.quic,
        "[rate_limit]\nper_ip_per_sec = 0",
    );
    write_configs(tmp.path(), &central, &edge_dir, &db);

    // Ingested with the edge's plugins (none) before the reprocess.
    let a = agent();
    for r in 0..EARLY_REQUESTS {
        assert!(
            post(&a, &edge.url, "early", r * PER_REQUEST),
            "early request {r}"
        );
    }
    let early = (EARLY_REQUESTS * PER_REQUEST) as u64;
    wait_until(
        Duration::from_secs(60),
        "the early hits in ClickHouse",
        || count(&db, "SELECT count() FROM events") == early,
    );

    // Live traffic into the same day, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    // Four clients: the edge answers once a hit's batch is on disk, so one
    // client alone waits out every batch's age limit.
    let senders: Vec<_> = (0..4)
        .map(|client| {
            let (stop, accepted, url) = (stop.clone(), accepted.clone(), edge.url.clone());
            std::thread::spawn(move || {
                let a = agent();
                let started = Instant::now();
                let mut next = client * PER_REQUEST;
                while !stop.load(Ordering::Relaxed)
                    && next < 200_000
                    && started.elapsed() < Duration::from_secs(120)
                {
                    if post(&a, &url, "live", next) {
                        accepted.fetch_add(PER_REQUEST, Ordering::Relaxed);
                    }
                    next += 4 * PER_REQUEST;
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "live hits loaded", || {
        count(
            &db,
            "SELECT count() FROM events WHERE pathname LIKE '/live/%'",
        ) > 0
    });

    let (today, today_id) = utc_day(0);
    let (after_tomorrow, _) = utc_day(2);
    let barrier = tmp.path().join("barrier");
    std::fs::create_dir_all(&barrier).expect("barrier dir");
    let mut child = binary("reprocess")
        .env_remove("HOURGLASS_CONFIG")
        .env("CLICKHOUSE_URL", &db.url)
        .env("CLICKHOUSE_DATABASE", &db.name)
        .env("HOURGLASS_REPROCESS_BARRIER_DIR", &barrier)
        .arg("--config")
        .arg(tmp.path().join("reprocess.toml"))
        .arg("--plugins")
        .arg(tmp.path().join("v2.toml"))
        .args(["--range", &format!("{today}T00..{after_tomorrow}T00")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("reprocess starts");
    // Each day waits before its swap; today's only once the loader has
    // loaded more live batches into it.
    let started = Instant::now();
    let mut released = Vec::new();
    while child.try_wait().expect("child status").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "reprocess hangs"
        );
        for entry in std::fs::read_dir(&barrier).expect("barrier dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(day) = name.strip_prefix("ready-") else {
                continue;
            };
            if released.contains(&name) {
                continue;
            }
            if day == today_id.to_string() {
                let at_ready = loaded_batches(&db);
                wait_until(Duration::from_secs(30), "live loads during the run", || {
                    loaded_batches(&db) >= at_ready + 3
                });
            }
            std::fs::write(barrier.join(format!("go-{day}")), b"").expect("go");
            released.push(name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("reprocess output");
    let report = text(&out);
    eprintln!("{report}");
    assert_eq!(out.status.code(), Some(0));
    let late: usize = report
        .lines()
        .find(|l| l.contains(&format!("day {today_id}:")))
        .and_then(|l| l.split(" late batch").next())
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no late batch count for {today_id}:\n{report}"));
    assert!(
        late >= 3,
        "the loader loaded into the day during the run: {late}"
    );

    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().expect("sender");
    }
    let live = accepted.load(Ordering::Relaxed) as u64;
    wait_until(Duration::from_secs(90), "every live hit loaded", || {
        count(
            &db,
            "SELECT count() FROM events WHERE pathname LIKE '/live/%'",
        ) >= live
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(
            &db,
            "SELECT count() FROM events WHERE pathname LIKE '/live/%'"
        ),
        live,
        "live hits answered 202"
    );
    assert_eq!(
        count(
            &db,
            "SELECT uniqExact(pathname) FROM events WHERE pathname LIKE '/live/%'"
        ),
        live,
        "each live hit once"
    );
    // The early hits were reprocessed with v2: custom events dropped.
    let early_pageviews = early - early / CUSTOM_EVERY as u64;
    assert_eq!(
        count(
            &db,
            "SELECT count() FROM events WHERE pathname LIKE '/early/%' AND plugin_set = 'v2'"
        ),
        early_pageviews
    );
    assert_eq!(
        count(
            &db,
            "SELECT count() FROM events WHERE pathname LIKE '/early/%'"
        ),
        early_pageviews
    );
    let compared = rollups_match_events(&db).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{early} early hits reprocessed ({early_pageviews} kept by v2), {live} live hits \
         answered 202 and loaded once, {late} late batches kept, {compared} rollup rows equal \
         to events"
    );
    drop(edge);
    drop(central);
}
