//! Running real `central-ingest serve` processes for tests (all roles in
//! one, or split: a receiver-only and a loader-only process sharing an
//! archive; the merchant API on when asked), its admin CLI, and what the
//! tests check afterwards: what the archive holds, counts in the
//! warehouse, and every rollup against `events`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};

use hourglass_archive::{Archive, Hour};
use hourglass_model::decode_batch;
use hourglass_testkit::TestDb;

use crate::binary;

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `central-ingest certs --dir DIR ARGS…`.
pub fn certs(dir: &Path, args: &[&str]) -> Output {
    crate::run(
        binary("central-ingest")
            .arg("certs")
            .arg("--dir")
            .arg(dir)
            .args(args),
    )
}

/// A CA with central's server certificate in `dir`.
pub fn ca_with_server_cert(dir: &Path) {
    for args in [
        &["init"][..],
        &["issue-server", crate::receiver::SERVER_NAME],
    ] {
        let out = certs(dir, args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
}

/// `warehouse-schema migrate` into `db`.
pub fn migrate(db: &TestDb) {
    let out = crate::run(
        binary("warehouse-schema")
            .arg("migrate")
            .env("CLICKHOUSE_URL", &db.url)
            .env("CLICKHOUSE_DATABASE", &db.name),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A running `central-ingest serve` on free ports.
pub struct Central {
    pub dir: PathBuf,
    pub archive: PathBuf,
    pub quic: SocketAddr,
    pub ops_url: String,
    /// The merchant API, when started with it ([`Central::start_with_api`]).
    pub api_url: Option<String>,
    config: PathBuf,
    warehouse: (String, String),
    child: Option<Child>,
}

impl Central {
    /// Starts with `extra_toml` (sections) after the generated settings and
    /// the warehouse from `db` (or the loader off without one); the archive
    /// is `dir/archive`.
    pub fn start(dir: &Path, certs: &Path, db: Option<&TestDb>, extra_toml: &str) -> Central {
        Central::start_with_archive(dir, &dir.join("archive"), certs, db, extra_toml)
    }

    /// As [`Central::start`], with the archive in `archive` (shared by a
    /// receiver-only and a loader-only process).
    pub fn start_with_archive(
        dir: &Path,
        archive: &Path,
        certs: &Path,
        db: Option<&TestDb>,
        extra_toml: &str,
    ) -> Central {
        Central::launch(dir, archive, certs, db, db.is_some(), false, extra_toml)
    }

    /// Starts on `db` with the merchant API on (no result cache, so every
    /// answer reads the warehouse) and the loader on or off.
    pub fn start_with_api(dir: &Path, certs: &Path, db: &TestDb, loader: bool) -> Central {
        Central::launch(dir, &dir.join("archive"), certs, Some(db), loader, true, "")
    }

    /// As [`Central::start_with_api`], with `extra_toml` added right after
    /// the `[api]` lines: `[api]` keys (e.g. `admin_token_sha256 = "…"`)
    /// first, then any sections.
    pub fn start_with_api_toml(
        dir: &Path,
        certs: &Path,
        db: &TestDb,
        loader: bool,
        extra_toml: &str,
    ) -> Central {
        Central::launch(
            dir,
            &dir.join("archive"),
            certs,
            Some(db),
            loader,
            true,
            extra_toml,
        )
    }

    /// The config file the process runs with (for CLI commands on the
    /// same archive).
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// `central-ingest plugin ARGS` on this central's config (its archive)
    /// and `db`: the registry's command line.
    pub fn plugin_cli(&self, db: &TestDb, args: &[&str]) -> Output {
        crate::run(
            crate::binary("central-ingest")
                .arg("--config")
                .arg(&self.config)
                .arg("plugin")
                .args(args)
                .env("CLICKHOUSE_URL", &db.url)
                .env("CLICKHOUSE_DATABASE", &db.name)
                .env_remove("HOURGLASS_CONFIG"),
        )
    }

    fn launch(
        dir: &Path,
        archive: &Path,
        certs: &Path,
        db: Option<&TestDb>,
        loader: bool,
        api: bool,
        extra_toml: &str,
    ) -> Central {
        std::fs::create_dir_all(dir).unwrap();
        let quic: SocketAddr = format!("127.0.0.1:{}", hourglass_testkit::free_port().unwrap())
            .parse()
            .unwrap();
        let ops = hourglass_testkit::free_port().unwrap();
        let api_port = api.then(|| hourglass_testkit::free_port().unwrap());
        let api_toml = api_port.map_or(String::new(), |port| {
            // No result cache unless the test sets one.
            let cache = if extra_toml.contains("result_cache_secs") {
                ""
            } else {
                "result_cache_secs = 0\n"
            };
            format!(
                "[api]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nkey_cache_ttl_secs = 1\n{cache}"
            )
        });
        let config = dir.join("central.toml");
        std::fs::write(
            &config,
            format!(
                "quic_listen = \"{quic}\"\nops_listen = \"127.0.0.1:{ops}\"\n\
                 archive_dir = \"{archive}\"\ncerts_dir = \"{certs}\"\ncrl_reload_secs = 1\n\
                 [loader]\nenabled = {loader}\nmax_wait_ms = 200\n{api_toml}{extra_toml}\n",
                archive = archive.display(),
                certs = certs.display(),
            ),
        )
        .unwrap();
        let warehouse = db.map_or(
            ("http://127.0.0.1:8123".to_string(), "unused".to_string()),
            |db| (db.url.clone(), db.name.clone()),
        );
        let mut central = Central {
            dir: dir.to_path_buf(),
            archive: archive.to_path_buf(),
            quic,
            ops_url: format!("http://127.0.0.1:{ops}"),
            api_url: api_port.map(|port| format!("http://127.0.0.1:{port}")),
            config,
            warehouse,
            child: None,
        };
        central.spawn();
        central
    }

    /// Starts the process (again, with the same config and ports) and
    /// waits until `/healthz` answers.
    pub fn spawn(&mut self) {
        let mut cmd = binary("central-ingest");
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("CLICKHOUSE_URL", &self.warehouse.0)
            .env("CLICKHOUSE_DATABASE", &self.warehouse.1);
        self.child = Some(crate::spawn_until_healthy(
            cmd,
            &self.dir.join("central.log"),
            &format!("{}/healthz", self.ops_url),
        ));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("central.log")).unwrap_or_default()
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.archive.clone()
    }

    /// The value of one Prometheus sample (0 when absent).
    pub fn metric(&self, sample: &str) -> f64 {
        let text = ureq::get(&format!("{}/metrics", self.ops_url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0.0)
    }

    /// SIGTERM, and the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok()?.code()
    }

    /// SIGKILL: no drain, no last ledger row.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What the archive holds: (batches, raw hits, events), every batch decoded.
pub fn archived(dir: &Path) -> (usize, usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let archive = Archive::local(dir).unwrap();
        let (mut batches, mut hits, mut events) = (0, 0, 0);
        for hour in archive.raw_hours().await.unwrap() {
            for key in archive.list_hours(hour, hour.next()).await.unwrap() {
                let batch = decode_batch(&archive.get(&key).await.unwrap()).unwrap();
                assert_eq!(batch.id(), Some(&key.batch_id));
                let first = batch.raw_hits[0].received_at_ms;
                assert_eq!(Hour::from_unix_ms(first).unwrap(), key.hour);
                batches += 1;
                hits += batch.raw_hits.len();
                events += batch.events.len();
            }
        }
        (batches, hits, events)
    })
}

/// One number from `sql` in `db`.
pub fn count(db: &TestDb, sql: &str) -> u64 {
    let out = db.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {out:?}: {e}"))
}

/// Every rollup's event count, and `events`'s.
pub fn warehouse_counts(db: &TestDb) -> [u64; 5] {
    [
        count(db, "SELECT count() FROM events"),
        count(db, "SELECT countMerge(events) FROM site_hourly"),
        count(db, "SELECT countMerge(events) FROM pages_hourly"),
        count(db, "SELECT countMerge(events) FROM sources_hourly"),
        count(db, "SELECT countMerge(events) FROM sessions"),
    ]
}

/// Batches whose latest ledger status is `loaded`.
pub fn loaded_batches(db: &TestDb) -> u64 {
    count(
        db,
        "SELECT count() FROM (SELECT batch_id, argMax(status, version) AS s \
         FROM loads GROUP BY batch_id) WHERE s = 'loaded'",
    )
}

/// Compares every rollup, row by row at its own grain, with the same
/// aggregation recomputed from `events`: `site_hourly`, `pages_hourly`
/// and `sources_hourly` per their keys (pageviews, events, visitors,
/// visits), `sessions` per (site, session, day) (visitor, start, end,
/// pageviews, events, interactive events; not the entry and exit page,
/// which are `argMin/argMax` over one-second times: ties make them depend
/// on the order rows were aggregated in), `site_daily` and
/// `dimensions_daily` per their keys. Returns the number of rollup rows compared, or the first
/// difference.
pub fn rollups_match_events(db: &TestDb) -> Result<usize, String> {
    const HOURLY: [(&str, &str); 3] = [
        ("site_hourly", "site_id, hour"),
        ("pages_hourly", "site_id, hour, hostname, pathname"),
        (
            "sources_hourly",
            "site_id, hour, referrer_source, channel, utm_source, utm_medium, utm_campaign, \
             country, device, browser, os",
        ),
    ];
    let query = |sql: &str| db.query(sql).map_err(|e| format!("{sql}: {e}"));
    let mut compared = 0;
    for (table, keys) in HOURLY {
        let from_events = query(&format!(
            "SELECT {keys}, countIf(name = 'pageview'), count(), uniq(visitor_id), \
             uniq(session_id) FROM (SELECT *, toStartOfHour(ts) AS hour FROM events) \
             GROUP BY {keys} ORDER BY {keys} FORMAT TSV"
        ))?;
        let from_rollup = query(&format!(
            "SELECT {keys}, countIfMerge(pageviews), countMerge(events), uniqMerge(visitors), \
             uniqMerge(visits) FROM {table} GROUP BY {keys} ORDER BY {keys} FORMAT TSV"
        ))?;
        same(table, &from_rollup, &from_events)?;
        compared += from_rollup.lines().count();
    }
    let keys = "site_id, session_id, day";
    let from_events = query(&format!(
        "SELECT {keys}, any(visitor_id), min(ts), max(ts), countIf(name = 'pageview'), \
         count(), countIf(interactive = 1) \
         FROM (SELECT *, toDate(ts) AS day FROM events) GROUP BY {keys} ORDER BY {keys} FORMAT TSV"
    ))?;
    let from_rollup = query(&format!(
        "SELECT {keys}, anyMerge(visitor), minMerge(started_at), maxMerge(ended_at), \
         countIfMerge(pageviews), countMerge(events), countIfMerge(interactive_events) \
         FROM sessions GROUP BY {keys} ORDER BY {keys} FORMAT TSV"
    ))?;
    same("sessions", &from_rollup, &from_events)?;
    compared += from_rollup.lines().count();
    // The daily rollups (0007): per UTC day, `uniqHLL12` distinct counts.
    let dimensions = "SELECT site_id, name, visitor_id, session_id, toStartOfDay(ts) AS day, \
         dimension, value FROM events ARRAY JOIN \
         ['page', 'source', 'channel', 'utm_source', 'utm_medium', 'utm_campaign', 'country', \
         'device', 'browser', 'os'] AS dimension, [pathname, referrer_source, channel, \
         utm_source, utm_medium, utm_campaign, country, device, browser, os] AS value";
    for (table, keys, rows) in [
        (
            "site_daily",
            "site_id, day",
            "SELECT *, toStartOfDay(ts) AS day FROM events",
        ),
        (
            "dimensions_daily",
            "site_id, day, dimension, value",
            dimensions,
        ),
    ] {
        let from_events = query(&format!(
            "SELECT {keys}, countIf(name = 'pageview'), count(), uniqHLL12(visitor_id), \
             uniqHLL12(session_id) FROM ({rows}) GROUP BY {keys} ORDER BY {keys} FORMAT TSV"
        ))?;
        let from_rollup = query(&format!(
            "SELECT {keys}, countIfMerge(pageviews), countMerge(events), \
             uniqHLL12Merge(visitors), uniqHLL12Merge(visits) FROM {table} \
             GROUP BY {keys} ORDER BY {keys} FORMAT TSV"
        ))?;
        same(table, &from_rollup, &from_events)?;
        compared += from_rollup.lines().count();
    }
    Ok(compared)
}

/// Equal TSV results, or the first line that differs.
fn same(table: &str, rollup: &str, events: &str) -> Result<(), String> {
    if rollup == events {
        return Ok(());
    }
    let (r, e): (Vec<&str>, Vec<&str>) = (rollup.lines().collect(), events.lines().collect());
    let at = r
        .iter()
        .zip(&e)
        .position(|(a, b)| a != b)
        .unwrap_or(r.len().min(e.len()));
    Err(format!(
        "{table} differs from events ({} rows vs {}); first difference at row {at}:\n\
         rollup: {:?}\nevents: {:?}",
        r.len(),
        e.len(),
        r.get(at),
        e.get(at)
    ))
}

/// Runs `central-ingest admin ARGS` against `db`.
pub fn admin_raw(db: &TestDb, args: &[&str]) -> Output {
    crate::run(
        binary("central-ingest")
            .arg("admin")
            .args(args)
            .env("CLICKHOUSE_URL", &db.url)
            .env("CLICKHOUSE_DATABASE", &db.name)
            .env_remove("HOURGLASS_CONFIG"),
    )
}

/// Runs `central-ingest admin ARGS`, asserts success and returns the
/// `name: value` lines it printed.
pub fn admin(db: &TestDb, args: &[&str]) -> Vec<(String, String)> {
    let out = admin_raw(db, args);
    assert_eq!(out.status.code(), Some(0), "admin {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The value of `name` among [`admin`]'s lines.
pub fn field(lines: &[(String, String)], name: &str) -> String {
    lines
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
        .1
        .clone()
}

/// A merchant with the site `site_id` (`domain`) and an API key for it
/// (rate limit high enough for a reader in a loop); returns the key.
pub fn merchant_with_site(db: &TestDb, site_id: &str, domain: &str) -> String {
    let merchant = field(&admin(db, &["merchant", "add", "Test shop"]), "merchant_id");
    admin(
        db,
        &[
            "site",
            "add",
            "--merchant",
            &merchant,
            "--domain",
            domain,
            "--id",
            site_id,
        ],
    );
    field(
        &admin(
            db,
            &[
                "key",
                "create",
                "--merchant",
                &merchant,
                "--rate-limit",
                "1000000",
            ],
        ),
        "key",
    )
}
