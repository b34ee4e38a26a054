//! `bench-plugins`: the WASM plugin chain measured in-process, one thread.
//! `cargo xtask bench plugins` runs it beside the same plugin code built
//! natively (`plugins/bench-native`) and prints the two side by side.
//!
//! Measures, on the events of `--events` (TSV: name, hostname, pathname,
//! referrer, user agent, client IP, Accept-Language):
//! - the six reference plugins as one chain: ns per event, events/s, and
//!   each plugin's share (from the chain's own counters);
//! - the passthrough plugin alone: the host↔guest cost of one plugin;
//! - a runaway plugin (`misbehave`, `mode = loop`) from the call's start to
//!   the host having control back, stopped by fuel and by the epoch
//!   deadline.
//!
//! Prints one JSON document on stdout. Asserts nothing about speed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hourglass_model::Event;
use hourglass_plugin_host::{Chain, FailurePolicy, Host, Limits, PluginSource};
use hourglass_processing::{HitContext, PluginChain};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Directory of the components (`cargo xtask plugins`).
    #[arg(long)]
    components: PathBuf,
    /// The events, TSV.
    #[arg(long)]
    events: PathBuf,
    /// The geo plugin's database.
    #[arg(long)]
    geo_data: PathBuf,
    /// Events per `process` call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Passes over the events per measurement (after one warm-up pass).
    #[arg(long, default_value_t = 5)]
    passes: usize,
    /// Runaway runs per stopping mechanism.
    #[arg(long, default_value_t = 200)]
    runaway_runs: usize,
    /// The epoch deadline for the deadline runs, ms.
    #[arg(long, default_value_t = 10)]
    runaway_deadline_ms: u64,
}

/// The reference chain: (name, config, whether `--geo-data` is its data).
pub const CHAIN: [(&str, &str, bool); 6] = [
    ("bot-filter", "", false),
    ("validate", "", false),
    ("pii-scrub", "", false),
    ("ua-parse", "", false),
    ("geo", "", true),
    ("channel", "", false),
];

struct Hit {
    event: Event,
    user_agent: String,
    client_ip: String,
    language: String,
}

fn read_events(path: &PathBuf) -> Result<Vec<Hit>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            let [name, hostname, pathname, referrer, ua, ip, lang] = f[..] else {
                bail!("{} line {}: expected 7 fields", path.display(), i + 1);
            };
            Ok(Hit {
                event: Event {
                    name: name.into(),
                    hostname: hostname.into(),
                    pathname: pathname.into(),
                    referrer: referrer.into(),
                    interactive: true,
                    hit_index: u32::try_from(i).unwrap_or(u32::MAX),
                    ..Event::default()
                },
                user_agent: ua.into(),
                client_ip: ip.into(),
                language: lang.into(),
            })
        })
        .collect()
}

fn component(dir: &std::path::Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).with_context(|| {
        format!(
            "{}: build the plugins first (`cargo xtask plugins`)",
            path.display()
        )
    })
}

/// Runs `chain` over every event `passes` times (after a warm-up pass);
/// returns ns per event, events out per pass and the chain's stats delta.
fn run_chain(chain: &mut Chain, hits: &[Hit], batch: usize, passes: usize) -> (f64, usize) {
    let mut kept = 0;
    let mut pass = |measure: bool| {
        let mut out = 0;
        for chunk in hits.chunks(batch) {
            let events: Vec<Event> = chunk.iter().map(|h| h.event.clone()).collect();
            let contexts: Vec<HitContext<'_>> = chunk
                .iter()
                .map(|h| HitContext {
                    user_agent: &h.user_agent,
                    client_ip: &h.client_ip,
                    accept_language: &h.language,
                })
                .collect();
            let (events, _) = chain.process_in_context(events, &contexts);
            out += events.len();
        }
        if measure {
            kept = out;
        }
    };
    pass(false);
    let started = Instant::now();
    for _ in 0..passes {
        pass(true);
    }
    let ns = started.elapsed().as_nanos() as f64 / (hits.len() * passes) as f64;
    (ns, kept)
}

fn percentiles(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    json!({
        "runs": v.len(),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    })
}

/// `runs` calls of a plugin that loops forever on its one event; each is
/// timed from the call to the host having control back (the trap, plus
/// instantiating afresh, since every run follows a failure).
fn runaway(args: &Args, limits: Limits, expect: &str) -> Result<Value> {
    let host = Host::new(limits.clone())?;
    let plugin = host.load(PluginSource {
        name: "runaway".into(),
        wasm: component(&args.components, "misbehave")?,
        config: "mode = loop\ntrigger = spin".into(),
        data: Vec::new(),
        on_failure: FailurePolicy::SkipPlugin,
    })?;
    let mut chain = Chain::new("bench", vec![plugin]);
    let spin = Event {
        name: "spin".into(),
        ..Event::default()
    };
    let mut times = Vec::with_capacity(args.runaway_runs);
    for _ in 0..args.runaway_runs {
        let started = Instant::now();
        let (out, _) = chain.process(vec![spin.clone()]);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(out.len(), 1, "skip-plugin keeps the event");
    }
    let stats = &chain.stats()[0];
    let stopped = stats.failures.get(expect).copied().unwrap_or(0);
    let mut result = percentiles(times);
    result["stopped_by"] = json!(expect);
    result["stopped_runs"] = json!(stopped);
    result["failures"] = json!(stats.failures);
    result["deadline_ms"] = json!(limits.deadline.as_secs_f64() * 1000.0);
    result["epoch_tick_ms"] = json!(limits.epoch_tick.as_secs_f64() * 1000.0);
    result["fuel_for_the_call"] = json!(limits.fuel_per_call.saturating_add(limits.fuel_per_event));
    Ok(result)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let hits = read_events(&args.events)?;
    if hits.is_empty() {
        bail!("no events in {}", args.events.display());
    }
    let geo_data =
        std::fs::read(&args.geo_data).with_context(|| format!("{}", args.geo_data.display()))?;
    let limits = Limits::default();
    let host = Host::new(limits.clone())?;
    let load = |name: &str, config: &str, data: Vec<u8>| {
        Ok::<_, anyhow::Error>(host.load(PluginSource {
            name: name.into(),
            wasm: component(&args.components, name)?,
            config: config.into(),
            data,
            on_failure: FailurePolicy::SkipPlugin,
        })?)
    };

    // The chain of six.
    let mut plugins = Vec::new();
    for (name, config, geo) in CHAIN {
        plugins.push(load(
            name,
            config,
            if geo { geo_data.clone() } else { Vec::new() },
        )?);
    }
    let mut chain = Chain::new("bench", plugins);
    let before = chain.stats();
    let (ns, kept) = run_chain(&mut chain, &hits, args.batch, args.passes);
    let after = chain.stats();
    let mut per_plugin = serde_json::Map::new();
    for (b, a) in before.iter().zip(&after) {
        // Warm-up pass included in the counters: spread over all passes.
        let events = (a.events_in - b.events_in).max(1) as f64;
        per_plugin.insert(
            a.plugin.clone(),
            json!({
                "ns_per_event_in": (a.nanos - b.nanos) as f64 / events,
                "fuel_per_event_in": (a.fuel_used - b.fuel_used) as f64 / events,
                "events_in_per_pass": (a.events_in - b.events_in) / (args.passes as u64 + 1),
                "failures": a.failed_calls(),
            }),
        );
    }

    // Passthrough alone, and the same with fuel metering cost visible by
    // comparison of an empty chain.
    let mut pass_chain = Chain::new("bench", vec![load("passthrough", "", Vec::new())?]);
    let (pass_ns, _) = run_chain(&mut pass_chain, &hits, args.batch, args.passes);
    let mut empty = Chain::new("bench", Vec::new());
    let (empty_ns, _) = run_chain(&mut empty, &hits, args.batch, args.passes);
    // The same plugin reading every field, and reading and writing back
    // every field: the cost of the fields themselves crossing.
    let mut wide = serde_json::Map::new();
    for (key, config) in [
        ("reads_all", "fields = all"),
        ("modifies_all", "modify = true"),
    ] {
        let mut c = Chain::new("bench", vec![load("passthrough", config, Vec::new())?]);
        let (ns, _) = run_chain(&mut c, &hits, args.batch, args.passes);
        let s = &c.stats()[0];
        wide.insert(
            key.to_owned(),
            json!({
                "ns_per_event": ns - empty_ns,
                "fuel_per_event": s.fuel_used as f64 / s.events_in.max(1) as f64,
            }),
        );
    }
    let pass_fuel = {
        let s = &pass_chain.stats()[0];
        s.fuel_used as f64 / s.events_in.max(1) as f64
    };
    let mut pass_batch_sizes = serde_json::Map::new();
    for batch in [1, 10, 100, 1000, 5000] {
        let (ns, _) = run_chain(&mut pass_chain, &hits, batch, 1);
        pass_batch_sizes.insert(batch.to_string(), json!(ns - empty_ns));
    }

    // Runaway: fuel with the default budget; the epoch deadline with fuel
    // to spare.
    let by_fuel = runaway(&args, Limits::default(), "out_of_fuel")?;
    let by_deadline = runaway(
        &args,
        Limits {
            fuel_per_call: u64::MAX / 4,
            deadline: Duration::from_millis(args.runaway_deadline_ms),
            epoch_tick: Duration::from_millis(1),
            ..Limits::default()
        },
        "deadline",
    )?;

    let result = json!({
        "events": hits.len(),
        "batch": args.batch,
        "passes": args.passes,
        "chain": {
            "plugins": CHAIN.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(),
            "ns_per_event": ns,
            "events_per_sec": 1e9 / ns,
            "events_out_per_pass": kept,
            "per_plugin": per_plugin,
        },
        "passthrough": {
            "ns_per_event": pass_ns - empty_ns,
            "ns_per_event_gross": pass_ns,
            "empty_chain_ns_per_event": empty_ns,
            "fuel_per_event": pass_fuel,
            "reads_all": wide["reads_all"],
            "modifies_all": wide["modifies_all"],
            "ns_per_event_by_batch": pass_batch_sizes,
        },
        "runaway": {
            "fuel": by_fuel,
            "deadline": by_deadline,
        },
        "limits": {
            "fuel_per_call": limits.fuel_per_call,
            "fuel_per_event": limits.fuel_per_event,
            "deadline_ms": limits.deadline.as_secs_f64() * 1000.0,
            "epoch_tick_ms": limits.epoch_tick.as_secs_f64() * 1000.0,
        },
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
