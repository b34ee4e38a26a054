//! `cargo xtask bench ingest`: central ingest into ClickHouse, two figures
//! from one run on one private ClickHouse (18.16, the Debian package).
//!
//! 1. **Freshness.** A release `edge-agent` and `central-ingest serve`
//!    (receiver + loader, default settings) under `loadgen` at `--rate`
//!    hits/s for `--secs` s. Every hit carries a marker prop; `loadgen`
//!    records the wall-clock time of each `202`. A row is visible from the
//!    moment its load's insert returned; the loader writes the batch's
//!    `loaded` ledger row (version = wall-clock ms) right after, so
//!    `loaded version - 202 time` is each hit's freshness, a bound from
//!    above by the few ms the ledger insert takes. Same machine, same clock.
//! 2. **Loader throughput.** The archive phase 1 wrote is loaded again
//!    by a loader-only `central-ingest serve` into a freshly migrated
//!    database (`events` + materialized views), timed from the process
//!    start until it reports every row loaded; side by side,
//!    `clickhouse-client` inserts the very same rows (dumped from phase 1
//!    as `Native`, in the order the loader inserts them) into another
//!    freshly migrated database. Both are then checked to hold every row
//!    in `events` and every rollup. Rounds alternate; the medians are
//!    compared.
//! 3. **Reprocess** (`bench reprocess` only). In each round, once the
//!    loader has loaded its database, `reprocess --range` rebuilds every
//!    day of it from the same archive (plugin set `none`, as the edge ran,
//!    `--concurrency` = cores): its rows/s beside the loader's rows/s of the
//!    same round, and each day's breakdown of where the time went.
//!
//! Writes `bench/results/ingest.{json,md}` (or `reprocess.{json,md}`). Must not: assert speed, touch
//! processes it did not start, or send traffic anywhere but 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hourglass_pki::{CertDir, EdgeName};
use hourglass_testkit::{ClickHouseServer, Lifetime, http_post};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::bench::{
    Guard, command_line, free_port, log_file, metric_sum, shell_out, stop, wait_healthy,
    write_results,
};
use crate::{cargo, run_cmd};

#[derive(Args)]
pub struct IngestArgs {
    /// Offered load of the freshness phase, hits per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds of the freshness phase (its hits are the throughput phase's rows).
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    #[arg(long, default_value_t = 64)]
    connections: u32,
    #[arg(long, default_value_t = 1)]
    loadgen_threads: usize,
    #[arg(long, default_value_t = 500)]
    sites: usize,
    /// Throughput rounds: each loads the rows once with the loader and once
    /// with clickhouse-client, each into a fresh database.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Use the release binaries as they are.
    #[arg(long)]
    no_build: bool,
}

const EDGE_ID: &str = "bench-edge";
const SERVER_NAME: &str = "central.bench";

pub fn ingest(args: &IngestArgs, reprocess: bool) -> Result<()> {
    anyhow::ensure!(
        args.secs > 0.0 && args.secs <= 600.0,
        "--secs must be in (0, 600]"
    );
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let root = hourglass_testkit::workspace_root();
    if !args.no_build {
        run_cmd(cargo().args([
            "build",
            "--release",
            "-p",
            "central-ingest",
            "-p",
            "edge-agent",
            "-p",
            "warehouse-schema",
            "-p",
            "hourglass-loadgen",
            "-p",
            "reprocess",
        ]))?;
    }
    let bin = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release");
    let client = which("clickhouse-client")?;
    let work = hourglass_testkit::state_dir().join("bench").join("ingest");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    eprintln!("starting a private ClickHouse");
    let ch = ClickHouseServer::start(
        &work.join("clickhouse"),
        Lifetime::TiedTo(std::process::id()),
    )?;
    let ch_version = sql(&ch.url, "SELECT version()")?.trim().to_owned();
    let server_pid = clickhouse_pid(ch.pid);
    let warehouse = Warehouse {
        url: ch.url.clone(),
        tcp_port: ch.tcp_port,
        schema: bin.join("warehouse-schema"),
        client,
    };

    // Certificates for one edge.
    let certs = work.join("certs");
    let central_bin = bin.join("central-ingest");
    for certs_args in [
        &["init"][..],
        &["issue-server", SERVER_NAME],
        &["issue-edge", EDGE_ID],
    ] {
        let out = Command::new(&central_bin)
            .arg("certs")
            .arg("--dir")
            .arg(&certs)
            .args(certs_args)
            .output()
            .context("running central-ingest certs")?;
        anyhow::ensure!(
            out.status.success(),
            "central-ingest certs {certs_args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Phase 1: freshness through edge and central.
    let archive = work.join("archive");
    warehouse.create("fresh")?;
    let central_ops = free_port()?;
    let quic = free_port()?;
    let central_config = work.join("central.toml");
    std::fs::write(
        &central_config,
        format!(
            "quic_listen = \"127.0.0.1:{quic}\"\nops_listen = \"127.0.0.1:{central_ops}\"\n\
             archive_dir = \"{}\"\ncerts_dir = \"{}\"\n",
            archive.display(),
            certs.display()
        ),
    )?;
    let mut central = warehouse.serve(
        &central_bin,
        &central_config,
        "fresh",
        &work.join("central.log"),
    )?;
    let guard_central = Guard(Some(central.id()));
    let central_ops: std::net::SocketAddr = ([127, 0, 0, 1], central_ops).into();
    wait_healthy(
        &mut central,
        central_ops,
        "/healthz",
        &work.join("central.log"),
    )?;

    let loadgen = bin.join("loadgen");
    let sites = Command::new(&loadgen)
        .args(["sites", "--sites", &args.sites.to_string()])
        .output()
        .context("running loadgen sites")?;
    anyhow::ensure!(sites.status.success(), "loadgen sites failed");
    std::fs::write(work.join("sites.json"), &sites.stdout)?;
    std::fs::write(work.join("master.key"), b"bench master secret, 32 bytes ok")?;
    let edge_port = free_port()?;
    let edge_ops = free_port()?;
    let cert_dir = CertDir::new(&certs);
    let name = EdgeName::new(EDGE_ID).context("a valid edge name")?;
    std::fs::write(
        work.join("edge.toml"),
        format!(
            r#"edge_id = "{EDGE_ID}"
listen = "127.0.0.1:{edge_port}"
ops_listen = "127.0.0.1:{edge_ops}"
buffer_dir = "{buffer}"
sites_file = "{sites}"
master_secret_file = "{secret}"
durability = "interval"
# The load generator stands for a load balancer: believe its X-Forwarded-For.
trusted_proxies = ["127.0.0.1"]

[rate_limit]
per_ip_per_sec = 0

[central]
endpoints = ["127.0.0.1:{quic}"]
server_name = "{SERVER_NAME}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
"#,
            buffer = work.join("buffer").display(),
            sites = work.join("sites.json").display(),
            secret = work.join("master.key").display(),
            ca = cert_dir.ca_cert_path().display(),
            cert = cert_dir.edge_cert_path(&name).display(),
            key = cert_dir.edge_key_path(&name).display(),
        ),
    )?;
    let mut edge = Command::new(bin.join("edge-agent"))
        .arg("serve")
        .arg("--config")
        .arg(work.join("edge.toml"))
        .env("RUST_LOG", "warn")
        .stdout(log_file(&work.join("edge.log"))?)
        .stderr(log_file(&work.join("edge.log"))?)
        .spawn()
        .context("starting edge-agent")?;
    let guard_edge = Guard(Some(edge.id()));
    let edge_addr: std::net::SocketAddr = ([127, 0, 0, 1], edge_port).into();
    wait_healthy(&mut edge, edge_addr, "/healthz", &work.join("edge.log"))?;

    eprintln!(
        "freshness: {} hits/s for {} s through edge and central",
        args.rate, args.secs
    );
    let answers_file = work.join("answers.tsv");
    let status = Command::new(&loadgen)
        .arg("load")
        .args(["--target", &edge_addr.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--secs", &args.secs.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--threads", &args.loadgen_threads.to_string()])
        .args(["--mix", "plausible=100"])
        .args(["--sites", &args.sites.to_string()])
        .arg("--record")
        .arg(&answers_file)
        .arg("--json-out")
        .arg(work.join("load.json"))
        .stdout(Stdio::null())
        .status()
        .context("running loadgen")?;
    anyhow::ensure!(status.success(), "loadgen failed: {status}");
    let load: Value = serde_json::from_slice(&std::fs::read(work.join("load.json"))?)?;
    let answered = read_answers(&answers_file)?;
    let expected = answered.len() as u64;
    eprintln!("{expected} hits answered 202; waiting until they are all in ClickHouse");
    let started = Instant::now();
    loop {
        let rows = warehouse.count("fresh", "SELECT count() FROM events")?;
        if rows >= expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!(
                "only {rows} of {expected} answered hits reached ClickHouse within 180 s; see {}",
                work.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let central_metrics = crate::bench::http_get(central_ops, "/metrics").unwrap_or_default();
    stop(&mut edge, Signal::SIGTERM)?;
    guard_edge.defuse();
    stop(&mut central, Signal::SIGTERM)?;
    guard_central.defuse();
    let freshness = freshness(&warehouse, &answered, &work)?;
    eprintln!("freshness: {freshness}");

    // Phase 2: the same rows through the loader and through clickhouse-client.
    let rows = warehouse.count("fresh", "SELECT count() FROM events")?;
    let dump = work.join("events.native");
    // In the order the loader inserts them (batch by batch, hit by hit):
    // `SELECT *` alone returns them sorted by the table's key, which
    // ClickHouse then sorts and aggregates far more cheaply (measured:
    // ~30 % less server CPU) than rows as they arrive.
    warehouse.client_to_file(
        "SELECT * FROM fresh.events ORDER BY batch_id, hit_index FORMAT Native",
        &dump,
    )?;
    let dump_bytes = std::fs::metadata(&dump)?.len();
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let db = format!("ingest_loader_{round}");
        warehouse.create(&db)?;
        let config = work.join(format!("loader-{round}.toml"));
        let ops = free_port()?;
        std::fs::write(
            &config,
            format!(
                "ops_listen = \"127.0.0.1:{ops}\"\narchive_dir = \"{}\"\n\
                 [receiver]\nenabled = false\n",
                archive.display()
            ),
        )?;
        let log = work.join(format!("loader-{round}.log"));
        let (children_before, server_before) = (children_cpu_s(), cpu_s(server_pid));
        let started = Instant::now();
        let mut loader = warehouse.serve(&central_bin, &config, &db, &log)?;
        let guard = Guard(Some(loader.id()));
        // Done when the loader says so (its inserts returned, views and
        // all); polling ClickHouse itself would cost it CPU meanwhile.
        let ops: std::net::SocketAddr = ([127, 0, 0, 1], ops).into();
        loop {
            let metrics = crate::bench::http_get(ops, "/metrics").unwrap_or_default();
            if metric_sum(&metrics, "hourglass_central_loaded_rows_total") >= rows as f64 {
                break;
            }
            if let Some(status) = loader.try_wait()? {
                bail!("the loader exited with {status}; see {}", log.display());
            }
            if started.elapsed() > Duration::from_secs(1200) {
                bail!(
                    "the loader did not load {rows} rows within 20 min; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let loader_s = started.elapsed().as_secs_f64();
        let loader_server_cpu_s = cpu_s(server_pid) - server_before;
        stop(&mut loader, Signal::SIGTERM)?;
        guard.defuse();
        let loader_cpu_s = children_cpu_s() - children_before;
        warehouse.check_all_there(&db, rows)?;
        let rerun = if reprocess {
            let r = rerun(&warehouse, &bin, &work, &archive, &db, round)?;
            warehouse.check_all_there(&db, rows)?;
            Some(r)
        } else {
            None
        };
        warehouse.drop(&db)?;

        let db = format!("ingest_client_{round}");
        warehouse.create(&db)?;
        let (children_before, server_before) = (children_cpu_s(), cpu_s(server_pid));
        let started = Instant::now();
        warehouse.client_from_file(&format!("INSERT INTO {db}.events FORMAT Native"), &dump)?;
        let client_s = started.elapsed().as_secs_f64();
        let client_server_cpu_s = cpu_s(server_pid) - server_before;
        let client_cpu_s = children_cpu_s() - children_before;
        warehouse.check_all_there(&db, rows)?;
        warehouse.drop(&db)?;
        let mut r = json!({
            "round": round,
            "loader_s": loader_s,
            "loader_rows_per_s": rows as f64 / loader_s,
            "client_s": client_s,
            "client_rows_per_s": rows as f64 / client_s,
            "ratio": client_s / loader_s,
            // CPU seconds while each ran: its own, and ClickHouse's.
            "loader_cpu_s": loader_cpu_s,
            "loader_server_cpu_s": loader_server_cpu_s,
            "client_cpu_s": client_cpu_s,
            "client_server_cpu_s": client_server_cpu_s,
        });
        if let Some((reprocess_s, days)) = rerun {
            r["reprocess_s"] = json!(reprocess_s);
            r["reprocess_rows_per_s"] = json!(rows as f64 / reprocess_s);
            r["reprocess_vs_loader"] = json!(loader_s / reprocess_s);
            r["reprocess_days"] = json!(days);
        }
        eprintln!("round {round}: {r}");
        rounds.push(r);
    }
    let median = |key: &str| {
        let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let results = json!({
        "command": command_line(),
        "conditions": {
            "date_utc": shell_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            "git_commit": shell_out("git", &["rev-parse", "--short", "HEAD"]),
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "loadavg_before": load_before.trim(),
            "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "clickhouse": ch_version,
            "rate": args.rate,
            "secs": args.secs,
            "connections": args.connections,
            "loadgen_threads": args.loadgen_threads,
            "sites": args.sites,
            "rounds": args.rounds,
        },
        "freshness": {
            "load": load,
            "answered_202": expected,
            "central_loaded_batches": metric_sum(&central_metrics, "hourglass_central_loaded_batches_total"),
            "central_load_inserts": metric_sum(&central_metrics, "hourglass_central_load_inserts_total"),
            "latency_ms": freshness.to_json(),
        },
        "throughput": {
            "rows": rows,
            "native_dump_bytes": dump_bytes,
            "rounds": rounds,
            "loader_rows_per_s_median": median("loader_rows_per_s"),
            "client_rows_per_s_median": median("client_rows_per_s"),
            "reprocess_rows_per_s_median": median("reprocess_rows_per_s"),
        },
    });
    let mut table = markdown(&results);
    if reprocess {
        table = reprocess_markdown(&results) + "\n" + &table;
    }
    let name = if reprocess { "reprocess" } else { "ingest" };
    write_results(&root, name, &results, &table)?;
    let _ = std::fs::remove_file(&dump);
    drop(ch);
    Ok(())
}

/// Phase 3: `reprocess` over every day of `db` from `archive`, timed from
/// process start to exit. Returns the seconds and each day's line (events,
/// batches and where the time went).
fn rerun(
    warehouse: &Warehouse,
    bin: &Path,
    work: &Path,
    archive: &Path,
    db: &str,
    round: u32,
) -> Result<(f64, Vec<String>)> {
    let config = work.join(format!("reprocess-{round}.toml"));
    std::fs::write(
        &config,
        format!(
            "archive_dir = {:?}\nsites_file = {:?}\nmaster_secret_file = {:?}\n\
             state_dir = {:?}\nplugin_set = \"none\"\n[warehouse]\nurl = {:?}\ndatabase = {db:?}\n",
            archive.display().to_string(),
            work.join("sites.json").display().to_string(),
            work.join("master.key").display().to_string(),
            work.join(format!("reprocess-{round}"))
                .display()
                .to_string(),
            warehouse.url,
        ),
    )?;
    // Every hit was received in the last minutes: today and tomorrow (UTC)
    // cover them even across midnight.
    let today = shell_out("date", &["-u", "+%Y-%m-%d"]);
    let after = shell_out("date", &["-u", "-d", "+2 days", "+%Y-%m-%d"]);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let started = Instant::now();
    let out = Command::new(bin.join("reprocess"))
        .arg("--config")
        .arg(&config)
        .args(["--range", &format!("{}..{}", today.trim(), after.trim())])
        .args(["--yes", "--concurrency", &cores.to_string()])
        .env("CLICKHOUSE_URL", &warehouse.url)
        .env("CLICKHOUSE_DATABASE", db)
        .env_remove("HOURGLASS_CONFIG")
        .output()
        .context("running reprocess")?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "reprocess failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let days: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(", swapped"))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "round {round}: reprocess {seconds:.2} s\n{}",
        days.join("\n")
    );
    Ok((seconds, days))
}

fn reprocess_markdown(r: &Value) -> String {
    let t = &r["throughput"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (loader, rerun) = (
        num(&t["loader_rows_per_s_median"]),
        num(&t["reprocess_rows_per_s_median"]),
    );
    let mut s = format!(
        "# reprocess vs the live loader\n\n`{}` — {}, commit {}.\n\n\
         ## Throughput ({} rows from the same archive, median of {} rounds)\n\n\
         | | rows/s | reprocess / loader | target |\n|---|---:|---:|---|\n\
         | `reprocess --range` (decode, pipeline, staging, rollups, swap) | {rerun:.0} | {:.2}× | ≥ 0.5× |\n\
         | central-ingest loader (archive → `events` + views) | {loader:.0} | | |\n\n\
         | round | loader s | reprocess s | reprocess / loader |\n|---|---:|---:|---:|\n",
        r["command"].as_str().unwrap_or_default(),
        r["conditions"]["date_utc"].as_str().unwrap_or_default(),
        r["conditions"]["git_commit"].as_str().unwrap_or_default(),
        t["rows"],
        r["conditions"]["rounds"],
        if loader > 0.0 { rerun / loader } else { 0.0 },
    );
    for round in t["rounds"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2}× |\n",
            round["round"],
            num(&round["loader_s"]),
            num(&round["reprocess_s"]),
            num(&round["reprocess_vs_loader"]),
        ));
    }
    s.push_str("\nWhere a reprocess's time went, per day (last round):\n\n```\n");
    if let Some(last) = t["rounds"].as_array().and_then(|r| r.last()) {
        for line in last["reprocess_days"].as_array().into_iter().flatten() {
            s.push_str(line.as_str().unwrap_or_default());
            s.push('\n');
        }
    }
    s.push_str("```\n");
    s
}

/// The private server, and how to reach it.
struct Warehouse {
    url: String,
    tcp_port: u16,
    schema: PathBuf,
    client: PathBuf,
}

impl Warehouse {
    /// A new database with every migration applied.
    fn create(&self, db: &str) -> Result<()> {
        sql(&self.url, &format!("CREATE DATABASE {db}"))?;
        let out = Command::new(&self.schema)
            .arg("migrate")
            .env("CLICKHOUSE_URL", &self.url)
            .env("CLICKHOUSE_DATABASE", db)
            .output()
            .context("running warehouse-schema migrate")?;
        anyhow::ensure!(
            out.status.success(),
            "warehouse-schema migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn drop(&self, db: &str) -> Result<()> {
        sql(&self.url, &format!("DROP DATABASE {db}")).map(drop)
    }

    fn count(&self, db: &str, query: &str) -> Result<u64> {
        let out = sql(&format!("{}/?database={db}", self.url), query)?;
        out.trim()
            .parse()
            .with_context(|| format!("{query}: {out:?}"))
    }

    /// `events` and every rollup hold `rows` events.
    fn check_all_there(&self, db: &str, rows: u64) -> Result<()> {
        for (what, query) in [
            ("events", "SELECT count() FROM events"),
            ("site_hourly", "SELECT countMerge(events) FROM site_hourly"),
            (
                "pages_hourly",
                "SELECT countMerge(events) FROM pages_hourly",
            ),
            (
                "sources_hourly",
                "SELECT countMerge(events) FROM sources_hourly",
            ),
            ("sessions", "SELECT countMerge(events) FROM sessions"),
        ] {
            let n = self.count(db, query)?;
            anyhow::ensure!(n == rows, "{db}.{what} holds {n} events, expected {rows}");
        }
        Ok(())
    }

    /// `central-ingest serve` with `config`, this server and `db`.
    fn serve(
        &self,
        bin: &Path,
        config: &Path,
        db: &str,
        log: &Path,
    ) -> Result<std::process::Child> {
        Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("CLICKHOUSE_URL", &self.url)
            .env("CLICKHOUSE_DATABASE", db)
            .stdout(log_file(log)?)
            .stderr(log_file(log)?)
            .spawn()
            .context("starting central-ingest")
    }

    fn client(&self, query: &str) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.args(["--host", "127.0.0.1", "--port", &self.tcp_port.to_string()])
            .args(["--query", query]);
        cmd
    }

    fn client_to_file(&self, query: &str, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path)?;
        let status = self.client(query).stdout(file).status()?;
        anyhow::ensure!(status.success(), "clickhouse-client {query:?}: {status}");
        Ok(())
    }

    fn client_from_file(&self, query: &str, path: &Path) -> Result<()> {
        let file = std::fs::File::open(path)?;
        let status = self.client(query).stdin(file).status()?;
        anyhow::ensure!(status.success(), "clickhouse-client {query:?}: {status}");
        Ok(())
    }
}

/// CPU seconds (user + system) `pid` has used, from `/proc` (0 if gone).
fn cpu_s(pid: u32) -> f64 {
    proc_stat_seconds(&format!("/proc/{pid}/stat"), 11)
}

/// The `clickhouse-server` process under the testkit's watchdog `pid`
/// (or `pid` itself when there is none).
fn clickhouse_pid(pid: u32) -> u32 {
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let Some((name, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let parent = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            name.contains("(clickhouse") && parent == Some(pid)
        })
        .unwrap_or(pid)
}

/// CPU seconds of this process's children that have been waited for.
fn children_cpu_s() -> f64 {
    proc_stat_seconds("/proc/self/stat", 13)
}

/// The sum of two consecutive tick fields of a `stat` file, starting
/// `index` fields after the state (utime is 11, cutime 13), in seconds.
fn proc_stat_seconds(path: &str, index: usize) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ: 100 on every Linux this runs on.
    (tick(index) + tick(index + 1)) / 100.0
}

fn sql(url: &str, query: &str) -> Result<String> {
    http_post(url, query).map_err(|e| anyhow::anyhow!("{query}: {e}"))
}

fn which(program: &str) -> Result<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
        .with_context(|| {
            format!("{program} is not installed: apt-get install clickhouse-client (cargo xtask test installs it)")
        })
}

/// `marker -> unix µs of the 202`, as `loadgen --record` wrote them.
fn read_answers(path: &Path) -> Result<std::collections::HashMap<String, u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut answers = std::collections::HashMap::new();
    for line in text.lines() {
        let (marker, at) = line
            .split_once('\t')
            .with_context(|| format!("a line of {}: {line:?}", path.display()))?;
        answers.insert(marker.to_owned(), at.parse()?);
    }
    Ok(answers)
}

struct Freshness {
    /// Each hit's ms from its 202 to its batch's `loaded` ledger row, sorted.
    ms: Vec<f64>,
    /// Answered hits whose row was not found.
    missing: usize,
}

impl Freshness {
    fn quantile(&self, q: f64) -> f64 {
        if self.ms.is_empty() {
            return 0.0;
        }
        let i = ((self.ms.len() - 1) as f64 * q).round() as usize;
        self.ms[i]
    }

    fn to_json(&self) -> Value {
        json!({
            "hits": self.ms.len(),
            "missing": self.missing,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "p999": self.quantile(0.999),
            "max": self.ms.last().copied().unwrap_or(0.0),
            "min": self.ms.first().copied().unwrap_or(0.0),
        })
    }
}

impl std::fmt::Display for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hits: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} answered hits not found)",
            self.ms.len(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.ms.last().copied().unwrap_or(0.0),
            self.missing
        )
    }
}

/// Matches every row of `fresh.events` to its 202 (by marker) and to the
/// time its batch was recorded `loaded`.
fn freshness(
    warehouse: &Warehouse,
    answered: &std::collections::HashMap<String, u64>,
    work: &Path,
) -> Result<Freshness> {
    // Hundreds of thousands of rows: through clickhouse-client into a
    // file (the HTTP helper caps answers at 10 MiB).
    let fetch = |query: &str, path: &Path| -> Result<String> {
        warehouse.client_to_file(query, path)?;
        let text = std::fs::read_to_string(path)?;
        let _ = std::fs::remove_file(path);
        Ok(text)
    };
    let loaded: std::collections::HashMap<String, u64> = fetch(
        "SELECT batch_id, min(version) FROM fresh.loads WHERE status = 'loaded' \
         GROUP BY batch_id FORMAT TSV",
        &work.join("loaded.tsv"),
    )?
    .lines()
    .filter_map(|l| {
        let (id, v) = l.split_once('\t')?;
        Some((id.to_owned(), v.parse().ok()?))
    })
    .collect();
    let rows = fetch(
        "SELECT props.value[indexOf(props.key, 'lg')], batch_id FROM fresh.events FORMAT TSV",
        &work.join("rows.tsv"),
    )?;
    let mut ms = Vec::with_capacity(answered.len());
    for line in rows.lines() {
        let Some((marker, batch)) = line.split_once('\t') else {
            continue;
        };
        if let (Some(at_us), Some(loaded_ms)) = (answered.get(marker), loaded.get(batch)) {
            ms.push(*loaded_ms as f64 - *at_us as f64 / 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    let missing = answered.len().saturating_sub(ms.len());
    Ok(Freshness { ms, missing })
}

fn markdown(r: &Value) -> String {
    let c = &r["conditions"];
    let f = &r["freshness"];
    let t = &r["throughput"];
    let lat = &f["latency_ms"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut s = String::new();
    s.push_str("# central ingest: loader vs clickhouse-client, and freshness\n\n");
    s.push_str(&format!(
        "`{}` — {}, commit {}, {} cores shared with other work (load average before: {}; after: {}), ClickHouse {}.\n\n",
        r["command"].as_str().unwrap_or_default(),
        c["date_utc"].as_str().unwrap_or_default(),
        c["git_commit"].as_str().unwrap_or_default(),
        c["cores"],
        c["loadavg_before"].as_str().unwrap_or_default(),
        c["loadavg_after"].as_str().unwrap_or_default(),
        c["clickhouse"].as_str().unwrap_or_default(),
    ));
    let (loader, client) = (
        num(&t["loader_rows_per_s_median"]),
        num(&t["client_rows_per_s_median"]),
    );
    s.push_str(&format!(
        "## Loader throughput ({} rows, `events` and every materialized view on it, median of {} rounds)\n\n\
         | | rows/s | loader / client | target |\n|---|---:|---:|---|\n\
         | central-ingest loader (archive → ClickHouse) | {loader:.0} | {:.2}× | ≥ 0.9× |\n\
         | clickhouse-client `INSERT … FORMAT Native` | {client:.0} | | |\n\n",
        t["rows"],
        c["rounds"],
        if client > 0.0 { loader / client } else { 0.0 },
    ));
    s.push_str(
        "| round | loader s | client s | loader / client | CPU s: loader + its ClickHouse | CPU s: client + its ClickHouse |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for round in t["rounds"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2}× | {:.2} + {:.2} | {:.2} + {:.2} |\n",
            round["round"],
            num(&round["loader_s"]),
            num(&round["client_s"]),
            num(&round["ratio"]),
            num(&round["loader_cpu_s"]),
            num(&round["loader_server_cpu_s"]),
            num(&round["client_cpu_s"]),
            num(&round["client_server_cpu_s"]),
        ));
    }
    s.push_str(&format!(
        "\n## Freshness: edge `202` → row visible in ClickHouse\n\n\
         {:.0} hits/s offered for {} s ({} connections); {:.0} answered per second, {} answered `202`, {} matched to their row ({} not found).\n\n\
         | p50 | p90 | p99 | p99.9 | max | target |\n|---:|---:|---:|---:|---:|---|\n\
         | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | p99 ≤ 5000 ms |\n",
        num(&c["rate"]),
        c["secs"],
        c["connections"],
        num(&f["load"]["throughput_rps"]),
        f["answered_202"],
        lat["hits"],
        lat["missing"],
        num(&lat["p50"]),
        num(&lat["p90"]),
        num(&lat["p99"]),
        num(&lat["p999"]),
        num(&lat["max"]),
    ));
    s
}
