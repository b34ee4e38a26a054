//! The edge agent end to end: real HTTP requests with the bytes real clients
//! send, through a running `edge-agent`, over real QUIC + mTLS to a test
//! receiver; the batches it gets hold exactly the events sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hourglass_e2e::edge::{
    DOMAIN, Edge, GA4_ID, GA4_SECRET, MASTER_SECRET, SITE_ID, WRITE_KEY, plugin_toml,
};
use hourglass_e2e::receiver::{Receiver, server_certs};
use hourglass_model::{Event, IdentitySource};
use hourglass_processing::IdentityKeys;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

fn post(url: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", content_type)
        .header("User-Agent", UA)
        .send(body)
        .unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn wait_for_events(receiver: &Receiver, n: usize) -> Vec<Event> {
    let started = Instant::now();
    loop {
        let events = receiver.events();
        if events.len() >= n || started.elapsed() > Duration::from_secs(30) {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_protocol_arrives_with_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    let mut edge = Edge::start(&dir.path().join("edge"), &certs, receiver.addr, "");
    let url = edge.url.clone();

    // The Plausible script: text/plain JSON.
    let plausible = r#"{"n":"pageview","u":"https://example.com/pricing?utm_source=newsletter&utm_medium=email","d":"example.com","r":"https://news.ycombinator.com/"}"#;
    assert_eq!(
        post(&format!("{url}/api/event"), "text/plain", plausible).0,
        202
    );
    // A custom event with props and revenue, same visitor.
    let custom = r#"{"n":"Signup","u":"https://example.com/pricing","d":"example.com","p":{"plan":"pro"},"revenue":{"amount":"9.50","currency":"EUR"}}"#;
    assert_eq!(
        post(&format!("{url}/api/event"), "text/plain", custom).0,
        202
    );
    // The batch endpoint.
    let batch = r#"[{"n":"pageview","u":"https://example.com/a","d":"example.com"},{"n":"pageview","u":"https://example.com/b","d":"example.com"}]"#;
    assert_eq!(
        post(&format!("{url}/api/batch"), "application/json", batch).0,
        202
    );
    // The no-JS pixel.
    let mut pixel = agent()
        .get(&format!(
            "{url}/i.gif?n=pageview&u=https%3A%2F%2Fexample.com%2Fnoscript&d=example.com"
        ))
        .header("User-Agent", UA)
        .call()
        .unwrap();
    assert_eq!(pixel.status().as_u16(), 202);
    assert_eq!(pixel.headers().get("content-type").unwrap(), "image/gif");
    assert!(!pixel.body_mut().read_to_vec().unwrap().is_empty());
    // GA4 Measurement Protocol, as in Google's documentation.
    let ga4 = r#"{"client_id":"123456.7654321","events":[{"name":"page_view","params":{"page_location":"https://example.com/ga4-page","page_referrer":"https://www.google.com/"}},{"name":"purchase","params":{"currency":"USD","value":30.03,"transaction_id":"T_1"}}]}"#;
    let (status, _) = post(
        &format!("{url}/mp/collect?measurement_id={GA4_ID}&api_secret={GA4_SECRET}"),
        "application/json",
        ga4,
    );
    assert_eq!(status, 202, "GA4 hit accepted");
    // Segment analytics-node's batch, with its Basic-auth write key.
    // analytics-node stamps each call with the time it was made.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let segment = r#"{"batch":[{"userId":"user-7","event":"Plan Upgraded","properties":{"plan":"pro"},"type":"track","messageId":"node-next-1-a","timestamp":"NOW","context":{"library":{"name":"@segment/analytics-node","version":"2.1.0"}},"integrations":{},"_metadata":{"nodeVersion":"20.5.1","jsRuntime":"node"}},{"anonymousId":"anon-9","properties":{"url":"https://example.com/seg-page"},"type":"page","messageId":"node-next-1-b","timestamp":"NOW","context":{"library":{"name":"@segment/analytics-node","version":"2.1.0"}},"integrations":{},"_metadata":{"nodeVersion":"20.5.1","jsRuntime":"node"}}],"sentAt":"NOW"}"#.replace("NOW", &now);
    let basic = format!("Basic {}", base64_user(WRITE_KEY));
    let mut r = agent()
        .post(&format!("{url}/v1/batch"))
        .header("Content-Type", "application/json")
        .header("Authorization", &basic)
        .send(&segment)
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        status,
        202,
        "{}",
        r.body_mut().read_to_string().unwrap_or_default()
    );

    let events = wait_for_events(&receiver, 9);
    assert_eq!(events.len(), 9, "events: {events:#?}\n{}", edge.log());
    assert_eq!(receiver.raw_hits(), 6);
    let by_path: BTreeMap<(String, String), &Event> = events
        .iter()
        .map(|e| ((e.name.clone(), e.pathname.clone()), e))
        .collect();
    assert_eq!(by_path.len(), 9, "each event once");
    assert!(events.iter().all(|e| e.site_id == SITE_ID));

    let keys = IdentityKeys::from_master_secret(MASTER_SECRET).unwrap();
    let pricing = by_path[&("pageview".into(), "/pricing".into())];
    assert_eq!(pricing.utm_source, "newsletter");
    assert_eq!(pricing.referrer, "https://news.ycombinator.com/");
    assert_eq!(
        pricing.visitor_id,
        keys.daily_visitor_id(SITE_ID, "127.0.0.1", UA, pricing.ts_ms),
        "cookieless visitor: keyed daily hash of site, IP and UA"
    );
    let signup = by_path[&("Signup".into(), "/pricing".into())];
    assert_eq!(signup.visitor_id, pricing.visitor_id);
    assert_eq!(signup.session_id, pricing.session_id, "same visit");
    assert_eq!(signup.revenue_micros, 9_500_000);
    assert_eq!(
        signup
            .props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect::<Vec<_>>(),
        [("plan", "pro")]
    );
    for path in ["/a", "/b", "/noscript"] {
        assert_eq!(
            by_path[&("pageview".into(), path.into())].visitor_id,
            pricing.visitor_id
        );
    }
    let ga4_page = by_path[&("pageview".into(), "/ga4-page".into())];
    assert_eq!(
        ga4_page.visitor_id,
        keys.client_visitor_id(SITE_ID, "123456.7654321"),
        "GA4 client_id"
    );
    let purchase = events.iter().find(|e| e.name == "purchase").unwrap();
    assert_eq!(purchase.visitor_id, ga4_page.visitor_id);
    assert_eq!(purchase.revenue_micros, 30_030_000);
    let upgraded = events.iter().find(|e| e.name == "Plan Upgraded").unwrap();
    assert_eq!(
        upgraded.visitor_id,
        keys.user_visitor_id(SITE_ID, "user-7"),
        "Segment userId"
    );
    let seg_page = by_path[&("pageview".into(), "/seg-page".into())];
    assert_eq!(
        seg_page.visitor_id,
        keys.client_visitor_id(SITE_ID, "anon-9"),
        "Segment anonymousId"
    );
    assert_ne!(
        seg_page.session_id, upgraded.session_id,
        "different visitors, different sessions"
    );

    // Stamps are archived with the raw hits, so reprocessing reproduces them.
    let batches = receiver.received.batches.lock().unwrap();
    for batch in batches.values() {
        for hit in &batch.raw_hits {
            let id = hit
                .identity
                .as_ref()
                .expect("every archived hit is stamped");
            assert_eq!(id.site_id, SITE_ID);
        }
    }
    assert!(
        batches
            .values()
            .flat_map(|b| &b.raw_hits)
            .any(|h| h.identity.as_ref().unwrap().source == i32::from(IdentitySource::ClientId))
    );
    drop(batches);

    assert_eq!(
        edge.metric("hourglass_edge_hits_total{protocol=\"native\"}"),
        2.0
    );
    assert_eq!(
        edge.metric("hourglass_edge_hits_total{protocol=\"segment\"}"),
        1.0
    );
    assert_eq!(
        edge.terminate(),
        Some(0),
        "SIGTERM drains and exits 0:\n{}",
        edge.log()
    );
    assert_eq!(
        receiver
            .received
            .resent
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

fn base64_user(user: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))
}

#[test]
fn bad_requests_get_their_status_and_a_counted_reason() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    let edge = Edge::start(&dir.path().join("edge"), &certs, receiver.addr, "");
    let url = &edge.url;
    // Ready (what a rolling deploy waits for) once the ingress listens.
    let ready = agent()
        .get(&format!("{}/readyz", edge.ops_url))
        .call()
        .unwrap();
    assert_eq!(ready.status(), 200);
    let event = |d: &str, u: &str| format!(r#"{{"n":"pageview","u":"{u}","d":"{d}"}}"#);

    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        (
            "malformed JSON",
            post(&format!("{url}/api/event"), "text/plain", "{\"n\":"),
            400,
            "malformed_body",
        ),
        (
            "wrong content type",
            post(
                &format!("{url}/api/event"),
                "application/x-www-form-urlencoded",
                "n=pageview",
            ),
            415,
            "unsupported_content_type",
        ),
        (
            "oversized body",
            post(
                &format!("{url}/api/event"),
                "text/plain",
                &"x".repeat(70_000),
            ),
            413,
            "body_too_large",
        ),
        (
            "unknown site",
            post(
                &format!("{url}/api/event"),
                "text/plain",
                &event("nosuch.org", "https://nosuch.org/"),
            ),
            400,
            "unknown_site",
        ),
        (
            "wrong hostname",
            post(
                &format!("{url}/api/event"),
                "text/plain",
                &event(DOMAIN, "https://evil.example.net/"),
            ),
            403,
            "hostname_not_allowed",
        ),
        (
            "bad GA4 secret",
            post(
                &format!("{url}/mp/collect?measurement_id={GA4_ID}&api_secret=wrong"),
                "application/json",
                r#"{"client_id":"1.2","events":[{"name":"page_view"}]}"#,
            ),
            403,
            "bad_api_secret",
        ),
        (
            "no write key",
            post(
                &format!("{url}/v1/track"),
                "application/json",
                r#"{"userId":"u","event":"x"}"#,
            ),
            401,
            "bad_write_key",
        ),
        (
            "missing field",
            post(
                &format!("{url}/api/event"),
                "text/plain",
                r#"{"u":"https://example.com/","d":"example.com"}"#,
            ),
            400,
            "missing_field",
        ),
    ];
    for (what, (status, body), want_status, reason) in &cases {
        assert_eq!(status, want_status, "{what}: {body}");
        let json: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: body is JSON: {body}"));
        assert_eq!(json["error"], *reason, "{what}: {body}");
        assert!(json.get("field").is_some(), "{what}: names a field: {body}");
        assert_eq!(
            edge.metric(&format!(
                "hourglass_edge_rejects_total{{reason=\"{reason}\"}}"
            )),
            1.0,
            "{what} counted"
        );
    }
    // GA4's debug endpoint explains instead of storing.
    let (status, body) = post(
        &format!("{url}/debug/mp/collect?measurement_id={GA4_ID}&api_secret={GA4_SECRET}"),
        "application/json",
        r#"{"client_id":"1.2","events":[{"name":"bad name!"}]}"#,
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("validationMessages") && body.contains("events[0].name"),
        "{body}"
    );
    // Nothing refused was shipped.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.raw_hits(), 0);
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    let edge = Edge::start(
        &dir.path().join("edge"),
        &certs,
        receiver.addr,
        "[rate_limit]\nper_ip_per_sec = 1\nper_ip_burst = 2\nper_site_per_sec = 1000\nper_site_burst = 1000",
    );
    let body = r#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#;
    let statuses: Vec<u16> = (0..3)
        .map(|_| post(&format!("{}/api/event", edge.url), "text/plain", body).0)
        .collect();
    assert_eq!(statuses, [202, 202, 429]);
    let r = agent()
        .post(&format!("{}/api/event", edge.url))
        .header("Content-Type", "text/plain")
        .send(body)
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        edge.metric("hourglass_edge_rejects_total{reason=\"rate_limited_ip\"}"),
        2.0
    );
    // Server-side protocols are limited per site, not per IP.
    let ga4 = r#"{"client_id":"1.2","events":[{"name":"page_view","params":{"page_location":"https://example.com/x"}}]}"#;
    for _ in 0..5 {
        let (status, body) = post(
            &format!(
                "{}/mp/collect?measurement_id={GA4_ID}&api_secret={GA4_SECRET}",
                edge.url
            ),
            "application/json",
            ga4,
        );
        assert_eq!(status, 202, "{body}");
    }
}

/// The reference plugins, as components, in a running edge: events come out
/// enriched (browser, OS, device, source, channel), bots dropped with a
/// reason, e-mail addresses gone; every batch names the plugin set.
#[test]
fn reference_plugins_enrich_and_filter_through_a_running_edge() {
    let components = hourglass_testkit::state_dir().join("plugins");
    let plugin = |name: &str, policy: &str, config: &str| {
        let path = components.join(format!("{name}.wasm"));
        assert!(
            path.exists(),
            "{} is missing: build the plugins first (`cargo xtask plugins`)",
            path.display()
        );
        format!(
            "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\non_failure = \"{policy}\"\nconfig = \"{config}\"\n",
            path.display()
        )
    };
    let chain = [
        "plugin_set = \"reference-v1\"\n".to_owned(),
        plugin("bot-filter", "reject-batch", ""),
        plugin("validate", "reject-batch", ""),
        plugin("pii-scrub", "reject-batch", ""),
        plugin("ua-parse", "skip-plugin", ""),
        plugin("channel", "skip-plugin", ""),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    let edge = Edge::start(&dir.path().join("edge"), &certs, receiver.addr, &chain);
    let send = |ua: &str, body: &str| {
        let r = agent()
            .post(&format!("{}/api/event", edge.url))
            .header("Content-Type", "text/plain")
            .header("User-Agent", ua)
            .send(body)
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    };
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    send(
        chrome,
        r#"{"n":"pageview","u":"https://example.com/from-search","d":"example.com","r":"https://www.google.com/"}"#,
    );
    send(
        iphone,
        r#"{"n":"Signup","u":"https://example.com/signup?email=jane%40example.org","d":"example.com","r":"https://mail.example.org/?to=jane@example.org","p":{"contact":"jane@example.org","plan":"pro"}}"#,
    );
    send(
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        r#"{"n":"pageview","u":"https://example.com/crawled","d":"example.com"}"#,
    );

    let started = Instant::now();
    while receiver.raw_hits() < 3 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let batches = receiver.received.batches.lock().unwrap();
    assert!(
        batches
            .values()
            .all(|b| b.header.as_ref().unwrap().plugin_set == "reference-v1")
    );
    let events: Vec<&Event> = batches.values().flat_map(|b| &b.events).collect();
    let rejects: Vec<_> = batches.values().flat_map(|b| &b.rejects).collect();
    assert_eq!(
        events.len(),
        2,
        "the bot is dropped: {events:#?}\n{rejects:#?}\n{}",
        edge.log()
    );
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0].plugin, "bot-filter", "{rejects:#?}");

    let search = events
        .iter()
        .find(|e| e.pathname == "/from-search")
        .unwrap();
    assert_eq!(
        (
            search.browser.as_str(),
            search.os.as_str(),
            search.device.as_str()
        ),
        ("Chrome", "Windows", "desktop")
    );
    assert_eq!(search.channel, "Organic Search");
    assert_eq!(search.referrer_source, "Google");
    let signup = events.iter().find(|e| e.name == "Signup").unwrap();
    assert_eq!(
        (
            signup.browser.as_str(),
            signup.os.as_str(),
            signup.device.as_str()
        ),
        ("Safari", "iOS", "mobile")
    );
    let text = format!("{signup:?}");
    assert!(
        !text.contains("jane@example.org") && !text.contains("jane%40example.org"),
        "e-mail left in {signup:#?}"
    );
    assert!(
        signup
            .props
            .iter()
            .any(|p| p.key == "plan" && p.value == "pro"),
        "{signup:#?}"
    );
}

/// `curl` over HTTPS to the edge's TLS listener; returns (status, HTTP
/// version) or curl's error.
fn curl_https(
    port: u16,
    ca: &std::path::Path,
    http: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", http])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args([
            "-H",
            "Content-Type: text/plain",
            "-H",
            &format!("User-Agent: {UA}"),
        ])
        .args(["--data-binary", body, "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{http_version}"])
        .arg(format!("https://localhost:{port}/api/event"))
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{stdout} {}", String::from_utf8_lossy(&out.stderr)));
    }
    let (code, version) = stdout.split_once(' ').ok_or(stdout.clone())?;
    Ok((
        code.parse().map_err(|_| stdout.clone())?,
        version.to_owned(),
    ))
}

#[test]
fn beacons_arrive_over_https_with_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    // The ingress certificate comes from a CA of its own, as a public
    // edge's would (browsers know nothing of the project CA).
    let web = hourglass_pki::CertDir::new(dir.path().join("web-pki"));
    web.init(std::time::SystemTime::now()).unwrap();
    web.issue_server(&["localhost"], std::time::SystemTime::now())
        .unwrap();
    let port = hourglass_testkit::free_port().unwrap();
    let tls = format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        web.server_cert_path().display(),
        web.server_key_path().display()
    );
    let mut edge = Edge::start(&dir.path().join("edge"), &certs, receiver.addr, &tls);

    let beacon = |path: &str| {
        format!(r#"{{"n":"pageview","u":"https://example.com{path}","d":"example.com"}}"#)
    };
    let ca = web.ca_cert_path();
    assert_eq!(
        curl_https(port, &ca, "--http2", &beacon("/over-h2")),
        Ok((202, "2".to_owned()))
    );
    assert_eq!(
        curl_https(port, &ca, "--http1.1", &beacon("/over-h1")),
        Ok((202, "1.1".to_owned()))
    );
    // Plain HTTP still works on `listen`.
    assert_eq!(
        post(
            &format!("{}/api/event", edge.url),
            "text/plain",
            &beacon("/plain")
        )
        .0,
        202
    );
    let events = wait_for_events(&receiver, 3);
    let mut paths: Vec<&str> = events.iter().map(|e| e.pathname.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/over-h1", "/over-h2", "/plain"]);

    // A client that does not trust the certificate, and plain HTTP sent to
    // the TLS port: both fail the handshake, are counted, and the edge
    // keeps serving.
    let other = hourglass_pki::CertDir::new(dir.path().join("other-ca"));
    other.init(std::time::SystemTime::now()).unwrap();
    let untrusted = curl_https(port, &other.ca_cert_path(), "--http2", &beacon("/nope"));
    assert!(untrusted.is_err(), "{untrusted:?}");
    let plain = agent()
        .post(format!("http://127.0.0.1:{port}/api/event"))
        .header("Content-Type", "text/plain")
        .send(beacon("/plain-to-tls").as_str());
    assert!(plain.is_err(), "plain HTTP to the TLS port: {plain:?}");
    let started = Instant::now();
    while edge.metric("hourglass_edge_tls_handshake_failures_total") < 2.0
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        edge.metric("hourglass_edge_tls_handshake_failures_total"),
        2.0
    );
    assert_eq!(
        curl_https(port, &ca, "--http2", &beacon("/after")),
        Ok((202, "2".to_owned()))
    );
    assert_eq!(edge.terminate(), Some(0));
    let events = wait_for_events(&receiver, 4);
    assert!(events.iter().any(|e| e.pathname == "/after"));
    assert!(
        !events
            .iter()
            .any(|e| e.pathname.starts_with("/nope") || e.pathname == "/plain-to-tls")
    );
}

/// Every run-time hostile mode in one running edge, each triggered by its
/// own event name: the edge answers 202 throughout, keeps shipping, the
/// good plugin after them still enriches, and /metrics counts each failure
/// by plugin and kind.
#[test]
fn hostile_plugins_are_contained_in_a_running_edge() {
    let modes = [
        ("loop", "skip-plugin", "out_of_fuel"),
        ("grow", "skip-plugin", "memory_cap"),
        ("recurse", "skip-plugin", "stack_overflow"),
        ("panic", "reject-batch", "trap"),
        ("huge", "skip-plugin", "oversized_output"),
    ];
    let mut chain = "plugin_set = \"hostile-v1\"\n".to_owned();
    for (mode, policy, _) in modes {
        chain += &plugin_toml(
            &format!("hostile-{mode}"),
            "misbehave",
            policy,
            &format!("mode = {mode}\\ntrigger = {mode}"),
            None,
        );
    }
    chain += &plugin_toml("ua-parse", "ua-parse", "skip-plugin", "", None);
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let receiver = Receiver::start(&server_certs(&certs), "127.0.0.1:0".parse().unwrap());
    let edge = Edge::start(&dir.path().join("edge"), &certs, receiver.addr, &chain);
    let send = |name: &str, path: &str| {
        let (status, body) = post(
            &format!("{}/api/event", edge.url),
            "text/plain",
            &format!(r#"{{"n":"{name}","u":"https://{DOMAIN}{path}","d":"{DOMAIN}"}}"#),
        );
        assert_eq!(status, 202, "{body}\n{}", edge.log());
    };
    let failures = |mode: &str, kind: &str| {
        edge.metric(&format!(
            "hourglass_edge_plugin_failures_total{{kind=\"{kind}\",plugin=\"hostile-{mode}\"}}"
        ))
    };
    for (i, (mode, _, kind)) in modes.iter().enumerate() {
        send(mode, &format!("/trigger-{i}"));
        // Its own batch: wait until the failure is counted.
        let started = Instant::now();
        while failures(mode, kind) < 1.0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {kind} counted for {mode}:\n{}\n{}",
                edge.metrics_text(),
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        send("pageview", &format!("/after-{mode}"));
    }
    let hits = modes.len() * 2;
    let started = Instant::now();
    while receiver.raw_hits() < hits && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(receiver.raw_hits(), hits, "every hit is shipped");
    let events = receiver.events();
    for (mode, _, _) in modes {
        let after = events
            .iter()
            .find(|e| e.pathname == format!("/after-{mode}"))
            .unwrap_or_else(|| panic!("/after-{mode} arrived: {events:#?}"));
        assert_eq!(after.browser, "Chrome", "ua-parse ran after {mode}");
    }
    // Skipped plugins let their trigger through; the rejecting one did not.
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    for mode in ["loop", "grow", "recurse", "huge"] {
        assert!(names.contains(&mode), "{mode} went on: {names:?}");
        let e = events.iter().find(|e| e.name == mode).unwrap();
        assert_eq!(e.browser, "Chrome", "nothing of {mode}'s output kept");
    }
    assert!(!names.contains(&"panic"), "{names:?}");
    assert!(
        edge.metric("hourglass_edge_plugin_events_dropped_total{plugin=\"hostile-panic\",reason=\"plugin_failed\"}")
            >= 1.0
    );
    for (mode, _, kind) in modes {
        assert_eq!(failures(mode, kind), 1.0, "{mode}");
        // Made again after its failure.
        assert!(
            edge.metric(&format!(
                "hourglass_edge_plugin_instantiations_total{{plugin=\"hostile-{mode}\"}}"
            )) >= 2.0,
            "{mode}"
        );
    }
    let calls = edge.metric("hourglass_edge_plugin_calls_total{plugin=\"ua-parse\"}");
    assert!(calls >= 1.0, "ua-parse calls: {calls}");
    assert!(edge.metric("hourglass_edge_plugin_fuel_used_total{plugin=\"ua-parse\"}") > 0.0);
    assert!(edge.metric("hourglass_edge_plugin_time_nanoseconds_total{plugin=\"ua-parse\"}") > 0.0);
    assert!(edge.metric("hourglass_edge_batches_shipped_total") >= 1.0);
    assert_eq!(
        agent()
            .get(&format!("{}/healthz", edge.url))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

/// Components refused at load stop the edge before it serves:
/// `check-config` and `serve` both exit non-zero naming the plugin and the
/// load step.
#[test]
fn an_edge_refuses_to_start_with_a_component_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let _ = server_certs(&certs);
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("random.wasm"), random).unwrap();
    // The smallest core module: valid WebAssembly, not a component.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let wrong_world = hourglass_testkit::state_dir().join("plugins/wrong-world.wasm");
    let cases = [
        (dir.path().join("random.wasm"), "decode", "not WebAssembly"),
        (
            dir.path().join("core.wasm"),
            "decode",
            "core WebAssembly module",
        ),
        (wrong_world, "world", "does not export"),
    ];
    for (i, (path, step, says)) in cases.iter().enumerate() {
        let chain = format!(
            "plugin_set = \"v1\"\n[[plugins]]\nname = \"suspect\"\npath = \"{}\"\n",
            path.display()
        );
        let (config, _, _) = hourglass_e2e::edge::prepare(
            &dir.path().join(format!("edge-{i}")),
            &certs,
            "127.0.0.1:9".parse().unwrap(),
            &chain,
        );
        for cmd in ["check-config", "serve"] {
            let out = hourglass_e2e::run(
                hourglass_e2e::binary("edge-agent")
                    .arg(cmd)
                    .arg("--config")
                    .arg(&config),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {}: {stderr}", path.display());
            assert!(
                stderr.contains(&format!("plugin `suspect` refused at step `{step}`"))
                    && stderr.contains(says),
                "{cmd} {}: {stderr}",
                path.display()
            );
        }
    }
}
