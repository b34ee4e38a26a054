//! `cargo xtask bench plugins`: the six reference plugins as WASM
//! components in the host (`bench-plugins`, release) beside the same
//! plugin code compiled natively and called in-process
//! (`plugins/bench-native`, release), on the same generated events; the
//! host↔guest cost alone (passthrough); and how long a runaway plugin runs
//! before the host has control back (by fuel; by the epoch deadline).
//!
//! Writes `bench/results/plugins.{json,md}`. Must not: assert speed.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};

use crate::bench::{command_line, shell_out, write_results};
use crate::{cargo, run_cmd};

#[derive(Args)]
pub struct PluginsArgs {
    /// Distinct events generated (each measured pass runs all of them).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per `process` call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    passes: usize,
    #[arg(long, default_value_t = 200)]
    runaway_runs: usize,
    /// Use the release binaries and components as they are.
    #[arg(long)]
    no_build: bool,
}

/// What the targets are (issue text): chain ≤ 2× native, passthrough
/// ≤ 300 ns per event, runaway stopped at p99 ≤ 20 ms.
const TARGET_RATIO: f64 = 2.0;
const TARGET_PASSTHROUGH_NS: f64 = 300.0;
const TARGET_RUNAWAY_P99_MS: f64 = 20.0;

pub fn plugins(args: &PluginsArgs) -> Result<()> {
    let root = hourglass_testkit::workspace_root();
    let components = crate::plugins::components_dir();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let host = String::from_utf8(
        Command::new("rustc")
            .args(["--print", "host-tuple"])
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    if !args.no_build {
        crate::plugins::build()?;
        run_cmd(cargo().args([
            "build",
            "--release",
            "--locked",
            "-p",
            "hourglass-bench-plugins",
        ]))?;
        run_cmd(
            cargo()
                .current_dir(root.join("plugins"))
                .args([
                    "build",
                    "--release",
                    "--locked",
                    "-p",
                    "bench-native",
                    "--target",
                    &host,
                    "--target-dir",
                ])
                .arg(target_dir.join("plugins")),
        )?;
    }
    let geo_data = crate::plugins::geo_data()?;
    let work = hourglass_testkit::state_dir().join("bench").join("plugins");
    std::fs::create_dir_all(&work)?;
    let events = work.join("events.tsv");
    std::fs::write(&events, generate(args.events))?;

    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let native_bin = target_dir
        .join("plugins")
        .join(&host)
        .join("release")
        .join("bench-native");
    let native = run_json(
        Command::new(&native_bin)
            .arg(&events)
            .arg(&geo_data)
            .arg(args.batch.to_string())
            .arg(args.passes.to_string()),
    )
    .context("the native baseline")?;
    let wasm = run_json(
        Command::new(target_dir.join("release").join("bench-plugins"))
            .arg("--components")
            .arg(&components)
            .arg("--events")
            .arg(&events)
            .arg("--geo-data")
            .arg(&geo_data)
            .args(["--batch", &args.batch.to_string()])
            .args(["--passes", &args.passes.to_string()])
            .args(["--runaway-runs", &args.runaway_runs.to_string()]),
    )
    .context("the WASM chain")?;

    let results = json!({
        "command": command_line(),
        "conditions": {
            "date_utc": shell_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            "git_commit": shell_out("git", &["rev-parse", "--short", "HEAD"]),
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "loadavg_before": load_before.trim(),
            "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "events": args.events,
            "batch": args.batch,
            "passes": args.passes,
            "geo_data": geo_data.file_name().map(|f| f.to_string_lossy().into_owned()),
            "threads": 1,
        },
        "targets": {
            "wasm_over_native": TARGET_RATIO,
            "passthrough_ns_per_event": TARGET_PASSTHROUGH_NS,
            "runaway_p99_ms": TARGET_RUNAWAY_P99_MS,
        },
        "native": native,
        "wasm": wasm,
    });
    write_results(&root, "plugins", &results, &markdown(&results))?;
    Ok(())
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    eprintln!("$ {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Deterministic events, TSV (name, hostname, pathname, referrer, user
/// agent, client IP, Accept-Language): a few hundred distinct browser
/// agents, ~4% bots, random addresses (IPv4 and some IPv6), some URLs with
/// an e-mail address, referrers from search, social, mail and sites.
fn generate(n: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = String::new();
    for i in 0..n {
        let r = next();
        let v = 100 + r % 30;
        let ua = match r % 25 {
            0 => "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
                .to_owned(),
            1..=9 => format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
            ),
            10..=14 => format!(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{} Mobile/15E148 Safari/604.1",
                v % 6,
                v % 6
            ),
            15..=17 => format!(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0"
            ),
            18..=20 => {
                format!("Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0")
            }
            _ => format!(
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"
            ),
        };
        let a = next();
        let ip = if a % 10 == 0 {
            format!(
                "2a0{}:{:x}::{:x}",
                a % 9 + 1,
                (a >> 8) & 0xffff,
                (a >> 24) & 0xffff
            )
        } else {
            format!(
                "{}.{}.{}.{}",
                1 + (a >> 8) % 223,
                (a >> 16) & 255,
                (a >> 24) & 255,
                (a >> 32) & 255
            )
        };
        let (name, path) = match next() % 20 {
            0 => ("Signup", format!("/signup?email=user{i}%40example.org")),
            1 => ("Signup", "/signup".to_owned()),
            2..=5 => ("pageview", "/".to_owned()),
            6..=9 => ("pageview", "/pricing".to_owned()),
            _ => ("pageview", format!("/blog/post-{}", i % 200)),
        };
        let referrer = match next() % 10 {
            0..=3 => "",
            4 | 5 => "https://www.google.com/",
            6 => "https://www.facebook.com/",
            7 => "https://mail.example.net/?to=someone@example.net",
            8 => "https://news.ycombinator.com/item?id=1",
            _ => "https://shop.example.com/cart?utm_source=newsletter&utm_medium=email",
        };
        let _ = writeln!(
            out,
            "{name}\tshop.example.com\t{path}\t{referrer}\t{ua}\t{ip}\ten-US,en;q=0.9"
        );
    }
    out
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn markdown(r: &Value) -> String {
    let mut t = String::new();
    let c = &r["conditions"];
    let _ = writeln!(
        t,
        "# Plugins: WASM chain vs the same code native\n\n`{}` — {} — commit {} — {} cores, load {} → {}\n\n\
         {} events, batches of {}, {} passes, one thread. Geo data: `{}`.\n",
        r["command"].as_str().unwrap_or_default(),
        c["date_utc"].as_str().unwrap_or_default(),
        c["git_commit"].as_str().unwrap_or_default(),
        c["cores"],
        c["loadavg_before"].as_str().unwrap_or_default(),
        c["loadavg_after"].as_str().unwrap_or_default(),
        c["events"],
        c["batch"],
        c["passes"],
        c["geo_data"].as_str().unwrap_or_default(),
    );
    let wasm = &r["wasm"];
    let native = &r["native"];
    let _ = writeln!(
        t,
        "## The six reference plugins\n\n| plugin | WASM ns/event | native ns/event | WASM ÷ native | WASM fuel/event |\n|---|---:|---:|---:|---:|"
    );
    if let Some(plugins) = wasm["chain"]["plugins"].as_array() {
        for p in plugins.iter().filter_map(Value::as_str) {
            let w = num(&wasm["chain"]["per_plugin"][p]["ns_per_event_in"]);
            let n = num(&native["per_plugin"][p]["ns_per_event_in"]);
            let _ = writeln!(
                t,
                "| {p} | {} | {} | {} | {} |",
                fmt(w, 0),
                fmt(n, 0),
                ratio(w, n),
                fmt(num(&wasm["chain"]["per_plugin"][p]["fuel_per_event_in"]), 0)
            );
        }
    }
    let w = num(&wasm["chain"]["ns_per_event"]);
    let n = num(&native["ns_per_event"]);
    let _ = writeln!(
        t,
        "| **chain** | **{}** | **{}** | **{}** (target ≤ {TARGET_RATIO}) | |\n\n\
         Events/s per core through the chain: WASM {}, native {}. Events out per pass: WASM {}, native {} (bots dropped).\n",
        fmt(w, 0),
        fmt(n, 0),
        ratio(w, n),
        fmt(num(&wasm["chain"]["events_per_sec"]), 0),
        fmt(num(&native["events_per_sec"]), 0),
        wasm["chain"]["events_out_per_pass"],
        native["events_out_per_pass"],
    );
    let p = &wasm["passthrough"];
    let _ = writeln!(
        t,
        "## Host↔guest cost: one passthrough plugin\n\n{} ns per event (target ≤ {TARGET_PASSTHROUGH_NS}): a chain of passthrough minus an empty chain ({} ns per event of building the batch).\n",
        fmt(num(&p["ns_per_event"]), 0),
        fmt(num(&p["empty_chain_ns_per_event"]), 0),
    );
    let _ = writeln!(
        t,
        "Guest work per event: passthrough {} fuel. Reading every field: {} ns, {} fuel per event; reading and writing back every field: {} ns, {} fuel per event.\n\n| batch | ns/event |\n|---:|---:|",
        fmt(num(&p["fuel_per_event"]), 0),
        fmt(num(&p["reads_all"]["ns_per_event"]), 0),
        fmt(num(&p["reads_all"]["fuel_per_event"]), 0),
        fmt(num(&p["modifies_all"]["ns_per_event"]), 0),
        fmt(num(&p["modifies_all"]["fuel_per_event"]), 0),
    );
    if let Some(by) = p["ns_per_event_by_batch"].as_object() {
        let mut rows: Vec<(usize, f64)> = by
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_f64()?)))
            .collect();
        rows.sort_by_key(|(k, _)| *k);
        for (batch, ns) in rows {
            let _ = writeln!(t, "| {batch} | {} |", fmt(Some(ns), 0));
        }
    }
    let _ = writeln!(
        t,
        "\n## A runaway plugin: from the call to the host having control back\n\n| stopped by | setting | runs | stopped so | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (mode, setting) in [
        (
            "fuel",
            format!(
                "{} fuel for a 1-event call",
                r["wasm"]["runaway"]["fuel"]["fuel_for_the_call"]
            ),
        ),
        (
            "deadline",
            format!(
                "deadline {} ms, tick {} ms, fuel to spare",
                r["wasm"]["runaway"]["deadline"]["deadline_ms"],
                r["wasm"]["runaway"]["deadline"]["epoch_tick_ms"]
            ),
        ),
    ] {
        let x = &wasm["runaway"][mode];
        let _ = writeln!(
            t,
            "| {mode} | {setting} | {} | {} | {} | {} | {} | {} |",
            x["runs"],
            x["stopped_runs"],
            fmt(num(&x["p50_ms"]), 2),
            fmt(num(&x["p90_ms"]), 2),
            fmt(num(&x["p99_ms"]), 2),
            fmt(num(&x["max_ms"]), 2),
        );
    }
    let _ = writeln!(t, "\nTarget: p99 ≤ {TARGET_RUNAWAY_P99_MS} ms.");
    t
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}
