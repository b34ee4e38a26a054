//! The edge under faults: `kill -9` while it takes load loses no hit that
//! was answered 202 (with `durability = "sync"`) and ships none twice; a
//! central outage under load is ridden out from the disk buffer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hourglass_e2e::edge::Edge;
use hourglass_e2e::receiver::{Receiver, server_certs};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// Sends pageviews for `/k/<tag>/<worker>/<i>` from `workers` threads until
/// `stop`; returns the paths answered 202.
fn load(
    url: &str,
    tag: &str,
    workers: usize,
    stop: &Arc<AtomicBool>,
    deadline: Duration,
) -> Vec<String> {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workers {
            let accepted = accepted.clone();
            let stop = stop.clone();
            s.spawn(move || {
                let agent = agent();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > deadline {
                        return;
                    }
                    let path = format!("/k/{tag}/{w}/{i}");
                    let body = format!(
                        r#"{{"n":"pageview","u":"https://example.com{path}","d":"example.com"}}"#
                    );
                    match agent
                        .post(&format!("{url}/api/event"))
                        .header("Content-Type", "text/plain")
                        .send(&body)
                    {
                        Ok(r) if r.status().as_u16() == 202 => accepted.lock().unwrap().push(path),
                        Ok(_) => {}
                        // The edge is gone (killed) or not up yet.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
    });
    Arc::try_unwrap(accepted).unwrap().into_inner().unwrap()
}

/// How often each `/k/` path arrived, over distinct batches.
fn arrivals(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for e in receiver.events() {
        if e.pathname.starts_with("/k/") {
            *seen.entry(e.pathname).or_insert(0) += 1;
        }
    }
    seen
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_hit_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    let mut edge = Edge::start(
        &dir.path().join("edge"),
        &certs,
        receiver.addr,
        "durability = \"sync\"",
    );
    let mut acknowledged = Vec::new();
    for round in 0..20 {
        if round > 0 {
            edge.spawn();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let url = edge.url.clone();
        // Batches close every 200 ms here; kill at a random point after the first.
        let kill_after = Duration::from_millis(400 + fastrand::u64(0..800));
        let stopper = stop.clone();
        let accepted = std::thread::scope(|s| {
            let loader = s.spawn(|| {
                load(
                    &url,
                    &format!("r{round}"),
                    4,
                    &stop,
                    Duration::from_secs(30),
                )
            });
            std::thread::sleep(kill_after);
            edge.kill9();
            stopper.store(true, Ordering::Relaxed);
            loader.join().unwrap()
        });
        assert!(
            !accepted.is_empty(),
            "round {round}: no hit was accepted before the kill:\n{}",
            edge.log()
        );
        acknowledged.extend(accepted);
    }
    // One last start ships whatever the kills left in the buffer.
    edge.spawn();
    wait_until(
        "every acknowledged hit arrived",
        Duration::from_secs(60),
        || {
            let seen = arrivals(&receiver);
            acknowledged.iter().all(|p| seen.contains_key(p))
        },
    );
    assert_eq!(edge.terminate(), Some(0), "{}", edge.log());

    let seen = arrivals(&receiver);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "hits shipped more than once: {twice:?}");
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|p| !seen.contains_key(*p))
        .collect();
    assert!(lost.is_empty(), "acknowledged hits lost: {lost:?}");
    eprintln!(
        "kill -9 x20: {} hits answered 202, {} arrived (the rest were in flight at a kill), {} batches re-sent and deduplicated",
        acknowledged.len(),
        seen.len(),
        receiver.received.resent.load(Ordering::Relaxed)
    );
}

/// Central away for a while under load: the edge keeps answering 202 from
/// its disk buffer, and everything drains once central is back.
/// `HOURGLASS_OUTAGE_SECS` sets the outage (default 300 s, as operators
/// care about; shorter for a quick local run).
#[test]
fn central_outage_is_ridden_out_from_the_buffer() {
    let outage = Duration::from_secs(
        std::env::var("HOURGLASS_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let server = server_certs(&certs);
    let mut receiver = Receiver::start(&server, "127.0.0.1:0".parse().unwrap());
    let central = receiver.addr;
    let edge = Edge::start(&dir.path().join("edge"), &certs, central, "");
    receiver.stop();
    drop(receiver);

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = load(&edge.url, "outage", 2, &stop, outage);
    // Two clients, each waiting about 200 ms for its batch to be fsynced:
    // about 10 hits a second answered the whole time.
    let expected = outage.as_secs() as usize * 5;
    assert!(
        accepted.len() >= expected,
        "only {} hits answered 202 during a {} s outage, expected {expected} or more",
        accepted.len(),
        outage.as_secs()
    );
    let buffered = edge.metric("hourglass_edge_buffer_records");
    assert!(
        buffered > 0.0,
        "the buffer holds the batches during the outage"
    );
    assert!(
        edge.metric("hourglass_edge_ship_failures_total{kind=\"connect\"}")
            + edge.metric("hourglass_edge_ship_failures_total{kind=\"transport\"}")
            > 0.0
    );

    // Central comes back on the same address.
    let receiver = Receiver::start(&server, central);
    wait_until("the buffer drained", Duration::from_secs(120), || {
        let seen = arrivals(&receiver);
        accepted.iter().all(|p| seen.contains_key(p))
    });
    let seen = arrivals(&receiver);
    assert!(seen.values().all(|n| *n == 1), "no hit shipped twice");
    wait_until("the buffer gauge is zero", Duration::from_secs(10), || {
        edge.metric("hourglass_edge_buffer_records") == 0.0
    });
    eprintln!(
        "outage of {} s: {} hits answered 202, {} batches buffered at the end of the outage, all {} arrived after",
        outage.as_secs(),
        accepted.len(),
        buffered,
        seen.len()
    );
}
