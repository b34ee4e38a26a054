//! The tracker and the dashboard in a real browser (Debian's headless
//! Chromium, driven by `playwright-core` from npm through
//! `tests/browser/drive.cjs`; `cargo xtask test` installs both).
//!
//! A page on `http://example.com:<port>/` (Chromium maps the name to
//! 127.0.0.1) loads `/js/script.js` from a real edge, which ships to a real
//! central that loads ClickHouse: the pageview, a custom event with a prop
//! and an SPA navigation arrive as three rows of one visitor and one
//! session. Then the dashboard, logged in with `#key=`, shows those
//! numbers; its screenshot is saved to `target/hourglass/artifacts/`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hourglass_e2e::central::{Central, ca_with_server_cert, count, merchant_with_site, migrate};
use hourglass_e2e::edge::{DOMAIN, Edge, SITE_ID};
use serde_json::{Value, json};

fn node_modules() -> PathBuf {
    std::env::var_os("HOURGLASS_NODE_MODULES").map_or_else(
        || hourglass_testkit::node_prefix().join("node_modules"),
        PathBuf::from,
    )
}

/// Runs the driver; its JSON line.
fn drive(args: &[&str]) -> Value {
    let modules = node_modules();
    assert!(
        modules.join("playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium or playwright-core is missing: `cargo xtask test` installs them \
         (apt-get install chromium; npm install playwright-core into {})",
        modules.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/drive.cjs");
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .env("HOURGLASS_NODE_MODULES", &modules)
        .env("HOURGLASS_HOST_RULES", format!("MAP {DOMAIN} 127.0.0.1"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drive.cjs {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("drive.cjs {args:?} printed no JSON ({e}): {stdout}"))
}

/// Serves `html` for every GET on 127.0.0.1 until the flag is set.
fn serve_page(html: String, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a page port");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    // The request head; the page answers whatever was asked.
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let mut stream = reader.into_inner();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                        html.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    port
}

#[test]
fn the_tracker_in_chromium_reaches_the_dashboard() {
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let tmp = tempfile::tempdir().expect("a temp dir");
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start_with_api(&tmp.path().join("central"), &certs, &db, true);
    let api_url = central.api_url.clone().expect("the API is on");
    let key = merchant_with_site(&db, SITE_ID, DOMAIN);
    let edge = Edge::start(&tmp.path().join("edge"), &certs, central.quic, "");

    let stop = Arc::new(AtomicBool::new(false));
    let html = format!(
        r#"<!doctype html><html><head><title>Shop</title>
<script>window.hourglass = window.hourglass || function () {{ (window.hourglass.q = window.hourglass.q || []).push(arguments) }};</script>
<script defer data-domain="{DOMAIN}" src="{edge}/js/script.js"></script>
</head><body><h1>Shop</h1>
<button id="signup" onclick="hourglass('Signup', {{props: {{plan: 'pro'}}}})">Sign up</button>
<button id="next" onclick="history.pushState({{}}, '', '/pricing')">Pricing</button>
</body></html>"#,
        edge = edge.url
    );
    let port = serve_page(html, stop.clone());
    let tracked = drive(&["track", &format!("http://{DOMAIN}:{port}/")]);
    eprintln!("browser: {tracked}");
    stop.store(true, Ordering::Relaxed);

    let started = Instant::now();
    while count(&db, "SELECT count() FROM events") < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the browser's hits did not reach ClickHouse: {tracked}\nedge log:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rows = db
        .query(
            "SELECT name, pathname, props.value[indexOf(props.key, 'plan')] FROM events \
             ORDER BY ts, name = 'pageview' DESC, pathname FORMAT TSV",
        )
        .expect("rows");
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for expected in ["pageview\t/\t", "Signup\t/\tpro", "pageview\t/pricing\t"] {
        assert!(rows.contains(&expected), "{expected:?} not in {rows:?}");
    }
    assert_eq!(
        count(
            &db,
            "SELECT uniqExact(visitor_id) + uniqExact(session_id) * 10 FROM events"
        ),
        11,
        "one visitor, one session"
    );

    // Goals and a funnel over what the browser did (/, Signup, /pricing).
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let post = |path: &str, body: Value| {
        let status = agent
            .post(&format!("{api_url}{path}"))
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("the API answers")
            .status()
            .as_u16();
        assert_eq!(status, 201, "{path} {body}");
    };
    for goal in [
        json!({"site_id": DOMAIN, "name": "Home", "page_path": "/"}),
        json!({"site_id": DOMAIN, "name": "Signup", "event_name": "Signup"}),
        json!({"site_id": DOMAIN, "name": "Pricing", "page_path": "/pricing"}),
    ] {
        post("/api/v1/goals", goal);
    }
    post(
        "/api/v1/funnels",
        json!({"site_id": DOMAIN, "name": "Signup flow", "steps": ["Home", "Signup", "Pricing"]}),
    );

    let png = hourglass_testkit::state_dir().join("artifacts/dashboard.png");
    std::fs::create_dir_all(png.parent().expect("a parent")).expect("artifacts dir");
    let _ = std::fs::remove_file(&png);
    let shown = drive(&[
        "dashboard",
        &format!("{api_url}/dashboard?site={DOMAIN}#key={key}"),
        png.to_str().expect("a UTF-8 path"),
    ]);
    eprintln!("dashboard: {shown}; screenshot {}", png.display());
    assert_eq!(shown["error"], "", "{shown}");
    assert_eq!(shown["stats"]["Visitors"], "1", "{shown}");
    assert_eq!(shown["stats"]["Pageviews"], "2", "{shown}");
    assert_eq!(shown["stats"]["Last 30 min"], "1", "{shown}");
    let goals = shown["cards"]["Goals"].as_str().unwrap_or_default();
    for line in ["Signup\t1\t1\t100%", "Pricing\t1\t1\t100%"] {
        assert!(
            goals.contains(line),
            "{line:?} not in the Goals card: {goals:?}"
        );
    }
    let funnels = shown["cards"]["Funnels"].as_str().unwrap_or_default();
    assert!(
        funnels.contains("Signup flow") && funnels.contains("3. Pricing\t1\t100%"),
        "{funnels:?}"
    );
    let size = std::fs::metadata(&png).map_or(0, |m| m.len());
    assert!(size > 10_000, "screenshot of {size} bytes");
    drop(edge);
    drop(central);
}
