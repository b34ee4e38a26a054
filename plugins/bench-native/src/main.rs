//! The reference chain compiled natively and called in-process, on the
//! same events and in the same order as `bench-plugins` runs the
//! components: the baseline of `cargo xtask bench plugins`. Each plugin
//! gets a fresh copy of each event (the host builds a fresh record per
//! call too) and its outcome is applied before the next plugin.
//!
//! Usage: `bench-native EVENTS.tsv GEO.mmdb BATCH PASSES`; prints JSON.

use std::time::{Duration, Instant};

use hourglass_plugin_sdk::{DynPlugin, Event, Outcome};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, events, geo_data, batch, passes] = &args[..] else {
        eprintln!("usage: bench-native EVENTS.tsv GEO.mmdb BATCH PASSES");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(events).expect("the events file");
    let geo_data = std::fs::read(geo_data).expect("the geo database");
    let batch: usize = batch.parse().expect("BATCH");
    let passes: usize = passes.parse().expect("PASSES");
    let hits: Vec<Event> = text
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Event {
                name: f[0].into(),
                hostname: f[1].into(),
                pathname: f[2].into(),
                referrer: f[3].into(),
                user_agent: f[4].into(),
                client_ip: f[5].into(),
                language: f[6].into(),
                ..Event::default()
            }
        })
        .collect();

    // Same order and configs as bench-plugins' CHAIN.
    let mut chain: Vec<(&str, Box<dyn DynPlugin>, Duration)> = vec![
        (
            "bot-filter",
            bot_filter::native_plugin("", &[]).unwrap(),
            Duration::ZERO,
        ),
        (
            "validate",
            validate::native_plugin("", &[]).unwrap(),
            Duration::ZERO,
        ),
        (
            "pii-scrub",
            pii_scrub::native_plugin("", &[]).unwrap(),
            Duration::ZERO,
        ),
        (
            "ua-parse",
            ua_parse::native_plugin("", &[]).unwrap(),
            Duration::ZERO,
        ),
        (
            "geo",
            geo::native_plugin("", &geo_data).unwrap(),
            Duration::ZERO,
        ),
        (
            "channel",
            channel::native_plugin("", &[]).unwrap(),
            Duration::ZERO,
        ),
    ];
    let mut events_in = vec![0u64; chain.len()];
    let mut kept = 0;
    let pass = |chain: &mut Vec<(&str, Box<dyn DynPlugin>, Duration)>, events_in: &mut Vec<u64>| {
        let mut out = 0;
        for chunk in hits.chunks(batch) {
            let mut items: Vec<Event> = chunk.to_vec();
            for (i, (_, plugin, time)) in chain.iter_mut().enumerate() {
                let started = Instant::now();
                events_in[i] += items.len() as u64;
                let copies: Vec<Event> = items.clone();
                let mut next = Vec::with_capacity(items.len());
                for (item, copy) in items.into_iter().zip(copies) {
                    match plugin.process(copy) {
                        Outcome::Keep => next.push(item),
                        Outcome::Modify(e) => next.push(e),
                        Outcome::Drop(_) => {}
                    }
                }
                items = next;
                *time += started.elapsed();
            }
            out += items.len();
        }
        out
    };
    pass(&mut chain, &mut events_in);
    for (_, _, t) in chain.iter_mut() {
        *t = Duration::ZERO;
    }
    events_in.iter_mut().for_each(|n| *n = 0);
    let started = Instant::now();
    for _ in 0..passes {
        kept = pass(&mut chain, &mut events_in);
    }
    let ns = started.elapsed().as_nanos() as f64 / (hits.len() * passes) as f64;
    let per_plugin: Vec<String> = chain
        .iter()
        .zip(&events_in)
        .map(|((name, _, time), n)| {
            format!(
                "\"{name}\": {{\"ns_per_event_in\": {}}}",
                time.as_nanos() as f64 / (*n).max(1) as f64
            )
        })
        .collect();
    println!(
        "{{\"ns_per_event\": {ns}, \"events_per_sec\": {}, \"events_out_per_pass\": {kept}, \"per_plugin\": {{{}}}}}",
        1e9 / ns,
        per_plugin.join(", ")
    );
}
