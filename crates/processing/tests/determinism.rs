//! Property tests over the public pipeline: whatever a hit contains,
//! `process` never panics and gives the same outcome every time (which is
//! what `reprocess` relies on), and the edge path is consistent: a hit that
//! `admit` accepts and `stamp` stamps processes into exactly its events.

use std::sync::Arc;

use hourglass_model::{Identity, Protocol, RawHit};
use hourglass_processing::{
    Endpoint, Ga4Stream, IdentityKeys, NoPlugins, Pipeline, SessionTable, SiteConfig,
    SiteDirectory, endpoint_for, validate_ga4,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: i64 = 1_700_000_000_000;

fn pipeline() -> Pipeline {
    let site = |id: &str, domain: &str| SiteConfig {
        site_id: id.into(),
        domain: domain.into(),
        allowed_hostnames: vec![],
        timezone: "UTC".into(),
        ga4: vec![],
        segment_write_keys: vec![],
    };
    let mut ex = site("ex", "example.com");
    ex.ga4.push(Ga4Stream {
        measurement_id: "G-1".into(),
        api_secret: "sec".into(),
    });
    ex.segment_write_keys.push("wk".into());
    let mut rollup = site("rollup", "rollup.net");
    rollup.allowed_hostnames = vec!["*".into()];
    let sites = SiteDirectory::new(1, vec![ex, rollup]).expect("test sites are valid");
    Pipeline::new(
        Arc::new(sites),
        IdentityKeys::from_master_secret(&[42u8; 32]).expect("32-byte secret"),
        Box::new(NoPlugins),
    )
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "n", "u", "d", "r", "p", "h", "i", "$", "name", "url", "domain", "props", "revenue",
            "amount", "currency", "interactive", "cid", "client_id", "user_id", "timestamp_micros",
            "events", "params", "page_location", "page_referrer", "value", "items",
            "user_properties", "batch", "type", "event", "userId", "anonymousId", "properties",
            "context", "page", "timestamp", "originalTimestamp", "sentAt", "writeKey", "path",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,12}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "pageview", "page_view", "purchase", "track", "page", "identify", "screen", "bad name",
            "_x", "https://example.com/a?utm_source=s#f", "https://www.example.com/",
            "https://evil.org/", "app://localhost/x", "data:x", "/relative", "example.com",
            "example.com,rollup.net", "rollup.net", "USD", "eur", "12.34", "1e400", "-0.5",
            "2023-11-14T22:00:00Z", "2023-11-10T00:00:00Z", "1699999999000000", "{\"k\":1}",
            "{\"amount\":1,\"currency\":\"USD\"}", "",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        (NOW - 100 * 3_600_000..NOW + 3_600_000).prop_map(|ms| Value::from(ms * 1000)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..7)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Near-valid bodies, so the accepting paths are exercised too.
fn plausible_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["pageview", "Signup", ""]),
        prop::sample::select(vec![
            "https://example.com/a?utm_medium=m",
            "https://blog.example.com/",
            "https://other.org/",
            "nope",
        ]),
        prop::sample::select(vec![
            None,
            Some("example.com"),
            Some("rollup.net,example.com"),
            Some("x.io"),
        ]),
        prop::option::of(json()),
    )
        .prop_map(|(n, u, d, p)| {
            let mut event = json!({"n": n, "u": u});
            if let Some(d) = d {
                event["d"] = json!(d);
            }
            if let Some(p) = p {
                event["p"] = p;
            }
            event.to_string().into_bytes()
        })
}

fn ga4_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["page_view", "purchase", "_bad", "session_start"]),
        prop::collection::vec((key(), json()), 0..3),
        prop::option::of(NOW - 80 * 3_600_000..NOW + 3_600_000),
    )
        .prop_map(|(name, params, ts_ms)| {
            let mut event =
                json!({"name": name, "params": Value::Object(params.into_iter().collect())});
            if let Some(ts) = ts_ms {
                event["timestamp_micros"] = json!(ts * 1000);
            }
            json!({"client_id": "555.777", "events": [event]})
                .to_string()
                .into_bytes()
        })
}

fn segment_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["track", "page", "identify", "fly"]),
        prop::sample::select(vec![json!("u1"), json!(7), Value::Null]),
        prop::option::of(json()),
        prop::sample::select(vec![
            None,
            Some("2023-11-14T21:00:00Z"),
            Some("2023-11-01T00:00:00Z"),
        ]),
    )
        .prop_map(|(kind, user, properties, ts)| {
            let mut message = json!({"type": kind, "userId": user, "event": "Clicked"});
            if let Some(p) = properties {
                message["properties"] = p;
            }
            if let Some(ts) = ts {
                message["timestamp"] = json!(ts);
            }
            json!({"batch": [message]}).to_string().into_bytes()
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => json().prop_map(|v| v.to_string().into_bytes()),
        2 => plausible_body(),
        1 => plausible_body().prop_map(|b| format!("[{}]", String::from_utf8_lossy(&b)).into_bytes()),
        1 => json().prop_map(|v| json!({"client_id": "c", "events": [v]}).to_string().into_bytes()),
        1 => json().prop_map(|v| json!({"batch": [v], "sentAt": "2023-11-14T22:13:20Z"}).to_string().into_bytes()),
        2 => ga4_body(),
        2 => segment_body(),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "/api/event",
            "/api/batch",
            "/i.gif?n=pageview&u=https%3A%2F%2Fexample.com%2F&d=example.com",
            "/i.gif?u=%ZZ&p=%7B",
            "/mp/collect?measurement_id=G-1&api_secret=sec",
            "/mp/collect?measurement_id=G-1&api_secret=bad",
            "/mp/collect?measurement_id=G-2",
            "/debug/mp/collect",
            "/v1/track",
            "/v1/page",
            "/v1/identify",
            "/v1/batch",
            "/v1/alias",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn stamp() -> impl Strategy<Value = Identity> {
    (
        prop::sample::select(vec!["ex", "rollup", "zz"]),
        any::<u64>(),
        any::<u64>(),
        0..4i32,
    )
        .prop_map(|(site, visitor_id, session_id, source)| Identity {
            site_id: site.into(),
            visitor_id,
            session_id,
            source,
        })
}

fn hit() -> impl Strategy<Value = RawHit> {
    (
        prop_oneof![3 => Just(None), 1 => prop_oneof![0..6i32, any::<i32>()].prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => prop::sample::select(vec!["POST", "GET", "post", "PUT"]).prop_map(Some)],
        path(),
        body(),
        prop_oneof![Just(String::new()), Just("wk".to_owned()), any::<String>()],
        prop_oneof![3 => Just(NOW), 1 => any::<i64>()],
        prop::option::of(stamp()),
        prop::collection::vec(stamp(), 0..3),
    )
        .prop_map(
            |(protocol, method, path, body, write_key, received_at_ms, identity, event_identities)| {
                // Mostly what the edge's router would say for the path.
                let routed = match endpoint_for(&path) {
                    Some(Endpoint::Ingest(p)) => p,
                    _ => Protocol::Unspecified,
                };
                let protocol = protocol.unwrap_or(routed as i32);
                let method = method.unwrap_or(if routed == Protocol::Pixel { "GET" } else { "POST" });
                RawHit {
                received_at_ms,
                edge_id: "edge".into(),
                seq: 1,
                protocol,
                method: method.into(),
                path_and_query: path,
                user_agent: "Mozilla/5.0".into(),
                client_ip: "192.0.2.1".into(),
                body,
                identity,
                write_key,
                event_identities,
                ..RawHit::default()
            }},
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn process_is_deterministic_and_total(hit in hit(), index in any::<u32>()) {
        let mut a = pipeline();
        let first = a.process(&hit, index);
        // Same pipeline again, and a fresh one (as `reprocess` would be).
        prop_assert_eq!(&a.process(&hit, index), &first);
        prop_assert_eq!(&pipeline().process(&hit, index), &first);
        for event in &first.events {
            prop_assert_eq!(event.hit_index, index);
        }
        for reject in &first.rejects {
            prop_assert_eq!(reject.hit_index, index);
        }
        let _ = validate_ga4(&hit);
    }

    #[test]
    fn a_stamped_admitted_hit_processes_into_its_events(mut hit in hit()) {
        let mut p = pipeline();
        let mut sessions = SessionTable::new(16);
        match p.admit(&hit) {
            Ok(decoded) => {
                p.stamp(&mut hit, &decoded, &mut sessions);
                let out = p.process(&hit, 0);
                prop_assert!(out.rejects.is_empty(), "{:?}", out.rejects);
                prop_assert_eq!(out.events.len(), decoded.len());
                for (event, d) in out.events.iter().zip(&decoded) {
                    prop_assert_eq!(&event.site_id, &d.site_id);
                    prop_assert_eq!(event.ts_ms, d.ts_ms);
                    prop_assert!(d.ts_ms <= hit.received_at_ms);
                }
                // Stamping is a function of the hit and the table's history.
                let mut again = hit.clone();
                p.stamp(&mut again, &decoded, &mut SessionTable::new(16));
                prop_assert_eq!(again.identity, hit.identity);
            }
            Err(rejection) => {
                let out = p.process(&hit, 0);
                prop_assert!(out.events.is_empty());
                prop_assert_eq!(out.rejects.len(), 1);
                prop_assert_eq!(out.rejects[0].reason.as_str(), rejection.reason.as_str());
                prop_assert_eq!(&out.rejects[0].field, &rejection.field);
                prop_assert!(rejection.http_status() >= 400 && rejection.http_status() < 500);
            }
        }
    }
}

/// The generators above do reach the accepting paths of every protocol.
#[test]
fn generators_reach_accepted_hits() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let p = pipeline();
    let mut runner = TestRunner::deterministic();
    let mut accepted = std::collections::HashSet::new();
    for _ in 0..20_000 {
        let Ok(tree) = hit().new_tree(&mut runner) else {
            continue;
        };
        let hit = tree.current();
        if p.admit(&hit).is_ok_and(|d| !d.is_empty()) {
            accepted.insert(hit.protocol);
        }
    }
    for protocol in [
        Protocol::Native,
        Protocol::NativeBatch,
        Protocol::Pixel,
        Protocol::Ga4Mp,
        Protocol::Segment,
    ] {
        assert!(
            accepted.contains(&(protocol as i32)),
            "no accepted {protocol:?} hit generated"
        );
    }
}
