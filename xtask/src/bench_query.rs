//! `cargo xtask bench query`: the dashboard's queries over ≥ 10 M generated
//! events, on a private ClickHouse (18.16, the Debian package).
//!
//! 1. **Data.** `events` is filled by `INSERT … SELECT … FROM numbers()` in
//!    200 k-row steps, in time order (as events arrive: each step covers
//!    the next 0.6 of the 30 days, so past days are not re-inserted into), through
//!    the real materialized views (the rollups are
//!    built exactly as the loader's inserts build them): `--sites` sites
//!    with a skewed popularity (site index `⌊sites^u⌋`, u uniform: the top
//!    site gets ~10 %, most sites a few hundred rows), a long tail of paths
//!    (`⌊5000^u⌋`), 30 days, 2 M visitors, sources, channels, countries,
//!    devices, browsers and OSes from small sets. Events come in groups of
//!    4 consecutive ones (same site and visitor): two groups in three are
//!    one 4-event session, the third is 4 one-event sessions (bounces), so
//!    a session has 2 events on average and the bounce rate is ~67 %.
//! 2. **Rollup vs raw.** For the dashboard's query set (totals, the daily
//!    chart, the top-10 tables, entry pages, bounce rate and visit
//!    duration, for the busiest site and a long-tail one, `30d`), the plan
//!    the planner chooses and the same query planned on `events` are each
//!    run `--repeats` times through ClickHouse's HTTP interface; medians
//!    of the client's wall time and of the server's own `elapsed` (from
//!    `FORMAT JSON`), per-query ratio and the geometric mean of each.
//! 3. **Through the API.** `central-ingest serve` with only the API on
//!    takes the same query set, cycled, open loop at each `--rates` for
//!    `--secs` s; latency is measured from each request's scheduled time
//!    (queueing included), p50/p99 per rate. First with the result cache
//!    off, then on (`--cache-secs`), with its hit rate from the API's
//!    `hourglass_central_api_result_cache_total`.
//!
//! Writes `bench/results/query.{json,md}`. Must not: assert speed, touch
//! processes it did not start, or send traffic anywhere but 127.0.0.1.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Args;
use hourglass_testkit::{ClickHouseServer, Lifetime, http_post};
use hourglass_warehouse::{Query, Source, plan, plan_from};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::bench::{
    Guard, command_line, free_port, log_file, shell_out, stop, wait_healthy, write_results,
};
use crate::{cargo, run_cmd};

#[derive(Args)]
pub struct QueryArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value_t = 1_000)]
    sites: u64,
    /// Runs of each query on each source (the median counts).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Offered API loads, queries per second.
    #[arg(long, default_value = "50,200")]
    rates: String,
    /// Seconds at each rate.
    #[arg(long, default_value_t = 20.0)]
    secs: f64,
    /// The API's `result_cache_secs` for the second pass (0: skip it).
    #[arg(long, default_value_t = 10)]
    cache_secs: u32,
    /// Use the release binaries as they are.
    #[arg(long)]
    no_build: bool,
}

const DB: &str = "bq";
/// Rows per `INSERT`: the views aggregate each block in memory, and
/// `dimensions_daily`'s needs ~3.7 GB for a 1 M-row block (the loader
/// inserts ~50 k rows at a time).
const STEP: u64 = 200_000;

pub fn query(args: &QueryArgs) -> Result<()> {
    let rates: Vec<f64> = args
        .rates
        .split(',')
        .map(|r| r.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .context("--rates: numbers separated by commas")?;
    anyhow::ensure!(
        rates.iter().all(|r| *r > 0.0 && *r <= 2_000.0),
        "--rates must be in (0, 2000]"
    );
    anyhow::ensure!(
        args.secs > 0.0 && args.secs <= 300.0,
        "--secs must be in (0, 300]"
    );
    anyhow::ensure!(args.sites >= 2, "--sites must be at least 2");
    let root = hourglass_testkit::workspace_root();
    if !args.no_build {
        run_cmd(cargo().args([
            "build",
            "--release",
            "-p",
            "central-ingest",
            "-p",
            "warehouse-schema",
        ]))?;
    }
    let bin = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release");
    let work = hourglass_testkit::state_dir().join("bench").join("query");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    eprintln!("starting a private ClickHouse");
    let ch = ClickHouseServer::start(
        &work.join("clickhouse"),
        Lifetime::TiedTo(std::process::id()),
    )?;
    let sql = |q: &str| http_post(&ch.url, q).map_err(|e| anyhow::anyhow!("{q}: {e}"));
    let version = sql("SELECT version()")?.trim().to_owned();
    sql(&format!("CREATE DATABASE {DB}"))?;
    let out = Command::new(bin.join("warehouse-schema"))
        .arg("migrate")
        .env("CLICKHOUSE_URL", &ch.url)
        .env("CLICKHOUSE_DATABASE", DB)
        .output()
        .context("running warehouse-schema migrate")?;
    anyhow::ensure!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 1. Data, through the views.
    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    let start_s = (now_s / 86_400 - 30) * 86_400;
    let span_s = now_s - start_s;
    let generating = Instant::now();
    let mut first = 0;
    while first < args.events {
        let n = STEP.min(args.events - first);
        sql(&generate_sql(
            first,
            n,
            args.events,
            args.sites,
            start_s,
            span_s,
        ))?;
        first += n;
        eprintln!(
            "generated {first} of {} events ({:.0} s)",
            args.events,
            generating.elapsed().as_secs_f64()
        );
    }
    let generate_s = generating.elapsed().as_secs_f64();
    let count = |q: &str| -> Result<u64> {
        let out = sql(q)?;
        out.trim().parse().with_context(|| format!("{q}: {out:?}"))
    };
    let rows = count(&format!("SELECT count() FROM {DB}.events"))?;
    let sizes = sql(&format!(
        "SELECT table, sum(rows) FROM system.parts WHERE database = '{DB}' AND active \
         GROUP BY table ORDER BY table FORMAT TSV"
    ))?;
    // The busiest site and one from the long tail (its rank past the middle).
    let ranked = sql(&format!(
        "SELECT site_id, count() AS n FROM {DB}.events GROUP BY site_id ORDER BY n DESC FORMAT TSV"
    ))?;
    let ranked: Vec<(String, u64)> = ranked
        .lines()
        .filter_map(|l| {
            let (s, n) = l.split_once('\t')?;
            Some((s.to_owned(), n.parse().ok()?))
        })
        .collect();
    anyhow::ensure!(
        ranked.len() >= 2,
        "the generated data has fewer than 2 sites"
    );
    let sites = [ranked[0].clone(), ranked[ranked.len() * 3 / 4].clone()];
    eprintln!(
        "{rows} events in {generate_s:.0} s; sites: {} ({} events), {} ({} events)",
        sites[0].0, sites[0].1, sites[1].0, sites[1].1
    );

    // 2. Rollup vs raw, straight to ClickHouse.
    let queries: Vec<(String, Value)> = sites
        .iter()
        .flat_map(|(site, _)| dashboard_queries(&format!("{site}.example")))
        .collect();
    let now = SystemTime::now();
    let ch_db = format!("{}/?database={DB}", ch.url);
    let mut compared = Vec::new();
    for ((name, body), site) in queries.iter().zip(
        sites
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.0.clone(), dashboard_queries("x").len())),
    ) {
        let mut q: Query = serde_json::from_value(body.clone())?;
        q.site_id = site.clone();
        let chosen = plan(&q, now)?;
        let raw = plan_from(&q, Source::Events, now)?;
        // (client wall ms, server elapsed ms, rows read), medians.
        let time = |sql_text: &str| -> Result<(f64, f64, u64)> {
            let text = format!("{sql_text} FORMAT JSON");
            let (mut wall, mut server, mut rows) = (Vec::new(), Vec::new(), 0);
            for _ in 0..args.repeats.max(1) {
                let t = Instant::now();
                let out =
                    http_post(&ch_db, &text).map_err(|e| anyhow::anyhow!("{sql_text}: {e}"))?;
                wall.push(t.elapsed().as_secs_f64() * 1000.0);
                let v: Value = serde_json::from_str(&out)
                    .with_context(|| format!("{sql_text}: not JSON: {out}"))?;
                let stats = &v["statistics"];
                server.push(stats["elapsed"].as_f64().unwrap_or(0.0) * 1000.0);
                rows = stats["rows_read"].as_u64().unwrap_or(0);
            }
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            Ok((median(wall), median(server), rows))
        };
        let (rollup_ms, rollup_server_ms, rollup_rows) = time(&chosen.rendered_sql())?;
        let (raw_ms, raw_server_ms, raw_rows) = time(&raw.rendered_sql())?;
        eprintln!(
            "{site} {name}: {} {rollup_ms:.1} ms (server {rollup_server_ms:.1}), \
             events {raw_ms:.1} ms (server {raw_server_ms:.1}): {:.1}× ({:.1}× server)",
            chosen.source,
            raw_ms / rollup_ms,
            raw_server_ms / rollup_server_ms.max(0.001),
        );
        compared.push(json!({
            "site": site, "query": name, "source": chosen.source.table(),
            "rollup_ms": rollup_ms, "raw_ms": raw_ms, "speedup": raw_ms / rollup_ms,
            "rollup_server_ms": rollup_server_ms, "raw_server_ms": raw_server_ms,
            "speedup_server": raw_server_ms / rollup_server_ms.max(0.001),
            "rollup_rows_read": rollup_rows, "raw_rows_read": raw_rows,
        }));
    }
    let geomean_of = |field: &str, pick: &dyn Fn(&Value) -> bool| {
        let v: Vec<f64> = compared
            .iter()
            .filter(|c| pick(c))
            .filter_map(|c| c[field].as_f64())
            .collect();
        if v.is_empty() {
            return 0.0;
        }
        (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
    };
    let daily = |c: &Value| c["source"] != "sessions" && c["source"] != "events";
    let speedup_all = geomean_of("speedup", &|_| true);
    let speedup_daily = geomean_of("speedup", &daily);
    let server_all = geomean_of("speedup_server", &|_| true);
    let server_daily = geomean_of("speedup_server", &daily);

    // 3. Through the API.
    let central = bin.join("central-ingest");
    let admin = |args: &[&str]| -> Result<String> {
        let out = Command::new(&central)
            .arg("admin")
            .args(args)
            .env("CLICKHOUSE_URL", &ch.url)
            .env("CLICKHOUSE_DATABASE", DB)
            .env_remove("HOURGLASS_CONFIG")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let field = |text: &str, name: &str| -> Result<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
            .with_context(|| format!("no {name} in {text}"))
    };
    let merchant = field(&admin(&["merchant", "add", "Bench"])?, "merchant_id")?;
    for (site, _) in &sites {
        admin(&[
            "site",
            "add",
            "--merchant",
            &merchant,
            "--domain",
            &format!("{site}.example"),
            "--id",
            site,
        ])?;
    }
    let key = field(
        &admin(&[
            "key",
            "create",
            "--merchant",
            &merchant,
            "--rate-limit",
            "10000000",
        ])?,
        "key",
    )?;
    let bodies: Vec<String> = queries.iter().map(|(_, b)| b.to_string()).collect();
    let mut loads = Vec::new();
    let passes: Vec<u32> = if args.cache_secs > 0 {
        vec![0, args.cache_secs]
    } else {
        vec![0]
    };
    for cache_secs in passes {
        let (ops, api) = (free_port()?, free_port()?);
        let config = work.join(format!("central-{cache_secs}.toml"));
        std::fs::write(
            &config,
            format!(
                "ops_listen = \"127.0.0.1:{ops}\"\narchive_dir = \"{}\"\n\
                 [receiver]\nenabled = false\n[loader]\nenabled = false\n\
                 [api]\nenabled = true\nlisten = \"127.0.0.1:{api}\"\nresult_cache_secs = {cache_secs}\n",
                work.join("archive").display()
            ),
        )?;
        let log = work.join(format!("central-{cache_secs}.log"));
        let mut child = Command::new(&central)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("CLICKHOUSE_URL", &ch.url)
            .env("CLICKHOUSE_DATABASE", DB)
            .env("RUST_LOG", "warn")
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .spawn()
            .context("starting central-ingest")?;
        let guard = Guard(Some(child.id()));
        wait_healthy(&mut child, ([127, 0, 0, 1], ops).into(), "/healthz", &log)?;
        let url = format!("http://127.0.0.1:{api}/api/v1/query");
        let metrics_url = format!("http://127.0.0.1:{ops}/metrics");
        for rate in &rates {
            let before = cache_counts(&metrics_url);
            let mut r = open_loop(&url, &key, &bodies, *rate, args.secs);
            let after = cache_counts(&metrics_url);
            let (hits, misses) = (after.0 - before.0, after.1 - before.1);
            r["result_cache_secs"] = json!(cache_secs);
            r["cache_hits"] = json!(hits);
            r["cache_misses"] = json!(misses);
            r["cache_hit_rate"] = json!(hits as f64 / ((hits + misses).max(1)) as f64);
            eprintln!("API at {rate} queries/s, result cache {cache_secs} s: {r}");
            loads.push(r);
        }
        stop(&mut child, Signal::SIGTERM)?;
        guard.defuse();
    }

    let results = json!({
        "command": command_line(),
        "conditions": {
            "date_utc": shell_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            "git_commit": shell_out("git", &["rev-parse", "--short", "HEAD"]),
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "loadavg_before": load_before.trim(),
            "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "clickhouse": version,
            "events": rows,
            "sites": args.sites,
            "generate_s": generate_s,
            "rows_per_table": sizes.trim(),
            "repeats": args.repeats,
            "sites_queried": sites.iter().map(|(s, n)| json!({"site": s, "events": n})).collect::<Vec<_>>(),
        },
        "rollup_vs_raw": {
            "queries": compared,
            "geomean_speedup_all": speedup_all,
            "geomean_speedup_daily_rollups": speedup_daily,
            "geomean_speedup_server_all": server_all,
            "geomean_speedup_server_daily_rollups": server_daily,
        },
        "api": loads,
    });
    write_results(&root, "query", &results, &markdown(&results))?;
    drop(ch);
    Ok(())
}

/// `INSERT … SELECT` of events `first..first + n` of `total`,
/// deterministic in the row number; event `i` is at `i / total` of the
/// span (time order, one event every `span / total` seconds on average).
fn generate_sql(first: u64, n: u64, total: u64, sites: u64, start_s: u64, span_s: u64) -> String {
    let u = |salt: u32| format!("(cityHash64(number, {salt}) % 1000000) / 1000000.");
    let pick = |salt: u32, items: &[&str]| {
        format!(
            "[{}][1 + cityHash64(number, {salt}) % {}]",
            items
                .iter()
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(", "),
            items.len()
        )
    };
    format!(
        "INSERT INTO {DB}.events (ts, received_at, site_id, name, visitor_id, session_id, \
         hostname, pathname, referrer_source, channel, utm_source, country, device, browser, \
         os, interactive, hit_index, batch_id, plugin_set) \
         SELECT toDateTime({start_s} + intDiv(number * {span_s}, {total})) AS t, t, \
         concat('site-', toString(toUInt32(floor(pow({sites}, {site_u})) - 1))) AS s, \
         if(cityHash64(number, 3) % 10 = 0, 'signup', 'pageview'), \
         cityHash64(g, 4) % 2000000 AS v, \
         if(cityHash64(g, 16) % 3 = 0, number * 2 + 1, g * 2), \
         concat(s, '.example'), concat('/p/', toString(toUInt32(floor(pow(5000, {path_u}))))), \
         {source}, {channel}, {utm}, {country}, {device}, {browser}, {os}, 1, 0, 'bench', 'none' \
         FROM numbers({first}, {n})",
        // The group of 4 events (defined at its first use, in the site).
        site_u = "(cityHash64(intDiv(number, 4) AS g, 2) % 1000000) / 1000000.",
        path_u = u(6),
        source = pick(
            7,
            &[
                "",
                "Google",
                "Bing",
                "Facebook",
                "Twitter",
                "Newsletter",
                "GitHub"
            ]
        ),
        channel = pick(
            8,
            &[
                "Direct",
                "Organic Search",
                "Organic Social",
                "Email",
                "Referral"
            ]
        ),
        utm = pick(9, &["", "", "", "spring", "launch"]),
        country = pick(
            10,
            &["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "CH", "NL"]
        ),
        device = pick(11, &["Desktop", "Mobile", "Tablet"]),
        browser = pick(12, &["Chrome", "Safari", "Firefox", "Edge", "Opera"]),
        os = pick(13, &["Windows", "macOS", "iOS", "Android", "Linux"]),
    )
}

/// The dashboard's queries for one site over `30d` (as `dashboard.html`
/// asks them), named.
fn dashboard_queries(domain: &str) -> Vec<(String, Value)> {
    let q = |metrics: &[&str], dims: &[&str]| {
        let mut v = json!({"site_id": domain, "date_range": "30d", "metrics": metrics,
                           "dimensions": dims});
        if !dims.is_empty() && !dims[0].starts_with("time:") {
            v["order_by"] = json!([[metrics[0], "desc"]]);
            v["pagination"] = json!({"limit": 10});
        }
        v
    };
    let mut out = vec![
        (
            "totals".to_owned(),
            q(&["visitors", "visits", "pageviews", "views_per_visit"], &[]),
        ),
        (
            "chart by day".to_owned(),
            q(&["visitors", "pageviews"], &["time:day"]),
        ),
        (
            "bounce rate, visit duration".to_owned(),
            q(&["bounce_rate", "visit_duration"], &[]),
        ),
    ];
    for dim in [
        "visit:source",
        "visit:channel",
        "event:page",
        "visit:entry_page",
        "visit:country",
        "visit:device",
        "visit:browser",
        "visit:os",
    ] {
        out.push((format!("top {dim}"), q(&["visitors"], &[dim])));
    }
    out
}

/// Open loop: request `i` is due at `i / rate` s; threads take the next
/// due request; latency counts from the due time.
fn open_loop(url: &str, key: &str, bodies: &[String], rate: f64, secs: f64) -> Value {
    let total = (rate * secs) as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (next, latencies, errors) = (next.clone(), latencies.clone(), errors.clone());
            let (url, key, bodies) = (url.to_owned(), key.to_owned(), bodies.to_vec());
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .new_agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let ok = agent
                        .post(&url)
                        .header("Authorization", &format!("Bearer {key}"))
                        .header("Content-Type", "application/json")
                        .send(bodies[i % bodies.len()].as_str())
                        .is_ok_and(|mut r| {
                            r.status() == 200 && r.body_mut().read_to_string().is_ok()
                        });
                    let ms = due.elapsed().as_secs_f64() * 1000.0;
                    if ok {
                        latencies.lock().expect("not poisoned").push(ms);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = started.elapsed().as_secs_f64();
    let mut ms = latencies.lock().expect("not poisoned").clone();
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| {
        ms.get(((ms.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    json!({
        "rate": rate, "secs": secs, "sent": total, "ok": ms.len(),
        "errors": errors.load(Ordering::Relaxed), "achieved_qps": ms.len() as f64 / wall,
        "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": ms.last().copied().unwrap_or(0.0),
    })
}

fn markdown(r: &Value) -> String {
    let c = &r["conditions"];
    let rr = &r["rollup_vs_raw"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut s = format!(
        "# merchant queries: rollups vs raw events, and the API under load\n\n\
         `{}` — {}, commit {}, {} cores shared with other work (load average before: {}; after: {}), ClickHouse {}; {} events over 30 days, {} sites (queried: {}).\n\n\
         ## Rollup vs raw (median of {} runs each, straight to ClickHouse)\n\n\
         Client ms: wall time of the HTTP request; server ms: ClickHouse's own `elapsed`.\n\n\
         | site | query | source | source ms | events ms | speedup | source server ms | events server ms | server speedup | rows read (source / events) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        r["command"].as_str().unwrap_or_default(),
        c["date_utc"].as_str().unwrap_or_default(),
        c["git_commit"].as_str().unwrap_or_default(),
        c["cores"],
        c["loadavg_before"].as_str().unwrap_or_default(),
        c["loadavg_after"].as_str().unwrap_or_default(),
        c["clickhouse"].as_str().unwrap_or_default(),
        c["events"],
        c["sites"],
        c["sites_queried"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| format!(
                "{} with {} events",
                s["site"].as_str().unwrap_or_default(),
                s["events"]
            ))
            .collect::<Vec<_>>()
            .join(", "),
        c["repeats"],
    );
    for q in rr["queries"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1}× | {:.1} | {:.1} | {:.1}× | {} / {} |\n",
            q["site"].as_str().unwrap_or_default(),
            q["query"].as_str().unwrap_or_default(),
            q["source"].as_str().unwrap_or_default(),
            num(&q["rollup_ms"]),
            num(&q["raw_ms"]),
            num(&q["speedup"]),
            num(&q["rollup_server_ms"]),
            num(&q["raw_server_ms"]),
            num(&q["speedup_server"]),
            q["rollup_rows_read"],
            q["raw_rows_read"],
        ));
    }
    s.push_str(&format!(
        "\nGeometric mean speedup, client wall time: **{:.1}×** over the whole set (target ≥ 10×); {:.1}× over the queries the daily rollups answer.\n\
         Server time: **{:.1}×** over the whole set; {:.1}× over the daily rollups' queries.\n\n\
         ## Through the API (open loop, the set cycled, latency from each request's due time)\n\n\
         | result cache s | offered q/s | achieved q/s | ok | errors | cache hit rate | p50 ms | p90 ms | p99 ms | max ms | target |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        num(&rr["geomean_speedup_all"]),
        num(&rr["geomean_speedup_daily_rollups"]),
        num(&rr["geomean_speedup_server_all"]),
        num(&rr["geomean_speedup_server_daily_rollups"]),
    ));
    for l in r["api"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {:.0} | {:.1} | {} | {} | {:.0} % | {:.0} | {:.0} | {:.0} | {:.0} | {} |\n",
            l["result_cache_secs"],
            num(&l["rate"]),
            num(&l["achieved_qps"]),
            l["ok"],
            l["errors"],
            num(&l["cache_hit_rate"]) * 100.0,
            num(&l["p50_ms"]),
            num(&l["p90_ms"]),
            num(&l["p99_ms"]),
            num(&l["max_ms"]),
            if num(&l["rate"]) >= 200.0 {
                "p99 ≤ 100 ms"
            } else {
                ""
            },
        ));
    }
    s
}

/// (hits, misses) of the API's result cache so far, from its metrics
/// (zeros when the page cannot be read).
fn cache_counts(metrics_url: &str) -> (u64, u64) {
    let Ok(mut r) = ureq::get(metrics_url).call() else {
        return (0, 0);
    };
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let count = |outcome: &str| {
        let prefix = format!("hourglass_central_api_result_cache_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    // A stale answer is served from the cache too (one refresh behind it).
    (count("hit") + count("stale"), count("miss"))
}
