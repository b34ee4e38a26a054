//! The plugin host against real components: the reference plugins, and
//! hostile ones that must be refused at load or contained at run time.
//!
//! The components come from `cargo xtask plugins` (which `cargo xtask
//! test` runs first).

use std::path::PathBuf;
use std::time::Duration;

use hourglass_model::{Event, Prop, Reject};
use hourglass_plugin_host::{
    Chain, FailurePolicy, Host, Limits, LoadStep, LoadedPlugin, PluginSource, PluginStats,
};
use hourglass_processing::{HitContext, PluginChain};

fn components_dir() -> PathBuf {
    hourglass_testkit::state_dir().join("plugins")
}

fn component(name: &str) -> Vec<u8> {
    let path = components_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the plugin component {}: {e}. Build the plugins first: `cargo xtask plugins`",
            path.display()
        )
    })
}

/// Small budgets, so runaway plugins are stopped quickly.
fn limits() -> Limits {
    Limits {
        init_fuel: 200_000_000,
        fuel_per_call: 20_000_000,
        fuel_per_event: 1_000_000,
        memory_bytes: 16 << 20,
        ..Limits::default()
    }
}

fn source(name: &str, config: &str, on_failure: FailurePolicy) -> PluginSource {
    PluginSource {
        name: name.to_owned(),
        wasm: component(name),
        config: config.to_owned(),
        data: Vec::new(),
        on_failure,
    }
}

fn load(host: &Host, name: &str, config: &str, on_failure: FailurePolicy) -> LoadedPlugin {
    host.load(source(name, config, on_failure))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn event(name: &str, pathname: &str, referrer: &str, hit_index: u32) -> Event {
    Event {
        name: name.to_owned(),
        hostname: "shop.example.com".to_owned(),
        pathname: pathname.to_owned(),
        referrer: referrer.to_owned(),
        hit_index,
        ..Event::default()
    }
}

fn ua(user_agent: &'static str) -> HitContext<'static> {
    HitContext {
        user_agent,
        client_ip: "198.51.100.7",
        accept_language: "en",
    }
}

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
const EDGE_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80";
const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn reference_chain(host: &Host) -> Chain {
    let plugins = [
        ("bot-filter", "", FailurePolicy::RejectBatch),
        ("validate", "", FailurePolicy::RejectBatch),
        ("pii-scrub", "", FailurePolicy::RejectBatch),
        ("ua-parse", "", FailurePolicy::SkipPlugin),
        (
            "channel",
            "internal_hosts = pay.example.net",
            FailurePolicy::SkipPlugin,
        ),
    ]
    .into_iter()
    .map(|(name, config, policy)| load(host, name, config, policy))
    .collect();
    Chain::new("reference-v1", plugins)
}

type Summary<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

/// browser, version, OS, version, device, source, channel.
fn summary(e: &Event) -> Summary<'_> {
    (
        e.browser.as_str(),
        e.browser_version.as_str(),
        e.os.as_str(),
        e.os_version.as_str(),
        e.device.as_str(),
        e.referrer_source.as_str(),
        e.channel.as_str(),
    )
}

fn stats_of<'a>(stats: &'a [PluginStats], plugin: &str) -> &'a PluginStats {
    stats
        .iter()
        .find(|s| s.plugin == plugin)
        .expect("a plugin of the chain")
}

#[test]
fn the_reference_chain_enriches_scrubs_and_filters() {
    let host = Host::new(limits()).unwrap();
    let mut chain = reference_chain(&host);
    assert_eq!(chain.plugin_set(), "reference-v1");

    let mut organic = event("pageview", "/shoes", "https://www.google.de/", 0);
    organic.props = vec![Prop {
        key: "plan".into(),
        value: "pro".into(),
    }];
    let mut newsletter = event("pageview", "/sale", "", 1);
    (newsletter.utm_source, newsletter.utm_medium) = ("newsletter".into(), "email".into());
    let bot = event("pageview", "/", "", 2);
    let nameless = event("  ", "/", "", 3);
    let mut leaky = event(
        "signup",
        "/users/jane.doe@example.org/settings",
        "https://news.example.org/story?token=abc123&page=2",
        4,
    );
    leaky.props = vec![
        Prop {
            key: "email".into(),
            value: "jane.doe@example.org".into(),
        },
        Prop {
            key: "note".into(),
            value: "reset 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 now"
                .into(),
        },
    ];
    let direct = event("pageview", "/", "", 5);
    let mut paid = event("pageview", "/", "https://www.google.com/", 6);
    (paid.utm_source, paid.utm_medium) = ("google".into(), "cpc".into());
    let social = event("pageview", "/", "https://t.co/xyz", 7);
    let returning = event("pageview", "/thanks", "https://pay.example.net/checkout", 8);

    let events = vec![
        organic, newsletter, bot, nameless, leaky, direct, paid, social, returning,
    ];
    let contexts = [
        ua(CHROME_WINDOWS),
        ua(SAFARI_IPHONE),
        ua(GOOGLEBOT),
        ua(FIREFOX_LINUX),
        ua(EDGE_MAC),
        ua(ANDROID_TABLET),
        ua(CHROME_WINDOWS),
        ua(CHROME_WINDOWS),
        ua(CHROME_WINDOWS),
    ];
    let (out, rejects) = chain.process_in_context(events, &contexts);

    assert_eq!(
        rejects,
        vec![
            Reject {
                hit_index: 2,
                reason: "bot".into(),
                field: "user_agent".into(),
                plugin: "bot-filter".into()
            },
            Reject {
                hit_index: 3,
                reason: "empty_name".into(),
                field: "name".into(),
                plugin: "validate".into()
            },
        ]
    );
    let by_index = |i: u32| out.iter().find(|e| e.hit_index == i).expect("kept event");
    assert_eq!(
        summary(by_index(0)),
        (
            "Chrome",
            "124.0",
            "Windows",
            "10",
            "desktop",
            "Google",
            "Organic Search"
        )
    );
    assert_eq!(
        summary(by_index(1)),
        (
            "Safari",
            "17.4",
            "iOS",
            "17.4",
            "mobile",
            "newsletter",
            "Email"
        )
    );
    assert_eq!(
        summary(by_index(4)),
        (
            "Edge",
            "124.0",
            "macOS",
            "10.15",
            "desktop",
            "news.example.org",
            "Referral"
        )
    );
    assert_eq!(
        summary(by_index(5)),
        ("Chrome", "124.0", "Android", "14", "tablet", "", "Direct")
    );
    assert_eq!(summary(by_index(6)).5, "Google");
    assert_eq!(summary(by_index(6)).6, "Paid Search");
    assert_eq!(
        (summary(by_index(7)).5, summary(by_index(7)).6),
        ("Twitter", "Social")
    );
    assert_eq!(
        summary(by_index(8)).6,
        "Direct",
        "an internal host is not a referral"
    );

    // PII is gone from the path, the referrer and the props; the rest stays.
    let leaky = by_index(4);
    assert_eq!(leaky.pathname, "/users/[email]/settings");
    assert_eq!(leaky.referrer, "https://news.example.org/story?page=2");
    assert_eq!(
        leaky.props,
        vec![Prop {
            key: "note".into(),
            value: "reset [token] now".into()
        }]
    );
    assert_eq!(by_index(0).props[0].value, "pro");
    assert_eq!(by_index(0).hostname, "shop.example.com");

    let stats = chain.stats();
    assert_eq!(stats_of(&stats, "bot-filter").drops.get("bot"), Some(&1));
    assert_eq!(
        stats_of(&stats, "validate").drops.get("empty_name"),
        Some(&1)
    );
    assert_eq!(stats_of(&stats, "channel").events_in, 7);
    assert!(stats.iter().all(|s| s.calls == 1 && s.failed_calls() == 0));
    assert!(stats.iter().all(|s| s.fuel_used > 0));
}

#[test]
fn instances_are_reused_and_a_chain_without_context_still_runs() {
    let host = Host::new(limits()).unwrap();
    let mut chain = reference_chain(&host);
    for batch in 0..3 {
        let events = vec![event("pageview", "/", "https://duckduckgo.com/", batch)];
        let (out, rejects) = chain.process(events);
        assert!(rejects.is_empty());
        // No hit context: nothing to parse, but the channel still works.
        assert_eq!(
            (out[0].browser.as_str(), out[0].channel.as_str()),
            ("", "Organic Search")
        );
    }
    assert!(
        chain
            .stats()
            .iter()
            .all(|s| s.instantiations == 1 && s.calls == 3)
    );
}

#[test]
fn plugins_declare_what_they_read_and_write() {
    let host = Host::new(limits()).unwrap();
    let ua = load(&host, "ua-parse", "", FailurePolicy::SkipPlugin);
    assert_eq!(ua.reads(), vec!["user_agent"]);
    assert_eq!(
        ua.writes(),
        vec!["browser", "browser_version", "os", "os_version", "device"]
    );
    let passthrough = load(&host, "passthrough", "", FailurePolicy::SkipPlugin);
    assert!(passthrough.reads().is_empty() && passthrough.writes().is_empty());
}

#[test]
fn a_plugin_takes_back_only_the_fields_it_declared() {
    let host = Host::new(limits()).unwrap();
    let plugin = load(
        &host,
        "misbehave",
        "mode = undeclared-write",
        FailurePolicy::SkipPlugin,
    );
    let mut chain = Chain::new("t", vec![plugin]);
    let (out, _) = chain.process(vec![event("pageview", "/", "", 0)]);
    assert_eq!(
        (
            out[0].browser.as_str(),
            out[0].country.as_str(),
            out[0].name.as_str()
        ),
        ("Declared", "", "pageview")
    );

    let plugin = load(
        &host,
        "misbehave",
        "mode = bad-reason",
        FailurePolicy::SkipPlugin,
    );
    let mut chain = Chain::new("t", vec![plugin]);
    let (_, rejects) = chain.process(vec![event("pageview", "/", "", 0)]);
    assert_eq!(rejects[0].reason, "invalid_reason");
}

fn refused(host: &Host, source: PluginSource) -> (LoadStep, String) {
    match host.load(source) {
        Ok(plugin) => panic!("{plugin:?} was loaded"),
        Err(e) => (e.step, e.to_string()),
    }
}

#[test]
fn hostile_components_are_refused_at_load_with_the_step_that_failed() {
    let host = Host::new(limits()).unwrap();
    let raw = |name: &str, wasm: Vec<u8>| PluginSource {
        name: name.to_owned(),
        wasm,
        config: String::new(),
        data: Vec::new(),
        on_failure: FailurePolicy::SkipPlugin,
    };
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (step, message) = refused(&host, raw("random", random));
    assert_eq!(step, LoadStep::Decode);
    assert!(message.contains("not WebAssembly"), "{message}");

    // The smallest core module, and a real one (passthrough before
    // `cargo xtask plugins` made it a component).
    for core_module in [b"\0asm\x01\0\0\0".to_vec(), component("core-module")] {
        let (step, message) = refused(&host, raw("core", core_module));
        assert_eq!(step, LoadStep::Decode);
        assert!(message.contains("core WebAssembly module"), "{message}");
    }

    let mut truncated = component("passthrough");
    truncated.truncate(truncated.len() / 2);
    assert_eq!(
        refused(&host, raw("truncated", truncated)).0,
        LoadStep::Compile
    );

    let (step, message) = refused(&host, raw("imports", component("imports")));
    assert_eq!(step, LoadStep::Imports);
    assert!(message.contains("imports log"), "{message}");

    let (step, message) = refused(&host, raw("wrong-world", component("wrong-world")));
    assert_eq!(step, LoadStep::World);
    assert!(message.contains("`init`"), "{message}");

    // A plugin of the previous version of the world is named as such.
    let (step, message) = refused(&host, raw("old-world", component("old-world")));
    assert_eq!(step, LoadStep::World);
    assert!(
        message.contains("hourglass:plugin/types@0.1.0") && message.contains("0.2.0"),
        "{message}"
    );

    let (step, message) = refused(
        &host,
        source("misbehave", "mode = init-error", FailurePolicy::SkipPlugin),
    );
    assert_eq!(step, LoadStep::Init);
    assert!(message.contains("asked to fail"), "{message}");

    let (step, message) = refused(
        &host,
        source("misbehave", "mode = loop-init", FailurePolicy::SkipPlugin),
    );
    assert_eq!(step, LoadStep::Init);
    assert!(message.contains("out_of_fuel"), "{message}");

    let (step, message) = refused(
        &host,
        source("validate", "max_props = many", FailurePolicy::SkipPlugin),
    );
    assert_eq!(step, LoadStep::Init);
    assert!(message.contains("max_props"), "{message}");

    // Misbehaving on every event: caught by the dry run.
    let (step, message) = refused(
        &host,
        source("misbehave", "mode = panic", FailurePolicy::SkipPlugin),
    );
    assert_eq!(step, LoadStep::DryRun);
    assert!(message.contains("trap"), "{message}");

    // The host still loads and runs good plugins.
    let mut chain = Chain::new(
        "t",
        vec![load(&host, "passthrough", "", FailurePolicy::SkipPlugin)],
    );
    assert_eq!(
        chain.process(vec![event("pageview", "/", "", 0)]).0.len(),
        1
    );
}

/// A chain of `misbehave` (misbehaving only on events named `boom`) then
/// `ua-parse`; returns the chain after a batch with one `boom` event and a
/// batch without, checking the host kept working.
fn contained(
    config: &str,
    policy: FailurePolicy,
    limits: Limits,
) -> (Chain, Vec<Event>, Vec<Reject>) {
    let host = Host::new(limits).unwrap();
    let hostile = load(
        &host,
        "misbehave",
        &format!("mode = {config}\ntrigger = boom"),
        policy,
    );
    let ua_parse = load(&host, "ua-parse", "", FailurePolicy::SkipPlugin);
    let mut chain = Chain::new("t", vec![hostile, ua_parse]);
    let events = vec![event("pageview", "/", "", 0), event("boom", "/", "", 1)];
    let (out, rejects) = chain.process_in_context(events, &[ua(FIREFOX_LINUX), ua(FIREFOX_LINUX)]);

    // The next batch goes through a fresh instance.
    let (next, next_rejects) =
        chain.process_in_context(vec![event("pageview", "/", "", 0)], &[ua(FIREFOX_LINUX)]);
    assert!(next_rejects.is_empty());
    assert_eq!(next[0].browser, "Firefox");
    let stats = chain.stats();
    assert_eq!(
        stats[0].instantiations, 2,
        "re-instantiated after the failure"
    );
    assert_eq!(stats[0].calls, 2);
    (chain, out, rejects)
}

fn assert_failed(chain: &Chain, kind: &str) {
    let stats = chain.stats();
    assert_eq!(
        stats[0].failures.get(kind),
        Some(&1),
        "{:?}; last failure: {:?}",
        stats[0],
        chain.last_failures()[0].1
    );
    assert_eq!(stats[0].failed_calls(), 1);
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_the_plugin_is_skipped() {
    let (chain, out, rejects) = contained("loop", FailurePolicy::SkipPlugin, limits());
    assert_failed(&chain, "out_of_fuel");
    assert!(rejects.is_empty());
    // Skipped: both events go on to ua-parse.
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|e| e.browser == "Firefox"));
}

#[test]
fn an_endless_loop_with_fuel_to_spare_hits_the_deadline() {
    let limits = Limits {
        fuel_per_call: u64::MAX / 4,
        deadline: Duration::from_millis(50),
        epoch_tick: Duration::from_millis(5),
        ..limits()
    };
    let (chain, out, _) = contained("loop", FailurePolicy::SkipPlugin, limits);
    assert_failed(&chain, "deadline");
    assert_eq!(out.len(), 2);
}

#[test]
fn memory_growth_stops_at_the_cap_and_the_batch_is_rejected() {
    let (chain, out, rejects) = contained("grow", FailurePolicy::RejectBatch, limits());
    assert_failed(&chain, "memory_cap");
    assert!(out.is_empty());
    assert_eq!(
        rejects
            .iter()
            .map(|r| (r.hit_index, r.reason.as_str(), r.plugin.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (0, "plugin_failed", "misbehave"),
            (1, "plugin_failed", "misbehave")
        ]
    );
    assert_eq!(chain.stats()[0].drops.get("plugin_failed"), Some(&2));
}

#[test]
fn deep_recursion_overflows_the_wasm_stack_not_the_host_stack() {
    let (chain, out, _) = contained("recurse", FailurePolicy::SkipPlugin, limits());
    assert_failed(&chain, "stack_overflow");
    assert_eq!(out.len(), 2);
}

#[test]
fn a_panic_traps_and_is_contained() {
    let (chain, out, rejects) = contained("panic", FailurePolicy::RejectBatch, limits());
    assert_failed(&chain, "trap");
    assert!(out.is_empty());
    assert_eq!(rejects.len(), 2);
}

#[test]
fn the_wrong_number_of_outcomes_is_a_failure() {
    let host = Host::new(limits()).unwrap();
    // The dry run sees one event; a wrong count fails it at load.
    let (step, _) = refused(
        &host,
        source("misbehave", "mode = wrong-count", FailurePolicy::SkipPlugin),
    );
    assert_eq!(step, LoadStep::DryRun);
}

#[test]
fn a_huge_output_is_refused_and_counted() {
    let (chain, out, rejects) = contained("huge", FailurePolicy::SkipPlugin, limits());
    assert_failed(&chain, "oversized_output");
    assert!(rejects.is_empty());
    // Skipped: nothing of the 4 MiB string reached an event.
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|e| e.browser == "Firefox"), "{out:?}");
    assert!(
        chain.last_failures()[0]
            .1
            .is_some_and(|m| m.contains("at most 131072")),
        "{:?}",
        chain.last_failures()
    );
}

fn geo_fixture(file: &str) -> Vec<u8> {
    let path = hourglass_testkit::workspace_root()
        .join("plugins/geo/testdata")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn geo_fills_country_region_and_city_from_the_client_ip() {
    let host = Host::new(limits()).unwrap();
    let geo = host
        .load(PluginSource {
            data: geo_fixture("geo-city-fixture.mmdb"),
            ..source("geo", "", FailurePolicy::SkipPlugin)
        })
        .unwrap();
    assert_eq!(geo.reads(), vec!["client_ip"]);
    assert_eq!(geo.writes(), vec!["country", "region", "city"]);
    let mut chain = Chain::new("t", vec![geo]);
    let at = |client_ip: &'static str| HitContext {
        user_agent: FIREFOX_LINUX,
        client_ip,
        accept_language: "en",
    };
    let events = (0..4).map(|i| event("pageview", "/", "", i)).collect();
    let (out, rejects) = chain.process_in_context(
        events,
        &[
            at("192.0.2.10"),
            at("2001:db8::7"),
            at("10.1.2.3"),
            at("not an address"),
        ],
    );
    assert!(rejects.is_empty());
    let places: Vec<(&str, &str, &str)> = out
        .iter()
        .map(|e| (e.country.as_str(), e.region.as_str(), e.city.as_str()))
        .collect();
    assert_eq!(
        places,
        [
            ("US", "California", "San Francisco"),
            ("FR", "Île-de-France", "Paris"),
            ("", "", ""),
            ("", "", "")
        ]
    );

    // The country-only layout of the default database.
    let geo = host
        .load(PluginSource {
            data: geo_fixture("geo-country-fixture.mmdb"),
            ..source("geo", "", FailurePolicy::SkipPlugin)
        })
        .unwrap();
    let mut chain = Chain::new("t", vec![geo]);
    let (out, _) =
        chain.process_in_context(vec![event("pageview", "/", "", 0)], &[at("203.0.113.9")]);
    assert_eq!((out[0].country.as_str(), out[0].city.as_str()), ("JP", ""));

    // No database, or not one: refused at init, saying why.
    let (step, message) = refused(&host, source("geo", "", FailurePolicy::SkipPlugin));
    assert_eq!(step, LoadStep::Init);
    assert!(message.contains("needs a MaxMind DB"), "{message}");
    let (step, message) = refused(
        &host,
        PluginSource {
            data: b"not a database".to_vec(),
            ..source("geo", "", FailurePolicy::SkipPlugin)
        },
    );
    assert_eq!(step, LoadStep::Init);
    assert!(message.contains("not a MaxMind DB"), "{message}");
}
