//! The merchant API end to end: `central-ingest admin` makes a merchant,
//! sites and keys in a real ClickHouse; a real `central-ingest serve` with
//! `[api]` on answers `POST /api/v1/query` from known events, hides other
//! merchants' sites behind the same 404 as unknown ones, names the path of
//! an invalid query, rate-limits per key, and serves the dashboard and the
//! OpenAPI document.

use std::time::{Duration, Instant};

use hourglass_e2e::central::{Central, admin, admin_raw, ca_with_server_cert, field, text};
use hourglass_model::{BatchId, Event};
use hourglass_warehouse::{Warehouse, WarehouseConfig};
use serde_json::{Value, json};

/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200;

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

fn post(api_url: &str, key: Option<&str>, body: &str) -> Answer {
    let mut req = agent()
        .post(&format!("{api_url}/api/v1/query"))
        .header("Content-Type", "application/json");
    if let Some(key) = key {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    let mut r = req.send(body).unwrap();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.body_mut().read_to_string().unwrap();
    Answer {
        status: r.status().as_u16(),
        retry_after,
        body: serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    }
}

/// Counts as plain numbers, per row: (dimensions, metrics).
fn rows(body: &Value) -> Vec<(Vec<String>, Vec<u64>)> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"))
        .iter()
        .map(|r| {
            let dims = r["dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect();
            let metrics = r["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_u64().unwrap())
                .collect();
            (dims, metrics)
        })
        .collect()
}

fn event(site: &str, visitor: u64, session: u64, offset_s: i64, page: &str) -> Event {
    Event {
        ts_ms: (MARCH_1 + offset_s) * 1000,
        received_at_ms: (MARCH_1 + offset_s) * 1000,
        site_id: site.into(),
        name: "pageview".into(),
        visitor_id: visitor,
        session_id: session,
        hostname: "shop.example".into(),
        pathname: page.into(),
        interactive: true,
        ..Default::default()
    }
}

/// A fresh, migrated database, a runtime and a warehouse handle on it.
fn migrated_database() -> (
    hourglass_testkit::TestDb,
    tokio::runtime::Runtime,
    Warehouse,
) {
    let db = hourglass_testkit::fresh_database();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wh = Warehouse::new(&WarehouseConfig {
        url: db.url.clone(),
        database: db.name.clone(),
        ..Default::default()
    })
    .unwrap();
    rt.block_on(warehouse_schema::migrate(&wh)).unwrap();
    (db, rt, wh)
}

#[test]
fn admin_cli_keys_query_limits_and_dashboard() {
    let (db, rt, wh) = migrated_database();

    // Admin CLI: two merchants, a site each, keys.
    let m1 = field(&admin(&db, &["merchant", "add", "Shop One"]), "merchant_id");
    let m2 = field(&admin(&db, &["merchant", "add", "Blog Two"]), "merchant_id");
    assert_ne!(m1, m2);
    let site_a = admin(
        &db,
        &[
            "site",
            "add",
            "--merchant",
            &m1,
            "--domain",
            "shop.example",
            "--timezone",
            "UTC",
        ],
    );
    let site_a_id = field(&site_a, "site_id");
    assert_eq!(field(&site_a, "domain"), "shop.example");
    let site_b_id = field(
        &admin(
            &db,
            &[
                "site",
                "add",
                "--merchant",
                &m2,
                "--domain",
                "blog.example",
                "--timezone",
                "Europe/Berlin",
            ],
        ),
        "site_id",
    );
    // Refusals: unknown merchant, bad zone, a taken domain.
    for args in [
        &[
            "site",
            "add",
            "--merchant",
            "m_nobody",
            "--domain",
            "x.example",
        ][..],
        &[
            "site",
            "add",
            "--merchant",
            &m1,
            "--domain",
            "y.example",
            "--timezone",
            "Mars/Base",
        ],
        &["site", "add", "--merchant", &m2, "--domain", "shop.example"],
        &["key", "create", "--merchant", &m1, "--site", &site_b_id],
    ] {
        let out = admin_raw(&db, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
    }
    let created = admin(&db, &["key", "create", "--merchant", &m1]);
    let key_a = field(&created, "key");
    assert!(key_a.starts_with("hgk_"), "{key_a}");
    assert!(key_a.starts_with(&field(&created, "key_prefix")));
    // Only the hash is stored.
    let stored = db
        .query("SELECT key_hash, key_prefix FROM api_keys FORMAT TSV")
        .unwrap();
    assert!(!stored.contains(&key_a), "{stored}");
    assert!(stored.contains(&field(&created, "key_hash")), "{stored}");
    let key_b = field(&admin(&db, &["key", "create", "--merchant", &m2]), "key");
    let flood_key = field(
        &admin(
            &db,
            &[
                "key",
                "create",
                "--merchant",
                &m1,
                "--site",
                &site_a_id,
                "--rate-limit",
                "3",
            ],
        ),
        "key",
    );

    // Known events: on shop.example 3 visitors, 4 visits, 5 pageviews.
    let events = vec![
        event(&site_a_id, 1, 11, 10 * 3600, "/"),
        event(&site_a_id, 1, 11, 10 * 3600 + 60, "/pricing"),
        event(&site_a_id, 2, 21, 11 * 3600, "/"),
        event(&site_a_id, 1, 12, 86_400 + 9 * 3600, "/"),
        event(&site_a_id, 3, 31, 86_400 + 12 * 3600, "/docs"),
        event(&site_b_id, 9, 91, 10 * 3600, "/"),
    ];
    let batch = BatchId {
        edge_id: "edge-api".into(),
        seq: 1,
    };
    rt.block_on(wh.insert_events(&batch, "ps", &events))
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start_with_api(tmp.path(), &certs, &db, false);
    let url = central.api_url.as_deref().expect("the API is on");
    let totals = |site: &str| {
        json!({
            "site_id": site,
            "metrics": ["visitors", "visits", "pageviews"],
            "date_range": ["2026-03-01", "2026-03-02"],
        })
        .to_string()
    };

    // The key reads its site: known counts, by page too.
    let a = post(url, Some(&key_a), &totals("shop.example"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(rows(&a.body), vec![(vec![], vec![3, 4, 5])]);
    assert_eq!(a.body["meta"]["sampling"], "none");
    assert!(a.body["meta"]["source"].is_string(), "{}", a.body);
    assert_eq!(a.body["query"]["site_id"], "shop.example");
    let pages = post(
        url,
        Some(&key_a),
        &json!({
            "site_id": "shop.example",
            "metrics": ["pageviews"],
            "date_range": ["2026-03-01", "2026-03-02"],
            "dimensions": ["event:page"],
            "order_by": [["pageviews", "desc"], ["event:page", "asc"]],
        })
        .to_string(),
    );
    assert_eq!(pages.status, 200, "{}", pages.body);
    assert_eq!(
        rows(&pages.body),
        vec![
            (vec!["/".to_owned()], vec![3]),
            (vec!["/docs".to_owned()], vec![1]),
            (vec!["/pricing".to_owned()], vec![1]),
        ]
    );
    // The queries the dashboard makes: a time series, a top-10 table
    // with a clicked filter, the session totals.
    let range = json!(["2026-03-01", "2026-03-02"]);
    for (q, want_rows) in [
        (
            json!({"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"],
                   "order_by": [["time:day", "asc"]]}),
            2,
        ),
        (
            json!({"metrics": ["visitors"], "dimensions": ["visit:country"],
                   "order_by": [["visitors", "desc"]], "pagination": {"limit": 10},
                   "filters": [["is", "event:page", ["/"]]]}),
            1,
        ),
        (json!({"metrics": ["bounce_rate", "visit_duration"]}), 1),
        // Realtime: the last 30 minutes as a datetime range.
        (
            json!({"metrics": ["visitors"],
                   "date_range": ["2026-03-01T09:45:00Z", "2026-03-01T10:15:00Z"]}),
            1,
        ),
    ] {
        let mut q = q;
        q["site_id"] = json!("shop.example");
        if q.get("date_range").is_none() {
            q["date_range"] = range.clone();
        }
        let r = post(url, Some(&key_a), &q.to_string());
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert_eq!(
            r.body["results"].as_array().unwrap().len(),
            want_rows,
            "{q}: {}",
            r.body
        );
    }
    // The other merchant's key sees only its own site.
    let b = post(url, Some(&key_b), &totals("blog.example"));
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(rows(&b.body), vec![(vec![], vec![1, 1, 1])]);

    // Not yours and does not exist: the same 404.
    let not_yours = post(url, Some(&key_a), &totals("blog.example"));
    let unknown = post(url, Some(&key_a), &totals("nowhere.example"));
    assert_eq!(not_yours.status, 404);
    assert_eq!(unknown.status, 404);
    assert_eq!(not_yours.body, json!({"error": "site not found"}));
    assert_eq!(not_yours.body, unknown.body);

    // Invalid queries: 400 naming the path.
    let bad = post(
        url,
        Some(&key_a),
        &json!({
            "site_id": "shop.example",
            "metrics": ["visitors", "bogus"],
            "date_range": "7d",
        })
        .to_string(),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["path"], "metrics[1]", "{}", bad.body);
    assert!(bad.body["error"].is_string());
    let no_metrics = post(
        url,
        Some(&key_a),
        r#"{"site_id": "shop.example", "date_range": "7d"}"#,
    );
    assert_eq!(no_metrics.status, 400, "{}", no_metrics.body);
    assert_eq!(no_metrics.body["path"], "metrics", "{}", no_metrics.body);
    let not_json = post(url, Some(&key_a), "{nope");
    assert_eq!(not_json.status, 400, "{}", not_json.body);

    // No key, or an unknown one: 401.
    assert_eq!(post(url, None, &totals("shop.example")).status, 401);
    assert_eq!(
        post(url, Some("hgk_made_up"), &totals("shop.example")).status,
        401
    );

    // A flood: 3 per minute, then 429 with Retry-After.
    let answers: Vec<Answer> = (0..6)
        .map(|_| post(url, Some(&flood_key), &totals("shop.example")))
        .collect();
    assert_eq!(answers[0].status, 200, "{}", answers[0].body);
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("a flood is limited");
    let wait: u64 = limited
        .retry_after
        .as_deref()
        .expect("429 has Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(limited.body, json!({"error": "rate limit exceeded"}));
    // Other keys are not affected.
    assert_eq!(post(url, Some(&key_a), &totals("shop.example")).status, 200);

    // Revoked: 401 once the cache entry (1 s here) expires.
    let revoked = admin(&db, &["key", "revoke", &field(&created, "key_prefix")]);
    assert_eq!(field(&revoked, "key_hash"), field(&created, "key_hash"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(post(url, Some(&key_a), &totals("shop.example")).status, 401);
    let again = admin_raw(&db, &["key", "revoke", &field(&created, "key_prefix")]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    // The dashboard and the OpenAPI document.
    let mut dash = agent().get(&format!("{url}/dashboard")).call().unwrap();
    assert_eq!(dash.status(), 200);
    assert!(
        dash.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = dash.body_mut().read_to_string().unwrap();
    assert!(html.contains("/api/v1/query"), "{html}");
    let doc: Value = serde_json::from_str(
        &agent()
            .get(&format!("{url}/api/v1/openapi.json"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .expect("the OpenAPI document is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/query"]["post"].is_object());

    let metrics = ureq::get(&format!("{}/metrics", central.ops_url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for status in ["200", "400", "401", "404", "429"] {
        let sample = format!("hourglass_central_api_requests_total{{status=\"{status}\"}}");
        assert!(metrics.contains(&sample), "{sample} missing:\n{metrics}");
    }
}

#[test]
fn realtime_counts_the_last_30_minutes_for_the_keys_sites_only() {
    let (db, rt, wh) = migrated_database();
    let key = hourglass_e2e::central::merchant_with_site(&db, "rt-site", "shop.example");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // (visitor, seconds ago, page, name): visitor 3 left 45 minutes ago.
    let events: Vec<Event> = [
        (1, 60, "/a", "pageview"),
        (2, 120, "/a", "pageview"),
        (2, 30, "/b", "pageview"),
        (3, 45 * 60, "/old", "pageview"),
        (4, 10, "/b", "signup"),
    ]
    .into_iter()
    .map(|(visitor, ago, page, name)| Event {
        name: name.into(),
        ..event("rt-site", visitor, visitor, now_s - ago - MARCH_1, page)
    })
    .collect();
    rt.block_on(wh.insert_event_batches(&[(
        BatchId {
            edge_id: "edge-rt".into(),
            seq: 1,
        },
        "none".into(),
        events,
    )]))
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start_with_api(tmp.path(), &certs, &db, false);
    let url = central.api_url.as_deref().expect("the API is on");
    let get = |site: Option<&str>, key: Option<&str>| {
        let mut req = agent().get(&match site {
            Some(site) => format!("{url}/api/v1/realtime?site_id={site}"),
            None => format!("{url}/api/v1/realtime"),
        });
        if let Some(key) = key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut r = req.call().unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str::<Value>(&text).unwrap())
    };
    let (status, body) = get(Some("shop.example"), Some(&key));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "site_id": "shop.example",
            "window_minutes": 30,
            "visitors": 3,
            "pageviews": 3,
            "top_pages": [{"page": "/a", "visitors": 2}, {"page": "/b", "visitors": 1}],
        })
    );
    assert_eq!(get(Some("other.example"), Some(&key)).0, 404);
    assert_eq!(get(None, Some(&key)).0, 400);
    assert_eq!(get(Some("shop.example"), None).0, 401);
}

#[test]
fn a_cached_answer_is_served_stale_while_one_query_refreshes_it() {
    let (db, rt, wh) = migrated_database();
    let key = hourglass_e2e::central::merchant_with_site(&db, "c-site", "cache.example");
    let insert = |seq: u64, visitors: std::ops::Range<u64>| {
        let events: Vec<Event> = visitors
            .map(|v| event("c-site", v, v, 3_600 + v as i64, "/"))
            .collect();
        rt.block_on(wh.insert_event_batches(&[(
            BatchId {
                edge_id: "edge-cache".into(),
                seq,
            },
            "none".into(),
            events,
        )]))
        .unwrap();
    };
    insert(1, 0..3);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    // Long enough that a loaded machine does not reach it between the
    // first two calls, nor twice it during the refresh.
    let ttl = Duration::from_secs(5);
    let central = Central::start_with_api_toml(
        tmp.path(),
        &certs,
        &db,
        false,
        &format!("result_cache_secs = {}\n", ttl.as_secs()),
    );
    let url = central.api_url.as_deref().expect("the API is on");
    let query = r#"{"site_id":"cache.example","metrics":["pageviews"],"date_range":["2026-03-01","2026-03-01"]}"#;
    let pageviews = || {
        let answer = post(url, Some(&key), query);
        assert_eq!(answer.status, 200, "{}", answer.body);
        rows(&answer.body)[0].1[0]
    };
    let outcomes = || {
        let text = ureq::get(&format!("{}/metrics", central.ops_url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        ["hit", "stale", "miss"].map(|outcome| {
            let prefix =
                format!("hourglass_central_api_result_cache_total{{outcome=\"{outcome}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0, |v| v.trim().parse::<u64>().unwrap())
        })
    };

    // Computed once, then reused although the warehouse has more now.
    let asked = Instant::now();
    assert_eq!(pageviews(), 3);
    insert(2, 3..5);
    assert_eq!(pageviews(), 3);
    assert!(
        asked.elapsed() < ttl,
        "the machine took longer than the TTL between two calls"
    );
    assert_eq!(outcomes(), [1, 0, 1]);
    // Past the TTL: the old answer at once, and one refresh behind it; the
    // new answer follows within seconds.
    std::thread::sleep(ttl.saturating_sub(asked.elapsed()) + Duration::from_millis(100));
    assert_eq!(pageviews(), 3, "the stale answer");
    let started = Instant::now();
    while pageviews() != 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refresh never landed: {:?}",
            outcomes()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let [hits, stale, misses] = outcomes();
    assert_eq!(misses, 1, "one query computed by a caller");
    assert!(stale >= 1, "{stale}");
    assert!(hits >= 2, "{hits}");
}

/// Sends `body` (JSON) with `method` to `path` with `key`: (status, JSON).
fn call(url: &str, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let a = agent();
    let target = format!("{url}{path}");
    let auth = format!("Bearer {key}");
    let mut r = match (method, body) {
        ("POST", Some(b)) => a
            .post(&target)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(b.to_string()),
        ("DELETE", _) => a.delete(&target).header("Authorization", &auth).call(),
        _ => a.get(&target).header("Authorization", &auth).call(),
    }
    .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn goals_conversion_rates_and_a_three_step_funnel_match_a_hand_count() {
    let (db, rt, wh) = migrated_database();
    let key = hourglass_e2e::central::merchant_with_site(&db, "ka", "ka.example");
    // One session per visitor on 2026-03-01: (visitor, seconds, page, name).
    let visits: &[(u64, i64, &str, &str)] = &[
        (1, 0, "/", "pageview"),
        (1, 60, "/pricing", "pageview"),
        (1, 120, "/pricing", "signup"),
        (1, 180, "/thanks", "pageview"),
        (2, 0, "/", "pageview"),
        (2, 30, "/pricing", "pageview"),
        (3, 0, "/pricing", "pageview"),
        (3, 10, "/pricing", "signup"),
        (4, 0, "/", "pageview"),
        (5, 0, "/blog/a", "pageview"),
        (5, 5, "/blog/a", "signup"),
        (5, 10, "/", "pageview"),
        (5, 20, "/pricing", "pageview"),
    ];
    let events: Vec<Event> = visits
        .iter()
        .map(|&(v, t, page, name)| Event {
            name: name.into(),
            ..event("ka", v, v, 3600 * v as i64 + t, page)
        })
        .collect();
    rt.block_on(wh.insert_event_batches(&[(
        BatchId {
            edge_id: "edge-ka".into(),
            seq: 1,
        },
        "none".into(),
        events,
    )]))
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start_with_api(tmp.path(), &certs, &db, false);
    let url = central.api_url.as_deref().expect("the API is on");

    for goal in [
        json!({"site_id": "ka.example", "name": "Signup", "event_name": "signup"}),
        json!({"site_id": "ka.example", "name": "Pricing", "page_path": "/pricing"}),
        json!({"site_id": "ka.example", "name": "Home", "page_path": "/"}),
        json!({"site_id": "ka.example", "name": "Blog", "page_path": "/blog/*"}),
    ] {
        let (status, body) = call(url, &key, "POST", "/api/v1/goals", Some(goal));
        assert_eq!(status, 201, "{body}");
    }
    let refused = [
        json!({"site_id": "ka.example", "name": "Home", "page_path": "/x"}),
        json!({"site_id": "ka.example", "name": "Both", "page_path": "/x", "event_name": "x"}),
    ];
    for goal in refused {
        assert_eq!(call(url, &key, "POST", "/api/v1/goals", Some(goal)).0, 400);
    }
    let (_, listed) = call(url, &key, "GET", "/api/v1/goals?site_id=ka.example", None);
    assert_eq!(listed["goals"].as_array().unwrap().len(), 4, "{listed}");
    let funnel = json!({"site_id": "ka.example", "name": "Purchase",
                        "steps": ["Home", "Pricing", "Signup"]});
    assert_eq!(
        call(url, &key, "POST", "/api/v1/funnels", Some(funnel)).0,
        201
    );
    let unknown = json!({"site_id": "ka.example", "name": "X", "steps": ["Home", "Nope"]});
    assert_eq!(
        call(url, &key, "POST", "/api/v1/funnels", Some(unknown)).0,
        404
    );

    // By hand: 5 visitors; Signup by 1, 3, 5; Pricing viewed by 1, 2, 3,
    // 5; Home by 1, 2, 4, 5; Blog by 5.
    let day = json!(["2026-03-01", "2026-03-01"]);
    let (status, body) = call(
        url,
        &key,
        "POST",
        "/api/v1/query",
        Some(json!({"site_id": "ka.example", "date_range": day,
                    "metrics": ["visitors", "events", "conversion_rate"],
                    "dimensions": ["event:goal"], "order_by": [["event:goal", "asc"]]})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"],
        json!([
            {"dimensions": ["Blog"], "metrics": [1, 1, 20.0]},
            {"dimensions": ["Home"], "metrics": [4, 4, 80.0]},
            {"dimensions": ["Pricing"], "metrics": [4, 4, 80.0]},
            {"dimensions": ["Signup"], "metrics": [3, 3, 60.0]},
        ]),
        "{body}"
    );
    let (_, body) = call(
        url,
        &key,
        "POST",
        "/api/v1/query",
        Some(json!({"site_id": "ka.example", "date_range": day,
                    "metrics": ["visitors", "conversion_rate"],
                    "filters": [["is", "event:goal", ["Signup"]]]})),
    );
    assert_eq!(
        body["results"],
        json!([{"dimensions": [], "metrics": [3, 60.0]}]),
        "{body}"
    );

    // The funnel Home → Pricing → Signup, in order within a session:
    // visitor 1 does all three; 2 and 5 reach Pricing (5 signed up
    // before Home); 4 only Home; 3 never saw Home.
    let (status, body) = call(
        url,
        &key,
        "POST",
        "/api/v1/funnel",
        Some(json!({"site_id": "ka.example", "funnel": "Purchase", "date_range": day})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["steps"],
        json!([
            {"goal": "Home", "visitors": 4, "conversion_rate": 100.0, "dropoff": 0},
            {"goal": "Pricing", "visitors": 3, "conversion_rate": 75.0, "dropoff": 1},
            {"goal": "Signup", "visitors": 1, "conversion_rate": 25.0, "dropoff": 2},
        ]),
        "{body}"
    );
    assert_eq!(
        call(
            url,
            &key,
            "POST",
            "/api/v1/funnel",
            Some(json!({"site_id": "ka.example", "funnel": "Nope", "date_range": day}))
        )
        .0,
        404
    );
    // Deleting a goal.
    let goal_id = listed["goals"][3]["goal_id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        url,
        &key,
        "DELETE",
        &format!("/api/v1/goals/{goal_id}?site_id=ka.example"),
        None,
    );
    assert_eq!(status, 200);
    let (_, listed) = call(url, &key, "GET", "/api/v1/goals?site_id=ka.example", None);
    assert_eq!(listed["goals"].as_array().unwrap().len(), 3, "{listed}");
}

/// The admin HTTP API on a real central and ClickHouse: only the admin
/// token opens it (wrong, missing or a merchant's key: 401, counted); a
/// merchant, site and key made over HTTP work on `/api/v1/query`; bodies
/// that are not what a route takes are 400s naming the field; the edge
/// list joins certificates and the loads ledger; a revoked key stops at
/// once.
#[test]
fn admin_http_api_makes_merchants_sites_and_keys_behind_the_admin_token() {
    use hourglass_e2e::central::certs;
    use hourglass_warehouse::LoadEntry;
    use hourglass_warehouse::metadata::hash_api_key;

    let (db, rt, wh) = migrated_database();
    let token = "admin-token-for-this-test-0123456789";
    let tmp = tempfile::tempdir().unwrap();
    let certs_dir = tmp.path().join("certs");
    ca_with_server_cert(&certs_dir);
    let issued = certs(&certs_dir, &["issue-edge", "edge-with-cert"]);
    assert_eq!(issued.status.code(), Some(0), "{}", text(&issued));
    let central = Central::start_with_api_toml(
        tmp.path(),
        &certs_dir,
        &db,
        false,
        &format!("admin_token_sha256 = \"{}\"\n", hash_api_key(token)),
    );
    let url = central.api_url.as_deref().expect("the API is on");
    let admin =
        |method: &str, path: &str, body: Option<Value>| call(url, token, method, path, body);

    // Only the admin token opens it; every refusal is counted.
    let merchant_key = hourglass_e2e::central::merchant_with_site(&db, "other", "other.example");
    for (key, reason) in [
        ("", "missing"),
        ("not-the-token", "invalid"),
        (merchant_key.as_str(), "invalid"),
    ] {
        let (status, body) = call(
            url,
            key,
            "POST",
            "/api/v1/admin/merchants",
            Some(json!({"name": "Nope"})),
        );
        assert_eq!(status, 401, "{key:?} ({reason}): {body}");
        assert_eq!(call(url, key, "GET", "/api/v1/admin/edges", None).0, 401);
    }
    assert_eq!(
        central.metric("hourglass_central_admin_auth_failures_total{reason=\"missing\"}"),
        2.0
    );
    assert_eq!(
        central.metric("hourglass_central_admin_auth_failures_total{reason=\"invalid\"}"),
        4.0
    );
    let merchants = |db: &hourglass_testkit::TestDb| {
        db.query("SELECT count() FROM merchants FORMAT TSV")
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(merchants(&db), "1", "a refused request wrote nothing");

    // Merchant, site and key over HTTP.
    let (status, m) = admin(
        "POST",
        "/api/v1/admin/merchants",
        Some(json!({"name": "HTTP shop"})),
    );
    assert_eq!(status, 201, "{m}");
    let merchant_id = m["merchant_id"].as_str().unwrap().to_owned();
    assert_eq!(m["name"], "HTTP shop");
    let (status, site) = admin(
        "POST",
        "/api/v1/admin/sites",
        Some(
            json!({"merchant_id": merchant_id, "domain": "Http.Example", "timezone": "Europe/Paris"}),
        ),
    );
    assert_eq!(status, 201, "{site}");
    assert_eq!(site["domain"], "http.example");
    assert_eq!(site["timezone"], "Europe/Paris");
    let site_id = site["site_id"].as_str().unwrap().to_owned();
    let (status, k) = admin(
        "POST",
        "/api/v1/admin/keys",
        Some(json!({"merchant_id": merchant_id, "site_ids": [site_id], "name": "ci"})),
    );
    assert_eq!(status, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(k["key_prefix"].as_str().unwrap()), "{k}");
    assert_eq!(k["key_hash"], hash_api_key(&key));
    let stored = db.query("SELECT * FROM api_keys FORMAT TSV").unwrap();
    assert!(!stored.contains(&key), "only the hash is stored: {stored}");
    assert!(stored.contains(&hash_api_key(&key)), "{stored}");

    // The key reads its site: 2 visitors, 3 pageviews.
    let events = vec![
        event(&site_id, 1, 11, 3600, "/"),
        event(&site_id, 1, 11, 3660, "/a"),
        event(&site_id, 2, 21, 7200, "/"),
    ];
    let batch = BatchId {
        edge_id: "edge-http".into(),
        seq: 1,
    };
    rt.block_on(wh.insert_events(&batch, "ps", &events))
        .unwrap();
    let totals = json!({
        "site_id": "http.example",
        "metrics": ["visitors", "pageviews"],
        "date_range": ["2026-03-01", "2026-03-01"],
        "timezone": "UTC",
    })
    .to_string();
    let a = post(url, Some(&key), &totals);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(rows(&a.body), vec![(vec![], vec![2, 3])]);

    // Bodies that are not what the route takes: 400 naming the field.
    for (path, body, field) in [
        ("/api/v1/admin/merchants", json!({}), "name"),
        ("/api/v1/admin/merchants", json!({"name": 7}), "name"),
        (
            "/api/v1/admin/sites",
            json!({"merchant_id": merchant_id, "domian": "typo.example"}),
            "domain",
        ),
        (
            "/api/v1/admin/sites",
            json!({"merchant_id": merchant_id, "domain": "x.example", "colour": "red"}),
            "colour",
        ),
        (
            "/api/v1/admin/keys",
            json!({"merchant_id": merchant_id, "rate_limit_per_minute": -1}),
            "rate_limit_per_minute",
        ),
        (
            "/api/v1/admin/keys",
            json!({"merchant_id": merchant_id, "site_ids": "all"}),
            "site_ids",
        ),
    ] {
        let (status, answer) = admin("POST", path, Some(body.clone()));
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["path"], field, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    let not_json = agent()
        .post(&format!("{url}/api/v1/admin/merchants"))
        .header("Authorization", &format!("Bearer {token}"))
        .send("{name: oops")
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
    // Refused by the same checks as the CLI: a bad zone, an unknown merchant.
    let (status, answer) = admin(
        "POST",
        "/api/v1/admin/sites",
        Some(json!({"merchant_id": merchant_id, "domain": "z.example", "timezone": "Mars/Base"})),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("Mars/Base"));
    let (status, _) = admin(
        "POST",
        "/api/v1/admin/keys",
        Some(json!({"merchant_id": "m_nobody"})),
    );
    assert_eq!(status, 404);

    // Edges: one by its certificate, one by its loaded batch.
    let entry = LoadEntry {
        batch_id: batch.to_string(),
        archive_key: String::new(),
        plugin_set: "ps".into(),
        rows: 3,
        min_ts: 0,
        max_ts: 0,
        status: "loaded".into(),
        error: String::new(),
        loaded_at: 1_772_330_400,
        version: 1,
    };
    rt.block_on(wh.record_loads(&[entry])).unwrap();
    let (status, edges) = admin("GET", "/api/v1/admin/edges", None);
    assert_eq!(status, 200, "{edges}");
    let edges = edges["edges"].as_array().unwrap();
    let by_id = |id: &str| {
        edges
            .iter()
            .find(|e| e["edge_id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {edges:?}"))
    };
    assert_eq!(by_id("edge-with-cert")["certificate"], "active");
    assert_eq!(by_id("edge-with-cert")["batches_loaded"], 0);
    assert_eq!(by_id("edge-http")["certificate"], Value::Null);
    assert_eq!(by_id("edge-http")["batches_loaded"], 1);
    assert_eq!(by_id("edge-http")["rows_loaded"], 3);
    assert_eq!(by_id("edge-http")["last_loaded_at"], "2026-03-01T02:00:00Z");

    // Revoking over HTTP: the key stops working on this node at once.
    let prefix = k["key_prefix"].as_str().unwrap();
    let (status, revoked) = admin("DELETE", &format!("/api/v1/admin/keys/{prefix}"), None);
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["key_hash"], hash_api_key(&key));
    assert_eq!(post(url, Some(&key), &totals).status, 401);
    let (status, _) = admin("DELETE", &format!("/api/v1/admin/keys/{prefix}"), None);
    assert_eq!(status, 404, "a revoked key is not live any more");
    assert_eq!(
        admin("GET", "/api/v1/admin/merchants", None).0,
        405,
        "the token is good, the method is not"
    );
}
