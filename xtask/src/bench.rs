//! `cargo xtask bench edge`: the edge agent against nginx, side by side in
//! one run, under the same load from `bench/loadgen`.
//!
//! Starts a `bench-receiver` (acking QUIC central), a release `edge-agent`
//! (`durability = "interval"`) and nginx (one worker, 204, every request
//! with its body in a JSON access log — the cheapest server that still
//! keeps what it was sent). Each phase runs on one server, then on the
//! other: a warm-up, a closed-loop run for the ceiling, an open-loop run at
//! `--rate` for latency. CPU is read from `/proc/<pid>/stat` around each
//! phase. Prints a table and writes `bench/results/edge.{json,md}`.
//!
//! Must not: assert speed (it reports against targets), touch processes it
//! did not start, or send traffic anywhere but 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::{cargo, run_cmd};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// edge-agent vs nginx: throughput, latency, CPU per request, RSS, bytes per hit.
    Edge(EdgeArgs),
    /// central's loader vs clickhouse-client into the same schema; freshness from the edge's 202 to a visible row.
    Ingest(crate::bench_ingest::IngestArgs),
    /// `reprocess` over the archive the ingest run made, side by side with the loader on the same rows.
    Reprocess(crate::bench_ingest::IngestArgs),
    /// The dashboard's queries over ≥ 10 M generated events: rollups vs raw `events`, and the API at fixed rates.
    Query(crate::bench_query::QueryArgs),
    /// The six reference plugins as WASM vs the same code native; host-guest cost; runaway stop time.
    Plugins(crate::bench_plugins::PluginsArgs),
}

#[derive(Args)]
struct EdgeArgs {
    /// Seconds of each measured phase, per server (two phases each).
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Open-loop rate (req/s) of the latency phase.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Client worker threads (the rest of the machine is the server's).
    #[arg(long, default_value_t = 1)]
    loadgen_threads: usize,
    #[arg(long, default_value = "plausible=90,ga4=5,segment=5")]
    mix: String,
    #[arg(long, default_value_t = 500)]
    sites: usize,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Use the release binaries as they are.
    #[arg(long)]
    no_build: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.what {
        Bench::Edge(a) => edge(a),
        Bench::Ingest(a) => crate::bench_ingest::ingest(a, false),
        Bench::Reprocess(a) => crate::bench_ingest::ingest(a, true),
        Bench::Query(a) => crate::bench_query::query(a),
        Bench::Plugins(a) => crate::bench_plugins::plugins(a),
    }
}

const EDGE_ID: &str = "bench-edge";

/// A server under test: the processes whose CPU is its cost.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    pids: Vec<u32>,
}

fn edge(args: &EdgeArgs) -> Result<()> {
    anyhow::ensure!(
        args.secs > 0.0 && args.secs <= 600.0,
        "--secs must be in (0, 600]"
    );
    let root = hourglass_testkit::workspace_root();
    ensure_nginx()?;
    if !args.no_build {
        run_cmd(cargo().args([
            "build",
            "--release",
            "-p",
            "edge-agent",
            "-p",
            "hourglass-loadgen",
            "-p",
            "hourglass-bench-receiver",
        ]))?;
    }
    let bin = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release");
    let work = hourglass_testkit::state_dir().join("bench").join("edge");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Central stand-in.
    let mut receiver = Command::new(bin.join("bench-receiver"))
        .arg("--certs")
        .arg(work.join("certs"))
        .args(["--edge-id", EDGE_ID])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting bench-receiver (built by `cargo build --release -p hourglass-bench-receiver`)")?;
    let guard_receiver = Guard(Some(receiver.id()));
    let mut receiver_out = BufReader::new(receiver.stdout.take().context("piped stdout")?);
    let ready: Value = serde_json::from_str(&read_line(&mut receiver_out)?)
        .context("bench-receiver's first line is its address and certificate files")?;

    // The edge.
    let sites = Command::new(bin.join("loadgen"))
        .args(["sites", "--sites", &args.sites.to_string()])
        .output()
        .context("running loadgen sites")?;
    anyhow::ensure!(sites.status.success(), "loadgen sites failed");
    std::fs::write(work.join("sites.json"), &sites.stdout)?;
    std::fs::write(work.join("master.key"), b"bench master secret, 32 bytes ok")?;
    let edge_port = free_port()?;
    let ops_port = free_port()?;
    let str_of = |k: &str| ready[k].as_str().unwrap_or_default().to_owned();
    std::fs::write(
        work.join("edge.toml"),
        format!(
            r#"edge_id = "{EDGE_ID}"
listen = "127.0.0.1:{edge_port}"
ops_listen = "127.0.0.1:{ops_port}"
buffer_dir = "{buffer}"
sites_file = "{sites}"
master_secret_file = "{secret}"
durability = "interval"
# The load generator stands for a load balancer: believe its X-Forwarded-For.
trusted_proxies = ["127.0.0.1"]

[central]
endpoints = ["{central}"]
server_name = "{server_name}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
"#,
            buffer = work.join("buffer").display(),
            sites = work.join("sites.json").display(),
            secret = work.join("master.key").display(),
            central = str_of("addr"),
            server_name = str_of("server_name"),
            ca = str_of("ca_file"),
            cert = str_of("cert_file"),
            key = str_of("key_file"),
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
    let edge_addr: SocketAddr = ([127, 0, 0, 1], edge_port).into();
    let ops_addr: SocketAddr = ([127, 0, 0, 1], ops_port).into();
    wait_healthy(&mut edge, edge_addr, "/healthz", &work.join("edge.log"))?;

    // The baseline.
    let nginx_dir = work.join("nginx");
    std::fs::create_dir_all(nginx_dir.join("body"))?;
    let nginx_port = free_port()?;
    std::fs::write(
        nginx_dir.join("nginx.conf"),
        nginx_conf(&nginx_dir, nginx_port),
    )?;
    let mut nginx = Command::new("nginx")
        .arg("-p")
        .arg(&nginx_dir)
        .arg("-c")
        .arg(nginx_dir.join("nginx.conf"))
        .stdout(log_file(&nginx_dir.join("stderr.log"))?)
        .stderr(log_file(&nginx_dir.join("stderr.log"))?)
        .spawn()
        .context("starting nginx")?;
    let guard_nginx = Guard(Some(nginx.id()));
    let nginx_addr: SocketAddr = ([127, 0, 0, 1], nginx_port).into();
    wait_healthy(&mut nginx, nginx_addr, "/", &nginx_dir.join("stderr.log"))?;
    let mut nginx_pids = vec![nginx.id()];
    nginx_pids.extend(children(nginx.id()));

    let servers = [
        Server {
            name: "edge",
            addr: edge_addr,
            pids: vec![edge.id()],
        },
        Server {
            name: "nginx",
            addr: nginx_addr,
            pids: nginx_pids,
        },
    ];
    let loadgen = bin.join("loadgen");
    let clk_tck = clock_ticks();
    for s in &servers {
        eprintln!("warm-up: {} for {} s", s.name, args.warmup_secs);
        run_load(&loadgen, args, s.addr, args.rate, args.warmup_secs, &work)?;
    }
    let mut phases = Vec::new();
    for (phase, rate) in [("max", 0.0), ("rate", args.rate)] {
        for s in &servers {
            eprintln!("{phase}: {} for {} s", s.name, args.secs);
            let cpu0 = cpu_ticks(&s.pids);
            let summary = run_load(&loadgen, args, s.addr, rate, args.secs, &work)?;
            if s.name == "edge" {
                settle_edge(ops_addr)?;
            }
            let cpu_s = (cpu_ticks(&s.pids) - cpu0) as f64 / clk_tck;
            let requests = summary["requests"].as_f64().unwrap_or(0.0);
            phases.push(json!({
                "server": s.name,
                "phase": phase,
                "cpu_s": cpu_s,
                "cpu_us_per_request": if requests > 0.0 { cpu_s * 1e6 / requests } else { 0.0 },
                "load": summary,
            }));
        }
    }

    // Edge totals, then stop everything in order: edge drains to central.
    let metrics = http_get(ops_addr, "/metrics").unwrap_or_default();
    let edge_status = std::fs::read_to_string(format!("/proc/{}/status", edge.id()))?;
    let nginx_worker_status = servers[1]
        .pids
        .get(1)
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .unwrap_or_default();
    let receiver_cpu_s = cpu_ticks(&[receiver.id()]) as f64 / clk_tck;
    stop(&mut edge, Signal::SIGTERM)?;
    guard_edge.defuse();
    // SIGQUIT: graceful, nginx flushes its access log.
    stop(&mut nginx, Signal::SIGQUIT)?;
    guard_nginx.defuse();
    stop(&mut receiver, Signal::SIGTERM)?;
    guard_receiver.defuse();
    let received: Value = serde_json::from_str(&read_line(&mut receiver_out)?)
        .context("bench-receiver's last line is its figures")?;

    let zstd = Command::new(&loadgen)
        .arg("zstd-blocks")
        .arg(nginx_dir.join("access.log"))
        .args(["--block-bytes", "1048576", "--level", "1"])
        .output()
        .context("running loadgen zstd-blocks")?;
    anyhow::ensure!(zstd.status.success(), "loadgen zstd-blocks failed");
    let zstd: Value = serde_json::from_slice(&zstd.stdout)?;

    let hits = metric_sum(&metrics, "hourglass_edge_hits_total");
    let batch_bytes = metric_sum(&metrics, "hourglass_edge_batch_bytes_total");
    let sample = &received["sample"];
    let figures = json!({
        "edge_hits": hits,
        "edge_batches_written": metric_sum(&metrics, "hourglass_edge_batches_written_total"),
        "edge_batch_bytes": batch_bytes,
        "edge_rejects": metric_sum(&metrics, "hourglass_edge_rejects_total"),
        "edge_batch_bytes_per_hit": if hits > 0.0 { batch_bytes / hits } else { 0.0 },
        "receiver": received,
        "receiver_cpu_s": receiver_cpu_s,
        "raw_only_share_of_batch_bytes": ratio(sample["raw_only_bytes"].as_f64(), sample["bytes"].as_f64()),
        "edge_vm_hwm_kib": status_kib(&edge_status, "VmHWM:"),
        "nginx_worker_vm_hwm_kib": status_kib(&nginx_worker_status, "VmHWM:"),
        "zstd1_ndjson_1mib_blocks": zstd,
    });
    let results = json!({
        "command": command_line(),
        "conditions": {
            "date_utc": shell_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            "git_commit": shell_out("git", &["rev-parse", "--short", "HEAD"]),
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "loadavg_before": load_before.trim(),
            "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "nginx": nginx_version(),
            "secs_per_phase": args.secs,
            "rate": args.rate,
            "connections": args.connections,
            "loadgen_threads": args.loadgen_threads,
            "mix": args.mix,
            "sites": args.sites,
        },
        "phases": phases,
        "figures": figures,
    });
    write_results(&root, "edge", &results, &markdown(&results))?;
    let _ = std::fs::remove_file(nginx_dir.join("access.log"));
    Ok(())
}

/// Prints `table` and writes `bench/results/NAME.json` (`results`) and
/// `NAME.md` (`table`).
pub fn write_results(root: &Path, name: &str, results: &Value, table: &str) -> Result<()> {
    println!("{table}");
    let out = root.join("bench").join("results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    std::fs::write(out.join(format!("{name}.md")), table)?;
    eprintln!("wrote bench/results/{name}.json and bench/results/{name}.md");
    Ok(())
}

fn nginx_conf(dir: &Path, port: u16) -> String {
    // `return 204` would answer before the body is read and log it empty;
    // the echo module reads the body in the content phase, then answers.
    format!(
        r#"load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_requests 10000000;
  log_format beacon escape=json '{{"ts":"$msec","ip":"$http_x_forwarded_for","m":"$request_method","u":"$request_uri","ct":"$content_type","ua":"$http_user_agent","ref":"$http_referer","origin":"$http_origin","lang":"$http_accept_language","auth":"$http_authorization","body":"$request_body"}}';
  server {{
    listen 127.0.0.1:{port};
    client_body_buffer_size 64k;
    client_max_body_size 64k;
    client_body_in_single_buffer on;
    access_log {dir}/access.log beacon buffer=64k flush=1s;
    location / {{
      echo_read_request_body;
      echo_status 204;
    }}
  }}
}}
"#,
        dir = dir.display()
    )
}

/// Debian's nginx-light and its echo module, installed if missing (root).
fn ensure_nginx() -> Result<()> {
    let have = Path::new("/usr/sbin/nginx").exists()
        && Path::new("/usr/lib/nginx/modules/ngx_http_echo_module.so").exists();
    if have {
        return Ok(());
    }
    eprintln!("installing nginx-light and libnginx-mod-http-echo (the baseline)");
    run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
    run_cmd(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "nginx-light",
                "libnginx-mod-http-echo",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn run_load(
    loadgen: &Path,
    args: &EdgeArgs,
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    work: &Path,
) -> Result<Value> {
    let out = work.join("load.json");
    let status = Command::new(loadgen)
        .arg("load")
        .args(["--target", &addr.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--secs", &secs.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--threads", &args.loadgen_threads.to_string()])
        .args(["--mix", &args.mix])
        .args(["--sites", &args.sites.to_string()])
        .arg("--json-out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .context("running loadgen")?;
    anyhow::ensure!(status.success(), "loadgen failed: {status}");
    Ok(serde_json::from_slice(&std::fs::read(&out)?)?)
}

/// Waits until the edge has shipped every batch it wrote (the open one
/// closes by age within a second), so its CPU for a phase is all counted.
fn settle_edge(ops: SocketAddr) -> Result<()> {
    let started = Instant::now();
    let mut last = (-1.0, -1.0);
    std::thread::sleep(Duration::from_millis(1200));
    while started.elapsed() < Duration::from_secs(30) {
        let m = http_get(ops, "/metrics")?;
        let now = (
            metric_sum(&m, "hourglass_edge_batches_written_total"),
            metric_sum(&m, "hourglass_edge_batches_shipped_total"),
        );
        if now.0 == now.1 && now == last {
            return Ok(());
        }
        last = now;
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("warning: the edge still had batches to ship after 30 s");
    Ok(())
}

/// utime + stime of the processes, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            // Fields after the parenthesised name: state is #3, utime #14, stime #15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            get(11).unwrap_or(0) + get(12).unwrap_or(0)
        })
        .sum()
}

fn clock_ticks() -> f64 {
    shell_out("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0)
}

/// Child processes of `pid` (nginx's worker).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Sum of every sample of a Prometheus metric (all label values).
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// A minimal `GET` on loopback (the ops endpoint, health checks).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ok = head.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
    if !ok {
        bail!("GET {path}: {}", head.lines().next().unwrap_or("no answer"));
    }
    Ok(body.to_owned())
}

pub(crate) fn wait_healthy(
    child: &mut Child,
    addr: SocketAddr,
    path: &str,
    log: &Path,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if http_get(addr, path).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "it exited with {status}; its log says:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "{addr} did not answer within 30 s; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Signals a child we started and waits for it (SIGKILL after 20 s).
pub(crate) fn stop(child: &mut Child, signal: Signal) -> Result<()> {
    let pid = i32::try_from(child.id()).context("pids fit in i32")?;
    let _ = kill(Pid::from_raw(pid), signal);
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            eprintln!("warning: pid {pid} did not stop on {signal}; killing it");
            let _ = child.kill();
            child.wait()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Stops (SIGTERM) a process this run started if the run ends early
/// (error, panic). Defused once the process was stopped and reaped, so a
/// re-used pid is never signalled.
pub(crate) struct Guard(pub(crate) Option<u32>);

impl Guard {
    pub(crate) fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

fn read_line(out: &mut BufReader<ChildStdout>) -> Result<String> {
    let mut line = String::new();
    out.read_line(&mut line)?;
    anyhow::ensure!(!line.trim().is_empty(), "bench-receiver printed nothing");
    Ok(line)
}

pub(crate) fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

pub(crate) fn free_port() -> Result<u16> {
    hourglass_testkit::free_port().map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) fn shell_out(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(hourglass_testkit::workspace_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn phase<'a>(results: &'a Value, server: &str, phase: &str) -> &'a Value {
    results["phases"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .find(|x| x["server"] == server && x["phase"] == phase)
        })
        .unwrap_or(&Value::Null)
}

/// The results as a markdown table: edge, nginx, the ratio, the target.
fn markdown(r: &Value) -> String {
    let f = &r["figures"];
    let c = &r["conditions"];
    let num = |v: &Value| v.as_f64();
    let row = |name: &str, e: Option<f64>, n: Option<f64>, digits: usize, target: &str| {
        let cell = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        let ratio = ratio(e, n).map_or("–".into(), |x| format!("{x:.2}×"));
        format!(
            "| {name} | {} | {} | {ratio} | {target} |\n",
            cell(e),
            cell(n)
        )
    };
    let (em, nm) = (phase(r, "edge", "max"), phase(r, "nginx", "max"));
    let (er, nr) = (phase(r, "edge", "rate"), phase(r, "nginx", "rate"));
    let ms = |p: &Value, q: &str| num(&p["load"]["latency_us"][q]).map(|us| us / 1000.0);
    let errors = |p: &Value| {
        let requests = num(&p["load"]["requests"]).unwrap_or(0.0);
        let ok = num(&p["load"]["ok"]).unwrap_or(0.0);
        let failed: f64 = p["load"]["errors"]
            .as_object()
            .map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum());
        Some(requests - ok + failed)
    };
    let mib = |v: &Value| num(v).map(|k| k / 1024.0);
    let zstd = num(&f["zstd1_ndjson_1mib_blocks"]["compressed_bytes_per_line"]);
    let raw_ndjson = ratio(
        num(&f["zstd1_ndjson_1mib_blocks"]["raw_bytes"]),
        num(&f["zstd1_ndjson_1mib_blocks"]["lines"]),
    );
    let rate = num(&c["rate"]).unwrap_or(0.0);
    let mut s = String::new();
    s.push_str("# edge-agent vs nginx\n\n");
    s.push_str(&format!(
        "`{}` — {}, commit {}, {} cores shared with other work (load average before: {}; after: {}), {}; {} s per phase, {} connections, {} loadgen thread(s), mix `{}`, {} sites.\n\n",
        r["command"].as_str().unwrap_or_default(),
        c["date_utc"].as_str().unwrap_or_default(),
        c["git_commit"].as_str().unwrap_or_default(),
        c["cores"],
        c["loadavg_before"].as_str().unwrap_or_default(),
        c["loadavg_after"].as_str().unwrap_or_default(),
        c["nginx"].as_str().unwrap_or_default(),
        c["secs_per_phase"],
        c["connections"],
        c["loadgen_threads"],
        c["mix"].as_str().unwrap_or_default(),
        c["sites"],
    ));
    s.push_str(
        "| figure | edge-agent | nginx | edge / nginx | target |\n|---|---:|---:|---:|---|\n",
    );
    s.push_str(&row(
        "throughput, closed loop (req/s)",
        num(&em["load"]["throughput_rps"]),
        num(&nm["load"]["throughput_rps"]),
        0,
        "≥ 0.8×",
    ));
    s.push_str(&row(
        "CPU per request, closed loop (µs)",
        num(&em["cpu_us_per_request"]),
        num(&nm["cpu_us_per_request"]),
        1,
        "",
    ));
    s.push_str(&row(
        &format!("throughput at {rate:.0} req/s offered (req/s)"),
        num(&er["load"]["throughput_rps"]),
        num(&nr["load"]["throughput_rps"]),
        0,
        "",
    ));
    s.push_str(&row(
        &format!("p50 latency at {rate:.0} req/s (ms)"),
        ms(er, "p50"),
        ms(nr, "p50"),
        2,
        "",
    ));
    s.push_str(&row(
        &format!("p99 latency at {rate:.0} req/s (ms)"),
        ms(er, "p99"),
        ms(nr, "p99"),
        2,
        "≤ 2×",
    ));
    s.push_str(&row(
        &format!("p99.9 latency at {rate:.0} req/s (ms)"),
        ms(er, "p999"),
        ms(nr, "p999"),
        2,
        "",
    ));
    s.push_str(&row(
        &format!("CPU per request at {rate:.0} req/s (µs)"),
        num(&er["cpu_us_per_request"]),
        num(&nr["cpu_us_per_request"]),
        1,
        "",
    ));
    s.push_str(&row(
        "non-2xx + failed requests (both phases)",
        errors(em).zip(errors(er)).map(|(a, b)| a + b),
        errors(nm).zip(errors(nr)).map(|(a, b)| a + b),
        0,
        "0",
    ));
    s.push_str(&row(
        "peak RSS, VmHWM (MiB; nginx: its worker)",
        mib(&f["edge_vm_hwm_kib"]),
        mib(&f["nginx_worker_vm_hwm_kib"]),
        1,
        "edge ≤ 128 MiB",
    ));
    s.push_str(&row(
        "bytes per hit shipped (edge batches) vs zstd -1 NDJSON in 1 MiB blocks",
        num(&f["edge_batch_bytes_per_hit"]),
        zstd,
        1,
        "≤ 1.1×",
    ));
    let sample = &f["receiver"]["sample"];
    let per_hit = |key: &str| ratio(num(&sample[key]), num(&sample["raw_hits"])).unwrap_or(0.0);
    s.push_str(&format!(
        "\nWhere the edge's batch bytes go (a sample of {} batches, re-encoded by the receiver): {:.1} bytes per hit in all; {:.1} with the processed events removed; {:.1} with the identity stamps removed as well. Uncompressed NDJSON (nginx's log line per request) is {:.0} bytes per hit. The receiver used {:.2} CPU-seconds over the whole run (central's cost, not counted above).\n",
        sample["batches"],
        per_hit("bytes"),
        per_hit("raw_only_bytes"),
        per_hit("unstamped_raw_bytes"),
        raw_ndjson.unwrap_or(0.0),
        num(&f["receiver_cpu_s"]).unwrap_or(0.0),
    ));
    s
}
