//! `reprocess --range` against a real ClickHouse: ingesting with plugin set
//! v1 and reprocessing with v2 gives exactly the warehouse that ingesting
//! with v2 from the start gives (events and every rollup, per day); a dry
//! run changes nothing; a rerun skips the checkpointed days; `--site` and a
//! partial day keep every other row.
//!
//! The dataset goes through the same code the edge runs (`admit`, `stamp`,
//! `process_batch`), is archived with `hourglass_archive` and loaded the
//! way the loader loads (one insert per batch and day, `loaded` ledger
//! rows). v2 is the reference `ua-parse` + `channel` plugins from
//! `cargo xtask plugins`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hourglass_archive::{Archive, BatchKey, Hour};
use hourglass_e2e::central::{self, Central};
use hourglass_e2e::warehouse::{dump, rows};
use hourglass_e2e::{binary, run};
use hourglass_model::{Batch, BatchHeader, BatchId, Event, Protocol, RawHit, encode_batch};
use hourglass_plugin_host::{Chain, FailurePolicy, Host, Limits, PluginSource};
use hourglass_processing::{
    IdentityKeys, NoPlugins, Pipeline, PluginChain, SessionTable, SiteConfig, SiteDirectory,
};
use hourglass_testkit::TestDb;
use hourglass_warehouse::plugins::PluginBinding;
use hourglass_warehouse::{LoadEntry, Warehouse, WarehouseConfig, unix_seconds};

const SECRET: [u8; 32] = [9u8; 32];
const V2_CHANNEL_CONFIG: &str = "internal_hosts = pay.example.net";
const DAYS: [u32; 3] = [20261101, 20261102, 20261103];

fn nov_1_2026_s() -> i64 {
    time::Date::from_calendar_date(2026, time::Month::November, 1)
        .expect("a date")
        .midnight()
        .assume_utc()
        .unix_timestamp()
}

fn sites() -> SiteDirectory {
    let site = |id: &str, domain: &str| SiteConfig {
        site_id: id.into(),
        domain: domain.into(),
        allowed_hostnames: vec![],
        timezone: "UTC".into(),
        ga4: vec![],
        segment_write_keys: vec![],
    };
    SiteDirectory::new(1, vec![site("a", "a.example"), site("b", "b.example")])
        .expect("valid sites")
}

fn plugins_dir() -> PathBuf {
    hourglass_testkit::state_dir().join("plugins")
}

fn v2_members() -> [(&'static str, &'static str); 2] {
    [("ua-parse", ""), ("channel", V2_CHANNEL_CONFIG)]
}

fn v2_chain() -> Box<dyn PluginChain> {
    let host = Host::new(Limits::default()).expect("a WASM engine");
    let plugins = v2_members()
        .into_iter()
        .map(|(name, config)| {
            let path = plugins_dir().join(format!("{name}.wasm"));
            let wasm = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot read {}: {e}. Build the plugins first: `cargo xtask plugins`",
                    path.display()
                )
            });
            host.load(PluginSource {
                name: name.into(),
                wasm,
                config: config.into(),
                data: Vec::new(),
                on_failure: FailurePolicy::SkipPlugin,
            })
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    Box::new(Chain::new("v2", plugins))
}

fn pipeline(chain: Box<dyn PluginChain>) -> Pipeline {
    Pipeline::new(
        Arc::new(sites()),
        IdentityKeys::from_master_secret(&SECRET).expect("a key"),
        chain,
    )
}

const UAS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
];
const REFERRERS: [&str; 5] = [
    "",
    "https://www.google.com/",
    "https://www.facebook.com/",
    "https://news.ycombinator.com/item?id=1",
    "https://pay.example.net/done",
];

/// Stamped raw hits over three UTC days (every 15 min, distinct times so
/// no argMin/argMax ties), grouped into one batch per receive hour.
fn batches() -> Vec<(BatchKey, Vec<RawHit>)> {
    let edge = pipeline(Box::new(NoPlugins));
    let mut sessions = SessionTable::new(10_000);
    let start_ms = nov_1_2026_s() * 1000;
    let mut by_hour: BTreeMap<Hour, Vec<RawHit>> = BTreeMap::new();
    for i in 0..288u64 {
        let received_at_ms = start_ms + i as i64 * 900_000 + (i as i64 % 11) * 1000;
        let domain = if i % 3 == 0 { "b.example" } else { "a.example" };
        let name = if i % 5 == 4 { "signup" } else { "pageview" };
        let path = ["/", "/pricing", "/blog/x", "/docs"][(i % 4) as usize];
        let utm = if i % 7 == 0 {
            "?utm_source=news&utm_medium=email"
        } else {
            ""
        };
        let body = serde_json::json!({
            "n": name,
            "u": format!("https://{domain}{path}{utm}"),
            "d": domain,
            "r": REFERRERS[(i % 5) as usize],
        })
        .to_string();
        let mut hit = RawHit {
            received_at_ms,
            edge_id: "edge-1".into(),
            seq: i + 1,
            protocol: Protocol::Native as i32,
            method: "POST".into(),
            path_and_query: "/api/event".into(),
            user_agent: UAS[(i % 4) as usize].into(),
            client_ip: format!("198.51.100.{}", i % 9),
            body: body.into_bytes(),
            ..RawHit::default()
        };
        let decoded = edge
            .admit(&hit)
            .unwrap_or_else(|e| panic!("hit {i}: {e:?}"));
        edge.stamp(&mut hit, &decoded, &mut sessions);
        let hour = Hour::from_unix_ms(received_at_ms).expect("an hour");
        by_hour.entry(hour).or_default().push(hit);
    }
    by_hour
        .into_iter()
        .enumerate()
        .map(|(n, (hour, hits))| {
            let batch_id = BatchId {
                edge_id: "edge-1".into(),
                seq: 1_000 + n as u64,
            };
            (BatchKey { hour, batch_id }, hits)
        })
        .collect()
}

/// Processes every batch with `chain`; returns (key, events).
fn process(
    keys: &[(BatchKey, Vec<RawHit>)],
    chain: Box<dyn PluginChain>,
) -> Vec<(BatchKey, Vec<Event>)> {
    let mut p = pipeline(chain);
    keys.iter()
        .map(|(key, hits)| {
            let out = p.process_batch(hits);
            assert!(out.rejects.is_empty(), "{:?}", out.rejects);
            (key.clone(), out.events)
        })
        .collect()
}

fn warehouse(db: &TestDb) -> Warehouse {
    Warehouse::new(&WarehouseConfig {
        url: db.url.clone(),
        database: db.name.clone(),
        ..WarehouseConfig::default()
    })
    .expect("a warehouse handle")
}

fn day_of(ms: i64) -> u32 {
    let date = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .expect("a time")
        .date();
    date.year() as u32 * 10_000 + u32::from(u8::from(date.month())) * 100 + u32::from(date.day())
}

/// Loads like the loader: one insert per batch and day, then `loaded`
/// ledger rows.
async fn load(wh: &Warehouse, plugin_set: &str, batches: &[(BatchKey, Vec<Event>)]) {
    warehouse_schema::migrate(wh).await.expect("migrations");
    let mut entries = Vec::new();
    for (key, events) in batches {
        let mut by_day: BTreeMap<u32, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_day.entry(day_of(e.ts_ms)).or_default().push(e.clone());
        }
        for (_, events) in by_day {
            wh.insert_event_batches(&[(key.batch_id.clone(), plugin_set.to_owned(), events)])
                .await
                .expect("insert");
        }
        let secs: Vec<u32> = events
            .iter()
            .filter_map(|e| unix_seconds(e.ts_ms))
            .collect();
        entries.push(LoadEntry {
            batch_id: key.batch_id.to_string(),
            archive_key: key.path(),
            plugin_set: plugin_set.into(),
            rows: events.len() as u64,
            min_ts: secs.iter().copied().min().unwrap_or(0),
            max_ts: secs.iter().copied().max().unwrap_or(0),
            status: "loaded".into(),
            error: String::new(),
            loaded_at: 0,
            version: 1,
        });
    }
    wh.record_loads(&entries).await.expect("ledger");
}

struct Setup {
    dir: tempfile::TempDir,
    /// Ingested with v1 (no plugins); the one reprocess works on.
    db: TestDb,
    /// Ingested with v2 from the start: the reference.
    reference: TestDb,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temp dir");
    let raw = batches();
    let v1 = process(&raw, Box::new(NoPlugins));
    let v2 = process(&raw, v2_chain());
    let db = hourglass_testkit::fresh_database();
    let reference = hourglass_testkit::fresh_database();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let archive = Archive::local(&dir.path().join("archive")).expect("archive");
        let mut p1 = v1.iter();
        for (key, hits) in &raw {
            let (_, events) = p1.next().expect("same batches");
            let batch = Batch {
                header: Some(BatchHeader {
                    id: Some(key.batch_id.clone()),
                    created_at_ms: hits[0].received_at_ms,
                    plugin_set: "none".into(),
                    hit_count: hits.len() as u32,
                    event_count: events.len() as u32,
                    reject_count: 0,
                }),
                raw_hits: hits.clone(),
                events: events.clone(),
                rejects: vec![],
            };
            archive
                .put(key, bytes::Bytes::from(encode_batch(&batch)))
                .await
                .expect("archive put");
        }
        load(&warehouse(&db), "none", &v1).await;
        load(&warehouse(&reference), "v2", &v2).await;
    });
    std::fs::write(
        dir.path().join("sites.json"),
        serde_json::to_vec(&sites()).expect("json"),
    )
    .expect("write sites");
    std::fs::write(dir.path().join("master.key"), SECRET).expect("write secret");
    let mut plugins = String::from("plugin_set = \"v2\"\n");
    for (name, config) in v2_members() {
        plugins.push_str(&format!(
            "[[plugins]]\nname = {name:?}\npath = {:?}\nconfig = {config:?}\n",
            plugins_dir()
                .join(format!("{name}.wasm"))
                .display()
                .to_string()
        ));
    }
    std::fs::write(dir.path().join("v2.toml"), plugins).expect("write plugin set");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let config = format!(
        "archive_dir = {:?}\nsites_file = {:?}\nmaster_secret_file = {:?}\nstate_dir = {:?}\n\
         wait_for_loads_secs = 5\n[warehouse]\nurl = {:?}\ndatabase = {:?}\n",
        p("archive"),
        p("sites.json"),
        p("master.key"),
        p("state"),
        db.url,
        db.name
    );
    std::fs::write(dir.path().join("reprocess.toml"), config).expect("write config");
    Setup { dir, db, reference }
}

/// `reprocess` with the test's config and warehouse, and plugin set v2
/// unless `args` name `--plugins`.
fn reprocess_cmd(setup: &Setup, args: &[&str]) -> std::process::Command {
    let dir = setup.dir.path();
    let mut cmd = binary("reprocess");
    cmd.env_remove("HOURGLASS_CONFIG")
        .env("CLICKHOUSE_URL", &setup.db.url)
        .env("CLICKHOUSE_DATABASE", &setup.db.name)
        .arg("--config")
        .arg(dir.join("reprocess.toml"));
    if !args.contains(&"--plugins") {
        cmd.arg("--plugins").arg(dir.join("v2.toml"));
    }
    cmd.args(args);
    cmd
}

/// `reprocess` stopping at the test barriers (`ready-<point>` files in the
/// returned directory, released by `go-<point>`), output piped.
fn spawn_at_barriers(s: &Setup, args: &[&str]) -> (std::process::Child, PathBuf) {
    let barrier = s.dir.path().join("barrier");
    std::fs::create_dir_all(&barrier).expect("barrier dir");
    let child = reprocess_cmd(s, args)
        .env("HOURGLASS_REPROCESS_BARRIER_DIR", &barrier)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("reprocess starts");
    (child, barrier)
}

fn reprocess(setup: &Setup, args: &[&str]) -> Output {
    let out = run(&mut reprocess_cmd(setup, args));
    eprintln!(
        "reprocess {args:?}: {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Day checkpoints written under the state directory.
fn checkpoints(s: &Setup) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path)
                    } else {
                        usize::from(
                            path.file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with("20")),
                        )
                    }
                })
                .sum()
        })
    }
    walk(&s.dir.path().join("state"))
}

fn staging_left(db: &TestDb) -> String {
    db.query(&format!(
        "SELECT count() FROM system.databases WHERE name LIKE '{}\\_rp\\_%'",
        db.name
    ))
    .expect("query")
    .trim()
    .to_owned()
}

#[test]
fn reprocessing_v1_with_v2_gives_the_warehouse_v2_ingest_gives() {
    let s = setup();
    let all = "1";
    let before: Vec<_> = DAYS.iter().map(|d| dump(&s.db, *d, all)).collect();
    for (i, day) in DAYS.iter().enumerate() {
        assert!(!before[i]["events"].is_empty(), "day {day} has events");
        assert_ne!(
            before[i],
            dump(&s.reference, *day, all),
            "v1 and v2 differ on {day}"
        );
    }

    // A dry run builds staging, prints the summary and changes nothing.
    let out = reprocess(
        &s,
        &["--range", "2026-11-01T00..2026-11-03T00", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert_eq!(text.matches("not swapped (dry run)").count(), 2, "{text}");
    assert!(
        text.contains("[1/2] day 20261101: events 96 -> 96"),
        "{text}"
    );
    for (i, day) in DAYS.iter().enumerate() {
        assert_eq!(
            before[i],
            dump(&s.db, *day, all),
            "dry run changed day {day}"
        );
    }
    assert_eq!(staging_left(&s.db), "0");

    // The real run swaps the two days of the range, and only them.
    let out = reprocess(&s, &["--range", "2026-11-01T00..2026-11-03T00"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).matches(", swapped").count(),
        2,
        "{}",
        stdout(&out)
    );
    for day in &DAYS[..2] {
        assert_eq!(
            dump(&s.db, *day, all),
            dump(&s.reference, *day, all),
            "day {day}"
        );
    }
    assert_eq!(
        before[2],
        dump(&s.db, DAYS[2], all),
        "day outside the range"
    );
    assert_eq!(staging_left(&s.db), "0");

    // The summary table has a line per day and site, the run is recorded.
    let text = stdout(&out);
    assert!(text.contains("site"), "{text}");
    for day in &DAYS[..2] {
        for site in ["a", "b"] {
            assert!(
                text.lines().any(|l| {
                    let cells: Vec<&str> = l.split_whitespace().collect();
                    cells.len() > 2
                        && cells[..2] == [day.to_string().as_str(), site]
                        && l.ends_with("swapped")
                }),
                "no summary line for {day} {site}:\n{text}"
            );
        }
    }
    assert_eq!(
        rows(
            &s.db,
            "SELECT status, dry_run, days, rows_before = rows_after, plugin_set \
             FROM reprocess_runs FINAL"
        ),
        vec!["done\t0\t2\t1\tv2", "done\t1\t2\t1\tv2"]
    );

    // A rerun (plain or --resume) skips the checkpointed days and changes
    // nothing.
    for extra in [None, Some("--resume")] {
        let mut args = vec!["--range", "2026-11-01T00..2026-11-03T00"];
        args.extend(extra);
        let out = reprocess(&s, &args);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            stdout(&out).matches("already swapped").count(),
            2,
            "{}",
            stdout(&out)
        );
    }
    for day in &DAYS[..2] {
        assert_eq!(
            dump(&s.db, *day, all),
            dump(&s.reference, *day, all),
            "day {day}"
        );
    }
}

#[test]
fn the_registry_chains_reprocess_like_the_same_plugins_in_a_set_file() {
    let s = setup();
    // The registry binds v2's plugins as v2 runs them, ua-parse then
    // channel, but split: ua-parse in the platform chain, channel in each
    // site's own chain (which runs after the platform's). The blobs are in
    // the archive, the rows in the warehouse.
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let wh = warehouse(&s.db);
        let archive = Archive::local(&s.dir.path().join("archive")).expect("archive");
        let merchant = wh.add_merchant("Shop").await.expect("merchant");
        for (id, domain) in [("a", "a.example"), ("b", "b.example")] {
            wh.add_site(&merchant.merchant_id, domain, "UTC", Some(id))
                .await
                .expect("site");
        }
        let [platform, per_site] = v2_members();
        for (scope, (name, config)) in [("", platform), ("a", per_site), ("b", per_site)] {
            let wasm = std::fs::read(plugins_dir().join(format!("{name}.wasm"))).expect("wasm");
            let sha256 = archive
                .put_plugin_blob(bytes::Bytes::from(wasm))
                .await
                .expect("blob");
            wh.bind_plugin(PluginBinding {
                scope: scope.into(),
                name: name.into(),
                plugin_version: "1".into(),
                sha256,
                config: config.into(),
                data_sha256: String::new(),
                on_failure: "skip-plugin".into(),
                position: 0,
                activated_at: 0,
                activated_by: "test".into(),
                version: 0,
                deleted: 0,
            })
            .await
            .expect("binding");
        }
    });

    let out = reprocess(
        &s,
        &[
            "--plugins",
            "registry",
            "--range",
            "2026-11-01T00..2026-11-03T00",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).matches(", swapped").count(),
        2,
        "{}",
        stdout(&out)
    );
    // The rows name the chains' label, as an edge running them would.
    let label = rows(&s.db, "SELECT plugin_set FROM reprocess_runs FINAL");
    assert_eq!(label.len(), 1);
    let label = label[0].clone();
    assert!(label.starts_with("ps-"), "{label}");
    let relabelled = |day: u32| {
        dump(&s.db, day, "1")
            .into_iter()
            .map(|(table, rows)| {
                let rows: Vec<String> = rows.iter().map(|r| r.replace(&label, "v2")).collect();
                (table, rows)
            })
            .collect::<BTreeMap<_, _>>()
    };
    for day in &DAYS[..2] {
        assert_eq!(relabelled(*day), dump(&s.reference, *day, "1"), "day {day}");
    }

    // A site the registry does not have is refused, not emptied.
    let out = reprocess(
        &s,
        &[
            "--plugins",
            "registry",
            "--site",
            "gone",
            "--range",
            "2026-11-03T00..2026-11-04T00",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--site gone: not a live site"), "{err}");

    // A blob missing from the archive stops the run before anything.
    let blobs = s.dir.path().join("archive/plugins/blobs");
    for entry in std::fs::read_dir(&blobs).expect("blobs") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    std::fs::remove_dir_all(s.dir.path().join("state/plugin-blobs")).expect("cached blobs");
    let out = reprocess(
        &s,
        &[
            "--plugins",
            "registry",
            "--range",
            "2026-11-03T00..2026-11-04T00",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not in the archive"), "{err}");
}

#[test]
fn one_site_and_part_of_a_day_keep_every_other_row() {
    let s = setup();
    let day = DAYS[0];
    let start = nov_1_2026_s() + 6 * 3600;
    let end = nov_1_2026_s() + 86_400;
    let inside =
        format!("site_id = 'a' AND {{t}} >= toDateTime({start}) AND {{t}} < toDateTime({end})");
    let outside = format!("NOT ({inside})");
    let before_outside = dump(&s.db, day, &outside);
    let before_next_day = dump(&s.db, DAYS[1], "1");

    let out = reprocess(
        &s,
        &["--range", "2026-11-01T06..2026-11-02T00", "--site", "a"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).matches(", swapped").count(),
        1,
        "{}",
        stdout(&out)
    );

    let after_inside = dump(&s.db, day, &inside);
    assert!(!after_inside["events"].is_empty());
    // Rows and hourly rollups of the selection are v2's. (Sessions are
    // per day, not per hour: a session of site a starting before 06:00
    // mixes v1 and v2 events, so they are compared through events.)
    for table in ["events", "site_hourly", "pages_hourly", "sources_hourly"] {
        assert_eq!(
            after_inside[table],
            dump(&s.reference, day, &inside)[table],
            "{table} of the selection"
        );
    }
    let after_outside = dump(&s.db, day, &outside);
    for table in ["events", "site_hourly", "pages_hourly", "sources_hourly"] {
        assert_eq!(
            after_outside[table], before_outside[table],
            "{table} outside the selection"
        );
    }
    assert_eq!(dump(&s.db, DAYS[1], "1"), before_next_day, "the next day");
}

#[test]
fn a_load_in_flight_for_a_day_stops_the_run_before_any_swap() {
    let s = setup();
    let before = dump(&s.db, DAYS[0], "1");
    // A batch the loader started but has not finished, overlapping day 1.
    let start = nov_1_2026_s() as u32;
    s.db.query(&format!(
        "INSERT INTO loads VALUES ('edge-9-00000000000000000001', 'k', 'none', 3, \
         toDateTime({}), toDateTime({}), 'loading', '', toDateTime(0), 5)",
        start + 60,
        start + 120
    ))
    .expect("ledger row");
    let out = reprocess(&s, &["--range", "2026-11-01T00..2026-11-02T00"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("still `loading`"), "{err}");
    assert_eq!(dump(&s.db, DAYS[0], "1"), before);
    assert_eq!(checkpoints(&s), 0, "no checkpoint");
    assert_eq!(staging_left(&s.db), "0");
}

#[test]
fn refuses_what_it_cannot_or_should_not_do_and_changes_nothing() {
    let s = setup();
    let before = dump(&s.db, DAYS[0], "1");
    let refusals = [
        (
            vec!["--range", "2025-01-01T00..2025-01-02T00"],
            "holds no batch",
        ),
        (
            vec!["--range", "2026-11-01T00..2026-11-09T01"],
            "more than max_range_hours",
        ),
        (
            vec!["--range", "2026-11-01T00:30:00Z..2026-11-02T00:00:00Z"],
            "not on a whole UTC hour",
        ),
    ];
    for (args, reason) in refusals {
        let out = reprocess(&s, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    let out = run(binary("reprocess")
        .env_remove("HOURGLASS_CONFIG")
        .arg("--config")
        .arg(s.dir.path().join("reprocess.toml"))
        .args(["--range", "2026-11-01T00..2026-11-02T00", "--plugins", "v9"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown plugin set"));
    assert_eq!(dump(&s.db, DAYS[0], "1"), before);
    assert_eq!(checkpoints(&s), 0, "no checkpoint");
}

#[test]
fn swapping_an_empty_staging_day_empties_the_live_day() {
    let s = setup();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let wh = warehouse(&s.db);
    rt.block_on(async {
        let staging = wh.create_day_staging(DAYS[0]).await.expect("staging");
        wh.replace_day_from(&staging, DAYS[0]).await.expect("swap");
        staging.drop_database().await.expect("drop staging");
    });
    let after = dump(&s.db, DAYS[0], "1");
    for (table, rows) in &after {
        assert!(rows.is_empty(), "{table} still has rows of the day");
    }
    assert!(
        !dump(&s.db, DAYS[1], "1")["events"].is_empty(),
        "other days stay"
    );
}

/// One more batch of one stamped hit at `offset_s` into day 1, from
/// `edge_id`, archived (not loaded). Returns its key and hits.
fn archive_extra_batch(s: &Setup, edge_id: &str, offset_s: i64) -> (BatchKey, Vec<RawHit>) {
    archive_batch(s, edge_id, &[offset_s])
}

/// A batch of stamped hits received at `offsets_s` after day 1's start
/// (filed under the hour of the first), archived (not loaded).
fn archive_batch(s: &Setup, edge_id: &str, offsets_s: &[i64]) -> (BatchKey, Vec<RawHit>) {
    let edge = pipeline(Box::new(NoPlugins));
    let mut sessions = SessionTable::new(10);
    let hits: Vec<RawHit> = offsets_s
        .iter()
        .enumerate()
        .map(|(i, offset_s)| {
            let mut hit = RawHit {
                received_at_ms: (nov_1_2026_s() + offset_s) * 1000,
                edge_id: edge_id.into(),
                seq: i as u64 + 1,
                protocol: Protocol::Native as i32,
                method: "POST".into(),
                path_and_query: "/api/event".into(),
                user_agent: UAS[0].into(),
                client_ip: "203.0.113.5".into(),
                referer: String::new(),
                body: br#"{"n":"pageview","u":"https://a.example/late","d":"a.example","r":"https://www.google.com/"}"#.to_vec(),
                ..RawHit::default()
            };
            let decoded = edge.admit(&hit).expect("admitted");
            edge.stamp(&mut hit, &decoded, &mut sessions);
            hit
        })
        .collect();
    let received_at_ms = hits[0].received_at_ms;
    let key = BatchKey {
        hour: Hour::from_unix_ms(received_at_ms).expect("an hour"),
        batch_id: BatchId {
            edge_id: edge_id.into(),
            seq: 1,
        },
    };
    let batch = Batch {
        header: Some(BatchHeader {
            id: Some(key.batch_id.clone()),
            created_at_ms: received_at_ms,
            plugin_set: "none".into(),
            hit_count: hits.len() as u32,
            event_count: hits.len() as u32,
            reject_count: 0,
        }),
        events: pipeline(Box::new(NoPlugins)).process_batch(&hits).events,
        raw_hits: hits.clone(),
        rejects: vec![],
    };
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async {
            Archive::local(&s.dir.path().join("archive"))
                .expect("archive")
                .put(&key, bytes::Bytes::from(encode_batch(&batch)))
                .await
                .expect("archive put")
        });
    (key, hits)
}

#[test]
fn a_batch_received_across_midnight_is_reprocessed_with_the_next_day() {
    let s = setup();
    // First hit at 23:59:58 of day 1 (the batch is filed under that hour),
    // second at 00:00:01 of day 2; loaded with v1.
    let (key, hits) = archive_batch(&s, "edge-m", &[86_400 - 2, 86_400 + 1]);
    let v1 = process(&[(key.clone(), hits.clone())], Box::new(NoPlugins));
    let v2 = process(&[(key, hits)], v2_chain());
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(load(&warehouse(&s.db), "none", &v1));
    rt.block_on(load(&warehouse(&s.reference), "v2", &v2));
    let out = reprocess(&s, &["--range", "2026-11-02T00..2026-11-03T00"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        s.db.query(
            "SELECT count() FROM events WHERE batch_id LIKE 'edge-m-%' AND plugin_set = 'v2' \
             AND toYYYYMMDD(ts) = 20261102"
        )
        .expect("query")
        .trim(),
        "1"
    );
    assert_eq!(dump(&s.db, DAYS[1], "1"), dump(&s.reference, DAYS[1], "1"));
}

#[test]
fn archived_batches_the_loader_has_not_loaded_are_left_to_it() {
    let s = setup();
    // Archived on day 1, not in the ledger yet: the loader will load it
    // (with its own plugin set) on top of whatever is swapped.
    archive_extra_batch(&s, "edge-2", 10 * 3600 + 7);
    let out = reprocess(&s, &["--range", "2026-11-01T00..2026-11-02T00"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        s.db.query("SELECT count() FROM events WHERE batch_id LIKE 'edge-2-%'")
            .expect("query")
            .trim(),
        "0"
    );
    assert_eq!(dump(&s.db, DAYS[0], "1"), dump(&s.reference, DAYS[0], "1"));
}

fn wait_for(path: &std::path::Path, child: &mut std::process::Child) {
    // Polls a condition (the file), bounded only as a hang guard.
    for _ in 0..6_000 {
        if path.exists() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reprocess exited ({status}) before {}", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("reprocess never reached {}", path.display());
}

#[test]
fn a_batch_loaded_while_a_day_is_swapped_is_kept_once_as_the_loader_loaded_it() {
    let s = setup();
    let (mut child, barrier) = spawn_at_barriers(&s, &["--range", "2026-11-01T00..2026-11-02T00"]);

    // Staging of day 1 is built; now the loader loads a new batch into
    // the live day (v1 events + `loaded` ledger row), as it would.
    wait_for(&barrier.join("ready-20261101"), &mut child);
    let (key, hits) = archive_extra_batch(&s, "edge-3", 11 * 3600 + 3);
    let v1 = process(&[(key, hits)], Box::new(NoPlugins));
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(load(&warehouse(&s.db), "none", &v1));
    // The reference: v2 from the start, and the late batch as the loader
    // loaded it (v1), which is what the reprocess must keep.
    rt.block_on(load(&warehouse(&s.reference), "none", &v1));
    std::fs::write(barrier.join("go-20261101"), b"").expect("go");
    wait_for(&barrier.join("ready-mid-20261101"), &mut child);
    std::fs::write(barrier.join("go-mid-20261101"), b"").expect("go");
    // The swap dropped it; the ledger check sees that and inserts it again.
    let out = child.wait_with_output().expect("reprocess ends");
    let text = stdout(&out);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains("1 late batch(es) kept"), "{text}");
    assert_eq!(text.matches(", swapped").count(), 1, "{text}");
    assert_eq!(
        s.db.query(
            "SELECT count() FROM events WHERE batch_id LIKE 'edge-3-%' AND plugin_set = 'none'"
        )
        .expect("query")
        .trim(),
        "1"
    );
    assert_eq!(dump(&s.db, DAYS[0], "1"), dump(&s.reference, DAYS[0], "1"));
}

/// `reprocess` with the test's config and plugin set, not waited for.
fn spawn_reprocess(s: &Setup, args: &[&str]) -> std::process::Child {
    reprocess_cmd(s, args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("reprocess starts")
}

#[test]
fn killed_at_ten_random_points_then_resumed_it_ends_as_an_uninterrupted_run() {
    let range = "2026-11-01T00..2026-11-04T00";
    // The uninterrupted run: its warehouse is what every trial must end
    // with, its duration the span the kills fall in.
    let whole = setup();
    let started = Instant::now();
    assert_eq!(
        reprocess(&whole, &["--range", range]).status.code(),
        Some(0)
    );
    let span = started.elapsed();
    let expected: Vec<_> = DAYS.iter().map(|d| dump(&whole.db, *d, "1")).collect();

    let seed = std::env::var("HOURGLASS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (HOURGLASS_SEED), uninterrupted run {span:?}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut interrupted = 0;
    for trial in 0..10 {
        let s = setup();
        let at = span.mul_f64(rng.f64());
        let mut child = spawn_reprocess(&s, &["--range", range]);
        std::thread::sleep(at);
        if child.try_wait().expect("child status").is_none() {
            interrupted += 1;
        }
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        let done = checkpoints(&s);
        let out = reprocess(&s, &["--range", range, "--resume"]);
        assert_eq!(out.status.code(), Some(0), "trial {trial}: resume failed");
        eprintln!(
            "trial {trial}: killed after {at:?} with {done} day(s) checkpointed; resumed: {} day(s) skipped",
            stdout(&out).matches("already swapped").count()
        );
        for (i, day) in DAYS.iter().enumerate() {
            assert_eq!(
                dump(&s.db, *day, "1"),
                expected[i],
                "trial {trial} (seed {seed}): day {day} differs from the uninterrupted run"
            );
        }
        assert_eq!(staging_left(&s.db), "0", "trial {trial}: staging left");
    }
    eprintln!("{interrupted} of 10 kills hit a running reprocess");
    assert!(
        interrupted >= 5,
        "only {interrupted} kills hit a running reprocess"
    );
}

/// The day's `events`, `pageviews` and `visitors` of site `a` through the
/// merchant API (`None` when the API refused, e.g. 429).
fn api_totals(agent: &ureq::Agent, api_url: &str, key: &str) -> Option<Vec<u64>> {
    let query = serde_json::json!({
        "site_id": "a.example",
        "metrics": ["events", "pageviews", "visitors"],
        "date_range": ["2026-11-01", "2026-11-01"],
    });
    let mut r = agent
        .post(&format!("{api_url}/api/v1/query"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(query.to_string())
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let body: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
    body["results"][0]["metrics"]
        .as_array()?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect()
}

#[test]
fn a_reader_of_the_api_sees_each_day_before_or_after_the_swap_never_between() {
    let s = setup();
    let dir = s.dir.path();
    // v3 keeps pageviews only: the day's event total changes.
    std::fs::write(
        dir.join("v3.toml"),
        format!(
            "plugin_set = \"v3\"\n[[plugins]]\nname = \"validate\"\npath = {:?}\nconfig = \"allowed_names = pageview\"\n",
            plugins_dir().join("validate.wasm").display().to_string()
        ),
    )
    .expect("write v3");
    let key = central::merchant_with_site(&s.db, "a", "a.example");
    central::ca_with_server_cert(&dir.join("certs"));
    let central = Central::start_with_api(&dir.join("central"), &dir.join("certs"), &s.db, false);
    let api_url = central.api_url.clone().expect("the API is on");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let before = api_totals(&agent, &api_url, &key).expect("totals before");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, agent, url, key) = (stop.clone(), agent.clone(), api_url.clone(), key.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let started = Instant::now();
            // Bounded: until told, at most 120 s.
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                if let Some(totals) = api_totals(&agent, &url, &key) {
                    answers.push(totals);
                }
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = run(binary("reprocess")
        .env_remove("HOURGLASS_CONFIG")
        .env("CLICKHOUSE_URL", &s.db.url)
        .env("CLICKHOUSE_DATABASE", &s.db.name)
        .arg("--config")
        .arg(dir.join("reprocess.toml"))
        .args(["--plugins"])
        .arg(dir.join("v3.toml"))
        .args(["--range", "2026-11-01T00..2026-11-02T00"]));
    eprintln!("{}", central::text(&out));
    assert_eq!(out.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let answers = reader.join().expect("reader");
    let after = api_totals(&agent, &api_url, &key).expect("totals after");
    assert_ne!(before, after, "v3 changes the day");
    assert!(
        after[0] < before[0] && after[1] == before[1],
        "{before:?} -> {after:?}"
    );
    let n_before = answers.iter().filter(|a| **a == before).count();
    let n_after = answers.iter().filter(|a| **a == after).count();
    eprintln!(
        "{} answers during the run: {n_before} before {before:?}, {n_after} after {after:?}",
        answers.len()
    );
    assert!(n_before > 0 && n_after > 0, "the reader saw both states");
    assert_eq!(
        n_before + n_after,
        answers.len(),
        "an answer was neither before nor after: {:?}",
        answers.iter().find(|a| **a != before && **a != after)
    );
}

#[test]
fn a_batch_loaded_between_the_swaps_of_events_and_the_rollups_counts_everywhere_once() {
    let s = setup();
    let (mut child, barrier) = spawn_at_barriers(&s, &["--range", "2026-11-01T00..2026-11-02T00"]);
    wait_for(&barrier.join("ready-20261101"), &mut child);
    // A second run on the same database meanwhile is refused.
    let second = reprocess(
        &s,
        &["--range", "2026-11-01T00..2026-11-02T00", "--dry-run"],
    );
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another reprocess is running"));
    std::fs::write(barrier.join("go-20261101"), b"").expect("go");
    // `events` is swapped, the rollups are not yet: the loader loads now.
    wait_for(&barrier.join("ready-mid-20261101"), &mut child);
    let (key, hits) = archive_extra_batch(&s, "edge-4", 12 * 3600 + 5);
    let v1 = process(&[(key, hits)], Box::new(NoPlugins));
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(load(&warehouse(&s.db), "none", &v1));
    rt.block_on(load(&warehouse(&s.reference), "none", &v1));
    std::fs::write(barrier.join("go-mid-20261101"), b"").expect("go");
    let out = child.wait_with_output().expect("reprocess ends");
    let text = stdout(&out);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        s.db.query("SELECT count() FROM events WHERE batch_id LIKE 'edge-4-%'")
            .expect("query")
            .trim(),
        "1"
    );
    hourglass_e2e::central::rollups_match_events(&s.db).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dump(&s.db, DAYS[0], "1"), dump(&s.reference, DAYS[0], "1"));
}

#[test]
fn killed_mid_swap_the_rerun_keeps_a_batch_the_swap_dropped() {
    let s = setup();
    let range = "2026-11-01T12..2026-11-02T00";
    let (mut child, barrier) = spawn_at_barriers(&s, &["--range", range]);
    // Staging is built; the loader loads a batch received at 02:00, long
    // before the range (outside the archive window of any rerun): the swap
    // drops it, step 5 would put it back.
    wait_for(&barrier.join("ready-20261101"), &mut child);
    let before = rows(
        &s.db,
        "SELECT count() FROM events WHERE toYYYYMMDD(ts) = 20261101",
    );
    let (key, hits) = archive_extra_batch(&s, "edge-5", 2 * 3600 + 5);
    let v1 = process(&[(key, hits)], Box::new(NoPlugins));
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(load(&warehouse(&s.db), "none", &v1));
    std::fs::write(barrier.join("go-20261101"), b"").expect("go");
    // Killed right after `events` was swapped, before step 5.
    wait_for(&barrier.join("ready-mid-20261101"), &mut child);
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    assert_eq!(
        s.db.query("SELECT count() FROM events WHERE batch_id LIKE 'edge-5-%'")
            .expect("query")
            .trim(),
        "0",
        "the swap dropped the batch"
    );

    let out = reprocess(&s, &["--range", range, "--resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        s.db.query("SELECT count() FROM events WHERE batch_id LIKE 'edge-5-%'")
            .expect("query")
            .trim(),
        "1",
        "{}",
        stdout(&out)
    );
    let after = rows(
        &s.db,
        "SELECT count() FROM events WHERE toYYYYMMDD(ts) = 20261101",
    );
    let n = |v: &[String]| v[0].parse::<u64>().expect("a count");
    assert_eq!(n(&after), n(&before) + 1);
    hourglass_e2e::central::rollups_match_events(&s.db).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(staging_left(&s.db), "0");
}
