//! `loadgen`: an open-loop HTTP load generator for beacon endpoints, and the
//! two helpers a benchmark needs beside it (the site directory matching the
//! generated traffic, and the zstd-in-blocks yardstick).
//!
//! Open loop (as wrk2 does): each connection has a fixed schedule of send
//! times; a request's latency is measured from when it *should* have been
//! sent, so a slow server cannot hide its stalls by slowing the client
//! down (coordinated omission). `--rate 0` is closed loop instead: each
//! connection sends as soon as its previous answer is in, to find the
//! server's ceiling.
//!
//! Must not: send anywhere but loopback, or run unbounded — every run ends
//! at `--secs` or `--max-requests`, whichever is first.

mod beacons;
mod blocks;
mod client;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::beacons::{Generator, Mix};
use crate::client::Connection;

#[derive(Parser)]
#[command(name = "loadgen", about = "Beacon load generator (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send beacons to a server and print a JSON summary.
    Load(LoadArgs),
    /// Print the site directory (JSON) that admits the generated traffic.
    Sites {
        #[arg(long, default_value_t = 500)]
        sites: usize,
    },
    /// Compress an NDJSON file in independent blocks with zstd and print
    /// the bytes per line (JSON).
    ZstdBlocks {
        file: PathBuf,
        #[arg(long, default_value_t = 1 << 20)]
        block_bytes: usize,
        #[arg(long, default_value_t = 1)]
        level: i32,
    },
}

#[derive(clap::Args, Clone)]
struct LoadArgs {
    /// `127.0.0.1:PORT` (loopback addresses only).
    #[arg(long)]
    target: SocketAddr,
    /// Requests per second across all connections; 0 = closed loop (as fast
    /// as the server answers).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to send, in seconds (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Stop after this many requests even if time is left.
    #[arg(long, default_value_t = 50_000_000)]
    max_requests: u64,
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Worker threads of the client (leave cores to the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Protocol weights, e.g. `plausible=90,ga4=5,segment=5`.
    #[arg(long, default_value = "plausible=100")]
    mix: String,
    /// Sites in the directory (popularity is Zipf-like: site 0 the most).
    #[arg(long, default_value_t = 500)]
    sites: usize,
    /// Distinct visitors (address + browser).
    #[arg(long, default_value_t = 200_000)]
    visitors: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the summary here as well as to stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Mark every Plausible hit (all pageviews then) with a prop `lg` =
    /// `<connection>.<n>` and write `marker<TAB>unix µs` of each 2xx
    /// answer to this file (freshness: from the answer to the row).
    #[arg(long)]
    record: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Load(args) => {
            let summary = load(&args)?;
            let text = serde_json::to_string_pretty(&summary)?;
            if let Some(path) = &args.json_out {
                std::fs::write(path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{text}");
        }
        Cmd::Sites { sites } => println!("{}", beacons::sites_json(sites)),
        Cmd::ZstdBlocks {
            file,
            block_bytes,
            level,
        } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let stats = blocks::compress_lines(std::io::BufReader::new(input), block_bytes, level)?;
            let out = serde_json::json!({
                "block_bytes": block_bytes,
                "level": level,
                "lines": stats.lines,
                "blocks": stats.blocks,
                "raw_bytes": stats.raw_bytes,
                "compressed_bytes": stats.compressed_bytes,
                "compressed_bytes_per_line": stats.bytes_per_line(),
            });
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{out}")?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Summary {
    target: String,
    mode: &'static str,
    target_rate: f64,
    connections: u32,
    threads: usize,
    mix: String,
    seed: u64,
    elapsed_s: f64,
    /// Requests answered (any status).
    requests: u64,
    /// Answers per second over the run.
    throughput_rps: f64,
    /// Answers with a 2xx status.
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    /// Requests that got no status, by why.
    errors: BTreeMap<&'static str, u64>,
    latency_us: Latency,
}

#[derive(Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

struct ConnStats {
    /// (marker, unix µs of the 2xx answer), with `--record`.
    answered: Vec<(String, u64)>,
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Clone)]
struct Plan {
    target: SocketAddr,
    /// Gap between one connection's sends; zero for closed loop.
    interval: Duration,
    connections: u32,
    start: Instant,
    deadline: Instant,
    max_requests: u64,
    sent: Arc<AtomicU64>,
}

fn load(args: &LoadArgs) -> Result<Summary> {
    if !args.target.ip().is_loopback() {
        bail!(
            "--target {} is not a loopback address: this tool only loads servers on this machine (127.0.0.1)",
            args.target
        );
    }
    if !(args.secs > 0.0 && args.secs <= 3600.0) {
        bail!("--secs must be in (0, 3600]");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be 0 (closed loop) or a positive number");
    }
    if args.connections == 0 || args.threads == 0 {
        bail!("--connections and --threads must be at least 1");
    }
    let mix = Mix::parse(&args.mix).map_err(|e| anyhow::anyhow!("--mix: {e}"))?;
    let sent_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the current time")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (stats, elapsed) = runtime.block_on(async {
        let start = Instant::now() + Duration::from_millis(20);
        let plan = Plan {
            target: args.target,
            interval: if args.rate > 0.0 {
                Duration::from_secs_f64(f64::from(args.connections) / args.rate)
            } else {
                Duration::ZERO
            },
            connections: args.connections,
            start,
            deadline: start + Duration::from_secs_f64(args.secs),
            max_requests: args.max_requests,
            sent: Arc::new(AtomicU64::new(0)),
        };
        let tasks = (0..args.connections)
            .map(|i| {
                let mut generator = Generator::new(
                    args.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i)),
                    mix.clone(),
                    args.sites,
                    args.visitors,
                    &args.target.to_string(),
                    &sent_at,
                );
                if args.record.is_some() {
                    generator = generator.marking(i);
                }
                tokio::spawn(drive(i, plan.clone(), generator))
            })
            .collect::<Vec<_>>();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await);
        }
        (all, start.elapsed())
    });
    let mut hist = new_histogram();
    let mut statuses = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut record = match &args.record {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    for s in stats {
        let s = s.context("a connection task failed")?;
        if let Some(out) = &mut record {
            for (marker, at_us) in &s.answered {
                writeln!(out, "{marker}\t{at_us}")?;
            }
        }
        hist.add(&s.hist).context("histograms share their bounds")?;
        for (k, v) in s.statuses {
            *statuses.entry(k).or_insert(0) += v;
        }
        for (k, v) in s.errors {
            *errors.entry(k).or_insert(0) += v;
        }
    }
    if let Some(mut out) = record {
        out.flush().context("writing --record")?;
    }
    let requests: u64 = statuses.values().sum();
    let ok = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let elapsed_s = elapsed.as_secs_f64();
    Ok(Summary {
        target: args.target.to_string(),
        mode: if args.rate > 0.0 {
            "open_loop"
        } else {
            "closed_loop"
        },
        target_rate: args.rate,
        connections: args.connections,
        threads: args.threads,
        mix: args.mix.clone(),
        seed: args.seed,
        elapsed_s,
        requests,
        throughput_rps: requests as f64 / elapsed_s.max(1e-9),
        ok,
        statuses,
        errors,
        latency_us: Latency {
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        },
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn drive(i: u32, plan: Plan, mut generator: Generator) -> ConnStats {
    let mut stats = ConnStats {
        answered: Vec::new(),
        hist: new_histogram(),
        statuses: BTreeMap::new(),
        errors: BTreeMap::new(),
    };
    let open_loop = !plan.interval.is_zero();
    // Spread the connections' schedules over one interval.
    let mut next = plan.start
        + plan
            .interval
            .mul_f64(f64::from(i) / f64::from(plan.connections));
    let mut conn: Option<Connection> = None;
    let mut request = Vec::with_capacity(2048);
    loop {
        let intended = if open_loop {
            next
        } else {
            Instant::now().max(plan.start)
        };
        if intended >= plan.deadline
            || plan.sent.fetch_add(1, Ordering::Relaxed) >= plan.max_requests
        {
            break;
        }
        tokio::time::sleep_until(intended).await;
        next += plan.interval;
        generator.next_request(&mut request);
        let c = match &mut conn {
            Some(c) => c,
            None => {
                match tokio::time::timeout(REQUEST_TIMEOUT, Connection::open(plan.target)).await {
                    Ok(Ok(c)) => conn.insert(c),
                    _ => {
                        *stats.errors.entry("connect").or_insert(0) += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, c.request(&request)).await {
            Ok(Ok((status, keep_alive))) => {
                let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.hist.saturating_record(micros.max(1));
                *stats.statuses.entry(status).or_insert(0) += 1;
                if let Some(marker) = generator.last_marker()
                    && (200..300).contains(&status)
                {
                    let now_us = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                    stats.answered.push((marker.to_owned(), now_us));
                }
                if !keep_alive {
                    conn = None;
                }
            }
            Ok(Err(failure)) => {
                *stats.errors.entry(failure.label()).or_insert(0) += 1;
                conn = None;
            }
            Err(_) => {
                *stats.errors.entry("timeout").or_insert(0) += 1;
                conn = None;
            }
        }
    }
    stats
}
