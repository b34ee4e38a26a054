//! Chains as the control channel delivers them: blobs named by SHA-256 in
//! a directory, the platform chain on every event, then a site's own chain
//! on that site's events only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hourglass_model::Event;
use hourglass_plugin_host::{Limits, PluginSetError, load_chains};
use hourglass_processing::control::sha256_hex;
use hourglass_processing::{PluginBinding, PluginChains};

fn component(name: &str) -> Vec<u8> {
    let path: PathBuf = hourglass_testkit::state_dir()
        .join("plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}. Build the plugins first: `cargo xtask plugins`",
            path.display()
        )
    })
}

/// Writes `name`'s component into `dir` under its SHA-256; its binding.
fn blob(dir: &std::path::Path, name: &str, config: &str) -> PluginBinding {
    let wasm = component(name);
    let sha256 = sha256_hex(&wasm);
    std::fs::write(dir.join(&sha256), wasm).unwrap();
    PluginBinding {
        name: name.into(),
        plugin_version: "1.0.0".into(),
        sha256,
        config: config.into(),
        data_sha256: String::new(),
        on_failure: "skip-plugin".into(),
    }
}

fn event(site: &str, referrer: &str, hit_index: u32) -> Event {
    Event {
        site_id: site.into(),
        name: "pageview".into(),
        hostname: "shop.example.com".into(),
        pathname: "/".into(),
        referrer: referrer.into(),
        hit_index,
        ..Event::default()
    }
}

#[test]
fn a_site_chain_runs_after_the_platform_chain_on_its_own_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let platform = vec![blob(dir.path(), "passthrough", "")];
    let sites = BTreeMap::from([("shop".to_owned(), vec![blob(dir.path(), "channel", "")])]);
    let chains = PluginChains::new(platform, sites);
    let mut chain = load_chains(&chains, dir.path(), Limits::default()).unwrap();
    assert_eq!(chain.plugin_set(), chains.label);

    let events = vec![
        event("other", "https://www.google.com/", 0),
        event("shop", "https://www.google.com/", 1),
        event("shop", "", 2),
        event("other", "", 3),
    ];
    let (out, rejects) = chain.process(events);
    assert!(rejects.is_empty(), "{rejects:?}");
    let seen: Vec<(u32, &str, &str)> = out
        .iter()
        .map(|e| (e.hit_index, e.site_id.as_str(), e.channel.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (0, "other", ""),
            (1, "shop", "Organic Search"),
            (2, "shop", "Direct"),
            (3, "other", ""),
        ]
    );
    // Counters: the platform plugin saw all four events, the site's
    // plugin (named `site:…`) only the shop's two.
    let stats: Vec<(String, u64, u64)> = chain
        .stats()
        .into_iter()
        .map(|s| (s.plugin, s.calls, s.events_in))
        .collect();
    assert_eq!(
        stats,
        [
            ("passthrough".to_owned(), 1, 4),
            ("site:channel".to_owned(), 1, 2)
        ]
    );
}

#[test]
fn a_missing_or_broken_blob_fails_the_load_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut binding = blob(dir.path(), "passthrough", "");
    binding.sha256 = "0".repeat(64);
    let chains = PluginChains::new(vec![binding], BTreeMap::new());
    let err = load_chains(&chains, dir.path(), Limits::default())
        .err()
        .unwrap();
    assert!(matches!(err, PluginSetError::Read { .. }), "{err}");
    assert!(err.to_string().contains("plugin passthrough"), "{err}");

    // Bytes that are not a component: refused at the host's first step.
    std::fs::write(dir.path().join("1".repeat(64)), b"not wasm").unwrap();
    let mut binding = blob(dir.path(), "passthrough", "");
    binding.sha256 = "1".repeat(64);
    let chains = PluginChains::new(vec![binding], BTreeMap::new());
    let err = load_chains(&chains, dir.path(), Limits::default())
        .err()
        .unwrap();
    assert!(matches!(err, PluginSetError::Load { .. }), "{err}");
}

#[test]
fn no_bindings_is_the_empty_set() {
    let dir = tempfile::tempdir().unwrap();
    let chains = PluginChains::new(vec![], BTreeMap::new());
    let chain = load_chains(&chains, dir.path(), Limits::default()).unwrap();
    assert_eq!(chain.plugin_set(), "none");
}
