//! The reference plugins end to end: hits sent to a running edge that runs
//! all six (bot-filter twice: one drops, one marks), shipped over QUIC to a
//! running central, loaded into a private ClickHouse; the `events` rows
//! carry browser, OS, device, country, source and channel from the
//! plugins, the dropped bot is not there, the marked one is, and no e-mail
//! address is left anywhere.

use std::time::{Duration, Instant};

use hourglass_e2e::central::{Central, ca_with_server_cert, count, migrate};
use hourglass_e2e::edge::{DOMAIN, Edge, plugin_toml};
use hourglass_e2e::warehouse::rows;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const SCRIPT: &str = "python-requests/2.31.0";

#[test]
fn reference_plugins_fill_the_warehouse_columns() {
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start(&tmp.path().join("central"), &certs, Some(&db), "");

    // Search engines' crawlers are dropped; other automated clients are
    // kept and marked.
    let crawlers = tmp.path().join("crawlers.txt");
    std::fs::write(&crawlers, "# crawlers we drop\ngooglebot\nbingbot\n").unwrap();
    let geo_db =
        hourglass_testkit::workspace_root().join("plugins/geo/testdata/geo-city-fixture.mmdb");
    let chain = [
        "plugin_set = \"reference-v1\"\ntrusted_proxies = [\"127.0.0.1\"]\n".to_owned(),
        plugin_toml(
            "drop-crawlers",
            "bot-filter",
            "reject-batch",
            "",
            Some(&crawlers),
        ),
        plugin_toml("validate", "validate", "reject-batch", "", None),
        plugin_toml("pii-scrub", "pii-scrub", "reject-batch", "", None),
        plugin_toml("ua-parse", "ua-parse", "skip-plugin", "", None),
        plugin_toml("geo", "geo", "skip-plugin", "", Some(&geo_db)),
        plugin_toml("channel", "channel", "skip-plugin", "", None),
        plugin_toml(
            "mark-bots",
            "bot-filter",
            "skip-plugin",
            "action = flag",
            None,
        ),
    ]
    .concat();
    let edge = Edge::start(&tmp.path().join("edge"), &certs, central.quic, &chain);

    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let send = |user_agent: &str, client_ip: &str, body: String| {
        let r = agent
            .post(&format!("{}/api/event", edge.url))
            .header("Content-Type", "text/plain")
            .header("User-Agent", user_agent)
            .header("X-Forwarded-For", client_ip)
            .send(body)
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", edge.log());
    };
    send(
        CHROME_WINDOWS,
        "192.0.2.10",
        format!(
            r#"{{"n":"pageview","u":"https://{DOMAIN}/from-search","d":"{DOMAIN}","r":"https://www.google.com/"}}"#
        ),
    );
    send(
        SAFARI_IPHONE,
        "2001:db8::5",
        format!(
            r#"{{"n":"Signup","u":"https://{DOMAIN}/signup?email=jane%40example.org&utm_source=newsletter&utm_medium=email","d":"{DOMAIN}","r":"https://mail.example.org/?to=jane@example.org","p":{{"contact":"jane@example.org","plan":"pro"}}}}"#
        ),
    );
    send(
        GOOGLEBOT,
        "198.51.100.3",
        format!(r#"{{"n":"pageview","u":"https://{DOMAIN}/crawled","d":"{DOMAIN}"}}"#),
    );
    send(
        SCRIPT,
        "198.51.100.4",
        format!(r#"{{"n":"pageview","u":"https://{DOMAIN}/scripted","d":"{DOMAIN}"}}"#),
    );

    let started = Instant::now();
    while count(&db, "SELECT count() FROM events") < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not loaded; edge:\n{}\ncentral:\n{}",
            edge.log(),
            central.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing else comes: the crawler's hit was processed with the others.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&db, "SELECT count() FROM events"), 3);

    let got = rows(
        &db,
        "SELECT pathname, browser, os, device, country, region, city, referrer_source, channel, \
         utm_source, plugin_set FROM events",
    );
    assert_eq!(
        got,
        [
            "/from-search\tChrome\tWindows\tdesktop\tUS\tCalifornia\tSan Francisco\tGoogle\tOrganic Search\t\treference-v1",
            "/scripted\t\t\tbot\tDE\tBerlin\tBerlin\t\tDirect\t\treference-v1",
            "/signup\tSafari\tiOS\tmobile\tFR\tÎle-de-France\tParis\tnewsletter\tEmail\tnewsletter\treference-v1",
        ],
        "edge:\n{}",
        edge.log()
    );
    // The crawler never reached the warehouse; its drop is counted.
    assert_eq!(
        count(
            &db,
            "SELECT count() FROM events WHERE pathname = '/crawled'"
        ),
        0
    );
    assert_eq!(
        edge.metric(
            "hourglass_edge_plugin_events_dropped_total{plugin=\"drop-crawlers\",reason=\"bot\"}"
        ),
        1.0
    );
    // No e-mail address left in any text column or prop.
    let leaks = rows(
        &db,
        "SELECT pathname, referrer, arrayStringConcat(props.value, ' ') FROM events \
         WHERE position(concat(pathname, referrer, arrayStringConcat(props.key, ' '), \
         arrayStringConcat(props.value, ' ')), 'jane') > 0",
    );
    assert!(leaks.is_empty(), "{leaks:?}");
    assert_eq!(
        rows(
            &db,
            "SELECT arrayStringConcat(props.value, ',') FROM events WHERE name = 'Signup'"
        ),
        ["[email],pro"],
        "the address is replaced, the other prop stays"
    );
}
