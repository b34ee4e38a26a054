//! central-ingest end to end: the `certs` commands as an operator runs
//! them, and a real edge shipping over QUIC + mTLS to a real
//! `central-ingest serve`, whose archive then holds every event exactly once.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use hourglass_e2e::central::{Central, archived, certs, count, text, warehouse_counts};
use hourglass_e2e::edge::{DOMAIN, EDGE_ID, Edge};
use hourglass_e2e::receiver::SERVER_NAME;
use hourglass_e2e::{binary, run};
use hourglass_model::BatchId;
use hourglass_pki::{CertDir, EdgeName};
use hourglass_transport::{Client, ClientCerts, RejectReason, Response, client_endpoint};

#[test]
fn certs_commands_write_the_ca_directory_and_say_where() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let cert_dir = CertDir::new(&dir);

    let out = certs(&dir, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&cert_dir.ca_cert_path().display().to_string()));
    assert!(cert_dir.ca_cert_path().exists() && cert_dir.crl_path().exists());
    let again = certs(&dir, &["init"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    let out = certs(&dir, &["issue-edge", "pop-zrh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pop = EdgeName::new("pop-zrh").unwrap();
    assert!(text(&out).contains(&cert_dir.edge_key_path(&pop).display().to_string()));
    assert!(cert_dir.edge_cert_path(&pop).exists());
    let bad = certs(&dir, &["issue-edge", "no spaces"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let twice = certs(&dir, &["issue-edge", "pop-zrh"]);
    assert_eq!(twice.status.code(), Some(1), "{}", text(&twice));

    let out = certs(&dir, &["issue-server", "central.example"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(cert_dir.server_cert_path().exists());

    let out = certs(&dir, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = |out: &Output, name: &str, status: &str| {
        text(out)
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .filter(|l| l.split_whitespace().nth(1) == Some(status))
            .count()
    };
    assert_eq!(line(&out, "pop-zrh", "active"), 1, "{}", text(&out));

    let out = certs(&dir, &["revoke", "pop-zrh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("crl.pem"), "{}", text(&out));
    assert!(!cert_dir.edge_key_path(&pop).exists());
    // The name can be issued again; the old certificate stays listed as revoked.
    let out = certs(&dir, &["issue-edge", "pop-zrh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = certs(&dir, &["list"]);
    assert_eq!(line(&out, "pop-zrh", "revoked"), 1, "{}", text(&out));
    assert_eq!(line(&out, "pop-zrh", "active"), 1, "{}", text(&out));
    let gone = certs(&dir, &["revoke", "pop-nowhere"]);
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));

    // Without --dir, `certs_dir` from the config.
    let other = tmp.path().join("from-config");
    let config = tmp.path().join("central.toml");
    std::fs::write(&config, format!("certs_dir = \"{}\"\n", other.display())).unwrap();
    let out = run(binary("central-ingest")
        .args(["certs", "init", "--config"])
        .arg(&config)
        .env_remove("CLICKHOUSE_URL"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(CertDir::new(&other).ca_cert_path().exists());
}

const PER_REQUEST: usize = 100;

/// (requests, events): `default` unless `HOURGLASS_E2E_EVENTS` says.
fn how_many(default: usize) -> (usize, usize) {
    let events: usize = std::env::var("HOURGLASS_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let requests = events.div_ceil(PER_REQUEST);
    (requests, requests * PER_REQUEST)
}

fn send_events(url: &str, requests: usize) {
    // Eight clients at once: the edge answers a request once its batch is
    // on disk, so one client alone waits out every batch's age limit.
    std::thread::scope(|scope| {
        for client in 0..8 {
            let url = url.to_string();
            scope.spawn(move || {
                for request in (client..requests).step_by(8) {
                    post_events(&url, request * PER_REQUEST, PER_REQUEST);
                }
            });
        }
    });
}

fn post_events(url: &str, first: usize, n: usize) {
    let events: Vec<String> = (first..first + n)
        .map(|i| {
            format!(
                r#"{{"n":"pageview","u":"https://{DOMAIN}/page/{}","d":"{DOMAIN}"}}"#,
                i % 50
            )
        })
        .collect();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let status = agent
        .post(&format!("{url}/api/batch"))
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        )
        .send(format!("[{}]", events.join(",")))
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 202);
}

#[test]
fn an_edge_ships_into_the_archive_and_bad_batches_are_quarantined() {
    let (requests, events_to_send) = how_many(2_000);
    let tmp = tempfile::tempdir().unwrap();
    let certs_path = tmp.path().join("certs");
    let out = certs(&certs_path, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = certs(&certs_path, &["issue-server", SERVER_NAME]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let mut central = Central::start(&tmp.path().join("central"), &certs_path, None, "");
    // All of it comes from one address: no per-IP limit for this load.
    let edge = Edge::start(
        &tmp.path().join("edge"),
        &certs_path,
        central.quic,
        "[rate_limit]\nper_ip_per_sec = 0",
    );

    let sending = Instant::now();
    send_events(&edge.url, requests);
    let started = Instant::now();
    let (batches, hits, events) = loop {
        let got = archived(&central.archive_dir());
        if got.2 >= events_to_send || started.elapsed() > Duration::from_secs(60) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "{events} events in {batches} batches: sent in {:?}, all archived {:?} after the last request",
        started - sending,
        started.elapsed()
    );
    assert_eq!(events, events_to_send, "central log:\n{}", central.log());
    assert_eq!(hits, requests);
    assert_eq!(
        central.metric("hourglass_central_batches_archived_total") as usize,
        batches
    );
    // The edge counts a batch once the Ack is back, a moment after the
    // archive has it.
    let waiting = Instant::now();
    while (edge.metric("hourglass_edge_batches_shipped_total") as usize) < batches {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "edge never got every Ack"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        edge.metric("hourglass_edge_batches_shipped_total") as usize,
        batches
    );

    // A corrupt batch, and one whose header names another id,
    // sent with the edge's own certificate: refused, kept, counted.
    let cert_dir = CertDir::new(&certs_path);
    let name = EdgeName::new(EDGE_ID).unwrap();
    let client_certs = ClientCerts {
        cert_pem: std::fs::read_to_string(cert_dir.edge_cert_path(&name)).unwrap(),
        key_pem: std::fs::read_to_string(cert_dir.edge_key_path(&name)).unwrap(),
        ca_pem: cert_dir.ca_cert_pem().unwrap(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let quic = central.quic;
    let answers = rt.block_on(async move {
        let (endpoint, _) = client_endpoint("127.0.0.1:0".parse().unwrap(), &client_certs).unwrap();
        let client = Client::new(endpoint);
        let conn = client.connect(quic, SERVER_NAME).await.unwrap();
        let id = |seq| BatchId {
            edge_id: EDGE_ID.into(),
            seq,
        };
        let good = hourglass_model::Batch {
            header: Some(hourglass_model::BatchHeader {
                id: Some(id(7)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut corrupt = hourglass_model::encode_batch(&good);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let corrupt = client
            .send_batch(&conn, &id(u64::MAX - 1), &corrupt)
            .await
            .unwrap();
        let wrong_id = client
            .send_batch(&conn, &id(u64::MAX), &hourglass_model::encode_batch(&good))
            .await
            .unwrap();
        // Close properly: central's drain waits for connections it cannot
        // close cleanly until their idle timeout.
        conn.close(0u32.into(), b"done");
        client.endpoint().wait_idle().await;
        (corrupt, wrong_id)
    });
    for answer in [&answers.0, &answers.1] {
        assert!(
            matches!(
                answer,
                Response::Reject {
                    reason: RejectReason::InvalidBatch,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    assert_eq!(
        central.metric("hourglass_central_rejects_total{reason=\"checksum\"}"),
        1.0
    );
    assert_eq!(
        central.metric("hourglass_central_rejects_total{reason=\"id_mismatch\"}"),
        1.0
    );
    // The transport's own counters reach /metrics within a second.
    let waiting = Instant::now();
    while central.metric("hourglass_central_connections_total") < 2.0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the edge's and the test's connections are counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let quarantined = walk(&central.archive_dir().join("quarantine"));
    assert_eq!(quarantined.len(), 4, "{quarantined:?}");
    assert!(quarantined.iter().any(|p| p.ends_with(".json")));
    // Nothing new in the archive proper.
    assert_eq!(archived(&central.archive_dir()).0, batches);

    let stopping = Instant::now();
    assert_eq!(central.terminate(), Some(0), "{}", central.log());
    eprintln!("central drained and stopped in {:?}", stopping.elapsed());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[test]
fn an_edge_loads_into_clickhouse_exactly_once_and_an_interrupted_load_is_redone() {
    // The full-size run: 100,000 hits through a real edge and central.
    let (requests, events_to_send) = how_many(100_000);
    let db = hourglass_testkit::fresh_database();
    let out = run(binary("warehouse-schema")
        .arg("migrate")
        .env("CLICKHOUSE_URL", &db.url)
        .env("CLICKHOUSE_DATABASE", &db.name));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let tmp = tempfile::tempdir().unwrap();
    let certs_path = tmp.path().join("certs");
    for args in [&["init"][..], &["issue-server", SERVER_NAME]] {
        let out = certs(&certs_path, args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let central_dir = tmp.path().join("central");
    let mut central = Central::start(&central_dir, &certs_path, Some(&db), "");
    // All of it comes from one address: no per-IP limit for this load.
    let edge = Edge::start(
        &tmp.path().join("edge"),
        &certs_path,
        central.quic,
        "[rate_limit]\nper_ip_per_sec = 0",
    );

    let sending = Instant::now();
    send_events(&edge.url, requests);
    let sent = sending.elapsed();
    let started = Instant::now();
    let expected = [events_to_send as u64; 5];
    loop {
        let counts = warehouse_counts(&db);
        if counts == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90) && counts[0] <= expected[0],
            "warehouse {counts:?}, expected {expected:?}; central log:\n{}",
            central.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (batches, _, events) = archived(&central.archive_dir());
    eprintln!(
        "{events} events in {batches} batches: sent in {sent:?}, all in ClickHouse {:?} later; \
         {} inserts",
        started.elapsed(),
        central.metric("hourglass_central_load_inserts_total")
    );
    let loaded = "SELECT count() FROM (SELECT batch_id, argMax(status, version) AS s \
                  FROM loads GROUP BY batch_id) WHERE s = 'loaded'";
    assert_eq!(count(&db, loaded) as usize, batches);
    assert_eq!(
        count(&db, "SELECT uniqExact(batch_id) FROM events") as usize,
        batches
    );
    assert_eq!(central.metric("hourglass_central_load_lag_seconds"), 0.0);
    assert_eq!(central.terminate(), Some(0), "{}", central.log());

    // A load interrupted between its `loading` and `loaded` ledger rows:
    // pretend one batch is in that state (its rows are all there, as after
    // a crash once the insert went through).
    let victim = db
        .query("SELECT any(batch_id) FROM events")
        .unwrap()
        .trim()
        .to_string();
    db.query(&format!(
        "INSERT INTO loads (batch_id, archive_key, plugin_set, rows, min_ts, max_ts, status, \
         error, loaded_at, version) SELECT batch_id, '', '', count(), min(ts), max(ts), \
         'loading', '', now(), (SELECT max(version) + 1 FROM loads) \
         FROM events WHERE batch_id = '{victim}' GROUP BY batch_id"
    ))
    .unwrap();

    // A restart recovers it (rows removed, rollups rebuilt, batch loaded
    // again) and loads nothing twice.
    let mut central = Central::start(&central_dir, &certs_path, Some(&db), "");
    let started = Instant::now();
    while central.metric("hourglass_central_load_recoveries_total") < 1.0
        || central.metric("hourglass_central_loaded_batches_total") < 1.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no recovery; central log:\n{}",
            central.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        central.metric("hourglass_central_loaded_batches_total"),
        1.0,
        "only the interrupted batch is loaded again"
    );
    assert_eq!(warehouse_counts(&db), expected);
    assert_eq!(count(&db, loaded) as usize, batches);
    assert_eq!(central.terminate(), Some(0), "{}", central.log());
    drop(edge);
}

#[test]
fn while_clickhouse_is_down_batches_are_archived_and_loaded_once_it_is_back() {
    const EVENTS: u64 = 500;
    let db = hourglass_testkit::fresh_database();
    let out = run(binary("warehouse-schema")
        .arg("migrate")
        .env("CLICKHOUSE_URL", &db.url)
        .env("CLICKHOUSE_DATABASE", &db.name));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nothing listens there.
    let down = hourglass_testkit::TestDb {
        url: format!(
            "http://127.0.0.1:{}",
            hourglass_testkit::free_port().unwrap()
        ),
        name: db.name.clone(),
    };

    let tmp = tempfile::tempdir().unwrap();
    let certs_path = tmp.path().join("certs");
    for args in [&["init"][..], &["issue-server", SERVER_NAME]] {
        let out = certs(&certs_path, args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let central_dir = tmp.path().join("central");
    let mut central = Central::start(&central_dir, &certs_path, Some(&down), "");
    let edge = Edge::start(&tmp.path().join("edge"), &certs_path, central.quic, "");
    send_events(&edge.url, EVENTS as usize / PER_REQUEST);

    let started = Instant::now();
    while archived(&central.archive_dir()).2 < EVENTS as usize
        || central.metric("hourglass_central_load_errors_total") < 1.0
        || central.metric("hourglass_central_load_lag_seconds") <= 0.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "archived {:?}; central log:\n{}",
            archived(&central.archive_dir()),
            central.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(central.metric("hourglass_central_load_pending_batches") >= 1.0);
    assert_eq!(central.terminate(), Some(0), "{}", central.log());
    drop(down);

    // ClickHouse is back: the restarted loader finds the batches in the archive.
    let mut central = Central::start(&central_dir, &certs_path, Some(&db), "");
    let started = Instant::now();
    while warehouse_counts(&db) != [EVENTS; 5] {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "warehouse {:?}; central log:\n{}",
            warehouse_counts(&db),
            central.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(warehouse_counts(&db), [EVENTS; 5]);
    assert_eq!(central.terminate(), Some(0), "{}", central.log());
    drop(edge);
}

/// Sends one well-formed batch as edge `name` on a new connection.
fn send_as(certs_path: &Path, name: &str, quic: SocketAddr, seq: u64) -> Result<Response, String> {
    let cert_dir = CertDir::new(certs_path);
    let edge = EdgeName::new(name).unwrap();
    let client_certs = ClientCerts {
        cert_pem: std::fs::read_to_string(cert_dir.edge_cert_path(&edge)).unwrap(),
        key_pem: std::fs::read_to_string(cert_dir.edge_key_path(&edge)).unwrap(),
        ca_pem: cert_dir.ca_cert_pem().unwrap(),
    };
    let id = BatchId {
        edge_id: name.into(),
        seq,
    };
    let batch = hourglass_model::Batch {
        header: Some(hourglass_model::BatchHeader {
            id: Some(id.clone()),
            created_at_ms: 1_795_617_000_000,
            ..Default::default()
        }),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (endpoint, _) = client_endpoint("127.0.0.1:0".parse().unwrap(), &client_certs).unwrap();
        let client = Client::new(endpoint);
        let result = async {
            let conn = client.connect(quic, SERVER_NAME).await?;
            let answer = client
                .send_batch(&conn, &id, &hourglass_model::encode_batch(&batch))
                .await;
            conn.close(0u32.into(), b"done");
            answer
        }
        .await;
        client.endpoint().wait_idle().await;
        result.map_err(|e| e.to_string())
    })
}

#[test]
fn a_revoked_edge_is_refused_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let certs_path = tmp.path().join("certs");
    for args in [
        &["init"][..],
        &["issue-server", SERVER_NAME],
        &["issue-edge", "pop-gone"],
    ] {
        let out = certs(&certs_path, args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let mut central = Central::start(&tmp.path().join("central"), &certs_path, None, "");
    let answer = send_as(&certs_path, "pop-gone", central.quic, 1);
    assert!(matches!(answer, Ok(Response::Ack { .. })), "{answer:?}");

    // Keep the certificate: revoking deletes the edge's key, not the copy
    // a stolen machine would still have.
    let cert_dir = CertDir::new(&certs_path);
    let name = EdgeName::new("pop-gone").unwrap();
    let stolen = tmp.path().join("stolen");
    std::fs::create_dir_all(stolen.join("edges")).unwrap();
    std::fs::copy(cert_dir.ca_cert_path(), stolen.join("ca.pem")).unwrap();
    for path in [
        cert_dir.edge_cert_path(&name),
        cert_dir.edge_key_path(&name),
    ] {
        std::fs::copy(&path, stolen.join("edges").join(path.file_name().unwrap())).unwrap();
    }
    let out = certs(&certs_path, &["revoke", "pop-gone"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let started = Instant::now();
    loop {
        match send_as(&stolen, "pop-gone", central.quic, 2) {
            Err(_) => break,
            Ok(answer) => assert!(
                started.elapsed() < Duration::from_secs(15),
                "still accepted after revocation: {answer:?}\n{}",
                central.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let waiting = Instant::now();
    while central.metric("hourglass_central_handshakes_failed_total") < 1.0 {
        assert!(waiting.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(central.metric("hourglass_central_crl_reloads_total") >= 1.0);
    assert_eq!(central.terminate(), Some(0), "{}", central.log());
}
