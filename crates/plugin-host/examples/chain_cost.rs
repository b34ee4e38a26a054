//! Prints what a plugin call costs per event, for the passthrough plugin
//! (reading nothing, reading every field, and writing every field back)
//! and for the reference chain. A measurement, not a test: run it in
//! release after `cargo xtask plugins`:
//!
//! ```sh
//! cargo run --release -p hourglass-plugin-host --example chain_cost
//! ```

use std::time::Instant;

use hourglass_model::{Event, Prop};
use hourglass_plugin_host::{Chain, FailurePolicy, Host, Limits, PluginSource};
use hourglass_processing::{HitContext, PluginChain};

const BATCH: usize = 500;
const ROUNDS: usize = 40;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = hourglass_testkit::state_dir().join("plugins");
    let host = Host::new(Limits::default())?;
    let load = |name: &str, config: &str| -> Result<_, Box<dyn std::error::Error>> {
        let path = dir.join(format!("{name}.wasm"));
        let wasm = std::fs::read(&path)
            .map_err(|e| format!("{}: {e} (run `cargo xtask plugins`)", path.display()))?;
        Ok(host.load(PluginSource {
            name: name.to_owned(),
            wasm,
            config: config.to_owned(),
            data: Vec::new(),
            on_failure: FailurePolicy::SkipPlugin,
        })?)
    };
    let runs: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("passthrough, no fields", vec![("passthrough", "")]),
        (
            "passthrough, reads all",
            vec![("passthrough", "fields = all")],
        ),
        (
            "passthrough, modifies all",
            vec![("passthrough", "modify = true")],
        ),
        (
            "reference chain (5 plugins)",
            vec![
                ("bot-filter", ""),
                ("validate", ""),
                ("pii-scrub", ""),
                ("ua-parse", ""),
                ("channel", ""),
            ],
        ),
    ];
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let contexts = vec![
        HitContext {
            user_agent: ua,
            client_ip: "198.51.100.7",
            accept_language: "en-US,en;q=0.9",
        };
        BATCH
    ];
    for (label, plugins) in runs {
        let plugins = plugins
            .into_iter()
            .map(|(name, config)| load(name, config))
            .collect::<Result<Vec<_>, _>>()?;
        let mut chain = Chain::new("bench", plugins);
        let events = batch();
        // Warm up: first instantiation, caches.
        chain.process_in_context(events.clone(), &contexts);
        let started = Instant::now();
        for _ in 0..ROUNDS {
            let (kept, _) = chain.process_in_context(events.clone(), &contexts);
            assert_eq!(kept.len(), BATCH);
        }
        let per_event = started.elapsed().as_nanos() as f64 / (ROUNDS * BATCH) as f64;
        let fuel: u64 = chain.stats().iter().map(|s| s.fuel_used).sum();
        let fuel_per_event = fuel as f64 / ((ROUNDS + 1) * BATCH) as f64;
        println!("{label:30} {per_event:8.0} ns/event  {fuel_per_event:8.0} fuel/event");
    }
    Ok(())
}

fn batch() -> Vec<Event> {
    (0..BATCH)
        .map(|i| Event {
            name: "pageview".into(),
            hostname: "shop.example.com".into(),
            pathname: format!("/products/{i}"),
            referrer: "https://www.google.com/".into(),
            utm_source: "newsletter".into(),
            props: vec![Prop {
                key: "plan".into(),
                value: "pro".into(),
            }],
            hit_index: i as u32,
            ..Event::default()
        })
        .collect()
}
