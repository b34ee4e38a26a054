//! Central ingest under faults, each while an edge keeps sending:
//! `kill -9` the loader 20 times, `kill -9` the receiver mid-stream, and
//! ClickHouse killed for two minutes. After each, every hit the edge
//! answered `202` is in `events` exactly once, and every rollup equals the
//! same aggregation recomputed from `events`.
//!
//! Kills land at random points from a seeded generator; the seed is
//! printed, and `HOURGLASS_FAULT_SEED` replays a run. The ClickHouse outage
//! lasts `HOURGLASS_CH_OUTAGE_SECS` (default 120 s) and uses a server of
//! its own, never the shared test server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hourglass_e2e::central::{
    Central, archived, ca_with_server_cert, count, loaded_batches, migrate, rollups_match_events,
    warehouse_counts,
};
use hourglass_e2e::edge::{DOMAIN, Edge};
use hourglass_testkit::{ClickHouseServer, Lifetime, TestDb};

/// Events per request: pageviews, each on a path of its own.
const PER_REQUEST: u64 = 50;

fn seed() -> u64 {
    let seed = std::env::var("HOURGLASS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("fault seed {seed} (HOURGLASS_FAULT_SEED={seed} replays the kill points)");
    seed
}

/// Sends batches of pageviews on unique paths `/k/<tag>/<worker>/<i>/<j>`
/// from `workers` threads until `stop` (or `limit`); counts into `acked`
/// the events of every request answered 202.
fn load(url: &str, tag: &str, workers: u64, stop: &AtomicBool, acked: &AtomicU64, limit: Duration) {
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workers {
            s.spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(20)))
                    .build()
                    .new_agent();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > limit {
                        return;
                    }
                    let events: Vec<String> = (0..PER_REQUEST)
                        .map(|j| {
                            format!(
                                r#"{{"n":"pageview","u":"https://{DOMAIN}/k/{tag}/{w}/{i}/{j}","d":"{DOMAIN}"}}"#
                            )
                        })
                        .collect();
                    let answer = agent
                        .post(&format!("{url}/api/batch"))
                        .header("Content-Type", "application/json")
                        .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0")
                        .send(format!("[{}]", events.join(",")));
                    match answer {
                        Ok(r) if r.status().as_u16() == 202 => {
                            acked.fetch_add(PER_REQUEST, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("the edge answered {}", r.status()),
                        Err(e) => panic!("the edge did not answer: {e}"),
                    }
                }
            });
        }
    });
}

fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the edge has shipped every batch it wrote, then until the
/// warehouse holds `acked` events and the loader has caught up; then checks
/// there is nothing twice, nothing left `loading`, and the rollups.
fn assert_exactly_once(
    edge: &Edge,
    archive: &std::path::Path,
    db: &TestDb,
    acked: u64,
    log: impl Fn() -> String,
) {
    wait_until(
        "the edge shipped every batch it wrote",
        Duration::from_secs(90),
        || {
            let written = edge.metric("hourglass_edge_batches_written_total");
            written > 0.0 && edge.metric("hourglass_edge_batches_shipped_total") == written
        },
        || edge.log(),
    );
    let (batches, _, events) = archived(archive);
    assert_eq!(
        events as u64, acked,
        "the archive holds every acknowledged event once"
    );
    wait_until(
        "the warehouse holds every acknowledged event",
        Duration::from_secs(120),
        || {
            let rows = count(db, "SELECT count() FROM events");
            assert!(
                rows <= acked,
                "{rows} rows for {acked} acknowledged events\n{}",
                log()
            );
            rows == acked && loaded_batches(db) == batches as u64
        },
        &log,
    );
    assert_eq!(
        count(db, "SELECT uniqExact(pathname) FROM events"),
        acked,
        "every event once"
    );
    let unfinished = count(
        db,
        "SELECT count() FROM (SELECT batch_id, argMax(status, version) AS s \
         FROM loads GROUP BY batch_id) WHERE s != 'loaded'",
    );
    assert_eq!(unfinished, 0, "every batch ends `loaded`");
    assert_eq!(warehouse_counts(db), [acked; 5]);
    let compared = rollups_match_events(db).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{acked} events acknowledged = rows in events = distinct paths; {batches} batches loaded; \
         every rollup equals events, {compared} rollup rows compared"
    );
}

#[test]
fn kill_9_the_loader_20_times_under_load_loses_and_duplicates_nothing() {
    const KILLS: usize = 20;
    let mut rng = fastrand::Rng::with_seed(seed());
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    // The roles split: a receiver-only and a loader-only process share the
    // archive, so the loader dies alone.
    let archive = tmp.path().join("archive");
    let receiver =
        Central::start_with_archive(&tmp.path().join("receiver"), &archive, &certs, None, "");
    let mut loader = Central::start_with_archive(
        &tmp.path().join("loader"),
        &archive,
        &certs,
        Some(&db),
        "[receiver]\nenabled = false\n",
    );
    let edge = Edge::start(
        &tmp.path().join("edge"),
        &certs,
        receiver.quic,
        "[rate_limit]\nper_ip_per_sec = 0",
    );

    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let mut rows_at_kill = Vec::new();
    let loading_rows = "SELECT count() FROM loads WHERE status = 'loading'";
    std::thread::scope(|s| {
        s.spawn(|| {
            load(
                &edge.url,
                "loader",
                4,
                &stop,
                &acked,
                Duration::from_secs(120),
            )
        });
        for kill in 0..KILLS {
            std::thread::sleep(Duration::from_millis(rng.u64(100..800)));
            // Every other kill waits for a load to start (its `loading`
            // rows), then lands 0–40 ms into it: inside the insert, the
            // views, or the `loaded` rows. The others land anywhere.
            if kill % 2 == 0 {
                let seen = count(&db, loading_rows);
                let waiting = Instant::now();
                while count(&db, loading_rows) == seen && waiting.elapsed() < Duration::from_secs(3)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(rng.u64(0..40)));
            }
            loader.kill9();
            rows_at_kill.push(count(&db, "SELECT count() FROM events"));
            std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
            loader.spawn();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let acked = acked.load(Ordering::Relaxed);
    assert!(acked > 0);
    let log = || format!("loader log:\n{}", loader.log());
    assert_exactly_once(&edge, &archive, &db, acked, log);
    let recoveries = loader.log().matches("recovering interrupted loads").count();
    eprintln!(
        "loader kill -9 x{KILLS}: {recoveries} restarts found a load interrupted between its \
         `loading` and `loaded` ledger rows and recovered it; rows at each kill: {rows_at_kill:?}"
    );
    drop(receiver);
}

#[test]
fn kill_9_the_receiver_mid_stream_loses_and_duplicates_nothing() {
    const KILLS: usize = 10;
    let mut rng = fastrand::Rng::with_seed(seed());
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let archive = tmp.path().join("archive");
    let mut receiver =
        Central::start_with_archive(&tmp.path().join("receiver"), &archive, &certs, None, "");
    let loader = Central::start_with_archive(
        &tmp.path().join("loader"),
        &archive,
        &certs,
        Some(&db),
        "[receiver]\nenabled = false\n",
    );
    let edge = Edge::start(
        &tmp.path().join("edge"),
        &certs,
        receiver.quic,
        "[rate_limit]\nper_ip_per_sec = 0",
    );

    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let mut streams_open_at_kill = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            load(
                &edge.url,
                "receiver",
                4,
                &stop,
                &acked,
                Duration::from_secs(120),
            )
        });
        for _ in 0..KILLS {
            // Batches close every 200 ms or 50 requests. Wait a random
            // while, then for a batch being verified and archived (its
            // payload read, its Ack not sent yet), and kill right then.
            std::thread::sleep(Duration::from_millis(rng.u64(100..800)));
            let waiting = Instant::now();
            while waiting.elapsed() < Duration::from_secs(8) {
                if receiver.metric("hourglass_central_in_flight_batches") > 0.0 {
                    streams_open_at_kill += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            receiver.kill9();
            std::thread::sleep(Duration::from_millis(rng.u64(0..500)));
            receiver.spawn();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let acked = acked.load(Ordering::Relaxed);
    assert!(acked > 0);
    let log = || {
        format!(
            "receiver log:\n{}\nloader log:\n{}",
            receiver.log(),
            loader.log()
        )
    };
    assert_exactly_once(&edge, &archive, &db, acked, log);
    eprintln!(
        "receiver kill -9 x{KILLS}: {streams_open_at_kill} kills came while a batch was being \
         archived (by the in-flight gauge a moment before); the edge re-sent {} times after \
         failures",
        edge.metric("hourglass_edge_ship_failures_total{kind=\"transport\"}")
            + edge.metric("hourglass_edge_ship_failures_total{kind=\"connect\"}")
    );
}

#[test]
fn clickhouse_down_for_two_minutes_under_load_loses_and_duplicates_nothing() {
    let outage = Duration::from_secs(
        std::env::var("HOURGLASS_CH_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let tmp = tempfile::tempdir().unwrap();
    // A server of its own: the shared one stays up for the other tests.
    let server = ClickHouseServer::start(
        &tmp.path().join("clickhouse"),
        Lifetime::TiedTo(std::process::id()),
    )
    .unwrap();
    hourglass_testkit::http_post(&server.url, "CREATE DATABASE outage").unwrap();
    let db = TestDb {
        url: server.url.clone(),
        name: "outage".into(),
    };
    migrate(&db);
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start(&tmp.path().join("central"), &certs, Some(&db), "");
    let edge = Edge::start(
        &tmp.path().join("edge"),
        &certs,
        central.quic,
        "[rate_limit]\nper_ip_per_sec = 0",
    );

    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let limit = outage + Duration::from_secs(60);
    let (before, during) = std::thread::scope(|s| {
        s.spawn(|| load(&edge.url, "outage", 2, &stop, &acked, limit));
        let log = || format!("central log:\n{}", central.log());
        wait_until(
            "some rows are loaded",
            Duration::from_secs(30),
            || count(&db, "SELECT count() FROM events") > 0,
            log,
        );
        server.crash().unwrap();
        let before = acked.load(Ordering::Relaxed);
        let down = Instant::now();
        std::thread::sleep(outage.saturating_sub(Duration::from_secs(5)));
        // Still down: loads fail and the lag shows it.
        assert!(
            central.metric("hourglass_central_load_errors_total") >= 1.0,
            "{}",
            log()
        );
        let lag = central.metric("hourglass_central_load_lag_seconds");
        assert!(lag > 1.0, "lag {lag} s during the outage\n{}", log());
        std::thread::sleep(outage.saturating_sub(down.elapsed()));
        let during = acked.load(Ordering::Relaxed) - before;
        server.restart().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        (before, during)
    });
    let acked = acked.load(Ordering::Relaxed);
    assert!(
        during > 0,
        "the edge kept answering 202 while ClickHouse was down"
    );
    let log = || format!("central log:\n{}", central.log());
    assert_exactly_once(&edge, &central.archive_dir(), &db, acked, log);
    wait_until(
        "the lag is back to 0",
        Duration::from_secs(10),
        || central.metric("hourglass_central_load_lag_seconds") == 0.0,
        || central.log(),
    );
    eprintln!(
        "ClickHouse killed for {} s under load: {before} events acknowledged before, {during} \
         during the outage, {acked} in all; {} load errors; all loaded once it was back",
        outage.as_secs(),
        central.metric("hourglass_central_load_errors_total")
    );
}
