//! The control channel end to end: a real `central-ingest` (receiver,
//! loader, control) on a real ClickHouse, a real `edge-agent` with
//! `[control]` on, over QUIC + mTLS. Sites made and deleted with the admin
//! CLI reach the edge's admission; the edge runs on its cached state while
//! central is down; damaged caches and blobs are refused and counted; and a
//! new plugin set swapped in under load loses no hit, processes none twice,
//! and every row names the set that made it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hourglass_archive::Archive;
use hourglass_e2e::central::{
    Central, admin, admin_raw, ca_with_server_cert, count, field, migrate, text,
};
use hourglass_e2e::edge::Edge;
use hourglass_e2e::warehouse::rows;
use hourglass_processing::{PluginBinding, PluginChains};
use hourglass_testkit::TestDb;
use hourglass_warehouse::{PluginBindingRow, Warehouse, WarehouseConfig};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
/// Central re-reads its metadata this often; edges poll this often.
const CENTRAL_TOML: &str = "[receiver]\ncontrol_refresh_ms = 200\n";
const WAIT: Duration = Duration::from_secs(30);

fn edge_toml(dir: &Path) -> String {
    format!(
        "durability = \"interval\"\n[rate_limit]\nper_ip_per_sec = 0\n\
         [control]\nenabled = true\npoll_interval_ms = 200\ncache_dir = \"{}\"\n",
        dir.join("control").display()
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

/// A pageview of `domain`'s page `path`; the status.
fn pageview(agent: &ureq::Agent, edge: &str, domain: &str, path: &str) -> u16 {
    let body = format!(r#"{{"n":"pageview","u":"https://{domain}{path}","d":"{domain}"}}"#);
    agent
        .post(&format!("{edge}/api/event"))
        .header("Content-Type", "text/plain")
        .header("User-Agent", UA)
        .send(&body)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn ga4(agent: &ureq::Agent, edge: &str, id: &str, secret: &str) -> u16 {
    let body = r#"{"client_id":"123.456","events":[{"name":"page_view","params":{"page_location":"https://shop.example/ga4"}}]}"#;
    agent
        .post(&format!(
            "{edge}/mp/collect?measurement_id={id}&api_secret={secret}"
        ))
        .header("Content-Type", "application/json")
        .send(body)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls `check` until it holds (bounded); panics with `what` and `log`.
fn wait_until(what: &str, log: impl Fn() -> String, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting until {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Stack {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    db: TestDb,
    central: Central,
    edge: Edge,
}

fn stack() -> Stack {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let certs = dir.join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start(&dir.join("central"), &certs, Some(&db), CENTRAL_TOML);
    let edge_dir = dir.join("edge");
    let edge = Edge::start(&edge_dir, &certs, central.quic, &edge_toml(&edge_dir));
    Stack {
        _tmp: tmp,
        dir,
        db,
        central,
        edge,
    }
}

fn add_site(db: &TestDb, id: &str, domain: &str, extra: &[&str]) {
    let merchant = field(
        &admin(db, &["merchant", "add", "Control shop"]),
        "merchant_id",
    );
    let mut args = vec![
        "site",
        "add",
        "--merchant",
        &merchant,
        "--domain",
        domain,
        "--id",
        id,
    ];
    args.extend_from_slice(extra);
    admin(db, &args);
}

fn warehouse(db: &TestDb) -> Warehouse {
    Warehouse::new(&WarehouseConfig {
        url: db.url.clone(),
        database: db.name.clone(),
        ..WarehouseConfig::default()
    })
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sites_made_and_deleted_with_the_admin_cli_reach_a_running_edge() {
    let s = stack();
    let a = agent();
    let url = s.edge.url.clone();
    let log = || s.edge.log();
    assert_ne!(
        pageview(&a, &url, "shop.example", "/"),
        202,
        "no such site yet"
    );

    let out = admin_raw(
        &s.db,
        &[
            "site",
            "add",
            "--merchant",
            "m",
            "--domain",
            "x.example",
            "--ga4",
            "G-NOSECRET",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("MEASUREMENT_ID:API_SECRET"),
        "{}",
        text(&out)
    );

    add_site(
        &s.db,
        "s-shop",
        "shop.example",
        &[
            "--ga4",
            "G-CTRL1:ctrl-secret",
            "--segment-write-key",
            "wk_ctrl_1",
        ],
    );
    // The site and its GA4 stream (written by the same command, so they
    // may reach the edge one refresh apart), secret and all.
    let segment = || {
        a.post(&format!("{url}/v1/track"))
            .header("Content-Type", "application/json")
            .header(
                "Authorization",
                &format!("Basic {}", base64_user("wk_ctrl_1")),
            )
            .send(r#"{"userId":"u1","event":"Signed Up","type":"track"}"#)
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_until(
        "the new site, GA4 stream and write key are admitted",
        log,
        || {
            pageview(&a, &url, "shop.example", "/") == 202
                && ga4(&a, &url, "G-CTRL1", "ctrl-secret") == 202
                && segment() == 202
        },
    );
    assert_ne!(ga4(&a, &url, "G-CTRL1", "wrong"), 202);

    admin(&s.db, &["site", "delete", "s-shop"]);
    wait_until("the deleted site is refused", log, || {
        pageview(&a, &url, "shop.example", "/") != 202
    });
    assert!(s.edge.metric("hourglass_edge_control_applied_total") >= 2.0);
    // Central publishes the transport's counters once a second.
    wait_until(
        "central counts the syncs it served",
        || s.central.log(),
        || {
            s.central
                .metric("hourglass_central_control_requests_total{kind=\"sync\"}")
                >= 2.0
        },
    );
    assert!(s.central.metric("hourglass_central_control_state_version") > 0.0);
}

fn base64_user(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}

#[test]
fn an_edge_restarted_while_central_is_down_admits_its_cached_sites() {
    let mut s = stack();
    let a = agent();
    let url = s.edge.url.clone();
    add_site(&s.db, "s-cache", "cache.example", &[]);
    wait_until(
        "the site is admitted",
        || s.edge.log(),
        || pageview(&a, &url, "cache.example", "/") == 202,
    );
    assert_eq!(s.central.terminate(), Some(0));
    assert_eq!(s.edge.terminate(), Some(0));

    s.edge.spawn();
    assert_eq!(
        pageview(&a, &url, "cache.example", "/again"),
        202,
        "central is down: the cached state admits\n{}",
        s.edge.log()
    );
    assert!(s.edge.log().contains("control state loaded from the cache"));
    assert!(s.edge.metric("hourglass_edge_control_state_version") > 0.0);

    // A damaged cache is refused, counted, and the edge starts empty...
    assert_eq!(s.edge.terminate(), Some(0));
    let state = s.dir.join("edge/control/state.json");
    let good = std::fs::read(&state).unwrap();
    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    s.edge.spawn();
    assert_eq!(
        s.edge
            .metric("hourglass_edge_control_refused_total{reason=\"corrupt_cache\"}"),
        1.0,
        "{}",
        s.edge.log()
    );
    assert_ne!(pageview(&a, &url, "cache.example", "/"), 202);
    // ...until central answers again.
    s.central.spawn();
    wait_until(
        "central's state replaces the damaged cache",
        || s.edge.log(),
        || pageview(&a, &url, "cache.example", "/") == 202,
    );
    assert_eq!(std::fs::read(&state).unwrap().len(), good.len());
}

/// Whether the edge's writer runs plugin set `label`.
fn runs(edge: &Edge, label: &str) -> bool {
    edge.metric(&format!(
        "hourglass_edge_plugin_set_info{{plugin_set=\"{label}\"}}"
    )) == 1.0
}

fn component(name: &str) -> Vec<u8> {
    let path = hourglass_testkit::state_dir()
        .join("plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: cargo xtask plugins",
            path.display()
        )
    })
}

/// Activates `name` at `position` of the platform chain the way the
/// registry does: the component into the archive's blob store, a row into
/// `plugin_bindings`.
fn bind(db: &TestDb, archive: &Path, name: &str, wasm: Vec<u8>, position: u16) -> PluginBinding {
    let rt = runtime();
    let sha256 = rt
        .block_on(
            Archive::local(archive)
                .unwrap()
                .put_plugin_blob(wasm.into()),
        )
        .unwrap();
    bind_sha(db, name, &sha256, position)
}

fn bind_sha(db: &TestDb, name: &str, sha256: &str, position: u16) -> PluginBinding {
    let row = PluginBindingRow {
        scope: String::new(),
        name: name.into(),
        plugin_version: "1.0.0".into(),
        sha256: sha256.into(),
        config: String::new(),
        data_sha256: String::new(),
        on_failure: "skip-plugin".into(),
        position,
        activated_at: 0,
        activated_by: "test".into(),
        version: 0,
        deleted: 0,
    };
    runtime()
        .block_on(warehouse(db).write_plugin_binding(row.clone()))
        .unwrap();
    PluginBinding {
        name: row.name,
        plugin_version: row.plugin_version,
        sha256: row.sha256,
        config: row.config,
        data_sha256: row.data_sha256,
        on_failure: row.on_failure,
    }
}

#[test]
fn wrong_sha256_blobs_and_sets_that_do_not_load_are_refused_and_the_edge_keeps_its_state() {
    let s = stack();
    let a = agent();
    let url = s.edge.url.clone();
    add_site(&s.db, "s-blob", "blob.example", &[]);
    let passthrough = bind(
        &s.db,
        &s.central.archive,
        "passthrough",
        component("passthrough"),
        0,
    );
    let label = PluginChains::new(vec![passthrough.clone()], BTreeMap::new()).label;
    wait_until(
        "the edge runs the passthrough set",
        || s.edge.log(),
        || runs(&s.edge, &label) && pageview(&a, &url, "blob.example", "/") == 202,
    );
    let applied = s.edge.metric("hourglass_edge_control_applied_total");

    // A blob damaged in central's store: its bytes no longer hash to its name.
    let wasm = component("channel");
    let sha = hourglass_processing::control::sha256_hex(&wasm);
    let mut damaged = wasm.clone();
    damaged[100] ^= 0xff;
    let key = s
        .central
        .archive
        .join(hourglass_archive::plugin_blob_key(&sha));
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, &damaged).unwrap();
    bind_sha(&s.db, "channel", &sha, 1);
    let sample = "hourglass_edge_control_refused_total{reason=\"blob_sha256_mismatch\"}";
    wait_until(
        "the edge refuses the damaged blob",
        || s.edge.log(),
        || s.edge.metric(sample) >= 1.0,
    );
    assert_eq!(
        s.edge.metric("hourglass_edge_control_applied_total"),
        applied
    );
    assert!(
        !s.dir.join("edge/control/blobs").join(&sha).exists(),
        "never cached"
    );
    assert_eq!(pageview(&a, &url, "blob.example", "/still"), 202);
    // Refused once per version, not on every poll.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(s.edge.metric(sample), 1.0);

    // The store repaired: the same state is taken on the next version.
    std::fs::write(&key, &wasm).unwrap();
    let channel = bind_sha(&s.db, "channel", &sha, 1);
    let repaired = PluginChains::new(vec![passthrough.clone(), channel], BTreeMap::new()).label;
    wait_until(
        "the repaired set is applied",
        || s.edge.log(),
        || runs(&s.edge, &repaired),
    );
    assert!(s.dir.join("edge/control/blobs").join(&sha).is_file());

    // A component that fails to load (it imports a host function) makes
    // the whole set refused; the edge keeps running the one before.
    let applied = s.edge.metric("hourglass_edge_control_applied_total");
    bind(
        &s.db,
        &s.central.archive,
        "imports",
        component("imports"),
        2,
    );
    wait_until(
        "the edge refuses the set that does not load",
        || s.edge.log(),
        || {
            s.edge
                .metric("hourglass_edge_control_refused_total{reason=\"plugin_load\"}")
                >= 1.0
        },
    );
    assert_eq!(
        s.edge.metric("hourglass_edge_control_applied_total"),
        applied
    );
    assert!(runs(&s.edge, &repaired));
    assert_eq!(pageview(&a, &url, "blob.example", "/after"), 202);
}

/// Issue 6: a new plugin set while ~2,000 hits/s flow. Every 202'd hit is
/// in `events` exactly once, and each row's `plugin_set` is the label of
/// the set whose effect it shows (the channel plugin writes `channel`).
#[test]
fn a_plugin_set_swapped_under_load_loses_and_repeats_no_hit() {
    let s = stack();
    add_site(&s.db, "s-load", "load.example", &[]);
    let passthrough = bind(
        &s.db,
        &s.central.archive,
        "passthrough",
        component("passthrough"),
        0,
    );
    let before = PluginChains::new(vec![passthrough.clone()], BTreeMap::new()).label;
    let url = s.edge.url.clone();
    wait_until(
        "the edge runs the first set",
        || s.edge.log(),
        || runs(&s.edge, &before) && pageview(&agent(), &url, "load.example", "/warmup") == 202,
    );

    const RATE: u64 = 2_000;
    const SECONDS: u64 = 20;
    const THREADS: u64 = 8;
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, accepted, refused) = (url.clone(), accepted.clone(), refused.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut ok = Vec::new();
                let per_thread = RATE / THREADS;
                for i in 0..per_thread * SECONDS {
                    // Paced: hit i of this thread is due at i / per_thread s.
                    let due = started + Duration::from_micros(i * 1_000_000 / per_thread);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let path = format!("/t{t}/h{i}");
                    if pageview(&a, &url, "load.example", &path) == 202 {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        ok.push(path);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ok
            })
        })
        .collect();

    // Mid-load: a new plugin is uploaded to the registry (validated,
    // stored by SHA-256) and activated on the platform chain.
    std::thread::sleep(Duration::from_secs(SECONDS / 2));
    let sent_before_swap = accepted.load(Ordering::Relaxed);
    let wasm = hourglass_testkit::state_dir().join("plugins/channel.wasm");
    let wasm = wasm.to_str().unwrap();
    for args in [
        &[
            "upload",
            wasm,
            "--name",
            "channel",
            "--version",
            "2.0.0",
            "--platform",
        ][..],
        &[
            "activate",
            "channel",
            "2.0.0",
            "--platform",
            "--position",
            "1",
        ],
    ] {
        let out = s.central.plugin_cli(&s.db, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "plugin {args:?}: {}",
            text(&out)
        );
    }
    let channel = PluginBinding {
        name: "channel".into(),
        plugin_version: "2.0.0".into(),
        sha256: hourglass_processing::control::sha256_hex(&component("channel")),
        config: String::new(),
        data_sha256: String::new(),
        on_failure: "skip-plugin".into(),
    };
    let after = PluginChains::new(vec![passthrough, channel], BTreeMap::new()).label;
    assert_ne!(before, after);
    let sent: Vec<String> = senders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    assert_eq!(refused.load(Ordering::Relaxed), 0, "{}", s.edge.log());
    eprintln!(
        "sent {} hits in {:.1} s ({:.0}/s), {sent_before_swap} before the swap",
        sent.len(),
        elapsed.as_secs_f64(),
        sent.len() as f64 / elapsed.as_secs_f64()
    );
    assert!(runs(&s.edge, &after), "{}", s.edge.log());

    let expected = sent.len() as u64 + 1; // and the warm-up pageview
    wait_until(
        "every hit is loaded",
        || s.central.log(),
        || count(&s.db, "SELECT count() FROM events WHERE site_id = 's-load'") >= expected,
    );
    // Exactly once: as many rows as hits, as many distinct paths as rows.
    assert_eq!(
        count(&s.db, "SELECT count() FROM events WHERE site_id = 's-load'"),
        expected
    );
    assert_eq!(
        count(
            &s.db,
            "SELECT uniqExact(pathname) FROM events WHERE site_id = 's-load'"
        ),
        expected
    );
    // Each row names the set whose effect it shows, and both sets ran.
    let sets = rows(
        &s.db,
        "SELECT plugin_set, channel, count() FROM events WHERE site_id = 's-load' \
         GROUP BY plugin_set, channel",
    );
    let by_set: BTreeMap<(String, String), u64> = sets
        .iter()
        .map(|line| {
            let mut cols = line.split('\t');
            let set = cols.next().unwrap().to_owned();
            let channel = cols.next().unwrap().to_owned();
            ((set, channel), cols.next().unwrap().parse().unwrap())
        })
        .collect();
    eprintln!("rows by (plugin_set, channel): {by_set:?}");
    assert_eq!(by_set.len(), 2, "{by_set:?}");
    assert!(
        by_set.contains_key(&(before.clone(), String::new())),
        "{by_set:?}"
    );
    assert!(
        by_set.contains_key(&(after.clone(), "Direct".to_owned())),
        "{by_set:?}"
    );
    assert_eq!(by_set.values().sum::<u64>(), expected);
}
